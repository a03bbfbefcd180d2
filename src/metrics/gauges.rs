//! The gauges read from the database at each scrape: the queue, the outbound tasks, the breakers,
//! the background jobs' last runs, the open incidents and alert mails in trouble, the order
//! channels' pushes and breakers, the file channels' troubles, failed and stuck files, and the
//! build. Read fresh each time, not kept in the process's
//! recorder, so every process of one database reports the same values (and servers sharing a
//! process, as in the tests, never mix theirs).
//!
//! Each part is one [`Section`] of [`SECTIONS`]; a new part (the alert incidents, say) is one more
//! function of that shape and one more entry there.

use chrono::NaiveDateTime;
use diesel::QueryResult;

use crate::alerts::conditions::channel_breaker_key;
use crate::alerts::{self, Condition};
use crate::config::ChannelSettings;
use crate::db::DbConnection;
use crate::outbound::{self, TaskState};
use crate::queue::{self, Operation, RequestState};
use crate::runs;

/// Writes one part of the database gauges onto the page, as of `now`.
pub type Section = fn(&mut DbConnection, &mut Page, NaiveDateTime) -> QueryResult<()>;

/// The parts of the database gauges, in page order.
pub const SECTIONS: &[Section] = &[
    queue_gauges,
    outbound_gauges,
    breaker_gauges,
    run_gauges,
    alert_gauges,
];

/// The database gauges of `/metrics`, in the Prometheus text format, as of `now`, with the
/// order channels `channels` (the configured ones: each is listed, zeros included).
pub fn render(
    conn: &mut DbConnection,
    channels: &[ChannelSettings],
    now: NaiveDateTime,
) -> QueryResult<String> {
    let mut page = Page::default();
    page.family(
        "wharf_build_info",
        "The wharf build answering, by version (always 1)",
    );
    page.sample(
        "wharf_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    for section in SECTIONS {
        section(conn, &mut page, now)?;
    }
    channel_gauges(conn, &mut page, channels, now)?;
    file_channel_gauges(conn, &mut page, channels)?;
    Ok(page.out)
}

/// A page being written in the Prometheus text format (every family here is a gauge).
#[derive(Default)]
pub struct Page {
    out: String,
}

impl Page {
    /// Starts the family `name`: its HELP and TYPE lines.
    pub fn family(&mut self, name: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        self.out
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
    }

    /// One sample of the family `name`, with `labels` (values escaped as the format asks).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| {
                    let v = v
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n");
                    format!("{k}=\"{v}\"")
                })
                .collect();
            self.out.push('{');
            self.out.push_str(&labels.join(","));
            self.out.push('}');
        }
        self.out.push_str(&format!(" {value}\n"));
    }
}

/// Seconds from `since` to `now`, never negative (another process's clock may run ahead).
fn age(since: Option<NaiveDateTime>, now: NaiveDateTime) -> f64 {
    since.map_or(0.0, |t| {
        ((now - t).num_milliseconds().max(0) as f64) / 1000.0
    })
}

/// A Unix timestamp in seconds.
fn unix(t: NaiveDateTime) -> f64 {
    t.and_utc().timestamp_millis() as f64 / 1000.0
}

/// A word the database holds that wharf wrote from its own constants (a channel, an action, a
/// breaker's kind), or `None` when it does not look like one: a label never carries other text.
fn word(text: &str) -> Option<&str> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    ok.then_some(text)
}

/// Unfinished requests by operation and state (zeros included), the dead ones, and the age of
/// the oldest queued one.
fn queue_gauges(conn: &mut DbConnection, page: &mut Page, now: NaiveDateTime) -> QueryResult<()> {
    let counts = queue::unfinished_by_state(conn)?;
    let count = |op: Operation, state: RequestState| {
        counts
            .iter()
            .filter(|(o, s, _)| *o == op && *s == state)
            .map(|(_, _, n)| *n)
            .sum::<i64>()
    };
    page.family(
        "wharf_queue_requests",
        "Requests not yet applied, by operation and state (queued, processing, dead)",
    );
    let states = [
        RequestState::Queued,
        RequestState::Processing,
        RequestState::Dead,
    ];
    for op in Operation::ALL {
        for state in states {
            let labels = [("operation", op.as_str()), ("state", state.as_str())];
            page.sample("wharf_queue_requests", &labels, count(*op, state) as f64);
        }
    }
    page.family(
        "wharf_dead_requests",
        "Requests that failed their last attempt and wait for support (`wharf requests requeue`)",
    );
    let dead: i64 = Operation::ALL
        .iter()
        .map(|op| count(*op, RequestState::Dead))
        .sum();
    page.sample("wharf_dead_requests", &[], dead as f64);
    page.family(
        "wharf_queue_oldest_queued_age_seconds",
        "How long the oldest queued request has waited since it was received (0: none queued)",
    );
    let oldest = queue::oldest_queued_at(conn)?;
    page.sample(
        "wharf_queue_oldest_queued_age_seconds",
        &[],
        age(oldest, now),
    );
    Ok(())
}

/// Open outbound tasks by channel, action and state, and how long the oldest due one has been due.
fn outbound_gauges(
    conn: &mut DbConnection,
    page: &mut Page,
    now: NaiveDateTime,
) -> QueryResult<()> {
    page.family(
        "wharf_outbound_tasks",
        "Open outbound tasks, by channel, action and state (pending, failed, lost)",
    );
    for (channel, action, state, n) in outbound::open_counts(conn)? {
        if let (Some(channel), Some(action)) = (word(&channel), word(&action)) {
            let labels = [
                ("channel", channel),
                ("action", action),
                ("state", state.as_str()),
            ];
            page.sample("wharf_outbound_tasks", &labels, n as f64);
        }
    }
    page.family(
        "wharf_outbound_oldest_due_age_seconds",
        "How long the oldest due outbound task (pending, or failed past its retry time) has been \
         due, by channel and action",
    );
    for (channel, action, since) in outbound::oldest_due(conn, now)? {
        if let (Some(channel), Some(action)) = (word(&channel), word(&action)) {
            let labels = [("channel", channel), ("action", action)];
            page.sample(
                "wharf_outbound_oldest_due_age_seconds",
                &labels,
                age(Some(since), now),
            );
        }
    }
    Ok(())
}

/// Each breaker that counts failures: whether it is open, and its consecutive failures.
fn breaker_gauges(conn: &mut DbConnection, page: &mut Page, now: NaiveDateTime) -> QueryResult<()> {
    let breakers = outbound::breaker::breakers(conn)?;
    page.family(
        "wharf_breaker_open",
        "Whether a breaker pauses its exports (1) or not (0), by breaker; a breaker that counts \
         no failure is not listed",
    );
    for (kind, b) in &breakers {
        if let Some(kind) = word(kind) {
            let open = if b.is_open(now) { 1.0 } else { 0.0 };
            page.sample("wharf_breaker_open", &[("breaker", kind)], open);
        }
    }
    page.family(
        "wharf_breaker_consecutive_failures",
        "Exchanges in a row the other side did not answer, by breaker",
    );
    for (kind, b) in &breakers {
        if let Some(kind) = word(kind) {
            let failures = f64::from(b.failures);
            page.sample(
                "wharf_breaker_consecutive_failures",
                &[("breaker", kind)],
                failures,
            );
        }
    }
    Ok(())
}

/// The last success and the last failure of each background job that ran, as Unix timestamps.
fn run_gauges(conn: &mut DbConnection, page: &mut Page, _now: NaiveDateTime) -> QueryResult<()> {
    let runs = runs::all(conn)?;
    page.family(
        "wharf_last_success_timestamp_seconds",
        "When each background job last ran well (Unix time), whichever process ran it",
    );
    for run in &runs {
        if let Some(at) = run.last_ok_at {
            page.sample(
                "wharf_last_success_timestamp_seconds",
                &[("job", run.job.as_str())],
                unix(at),
            );
        }
    }
    page.family(
        "wharf_last_failure_timestamp_seconds",
        "When each background job last failed (Unix time); `wharf check` shows why",
    );
    for run in &runs {
        if let Some(at) = run.last_failed_at {
            page.sample(
                "wharf_last_failure_timestamp_seconds",
                &[("job", run.job.as_str())],
                unix(at),
            );
        }
    }
    Ok(())
}

/// Open incidents by condition (zeros included), and alert mails that do not go.
fn alert_gauges(conn: &mut DbConnection, page: &mut Page, now: NaiveDateTime) -> QueryResult<()> {
    let open = alerts::open_incidents(conn)?;
    page.family(
        "wharf_open_incidents",
        "Incidents open now, by condition (each opened with one alert mail and resolves with one)",
    );
    for condition in Condition::ALL {
        let n = open
            .iter()
            .filter(|i| i.condition() == Some(*condition))
            .count();
        page.sample(
            "wharf_open_incidents",
            &[("condition", condition.as_str())],
            n as f64,
        );
    }
    let trouble = alerts::mail_trouble(conn, now)?;
    page.family(
        "wharf_alert_mails_in_trouble",
        "Alert mails that do not go, by state: failed (retried), lost (given up), overdue (due for \
         more than 5 min, e.g. held by the hourly limit); `wharf check` shows why",
    );
    for (state, n) in [
        ("failed", trouble.failed),
        ("lost", trouble.lost),
        ("overdue", trouble.overdue),
    ] {
        page.sample(
            "wharf_alert_mails_in_trouble",
            &[("state", state)],
            n as f64,
        );
    }
    Ok(())
}

/// The states `wharf_channel_tasks` counts: still to be sent, being polled, or waiting for support.
const CHANNEL_STATES: [TaskState; 5] = [
    TaskState::Pending,
    TaskState::Awaiting,
    TaskState::Failed,
    TaskState::Lost,
    TaskState::Dead,
];

/// Each configured order channel's open pushes by state (zeros included), and whether its breaker
/// pauses it. (The channels come from the settings, not the database: a channel with no task yet
/// still shows its zeros, and a removed one drops off the page.)
fn channel_gauges(
    conn: &mut DbConnection,
    page: &mut Page,
    channels: &[ChannelSettings],
    now: NaiveDateTime,
) -> QueryResult<()> {
    let names: Vec<&str> = channels.iter().filter_map(|c| word(&c.name)).collect();
    let counts = outbound::channel_state_counts(conn, &names, &CHANNEL_STATES)?;
    page.family(
        "wharf_channel_tasks",
        "Pushes to each order channel by state: pending, awaiting (its ticket is read), failed \
         (retried), lost or dead (waiting for support: `wharf channels tasks`)",
    );
    for name in &names {
        for state in CHANNEL_STATES {
            let n = counts
                .iter()
                .find(|(c, s, _)| c == name && *s == state)
                .map_or(0, |(_, _, n)| *n);
            let labels = [("channel", *name), ("state", state.as_str())];
            page.sample("wharf_channel_tasks", &labels, n as f64);
        }
    }
    let breakers = outbound::breaker::breakers(conn)?;
    page.family(
        "wharf_channel_paused",
        "Whether an order channel's breaker pauses its pushes (1) or not (0)",
    );
    for name in &names {
        let key = channel_breaker_key(name);
        let open = breakers.iter().any(|(k, b)| *k == key && b.is_open(now));
        let value = if open { 1.0 } else { 0.0 };
        page.sample("wharf_channel_paused", &[("channel", *name)], value);
    }
    Ok(())
}

/// Each configured file channel's troubles now (1 or 0 per kind, zeros included), its failed
/// shipment files support has not seen, and its files stuck in `processing/`.
fn file_channel_gauges(
    conn: &mut DbConnection,
    page: &mut Page,
    channels: &[ChannelSettings],
) -> QueryResult<()> {
    use crate::channels::sftp::client::Trouble;
    use crate::channels::sftp::store::{self as files, ops};
    let names: Vec<&str> = channels
        .iter()
        .filter(|c| c.is_files())
        .filter_map(|c| word(&c.name))
        .collect();
    let troubles = files::troubles(conn, None)?;
    page.family(
        "wharf_file_channel_trouble",
        "Whether a file channel has this trouble now (1) or not (0): connection, host_key, \
         export_folder, export, import_folder, import (`wharf files`)",
    );
    for name in &names {
        for t in Trouble::ALL {
            let on = troubles
                .iter()
                .any(|r| r.channel == *name && r.trouble == t.as_str());
            let labels = [("channel", *name), ("trouble", t.as_str())];
            page.sample(
                "wharf_file_channel_trouble",
                &labels,
                if on { 1.0 } else { 0.0 },
            );
        }
    }
    page.family(
        "wharf_file_channel_failed_unseen",
        "Failed shipment files of a file channel support has not marked seen (`wharf files failed`)",
    );
    for name in &names {
        let (n, _) = ops::unseen_failed(conn, name, 0)?;
        page.sample(
            "wharf_file_channel_failed_unseen",
            &[("channel", *name)],
            n as f64,
        );
    }
    page.family(
        "wharf_file_channel_stuck",
        "Shipment files of a file channel still in processing/ after more than two runs",
    );
    for name in &names {
        let (n, _) = ops::stuck(conn, name, 0)?;
        page.sample("wharf_file_channel_stuck", &[("channel", *name)], n as f64);
    }
    Ok(())
}
