//! The order file a file channel writes: one namespace-free XML document per batch, typed with
//! yaserde, documented by `schemas/orders-file.xsd`.
//!
//! ```xml
//! <?xml version="1.0" encoding="UTF-8"?>
//! <orders channel="dropbox" file="orders_dropbox_20261207T101500Z_7.xml" created="2026-12-07T10:15:00Z" count="1">
//!   <order>
//!     <increment_id>100000123</increment_id>
//!     <ordered_at>2024-05-01T09:30:00Z</ordered_at>
//!     <status>processing</status>
//!     …
//!   </order>
//! </orders>
//! ```
//!
//! Each order is built from its stored document ([`OrderInput`]) the way the warehouse's import
//! document is (`crate::channels::warehouse::document`): amounts as plain decimals without
//! trailing zeros, zero amounts written, empty optional values left out. Characters XML 1.0 cannot
//! carry (control characters other than tab and line breaks) are dropped, so no stored value can
//! make the file unreadable.

use chrono::NaiveDateTime;
use rust_decimal::Decimal;
use yaserde::{YaDeserialize, YaSerialize};

use crate::channels::warehouse::document::amount;
use crate::orders::{Address, OrderInput};

/// An order file: the orders of one batch.
#[derive(Debug, Clone, Default, PartialEq, YaSerialize, YaDeserialize)]
#[yaserde(rename = "orders")]
pub struct OrdersFile {
    /// The channel that wrote it.
    #[yaserde(attribute = true)]
    pub channel: String,
    /// Its final name (the same as on the server).
    #[yaserde(attribute = true)]
    pub file: String,
    /// When the batch was recorded (UTC, `YYYY-MM-DDThh:mm:ssZ`).
    #[yaserde(attribute = true)]
    pub created: String,
    /// How many orders it holds.
    #[yaserde(attribute = true)]
    pub count: u32,
    /// The orders, oldest task first.
    #[yaserde(rename = "order")]
    pub orders: Vec<FileOrder>,
}

/// One order, with what a warehouse needs to ship it.
#[derive(Debug, Clone, Default, PartialEq, YaSerialize, YaDeserialize)]
pub struct FileOrder {
    /// The order number (increment id): what a shipment file names.
    pub increment_id: String,
    /// When the customer placed it (UTC).
    pub ordered_at: String,
    /// Its status in the storefront (`processing`: invoiced).
    pub status: String,
    /// Where it came from (`web`, `affiliate`, `marketplace:<name>`).
    pub source: String,
    /// ISO 4217 currency of every amount.
    pub currency: String,
    /// Who ordered it.
    pub customer: Customer,
    /// The payment method code.
    pub payment_method: Option<String>,
    /// The shipping method chosen at checkout.
    pub shipping_method: Option<FileShippingMethod>,
    /// The coupon code used.
    pub coupon: Option<String>,
    /// The note the customer left.
    pub customer_note: Option<String>,
    /// The billing address.
    pub billing_address: FileAddress,
    /// The delivery address.
    pub delivery_address: Option<FileAddress>,
    /// The ordered lines.
    pub lines: FileLines,
    /// The order's totals.
    pub totals: FileTotals,
}

/// The customer, as the billing address names them.
#[derive(Debug, Clone, Default, PartialEq, YaSerialize, YaDeserialize)]
pub struct Customer {
    /// First and last name.
    pub name: String,
    /// E-mail address.
    pub email: Option<String>,
    /// Telephone.
    pub phone: Option<String>,
}

/// A shipping method.
#[derive(Debug, Clone, Default, PartialEq, YaSerialize, YaDeserialize)]
pub struct FileShippingMethod {
    /// Machine code (`flatrate_flatrate`).
    pub code: String,
    /// The name the customer saw.
    pub name: String,
}

/// A postal address.
#[derive(Debug, Clone, Default, PartialEq, YaSerialize, YaDeserialize)]
pub struct FileAddress {
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Company.
    pub company: Option<String>,
    /// Street lines (1 to 4).
    pub street: Vec<String>,
    /// Town or city.
    pub city: String,
    /// County, state or region.
    pub region: Option<String>,
    /// Postal code.
    pub postcode: Option<String>,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
    /// Telephone.
    pub phone: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
}

/// The lines of an order.
#[derive(Debug, Clone, Default, PartialEq, YaSerialize, YaDeserialize)]
pub struct FileLines {
    /// One per SKU ordered.
    pub line: Vec<FileLine>,
}

/// One ordered line; amounts in the order's currency.
#[derive(Debug, Clone, Default, PartialEq, YaSerialize, YaDeserialize)]
pub struct FileLine {
    /// The SKU.
    pub sku: String,
    /// The product's name.
    pub name: String,
    /// Units ordered.
    pub qty: i32,
    /// Unit price without tax.
    pub unit_price_net: String,
    /// Unit price with tax.
    pub unit_price_gross: String,
    /// Tax per unit.
    pub unit_tax: String,
    /// Line total without tax.
    pub row_total_net: String,
    /// Line total with tax.
    pub row_total_gross: String,
    /// Tax on the line.
    pub row_tax: String,
}

/// An order's totals.
#[derive(Debug, Clone, Default, PartialEq, YaSerialize, YaDeserialize)]
pub struct FileTotals {
    /// The lines without tax, before discount and shipping.
    pub subtotal: String,
    /// Shipping without tax.
    pub shipping: String,
    /// Tax on shipping.
    pub shipping_tax: String,
    /// Discount given (zero or negative).
    pub discount: String,
    /// Tax included in the grand total.
    pub tax: String,
    /// What the customer pays.
    pub grand_total: String,
}

/// A timestamp as the file writes it: UTC, to the second.
pub fn timestamp(at: NaiveDateTime) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `s` without the characters XML 1.0 cannot carry (controls other than tab, CR and LF).
fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
        .collect()
}

/// An optional value, left out when empty.
fn opt(s: Option<&str>) -> Option<String> {
    s.filter(|v| !v.trim().is_empty()).map(clean)
}

fn money(d: Decimal) -> String {
    amount(d)
}

fn address(a: &Address) -> FileAddress {
    FileAddress {
        first_name: clean(&a.first_name),
        last_name: clean(&a.last_name),
        company: opt(a.company.as_deref()),
        street: a.street.iter().map(|l| clean(l)).collect(),
        city: clean(&a.city),
        region: opt(a.region.as_deref()),
        postcode: opt(a.postcode.as_deref()),
        country: clean(&a.country),
        phone: opt(a.phone.as_deref()),
        email: opt(a.email.as_deref()),
    }
}

/// The file's entry for order `increment_id`, placed at `ordered_at`, from its stored document.
pub fn order_entry(increment_id: &str, ordered_at: NaiveDateTime, o: &OrderInput) -> FileOrder {
    let b = &o.billing_address;
    let t = &o.totals;
    FileOrder {
        increment_id: clean(increment_id),
        ordered_at: timestamp(ordered_at),
        status: clean(&o.status),
        source: clean(&o.source),
        currency: clean(&o.currency),
        customer: Customer {
            name: clean(&format!("{} {}", b.first_name, b.last_name)),
            email: opt(b.email.as_deref()),
            phone: opt(b.phone.as_deref()),
        },
        payment_method: opt(o.payment_method.as_deref()),
        shipping_method: o.shipping_method.as_ref().map(|m| FileShippingMethod {
            code: clean(&m.code),
            name: clean(&m.name),
        }),
        coupon: opt(o.coupon.as_deref()),
        customer_note: opt(o.customer_note.as_deref()),
        billing_address: address(b),
        delivery_address: o.delivery_address.as_ref().map(address),
        lines: FileLines {
            line: o
                .lines
                .iter()
                .map(|l| FileLine {
                    sku: clean(&l.sku),
                    name: clean(&l.name),
                    qty: l.qty,
                    unit_price_net: money(l.unit_price_net),
                    unit_price_gross: money(l.unit_price_gross),
                    unit_tax: money(l.unit_tax),
                    row_total_net: money(l.row_total_net),
                    row_total_gross: money(l.row_total_gross),
                    row_tax: money(l.row_tax),
                })
                .collect(),
        },
        totals: FileTotals {
            subtotal: money(t.subtotal),
            shipping: money(t.shipping),
            shipping_tax: money(t.shipping_tax),
            discount: money(t.discount),
            tax: money(t.tax),
            grand_total: money(t.grand_total),
        },
    }
}

/// The document of file `file` of `channel`, recorded at `created`, holding `orders` (indented,
/// with the XML declaration).
pub fn document(
    channel: &str,
    file: &str,
    created: NaiveDateTime,
    orders: Vec<FileOrder>,
) -> Result<String, String> {
    let doc = OrdersFile {
        channel: clean(channel),
        file: clean(file),
        created: timestamp(created),
        count: u32::try_from(orders.len()).unwrap_or(u32::MAX),
        orders,
    };
    let config = yaserde::ser::Config {
        perform_indent: true,
        write_document_declaration: true,
        indent_string: None,
    };
    yaserde::ser::to_string_with_config(&doc, &config)
        .map_err(|e| format!("the order file {file} could not be written as XML: {e}"))
}

/// Reads an order file back (for tests and tools).
pub fn parse(xml: &str) -> Result<OrdersFile, String> {
    yaserde::de::from_str(xml).map_err(|e| format!("not an order file: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> OrderInput {
        serde_json::from_value(serde_json::json!({
            "status": "processing", "currency": "GBP", "payment_method": "checkmo",
            "shipping_method": {"code": "flatrate_flatrate", "name": "Flat Rate"},
            "billing_address": {"first_name": "Ada", "last_name": "Lovelace",
                "street": ["12 St James's Square", "Flat <2> & co"], "city": "London",
                "postcode": "SW1Y 4JH", "country": "GB", "email": "ada@example.com"},
            "delivery_address": {"first_name": "Ada", "last_name": "Lovelace",
                "street": ["12 St James's Square"], "city": "London", "country": "GB"},
            "totals": {"subtotal": "20.00", "shipping": "5.00", "tax": "4.17", "grand_total": "25.00"},
            "lines": [{"sku": "ABC123", "name": "Blue\u{1}Widget", "qty": 2, "unit_price_net": "8.33",
                "unit_price_gross": "10.00", "unit_tax": "1.67", "row_total_net": "16.67",
                "row_total_gross": "20.00", "row_tax": "3.33"}]
        }))
        .unwrap()
    }

    fn at(h: u32) -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 12, 7)
            .unwrap()
            .and_hms_opt(h, 15, 0)
            .unwrap()
    }

    const EXPECTED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<orders channel="dropbox" file="orders_dropbox_20261207T101500Z_7.xml" created="2026-12-07T10:15:00Z" count="1">
  <order>
    <increment_id>100000123</increment_id>
    <ordered_at>2026-12-07T09:15:00Z</ordered_at>
    <status>processing</status>
    <source>web</source>
    <currency>GBP</currency>
    <customer>
      <name>Ada Lovelace</name>
      <email>ada@example.com</email>
    </customer>
    <payment_method>checkmo</payment_method>
    <shipping_method>
      <code>flatrate_flatrate</code>
      <name>Flat Rate</name>
    </shipping_method>
    <billing_address>
      <first_name>Ada</first_name>
      <last_name>Lovelace</last_name>
      <street>12 St James's Square</street>
      <street>Flat &lt;2&gt; &amp; co</street>
      <city>London</city>
      <postcode>SW1Y 4JH</postcode>
      <country>GB</country>
      <email>ada@example.com</email>
    </billing_address>
    <delivery_address>
      <first_name>Ada</first_name>
      <last_name>Lovelace</last_name>
      <street>12 St James's Square</street>
      <city>London</city>
      <country>GB</country>
    </delivery_address>
    <lines>
      <line>
        <sku>ABC123</sku>
        <name>BlueWidget</name>
        <qty>2</qty>
        <unit_price_net>8.33</unit_price_net>
        <unit_price_gross>10</unit_price_gross>
        <unit_tax>1.67</unit_tax>
        <row_total_net>16.67</row_total_net>
        <row_total_gross>20</row_total_gross>
        <row_tax>3.33</row_tax>
      </line>
    </lines>
    <totals>
      <subtotal>20</subtotal>
      <shipping>5</shipping>
      <shipping_tax>0</shipping_tax>
      <discount>0</discount>
      <tax>4.17</tax>
      <grand_total>25</grand_total>
    </totals>
  </order>
</orders>"#;

    #[test]
    fn a_batch_is_written_in_the_schema_shape_and_reads_back() {
        let name = "orders_dropbox_20261207T101500Z_7.xml";
        let entry = order_entry("100000123", at(9), &order());
        let xml = document("dropbox", name, at(10), vec![entry.clone()]).unwrap();
        assert_eq!(xml, EXPECTED);
        let back = parse(&xml).unwrap();
        assert_eq!(back.count, 1);
        assert_eq!(back.file, name);
        assert_eq!(back.orders, vec![entry]);
    }

    #[test]
    fn every_element_the_file_writes_is_in_the_schema() {
        let xsd = include_str!("../../../schemas/orders-file.xsd");
        let mut entry = order_entry("1", at(9), &order());
        entry.coupon = Some("SAVE".into());
        entry.customer_note = Some("ring twice".into());
        entry.customer.phone = Some("0207".into());
        entry.billing_address.company = Some("Analytical".into());
        entry.billing_address.region = Some("London".into());
        entry.billing_address.phone = Some("0207".into());
        let xml = document("c", "f.xml", at(10), vec![entry]).unwrap();
        let mut reader = quick_xml::Reader::from_str(&xml);
        loop {
            match reader.read_event().unwrap() {
                quick_xml::events::Event::Start(e) => {
                    let name = e.name().into_inner().to_string();
                    assert!(
                        xsd.contains(&format!("name=\"{name}\"")),
                        "<{name}> is not in schemas/orders-file.xsd"
                    );
                }
                quick_xml::events::Event::Eof => break,
                _ => {}
            }
        }
    }
}
