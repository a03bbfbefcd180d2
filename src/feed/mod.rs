//! The change feed the storefront polls: events in commit order with strictly increasing ids.
//!
//! Ids come from the one-row `feed_counter`, bumped inside the transaction that writes the events.
//! Its row lock is held until that transaction commits, so no transaction can commit a lower id after a
//! higher one is visible: a reader that stores the last id it saw never misses or re-reads an event.
//! Writers take the counter as their last statement, so the lock is held only for the commit.

pub mod store;

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use serde::Serialize;
use tokio::sync::Notify;

use crate::db::wake::Topic;
use crate::db::{self, DbConnection};

/// Stock of a SKU changed.
pub const STOCK_CHANGED: &str = "stock.changed";
/// A shipment was applied to an order.
pub const SHIPMENT_CREATED: &str = "shipment.created";
/// Every line of an order has shipped.
pub const ORDER_COMPLETED: &str = "order.completed";
/// An order's export status changed.
pub const ORDER_EXPORT_STATUS_CHANGED: &str = "order.export_status_changed";
/// An order was split into child orders (`POST /api/v1/orders/{increment_id}/split`): `{"order",
/// "children": [{"order", "lines": [{"sku", "qty"}]}], "kept": [{"sku", "qty"}]}`.
pub const ORDER_SPLIT: &str = "order.split";
/// A shipment could not be applied (nothing of it was): `{"order", "message_seq_id", "reason",
/// "sku"}`, `sku` naming the SKU at fault or null.
pub const SHIPMENT_FAILED: &str = "shipment.failed";

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// One of the kinds above.
    pub kind: &'static str,
    /// Its data, as JSON.
    pub payload: serde_json::Value,
}

/// An event as the storefront reads it. (The OpenAPI document replaces this derived schema with one
/// variant per kind, each with its typed `data`, kept by the domain that writes it.)
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// Position in the feed; strictly increasing in commit order.
    pub id: i64,
    /// `stock.changed`, `shipment.created`, `shipment.failed`, `order.completed`,
    /// `order.export_status_changed` or `order.split`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The event's data.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// What long-polling readers wait on: woken by [`wake_readers`] in this process and, on PostgreSQL,
/// by events other processes commit (see [`db::wake`]).
pub fn notifier() -> &'static Notify {
    Topic::Feed.notifier()
}

/// Wakes this process's long-polling readers; call after committing a transaction that appended
/// events.
pub fn wake_readers() {
    db::wake::signal(Topic::Feed);
}

/// Appends events; call as the last statement of the writing transaction, and [`wake_readers`]
/// after it commits. Readers in other processes are woken by the commit itself (PostgreSQL).
pub fn append(conn: &mut DbConnection, events: &[NewEvent]) -> QueryResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    db::wake::in_tx(conn, Topic::Feed)?;
    let n = events.len() as i64;
    let last = store::bump_counter(conn, n)?;
    let rows: Vec<(&str, String)> = events
        .iter()
        .map(|e| (e.kind, e.payload.to_string()))
        .collect();
    store::insert_feed_events(conn, last - n + 1, &rows, db::now())
}

/// Events with id above `after`, oldest first, at most `limit`.
pub fn read(conn: &mut DbConnection, after: i64, limit: i64) -> QueryResult<Vec<Event>> {
    Ok(store::events_after(conn, after, limit)?
        .into_iter()
        .map(|row| Event {
            id: row.id,
            kind: row.kind,
            data: serde_json::from_str(&row.payload).unwrap_or(serde_json::Value::Null),
            created_at: row.created_at.and_utc(),
        })
        .collect())
}

/// The id of the newest event (0 while the feed is empty): the counter the writers bump, read after
/// their commit, so every id up to it is readable.
pub fn head(conn: &mut DbConnection) -> QueryResult<i64> {
    store::counter(conn)
}
