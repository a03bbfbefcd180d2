//! Settings that parse but cannot work, refused at start-up with the setting's name, rather than
//! discovered later by a background task that logs and gives up.

use std::fmt;

use super::Settings;
use super::env::env_var;
use crate::db::DbTarget;

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
            write!(
                f,
                "invalid setting {} ({}): {}",
                p.key,
                env_var(&p.key),
                p.message
            )?;
        }
        Ok(())
    }
}

impl Settings {
    /// Checks what start-up needs (`serve`, `worker`, `config`): a database URL wharf can open,
    /// cron expressions that parse, and, when an export is enabled, the endpoint and credentials
    /// it needs.
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
        for (key, schedule) in [
            ("warehouse.orders.schedule", &self.warehouse.orders.schedule),
            (
                "warehouse.products.schedule",
                &self.warehouse.products.schedule,
            ),
        ] {
            if let Err(e) = parse_cron(schedule) {
                refuse(
                    key,
                    format!(
                        "{schedule:?} is not a cron expression ({e}); write 5 fields \
                         (minute hour day month weekday, e.g. \"*/5 * * * *\") or 6 with seconds first"
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

/// The cron dialect the exporter runs on: croner, seconds optional.
pub(crate) fn parse_cron(schedule: &str) -> Result<croner::Cron, croner::errors::CronError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(schedule)
}

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
}
