//! `wharf clean [--dry-run]`: one retention clean now, with the `[retention]` settings, printing
//! per part what would go or went; a long clean prints its progress to stderr.

use std::ops::ControlFlow;
use std::time::Duration;

use crate::config::Settings;
use crate::db;
use crate::retention::{self, Part, PartCount, Progress};

/// How often a long clean says where it is.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// `wharf clean`.
pub fn clean(settings: &Settings, dry_run: bool) -> anyhow::Result<()> {
    let pool = super::open(settings)?;
    let mut conn = pool.get()?;
    let r = &settings.retention;
    let now = db::now();
    if dry_run {
        let counts = retention::count(&mut conn, r, now)?;
        print_counts(&counts, r, "would go", "would be dropped");
        println!("dry run: nothing was deleted");
        return Ok(());
    }
    let mut next_report = PROGRESS_EVERY;
    let mut progress = |p: &Progress| {
        if p.elapsed >= next_report {
            eprintln!(
                "cleaning {}: {} so far ({} batches, {}s)",
                p.part,
                p.rows,
                p.batches,
                p.elapsed.as_secs()
            );
            next_report = p.elapsed + PROGRESS_EVERY;
        }
        ControlFlow::Continue(())
    };
    let counts = retention::clean(&mut conn, r, now, &mut progress)?;
    print_counts(&counts, r, "deleted", "dropped");
    Ok(())
}

/// One line per part: how many, what, and older than how many days; the parts kept say so.
fn print_counts(
    counts: &[PartCount],
    settings: &crate::config::RetentionSettings,
    verb: &str,
    body_verb: &str,
) {
    for &part in Part::ALL {
        let Some(c) = counts.iter().find(|c| c.part == part) else {
            match part.cutoff(settings, db::now()) {
                None => println!("{:<15} kept (no {} setting)", part, setting(part)),
                Some(_) => println!("{:<15} not reached (the clean stopped)", part),
            }
            continue;
        };
        let days = days(part, settings);
        let verb = if part == Part::RequestBodies {
            body_verb
        } else {
            verb
        };
        let lines = if c.import_lines > 0 {
            format!(" and {} import lines", c.import_lines)
        } else {
            String::new()
        };
        println!(
            "{:<15} {} {}{lines} older than {days} days {verb}",
            part,
            c.rows,
            part.noun()
        );
    }
}

/// The setting that says how long `part` is kept.
fn setting(part: Part) -> &'static str {
    match part {
        Part::Requests => "retention.requests_days",
        Part::RequestBodies => "retention.request_bodies_days",
        Part::Exports => "retention.exports_days",
        Part::Rejections => "retention.rejections_days",
        Part::OutboundTasks => "retention.outbound_tasks_days",
        Part::FileExchanges => "retention.file_exchanges_days",
        Part::Incidents => "retention.incidents_days",
        Part::AlertMails => "a day (fixed: only the last hour counts)",
        Part::FeedEvents => "retention.feed_days",
        Part::AuditLog => "retention.audit_days",
        Part::ConsoleSessions => "a day without use (fixed)",
    }
}

/// The days `part` is kept (only called for parts that have a setting).
fn days(part: Part, s: &crate::config::RetentionSettings) -> i64 {
    part.days(s).unwrap_or(s.requests_days)
}
