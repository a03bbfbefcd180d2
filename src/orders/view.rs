//! Reading orders for the storefront: the export details of the order view, and the keyset listing
//! a storefront reconciles with.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::{ExportState, ExportStatus, OrderError, OrderView, SupportAction, SupportActionKind};
use crate::db::DbConnection;
use crate::db::schema::{order_export_actions, orders};

/// The export columns of an order besides its status.
#[derive(Queryable)]
struct ExportRow {
    attempts: i32,
    error: Option<String>,
    next_at: Option<NaiveDateTime>,
    note: Option<String>,
}

/// The last resend or dismissal of an order's export.
#[derive(Queryable)]
struct ActionRow {
    action: String,
    actor: String,
    reason: Option<String>,
    at: NaiveDateTime,
}

/// The export state of order `id`, whose status column reads `status`.
pub(super) fn export_state(
    conn: &mut DbConnection,
    id: i64,
    status: &str,
    exported_at: Option<NaiveDateTime>,
) -> Result<ExportState, OrderError> {
    let status = ExportStatus::parse(status).ok_or_else(|| {
        // Only wharf writes the column; an unknown value means a newer wharf wrote it.
        diesel::result::Error::DeserializationError(
            format!("order export status {status:?} is not one this wharf knows").into(),
        )
    })?;
    let row: ExportRow = orders::table
        .find(id)
        .select((
            orders::export_attempts,
            orders::export_error,
            orders::export_next_at,
            orders::export_note,
        ))
        .first(conn)?;
    let action: Option<ActionRow> = order_export_actions::table
        .filter(order_export_actions::order_id.eq(id))
        .filter(order_export_actions::action.eq_any(["resend", "dismiss"]))
        .order(order_export_actions::id.desc())
        .select((
            order_export_actions::action,
            order_export_actions::actor,
            order_export_actions::reason,
            order_export_actions::at,
        ))
        .first(conn)
        .optional()?;
    // A retry time only means something while a retry is pending.
    let next_attempt_at = match status {
        ExportStatus::Failed => row.next_at.map(|t| t.and_utc()),
        _ => None,
    };
    Ok(ExportState {
        status,
        exported_at: exported_at.map(|t| t.and_utc()),
        attempts: row.attempts,
        last_error: row.error,
        next_attempt_at,
        note: row.note,
        support_action: action.map(|a| SupportAction {
            action: if a.action == "dismiss" {
                SupportActionKind::Dismiss
            } else {
                SupportActionKind::Resend
            },
            by: a.actor,
            at: a.at.and_utc(),
            reason: a.reason,
        }),
    })
}

/// Which orders a listing returns.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only orders in this status (`processing`, `complete`, `canceled`, …).
    pub status: Option<String>,
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
