//! What support does with received requests by hand: **requeue** a dead request (or one waiting to
//! retry) so it is tried again now with its attempts reset, and **reprocess** a processed one so it
//! is applied again (safe by the rules: inventory lines are decided by sequence ids, a shipment is a
//! duplicate per (order, messageSeqId)), e.g. a shipment that failed because its order arrived late.
//!
//! Each action is one write transaction over all the ids given — all or nothing — and is recorded
//! in `request_actions` with who did it, when and what the request looked like before, and in the
//! audit log (one row per action, console or CLI, with its filter and count). Every row is
//! changed by a compare-and-set on the state, attempts and lease that were checked, after locking the
//! rows (PostgreSQL `FOR UPDATE`; SQLite's `BEGIN IMMEDIATE`), so a worker claiming or finishing one
//! of them at that instant either goes first (and the action refuses) or finds it changed.

use super::RequestState;
use super::store::{self, Current};
use crate::audit::Via;
// The import report's tables: its statements here move with the import report's own store.
use crate::db::{self, DbConnection};

crate::text_enum! {
    /// A support action on received requests (stored as text in `request_actions.action`).
    pub enum SupportAction: "support action" {
        /// Dead or retrying → queued now, attempts reset.
        Requeue = "requeue",
        /// Processed → queued now, to be applied again; its import report is kept as replaced.
        Reprocess = "reprocess",
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
    /// An "all matching" action found another number of requests than the user was shown.
    #[error(
        "the filter now matches {found} request(s), not the {expected} shown; nothing changed: \
         look at the list again"
    )]
    CountChanged {
        /// What the user saw.
        expected: i64,
        /// What the filter selects now.
        found: i64,
    },
    /// An "all matching" action over more requests than one action may touch.
    #[error(
        "{count} requests is more than one action may touch ({max}, console.bulk_max); nothing \
         changed: narrow the filter"
    )]
    TooMany {
        /// How many.
        count: i64,
        /// The cap.
        max: i64,
    },
    /// Storage failed.
    #[error("database error: {0}")]
    Db(#[from] diesel::result::Error),
}

/// Who does a support action and how, for its audit row ([`crate::audit`]).
#[derive(Debug, Clone, Copy)]
pub struct By<'a> {
    /// The actor recorded (`console:<name>`, or the CLI's `--by` / system user).
    pub actor: &'a str,
    /// Where the action came from.
    pub via: Via,
    /// For an "all matching" action, the filter it was given (the list's query string).
    pub filter: Option<&'a str>,
}

impl<'a> By<'a> {
    /// An action from the `wharf` command by `actor`.
    pub fn cli(actor: &'a str) -> By<'a> {
        By {
            actor,
            via: Via::Cli,
            filter: None,
        }
    }
}

/// An "all matching this filter" action: the number of requests the user saw, and the most one
/// action may touch.
#[derive(Debug, Clone, Copy)]
pub struct Expected {
    /// How many the user was shown (the action is refused if the filter now selects another number).
    pub count: i64,
    /// The cap (`console.bulk_max`).
    pub max: i64,
}

/// Puts dead requests (or queued ones waiting to retry after failures) back to the queue, due now
/// with attempts reset, recording `by` (and one audit row). Returns the ids requeued.
pub fn requeue(
    conn: &mut DbConnection,
    ids: &[i64],
    by: &By<'_>,
) -> Result<Vec<i64>, SupportError> {
    act(conn, ids, by, SupportAction::Requeue)
}

/// Queues processed requests to be applied again, recording `by` (and one audit row); the import
/// report each had is kept as replaced. Returns the ids queued.
pub fn reprocess(
    conn: &mut DbConnection,
    ids: &[i64],
    by: &By<'_>,
) -> Result<Vec<i64>, SupportError> {
    act(conn, ids, by, SupportAction::Reprocess)
}

/// `action` on every request `find` selects, in one transaction with the look-up: refused when
/// `find` no longer selects `expected.count` requests (what the user saw changed) or more than
/// `expected.max`. `find` should return at most `expected.max + 1` ids.
pub fn act_on_matching(
    conn: &mut DbConnection,
    action: SupportAction,
    by: &By<'_>,
    expected: Expected,
    find: impl FnOnce(&mut DbConnection) -> diesel::QueryResult<Vec<i64>>,
) -> Result<Vec<i64>, SupportError> {
    if expected.count > expected.max {
        return Err(SupportError::TooMany {
            count: expected.count,
            max: expected.max,
        });
    }
    let done = db::write_tx(conn, |conn| {
        let mut ids = find(conn)?;
        let found = i64::try_from(ids.len()).unwrap_or(i64::MAX);
        if found > expected.max {
            return Err(SupportError::TooMany {
                count: found,
                max: expected.max,
            });
        }
        if found != expected.count {
            return Err(SupportError::CountChanged {
                expected: expected.count,
                found,
            });
        }
        ids.sort_unstable();
        ids.dedup();
        act_in_tx(conn, &ids, by, action)
    });
    done.inspect(|_| crate::db::wake::signal(crate::db::wake::Topic::Requests))
}

fn act(
    conn: &mut DbConnection,
    ids: &[i64],
    by: &By<'_>,
    action: SupportAction,
) -> Result<Vec<i64>, SupportError> {
    if ids.is_empty() {
        return Err(SupportError::NoIds);
    }
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    db::write_tx(conn, |conn| act_in_tx(conn, &ids, by, action))
        .inspect(|_| crate::db::wake::signal(crate::db::wake::Topic::Requests))
}

/// The action on `ids` (sorted, distinct), inside the caller's write transaction.
fn act_in_tx(
    conn: &mut DbConnection,
    ids: &[i64],
    by: &By<'_>,
    action: SupportAction,
) -> Result<Vec<i64>, SupportError> {
    if ids.is_empty() {
        return Err(SupportError::NoIds);
    }
    let rows = store::lock_for_action(conn, ids)?;
    for id in ids {
        let Some(row) = rows.iter().find(|r| r.id == *id) else {
            return Err(SupportError::NotFound(*id));
        };
        if let Some(why) = refusal(action, row) {
            return Err(SupportError::Refused { id: *id, why });
        }
    }
    let now = db::now();
    for row in &rows {
        if !store::queue_again(conn, row, now)? {
            return Err(SupportError::Changed(row.id));
        }
        let note = match action {
            SupportAction::Reprocess => crate::imports::store::report_counts(conn, row.id)?,
            SupportAction::Requeue => None,
        };
        let action_id = store::record_action(conn, row, action, by.actor, now, note.as_deref())?;
        if action == SupportAction::Reprocess {
            crate::imports::store::replace_report(conn, row.id, action_id)?;
        }
    }
    let subjects: Vec<String> = ids.iter().map(i64::to_string).collect();
    crate::audit::record(
        conn,
        &crate::audit::Entry {
            actor: by.actor,
            via: by.via,
            action: match action {
                SupportAction::Requeue => "requests.requeue",
                SupportAction::Reprocess => "requests.reprocess",
            },
            subject_kind: "request",
            subjects: &subjects,
            filter: by.filter,
            count: i64::try_from(ids.len()).unwrap_or(i64::MAX),
            note: None,
        },
    )?;
    super::announce(conn)?;
    Ok(ids.to_vec())
}

/// Why `action` makes no sense for `row`, with what to do instead; `None` when it does.
fn refusal(action: SupportAction, row: &Current) -> Option<String> {
    match (action, row.state) {
        (SupportAction::Requeue, RequestState::Dead) => None,
        (SupportAction::Requeue, RequestState::Queued) if row.attempts > 0 => None,
        (SupportAction::Reprocess, RequestState::Processed) => None,
        (SupportAction::Requeue, RequestState::Queued) => {
            Some("is already queued and waiting for a worker (it has not failed yet)".to_string())
        }
        (SupportAction::Reprocess, RequestState::Queued) => Some(format!(
            "is already queued to be applied (reprocess is for processed requests){}",
            if row.attempts > 0 {
                "; `wharf requests requeue` tries it now instead of at its retry time"
            } else {
                ""
            }
        )),
        (_, RequestState::Processing) => Some(format!(
            "is being applied by a worker right now (lease held by {} until {}); \
             wait for it to finish, then look again",
            row.lease_owner.as_deref().unwrap_or("?"),
            row.lease_expires_at
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_else(|| "?".into())
        )),
        (SupportAction::Requeue, RequestState::Processed) => {
            Some("has been processed; to apply it again use `wharf requests reprocess`".to_string())
        }
        (SupportAction::Reprocess, RequestState::Dead) => {
            Some("is dead (it was never applied); use `wharf requests requeue`".to_string())
        }
    }
}
