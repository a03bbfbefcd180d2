//! Orders the storefront pushes: validation, create-or-update, cancel, and the view with export status,
//! shipments and per-line shipped quantities.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::schema::{order_lines, orders, shipment_lines, shipment_tracking, shipments};
use crate::db::{self, DbConnection};
use crate::validate::{Invalid, check_code, check_len, check_sku};

/// Statuses in which an order can no longer be shipped.
pub const UNSHIPPABLE_STATUSES: &[&str] = &["canceled", "cancelled", "closed", "complete"];
/// The status wharf gives an order when every line has shipped.
pub const COMPLETE: &str = "complete";
/// The status of a cancelled order.
pub const CANCELED: &str = "canceled";

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
        Ok(())
    }
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
    /// Storage failed.
    #[error("database error: {0}")]
    Db(#[from] diesel::result::Error),
}

/// Export state of an order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExportState {
    /// `pending`, `exported`, `failed` or `lost`.
    pub status: String,
    /// When the warehouse accepted it.
    pub exported_at: Option<NaiveDateTime>,
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
    pub date_shipped: Option<NaiveDateTime>,
    /// When wharf applied it.
    pub created_at: NaiveDateTime,
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
    /// Current status (wharf sets `complete` when everything has shipped).
    pub status: String,
    /// Channel the order came from.
    pub source: String,
    /// Whether it is virtual.
    #[serde(rename = "virtual")]
    pub is_virtual: bool,
    /// Currency.
    pub currency: String,
    /// When the customer placed it.
    pub created_at: NaiveDateTime,
    /// When wharf last changed it.
    pub updated_at: NaiveDateTime,
    /// Export to the warehouse.
    pub export: ExportState,
    /// The cancellation at the warehouse of an exported order that was cancelled (null when no
    /// cancellation is involved).
    pub cancellation: Option<crate::export::CancellationView>,
    /// Lines with shipped quantities.
    pub lines: Vec<OrderLineView>,
    /// Shipments, oldest first.
    pub shipments: Vec<ShipmentView>,
    /// Every tracking number of every shipment.
    pub tracking_numbers: Vec<String>,
    /// The rest of what the storefront sent (addresses, totals, methods, coupon, note).
    pub details: OrderInput,
}

/// Creates or replaces an order. Returns whether it was created. Lines are replaced, keeping what has
/// shipped per SKU; reducing a SKU below its shipped quantity is a conflict.
pub fn upsert(
    conn: &mut DbConnection,
    increment_id: &str,
    input: &OrderInput,
) -> Result<bool, OrderError> {
    check_len("increment_id", increment_id, 1, 64)?;
    input.validate()?;
    let document = serde_json::to_string(input).expect("orders serialise");
    db::write_tx(conn, |conn| {
        let now = db::now();
        let existing: Option<i64> = orders::table
            .filter(orders::increment_id.eq(increment_id))
            .select(orders::id)
            .first(conn)
            .optional()?;
        let ordered_at = input.created_at.map(|t| t.naive_utc()).unwrap_or(now);
        let (order_id, created) = match existing {
            Some(id) => {
                diesel::update(orders::table.find(id))
                    .set((
                        orders::status.eq(&input.status),
                        orders::source.eq(&input.source),
                        orders::is_virtual.eq(input.is_virtual),
                        orders::document.eq(&document),
                        orders::ordered_at.eq(ordered_at),
                        orders::updated_at.eq(now),
                    ))
                    .execute(conn)?;
                (id, false)
            }
            None => {
                let id: i64 =
                    crate::with_backend!(&mut *conn, |c| diesel::insert_into(orders::table)
                        .values((
                            orders::increment_id.eq(increment_id),
                            orders::status.eq(&input.status),
                            orders::source.eq(&input.source),
                            orders::is_virtual.eq(input.is_virtual),
                            orders::document.eq(&document),
                            orders::ordered_at.eq(ordered_at),
                            orders::received_at.eq(now),
                            orders::updated_at.eq(now),
                            orders::export_status.eq("pending"),
                        ))
                        .returning(orders::id)
                        .get_result(c))?;
                (id, true)
            }
        };
        // Shipped units per SKU survive the replacement of the lines.
        let shipped: Vec<(String, i32)> = order_lines::table
            .filter(order_lines::order_id.eq(order_id))
            .select((order_lines::sku, order_lines::qty_shipped))
            .load(conn)?;
        let mut shipped_by_sku: HashMap<String, i32> = HashMap::new();
        for (sku, q) in shipped {
            *shipped_by_sku.entry(sku).or_default() += q;
        }
        let mut ordered_by_sku: HashMap<&str, i32> = HashMap::new();
        for l in &input.lines {
            *ordered_by_sku.entry(l.sku.as_str()).or_default() += l.qty;
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
        diesel::delete(order_lines::table.filter(order_lines::order_id.eq(order_id)))
            .execute(conn)?;
        let mut rows = Vec::with_capacity(input.lines.len());
        for (i, l) in input.lines.iter().enumerate() {
            let left = shipped_by_sku.entry(l.sku.clone()).or_default();
            let here = (*left).min(l.qty);
            *left -= here;
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
        Ok(created)
    })
}

/// Cancels an order. A fully shipped order cannot be cancelled.
pub fn cancel(conn: &mut DbConnection, increment_id: &str) -> Result<(), OrderError> {
    db::write_tx(conn, |conn| {
        let status: String = orders::table
            .filter(orders::increment_id.eq(increment_id))
            .select(orders::status)
            .first(conn)
            .optional()?
            .ok_or_else(|| OrderError::NotFound(increment_id.to_string()))?;
        if status == COMPLETE {
            return Err(OrderError::Conflict(format!(
                "order {increment_id} has shipped completely and cannot be cancelled"
            )));
        }
        diesel::update(orders::table.filter(orders::increment_id.eq(increment_id)))
            .set((
                orders::status.eq(CANCELED),
                orders::updated_at.eq(db::now()),
            ))
            .execute(conn)?;
        Ok(())
    })
}

type OrderRow = (
    i64,
    String,
    String,
    String,
    bool,
    String,
    NaiveDateTime,
    NaiveDateTime,
    String,
    Option<NaiveDateTime>,
);

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
        ))
        .first(conn)
        .optional()?
        .ok_or_else(|| OrderError::NotFound(increment_id.to_string()))?;
    let (
        id,
        increment_id,
        status,
        source,
        is_virtual,
        document,
        ordered_at,
        updated_at,
        export_status,
        exported_at,
    ) = row;
    let details: OrderInput = serde_json::from_str(&document)
        .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?;
    let cancellation = crate::export::cancellation_view(conn, id, &status, &export_status)?;
    let shipped: Vec<i32> = order_lines::table
        .filter(order_lines::order_id.eq(id))
        .order(order_lines::line_no)
        .select(order_lines::qty_shipped)
        .load(conn)?;
    let lines = details
        .lines
        .iter()
        .cloned()
        .zip(shipped.into_iter().chain(std::iter::repeat(0)))
        .map(|(line, qty_shipped)| OrderLineView { line, qty_shipped })
        .collect();
    type ShipmentRow = (
        i64,
        i64,
        Option<String>,
        Option<String>,
        Option<NaiveDateTime>,
        NaiveDateTime,
        bool,
    );
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
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
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
    let shipments: Vec<ShipmentView> = rows
        .into_iter()
        .map(
            |(
                sid,
                message_seq_id,
                courier_name,
                service_name,
                date_shipped,
                created_at,
                notify_customer,
            )| ShipmentView {
                message_seq_id,
                courier_name,
                service_name,
                tracking_numbers: all_tracks
                    .iter()
                    .filter(|t| t.0 == sid)
                    .map(|t| t.1.clone())
                    .collect(),
                lines: all_lines
                    .iter()
                    .filter(|l| l.0 == sid)
                    .map(|l| ShippedLine {
                        sku: l.1.clone(),
                        qty: l.2,
                    })
                    .collect(),
                date_shipped,
                created_at,
                notify_customer,
            },
        )
        .collect();
    let tracking_numbers = shipments
        .iter()
        .flat_map(|s| s.tracking_numbers.clone())
        .collect();
    Ok(OrderView {
        increment_id,
        status,
        source,
        is_virtual,
        currency: details.currency.clone(),
        created_at: ordered_at,
        updated_at,
        export: ExportState {
            status: export_status,
            exported_at,
        },
        cancellation,
        lines,
        shipments,
        tracking_numbers,
        details,
    })
}
