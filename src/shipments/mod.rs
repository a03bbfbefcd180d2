//! Shipments the warehouse reports. Received and stored whole like inventory; applying one to its order
//! is load → check (pure rules) → record, in the worker's transaction.

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use crate::db::schema::{
    order_lines, orders, request_lines, request_shipments, request_tracking, requests,
    shipment_lines, shipment_tracking, shipments,
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

/// Why a shipment was not applied. Written to its import report and to the feed
/// (`shipment.failed`), and logged by the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The order the shipment names.
    pub order: String,
    /// The SKU at fault, when one SKU is.
    pub sku: Option<String>,
    /// What is wrong, naming the order, SKU and numbers.
    pub reason: String,
}

/// What applying a shipment request did.
#[derive(Debug)]
pub struct Applied {
    /// The import report and feed events, to store in the applying transaction.
    pub report: Report,
    /// Set when the shipment failed as a whole (nothing of it applied).
    pub failure: Option<Failure>,
}

/// The shipment names an order wharf does not have yet, and its wait for it is not over: orders and
/// shipments race (the storefront may push the order after the warehouse shipped it), so the request
/// is tried again later instead of failing.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "order {order} is not known to wharf yet; shipment {message_seq_id} waits for it until {until} UTC"
)]
pub struct OrderNotKnownYet {
    /// The order the shipment names.
    pub order: String,
    /// The shipment's messageSeqId.
    pub message_seq_id: i64,
    /// When the shipment was received.
    pub received_at: NaiveDateTime,
    /// When the wait ends and the shipment fails if the order is still unknown.
    pub until: NaiveDateTime,
}

/// Why a shipment could not be applied now (a business failure is not an error: it is a report).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Try again later (see [`OrderNotKnownYet`]).
    #[error(transparent)]
    NotKnownYet(#[from] OrderNotKnownYet),
    /// Storage failed.
    #[error("database error: {0}")]
    Db(#[from] diesel::result::Error),
}

/// A stored shipment request, as the rules need it.
struct Request {
    id: i64,
    message_seq_id: i64,
    received_at: NaiveDateTime,
    header: Header,
    lines: Vec<RequestLine>,
    tracking: Vec<String>,
}

#[derive(Queryable)]
struct Header {
    order_no: String,
    comment: Option<String>,
    notify_customer: bool,
    include_comment: bool,
    courier_name: Option<String>,
    service_name: Option<String>,
    date_shipped: Option<NaiveDateTime>,
}

#[derive(Queryable)]
struct RequestLine {
    line_no: i32,
    sku: String,
    source: String,
    qty: i32,
}

/// The order a shipment is for, locked for the rest of the transaction.
#[derive(Queryable)]
struct Target {
    id: i64,
    status: String,
    is_virtual: bool,
    export_status: String,
}

/// One line of the order with what has shipped of it.
#[derive(Queryable)]
struct OrderLine {
    line_no: i32,
    sku: String,
    qty: i32,
    qty_shipped: i32,
}

/// Applies the stored shipment request `request_id` to its order and returns the import report and
/// feed events. Runs inside the transaction that marks the request processed.
///
/// - Duplicate only when the same (order, messageSeqId) already shipped; shipments otherwise add up.
/// - An order wharf does not know is waited for until `wait_for_order` after the request arrived
///   ([`ApplyError::NotKnownYet`]: roll back and try again later); after that the shipment fails.
/// - The order must be shippable, each SKU must be on it, and no SKU may ship more than is left of
///   it, all lines of the shipment for one SKU counted together whatever their source; any
///   violation fails the whole shipment (nothing of it applied) with a message naming the order, SKU
///   and numbers, and the feed carries `shipment.failed`.
/// - When every line has fully shipped the order becomes `complete`; if wharf had not exported it
///   yet, its export status becomes `skipped` ("shipped before export") and it is never exported.
pub fn apply(
    conn: &mut DbConnection,
    request_id: i64,
    message_seq_id: i64,
    wait_for_order: TimeDelta,
) -> Result<Applied, ApplyError> {
    let req = load(conn, request_id, message_seq_id)?;
    let Some(order) = lock_order(conn, &req.header.order_no)? else {
        let until = req.received_at + wait_for_order;
        if db::now() < until {
            return Err(OrderNotKnownYet {
                order: req.header.order_no.clone(),
                message_seq_id,
                received_at: req.received_at,
                until,
            }
            .into());
        }
        let waited = if wait_for_order > TimeDelta::zero() {
            format!(" (waited {} for it)", human(wait_for_order))
        } else {
            String::new()
        };
        let reason = format!(
            "Order {} does not exist in wharf{waited}; shipment {message_seq_id} not applied",
            req.header.order_no
        );
        return Ok(failed(&req, None, reason));
    };
    let already: bool = diesel::select(diesel::dsl::exists(
        shipments::table
            .filter(shipments::order_id.eq(order.id))
            .filter(shipments::message_seq_id.eq(message_seq_id)),
    ))
    .get_result(conn)?;
    if already {
        return Ok(duplicate(&req));
    }
    let mut lines: Vec<OrderLine> = order_lines::table
        .filter(order_lines::order_id.eq(order.id))
        .order(order_lines::line_no)
        .select((
            order_lines::line_no,
            order_lines::sku,
            order_lines::qty,
            order_lines::qty_shipped,
        ))
        .load(conn)?;
    if let Err((sku, reason)) = check(&req, &order, &lines) {
        return Ok(failed(&req, sku, reason));
    }
    let report = record(conn, &req, &order, &mut lines)?;
    Ok(Applied {
        report,
        failure: None,
    })
}

/// `15 min`, `90 s`.
fn human(d: TimeDelta) -> String {
    let secs = d.num_seconds();
    if secs % 60 == 0 {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

fn load(conn: &mut DbConnection, request_id: i64, message_seq_id: i64) -> QueryResult<Request> {
    let received_at: NaiveDateTime = requests::table
        .find(request_id)
        .select(requests::received_at)
        .first(conn)?;
    let header: Header = request_shipments::table
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
    let lines: Vec<RequestLine> = request_lines::table
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
    Ok(Request {
        id: request_id,
        message_seq_id,
        received_at,
        header,
        lines,
        tracking,
    })
}

/// The order row is locked for the rest of the transaction: two shipments of one order, or a
/// shipment and a storefront update of it, apply one after the other.
fn lock_order(conn: &mut DbConnection, order_no: &str) -> QueryResult<Option<Target>> {
    let query = orders::table
        .filter(orders::increment_id.eq(order_no))
        .select((
            orders::id,
            orders::status,
            orders::is_virtual,
            orders::export_status,
        ));
    match conn {
        DbConnection::Postgresql(c) => query.for_update().first(c).optional(),
        // SQLite's write transaction (BEGIN IMMEDIATE) already excludes every other writer.
        DbConnection::Sqlite(c) => query.first(c).optional(),
    }
}

/// Units of one SKU in a shipment, with the lines that carry them.
struct SkuUnits<'a> {
    sku: &'a str,
    /// All lines together, in i64: lines of up to `i32::MAX` each add up past `i32`.
    total: i64,
    carried: Vec<&'a RequestLine>,
}

/// The shipment's units per SKU, in the order the SKUs first appear. Fails (SKU, reason) only when
/// a total does not fit i64, which would take billions of lines (`soap.max_lines` and `max_body`
/// keep a message far below that), so a sum can never wrap into a wrong verdict.
fn units_per_sku(lines: &[RequestLine]) -> Result<Vec<SkuUnits<'_>>, (Option<String>, String)> {
    let mut out: Vec<SkuUnits<'_>> = Vec::new();
    for l in lines {
        let index = match out.iter().position(|u| u.sku == l.sku) {
            Some(i) => i,
            None => {
                out.push(SkuUnits {
                    sku: &l.sku,
                    total: 0,
                    carried: Vec::new(),
                });
                out.len() - 1
            }
        };
        let units = &mut out[index];
        units.total = units.total.checked_add(i64::from(l.qty)).ok_or_else(|| {
            (
                Some(l.sku.clone()),
                format!(
                    "The lines for SKU {} add up to more units than wharf can count",
                    l.sku
                ),
            )
        })?;
        units.carried.push(l);
    }
    Ok(out)
}

/// The rules a shipment must pass before anything of it is applied. On a violation: the SKU at
/// fault (if one is) and the reason.
fn check(
    req: &Request,
    order: &Target,
    lines: &[OrderLine],
) -> Result<(), (Option<String>, String)> {
    let (order_no, seq) = (&req.header.order_no, req.message_seq_id);
    if order.is_virtual || crate::orders::UNSHIPPABLE_STATUSES.contains(&order.status.as_str()) {
        let why = if order.is_virtual {
            "virtual"
        } else {
            order.status.as_str()
        };
        return Err((
            None,
            format!("Order {order_no} is {why} and cannot be shipped; shipment {seq} not applied"),
        ));
    }
    // What is left to ship is per order line: every line of this shipment for a SKU counts against
    // it together, whatever stock source it left from.
    for SkuUnits {
        sku,
        total,
        carried,
    } in units_per_sku(&req.lines)
        .map_err(|(sku, why)| (sku, format!("{why}; shipment {seq} not applied")))?
    {
        // In i64: two order lines of one SKU at i32::MAX each add up past i32 (an order stored
        // before the API checked its totals per SKU may hold such lines).
        let (ordered, shipped) = lines
            .iter()
            .filter(|l| l.sku == sku)
            .fold((0i64, 0i64), |(o, s), l| {
                (o + i64::from(l.qty), s + i64::from(l.qty_shipped))
            });
        if ordered == 0 {
            return Err((
                Some(sku.to_string()),
                format!("SKU {sku} is not on order {order_no}; shipment {seq} not applied"),
            ));
        }
        let left = ordered - shipped;
        if total > left {
            let together = if carried.len() > 1 {
                let parts: Vec<String> = carried
                    .iter()
                    .map(|l| format!("{} from source {}", l.qty, l.source))
                    .collect();
                format!(" ({} together)", parts.join(" and "))
            } else {
                String::new()
            };
            return Err((
                Some(sku.to_string()),
                format!(
                    "Cannot ship {total} of SKU {sku} on order {order_no}: {ordered} ordered, \
                     {shipped} already shipped, {left} left to ship{together}; shipment {seq} not applied"
                ),
            ));
        }
    }
    Ok(())
}

fn import_line(req: &Request, l: &RequestLine, result: &str, message: String) -> ImportLine {
    ImportLine {
        request_id: req.id,
        line_no: l.line_no,
        seq: Some(req.message_seq_id),
        sku: l.sku.clone(),
        source: l.source.clone(),
        units_received: l.qty,
        units_adjusted_orders: 0,
        units_adjusted_quotes: 0,
        stored_qty: None,
        result: result.to_string(),
        message,
        created_at: db::now(),
        reference: Some(req.header.order_no.clone()),
    }
}

/// The whole shipment failed: every line is a Failure (the first carries the reason), and the feed
/// says so.
fn failed(req: &Request, sku: Option<String>, reason: String) -> Applied {
    let mut report = Report::default();
    for (i, l) in req.lines.iter().enumerate() {
        let message = if i == 0 {
            reason.clone()
        } else {
            format!("Not applied: {reason}")
        };
        report.lines.push(import_line(req, l, "Failure", message));
    }
    report.summary.failures = req.lines.len() as i32;
    report.events.push(NewEvent {
        kind: feed::SHIPMENT_FAILED,
        payload: serde_json::json!({
            "order": req.header.order_no,
            "message_seq_id": req.message_seq_id,
            "reason": reason,
            "sku": sku,
        }),
    });
    Applied {
        report,
        failure: Some(Failure {
            order: req.header.order_no.clone(),
            sku,
            reason,
        }),
    }
}

fn duplicate(req: &Request) -> Applied {
    let mut report = Report::default();
    for l in &req.lines {
        let message = format!(
            "Duplicate Shipment Request Ignored: order {} already has shipment {}",
            req.header.order_no, req.message_seq_id
        );
        report.lines.push(import_line(req, l, "Duplicate", message));
    }
    report.summary.duplicates = req.lines.len() as i32;
    Applied {
        report,
        failure: None,
    }
}

/// Everything checks out: records the shipment, adds it to the order's lines, and completes the order
/// when every line has fully shipped.
fn record(
    conn: &mut DbConnection,
    req: &Request,
    order: &Target,
    lines: &mut [OrderLine],
) -> QueryResult<Report> {
    insert_shipment(conn, req, order.id)?;
    let mut report = Report::default();
    for l in &req.lines {
        // Fill the order's lines for this SKU in order.
        let mut left = l.qty;
        for o in lines.iter_mut().filter(|o| o.sku == l.sku) {
            let here = left.min(o.qty - o.qty_shipped);
            if here > 0 {
                o.qty_shipped += here;
                left -= here;
                diesel::update(order_lines::table.find((order.id, o.line_no)))
                    .set(order_lines::qty_shipped.eq(o.qty_shipped))
                    .execute(conn)?;
            }
        }
        let message = format!(
            "Shipped {} of SKU {} on order {}",
            l.qty, l.sku, req.header.order_no
        );
        report.lines.push(import_line(req, l, "Success", message));
    }
    report.summary.successes = req.lines.len() as i32;
    let h = &req.header;
    report.events.push(NewEvent {
        kind: feed::SHIPMENT_CREATED,
        payload: serde_json::json!({
            "order": h.order_no,
            "message_seq_id": req.message_seq_id,
            "lines": req.lines.iter().map(|l| serde_json::json!({"sku": l.sku, "qty": l.qty})).collect::<Vec<_>>(),
            "tracking_numbers": req.tracking,
            "courier_name": h.courier_name,
            "service_name": h.service_name,
            "notify_customer": h.notify_customer,
            "include_comment": h.include_comment,
            "comment": h.comment,
        }),
    });
    let complete = lines.iter().all(|l| l.qty_shipped >= l.qty);
    if complete {
        complete_order(conn, req, order, &mut report.events)?;
    } else {
        diesel::update(orders::table.find(order.id))
            .set(orders::updated_at.eq(db::now()))
            .execute(conn)?;
    }
    Ok(report)
}

fn insert_shipment(conn: &mut DbConnection, req: &Request, order_id: i64) -> QueryResult<()> {
    let h = &req.header;
    let shipment_id: i64 =
        crate::with_backend!(&mut *conn, |c| diesel::insert_into(shipments::table)
            .values((
                shipments::request_id.eq(req.id),
                shipments::order_id.eq(order_id),
                shipments::message_seq_id.eq(req.message_seq_id),
                shipments::courier_name.eq(&h.courier_name),
                shipments::service_name.eq(&h.service_name),
                shipments::comment.eq(&h.comment),
                shipments::notify_customer.eq(h.notify_customer),
                shipments::include_comment.eq(h.include_comment),
                shipments::date_shipped.eq(h.date_shipped),
                shipments::created_at.eq(db::now()),
            ))
            .returning(shipments::id)
            .get_result(c))?;
    for l in &req.lines {
        diesel::insert_into(shipment_lines::table)
            .values((
                shipment_lines::shipment_id.eq(shipment_id),
                shipment_lines::line_no.eq(l.line_no),
                shipment_lines::sku.eq(&l.sku),
                shipment_lines::qty.eq(l.qty),
            ))
            .execute(conn)?;
    }
    let tracks: Vec<_> = req
        .tracking
        .iter()
        .enumerate()
        .map(|(i, number)| {
            (
                shipment_tracking::shipment_id.eq(shipment_id),
                shipment_tracking::position.eq(i as i32 + 1),
                shipment_tracking::tracking_number.eq(number),
            )
        })
        .collect();
    // Three parameters a row: 1000 rows stay under SQLite's 32 766 and PostgreSQL's 65 535.
    for chunk in tracks.chunks(1000) {
        crate::with_backend!(&mut *conn, |c| diesel::insert_into(
            shipment_tracking::table
        )
        .values(chunk)
        .execute(c))?;
    }
    Ok(())
}

/// Marks the order `complete`. An order wharf has not exported yet is never exported now: its export
/// status becomes `skipped` in this same transaction, so no exporter claims it after this commits.
/// An exporter that holds it right now keeps its lease: its document is already on the way, and its
/// verdict settles the order (accepted → `exported`; a refusal leaves `skipped`).
fn complete_order(
    conn: &mut DbConnection,
    req: &Request,
    order: &Target,
    events: &mut Vec<NewEvent>,
) -> QueryResult<()> {
    let now = db::now();
    diesel::update(orders::table.find(order.id))
        .set((
            orders::status.eq(crate::orders::COMPLETE),
            orders::updated_at.eq(now),
        ))
        .execute(conn)?;
    events.push(NewEvent {
        kind: feed::ORDER_COMPLETED,
        payload: serde_json::json!({ "order": req.header.order_no }),
    });
    events.extend(crate::channels::warehouse::skip_unexported(
        conn,
        order.id,
        &req.header.order_no,
        &order.export_status,
    )?);
    Ok(())
}
