//! Orders the storefront pushes: validation, create-or-update and cancel under the rules of
//! [`update`] (a PUT never moves an order backwards), splits into child orders ([`split`]), and the
//! view with export status, shipments and per-line shipped quantities.

pub mod export;
pub mod history;
pub mod payloads;
pub mod split;
pub mod store;
pub mod sync;
mod update;

use std::collections::HashMap;

pub use split::{SplitChildInput, SplitInput, SplitLine};
pub use update::{Refusal, RefusalCode, cancel, upsert};

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::schema::{order_lines, orders, shipment_lines, shipment_tracking, shipments};
use crate::db::{DbConnection, text_enum};
use crate::validate::{Invalid, check_code, check_len, check_sku, check_time};

mod view;
pub use export::ExportStatus;
pub use view::{CancelState, CancellationView, ListFilter, OrderPage, OrderPosition, list};

/// Statuses in which an order can no longer be shipped.
pub const UNSHIPPABLE_STATUSES: &[&str] = &[
    "canceled",
    "cancelled",
    "closed",
    "refunded",
    "complete",
    "split",
];
/// Statuses that mean refunded (Magento closes a refunded order). A complete order may still become
/// one; once refunded an order keeps that status.
pub const REFUND_STATUSES: [&str; 2] = ["refunded", "closed"];
/// The status wharf gives an order when every line has shipped.
pub const COMPLETE: &str = "complete";
/// The status of a cancelled order.
pub const CANCELED: &str = "canceled";
/// The status wharf gives an order split into children that took all of it: it holds nothing
/// itself any more, and is never exported.
pub const SPLIT: &str = "split";

/// A postal address.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Address {
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Company.
    #[serde(default)]
    pub company: Option<String>,
    /// Street lines (1–4).
    pub street: Vec<String>,
    /// Town or city.
    pub city: String,
    /// County, state or region.
    #[serde(default)]
    pub region: Option<String>,
    /// Postal code.
    #[serde(default)]
    pub postcode: Option<String>,
    /// ISO 3166-1 alpha-2 country code, e.g. `GB`.
    pub country: String,
    /// Telephone.
    #[serde(default)]
    pub phone: Option<String>,
    /// E-mail address.
    #[serde(default)]
    pub email: Option<String>,
}

/// Shipping method chosen at checkout.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShippingMethod {
    /// Machine code, e.g. `flatrate_flatrate`.
    pub code: String,
    /// Name shown to the customer.
    pub name: String,
}

/// Order totals, in the order's currency. Amounts are decimal strings or numbers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    /// Sum of the lines without tax, before discount and shipping.
    pub subtotal: Decimal,
    /// Shipping charged, without tax.
    #[serde(default)]
    pub shipping: Decimal,
    /// Tax on shipping.
    #[serde(default)]
    pub shipping_tax: Decimal,
    /// Discount given (zero or negative).
    #[serde(default)]
    pub discount: Decimal,
    /// Tax included in the grand total.
    #[serde(default)]
    pub tax: Decimal,
    /// What the customer pays.
    pub grand_total: Decimal,
}

/// One ordered line.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OrderLineInput {
    /// SKU (1–64 characters).
    pub sku: String,
    /// Product name.
    pub name: String,
    /// Units ordered (> 0).
    pub qty: i32,
    /// Unit price without tax.
    pub unit_price_net: Decimal,
    /// Unit price with tax.
    pub unit_price_gross: Decimal,
    /// Tax per unit.
    #[serde(default)]
    pub unit_tax: Decimal,
    /// Line total without tax.
    pub row_total_net: Decimal,
    /// Line total with tax.
    pub row_total_gross: Decimal,
    /// Tax on the line.
    #[serde(default)]
    pub row_tax: Decimal,
}

/// An order as the storefront sends it (`PUT /api/v1/orders/{increment_id}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OrderInput {
    /// Order status in the storefront, e.g. `pending`, `processing` (invoiced), `canceled`.
    pub status: String,
    /// Where the order came from: `web`, `affiliate`, `marketplace:<name>` or another channel name.
    #[serde(default = "default_source")]
    pub source: String,
    /// ISO 4217 currency code, e.g. `GBP`.
    pub currency: String,
    /// When the customer placed it (defaults to when wharf first receives it).
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    /// Nothing to ship (downloads, gift cards): never exported or shipped.
    #[serde(default, rename = "virtual")]
    pub is_virtual: bool,
    /// Coupon code used.
    #[serde(default)]
    pub coupon: Option<String>,
    /// Note the customer left.
    #[serde(default)]
    pub customer_note: Option<String>,
    /// Shipping method.
    #[serde(default)]
    pub shipping_method: Option<ShippingMethod>,
    /// Payment method code.
    #[serde(default)]
    pub payment_method: Option<String>,
    /// Billing address.
    pub billing_address: Address,
    /// Delivery address (required unless the order is virtual).
    #[serde(default)]
    pub delivery_address: Option<Address>,
    /// Totals.
    pub totals: Totals,
    /// Ordered lines (at least one).
    pub lines: Vec<OrderLineInput>,
}

fn default_source() -> String {
    "web".to_string()
}

/// Most lines accepted in one order.
pub const MAX_LINES: usize = 1000;

fn check_address(prefix: &str, a: &Address) -> Result<(), Invalid> {
    check_len(&format!("{prefix}.first_name"), &a.first_name, 1, 255)?;
    check_len(&format!("{prefix}.last_name"), &a.last_name, 1, 255)?;
    check_len(&format!("{prefix}.city"), &a.city, 1, 255)?;
    if a.street.is_empty() || a.street.len() > 4 {
        return Err(Invalid::new(
            format!("{prefix}.street"),
            "give 1 to 4 street lines",
        ));
    }
    for (i, line) in a.street.iter().enumerate() {
        check_len(&format!("{prefix}.street[{i}]"), line, 1, 255)?;
    }
    if a.country.len() != 2 || !a.country.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(Invalid::new(
            format!("{prefix}.country"),
            format!("{:?} is not an ISO 3166-1 alpha-2 code like GB", a.country),
        ));
    }
    Ok(())
}

impl OrderInput {
    /// Checks every field; the error names the first one that is wrong.
    pub fn validate(&self) -> Result<(), Invalid> {
        check_code("status", &self.status)?;
        check_source(&self.source)?;
        if let Some(t) = self.created_at {
            check_time("created_at", t)?;
        }
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(Invalid::new(
                "currency",
                format!("{:?} is not an ISO 4217 code like GBP", self.currency),
            ));
        }
        check_address("billing_address", &self.billing_address)?;
        match &self.delivery_address {
            Some(a) => check_address("delivery_address", a)?,
            None if !self.is_virtual => {
                return Err(Invalid::new(
                    "delivery_address",
                    "is required for an order that ships (virtual is false)",
                ));
            }
            None => {}
        }
        if self.lines.is_empty() || self.lines.len() > MAX_LINES {
            return Err(Invalid::new(
                "lines",
                format!("give 1 to {MAX_LINES} lines"),
            ));
        }
        for (i, l) in self.lines.iter().enumerate() {
            check_sku(&format!("lines[{i}].sku"), &l.sku)?;
            check_len(&format!("lines[{i}].name"), &l.name, 1, 255)?;
            if l.qty <= 0 {
                return Err(Invalid::new(
                    format!("lines[{i}].qty"),
                    format!("{} is not a quantity above 0", l.qty),
                ));
            }
            for (field, v) in [
                ("unit_price_net", l.unit_price_net),
                ("unit_price_gross", l.unit_price_gross),
                ("row_total_net", l.row_total_net),
                ("row_total_gross", l.row_total_gross),
            ] {
                if v.is_sign_negative() {
                    return Err(Invalid::new(
                        format!("lines[{i}].{field}"),
                        "must not be negative",
                    ));
                }
            }
        }
        if self.totals.grand_total.is_sign_negative() {
            return Err(Invalid::new("totals.grand_total", "must not be negative"));
        }
        check_units_per_sku(&self.lines)
    }
}

/// The lines of one SKU add up to what a quantity column holds (`i32`): shipments and the stock
/// adjustment count an order's units per SKU, and a total past that would wrap around.
fn check_units_per_sku(lines: &[OrderLineInput]) -> Result<(), Invalid> {
    let mut totals: HashMap<&str, i32> = HashMap::new();
    for (i, l) in lines.iter().enumerate() {
        let total = totals.entry(l.sku.as_str()).or_default();
        *total = total.checked_add(l.qty).ok_or_else(|| {
            Invalid::new(
                format!("lines[{i}].qty"),
                format!(
                    "the lines for SKU {:?} add up to more than {} units; order fewer",
                    l.sku,
                    i32::MAX
                ),
            )
        })?;
    }
    Ok(())
}

/// `web`, `affiliate`, `marketplace:<name>` or another channel name: lowercase letters, digits, `-`,
/// `_`, `.` and one `:`.
fn check_source(source: &str) -> Result<(), Invalid> {
    let ok = !source.is_empty()
        && source.len() <= 64
        && source.matches(':').count() <= 1
        && !source.starts_with(':')
        && !source.ends_with(':')
        && source
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            "source",
            format!(
                "{source:?} is not a channel name like web, affiliate or marketplace:amazon \
                 (lowercase letters, digits, - _ . and one :)"
            ),
        ))
    }
}

/// What a request against an order can run into besides bad input.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// No such order.
    #[error("order {0:?} does not exist")]
    NotFound(String),
    /// The change contradicts what already happened (shipments).
    #[error("{0}")]
    Conflict(String),
    /// The order rules refuse the change (reopening, cancelling a shipped order, changing what the
    /// warehouse has).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Storage failed.
    #[error("database error: {0}")]
    Db(#[from] diesel::result::Error),
    /// A change would have broken a rule wharf checks before it commits (e.g. a split that would
    /// not keep every unit of the order); nothing of it was stored. A bug in wharf, not in the
    /// request.
    #[error("{0}")]
    Inconsistent(String),
}

/// Export state of an order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExportState {
    /// Where the export stands.
    pub status: ExportStatus,
    /// When the warehouse accepted it.
    pub exported_at: Option<DateTime<Utc>>,
    /// Failed attempts since it was last (re)queued; reset when support resends it.
    pub attempts: i32,
    /// What went wrong on the last failed attempt (kept until the next attempt succeeds).
    pub last_error: Option<String>,
    /// When the next attempt is due, for a failed export waiting to be retried.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why it is not sent: `shipped before export` or `split into …` (naming the children) when
    /// `skipped`, support's reason when `dismissed`.
    pub note: Option<String>,
    /// The last time support resent or dismissed the export by hand.
    pub support_action: Option<SupportAction>,
}

/// What support did by hand to an order's export (`wharf orders resend|dismiss`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SupportAction {
    /// Resent (back to pending, attempts reset) or dismissed (handled by hand, never sent).
    pub action: SupportActionKind,
    /// Who did it.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The reason given (always given for a dismissal).
    pub reason: Option<String>,
}

/// A support action on an order's export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SupportActionKind {
    /// Sent again.
    Resend,
    /// Marked handled by hand.
    Dismiss,
}

/// An order line with what has shipped.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderLineView {
    /// The line as ordered.
    #[serde(flatten)]
    pub line: OrderLineInput,
    /// Units shipped so far.
    pub qty_shipped: i32,
}

/// A shipment applied to an order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShipmentView {
    /// The warehouse's message sequence id.
    pub message_seq_id: i64,
    /// Courier.
    pub courier_name: Option<String>,
    /// Courier service.
    pub service_name: Option<String>,
    /// Tracking numbers.
    pub tracking_numbers: Vec<String>,
    /// Units per SKU.
    pub lines: Vec<ShippedLine>,
    /// When the parcel left, as the warehouse says.
    pub date_shipped: Option<DateTime<Utc>>,
    /// When wharf applied it.
    pub created_at: DateTime<Utc>,
    /// Whether the customer should get the shipment e-mail.
    pub notify_customer: bool,
}

/// Units of a SKU in a shipment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShippedLine {
    /// SKU.
    pub sku: String,
    /// Units.
    pub qty: i32,
}

/// An order as wharf knows it (`GET /api/v1/orders/{increment_id}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    /// Order number.
    pub increment_id: String,
    /// Current status (wharf sets `complete` when everything has shipped, and `split` when child
    /// orders took all of it).
    pub status: String,
    /// Channel the order came from.
    pub source: String,
    /// Whether it is virtual.
    #[serde(rename = "virtual")]
    pub is_virtual: bool,
    /// Currency.
    pub currency: String,
    /// When the customer placed it.
    pub created_at: DateTime<Utc>,
    /// When wharf last changed it: the storefront's PUT, a cancellation, a shipment. (Export
    /// changes do not move it; they come on the feed as `order.export_status_changed`.)
    pub updated_at: DateTime<Utc>,
    /// Export to the warehouse.
    pub export: ExportState,
    /// The cancellation at the warehouse of an exported order that was cancelled (null when no
    /// cancellation is involved).
    pub cancellation: Option<CancellationView>,
    /// Lines with shipped quantities.
    pub lines: Vec<OrderLineView>,
    /// Shipments, oldest first.
    pub shipments: Vec<ShipmentView>,
    /// Every tracking number of every shipment.
    pub tracking_numbers: Vec<String>,
    /// The order this one was split from (`POST /api/v1/orders/{increment_id}/split`).
    pub parent: Option<String>,
    /// The orders split from this one, in the order they were made.
    pub children: Vec<String>,
    /// What the channel the order came from (a marketplace, an affiliate system) was told, oldest
    /// first; empty for an order of a source no channel claims.
    pub pushes: Vec<PushView>,
    /// The rest of what the storefront sent (addresses, totals, methods, coupon, note).
    pub details: OrderInput,
}

/// One push to the order's channel: a task of the outbound queue.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PushView {
    /// The channel (`[[channels]]` name).
    pub channel: String,
    /// `ship`, `cancel`, `refund`, `status`, `edit` or `split`.
    pub action: String,
    /// `pending`, `awaiting` (the channel's ticket is being read), `failed` (retried), `lost` or
    /// `dead` (waiting for support), `done`, `dismissed` or `skipped`.
    pub state: String,
    /// Refusals counted.
    pub attempts: i32,
    /// Why the last try did not go through.
    pub last_error: Option<String>,
    /// When it is due (a delayed ship, a retry, the next ticket read).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The batch id the channel answered with.
    pub batch_id: Option<String>,
    /// The ticket id of that batch.
    pub ticket_id: Option<String>,
    /// The order's push number it carries (increasing per order).
    pub sequence: Option<i64>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When the channel took it.
    pub done_at: Option<DateTime<Utc>>,
    /// Support's reason, or why it was skipped.
    pub note: Option<String>,
}

/// An order row as stored.
#[derive(Queryable)]
struct OrderRow {
    id: i64,
    increment_id: String,
    status: String,
    source: String,
    is_virtual: bool,
    document: String,
    ordered_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    export_status: String,
    exported_at: Option<NaiveDateTime>,
    parent_id: Option<i64>,
}

/// Reads an order with its lines, shipments and tracking.
pub fn get(conn: &mut DbConnection, increment_id: &str) -> Result<OrderView, OrderError> {
    let row: OrderRow = orders::table
        .filter(orders::increment_id.eq(increment_id))
        .select((
            orders::id,
            orders::increment_id,
            orders::status,
            orders::source,
            orders::is_virtual,
            orders::document,
            orders::ordered_at,
            orders::updated_at,
            orders::export_status,
            orders::exported_at,
            orders::parent_id,
        ))
        .first(conn)
        .optional()?
        .ok_or_else(|| OrderError::NotFound(increment_id.to_string()))?;
    let details: OrderInput = serde_json::from_str(&row.document)
        .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?;
    let export_status = text_enum::read::<ExportStatus>(&row.export_status)?;
    let cancellation = view::cancellation(conn, &row.increment_id, &row.status, export_status)?;
    let export = view::export_state(conn, &row.increment_id, export_status, row.exported_at)?;
    let lines = lines_of(conn, row.id, &details)?;
    let shipments = shipments_of(conn, row.id)?;
    let (parent, children) = family_of(conn, row.id, row.parent_id)?;
    let pushes = pushes_of(conn, &row.increment_id)?;
    let tracking_numbers = shipments
        .iter()
        .flat_map(|s| s.tracking_numbers.clone())
        .collect();
    Ok(OrderView {
        increment_id: row.increment_id,
        status: row.status,
        source: row.source,
        is_virtual: row.is_virtual,
        currency: details.currency.clone(),
        created_at: row.ordered_at.and_utc(),
        updated_at: row.updated_at.and_utc(),
        export,
        cancellation,
        lines,
        shipments,
        tracking_numbers,
        parent,
        children,
        pushes,
        details,
    })
}

/// The order number of the order's parent, and those of its children (split orders).
fn family_of(
    conn: &mut DbConnection,
    id: i64,
    parent_id: Option<i64>,
) -> QueryResult<(Option<String>, Vec<String>)> {
    let parent = match parent_id {
        Some(p) => orders::table
            .find(p)
            .select(orders::increment_id)
            .first(conn)
            .optional()?,
        None => None,
    };
    let children = orders::table
        .filter(orders::parent_id.eq(id))
        .order(orders::id)
        .select(orders::increment_id)
        .load(conn)?;
    Ok((parent, children))
}

/// The order's pushes to its channel: its tasks on every channel but the warehouse and the mailer.
fn pushes_of(conn: &mut DbConnection, increment_id: &str) -> QueryResult<Vec<PushView>> {
    let own = [crate::outbound::WAREHOUSE, crate::alerts::SMTP];
    let rows = crate::outbound::subject_tasks_except(conn, increment_id, &own)?;
    Ok(rows
        .into_iter()
        .map(|t| PushView {
            channel: t.channel,
            action: t.action,
            state: t.state.as_str().to_string(),
            attempts: t.attempts,
            last_error: t.last_error,
            next_attempt_at: t.run_after.map(|at| at.and_utc()),
            batch_id: t.batch_id,
            ticket_id: t.ticket_id,
            sequence: t.sequence,
            created_at: t.created_at.and_utc(),
            done_at: t.done_at.map(|at| at.and_utc()),
            note: t.note,
        })
        .collect())
}

/// The order's lines with what has shipped of each.
fn lines_of(
    conn: &mut DbConnection,
    id: i64,
    details: &OrderInput,
) -> QueryResult<Vec<OrderLineView>> {
    let shipped: Vec<i32> = order_lines::table
        .filter(order_lines::order_id.eq(id))
        .order(order_lines::line_no)
        .select(order_lines::qty_shipped)
        .load(conn)?;
    Ok(details
        .lines
        .iter()
        .cloned()
        .zip(shipped.into_iter().chain(std::iter::repeat(0)))
        .map(|(line, qty_shipped)| OrderLineView { line, qty_shipped })
        .collect())
}

/// A shipment row as stored.
#[derive(Queryable)]
struct ShipmentRow {
    id: i64,
    message_seq_id: i64,
    courier_name: Option<String>,
    service_name: Option<String>,
    date_shipped: Option<NaiveDateTime>,
    created_at: NaiveDateTime,
    notify_customer: bool,
}

/// The order's shipments, oldest first, with their lines and tracking numbers.
fn shipments_of(conn: &mut DbConnection, id: i64) -> QueryResult<Vec<ShipmentView>> {
    let rows: Vec<ShipmentRow> = shipments::table
        .filter(shipments::order_id.eq(id))
        .order(shipments::id)
        .select((
            shipments::id,
            shipments::message_seq_id,
            shipments::courier_name,
            shipments::service_name,
            shipments::date_shipped,
            shipments::created_at,
            shipments::notify_customer,
        ))
        .load(conn)?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let all_lines: Vec<(i64, String, i32)> = shipment_lines::table
        .filter(shipment_lines::shipment_id.eq_any(&ids))
        .order((shipment_lines::shipment_id, shipment_lines::line_no))
        .select((
            shipment_lines::shipment_id,
            shipment_lines::sku,
            shipment_lines::qty,
        ))
        .load(conn)?;
    let all_tracks: Vec<(i64, String)> = shipment_tracking::table
        .filter(shipment_tracking::shipment_id.eq_any(&ids))
        .order((shipment_tracking::shipment_id, shipment_tracking::position))
        .select((
            shipment_tracking::shipment_id,
            shipment_tracking::tracking_number,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| ShipmentView {
            message_seq_id: r.message_seq_id,
            courier_name: r.courier_name,
            service_name: r.service_name,
            tracking_numbers: all_tracks
                .iter()
                .filter(|t| t.0 == r.id)
                .map(|t| t.1.clone())
                .collect(),
            lines: all_lines
                .iter()
                .filter(|l| l.0 == r.id)
                .map(|l| ShippedLine {
                    sku: l.1.clone(),
                    qty: l.2,
                })
                .collect(),
            date_shipped: r.date_shipped.map(|t| t.and_utc()),
            created_at: r.created_at.and_utc(),
            notify_customer: r.notify_customer,
        })
        .collect())
}
