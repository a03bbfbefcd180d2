//! Inventory rules: stock per (SKU, source) guarded by a per-SKU sequence high-water mark.
//!
//! A line is applied only when its sequence id is above the highest one applied for that SKU and
//! source; an equal id is a duplicate, a lower one is superseded. Sequence ids are compared as numbers.

pub mod payloads;
pub mod store;

use std::collections::{BTreeMap, HashMap};

use chrono::{NaiveDateTime, TimeDelta};
use diesel::QueryResult;

use self::store::{StockWrite, StoredLine};
use crate::config::{Adjust, InventorySettings};
use crate::db::{self, DbConnection};
use crate::feed::{self, NewEvent};
use crate::imports::{ImportLine, LineOutcome, Report};
use crate::reservations;

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
) -> (LineOutcome, String) {
    if applied && stored != received {
        (
            LineOutcome::Success,
            format!(
                "Product Quantity Successfully Updated to {stored} (received {received}; negative quantities are stored as 0)"
            ),
        )
    } else if applied {
        (
            LineOutcome::Success,
            format!("Product Quantity Successfully Updated to {stored}"),
        )
    } else if seq == last_seq {
        (
            LineOutcome::Duplicate,
            "Duplicate Inventory Request Ignored.".to_string(),
        )
    } else {
        (
            LineOutcome::Superseded,
            format!(
                "Product quantity update to {received} discarded as already superseded by inventory record {last_seq}"
            ),
        )
    }
}

/// Units to subtract from a line's figure, both ≥ 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Adjustment {
    /// Units in orders the warehouse has not seen yet.
    orders: i32,
    /// Units in active carts.
    quotes: i32,
}

/// What to subtract from each line, as `settings.adjust` says.
fn adjustments(
    conn: &mut DbConnection,
    lines: &[StoredLine],
    settings: &InventorySettings,
    now: NaiveDateTime,
) -> QueryResult<Vec<Adjustment>> {
    if settings.adjust == Adjust::None {
        return Ok(vec![Adjustment::default(); lines.len()]);
    }
    let skus: Vec<&str> = lines.iter().map(|l| l.sku.as_str()).collect();
    let order_cutoff = now - TimeDelta::days(settings.unsent_order_cutoff_days);
    let unsent = store::unsent_order_units(conn, &skus, &settings.unsent_statuses, order_cutoff)?;
    let quotes = if settings.adjust == Adjust::UnsentOrdersAndQuotes {
        let quote_cutoff = now - TimeDelta::days(settings.active_quote_cutoff_days);
        reservations::store::units_in_active_carts(conn, &skus, quote_cutoff)?
    } else {
        HashMap::new()
    };
    Ok(lines
        .iter()
        .map(|l| {
            // An order counts until the warehouse has seen it: not exported, or exported after the
            // moment the warehouse says its figure accounts for (now, when it does not say).
            let seen_until = l.last_order_exported.unwrap_or(now);
            let orders: i64 = unsent
                .get(&l.sku)
                .map(|v| {
                    v.iter()
                        .filter(|u| u.exported_at.is_none_or(|t| t > seen_until))
                        .map(|u| i64::from(u.qty))
                        .sum()
                })
                .unwrap_or(0);
            Adjustment {
                orders: clamp_i32(orders.max(0)),
                quotes: clamp_i32(quotes.get(&l.sku).copied().unwrap_or(0).max(0)),
            }
        })
        .collect())
}

/// `v` as an i32, saturating at its bounds.
fn clamp_i32(v: i64) -> i32 {
    v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
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

/// A line with what it would store: its adjustment, the figure left after it, and the quantity
/// stored for that figure.
struct Planned {
    line: StoredLine,
    adjust: Adjustment,
    /// The sequence id compared against the high-water mark.
    seq: i64,
    /// What the warehouse reported less the adjustment.
    calculated: i32,
    /// What storing the line would set.
    stored: i32,
}

/// Computes each line's figure after its adjustment. In i64: the adjustments reach i32::MAX each,
/// so the difference can pass i32::MIN.
fn plan(lines: Vec<StoredLine>, adjust: Vec<Adjustment>, allow_negative: bool) -> Vec<Planned> {
    lines
        .into_iter()
        .zip(adjust)
        .map(|(line, adjust)| {
            let calculated = clamp_i32(
                i64::from(line.qty) - i64::from(adjust.orders) - i64::from(adjust.quotes),
            );
            Planned {
                seq: line.seq.unwrap_or_default(),
                stored: stored_qty(calculated, allow_negative),
                calculated,
                adjust,
                line,
            }
        })
        .collect()
}

/// Decides every line against the stock rows it touches and writes each row's newest value. The
/// rows are created if missing, then locked and read once, in key order; each key's lines are
/// played in order; each row written is written once, by a statement that still checks the
/// high-water mark.
fn decide_and_write(
    conn: &mut DbConnection,
    planned: &[Planned],
    now: NaiveDateTime,
) -> anyhow::Result<Vec<After>> {
    let mut by_key: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, p) in planned.iter().enumerate() {
        by_key
            .entry((&p.line.sku, &p.line.source))
            .or_default()
            .push(i);
    }
    let keys: Vec<(&str, &str)> = by_key.keys().copied().collect();
    store::ensure_stock_rows(conn, &keys, now)?;
    let rows: HashMap<(String, String), (i32, i64)> = store::lock_stock(conn, &keys)?
        .into_iter()
        .map(|r| ((r.sku, r.source), (r.qty, r.last_seq)))
        .collect();

    let seqs: Vec<i64> = planned.iter().map(|p| p.seq).collect();
    let stored: Vec<i32> = planned.iter().map(|p| p.stored).collect();
    let mut after = vec![After::default(); planned.len()];
    let mut writes = Vec::new();
    for (&(sku, source), ids) in &by_key {
        let row = rows.get(&(sku.to_string(), source.to_string())).copied();
        if let Some((qty, last_seq)) = play(ids, &seqs, &stored, row, &mut after) {
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
    let written = store::write_stock(conn, &writes)?;
    if written != writes.len() {
        anyhow::bail!(
            "{} of {} stock rows refused a newer sequence id although they were locked",
            writes.len() - written,
            writes.len()
        );
    }
    Ok(after)
}

/// Applies the stored lines of inventory requests `request_ids` (in that order, as if one after the
/// other) and returns each one's import report and feed events. Must run inside the transaction that
/// marks the requests processed and stores their reports, so each effect and its report commit
/// together or not at all.
///
/// Stages: load the stored lines → `adjustments` → `plan` each line's figure → decide and write
/// the stock rows (`decide_and_write`, `play`) → one import line and event per line
/// (`report_line`).
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
    let lines = store::load_lines(conn, request_ids, &position)?;
    let adjust = adjustments(conn, &lines, settings, now)?;
    let planned = plan(lines, adjust, settings.allow_negative);
    let after = decide_and_write(conn, &planned, now)?;
    let skus: Vec<&str> = planned.iter().map(|p| p.line.sku.as_str()).collect();
    let known = store::in_catalogue(conn, &skus)?;
    let mut reports: Vec<Report> = request_ids.iter().map(|_| Report::default()).collect();
    for (p, after) in planned.into_iter().zip(after) {
        let Some(report) = position
            .get(&p.line.request_id)
            .and_then(|&i| reports.get_mut(i))
        else {
            anyhow::bail!("request {} was not asked for", p.line.request_id);
        };
        let in_catalogue = known.contains(&p.line.sku);
        let (line, event) = report_line(p, after, in_catalogue, now);
        report.push(line);
        report.events.extend(event);
    }
    Ok(reports)
}

/// A line's import line, and its `stock.changed` event when it was applied.
fn report_line(
    p: Planned,
    after: After,
    in_catalogue: bool,
    now: NaiveDateTime,
) -> (ImportLine, Option<NewEvent>) {
    let Planned {
        line, adjust, seq, ..
    } = p;
    let (outcome, mut message) =
        classify(after.applied, p.calculated, after.qty, seq, after.last_seq);
    let mut event = None;
    if outcome == LineOutcome::Success {
        let (received, adj_o, adj_q) = (line.qty, adjust.orders, adjust.quotes);
        if adj_o > 0 || adj_q > 0 {
            message.push_str(&format!(
                " (received {received}, less {adj_o} in unsent orders and {adj_q} in active carts)"
            ));
        }
        if !in_catalogue {
            message.push_str("; the SKU is not in wharf's catalogue");
        }
        event = Some(NewEvent {
            kind: feed::STOCK_CHANGED,
            payload: serde_json::json!({
                "sku": line.sku, "source": line.source, "qty": after.qty, "seq": seq,
            }),
        });
    }
    let import_line = ImportLine {
        request_id: line.request_id,
        line_no: line.line_no,
        seq: Some(seq),
        sku: line.sku,
        source: line.source,
        units_received: line.qty,
        units_adjusted_orders: adjust.orders,
        units_adjusted_quotes: adjust.quotes,
        stored_qty: Some(after.qty),
        result: outcome,
        message,
        created_at: now,
        reference: None,
    };
    (import_line, event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::DEFAULT_SOURCE;

    #[test]
    fn negative_quantities_are_stored_as_zero_unless_allowed() {
        assert_eq!(stored_qty(-2, false), 0);
        assert_eq!(stored_qty(-2, true), -2);
        assert_eq!(stored_qty(5, false), 5);
    }

    fn stored_line(qty: i32) -> StoredLine {
        StoredLine {
            request_id: 1,
            line_no: 1,
            sku: "A".into(),
            source: DEFAULT_SOURCE.into(),
            qty,
            seq: Some(5),
            last_order_exported: None,
        }
    }

    #[test]
    fn the_adjusted_figure_is_computed_in_i64_and_saturates() {
        let big = Adjustment {
            orders: i32::MAX,
            quotes: i32::MAX,
        };
        let small = Adjustment {
            orders: 2,
            quotes: 1,
        };
        let planned = plan(
            vec![stored_line(i32::MIN + 1), stored_line(10)],
            vec![big, small],
            false,
        );
        assert_eq!(planned[0].calculated, i32::MIN);
        assert_eq!(planned[0].stored, 0);
        assert_eq!((planned[1].calculated, planned[1].stored), (7, 7));
        assert_eq!(planned[1].seq, 5);
    }

    #[test]
    fn a_keys_lines_play_in_order_against_the_high_water_mark() {
        // Lines 0 and 2 are one key stored at seq 5: line 0 (seq 4) is superseded and sees the
        // stored row, line 2 (seq 6) applies; a key whose lines all lose writes nothing.
        let seqs = [4, 9, 6];
        let stored = [10, 11, 12];
        let mut after = [After::default(); 3];
        let row = play(&[0, 2], &seqs, &stored, Some((3, 5)), &mut after);
        assert_eq!(row, Some((12, 6)));
        assert!(!after[0].applied && after[0].qty == 3 && after[0].last_seq == 5);
        assert!(after[2].applied && after[2].qty == 12);
        assert_eq!(play(&[0], &seqs, &stored, Some((3, 5)), &mut after), None);
    }

    #[test]
    fn classification_uses_numbers() {
        assert_eq!(classify(true, 4, 4, 10, 10).0, LineOutcome::Success);
        assert_eq!(classify(false, 4, 7, 10, 10).0, LineOutcome::Duplicate);
        let (r, m) = classify(false, 4, 7, 9, 10);
        assert_eq!(r, LineOutcome::Superseded);
        assert_eq!(
            m,
            "Product quantity update to 4 discarded as already superseded by inventory record 10"
        );
    }
}
