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
    /// Applied requests and their import reports.
    pub requests_days: i64,
    /// Raw request bodies may be dropped earlier than their rows (`None`: kept as long as the row).
    pub request_bodies_days: Option<i64>,
    /// Export exchanges (the documents sent and the answers).
    pub exports_days: i64,
    /// Refused messages.
    pub rejections_days: i64,
    /// Finished outbound tasks (done, dismissed, skipped).
    pub outbound_tasks_days: i64,
    /// Rows deleted per transaction (each short, so the queue is never held up).
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
            batch_size: 500,
            interval_secs: 3600,
        }
    }
}
