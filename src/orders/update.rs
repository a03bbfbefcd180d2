//! What a storefront PUT or cancel may change, and what it never may. A PUT never moves an order
//! backwards:
//! - the same content as stored is a no-op (nothing written);
//! - `complete` (set by shipments) and `canceled` stay, but a complete order may be refunded
//!   (`refunded`, `closed`), and a refunded one stays refunded; the export state, shipped quantities
//!   and the times wharf set are never touched; `created_at` is kept when the PUT leaves it out;
//! - reopening a cancelled order is refused (`order_canceled`), and so is cancelling one that has
//!   shipped completely (`order_complete`);
//! - once the warehouse has an order (exported, skipped, or being exported right now) only its status
//!   may still change: anything else the warehouse received is refused (`order_locked`, with the
//!   fields that differ), because the warehouse would never hear of it. The way to change such an
//!   order is to cancel it and place a new one.
//!
//! - once an order was split (`POST …/split`, see [`super::split`]) what it holds can no longer
//!   change either (`order_split`, naming the children and what each holds): a PUT with the lines
//!   it had before the split would take back what the children hold. Its status still may, but an
//!   order that kept nothing (status `split`) stays `split` and cannot be cancelled: its children
//!   are the orders now.
//!
//! A PUT with status `canceled` (or `cancelled`) is a cancel: the exporter then sends the warehouse a
//! cancellation for an order it has, exactly as after `POST …/cancel`.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::export::{self as tasks, ORDER_INSERT};
use super::sync::{self, Change};
use super::{
    Address, CANCELED, COMPLETE, ExportStatus, OrderError, OrderInput, OrderLineInput, SPLIT,
    Totals,
};
use crate::config::ChannelSettings;
use crate::db::schema::{order_lines, orders};
use crate::db::{self, DbConnection};
use crate::outbound;
use crate::validate::check_key;

/// The stable code of a refused order change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalCode {
    /// The warehouse has the order: only its status may change.
    Locked,
    /// The order is cancelled and cannot be reopened.
    Canceled,
    /// The order has shipped completely and cannot be cancelled.
    Complete,
    /// The order was split: what it holds cannot change, and one that kept nothing cannot be
    /// cancelled or split again.
    Split,
    /// A split would create an order whose number exists already.
    Exists,
}

impl RefusalCode {
    /// The code in problem JSON: `order_locked`, `order_canceled`, `order_complete`,
    /// `order_split`, `order_exists`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::Locked => "order_locked",
            RefusalCode::Canceled => "order_canceled",
            RefusalCode::Complete => "order_complete",
            RefusalCode::Split => "order_split",
            RefusalCode::Exists => "order_exists",
        }
    }
}

/// An order change the rules refuse (answered `409`), nothing of it stored.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct Refusal {
    /// Stable code.
    pub code: RefusalCode,
    /// What happened and what to do.
    pub detail: String,
    /// JSON paths of the fields at fault, e.g. `lines[0].qty`, `delivery_address.postcode`.
    pub fields: Vec<String>,
}

/// An order as stored, locked for the rest of the transaction.
pub(super) struct Stored {
    pub(super) id: i64,
    pub(super) status: String,
    pub(super) document: OrderInput,
    pub(super) ordered_at: NaiveDateTime,
    pub(super) export_status: ExportStatus,
    /// Whether an exporter is sending it right now.
    pub(super) leased: bool,
    /// The orders split from it, oldest first.
    pub(super) children: Vec<Child>,
}

/// An order split from another, with what it holds now (SKU, units per line).
pub(super) struct Child {
    pub(super) increment_id: String,
    pub(super) lines: Vec<(String, i32)>,
}

#[derive(Queryable)]
struct StoredRow {
    id: i64,
    status: String,
    document: String,
    ordered_at: NaiveDateTime,
    export_status: String,
}

/// What a PUT of an existing order does.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Same as stored: nothing is written.
    Unchanged,
    /// Store the new document with this status; replace the lines when they changed.
    Write { status: String, lines_changed: bool },
}

pub(super) fn is_canceled(status: &str) -> bool {
    super::export::CANCELLED_STATUSES.contains(&status)
}

/// What a PUT did to the stored order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Put {
    /// Stored it, new.
    Created,
    /// Wrote a change.
    Updated,
    /// Same as stored: nothing written.
    Unchanged,
}

/// Creates or updates an order under the rules above. Returns whether it was created. Lines that
/// change keep what has shipped per SKU; asking for fewer than have shipped is a conflict. A write
/// that may make an export due wakes continuous exporters ([`outbound::announce`]).
/// The channel that claims the order's source (of `channels`) hears of a changed status, a cancel
/// and an edit ([`super::sync`]).
pub fn upsert(
    conn: &mut DbConnection,
    increment_id: &str,
    input: &OrderInput,
    channels: &[ChannelSettings],
) -> Result<bool, OrderError> {
    check_key("increment_id", increment_id)?;
    input.validate()?;
    let put = db::write_tx(conn, |conn| {
        let now = db::now();
        let stored = match lock(conn, increment_id)? {
            Some(stored) => stored,
            None => match insert(conn, increment_id, input, now)? {
                Some(id) => {
                    replace_lines(conn, id, increment_id, input)?;
                    tasks::order_stored(conn, increment_id, &input.source, channels, now)?;
                    // Shipments that arrived first and wait for this order need not wait longer.
                    crate::queue::wake_shipments_for(conn, increment_id)?;
                    return Ok(Put::Created);
                }
                // A concurrent PUT created it first (the insert waited for its commit): update it.
                None => lock(conn, increment_id)?
                    .ok_or_else(|| OrderError::NotFound(increment_id.to_string()))?,
            },
        };
        update(conn, increment_id, &stored, input, now, channels)
    })?;
    if put != Put::Unchanged {
        outbound::wake_exporters();
    }
    Ok(put == Put::Created)
}

/// A PUT of a stored order: the rules decide, then the change (if any) is written.
fn update(
    conn: &mut DbConnection,
    increment_id: &str,
    stored: &Stored,
    input: &OrderInput,
    now: NaiveDateTime,
    channels: &[ChannelSettings],
) -> Result<Put, OrderError> {
    let mut incoming = input.clone();
    if incoming.created_at.is_none() {
        incoming.created_at = stored.document.created_at;
    }
    let (status, lines_changed) = match decide(increment_id, stored, &incoming)? {
        Decision::Unchanged => return Ok(Put::Unchanged),
        Decision::Write {
            status,
            lines_changed,
        } => (status, lines_changed),
    };
    write(conn, stored, &incoming, &status, now)?;
    if lines_changed {
        replace_lines(conn, stored.id, increment_id, &incoming)?;
    }
    if is_canceled(&status) && !is_canceled(&stored.status) {
        tasks::order_cancelled(conn, increment_id, stored.export_status, now)?;
    } else {
        tasks::order_changed(conn, stored.export_status)?;
    }
    tell_channel(
        conn,
        channels,
        increment_id,
        stored,
        &incoming,
        &status,
        now,
    )?;
    Ok(Put::Updated)
}

/// Tells the order's channel what the PUT changed: its status (a cancel, a refund, another
/// status), and what it holds (an edit).
fn tell_channel(
    conn: &mut DbConnection,
    channels: &[ChannelSettings],
    increment_id: &str,
    stored: &Stored,
    incoming: &OrderInput,
    status: &str,
    now: NaiveDateTime,
) -> Result<(), OrderError> {
    let source = &incoming.source;
    if status != stored.status {
        sync::changed(
            conn,
            channels,
            increment_id,
            source,
            Change::of_status(status),
            now,
        )?;
    }
    if !content_diff(&stored.document, incoming).is_empty() {
        sync::changed(conn, channels, increment_id, source, Change::Edited, now)?;
    }
    Ok(())
}

/// Cancels an order. A fully shipped order cannot be cancelled; cancelling a cancelled one changes
/// nothing. The exporter sends the cancellation of an order the warehouse has (woken at once when
/// it is continuous).
pub fn cancel(
    conn: &mut DbConnection,
    increment_id: &str,
    channels: &[ChannelSettings],
) -> Result<(), OrderError> {
    db::write_tx(conn, |conn| {
        let stored = lock(conn, increment_id)?
            .ok_or_else(|| OrderError::NotFound(increment_id.to_string()))?;
        if is_canceled(&stored.status) {
            return Ok(());
        }
        if stored.status == COMPLETE {
            return Err(complete_refusal(increment_id, Vec::new()).into());
        }
        if stored.status == SPLIT {
            return Err(split_empty_refusal(increment_id, &stored, Vec::new()).into());
        }
        let now = db::now();
        diesel::update(orders::table.find(stored.id))
            .set((orders::status.eq(CANCELED), orders::updated_at.eq(now)))
            .execute(conn)?;
        tasks::order_cancelled(conn, increment_id, stored.export_status, now)?;
        let source = &stored.document.source;
        sync::changed(conn, channels, increment_id, source, Change::Cancelled, now)?;
        Ok(())
    })
    .inspect(|()| outbound::wake_exporters())
}

/// Reads the order and locks its row until the transaction ends, so a shipment, an exporter's claim
/// and another PUT or a split of it take turns with this one. (SQLite's BEGIN IMMEDIATE already
/// excludes every other writer.)
pub(super) fn lock(
    conn: &mut DbConnection,
    increment_id: &str,
) -> Result<Option<Stored>, OrderError> {
    let query = orders::table
        .filter(orders::increment_id.eq(increment_id))
        .select((
            orders::id,
            orders::status,
            orders::document,
            orders::ordered_at,
            orders::export_status,
        ));
    let row: Option<StoredRow> = match conn {
        DbConnection::Postgresql(c) => query.for_update().first(c).optional()?,
        DbConnection::Sqlite(c) => query.first(c).optional()?,
    };
    let Some(r) = row else {
        return Ok(None);
    };
    let document: OrderInput = serde_json::from_str(&r.document)
        .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?;
    let leased = outbound::task_of(conn, ORDER_INSERT, increment_id)?
        .is_some_and(|t| t.leased_at(db::now()));
    Ok(Some(Stored {
        id: r.id,
        status: r.status,
        document,
        ordered_at: r.ordered_at,
        export_status: db::text_enum::read(&r.export_status)?,
        leased,
        children: children_of(conn, r.id)?,
    }))
}

/// The orders split from order `id`, oldest first, with their lines. (One indexed read: only
/// split orders have children.)
fn children_of(conn: &mut DbConnection, id: i64) -> QueryResult<Vec<Child>> {
    let rows: Vec<(String, Option<String>, Option<i32>)> = orders::table
        .left_join(order_lines::table)
        .filter(orders::parent_id.eq(id))
        .order((orders::id, order_lines::line_no))
        .select((
            orders::increment_id,
            order_lines::sku.nullable(),
            order_lines::qty.nullable(),
        ))
        .load(conn)?;
    let mut children: Vec<Child> = Vec::new();
    for (increment_id, sku, qty) in rows {
        if children
            .last()
            .is_none_or(|c| c.increment_id != increment_id)
        {
            children.push(Child {
                increment_id,
                lines: Vec::new(),
            });
        }
        if let (Some(sku), Some(qty), Some(child)) = (sku, qty, children.last_mut()) {
            child.lines.push((sku, qty));
        }
    }
    Ok(children)
}

pub(super) fn to_document(input: &OrderInput) -> Result<String, OrderError> {
    serde_json::to_string(input)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)).into())
}

/// Inserts a new order, pending export. `None` when a concurrent PUT inserted it first.
pub(super) fn insert(
    conn: &mut DbConnection,
    increment_id: &str,
    input: &OrderInput,
    now: NaiveDateTime,
) -> Result<Option<i64>, OrderError> {
    let document = to_document(input)?;
    let ordered_at = input.created_at.map(|t| t.naive_utc()).unwrap_or(now);
    let id = crate::with_backend!(&mut *conn, |c| diesel::insert_into(orders::table)
        .values((
            orders::increment_id.eq(increment_id),
            orders::status.eq(&input.status),
            orders::source.eq(&input.source),
            orders::is_virtual.eq(input.is_virtual),
            orders::document.eq(&document),
            orders::ordered_at.eq(ordered_at),
            orders::received_at.eq(now),
            orders::updated_at.eq(now),
            orders::export_status.eq(ExportStatus::Pending.as_str()),
        ))
        .on_conflict(orders::increment_id)
        .do_nothing()
        .returning(orders::id)
        .get_result(c)
        .optional())?;
    Ok(id)
}

/// Stores the storefront's new document with `status`. The export state, the shipped quantities
/// and the receipt time stay as wharf set them.
fn write(
    conn: &mut DbConnection,
    stored: &Stored,
    incoming: &OrderInput,
    status: &str,
    now: NaiveDateTime,
) -> Result<(), OrderError> {
    let document = to_document(incoming)?;
    let ordered_at = incoming
        .created_at
        .map(|t| t.naive_utc())
        .unwrap_or(stored.ordered_at);
    diesel::update(orders::table.find(stored.id))
        .set((
            orders::status.eq(status),
            orders::source.eq(&incoming.source),
            orders::is_virtual.eq(incoming.is_virtual),
            orders::document.eq(&document),
            orders::ordered_at.eq(ordered_at),
            orders::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Why the warehouse side of an order is settled, if it is: then only its status may change.
pub(super) fn lock_reason(stored: &Stored) -> Option<&'static str> {
    if stored.leased {
        Some("is being exported to the warehouse right now")
    } else if stored.export_status == ExportStatus::Exported {
        Some("has been exported to the warehouse")
    } else if stored.export_status == ExportStatus::Skipped {
        Some("has shipped completely")
    } else {
        None
    }
}

/// The rules of a PUT of an existing order (see the module doc). `incoming` has `created_at` filled
/// in from the stored order when the PUT left it out.
fn decide(increment_id: &str, stored: &Stored, incoming: &OrderInput) -> Result<Decision, Refusal> {
    let content = content_diff(&stored.document, incoming);
    if content.is_empty()
        && stored.document.status == incoming.status
        && stored.document.created_at == incoming.created_at
    {
        return Ok(Decision::Unchanged);
    }
    let was_canceled = is_canceled(&stored.status);
    let cancels = is_canceled(&incoming.status);
    if was_canceled && !cancels {
        return Err(Refusal {
            code: RefusalCode::Canceled,
            detail: format!(
                "order {increment_id} is cancelled and cannot be reopened (the PUT asks for status \
                 {:?}); the warehouse is told of the cancellation. Place a new order with a new \
                 number instead.",
                incoming.status
            ),
            fields: vec!["status".to_string()],
        });
    }
    if cancels && !was_canceled && stored.status == COMPLETE {
        return Err(complete_refusal(increment_id, vec!["status".to_string()]));
    }
    if !stored.children.is_empty() {
        split_rules(increment_id, stored, &content, cancels && !was_canceled)?;
    }
    if !content.is_empty()
        && let Some(reason) = lock_reason(stored)
    {
        return Err(Refusal {
            code: RefusalCode::Locked,
            detail: format!(
                "order {increment_id} {reason}, so what the warehouse received can no longer change; \
                 these fields differ from it: {}. Only the order's status may still change (never \
                 back from complete or canceled). To change the order, cancel it (POST \
                 /api/v1/orders/{increment_id}/cancel, or PUT it with status canceled) and place a \
                 new order with a new number.",
                content.join(", ")
            ),
            fields: content,
        });
    }
    // `complete` and `split` are wharf's: the storefront's status is kept in the document only,
    // except a refund, which follows a complete order (the goods went, the money comes back). A
    // refunded order stays refunded.
    let refunds = super::REFUND_STATUSES.contains(&incoming.status.as_str());
    let status = if stored.status == COMPLETE && refunds {
        incoming.status.clone()
    } else if was_canceled
        || stored.status == COMPLETE
        || stored.status == SPLIT
        || super::REFUND_STATUSES.contains(&stored.status.as_str())
    {
        stored.status.clone()
    } else if cancels {
        CANCELED.to_string()
    } else {
        incoming.status.clone()
    };
    let lines_changed = content.iter().any(|f| f.starts_with("lines"));
    Ok(Decision::Write {
        status,
        lines_changed,
    })
}

/// What a PUT of an order that was split may not do: change what it holds (the children hold the
/// rest), or cancel it when it kept nothing (its children are the orders now).
fn split_rules(
    increment_id: &str,
    stored: &Stored,
    content: &[String],
    cancels: bool,
) -> Result<(), Refusal> {
    if cancels && stored.status == SPLIT {
        return Err(split_empty_refusal(
            increment_id,
            stored,
            vec!["status".to_string()],
        ));
    }
    if content.is_empty() {
        return Ok(());
    }
    Err(Refusal {
        code: RefusalCode::Split,
        detail: format!(
            "order {increment_id} was split: {}, and it {}; a PUT of what it held before would \
             take back what its children hold, so what it holds can no longer change (these \
             fields differ: {}). Only its status may still change. Change a child with PUT \
             /api/v1/orders/{{child}} instead.",
            describe_children(&stored.children),
            describe_kept(&stored.document),
            content.join(", ")
        ),
        fields: content.to_vec(),
    })
}

/// An order that kept nothing of a split cannot be cancelled or split again.
pub(super) fn split_empty_refusal(
    increment_id: &str,
    stored: &Stored,
    fields: Vec<String>,
) -> Refusal {
    Refusal {
        code: RefusalCode::Split,
        detail: format!(
            "order {increment_id} was split and kept nothing itself: {}. Cancel or split those \
             orders instead.",
            describe_children(&stored.children)
        ),
        fields,
    }
}

/// `100-A holds 2 × MUG and 100-B holds 1 × CUP`.
pub(super) fn describe_children(children: &[Child]) -> String {
    let each: Vec<String> = children
        .iter()
        .map(|c| {
            let lines: Vec<String> = c
                .lines
                .iter()
                .map(|(sku, qty)| format!("{qty} × {sku}"))
                .collect();
            if lines.is_empty() {
                format!("{} holds nothing", c.increment_id)
            } else {
                format!("{} holds {}", c.increment_id, lines.join(", "))
            }
        })
        .collect();
    each.join(" and ")
}

/// `holds 1 × MUG itself` or `holds nothing itself`.
fn describe_kept(document: &OrderInput) -> String {
    if document.lines.is_empty() {
        return "holds nothing itself".to_string();
    }
    let lines: Vec<String> = document
        .lines
        .iter()
        .map(|l| format!("{} × {}", l.qty, l.sku))
        .collect();
    format!("holds {} itself", lines.join(", "))
}

fn complete_refusal(increment_id: &str, fields: Vec<String>) -> Refusal {
    Refusal {
        code: RefusalCode::Complete,
        detail: format!("order {increment_id} has shipped completely and cannot be cancelled"),
        fields,
    }
}

/// Replaces the order's lines, keeping what has shipped per SKU; asking for fewer units of a SKU than
/// have shipped is a conflict.
pub(super) fn replace_lines(
    conn: &mut DbConnection,
    order_id: i64,
    increment_id: &str,
    input: &OrderInput,
) -> Result<(), OrderError> {
    let shipped: Vec<(String, i32)> = order_lines::table
        .filter(order_lines::order_id.eq(order_id))
        .select((order_lines::sku, order_lines::qty_shipped))
        .load(conn)?;
    // Counted in i64: a sum of i32 quantities cannot wrap there (validation also keeps each
    // SKU's ordered total within i32, but what has shipped is counted from stored rows).
    let mut shipped_by_sku: HashMap<String, i64> = HashMap::new();
    for (sku, q) in shipped {
        *shipped_by_sku.entry(sku).or_default() += i64::from(q);
    }
    let mut ordered_by_sku: HashMap<&str, i64> = HashMap::new();
    for l in &input.lines {
        *ordered_by_sku.entry(l.sku.as_str()).or_default() += i64::from(l.qty);
    }
    for (sku, done) in &shipped_by_sku {
        let ordered = ordered_by_sku.get(sku.as_str()).copied().unwrap_or(0);
        if *done > ordered {
            return Err(OrderError::Conflict(format!(
                "order {increment_id}: {done} of SKU {sku:?} already shipped; the order cannot \
                 ask for fewer ({ordered})"
            )));
        }
    }
    diesel::delete(order_lines::table.filter(order_lines::order_id.eq(order_id))).execute(conn)?;
    let mut rows = Vec::with_capacity(input.lines.len());
    for (i, l) in input.lines.iter().enumerate() {
        let left = shipped_by_sku.entry(l.sku.clone()).or_default();
        // At most this line's qty, so it fits the i32 column.
        let here = i32::try_from((*left).min(i64::from(l.qty))).unwrap_or(l.qty);
        *left -= i64::from(here);
        rows.push((
            order_lines::order_id.eq(order_id),
            order_lines::line_no.eq(i as i32 + 1),
            order_lines::sku.eq(&l.sku),
            order_lines::name.eq(&l.name),
            order_lines::qty.eq(l.qty),
            order_lines::qty_shipped.eq(here),
        ));
    }
    crate::with_backend!(&mut *conn, |c| diesel::insert_into(order_lines::table)
        .values(&rows)
        .execute(c))?;
    Ok(())
}

/// Adds `prefix.name` (or `name` at the top) for every check that found a difference.
fn note(out: &mut Vec<String>, prefix: &str, checks: &[(&str, bool)]) {
    for (name, same) in checks {
        if !same {
            out.push(if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            });
        }
    }
}

/// The JSON paths of what differs between two documents, besides `status` and `created_at`.
/// Amounts compare as numbers (`20.00` is `20.0`).
fn content_diff(a: &OrderInput, b: &OrderInput) -> Vec<String> {
    let mut out = Vec::new();
    note(
        &mut out,
        "",
        &[
            ("source", a.source == b.source),
            ("currency", a.currency == b.currency),
            ("virtual", a.is_virtual == b.is_virtual),
            ("coupon", a.coupon == b.coupon),
            ("customer_note", a.customer_note == b.customer_note),
            ("shipping_method", a.shipping_method == b.shipping_method),
            ("payment_method", a.payment_method == b.payment_method),
        ],
    );
    address_diff(
        &mut out,
        "billing_address",
        Some(&a.billing_address),
        Some(&b.billing_address),
    );
    address_diff(
        &mut out,
        "delivery_address",
        a.delivery_address.as_ref(),
        b.delivery_address.as_ref(),
    );
    totals_diff(&mut out, &a.totals, &b.totals);
    if a.lines.len() != b.lines.len() {
        out.push("lines".to_string());
    } else {
        for (i, (x, y)) in a.lines.iter().zip(&b.lines).enumerate() {
            line_diff(&mut out, &format!("lines[{i}]"), x, y);
        }
    }
    out
}

fn address_diff(out: &mut Vec<String>, prefix: &str, a: Option<&Address>, b: Option<&Address>) {
    let (a, b) = match (a, b) {
        (None, None) => return,
        (Some(a), Some(b)) => (a, b),
        _ => {
            out.push(prefix.to_string());
            return;
        }
    };
    note(
        out,
        prefix,
        &[
            ("first_name", a.first_name == b.first_name),
            ("last_name", a.last_name == b.last_name),
            ("company", a.company == b.company),
            ("street", a.street == b.street),
            ("city", a.city == b.city),
            ("region", a.region == b.region),
            ("postcode", a.postcode == b.postcode),
            ("country", a.country == b.country),
            ("phone", a.phone == b.phone),
            ("email", a.email == b.email),
        ],
    );
}

fn totals_diff(out: &mut Vec<String>, a: &Totals, b: &Totals) {
    note(
        out,
        "totals",
        &[
            ("subtotal", a.subtotal == b.subtotal),
            ("shipping", a.shipping == b.shipping),
            ("shipping_tax", a.shipping_tax == b.shipping_tax),
            ("discount", a.discount == b.discount),
            ("tax", a.tax == b.tax),
            ("grand_total", a.grand_total == b.grand_total),
        ],
    );
}

fn line_diff(out: &mut Vec<String>, prefix: &str, a: &OrderLineInput, b: &OrderLineInput) {
    note(
        out,
        prefix,
        &[
            ("sku", a.sku == b.sku),
            ("name", a.name == b.name),
            ("qty", a.qty == b.qty),
            ("unit_price_net", a.unit_price_net == b.unit_price_net),
            ("unit_price_gross", a.unit_price_gross == b.unit_price_gross),
            ("unit_tax", a.unit_tax == b.unit_tax),
            ("row_total_net", a.row_total_net == b.row_total_net),
            ("row_total_gross", a.row_total_gross == b.row_total_gross),
            ("row_tax", a.row_tax == b.row_tax),
        ],
    );
}
