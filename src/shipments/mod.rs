//! Shipments the warehouse reports. Received and stored whole like inventory; applying one to its order
//! is load → check (pure rules) → record, in the worker's transaction.

pub mod payloads;
mod store;

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use crate::config::ChannelSettings;
use crate::db::{self, DbConnection};
use crate::feed::{self, NewEvent};
use crate::imports::{ImportLine, LineOutcome, Report};
use crate::orders::store::LineShipped;

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
    source: String,
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
/// - The channel that claims the order's source (of `channels`) is told: a `ship` after its delay
///   (and, for a channel that does not take ships, the completion as a status change).
pub fn apply(
    conn: &mut DbConnection,
    request_id: i64,
    message_seq_id: i64,
    wait_for_order: TimeDelta,
    channels: &[ChannelSettings],
) -> Result<Applied, ApplyError> {
    let req = store::load_request(conn, request_id, message_seq_id)?;
    let Some(order) = store::lock_order(conn, &req.header.order_no)? else {
        return unknown_order(&req, wait_for_order, db::now());
    };
    if store::already_shipped(conn, order.id, message_seq_id)? {
        return Ok(duplicate(&req));
    }
    let mut lines = store::order_lines(conn, order.id)?;
    if let Err(v) = check(&req, &order, &lines) {
        return Ok(failed(&req, v.sku, v.reason));
    }
    let report = record(conn, &req, &order, &mut lines, channels)?;
    Ok(Applied {
        report,
        failure: None,
    })
}

/// The shipment names an order wharf does not have: wait for it while the wait is not over (at
/// `now`), fail the shipment after that.
fn unknown_order(
    req: &Request,
    wait_for_order: TimeDelta,
    now: NaiveDateTime,
) -> Result<Applied, ApplyError> {
    let until = req.received_at + wait_for_order;
    if now < until {
        return Err(OrderNotKnownYet {
            order: req.header.order_no.clone(),
            message_seq_id: req.message_seq_id,
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
        "Order {} does not exist in wharf{waited}; shipment {} not applied",
        req.header.order_no, req.message_seq_id
    );
    Ok(failed(req, None, reason))
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

/// A rule a shipment breaks: the SKU at fault (if one is) and the reason, naming the order, SKU and
/// numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Violation {
    sku: Option<String>,
    reason: String,
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
fn units_per_sku(lines: &[RequestLine]) -> Result<Vec<SkuUnits<'_>>, Violation> {
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
        units.total = units
            .total
            .checked_add(i64::from(l.qty))
            .ok_or_else(|| Violation {
                sku: Some(l.sku.clone()),
                reason: format!(
                    "The lines for SKU {} add up to more units than wharf can count",
                    l.sku
                ),
            })?;
        units.carried.push(l);
    }
    Ok(out)
}

/// The rules a shipment must pass before anything of it is applied (pure: decided on what
/// [`store`] read).
fn check(req: &Request, order: &Target, lines: &[OrderLine]) -> Result<(), Violation> {
    let (order_no, seq) = (&req.header.order_no, req.message_seq_id);
    if order.is_virtual || crate::orders::UNSHIPPABLE_STATUSES.contains(&order.status.as_str()) {
        let why = if order.is_virtual {
            "virtual"
        } else {
            order.status.as_str()
        };
        return Err(Violation {
            sku: None,
            reason: format!(
                "Order {order_no} is {why} and cannot be shipped; shipment {seq} not applied"
            ),
        });
    }
    // What is left to ship is per order line: every line of this shipment for a SKU counts against
    // it together, whatever stock source it left from.
    let per_sku = units_per_sku(&req.lines).map_err(|v| Violation {
        reason: format!("{}; shipment {seq} not applied", v.reason),
        ..v
    })?;
    for units in per_sku {
        check_left_to_ship(&units, order_no, lines).map_err(|reason| Violation {
            sku: Some(units.sku.to_string()),
            reason: format!("{reason}; shipment {seq} not applied"),
        })?;
    }
    Ok(())
}

/// Whether `units` of one SKU fit in what is left to ship of it on the order; if not, why.
fn check_left_to_ship(
    units: &SkuUnits<'_>,
    order_no: &str,
    lines: &[OrderLine],
) -> Result<(), String> {
    let SkuUnits {
        sku,
        total,
        carried,
    } = units;
    // In i64: two order lines of one SKU at i32::MAX each add up past i32 (an order stored
    // before the API checked its totals per SKU may hold such lines).
    let (ordered, shipped) = lines
        .iter()
        .filter(|l| l.sku == *sku)
        .fold((0i64, 0i64), |(o, s), l| {
            (o + i64::from(l.qty), s + i64::from(l.qty_shipped))
        });
    if ordered == 0 {
        return Err(format!("SKU {sku} is not on order {order_no}"));
    }
    let left = ordered - shipped;
    if *total <= left {
        return Ok(());
    }
    let together = if carried.len() > 1 {
        let parts: Vec<String> = carried
            .iter()
            .map(|l| format!("{} from source {}", l.qty, l.source))
            .collect();
        format!(" ({} together)", parts.join(" and "))
    } else {
        String::new()
    };
    Err(format!(
        "Cannot ship {total} of SKU {sku} on order {order_no}: {ordered} ordered, \
         {shipped} already shipped, {left} left to ship{together}"
    ))
}

fn import_line(req: &Request, l: &RequestLine, result: LineOutcome, message: String) -> ImportLine {
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
        result,
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
        report.push(import_line(req, l, LineOutcome::Failure, message));
    }
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
        report.push(import_line(req, l, LineOutcome::Duplicate, message));
    }
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
    channels: &[ChannelSettings],
) -> QueryResult<Report> {
    store::insert_shipment(conn, req, order.id)?;
    let shipped = fill(&req.lines, lines);
    let complete = lines.iter().all(|l| l.qty_shipped >= l.qty);
    let now = db::now();
    crate::orders::store::record_shipped(conn, order.id, &shipped, complete, now)?;
    tell_channel(
        conn,
        channels,
        &req.header.order_no,
        &order.source,
        complete,
        now,
    )?;
    let mut report = Report::default();
    for l in &req.lines {
        let message = format!(
            "Shipped {} of SKU {} on order {}",
            l.qty, l.sku, req.header.order_no
        );
        report.push(import_line(req, l, LineOutcome::Success, message));
    }
    report.events.push(shipment_created(req));
    if complete {
        complete_order(conn, req, order, &mut report.events)?;
    }
    Ok(report)
}

/// Tells the order's channel: a `ship` (which carries the order's status, `complete` or not); a
/// channel that takes no ships hears of the completion as a status change.
fn tell_channel(
    conn: &mut DbConnection,
    channels: &[ChannelSettings],
    order_no: &str,
    source: &str,
    complete: bool,
    now: NaiveDateTime,
) -> QueryResult<()> {
    use crate::orders::sync::{self, Change};
    let shipped = sync::changed(conn, channels, order_no, source, Change::Shipped, now)?;
    if complete && !shipped {
        sync::changed(conn, channels, order_no, source, Change::Completed, now)?;
    }
    Ok(())
}

/// Adds the shipped units to the order's lines, each shipment line filling the order's lines for
/// its SKU in order, and returns the lines that changed with what has shipped of them now.
fn fill(shipment: &[RequestLine], lines: &mut [OrderLine]) -> Vec<LineShipped> {
    let mut changed: Vec<LineShipped> = Vec::new();
    for l in shipment {
        let mut left = l.qty;
        for o in lines.iter_mut().filter(|o| o.sku == l.sku) {
            let here = left.min(o.qty - o.qty_shipped);
            if here > 0 {
                o.qty_shipped += here;
                left -= here;
                match changed.iter_mut().find(|c| c.line_no == o.line_no) {
                    Some(c) => c.qty_shipped = o.qty_shipped,
                    None => changed.push(LineShipped {
                        line_no: o.line_no,
                        qty_shipped: o.qty_shipped,
                    }),
                }
            }
        }
    }
    changed
}

/// The `shipment.created` event of an applied shipment.
fn shipment_created(req: &Request) -> NewEvent {
    let h = &req.header;
    NewEvent {
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
    }
}

/// The order is now `complete` ([`record`] wrote it): the feed says so. An order wharf has not
/// exported yet is never exported now: its export status becomes `skipped` in this same transaction,
/// so no exporter claims it after this commits. An exporter that holds it right now keeps its lease:
/// its document is already on the way, and its verdict settles the order (accepted → `exported`; a
/// refusal leaves `skipped`).
fn complete_order(
    conn: &mut DbConnection,
    req: &Request,
    order: &Target,
    events: &mut Vec<NewEvent>,
) -> QueryResult<()> {
    events.push(NewEvent {
        kind: feed::ORDER_COMPLETED,
        payload: serde_json::json!({ "order": req.header.order_no }),
    });
    events.extend(crate::orders::export::skip_unexported(
        conn,
        order.id,
        &req.header.order_no,
        &order.export_status,
    )?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(lines: &[(&str, &str, i32)]) -> Request {
        Request {
            id: 7,
            message_seq_id: 3,
            received_at: chrono::DateTime::UNIX_EPOCH.naive_utc(),
            header: Header {
                order_no: "100".into(),
                comment: None,
                notify_customer: false,
                include_comment: false,
                courier_name: None,
                service_name: None,
                date_shipped: None,
            },
            lines: lines
                .iter()
                .enumerate()
                .map(|(i, (sku, source, qty))| RequestLine {
                    line_no: i as i32 + 1,
                    sku: sku.to_string(),
                    source: source.to_string(),
                    qty: *qty,
                })
                .collect(),
            tracking: Vec::new(),
        }
    }

    fn order_line(line_no: i32, sku: &str, qty: i32, qty_shipped: i32) -> OrderLine {
        OrderLine {
            line_no,
            sku: sku.into(),
            qty,
            qty_shipped,
        }
    }

    fn target(status: &str, is_virtual: bool) -> Target {
        Target {
            id: 1,
            status: status.into(),
            is_virtual,
            export_status: "pending".into(),
            source: "web".into(),
        }
    }

    #[test]
    fn lines_of_one_sku_count_together_whatever_their_source() {
        let req = request(&[("A", "default", 2), ("A", "north", 2)]);
        let lines = [order_line(1, "A", 3, 0)];
        let v = check(&req, &target("processing", false), &lines).unwrap_err();
        assert_eq!(v.sku.as_deref(), Some("A"));
        assert_eq!(
            v.reason,
            "Cannot ship 4 of SKU A on order 100: 3 ordered, 0 already shipped, 3 left to ship \
             (2 from source default and 2 from source north together); shipment 3 not applied"
        );
        let ok = request(&[("A", "default", 1), ("A", "north", 2)]);
        assert_eq!(check(&ok, &target("processing", false), &lines), Ok(()));
    }

    #[test]
    fn unshippable_orders_and_unknown_skus_fail_the_shipment() {
        let req = request(&[("A", "default", 1)]);
        let lines = [order_line(1, "A", 3, 0)];
        let v = check(&req, &target("canceled", false), &lines).unwrap_err();
        assert_eq!(v.sku, None);
        assert!(
            v.reason.starts_with("Order 100 is canceled"),
            "{}",
            v.reason
        );
        let v = check(&req, &target("processing", true), &lines).unwrap_err();
        assert!(v.reason.starts_with("Order 100 is virtual"), "{}", v.reason);
        let other = request(&[("B", "default", 1)]);
        let v = check(&other, &target("processing", false), &lines).unwrap_err();
        assert_eq!(
            v.reason,
            "SKU B is not on order 100; shipment 3 not applied"
        );
    }

    #[test]
    fn a_shipment_fills_the_lines_of_its_sku_in_order() {
        let mut lines = [
            order_line(1, "A", 2, 1),
            order_line(2, "B", 5, 0),
            order_line(3, "A", 4, 0),
        ];
        let shipped = fill(
            &request(&[("A", "default", 2), ("A", "north", 2)]).lines,
            &mut lines,
        );
        assert_eq!(
            shipped,
            [
                LineShipped {
                    line_no: 1,
                    qty_shipped: 2
                },
                LineShipped {
                    line_no: 3,
                    qty_shipped: 3
                },
            ]
        );
        assert_eq!(lines[1].qty_shipped, 0);
    }

    #[test]
    fn an_unknown_order_is_waited_for_then_fails_the_shipment() {
        let req = request(&[("A", "default", 1), ("B", "default", 1)]);
        let wait = TimeDelta::minutes(15);
        let during = req.received_at + TimeDelta::minutes(14);
        match unknown_order(&req, wait, during) {
            Err(ApplyError::NotKnownYet(w)) => assert_eq!(w.until, req.received_at + wait),
            other => panic!("expected a wait, got {other:?}"),
        }
        let after = req.received_at + wait;
        let applied = unknown_order(&req, wait, after).unwrap();
        let failure = applied.failure.unwrap();
        assert_eq!(
            failure.reason,
            "Order 100 does not exist in wharf (waited 15 min for it); shipment 3 not applied"
        );
        assert_eq!(applied.report.summary.failures, 2);
        let outcomes: Vec<LineOutcome> = applied.report.lines.iter().map(|l| l.result).collect();
        assert_eq!(outcomes, [LineOutcome::Failure, LineOutcome::Failure]);
        assert_eq!(applied.report.events[0].kind, feed::SHIPMENT_FAILED);
    }
}
