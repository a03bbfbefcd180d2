//! The audit log: every support action, from the console or the CLI — who, when, what, on which
//! records, under which filter, how many. Written in the transaction of the action it records, so
//! an action is never done without its row (nor the row kept for an action rolled back).

mod store;

pub use store::{
    AuditRow, count_recorded_before, delete_recorded, list, naming, record, recorded_before,
};

crate::text_enum! {
    /// Where an action came from.
    pub enum Via: "audit source" {
        /// A console page (the actor is `console:<user>`).
        Console = "console",
        /// The `wharf` command (the actor is the `--by` name or the system user).
        Cli = "cli",
    }
}

/// One action to record.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// Who did it (`console:alice`, or the CLI's actor).
    pub actor: &'a str,
    /// Where from.
    pub via: Via,
    /// What: `requests.requeue`, `requests.reprocess`, `orders.resend`, `orders.dismiss`,
    /// `products.resend`, …
    pub action: &'a str,
    /// The kind of records it touched: `request`, `order`, `product`, …
    pub subject_kind: &'a str,
    /// The records it touched (ids or order numbers; the stored text is capped, the count is not).
    pub subjects: &'a [String],
    /// For an "all matching" action, the filter it was given (the list's query string).
    pub filter: Option<&'a str>,
    /// How many records it touched.
    pub count: i64,
    /// The note given with it (e.g. why an order was dismissed).
    pub note: Option<&'a str>,
}
