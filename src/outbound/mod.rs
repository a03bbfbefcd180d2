//! The outbound task queue: everything wharf sends out (today: to the warehouse) is a task of one
//! table, `outbound_tasks` — a channel, an action, a subject (an order number, a SKU), a state, its
//! attempts, when it is due again, its lease, its last error and who handled it by hand.
//!
//! - **Enqueue** ([`enqueue`]) in the same transaction as the change that causes the task, so it is
//!   never lost and never made twice: at most one open task (pending, failed or lost) per channel,
//!   action and subject (a partial unique index; an enqueue that finds one adds nothing).
//! - **Claim** ([`claim`]) on the one lease protocol ([`crate::db::lease`]): the channel picks the
//!   due ids (its own rules, with [`due!`](crate::outbound_due)), the queue marks them leased.
//! - **Settle** ([`settle_done`], [`settle`], [`not_answered`], [`release`]): every write is
//!   guarded by the lease owner, so a sender whose lease ran out leaves the task to whoever holds it
//!   now. A task being sent keeps its state; its lease says it is in flight.
//! - **Support** ([`act`]): resend (back to pending, attempts reset) or dismiss (handled by hand),
//!   compare-and-set on the state support saw, with an audit row.
//! - A breaker per channel ([`breaker`]) and one exchange log ([`exchange`]).
//!
//! This module knows no domain: channels (`crate::channels`) give it their kinds and subjects.

use chrono::NaiveDateTime;
use diesel::result::QueryResult;

use crate::db::lease::Backoff;
use crate::db::wake::Topic;
use crate::db::{self, DbConnection};

pub mod breaker;
pub mod exchange;
pub mod runner;
mod store;

pub use store::{
    FINISHED, Task, TaskAction, TaskRow, act, claim, count_finished_before, delete_finished,
    enqueue, finished_before, first_in_state, last_action, not_answered, open_among, release,
    settle, settle_done, skip, skip_on_every_channel, start_over, task_of, tasks_in_state,
};
pub use store::{
    LostFilter, act_on_lost, actions_on, lost_count, lost_page, lost_since, lost_subjects_of,
    next_due, oldest_due, open_counts, tasks_of_subject,
};
pub use store::{
    Ticket, await_ticket, enqueue_at, postpone, set_sequence, settle_dead, subject_tasks_except,
};
// Read-only, for operating the order channels (`wharf channels`, the console, alerts, gauges).
pub use store::{
    ChannelTask, ChannelTaskFilter, channel_in_state, channel_state_counts, channel_task,
    channel_tasks, channel_tasks_of_subject, count_channel_tasks, oldest_pending,
};

crate::text_enum! {
    /// Where a task stands. A task being sent keeps its state and holds a lease.
    pub enum TaskState: "outbound task state" {
        /// To be sent (again, after an exchange that got no answer, when `last_error` is set).
        Pending = "pending",
        /// Refused; sent again after a backoff.
        Failed = "failed",
        /// Refused `max_attempts` times; waits for support.
        Lost = "lost",
        /// Sent and accepted.
        Done = "done",
        /// Handled by hand by support; not sent.
        Dismissed = "dismissed",
        /// Not needed any more (an order shipped before it was exported); not sent.
        Skipped = "skipped",
        /// Sent and taken on by the other side, which answered with a ticket: polled until the
        /// ticket settles (done, or failed and sent again).
        Awaiting = "awaiting",
        /// Refused for good by the other side (it said the push can never succeed); waits for
        /// support like a lost task.
        Dead = "dead",
    }
}

impl TaskState {
    /// The states a claim takes tasks in.
    pub const DUE: [TaskState; 2] = [TaskState::Pending, TaskState::Failed];
    /// Open: still to be sent, or waiting for support (at most one per channel, action, subject;
    /// the partial unique index `outbound_tasks_open` lists the same words).
    pub const OPEN: [TaskState; 4] = [
        TaskState::Pending,
        TaskState::Failed,
        TaskState::Lost,
        TaskState::Dead,
    ];
    /// Waiting for support: resend or dismiss.
    pub const STUCK: [TaskState; 2] = [TaskState::Lost, TaskState::Dead];

    /// The words of `states`, for SQL filters.
    pub fn words<const N: usize>(states: [TaskState; N]) -> [&'static str; N] {
        states.map(TaskState::as_str)
    }
}

crate::text_enum! {
    /// What support does with a task.
    pub enum SupportAction: "outbound support action" {
        /// Back to pending with the attempts reset.
        Resend = "resend",
        /// Handled by hand: never sent.
        Dismiss = "dismiss",
    }
}

/// What a continuous exporter waits on: woken by [`wake_exporters`] in this process and, on
/// PostgreSQL, by what [`announce`] sent from other processes (see [`db::wake`]).
pub fn announced() -> &'static tokio::sync::Notify {
    Topic::Exports.notifier()
}

/// Tells exporters in other processes, when the current transaction commits, that an export may be
/// due (PostgreSQL `NOTIFY wharf_exports`; nothing on SQLite). Call inside the transaction that
/// makes it due, and [`wake_exporters`] after it commits.
pub fn announce(conn: &mut DbConnection) -> QueryResult<()> {
    db::wake::in_tx(conn, Topic::Exports)
}

/// Wakes this process's continuous exporters; call after committing a transaction that may have
/// made an export due.
pub fn wake_exporters() {
    db::wake::signal(Topic::Exports);
}

/// The `&'static str` of a configured channel's name, for its [`TaskKind`]s: each distinct name
/// is kept once for the life of the process (a handful of names, read from the settings).
pub fn intern(name: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match names.get(name) {
        Some(n) => n,
        None => {
            let n: &'static str = Box::leak(name.to_owned().into_boxed_str());
            names.insert(n);
            n
        }
    }
}

/// The warehouse channel (orders, products, cancellations), the first channel on the queue.
pub const WAREHOUSE: &str = "warehouse";

/// A kind of task: a channel and one of its actions (`warehouse`, `order.insert`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TaskKind {
    /// The channel (`warehouse`).
    pub channel: &'static str,
    /// The action on that channel (`order.insert`).
    pub action: &'static str,
}

/// How a task the other side answered is settled (see [`settle`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Refused: counted, sent again at `run_after`.
    Failed {
        /// Attempts counted so far.
        attempts: i32,
        /// When it is due again.
        run_after: NaiveDateTime,
        /// Why it was refused.
        error: String,
    },
    /// Refused the last time it may be: waits for support.
    Lost {
        /// Attempts counted.
        attempts: i32,
        /// Why it was refused.
        error: String,
    },
    /// Accepted, but the subject changed while it was being sent: due again from `run_after`,
    /// with no attempt counted.
    Again {
        /// When it is due again.
        run_after: NaiveDateTime,
    },
}

impl Outcome {
    /// A refusal after `attempts` earlier ones: one more attempt counted; lost when that reaches
    /// `max_attempts`, else due again after `backoff`.
    pub fn refused(
        attempts: i32,
        max_attempts: i32,
        backoff: Backoff,
        error: String,
        now: NaiveDateTime,
    ) -> Outcome {
        let attempts = attempts + 1;
        if attempts >= max_attempts {
            Outcome::Lost { attempts, error }
        } else {
            Outcome::Failed {
                attempts,
                run_after: now + backoff.after(attempts),
                error,
            }
        }
    }

    /// The attempts it counts, and when it is due again (`None`: lost, or due now).
    pub fn attempts_and_due(&self) -> (i32, Option<NaiveDateTime>) {
        match self {
            Outcome::Failed {
                attempts,
                run_after,
                ..
            } => (*attempts, Some(*run_after)),
            Outcome::Lost { attempts, .. } => (*attempts, None),
            Outcome::Again { run_after } => (0, Some(*run_after)),
        }
    }
}

/// The filter of tasks of `kind` a claim may take at `now`: in a due state, due by `due_at`, and
/// not leased (or their lease ran out). An expression over `outbound_tasks`.
#[macro_export]
macro_rules! outbound_due {
    ($kind:expr, $due_at:expr, $now:expr) => {{
        use $crate::db::schema::outbound_tasks as t;
        let kind: $crate::outbound::TaskKind = $kind;
        t::channel
            .eq(kind.channel)
            .and(t::action.eq(kind.action))
            .and(t::state.eq_any($crate::outbound::TaskState::words(
                $crate::outbound::TaskState::DUE,
            )))
            .and(t::run_after.is_null().or(t::run_after.le($due_at)))
            .and(
                t::lease_expires_at
                    .is_null()
                    .or(t::lease_expires_at.lt($now)),
            )
    }};
}
