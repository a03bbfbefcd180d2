//! Pushing due tasks: claim a batch of one action, build each order's operation as the order is
//! now, POST them together, and settle every task by the answer.

use chrono::{NaiveDateTime, TimeDelta};
use serde_json::{Value, json};

use super::super::sync::Pusher;
use super::client::{self, Reply};
use super::settle::{self, Ctx, Tally, Verdict};
use super::{Flow, MAX_ORDERS, Operation, body};
use crate::db::lease::Lease;
use crate::db::{self, DbConnection};
use crate::orders::sync::task_kind;
use crate::orders::{self, OrderError};
use crate::outbound::exchange::{BatchError, Exchange, ExchangeLog, LogLine};
use crate::outbound::{self, Task};

/// Pushes batches of `op`'s tasks due at `now` until none is left, or the API does not answer.
pub(super) async fn send_due(
    p: &Pusher,
    op: Operation,
    now: NaiveDateTime,
) -> anyhow::Result<Flow> {
    let limit = p.channel.batch_size.clamp(1, MAX_ORDERS);
    loop {
        let (lease, tasks) = p.claim_due(op.action(), limit, now).await?;
        if tasks.is_empty() {
            return Ok(Flow::Go);
        }
        // A short claim took everything due; a full one may have left some.
        let more = tasks.len() == limit;
        let flow = settle::guarded(p, &lease, &tasks, send(p, op, &lease, tasks.clone())).await?;
        if flow == Flow::Stop || !more {
            return Ok(flow);
        }
    }
}

/// Builds, sends and settles one claimed batch.
async fn send(p: &Pusher, op: Operation, lease: &Lease, tasks: Vec<Task>) -> anyhow::Result<Flow> {
    let ctx = Ctx::new(p, op, lease);
    let built = p.db(move |conn| body::build(conn, op, tasks)).await?;
    if !built.unbuilt.is_empty() {
        let (c, unbuilt) = (ctx.clone(), built.unbuilt);
        let verdicts: Vec<(Task, Verdict)> = unbuilt
            .into_iter()
            .map(|(t, why)| (t, Verdict::Refused(why)))
            .collect();
        let tally = p
            .db(move |conn| {
                db::write_tx(conn, |conn| {
                    Ok(settle::apply(conn, &c, &verdicts, db::now())?)
                })
            })
            .await?;
        tally.count(&ctx);
    }
    if built.orders.is_empty() {
        return Ok(Flow::Go);
    }
    let (tasks, orders): (Vec<Task>, Vec<Value>) = built.orders.into_iter().unzip();
    let request = json!({ "order": orders }).to_string();
    let url = client::operation_url(p, op)?;
    let started = db::now();
    let reply = client::post(p, url.clone(), request.clone()).await;
    let log = ExchangeLog {
        kind: p.name,
        operation: op.word(),
        url: url.to_string(),
        started,
        request: Some(request),
    };
    let sent = Sent {
        tasks,
        orders,
        at: started,
    };
    settle_reply(p, ctx, log, sent, reply).await
}

/// A batch as it was sent.
struct Sent {
    tasks: Vec<Task>,
    orders: Vec<Value>,
    at: NaiveDateTime,
}

/// Settles a pushed batch by the API's answer.
async fn settle_reply(
    p: &Pusher,
    ctx: Ctx,
    log: ExchangeLog,
    sent: Sent,
    reply: Reply,
) -> anyhow::Result<Flow> {
    let c = ctx.clone();
    let Sent {
        tasks,
        orders,
        at: sent_at,
    } = sent;
    let poll = TimeDelta::seconds(i64::try_from(ctx.channel.ticket_poll_secs).unwrap_or(60));
    let (tally, flow) = match reply {
        Reply::Ok { status, body } => match batch_id(&body) {
            Some(batch) => {
                let tally = p
                    .db(move |conn| {
                        let poll_at = db::now() + poll;
                        let (verdicts, lines) = accepted(&tasks, &batch, sent_at, poll_at);
                        let again =
                            |conn: &mut _, now| again_if_changed(conn, &c, &tasks, &orders, now);
                        settle::answered(conn, &c, &log, &body, &verdicts, &lines, again)
                    })
                    .await?;
                (tally, Flow::Go)
            }
            None => {
                let e = BatchError {
                    exchange: Exchange::BadAnswer,
                    message: format!(
                        "channel {}: the API answered HTTP {status} without a batch id (`id`): {}",
                        ctx.name,
                        client::detail(&body)
                    ),
                    http_status: Some(status),
                    body: Some(body),
                };
                not_answered(p, c, log, tasks, e, None).await?
            }
        },
        Reply::Busy { wait, error } => not_answered(p, c, log, tasks, error, Some(wait)).await?,
        Reply::Down(e) => not_answered(p, c, log, tasks, e, None).await?,
        Reply::Refused(e) => {
            let tally = p
                .db(move |conn| {
                    let said = refusal(&e);
                    let why = |t: &Task| {
                        format!(
                            "the API refused the {} of order {} ({said})",
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
    tally.count(&ctx);
    Ok(flow)
}

/// Pushes again the orders that changed while their push was on its way (a shipment applied then
/// found the task being sent and could neither add a task nor move its wait): a new task, due
/// after the ship delay for a ship (a shipment starts the wait), at once otherwise.
fn again_if_changed(
    conn: &mut DbConnection,
    ctx: &Ctx,
    tasks: &[Task],
    sent: &[Value],
    now: NaiveDateTime,
) -> anyhow::Result<()> {
    let kind = task_kind(ctx.name, ctx.op.action());
    let delay = match ctx.op {
        Operation::Ship => i64::try_from(ctx.channel.ship_delay_secs).unwrap_or(i64::MAX / 2),
        Operation::Cancel | Operation::Refund => 0,
    };
    for (task, sent) in tasks.iter().zip(sent) {
        let view = match orders::get(conn, &task.subject) {
            Ok(view) => view,
            Err(OrderError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        if body::operation(ctx.op, &view) != *sent
            && outbound::enqueue_at(
                conn,
                kind,
                &task.subject,
                now + TimeDelta::seconds(delay),
                now,
            )?
        {
            tracing::info!(channel = ctx.name, order = %task.subject,
                "channel {}: order {} changed while its {} was being pushed; the change is pushed \
                 next", ctx.name, task.subject, ctx.op.word());
            outbound::announce(conn)?;
        }
    }
    Ok(())
}

/// A batch that got no usable answer: due again later; the run stops.
async fn not_answered(
    p: &Pusher,
    ctx: Ctx,
    log: ExchangeLog,
    tasks: Vec<Task>,
    e: BatchError,
    wait: Option<TimeDelta>,
) -> anyhow::Result<(Tally, Flow)> {
    let (tally, _open) = p
        .db(move |conn| settle::not_answered(conn, &ctx, &log, &tasks, &e, wait))
        .await?;
    Ok((tally, Flow::Stop))
}

/// What a refusal said: its status and the API's words.
pub(super) fn refusal(e: &BatchError) -> String {
    let status = e
        .http_status
        .map_or_else(String::new, |s| format!("HTTP {s}: "));
    format!(
        "{status}{}",
        client::detail(e.body.as_deref().unwrap_or_default())
    )
}

/// Each task of a batch the API took on, awaiting its ticket; a log line each.
fn accepted(
    tasks: &[Task],
    batch: &str,
    sent_at: NaiveDateTime,
    poll_at: NaiveDateTime,
) -> (Vec<(Task, Verdict)>, Vec<LogLine>) {
    tasks
        .iter()
        .map(|t| {
            let verdict = Verdict::Await {
                batch_id: batch.to_string(),
                ticket_id: None,
                sent_at,
                poll_at,
            };
            let line = LogLine {
                reference: t.subject.clone(),
                result: "Success",
                message: format!("taken on in batch {batch}; its ticket is read next"),
                detail: None,
            };
            ((t.clone(), verdict), line)
        })
        .unzip()
}

/// The batch id of an accepted operation (`{"id": …}`, the batch resource).
fn batch_id(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    match &v["id"] {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_id_is_the_answers_id() {
        assert_eq!(
            batch_id(r#"{"id":"b-1","_links":{}}"#).as_deref(),
            Some("b-1")
        );
        assert_eq!(batch_id(r#"{"id":42}"#).as_deref(), Some("42"));
        assert_eq!(batch_id(r#"{"id":""}"#), None);
        assert_eq!(batch_id("<html>"), None);
    }
}
