//! Reading the tickets of pushed batches: claim the tasks whose next read is due, read each
//! batch's tickets once, and settle each task by its own ticket (found by the ticket id read
//! before, else by the order reference in the ticket's payload).

use chrono::{NaiveDateTime, TimeDelta};
use serde_json::Value;

use super::super::sync::Pusher;
use super::client::{self, Reply};
use super::settle::{self, Ctx, Verdict};
use super::{Flow, MAX_ORDERS, Operation, push};
use crate::db;
use crate::db::lease::Lease;
use crate::outbound::Task;
use crate::outbound::exchange::{BatchError, Exchange, ExchangeLog, LogLine};

/// The exchange log's operation for a ticket read.
const TICKET: &str = "ticket";

/// The longest wait between two reads, in reads' worth of `ticket_poll_secs`.
const MAX_POLL_FACTOR: i64 = 10;

/// Reads the due tickets of `op`'s tasks until none is due, or the API does not answer.
pub(super) async fn read_due(
    p: &Pusher,
    op: Operation,
    now: NaiveDateTime,
) -> anyhow::Result<Flow> {
    let limit = p.channel.batch_size.clamp(1, MAX_ORDERS);
    loop {
        let (lease, tasks) = p.claim_polls(op.action(), limit, now).await?;
        if tasks.is_empty() {
            return Ok(Flow::Go);
        }
        let more = tasks.len() == limit;
        let flow = settle::guarded(p, &lease, &tasks, read(p, op, &lease, tasks.clone())).await?;
        if flow == Flow::Stop || !more {
            return Ok(flow);
        }
    }
}

/// Reads the tickets of the claimed tasks, one request per batch.
async fn read(p: &Pusher, op: Operation, lease: &Lease, tasks: Vec<Task>) -> anyhow::Result<Flow> {
    let ctx = Ctx::new(p, op, lease);
    let mut batches: Vec<(String, Vec<Task>)> = Vec::new();
    let mut orphans: Vec<(Task, Verdict)> = Vec::new();
    for task in tasks {
        match task.ticket.batch_id.clone() {
            Some(b) => match batches.iter_mut().find(|(id, _)| *id == b) {
                Some((_, group)) => group.push(task),
                None => batches.push((b, vec![task])),
            },
            None => {
                let why = format!(
                    "the {} of order {} waits for a ticket but has no batch id; it is sent again",
                    op.word(),
                    task.subject
                );
                orphans.push((task, Verdict::Refused(why)));
            }
        }
    }
    if !orphans.is_empty() {
        let c = ctx.clone();
        let tally = p
            .db(move |conn| {
                db::write_tx(conn, |conn| {
                    Ok(settle::apply(conn, &c, &orphans, db::now())?)
                })
            })
            .await?;
        tally.count(&ctx);
    }
    // One read per batch, one after the other: when the lease could run out during the next
    // one, the rest is let go (and claimed again) rather than read under a lease another runner
    // may take.
    let timeout = TimeDelta::seconds(i64::try_from(p.channel.timeout_secs).unwrap_or(60));
    for (batch, group) in batches {
        if db::now() + timeout >= lease.until {
            return Ok(Flow::Go);
        }
        if read_batch(p, &ctx, batch, group).await? == Flow::Stop {
            return Ok(Flow::Stop);
        }
    }
    Ok(Flow::Go)
}

/// Reads one batch's tickets and settles its tasks.
async fn read_batch(
    p: &Pusher,
    ctx: &Ctx,
    batch: String,
    tasks: Vec<Task>,
) -> anyhow::Result<Flow> {
    let url = client::tickets_url(p, &batch)?;
    let started = db::now();
    let reply = client::get(p, url.clone()).await;
    let log = ExchangeLog {
        kind: p.name,
        operation: TICKET,
        url: url.to_string(),
        started,
        request: None,
    };
    let c = ctx.clone();
    let (tally, flow) = match reply {
        Reply::Ok { status, body } => match parse(&body) {
            Some(tickets) => {
                let (verdicts, lines): (Vec<_>, Vec<_>) = tasks
                    .iter()
                    .map(|t| {
                        let (verdict, line) = decide(&c, t, &batch, &tickets, started);
                        ((t.clone(), verdict), line)
                    })
                    .unzip();
                let tally = p
                    .db(move |conn| {
                        settle::answered(conn, &c, &log, &body, &verdicts, &lines, |_, _| Ok(()))
                    })
                    .await?;
                (tally, Flow::Go)
            }
            None => {
                let message = format!(
                    "channel {}: the API answered the tickets of batch {batch} with HTTP {status} \
                     but not a list of tickets: {}",
                    ctx.name,
                    client::detail(&body)
                );
                let e = BatchError {
                    exchange: Exchange::BadAnswer,
                    message,
                    http_status: Some(status),
                    body: Some(body),
                };
                not_answered(p, c, log, tasks, e, None).await?
            }
        },
        Reply::Busy { wait, error } => not_answered(p, c, log, tasks, error, Some(wait)).await?,
        Reply::Down(e) => not_answered(p, c, log, tasks, e, None).await?,
        Reply::Refused(e) => {
            let said = push::refusal(&e);
            let tally = p
                .db(move |conn| {
                    let why = |t: &Task| {
                        format!(
                            "the API refused to read the tickets of batch {batch} ({said}); the {} \
                             of order {} is sent again",
                            c.op.word(),
                            t.subject
                        )
                    };
                    settle::refused(conn, &c, &log, &tasks, &e, why)
                })
                .await?;
            (tally, Flow::Go)
        }
    };
    tally.count(ctx);
    Ok(flow)
}

/// A read that got no usable answer: the tasks stay awaiting, read again later; the run stops.
async fn not_answered(
    p: &Pusher,
    ctx: Ctx,
    log: ExchangeLog,
    tasks: Vec<Task>,
    e: BatchError,
    wait: Option<TimeDelta>,
) -> anyhow::Result<(settle::Tally, Flow)> {
    let (tally, _open) = p
        .db(move |conn| settle::not_answered(conn, &ctx, &log, &tasks, &e, wait))
        .await?;
    Ok((tally, Flow::Stop))
}

/// One ticket as read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ticket {
    id: String,
    state: String,
    /// The order reference in its payload.
    reference: Option<String>,
    /// What the API said of it (a failure's reason).
    said: Option<String>,
}

/// The tickets of a HAL page (`_embedded.ticket`; none when the page has no `_embedded`), or
/// `None` when the answer is not such a page.
fn parse(body: &str) -> Option<Vec<Ticket>> {
    let v: Value = serde_json::from_str(body).ok()?;
    if !v.is_object() {
        return None;
    }
    let Some(list) = v.get("_embedded").and_then(|e| e.get("ticket")) else {
        return Some(Vec::new());
    };
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let tickets = list
        .as_array()?
        .iter()
        .filter_map(|t| {
            let payload = &t["payload"];
            Some(Ticket {
                id: text(&t["id"])?,
                state: t["state"].as_str()?.to_string(),
                reference: text(&payload["reference"]),
                said: ["error", "message"]
                    .into_iter()
                    .find_map(|k| payload[k].as_str().or_else(|| t[k].as_str()))
                    .map(str::to_string),
            })
        })
        .collect();
    Some(tickets)
}

/// What `task`'s ticket among `tickets` (read at `now`) means for it, and its log line.
fn decide(
    ctx: &Ctx,
    task: &Task,
    batch: &str,
    tickets: &[Ticket],
    now: NaiveDateTime,
) -> (Verdict, LogLine) {
    let op = ctx.op.word();
    let order = &task.subject;
    let ticket = tickets
        .iter()
        .find(|t| task.ticket.ticket_id.as_deref() == Some(t.id.as_str()))
        .or_else(|| {
            tickets
                .iter()
                .find(|t| t.reference.as_deref() == Some(order.as_str()))
        });
    let sent_at = task.ticket.sent_at.unwrap_or(now);
    let elapsed = (now - sent_at).num_seconds().max(0);
    let deadline = i64::try_from(ctx.channel.ticket_deadline_secs).unwrap_or(i64::MAX);
    let Some(t) = ticket else {
        let why = format!(
            "Shopping Feed has no ticket for order {order} in batch {batch} ({elapsed} s after the \
             push); the {op} is sent again"
        );
        return (Verdict::Refused(why.clone()), line(order, "missing", why));
    };
    let said = t.said.as_deref().unwrap_or("no reason given");
    let id = Some(t.id.clone());
    let verdict = match t.state.as_str() {
        "succeed" => Verdict::Done { ticket_id: id },
        "failed" => Verdict::Refused(format!(
            "Shopping Feed ticket {} (batch {batch}) failed: {said}; the {op} is sent again",
            t.id
        )),
        "canceled" => Verdict::Dead {
            ticket_id: id,
            error: format!(
                "Shopping Feed canceled ticket {} (batch {batch}): {said}; the marketplace will not \
                 take this {op}",
                t.id
            ),
        },
        state if elapsed >= deadline => Verdict::Refused(format!(
            "Shopping Feed ticket {} (batch {batch}) was still {state} {elapsed} s after the push \
             (ticket_deadline_secs = {deadline}); the {op} is sent again",
            t.id
        )),
        _ => Verdict::Await {
            batch_id: batch.to_string(),
            ticket_id: id,
            sent_at,
            poll_at: now + next_read_in(ctx.channel.ticket_poll_secs, elapsed),
        },
    };
    let message = match &verdict {
        Verdict::Done { .. } => format!("ticket {} succeeded", t.id),
        Verdict::Await { poll_at, .. } => {
            format!(
                "ticket {} is {}; read again at {poll_at} UTC",
                t.id, t.state
            )
        }
        Verdict::Refused(why) | Verdict::Dead { error: why, .. } => why.clone(),
    };
    (verdict, line(order, &t.state, message))
}

fn line(order: &str, state: &str, message: String) -> LogLine {
    LogLine {
        reference: order.to_string(),
        result: match state {
            "succeed" => "Success",
            "scheduled" | "running" => "Pending",
            _ => "Failure",
        },
        message,
        detail: None,
    }
}

/// How long after a read the next one comes, `elapsed` seconds after the push: the k-th read
/// waits k × `poll_secs` after the one before (at most [`MAX_POLL_FACTOR`] times), so reads come
/// at p, 2p, 4p, 7p, 11p, … after the push. Reads are counted from `elapsed` (the task keeps no
/// count): k reads have been made once p·(1 + k(k−1)/2) has passed.
fn next_read_in(poll_secs: u64, elapsed: i64) -> TimeDelta {
    let p = i64::try_from(poll_secs.max(1)).unwrap_or(60);
    let mut reads = 1;
    while reads < MAX_POLL_FACTOR && p.saturating_mul(1 + (reads + 1) * reads / 2) <= elapsed {
        reads += 1;
    }
    TimeDelta::seconds(p.saturating_mul(reads))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wait_longer_each_time_up_to_ten_polls() {
        let waits: Vec<i64> = [1, 2, 4, 7, 11, 10_000]
            .into_iter()
            .map(|elapsed| next_read_in(1, elapsed).num_seconds())
            .collect();
        assert_eq!(waits, [1, 2, 3, 4, 5, 10]);
        assert_eq!(next_read_in(30, 31).num_seconds(), 30);
        assert_eq!(next_read_in(30, 60).num_seconds(), 60);
    }

    #[test]
    fn tickets_are_read_from_a_hal_page() {
        let page = r#"{"total":2,"_embedded":{"ticket":[
            {"id":"t1","state":"failed","payload":{"reference":"A","error":"no stock"}},
            {"id":2,"state":"running","payload":{"reference":"B"}}]}}"#;
        let tickets = parse(page).unwrap();
        assert_eq!(tickets.len(), 2);
        assert_eq!(tickets[0].said.as_deref(), Some("no stock"));
        assert_eq!(
            (tickets[1].id.as_str(), tickets[1].reference.as_deref()),
            ("2", Some("B"))
        );
        assert_eq!(parse(r#"{"total":0}"#), Some(Vec::new()));
        assert_eq!(parse("[1]"), None);
        assert_eq!(parse("<html>"), None);
    }
}
