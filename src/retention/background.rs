//! The in-process cleaner of `wharf serve` and `wharf worker`: a clean every `interval_secs`, each
//! recorded in `background_runs` as [`Job::Cleaner`]. Several processes may clean at once: each
//! batch deletes only rows still finished and old, so the second finds nothing, or other rows.

use std::ops::ControlFlow;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use super::{Part, PartCount};
use crate::config::RetentionSettings;
use crate::db::{self, Pool};
use crate::runs::{self, Job};

/// The longest the first clean waits after start-up: a process restarted more often than hourly
/// must still clean.
const FIRST_AFTER: Duration = Duration::from_secs(60);

/// Cleans every `settings.interval_secs` (the first time after at most a minute) until `stop`
/// turns true; a clean in progress stops between two batches.
pub async fn run_every(pool: Pool, settings: RetentionSettings, mut stop: watch::Receiver<bool>) {
    let interval = Duration::from_secs(settings.interval_secs.max(1));
    let mut wait = interval.min(FIRST_AFTER);
    tracing::info!(
        interval_secs = interval.as_secs(),
        "retention cleaner started"
    );
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        wait = interval;
        let (pool, settings, stop) = (pool.clone(), settings.clone(), stop.clone());
        let run = tokio::task::spawn_blocking(move || clean_once(&pool, &settings, &stop)).await;
        if let Err(e) = run {
            tracing::error!(error = %e, "the retention cleaner stopped unexpectedly; it runs again \
                at its next interval");
        }
    }
    tracing::info!("retention cleaner stopped");
}

/// One clean, logged and recorded; errors are logged (and recorded when the database allows).
fn clean_once(pool: &Pool, settings: &RetentionSettings, stop: &watch::Receiver<bool>) {
    let mut conn = match pool.get() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no database connection for the retention cleaner; it \
                runs again at its next interval");
            return;
        }
    };
    let mut progress = |_: &super::Progress| {
        if *stop.borrow() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let outcome = super::clean(&mut conn, settings, db::now(), &mut progress)
        .context("the retention clean failed; it runs again at its next interval")
        .map(|counts| log(&counts));
    if let Err(e) = &outcome {
        tracing::error!(error = %format!("{e:#}"), "retention clean failed");
    }
    if let Err(e) = runs::record(&mut conn, Job::Cleaner, &outcome, db::now()) {
        tracing::warn!(error = %e, "could not record the retention clean in background_runs");
    }
}

/// Logs what a clean deleted, when it deleted anything.
fn log(counts: &[PartCount]) {
    for c in counts.iter().filter(|c| c.rows > 0) {
        let verb = if c.part == Part::RequestBodies {
            "dropped"
        } else {
            "deleted"
        };
        tracing::info!(
            part = c.part.as_str(),
            rows = c.rows,
            import_lines = c.import_lines,
            "retention {verb} {} {}",
            c.rows,
            c.part.noun()
        );
    }
}
