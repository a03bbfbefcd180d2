//! Cancelling exported orders at the warehouse (`remoteorder/order/cancel.xml`), retried like an
//! export: a refusal ("No cancel operation performed") counts an attempt and waits for a backoff;
//! after `max_attempts` (the order export's setting) the cancellation is lost and waits for
//! support, like a lost order. An exchange that brings no usable answer counts against the order
//! breaker (it is the same warehouse) and not against the cancellation.
//!
//! Each cancellation is an `order.cancel` task, added in the transaction that cancels an exported
//! order, or in the one that settles the export of an order cancelled while it was in flight.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::settle::retry_after_failure;
use super::{BatchOutcome, backoff_of, items, report};
use crate::config::ExportSettings;
use crate::db::lease::Lease;
use crate::db::schema::{orders, outbound_tasks};
use crate::db::{self, DbConnection};
use crate::imports::LineOutcome;
use crate::orders::export::{CANCELLED_STATUSES, ORDER_CANCEL};
use crate::outbound::breaker::{self, BreakerState};
use crate::outbound::exchange::{self, Answered, BatchError, Counts, ExchangeLog, LogLine};
use crate::outbound::{self, Outcome, Task};
use crate::telemetry::Escaped;

/// Adds the cancellation of each of the orders `ids` (just accepted by the warehouse) that was
/// cancelled while its export was in flight.
pub(super) fn enqueue_cancelled(
    conn: &mut DbConnection,
    ids: &[i64],
    now: NaiveDateTime,
) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    let cancelled: Vec<String> = orders::table
        .filter(orders::id.eq_any(ids))
        .filter(orders::status.eq_any(CANCELLED_STATUSES))
        .select(orders::increment_id)
        .load(conn)?;
    let refs: Vec<&str> = cancelled.iter().map(String::as_str).collect();
    outbound::enqueue(conn, ORDER_CANCEL, &refs, now)
}

/// A claimed cancellation.
pub(super) struct Claimed {
    pub task: Task,
}

impl Claimed {
    /// The order number.
    pub fn reference(&self) -> &str {
        &self.task.subject
    }
}

pub(super) enum CancelClaim {
    Paused(BreakerState),
    Items(Vec<Claimed>),
}

/// Takes up to `batch_size` due cancellations under `lease`, unless the order breaker is open.
pub(super) fn claim(
    conn: &mut DbConnection,
    lease: &Lease,
    cfg: &ExportSettings,
    due_at: NaiveDateTime,
) -> anyhow::Result<CancelClaim> {
    use outbound_tasks as t;
    let mut paused = None;
    let tasks = outbound::claim(conn, lease, |conn| {
        if let Some(b) = breaker::open_at(conn, items::Kind::Orders.noun(), lease.now)? {
            paused = Some(b);
            return Ok(Vec::new());
        }
        crate::load_skip_locked!(
            conn,
            t::table
                .filter(crate::outbound_due!(ORDER_CANCEL, due_at, lease.now))
                .order(t::id)
                .limit(cfg.batch_size)
                .select(t::id)
        )
    })?;
    Ok(match paused {
        Some(b) => CancelClaim::Paused(b),
        None => CancelClaim::Items(tasks.into_iter().map(|task| Claimed { task }).collect()),
    })
}

/// Lets go of claimed cancellations this run did not try.
pub(super) fn release(conn: &mut DbConnection, rest: &[Claimed], owner: &str) -> QueryResult<()> {
    let ids: Vec<i64> = rest.iter().map(|c| c.task.id).collect();
    outbound::release(conn, &ids, owner, None)?;
    Ok(())
}

/// What the warehouse made of one cancellation.
pub(super) enum Answer {
    Confirmed(String),
    Refused { message: String, body: String },
    NotAnswered(BatchError),
}

/// Reads the answer to a cancellation.
pub(super) fn classify(answer: Result<String, BatchError>, reference: &str) -> Answer {
    match answer {
        Err(e) => Answer::NotAnswered(e),
        Ok(body) if body.contains("No cancel operation performed") => Answer::Refused {
            message: format!(
                "the warehouse did not cancel order {reference}: {}",
                report::excerpt(&strip_markup(&body))
            ),
            body,
        },
        // An error page, an exception or a non-XML body is not a cancellation either.
        Ok(body) => match report::parse_import_report(&body) {
            Err(e) => Answer::NotAnswered(super::client::no_answer::unreadable(e, body)),
            Ok(_) => Answer::Confirmed(body),
        },
    }
}

/// The text of a small XML answer, without its tags.
fn strip_markup(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut in_tag = false;
    for ch in body.chars() {
        match ch {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// Records the answer to one cancellation. Returns what it adds to the run's totals.
pub(super) fn settle(
    conn: &mut DbConnection,
    c: &Claimed,
    answer: &Answer,
    cfg: &ExportSettings,
    owner: &str,
    log: &ExchangeLog,
) -> anyhow::Result<BatchOutcome> {
    db::write_tx(conn, |conn| match answer {
        Answer::Confirmed(body) => confirmed(conn, c, body, owner, log),
        Answer::Refused { message, body } => refused(conn, c, message, body, cfg, owner, log),
        Answer::NotAnswered(e) => not_answered(conn, c, e, cfg, owner, log),
    })
}

fn confirmed(
    conn: &mut DbConnection,
    c: &Claimed,
    body: &str,
    owner: &str,
    log: &ExchangeLog,
) -> anyhow::Result<BatchOutcome> {
    let now = db::now();
    let n = outbound::settle_done(conn, &[c.task.id], owner, now)?.len();
    let line = LogLine {
        reference: c.reference().to_string(),
        result: LineOutcome::Success.as_str(),
        message: format!("Order {} cancelled", c.reference()),
        detail: None,
    };
    let counts = Counts {
        successes: 1,
        ..Counts::default()
    };
    let answered = Answered {
        items: 1,
        counts,
        refusal: None,
        response: body,
    };
    exchange::log_answered(conn, log, answered, &[line])?;
    breaker::reset(conn, items::Kind::Orders.noun())?;
    Ok(BatchOutcome {
        items: 1,
        exported: n,
        ..BatchOutcome::default()
    })
}

#[allow(clippy::too_many_arguments)]
fn refused(
    conn: &mut DbConnection,
    c: &Claimed,
    message: &str,
    body: &str,
    cfg: &ExportSettings,
    owner: &str,
    log: &ExchangeLog,
) -> anyhow::Result<BatchOutcome> {
    let now = db::now();
    let outcome = Outcome::refused(
        c.task.attempts,
        cfg.max_attempts,
        backoff_of(cfg),
        message.to_string(),
        now,
    );
    let (attempts, next_at) = outcome.attempts_and_due();
    let lost = matches!(outcome, Outcome::Lost { .. });
    let n = usize::from(outbound::settle(
        conn, c.task.id, owner, &outcome, None, now,
    )?);
    let line = LogLine {
        reference: c.reference().to_string(),
        result: LineOutcome::Failure.as_str(),
        message: message.to_string(),
        detail: None,
    };
    let counts = Counts {
        failures: 1,
        ..Counts::default()
    };
    let answered = Answered {
        items: 1,
        counts,
        refusal: Some(message),
        response: body,
    };
    exchange::log_answered(conn, log, answered, &[line])?;
    // The warehouse answered: it is up, whatever it thought of this order.
    breaker::reset(conn, items::Kind::Orders.noun())?;
    tell_refused(c.reference(), attempts, lost, next_at, message);
    Ok(BatchOutcome {
        items: 1,
        failed: n,
        lost: n.min(usize::from(lost)),
        refusal: Some(message.to_string()),
        ..BatchOutcome::default()
    })
}

fn tell_refused(
    reference: &str,
    attempts: i32,
    lost: bool,
    next_at: Option<NaiveDateTime>,
    error: &str,
) {
    let error = Escaped(error);
    if lost {
        tracing::error!(order = %reference, attempts, error = %error,
            "the cancellation of order {reference} is lost: the warehouse refused it {attempts} times \
             ({error}); cancel it at the warehouse by hand and `wharf orders dismiss {reference}`, or \
             `wharf orders resend {reference}` once the warehouse can take it");
    } else {
        let next = next_at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string());
        tracing::warn!(order = %reference, attempts, error = %error,
            next_attempt = next.as_deref().unwrap_or(""),
            "the warehouse refused the cancellation of order {reference} ({error}); it is sent again \
             at {} UTC", next.as_deref().unwrap_or("the next run"));
    }
}

fn not_answered(
    conn: &mut DbConnection,
    c: &Claimed,
    e: &BatchError,
    cfg: &ExportSettings,
    owner: &str,
    log: &ExchangeLog,
) -> anyhow::Result<BatchOutcome> {
    let now = db::now();
    let noun = items::Kind::Orders.noun();
    let b = breaker::record_failure(
        conn,
        noun,
        cfg.breaker_threshold,
        cfg.breaker_pause_secs,
        now,
    )?;
    let retry_at = retry_after_failure(cfg, &b, now);
    // Not counted against the cancellation: its state and attempts stay as they were.
    outbound::not_answered(conn, &[c.task.id], owner, retry_at, &e.message, now)?;
    exchange::log_failed(conn, log, 1, e)?;
    breaker::log_failure(noun, &b, &e.message, now);
    let at = retry_at.format("%Y-%m-%d %H:%M:%S");
    let error = Escaped(&e.message);
    tracing::warn!(order = %c.reference(), error = %error, retry_at = %at,
        "the cancellation of order {} was not sent: {error}; it is sent again at {at} UTC",
        c.reference());
    Ok(BatchOutcome::not_sent(1, e, retry_at, b, now))
}
