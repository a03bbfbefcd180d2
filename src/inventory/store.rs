//! The inventory's SQL: the stock rows (create, lock, conditional write), and the reads an
//! inventory batch needs (its stored request lines, what orders and carts hold, the catalogue).
//! Per-backend arms are here; nothing else writes `stock`.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Text, Timestamp};
use diesel::upsert::excluded;

use crate::db::DbConnection;
use crate::db::schema::{order_lines, orders, products, request_lines, stock};

/// A stored inventory request line, with its request.
#[derive(Debug, Clone, Queryable)]
pub struct StoredLine {
    /// The request.
    pub request_id: i64,
    /// Position in the request (1-based).
    pub line_no: i32,
    /// SKU.
    pub sku: String,
    /// Stock source.
    pub source: String,
    /// Units the warehouse reported.
    pub qty: i32,
    /// The line's sequence id.
    pub seq: Option<i64>,
    /// When the warehouse last took an order into account for this SKU, if it said.
    pub last_order_exported: Option<NaiveDateTime>,
}

/// The stored lines of `request_ids` with their request, requests in the order given (`position`
/// maps each id to its place), lines in theirs.
pub fn load_lines(
    conn: &mut DbConnection,
    request_ids: &[i64],
    position: &HashMap<i64, usize>,
) -> QueryResult<Vec<StoredLine>> {
    let mut lines: Vec<StoredLine> = Vec::new();
    for chunk in request_ids.chunks(500) {
        let loaded: Vec<StoredLine> = request_lines::table
            .filter(request_lines::request_id.eq_any(chunk))
            .order((request_lines::request_id, request_lines::line_no))
            .select((
                request_lines::request_id,
                request_lines::line_no,
                request_lines::sku,
                request_lines::source,
                request_lines::qty,
                request_lines::seq,
                request_lines::last_order_exported,
            ))
            .load(conn)?;
        lines.extend(loaded);
    }
    lines.sort_by_key(|l| (position.get(&l.request_id).copied(), l.line_no));
    Ok(lines)
}

/// Units of a SKU on an order the warehouse may not have seen yet.
#[derive(Debug, Clone, Copy, Queryable)]
pub struct UnsentUnits {
    /// When wharf exported the order (`None`: not yet).
    pub exported_at: Option<NaiveDateTime>,
    /// Units ordered.
    pub qty: i32,
}

/// The order lines of `skus` on orders in one of `statuses`, not virtual, updated after `since`,
/// per SKU.
pub fn unsent_order_units(
    conn: &mut DbConnection,
    skus: &[&str],
    statuses: &[String],
    since: NaiveDateTime,
) -> QueryResult<HashMap<String, Vec<UnsentUnits>>> {
    let mut unsent: HashMap<String, Vec<UnsentUnits>> = HashMap::new();
    for chunk in skus.chunks(1000) {
        let rows: Vec<(String, UnsentUnits)> = order_lines::table
            .inner_join(orders::table)
            .filter(order_lines::sku.eq_any(chunk))
            .filter(orders::status.eq_any(statuses))
            .filter(orders::is_virtual.eq(false))
            .filter(orders::updated_at.gt(since))
            .select((order_lines::sku, (orders::exported_at, order_lines::qty)))
            .load(conn)?;
        for (sku, units) in rows {
            unsent.entry(sku).or_default().push(units);
        }
    }
    Ok(unsent)
}

/// Which of `skus` wharf's catalogue knows.
pub fn in_catalogue(conn: &mut DbConnection, skus: &[&str]) -> QueryResult<HashSet<String>> {
    let mut skus = skus.to_vec();
    skus.sort_unstable();
    skus.dedup();
    let mut known = HashSet::new();
    for chunk in skus.chunks(1000) {
        let found: Vec<String> = products::table
            .filter(products::sku.eq_any(chunk))
            .select(products::sku)
            .load(conn)?;
        known.extend(found);
    }
    Ok(known)
}

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
#[derive(Debug, Clone, PartialEq, Eq, Queryable, QueryableByName)]
pub struct StockRow {
    /// SKU.
    #[diesel(sql_type = Text)]
    pub sku: String,
    /// Stock source.
    #[diesel(sql_type = Text)]
    pub source: String,
    /// Units stored.
    #[diesel(sql_type = Integer)]
    pub qty: i32,
    /// The highest sequence id applied (the high-water mark).
    #[diesel(sql_type = BigInt)]
    pub last_seq: i64,
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
        DbConnection::Postgresql(c) => diesel::sql_query(
            "SELECT s.sku, s.source, s.qty, s.last_seq \
                 FROM unnest($1::text[], $2::text[]) AS k(sku, source) \
                 JOIN stock s ON s.sku = k.sku AND s.source = k.source \
                 ORDER BY s.sku, s.source FOR UPDATE OF s",
        )
        .bind::<Array<Text>, _>(keys.iter().map(|k| k.0).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(keys.iter().map(|k| k.1).collect::<Vec<_>>())
        .load(c),
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

/// A stock level as stored, for the storefront API.
#[derive(Debug, Queryable)]
pub struct StockLevelRow {
    /// SKU.
    pub sku: String,
    /// Stock source.
    pub source: String,
    /// Units stored.
    pub qty: i32,
    /// Highest warehouse sequence id applied.
    pub last_seq: i64,
    /// When it last changed.
    pub updated_at: NaiveDateTime,
}

/// Stock of `skus` at every source (or at `source`), ordered by SKU and source.
pub fn levels(
    conn: &mut DbConnection,
    skus: &[String],
    source: Option<&str>,
) -> QueryResult<Vec<StockLevelRow>> {
    let mut query = stock::table
        .filter(stock::sku.eq_any(skus))
        .order((stock::sku, stock::source))
        .select((
            stock::sku,
            stock::source,
            stock::qty,
            stock::last_seq,
            stock::updated_at,
        ))
        .into_boxed();
    if let Some(source) = source {
        query = query.filter(stock::source.eq(source.to_string()));
    }
    query.load(conn)
}

/// The upper bound of the SKUs starting with `prefix` in byte-wise order (no SKU contains
/// U+10FFFF, the highest code point).
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// Up to `limit` SKUs with stock, in byte-wise order: those starting with `prefix` (or all), after
/// `after` (keyset). On PostgreSQL through the `text_pattern_ops` index `stock_sku_pattern`,
/// whatever the database's collation; SQLite compares text byte-wise already.
pub fn list_skus(
    conn: &mut DbConnection,
    prefix: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<String>> {
    #[derive(QueryableByName)]
    struct Sku {
        #[diesel(sql_type = Text)]
        sku: String,
    }
    let lower = prefix.unwrap_or("").to_string();
    let upper = prefix_end(prefix.unwrap_or(""));
    match conn {
        DbConnection::Postgresql(c) => {
            // Placeholders are written out: a boxed raw query only collects the bound values.
            let after_clause = if after.is_some() {
                " AND sku ~>~ $4"
            } else {
                ""
            };
            let mut q = diesel::sql_query(format!(
                "SELECT sku FROM stock WHERE sku ~>=~ $1 AND sku ~<~ $2{after_clause} \
                 GROUP BY sku ORDER BY sku USING ~<~ LIMIT $3"
            ))
            .into_boxed::<diesel::pg::Pg>()
            .bind::<Text, _>(lower)
            .bind::<Text, _>(upper)
            .bind::<BigInt, _>(limit);
            if let Some(after) = after {
                q = q.bind::<Text, _>(after.to_string());
            }
            let rows: Vec<Sku> = q.load(c)?;
            Ok(rows.into_iter().map(|r| r.sku).collect())
        }
        DbConnection::Sqlite(c) => {
            let mut q = stock::table
                .filter(stock::sku.ge(lower))
                .filter(stock::sku.lt(upper))
                .select(stock::sku)
                .distinct()
                .into_boxed();
            if let Some(after) = after {
                q = q.filter(stock::sku.gt(after.to_string()));
            }
            q.order(stock::sku).limit(limit).load(c)
        }
    }
}

/// An order that holds units of a SKU the warehouse has not seen yet.
#[derive(Debug, Clone, Queryable)]
pub struct UnsentOrder {
    /// The order number.
    pub increment_id: String,
    /// Its status.
    pub status: String,
    /// Units of the SKU on it.
    pub qty: i32,
    /// When it last changed.
    pub updated_at: NaiveDateTime,
}

/// Up to `limit` orders not exported yet, not virtual, in one of `statuses`, updated after
/// `since`, with units of `sku`: what an inventory line for it arriving now would subtract.
pub fn unsent_orders_of(
    conn: &mut DbConnection,
    sku: &str,
    statuses: &[String],
    since: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<UnsentOrder>> {
    order_lines::table
        .inner_join(orders::table)
        .filter(order_lines::sku.eq(sku.to_string()))
        .filter(orders::status.eq_any(statuses))
        .filter(orders::is_virtual.eq(false))
        .filter(orders::updated_at.gt(since))
        .filter(orders::exported_at.is_null())
        .order(orders::id.desc())
        .limit(limit)
        .select((
            orders::increment_id,
            orders::status,
            order_lines::qty,
            orders::updated_at,
        ))
        .load(conn)
}
