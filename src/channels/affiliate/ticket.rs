//! Reading the tickets of pushes the affiliate system took on (202): `GET {base}/tickets/{ticket}`,
//! signed like a push (no body, no idempotency key: a read changes nothing), until the ticket says
//! done or failed.

use chrono::{NaiveDateTime, TimeDelta};

use super::answer::{self, Reply, TicketVerdict};
use super::settle::{self, Line, log_verdict};
use super::{Ctx, Flow, Sender, count, idempotency_key, payload, room_for_one_more};
use crate::config::ChannelAction;
use crate::db::lease::{Backoff, Lease};
use crate::db::{self, DbConnection};
use crate::outbound::exchange::ExchangeLog;
use crate::outbound::{self, Outcome, Task};
use crate::telemetry::Escaped;

impl Sender<'_> {
    /// Reads the due tickets of `action`'s pushes, batch after batch, until none is left due.
    pub(super) async fn read_tickets(
        &self,
        action: ChannelAction,
        now: NaiveDateTime,
    ) -> anyhow::Result<Flow> {
        let limit = self.p.channel.batch_size.max(1);
        loop {
            let (lease, tasks) = self.p.claim_polls(action, limit, now).await?;
            if tasks.is_empty() {
                return Ok(Flow::Go);
            }
            let full = tasks.len() == limit;
            let ids: Vec<i64> = tasks.iter().map(|t| t.id).collect();
            let read = self.read_batch(action, &lease, tasks).await;
            self.p.release(&lease, ids).await?;
            match read? {
                Flow::Stop => return Ok(Flow::Stop),
                Flow::Go if !full => return Ok(Flow::Go),
                Flow::Go => {}
            }
        }
    }

    async fn read_batch(
        &self,
        action: ChannelAction,
        lease: &Lease,
        tasks: Vec<Task>,
    ) -> anyhow::Result<Flow> {
        for task in tasks {
            if !room_for_one_more(lease, self.p.channel.timeout_secs) {
                return Ok(Flow::Go);
            }
            let ticket = task
                .ticket
                .ticket_id
                .clone()
                .or_else(|| task.ticket.batch_id.clone())
                .unwrap_or_default();
            let started = db::now();
            let (url, verdict, reply) =
                match payload::url(&self.p.channel.base_url, &["tickets", &ticket]) {
                    Ok(url) => {
                        let request = payload::Request {
                            method: reqwest::Method::GET,
                            url: url.clone(),
                            body: String::new(),
                        };
                        let id = format!(
                            "{}-read-{}",
                            idempotency_key(task.id),
                            started.and_utc().timestamp_micros()
                        );
                        let reply = self.link.exchange(&id, &request, None).await;
                        let verdict = answer::ticket(
                            &reply,
                            self.p.name,
                            &ticket,
                            self.p.channel.timeout_secs,
                            db::now(),
                        );
                        (url.to_string(), verdict, Some(reply))
                    }
                    // A ticket that cannot be asked about is as good as unknown.
                    Err(_) => (String::new(), TicketVerdict::Unknown, None),
                };
            let (ctx, owner) = (self.link.ctx.clone(), lease.owner.clone());
            let flow = self
                .p
                .db(move |conn| {
                    let r = Read {
                        task: &task,
                        action,
                        ticket: &ticket,
                        url,
                        started,
                        reply: reply.as_ref(),
                    };
                    db::write_tx(conn, |conn| read(conn, &ctx, &owner, &r, verdict))
                })
                .await?;
            if flow == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Go)
    }
}

/// A ticket read and what came back (`None`: nothing was asked).
struct Read<'a> {
    task: &'a Task,
    action: ChannelAction,
    ticket: &'a str,
    url: String,
    started: NaiveDateTime,
    reply: Option<&'a Reply>,
}

/// Settles a ticket read: done; still pending (read again later, or sent again past the
/// deadline); failed or unknown (sent again after a backoff, lost at `max_attempts`); refused for
/// good (dead); not answered (read again later).
fn read(
    conn: &mut DbConnection,
    ctx: &Ctx,
    owner: &str,
    r: &Read<'_>,
    verdict: TicketVerdict,
) -> anyhow::Result<Flow> {
    let (task, ticket, now) = (r.task, r.ticket, db::now());
    let log = ExchangeLog {
        kind: ctx.name,
        operation: "ticket",
        url: r.url.clone(),
        started: r.started,
        request: None,
    };
    let (line, message) = match verdict {
        TicketVerdict::NotAnswered(n) => {
            return settle::not_answered(conn, ctx, owner, task, r.action.as_str(), &log, &n, now);
        }
        TicketVerdict::Done => {
            if !outbound::settle_done(conn, &[task.id], owner, now)?.is_empty() {
                count(ctx, r.action.as_str(), "done");
            }
            (Line::Success, format!("ticket {ticket} done"))
        }
        TicketVerdict::Pending => match pending(conn, ctx, owner, r, now)? {
            Some(wait) => (Line::Pending, wait),
            None => (Line::Failure, overdue(ctx, ticket)),
        },
        TicketVerdict::Failed(why) => {
            refused_again(conn, ctx, owner, r, &why, now)?;
            (Line::Failure, why)
        }
        TicketVerdict::Unknown => {
            let why = format!(
                "the affiliate system of channel {} does not know ticket {ticket:?}; the push is \
                 sent again",
                ctx.name
            );
            refused_again(conn, ctx, owner, r, &why, now)?;
            (Line::Failure, why)
        }
        TicketVerdict::Refused(why) => {
            if outbound::settle_dead(conn, task.id, owner, &why, now)? {
                count(ctx, r.action.as_str(), "dead");
                settle::dead_logged(ctx, r.action.as_str(), task, &why);
            }
            (Line::Failure, why)
        }
    };
    if let Some(reply) = r.reply {
        log_verdict(conn, &log, &task.subject, reply, line, &message)?;
    }
    crate::outbound::breaker::reset(conn, &ctx.breaker)?;
    Ok(Flow::Go)
}

/// A ticket still pending: read again later (`Some`, saying when), or, past the channel's
/// `ticket_deadline_secs`, given up on and the push sent again (`None`).
fn pending(
    conn: &mut DbConnection,
    ctx: &Ctx,
    owner: &str,
    r: &Read<'_>,
    now: NaiveDateTime,
) -> anyhow::Result<Option<String>> {
    let (task, ticket) = (r.task, r.ticket);
    let sent_at = task.ticket.sent_at.unwrap_or(now);
    let deadline = i64::try_from(ctx.channel.ticket_deadline_secs).unwrap_or(i64::MAX / 4);
    if now - sent_at > TimeDelta::seconds(deadline) {
        let why = overdue(ctx, ticket);
        let outcome = refusal(ctx, task, why, now);
        if outbound::settle(conn, task.id, owner, &outcome, None, now)? {
            told(ctx, r.action.as_str(), task, &outcome);
        }
        return Ok(None);
    }
    let poll_at = now + settle::poll_wait(ctx, sent_at, now);
    let batch = task.ticket.batch_id.as_deref().unwrap_or(ticket);
    outbound::await_ticket(
        conn,
        task.id,
        owner,
        batch,
        Some(ticket),
        sent_at,
        poll_at,
        now,
    )?;
    Ok(Some(format!(
        "ticket {ticket} still pending; read again at {} UTC",
        poll_at.format("%Y-%m-%d %H:%M:%S")
    )))
}

fn overdue(ctx: &Ctx, ticket: &str) -> String {
    format!(
        "ticket {ticket} did not settle within {} s (ticket_deadline_secs); the push is sent again",
        ctx.channel.ticket_deadline_secs
    )
}

/// The push of a failed or unknown ticket: sent again after a backoff (an attempt counted), lost
/// at `max_attempts`.
fn refused_again(
    conn: &mut DbConnection,
    ctx: &Ctx,
    owner: &str,
    r: &Read<'_>,
    why: &str,
    now: NaiveDateTime,
) -> anyhow::Result<()> {
    let outcome = refusal(ctx, r.task, why.to_string(), now);
    if outbound::settle(conn, r.task.id, owner, &outcome, None, now)? {
        told(ctx, r.action.as_str(), r.task, &outcome);
    }
    Ok(())
}

fn refusal(ctx: &Ctx, task: &Task, why: String, now: NaiveDateTime) -> Outcome {
    let backoff = Backoff {
        base_secs: ctx.channel.backoff_base_secs,
        ceiling_secs: ctx.channel.backoff_ceiling_secs,
    };
    Outcome::refused(task.attempts, ctx.channel.max_attempts, backoff, why, now)
}

/// Counts and logs a push whose ticket failed: sent again, or lost.
fn told(ctx: &Ctx, action: &'static str, task: &Task, outcome: &Outcome) {
    let (name, subject) = (ctx.name, Escaped(&task.subject));
    match outcome {
        Outcome::Lost { attempts, error } => {
            count(ctx, action, "lost");
            tracing::error!(channel = name, task = task.id, order = %subject, error = %Escaped(error),
                "channel {name}: the push of order {subject} is lost after {attempts} attempts \
                 ({}); it waits for support to resend or dismiss it (task {})",
                Escaped(error), task.id);
        }
        Outcome::Failed {
            run_after, error, ..
        } => {
            count(ctx, action, "failed");
            tracing::warn!(channel = name, task = task.id, order = %subject, error = %Escaped(error),
                "channel {name}: order {subject}: {}; sent again at {} UTC",
                Escaped(error), run_after.format("%Y-%m-%d %H:%M:%S"));
        }
        Outcome::Again { .. } => {}
    }
}
