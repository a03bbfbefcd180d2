//! `wharf export`, `wharf orders lost|resend|dismiss` and `wharf exports list|show`.

use std::sync::Arc;

use anyhow::bail;
use chrono::NaiveDateTime;
use clap::Subcommand;

use crate::channels::warehouse::{
    self as export, Action, BatchOutcome, Exchange, ExportSummary, Handled,
};
use crate::config::Settings;

/// `wharf orders`.
#[derive(Debug, Subcommand)]
pub enum OrdersCommand {
    /// List order exports and cancellations the warehouse refused `max_attempts` times, with their
    /// last error.
    Lost,
    /// Put lost or failed order exports or cancellations back to pending with their attempts reset.
    Resend {
        /// Order numbers.
        ids: Vec<String>,
        /// Every lost order export and cancellation.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Who is doing this (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Mark lost or failed order exports or cancellations as handled by hand: they are not sent.
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

fn when(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `wharf export`: orders, cancellations and (when enabled) products now; a summary per part, and
/// an error (exit code 1) unless everything that was due went.
pub(super) fn export(settings: Settings) -> anyhow::Result<()> {
    let pool = super::open(&settings)?;
    let settings = Arc::new(settings);
    let run = super::runtime()?.block_on(async {
        let exporter = export::Exporter::new(pool, settings.clone())?;
        let mut run = export::RunOutcome {
            orders: Some(exporter.export_orders().await?),
            cancellations: Some(exporter.export_cancellations().await?),
            products: None,
        };
        if settings.warehouse.products.enabled {
            run.products = Some(exporter.export_products().await?);
        }
        anyhow::Ok(run)
    })?;
    let mut problems = Vec::new();
    for (what, o) in run.parts() {
        let max_attempts = match what {
            "products" => settings.warehouse.products.max_attempts,
            _ => settings.warehouse.orders.max_attempts,
        };
        for line in summary(what, o, max_attempts) {
            println!("{line}");
        }
        problems.extend(problems_of(what, o));
    }
    if !problems.is_empty() {
        bail!(
            "not everything went to the warehouse ({}); the lines above say what happened and \
             what to do",
            problems.join(", ")
        );
    }
    Ok(())
}

/// What a part of the run did, for people: one line per kind of result.
fn summary(what: &str, o: &BatchOutcome, max_attempts: i32) -> Vec<String> {
    let mut lines = Vec::new();
    if o.items == 0 && !o.paused {
        lines.push(format!("{what}: nothing due"));
    }
    let accepted = if what == "cancellations" {
        "confirmed"
    } else {
        "exported"
    };
    let sent = o.items - o.not_sent;
    if sent > 0 {
        lines.push(format!(
            "{what}: {sent} sent: {} {accepted}, {} refused",
            o.exported, o.failed
        ));
    }
    let reason = o.refusal.as_deref().unwrap_or("see `wharf exports list`");
    let retried = o.failed - o.lost;
    if retried > 0 {
        lines.push(format!(
            "{what}: {retried} refused by the warehouse, sent again after a backoff: {reason} \
             (`wharf exports list` has every answer)"
        ));
    }
    if o.lost > 0 {
        let next = if what == "products" {
            "see `wharf exports list`"
        } else {
            "see `wharf orders lost`, then `wharf orders resend` or `wharf orders dismiss` them"
        };
        lines.push(format!(
            "{what}: {} lost after {max_attempts} attempts: {reason}; {next}",
            o.lost
        ));
    }
    if o.not_sent > 0 {
        lines.push(format!(
            "{what}: {} not sent: {}; sent again from {}",
            o.not_sent,
            o.problem.as_deref().unwrap_or("no usable answer"),
            o.retry_at
                .map(when)
                .unwrap_or_else(|| "the next run".into())
        ));
    }
    if let Some(b) = o.breaker.filter(|_| o.paused && what == "cancellations") {
        // The same warehouse: cancellations wait on the order breaker, reported with the orders.
        lines.push(format!(
            "{what}: not sent while the order breaker is open (until {}, after {} failed batches)",
            b.paused_until.map(when).unwrap_or_default(),
            b.failures
        ));
    } else if let Some(b) = o.breaker.filter(|_| o.paused) {
        lines.push(format!(
            "{what}: breaker open: exports paused until {} after {} failed batches; they resume by \
             themselves (check the warehouse meanwhile; `wharf exports list` shows what failed)",
            b.paused_until.map(when).unwrap_or_default(),
            b.failures
        ));
    }
    lines
}

/// What did not go in a part of the run, in a few words each.
fn problems_of(what: &str, o: &BatchOutcome) -> Vec<String> {
    let one = what.trim_end_matches('s');
    let count = |n: usize, how: &str| format!("{n} {}{} {how}", one, if n == 1 { "" } else { "s" });
    let mut out = Vec::new();
    if o.not_sent > 0 {
        out.push(count(o.not_sent, "not sent"));
    }
    if o.failed > o.lost {
        out.push(count(o.failed - o.lost, "refused"));
    }
    if o.lost > 0 {
        out.push(count(o.lost, "lost"));
    }
    if o.paused && what != "cancellations" {
        out.push(format!("{one} exports paused by the breaker"));
    }
    out
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
                    "{}  {:<12}  attempts={}  {}  {}",
                    o.increment_id,
                    o.subject.as_str(),
                    o.attempts,
                    o.updated_at.format("%Y-%m-%d %H:%M:%S"),
                    o.error.as_deref().unwrap_or("-")
                );
            }
        }
        OrdersCommand::Resend { ids, all, by } => {
            if ids.is_empty() && !all {
                bail!("name the orders to resend, or pass --all for every lost one");
            }
            let ids = (!all).then_some(ids.as_slice());
            let done = act_audited(&mut conn, ids, &actor(by), Action::Resend, None)?;
            println!("{} back to pending: {}", done.len(), handled(&done));
        }
        OrdersCommand::Dismiss { ids, reason, by } => {
            let done = act_audited(
                &mut conn,
                Some(&ids),
                &actor(by),
                Action::Dismiss,
                Some(&reason),
            )?;
            println!("{} dismissed: {}", done.len(), handled(&done));
        }
    }
    Ok(())
}

/// Resends or dismisses, with the audit row (`Via::Cli`) in the same transaction.
fn act_audited(
    conn: &mut crate::db::DbConnection,
    ids: Option<&[String]>,
    actor: &str,
    action: Action,
    reason: Option<&str>,
) -> anyhow::Result<Vec<Handled>> {
    crate::db::write_tx(conn, |conn| {
        let done = export::act_in(conn, ids, actor, action, reason)?;
        let subjects: Vec<String> = done.iter().map(|h| h.increment_id.clone()).collect();
        crate::audit::record(
            conn,
            &crate::audit::Entry {
                actor,
                via: crate::audit::Via::Cli,
                action: match action {
                    Action::Resend => "orders.resend",
                    Action::Dismiss => "orders.dismiss",
                },
                subject_kind: "order",
                subjects: &subjects,
                filter: ids.is_none().then_some("every lost order (--all)"),
                count: subjects.len() as i64,
                note: reason,
            },
        )?;
        Ok(done)
    })
}

fn handled(done: &[Handled]) -> String {
    done.iter()
        .map(|h| format!("{} ({})", h.increment_id, h.subject.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn exports(settings: &Settings, cmd: ExportsCommand) -> anyhow::Result<()> {
    let pool = super::open(settings)?;
    let mut conn = pool.get()?;
    match cmd {
        ExportsCommand::List { limit } => {
            let now = crate::db::now();
            for (kind, b) in export::breakers(&mut conn)? {
                match b.paused_until.filter(|_| b.is_open(now)) {
                    Some(until) => println!(
                        "{kind} exports: breaker open: paused until {} after {} failed batches",
                        when(until),
                        b.failures
                    ),
                    None => println!(
                        "{kind} exports: {} batch(es) in a row not answered",
                        b.failures
                    ),
                }
            }
            for e in export::recent_exports(&mut conn, limit)? {
                println!("{}", list_line(&e));
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
            println!("{}", exchange_part(&e));
            println!("{}", items_part(&e));
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

/// One exchange of `wharf exports list`: how the exchange went, then what the items got.
fn list_line(e: &ExportSummary) -> String {
    format!(
        "#{} {} {} {} {}  {}  |  {}",
        e.id,
        e.started_at.format("%Y-%m-%d %H:%M:%S"),
        e.message_id,
        e.kind,
        e.operation,
        exchange_part(e),
        items_part(e)
    )
}

fn exchange_part(e: &ExportSummary) -> String {
    let http = e
        .http_status
        .map(|s| format!(" (HTTP {s})"))
        .unwrap_or_default();
    match e.exchange() {
        Some(Exchange::Answered) => format!("answered{http}"),
        Some(_) => format!(
            "not answered: {}{http}: {}",
            e.outcome,
            e.error.as_deref().unwrap_or("-")
        ),
        None => format!("{}{http}", e.outcome),
    }
}

fn items_part(e: &ExportSummary) -> String {
    match e.exchange() {
        Some(Exchange::Answered) | None => format!(
            "items {}: {} accepted, {} duplicate, {} refused{}",
            e.items,
            e.successes,
            e.duplicates,
            e.failures,
            e.error
                .as_deref()
                .map(|m| format!(" — {m}"))
                .unwrap_or_default()
        ),
        Some(_) => format!("items {}: not decided, sent again later", e.items),
    }
}
