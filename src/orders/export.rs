//! An order's tasks on the outbound queue and its export status summary: what orders (stored,
//! cancelled) and shipments (completing an order) change in their own transactions, and what the
//! warehouse channel reads and settles. The channel imports this module, never the other way.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::ChannelSettings;
use crate::db::DbConnection;
use crate::db::schema::orders;
use crate::feed::{self, NewEvent};
use crate::outbound::{self, TaskKind};

/// Sending an order (`remoteorder/imports/importitems.xml`, operation `insert`).
pub const ORDER_INSERT: TaskKind = TaskKind {
    channel: outbound::WAREHOUSE,
    action: "order.insert",
};

/// Cancelling an exported order (`remoteorder/order/cancel.xml`).
pub const ORDER_CANCEL: TaskKind = TaskKind {
    channel: outbound::WAREHOUSE,
    action: "order.cancel",
};

/// Order statuses that mean cancelled.
pub const CANCELLED_STATUSES: [&str; 2] = ["canceled", "cancelled"];

/// What an order's export status says once shipments completed it before wharf exported it.
pub const SHIPPED_BEFORE_EXPORT: &str = "shipped before export";

/// A stored order's export task. Every order gets one when it is stored (its export status starts
/// `pending`); whether it is exportable yet (status, virtual, date) is decided when it is claimed,
/// with the settings of that moment, so storing an order needs no export settings. Continuous
/// exporters are told ([`outbound::announce`]): the order may be exportable already.
///
/// Each file channel (`kind = "sftp"`, of `channels`) with an `export_dir` that takes orders of
/// `source` gets its own task too: its order files follow the same rules.
pub fn order_stored(
    conn: &mut DbConnection,
    increment_id: &str,
    source: &str,
    channels: &[ChannelSettings],
    now: NaiveDateTime,
) -> QueryResult<()> {
    outbound::enqueue(conn, ORDER_INSERT, &[increment_id], now)?;
    for c in channels.iter().filter(|c| takes_order_files(c, source)) {
        outbound::enqueue(conn, order_file(&c.name), &[increment_id], now)?;
    }
    outbound::announce(conn)
}

/// Whether file channel `c` writes orders of `source` to files.
pub fn takes_order_files(c: &ChannelSettings, source: &str) -> bool {
    c.is_files()
        && !c.export_dir.is_empty()
        && (c.sources.is_empty() || c.sources.iter().any(|s| s == source))
}

/// The action of an order's task on a file channel (the same word as the warehouse's).
pub const ORDER_FILE_ACTION: &str = "order.insert";

/// An order's task on file channel `name`: to go out in one of its order files.
pub fn order_file(name: &str) -> TaskKind {
    TaskKind {
        channel: outbound::intern(name),
        action: ORDER_FILE_ACTION,
    }
}

/// A stored order changed (its status, what it holds): one still pending export may have become
/// exportable (invoiced, no longer virtual, its date in range), so continuous exporters are told.
pub fn order_changed(conn: &mut DbConnection, export_status: ExportStatus) -> QueryResult<()> {
    if export_status == ExportStatus::Pending {
        outbound::announce(conn)?;
    }
    Ok(())
}

/// An order cancelled: the warehouse is told when it has the order (`export_status` `exported`).
/// An order whose export is in flight gets its cancellation when that export settles as accepted
/// (see the order settle); one not exported yet is never sent (its status is no longer exportable).
pub fn order_cancelled(
    conn: &mut DbConnection,
    increment_id: &str,
    export_status: ExportStatus,
    now: NaiveDateTime,
) -> QueryResult<()> {
    if export_status == ExportStatus::Exported {
        outbound::enqueue(conn, ORDER_CANCEL, &[increment_id], now)?;
        outbound::announce(conn)?;
    }
    Ok(())
}

/// Export statuses from which a completing shipment turns the order `skipped`: the warehouse has not
/// accepted the order from wharf, and now never needs to. (`dismissed` stays: support handled it.)
const NOT_YET_EXPORTED: [ExportStatus; 3] = [
    ExportStatus::Pending,
    ExportStatus::Failed,
    ExportStatus::Lost,
];

/// An order shipped completely: if wharf has not exported it, it never will. Its task and its
/// export status become `skipped` in the caller's transaction, so no exporter claims it after that
/// commits; an exporter holding it right now keeps its lease, and its verdict settles the order
/// (accepted → `exported`; a refusal leaves `skipped`). Returns the feed event, if it changed.
pub fn skip_unexported(
    conn: &mut DbConnection,
    order_id: i64,
    increment_id: &str,
    export_status: &str,
) -> QueryResult<Option<NewEvent>> {
    let previous: ExportStatus = crate::db::text_enum::read(export_status)?;
    skip_export(
        conn,
        order_id,
        increment_id,
        previous,
        SHIPPED_BEFORE_EXPORT,
    )
}

/// An order the warehouse need never get (shipped before export, split into children that took
/// all of it): when wharf has not exported it, its task and export status become `skipped` with
/// `note`, in the caller's transaction, the order row locked. Returns the feed event, if it
/// changed.
pub fn skip_export(
    conn: &mut DbConnection,
    order_id: i64,
    increment_id: &str,
    previous: ExportStatus,
    note: &str,
) -> QueryResult<Option<NewEvent>> {
    if !NOT_YET_EXPORTED.contains(&previous) {
        return Ok(None);
    }
    let now = crate::db::now();
    let attempts = outbound::task_of(conn, ORDER_INSERT, increment_id)?.map_or(0, |t| t.attempts);
    outbound::skip_on_every_channel(conn, ORDER_INSERT.action, increment_id, note, now)?;
    diesel::update(orders::table.find(order_id))
        .set(orders::export_status.eq(ExportStatus::Skipped.as_str()))
        .execute(conn)?;
    Ok(Some(NewEvent {
        kind: feed::ORDER_EXPORT_STATUS_CHANGED,
        payload: serde_json::json!({
            "order": increment_id,
            "status": ExportStatus::Skipped.as_str(),
            "previous": previous.as_str(),
            "message": note,
            "attempts": attempts,
        }),
    }))
}

// The summary of an order's `order.insert` task, which the settle step writes; the API filters
// and the feed read it.
crate::text_enum! {
    /// Where an order's export to the warehouse stands (the `orders.export_status` column).
    #[derive(Serialize, Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum ExportStatus: "order export status" {
        /// Waiting to be sent (or not exportable yet: not invoiced, virtual).
        Pending = "pending",
        /// Accepted by the warehouse (or it already had it).
        Exported = "exported",
        /// Refused or missing from the import report; retried with backoff.
        Failed = "failed",
        /// Refused `max_attempts` times; waits for support to resend or dismiss it.
        Lost = "lost",
        /// Handled by hand by support; never sent.
        Dismissed = "dismissed",
        /// Shipped before it was exported ("shipped before export"); never sent.
        Skipped = "skipped",
    }
}

/// Writes the export status of orders `ids` (and `exported_at` when they were accepted).
pub fn set_export_status(
    conn: &mut DbConnection,
    ids: &[i64],
    status: ExportStatus,
    exported_at: Option<NaiveDateTime>,
) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    let orders = orders::table.filter(orders::id.eq_any(ids));
    match exported_at {
        Some(at) => diesel::update(orders)
            .set((
                orders::export_status.eq(status.as_str()),
                orders::exported_at.eq(Some(at)),
            ))
            .execute(conn),
        None => diesel::update(orders)
            .set(orders::export_status.eq(status.as_str()))
            .execute(conn),
    }
}

/// Locks the rows of orders `ids` until the transaction ends (PostgreSQL; SQLite's write
/// transaction already excludes every other writer). Whoever writes an order's export task and
/// its export status locks the order first, as shipments and storefront updates do, so no two of
/// them wait for each other's rows.
pub fn lock_orders(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<()> {
    if let DbConnection::Postgresql(c) = conn
        && !ids.is_empty()
    {
        orders::table
            .filter(orders::id.eq_any(ids))
            .order(orders::id)
            .select(orders::id)
            .for_update()
            .load::<i64>(c)?;
    }
    Ok(())
}
