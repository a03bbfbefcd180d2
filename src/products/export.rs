//! A product's task on the outbound queue: enqueued in the transaction that stores or changes it.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::products;
use crate::outbound::{self, TaskKind};

/// Sending a product (`remotewarehouse/imports/importitems.xml`, operation `merge`).
pub const PRODUCT_MERGE: TaskKind = TaskKind {
    channel: outbound::WAREHOUSE,
    action: "product.merge",
};

/// A product stored or changed: it is sent (again). A change while it is being sent is caught
/// when that send settles (the product's `updated_at` is compared); one the warehouse kept refusing
/// starts over, so fixing the product is what sends it again. Continuous exporters are told
/// ([`outbound::announce`]).
pub fn product_changed(conn: &mut DbConnection, sku: &str, now: NaiveDateTime) -> QueryResult<()> {
    outbound::start_over(conn, PRODUCT_MERGE, sku, now)?;
    outbound::enqueue(conn, PRODUCT_MERGE, &[sku], now)?;
    outbound::announce(conn)
}

/// Whether product `sku` is still the version `version` that was sent, taking its row lock (a
/// no-op write) so a storefront change either came before (the task stays pending) or waits for
/// the caller's commit (it then finds the task done and adds a new one).
pub fn lock_if_unchanged(
    conn: &mut DbConnection,
    sku: &str,
    version: NaiveDateTime,
) -> QueryResult<bool> {
    let n = diesel::update(
        products::table
            .find(sku)
            .filter(products::updated_at.eq(version)),
    )
    .set(products::exported_at.eq(products::exported_at))
    .execute(conn)?;
    Ok(n == 1)
}

/// Records that the warehouse accepted product `sku` at `now`.
pub fn exported(conn: &mut DbConnection, sku: &str, now: NaiveDateTime) -> QueryResult<()> {
    diesel::update(products::table.find(sku))
        .set(products::exported_at.eq(Some(now)))
        .execute(conn)?;
    Ok(())
}
