//! When each background job last ran well and last failed, whichever process ran it (table
//! `background_runs`): the dashboard, `/metrics` and `wharf check` read it, so every process tells
//! the same story.
//!
//! A busy job succeeds many times a second (the worker polls every 500 ms); writing each success
//! would put a write on the database for nothing, so a process writes a job's success at most once
//! per [`OK_EVERY`]. Failures are always written.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::upsert::excluded;

use crate::db::schema::background_runs as r;
use crate::db::{DbConnection, text_enum};

crate::text_enum! {
    /// A background job.
    pub enum Job: "background job" {
        /// The worker applying queued requests.
        Worker = "worker",
        /// The warehouse order export.
        ExportOrders = "export.orders",
        /// The warehouse product export.
        ExportProducts = "export.products",
        /// The warehouse cancellations.
        ExportCancellations = "export.cancellations",
        /// The alert monitor checking incident conditions.
        Alerts = "alerts",
        /// Alert mail delivery.
        Mail = "mail",
        /// The retention cleaner.
        Cleaner = "cleaner",
    }
}

/// The longest a success goes unwritten in one process.
pub const OK_EVERY: Duration = Duration::from_secs(10);

/// What is known of one job.
#[derive(Debug, Clone)]
pub struct Run {
    /// The job.
    pub job: Job,
    /// Its last success.
    pub last_ok_at: Option<NaiveDateTime>,
    /// Its last failure.
    pub last_failed_at: Option<NaiveDateTime>,
    /// Why it failed last.
    pub last_error: Option<String>,
}

fn written() -> &'static Mutex<HashMap<Job, Instant>> {
    static WRITTEN: OnceLock<Mutex<HashMap<Job, Instant>>> = OnceLock::new();
    WRITTEN.get_or_init(Mutex::default)
}

/// Whether this process should write a success of `job` now (not written in the last
/// [`OK_EVERY`]); notes it as written when so.
fn ok_due(job: Job) -> bool {
    let Ok(mut map) = written().lock() else {
        return true;
    };
    let now = Instant::now();
    match map.get(&job) {
        Some(at) if now.duration_since(*at) < OK_EVERY => false,
        _ => {
            map.insert(job, now);
            true
        }
    }
}

/// Whether a success of `job` would be written now (callers that must take a connection for it
/// ask first, so an idle loop does not take one every poll).
pub fn ok_wanted(job: Job) -> bool {
    written()
        .lock()
        .map(|map| map.get(&job).is_none_or(|at| at.elapsed() >= OK_EVERY))
        .unwrap_or(true)
}

/// Records that `job` ran well at `now` (at most once per [`OK_EVERY`] per process).
pub fn ok(conn: &mut DbConnection, job: Job, now: NaiveDateTime) -> QueryResult<()> {
    if !ok_due(job) {
        return Ok(());
    }
    crate::with_backend!(&mut *conn, |c| diesel::insert_into(r::table)
        .values((
            r::job.eq(job.as_str()),
            r::last_ok_at.eq(Some(now)),
            r::updated_at.eq(now),
        ))
        .on_conflict(r::job)
        .do_update()
        .set((
            r::last_ok_at.eq(excluded(r::last_ok_at)),
            r::updated_at.eq(excluded(r::updated_at)),
        ))
        .execute(c))?;
    Ok(())
}

/// Records that `job` failed at `now` with `error`.
pub fn failed(
    conn: &mut DbConnection,
    job: Job,
    error: &str,
    now: NaiveDateTime,
) -> QueryResult<()> {
    crate::with_backend!(&mut *conn, |c| diesel::insert_into(r::table)
        .values((
            r::job.eq(job.as_str()),
            r::last_failed_at.eq(Some(now)),
            r::last_error.eq(Some(error)),
            r::updated_at.eq(now),
        ))
        .on_conflict(r::job)
        .do_update()
        .set((
            r::last_failed_at.eq(excluded(r::last_failed_at)),
            r::last_error.eq(excluded(r::last_error)),
            r::updated_at.eq(excluded(r::updated_at)),
        ))
        .execute(c))?;
    Ok(())
}

/// Records how a run of `job` ended: [`ok`] or [`failed`] (with the error's chain).
pub fn record(
    conn: &mut DbConnection,
    job: Job,
    outcome: &anyhow::Result<()>,
    now: NaiveDateTime,
) -> QueryResult<()> {
    match outcome {
        Ok(()) => ok(conn, job, now),
        Err(e) => failed(conn, job, &format!("{e:#}"), now),
    }
}

/// A row of `background_runs`: job, last success, last failure, last error.
type RunRow = (
    String,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    Option<String>,
);

/// Every job that ran at least once, in [`Job::ALL`] order.
pub fn all(conn: &mut DbConnection) -> QueryResult<Vec<Run>> {
    let rows: Vec<RunRow> = r::table
        .select((r::job, r::last_ok_at, r::last_failed_at, r::last_error))
        .load(conn)?;
    let mut runs = Vec::with_capacity(rows.len());
    for (job, last_ok_at, last_failed_at, last_error) in rows {
        // A job this build does not know (written by a newer process) is left out.
        if let Ok(job) = text_enum::read::<Job>(&job) {
            runs.push(Run {
                job,
                last_ok_at,
                last_failed_at,
                last_error,
            });
        }
    }
    runs.sort_by_key(|run| Job::ALL.iter().position(|j| *j == run.job));
    Ok(runs)
}
