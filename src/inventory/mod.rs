//! Inventory rules: stock per (SKU, source) guarded by a per-SKU sequence high-water mark.
//!
//! A line is applied only when its sequence id is above the highest one applied for that SKU and
//! source; an equal id is a duplicate, a lower one is superseded. Sequence ids are compared as numbers.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use crate::config::{Adjust, InventorySettings};
use crate::db::schema::{
    order_lines, orders, products, request_lines, reservation_lines, reservations,
};
use crate::db::sql::StockWrite;
use crate::db::{self, DbConnection};
use crate::feed::{self, NewEvent};
use crate::queue::report::{ImportLine, Report};

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

/// A stored request line.
type StoredLine = (i32, String, String, i32, Option<i64>, Option<NaiveDateTime>);

/// Units to subtract from each line: (unsent orders, active quotes), both ≥ 0.
fn adjustments(
    conn: &mut DbConnection,
    lines: &[(i64, StoredLine)],
    settings: &InventorySettings,
    now: NaiveDateTime,
) -> QueryResult<Vec<(i32, i32)>> {
    if settings.adjust == Adjust::None {
        return Ok(vec![(0, 0); lines.len()]);
    }
    let skus: Vec<&str> = lines.iter().map(|(_, l)| l.1.as_str()).collect();
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
        .map(|(_, (_, sku, _, _, _, last_order_exported))| {
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

/// Where a line left its (SKU, source): whether it was applied, and the stock and high-water mark
/// after it.
#[derive(Debug, Clone, Copy, Default)]
struct After {
    applied: bool,
    qty: i32,
    last_seq: i64,
}

/// Plays one key's lines, in order, against the stock row as read (`None`: no row yet). Fills in
/// each line's outcome and returns the row to write, if any line was applied.
fn play(
    line_ids: &[usize],
    seqs: &[i64],
    stored: &[i32],
    row: Option<(i32, i64)>,
    after: &mut [After],
) -> Option<(i32, i64)> {
    let mut state = row;
    let mut changed = false;
    for &i in line_ids {
        match state {
            Some((qty, last_seq)) if seqs[i] <= last_seq => {
                after[i] = After {
                    applied: false,
                    qty,
                    last_seq,
                };
            }
            _ => {
                state = Some((stored[i], seqs[i]));
                changed = true;
                after[i] = After {
                    applied: true,
                    qty: stored[i],
                    last_seq: seqs[i],
                };
            }
        }
    }
    state.filter(|_| changed)
}

/// The stored lines of `request_ids` with their request, requests in the order given (`position`
/// maps each id to its place), lines in theirs.
fn load_lines(
    conn: &mut DbConnection,
    request_ids: &[i64],
    position: &HashMap<i64, usize>,
) -> QueryResult<Vec<(i64, StoredLine)>> {
    let mut lines: Vec<(i64, StoredLine)> = Vec::new();
    for chunk in request_ids.chunks(500) {
        let loaded: Vec<(i64, StoredLine)> = request_lines::table
            .filter(request_lines::request_id.eq_any(chunk))
            .order((request_lines::request_id, request_lines::line_no))
            .select((
                request_lines::request_id,
                (
                    request_lines::line_no,
                    request_lines::sku,
                    request_lines::source,
                    request_lines::qty,
                    request_lines::seq,
                    request_lines::last_order_exported,
                ),
            ))
            .load(conn)?;
        lines.extend(loaded);
    }
    lines.sort_by_key(|(request_id, l)| (position[request_id], l.0));
    Ok(lines)
}

/// Decides every line against the stock rows it touches and writes each row's newest value.
/// `seqs` and `stored` are each line's sequence id and the quantity it would store. The rows are
/// created if missing, then locked and read once, in key order; each key's lines are played in
/// order; each row written is written once, by a statement that still checks the high-water mark.
fn decide_and_write(
    conn: &mut DbConnection,
    lines: &[(i64, StoredLine)],
    seqs: &[i64],
    stored: &[i32],
    now: NaiveDateTime,
) -> anyhow::Result<Vec<After>> {
    let mut by_key: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, (_, l)) in lines.iter().enumerate() {
        by_key.entry((&l.1, &l.2)).or_default().push(i);
    }
    let keys: Vec<(&str, &str)> = by_key.keys().copied().collect();
    db::sql::ensure_stock_rows(conn, &keys, now)?;
    let rows: HashMap<(String, String), (i32, i64)> = db::sql::lock_stock(conn, &keys)?
        .into_iter()
        .map(|(sku, source, qty, last_seq)| ((sku, source), (qty, last_seq)))
        .collect();

    let mut after = vec![After::default(); lines.len()];
    let mut writes = Vec::new();
    for (&(sku, source), ids) in &by_key {
        let row = rows.get(&(sku.to_string(), source.to_string())).copied();
        if let Some((qty, last_seq)) = play(ids, seqs, stored, row, &mut after) {
            writes.push(StockWrite {
                sku,
                source,
                qty,
                last_seq,
                updated_at: now,
            });
        }
    }
    // The rows are locked (or, on SQLite, the transaction is exclusive): every write must take.
    let written = db::sql::write_stock(conn, &writes)?;
    if written != writes.len() {
        anyhow::bail!(
            "{} of {} stock rows refused a newer sequence id although they were locked",
            writes.len() - written,
            writes.len()
        );
    }
    Ok(after)
}

/// Which of `lines`' SKUs wharf's catalogue knows.
fn in_catalogue(
    conn: &mut DbConnection,
    lines: &[(i64, StoredLine)],
) -> QueryResult<HashSet<String>> {
    let mut skus: Vec<&str> = lines.iter().map(|(_, l)| l.1.as_str()).collect();
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

/// Applies the stored lines of inventory requests `request_ids` (in that order, as if one after the
/// other) and returns each one's import report and feed events. Must run inside the transaction that
/// marks the requests processed and stores their reports, so each effect and its report commit
/// together or not at all.
pub fn apply(
    conn: &mut DbConnection,
    request_ids: &[i64],
    settings: &InventorySettings,
) -> anyhow::Result<Vec<Report>> {
    let now = db::now();
    let position: HashMap<i64, usize> = request_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i))
        .collect();
    let lines = load_lines(conn, request_ids, &position)?;
    let adjust = adjustments(conn, &lines, settings, now)?;
    let stored: Vec<i32> = lines
        .iter()
        .zip(&adjust)
        .map(|((_, l), (o, q))| {
            let calculated = i64::from(l.3) - i64::from(*o) - i64::from(*q);
            stored_qty(
                calculated.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
                settings.allow_negative,
            )
        })
        .collect();
    let seqs: Vec<i64> = lines.iter().map(|(_, l)| l.4.unwrap_or_default()).collect();
    let after = decide_and_write(conn, &lines, &seqs, &stored, now)?;
    let known = in_catalogue(conn, &lines)?;
    let mut reports: Vec<Report> = request_ids.iter().map(|_| Report::default()).collect();
    for ((((request_id, (line_no, sku, source, received, _, _)), (adj_o, adj_q)), after), seq) in
        lines.into_iter().zip(adjust).zip(after).zip(seqs)
    {
        let report = &mut reports[position[&request_id]];
        // In i64 as for `stored` above: the adjustments reach i32::MAX each, so the difference
        // can pass i32::MIN.
        let calculated = (i64::from(received) - i64::from(adj_o) - i64::from(adj_q))
            .clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
        let (result, mut message) =
            classify(after.applied, calculated, after.qty, seq, after.last_seq);
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
                        "sku": sku, "source": source, "qty": after.qty, "seq": seq,
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
            stored_qty: Some(after.qty),
            result: result.as_str().to_string(),
            message,
            created_at: now,
            reference: None,
        });
    }
    Ok(reports)
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
