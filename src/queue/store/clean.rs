//! The queue's retention SQL: which finished requests, bodies and refusals are older than a cutoff,
//! and their deletion. Each delete names the ids it was given **and** checks the finished state and
//! the age again, so a request requeued or reprocessed between the selection and the delete
//! survives. `crate::retention` runs these in batches.

use chrono::NaiveDateTime;
use diesel::dsl::count_star;
use diesel::prelude::*;

use super::super::RequestState;
use crate::db::DbConnection;
use crate::db::schema::{rejections, request_lines, requests};

/// The only finished state: nothing queued, processing or dead is ever selected here.
const FINISHED: RequestState = RequestState::Processed;

/// `state = 'processed' AND processed_at < $cutoff` for a statement that also names the ids: the
/// condition is wrapped in `( … ) IS TRUE` (the same truth on both backends) so that SQLite's
/// planner, which keeps no statistics, finds the rows by primary key instead of walking the age
/// index over every old request for each batch.
macro_rules! recheck {
    ($cutoff:expr) => {
        diesel::dsl::sql::<diesel::sql_types::Bool>("(requests.state = ")
            .bind::<diesel::sql_types::Text, _>(FINISHED.as_str())
            .sql(" AND requests.processed_at < ")
            .bind::<diesel::sql_types::Timestamp, _>($cutoff)
            .sql(") IS TRUE")
    };
}

/// Up to `limit` requests processed before `cutoff`, oldest first (locked on PostgreSQL, skipping
/// rows another cleaner or a support action holds).
pub fn finished_before(
    conn: &mut DbConnection,
    cutoff: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<i64>> {
    crate::load_skip_locked!(
        conn,
        requests::table
            .filter(requests::state.eq(FINISHED.as_str()))
            .filter(requests::processed_at.lt(cutoff))
            .order((requests::processed_at, requests::id))
            .limit(limit)
            .select(requests::id)
    )
}

/// How many requests processed before `cutoff` there are.
pub fn count_finished_before(conn: &mut DbConnection, cutoff: NaiveDateTime) -> QueryResult<i64> {
    requests::table
        .filter(requests::state.eq(FINISHED.as_str()))
        .filter(requests::processed_at.lt(cutoff))
        .select(count_star())
        .get_result(conn)
}

/// Deletes those of `ids` that are still processed before `cutoff`, with their lines and
/// everything keyed by them that the foreign keys cascade to (shipment header and tracking numbers,
/// import report header, support actions and the reports they replaced, failed attempts); the
/// shipments they created stay, without their request. Returns the ids deleted; the caller deletes
/// their import lines ([`crate::imports::store::delete_lines_of`]) in the same transaction.
///
/// Lines are deleted here rather than by a foreign key: on PostgreSQL they have none, since its
/// per-line check was half the cost of storing a line at receipt (SQLite's cascade finds them gone).
pub fn delete_finished(
    conn: &mut DbConnection,
    ids: &[i64],
    cutoff: NaiveDateTime,
) -> QueryResult<Vec<i64>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let still_finished = requests::table
        .filter(requests::id.eq_any(ids))
        .filter(recheck!(cutoff));
    let deleted: Vec<i64> = crate::with_backend!(conn, |c| diesel::delete(still_finished)
        .returning(requests::id)
        .get_results(c))?;
    diesel::delete(request_lines::table.filter(request_lines::request_id.eq_any(&deleted)))
        .execute(conn)?;
    Ok(deleted)
}

/// Up to `limit` requests processed before `cutoff` that still have their body, oldest first.
pub fn bodies_before(
    conn: &mut DbConnection,
    cutoff: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<i64>> {
    crate::load_skip_locked!(
        conn,
        requests::table
            .filter(requests::body.is_not_null())
            .filter(requests::state.eq(FINISHED.as_str()))
            .filter(requests::processed_at.lt(cutoff))
            .order((requests::processed_at, requests::id))
            .limit(limit)
            .select(requests::id)
    )
}

/// How many requests processed before `cutoff` still have their body.
pub fn count_bodies_before(conn: &mut DbConnection, cutoff: NaiveDateTime) -> QueryResult<i64> {
    requests::table
        .filter(requests::body.is_not_null())
        .filter(requests::state.eq(FINISHED.as_str()))
        .filter(requests::processed_at.lt(cutoff))
        .select(count_star())
        .get_result(conn)
}

/// Drops the raw bodies of those of `ids` still processed before `cutoff` (the rows, lines and
/// reports stay; only the XML received goes). Returns how many bodies were dropped.
pub fn drop_bodies(
    conn: &mut DbConnection,
    ids: &[i64],
    cutoff: NaiveDateTime,
) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::update(
        requests::table
            .filter(requests::id.eq_any(ids))
            .filter(requests::body.is_not_null())
            .filter(recheck!(cutoff)),
    )
    .set(requests::body.eq(None::<String>))
    .execute(conn)
}

/// Up to `limit` refusals received before `cutoff`, oldest first.
pub fn rejections_before(
    conn: &mut DbConnection,
    cutoff: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<i64>> {
    crate::load_skip_locked!(
        conn,
        rejections::table
            .filter(rejections::received_at.lt(cutoff))
            .order((rejections::received_at, rejections::id))
            .limit(limit)
            .select(rejections::id)
    )
}

/// How many refusals were received before `cutoff`.
pub fn count_rejections_before(conn: &mut DbConnection, cutoff: NaiveDateTime) -> QueryResult<i64> {
    rejections::table
        .filter(rejections::received_at.lt(cutoff))
        .select(count_star())
        .get_result(conn)
}

/// Deletes those of `ids` received before `cutoff`. Returns how many.
pub fn delete_rejections(
    conn: &mut DbConnection,
    ids: &[i64],
    cutoff: NaiveDateTime,
) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::delete(
        rejections::table
            .filter(rejections::id.eq_any(ids))
            .filter(rejections::received_at.lt(cutoff)),
    )
    .execute(conn)
}
