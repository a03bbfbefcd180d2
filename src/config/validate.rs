//! Settings that parse but cannot work, refused at start-up with the setting's name, rather than
//! discovered later by a background task that logs and gives up.

use std::fmt;

use super::Settings;
use super::env::env_var;
use crate::db::DbTarget;
use crate::outbound::runner::{CONTINUOUS, Schedule};

/// One setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key, as in `wharf.toml` (`warehouse.orders.schedule`).
    pub key: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

/// Every problem found, one per line, each naming its setting and environment variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidSettings(pub Vec<Problem>);

impl fmt::Display for InvalidSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            // A `[[channels]]` table is written in the settings file (only its secrets have
            // variables, which its messages name).
            let from = if p.key.starts_with("channels[") {
                "in the settings file".to_string()
            } else {
                env_var(&p.key)
            };
            write!(f, "invalid setting {} ({from}): {}", p.key, p.message)?;
        }
        Ok(())
    }
}

impl Settings {
    /// Checks what start-up needs (`serve`, `worker`, `config`): a database URL wharf can open,
    /// export schedules that parse (and their batching windows), and, when an export is enabled,
    /// the endpoint and credentials it needs.
    pub fn validate(&self) -> Result<(), InvalidSettings> {
        let mut problems = Vec::new();
        let mut refuse = |key: &str, message: String| {
            problems.push(Problem {
                key: key.to_string(),
                message,
            })
        };
        self.validate_addresses(&mut refuse);
        self.validate_warehouse(&mut refuse);
        self.validate_limits(&mut refuse);
        for (key, message) in self.alerts.problems() {
            refuse(&format!("alerts.{key}"), message);
        }
        self.retention.validate(&mut refuse);
        super::channels::validate(&self.channels, &mut refuse);
        self.console.validate(&mut refuse);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(InvalidSettings(problems))
        }
    }

    /// The database URL and the public URL can be used; the export schedules parse.
    fn validate_addresses(&self, refuse: &mut impl FnMut(&str, String)) {
        if let Err(e) = DbTarget::parse(&self.database_url) {
            refuse("database_url", e.reason().to_string());
        }
        if let Some(url) = &self.public_url
            && let Err(why) = http_url(url)
        {
            refuse("public_url", why);
        }
        self.validate_schedules(refuse);
    }

    /// The export schedules are `continuous` or cron expressions that parse, and their batching
    /// windows are usable.
    fn validate_schedules(&self, refuse: &mut impl FnMut(&str, String)) {
        let w = &self.warehouse;
        for (part, e) in [("orders", &w.orders), ("products", &w.products)] {
            let schedule = &e.schedule;
            if let Err(why) = Schedule::parse(schedule) {
                refuse(
                    &format!("warehouse.{part}.schedule"),
                    format!(
                        "{schedule:?} is not a cron expression ({why}); write 5 fields \
                         (minute hour day month weekday, e.g. \"*/5 * * * *\") or 6 with seconds \
                         first, or \"{CONTINUOUS}\" to export as soon as something is due"
                    ),
                );
            }
            if !(1..=MAX_BATCH_WINDOW_MS).contains(&e.batch_window_ms) {
                refuse(
                    &format!("warehouse.{part}.batch_window_ms"),
                    format!(
                        "{} ms is not a batching window: give 1 to {MAX_BATCH_WINDOW_MS} \
                         milliseconds (how long a continuous export waits after a wake-up for \
                         what comes with it)",
                        e.batch_window_ms
                    ),
                );
            }
        }
    }

    /// Sizes, counts and timeouts that would, at 0 or too small, make wharf refuse all work.
    fn validate_limits(&self, refuse: &mut impl FnMut(&str, String)) {
        if self.auth.password_checks == Some(0) {
            refuse(
                "auth.password_checks",
                "must be at least 1, or no password could ever be checked; leave it unset for the \
                 number of cores"
                    .into(),
            );
        }
        if self.soap.max_tracking_numbers == 0 {
            refuse(
                "soap.max_tracking_numbers",
                "must be at least 1, or no shipment with a tracking number is accepted".into(),
            );
        }
        if self.http.body_timeout_secs == 0 {
            refuse(
                "http.body_timeout_secs",
                "must be at least 1 second, or no request with a body can arrive".into(),
            );
        }
        if self.http.body_budget < self.soap.max_body {
            refuse(
                "http.body_budget",
                format!(
                    "{} bytes is less than soap.max_body ({} bytes): the largest messages could \
                     never be received; raise it or lower soap.max_body",
                    self.http.body_budget, self.soap.max_body
                ),
            );
        }
        if self.warehouse.max_answer == 0 {
            refuse(
                "warehouse.max_answer",
                "must be at least 1 byte, or no answer of the warehouse can be read".into(),
            );
        }
        if self.http.max_connections == 0 {
            refuse(
                "http.max_connections",
                "must be at least 1, or no client can connect".into(),
            );
        }
        if self.shutdown_deadline_secs == 0 {
            refuse(
                "shutdown_deadline_secs",
                "must be at least 1 second, or requests in flight are cut off".into(),
            );
        }
    }

    /// The warehouse endpoint is a URL whenever it is set; exports need it and their credentials.
    fn validate_warehouse(&self, refuse: &mut impl FnMut(&str, String)) {
        let w = &self.warehouse;
        if !w.endpoint.is_empty()
            && let Err(why) = http_url(&w.endpoint)
        {
            refuse("warehouse.endpoint", why);
        }
        let enabled: Vec<&str> = [
            ("warehouse.orders.enabled", w.orders.enabled),
            ("warehouse.products.enabled", w.products.enabled),
        ]
        .into_iter()
        .filter_map(|(key, on)| on.then_some(key))
        .collect();
        let Some(first) = enabled.first() else {
            return;
        };
        for (key, value, what) in [
            (
                "warehouse.endpoint",
                &w.endpoint,
                "the OrderFlow API's base URL",
            ),
            ("warehouse.username", &w.username, "the HTTP Basic user"),
            ("warehouse.password", &w.password, "the HTTP Basic password"),
            (
                "warehouse.organisation",
                &w.organisation,
                "the OrderFlow organisation code",
            ),
            (
                "warehouse.channel",
                &w.channel,
                "the OrderFlow channel code",
            ),
        ] {
            if value.is_empty() {
                refuse(
                    key,
                    format!("is empty but {first} is on; set {what}, or turn the export off"),
                );
            }
        }
    }
}

/// The longest batching window of a continuous export, in milliseconds (a minute: longer is what a
/// cron schedule is for).
pub const MAX_BATCH_WINDOW_MS: u64 = 60_000;

/// An absolute `http://` or `https://` URL.
fn http_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(()),
        Ok(_) => Err(format!("{url:?} is not an http:// or https:// URL")),
        Err(e) => Err(format!(
            "{url:?} is not a URL ({e}); write it like https://host/path/"
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::Settings;

    fn refused(s: &Settings) -> Vec<String> {
        match s.validate() {
            Ok(()) => Vec::new(),
            Err(e) => e.0.into_iter().map(|p| p.key).collect(),
        }
    }

    #[test]
    fn body_limits_that_cannot_work_are_refused() {
        assert!(refused(&Settings::default()).is_empty());
        let mut s = Settings::default();
        s.http.body_budget = s.soap.max_body - 1;
        s.http.body_timeout_secs = 0;
        s.http.max_connections = 0;
        s.warehouse.max_answer = 0;
        assert_eq!(
            refused(&s),
            [
                "http.body_timeout_secs",
                "http.body_budget",
                "warehouse.max_answer",
                "http.max_connections"
            ]
        );
    }

    #[test]
    fn schedules_are_cron_or_continuous_with_a_usable_window() {
        let mut s = Settings::default();
        s.warehouse.orders.schedule = "continuous".into();
        s.warehouse.products.schedule = "*/5 * * * *".into();
        assert!(refused(&s).is_empty());
        s.warehouse.orders.schedule = "continuously".into();
        s.warehouse.orders.batch_window_ms = 0;
        s.warehouse.products.batch_window_ms = 60_001;
        assert_eq!(
            refused(&s),
            [
                "warehouse.orders.schedule",
                "warehouse.orders.batch_window_ms",
                "warehouse.products.batch_window_ms"
            ]
        );
        let message = s.validate().unwrap_err().to_string();
        assert!(
            message.contains("\"continuously\" is not a cron expression")
                && message.contains("or \"continuous\"")
                && message.contains("WHARF_WAREHOUSE__ORDERS__BATCH_WINDOW_MS")
                && message.contains("0 ms is not a batching window: give 1 to 60000"),
            "{message}"
        );
    }
}
