//! Cancelling exported orders at the warehouse (`remoteorder/order/cancel.xml`), retried like an
//! export: a refusal ("No cancel operation performed") counts an attempt and waits for a backoff;
//! after `max_attempts` (the order export's setting) the cancellation is lost and waits for
//! support, like a lost order. An exchange that brings no usable answer counts against the order
//! breaker (it is the same warehouse) and not against the cancellation.
//!
//! Each cancellation is a row in `order_cancellations`. The exporter adds the row when it finds an
//! exported order cancelled (`INSERT … ON CONFLICT DO NOTHING`, so two exporters add it once), which
//! also covers an order cancelled while its export was in flight.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Text, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::breaker::{self, BreakerState};
use super::exchange::{self, Answered, BatchError, Counts, ExchangeLog, LogLine};
use super::{BatchOutcome, backoff, items, report, status};
use crate::config::ExportSettings;
use crate::db::schema::{order_cancellations as oc, orders};
use crate::db::{self, DbConnection};
use crate::telemetry::Escaped;

/// Order statuses that mean cancelled.
pub(super) const CANCELLED_STATUSES: [&str; 2] = ["canceled", "cancelled"];

/// Where the cancellation of an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CancelState {
    /// To be sent (again, after a try the warehouse did not answer, when `last_error` is set).
    Pending,
    /// The warehouse confirmed it.
    Sent,
    /// The warehouse refused it; it is sent again at `next_attempt_at`.
    Failed,
    /// Refused `max_attempts` times; waits for support (`wharf orders lost`).
    Lost,
    /// Handled by hand by support; not sent.
    Dismissed,
}

impl CancelState {
    /// The word stored in `order_cancellations.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelState::Pending => "pending",
            CancelState::Sent => "sent",
            CancelState::Failed => "failed",
            CancelState::Lost => "lost",
            CancelState::Dismissed => "dismissed",
        }
    }

    /// Reads a stored word.
    pub fn parse(s: &str) -> Option<CancelState> {
        [
            CancelState::Pending,
            CancelState::Sent,
            CancelState::Failed,
            CancelState::Lost,
            CancelState::Dismissed,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// The cancellation of an exported order at the warehouse, as the order view shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CancellationView {
    /// `pending`, `sent`, `failed`, `lost` or `dismissed`.
    pub state: CancelState,
    /// Times the warehouse refused it.
    pub attempts: i32,
    /// Why the last try did not go through.
    pub last_error: Option<String>,
    /// When it is sent again (null: at the next export run, or not at all).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the warehouse confirmed it.
    pub sent_at: Option<DateTime<Utc>>,
}

#[derive(Queryable)]
struct ViewRow {
    state: String,
    attempts: i32,
    next_at: Option<NaiveDateTime>,
    error: Option<String>,
    sent_at: Option<NaiveDateTime>,
}

/// The cancellation of an order, or `None` when none is involved (not cancelled, or never exported).
pub fn cancellation_view(
    conn: &mut DbConnection,
    order_id: i64,
    order_status: &str,
    export_status: &str,
) -> QueryResult<Option<CancellationView>> {
    let row: Option<ViewRow> = oc::table
        .find(order_id)
        .select((oc::state, oc::attempts, oc::next_at, oc::error, oc::sent_at))
        .first(conn)
        .optional()?;
    Ok(match row {
        Some(r) => Some(CancellationView {
            // A word this version does not know is shown as pending rather than failing the view.
            state: CancelState::parse(&r.state).unwrap_or(CancelState::Pending),
            attempts: r.attempts,
            last_error: r.error,
            next_attempt_at: r.next_at.map(|t| t.and_utc()),
            sent_at: r.sent_at.map(|t| t.and_utc()),
        }),
        // Cancelled after export, and no exporter has picked it up yet.
        None if CANCELLED_STATUSES.contains(&order_status) && export_status == status::EXPORTED => {
            Some(CancellationView {
                state: CancelState::Pending,
                attempts: 0,
                last_error: None,
                next_attempt_at: None,
                sent_at: None,
            })
        }
        None => None,
    })
}

/// A claimed cancellation.
pub(super) struct Claimed {
    pub order_id: i64,
    pub reference: String,
    attempts: i32,
    state: String,
}

pub(super) enum CancelClaim {
    Paused(BreakerState),
    Items(Vec<Claimed>),
}

/// Adds the cancellations that became due, then takes up to `batch_size` of them under a lease,
/// unless the order breaker is open.
pub(super) fn claim(
    conn: &mut DbConnection,
    owner: &str,
    cfg: &ExportSettings,
    due_at: NaiveDateTime,
) -> anyhow::Result<CancelClaim> {
    let now = db::now();
    db::write_tx(conn, |conn| {
        if let Some(b) = breaker::open_at(conn, items::Kind::Orders.noun(), now)? {
            return Ok(CancelClaim::Paused(b));
        }
        add_due(conn, now)?;
        let due = oc::state
            .eq_any([CancelState::Pending.as_str(), CancelState::Failed.as_str()])
            .and(oc::next_at.is_null().or(oc::next_at.le(due_at)))
            .and(
                oc::lease_expires_at
                    .is_null()
                    .or(oc::lease_expires_at.lt(now)),
            );
        let ids: Vec<i64> = crate::load_skip_locked!(
            conn,
            oc::table
                .filter(due)
                .order(oc::order_id)
                .limit(cfg.batch_size)
                .select(oc::order_id)
        )?;
        if ids.is_empty() {
            return Ok(CancelClaim::Items(Vec::new()));
        }
        diesel::update(oc::table.filter(oc::order_id.eq_any(&ids)))
            .set((
                oc::lease_owner.eq(owner),
                oc::lease_expires_at.eq(now + TimeDelta::seconds(cfg.lease_secs)),
            ))
            .execute(conn)?;
        let rows: Vec<(i64, String, i32, String)> = oc::table
            .inner_join(orders::table)
            .filter(oc::order_id.eq_any(&ids))
            .order(oc::order_id)
            .select((oc::order_id, orders::increment_id, oc::attempts, oc::state))
            .load(conn)?;
        Ok(CancelClaim::Items(
            rows.into_iter()
                .map(|(order_id, reference, attempts, state)| Claimed {
                    order_id,
                    reference,
                    attempts,
                    state,
                })
                .collect(),
        ))
    })
}

/// Adds a pending cancellation for every exported order that is cancelled and has none yet.
fn add_due(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<usize> {
    use diesel::dsl::{exists, not};
    let due = orders::table
        .filter(orders::status.eq_any(CANCELLED_STATUSES))
        .filter(orders::export_status.eq(status::EXPORTED))
        .filter(not(exists(oc::table.filter(oc::order_id.eq(orders::id)))))
        .select((
            orders::id,
            CancelState::Pending.as_str().into_sql::<Text>(),
            now.into_sql::<Timestamp>(),
        ));
    // Two exporters may find the same order at once; the second insert is then a no-op.
    crate::with_backend!(&mut *conn, |c| diesel::insert_into(oc::table)
        .values(due)
        .into_columns((oc::order_id, oc::state, oc::updated_at))
        .on_conflict_do_nothing()
        .execute(c))
}

/// Lets go of claimed cancellations this run did not try.
pub(super) fn release(conn: &mut DbConnection, rest: &[Claimed], owner: &str) -> QueryResult<()> {
    let ids: Vec<i64> = rest.iter().map(|c| c.order_id).collect();
    diesel::update(
        oc::table
            .filter(oc::order_id.eq_any(&ids))
            .filter(oc::lease_owner.eq(owner)),
    )
    .set((
        oc::lease_owner.eq(None::<String>),
        oc::lease_expires_at.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
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
            Err(e) => Answer::NotAnswered(BatchError::unreadable(e, body)),
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
    let n = diesel::update(oc::table.find(c.order_id).filter(oc::lease_owner.eq(owner)))
        .set((
            oc::state.eq(CancelState::Sent.as_str()),
            oc::sent_at.eq(Some(now)),
            oc::error.eq(None::<String>),
            oc::next_at.eq(None::<NaiveDateTime>),
            oc::lease_owner.eq(None::<String>),
            oc::lease_expires_at.eq(None::<NaiveDateTime>),
            oc::updated_at.eq(now),
        ))
        .execute(conn)?;
    let line = LogLine {
        reference: c.reference.clone(),
        result: report::Verdict::Success.as_str(),
        message: format!("Order {} cancelled", c.reference),
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
    let attempts = c.attempts + 1;
    let lost = attempts >= cfg.max_attempts;
    let next_at = (!lost).then(|| now + backoff(cfg, attempts));
    let state = if lost {
        CancelState::Lost
    } else {
        CancelState::Failed
    };
    let n = diesel::update(oc::table.find(c.order_id).filter(oc::lease_owner.eq(owner)))
        .set((
            oc::state.eq(state.as_str()),
            oc::attempts.eq(attempts),
            oc::next_at.eq(next_at),
            oc::error.eq(Some(message)),
            oc::lease_owner.eq(None::<String>),
            oc::lease_expires_at.eq(None::<NaiveDateTime>),
            oc::updated_at.eq(now),
        ))
        .execute(conn)?;
    let line = LogLine {
        reference: c.reference.clone(),
        result: report::Verdict::Failure.as_str(),
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
    tell_refused(&c.reference, attempts, lost, next_at, message);
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
    let b = breaker::record_failure(conn, noun, cfg, now)?;
    let retry_at = items::retry_after_failure(cfg, &b, now);
    // Not counted against the cancellation: the state stays as it was.
    diesel::update(oc::table.find(c.order_id).filter(oc::lease_owner.eq(owner)))
        .set((
            oc::state.eq(&c.state),
            oc::next_at.eq(Some(retry_at)),
            oc::error.eq(Some(&e.message)),
            oc::lease_owner.eq(None::<String>),
            oc::lease_expires_at.eq(None::<NaiveDateTime>),
            oc::updated_at.eq(now),
        ))
        .execute(conn)?;
    exchange::log_failed(conn, log, 1, e)?;
    breaker::log_failure(noun, &b, &e.message, now);
    let at = retry_at.format("%Y-%m-%d %H:%M:%S");
    let error = Escaped(&e.message);
    tracing::warn!(order = %c.reference, error = %error, retry_at = %at,
        "the cancellation of order {} was not sent: {error}; it is sent again at {at} UTC",
        c.reference);
    Ok(BatchOutcome::not_sent(1, e, retry_at, b, now))
}
