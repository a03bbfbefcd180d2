//! The affiliate channel (`kind = "http"`): each change of an order an affiliate system sent is
//! pushed to it as one signed HTTP request, built when it is sent from the order as it is then.
//!
//! # The wire contract
//!
//! Under the channel's `base_url` (the order number percent-encoded as one path segment):
//!
//! - `ship`, `cancel`, `refund`, `status` → `POST /orders/{reference}/status` with
//!   `{"reference", "status", "order_status", "changed_at", "sequence"}`: `status` is what happened
//!   (`shipped`, `canceled`, `refunded`, or for `status` the order's status), `order_status` the
//!   order's status now (`complete` once everything shipped), `changed_at` (RFC 3339) when wharf
//!   last changed the order. A ship adds the shipments so far — one push carries them all:
//!   `consignment_numbers` (every tracking number, oldest first), `consignment_number` (the latest),
//!   `carrier` and `service` (the latest shipment's courier and service), `shipped_at`, and
//!   `lines` (`sku`, `qty`, `qty_shipped`). No tracking URL is sent: the warehouse sends courier,
//!   service and numbers only, and wharf does not guess carriers' links.
//! - `edit` → `PUT /orders/{reference}`: the whole order as the storefront last sent it (addresses,
//!   totals, methods), its `status` as wharf knows it, `lines` with `qty_shipped`,
//!   `tracking_numbers`, `changed_at` and `sequence`.
//! - `split` → `POST /orders/{reference}/split`: `lines` the parent keeps, `children` (each with
//!   `reference`, `status` and `lines`), `order_status`, `changed_at` and `sequence`.
//!
//! Every request carries `Idempotency-Key: wharf-<task id>` — the same on every retry and after a
//! crash, so a receiver applies a push once however often it arrives — and the Standard Webhooks
//! headers ([`sign`]) with `webhook-id` = that key. `sequence` is the order's push number, taken on
//! a push's first send and kept: a receiver drops an update older than one it has (409).
//!
//! Answers: 2xx → done; 202 with `{"ticket": "<id>"}` → the push waits (`awaiting`) and
//! `GET /tickets/{id}` (signed, no body) is read every `ticket_poll_secs` (the wait grows with the
//! ticket's age, up to ten times that) until it answers `{"state": "done"}` (done) or
//! `{"state": "failed", "message": …}` (sent again after a backoff, lost at `max_attempts`;
//! `pending` reads again, past `ticket_deadline_secs` it is sent again; an unknown ticket, 404, is
//! sent again). The receiver is expected to forget a key whose ticket failed, so the push sent
//! again is applied afresh. 409 → done (the receiver has a newer update; the exchange log says so);
//! other 4xx → `dead` with the status and the receiver's `message`, waiting for support; 408, 429
//! and 5xx, a timeout or no connection → due again after `Retry-After` (seconds or an HTTP date,
//! at most `backoff_ceiling_secs`) or the backoff, no attempt counted; 5xx and no connection count
//! on the channel's breaker.
//!
//! A push whose order changed while it was on its way (a new shipment, another status) is followed
//! by another push of the same action, since the change found the first one open and added none.

mod answer;
mod payload;
mod settle;
pub mod sign;
mod ticket;

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context;
use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use super::sync::Pusher;
use crate::config::{ChannelAction, ChannelSettings};
use crate::db::lease::Lease;
use crate::db::{self, DbConnection};
use crate::orders::{self, OrderError, OrderView};
use crate::outbound::{self, Task, TaskState};
use answer::{Answer, Reply};
use payload::Request;
use sign::Signer;

pub use crate::metrics::CHANNEL_PUSHES as PUSHES;

/// The most of an answer read (a status push is answered in a few bytes; this only bounds a
/// misbehaving receiver).
const MAX_ANSWER: usize = 1024 * 1024;

/// Most pushes of one batch in flight at once (and at most half the database pool): each is its
/// own request and its own settling transaction, so the receiver's and the database's round trips overlap. A batch holds one action
/// of distinct orders, so no order ever has two pushes in flight from one runner.
const IN_FLIGHT: usize = 8;

/// A lease must still cover one whole exchange, with this to spare, for another to start.
const LEASE_MARGIN_SECS: i64 = 5;

/// Sends this channel's due pushes and reads its due tickets, action by action, unless its breaker
/// has paused it.
pub async fn run(p: &Pusher, now: NaiveDateTime) -> anyhow::Result<()> {
    if p.paused(now).await?.is_some() {
        return Ok(());
    }
    let key = p.channel.signing_key().with_context(|| {
        format!(
            "channel {}: the secret is not a Standard Webhooks secret whsec_<base64>; set \
             channels.secret (or {})",
            p.name,
            p.channel.secret_var("SECRET")
        )
    })?;
    let s = Sender {
        p,
        link: Link {
            http: p.http.clone(),
            signer: Arc::new(Signer::new(&key)),
            pool: p.pool.clone(),
            ctx: Ctx {
                name: p.name,
                channel: Arc::new(p.channel.clone()),
                breaker: p.breaker_key(),
            },
        },
    };
    let name = p.name;
    let due = p.db(move |conn| Ok(due_now(conn, name, now)?)).await?;
    for action in p.actions() {
        let (polls, sends) = (
            due.contains(&(action.as_str(), true)),
            due.contains(&(action.as_str(), false)),
        );
        if (polls && s.read_tickets(action, now).await? == Flow::Stop)
            || (sends && s.send_due(action, now).await? == Flow::Stop)
        {
            break;
        }
    }
    Ok(())
}

/// The channel's actions with work due at `now`, each as (action, whether it is ticket reads):
/// one read, so that a run with nothing to do takes no claim (a claim is a writing transaction,
/// and a runner is woken by every change of every order).
fn due_now(
    conn: &mut DbConnection,
    name: &str,
    now: NaiveDateTime,
) -> QueryResult<HashSet<(&'static str, bool)>> {
    use crate::db::schema::outbound_tasks as t;
    let open = [TaskState::Pending, TaskState::Failed, TaskState::Awaiting];
    let rows: Vec<(String, String)> = t::table
        .filter(t::channel.eq(name))
        .filter(t::state.eq_any(TaskState::words(open)))
        .filter(t::run_after.is_null().or(t::run_after.le(now)))
        .filter(
            t::lease_expires_at
                .is_null()
                .or(t::lease_expires_at.lt(now)),
        )
        .select((t::action, t::state))
        .distinct()
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(action, state)| {
            let action = ChannelAction::parse(&action)?.as_str();
            Some((action, state == TaskState::Awaiting.as_str()))
        })
        .collect())
}

/// Whether a run goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// On to the next batch or action.
    Go,
    /// The breaker opened: the channel pauses.
    Stop,
}

/// What the settling transactions need of the channel. They run on the blocking pool and so own
/// what they use (the `Pusher` is only borrowed by a run).
#[derive(Clone)]
struct Ctx {
    name: &'static str,
    channel: Arc<ChannelSettings>,
    /// The channel's breaker ([`Pusher::breaker_key`]).
    breaker: String,
}

/// One run's sender.
struct Sender<'a> {
    p: &'a Pusher,
    link: Link,
}

/// What one exchange and its settling need, owned, so that several pushes of a batch can be in
/// flight at once (each a task of its own).
#[derive(Clone)]
struct Link {
    http: reqwest::Client,
    signer: Arc<Signer>,
    pool: crate::db::Pool,
    ctx: Ctx,
}

/// A push ready to go: its task, key and request, and what it was built from.
#[derive(Debug, Clone)]
struct Push {
    task: Task,
    key: String,
    request: Request,
    /// The order's `updated_at` when the request was built.
    built_from: NaiveDateTime,
    /// What of the order this action tells (see [`fingerprint`]).
    fingerprint: String,
}

/// The idempotency key (and `webhook-id`) of a task's push: stable for the task's life.
fn idempotency_key(task_id: i64) -> String {
    format!("wharf-{task_id}")
}

impl Sender<'_> {
    /// Sends the due pushes of `action`, batch after batch, until none is left due at `now`.
    async fn send_due(&self, action: ChannelAction, now: NaiveDateTime) -> anyhow::Result<Flow> {
        let limit = self.p.channel.batch_size.max(1);
        loop {
            let (lease, tasks) = self.p.claim_due(action, limit, now).await?;
            if tasks.is_empty() {
                return Ok(Flow::Go);
            }
            let full = tasks.len() == limit;
            let ids: Vec<i64> = tasks.iter().map(|t| t.id).collect();
            let sent = self.send_batch(action, &lease, tasks).await;
            // Whatever was not settled (the run stopped, or failed) is let go at once rather than
            // when the lease runs out; those settled are not held any more.
            self.p.release(&lease, ids).await?;
            match sent? {
                Flow::Stop => return Ok(Flow::Stop),
                Flow::Go if !full => return Ok(Flow::Go),
                Flow::Go => {}
            }
        }
    }

    /// Builds and sends a claimed batch, one request per task, several at once ([`IN_FLIGHT`]),
    /// settling each as it is answered. Stops sending (what is in flight still settles) when the
    /// breaker opens or the lease runs short.
    async fn send_batch(
        &self,
        action: ChannelAction,
        lease: &Lease,
        tasks: Vec<Task>,
    ) -> anyhow::Result<Flow> {
        let mut pushes = self
            .p
            .db(move |conn| sequences(conn, tasks))
            .await?
            .into_iter();
        let mut flying = tokio::task::JoinSet::new();
        let (mut flow, mut failed, mut sending) = (Flow::Go, None, true);
        // Each push in flight settles on a connection of its own: half the pool at most, the rest
        // is the API's and the worker's.
        let at_once = usize::try_from(self.link.pool.max_size() / 2)
            .unwrap_or(1)
            .clamp(1, IN_FLIGHT);
        loop {
            while sending && flying.len() < at_once {
                // A lease run short: the rest is claimed again under a new one by the next batch.
                match pushes.next() {
                    Some(push) if room_for_one_more(lease, self.p.channel.timeout_secs) => {
                        let link = self.link.clone();
                        flying.spawn(link.push(push, action, lease.owner.clone()));
                    }
                    _ => sending = false,
                }
            }
            let Some(joined) = flying.join_next().await else {
                break;
            };
            match joined
                .map_err(anyhow::Error::from)
                .and_then(|settled| settled)
            {
                Ok(Flow::Go) => {}
                Ok(Flow::Stop) => (flow, sending) = (Flow::Stop, false),
                // What is in flight still settles before the error is returned.
                Err(e) => (failed, sending) = (failed.or(Some(e)), false),
            }
        }
        failed.map_or(Ok(flow), Err)
    }
}

impl Link {
    /// Builds one push (each in its own task: the reads of a batch's orders overlap too), sends it
    /// and settles it as its answer says.
    async fn push(
        self,
        task: (Task, i64),
        action: ChannelAction,
        owner: String,
    ) -> anyhow::Result<Flow> {
        let (ctx, who) = (self.ctx.clone(), owner.clone());
        let built = db::blocking(&self.pool, "building an affiliate push", move |conn| {
            prepare(conn, &ctx, &who, action, task)
        })
        .await?;
        let Some(push) = built else {
            return Ok(Flow::Go);
        };
        let started = db::now();
        let reply = self
            .exchange(&push.key, &push.request, Some(&push.key))
            .await;
        let timeout = self.ctx.channel.timeout_secs;
        let verdict = answer::push(&reply, self.ctx.name, timeout, db::now());
        let ctx = self.ctx;
        db::blocking(&self.pool, "an affiliate push", move |conn| {
            let sent = settle::Sent {
                push: &push,
                action,
                started,
                reply: &reply,
            };
            db::write_tx(conn, |conn| {
                settle::pushed(conn, &ctx, &owner, &sent, verdict)
            })
        })
        .await
    }

    /// One signed request: `id` is its `webhook-id`, `idempotency` its `Idempotency-Key` (none
    /// for a ticket read).
    async fn exchange(&self, id: &str, request: &Request, idempotency: Option<&str>) -> Reply {
        let timestamp = chrono::Utc::now().timestamp();
        let signature = self.signer.sign(id, timestamp, request.body.as_bytes());
        let mut r = self
            .http
            .request(request.method.clone(), request.url.clone())
            .header(sign::ID, id)
            .header(sign::TIMESTAMP, timestamp.to_string())
            .header(sign::SIGNATURE, signature);
        if let Some(key) = idempotency {
            r = r.header("Idempotency-Key", key);
        }
        if !request.body.is_empty() {
            r = r
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(request.body.clone());
        }
        let resp = r.send().await?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // A too large answer is judged by its status; its start is what the log keeps.
        let body = match outbound::exchange::read_capped(resp, MAX_ANSWER).await? {
            Ok(body) | Err(body) => body,
        };
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }
}

/// Whether `lease` still covers a whole exchange (with a margin) from now: a batch whose lease ran
/// short stops sending, so no other runner can take a task this one is still sending.
fn room_for_one_more(lease: &Lease, timeout_secs: u64) -> bool {
    let exchange = i64::try_from(timeout_secs).unwrap_or(i64::MAX / 2) + LEASE_MARGIN_SECS;
    lease.until - db::now() > TimeDelta::seconds(exchange)
}

/// The push numbers of claimed `tasks` (each takes its own on its first send and keeps it), in
/// one short writing transaction.
fn sequences(conn: &mut DbConnection, tasks: Vec<Task>) -> anyhow::Result<Vec<(Task, i64)>> {
    db::write_tx(conn, |conn| {
        tasks
            .into_iter()
            .map(|t| Pusher::sequence(conn, &t).map(|s| (t, s)))
            .collect::<diesel::QueryResult<Vec<_>>>()
    })
    .map_err(Into::into)
}

/// The push of `task` built from its order as it is now (read in one reading transaction: one
/// snapshot of the order, without holding SQLite's write lock). A task whose order is gone or
/// cannot be sent is refused for good at once (dead), without an exchange: `None`.
fn prepare(
    conn: &mut DbConnection,
    ctx: &Ctx,
    owner: &str,
    action: ChannelAction,
    (task, sequence): (Task, i64),
) -> anyhow::Result<Option<Push>> {
    let base_url = ctx.channel.base_url.as_str();
    match conn.transaction(|conn| build(conn, base_url, action, task, sequence))? {
        Ok(push) => Ok(Some(push)),
        Err((task, why)) => {
            db::write_tx(conn, |conn| {
                settle::unbuildable(conn, ctx, owner, action, &task, &why, db::now())
            })?;
            Ok(None)
        }
    }
}

/// The push of `task` carrying `sequence`, or why it cannot be made (with the task back).
fn build(
    conn: &mut DbConnection,
    base_url: &str,
    action: ChannelAction,
    task: Task,
    sequence: i64,
) -> anyhow::Result<Result<Push, (Task, String)>> {
    let order = match readable(orders::get(conn, &task.subject))? {
        Ok(o) => o,
        Err(why) => return Ok(Err((task, why))),
    };
    let mut children = Vec::new();
    if action == ChannelAction::Split {
        for c in &order.children {
            match readable(orders::get(conn, c))? {
                Ok(child) => children.push(child),
                Err(why) => return Ok(Err((task, why))),
            }
        }
    }
    Ok(
        match payload::build(base_url, action, &order, &children, sequence) {
            Ok(request) => Ok(Push {
                key: idempotency_key(task.id),
                task,
                request,
                built_from: order.updated_at.naive_utc(),
                fingerprint: fingerprint(action, &order),
            }),
            Err(why) => Err((task, why)),
        },
    )
}

/// An order read for a push: `Ok(Err(why))` when it cannot be pushed (gone, or its stored document
/// no longer reads), `Err` when the database failed.
fn readable(read: Result<OrderView, OrderError>) -> anyhow::Result<Result<OrderView, String>> {
    match read {
        Ok(order) => Ok(Ok(order)),
        Err(OrderError::NotFound(id)) => Ok(Err(format!(
            "order {id} is not in wharf any more, so there is nothing to push"
        ))),
        Err(OrderError::Db(diesel::result::Error::DeserializationError(e))) => Ok(Err(format!(
            "the order as wharf stored it no longer reads ({e}); fix it through the storefront \
             API, then resend the push"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// What of `order` a push of `action` tells, to see whether the order changed in that respect
/// while the push was on its way: the shipments for a ship, the status for a status push, the
/// children for a split, everything for an edit.
fn fingerprint(action: ChannelAction, order: &OrderView) -> String {
    match action {
        ChannelAction::Ship => format!(
            "{} {}",
            order.shipments.len(),
            order.tracking_numbers.join(" ")
        ),
        ChannelAction::Cancel | ChannelAction::Refund | ChannelAction::Status => {
            order.status.clone()
        }
        ChannelAction::Edit => order.updated_at.to_rfc3339(),
        ChannelAction::Split => order.children.join(" "),
    }
}

/// Counts one settled push.
fn count(ctx: &Ctx, action: &'static str, outcome: &'static str) {
    metrics::counter!(PUSHES, "channel" => ctx.name, "action" => action, "outcome" => outcome)
        .increment(1);
}
