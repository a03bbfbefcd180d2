//! Status sync to the channels orders come from (`[[channels]]`): what every channel kind shares.
//! The tasks are enqueued by the orders' changes ([`crate::orders::sync`]); here a runner per
//! channel claims them when due, hands them to its kind (`shoppingfeed`, `http`) to build and
//! send, and settles them:
//!
//! - **pending/failed → done**: the other side took the push;
//! - **→ awaiting**: it answered with a ticket (a batch id), read again every `ticket_poll_secs`
//!   (growing) until it settles: done, or failed (sent again after a backoff, and alerted);
//! - **→ failed → lost**: refused, retried with backoff, lost after `max_attempts` (support resends
//!   or dismisses it);
//! - **→ dead**: refused for good (the other side said it can never succeed), waits for support;
//! - not answered (transport error, 5xx, 429): due again after the backoff or `Retry-After`, with no
//!   attempt counted, and the channel's breaker counts it.
//!
//! Every write is guarded by the lease owner ([`crate::outbound`]), so any number of runners in any
//! number of processes push each change once. What is sent is built at send time from the order as
//! it is then. Every exchange goes in the exchange log (`exports`, kind = the channel's name).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{ChannelAction, ChannelKind, ChannelSettings, Settings};
use crate::db::lease::{Backoff, Lease, Owner};
use crate::db::schema::outbound_tasks as t;
use crate::db::{self, DbConnection, Pool};
use crate::orders::sync::task_kind;
use crate::outbound::breaker::{self, BreakerState};
use crate::outbound::runner::{self, Wakes};
use crate::outbound::{self, Outcome, Task, TaskKind, TaskState};

/// Claims under a new lease of `$p` up to `$limit` tasks that `$filter` (over `outbound_tasks`,
/// with the lease as `$l`) picks, oldest first. (A macro: the filter's type differs per claim, and
/// diesel's boxed filters are per backend.)
macro_rules! claim_with {
    ($p:expr, $limit:expr, |$l:ident| $filter:expr) => {{
        let lease = $p.lease();
        let $l = lease.clone();
        let limit = i64::try_from($limit).unwrap_or(100);
        let tasks = $p
            .db(move |conn| {
                Ok(outbound::claim(conn, &$l, |conn| {
                    crate::load_skip_locked!(
                        conn,
                        t::table
                            .filter($filter)
                            .order(t::id)
                            .limit(limit)
                            .select(t::id)
                    )
                })?)
            })
            .await?;
        Ok((lease, tasks))
    }};
}

/// How long a runner waits after a wake-up before it sends, so changes made together go together.
const WINDOW: Duration = Duration::from_millis(100);

/// One channel's sender: its settings, an HTTP client, and the lease owner of its claims.
pub struct Pusher {
    /// The database.
    pub pool: Pool,
    /// The channel.
    pub channel: ChannelSettings,
    /// The channel's name, as its tasks carry it.
    pub name: &'static str,
    /// HTTP client (rustls, with the channel's timeout).
    pub http: reqwest::Client,
    owner: Owner,
}

impl Pusher {
    /// A sender for `channel`.
    pub fn new(pool: Pool, channel: ChannelSettings) -> anyhow::Result<Pusher> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(channel.timeout_secs.max(1)))
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the channel's HTTP client")?;
        Ok(Pusher {
            pool,
            name: outbound::intern(&channel.name),
            owner: Owner::new(&format!("outbound:{}", channel.name)),
            channel,
            http,
        })
    }

    /// Runs `f` with a database connection, off the async threads.
    pub async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        db::blocking(&self.pool, "a channel push", f).await
    }

    /// The task kind of `action` on this channel.
    pub fn kind(&self, action: ChannelAction) -> TaskKind {
        task_kind(self.name, action)
    }

    /// The actions this channel receives.
    pub fn actions(&self) -> Vec<ChannelAction> {
        self.channel.actions()
    }

    /// The retry backoff.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            base_secs: self.channel.backoff_base_secs,
            ceiling_secs: self.channel.backoff_ceiling_secs,
        }
    }

    /// A refusal of `task` at `now`: failed with a backoff, or lost at `max_attempts`.
    pub fn refused(&self, task: &Task, error: String, now: NaiveDateTime) -> Outcome {
        Outcome::refused(
            task.attempts,
            self.channel.max_attempts,
            self.backoff(),
            error,
            now,
        )
    }

    /// A lease long enough for one batch of calls.
    fn lease(&self) -> Lease {
        let timeout = i64::try_from(self.channel.timeout_secs).unwrap_or(60);
        Lease::new(&self.owner, timeout.saturating_mul(3) + 60)
    }

    /// Claims up to `limit` tasks of `action` that are due to be sent at `now` (pending or failed,
    /// their `run_after` passed), oldest first.
    pub async fn claim_due(
        &self,
        action: ChannelAction,
        limit: usize,
        now: NaiveDateTime,
    ) -> anyhow::Result<(Lease, Vec<Task>)> {
        let kind = self.kind(action);
        claim_with!(self, limit, |l| crate::outbound_due!(kind, now, l.now))
    }

    /// Claims up to `limit` tasks of `action` waiting for their ticket whose next read is due.
    pub async fn claim_polls(
        &self,
        action: ChannelAction,
        limit: usize,
        now: NaiveDateTime,
    ) -> anyhow::Result<(Lease, Vec<Task>)> {
        let kind = self.kind(action);
        claim_with!(self, limit, |l| t::channel
            .eq(kind.channel)
            .and(t::action.eq(kind.action))
            .and(t::state.eq(TaskState::Awaiting.as_str()))
            .and(t::run_after.is_null().or(t::run_after.le(now)))
            .and(
                t::lease_expires_at
                    .is_null()
                    .or(t::lease_expires_at.lt(l.now))
            ))
    }

    /// Lets go of `ids` the lease still holds (those settled are not held any more).
    pub async fn release(&self, lease: &Lease, ids: Vec<i64>) -> anyhow::Result<()> {
        let owner = lease.owner.clone();
        self.db(move |conn| Ok(outbound::release(conn, &ids, &owner, None)?))
            .await
            .map(drop)
    }

    /// The push number task `task` carries: the one it took on its first send, or the order's next.
    pub fn sequence(conn: &mut DbConnection, task: &Task) -> QueryResult<i64> {
        if let Some(s) = task.ticket.sequence {
            return Ok(s);
        }
        let s = crate::orders::store::next_push_sequence(conn, &task.subject)?.unwrap_or(0);
        outbound::set_sequence(conn, task.id, s)?;
        Ok(s)
    }

    /// The breaker's key for this channel.
    pub fn breaker_key(&self) -> String {
        breaker::channel_breaker_key(self.name)
    }

    /// The breaker, when it is open at `now` (the channel is paused).
    pub async fn paused(&self, now: NaiveDateTime) -> anyhow::Result<Option<BreakerState>> {
        let key = self.breaker_key();
        self.db(move |conn| Ok(breaker::open_at(conn, &key, now)?))
            .await
    }

    /// Counts a call that got no usable answer on the breaker (in the caller's transaction).
    pub fn breaker_failed(
        &self,
        conn: &mut DbConnection,
        error: &str,
        now: NaiveDateTime,
    ) -> QueryResult<BreakerState> {
        let key = self.breaker_key();
        let b = breaker::record_failure(
            conn,
            &key,
            self.channel.breaker_threshold,
            self.channel.breaker_pause_secs,
            now,
        )?;
        if b.is_open(now) {
            breaker::log_failure(&key, &b, error, now);
        }
        Ok(b)
    }

    /// The other side answered: the breaker's count starts again.
    pub fn breaker_answered(&self, conn: &mut DbConnection) -> QueryResult<()> {
        breaker::reset(conn, &self.breaker_key())
    }

    /// When this channel's next task falls due (to send, or a ticket to read) as seen at `now`: at
    /// once for one due with no time set, else the earliest due time; a task another sender holds
    /// falls due when its lease runs out (not before: its runner would look every window for
    /// nothing). `None`: nothing waits.
    async fn next_due(&self, now: NaiveDateTime) -> anyhow::Result<Option<NaiveDateTime>> {
        let name = self.name;
        self.db(move |conn| {
            let waiting = || {
                t::table
                    .filter(t::channel.eq(name))
                    .filter(t::state.eq_any([
                        TaskState::Pending.as_str(),
                        TaskState::Failed.as_str(),
                        TaskState::Awaiting.as_str(),
                    ]))
            };
            let free = || {
                t::lease_expires_at
                    .is_null()
                    .or(t::lease_expires_at.le(now))
            };
            let due_now: i64 = waiting()
                .filter(free())
                .filter(t::run_after.is_null())
                .count()
                .get_result(conn)?;
            if due_now > 0 {
                return Ok(Some(now));
            }
            let next: Option<NaiveDateTime> = waiting()
                .filter(free())
                .select(diesel::dsl::min(t::run_after))
                .first(conn)?;
            let held: Option<NaiveDateTime> = waiting()
                .filter(t::lease_expires_at.gt(now))
                .select(diesel::dsl::min(t::lease_expires_at))
                .first(conn)?;
            Ok(next.into_iter().chain(held).min())
        })
        .await
    }

    /// One run: sends what is due and reads the tickets due, then says when to look again (while
    /// the breaker holds the channel, when it lets go).
    pub async fn run_once(&self) -> anyhow::Result<Option<NaiveDateTime>> {
        let now = db::now();
        if let Some(b) = self.paused(now).await? {
            return Ok(b.paused_until);
        }
        match self.channel.kind {
            ChannelKind::Shoppingfeed => super::shoppingfeed::run(self, now).await?,
            ChannelKind::Http => super::affiliate::run(self, now).await?,
            // File channels push nothing (their runners are `crate::channels::sftp`'s), and
            // `spawn_runners` starts no pusher for them.
            ChannelKind::Sftp => {}
        }
        self.next_due(db::now()).await
    }
}

/// Starts one runner per configured channel, continuous: woken when a change is committed (in
/// this process, and from others through the wake-up listener on PostgreSQL), and when a delayed
/// ship or a ticket read falls due.
pub fn spawn_runners(
    pool: &Pool,
    settings: &Arc<Settings>,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    settings
        .push_channels()
        .filter_map(|c| match Pusher::new(pool.clone(), c.clone()) {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                tracing::error!(channel = %c.name, error = %format!("{e:#}"),
                    "channel {} cannot start; its pushes wait", c.name);
                None
            }
        })
        .map(|p| {
            let wakes = Wakes {
                notify: outbound::announced(),
                window: WINDOW,
            };
            let what: &'static str = outbound::intern(&format!("channel {}", p.name));
            tokio::spawn(runner::continuous(what, wakes, stop.clone(), move || {
                let p = p.clone();
                async move { p.run_once().await }
            }))
        })
        .collect()
}
