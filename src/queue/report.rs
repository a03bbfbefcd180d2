//! The import report written with every applied request: counts, one line per message line, and the
//! feed events the effect produced (all stored in the applying transaction).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::import_lines;
use crate::feed::NewEvent;

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
    /// What the line is about besides the SKU (the order number, for shipments).
    pub reference: Option<String>,
}

/// The import report of one request, and the feed events its effect produced.
#[derive(Debug, Default)]
pub struct Report {
    /// Counts for the header.
    pub summary: Summary,
    /// One line per request line.
    pub lines: Vec<ImportLine>,
    /// Events to append to the feed in the same transaction.
    pub events: Vec<NewEvent>,
}
