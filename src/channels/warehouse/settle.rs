//! Settling a batch of orders or products: per item from the import report, as a whole when the
//! batch got no usable answer, and on their own for items whose stored document no longer reads.

use chrono::NaiveDateTime;

use super::BatchOutcome;
use super::items::{self, Decision, Item, Kind, Recorded};
use super::report::ReportLine;
use crate::config::ExportSettings;
use crate::db::{self, DbConnection};
use crate::feed::{self, NewEvent};
use crate::imports::LineOutcome;
use crate::outbound;
use crate::outbound::breaker::{self, BreakerState};
use crate::outbound::exchange::{self, Answered, BatchError, Counts, ExchangeLog, LogLine};
use crate::telemetry::Escaped;

/// Who settles, and under which settings.
pub(crate) struct Settler<'a> {
    pub kind: Kind,
    pub cfg: &'a ExportSettings,
    pub owner: &'a str,
    /// Whether orders support resent get their customer's confirmation once exported.
    pub confirm: bool,
}

/// Settles a batch the warehouse answered with an import report.
pub(super) fn answered(
    conn: &mut DbConnection,
    s: &Settler<'_>,
    batch: &[Item],
    lines: &[ReportLine],
    log: &ExchangeLog,
    body: &str,
) -> anyhow::Result<BatchOutcome> {
    let now = db::now();
    let decisions: Vec<Decision> = batch
        .iter()
        .map(|i| items::decide(i, lines, s.cfg, now))
        .collect();
    let recorded = items::record(conn, s.kind, batch, &decisions, s.owner, now)?;
    if s.confirm && s.kind == Kind::Orders {
        confirm_resent(conn, batch, &decisions, &recorded, now)?;
    }
    let mut outcome = BatchOutcome {
        items: batch.len(),
        ..BatchOutcome::default()
    };
    let events = tell_all(s.kind, batch, &decisions, &recorded, &mut outcome);
    let mut counts = Counts::default();
    for d in &decisions {
        match d.verdict {
            LineOutcome::Success => counts.successes += 1,
            LineOutcome::Duplicate => counts.duplicates += 1,
            // The warehouse never reports an item superseded; were it to, it was not imported.
            LineOutcome::Failure | LineOutcome::Superseded => counts.failures += 1,
        }
    }
    let last_refusal = decisions.iter().rev().find_map(|d| d.error.as_deref());
    let log_lines: Vec<LogLine> = batch
        .iter()
        .zip(decisions.iter())
        .map(|(i, d)| LogLine {
            reference: i.reference().to_string(),
            result: d.verdict.as_str(),
            message: d.message.clone(),
            detail: d.detail.clone(),
        })
        .collect();
    let answer = Answered {
        items: batch.len(),
        counts,
        refusal: last_refusal,
        response: body,
    };
    exchange::log_answered(conn, log, answer, &log_lines)?;
    breaker::reset(conn, s.kind.noun())?;
    feed::append(conn, &events)?;
    Ok(outcome)
}

/// Enqueues, in the settling transaction, the customer's confirmation of each order exported now
/// whose task support resent (a lost order sent again).
fn confirm_resent(
    conn: &mut DbConnection,
    batch: &[Item],
    decisions: &[Decision],
    recorded: &[Recorded],
    now: NaiveDateTime,
) -> diesel::QueryResult<()> {
    for ((item, d), r) in batch.iter().zip(decisions).zip(recorded) {
        if d.accepted()
            && matches!(r, Recorded::Written)
            && outbound::last_action(conn, item.task.id)?
                .is_some_and(|a| a.action == outbound::SupportAction::Resend)
        {
            outbound::enqueue(
                conn,
                crate::alerts::CUSTOMER_CONFIRM,
                &[item.reference()],
                now,
            )?;
        }
    }
    Ok(())
}

/// Settles the items whose stored document no longer reads: each fails on its own with why (an
/// attempt counted, lost at `max_attempts`), without an exchange; the rest of the batch goes on.
/// File channels settle theirs here too.
pub(crate) fn unreadable(
    conn: &mut DbConnection,
    s: &Settler<'_>,
    failed: &[(Item, String)],
) -> anyhow::Result<BatchOutcome> {
    let now = db::now();
    let decisions: Vec<Decision> = failed
        .iter()
        .map(|(i, why)| Decision::refused(i, why.clone(), None, s.cfg, now))
        .collect();
    let batch: Vec<&Item> = failed.iter().map(|(i, _)| i).collect();
    let mut recorded = Vec::with_capacity(batch.len());
    for (i, d) in batch.iter().zip(&decisions) {
        let one = std::slice::from_ref(*i);
        recorded.extend(items::record(
            conn,
            s.kind,
            one,
            std::slice::from_ref(d),
            s.owner,
            now,
        )?);
    }
    let mut outcome = BatchOutcome {
        items: batch.len(),
        ..BatchOutcome::default()
    };
    let mut events = Vec::new();
    for ((item, d), r) in batch.iter().zip(&decisions).zip(&recorded) {
        tell_one(s.kind, item, d, *r, &mut outcome, &mut events);
    }
    feed::append(conn, &events)?;
    Ok(outcome)
}

/// Counts and logs each item's fate; returns the feed events of orders whose status changed.
fn tell_all(
    kind: Kind,
    batch: &[Item],
    decisions: &[Decision],
    recorded: &[Recorded],
    outcome: &mut BatchOutcome,
) -> Vec<NewEvent> {
    let mut events = Vec::new();
    for ((item, d), r) in batch.iter().zip(decisions).zip(recorded) {
        tell_one(kind, item, d, *r, outcome, &mut events);
    }
    events
}

fn tell_one(
    kind: Kind,
    item: &Item,
    d: &Decision,
    r: Recorded,
    outcome: &mut BatchOutcome,
    events: &mut Vec<NewEvent>,
) {
    let reference = item.reference();
    match r {
        Recorded::Written => {
            outcome.count(d);
            tell(kind, item, d, events);
        }
        Recorded::ShippedMeanwhile => tracing::info!(kind = kind.noun(), item = %reference,
            "order {reference}: the warehouse refused it, but it shipped completely while it was \
             being sent, so it stays skipped and is not sent again"),
        Recorded::NotHeld => tracing::warn!(kind = kind.noun(), item = %reference,
            "{} {reference}: another exporter took it over while this one waited for the \
             warehouse; its result is left to that exporter", kind.noun()),
    }
}

impl BatchOutcome {
    fn count(&mut self, d: &Decision) {
        if d.accepted() {
            self.exported += 1;
        } else {
            self.failed += 1;
            self.lost += usize::from(d.lost);
            self.refusal = d.error.clone();
        }
    }
}

/// Logs a refused or lost item, and queues the feed event of an order whose export status changed.
fn tell(kind: Kind, item: &Item, d: &Decision, events: &mut Vec<NewEvent>) {
    let noun = kind.noun();
    let reference = item.reference();
    // The warehouse's words, escaped: its answer is not ours to trust with the log's line breaks.
    let error = Escaped(d.error.as_deref().unwrap_or(""));
    if d.lost {
        tracing::error!(kind = noun, item = %reference, attempts = d.attempts, error = %error,
        "{noun} {reference} is lost: the warehouse refused it {} times ({error}); {}",
        d.attempts, match kind {
            Kind::Orders => "fix the cause, then `wharf orders resend` or `wharf orders dismiss` it",
            Kind::Products => "fix the cause and change the product to send it again",
        });
    } else if !d.accepted() {
        let next = d.next_at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string());
        tracing::warn!(kind = noun, item = %reference, attempts = d.attempts, error = %error,
            next_attempt = next.as_deref().unwrap_or(""),
            "the warehouse refused {noun} {reference} ({error}); it is sent again at {} UTC",
            next.as_deref().unwrap_or("the next run"));
    }
    let Some(previous) = item.previous_status.filter(|_| kind == Kind::Orders) else {
        return;
    };
    let new_status = d.order_status();
    if new_status != previous {
        events.push(NewEvent {
            kind: feed::ORDER_EXPORT_STATUS_CHANGED,
            payload: serde_json::json!({
                "order": reference, "status": new_status.as_str(),
                "previous": previous.as_str(), "message": d.message, "attempts": d.attempts,
            }),
        });
    }
}

/// Settles a batch that got no usable answer: the breaker counts it, the items go back due after a
/// backoff (their attempts are not counted against them), and the log keeps the exchange.
pub(super) fn not_answered(
    conn: &mut DbConnection,
    s: &Settler<'_>,
    batch: &[Item],
    e: &BatchError,
    log: &ExchangeLog,
) -> anyhow::Result<BatchOutcome> {
    let now = db::now();
    let noun = s.kind.noun();
    let b = breaker::record_failure(
        conn,
        noun,
        s.cfg.breaker_threshold,
        s.cfg.breaker_pause_secs,
        now,
    )?;
    let retry_at = retry_after_failure(s.cfg, &b, now);
    let ids: Vec<i64> = batch.iter().map(|i| i.task.id).collect();
    outbound::not_answered(conn, &ids, s.owner, retry_at, &e.message, now)?;
    exchange::log_failed(conn, log, batch.len(), e)?;
    breaker::log_failure(noun, &b, &e.message, now);
    let at = retry_at.format("%Y-%m-%d %H:%M:%S");
    for i in batch {
        let (r, error) = (i.reference(), Escaped(&e.message));
        tracing::warn!(kind = noun, item = %r, error = %error, retry_at = %at,
            "{noun} {r} not sent: {error}; it is sent again at {at} UTC");
    }
    Ok(BatchOutcome::not_sent(batch.len(), e, retry_at, b, now))
}

/// When items of a batch that got no answer are due again: after the backoff for the breaker's
/// count, and not before the breaker closes.
pub(super) fn retry_after_failure(
    cfg: &ExportSettings,
    b: &BreakerState,
    now: NaiveDateTime,
) -> NaiveDateTime {
    let after_backoff = now + super::backoff(cfg, b.failures);
    match b.paused_until {
        Some(until) if until > after_backoff => until,
        _ => after_backoff,
    }
}
