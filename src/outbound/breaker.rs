//! The circuit breaker of a channel: consecutive exchanges the other side did not answer; at
//! `breaker_threshold` the channel's tasks behind that breaker pause for `breaker_pause_secs`. A
//! channel names its breakers (the warehouse has `order`, shared by orders and cancellations, and
//! `product`: they pause apart, as they always did).
//!
//! Any number of exporters in any number of processes settle batches at the same moment, so a
//! failure is counted by one atomic upsert (`INSERT … ON CONFLICT DO UPDATE … RETURNING`), never by
//! reading the count and writing it back: the upsert holds the row lock until the settling
//! transaction commits, so the pause decided from the returned count is the only one.

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::export_breakers;
use crate::telemetry::Escaped;

/// What the breakers of order channels (`[[channels]]`) are keyed by, before the channel's name
/// (the warehouse's are `order` and `product`).
pub const CHANNEL_BREAKER_PREFIX: &str = "channel:";

/// The breaker key of order channel `name`: the one its sender counts failures on, and the one
/// alerts, metrics, the CLI and the console read.
pub fn channel_breaker_key(name: &str) -> String {
    format!("{CHANNEL_BREAKER_PREFIX}{name}")
}

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerState {
    /// Batches in a row the warehouse did not answer.
    pub failures: i32,
    /// Exports are paused until then (when in the future).
    pub paused_until: Option<NaiveDateTime>,
}

impl BreakerState {
    /// Whether exports are paused at `now`.
    pub fn is_open(&self, now: NaiveDateTime) -> bool {
        self.paused_until.is_some_and(|t| t > now)
    }
}

/// The breaker's state when it is open at `now`.
pub fn open_at(
    conn: &mut DbConnection,
    kind: &str,
    now: NaiveDateTime,
) -> QueryResult<Option<BreakerState>> {
    Ok(state(conn, kind)?.filter(|b| b.is_open(now)))
}

fn state(conn: &mut DbConnection, kind: &str) -> QueryResult<Option<BreakerState>> {
    let row: Option<(i32, Option<NaiveDateTime>)> = export_breakers::table
        .find(kind)
        .select((
            export_breakers::consecutive_failures,
            export_breakers::paused_until,
        ))
        .first(conn)
        .optional()?;
    Ok(row.map(|(failures, paused_until)| BreakerState {
        failures,
        paused_until,
    }))
}

/// Counts one more failed batch and opens the breaker for `pause_secs` at `threshold`. Returns
/// the new state.
pub fn record_failure(
    conn: &mut DbConnection,
    kind: &str,
    threshold: i32,
    pause_secs: i64,
    now: NaiveDateTime,
) -> QueryResult<BreakerState> {
    let failures: i32 =
        crate::with_backend!(&mut *conn, |c| diesel::insert_into(export_breakers::table)
            .values((
                export_breakers::kind.eq(kind),
                export_breakers::consecutive_failures.eq(1),
            ))
            .on_conflict(export_breakers::kind)
            .do_update()
            .set(
                export_breakers::consecutive_failures.eq(export_breakers::consecutive_failures + 1)
            )
            .returning(export_breakers::consecutive_failures)
            .get_result(c))?;
    let mut paused_until = None;
    if failures >= threshold {
        // Still under the row lock the upsert took: no other settle can count in between.
        let until = now + TimeDelta::seconds(pause_secs);
        diesel::update(export_breakers::table.find(kind))
            .set(export_breakers::paused_until.eq(Some(until)))
            .execute(conn)?;
        paused_until = Some(until);
    }
    Ok(BreakerState {
        failures,
        paused_until,
    })
}

/// The warehouse answered: the count starts again.
pub fn reset(conn: &mut DbConnection, kind: &str) -> QueryResult<()> {
    diesel::delete(export_breakers::table.find(kind)).execute(conn)?;
    Ok(())
}

/// Every breaker that counts failures, by kind (`order`, `product`).
pub fn breakers(conn: &mut DbConnection) -> QueryResult<Vec<(String, BreakerState)>> {
    let rows: Vec<(String, i32, Option<NaiveDateTime>)> = export_breakers::table
        .order(export_breakers::kind)
        .select((
            export_breakers::kind,
            export_breakers::consecutive_failures,
            export_breakers::paused_until,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(kind, failures, paused_until)| {
            (
                kind,
                BreakerState {
                    failures,
                    paused_until,
                },
            )
        })
        .collect())
}

/// Logs a batch the warehouse did not answer: at ERROR when it opened the breaker.
pub fn log_failure(kind: &str, b: &BreakerState, error: &str, now: NaiveDateTime) {
    let error = Escaped(error);
    let failures = b.failures;
    match b.paused_until.filter(|_| b.is_open(now)) {
        Some(until) => {
            tracing::error!(kind, failures, until = %until.format("%Y-%m-%d %H:%M:%S"), error = %error,
            "breaker open: {kind} exports paused until {} UTC after {failures} failed batches \
             ({error}); they resume by themselves, check the warehouse meanwhile",
            until.format("%Y-%m-%d %H:%M:%S"))
        }
        None => tracing::warn!(
            kind,
            failures,
            error = %error,
            "{kind} export batch not answered ({error}); {failures} in a row so far"
        ),
    }
}
