//! Settling pushes and ticket reads, each in its own transaction: the task's new state (guarded by
//! the lease owner, so a sender whose lease ran out leaves the task to whoever holds it now), the
//! exchange log, the breaker, the metric, and a follow-up push when the order changed meanwhile.

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use super::answer::{NoAnswer, Reply, Verdict};
use super::{Ctx, Flow, Push, count, fingerprint};
use crate::config::ChannelAction;
use crate::db::DbConnection;
use crate::db::lease::Backoff;
use crate::db::schema::{exports, orders};
use crate::imports::LineOutcome;
use crate::orders::OrderError;
use crate::orders::sync::task_kind;
use crate::outbound::breaker::{self, BreakerState};
use crate::outbound::exchange::{self, Answered, Counts, ExchangeLog, LogLine};
use crate::outbound::{self, Task};
use crate::telemetry::Escaped;

/// A push that was sent, and what came back.
pub(super) struct Sent<'a> {
    pub push: &'a Push,
    pub action: ChannelAction,
    /// When the exchange started.
    pub started: NaiveDateTime,
    pub reply: &'a Reply,
}

/// Settles a sent push as its answer says. Returns whether the run goes on (not when the breaker
/// opened).
pub(super) fn pushed(
    conn: &mut DbConnection,
    ctx: &Ctx,
    owner: &str,
    sent: &Sent<'_>,
    verdict: Verdict,
) -> anyhow::Result<Flow> {
    let (task, action, now) = (&sent.push.task, sent.action, crate::db::now());
    let log = ExchangeLog {
        kind: ctx.name,
        operation: action.as_str(),
        url: sent.push.request.url.to_string(),
        started: sent.started,
        request: Some(sent.push.request.body.clone()),
    };
    let (result, message, outcome) = match verdict {
        Verdict::NotAnswered(n) => {
            return not_answered(conn, ctx, owner, task, action.as_str(), &log, &n, now);
        }
        Verdict::Taken { stale } => {
            let held = !outbound::settle_done(conn, &[task.id], owner, now)?.is_empty();
            match stale {
                None => (Line::Success, "taken".to_string(), held.then_some("done")),
                Some(note) => (Line::Superseded, note, held.then_some("done")),
            }
        }
        Verdict::Ticket(ticket) => {
            let poll_at = now + poll_wait(ctx, sent.started, now);
            let held = outbound::await_ticket(
                conn,
                task.id,
                owner,
                &ticket,
                Some(&ticket),
                sent.started,
                poll_at,
                now,
            )?;
            let message = format!("taken on with ticket {ticket}; read until it settles");
            (Line::Success, message, held.then_some("awaiting"))
        }
        Verdict::Refused(why) => {
            let held = outbound::settle_dead(conn, task.id, owner, &why, now)?;
            if held {
                dead_logged(ctx, action.as_str(), task, &why);
            }
            (Line::Failure, why, held.then_some("dead"))
        }
    };
    log_verdict(conn, &log, &task.subject, sent.reply, result, &message)?;
    breaker::reset(conn, &ctx.breaker)?;
    if let Some(outcome) = outcome {
        count(ctx, action.as_str(), outcome);
        if outcome != "dead" {
            follow_up_if_changed(conn, ctx, sent.push, action, now)?;
        }
    } else {
        not_held(ctx, action.as_str(), task);
    }
    Ok(Flow::Go)
}

/// A task whose push cannot be made (its order is gone, or cannot be sent): dead at once, with
/// why, without an exchange.
pub(super) fn unbuildable(
    conn: &mut DbConnection,
    ctx: &Ctx,
    owner: &str,
    action: ChannelAction,
    task: &Task,
    why: &str,
    now: NaiveDateTime,
) -> anyhow::Result<()> {
    let why = format!("wharf cannot make this push: {why}");
    if outbound::settle_dead(conn, task.id, owner, &why, now)? {
        count(ctx, action.as_str(), "dead");
        dead_logged(ctx, action.as_str(), task, &why);
    }
    Ok(())
}

/// The receiver's verdict on one order in an exchange, as the exchange log's line says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Line {
    /// Taken (or, for a ticket read, applied).
    Success,
    /// The receiver has a newer update (409): nothing more is needed, like a duplicate.
    Superseded,
    /// Refused (or its ticket failed).
    Failure,
    /// A ticket read found it still being worked on: no verdict yet.
    Pending,
}

impl Line {
    fn word(self) -> &'static str {
        match self {
            Line::Success => LineOutcome::Success.as_str(),
            Line::Superseded => LineOutcome::Superseded.as_str(),
            Line::Failure => LineOutcome::Failure.as_str(),
            Line::Pending => "Pending",
        }
    }

    fn counts(self) -> Counts {
        let mut c = Counts::default();
        match self {
            Line::Success => c.successes = 1,
            Line::Superseded => c.duplicates = 1,
            Line::Failure => c.failures = 1,
            Line::Pending => {}
        }
        c
    }
}

/// Logs an answered exchange about one order, with the receiver's verdict as its line.
pub(super) fn log_verdict(
    conn: &mut DbConnection,
    log: &ExchangeLog,
    reference: &str,
    reply: &Reply,
    line: Line,
    message: &str,
) -> anyhow::Result<()> {
    let (status, body) = match reply {
        Ok(a) => (a.status, a.body.as_str()),
        Err(_) => (0, ""),
    };
    let answered = Answered {
        items: 1,
        counts: line.counts(),
        refusal: matches!(line, Line::Superseded | Line::Failure).then_some(message),
        response: body,
    };
    let line = LogLine {
        reference: reference.to_string(),
        result: line.word(),
        message: message.to_string(),
        detail: None,
    };
    let id = exchange::log_answered(conn, log, answered, &[line])?;
    // The shared log writes every answered exchange as HTTP 200 (the warehouse only ever answers
    // 200); an affiliate system answers 201, 202, 204, 409 and refusals too.
    if status != 200 {
        diesel::update(exports::table.find(id))
            .set(exports::http_status.eq(Some(i32::from(status))))
            .execute(conn)?;
    }
    Ok(())
}

/// An exchange of `task` that got no usable answer: due again after `Retry-After` or the backoff
/// (not before the breaker closes), its state and attempts as they were; the breaker counts it
/// when the receiver is down. Returns whether the run goes on.
#[allow(clippy::too_many_arguments)]
pub(super) fn not_answered(
    conn: &mut DbConnection,
    ctx: &Ctx,
    owner: &str,
    task: &Task,
    operation: &'static str,
    log: &ExchangeLog,
    n: &NoAnswer,
    now: NaiveDateTime,
) -> anyhow::Result<Flow> {
    let b = if n.breaker {
        let b = breaker::record_failure(
            conn,
            &ctx.breaker,
            ctx.channel.breaker_threshold,
            ctx.channel.breaker_pause_secs,
            now,
        )?;
        if b.is_open(now) {
            breaker::log_failure(&ctx.breaker, &b, &n.error.message, now);
        }
        Some(b)
    } else {
        None
    };
    let at = retry_at(ctx, n, b, now);
    let held = outbound::not_answered(conn, &[task.id], owner, at, &n.error.message, now)? == 1;
    exchange::log_failed(conn, log, 1, &n.error)?;
    if held {
        count(ctx, operation, "not_answered");
        let (name, subject) = (ctx.name, Escaped(&task.subject));
        tracing::warn!(channel = name, task = task.id, order = %subject, error = %Escaped(&n.error.message),
            "channel {name}: order {subject} ({operation}): {}; next try at {} UTC",
            Escaped(&n.error.message), at.format("%Y-%m-%d %H:%M:%S"));
    } else {
        not_held(ctx, operation, task);
    }
    Ok(if b.is_some_and(|b| b.is_open(now)) {
        Flow::Stop
    } else {
        Flow::Go
    })
}

/// When an exchange without a usable answer is tried again: when the receiver asked
/// (`Retry-After`, at most the backoff's ceiling from now), else after the backoff for the
/// breaker's count; never before the breaker closes.
fn retry_at(ctx: &Ctx, n: &NoAnswer, b: Option<BreakerState>, now: NaiveDateTime) -> NaiveDateTime {
    let c = &ctx.channel;
    let backoff = Backoff {
        base_secs: c.backoff_base_secs,
        ceiling_secs: c.backoff_ceiling_secs,
    };
    let ceiling = now + TimeDelta::seconds(c.backoff_ceiling_secs.max(0));
    let at = match n.retry_at {
        Some(asked) => asked.min(ceiling),
        None => now + backoff.after(b.map_or(1, |b| b.failures)),
    };
    match b.and_then(|b| b.paused_until) {
        Some(until) if until > at => until,
        _ => at,
    }
}

/// How long until a ticket taken on at `sent_at` is read again: `ticket_poll_secs`, growing with
/// the ticket's age (half of it), up to ten times `ticket_poll_secs`.
pub(super) fn poll_wait(ctx: &Ctx, sent_at: NaiveDateTime, now: NaiveDateTime) -> TimeDelta {
    let poll = i64::try_from(ctx.channel.ticket_poll_secs)
        .unwrap_or(3600)
        .max(1);
    let age = (now - sent_at).num_seconds().max(0);
    TimeDelta::seconds((age / 2).clamp(poll, poll.saturating_mul(10)))
}

/// When the order changed, in what this push tells, while the push was on its way, the change
/// found the push's task open and added none: another push of the same action follows (a ship
/// after the ship delay from the change).
fn follow_up_if_changed(
    conn: &mut DbConnection,
    ctx: &Ctx,
    push: &Push,
    action: ChannelAction,
    now: NaiveDateTime,
) -> anyhow::Result<()> {
    let subject = push.task.subject.as_str();
    let updated: Option<NaiveDateTime> = orders::table
        .filter(orders::increment_id.eq(subject))
        .select(orders::updated_at)
        .first(conn)
        .optional()?;
    if updated.is_none_or(|u| u == push.built_from) {
        return Ok(());
    }
    let order = match crate::orders::get(conn, subject) {
        Ok(order) => order,
        Err(OrderError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if fingerprint(action, &order) == push.fingerprint {
        return Ok(());
    }
    let kind = task_kind(ctx.name, action);
    if action == ChannelAction::Ship {
        let delay = i64::try_from(ctx.channel.ship_delay_secs).unwrap_or(i64::MAX / 4);
        let at = order.updated_at.naive_utc() + TimeDelta::seconds(delay);
        outbound::enqueue_at(conn, kind, subject, at, now)?;
    } else {
        outbound::enqueue(conn, kind, &[subject], now)?;
    }
    let (name, order) = (ctx.name, Escaped(subject));
    tracing::info!(channel = name, order = %order, action = action.as_str(),
        "channel {name}: order {order} changed while its {} push was on its way; another push follows",
        action.as_str());
    Ok(())
}

/// Logs a push refused for good.
pub(super) fn dead_logged(ctx: &Ctx, operation: &str, task: &Task, why: &str) {
    let (name, subject, why) = (ctx.name, Escaped(&task.subject), Escaped(why));
    tracing::error!(channel = name, task = task.id, order = %subject, error = %why,
        "channel {name}: the {operation} push of order {subject} is dead: {why}; it waits for \
         support to resend or dismiss it (task {})", task.id);
}

/// Logs a settle that found the task taken over.
pub(super) fn not_held(ctx: &Ctx, operation: &str, task: &Task) {
    let (name, subject) = (ctx.name, Escaped(&task.subject));
    tracing::warn!(channel = name, task = task.id, order = %subject,
        "channel {name}: another runner took over the {operation} push of order {subject} while \
         this one waited for the answer; its result is left to that runner");
}
