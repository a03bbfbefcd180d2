//! What operating the file channels reads and writes of `file_exchanges`: the failed shipment
//! files support has not seen and their marking as seen, the files stuck in `processing/`, counts
//! for the console and the gauges, and retention of finished exchanges. The export and import
//! lanes write the rows ([`super::out`], [`super::inbound`]); nothing here takes part in a run.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{Direction, FileExchange, FileState};
use crate::db::DbConnection;
use crate::db::schema::file_exchanges as fx;

/// More runs than this found a shipment file still claimed: it is stuck in `processing/`.
pub const STUCK_AFTER_RUNS: i32 = 2;

type Db = <DbConnection as diesel::Connection>::Backend;

/// The states of an exchange that is over and needs nobody: an order file sent, a shipment file
/// applied or a repeat. (A failed file is over once support saw it: see [`finished_before`].)
pub const DONE: [FileState; 3] = [FileState::Sent, FileState::Applied, FileState::Repeat];

fn words(states: &[FileState]) -> Vec<&'static str> {
    states.iter().map(|s| s.as_str()).collect()
}

/// The failed shipment files of `channel` support has not seen: how many, and the oldest `limit`
/// (none read when `limit` is 0).
pub fn unseen_failed(
    conn: &mut DbConnection,
    channel: &str,
    limit: i64,
) -> QueryResult<(i64, Vec<FileExchange>)> {
    let unseen = || {
        fx::table
            .filter(fx::channel.eq(channel))
            .filter(fx::direction.eq(Direction::In.as_str()))
            .filter(fx::state.eq(FileState::Failed.as_str()))
            .filter(fx::seen_at.is_null())
    };
    let count = unseen().count().get_result(conn)?;
    if count == 0 || limit == 0 {
        return Ok((count, Vec::new()));
    }
    let rows = unseen()
        .order(fx::id)
        .limit(limit)
        .select(FileExchange::as_select())
        .load(conn)?;
    Ok((count, rows))
}

/// The shipment files of `channel` still claimed after more than [`STUCK_AFTER_RUNS`] runs found
/// them unfinished: how many, and the oldest `limit`.
pub fn stuck(
    conn: &mut DbConnection,
    channel: &str,
    limit: i64,
) -> QueryResult<(i64, Vec<FileExchange>)> {
    let stuck = || {
        fx::table
            .filter(fx::channel.eq(channel))
            .filter(fx::direction.eq(Direction::In.as_str()))
            .filter(fx::state.eq(FileState::Claimed.as_str()))
            .filter(fx::runs.gt(STUCK_AFTER_RUNS))
    };
    let count = stuck().count().get_result(conn)?;
    if count == 0 || limit == 0 {
        return Ok((count, Vec::new()));
    }
    let rows = stuck()
        .order(fx::id)
        .limit(limit)
        .select(FileExchange::as_select())
        .load(conn)?;
    Ok((count, rows))
}

/// Records that support saw failed file `id` (a compare-and-set: `false` when it is not a failed
/// shipment file, or was marked already).
pub fn mark_seen(conn: &mut DbConnection, id: i64, now: NaiveDateTime) -> QueryResult<bool> {
    let n = diesel::update(
        fx::table
            .find(id)
            .filter(fx::direction.eq(Direction::In.as_str()))
            .filter(fx::state.eq(FileState::Failed.as_str()))
            .filter(fx::seen_at.is_null()),
    )
    .set((fx::seen_at.eq(now), fx::updated_at.eq(now)))
    .execute(conn)?;
    Ok(n == 1)
}

/// Exchanges per (channel, direction, state), for the console's summary and the gauges.
pub fn state_counts(conn: &mut DbConnection) -> QueryResult<Vec<(String, String, String, i64)>> {
    fx::table
        .group_by((fx::channel, fx::direction, fx::state))
        .select((
            fx::channel,
            fx::direction,
            fx::state,
            diesel::dsl::count_star(),
        ))
        .order((fx::channel, fx::direction, fx::state))
        .load(conn)
}

/// Finished before `cutoff`, and needing nobody: done ([`DONE`]), or failed and seen by support.
/// (Unfinished rows and unseen failures stay, whatever their age.)
fn finished(cutoff: NaiveDateTime) -> fx::BoxedQuery<'static, Db> {
    fx::table
        .filter(fx::finished_at.lt(cutoff))
        .filter(
            fx::state.eq_any(words(&DONE)).or(fx::state
                .eq(FileState::Failed.as_str())
                .and(fx::seen_at.is_not_null())),
        )
        .into_boxed()
}

/// Up to `limit` ids of exchanges finished before `cutoff`, oldest first.
pub fn finished_before(
    conn: &mut DbConnection,
    cutoff: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<i64>> {
    finished(cutoff)
        .order(fx::finished_at)
        .limit(limit)
        .select(fx::id)
        .load(conn)
}

/// How many exchanges finished before `cutoff`.
pub fn count_finished_before(conn: &mut DbConnection, cutoff: NaiveDateTime) -> QueryResult<i64> {
    finished(cutoff).count().get_result(conn)
}

/// Deletes the exchanges `ids` that are still finished before `cutoff`. Returns how many.
pub fn delete_finished(
    conn: &mut DbConnection,
    ids: &[i64],
    cutoff: NaiveDateTime,
) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    let still: Vec<i64> = finished(cutoff)
        .filter(fx::id.eq_any(ids))
        .select(fx::id)
        .load(conn)?;
    if still.is_empty() {
        return Ok(0);
    }
    diesel::delete(fx::table.filter(fx::id.eq_any(&still))).execute(conn)
}

/// The orders that went out in order file `name` of `channel`: the subjects of the channel's
/// `order.insert` tasks whose batch is the file's name, in order.
pub fn orders_of_file(
    conn: &mut DbConnection,
    channel: &str,
    name: &str,
) -> QueryResult<Vec<String>> {
    use crate::db::schema::outbound_tasks as t;
    t::table
        .filter(t::channel.eq(channel))
        .filter(t::action.eq(crate::orders::export::ORDER_INSERT.action))
        .filter(t::batch_id.eq(name))
        .order(t::id)
        .select(t::subject)
        .load(conn)
}
