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

/// One line of an import report, as stored.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = import_lines)]
pub struct ImportLine {
    /// The request the line belongs to.
    pub request_id: i64,
    /// Position in the request (1-based).
    pub line_no: i32,
    /// The line's sequence id.
    pub seq: Option<i64>,
    /// SKU.
    pub sku: String,
    /// Stock source.
    pub source: String,
    /// Units the warehouse reported.
    pub units_received: i32,
    /// Units subtracted for orders the warehouse has not seen yet.
    pub units_adjusted_orders: i32,
    /// Units subtracted for active carts.
    pub units_adjusted_quotes: i32,
    /// The quantity stored after this line.
    pub stored_qty: Option<i32>,
    /// `Success`, `Duplicate`, `Superseded` or `Failure`.
    pub result: String,
    /// What happened, in words.
    pub message: String,
    /// When.
    pub created_at: NaiveDateTime,
}

/// The import report of one request: counts and lines.
#[derive(Debug, Default)]
pub struct Report {
    /// Counts for the header.
    pub summary: Summary,
    /// One line per request line.
    pub lines: Vec<ImportLine>,
}

/// A request line beside the stock row it touched: line number, SKU, source, units received, sequence
/// id, stored quantity and high-water mark.
type LineState = (i32, String, String, i32, Option<i64>, i32, i64);

/// Applies the stored lines of inventory request `request_id` and returns its import report. Must
/// run inside the transaction that marks the request processed and stores the report, so the effect
/// and its report commit together or not at all.
pub fn apply(
    conn: &mut DbConnection,
    request_id: i64,
    settings: &InventorySettings,
) -> QueryResult<Report> {
    let now = db::now();
    let applied: std::collections::HashSet<(String, String)> =
        db::sql::upsert_stock_from_request(conn, request_id, settings.allow_negative, now)?
            .into_iter()
            .map(|k| (k.sku, k.source))
            .collect();
    // Every line has a stock row now; read the state each line left or found.
    let rows: Vec<LineState> = request_lines::table
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
    let mut report = Report {
        summary: Summary::default(),
        lines: Vec::with_capacity(rows.len()),
    };
    for (line_no, sku, source, received, seq, stock_qty, last_seq) in rows {
        let seq = seq.unwrap_or_default();
        let was_applied = applied.contains(&(sku.clone(), source.clone()));
        let (result, message) = classify(was_applied, received, stock_qty, seq, last_seq);
        match result {
            LineResult::Success => report.summary.successes += 1,
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
            units_adjusted_orders: 0,
            units_adjusted_quotes: 0,
            stored_qty: Some(stock_qty),
            result: result.as_str().to_string(),
            message,
            created_at: now,
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
