//! The `[console]` section: the support console at `/admin`.

use serde::{Deserialize, Serialize};

/// The support console (server-rendered pages at `/admin`, for users with the role `viewer` or
/// `operator`).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Serve the console. Off: every `/admin` page answers 404.
    pub enabled: bool,
    /// Send the session cookie without `Secure`, so that the console works over plain HTTP (a LAN
    /// install without TLS, the tests). Leave off whenever the console is reached over HTTPS.
    pub insecure_cookies: bool,
    /// A console session not used for this long has ended (seconds).
    pub session_idle_secs: u64,
    /// No console session lasts longer than this, however busy (seconds).
    pub session_max_secs: u64,
    /// The most records one "all matching" action (requeue, reprocess, resend, dismiss) may touch.
    pub bulk_max: i64,
    /// Origins besides `public_url` and the request's own host that console forms may be posted
    /// from (e.g. `https://support.example.com` when a proxy rewrites the host).
    pub allowed_origins: Vec<String>,
    /// The fastest auto-refresh a page offers, in seconds.
    pub refresh_secs: u64,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            enabled: true,
            insecure_cookies: false,
            session_idle_secs: 2 * 3600,
            session_max_secs: 12 * 3600,
            bulk_max: 1000,
            allowed_origins: Vec::new(),
            refresh_secs: 15,
        }
    }
}

impl ConsoleSettings {
    /// Refuses values the console cannot work with, naming the setting (see
    /// [`Settings::validate`](super::Settings::validate)).
    pub(super) fn validate(&self, refuse: &mut impl FnMut(&str, String)) {
        if self.session_idle_secs == 0 || self.session_max_secs == 0 {
            refuse(
                "console.session_idle_secs",
                "session lifetimes must be at least 1 second".into(),
            );
        }
        if self.session_idle_secs > self.session_max_secs {
            refuse(
                "console.session_idle_secs",
                format!(
                    "must not be longer than console.session_max_secs ({} s)",
                    self.session_max_secs
                ),
            );
        }
        if !(1..=100_000).contains(&self.bulk_max) {
            refuse(
                "console.bulk_max",
                "must be between 1 and 100000 records per action".into(),
            );
        }
        if self.refresh_secs < 5 {
            refuse(
                "console.refresh_secs",
                "must be at least 5 seconds (every refresh reads the database)".into(),
            );
        }
        for origin in &self.allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.trim_end_matches('/').matches('/').count() != 2
            {
                refuse(
                    "console.allowed_origins",
                    format!("{origin:?} is not an origin (scheme://host[:port], no path)"),
                );
            }
        }
    }
}
