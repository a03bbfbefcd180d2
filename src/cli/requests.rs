//! `wharf requests …`: what was received and what happened to it, without SQL — list, show,
//! requeue, reprocess, rejected messages and queue depth.

use anyhow::bail;
use chrono::NaiveDateTime;
use clap::Subcommand;

use crate::config::Settings;
use crate::queue::inspect::{self, ListedRequest, RequestDetail, RequestFilter, StateFilter};
use crate::queue::{self, lifecycle};

/// `wharf requests`.
#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// List received requests, newest first.
    List {
        /// queued, retrying (queued after failed attempts), processing, processed, failed
        /// (processed with failed lines) or dead.
        #[arg(long, value_parser = clap::value_parser!(StateFilter))]
        state: Option<StateFilter>,
        /// inventory.update (or inventory) or shipment.create (or shipment).
        #[arg(long, value_parser = inspect::operation_named)]
        operation: Option<queue::Operation>,
        /// Only requests with a line for this SKU.
        #[arg(long)]
        sku: Option<String>,
        /// Only shipments for this order number.
        #[arg(long)]
        order: Option<String>,
        /// Only requests with this messageSeqId.
        #[arg(long)]
        message_seq_id: Option<i64>,
        /// How many to show.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One request in full: summary, lines, import report, failed attempts, support actions and
    /// the XML received (credentials masked).
    Show {
        /// Request id (from `wharf requests list`).
        id: i64,
    },
    /// Put dead requests (or ones waiting to retry) back to the queue now, attempts reset.
    Requeue {
        /// Request ids.
        #[arg(required = true)]
        ids: Vec<i64>,
        /// Who is doing this (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Apply processed requests again (e.g. a shipment that failed because its order came late).
    Reprocess {
        /// Request ids.
        #[arg(required = true)]
        ids: Vec<i64>,
        /// Who is doing this (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// List the most recent rejected messages (faults), newest first.
    Rejected {
        /// How many to show.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Also print the start of each body (credentials masked).
        #[arg(long)]
        body: bool,
    },
    /// Count requests by state.
    Depth,
}

/// Who did it: `--by`, else $USER, else "cli".
fn actor(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "cli".to_string())
}

fn time(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The first line of `text`, at most `max` characters.
fn short(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() > max || line.len() < text.trim_end().len() {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    }
}

pub(super) fn requests(settings: &Settings, cmd: RequestsCommand) -> anyhow::Result<()> {
    let pool = super::open(settings)?;
    let mut conn = pool.get()?;
    match cmd {
        RequestsCommand::List {
            state,
            operation,
            sku,
            order,
            message_seq_id,
            limit,
        } => {
            let filter = RequestFilter {
                state,
                operation,
                message_seq_id,
                sku,
                order,
                limit,
                ..RequestFilter::default()
            };
            print_list(&inspect::list(&mut conn, &filter)?);
        }
        RequestsCommand::Show { id } => match inspect::detail(&mut conn, id)? {
            Some(d) => {
                print_detail(&d);
                // Support has now seen its import failures: their incident can resolve.
                crate::imports::store::mark_viewed(&mut conn, id, crate::db::now())?;
            }
            None => bail!("request #{id} does not exist"),
        },
        RequestsCommand::Requeue { ids, by } => {
            let done = lifecycle::requeue(&mut conn, &ids, &lifecycle::By::cli(&actor(by)))?;
            println!(
                "{} request(s) back to the queue: {}",
                done.len(),
                hashes(&done)
            );
        }
        RequestsCommand::Reprocess { ids, by } => {
            let done = lifecycle::reprocess(&mut conn, &ids, &lifecycle::By::cli(&actor(by)))?;
            println!(
                "{} request(s) queued to be applied again: {}",
                done.len(),
                hashes(&done)
            );
        }
        RequestsCommand::Rejected { limit, body } => print_rejections(&mut conn, limit, body)?,
        RequestsCommand::Depth => {
            for (state, n) in queue::depth_by_state(&mut conn)? {
                println!("{state:<12} {n}");
            }
        }
    }
    Ok(())
}

fn hashes(ids: &[i64]) -> String {
    ids.iter()
        .map(|id| format!("#{id}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_rejections(
    conn: &mut crate::db::DbConnection,
    limit: i64,
    body: bool,
) -> anyhow::Result<()> {
    let rows = queue::recent_rejections(conn, limit)?;
    if rows.is_empty() {
        println!("no rejected messages");
    }
    let excerpts = if body {
        queue::rejection_excerpts(conn, &rows.iter().map(|r| r.id).collect::<Vec<_>>())?
    } else {
        Vec::new()
    };
    for r in rows {
        println!(
            "#{} {} caller={} operation={} — {}",
            r.id,
            time(r.received_at),
            r.caller.as_deref().unwrap_or("-"),
            r.operation.as_deref().unwrap_or("-"),
            r.reason
        );
        if let Some((_, excerpt)) = excerpts.iter().find(|(id, _)| *id == r.id) {
            println!("{excerpt}\n");
        }
    }
    Ok(())
}

fn print_list(rows: &[ListedRequest]) {
    if rows.is_empty() {
        println!("no requests match");
        return;
    }
    println!(
        "{:>8}  {:<19}  {:<16}  {:>12}  {:<12}  {:<10}  {:>8}  {:>6}  {:>8}  {:<8}  LAST ERROR",
        "ID",
        "RECEIVED",
        "OPERATION",
        "MSG SEQ ID",
        "CALLER",
        "STATE",
        "ATTEMPTS",
        "LINES",
        "RECEIPTS",
        "CONFLICT"
    );
    for r in rows {
        let s = &r.summary;
        let failures = r.report.map_or(0, |c| c.failures);
        let state = if failures > 0 {
            format!("{} ({failures} failed)", s.state)
        } else {
            s.state.to_string()
        };
        let error = s
            .last_error
            .as_deref()
            .or(r.first_failure.as_deref())
            .map_or_else(|| "-".to_string(), |e| short(e, 80));
        println!(
            "{:>8}  {:<19}  {:<16}  {:>12}  {:<12}  {:<10}  {:>8}  {:>6}  {:>8}  {:<8}  {error}",
            s.id,
            time(s.received_at),
            s.operation,
            s.message_seq_id,
            s.caller,
            state,
            s.attempts,
            s.line_count,
            s.receipts,
            if s.conflict { "conflict" } else { "-" },
        );
    }
}

fn print_detail(d: &RequestDetail) {
    print_summary(d);
    if let Some((h, tracking)) = &d.shipment {
        println!(
            "shipment:       order {}, courier {}, service {}, shipped {}, tracking {}",
            h.order_increment_id,
            h.courier_name.as_deref().unwrap_or("-"),
            h.service_name.as_deref().unwrap_or("-"),
            h.date_shipped.map_or_else(|| "-".to_string(), time),
            if tracking.is_empty() {
                "-".to_string()
            } else {
                tracking.join(", ")
            }
        );
        if let Some(c) = &h.comment {
            println!("comment:        {c}");
        }
    }
    println!("\nlines ({}):", d.lines.len());
    for l in &d.lines {
        let seq = l.seq.map(|s| format!("  seq {s}")).unwrap_or_default();
        println!(
            "  {:>5}  {}  source {}  qty {}{seq}",
            l.line_no, l.sku, l.source, l.qty
        );
    }
    print_outcome(d);
    println!("\nXML received (credentials masked):");
    match &d.progress.body {
        Some(body) => println!("{body}"),
        None => println!("  (no longer kept: dropped by retention)"),
    }
}

fn print_summary(d: &RequestDetail) {
    let s = &d.summary;
    let p = &d.progress;
    println!("request #{}", s.id);
    println!("operation:      {}", s.operation);
    println!("messageSeqId:   {}", s.message_seq_id);
    println!("caller:         {}", s.caller);
    println!("state:          {}", s.state);
    println!("attempts:       {}", s.attempts);
    println!(
        "received:       {} ({} time(s))",
        time(s.received_at),
        s.receipts
    );
    if let Some(t) = p.processed_at {
        println!("processed:      {}", time(t));
    }
    if s.state == queue::RequestState::Queued {
        println!("next attempt:   {}", time(p.next_attempt_at));
    }
    if let Some(owner) = &p.lease_owner {
        let until = p.lease_expires_at.map_or_else(|| "?".to_string(), time);
        println!("held by:        {owner} until {until}");
    }
    if s.conflict || !d.same_message.is_empty() {
        println!(
            "same messageSeqId: {}{}",
            hashes(&d.same_message),
            if s.conflict {
                " (this one is a conflict: its body differs from an earlier one)"
            } else {
                ""
            }
        );
    }
    if let Some(e) = &s.last_error {
        println!("last error:     {e}");
    }
}

fn print_outcome(d: &RequestDetail) {
    match &d.report {
        Some((c, lines)) => {
            println!(
                "\nimport report: {} success(es), {} duplicate(s), {} superseded, {} failure(s)",
                c.successes, c.duplicates, c.superseded, c.failures
            );
            print_report_lines(lines);
        }
        None => println!("\nimport report: none (not applied)"),
    }
    if !d.errors.is_empty() {
        println!("\nfailed attempts ({}):", d.errors.len());
        for e in &d.errors {
            println!("  attempt {}  {}  {}", e.attempt, time(e.at), e.error);
        }
    }
    if !d.actions.is_empty() {
        println!("\nsupport actions:");
        for a in &d.actions {
            let r = &a.action;
            println!(
                "  {}  {} by {} (was {} after {} attempt(s){})",
                time(r.at),
                r.action,
                r.actor,
                r.previous_state,
                r.previous_attempts,
                r.previous_error
                    .as_deref()
                    .map(|e| format!("; last error: {}", short(e, 120)))
                    .unwrap_or_default()
            );
            if let Some(note) = &r.note {
                println!("    {note}");
            }
            print_report_lines(&a.replaced);
        }
    }
}

fn print_report_lines(lines: &[inspect::ReportLine]) {
    for l in lines {
        println!(
            "  {:>5}  {}  source {}  received {}  stored {}  {}  {}",
            l.line_no,
            l.sku,
            l.source,
            l.units_received,
            l.stored_qty
                .map_or_else(|| "-".to_string(), |q| q.to_string()),
            l.result,
            l.message
        );
    }
}
