//! The SQL of the outbound queue. Every write that ends a lease is guarded by the lease owner; the
//! callers count the rows written to learn whether they still held the task.

use std::collections::HashSet;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{Outcome, SupportAction, TaskKind, TaskState};
use crate::db::lease::{self, Lease};
use crate::db::schema::{outbound_task_actions as a, outbound_tasks as t};
use crate::db::{DbConnection, text_enum};

/// A claimed task.
#[derive(Debug, Clone)]
pub struct Task {
    /// Id.
    pub id: i64,
    /// What it is about (an order number, a SKU).
    pub subject: String,
    /// Its state when claimed.
    pub state: TaskState,
    /// Attempts counted so far.
    pub attempts: i32,
    /// What a ticketing channel answered, and the push number it carries.
    pub ticket: Ticket,
}

/// What a push that the other side answered with a ticket keeps on its task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ticket {
    /// The batch id of the push.
    pub batch_id: Option<String>,
    /// The ticket id, once read.
    pub ticket_id: Option<String>,
    /// The order's push number this task carries (kept across retries).
    pub sequence: Option<i64>,
    /// When the push was taken on (the ticket's deadline runs from it).
    pub sent_at: Option<NaiveDateTime>,
}

/// Adds a pending task of `kind` for each subject that has no open task of that kind (the
/// partial unique index turns the others into no-ops). Returns how many were added.
pub fn enqueue(
    conn: &mut DbConnection,
    kind: TaskKind,
    subjects: &[&str],
    now: NaiveDateTime,
) -> QueryResult<usize> {
    if subjects.is_empty() {
        return Ok(0);
    }
    let rows: Vec<_> = subjects
        .iter()
        .map(|s| {
            (
                t::channel.eq(kind.channel),
                t::action.eq(kind.action),
                t::subject.eq(*s),
                t::state.eq(TaskState::Pending.as_str()),
                t::created_at.eq(now),
                t::updated_at.eq(now),
            )
        })
        .collect();
    crate::with_backend!(&mut *conn, |c| diesel::insert_into(t::table)
        .values(&rows)
        .on_conflict_do_nothing()
        .execute(c))
}

/// Adds a pending task of `kind` for `subject`, due at `run_after`, unless it has an open one.
/// Returns whether it was added.
pub fn enqueue_at(
    conn: &mut DbConnection,
    kind: TaskKind,
    subject: &str,
    run_after: NaiveDateTime,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let n = crate::with_backend!(&mut *conn, |c| diesel::insert_into(t::table)
        .values((
            t::channel.eq(kind.channel),
            t::action.eq(kind.action),
            t::subject.eq(subject),
            t::state.eq(TaskState::Pending.as_str()),
            t::run_after.eq(Some(run_after)),
            t::created_at.eq(now),
            t::updated_at.eq(now),
        ))
        .on_conflict_do_nothing()
        .execute(c))?;
    Ok(n == 1)
}

/// Moves the pending task of `kind` for `subject` (one no sender holds) to `run_after`: a debounce,
/// the wait starting again. Returns whether there was one.
pub fn postpone(
    conn: &mut DbConnection,
    kind: TaskKind,
    subject: &str,
    run_after: NaiveDateTime,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let n = diesel::update(
        t::table
            .filter(t::channel.eq(kind.channel))
            .filter(t::action.eq(kind.action))
            .filter(t::subject.eq(subject))
            .filter(t::state.eq(TaskState::Pending.as_str()))
            .filter(
                t::lease_expires_at
                    .is_null()
                    .or(t::lease_expires_at.lt(now)),
            ),
    )
    .set((t::run_after.eq(Some(run_after)), t::updated_at.eq(now)))
    .execute(conn)?;
    Ok(n > 0)
}

/// Records the push number task `id` carries.
pub fn set_sequence(conn: &mut DbConnection, id: i64, sequence: i64) -> QueryResult<()> {
    diesel::update(t::table.find(id))
        .set(t::sequence.eq(Some(sequence)))
        .execute(conn)?;
    Ok(())
}

/// A push task `owner` holds was taken on and answered with `batch_id` (and maybe a ticket id):
/// `awaiting`, its ticket read from `poll_at`. `sent_at` is kept from the first such answer when
/// the task already had one (a poll that found the ticket still running).
#[allow(clippy::too_many_arguments)]
pub fn await_ticket(
    conn: &mut DbConnection,
    id: i64,
    owner: &str,
    batch_id: &str,
    ticket_id: Option<&str>,
    sent_at: NaiveDateTime,
    poll_at: NaiveDateTime,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let n = diesel::update(t::table.find(id).filter(t::lease_owner.eq(owner)))
        .set((
            t::state.eq(TaskState::Awaiting.as_str()),
            t::batch_id.eq(Some(batch_id)),
            t::ticket_id.eq(ticket_id),
            t::sent_at.eq(Some(sent_at)),
            t::run_after.eq(Some(poll_at)),
            t::lease_owner.eq(None::<String>),
            t::lease_expires_at.eq(None::<NaiveDateTime>),
            t::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Task `id`, held by `owner`, was refused for good: `dead` with `error`, waiting for support.
pub fn settle_dead(
    conn: &mut DbConnection,
    id: i64,
    owner: &str,
    error: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let n = diesel::update(t::table.find(id).filter(t::lease_owner.eq(owner)))
        .set((
            t::state.eq(TaskState::Dead.as_str()),
            t::run_after.eq(None::<NaiveDateTime>),
            t::last_error.eq(Some(error)),
            t::lease_owner.eq(None::<String>),
            t::lease_expires_at.eq(None::<NaiveDateTime>),
            t::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Starts the open task of `kind` for `subject` over when it is waiting after refusals (`failed`
/// or `lost`) and no sender holds it: pending, due now, attempts back to 0. For a subject that
/// changed, so what is sent is new (a sender holding it finds the change when it settles).
pub fn start_over(
    conn: &mut DbConnection,
    kind: TaskKind,
    subject: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        t::table
            .filter(t::channel.eq(kind.channel))
            .filter(t::action.eq(kind.action))
            .filter(t::subject.eq(subject))
            .filter(t::state.eq_any([TaskState::Failed.as_str(), TaskState::Lost.as_str()]))
            .filter(
                t::lease_expires_at
                    .is_null()
                    .or(t::lease_expires_at.lt(now)),
            ),
    )
    .set((
        t::state.eq(TaskState::Pending.as_str()),
        t::attempts.eq(0),
        t::run_after.eq(None::<NaiveDateTime>),
        t::lease_owner.eq(None::<String>),
        t::lease_expires_at.eq(None::<NaiveDateTime>),
        t::updated_at.eq(now),
    ))
    .execute(conn)
}

/// Claims the tasks `select` picks (with [`outbound_due!`](crate::outbound_due) and
/// [`load_skip_locked!`](crate::load_skip_locked)) under `lease`, in one writing transaction.
/// Returns them by id.
pub fn claim(
    conn: &mut DbConnection,
    lease: &Lease,
    select: impl FnOnce(&mut DbConnection) -> QueryResult<Vec<i64>>,
) -> QueryResult<Vec<Task>> {
    lease::claim(conn, select, |conn, ids| {
        diesel::update(t::table.filter(t::id.eq_any(ids)))
            .set((
                t::lease_owner.eq(&lease.owner),
                t::lease_expires_at.eq(lease.until),
            ))
            .execute(conn)?;
        type Row = (
            (i64, String, String, i32),
            (
                Option<String>,
                Option<String>,
                Option<i64>,
                Option<NaiveDateTime>,
            ),
        );
        let rows: Vec<Row> = t::table
            .filter(t::id.eq_any(ids))
            .order(t::id)
            .select((
                (t::id, t::subject, t::state, t::attempts),
                (t::batch_id, t::ticket_id, t::sequence, t::sent_at),
            ))
            .load(conn)?;
        rows.into_iter()
            .map(|((id, subject, state, attempts), (b, tk, seq, sent))| {
                Ok(Task {
                    id,
                    subject,
                    state: text_enum::read(&state)?,
                    attempts,
                    ticket: Ticket {
                        batch_id: b,
                        ticket_id: tk,
                        sequence: seq,
                        sent_at: sent,
                    },
                })
            })
            .collect()
    })
}

/// Marks the tasks `ids` still held by `owner` done. Returns the subjects of those written.
pub fn settle_done(
    conn: &mut DbConnection,
    ids: &[i64],
    owner: &str,
    now: NaiveDateTime,
) -> QueryResult<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let held = t::table
        .filter(t::id.eq_any(ids))
        .filter(t::lease_owner.eq(owner));
    crate::with_backend!(&mut *conn, |c| diesel::update(held)
        .set((
            t::state.eq(TaskState::Done.as_str()),
            t::run_after.eq(None::<NaiveDateTime>),
            t::last_error.eq(None::<String>),
            t::done_at.eq(Some(now)),
            t::lease_owner.eq(None::<String>),
            t::lease_expires_at.eq(None::<NaiveDateTime>),
            t::updated_at.eq(now),
        ))
        .returning(t::subject)
        .get_results(c))
}

/// Settles one task still held by `owner` (and, with `unless`, not in that state) as `outcome`
/// says. Returns whether it was written.
pub fn settle(
    conn: &mut DbConnection,
    id: i64,
    owner: &str,
    outcome: &Outcome,
    unless: Option<TaskState>,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let (state, attempts, run_after, error) = match outcome {
        Outcome::Failed {
            attempts,
            run_after,
            error,
        } => (TaskState::Failed, *attempts, Some(*run_after), Some(error)),
        Outcome::Lost { attempts, error } => (TaskState::Lost, *attempts, None, Some(error)),
        Outcome::Again { run_after } => (TaskState::Pending, 0, Some(*run_after), None),
    };
    let unless = unless.map_or("", TaskState::as_str);
    let n = diesel::update(
        t::table
            .find(id)
            .filter(t::lease_owner.eq(owner))
            .filter(t::state.ne(unless)),
    )
    .set((
        t::state.eq(state.as_str()),
        t::attempts.eq(attempts),
        t::run_after.eq(run_after),
        t::last_error.eq(error),
        t::lease_owner.eq(None::<String>),
        t::lease_expires_at.eq(None::<NaiveDateTime>),
        t::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Tasks of an exchange that got no usable answer: due again at `run_after` with `error`, their
/// state and attempts as they were (the other side is at fault, not the task). Returns how many
/// `owner` still held.
pub fn not_answered(
    conn: &mut DbConnection,
    ids: &[i64],
    owner: &str,
    run_after: NaiveDateTime,
    error: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        t::table
            .filter(t::id.eq_any(ids))
            .filter(t::lease_owner.eq(owner)),
    )
    .set((
        t::run_after.eq(Some(run_after)),
        t::last_error.eq(Some(error)),
        t::lease_owner.eq(None::<String>),
        t::lease_expires_at.eq(None::<NaiveDateTime>),
        t::updated_at.eq(now),
    ))
    .execute(conn)
}

/// Lets go of tasks `owner` holds (only those in `state`, when given), leaving them as they are.
/// Returns how many.
pub fn release(
    conn: &mut DbConnection,
    ids: &[i64],
    owner: &str,
    state: Option<TaskState>,
) -> QueryResult<usize> {
    let held = t::table
        .filter(t::id.eq_any(ids))
        .filter(t::lease_owner.eq(owner));
    let free = (
        t::lease_owner.eq(None::<String>),
        t::lease_expires_at.eq(None::<NaiveDateTime>),
    );
    match state {
        Some(s) => diesel::update(held.filter(t::state.eq(s.as_str())))
            .set(free)
            .execute(conn),
        None => diesel::update(held).set(free).execute(conn),
    }
}

/// Marks the open task of `kind` for `subject` not needed any more (`skipped`, with `note`). A
/// sender holding it keeps its lease and settles it. Returns whether there was one.
pub fn skip(
    conn: &mut DbConnection,
    kind: TaskKind,
    subject: &str,
    note: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let n = diesel::update(
        t::table
            .filter(t::channel.eq(kind.channel))
            .filter(t::action.eq(kind.action))
            .filter(t::subject.eq(subject))
            .filter(t::state.eq_any(TaskState::words(TaskState::OPEN))),
    )
    .set((
        t::state.eq(TaskState::Skipped.as_str()),
        t::note.eq(note),
        t::run_after.eq(None::<NaiveDateTime>),
        t::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(n > 0)
}

/// Like [`skip`], for the open tasks of `action` on `subject` on every channel (an order's
/// `order.insert` to the warehouse and to each file channel). Returns how many it skipped.
pub fn skip_on_every_channel(
    conn: &mut DbConnection,
    action: &str,
    subject: &str,
    note: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        t::table
            .filter(t::action.eq(action))
            .filter(t::subject.eq(subject))
            .filter(t::state.eq_any(TaskState::words(TaskState::OPEN))),
    )
    .set((
        t::state.eq(TaskState::Skipped.as_str()),
        t::note.eq(note),
        t::run_after.eq(None::<NaiveDateTime>),
        t::updated_at.eq(now),
    ))
    .execute(conn)
}

/// A task as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = t)]
pub struct TaskRow {
    /// Id.
    pub id: i64,
    /// What it is about.
    pub subject: String,
    /// Where it stands.
    #[diesel(deserialize_as = String)]
    pub state: TaskState,
    /// Attempts counted.
    pub attempts: i32,
    /// When it is due again.
    pub run_after: Option<NaiveDateTime>,
    /// Who holds it, if anyone.
    pub lease_owner: Option<String>,
    /// Until when.
    pub lease_expires_at: Option<NaiveDateTime>,
    /// Why the last try did not go through.
    pub last_error: Option<String>,
    /// When it was done.
    pub done_at: Option<NaiveDateTime>,
    /// Support's reason, or why it was skipped.
    pub note: Option<String>,
    /// When it last changed.
    pub updated_at: NaiveDateTime,
    /// The channel and action.
    pub channel: String,
    /// The action on the channel.
    pub action: String,
    /// The batch id a ticketing channel answered with.
    pub batch_id: Option<String>,
    /// Its ticket id, once read.
    pub ticket_id: Option<String>,
    /// The push number it carries.
    pub sequence: Option<i64>,
    /// When it was made.
    pub created_at: NaiveDateTime,
}

impl TaskRow {
    /// Whether a sender holds it at `now`.
    pub fn leased_at(&self, now: NaiveDateTime) -> bool {
        self.lease_owner.is_some() && self.lease_expires_at.is_some_and(|t| t > now)
    }
}

/// The latest task of `kind` for `subject`.
pub fn task_of(
    conn: &mut DbConnection,
    kind: TaskKind,
    subject: &str,
) -> QueryResult<Option<TaskRow>> {
    t::table
        .filter(t::channel.eq(kind.channel))
        .filter(t::action.eq(kind.action))
        .filter(t::subject.eq(subject))
        .order(t::id.desc())
        .select(TaskRow::as_select())
        .first(conn)
        .optional()
}

/// The tasks of `kind` in `state`, oldest first.
pub fn tasks_in_state(
    conn: &mut DbConnection,
    kind: TaskKind,
    state: TaskState,
) -> QueryResult<Vec<TaskRow>> {
    t::table
        .filter(t::channel.eq(kind.channel))
        .filter(t::action.eq(kind.action))
        .filter(t::state.eq(state.as_str()))
        .order(t::id)
        .select(TaskRow::as_select())
        .load(conn)
}

/// How many tasks of `kind` are in `state`, and the oldest `limit` of them.
pub fn first_in_state(
    conn: &mut DbConnection,
    kind: TaskKind,
    state: TaskState,
    limit: i64,
) -> QueryResult<(i64, Vec<TaskRow>)> {
    let of_kind = t::table
        .filter(t::channel.eq(kind.channel))
        .filter(t::action.eq(kind.action))
        .filter(t::state.eq(state.as_str()));
    let count = of_kind.count().get_result(conn)?;
    let first = of_kind
        .order(t::id)
        .limit(limit)
        .select(TaskRow::as_select())
        .load(conn)?;
    Ok((count, first))
}

/// Which of `subjects` have an open task of `kind`.
pub fn open_among(
    conn: &mut DbConnection,
    kind: TaskKind,
    subjects: &[&str],
) -> QueryResult<HashSet<String>> {
    let open: Vec<String> = t::table
        .filter(t::channel.eq(kind.channel))
        .filter(t::action.eq(kind.action))
        .filter(t::subject.eq_any(subjects))
        .filter(t::state.eq_any(TaskState::words(TaskState::OPEN)))
        .select(t::subject)
        .load(conn)?;
    Ok(open.into_iter().collect())
}

/// Resends or dismisses task `id` if it is still in the state `seen` and not being sent, recording
/// who did it and why. Returns whether it changed.
#[allow(clippy::too_many_arguments)]
pub fn act(
    conn: &mut DbConnection,
    id: i64,
    seen: TaskState,
    action: SupportAction,
    actor: &str,
    reason: Option<&str>,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let state = match action {
        SupportAction::Resend => TaskState::Pending,
        SupportAction::Dismiss => TaskState::Dismissed,
    };
    let n = diesel::update(
        t::table.find(id).filter(t::state.eq(seen.as_str())).filter(
            t::lease_expires_at
                .is_null()
                .or(t::lease_expires_at.lt(now)),
        ),
    )
    .set((
        t::state.eq(state.as_str()),
        t::attempts.eq(0),
        t::run_after.eq(None::<NaiveDateTime>),
        t::handled_by.eq(actor),
        t::handled_at.eq(now),
        t::note.eq(reason),
        t::updated_at.eq(now),
        // A sender whose lease ran out must not settle over support's decision when it comes back.
        t::lease_owner.eq(None::<String>),
        t::lease_expires_at.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    if n != 1 {
        return Ok(false);
    }
    diesel::insert_into(a::table)
        .values((
            a::task_id.eq(id),
            a::action.eq(action.as_str()),
            a::actor.eq(actor),
            a::reason.eq(reason),
            a::at.eq(now),
        ))
        .execute(conn)?;
    Ok(true)
}

/// A support action recorded on a task.
#[derive(Debug, Clone)]
pub struct TaskAction {
    /// Resend or dismiss.
    pub action: SupportAction,
    /// Who did it.
    pub actor: String,
    /// Why, when given.
    pub reason: Option<String>,
    /// When.
    pub at: NaiveDateTime,
}

/// Support's last action on task `id`.
pub fn last_action(conn: &mut DbConnection, id: i64) -> QueryResult<Option<TaskAction>> {
    let row: Option<(String, String, Option<String>, NaiveDateTime)> = a::table
        .filter(a::task_id.eq(id))
        .order(a::id.desc())
        .select((a::action, a::actor, a::reason, a::at))
        .first(conn)
        .optional()?;
    row.map(|(action, actor, reason, at)| {
        Ok(TaskAction {
            action: text_enum::read(&action)?,
            actor,
            reason,
            at,
        })
    })
    .transpose()
}

/// Open tasks (pending, failed, lost) by channel, action and state, for `/metrics` (one count on
/// the `outbound_tasks_due` index; finished tasks are not counted).
pub fn open_counts(conn: &mut DbConnection) -> QueryResult<Vec<(String, String, TaskState, i64)>> {
    use diesel::dsl::count_star;
    let rows: Vec<(String, String, String, i64)> = t::table
        .filter(t::state.eq_any(TaskState::words(TaskState::OPEN)))
        .group_by((t::channel, t::action, t::state))
        .select((t::channel, t::action, t::state, count_star()))
        .load(conn)?;
    rows.into_iter()
        .map(|(channel, action, state, n)| Ok((channel, action, text_enum::read(&state)?, n)))
        .collect()
}

/// Per channel and action, since when the oldest due task (pending or failed, its retry time
/// passed) has been due at `now`: its retry time, or when it was made if it never waited.
pub fn oldest_due(
    conn: &mut DbConnection,
    now: NaiveDateTime,
) -> QueryResult<Vec<(String, String, NaiveDateTime)>> {
    use diesel::dsl::min;
    let due = t::state.eq_any(TaskState::words(TaskState::DUE));
    let waited: Vec<(String, String, Option<NaiveDateTime>)> = t::table
        .filter(due.clone().and(t::run_after.le(now)))
        .group_by((t::channel, t::action))
        .select((t::channel, t::action, min(t::run_after)))
        .load(conn)?;
    let fresh: Vec<(String, String, Option<NaiveDateTime>)> = t::table
        .filter(due.and(t::run_after.is_null()))
        .group_by((t::channel, t::action))
        .select((t::channel, t::action, min(t::created_at)))
        .load(conn)?;
    let mut oldest: std::collections::BTreeMap<(String, String), NaiveDateTime> =
        std::collections::BTreeMap::new();
    for (channel, action, since) in waited.into_iter().chain(fresh) {
        if let Some(since) = since {
            oldest
                .entry((channel, action))
                .and_modify(|t| *t = (*t).min(since))
                .or_insert(since);
        }
    }
    Ok(oldest.into_iter().map(|((c, a), t)| (c, a, t)).collect())
}

/// When the next task of `kinds` that is waiting falls due after `now`: the earliest retry time
/// of a pending or failed task, or lease expiry of one a sender holds (a sender that died leaves
/// it then). `None` when none waits. Tasks due already are not counted: a run takes them.
pub fn next_due(
    conn: &mut DbConnection,
    kinds: &[TaskKind],
    now: NaiveDateTime,
) -> QueryResult<Option<NaiveDateTime>> {
    use diesel::dsl::min;
    let mut next: Option<NaiveDateTime> = None;
    for kind in kinds {
        let waiting = t::table
            .filter(t::channel.eq(kind.channel))
            .filter(t::action.eq(kind.action))
            .filter(t::state.eq_any(TaskState::words(TaskState::DUE)));
        let retry: Option<NaiveDateTime> = waiting
            .clone()
            .filter(t::run_after.gt(now))
            .select(min(t::run_after))
            .first(conn)?;
        let lease: Option<NaiveDateTime> = waiting
            .filter(t::lease_expires_at.gt(now))
            .select(min(t::lease_expires_at))
            .first(conn)?;
        next = [next, retry, lease].into_iter().flatten().min();
    }
    Ok(next)
}

/// The states retention may delete a task in: finished, nothing left to send or decide.
pub const FINISHED: [TaskState; 3] = [TaskState::Done, TaskState::Dismissed, TaskState::Skipped];

diesel::alias!(t as newer: NewerTask);

/// The tasks [`finished_before`] selects, as a query over `outbound_tasks` (a macro: the query's
/// type is diesel's to spell).
macro_rules! finished_query {
    ($cutoff:expr, $keep_latest:expr) => {{
        let superseded = diesel::dsl::exists(
            newer
                .filter(newer.field(t::channel).eq(t::channel))
                .filter(newer.field(t::action).eq(t::action))
                .filter(newer.field(t::subject).eq(t::subject))
                .filter(newer.field(t::id).gt(t::id)),
        );
        t::table
            .filter(t::state.eq_any(TaskState::words(FINISHED)))
            .filter(t::updated_at.lt($cutoff))
            .filter(t::channel.ne_all($keep_latest).or(superseded))
    }};
}

/// Up to `limit` finished tasks last changed before `cutoff` (retention). On the channels
/// `keep_latest` names, only those a newer task of the same action and subject supersedes: there
/// the latest task of a subject is its record, kept whatever its age (the warehouse's: the order
/// view reads an order's export and cancellation, and the support action on them, from it;
/// without it an exported order's cancellation would read as still pending).
pub fn finished_before(
    conn: &mut DbConnection,
    cutoff: NaiveDateTime,
    keep_latest: &[&str],
    limit: i64,
) -> QueryResult<Vec<i64>> {
    crate::load_skip_locked!(
        conn,
        // No ORDER BY: the states are several, so an order would sort every old finished task
        // each batch; the age index is walked in its own order and the limit stops it.
        finished_query!(cutoff, keep_latest)
            .limit(limit)
            .select(t::id)
    )
}

/// How many tasks [`finished_before`] would select without a limit.
pub fn count_finished_before(
    conn: &mut DbConnection,
    cutoff: NaiveDateTime,
    keep_latest: &[&str],
) -> QueryResult<i64> {
    finished_query!(cutoff, keep_latest)
        .select(diesel::dsl::count_star())
        .get_result(conn)
}

/// Deletes those of `ids` still finished and unchanged since before `cutoff`, their support
/// actions with them (the foreign key cascades). Returns how many.
pub fn delete_finished(
    conn: &mut DbConnection,
    ids: &[i64],
    cutoff: NaiveDateTime,
) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::delete(
        t::table
            .filter(t::id.eq_any(ids))
            .filter(t::state.eq_any(TaskState::words(FINISHED)))
            .filter(t::updated_at.lt(cutoff)),
    )
    .execute(conn)
}

type Db = <DbConnection as diesel::Connection>::Backend;

diesel::define_sql_function! {
    /// SQL `lower`, the same on both backends for the filters' text.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// What a list of lost tasks is narrowed to (the console's lost orders and products).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LostFilter {
    /// The subject (order number, SKU) starts with this.
    pub subject: Option<String>,
    /// The last error contains this (any case).
    pub error: Option<String>,
}

/// `text` as a LIKE pattern that matches it literally (`\` escapes).
fn like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The lost tasks of `kind` that `f` keeps, as a boxed query (bounded by the `outbound_tasks_due`
/// index: channel, action, state, id).
fn lost_query<'a>(kind: TaskKind, f: &LostFilter) -> t::BoxedQuery<'a, Db> {
    let mut q = t::table
        .filter(t::channel.eq(kind.channel))
        .filter(t::action.eq(kind.action))
        .filter(t::state.eq(TaskState::Lost.as_str()))
        .into_boxed();
    if let Some(s) = &f.subject {
        q = q.filter(
            t::subject
                .like(format!("{}%", like_literal(s)))
                .escape('\\'),
        );
    }
    if let Some(e) = &f.error {
        let pattern = format!("%{}%", like_literal(&e.to_lowercase()));
        q = q.filter(
            lower(t::last_error.assume_not_null())
                .like(pattern)
                .escape('\\'),
        );
    }
    q
}

/// A page of the lost tasks of `kind` that `f` keeps, oldest first, after task id `after`
/// (keyset pagination).
pub fn lost_page(
    conn: &mut DbConnection,
    kind: TaskKind,
    f: &LostFilter,
    after: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<TaskRow>> {
    let mut q = lost_query(kind, f);
    if let Some(after) = after {
        q = q.filter(t::id.gt(after));
    }
    q.order(t::id)
        .limit(limit)
        .select(TaskRow::as_select())
        .load(conn)
}

/// How many lost tasks of `kind` `f` keeps (the lost are few: the count walks the
/// `outbound_tasks_due` index over them only).
pub fn lost_count(conn: &mut DbConnection, kind: TaskKind, f: &LostFilter) -> QueryResult<i64> {
    lost_query(kind, f).count().get_result(conn)
}

/// How many lost tasks of `kind` changed after `since` (what a user has not seen yet).
pub fn lost_since(
    conn: &mut DbConnection,
    kind: TaskKind,
    since: Option<NaiveDateTime>,
) -> QueryResult<i64> {
    let mut q = lost_query(kind, &LostFilter::default());
    if let Some(since) = since {
        q = q.filter(t::updated_at.gt(since));
    }
    q.count().get_result(conn)
}

/// Every task of `subject` on `channel`, with its action, oldest first (an order's exports and
/// cancellations for its timeline).
pub fn tasks_of_subject(
    conn: &mut DbConnection,
    channel: &str,
    subject: &str,
) -> QueryResult<Vec<(String, TaskRow)>> {
    t::table
        .filter(t::subject.eq(subject))
        .filter(t::channel.eq(channel))
        .order(t::id)
        .select((t::action, TaskRow::as_select()))
        .load(conn)
}

/// Every task of `subject` on any channel but `except` (the warehouse's, the mailer's), oldest first:
/// an order's pushes to the channel it came from.
pub fn subject_tasks_except(
    conn: &mut DbConnection,
    subject: &str,
    except: &[&str],
) -> QueryResult<Vec<TaskRow>> {
    t::table
        .filter(t::subject.eq(subject))
        .filter(t::channel.ne_all(except))
        .order(t::id)
        .select(TaskRow::as_select())
        .load(conn)
}

/// Every support action on the tasks `ids`, oldest first, with the task each was on.
pub fn actions_on(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Vec<(i64, TaskAction)>> {
    let rows: Vec<(i64, String, String, Option<String>, NaiveDateTime)> = a::table
        .filter(a::task_id.eq_any(ids))
        .order(a::id)
        .select((a::task_id, a::action, a::actor, a::reason, a::at))
        .load(conn)?;
    rows.into_iter()
        .map(|(task, action, actor, reason, at)| {
            Ok((
                task,
                TaskAction {
                    action: text_enum::read(&action)?,
                    actor,
                    reason,
                    at,
                },
            ))
        })
        .collect()
}

/// Resends or dismisses the lost tasks `ids` of `kind` (support, from the console): each a
/// compare-and-set on `lost` and a free lease. All or nothing: returns the subjects acted on, or
/// an error naming the first that changed meanwhile (the caller's transaction rolls back).
pub fn act_on_lost(
    conn: &mut DbConnection,
    kind: TaskKind,
    ids: &[i64],
    action: SupportAction,
    actor: &str,
    reason: Option<&str>,
    now: NaiveDateTime,
) -> anyhow::Result<Vec<String>> {
    let rows: Vec<(i64, String)> = t::table
        .filter(t::id.eq_any(ids))
        .filter(t::channel.eq(kind.channel))
        .filter(t::action.eq(kind.action))
        .order(t::id)
        .select((t::id, t::subject))
        .load(conn)?;
    if rows.len() != ids.len() {
        anyhow::bail!("some of the tasks asked for do not exist (any more); nothing changed");
    }
    let mut done = Vec::with_capacity(rows.len());
    for (id, subject) in rows {
        if !act(conn, id, TaskState::Lost, action, actor, reason, now)? {
            anyhow::bail!(
                "{subject} is no longer lost, or is being sent right now; nothing changed"
            );
        }
        done.push(subject);
    }
    Ok(done)
}

/// The subjects of those of tasks `ids` of `kind` that are still lost, oldest task first.
pub fn lost_subjects_of(
    conn: &mut DbConnection,
    kind: TaskKind,
    ids: &[i64],
) -> QueryResult<Vec<String>> {
    lost_query(kind, &LostFilter::default())
        .filter(t::id.eq_any(ids))
        .order(t::id)
        .select(t::subject)
        .load(conn)
}

// ---------------------------------------------------------------------------------------------
// Read-only queries for operating the order channels (`[[channels]]`): the CLI's
// `wharf channels`, the console's channel page and order timeline, the alert conditions and the
// gauges. They only read; support's writes go through `act` above.

/// A channel task with what the operators' views show besides the [`TaskRow`]: when the other
/// side took it on, and who handled it by hand.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = t)]
pub struct ChannelTask {
    /// The task.
    #[diesel(embed)]
    pub task: TaskRow,
    /// When the other side took the push on (a ticket's deadline runs from it).
    pub sent_at: Option<NaiveDateTime>,
    /// Who resent or dismissed it last.
    pub handled_by: Option<String>,
    /// When.
    pub handled_at: Option<NaiveDateTime>,
}

/// What a list of channel tasks is narrowed to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelTaskFilter {
    /// The channels listed (the configured ones, or the one asked for); empty lists nothing.
    pub channels: Vec<String>,
    /// Only this state.
    pub state: Option<TaskState>,
    /// Only this action (`ship`, `cancel`, …).
    pub action: Option<String>,
    /// Only the tasks of this order number.
    pub subject: Option<String>,
    /// Only this task.
    pub id: Option<i64>,
}

/// The tasks `f` keeps, as a boxed query.
fn channel_query<'a>(f: &ChannelTaskFilter) -> t::BoxedQuery<'a, Db> {
    let mut q = t::table
        .filter(t::channel.eq_any(f.channels.clone()))
        .into_boxed();
    if let Some(s) = f.state {
        q = q.filter(t::state.eq(s.as_str()));
    }
    if let Some(a) = &f.action {
        q = q.filter(t::action.eq(a.clone()));
    }
    if let Some(s) = &f.subject {
        q = q.filter(t::subject.eq(s.clone()));
    }
    if let Some(id) = f.id {
        q = q.filter(t::id.eq(id));
    }
    q
}

/// Up to `limit` of the channel tasks `f` keeps, newest first, below task id `before` (keyset
/// pagination).
pub fn channel_tasks(
    conn: &mut DbConnection,
    f: &ChannelTaskFilter,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<ChannelTask>> {
    let mut q = channel_query(f);
    if let Some(before) = before {
        q = q.filter(t::id.lt(before));
    }
    q.order(t::id.desc())
        .limit(limit)
        .select(ChannelTask::as_select())
        .load(conn)
}

/// How many channel tasks `f` keeps.
pub fn count_channel_tasks(conn: &mut DbConnection, f: &ChannelTaskFilter) -> QueryResult<i64> {
    channel_query(f).count().get_result(conn)
}

/// Task `id` if it is one of `channels`'.
pub fn channel_task(
    conn: &mut DbConnection,
    channels: &[&str],
    id: i64,
) -> QueryResult<Option<ChannelTask>> {
    t::table
        .find(id)
        .filter(t::channel.eq_any(channels))
        .select(ChannelTask::as_select())
        .first(conn)
        .optional()
}

/// How many tasks each of `channels` holds in each of `states` (states with none are left out).
/// Asking only for the few open states keeps the count off the finished tasks (the
/// `outbound_tasks_state` index: state, channel, action).
pub fn channel_state_counts(
    conn: &mut DbConnection,
    channels: &[&str],
    states: &[TaskState],
) -> QueryResult<Vec<(String, TaskState, i64)>> {
    use diesel::dsl::count_star;
    let words: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
    let rows: Vec<(String, String, i64)> = t::table
        .filter(t::channel.eq_any(channels))
        .filter(t::state.eq_any(words))
        .group_by((t::channel, t::state))
        .select((t::channel, t::state, count_star()))
        .load(conn)?;
    rows.into_iter()
        .map(|(channel, state, n)| Ok((channel, text_enum::read(&state)?, n)))
        .collect()
}

/// The oldest pending task of `channel` (a delayed ship waits pending until its time).
pub fn oldest_pending(conn: &mut DbConnection, channel: &str) -> QueryResult<Option<TaskRow>> {
    t::table
        .filter(t::channel.eq(channel))
        .filter(t::state.eq(TaskState::Pending.as_str()))
        .order(t::id)
        .select(TaskRow::as_select())
        .first(conn)
        .optional()
}

/// How many tasks of `channel` are in `state` (with a batch id only, when `ticketed`: a failed
/// one whose ticket failed), and the oldest `limit` of them.
pub fn channel_in_state(
    conn: &mut DbConnection,
    channel: &str,
    state: TaskState,
    ticketed: bool,
    limit: i64,
) -> QueryResult<(i64, Vec<TaskRow>)> {
    let of = || {
        let q = t::table
            .filter(t::channel.eq(channel))
            .filter(t::state.eq(state.as_str()))
            .into_boxed::<Db>();
        if ticketed {
            q.filter(t::batch_id.is_not_null())
        } else {
            q
        }
    };
    let count = of().count().get_result(conn)?;
    let first = of()
        .order(t::id)
        .limit(limit)
        .select(TaskRow::as_select())
        .load(conn)?;
    Ok((count, first))
}

/// Every task of order `subject` on any channel but `except` (the warehouse's, the mailer's),
/// oldest first: its pushes to the channel it came from, for its timeline.
pub fn channel_tasks_of_subject(
    conn: &mut DbConnection,
    subject: &str,
    except: &[&str],
) -> QueryResult<Vec<ChannelTask>> {
    t::table
        .filter(t::subject.eq(subject))
        .filter(t::channel.ne_all(except))
        .order(t::id)
        .select(ChannelTask::as_select())
        .load(conn)
}
