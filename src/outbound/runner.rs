//! An outbound runner: a channel's sending, on its own cron schedule, until shutdown.

use std::future::Future;
use std::time::Duration;

use chrono::TimeDelta;
use tokio::sync::watch;

/// Runs `run` at every occurrence of `schedule` (croner syntax, seconds optional) until `stop`
/// turns true. `what` names the runner in the log. A run that fails is logged and the next one
/// comes on schedule; an invalid schedule is logged and nothing runs (settings are checked at
/// start-up, so this is a last resort).
pub async fn on_schedule<F, Fut>(
    what: &'static str,
    schedule: String,
    mut stop: watch::Receiver<bool>,
    mut run: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let cron = match croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(&schedule)
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(runner = what, schedule = %schedule, error = %e,
                "the {what} schedule is not a valid cron expression; it does not run");
            return;
        }
    };
    tracing::info!(runner = what, schedule = %schedule, "exporter started ({what})");
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
