//! Settling what a run claimed: each task's verdict written under the claim's lease (a task whose
//! lease ran out and that another runner took over is left to that runner), the exchange in the
//! log and the breaker in the same transaction, then the counts in [`super::PUSHES`].

use std::future::Future;

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use super::super::sync::Pusher;
use super::Operation;
use crate::config::ChannelSettings;
use crate::db::lease::{Backoff, Lease};
use crate::db::schema::outbound_tasks as t;
use crate::db::{self, DbConnection};
use crate::outbound::breaker::{self, BreakerState};
use crate::outbound::exchange::{self, Answered, BatchError, Counts, ExchangeLog, LogLine};
use crate::outbound::{self, Outcome, Task};
use crate::telemetry::Escaped;

/// What a settling transaction needs of the channel (owned: it runs on a blocking thread).
#[derive(Clone)]
pub(super) struct Ctx {
    pub name: &'static str,
    pub op: Operation,
    pub channel: ChannelSettings,
    pub backoff: Backoff,
    pub breaker_key: String,
    /// The claim's lease token.
    pub owner: String,
}

impl Ctx {
    pub fn new(p: &Pusher, op: Operation, lease: &Lease) -> Ctx {
        Ctx {
            name: p.name,
            op,
            channel: p.channel.clone(),
            backoff: p.backoff(),
            breaker_key: p.breaker_key(),
            owner: lease.owner.clone(),
        }
    }

    /// A refusal of `task`: failed with a backoff, or lost at `max_attempts`.
    fn refused(&self, task: &Task, error: String, now: NaiveDateTime) -> Outcome {
        Outcome::refused(
            task.attempts,
            self.channel.max_attempts,
            self.backoff,
            error,
            now,
        )
    }
}

/// What becomes of one task.
#[derive(Debug, Clone)]
pub(super) enum Verdict {
    /// The marketplace took it (its ticket, when read, kept on the task).
    Done { ticket_id: Option<String> },
    /// Taken on in batch `batch_id`: its ticket is read at `poll_at`.
    Await {
        batch_id: String,
        ticket_id: Option<String>,
        sent_at: NaiveDateTime,
        poll_at: NaiveDateTime,
    },
    /// Refused (counted): sent again after a backoff, or lost.
    Refused(String),
    /// Refused for good by the API: waits for support.
    Dead {
        ticket_id: Option<String>,
        error: String,
    },
}

/// Tasks settled by a run, by outcome.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tally {
    done: u64,
    awaiting: u64,
    failed: u64,
    lost: u64,
    dead: u64,
    not_answered: u64,
}

impl Tally {
    /// Adds them to [`super::PUSHES`].
    pub fn count(&self, ctx: &Ctx) {
        for (outcome, n) in [
            ("done", self.done),
            ("awaiting", self.awaiting),
            ("failed", self.failed),
            ("lost", self.lost),
            ("dead", self.dead),
            ("not_answered", self.not_answered),
        ] {
            if n > 0 {
                metrics::counter!(super::PUSHES, "channel" => ctx.name,
                    "action" => ctx.op.word(), "outcome" => outcome)
                .increment(n);
            }
        }
    }
}

/// Runs `work` on a claim, then lets go of whatever of `tasks` the claim still holds: nothing
/// when `work` settled them all, the rest when it stopped early or failed (a database error
/// half-way; they are claimable again at once instead of when the lease runs out).
pub(super) async fn guarded<T>(
    p: &Pusher,
    lease: &Lease,
    tasks: &[Task],
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let result = work.await;
    let ids: Vec<i64> = tasks.iter().map(|t| t.id).collect();
    if let Err(e) = p.release(lease, ids).await {
        tracing::warn!(channel = p.name, error = %format!("{e:#}"),
            "channel {}: could not let go of tasks after a run; they are taken again when their \
             lease runs out", p.name);
    }
    result
}

/// Writes each verdict. Returns what was written (a task another runner took over is not).
pub(super) fn apply(
    conn: &mut DbConnection,
    ctx: &Ctx,
    verdicts: &[(Task, Verdict)],
    now: NaiveDateTime,
) -> QueryResult<Tally> {
    let mut tally = Tally::default();
    for (task, verdict) in verdicts {
        apply_one(conn, ctx, task, verdict, now, &mut tally)?;
    }
    Ok(tally)
}

fn apply_one(
    conn: &mut DbConnection,
    ctx: &Ctx,
    task: &Task,
    verdict: &Verdict,
    now: NaiveDateTime,
    tally: &mut Tally,
) -> QueryResult<()> {
    let owner = ctx.owner.as_str();
    let written = match verdict {
        Verdict::Done { ticket_id } => {
            keep_ticket(conn, task.id, owner, ticket_id.as_deref())?;
            let done = !outbound::settle_done(conn, &[task.id], owner, now)?.is_empty();
            tally.done += u64::from(done);
            done
        }
        Verdict::Await {
            batch_id,
            ticket_id,
            sent_at,
            poll_at,
        } => {
            let b = (batch_id.as_str(), ticket_id.as_deref());
            let awaiting =
                outbound::await_ticket(conn, task.id, owner, b.0, b.1, *sent_at, *poll_at, now)?;
            tally.awaiting += u64::from(awaiting);
            awaiting
        }
        Verdict::Refused(error) => {
            let outcome = ctx.refused(task, error.clone(), now);
            let written = outbound::settle(conn, task.id, owner, &outcome, None, now)?;
            if written {
                tell_refused(ctx, task, &outcome);
                match outcome {
                    Outcome::Lost { .. } => tally.lost += 1,
                    _ => tally.failed += 1,
                }
            }
            written
        }
        Verdict::Dead { ticket_id, error } => {
            keep_ticket(conn, task.id, owner, ticket_id.as_deref())?;
            let dead = outbound::settle_dead(conn, task.id, owner, error, now)?;
            if dead {
                let (name, subject, error) = (ctx.name, &task.subject, Escaped(error));
                tracing::error!(channel = name, order = %subject, error = %error,
                    "channel {name}: the {} of order {subject} is dead: {error}; fix it on the \
                     marketplace, then resend or dismiss the task", ctx.op.word());
            }
            tally.dead += u64::from(dead);
            dead
        }
    };
    if !written {
        tracing::warn!(channel = ctx.name, order = %task.subject,
            "channel {}: another runner took over the {} of order {} while this one waited for \
             the API; its result is left to that runner", ctx.name, ctx.op.word(), task.subject);
    }
    Ok(())
}

/// Keeps the ticket id read on task `id`, while `owner` holds it (the queue's settles keep the
/// batch id; a ticket is only known once read).
fn keep_ticket(
    conn: &mut DbConnection,
    id: i64,
    owner: &str,
    ticket_id: Option<&str>,
) -> QueryResult<()> {
    if let Some(ticket_id) = ticket_id {
        diesel::update(t::table.find(id).filter(t::lease_owner.eq(owner)))
            .set(t::ticket_id.eq(Some(ticket_id)))
            .execute(conn)?;
    }
    Ok(())
}

fn tell_refused(ctx: &Ctx, task: &Task, outcome: &Outcome) {
    let (name, op, subject) = (ctx.name, ctx.op.word(), &task.subject);
    match outcome {
        Outcome::Lost { attempts, error } => {
            let error = Escaped(error);
            tracing::error!(channel = name, order = %subject, attempts, error = %error,
                "channel {name}: the {op} of order {subject} is lost after {attempts} attempts \
                 ({error}); fix the cause, then resend or dismiss the task");
        }
        Outcome::Failed {
            run_after, error, ..
        } => {
            let (error, at) = (Escaped(error), run_after.format("%Y-%m-%d %H:%M:%S"));
            tracing::warn!(channel = name, order = %subject, error = %error,
                "channel {name}: the {op} of order {subject} did not go through ({error}); it is \
                 sent again at {at} UTC");
        }
        Outcome::Again { .. } => {}
    }
}

/// Settles an exchange the API answered: the log with a line per task, each verdict, the breaker
/// closed again, then `after` (in the same transaction).
pub(super) fn answered(
    conn: &mut DbConnection,
    ctx: &Ctx,
    log: &ExchangeLog,
    response: &str,
    verdicts: &[(Task, Verdict)],
    lines: &[LogLine],
    after: impl FnOnce(&mut DbConnection, NaiveDateTime) -> anyhow::Result<()>,
) -> anyhow::Result<Tally> {
    db::write_tx(conn, |conn| {
        let now = db::now();
        let mut counts = Counts::default();
        for (_, v) in verdicts {
            match v {
                Verdict::Done { .. } | Verdict::Await { .. } => counts.successes += 1,
                Verdict::Refused(_) | Verdict::Dead { .. } => counts.failures += 1,
            }
        }
        let refusal = verdicts.iter().rev().find_map(|(_, v)| match v {
            Verdict::Refused(e) | Verdict::Dead { error: e, .. } => Some(e.as_str()),
            _ => None,
        });
        let answer = Answered {
            items: verdicts.len(),
            counts,
            refusal,
            response,
        };
        exchange::log_answered(conn, log, answer, lines)?;
        breaker::reset(conn, &ctx.breaker_key)?;
        let tally = apply(conn, ctx, verdicts, now)?;
        after(conn, now)?;
        Ok(tally)
    })
}

/// Settles an exchange the API refused as a whole (a 4xx): each task refused with why, the
/// breaker closed again (the API is there).
pub(super) fn refused(
    conn: &mut DbConnection,
    ctx: &Ctx,
    log: &ExchangeLog,
    tasks: &[Task],
    e: &BatchError,
    why: impl Fn(&Task) -> String,
) -> anyhow::Result<Tally> {
    db::write_tx(conn, |conn| {
        let now = db::now();
        exchange::log_failed(conn, log, tasks.len(), e)?;
        breaker::reset(conn, &ctx.breaker_key)?;
        let verdicts: Vec<(Task, Verdict)> = tasks
            .iter()
            .map(|t| (t.clone(), Verdict::Refused(why(t))))
            .collect();
        Ok(apply(conn, ctx, &verdicts, now)?)
    })
}

/// Settles an exchange that got no usable answer: the tasks due again (their state and attempts
/// as they were) after `wait` (a 429's `Retry-After`), or, counted by the breaker, after the
/// backoff for its count and not before it closes. Returns the tally and the breaker when it is
/// open now.
pub(super) fn not_answered(
    conn: &mut DbConnection,
    ctx: &Ctx,
    log: &ExchangeLog,
    tasks: &[Task],
    e: &BatchError,
    wait: Option<TimeDelta>,
) -> anyhow::Result<(Tally, Option<BreakerState>)> {
    db::write_tx(conn, |conn| {
        let now = db::now();
        exchange::log_failed(conn, log, tasks.len(), e)?;
        let (retry_at, open) = match wait {
            Some(wait) => (now + wait, None),
            None => {
                let b = breaker::record_failure(
                    conn,
                    &ctx.breaker_key,
                    ctx.channel.breaker_threshold,
                    ctx.channel.breaker_pause_secs,
                    now,
                )?;
                breaker::log_failure(&ctx.breaker_key, &b, &e.message, now);
                let after_backoff = now + ctx.backoff.after(b.failures);
                let at = b
                    .paused_until
                    .map_or(after_backoff, |u| u.max(after_backoff));
                (at, b.is_open(now).then_some(b))
            }
        };
        let ids: Vec<i64> = tasks.iter().map(|t| t.id).collect();
        let n = outbound::not_answered(conn, &ids, &ctx.owner, retry_at, &e.message, now)?;
        let at = retry_at.format("%Y-%m-%d %H:%M:%S");
        let error = Escaped(&e.message);
        tracing::warn!(channel = ctx.name, tasks = n, error = %error, retry_at = %at,
            "channel {}: {n} {} task(s) not sent: {error}; sent again at {at} UTC",
            ctx.name, ctx.op.word());
        let tally = Tally {
            not_answered: u64::try_from(n).unwrap_or(0),
            ..Tally::default()
        };
        Ok((tally, open))
    })
}
