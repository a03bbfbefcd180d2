//! `wharf orders lost|resend|dismiss` and `wharf exports list|show`.

use anyhow::bail;
use clap::Subcommand;

use crate::config::Settings;
use crate::export;

/// `wharf orders`.
#[derive(Debug, Subcommand)]
pub enum OrdersCommand {
    /// List orders the warehouse refused `max_attempts` times, with their last error.
    Lost,
    /// Put orders back to pending with their attempts reset.
    Resend {
        /// Order numbers.
        ids: Vec<String>,
        /// Every lost order.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Who is doing this (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Mark orders as handled by hand: they are not sent.
    Dismiss {
        /// Order numbers.
        #[arg(required = true)]
        ids: Vec<String>,
        /// Why (kept with the order).
        #[arg(long)]
        reason: String,
        /// Who is doing this (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
}

/// `wharf exports`.
#[derive(Debug, Subcommand)]
pub enum ExportsCommand {
    /// The most recent exports, newest first.
    List {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// One export with its lines, the XML sent and the answer.
    Show {
        /// Export id (from `wharf exports list`).
        id: i64,
    },
}

fn actor(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".to_string())
}

pub(super) fn orders(settings: &Settings, cmd: OrdersCommand) -> anyhow::Result<()> {
    let pool = super::open(settings)?;
    let mut conn = pool.get()?;
    match cmd {
        OrdersCommand::Lost => {
            let lost = export::lost_orders(&mut conn)?;
            if lost.is_empty() {
                println!("no lost orders");
            }
            for o in lost {
                println!(
                    "{}  attempts={}  {}  {}",
                    o.increment_id,
                    o.attempts,
                    o.updated_at.format("%Y-%m-%d %H:%M:%S"),
                    o.error.as_deref().unwrap_or("-")
                );
            }
        }
        OrdersCommand::Resend { ids, all, by } => {
            if ids.is_empty() && !all {
                bail!("name the orders to resend, or pass --all for every lost order");
            }
            let done = export::resend(&mut conn, (!all).then_some(ids.as_slice()), &actor(by))?;
            println!(
                "{} order(s) back to pending: {}",
                done.len(),
                done.join(", ")
            );
        }
        OrdersCommand::Dismiss { ids, reason, by } => {
            let done = export::dismiss(&mut conn, &ids, &actor(by), &reason)?;
            println!("{} order(s) dismissed: {}", done.len(), done.join(", "));
        }
    }
    Ok(())
}

pub(super) fn exports(settings: &Settings, cmd: ExportsCommand) -> anyhow::Result<()> {
    let pool = super::open(settings)?;
    let mut conn = pool.get()?;
    match cmd {
        ExportsCommand::List { limit } => {
            for e in export::recent_exports(&mut conn, limit)? {
                println!(
                    "#{} {} {} {} {} successes={} duplicates={} failures={}{}",
                    e.id,
                    e.started_at.format("%Y-%m-%d %H:%M:%S"),
                    e.message_id,
                    e.operation,
                    e.outcome,
                    e.successes,
                    e.duplicates,
                    e.failures,
                    e.error.map(|m| format!(" — {m}")).unwrap_or_default()
                );
            }
        }
        ExportsCommand::Show { id } => {
            let Some((e, lines, request, response)) = export::export_detail(&mut conn, id)? else {
                bail!("export #{id} does not exist");
            };
            println!(
                "export #{} {} ({} {}) outcome={}",
                e.id, e.message_id, e.kind, e.operation, e.outcome
            );
            if let Some(err) = &e.error {
                println!("error: {err}");
            }
            for (reference, result, message, detail) in lines {
                println!(
                    "  {reference}  {result}  {message}{}",
                    detail.map(|d| format!(" ({d})")).unwrap_or_default()
                );
            }
            println!("--- request\n{}", request.unwrap_or_default());
            println!("--- response\n{}", response.unwrap_or_default());
        }
    }
    Ok(())
}
