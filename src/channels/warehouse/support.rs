//! What support does with what the warehouse would not take: the list of lost order exports and
//! lost cancellations, and resend / dismiss for both, each recorded with who did it.
//!
//! Every change is a compare-and-set on the state support saw (and on the lease being free), so
//! support acting while an exporter settles, or two people acting at once, never both win.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::orders;
use crate::db::{self, DbConnection};
use crate::feed::{self, NewEvent};
use crate::orders::export::{self as tasks, ExportStatus, ORDER_CANCEL, ORDER_INSERT};
use crate::outbound::{self, SupportAction, TaskKind, TaskRow, TaskState};

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

    fn task(self) -> TaskKind {
        match self {
            Subject::Export => ORDER_INSERT,
            Subject::Cancellation => ORDER_CANCEL,
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
    let exports = outbound::tasks_in_state(conn, ORDER_INSERT, TaskState::Lost)?;
    let cancellations = outbound::tasks_in_state(conn, ORDER_CANCEL, TaskState::Lost)?;
    let refs: Vec<&str> = exports
        .iter()
        .chain(&cancellations)
        .map(|t| t.subject.as_str())
        .collect();
    let orders: HashMap<String, (i64, NaiveDateTime)> = orders::table
        .filter(orders::increment_id.eq_any(&refs))
        .select((orders::increment_id, orders::id, orders::updated_at))
        .load::<(String, i64, NaiveDateTime)>(conn)?
        .into_iter()
        .map(|(r, id, at)| (r, (id, at)))
        .collect();
    let mut all: Vec<(i64, LostOrder)> = Vec::with_capacity(refs.len());
    for (subject, rows) in [
        (Subject::Export, exports),
        (Subject::Cancellation, cancellations),
    ] {
        for t in rows {
            let Some(&(id, order_updated_at)) = orders.get(&t.subject) else {
                continue;
            };
            // An export shows when its order last changed; a cancellation, when it did.
            let updated_at = match subject {
                Subject::Export => order_updated_at,
                Subject::Cancellation => t.updated_at,
            };
            all.push((
                id,
                LostOrder {
                    increment_id: t.subject,
                    subject,
                    attempts: t.attempts,
                    error: t.last_error,
                    updated_at,
                },
            ));
        }
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
    /// The queue's support action.
    fn support(self) -> SupportAction {
        match self {
            Action::Resend => SupportAction::Resend,
            Action::Dismiss => SupportAction::Dismiss,
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
    task_id: i64,
    seen: TaskState,
    /// The order's export status support saw (for the feed event of an export).
    export_status: ExportStatus,
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
    let done = db::write_tx(conn, |conn| act_in(conn, ids, actor, action, reason))?;
    if action == Action::Resend {
        outbound::wake_exporters();
    }
    Ok(done)
}

/// [`act`] inside the caller's write transaction, so the caller's audit row commits with it (or
/// rolls back with it). A resend tells continuous exporters in other processes when that commits;
/// the caller wakes this process's ([`outbound::wake_exporters`]) after it.
pub fn act_in(
    conn: &mut DbConnection,
    ids: Option<&[String]>,
    actor: &str,
    action: Action,
    reason: Option<&str>,
) -> anyhow::Result<Vec<Handled>> {
    let targets = match ids {
        Some(ids) => dedup(ids)
            .into_iter()
            .map(|id| named_target(conn, id))
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => every_lost(conn)?,
    };
    let ids: Vec<i64> = targets.iter().map(|t| t.order_id).collect();
    tasks::lock_orders(conn, &ids)?;
    let now = db::now();
    let mut events = Vec::new();
    for t in &targets {
        apply(conn, t, action, actor, reason, now)?;
        if t.subject == Subject::Export {
            events.push(export_event(t, action, actor));
        }
    }
    feed::append(conn, &events)?;
    if action == Action::Resend && !targets.is_empty() {
        outbound::announce(conn)?;
    }
    Ok(targets
        .into_iter()
        .map(|t| Handled {
            increment_id: t.increment_id,
            subject: t.subject,
        })
        .collect())
}

/// Resends or dismisses one target: compare-and-set on the task's state (and its lease being
/// free), then the order's export status follows.
fn apply(
    conn: &mut DbConnection,
    t: &Target,
    action: Action,
    actor: &str,
    reason: Option<&str>,
    now: NaiveDateTime,
) -> anyhow::Result<()> {
    let changed = outbound::act(
        conn,
        t.task_id,
        t.seen,
        action.support(),
        actor,
        reason,
        now,
    )?;
    if !changed {
        anyhow::bail!(
            "the {} of order {} is being sent to the warehouse right now (or changed meanwhile); \
             try again in a minute; nothing changed",
            t.subject.as_str(),
            t.increment_id
        );
    }
    if t.subject == Subject::Export {
        tasks::set_export_status(conn, &[t.order_id], export_status(action), None)?;
    }
    Ok(())
}

fn export_status(action: Action) -> ExportStatus {
    match action {
        Action::Resend => ExportStatus::Pending,
        Action::Dismiss => ExportStatus::Dismissed,
    }
}

/// The order numbers once each, in the order given.
fn dedup(ids: &[String]) -> Vec<&str> {
    let mut seen = std::collections::HashSet::new();
    ids.iter()
        .map(String::as_str)
        .filter(|id| seen.insert(*id))
        .collect()
}

fn actionable(t: &TaskRow) -> bool {
    t.state == TaskState::Lost || t.state == TaskState::Failed
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
    let export_status: ExportStatus = db::text_enum::read(&export_status)?;
    let target = |subject: Subject, t: &TaskRow| Target {
        order_id,
        increment_id: id.to_string(),
        subject,
        task_id: t.id,
        seen: t.state,
        export_status,
    };
    // The order's export status is the summary of its task: it decides, as support sees it.
    let export = outbound::task_of(conn, ORDER_INSERT, id)?;
    if matches!(export_status, ExportStatus::Lost | ExportStatus::Failed)
        && let Some(t) = export.as_ref().filter(|t| actionable(t))
    {
        return Ok(target(Subject::Export, t));
    }
    let cancellation = outbound::task_of(conn, ORDER_CANCEL, id)?;
    match cancellation {
        Some(t) if actionable(&t) => Ok(target(Subject::Cancellation, &t)),
        other => anyhow::bail!(
            "order {id} is {export_status}{} (only a lost or failed export or cancellation can be \
             resent or dismissed); nothing changed",
            other
                .map(|t| format!(
                    " and its cancellation is {}",
                    crate::orders::CancelState::of(t.state).as_str()
                ))
                .unwrap_or_default()
        ),
    }
}

fn every_lost(conn: &mut DbConnection) -> anyhow::Result<Vec<Target>> {
    let mut targets = Vec::new();
    for subject in [Subject::Export, Subject::Cancellation] {
        let lost = outbound::tasks_in_state(conn, subject.task(), TaskState::Lost)?;
        let refs: Vec<&str> = lost.iter().map(|t| t.subject.as_str()).collect();
        let orders: HashMap<String, (i64, String)> = orders::table
            .filter(orders::increment_id.eq_any(&refs))
            .select((orders::increment_id, orders::id, orders::export_status))
            .load::<(String, i64, String)>(conn)?
            .into_iter()
            .map(|(r, id, s)| (r, (id, s)))
            .collect();
        let mut of_kind = Vec::with_capacity(lost.len());
        for t in lost {
            let Some((order_id, status)) = orders.get(&t.subject) else {
                continue;
            };
            of_kind.push(Target {
                order_id: *order_id,
                increment_id: t.subject.clone(),
                subject,
                task_id: t.id,
                seen: t.state,
                export_status: db::text_enum::read(status)?,
            });
        }
        // Oldest order first, as before.
        of_kind.sort_by_key(|t| t.order_id);
        targets.extend(of_kind);
    }
    Ok(targets)
}

fn export_event(t: &Target, action: Action, actor: &str) -> NewEvent {
    let verb = match action {
        Action::Resend => "resend",
        Action::Dismiss => "dismiss",
    };
    NewEvent {
        kind: feed::ORDER_EXPORT_STATUS_CHANGED,
        payload: serde_json::json!({
            "order": t.increment_id, "status": export_status(action).as_str(),
            "previous": t.export_status.as_str(),
            "message": format!("{verb} by {actor}"), "attempts": 0,
        }),
    }
}
