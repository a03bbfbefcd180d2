//! The SQL that differs between PostgreSQL and SQLite, in one place.
//!
//! Everything else is written once with the diesel DSL over [`DbConnection`] (or, where diesel needs
//! the concrete connection type, once inside [`with_backend!`](crate::with_backend)).

use chrono::NaiveDateTime;
use diesel::pg::CopyFormat;
use diesel::prelude::*;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Integer, Text, Timestamp};
use diesel::upsert::excluded;

use super::DbConnection;
use super::copy::CopyRows;
use super::schema::{feed_events, import_lines, stock};
use crate::queue::report::ImportLine;

/// A stock row to write.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = stock)]
pub struct StockWrite<'a> {
    /// SKU.
    pub sku: &'a str,
    /// Stock source.
    pub source: &'a str,
    /// Quantity to store.
    pub qty: i32,
    /// The sequence id that set it (the new high-water mark).
    pub last_seq: i64,
    /// When.
    pub updated_at: NaiveDateTime,
}

/// A stock row as read: (SKU, source, qty, last_seq).
pub type StockRow = (String, String, i32, i64);

/// The high-water mark of a stock row created only to be locked: below every sequence id (they
/// are > 0), so the first line for it always applies.
pub const PLACEHOLDER_SEQ: i64 = -1;

/// Makes sure a stock row exists for every key (sorted), so [`lock_stock`] can lock all of them.
/// On PostgreSQL, rows that do not exist are inserted as placeholders (qty 0, [`PLACEHOLDER_SEQ`]);
/// the caller's transaction overwrites each one before it commits. Keys already there are skipped by
/// a look-up first (half the cost of letting each insert conflict); an insert that meets another
/// transaction's uncommitted insert of the same key waits for it, then does nothing. Creating rows first, in key order,
/// and locking them all afterwards (rather than locking existing rows and then inserting, and
/// re-locking what another applier inserted meanwhile) keeps two appliers from deadlocking.
/// On SQLite the caller's `BEGIN IMMEDIATE` transaction excludes every other writer, so nothing can
/// appear between the read and the write and no row is created.
pub fn ensure_stock_rows(
    conn: &mut DbConnection,
    keys: &[(&str, &str)],
    now: NaiveDateTime,
) -> QueryResult<()> {
    match conn {
        DbConnection::Postgresql(c) if !keys.is_empty() => {
            diesel::sql_query(
                "INSERT INTO stock (sku, source, qty, last_seq, updated_at) \
                 SELECT t.sku, t.source, 0, $3, $4 FROM unnest($1::text[], $2::text[]) AS t(sku, source) \
                 WHERE NOT EXISTS (SELECT 1 FROM stock s WHERE s.sku = t.sku AND s.source = t.source) \
                 ON CONFLICT (sku, source) DO NOTHING",
            )
            .bind::<Array<Text>, _>(keys.iter().map(|k| k.0).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(keys.iter().map(|k| k.1).collect::<Vec<_>>())
            .bind::<BigInt, _>(PLACEHOLDER_SEQ)
            .bind::<Timestamp, _>(now)
            .execute(c)?;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A stock row as read by [`lock_stock`].
#[derive(Debug, QueryableByName)]
struct LockedStock {
    #[diesel(sql_type = Text)]
    sku: String,
    #[diesel(sql_type = Text)]
    source: String,
    #[diesel(sql_type = Integer)]
    qty: i32,
    #[diesel(sql_type = BigInt)]
    last_seq: i64,
}

/// Reads the stock rows of `keys` that exist. On PostgreSQL the rows are locked until the
/// transaction ends, in (SKU, source) order, so two appliers take them in the same order. The keys
/// are joined as a table rather than tested with `sku = ANY($1)`: a row whose lock had to wait is
/// re-checked against the condition once the other transaction commits, and with thousands of keys
/// a linear `ANY` per re-check took seconds. On SQLite the caller's `BEGIN IMMEDIATE` transaction
/// already excludes every other writer; rows of other sources of the same SKUs may come back too.
pub fn lock_stock(conn: &mut DbConnection, keys: &[(&str, &str)]) -> QueryResult<Vec<StockRow>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    match conn {
        DbConnection::Postgresql(c) => {
            let rows: Vec<LockedStock> = diesel::sql_query(
                "SELECT s.sku, s.source, s.qty, s.last_seq \
                 FROM unnest($1::text[], $2::text[]) AS k(sku, source) \
                 JOIN stock s ON s.sku = k.sku AND s.source = k.source \
                 ORDER BY s.sku, s.source FOR UPDATE OF s",
            )
            .bind::<Array<Text>, _>(keys.iter().map(|k| k.0).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(keys.iter().map(|k| k.1).collect::<Vec<_>>())
            .load(c)?;
            Ok(rows
                .into_iter()
                .map(|r| (r.sku, r.source, r.qty, r.last_seq))
                .collect())
        }
        DbConnection::Sqlite(c) => {
            let mut skus: Vec<&str> = keys.iter().map(|k| k.0).collect();
            skus.sort_unstable();
            skus.dedup();
            let mut rows = Vec::with_capacity(keys.len());
            for chunk in skus.chunks(1000) {
                rows.extend(
                    stock::table
                        .filter(stock::sku.eq_any(chunk))
                        .select((stock::sku, stock::source, stock::qty, stock::last_seq))
                        .load::<StockRow>(c)?,
                );
            }
            Ok(rows)
        }
    }
}

/// Writes stock rows whose sequence id is above the stored high-water mark (or that do not exist
/// yet), check and write in one conditional statement per row set, and returns how many it wrote.
/// PostgreSQL takes the rows as column arrays in one statement; SQLite runs in process, so there each
/// row is its own prepared, cached statement.
pub fn write_stock(conn: &mut DbConnection, rows: &[StockWrite]) -> QueryResult<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    match conn {
        DbConnection::Postgresql(c) => diesel::sql_query(
            "INSERT INTO stock (sku, source, qty, last_seq, updated_at) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::int8[], $5::timestamp[]) \
             ON CONFLICT (sku, source) DO UPDATE SET qty = excluded.qty, \
             last_seq = excluded.last_seq, updated_at = excluded.updated_at \
             WHERE stock.last_seq < excluded.last_seq",
        )
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.sku).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.source).collect::<Vec<_>>())
        .bind::<Array<Integer>, _>(rows.iter().map(|r| r.qty).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.last_seq).collect::<Vec<_>>())
        .bind::<Array<Timestamp>, _>(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
        .execute(c),
        DbConnection::Sqlite(c) => {
            // `filter` on an upsert is the WHERE of its DO UPDATE (not QueryDsl's).
            use diesel::query_dsl::methods::FilterDsl;
            let mut written = 0;
            for row in rows {
                written += diesel::insert_into(stock::table)
                    .values(row)
                    .on_conflict((stock::sku, stock::source))
                    .do_update()
                    .set((
                        stock::qty.eq(excluded(stock::qty)),
                        stock::last_seq.eq(excluded(stock::last_seq)),
                        stock::updated_at.eq(excluded(stock::updated_at)),
                    ))
                    .filter(stock::last_seq.lt(excluded(stock::last_seq)))
                    .execute(c)?;
            }
            Ok(written)
        }
    }
}

/// Stores import lines: on PostgreSQL with one binary `COPY`, on SQLite in multi-row inserts.
pub fn insert_import_lines(conn: &mut DbConnection, lines: &[&ImportLine]) -> QueryResult<()> {
    if lines.is_empty() {
        return Ok(());
    }
    match conn {
        DbConnection::Postgresql(c) => {
            let mut rows = CopyRows::new();
            for l in lines {
                rows.row(13)
                    .int8(l.request_id)
                    .int4(l.line_no)
                    .opt_int8(l.seq)
                    .text(&l.sku)
                    .text(&l.source)
                    .int4(l.units_received)
                    .int4(l.units_adjusted_orders)
                    .int4(l.units_adjusted_quotes)
                    .opt_int4(l.stored_qty)
                    .text(&l.result)
                    .text(&l.message)
                    .timestamp(l.created_at)
                    .opt_text(l.reference.as_deref());
            }
            let data = rows.finish();
            diesel::copy_from(import_lines::table)
                .from_raw_data(import_lines::table, |sink| data.write(sink))
                .with_format(CopyFormat::Binary)
                .execute(c)?;
        }
        DbConnection::Sqlite(c) => {
            for chunk in lines.chunks(1000) {
                diesel::insert_into(import_lines::table)
                    .values(chunk.to_vec())
                    .execute(c)?;
            }
        }
    }
    Ok(())
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
