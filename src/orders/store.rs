//! Writes to the orders' tables made on behalf of other domains, so that only `orders` writes
//! `orders` and `order_lines`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::COMPLETE;
use crate::db::DbConnection;
use crate::db::schema::{order_lines, orders};

/// How much of one order line has shipped now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineShipped {
    /// The order line.
    pub line_no: i32,
    /// Units shipped of it, all shipments together.
    pub qty_shipped: i32,
}

/// Records what a shipment added to order `order_id`'s lines, and marks the order `complete` when
/// it completed it (`updated_at` moves to `now` either way). Runs in the shipment's transaction,
/// with the order row locked.
pub fn record_shipped(
    conn: &mut DbConnection,
    order_id: i64,
    lines: &[LineShipped],
    complete: bool,
    now: NaiveDateTime,
) -> QueryResult<()> {
    for l in lines {
        diesel::update(order_lines::table.find((order_id, l.line_no)))
            .set(order_lines::qty_shipped.eq(l.qty_shipped))
            .execute(conn)?;
    }
    let order = orders::table.find(order_id);
    if complete {
        diesel::update(order)
            .set((orders::status.eq(COMPLETE), orders::updated_at.eq(now)))
            .execute(conn)?;
    } else {
        diesel::update(order)
            .set(orders::updated_at.eq(now))
            .execute(conn)?;
    }
    Ok(())
}

/// The next push number of order `increment_id` (1, 2, …): channels send it so that their receiver
/// can drop an update older than one it already has. `None` when the order does not exist.
pub fn next_push_sequence(conn: &mut DbConnection, increment_id: &str) -> QueryResult<Option<i64>> {
    crate::with_backend!(&mut *conn, |c| diesel::update(
        orders::table.filter(orders::increment_id.eq(increment_id))
    )
    .set(orders::push_sequence.eq(orders::push_sequence + 1))
    .returning(orders::push_sequence)
    .get_result(c)
    .optional())
}
