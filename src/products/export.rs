//! A product's task on the outbound queue: enqueued in the transaction that stores or changes it.

use chrono::NaiveDateTime;
use diesel::QueryResult;

use crate::db::DbConnection;
use crate::outbound::{self, TaskKind};

/// Sending a product (`remotewarehouse/imports/importitems.xml`, operation `merge`).
pub const PRODUCT_MERGE: TaskKind = TaskKind {
    channel: outbound::WAREHOUSE,
    action: "product.merge",
};

/// A product stored or changed: it is sent (again). A change while it is being sent is caught
/// when that send settles (the product's `updated_at` is compared).
pub fn product_changed(conn: &mut DbConnection, sku: &str, now: NaiveDateTime) -> QueryResult<()> {
    outbound::enqueue(conn, PRODUCT_MERGE, &[sku], now)?;
    Ok(())
}
