//! What `GET /metrics` reports, in the Prometheus text format: counters and histograms counted at
//! the events in this process (the `metrics` facade and its Prometheus recorder, installed once per
//! process by [`install`]), and gauges read from the database at each scrape ([`gauges`]), so every
//! process of one database reports the same queue, breakers and background runs.
//!
//! Label values come only from wharf's own enums and constants, never from what a caller sent: the
//! event functions here take `&'static str` words or enums, so an operation name, a caller or a
//! SKU cannot become a label (a flood of invented names would otherwise grow the page without
//! bound, and put input text where an operator trusts it).

pub mod gauges;

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::channels::warehouse::BatchOutcome;
use crate::imports::{LineOutcome, Summary};
use crate::outbound::TaskKind;
use crate::queue::Operation;

/// SOAP calls answered, by operation and result.
pub const MESSAGES_RECEIVED: &str = "wharf_messages_received_total";
/// Time from a SOAP call's arrival to its answer.
pub const RECEIPT_SECONDS: &str = "wharf_receipt_seconds";
/// Queued requests the worker finished, by operation and outcome.
pub const REQUESTS_APPLIED: &str = "wharf_requests_applied_total";
/// Time one applying transaction took.
pub const APPLY_SECONDS: &str = "wharf_apply_seconds";
/// Time from a request's receipt to its applying.
pub const RECEIPT_TO_APPLIED_SECONDS: &str = "wharf_receipt_to_applied_seconds";
/// Lines of applied requests, by operation and line outcome.
pub const IMPORT_LINES: &str = "wharf_import_lines_total";
/// Items sent out, by channel, action and outcome.
pub const EXPORT_ITEMS: &str = "wharf_export_items_total";
/// Exchanges with the other side, by channel, action and outcome.
pub const EXPORT_BATCHES: &str = "wharf_export_batches_total";
/// Pushes to order channels (`[[channels]]`) settled, by channel, action and outcome (counted by
/// the channel senders).
pub const CHANNEL_PUSHES: &str = "wharf_channel_pushes_total";
/// Alert mails, by outcome (counted by the alert mail delivery).
pub const ALERT_MAILS: &str = "wharf_alert_mails_total";
/// Customer confirmations of resent lost orders, by outcome (counted by the mail delivery).
pub const CUSTOMER_MAILS: &str = "wharf_customer_mails_total";
/// Rows the retention cleaner deleted, by table (counted by the cleaner).
pub const RETENTION_DELETED_ROWS: &str = "wharf_retention_deleted_rows_total";

/// Histogram buckets, in seconds: a receipt or an apply takes milliseconds, a lag from receipt to
/// applying can take minutes when the queue is backed up or a shipment waits for its order.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0,
];

/// How often the recorder folds recorded samples into its histograms when nobody scrapes, so
/// samples do not pile up in memory between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// This process's recorder, once installed.
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder as the process's metrics recorder, once: later calls (a test
/// binary starts many servers in one process) return the same handle. `None` when another
/// recorder was installed first (then wharf's counters go there and the page shows the database
/// gauges only).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = match PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            {
                Ok(builder) => builder.build_recorder(),
                Err(e) => {
                    tracing::error!(error = %e, "the metrics recorder cannot be built; /metrics shows the database gauges only");
                    return None;
                }
            };
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics shows the database gauges only");
                return None;
            }
            describe();
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "no metrics upkeep thread; histograms are folded at each scrape only");
            }
            Some(handle)
        })
        .as_ref()
}

/// The counters and histograms of this process, in the Prometheus text format (empty when the
/// recorder is not installed).
pub fn render() -> String {
    match install() {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => String::new(),
    }
}

/// The HELP lines of every counter and histogram, the ones other parts count included.
fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        CHANNEL_PUSHES,
        "Pushes to order channels settled, by channel, action and outcome (done, awaiting, failed, \
         lost, dead, not_answered)"
    );
    describe_counter!(
        MESSAGES_RECEIVED,
        "SOAP calls answered, by operation and result (accepted, repeat, conflict, or the refusal)"
    );
    describe_histogram!(
        RECEIPT_SECONDS,
        Unit::Seconds,
        "Time from a SOAP call's arrival to its answer, by operation"
    );
    describe_counter!(
        REQUESTS_APPLIED,
        "Queued requests the worker finished, by operation and outcome"
    );
    describe_histogram!(
        APPLY_SECONDS,
        Unit::Seconds,
        "Time one applying transaction took (one request, or inventory requests applied together)"
    );
    describe_histogram!(
        RECEIPT_TO_APPLIED_SECONDS,
        Unit::Seconds,
        "Time from a request's receipt to its applying, by operation"
    );
    describe_counter!(
        IMPORT_LINES,
        "Lines of applied requests, by operation and result (Success, Duplicate, Superseded, Failure)"
    );
    describe_counter!(
        EXPORT_ITEMS,
        "Items sent out, by channel, action and outcome (accepted, refused, lost, not_sent)"
    );
    describe_counter!(
        EXPORT_BATCHES,
        "Exchanges with the other side, by channel, action and outcome (answered, not_answered)"
    );
    describe_counter!(ALERT_MAILS, "Alert mails, by outcome");
    describe_counter!(
        CUSTOMER_MAILS,
        "Customer confirmations of resent lost orders, by outcome (sent, failed)"
    );
    describe_counter!(
        RETENTION_DELETED_ROWS,
        "Rows the retention cleaner deleted, by table"
    );
}

/// How a SOAP call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Answered: a message stored and queued, a login, a token.
    Accepted,
    /// An identical re-send of a stored message: acknowledged, not queued again.
    Repeat,
    /// A new body under a used messageSeqId: queued and flagged.
    Conflict,
    /// Refused, of this kind (wharf's refusal words: `unauthenticated`, `invalid-field`, …).
    Refused(&'static str),
    /// A password check made to wait.
    Throttled,
    /// wharf could not handle it (database unavailable): nothing stored.
    Failed,
}

impl Received {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Received::Accepted => "accepted",
            Received::Repeat => "repeat",
            Received::Conflict => "conflict",
            Received::Refused(kind) => kind,
            Received::Throttled => "throttled",
            Received::Failed => "error",
        }
    }
}

/// Counts one answered SOAP call of `operation` (wharf's word for it, `unknown` before it is
/// known) and how long it took.
pub fn soap_call(operation: &'static str, result: Received, elapsed: Duration) {
    metrics::counter!(MESSAGES_RECEIVED, "operation" => operation, "result" => result.as_str())
        .increment(1);
    metrics::histogram!(RECEIPT_SECONDS, "operation" => operation).record(elapsed.as_secs_f64());
}

/// How the worker finished a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied, with its import report.
    Done,
    /// Applied as a business failure (its report holds Failure lines).
    BusinessFailure,
    /// Failed; retried after a backoff.
    Retried,
    /// Failed its last attempt: dead.
    Dead,
    /// A shipment put back to wait for its order.
    Waiting,
    /// Taken over by another worker; nothing applied here.
    LostLease,
}

impl Applied {
    fn as_str(self) -> &'static str {
        match self {
            Applied::Done => "applied",
            Applied::BusinessFailure => "business_failure",
            Applied::Retried => "retried",
            Applied::Dead => "dead",
            Applied::Waiting => "waiting",
            Applied::LostLease => "lost_lease",
        }
    }
}

/// Counts `n` requests of `operation` the worker finished with `outcome`.
pub fn applied(operation: Operation, outcome: Applied, n: usize) {
    metrics::counter!(REQUESTS_APPLIED, "operation" => operation.as_str(), "outcome" => outcome.as_str())
        .increment(n as u64);
}

/// Records one committed applying transaction of `operation` that took `elapsed`, each of its
/// requests' lag since receipt (`lags`) and its import report's lines (`lines`).
pub fn transaction(operation: Operation, elapsed: Duration, lags: &[Duration], lines: &Summary) {
    metrics::histogram!(APPLY_SECONDS, "operation" => operation.as_str())
        .record(elapsed.as_secs_f64());
    let lag = metrics::histogram!(RECEIPT_TO_APPLIED_SECONDS, "operation" => operation.as_str());
    for l in lags {
        lag.record(l.as_secs_f64());
    }
    for (outcome, n) in [
        (LineOutcome::Success, lines.successes),
        (LineOutcome::Duplicate, lines.duplicates),
        (LineOutcome::Superseded, lines.superseded),
        (LineOutcome::Failure, lines.failures),
    ] {
        if n > 0 {
            metrics::counter!(IMPORT_LINES, "operation" => operation.as_str(), "result" => outcome.as_str())
                .increment(u64::try_from(n).unwrap_or(0));
        }
    }
}

/// Whether settled items went out in an exchange with the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchanged {
    /// They were sent (one exchange, answered or not).
    Yes,
    /// They failed before sending (their stored document no longer reads).
    No,
}

/// Counts the items of `kind` one settled exchange (or, `Exchanged::No`, a settling without one)
/// decided, and the exchange.
pub fn exported(kind: TaskKind, o: &BatchOutcome, exchanged: Exchanged) {
    let (channel, action) = (kind.channel, kind.action);
    let refused = o.failed.saturating_sub(o.lost);
    for (outcome, n) in [
        ("accepted", o.exported),
        ("refused", refused),
        ("lost", o.lost),
        ("not_sent", o.not_sent),
    ] {
        if n > 0 {
            metrics::counter!(EXPORT_ITEMS, "channel" => channel, "action" => action, "outcome" => outcome)
                .increment(n as u64);
        }
    }
    if exchanged == Exchanged::Yes {
        let outcome = if o.batch_failed {
            "not_answered"
        } else {
            "answered"
        };
        metrics::counter!(EXPORT_BATCHES, "channel" => channel, "action" => action, "outcome" => outcome)
            .increment(1);
    }
}
