//! Wake-ups: a stored request wakes the worker, a committed feed event wakes feed long polls and an
//! export that may be due wakes a continuous exporter at once, instead of after a poll interval or a
//! cron minute (which stay, only as the fallback when a wake-up is lost).
//!
//! - In one process: a process-wide tokio [`Notify`] per [`Topic`], signalled after the commit
//!   ([`signal`]). Waiters create their `notified()` future *before* looking for work, so a signal
//!   that arrives while they look still wakes them (`notify_waiters` reaches every future created
//!   before it, polled or not).
//! - Across processes, on PostgreSQL: the writing transaction also sends `NOTIFY` on the topic's
//!   channel ([`in_tx`]); PostgreSQL delivers it only when (and if) that transaction commits, so a
//!   woken reader always finds the change. Every `serve` and `worker` process runs one [`Listener`]
//!   on a connection of its own (not from the pool: it stays in `LISTEN` for the process's life) and
//!   turns each notification into the local [`signal`].
//! - SQLite has no such channel. One process per database file is its documented setup, so the
//!   in-process signal reaches every reader there; what another process writes (a CLI command) is
//!   seen at the fallback poll.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::result::QueryResult;
use tokio::sync::{Notify, watch};

use super::{DbConnection, DbTarget, Manager};

/// What a wake-up announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topic {
    /// A request was stored (or queued again): a worker should claim.
    Requests,
    /// Feed events were committed: long polls should read.
    Feed,
    /// An export may be due (an order stored or changed while pending, an exported order
    /// cancelled, a product changed, an export resent): a continuous exporter should look.
    Exports,
}

impl Topic {
    /// Every topic.
    pub const ALL: [Topic; 3] = [Topic::Requests, Topic::Feed, Topic::Exports];

    /// The PostgreSQL channel it is sent on.
    pub fn channel(self) -> &'static str {
        match self {
            Topic::Requests => "wharf_requests",
            Topic::Feed => "wharf_feed",
            Topic::Exports => "wharf_exports",
        }
    }

    fn of_channel(channel: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.channel() == channel)
    }

    /// The process-wide notifier of this topic: wait on `notifier().notified()`, created before
    /// looking for work.
    pub fn notifier(self) -> &'static Notify {
        static NOTIFIERS: [OnceLock<Notify>; Topic::ALL.len()] =
            [const { OnceLock::new() }; Topic::ALL.len()];
        NOTIFIERS[self as usize].get_or_init(Notify::new)
    }
}

/// Wakes this process's waiters on `topic`; call after the commit.
pub fn signal(topic: Topic) {
    topic.notifier().notify_waiters();
}

/// Announces `topic` to other processes when the current transaction commits (PostgreSQL `NOTIFY`;
/// nothing on SQLite). Call inside the writing transaction, and [`signal`] after it commits.
/// Several notifications of one transaction reach listeners as one.
pub fn in_tx(conn: &mut DbConnection, topic: Topic) -> QueryResult<()> {
    match conn {
        // The simple query protocol: one round trip, no statement to prepare.
        DbConnection::Postgresql(c) => c.batch_execute(&notify_sql(topic)),
        DbConnection::Sqlite(_) => Ok(()),
    }
}

/// The PostgreSQL statement of [`in_tx`], for a caller that sends it with others. The payload
/// names this process, so its own listener skips what `signal` already did here.
pub fn notify_sql(topic: Topic) -> String {
    format!("NOTIFY {}, '{}'", topic.channel(), process_token())
}

/// A token naming this process in notification payloads (process id and start time, so that two
/// hosts' processes with the same id differ).
pub(crate) fn process_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("{}-{nanos}", std::process::id())
    })
}

/// How often the listener looks for notifications that arrived. diesel's `notifications_iter` only
/// reads what is already on the socket (it never blocks), so the listener polls it; a 2 ms poll
/// costs a few hundred non-blocking reads a second and adds at most 2 ms to a wake-up.
const LISTEN_POLL: Duration = Duration::from_millis(2);
/// How often an idle listener checks that its connection still answers (a peer that vanished
/// without closing the connection sends nothing).
const LISTEN_CHECK: Duration = Duration::from_secs(30);
/// First and longest pause before reconnecting a listener that lost its connection.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// The thread that turns PostgreSQL notifications into local wake-ups. Dropping it stops and joins
/// the thread: a process must not exit while the thread is inside libpq (its exit handlers then
/// crash the process), which is what happens when a runtime is dropped without a shutdown.
#[derive(Debug)]
pub struct Listener {
    thread: Option<std::thread::JoinHandle<()>>,
    dropped: Arc<AtomicBool>,
}

/// When the listener stops: at the shutdown, or once its [`Listener`] is gone.
struct Stop {
    shutdown: watch::Receiver<bool>,
    dropped: Arc<AtomicBool>,
}

impl Stop {
    fn now(&self) -> bool {
        *self.shutdown.borrow() || self.dropped.load(Ordering::Relaxed)
    }
}

impl Listener {
    /// Starts listening when `database_url` is PostgreSQL (`None` on SQLite, which has no channel
    /// between processes). Stops when `stop` turns true. Only long-running processes (`serve`,
    /// `worker`) start one, so short commands are never kept alive by it.
    pub fn spawn(database_url: &str, stop: watch::Receiver<bool>) -> Option<Listener> {
        let DbTarget::Postgres(url) = DbTarget::parse(database_url).ok()? else {
            return None;
        };
        let manager = Manager::new(DbTarget::Postgres(url));
        let dropped = Arc::new(AtomicBool::new(false));
        let stop = Stop {
            shutdown: stop,
            dropped: dropped.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("wharf-listen".into())
            .spawn(move || listen(&manager, &stop))
            .map_err(|e| tracing::warn!(error = %e, "cannot start the wake-up listener; other processes' changes are seen at the poll interval"))
            .ok()?;
        Some(Listener {
            thread: Some(thread),
            dropped,
        })
    }

    /// Waits (on a blocking thread) for the listener to stop, after `stop` was triggered: within
    /// [`LISTEN_POLL`], or a connection attempt's timeout while the database is unreachable.
    pub async fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Listens until `stop`; reconnects with backoff, logging a lost connection once and each connection.
fn listen(manager: &Manager, stop: &Stop) {
    let mut pause = RECONNECT_FIRST;
    let mut failing = false;
    while !stop.now() {
        let error = match connect(manager) {
            Ok(mut conn) => {
                tracing::info!(
                    again = failing,
                    "listening for wake-ups from other processes"
                );
                failing = false;
                pause = RECONNECT_FIRST;
                // Whatever was committed while nobody listened is found by looking once.
                Topic::ALL.into_iter().for_each(signal);
                match receive(&mut conn, stop) {
                    Ok(()) => return,
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        if !failing {
            tracing::warn!(error = %error, "the wake-up listener lost its database connection; \
                retrying, and until then other processes' changes are seen at the poll interval");
            failing = true;
        }
        let until = Instant::now() + pause;
        while Instant::now() < until && !stop.now() {
            std::thread::sleep(Duration::from_millis(50));
        }
        pause = (pause * 2).min(RECONNECT_MAX);
    }
}

/// A listening connection.
fn connect(manager: &Manager) -> Result<PgConnection, String> {
    match r2d2::ManageConnection::connect(manager) {
        Ok(DbConnection::Postgresql(mut c)) => {
            let channels: String = Topic::ALL
                .iter()
                .map(|t| format!("LISTEN {};", t.channel()))
                .collect();
            c.batch_execute(&channels).map_err(|e| e.to_string())?;
            Ok(c)
        }
        Ok(DbConnection::Sqlite(_)) => Err("not a PostgreSQL connection".into()),
        Err(e) => Err(super::one_line(&e.to_string())),
    }
}

/// Signals each notification from another process until `stop` (`Ok`) or a connection error.
fn receive(conn: &mut PgConnection, stop: &Stop) -> Result<(), String> {
    let mut checked = Instant::now();
    while !stop.now() {
        let mut woken = [false; Topic::ALL.len()];
        for n in conn.notifications_iter() {
            let n = n.map_err(|e| e.to_string())?;
            if let Some(topic) = Topic::of_channel(&n.channel)
                && n.payload != process_token()
            {
                woken[topic as usize] = true;
            }
        }
        Topic::ALL
            .into_iter()
            .filter(|t| woken[*t as usize])
            .for_each(signal);
        if checked.elapsed() >= LISTEN_CHECK {
            conn.batch_execute("SELECT 1").map_err(|e| e.to_string())?;
            checked = Instant::now();
        }
        std::thread::sleep(LISTEN_POLL);
    }
    Ok(())
}
