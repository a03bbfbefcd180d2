//! The OrderFlow import documents wharf sends: `<imports><import …><![CDATA[key=value lines]]></import>`.
//!
//! Unlike the Magento extensions, zero amounts are sent (a free item is not an item without a price),
//! CR and LF are stripped from every value so a value cannot start a new key, and `]]>` is split so a
//! value cannot end the CDATA section.

use chrono::NaiveDateTime;
use quick_xml::escape::escape;
use rust_decimal::Decimal;

use crate::orders::{Address, OrderInput};
use crate::products::ProductInput;

/// `key=value` lines, in order.
#[derive(Debug, Default)]
struct Fields(Vec<(String, String)>);

impl Fields {
    fn put(&mut self, key: impl Into<String>, value: impl AsRef<str>) {
        let clean: String = value
            .as_ref()
            .chars()
            .filter(|c| *c != '\r' && *c != '\n')
            .collect();
        self.0.push((key.into(), clean));
    }
    fn opt(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
            self.put(key, v);
        }
    }
    fn money(&mut self, key: impl Into<String>, value: Decimal) {
        self.put(key, amount(value));
    }
    fn cdata(&self, trailing_newline: bool) -> String {
        let mut text = self
            .0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("\n");
        if trailing_newline {
            text.push('\n');
        }
        // A CDATA section cannot contain "]]>": close it after "]]" and reopen it before ">".
        format!("<![CDATA[{}]]>", text.replace("]]>", "]]]]><![CDATA[>"))
    }
}

/// An amount as OrderFlow expects it: plain decimal, no trailing zeros (`25`, `8.33`, `0`).
pub fn amount(value: Decimal) -> String {
    value.normalize().to_string()
}

/// Address lines as OrderFlow wants them: street lines, town and region, with empty slots closed up.
fn address(fields: &mut Fields, prefix: &str, a: &Address) {
    let mut lines: Vec<&str> = a.street.iter().map(String::as_str).collect();
    lines.push(&a.city);
    if let Some(r) = &a.region {
        lines.push(r);
    }
    for (i, line) in lines
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .take(6)
        .enumerate()
    {
        fields.put(format!("{prefix}AddressLine{}", i + 1), line);
    }
    fields.put(format!("{prefix}CountryCode"), &a.country);
    fields.opt(&format!("{prefix}PostCode"), a.postcode.as_deref());
    fields.put(
        format!("{prefix}ContactName"),
        format!("{} {}", a.first_name, a.last_name),
    );
    fields.opt(&format!("{prefix}EmailAddress"), a.email.as_deref());
    fields.opt(&format!("{prefix}DayPhoneNumber"), a.phone.as_deref());
    fields.opt(&format!("{prefix}CompanyName"), a.company.as_deref());
}

/// The key=value body of one order.
fn order_fields(increment_id: &str, o: &OrderInput, exported: NaiveDateTime) -> Fields {
    let mut f = Fields::default();
    let t = &o.totals;
    let goods_tax: Decimal = o.lines.iter().map(|l| l.row_tax).sum();
    f.put("externalReference", increment_id);
    f.opt("paymentGatewayIdentifier", o.payment_method.as_deref());
    f.opt("customerComment", o.customer_note.as_deref());
    f.money("totalPriceNet", t.grand_total - t.tax);
    f.money("totalPriceGross", t.grand_total);
    f.money("totalTax", t.tax);
    f.money("shippingPriceNet", t.shipping);
    f.money("shippingPriceGross", t.shipping + t.shipping_tax);
    f.money("shippingTax", t.shipping_tax);
    f.money("goodsPriceNet", t.subtotal);
    f.money("goodsPriceGross", t.subtotal + goods_tax);
    f.money("goodsTax", goods_tax);
    f.put("currency", &o.currency);
    f.opt("promotionCode", o.coupon.as_deref());
    f.put("source", &o.source);
    f.put("status", &o.status);
    f.put("exported", exported.format("%Y-%m-%dT%H:%M:%S").to_string());
    if let Some(a) = &o.delivery_address {
        address(&mut f, "delivery", a);
    }
    address(&mut f, "invoice", &o.billing_address);
    for (i, l) in o.lines.iter().enumerate() {
        let n = i + 1;
        f.put(format!("orderLine.{n}.product.externalReference"), &l.sku);
        f.put(format!("orderLine.{n}.quantity"), l.qty.to_string());
        f.put(format!("orderLine.{n}.description"), &l.name);
        f.money(format!("orderLine.{n}.totalPriceNet"), l.row_total_net);
        f.money(format!("orderLine.{n}.totalPriceGross"), l.row_total_gross);
        f.money(format!("orderLine.{n}.totalTax"), l.row_tax);
        f.money(format!("orderLine.{n}.unitPriceNet"), l.unit_price_net);
        f.money(format!("orderLine.{n}.unitPriceGross"), l.unit_price_gross);
        f.money(format!("orderLine.{n}.unitTax"), l.unit_tax);
        f.put(format!("orderLine.{n}.shipment"), "entity:shipment");
    }
    f.put("shipment.externalReference", increment_id);
    if let Some(m) = &o.shipping_method {
        f.put("shipment.deliverySuggestionCode", &m.code);
        f.put("shipment.deliverySuggestionName", &m.name);
    }
    f.opt("shipment.deliveryInstruction", o.customer_note.as_deref());
    f.put("shipment.orderItem", "entity:order");
    f
}

fn import(kind: &str, operation: &str, reference: &str, body: &str) -> String {
    format!(
        "<import type=\"{kind}\" operation=\"{operation}\" externalReference=\"{}\">{body}</import>",
        escape(reference)
    )
}

/// The import document for a batch of orders (`type="order" operation="insert"`).
pub fn orders_document(orders: &[(String, OrderInput)], exported: NaiveDateTime) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<imports>");
    for (id, o) in orders {
        xml.push_str(&import(
            "order",
            "insert",
            id,
            &order_fields(id, o, exported).cdata(true),
        ));
    }
    xml.push_str("</imports>");
    xml
}

/// The import document for a batch of products (`type="product" operation="merge"`).
pub fn products_document(products: &[(String, ProductInput)]) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<imports>");
    for (sku, p) in products {
        let mut f = Fields::default();
        f.put("externalReference", sku);
        f.put("description", &p.name);
        f.opt("barcode", p.barcode.as_deref());
        if let Some(w) = p.weight {
            f.money("weight", w);
        }
        f.opt("weightUnits", p.weight_unit.as_deref());
        if let Some(price) = p.price {
            f.money("priceNet", price);
        }
        f.put("sellable", "1");
        if let Some(price) = p.price {
            f.money("priceGross", price);
        }
        f.opt("taxCode", p.tax_code.as_deref());
        for (k, v) in [
            ("length", p.length),
            ("width", p.width),
            ("height", p.height),
        ] {
            if let Some(v) = v {
                f.money(k, v);
            }
        }
        xml.push_str(&import("product", "merge", sku, &f.cdata(false)));
    }
    xml.push_str("</imports>");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_order() -> OrderInput {
        serde_json::from_value(serde_json::json!({
            "status": "processing", "currency": "GBP", "payment_method": "Check / Money order",
            "shipping_method": {"code": "flatrate_flatrate", "name": "Flat Rate - Fixed"},
            "billing_address": {"first_name": "Jane", "last_name": "Smith", "street": ["1 High Street", "Flat 2"],
                "city": "London", "region": "Greater London", "postcode": "SW1A 1AA", "country": "GB",
                "phone": "07700900123", "email": "jane@example.com"},
            "delivery_address": {"first_name": "Jane", "last_name": "Smith", "street": ["1 High Street", "Flat 2"],
                "city": "London", "region": "Greater London", "postcode": "SW1A 1AA", "country": "GB",
                "phone": "07700900123", "email": "jane@example.com"},
            "totals": {"subtotal": "20.00", "shipping": "5.00", "shipping_tax": "1.00", "tax": "5.00", "grand_total": "30.00"},
            "lines": [{"sku": "ABC123", "name": "Blue Widget", "qty": 2, "unit_price_net": "10.00",
                "unit_price_gross": "12.00", "unit_tax": "2.00", "row_total_net": "20.00",
                "row_total_gross": "24.00", "row_tax": "4.00"}]
        }))
        .unwrap()
    }

    #[test]
    fn an_order_document_has_the_fixture_fields_in_order() {
        let exported = chrono::NaiveDate::from_ymd_opt(2024, 5, 1)
            .unwrap()
            .and_hms_opt(10, 20, 30)
            .unwrap();
        let xml = orders_document(&[("100000123".into(), fixture_order())], exported);
        let fixture = include_str!("../../../tests/fixtures/orderflow/order-import-request.xml");
        // wharf also says which channel the order came from; otherwise the document is the fixture's.
        let expected = fixture
            .trim_end()
            .replace("currency=GBP\n", "currency=GBP\nsource=web\n");
        assert_eq!(xml, expected);
    }

    #[test]
    fn values_cannot_break_the_cdata_or_the_lines_and_zero_is_sent() {
        let mut o = fixture_order();
        o.lines[0].name = "Evil ]]> name\r\nstatus=hacked".into();
        o.totals.shipping = Decimal::ZERO;
        o.totals.shipping_tax = Decimal::ZERO;
        let xml = orders_document(&[("X".into(), o)], chrono::Utc::now().naive_utc());
        assert!(xml.contains("orderLine.1.description=Evil ]]]]><![CDATA[> namestatus=hacked\n"));
        assert!(xml.contains("\nshippingPriceNet=0\n"));
        assert!(!xml.contains("\nstatus=hacked"));
        // The document stays well-formed and the text reads back whole.
        let mut reader = quick_xml::Reader::from_str(&xml);
        let mut text = String::new();
        loop {
            match reader.read_event().unwrap() {
                quick_xml::events::Event::CData(c) => text.push_str(&c.into_inner()),
                quick_xml::events::Event::Eof => break,
                _ => {}
            }
        }
        assert!(text.contains("description=Evil ]]> namestatus=hacked"));
    }
}
