//! What is pushed for each order, built at send time from the order as it is then (so the latest
//! state wins: a ship carries every tracking number the order has by now). The shapes are those
//! of the Shopping Feed API's order operations (as its PHP SDK sends them):
//!
//! - `ship`: `reference`, `channelName`, `carrier`, `trackingNumber`, `trackingLink`, and the
//!   `items` shipped (`reference` = SKU, `quantity`);
//! - `cancel`: `reference`, `channelName`, `reason`;
//! - `refund`: `reference`, `channelName`, `refund: {shipping, products: [{reference, quantity}]}`
//!   (the API's refund has no reason field; wharf refunds the whole order and its shipping, as the
//!   shop's `refunded`/`closed` status says).

use diesel::result::Error as DbError;
use serde_json::{Value, json};

use super::Operation;
use crate::db::DbConnection;
use crate::orders::{self, OrderError, OrderView};
use crate::outbound::Task;

/// The channel name the API knows an order by: the marketplace of a `marketplace:<name>` source,
/// else the source itself.
pub(super) fn channel_name(source: &str) -> &str {
    source.strip_prefix("marketplace:").unwrap_or(source)
}

/// A claimed batch, built: the tasks with their order's operation, and those that cannot be built
/// with why (they fail on their own; the rest of the batch goes).
pub(super) struct Built {
    pub orders: Vec<(Task, Value)>,
    pub unbuilt: Vec<(Task, String)>,
}

/// Builds each task's order operation from its order as stored now. Storage errors other than an
/// order that is gone or no longer reads stop the batch.
pub(super) fn build(
    conn: &mut DbConnection,
    op: Operation,
    tasks: Vec<Task>,
) -> anyhow::Result<Built> {
    let mut built = Built {
        orders: Vec::with_capacity(tasks.len()),
        unbuilt: Vec::new(),
    };
    for task in tasks {
        match orders::get(conn, &task.subject) {
            Ok(view) => {
                let order = operation(op, &view);
                built.orders.push((task, order));
            }
            Err(OrderError::NotFound(_)) => {
                let why = format!(
                    "order {} no longer exists in wharf, so there is nothing to {}; dismiss the task",
                    task.subject,
                    op.word()
                );
                built.unbuilt.push((task, why));
            }
            Err(OrderError::Db(DbError::DeserializationError(e))) => {
                let why = format!(
                    "order {}'s stored document no longer reads ({e}); it cannot be pushed",
                    task.subject
                );
                built.unbuilt.push((task, why));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(built)
}

/// The order operation `op` of `view`.
pub(super) fn operation(op: Operation, view: &OrderView) -> Value {
    let reference = view.increment_id.as_str();
    let channel = channel_name(&view.source);
    match op {
        Operation::Ship => ship(view),
        Operation::Cancel => json!({
            "reference": reference,
            "channelName": channel,
            "reason": format!("cancelled in the shop (order status {})", view.status),
        }),
        Operation::Refund => json!({
            "reference": reference,
            "channelName": channel,
            "refund": {"shipping": true, "products": items(view, |l| l.line.qty)},
        }),
    }
}

/// A ship: every tracking number of every shipment (comma-separated, once each), the carrier of
/// the latest shipment that names one, and what has shipped of each SKU.
fn ship(view: &OrderView) -> Value {
    let mut tracking: Vec<&str> = Vec::new();
    for number in &view.tracking_numbers {
        if !tracking.contains(&number.as_str()) {
            tracking.push(number);
        }
    }
    let carrier = view
        .shipments
        .iter()
        .rev()
        .find_map(|s| s.courier_name.as_deref())
        .unwrap_or_default();
    json!({
        "reference": view.increment_id,
        "channelName": channel_name(&view.source),
        "carrier": carrier,
        "trackingNumber": tracking.join(","),
        // wharf's shipments carry no tracking link (the warehouse sends numbers only).
        "trackingLink": "",
        "items": items(view, |l| l.qty_shipped),
    })
}

/// The order's SKUs (in line order, each once) with the units `qty` counts per line, those with
/// none left out.
fn items(view: &OrderView, qty: impl Fn(&orders::OrderLineView) -> i32) -> Vec<Value> {
    let mut per_sku: Vec<(&str, i64)> = Vec::new();
    for line in &view.lines {
        let n = i64::from(qty(line));
        match per_sku.iter_mut().find(|(sku, _)| *sku == line.line.sku) {
            Some((_, total)) => *total += n,
            None => per_sku.push((&line.line.sku, n)),
        }
    }
    per_sku
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(sku, n)| json!({"reference": sku, "quantity": n}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_channel_name_is_the_marketplace() {
        assert_eq!(channel_name("marketplace:amazon"), "amazon");
        assert_eq!(channel_name("affiliate"), "affiliate");
    }
}
