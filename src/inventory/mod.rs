//! Inventory rules: stock per (SKU, source) guarded by a per-SKU sequence high-water mark.
//!
//! A line is applied only when its sequence id is above the highest one applied for that SKU and
//! source; an equal id is a duplicate, a lower one is superseded. Sequence ids are compared as numbers.

use std::collections::{HashMap, HashSet};

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use diesel::upsert::excluded;

use crate::config::{Adjust, InventorySettings};
use crate::db::schema::{
    order_lines, orders, products, request_lines, reservation_lines, reservations, stock,
};
use crate::db::{self, DbConnection};
use crate::feed::{self, NewEvent};
use crate::queue::report::{ImportLine, Report};

/// Stock source used when the warehouse names none.
pub const DEFAULT_SOURCE: &str = "default";

/// One SKU's line of an inventory message, as validated at receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryLine {
    /// SKU (1–64 characters).
    pub sku: String,
    /// Stock source (`default` unless the warehouse names one).
    pub source: String,
    /// Units the warehouse reports available (may be negative).
    pub qty: i32,
    /// The warehouse's sequence id for this SKU (> 0).
    pub seq: i64,
    /// When the warehouse last took an order into account for this SKU, if it says.
    pub last_order_exported: Option<NaiveDateTime>,
}

/// A whole inventory multi-update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryMessage {
    /// The message's sequence id (> 0).
    pub message_seq_id: i64,
    /// One line per (SKU, source), in the order received.
    pub lines: Vec<InventoryLine>,
}

/// The outcome of one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineResult {
    /// Stock was set.
    Success,
    /// This sequence id was already applied.
    Duplicate,
    /// A newer sequence id was already applied.
    Superseded,
}

impl LineResult {
    /// The word stored in the import report.
    pub fn as_str(self) -> &'static str {
        match self {
            LineResult::Success => "Success",
            LineResult::Duplicate => "Duplicate",
            LineResult::Superseded => "Superseded",
        }
    }
}

/// The quantity stored for what the warehouse reported.
pub fn stored_qty(received: i32, allow_negative: bool) -> i32 {
    if received < 0 && !allow_negative {
        0
    } else {
        received
    }
}

/// Decides a line's result and message from whether the conditional write took it and the high-water
/// mark it left behind.
pub fn classify(
    applied: bool,
    received: i32,
    stored: i32,
    seq: i64,
    last_seq: i64,
) -> (LineResult, String) {
    if applied && stored != received {
        (
            LineResult::Success,
            format!(
                "Product Quantity Successfully Updated to {stored} (received {received}; negative quantities are stored as 0)"
            ),
        )
    } else if applied {
        (
            LineResult::Success,
            format!("Product Quantity Successfully Updated to {stored}"),
        )
    } else if seq == last_seq {
        (
            LineResult::Duplicate,
            "Duplicate Inventory Request Ignored.".to_string(),
        )
    } else {
        (
            LineResult::Superseded,
            format!(
                "Product quantity update to {received} discarded as already superseded by inventory record {last_seq}"
            ),
        )
    }
}

/// A stock row to write.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = stock)]
struct NewStock<'a> {
    sku: &'a str,
    source: &'a str,
    qty: i32,
    last_seq: i64,
    updated_at: NaiveDateTime,
}

/// Writes stock rows where their sequence id is above the stored high-water mark (or the row is
/// new), in one conditional upsert per row set; returns the (SKU, source) keys written. PostgreSQL
/// takes the rows in batches; diesel has no batch form of an SQLite upsert, and SQLite runs in
/// process, so there each row is its own (prepared, cached) statement.
fn upsert_stock(
    conn: &mut DbConnection,
    rows: &[NewStock],
) -> QueryResult<HashSet<(String, String)>> {
    // `filter` on an upsert is the WHERE of its DO UPDATE (not QueryDsl's).
    use diesel::query_dsl::methods::FilterDsl;
    let mut applied = HashSet::new();
    macro_rules! upsert {
        ($values:expr, $c:expr) => {
            diesel::insert_into(stock::table)
                .values($values)
                .on_conflict((stock::sku, stock::source))
                .do_update()
                .set((
                    stock::qty.eq(excluded(stock::qty)),
                    stock::last_seq.eq(excluded(stock::last_seq)),
                    stock::updated_at.eq(excluded(stock::updated_at)),
                ))
                .filter(stock::last_seq.lt(excluded(stock::last_seq)))
                .returning((stock::sku, stock::source))
                .get_results::<(String, String)>($c)?
        };
    }
    match conn {
        DbConnection::Postgresql(c) => {
            for chunk in rows.chunks(1000) {
                applied.extend(upsert!(chunk, c));
            }
        }
        DbConnection::Sqlite(c) => {
            for row in rows {
                applied.extend(upsert!(row, c));
            }
        }
    }
    Ok(applied)
}

/// A stored request line.
type StoredLine = (i32, String, String, i32, Option<i64>, Option<NaiveDateTime>);

/// Units to subtract from each line: (unsent orders, active quotes), both ≥ 0.
fn adjustments(
    conn: &mut DbConnection,
    lines: &[StoredLine],
    settings: &InventorySettings,
    now: NaiveDateTime,
) -> QueryResult<Vec<(i32, i32)>> {
    if settings.adjust == Adjust::None {
        return Ok(vec![(0, 0); lines.len()]);
    }
    let skus: Vec<&str> = lines.iter().map(|l| l.1.as_str()).collect();
    let mut unsent: HashMap<String, Vec<(Option<NaiveDateTime>, i32)>> = HashMap::new();
    for chunk in skus.chunks(1000) {
        let rows: Vec<(String, Option<NaiveDateTime>, i32)> = order_lines::table
            .inner_join(orders::table)
            .filter(order_lines::sku.eq_any(chunk))
            .filter(orders::status.eq_any(&settings.unsent_statuses))
            .filter(orders::is_virtual.eq(false))
            .filter(orders::updated_at.gt(now - TimeDelta::days(settings.unsent_order_cutoff_days)))
            .select((order_lines::sku, orders::exported_at, order_lines::qty))
            .load(conn)?;
        for (sku, exported_at, qty) in rows {
            unsent.entry(sku).or_default().push((exported_at, qty));
        }
    }
    let mut quotes: HashMap<String, i64> = HashMap::new();
    if settings.adjust == Adjust::UnsentOrdersAndQuotes {
        for chunk in skus.chunks(1000) {
            let rows: Vec<(String, i32)> = reservation_lines::table
                .inner_join(reservations::table)
                .filter(reservation_lines::sku.eq_any(chunk))
                .filter(
                    reservations::updated_at
                        .gt(now - TimeDelta::days(settings.active_quote_cutoff_days)),
                )
                .select((reservation_lines::sku, reservation_lines::qty))
                .load(conn)?;
            for (sku, qty) in rows {
                *quotes.entry(sku).or_default() += i64::from(qty);
            }
        }
    }
    let clamp = |v: i64| v.clamp(0, i64::from(i32::MAX)) as i32;
    Ok(lines
        .iter()
        .map(|(_, sku, _, _, _, last_order_exported)| {
            // An order counts until the warehouse has seen it: not exported, or exported after the
            // moment the warehouse says its figure accounts for (now, when it does not say).
            let seen_until = last_order_exported.unwrap_or(now);
            let orders: i64 = unsent
                .get(sku)
                .map(|v| {
                    v.iter()
                        .filter(|(exported_at, _)| exported_at.is_none_or(|t| t > seen_until))
                        .map(|(_, q)| i64::from(*q))
                        .sum()
                })
                .unwrap_or(0);
            (clamp(orders), clamp(quotes.get(sku).copied().unwrap_or(0)))
        })
        .collect())
}

/// Applies the stored lines of inventory request `request_id` and returns its import report and feed
/// events. Must run inside the transaction that marks the request processed and stores the report, so
/// the effect and its report commit together or not at all.
pub fn apply(
    conn: &mut DbConnection,
    request_id: i64,
    settings: &InventorySettings,
) -> QueryResult<Report> {
    let now = db::now();
    let lines: Vec<StoredLine> = request_lines::table
        .filter(request_lines::request_id.eq(request_id))
        .order(request_lines::line_no)
        .select((
            request_lines::line_no,
            request_lines::sku,
            request_lines::source,
            request_lines::qty,
            request_lines::seq,
            request_lines::last_order_exported,
        ))
        .load(conn)?;
    let adjust = adjustments(conn, &lines, settings, now)?;
    let stored: Vec<i32> = lines
        .iter()
        .zip(&adjust)
        .map(|(l, (o, q))| {
            let calculated = i64::from(l.3) - i64::from(*o) - i64::from(*q);
            stored_qty(
                calculated.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
                settings.allow_negative,
            )
        })
        .collect();

    // One conditional upsert per chunk: written only where the sequence id is above the high-water
    // mark. Rows go in (SKU, source) order so concurrent workers lock them in the same order.
    let mut rows: Vec<NewStock> = lines
        .iter()
        .zip(&stored)
        .map(|(l, qty)| NewStock {
            sku: &l.1,
            source: &l.2,
            qty: *qty,
            last_seq: l.4.unwrap_or_default(),
            updated_at: now,
        })
        .collect();
    rows.sort_by(|a, b| (a.sku, a.source).cmp(&(b.sku, b.source)));
    let applied = upsert_stock(conn, &rows)?;

    // What the lines that were not written found.
    let not_applied: Vec<&str> = lines
        .iter()
        .filter(|l| !applied.contains(&(l.1.clone(), l.2.clone())))
        .map(|l| l.1.as_str())
        .collect();
    let mut current: HashMap<(String, String), (i32, i64)> = HashMap::new();
    for chunk in not_applied.chunks(1000) {
        let found: Vec<(String, String, i32, i64)> = stock::table
            .filter(stock::sku.eq_any(chunk))
            .select((stock::sku, stock::source, stock::qty, stock::last_seq))
            .load(conn)?;
        current.extend(found.into_iter().map(|(s, src, q, l)| ((s, src), (q, l))));
    }
    let mut known: HashSet<String> = HashSet::new();
    let skus: Vec<&str> = lines.iter().map(|l| l.1.as_str()).collect();
    for chunk in skus.chunks(1000) {
        let found: Vec<String> = products::table
            .filter(products::sku.eq_any(chunk))
            .select(products::sku)
            .load(conn)?;
        known.extend(found);
    }

    let mut report = Report::default();
    for (((line_no, sku, source, received, seq, _), (adj_o, adj_q)), stored) in
        lines.into_iter().zip(adjust).zip(stored)
    {
        let seq = seq.unwrap_or_default();
        let key = (sku, source);
        let was_applied = applied.contains(&key);
        let (stock_qty, last_seq) = if was_applied {
            (stored, seq)
        } else {
            current.get(&key).copied().unwrap_or((stored, seq))
        };
        let (sku, source) = key;
        let calculated = received - adj_o - adj_q;
        let (result, mut message) = classify(was_applied, calculated, stock_qty, seq, last_seq);
        match result {
            LineResult::Success => {
                report.summary.successes += 1;
                if adj_o > 0 || adj_q > 0 {
                    message.push_str(&format!(
                        " (received {received}, less {adj_o} in unsent orders and {adj_q} in active carts)"
                    ));
                }
                if !known.contains(&sku) {
                    message.push_str("; the SKU is not in wharf's catalogue");
                }
                report.events.push(NewEvent {
                    kind: feed::STOCK_CHANGED,
                    payload: serde_json::json!({
                        "sku": sku, "source": source, "qty": stock_qty, "seq": seq,
                    }),
                });
            }
            LineResult::Duplicate => report.summary.duplicates += 1,
            LineResult::Superseded => report.summary.superseded += 1,
        }
        report.lines.push(ImportLine {
            request_id,
            line_no,
            seq: Some(seq),
            sku,
            source,
            units_received: received,
            units_adjusted_orders: adj_o,
            units_adjusted_quotes: adj_q,
            stored_qty: Some(stock_qty),
            result: result.as_str().to_string(),
            message,
            created_at: now,
            reference: None,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_quantities_are_stored_as_zero_unless_allowed() {
        assert_eq!(stored_qty(-2, false), 0);
        assert_eq!(stored_qty(-2, true), -2);
        assert_eq!(stored_qty(5, false), 5);
    }

    #[test]
    fn classification_uses_numbers() {
        assert_eq!(classify(true, 4, 4, 10, 10).0, LineResult::Success);
        assert_eq!(classify(false, 4, 7, 10, 10).0, LineResult::Duplicate);
        let (r, m) = classify(false, 4, 7, 9, 10);
        assert_eq!(r, LineResult::Superseded);
        assert_eq!(
            m,
            "Product quantity update to 4 discarded as already superseded by inventory record 10"
        );
    }
}
