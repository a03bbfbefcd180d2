//! The `[retention]` section: how long finished records are kept.

use serde::{Deserialize, Serialize};

/// How long finished records are kept, in days; `wharf clean` and the in-process cleaner delete
/// what is older. Nothing unfinished (queued, processing, dead, lost, pending) is ever deleted,
/// whatever its age.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// Run the cleaner inside `wharf serve` and `wharf worker` (hourly by `interval_secs`).
    pub enabled: bool,
    /// Processed requests, with their lines, import reports, support actions and failed attempts.
    /// Shipments they created stay (an order keeps its shipment history).
    pub requests_days: i64,
    /// Raw request bodies (the XML received) may be dropped earlier than their rows, which keep
    /// their lines and import report (unset: kept as long as the row).
    pub request_bodies_days: Option<i64>,
    /// Export exchanges (the documents sent and the answers).
    pub exports_days: i64,
    /// Refused messages.
    pub rejections_days: i64,
    /// Finished outbound tasks (done, dismissed, skipped) and their support actions; the latest
    /// warehouse task of each order and product is kept as its record.
    pub outbound_tasks_days: i64,
    /// File exchanges of the file channels (`kind = "sftp"`) that are over: order files sent,
    /// shipment files applied or repeated, and failed ones once support marked them seen (unseen
    /// failures and unfinished files stay, whatever their age).
    pub file_exchanges_days: i64,
    /// Feed events (`None`: kept for ever). A storefront whose cursor is older than what is kept
    /// gets `410 cursor_expired` and must reconcile (see the feed in the README).
    pub feed_days: Option<i64>,
    /// Resolved incidents (open ones are never deleted).
    pub incidents_days: i64,
    /// The audit log of support actions (console and CLI).
    pub audit_days: i64,
    /// Rows deleted per transaction (each short, so the queue is never held up); 1 to 10 000.
    pub batch_size: i64,
    /// How often the in-process cleaner runs, in seconds.
    pub interval_secs: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            enabled: true,
            requests_days: 30,
            request_bodies_days: None,
            exports_days: 30,
            rejections_days: 14,
            outbound_tasks_days: 30,
            file_exchanges_days: 30,
            incidents_days: 90,
            audit_days: 365,
            feed_days: Some(30),
            batch_size: 500,
            interval_secs: 3600,
        }
    }
}

/// The most rows one transaction deletes: the ids go into one statement, under both backends'
/// bind-parameter limits, and a larger batch would hold the write lock long enough to be noticed.
pub const MAX_BATCH_SIZE: i64 = 10_000;

impl RetentionSettings {
    /// Refuses values the cleaner cannot work with, naming the setting (see
    /// [`Settings::validate`](super::Settings::validate)).
    pub(super) fn validate(&self, refuse: &mut impl FnMut(&str, String)) {
        for (key, days) in [
            ("retention.requests_days", Some(self.requests_days)),
            ("retention.request_bodies_days", self.request_bodies_days),
            ("retention.exports_days", Some(self.exports_days)),
            ("retention.rejections_days", Some(self.rejections_days)),
            (
                "retention.outbound_tasks_days",
                Some(self.outbound_tasks_days),
            ),
            (
                "retention.file_exchanges_days",
                Some(self.file_exchanges_days),
            ),
            ("retention.incidents_days", Some(self.incidents_days)),
            ("retention.audit_days", Some(self.audit_days)),
            ("retention.feed_days", self.feed_days),
        ] {
            if days.is_some_and(|d| d < 0) {
                refuse(
                    key,
                    "must be 0 or more days (0 deletes every finished record at each clean)".into(),
                );
            }
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            refuse(
                "retention.batch_size",
                format!("must be between 1 and {MAX_BATCH_SIZE} rows per transaction"),
            );
        }
        if self.interval_secs == 0 {
            refuse(
                "retention.interval_secs",
                "must be at least 1 second (3600 cleans hourly); to stop the in-process cleaner \
                 set retention.enabled = false"
                    .into(),
            );
        }
    }
}
