//! The SQL that differs between PostgreSQL and SQLite, in one place.
//!
//! Everything else is written once with the diesel DSL over [`DbConnection`] (or, where diesel needs
//! the concrete connection type, once inside [`with_backend!`](crate::with_backend)).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::DbConnection;
use super::schema::requests;

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
        let ids: Vec<i64> = crate::load_skip_locked!(
            conn,
            requests::table
                .filter(due)
                .order(r::id)
                .limit(limit)
                .select(r::id)
        )?;
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
