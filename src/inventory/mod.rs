//! Inventory rules: stock per (SKU, source) guarded by a per-SKU sequence high-water mark.
//!
//! A line is applied only when its sequence id is above the highest one applied for that SKU and
//! source; an equal id is a duplicate, a lower one is superseded. Sequence ids are compared as numbers.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::config::InventorySettings;
use crate::db::schema::{import_lines, request_lines, stock};
use crate::db::{self, DbConnection};

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
    if applied {
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

/// Counts of an applied request, for its import header.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Lines applied.
    pub successes: i32,
    /// Lines already applied.
    pub duplicates: i32,
    /// Lines older than what is stored.
    pub superseded: i32,
    /// Lines that failed.
    pub failures: i32,
}

/// Applies the stored lines of inventory request `request_id` and writes its import lines. Must run
/// inside the transaction that marks the request processed, so the effect and its report commit
/// together or not at all.
pub fn apply(
    conn: &mut DbConnection,
    request_id: i64,
    settings: &InventorySettings,
) -> QueryResult<Summary> {
    let now = db::now();
    let applied: std::collections::HashSet<(String, String)> =
        db::sql::upsert_stock_from_request(conn, request_id, settings.allow_negative, now)?
            .into_iter()
            .map(|k| (k.sku, k.source))
            .collect();
    // Every line has a stock row now; read the state each line left or found.
    let rows: Vec<(i32, String, String, i32, Option<i64>, i32, i64)> = request_lines::table
        .inner_join(
            stock::table.on(stock::sku
                .eq(request_lines::sku)
                .and(stock::source.eq(request_lines::source))),
        )
        .filter(request_lines::request_id.eq(request_id))
        .order(request_lines::line_no)
        .select((
            request_lines::line_no,
            request_lines::sku,
            request_lines::source,
            request_lines::qty,
            request_lines::seq,
            stock::qty,
            stock::last_seq,
        ))
        .load(conn)?;
    let mut summary = Summary::default();
    let mut report = Vec::with_capacity(rows.len());
    for (line_no, sku, source, received, seq, stock_qty, last_seq) in rows {
        let seq = seq.unwrap_or_default();
        let was_applied = applied.contains(&(sku.clone(), source.clone()));
        let (result, message) = classify(was_applied, received, stock_qty, seq, last_seq);
        match result {
            LineResult::Success => summary.successes += 1,
            LineResult::Duplicate => summary.duplicates += 1,
            LineResult::Superseded => summary.superseded += 1,
        }
        report.push((
            import_lines::request_id.eq(request_id),
            import_lines::line_no.eq(line_no),
            import_lines::seq.eq(Some(seq)),
            import_lines::sku.eq(sku),
            import_lines::source.eq(source),
            import_lines::units_received.eq(received),
            import_lines::units_adjusted_orders.eq(0),
            import_lines::units_adjusted_quotes.eq(0),
            import_lines::stored_qty.eq(Some(stock_qty)),
            import_lines::result.eq(result.as_str()),
            import_lines::message.eq(message),
            import_lines::created_at.eq(now),
        ));
    }
    Ok((summary, report)).and_then(|(summary, report)| {
        // Bounded chunks keep every statement under both backends' bind-parameter limits.
        for chunk in report.chunks(1000) {
            crate::with_backend!(&mut *conn, |c| diesel::insert_into(import_lines::table)
                .values(chunk)
                .execute(c))?;
        }
        Ok(summary)
    })
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
