//! The SQL of incidents (`incidents`) and of the alert mail budget (`alert_mails`). Every change of
//! an incident is a compare-and-set on its row; callers count the rows written to learn whether
//! theirs was the change.

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use super::{Finding, INCIDENT_OPEN, Incident, IncidentState, Item, SMTP};
use crate::config::WarehouseSettings;
use crate::db::schema::{alert_mails as m, incidents as i, orders, outbound_tasks as t};
use crate::db::{DbConnection, text_enum};
use crate::orders::export::ORDER_INSERT;
use crate::outbound::TaskState;
use crate::products::export::PRODUCT_MERGE;

/// An incident row as stored; its state and items parse in [`read`].
#[derive(Queryable, Selectable)]
#[diesel(table_name = i)]
struct Row {
    id: i64,
    key: String,
    state: String,
    summary: String,
    count: i64,
    first_error: Option<String>,
    items: String,
    opened_at: NaiveDateTime,
    clear_since: Option<NaiveDateTime>,
    resolved_at: Option<NaiveDateTime>,
    message_id: Option<String>,
}

fn read(row: Row) -> QueryResult<Incident> {
    let items: Vec<Item> = serde_json::from_str(&row.items)
        .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?;
    Ok(Incident {
        id: row.id,
        key: row.key,
        state: text_enum::read(&row.state)?,
        summary: row.summary,
        count: row.count,
        first_error: row.first_error,
        items,
        opened_at: row.opened_at,
        clear_since: row.clear_since,
        resolved_at: row.resolved_at,
        message_id: row.message_id,
    })
}

fn items_text(items: &[Item]) -> String {
    // A list of plain structs always serialises.
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

/// The open incidents (including those in their quiet time), oldest first.
pub fn open_incidents(conn: &mut DbConnection) -> QueryResult<Vec<Incident>> {
    let rows: Vec<Row> = i::table
        .filter(i::state.eq(IncidentState::Open.as_str()))
        .order(i::id)
        .select(Row::as_select())
        .load(conn)?;
    rows.into_iter().map(read).collect()
}

/// Incident `id`.
pub fn incident(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Incident>> {
    let row: Option<Row> = i::table
        .find(id)
        .select(Row::as_select())
        .first(conn)
        .optional()?;
    row.map(read).transpose()
}

/// Opens an incident for `f` unless one is open under its key (the partial unique index makes the
/// second of two processes a no-op). Returns the new incident's id.
pub fn insert_open(
    conn: &mut DbConnection,
    f: &Finding,
    now: NaiveDateTime,
) -> QueryResult<Option<i64>> {
    let row = (
        i::key.eq(&f.key),
        i::state.eq(IncidentState::Open.as_str()),
        i::summary.eq(&f.summary),
        i::count.eq(f.count),
        i::first_error.eq(&f.first_error),
        i::items.eq(items_text(&f.items)),
        i::opened_at.eq(now),
        i::updated_at.eq(now),
    );
    let ids: Vec<i64> = crate::with_backend!(&mut *conn, |c| diesel::insert_into(i::table)
        .values(&row)
        .on_conflict_do_nothing()
        .returning(i::id)
        .get_results(c))?;
    Ok(ids.first().copied())
}

/// Brings open incident `id` up to date with `f`; a condition back in the quiet time clears
/// `clear_since`. Returns whether it was still open.
pub fn refresh(
    conn: &mut DbConnection,
    id: i64,
    f: &Finding,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let n = diesel::update(
        i::table
            .find(id)
            .filter(i::state.eq(IncidentState::Open.as_str())),
    )
    .set((
        i::summary.eq(&f.summary),
        i::count.eq(f.count),
        i::items.eq(items_text(&f.items)),
        i::clear_since.eq(None::<NaiveDateTime>),
        i::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Starts the quiet time of open incident `id` whose condition cleared (unless it started).
pub fn start_clear(conn: &mut DbConnection, id: i64, now: NaiveDateTime) -> QueryResult<bool> {
    let n = diesel::update(
        i::table
            .find(id)
            .filter(i::state.eq(IncidentState::Open.as_str()))
            .filter(i::clear_since.is_null()),
    )
    .set((i::clear_since.eq(Some(now)), i::updated_at.eq(now)))
    .execute(conn)?;
    Ok(n == 1)
}

/// Resolves open incident `id` if its condition has been clear since `cutoff` or earlier.
/// Returns whether this call resolved it.
pub fn resolve(
    conn: &mut DbConnection,
    id: i64,
    cutoff: NaiveDateTime,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let n = diesel::update(
        i::table
            .find(id)
            .filter(i::state.eq(IncidentState::Open.as_str()))
            .filter(i::clear_since.le(cutoff)),
    )
    .set((
        i::state.eq(IncidentState::Resolved.as_str()),
        i::resolved_at.eq(Some(now)),
        i::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Notes `message_id` as the open mail of incidents `ids`.
pub fn set_message_id(
    conn: &mut DbConnection,
    ids: &[i64],
    message_id: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(i::table.filter(i::id.eq_any(ids)))
        .set((i::message_id.eq(Some(message_id)), i::updated_at.eq(now)))
        .execute(conn)
}

/// Takes one slot of the hourly alert mail budget for a mail about to be sent, unless `max` mails
/// went in the hour before `now`. Serialised across processes (a table lock on PostgreSQL, the
/// writer lock on SQLite), so two senders cannot both take the last slot. Returns the slot, to
/// give back with [`give_back`] when the send fails.
pub fn take_slot(
    conn: &mut DbConnection,
    max: u32,
    subject: &str,
    now: NaiveDateTime,
) -> QueryResult<Option<i64>> {
    crate::db::write_tx(conn, |conn| {
        if let DbConnection::Postgresql(c) = conn {
            // SHARE ROW EXCLUSIVE conflicts with itself: one budget decision at a time.
            diesel::sql_query("LOCK TABLE alert_mails IN SHARE ROW EXCLUSIVE MODE").execute(c)?;
        }
        let sent: i64 = m::table
            .filter(m::sent_at.gt(now - TimeDelta::hours(1)))
            .count()
            .get_result(conn)?;
        if sent >= i64::from(max) {
            return Ok(None);
        }
        let row = (m::sent_at.eq(now), m::subject.eq(subject));
        let id: i64 = crate::with_backend!(&mut *conn, |c| diesel::insert_into(m::table)
            .values(&row)
            .returning(m::id)
            .get_result(c))?;
        Ok(Some(id))
    })
}

/// Gives back a budget slot whose mail was not sent.
pub fn give_back(conn: &mut DbConnection, slot: i64) -> QueryResult<()> {
    diesel::delete(m::table.find(slot)).execute(conn)?;
    Ok(())
}

/// The oldest export due at `now` of the exports that are on (orders: only those exportable,
/// as the exporter claims them), as (order number or SKU, due since).
pub fn oldest_due_export(
    conn: &mut DbConnection,
    w: &WarehouseSettings,
    now: NaiveDateTime,
) -> QueryResult<Option<(String, NaiveDateTime)>> {
    let mut oldest: Vec<(String, NaiveDateTime)> = Vec::new();
    let due = t::state
        .eq_any(TaskState::words(TaskState::DUE))
        .and(t::run_after.is_null().or(t::run_after.le(now)));
    if w.orders.enabled {
        let exportable = orders::table
            .filter(orders::increment_id.eq(t::subject))
            .filter(orders::status.eq_any(&w.orders.exportable_statuses))
            .filter(orders::is_virtual.eq(false));
        let found: Option<(String, NaiveDateTime, Option<NaiveDateTime>)> = t::table
            .filter(t::channel.eq(ORDER_INSERT.channel))
            .filter(t::action.eq(ORDER_INSERT.action))
            .filter(due.clone())
            .filter(diesel::dsl::exists(exportable))
            .order(due_since())
            .select((t::subject, t::created_at, t::run_after))
            .first(conn)
            .optional()?;
        oldest.extend(found.map(|(s, c, r)| (s, r.map_or(c, |r| r.max(c)))));
    }
    if w.products.enabled {
        let found: Option<(String, NaiveDateTime, Option<NaiveDateTime>)> = t::table
            .filter(t::channel.eq(PRODUCT_MERGE.channel))
            .filter(t::action.eq(PRODUCT_MERGE.action))
            .filter(due)
            .filter(t::attempts.lt(w.products.max_attempts))
            .order(due_since())
            .select((t::subject, t::created_at, t::run_after))
            .first(conn)
            .optional()?;
        oldest.extend(found.map(|(s, c, r)| (s, r.map_or(c, |r| r.max(c)))));
    }
    Ok(oldest.into_iter().min_by_key(|(_, since)| *since))
}

/// Since when a task has been due: its retry time, or when it was made if it never waited (the
/// oldest due task is not the one with the lowest id: an old retry may come due after a newer
/// task that never failed).
fn due_since() -> diesel::expression::SqlLiteral<diesel::sql_types::Timestamp> {
    diesel::dsl::sql("COALESCE(outbound_tasks.run_after, outbound_tasks.created_at)")
}

/// Mails that do not go: failed (waiting for their retry), lost (given up), or due for longer
/// than [`OVERDUE_AFTER_SECS`] (the SMTP server is unreachable, or the hourly limit holds them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailTrouble {
    /// Mail tasks refused or not taken, waiting for their retry.
    pub failed: i64,
    /// Mail tasks given up after `mail_max_attempts`.
    pub lost: i64,
    /// Mail tasks due for longer than [`OVERDUE_AFTER_SECS`].
    pub overdue: i64,
    /// Why the last failed or lost one did not go.
    pub last_error: Option<String>,
}

impl MailTrouble {
    /// Whether any mail is in trouble.
    pub fn any(&self) -> bool {
        self.failed + self.lost + self.overdue > 0
    }
}

/// A mail task due longer than this is overdue.
pub const OVERDUE_AFTER_SECS: i64 = 300;

/// The mail tasks that do not go at `now` (for `wharf check`, `/metrics` and the console banner).
pub fn mail_trouble(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<MailTrouble> {
    let mail = t::table.filter(t::channel.eq(SMTP));
    let count_in = |conn: &mut DbConnection, s: TaskState| -> QueryResult<i64> {
        t::table
            .filter(t::channel.eq(SMTP))
            .filter(t::state.eq(s.as_str()))
            .count()
            .get_result(conn)
    };
    let failed = count_in(conn, TaskState::Failed)?;
    let lost = count_in(conn, TaskState::Lost)?;
    let overdue_since = now - TimeDelta::seconds(OVERDUE_AFTER_SECS);
    let overdue: i64 = mail
        .filter(t::state.eq_any(TaskState::words(TaskState::DUE)))
        .filter(
            t::run_after
                .le(overdue_since)
                .or(t::run_after.is_null().and(t::created_at.le(overdue_since))),
        )
        .count()
        .get_result(conn)?;
    let last_error: Option<Option<String>> = t::table
        .filter(t::channel.eq(SMTP))
        .filter(t::state.eq_any([TaskState::Failed.as_str(), TaskState::Lost.as_str()]))
        .order(t::updated_at.desc())
        .select(t::last_error)
        .first(conn)
        .optional()?;
    Ok(MailTrouble {
        failed,
        lost,
        overdue,
        last_error: last_error.flatten(),
    })
}

/// Whether the open mail of incident `subject` is still to be sent (pending or failed; one given
/// up is not waited for).
pub fn open_mail_waits(conn: &mut DbConnection, subject: &str) -> QueryResult<bool> {
    let waiting: i64 = t::table
        .filter(t::channel.eq(INCIDENT_OPEN.channel))
        .filter(t::action.eq(INCIDENT_OPEN.action))
        .filter(t::subject.eq(subject))
        .filter(t::state.eq_any(TaskState::words(TaskState::DUE)))
        .count()
        .get_result(conn)?;
    Ok(waiting > 0)
}

/// Up to `limit` incidents resolved before `cutoff` (retention).
pub fn resolved_before(
    conn: &mut DbConnection,
    cutoff: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<i64>> {
    i::table
        .filter(i::state.eq(IncidentState::Resolved.as_str()))
        .filter(i::resolved_at.lt(cutoff))
        .limit(limit)
        .select(i::id)
        .load(conn)
}

/// Deletes those of `ids` still resolved before `cutoff` (an open incident is never deleted).
/// Returns how many.
pub fn delete_resolved(
    conn: &mut DbConnection,
    ids: &[i64],
    cutoff: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::delete(
        i::table
            .filter(i::id.eq_any(ids))
            .filter(i::state.eq(IncidentState::Resolved.as_str()))
            .filter(i::resolved_at.lt(cutoff)),
    )
    .execute(conn)
}

/// How many incidents resolved before `cutoff`.
pub fn count_resolved_before(conn: &mut DbConnection, cutoff: NaiveDateTime) -> QueryResult<i64> {
    i::table
        .filter(i::state.eq(IncidentState::Resolved.as_str()))
        .filter(i::resolved_at.lt(cutoff))
        .count()
        .get_result(conn)
}

/// Up to `limit` sent-mail slots older than `cutoff` (retention: only the last hour's count).
pub fn mail_slots_before(
    conn: &mut DbConnection,
    cutoff: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<i64>> {
    m::table
        .filter(m::sent_at.lt(cutoff))
        .order(m::sent_at)
        .limit(limit)
        .select(m::id)
        .load(conn)
}

/// Deletes the slots `ids`. Returns how many.
pub fn delete_mail_slots(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<usize> {
    diesel::delete(m::table.filter(m::id.eq_any(ids))).execute(conn)
}

/// How many sent-mail slots are older than `cutoff`.
pub fn count_mail_slots_before(conn: &mut DbConnection, cutoff: NaiveDateTime) -> QueryResult<i64> {
    m::table
        .filter(m::sent_at.lt(cutoff))
        .count()
        .get_result(conn)
}
