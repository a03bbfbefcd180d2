//! The import report written with every applied request: counts, one line per message line with its
//! [`LineOutcome`], and the feed events the effect produced (all stored in the applying transaction).
//!
//! A leaf the domains share: inventory and shipments build reports, the worker stores them
//! ([`store`]), support reads them. It imports only `db` and `feed` (for the events a report carries).

pub mod store;

use chrono::NaiveDateTime;

use crate::feed::NewEvent;

crate::text_enum! {
    /// What became of one line of a message, as stored in `import_lines.result` (and, for the
    /// warehouse's verdicts on what wharf exported, in the words its import report uses).
    pub enum LineOutcome: "line outcome" {
        /// Applied.
        Success = "Success",
        /// Already applied (the same sequence id, or the same shipment).
        Duplicate = "Duplicate",
        /// Older than what is stored: a newer sequence id was already applied.
        Superseded = "Superseded",
        /// Not applied: the message breaks a rule (the reason is in the line's message).
        Failure = "Failure",
    }
}

impl LineOutcome {
    /// Whether the line's content is in effect: applied now, or already applied before.
    pub const fn is_accepted(self) -> bool {
        matches!(self, LineOutcome::Success | LineOutcome::Duplicate)
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

impl Summary {
    /// The sum of `summaries`.
    pub fn total<'a>(summaries: impl IntoIterator<Item = &'a Summary>) -> Summary {
        let mut total = Summary::default();
        for s in summaries {
            total.successes += s.successes;
            total.duplicates += s.duplicates;
            total.superseded += s.superseded;
            total.failures += s.failures;
        }
        total
    }

    /// Counts one line with `outcome`.
    pub fn count(&mut self, outcome: LineOutcome) {
        match outcome {
            LineOutcome::Success => self.successes += 1,
            LineOutcome::Duplicate => self.duplicates += 1,
            LineOutcome::Superseded => self.superseded += 1,
            LineOutcome::Failure => self.failures += 1,
        }
    }
}

/// One line of an import report, as stored.
#[derive(Debug, Clone)]
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
    /// What became of the line.
    pub result: LineOutcome,
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

impl Report {
    /// Adds a line and counts its outcome.
    pub fn push(&mut self, line: ImportLine) {
        self.summary.count(line.result);
        self.lines.push(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_stored_as_the_report_words() {
        let words: Vec<&str> = LineOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(words, ["Success", "Duplicate", "Superseded", "Failure"]);
        assert_eq!(LineOutcome::parse("Failure"), Some(LineOutcome::Failure));
        assert_eq!(LineOutcome::parse("failure"), None);
    }

    #[test]
    fn success_and_duplicate_are_accepted() {
        let accepted: Vec<LineOutcome> = LineOutcome::ALL
            .iter()
            .copied()
            .filter(|o| o.is_accepted())
            .collect();
        assert_eq!(accepted, [LineOutcome::Success, LineOutcome::Duplicate]);
    }

    #[test]
    fn a_summary_counts_each_outcome() {
        let mut s = Summary::default();
        for o in LineOutcome::ALL {
            s.count(*o);
        }
        s.count(LineOutcome::Failure);
        assert_eq!(
            s,
            Summary {
                successes: 1,
                duplicates: 1,
                superseded: 1,
                failures: 2
            }
        );
    }
}
