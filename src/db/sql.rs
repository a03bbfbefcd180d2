//! The SQL that differs between PostgreSQL and SQLite, in one place.
//!
//! Everything else is written once with the diesel DSL over [`DbConnection`] (or, where diesel needs
//! the concrete connection type, once inside [`with_backend!`](crate::with_backend)).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Timestamp};

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
    /// Lines (SKUs, or shipment lines) the request carries.
    pub line_count: i32,
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
        .returning((
            r::id,
            r::operation,
            r::message_seq_id,
            r::attempts,
            r::line_count,
        ))
        .get_results(c))?;
        claimed.sort_by_key(|c| c.id);
        Ok(claimed)
    })
}

/// Waits for this transaction's turn on an advisory lock held until commit (PostgreSQL; a prepared
/// statement, cached per connection). Receipts of one (operation, messageSeqId) take turns on it.
#[derive(Debug, Clone, Copy)]
pub struct AdvisoryXactLock(pub i32, pub i32);

impl QueryId for AdvisoryXactLock {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Pg> for AdvisoryXactLock {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("SELECT pg_advisory_xact_lock(");
        out.push_bind_param::<Integer, _>(&self.0)?;
        out.push_sql(", ");
        out.push_bind_param::<Integer, _>(&self.1)?;
        out.push_sql(")");
        Ok(())
    }
}

impl RunQueryDsl<PgConnection> for AdvisoryXactLock {}

/// An inventory message to store on receipt.
#[derive(Debug)]
pub struct InventoryReceipt<'a> {
    /// The operation (`inventory.update`).
    pub operation: &'a str,
    /// The warehouse's message sequence id.
    pub message_seq_id: i64,
    /// Who sent it.
    pub caller: &'a str,
    /// The whole body.
    pub body: &'a str,
    /// Its SHA-256, hex.
    pub body_hash: &'a str,
    /// Received at.
    pub now: NaiveDateTime,
    /// Number of lines.
    pub line_count: i32,
    /// The lines, column by column.
    pub skus: Vec<&'a str>,
    /// Stock source per line.
    pub sources: Vec<&'a str>,
    /// Quantity per line.
    pub qtys: Vec<i32>,
    /// Sequence id per line.
    pub seqs: Vec<i64>,
    /// `lastOrderExported` per line.
    pub last_order_exported: Vec<Option<NaiveDateTime>>,
}

/// The outcome of [`InventoryReceipt`]: (request id, conflict, repeat).
pub type ReceiptRow = (i64, bool, bool);

impl QueryId for InventoryReceipt<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for InventoryReceipt<'_> {
    type SqlType = (BigInt, Bool, Bool);
}

/// On PostgreSQL, the whole receipt of an inventory message is one prepared statement (run after
/// the receipt's advisory lock, in its own snapshot): look for earlier copies of the messageSeqId;
/// count a copy with the same (masked) body hash; otherwise insert the request (flagged as a
/// conflict when the id was used with another body) and its lines, and tell workers in other
/// processes when it commits (`pg_notify`). Returns one row: (request id, conflict, repeat).
impl QueryFragment<Pg> for InventoryReceipt<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH prior AS (SELECT id, body_hash FROM requests WHERE operation = ");
        out.push_bind_param::<Text, _>(&self.operation)?;
        out.push_sql(" AND message_seq_id = ");
        out.push_bind_param::<BigInt, _>(&self.message_seq_id)?;
        out.push_sql(
            "), repeat AS (UPDATE requests SET receipts = receipts + 1 WHERE id = \
             (SELECT id FROM prior WHERE body_hash = ",
        );
        out.push_bind_param::<Text, _>(&self.body_hash)?;
        out.push_sql(
            " LIMIT 1) RETURNING id), ins AS (INSERT INTO requests (operation, message_seq_id, \
             caller, body, body_hash, line_count, state, attempts, next_attempt_at, received_at, \
             receipts, conflict) SELECT ",
        );
        out.push_bind_param::<Text, _>(&self.operation)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&self.message_seq_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.caller)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.body)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.body_hash)?;
        out.push_sql(", ");
        out.push_bind_param::<Integer, _>(&self.line_count)?;
        out.push_sql(", 'queued', 0, ");
        out.push_bind_param::<Timestamp, _>(&self.now)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamp, _>(&self.now)?;
        out.push_sql(", 1, EXISTS (SELECT 1 FROM prior) WHERE NOT EXISTS (SELECT 1 FROM prior WHERE body_hash = ");
        out.push_bind_param::<Text, _>(&self.body_hash)?;
        out.push_sql(
            ") RETURNING id, conflict), lines AS (INSERT INTO request_lines (request_id, line_no, \
             sku, source, qty, seq, last_order_exported) SELECT ins.id, t.n, t.sku, t.source, \
             t.qty, t.seq, t.loe FROM ins CROSS JOIN unnest(",
        );
        out.push_bind_param::<Array<Text>, _>(&self.skus)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Text>, _>(&self.sources)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Integer>, _>(&self.qtys)?;
        out.push_sql("::int4[], ");
        out.push_bind_param::<Array<BigInt>, _>(&self.seqs)?;
        out.push_sql("::int8[], ");
        out.push_bind_param::<Array<Nullable<Timestamp>>, _>(&self.last_order_exported)?;
        out.push_sql(
            "::timestamp[]) WITH ORDINALITY AS t(sku, source, qty, seq, loe, n)) \
             SELECT ins.id, ins.conflict, false FROM ins CROSS JOIN LATERAL (SELECT pg_notify(",
        );
        // The workers' wake-up (see `db::wake`), in this statement rather than one more round trip.
        // Both are fixed per process and made of letters, digits, '_' and '-' only, so they are
        // written as literals (the statement text stays the same, and stays prepared).
        out.push_sql(&format!(
            "'{}', '{}') AS wake) w UNION ALL SELECT id, false, true FROM repeat",
            super::wake::Topic::Requests.channel(),
            super::wake::process_token()
        ));
        Ok(())
    }
}

impl RunQueryDsl<PgConnection> for InventoryReceipt<'_> {}
