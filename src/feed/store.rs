//! The feed's SQL: the one-row counter that hands out ids, the events, and their reads. Nothing
//! else writes `feed_counter` or `feed_events`.

use chrono::NaiveDateTime;
use diesel::pg::CopyFormat;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::copy::CopyRows;
use crate::db::schema::{feed_counter, feed_events, feed_pruned};

/// Moves the counter on by `n` and returns the last id it hands out (ids `last - n + 1 ..= last`
/// are this transaction's). Its row stays locked until the transaction ends.
pub fn bump_counter(conn: &mut DbConnection, n: i64) -> QueryResult<i64> {
    crate::with_backend!(&mut *conn, |c| diesel::update(feed_counter::table.find(1))
        .set(feed_counter::last_id.eq(feed_counter::last_id + n))
        .returning(feed_counter::last_id)
        .get_result(c))
}

/// The counter as it stands: the id of the newest committed event (0 while the feed is empty).
pub fn counter(conn: &mut DbConnection) -> QueryResult<i64> {
    feed_counter::table
        .find(1)
        .select(feed_counter::last_id)
        .first(conn)
}

/// A stored event.
#[derive(Debug, Clone, Queryable)]
pub struct EventRow {
    /// Position in the feed.
    pub id: i64,
    /// Its kind.
    pub kind: String,
    /// Its data, as JSON text.
    pub payload: String,
    /// When it was written.
    pub created_at: NaiveDateTime,
}

/// Events with id above `after`, oldest first, at most `limit`.
pub fn events_after(conn: &mut DbConnection, after: i64, limit: i64) -> QueryResult<Vec<EventRow>> {
    feed_events::table
        .filter(feed_events::id.gt(after))
        .order(feed_events::id)
        .limit(limit)
        .select((
            feed_events::id,
            feed_events::kind,
            feed_events::payload,
            feed_events::created_at,
        ))
        .load(conn)
}

/// Stores feed events `(kind, payload)` with ids `first_id`, `first_id + 1`, …: on PostgreSQL with
/// one binary `COPY`, on SQLite in multi-row inserts.
pub fn insert_feed_events(
    conn: &mut DbConnection,
    first_id: i64,
    events: &[(&str, String)],
    now: NaiveDateTime,
) -> QueryResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    match conn {
        DbConnection::Postgresql(c) => {
            let mut rows = CopyRows::new();
            for (i, (kind, payload)) in events.iter().enumerate() {
                rows.row(4)
                    .int8(first_id + i as i64)
                    .text(kind)
                    .text(payload)
                    .timestamp(now);
            }
            let data = rows.finish();
            diesel::copy_from(feed_events::table)
                .from_raw_data(feed_events::table, |sink| data.write(sink))
                .with_format(CopyFormat::Binary)
                .execute(c)?;
        }
        DbConnection::Sqlite(c) => {
            let rows: Vec<_> = events
                .iter()
                .enumerate()
                .map(|(i, (kind, payload))| {
                    (
                        feed_events::id.eq(first_id + i as i64),
                        feed_events::kind.eq(*kind),
                        feed_events::payload.eq(payload.as_str()),
                        feed_events::created_at.eq(now),
                    )
                })
                .collect();
            for chunk in rows.chunks(1000) {
                diesel::insert_into(feed_events::table)
                    .values(chunk)
                    .execute(c)?;
            }
        }
    }
    Ok(())
}

/// The highest id retention deleted (0: none): a reader whose cursor is below it missed events.
pub fn pruned_through(conn: &mut DbConnection) -> QueryResult<i64> {
    feed_pruned::table
        .find(1)
        .select(feed_pruned::through_id)
        .first(conn)
}

/// Up to `limit` of the oldest events written before `cutoff` (retention). The id order walks the
/// primary key from the start, where the old events are, so no index on the time is needed.
pub fn events_before(
    conn: &mut DbConnection,
    cutoff: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<i64>> {
    feed_events::table
        .filter(feed_events::created_at.lt(cutoff))
        .order(feed_events::id)
        .limit(limit)
        .select(feed_events::id)
        .load(conn)
}

/// How many events were written before `cutoff`.
pub fn count_events_before(conn: &mut DbConnection, cutoff: NaiveDateTime) -> QueryResult<i64> {
    feed_events::table
        .filter(feed_events::created_at.lt(cutoff))
        .count()
        .get_result(conn)
}

/// Deletes the events `ids` and moves the pruned mark up to the highest of them, in the caller's
/// transaction. Returns how many were deleted.
pub fn delete_events(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<usize> {
    let Some(&highest) = ids.iter().max() else {
        return Ok(0);
    };
    let n = diesel::delete(feed_events::table.filter(feed_events::id.eq_any(ids))).execute(conn)?;
    diesel::update(
        feed_pruned::table
            .find(1)
            .filter(feed_pruned::through_id.lt(highest)),
    )
    .set(feed_pruned::through_id.eq(highest))
    .execute(conn)?;
    Ok(n)
}
