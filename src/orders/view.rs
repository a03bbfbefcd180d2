//! Reading orders for the storefront: the export and cancellation details of the order view (from
//! the order's warehouse tasks), and the keyset listing a storefront reconciles with.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::export::{CANCELLED_STATUSES, ORDER_CANCEL, ORDER_INSERT};
use super::{ExportState, ExportStatus, OrderError, OrderView, SupportAction, SupportActionKind};
use crate::db::DbConnection;
use crate::db::schema::orders;
use crate::outbound::{self, TaskState};

/// The export state of order `increment_id`, whose status column reads `status`.
pub(super) fn export_state(
    conn: &mut DbConnection,
    increment_id: &str,
    status: ExportStatus,
    exported_at: Option<NaiveDateTime>,
) -> QueryResult<ExportState> {
    let task = outbound::task_of(conn, ORDER_INSERT, increment_id)?;
    let action = match &task {
        Some(t) => outbound::last_action(conn, t.id)?,
        None => None,
    };
    let task = task.as_ref();
    // A retry time only means something while a retry is pending.
    let next_attempt_at = match status {
        ExportStatus::Failed => task.and_then(|t| t.run_after).map(|t| t.and_utc()),
        _ => None,
    };
    Ok(ExportState {
        status,
        exported_at: exported_at.map(|t| t.and_utc()),
        attempts: task.map_or(0, |t| t.attempts),
        last_error: task.and_then(|t| t.last_error.clone()),
        next_attempt_at,
        note: task.and_then(|t| t.note.clone()),
        support_action: action.map(|a| SupportAction {
            action: match a.action {
                outbound::SupportAction::Dismiss => SupportActionKind::Dismiss,
                outbound::SupportAction::Resend => SupportActionKind::Resend,
            },
            by: a.actor,
            at: a.at.and_utc(),
            reason: a.reason,
        }),
    })
}

/// Where the cancellation of an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CancelState {
    /// To be sent (again, after a try the warehouse did not answer, when `last_error` is set).
    Pending,
    /// The warehouse confirmed it.
    Sent,
    /// The warehouse refused it; it is sent again at `next_attempt_at`.
    Failed,
    /// Refused `max_attempts` times; waits for support (`wharf orders lost`).
    Lost,
    /// Handled by hand by support; not sent.
    Dismissed,
}

impl CancelState {
    /// How a cancellation task's state reads in the order view.
    pub fn of(state: TaskState) -> CancelState {
        match state {
            // A skipped or awaiting cancellation does not occur on the warehouse channel (only
            // exports are skipped; the warehouse answers at once); shown as pending rather than
            // failing the view.
            TaskState::Pending | TaskState::Skipped | TaskState::Awaiting => CancelState::Pending,
            TaskState::Done => CancelState::Sent,
            TaskState::Failed => CancelState::Failed,
            TaskState::Lost | TaskState::Dead => CancelState::Lost,
            TaskState::Dismissed => CancelState::Dismissed,
        }
    }

    /// The word shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelState::Pending => "pending",
            CancelState::Sent => "sent",
            CancelState::Failed => "failed",
            CancelState::Lost => "lost",
            CancelState::Dismissed => "dismissed",
        }
    }
}

/// The cancellation of an exported order at the warehouse, as the order view shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CancellationView {
    /// `pending`, `sent`, `failed`, `lost` or `dismissed`.
    pub state: CancelState,
    /// Times the warehouse refused it.
    pub attempts: i32,
    /// Why the last try did not go through.
    pub last_error: Option<String>,
    /// When it is sent again (null: at the next export run, or not at all).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the warehouse confirmed it.
    pub sent_at: Option<DateTime<Utc>>,
}

/// The cancellation of an order, or `None` when none is involved (not cancelled, or never exported).
pub(super) fn cancellation(
    conn: &mut DbConnection,
    increment_id: &str,
    order_status: &str,
    export_status: ExportStatus,
) -> QueryResult<Option<CancellationView>> {
    Ok(match outbound::task_of(conn, ORDER_CANCEL, increment_id)? {
        Some(t) => Some(CancellationView {
            state: CancelState::of(t.state),
            attempts: t.attempts,
            last_error: t.last_error,
            next_attempt_at: t.run_after.map(|t| t.and_utc()),
            sent_at: t.done_at.map(|t| t.and_utc()),
        }),
        // Cancelled after export, and its task not there yet (it is added with the cancel, or when
        // an export in flight at the cancel settles).
        None if CANCELLED_STATUSES.contains(&order_status)
            && export_status == ExportStatus::Exported =>
        {
            Some(CancellationView {
                state: CancelState::Pending,
                attempts: 0,
                last_error: None,
                next_attempt_at: None,
                sent_at: None,
            })
        }
        None => None,
    })
}

/// Which orders a listing returns.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only orders in this status (`processing`, `complete`, `canceled`, …).
    pub status: Option<String>,
    /// Only orders from this source (`web`, `affiliate`, `marketplace:amazon`).
    pub source: Option<String>,
    /// Only orders whose export is in this status.
    pub export_status: Option<ExportStatus>,
    /// Only orders changed strictly after this time.
    pub updated_after: Option<DateTime<Utc>>,
}

/// Where a listing page ends: the (`updated_at`, internal id) of its last order. The next page
/// starts strictly after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderPosition {
    /// When the order last changed.
    pub updated_at: NaiveDateTime,
    /// Its internal id (breaks ties between orders changed in the same microsecond).
    pub id: i64,
}

/// The orders in a listing page, and the position of its last one.
#[derive(Debug, Clone)]
pub struct OrderPage {
    /// Orders, least recently changed first.
    pub orders: Vec<OrderView>,
    /// Position of the last order, when the page is full (more may follow).
    pub next: Option<OrderPosition>,
}

/// Up to `limit` orders matching `filter`, ordered by (`updated_at`, id), strictly after `after`.
///
/// Keyset paging: an order changed while a client pages through gets a later `updated_at`, so it
/// moves behind the client's position and comes again on a later page, with its new state; an
/// order not changed is returned exactly once.
pub fn list(
    conn: &mut DbConnection,
    filter: &ListFilter,
    after: Option<OrderPosition>,
    limit: i64,
) -> Result<OrderPage, OrderError> {
    let mut query = orders::table
        .select((orders::updated_at, orders::id, orders::increment_id))
        .order((orders::updated_at, orders::id))
        .limit(limit)
        .into_boxed();
    if let Some(status) = &filter.status {
        query = query.filter(orders::status.eq(status.clone()));
    }
    if let Some(source) = &filter.source {
        query = query.filter(orders::source.eq(source.clone()));
    }
    if let Some(export_status) = filter.export_status {
        query = query.filter(orders::export_status.eq(export_status.as_str()));
    }
    if let Some(t) = filter.updated_after {
        query = query.filter(orders::updated_at.gt(t.naive_utc()));
    }
    if let Some(p) = after {
        query = query.filter(
            orders::updated_at
                .gt(p.updated_at)
                .or(orders::updated_at.eq(p.updated_at).and(orders::id.gt(p.id))),
        );
    }
    let keys: Vec<(NaiveDateTime, i64, String)> = query.load(conn)?;
    let next = match keys.last() {
        Some((updated_at, id, _)) if keys.len() as i64 == limit => Some(OrderPosition {
            updated_at: *updated_at,
            id: *id,
        }),
        _ => None,
    };
    let mut views = Vec::with_capacity(keys.len());
    for (_, _, increment_id) in &keys {
        views.push(super::get(conn, increment_id)?);
    }
    Ok(OrderPage {
        orders: views,
        next,
    })
}
