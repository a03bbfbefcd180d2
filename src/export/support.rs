//! What support does with what the warehouse would not take: the list of lost order exports and
//! lost cancellations, and resend / dismiss for both, each recorded with who did it.
//!
//! Every change is a compare-and-set on the state support saw (and on the lease being free), so
//! support acting while an exporter settles, or two people acting at once, never both win.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::cancel::CancelState;
use super::status;
use crate::db::schema::{order_cancellations as oc, order_export_actions, orders};
use crate::db::{self, DbConnection};
use crate::feed::{self, NewEvent};

/// What of an order support handles: its export, or its cancellation at the warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// Sending the order.
    Export,
    /// Cancelling the exported order.
    Cancellation,
}

impl Subject {
    /// The word shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::Export => "export",
            Subject::Cancellation => "cancellation",
        }
    }
}

/// An order export or cancellation waiting for support: lost, with its last error.
#[derive(Debug, Clone)]
pub struct LostOrder {
    /// Order number.
    pub increment_id: String,
    /// Whether the export or the cancellation is lost.
    pub subject: Subject,
    /// Attempts made.
    pub attempts: i32,
    /// The warehouse's last answer about it.
    pub error: Option<String>,
    /// When it was last changed.
    pub updated_at: NaiveDateTime,
}

/// Lost order exports and lost cancellations, oldest order first.
pub fn lost_orders(conn: &mut DbConnection) -> QueryResult<Vec<LostOrder>> {
    type Row = (i64, String, i32, Option<String>, NaiveDateTime);
    let exports: Vec<Row> = orders::table
        .filter(orders::export_status.eq(status::LOST))
        .select((
            orders::id,
            orders::increment_id,
            orders::export_attempts,
            orders::export_error,
            orders::updated_at,
        ))
        .load(conn)?;
    let cancellations: Vec<Row> = oc::table
        .inner_join(orders::table)
        .filter(oc::state.eq(CancelState::Lost.as_str()))
        .select((
            oc::order_id,
            orders::increment_id,
            oc::attempts,
            oc::error,
            oc::updated_at,
        ))
        .load(conn)?;
    let mut all: Vec<(i64, LostOrder)> = Vec::with_capacity(exports.len() + cancellations.len());
    for (subject, rows) in [
        (Subject::Export, exports),
        (Subject::Cancellation, cancellations),
    ] {
        all.extend(
            rows.into_iter()
                .map(|(id, increment_id, attempts, error, updated_at)| {
                    (
                        id,
                        LostOrder {
                            increment_id,
                            subject,
                            attempts,
                            error,
                            updated_at,
                        },
                    )
                }),
        );
    }
    all.sort_by_key(|(id, l)| (*id, l.subject == Subject::Cancellation));
    Ok(all.into_iter().map(|(_, l)| l).collect())
}

/// What support does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Back to pending with the attempts reset.
    Resend,
    /// Handled by hand: never sent.
    Dismiss,
}

impl Action {
    /// The word recorded in `order_export_actions.action`.
    fn recorded(self, subject: Subject) -> &'static str {
        match (self, subject) {
            (Action::Resend, Subject::Export) => "resend",
            (Action::Dismiss, Subject::Export) => "dismiss",
            (Action::Resend, Subject::Cancellation) => "resend_cancellation",
            (Action::Dismiss, Subject::Cancellation) => "dismiss_cancellation",
        }
    }
}

/// An order export or cancellation support acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// Order number.
    pub increment_id: String,
    /// Its export or its cancellation.
    pub subject: Subject,
}

/// One thing to act on, with the state support saw.
struct Target {
    order_id: i64,
    increment_id: String,
    subject: Subject,
    seen: String,
}

/// Puts lost (or failed) order exports and cancellations back to pending with their attempts reset,
/// recording who did it. `None` resends every lost one. Returns the order numbers resent.
pub fn resend(
    conn: &mut DbConnection,
    ids: Option<&[String]>,
    actor: &str,
) -> anyhow::Result<Vec<String>> {
    let done = act(conn, ids, actor, Action::Resend, None)?;
    Ok(done.into_iter().map(|h| h.increment_id).collect())
}

/// Marks lost (or failed) order exports and cancellations as handled by hand (never sent),
/// recording who did it and why. Returns the order numbers dismissed.
pub fn dismiss(
    conn: &mut DbConnection,
    ids: &[String],
    actor: &str,
    reason: &str,
) -> anyhow::Result<Vec<String>> {
    let done = act(conn, Some(ids), actor, Action::Dismiss, Some(reason))?;
    Ok(done.into_iter().map(|h| h.increment_id).collect())
}

/// Resends or dismisses the named orders' lost or failed export or cancellation (every lost one when
/// `ids` is `None`), all or nothing.
pub fn act(
    conn: &mut DbConnection,
    ids: Option<&[String]>,
    actor: &str,
    action: Action,
    reason: Option<&str>,
) -> anyhow::Result<Vec<Handled>> {
    db::write_tx(conn, |conn| {
        let targets = match ids {
            Some(ids) => dedup(ids)
                .into_iter()
                .map(|id| named_target(conn, id))
                .collect::<anyhow::Result<Vec<_>>>()?,
            None => every_lost(conn)?,
        };
        let now = db::now();
        let mut events = Vec::new();
        for t in &targets {
            let changed = match t.subject {
                Subject::Export => apply_to_export(conn, t, action, actor, reason, now)?,
                Subject::Cancellation => {
                    apply_to_cancellation(conn, t, action, actor, reason, now)?
                }
            };
            if !changed {
                anyhow::bail!(
                    "the {} of order {} is being sent to the warehouse right now (or changed \
                     meanwhile); try again in a minute; nothing changed",
                    t.subject.as_str(),
                    t.increment_id
                );
            }
            diesel::insert_into(order_export_actions::table)
                .values((
                    order_export_actions::order_id.eq(t.order_id),
                    order_export_actions::action.eq(action.recorded(t.subject)),
                    order_export_actions::actor.eq(actor),
                    order_export_actions::reason.eq(reason),
                    order_export_actions::at.eq(now),
                ))
                .execute(conn)?;
            if t.subject == Subject::Export {
                events.push(export_event(t, action, actor));
            }
        }
        feed::append(conn, &events)?;
        Ok(targets
            .into_iter()
            .map(|t| Handled {
                increment_id: t.increment_id,
                subject: t.subject,
            })
            .collect())
    })
}

/// The order numbers once each, in the order given.
fn dedup(ids: &[String]) -> Vec<&str> {
    let mut seen = std::collections::HashSet::new();
    ids.iter()
        .map(String::as_str)
        .filter(|id| seen.insert(*id))
        .collect()
}

/// The order's lost or failed export, else its lost or failed cancellation.
fn named_target(conn: &mut DbConnection, id: &str) -> anyhow::Result<Target> {
    let Some((order_id, export_status)) = orders::table
        .filter(orders::increment_id.eq(id))
        .select((orders::id, orders::export_status))
        .first::<(i64, String)>(conn)
        .optional()?
    else {
        anyhow::bail!("order {id:?} does not exist; nothing changed");
    };
    let actionable = |s: &str| s == status::LOST || s == status::FAILED;
    if actionable(&export_status) {
        return Ok(Target {
            order_id,
            increment_id: id.to_string(),
            subject: Subject::Export,
            seen: export_status,
        });
    }
    let cancellation: Option<String> = oc::table
        .find(order_id)
        .select(oc::state)
        .first(conn)
        .optional()?;
    match cancellation {
        Some(state) if actionable(&state) => Ok(Target {
            order_id,
            increment_id: id.to_string(),
            subject: Subject::Cancellation,
            seen: state,
        }),
        other => anyhow::bail!(
            "order {id} is {export_status}{} (only a lost or failed export or cancellation can be \
             resent or dismissed); nothing changed",
            other
                .map(|s| format!(" and its cancellation is {s}"))
                .unwrap_or_default()
        ),
    }
}

fn every_lost(conn: &mut DbConnection) -> QueryResult<Vec<Target>> {
    let exports: Vec<(i64, String)> = orders::table
        .filter(orders::export_status.eq(status::LOST))
        .order(orders::id)
        .select((orders::id, orders::increment_id))
        .load(conn)?;
    let cancellations: Vec<(i64, String)> = oc::table
        .inner_join(orders::table)
        .filter(oc::state.eq(CancelState::Lost.as_str()))
        .order(oc::order_id)
        .select((oc::order_id, orders::increment_id))
        .load(conn)?;
    let target = |subject: Subject, seen: &'static str| {
        move |(order_id, increment_id): (i64, String)| Target {
            order_id,
            increment_id,
            subject,
            seen: seen.to_string(),
        }
    };
    Ok(exports
        .into_iter()
        .map(target(Subject::Export, status::LOST))
        .chain(
            cancellations
                .into_iter()
                .map(target(Subject::Cancellation, CancelState::Lost.as_str())),
        )
        .collect())
}

fn apply_to_export(
    conn: &mut DbConnection,
    t: &Target,
    action: Action,
    actor: &str,
    reason: Option<&str>,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let new_status = match action {
        Action::Resend => status::PENDING,
        Action::Dismiss => status::DISMISSED,
    };
    let n = diesel::update(
        orders::table
            .find(t.order_id)
            .filter(orders::export_status.eq(&t.seen))
            .filter(
                orders::export_lease_expires_at
                    .is_null()
                    .or(orders::export_lease_expires_at.lt(now)),
            ),
    )
    .set((
        orders::export_status.eq(new_status),
        orders::export_attempts.eq(0),
        orders::export_next_at.eq(None::<NaiveDateTime>),
        orders::export_handled_by.eq(actor),
        orders::export_handled_at.eq(now),
        orders::export_note.eq(reason),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

fn apply_to_cancellation(
    conn: &mut DbConnection,
    t: &Target,
    action: Action,
    actor: &str,
    reason: Option<&str>,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let new_state = match action {
        Action::Resend => CancelState::Pending,
        Action::Dismiss => CancelState::Dismissed,
    };
    let n = diesel::update(
        oc::table
            .find(t.order_id)
            .filter(oc::state.eq(&t.seen))
            .filter(
                oc::lease_expires_at
                    .is_null()
                    .or(oc::lease_expires_at.lt(now)),
            ),
    )
    .set((
        oc::state.eq(new_state.as_str()),
        oc::attempts.eq(0),
        oc::next_at.eq(None::<NaiveDateTime>),
        oc::handled_by.eq(actor),
        oc::handled_at.eq(now),
        oc::note.eq(reason),
        oc::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

fn export_event(t: &Target, action: Action, actor: &str) -> NewEvent {
    let (new_status, verb) = match action {
        Action::Resend => (status::PENDING, "resend"),
        Action::Dismiss => (status::DISMISSED, "dismiss"),
    };
    NewEvent {
        kind: feed::ORDER_EXPORT_STATUS_CHANGED,
        payload: serde_json::json!({
            "order": t.increment_id, "status": new_status, "previous": t.seen,
            "message": format!("{verb} by {actor}"), "attempts": 0,
        }),
    }
}
