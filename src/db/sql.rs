//! The SQL that differs between PostgreSQL and SQLite, in one place.
//!
//! Everything else is written once with the diesel DSL over [`DbConnection`].

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text, Timestamp};

use super::DbConnection;
use super::schema::requests;

/// The key of a stock row.
#[derive(Debug, QueryableByName, PartialEq, Eq, Hash)]
pub struct StockKey {
    /// SKU.
    #[diesel(sql_type = Text)]
    pub sku: String,
    /// Stock source.
    #[diesel(sql_type = Text)]
    pub source: String,
}

/// Applies every inventory line of a request to `stock` in one statement: a line is written only if
/// its sequence id is above the row's high-water mark (or the row is new). The check and the write are
/// one conditional upsert, so concurrent workers applying messages out of order still leave the newest
/// value. Rows are touched in (SKU, source) order so two workers never wait on each other in a cycle.
/// Returns the keys that were written.
pub fn upsert_stock_from_request(
    conn: &mut DbConnection,
    request_id: i64,
    allow_negative: bool,
    now: NaiveDateTime,
) -> QueryResult<Vec<StockKey>> {
    match conn {
        DbConnection::Postgresql(c) => diesel::sql_query(
            "INSERT INTO stock (sku, source, qty, last_seq, updated_at) \
             SELECT sku, source, CASE WHEN qty < 0 AND NOT $2 THEN 0 ELSE qty END, seq, $3 \
             FROM request_lines WHERE request_id = $1 AND seq IS NOT NULL ORDER BY sku, source \
             ON CONFLICT (sku, source) DO UPDATE SET qty = EXCLUDED.qty, \
               last_seq = EXCLUDED.last_seq, updated_at = EXCLUDED.updated_at \
             WHERE stock.last_seq < EXCLUDED.last_seq \
             RETURNING sku, source",
        )
        .bind::<BigInt, _>(request_id)
        .bind::<Bool, _>(allow_negative)
        .bind::<Timestamp, _>(now)
        .load(c),
        // SQLite needs a WHERE in the SELECT of an upsert (parsing ambiguity with ON); it has one.
        DbConnection::Sqlite(c) => diesel::sql_query(
            "INSERT INTO stock (sku, source, qty, last_seq, updated_at) \
             SELECT sku, source, CASE WHEN qty < 0 AND NOT ? THEN 0 ELSE qty END, seq, ? \
             FROM request_lines WHERE request_id = ? AND seq IS NOT NULL ORDER BY sku, source \
             ON CONFLICT (sku, source) DO UPDATE SET qty = excluded.qty, \
               last_seq = excluded.last_seq, updated_at = excluded.updated_at \
             WHERE stock.last_seq < excluded.last_seq \
             RETURNING sku, source",
        )
        .bind::<Bool, _>(allow_negative)
        .bind::<Timestamp, _>(now)
        .bind::<BigInt, _>(request_id)
        .load(c),
    }
}

/// A request taken by a worker.
#[derive(Debug, Clone, Queryable)]
pub struct Claimed {
    /// Request id.
    pub id: i64,
    /// Operation (`inventory.update`, …).
    pub operation: String,
    /// The warehouse's message sequence id.
    pub message_seq_id: i64,
    /// Attempts including this one.
    pub attempts: i32,
}

/// Claims up to `limit` requests of the given operations that are due (queued and past their retry
/// time, or held under a lease that has expired), oldest first, for `owner` until `lease_until`.
/// PostgreSQL skips rows another worker is claiming right now (`FOR UPDATE SKIP LOCKED`); SQLite
/// serialises claimers with `BEGIN IMMEDIATE`.
pub fn claim_due(
    conn: &mut DbConnection,
    operations: &[&str],
    owner: &str,
    limit: i64,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> QueryResult<Vec<Claimed>> {
    use requests::dsl as r;
    super::write_tx(conn, |conn| {
        let due = r::operation.eq_any(operations).and(
            (r::state.eq("queued").and(r::next_attempt_at.le(now)))
                .or(r::state.eq("processing").and(r::lease_expires_at.lt(now))),
        );
        let ids: Vec<i64> = match conn {
            DbConnection::Postgresql(c) => requests::table
                .filter(due)
                .order(r::id)
                .limit(limit)
                .select(r::id)
                .for_update()
                .skip_locked()
                .load(c)?,
            DbConnection::Sqlite(c) => requests::table
                .filter(due)
                .order(r::id)
                .limit(limit)
                .select(r::id)
                .load(c)?,
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut claimed: Vec<Claimed> = crate::with_backend!(conn, |c| diesel::update(
            requests::table.filter(r::id.eq_any(&ids))
        )
        .set((
            r::state.eq("processing"),
            r::lease_owner.eq(owner),
            r::lease_expires_at.eq(lease_until),
            r::attempts.eq(r::attempts + 1),
        ))
        .returning((r::id, r::operation, r::message_seq_id, r::attempts))
        .get_results(c))?;
        claimed.sort_by_key(|c| c.id);
        Ok(claimed)
    })
}
