//! An outbound runner: a channel's sending, on its own cron schedule or continuously (woken when
//! something may be due), until shutdown.

use std::future::Future;
use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};
use tokio::sync::{Notify, watch};

/// The word that makes a schedule continuous instead of a cron expression.
pub const CONTINUOUS: &str = "continuous";

/// How long a continuous runner waits without a wake-up before it looks anyway: a lost wake-up (a
/// listener reconnecting, SQLite written by another process) is made up for within this.
pub const CONTINUOUS_FALLBACK: Duration = Duration::from_secs(30);

/// How long a continuous runner pauses after a run that failed (wake-ups are not followed then,
/// so a broken database is not hammered).
const FAILED_PAUSE: Duration = Duration::from_secs(5);

/// When a runner runs.
#[derive(Debug)]
pub enum Schedule {
    /// At every occurrence of a cron expression.
    Cron(Box<croner::Cron>),
    /// Whenever a wake-up says something may be due, after a batching window.
    Continuous,
}

impl Schedule {
    /// `continuous`, or a cron expression (croner syntax, seconds optional).
    pub fn parse(schedule: &str) -> Result<Schedule, croner::errors::CronError> {
        if schedule.trim() == CONTINUOUS {
            return Ok(Schedule::Continuous);
        }
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(schedule)
            .map(|c| Schedule::Cron(Box::new(c)))
    }
}

/// Runs `run` at every occurrence of `cron` until `stop` turns true. `what` names the runner in
/// the log. A run that fails is logged and the next one comes on schedule.
pub async fn on_schedule<F, Fut>(
    what: &'static str,
    cron: Box<croner::Cron>,
    mut stop: watch::Receiver<bool>,
    mut run: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    tracing::info!(
        runner = what,
        schedule = cron.as_str(),
        "exporter started ({what})"
    );
    loop {
        let now = chrono::Utc::now();
        let next = cron
            .find_next_occurrence(&now, false)
            .unwrap_or(now + TimeDelta::minutes(1));
        let wait = (next - now).to_std().unwrap_or(Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        if let Err(e) = run().await {
            tracing::error!(runner = what, error = %format!("{e:#}"),
                "{what} run failed; it runs again on schedule");
        }
    }
    tracing::info!(runner = what, "exporter stopped ({what})");
}

/// How a continuous runner is woken.
#[derive(Clone, Copy, Debug)]
pub struct Wakes {
    /// Signalled (after commit, and from other processes through the listener) when something may
    /// be due.
    pub notify: &'static Notify,
    /// After a wake-up, wait this long before running, so that what arrives together goes in one
    /// run.
    pub window: Duration,
}

/// Runs `run` once at start, then whenever `wakes` is signalled (after its batching window), at
/// the latest [`CONTINUOUS_FALLBACK`] after the last run, and when the next waiting item falls due
/// (`run` returns when that is, UTC), until `stop` turns true. At most one run per window. A run
/// that fails is logged, and the next one comes after a pause.
pub async fn continuous<F, Fut>(
    what: &'static str,
    wakes: Wakes,
    mut stop: watch::Receiver<bool>,
    mut run: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<NaiveDateTime>>>,
{
    tracing::info!(
        runner = what,
        window_ms = wakes.window.as_millis() as u64,
        "exporter started ({what}, continuous)"
    );
    while !*stop.borrow() {
        // Created before the run looks for work, so what is announced while it runs still wakes
        // the wait below (see `db::wake`).
        let woken = wakes.notify.notified();
        let next = match run().await {
            Ok(due) => Next::Wait(wait_until(due, wakes.window)),
            Err(e) => {
                tracing::error!(runner = what, error = %format!("{e:#}"),
                    "{what} run failed; it runs again after a pause");
                Next::Pause
            }
        };
        let woken_up = match next {
            Next::Wait(wait) => tokio::select! {
                _ = tokio::time::sleep(wait) => false,
                _ = woken => true,
                _ = stop.changed() => false,
            },
            Next::Pause => tokio::select! {
                _ = tokio::time::sleep(FAILED_PAUSE.max(wakes.window)) => false,
                _ = stop.changed() => false,
            },
        };
        if woken_up {
            // Company: what else is committed within the window goes in the same run.
            tokio::select! {
                _ = tokio::time::sleep(wakes.window) => {}
                _ = stop.changed() => {}
            }
        }
    }
    tracing::info!(runner = what, "exporter stopped ({what})");
}

/// What a continuous runner does after a run.
enum Next {
    /// Wait this long for a wake-up, then run anyway.
    Wait(Duration),
    /// The run failed: pause without following wake-ups.
    Pause,
}

/// How long to wait for a wake-up when the next waiting item falls due at `due` (UTC): until then,
/// at most [`CONTINUOUS_FALLBACK`], at least `window` (so a retry due at once cannot spin).
fn wait_until(due: Option<NaiveDateTime>, window: Duration) -> Duration {
    let until_due = due
        .map(|at| (at - crate::db::now()).to_std().unwrap_or(Duration::ZERO))
        .unwrap_or(CONTINUOUS_FALLBACK);
    until_due.clamp(window, CONTINUOUS_FALLBACK.max(window))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_cron_or_continuous() {
        assert!(matches!(
            Schedule::parse("continuous"),
            Ok(Schedule::Continuous)
        ));
        assert!(matches!(
            Schedule::parse("*/5 * * * *"),
            Ok(Schedule::Cron(_))
        ));
        assert!(Schedule::parse("continuously").is_err());
        assert!(Schedule::parse("61 * * * *").is_err());
    }

    #[test]
    fn a_continuous_runner_waits_for_the_next_due_item_within_bounds() {
        let window = Duration::from_secs(1);
        let now = crate::db::now();
        assert_eq!(wait_until(None, window), CONTINUOUS_FALLBACK);
        let soon = wait_until(Some(now + TimeDelta::seconds(10)), window);
        assert!(soon <= Duration::from_secs(10) && soon > Duration::from_secs(8));
        assert_eq!(
            wait_until(Some(now - TimeDelta::seconds(5)), window),
            window
        );
        assert_eq!(
            wait_until(Some(now + TimeDelta::hours(2)), window),
            CONTINUOUS_FALLBACK
        );
    }
}
