//! Retention: `wharf clean` and the in-process cleaner delete finished records older than their
//! configured days (`[retention]`), part by part, in small batches of one short write transaction
//! each, so the queue is never held up for long.
//!
//! **Nothing unfinished is ever deleted**: each domain's store selects only finished rows (a
//! processed request, a done, dismissed or skipped outbound task, a file exchange sent or applied), and its delete names the ids
//! selected *and* checks the finished state and the age again, so a request requeued or
//! reprocessed between the two survives. On PostgreSQL the selection locks the rows it takes and
//! skips those locked elsewhere, so two processes cleaning at once share the work instead of
//! waiting for each other; on SQLite every write transaction takes its turn.
//!
//! What stays: stock, orders, products, shipments (a shipment keeps its history, and keeps
//! refusing a duplicate of its message, when its request is gone), the latest warehouse task of
//! each order and product (views read it as their record), open incidents, and the feed's
//! recent events (`feed_days`: older ones go, and a reader behind them is told to reconcile).

mod background;

pub use background::run_every;

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, TimeDelta};
use diesel::QueryResult;

use crate::alerts::store as alerts;
use crate::audit;
use crate::channels::sftp::store::ops as file_exchanges;
use crate::config::RetentionSettings;
use crate::console::session as sessions;
use crate::db::{self, DbConnection};
use crate::feed::store as feed;
use crate::outbound::{self, exchange};
use crate::queue::store::clean as requests;

/// The outbound channels whose latest task per subject is kept whatever its age, as the subject's
/// record (the warehouse's: the order view reads an order's export and cancellation from it).
/// Other channels' finished tasks (alert mails) go once old.
const KEEP_LATEST: &[&str] = &[outbound::WAREHOUSE];

/// A console session not used for this many days has ended (the console's idle limit,
/// `console.session_idle_secs`, is hours; a longer one would see its idle sessions go after a day).
pub const SESSION_DAYS: i64 = 1;

crate::text_enum! {
    /// What the cleaner deletes, in the order it does it (requests before their bodies: a body
    /// whose row goes anyway need not be dropped first).
    pub enum Part: "retention part" {
        /// Processed requests, with their lines, import reports, support actions and failed
        /// attempts (`requests_days`).
        Requests = "requests",
        /// The raw XML of processed requests whose rows stay longer (`request_bodies_days`).
        RequestBodies = "request_bodies",
        /// Export exchanges and their lines (`exports_days`).
        Exports = "exports",
        /// Refused messages (`rejections_days`).
        Rejections = "rejections",
        /// Finished outbound tasks with their support actions (`outbound_tasks_days`).
        OutboundTasks = "outbound_tasks",
        /// File exchanges of the file channels that are over: order files sent, shipment files
        /// applied or repeated, failed ones support saw (`file_exchanges_days`).
        FileExchanges = "file_exchanges",
        /// Resolved incidents (`incidents_days`).
        Incidents = "incidents",
        /// The record of alert mails sent, kept for the hourly limit (a day, fixed).
        AlertMails = "alert_mails",
        /// Feed events (`feed_days`); a reader whose cursor is older is told to reconcile.
        FeedEvents = "feed_events",
        /// The audit log of support actions (`audit_days`).
        AuditLog = "audit_log",
        /// Console sessions that ended: not used for [`SESSION_DAYS`] (fixed).
        ConsoleSessions = "console_sessions",
    }
}

impl Part {
    /// What a count of this part means, for people.
    pub fn noun(self) -> &'static str {
        match self {
            Part::Requests => {
                "processed requests (with their lines, import reports, actions and errors)"
            }
            Part::RequestBodies => "raw bodies of processed requests",
            Part::Exports => "export exchanges (with their lines)",
            Part::Rejections => "refused messages",
            Part::OutboundTasks => "finished outbound tasks (with their support actions)",
            Part::FileExchanges => "finished file exchanges (order and shipment files)",
            Part::Incidents => "resolved incidents",
            Part::AlertMails => "records of alert mails sent (for the hourly limit)",
            Part::FeedEvents => "feed events",
            Part::AuditLog => "audit log rows (support actions)",
            Part::ConsoleSessions => "ended console sessions",
        }
    }

    /// The age setting of this part, in days (`None`: this part is kept).
    pub fn days(self, settings: &RetentionSettings) -> Option<i64> {
        match self {
            Part::Requests => Some(settings.requests_days),
            Part::RequestBodies => settings.request_bodies_days,
            Part::Exports => Some(settings.exports_days),
            Part::Rejections => Some(settings.rejections_days),
            Part::OutboundTasks => Some(settings.outbound_tasks_days),
            Part::FileExchanges => Some(settings.file_exchanges_days),
            Part::Incidents => Some(settings.incidents_days),
            // Only the last hour counts against `alerts.max_mails_per_hour`.
            Part::AlertMails => Some(1),
            Part::FeedEvents => settings.feed_days,
            Part::AuditLog => Some(settings.audit_days),
            Part::ConsoleSessions => Some(SESSION_DAYS),
        }
    }

    /// Older than this is deleted, `now` minus the part's days (`None`: the part is kept).
    pub fn cutoff(self, settings: &RetentionSettings, now: NaiveDateTime) -> Option<NaiveDateTime> {
        self.days(settings).map(|d| now - TimeDelta::days(d))
    }
}

/// What one part of a clean found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartCount {
    /// The part.
    pub part: Part,
    /// Rows deleted (bodies dropped), or for a dry run, rows that would go.
    pub rows: i64,
    /// Import lines deleted with the requests (0 for other parts and for a dry run).
    pub import_lines: i64,
}

/// Where a clean stands, given to its progress callback after every batch.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// The part being cleaned.
    pub part: Part,
    /// Rows of this part deleted so far.
    pub rows: i64,
    /// Batches done so far, all parts.
    pub batches: u64,
    /// Since the clean started.
    pub elapsed: Duration,
}

/// How many rows each part would delete at `now`, without deleting anything (`--dry-run`).
pub fn count(
    conn: &mut DbConnection,
    settings: &RetentionSettings,
    now: NaiveDateTime,
) -> QueryResult<Vec<PartCount>> {
    let mut counts = Vec::new();
    for &part in Part::ALL {
        let Some(cutoff) = part.cutoff(settings, now) else {
            continue;
        };
        let rows = match part {
            Part::Requests => requests::count_finished_before(conn, cutoff)?,
            Part::RequestBodies => {
                // Bodies of rows that go with the requests are not counted twice.
                let rows_cutoff = Part::Requests.cutoff(settings, now).unwrap_or(cutoff);
                requests::count_bodies_before(conn, cutoff)?
                    - requests::count_bodies_before(conn, rows_cutoff.min(cutoff))?
            }
            Part::Exports => exchange::count_exports_before(conn, cutoff)?,
            Part::Rejections => requests::count_rejections_before(conn, cutoff)?,
            Part::OutboundTasks => outbound::count_finished_before(conn, cutoff, KEEP_LATEST)?,
            Part::FileExchanges => file_exchanges::count_finished_before(conn, cutoff)?,
            Part::Incidents => alerts::count_resolved_before(conn, cutoff)?,
            Part::AlertMails => alerts::count_mail_slots_before(conn, cutoff)?,
            Part::FeedEvents => feed::count_events_before(conn, cutoff)?,
            Part::AuditLog => audit::count_recorded_before(conn, cutoff)?,
            Part::ConsoleSessions => sessions::count_unused_before(conn, cutoff)?,
        };
        counts.push(PartCount {
            part,
            rows,
            import_lines: 0,
        });
    }
    Ok(counts)
}

/// Deletes what is older than the settings' days at `now`, part by part, `batch_size` rows per
/// transaction, calling `progress` after every batch; `progress` returning `Break` stops the clean
/// between two batches (at shutdown). Each batch's rows are counted in
/// `wharf_retention_deleted_rows_total`. Returns what each part deleted.
pub fn clean(
    conn: &mut DbConnection,
    settings: &RetentionSettings,
    now: NaiveDateTime,
    progress: &mut dyn FnMut(&Progress) -> ControlFlow<()>,
) -> QueryResult<Vec<PartCount>> {
    let started = Instant::now();
    let limit = settings.batch_size.max(1);
    let mut batches = 0u64;
    let mut done = Vec::new();
    for &part in Part::ALL {
        let Some(cutoff) = part.cutoff(settings, now) else {
            continue;
        };
        let mut count = PartCount {
            part,
            rows: 0,
            import_lines: 0,
        };
        let stopped = loop {
            let began = Instant::now();
            let (rows, lines) = db::write_tx(conn, |c| batch(c, part, cutoff, limit))?;
            if rows == 0 {
                break false;
            }
            let_writers_in(conn, began.elapsed());
            count.rows += rows as i64;
            count.import_lines += lines as i64;
            batches += 1;
            counted(part, rows, lines);
            let p = Progress {
                part,
                rows: count.rows,
                batches,
                elapsed: started.elapsed(),
            };
            if progress(&p).is_break() {
                break true;
            }
        };
        done.push(count);
        if stopped {
            break;
        }
    }
    Ok(done)
}

/// On SQLite, pauses after a batch as long as the batch held the write lock: the one writer's lock
/// is not handed over in turn (a thread that releases it and asks again at once usually gets it
/// back), so a cleaner going from batch to batch would keep receipts waiting until it is done.
/// Pausing gives the writers that queued meanwhile at least half the time. PostgreSQL locks rows,
/// not the database: receipts never wait for the cleaner there.
fn let_writers_in(conn: &DbConnection, held: Duration) {
    if let DbConnection::Sqlite(_) = conn {
        std::thread::sleep(held);
    }
}

/// One batch of `part`: select up to `limit` ids older than `cutoff`, delete those still finished
/// and old. Returns (rows deleted or bodies dropped, import lines deleted). A batch that selected
/// rows but deleted none (all changed meanwhile) returns 0 and ends the part: they are no longer
/// finished, and the next run looks again.
fn batch(
    conn: &mut DbConnection,
    part: Part,
    cutoff: NaiveDateTime,
    limit: i64,
) -> QueryResult<(usize, usize)> {
    Ok(match part {
        Part::Requests => {
            let ids = requests::finished_before(conn, cutoff, limit)?;
            let deleted = requests::delete_finished(conn, &ids, cutoff)?;
            let lines = crate::imports::store::delete_lines_of(conn, &deleted)?;
            (deleted.len(), lines)
        }
        Part::RequestBodies => {
            let ids = requests::bodies_before(conn, cutoff, limit)?;
            (requests::drop_bodies(conn, &ids, cutoff)?, 0)
        }
        Part::Exports => {
            let ids = exchange::exports_before(conn, cutoff, limit)?;
            (exchange::delete_exports(conn, &ids, cutoff)?, 0)
        }
        Part::Rejections => {
            let ids = requests::rejections_before(conn, cutoff, limit)?;
            (requests::delete_rejections(conn, &ids, cutoff)?, 0)
        }
        Part::OutboundTasks => {
            let ids = outbound::finished_before(conn, cutoff, KEEP_LATEST, limit)?;
            (outbound::delete_finished(conn, &ids, cutoff)?, 0)
        }
        Part::FileExchanges => {
            let ids = file_exchanges::finished_before(conn, cutoff, limit)?;
            (file_exchanges::delete_finished(conn, &ids, cutoff)?, 0)
        }
        Part::Incidents => {
            let ids = alerts::resolved_before(conn, cutoff, limit)?;
            (alerts::delete_resolved(conn, &ids, cutoff)?, 0)
        }
        Part::AlertMails => {
            let ids = alerts::mail_slots_before(conn, cutoff, limit)?;
            (alerts::delete_mail_slots(conn, &ids)?, 0)
        }
        Part::FeedEvents => {
            let ids = feed::events_before(conn, cutoff, limit)?;
            (feed::delete_events(conn, &ids)?, 0)
        }
        Part::AuditLog => {
            let ids = audit::recorded_before(conn, cutoff, limit)?;
            (audit::delete_recorded(conn, &ids, cutoff)?, 0)
        }
        Part::ConsoleSessions => {
            let ids = sessions::unused_before(conn, cutoff, limit)?;
            (sessions::delete_unused(conn, &ids, cutoff)?, 0)
        }
    })
}

/// Counts deleted rows by table (dropped bodies are not rows deleted, so they are not counted).
fn counted(part: Part, rows: usize, import_lines: usize) {
    let table = match part {
        Part::Requests => "requests",
        Part::RequestBodies => return,
        Part::Exports => "exports",
        Part::Rejections => "rejections",
        Part::OutboundTasks => "outbound_tasks",
        Part::FileExchanges => "file_exchanges",
        Part::Incidents => "incidents",
        Part::AlertMails => "alert_mails",
        Part::FeedEvents => "feed_events",
        Part::AuditLog => "audit_log",
        Part::ConsoleSessions => "console_sessions",
    };
    metrics::counter!(crate::metrics::RETENTION_DELETED_ROWS, "table" => table)
        .increment(rows as u64);
    if import_lines > 0 {
        metrics::counter!(crate::metrics::RETENTION_DELETED_ROWS, "table" => "import_lines")
            .increment(import_lines as u64);
    }
}
