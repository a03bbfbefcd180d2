//! What support does with received requests by hand: **requeue** a dead request (or one waiting to
//! retry) so it is tried again now with its attempts reset, and **reprocess** a processed one so it
//! is applied again (safe by the rules: inventory lines are decided by sequence ids, a shipment is a
//! duplicate per (order, messageSeqId)), e.g. a shipment that failed because its order arrived late.
//!
//! Each action is one write transaction over all the ids given — all or nothing — and is recorded
//! in `request_actions` with who did it, when and what the request looked like before. Every row is
//! changed by a compare-and-set on the state, attempts and lease that were checked, after locking the
//! rows (PostgreSQL `FOR UPDATE`; SQLite's `BEGIN IMMEDIATE`), so a worker claiming or finishing one
//! of them at that instant either goes first (and the action refuses) or finds it changed.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use super::RequestState;
use crate::db::schema::{import_lines, imports, replaced_import_lines, request_actions, requests};
use crate::db::{self, DbConnection};

/// A support action on received requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupportAction {
    /// Dead or retrying → queued now, attempts reset.
    Requeue,
    /// Processed → queued now, to be applied again; its import report is kept as replaced.
    Reprocess,
}

impl SupportAction {
    /// The name stored in `request_actions.action`.
    pub fn as_str(self) -> &'static str {
        match self {
            SupportAction::Requeue => "requeue",
            SupportAction::Reprocess => "reprocess",
        }
    }
}

/// Why a support action was not done. Nothing changed in any case.
#[derive(Debug, thiserror::Error)]
pub enum SupportError {
    /// No request has this id.
    #[error("request #{0} does not exist; nothing changed")]
    NotFound(i64),
    /// The action makes no sense in the request's state.
    #[error("request #{id} {why}; nothing changed")]
    Refused {
        /// The request.
        id: i64,
        /// Its state and what to do instead.
        why: String,
    },
    /// The request changed between the check and the update.
    #[error(
        "request #{0} changed while this ran (a worker took it); nothing changed: look at it again"
    )]
    Changed(i64),
    /// No ids given.
    #[error("name at least one request id")]
    NoIds,
    /// Storage failed.
    #[error("database error: {0}")]
    Db(#[from] diesel::result::Error),
}

/// A request as checked before acting on it.
#[derive(Debug, Queryable)]
struct Current {
    id: i64,
    state: String,
    attempts: i32,
    lease_owner: Option<String>,
    lease_expires_at: Option<NaiveDateTime>,
    last_error: Option<String>,
}

/// Puts dead requests (or queued ones waiting to retry after failures) back to the queue, due now
/// with attempts reset, recording `actor`. Returns the ids requeued.
pub fn requeue(
    conn: &mut DbConnection,
    ids: &[i64],
    actor: &str,
) -> Result<Vec<i64>, SupportError> {
    act(conn, ids, actor, SupportAction::Requeue)
}

/// Queues processed requests to be applied again, recording `actor`; the import report each had is
/// kept as replaced. Returns the ids queued.
pub fn reprocess(
    conn: &mut DbConnection,
    ids: &[i64],
    actor: &str,
) -> Result<Vec<i64>, SupportError> {
    act(conn, ids, actor, SupportAction::Reprocess)
}

fn act(
    conn: &mut DbConnection,
    ids: &[i64],
    actor: &str,
    action: SupportAction,
) -> Result<Vec<i64>, SupportError> {
    if ids.is_empty() {
        return Err(SupportError::NoIds);
    }
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    db::write_tx(conn, |conn| {
        let rows = lock(conn, &ids)?;
        for id in &ids {
            let Some(row) = rows.iter().find(|r| r.id == *id) else {
                return Err(SupportError::NotFound(*id));
            };
            if let Some(why) = refusal(action, row) {
                return Err(SupportError::Refused { id: *id, why });
            }
        }
        let now = db::now();
        for row in &rows {
            queue_again(conn, row, now)?;
            let note = match action {
                SupportAction::Reprocess => report_counts(conn, row.id)?,
                SupportAction::Requeue => None,
            };
            let action_id = record(conn, row, action, actor, now, note.as_deref())?;
            if action == SupportAction::Reprocess {
                replace_report(conn, row.id, action_id)?;
            }
        }
        super::announce(conn)?;
        Ok(ids)
    })
    .inspect(|_| crate::db::wake::signal(crate::db::wake::Topic::Requests))
}

/// Reads the requests, locked until the transaction ends.
fn lock(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Vec<Current>> {
    let query = requests::table
        .filter(requests::id.eq_any(ids))
        .order(requests::id)
        .select((
            requests::id,
            requests::state,
            requests::attempts,
            requests::lease_owner,
            requests::lease_expires_at,
            requests::last_error,
        ));
    match conn {
        DbConnection::Postgresql(c) => query.for_update().load(c),
        DbConnection::Sqlite(c) => query.load(c),
    }
}

/// Why `action` makes no sense for `row`, with what to do instead; `None` when it does.
fn refusal(action: SupportAction, row: &Current) -> Option<String> {
    let state = RequestState::parse(&row.state);
    match (action, state) {
        (SupportAction::Requeue, Some(RequestState::Dead)) => None,
        (SupportAction::Requeue, Some(RequestState::Queued)) if row.attempts > 0 => None,
        (SupportAction::Reprocess, Some(RequestState::Processed)) => None,
        (SupportAction::Requeue, Some(RequestState::Queued)) => {
            Some("is already queued and waiting for a worker (it has not failed yet)".to_string())
        }
        (SupportAction::Reprocess, Some(RequestState::Queued)) => Some(format!(
            "is already queued to be applied (reprocess is for processed requests){}",
            if row.attempts > 0 {
                "; `wharf requests requeue` tries it now instead of at its retry time"
            } else {
                ""
            }
        )),
        (_, Some(RequestState::Processing)) => Some(format!(
            "is being applied by a worker right now (lease held by {} until {}); \
             wait for it to finish, then look again",
            row.lease_owner.as_deref().unwrap_or("?"),
            row.lease_expires_at
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_else(|| "?".into())
        )),
        (SupportAction::Requeue, Some(RequestState::Processed)) => {
            Some("has been processed; to apply it again use `wharf requests reprocess`".to_string())
        }
        (SupportAction::Reprocess, Some(RequestState::Dead)) => {
            Some("is dead (it was never applied); use `wharf requests requeue`".to_string())
        }
        (_, None) => Some(format!("is in an unknown state {:?}", row.state)),
    }
}

/// Compare-and-set back to `queued`, due now, attempts reset: only if the request is still exactly
/// as checked and no worker holds it.
fn queue_again(
    conn: &mut DbConnection,
    row: &Current,
    now: NaiveDateTime,
) -> Result<(), SupportError> {
    let changed = diesel::update(
        requests::table
            .filter(requests::id.eq(row.id))
            .filter(requests::state.eq(&row.state))
            .filter(requests::attempts.eq(row.attempts))
            .filter(requests::lease_owner.is_null()),
    )
    .set((
        requests::state.eq(RequestState::Queued.as_str()),
        requests::attempts.eq(0),
        requests::next_attempt_at.eq(now),
        requests::processed_at.eq(None::<NaiveDateTime>),
        requests::lease_expires_at.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    if changed == 1 {
        Ok(())
    } else {
        Err(SupportError::Changed(row.id))
    }
}

/// The counts of a request's import report, as a note for the action that replaces it.
fn report_counts(conn: &mut DbConnection, id: i64) -> QueryResult<Option<String>> {
    let counts: Option<(i32, i32, i32, i32)> = imports::table
        .find(id)
        .select((
            imports::successes,
            imports::duplicates,
            imports::superseded,
            imports::failures,
        ))
        .first(conn)
        .optional()?;
    Ok(counts.map(|(s, d, x, f)| {
        format!(
            "replaced import report: {s} success(es), {d} duplicate(s), {x} superseded, {f} failure(s)"
        )
    }))
}

fn record(
    conn: &mut DbConnection,
    row: &Current,
    action: SupportAction,
    actor: &str,
    now: NaiveDateTime,
    note: Option<&str>,
) -> QueryResult<i64> {
    let values = (
        request_actions::request_id.eq(row.id),
        request_actions::action.eq(action.as_str()),
        request_actions::actor.eq(actor),
        request_actions::at.eq(now),
        request_actions::previous_state.eq(&row.state),
        request_actions::previous_attempts.eq(row.attempts),
        request_actions::previous_error.eq(row.last_error.as_deref()),
        request_actions::note.eq(note),
    );
    crate::with_backend!(conn, |c| diesel::insert_into(request_actions::table)
        .values(values)
        .returning(request_actions::id)
        .get_result(c))
}

/// Moves a request's import report aside (its lines to `replaced_import_lines` under the action),
/// so the worker can write the new one.
fn replace_report(conn: &mut DbConnection, request_id: i64, action_id: i64) -> QueryResult<()> {
    let old = import_lines::table
        .filter(import_lines::request_id.eq(request_id))
        .select((
            action_id.into_sql::<BigInt>(),
            import_lines::line_no,
            import_lines::seq,
            import_lines::sku,
            import_lines::source,
            import_lines::units_received,
            import_lines::units_adjusted_orders,
            import_lines::units_adjusted_quotes,
            import_lines::stored_qty,
            import_lines::result,
            import_lines::message,
            import_lines::created_at,
            import_lines::reference,
        ));
    diesel::insert_into(replaced_import_lines::table)
        .values(old)
        .into_columns((
            replaced_import_lines::action_id,
            replaced_import_lines::line_no,
            replaced_import_lines::seq,
            replaced_import_lines::sku,
            replaced_import_lines::source,
            replaced_import_lines::units_received,
            replaced_import_lines::units_adjusted_orders,
            replaced_import_lines::units_adjusted_quotes,
            replaced_import_lines::stored_qty,
            replaced_import_lines::result,
            replaced_import_lines::message,
            replaced_import_lines::created_at,
            replaced_import_lines::reference,
        ))
        .execute(conn)?;
    // Lines first: on PostgreSQL import_lines has no foreign key to cascade from imports.
    diesel::delete(import_lines::table.filter(import_lines::request_id.eq(request_id)))
        .execute(conn)?;
    diesel::delete(imports::table.find(request_id)).execute(conn)?;
    Ok(())
}
