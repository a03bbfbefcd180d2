//! Shipments the warehouse reports. Received and stored whole like inventory; applying them to orders
//! (partial and complete fulfilment) comes with the storefront's orders.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{
    order_lines, orders, request_lines, request_shipments, request_tracking, shipment_lines,
    shipment_tracking, shipments,
};
use crate::db::{self, DbConnection};
use crate::feed::{self, NewEvent};
use crate::queue::report::{ImportLine, Report};

/// One shipped line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipmentLine {
    /// SKU shipped.
    pub sku: String,
    /// Stock source it left from (`default` unless named).
    pub source: String,
    /// Units shipped (> 0).
    pub qty: i32,
}

/// A whole shipment message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipmentMessage {
    /// The warehouse's message sequence id (> 0).
    pub message_seq_id: i64,
    /// The storefront order number (increment id).
    pub order_increment_id: String,
    /// What was shipped, at least one line.
    pub lines: Vec<ShipmentLine>,
    /// Comment for the shipment.
    pub comment: Option<String>,
    /// Send the customer the shipment e-mail.
    pub notify_customer: bool,
    /// Put the comment in that e-mail.
    pub include_comment: bool,
    /// Courier, e.g. `DPD`.
    pub courier_name: Option<String>,
    /// Courier service, e.g. `Next Day`.
    pub service_name: Option<String>,
    /// Tracking numbers: `trackingNumber` first, then each `tracks` item, without blanks or repeats.
    pub tracking_numbers: Vec<String>,
    /// When the parcel left, as the warehouse says.
    pub date_shipped: Option<NaiveDateTime>,
}

/// Applies the stored shipment request `request_id` to its order and returns the import report and
/// feed events. Runs inside the transaction that marks the request processed.
///
/// - Duplicate only when the same (order, messageSeqId) already shipped; shipments otherwise add up.
/// - The order must exist and be shippable, each SKU must be on it, and no quantity may exceed what
///   is left to ship; any violation fails the whole shipment (nothing of it applied), with a message
///   naming the order, SKU and numbers.
/// - When every line has fully shipped the order becomes `complete`.
pub fn apply(conn: &mut DbConnection, request_id: i64, message_seq_id: i64) -> QueryResult<Report> {
    let now = db::now();
    type Header = (
        String,
        Option<String>,
        bool,
        bool,
        Option<String>,
        Option<String>,
        Option<NaiveDateTime>,
    );
    let (
        order_no,
        comment,
        notify_customer,
        include_comment,
        courier_name,
        service_name,
        date_shipped,
    ): Header = request_shipments::table
        .find(request_id)
        .select((
            request_shipments::order_increment_id,
            request_shipments::comment,
            request_shipments::notify_customer,
            request_shipments::include_comment,
            request_shipments::courier_name,
            request_shipments::service_name,
            request_shipments::date_shipped,
        ))
        .first(conn)?;
    let lines: Vec<(i32, String, String, i32)> = request_lines::table
        .filter(request_lines::request_id.eq(request_id))
        .order(request_lines::line_no)
        .select((
            request_lines::line_no,
            request_lines::sku,
            request_lines::source,
            request_lines::qty,
        ))
        .load(conn)?;
    let tracking: Vec<String> = request_tracking::table
        .filter(request_tracking::request_id.eq(request_id))
        .order(request_tracking::position)
        .select(request_tracking::tracking_number)
        .load(conn)?;

    let mut report = Report::default();
    let line = |line_no: i32, sku: &str, source: &str, qty: i32, result: &str, message: String| {
        ImportLine {
            request_id,
            line_no,
            seq: Some(message_seq_id),
            sku: sku.to_string(),
            source: source.to_string(),
            units_received: qty,
            units_adjusted_orders: 0,
            units_adjusted_quotes: 0,
            stored_qty: None,
            result: result.to_string(),
            message,
            created_at: now,
            reference: Some(order_no.clone()),
        }
    };

    // The order row is locked for the rest of the transaction: two shipments of one order apply one
    // after the other.
    let query = orders::table
        .filter(orders::increment_id.eq(&order_no))
        .select((orders::id, orders::status, orders::is_virtual));
    let order: Option<(i64, String, bool)> = match conn {
        DbConnection::Postgresql(c) => query.for_update().first(c).optional()?,
        // SQLite's write transaction (BEGIN IMMEDIATE) already excludes every other writer.
        DbConnection::Sqlite(c) => query.first(c).optional()?,
    };
    let failure = |report: &mut Report, reason: String| {
        for (i, (line_no, sku, source, qty)) in lines.iter().enumerate() {
            let message = if i == 0 {
                reason.clone()
            } else {
                format!("Not applied: {reason}")
            };
            report
                .lines
                .push(line(*line_no, sku, source, *qty, "Failure", message));
        }
        report.summary.failures = lines.len() as i32;
    };
    let Some((order_id, status, is_virtual)) = order else {
        failure(
            &mut report,
            format!(
                "Order {order_no} does not exist in wharf; shipment {message_seq_id} not applied"
            ),
        );
        return Ok(report);
    };
    let already: bool = diesel::select(diesel::dsl::exists(
        shipments::table
            .filter(shipments::order_id.eq(order_id))
            .filter(shipments::message_seq_id.eq(message_seq_id)),
    ))
    .get_result(conn)?;
    if already {
        for (line_no, sku, source, qty) in &lines {
            report.lines.push(line(*line_no, sku, source, *qty, "Duplicate",
                format!("Duplicate Shipment Request Ignored: order {order_no} already has shipment {message_seq_id}")));
        }
        report.summary.duplicates = lines.len() as i32;
        return Ok(report);
    }
    if is_virtual || crate::orders::UNSHIPPABLE_STATUSES.contains(&status.as_str()) {
        let why = if is_virtual {
            "virtual".to_string()
        } else {
            status.clone()
        };
        failure(
            &mut report,
            format!(
                "Order {order_no} is {why} and cannot be shipped; shipment {message_seq_id} not applied"
            ),
        );
        return Ok(report);
    }

    let mut order_lines_now: Vec<(i32, String, i32, i32)> = order_lines::table
        .filter(order_lines::order_id.eq(order_id))
        .order(order_lines::line_no)
        .select((
            order_lines::line_no,
            order_lines::sku,
            order_lines::qty,
            order_lines::qty_shipped,
        ))
        .load(conn)?;
    for (_, sku, _, qty) in &lines {
        let (ordered, shipped) = order_lines_now
            .iter()
            .filter(|l| &l.1 == sku)
            .fold((0, 0), |(o, s), l| (o + l.2, s + l.3));
        if ordered == 0 {
            failure(
                &mut report,
                format!(
                    "SKU {sku} is not on order {order_no}; shipment {message_seq_id} not applied"
                ),
            );
            return Ok(report);
        }
        if *qty > ordered - shipped {
            failure(
                &mut report,
                format!(
                    "Cannot ship {qty} of SKU {sku} on order {order_no}: {ordered} ordered, {shipped} already shipped, {} left to ship; shipment {message_seq_id} not applied",
                    ordered - shipped
                ),
            );
            return Ok(report);
        }
    }

    // Everything checks out: record the shipment and add it to the order's lines.
    let shipment_id: i64 =
        crate::with_backend!(&mut *conn, |c| diesel::insert_into(shipments::table)
            .values((
                shipments::request_id.eq(request_id),
                shipments::order_id.eq(order_id),
                shipments::message_seq_id.eq(message_seq_id),
                shipments::courier_name.eq(&courier_name),
                shipments::service_name.eq(&service_name),
                shipments::comment.eq(&comment),
                shipments::notify_customer.eq(notify_customer),
                shipments::include_comment.eq(include_comment),
                shipments::date_shipped.eq(date_shipped),
                shipments::created_at.eq(now),
            ))
            .returning(shipments::id)
            .get_result(c))?;
    for (line_no, sku, source, qty) in &lines {
        diesel::insert_into(shipment_lines::table)
            .values((
                shipment_lines::shipment_id.eq(shipment_id),
                shipment_lines::line_no.eq(line_no),
                shipment_lines::sku.eq(sku),
                shipment_lines::qty.eq(qty),
            ))
            .execute(conn)?;
        // Fill the order's lines for this SKU in order.
        let mut left = *qty;
        for l in order_lines_now.iter_mut().filter(|l| &l.1 == sku) {
            let here = left.min(l.2 - l.3);
            if here > 0 {
                l.3 += here;
                left -= here;
                diesel::update(order_lines::table.find((order_id, l.0)))
                    .set(order_lines::qty_shipped.eq(l.3))
                    .execute(conn)?;
            }
        }
        let message = format!("Shipped {qty} of SKU {sku} on order {order_no}");
        report
            .lines
            .push(line(*line_no, sku, source, *qty, "Success", message));
    }
    for (i, number) in tracking.iter().enumerate() {
        diesel::insert_into(shipment_tracking::table)
            .values((
                shipment_tracking::shipment_id.eq(shipment_id),
                shipment_tracking::position.eq(i as i32 + 1),
                shipment_tracking::tracking_number.eq(number),
            ))
            .execute(conn)?;
    }
    report.summary.successes = lines.len() as i32;
    report.events.push(NewEvent {
        kind: feed::SHIPMENT_CREATED,
        payload: serde_json::json!({
            "order": order_no,
            "message_seq_id": message_seq_id,
            "lines": lines.iter().map(|(_, sku, _, qty)| serde_json::json!({"sku": sku, "qty": qty})).collect::<Vec<_>>(),
            "tracking_numbers": tracking,
            "courier_name": courier_name,
            "service_name": service_name,
            "notify_customer": notify_customer,
            "include_comment": include_comment,
            "comment": comment,
        }),
    });
    let complete = order_lines_now.iter().all(|l| l.3 >= l.2);
    diesel::update(orders::table.find(order_id))
        .set((
            orders::updated_at.eq(now),
            orders::status.eq(if complete {
                crate::orders::COMPLETE
            } else {
                status.as_str()
            }),
        ))
        .execute(conn)?;
    if complete {
        report.events.push(NewEvent {
            kind: feed::ORDER_COMPLETED,
            payload: serde_json::json!({ "order": order_no }),
        });
    }
    Ok(report)
}
