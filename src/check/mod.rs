//! `wharf check`: what an operator verifies before trusting a deployment — configuration, database,
//! queue, background jobs, the warehouse endpoint, SMTP, the file channels' SFTP servers and users —
//! each as a [`Finding`] with a status word, what was found and, when not ok, what to do. The CLI
//! prints them one per line.
//!
//! Checks only read and probe: they never migrate, enqueue, or change stored state (the optional
//! test mail is the one thing sent, and only when asked for).

mod config;
mod database;
mod files;
mod remote;

use std::path::Path;

use crate::config::Settings;

pub use config::{configuration, secrets, unparsable};

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but deserves a look.
    Warn,
    /// Does not work: `wharf check` exits non-zero.
    Fail,
    /// Not in use (a feature turned off or not built yet).
    Off,
}

impl Status {
    /// The word printed at the start of the line (`FAIL` in capitals, to stand out).
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Off => "off",
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How it came out.
    pub status: Status,
    /// What was checked (`database`, `smtp`, …).
    pub name: String,
    /// What was found, and when not ok what to do. Never a secret.
    pub detail: String,
}

impl Finding {
    fn new(status: Status, name: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding {
            status,
            name: name.into(),
            detail: detail.into(),
        }
    }

    /// A passed check.
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding::new(Status::Ok, name, detail)
    }

    /// A check that deserves a look.
    pub fn warn(name: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding::new(Status::Warn, name, detail)
    }

    /// A failed check.
    pub fn fail(name: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding::new(Status::Fail, name, detail)
    }

    /// A check of something not in use.
    pub fn off(name: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding::new(Status::Off, name, detail)
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<4} {}: {}",
            self.status.word(),
            self.name,
            self.detail
        )
    }
}

/// Whether any finding failed.
pub fn any_failed(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.status == Status::Fail)
}

/// Every check, in the order printed, on settings that parsed (`file` is where they came from).
/// `test_mail`: also send a short mail there through the configured SMTP server.
pub async fn run(
    settings: &Settings,
    file: Option<&Path>,
    test_mail: Option<&str>,
) -> Vec<Finding> {
    let mut findings = vec![configuration(settings, file), secrets(settings)];
    let db_settings = settings.clone();
    match tokio::task::spawn_blocking(move || database::checks(&db_settings)).await {
        Ok(found) => findings.extend(found),
        Err(e) => findings.push(Finding::fail(
            "database",
            format!("the database checks stopped unexpectedly ({e})"),
        )),
    }
    findings.push(remote::warehouse(settings).await);
    findings.extend(remote::smtp(&settings.alerts, test_mail).await);
    findings.extend(files::checks(settings).await);
    findings
}

/// "3 s", "12 min", "5 h", "2 d": an age as people read it.
fn age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_start_with_the_status_word_and_name() {
        let f = Finding::fail("database", "unreachable: start it");
        assert_eq!(f.to_string(), "FAIL database: unreachable: start it");
        assert_eq!(
            Finding::ok("queue", "empty").to_string(),
            "ok   queue: empty"
        );
        assert!(any_failed(&[Finding::ok("a", "b"), f]));
        assert!(!any_failed(&[
            Finding::warn("a", "b"),
            Finding::off("c", "d")
        ]));
    }

    #[test]
    fn ages_read_in_the_unit_that_fits() {
        assert_eq!(age(5), "5 s");
        assert_eq!(age(900), "15 min");
        assert_eq!(age(3 * 3600), "3 h");
        assert_eq!(age(3 * 86400), "3 d");
    }
}
