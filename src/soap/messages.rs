//! Turns the operation element of a SOAP Body into typed calls, validating every field.
//!
//! Knows the Magento 1 rpc/encoded forms (`skusQty`/`skusSeqId` and the `skuQty`/`skuSeqId`
//! spelling, key/value items), the WS-I `…RequestParam` forms (`complexObjectArray` items) and the
//! Magento 2 forms (`productQtys`/`productSeqs` with `sku`/`qty`/`source`/`seq`). Array items may be
//! named anything (`item`, `complexObjectArray`, or after their type). Quantities are paired with
//! sequence ids **by SKU and source**, never by position.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime};

use super::envelope::Element;
use crate::messages::{
    DEFAULT_SOURCE, InventoryLine, InventoryMessage, OP_INVENTORY, OP_SHIPMENT, ShipmentLine,
    ShipmentMessage,
};

/// Longest SKU accepted.
pub const MAX_SKU_LEN: usize = 64;

/// A call the warehouse made.
#[derive(Debug)]
pub enum Call {
    /// `login(username, apiKey)`.
    Login {
        /// API user name.
        username: String,
        /// The user's password ("API key" in Magento terms).
        api_key: String,
    },
    /// `endSession(sessionId)`.
    EndSession {
        /// The session to end.
        session_id: String,
    },
    /// Magento 2 `integrationAdminTokenServiceV1CreateAdminAccessToken(username, password)`.
    AdminToken {
        /// API user name.
        username: String,
        /// The user's password.
        password: String,
    },
    /// An inventory multi-update.
    InventoryUpdate(InventoryMessage),
    /// A shipment.
    ShipmentCreate(ShipmentMessage),
}

/// What kind of operation an element names, before its fields are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    /// Magento 1 `login` (or WS-I `loginParam`).
    Login,
    /// Magento 1 `endSession` (or WS-I `endSessionParam`).
    EndSession,
    /// Magento 2 admin token request.
    AdminToken,
    /// Any inventory multi-update form.
    InventoryUpdate,
    /// Any shipment create form.
    ShipmentCreate,
}

impl OperationKind {
    /// Recognises an operation element by its local name.
    pub fn of(name: &str) -> Option<OperationKind> {
        match name {
            "login" | "loginParam" => Some(OperationKind::Login),
            "endSession" | "endSessionParam" => Some(OperationKind::EndSession),
            "orderflowInventoryMultiUpdate"
            | "orderflowInventoryMultiUpdateRequestParam"
            | "realtimeDespatchOrderFlowInventoryRequestManagementV1Update"
            | "realtimeDespatchOrderFlowInventoryRequestManagementV1UpdateRequest"
            | "inventoryUpdate" => Some(OperationKind::InventoryUpdate),
            "orderflowShipmentCreate"
            | "orderflowShipmentCreateRequestParam"
            | "realtimeDespatchOrderFlowShipmentRequestManagementV1Create"
            | "realtimeDespatchOrderFlowShipmentRequestManagementV1CreateRequest"
            | "shipmentCreate" => Some(OperationKind::ShipmentCreate),
            "integrationAdminTokenServiceV1CreateAdminAccessToken"
            | "integrationAdminTokenServiceV1CreateAdminAccessTokenRequest" => {
                Some(OperationKind::AdminToken)
            }
            _ => None,
        }
    }

    /// The operation name stored with queued requests.
    pub fn queue_name(self) -> &'static str {
        match self {
            OperationKind::Login => "login",
            OperationKind::EndSession => "endSession",
            OperationKind::AdminToken => "adminToken",
            OperationKind::InventoryUpdate => OP_INVENTORY,
            OperationKind::ShipmentCreate => OP_SHIPMENT,
        }
    }

    /// Whether the caller must be authenticated first (everything but logging in).
    pub fn needs_caller(self) -> bool {
        matches!(
            self,
            OperationKind::InventoryUpdate | OperationKind::ShipmentCreate
        )
    }
}

/// A field that is missing or invalid; shown to the caller as `Invalid <field>: <reason>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// Path of the field, e.g. `skusQty[2].value`.
    pub field: String,
    /// What is wrong and what was expected.
    pub reason: String,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The session id a call carries, if any (Magento 1 passes it as the first field).
pub fn session_id(op: &Element) -> Option<&str> {
    op.child_text("sessionId").filter(|s| !s.is_empty())
}

/// Reads and validates a call. `max_lines` bounds the number of inventory and shipment lines,
/// `max_tracking_numbers` the tracking numbers of one shipment.
pub fn read(
    op: &Element,
    max_lines: usize,
    max_tracking_numbers: usize,
) -> Result<Call, FieldError> {
    match OperationKind::of(&op.name) {
        Some(OperationKind::Login) => Ok(Call::Login {
            username: required_text(op, "username")?.to_string(),
            api_key: required_secret(op, "apiKey")?.to_string(),
        }),
        Some(OperationKind::EndSession) => Ok(Call::EndSession {
            session_id: required_text(op, "sessionId")?.to_string(),
        }),
        Some(OperationKind::AdminToken) => Ok(Call::AdminToken {
            username: required_text(op, "username")?.to_string(),
            password: required_secret(op, "password")?.to_string(),
        }),
        Some(OperationKind::InventoryUpdate) => {
            read_inventory(op, max_lines).map(Call::InventoryUpdate)
        }
        Some(OperationKind::ShipmentCreate) => {
            read_shipment(op, max_lines, max_tracking_numbers).map(Call::ShipmentCreate)
        }
        None => Err(err("operation", format!("unknown operation {:?}", op.name))),
    }
}

fn required_text<'a>(op: &'a Element, name: &str) -> Result<&'a str, FieldError> {
    match op.child_text(name) {
        Some(t) if !t.is_empty() => Ok(t),
        Some(_) => Err(err(name, "is empty")),
        None => Err(err(name, "is missing")),
    }
}

/// A password exactly as sent: never trimmed, since a password may begin or end with a space (only
/// an entirely empty one is refused as missing).
fn required_secret<'a>(op: &'a Element, name: &str) -> Result<&'a str, FieldError> {
    match op.child(name).map(|c| c.text.as_str()) {
        Some(t) if !t.is_empty() => Ok(t),
        Some(_) => Err(err(name, "is empty")),
        None => Err(err(name, "is missing")),
    }
}

/// Parses a sequence id: a whole number from 1 to 2^63−1.
fn parse_seq(field: &str, text: &str) -> Result<i64, FieldError> {
    match text.parse::<i64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(err(
            field,
            format!("{text:?} is not a whole number between 1 and {}", i64::MAX),
        )),
    }
}

/// Parses a quantity: a whole number that fits a 32-bit signed integer.
fn parse_qty(field: &str, text: &str) -> Result<i32, FieldError> {
    text.parse::<i32>().map_err(|_| {
        err(
            field,
            format!(
                "{text:?} is not a whole number between {} and {}",
                i32::MIN,
                i32::MAX
            ),
        )
    })
}

/// A SKU as a shipment or inventory line names it: 1 to [`MAX_SKU_LEN`] characters. (Shared with
/// the shipment files of `crate::channels::sftp::shipment_file`.)
pub(crate) fn parse_sku(field: &str, text: &str) -> Result<String, FieldError> {
    if text.is_empty() {
        return Err(err(field, "the SKU is empty"));
    }
    if text.chars().count() > MAX_SKU_LEN {
        return Err(err(
            field,
            format!("the SKU is longer than {MAX_SKU_LEN} characters"),
        ));
    }
    Ok(text.to_string())
}

/// Accepts `2024-05-01T10:15:00`, `2024-05-01 10:15:00`, with fractions or a zone (converted to
/// UTC), or a bare date. An empty value means "not given".
pub(crate) fn parse_datetime(field: &str, text: &str) -> Result<Option<NaiveDateTime>, FieldError> {
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(t.naive_utc()));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, fmt) {
            return Ok(Some(t));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0));
    }
    Err(err(
        field,
        format!("{text:?} is not a date and time like 2024-05-01T10:15:00"),
    ))
}

/// Field names of one inventory form.
struct InventoryForm {
    qty_array: &'static [&'static str],
    seq_array: &'static [&'static str],
    sku: &'static str,
    qty: &'static str,
    seq: &'static str,
}

const M1_FORM: InventoryForm = InventoryForm {
    qty_array: &["skusQty", "skuQty"],
    seq_array: &["skusSeqId", "skuSeqId"],
    sku: "key",
    qty: "value",
    seq: "value",
};

const M2_FORM: InventoryForm = InventoryForm {
    qty_array: &["productQtys"],
    seq_array: &["productSeqs"],
    sku: "sku",
    qty: "qty",
    seq: "seq",
};

/// (SKU, source if the item names one).
type SeqKey<'a> = (&'a str, Option<&'a str>);
/// (sequence id, lastOrderExported).
type SeqValue = (i64, Option<NaiveDateTime>);

fn read_inventory(op: &Element, max_lines: usize) -> Result<InventoryMessage, FieldError> {
    let form = if op.child("productQtys").is_some() {
        &M2_FORM
    } else {
        &M1_FORM
    };
    let qty_array = op
        .child_any(form.qty_array)
        .ok_or_else(|| err(form.qty_array[0], "is missing"))?;
    let seq_array = op
        .child_any(form.seq_array)
        .ok_or_else(|| err(form.seq_array[0], "is missing"))?;
    let message_seq_id = parse_seq("messageSeqId", required_text(op, "messageSeqId")?)?;
    let (qty_name, seq_name) = (qty_array.name.as_str(), seq_array.name.as_str());

    if qty_array.children.len() > max_lines {
        return Err(err(
            qty_name,
            format!(
                "{} lines is more than the limit of {max_lines} per message; split the update",
                qty_array.children.len()
            ),
        ));
    }
    if qty_array.children.is_empty() {
        return Err(err(qty_name, "has no items; send at least one SKU"));
    }

    let seqs = read_seqs(form, seq_array)?;
    let lines = read_qty_lines(form, qty_array, seq_name, &seqs)?;
    Ok(InventoryMessage {
        message_seq_id,
        lines,
    })
}

/// The sequence ids of an inventory update, keyed by (SKU, source). Magento 2 names the source on
/// the quantity item only, so a sequence item without a source applies to every source of that SKU.
fn read_seqs<'a>(
    form: &InventoryForm,
    seq_array: &'a Element,
) -> Result<HashMap<SeqKey<'a>, SeqValue>, FieldError> {
    let seq_name = seq_array.name.as_str();
    let mut seqs: HashMap<SeqKey, SeqValue> = HashMap::new();
    for (i, item) in seq_array.children.iter().enumerate() {
        let at = |f: &str| format!("{seq_name}[{}].{f}", i + 1);
        let sku = item
            .child_text(form.sku)
            .ok_or_else(|| err(at(form.sku), "is missing"))?;
        parse_sku(&at(form.sku), sku)?;
        let seq_text = item
            .child_text(form.seq)
            .ok_or_else(|| err(at(form.seq), "is missing"))?;
        let seq = parse_seq(&at(form.seq), seq_text)?;
        let last_order_exported = match item.child_text("lastOrderExported") {
            Some(t) => parse_datetime(&at("lastOrderExported"), t)?,
            None => None,
        };
        let source = item.child_text("source").filter(|s| !s.is_empty());
        seqs.insert((sku, source), (seq, last_order_exported));
    }
    Ok(seqs)
}

/// The lines of an inventory update: each quantity item with the sequence id of its SKU.
fn read_qty_lines(
    form: &InventoryForm,
    qty_array: &Element,
    seq_name: &str,
    seqs: &HashMap<SeqKey, SeqValue>,
) -> Result<Vec<InventoryLine>, FieldError> {
    let qty_name = qty_array.name.as_str();
    let mut lines = Vec::with_capacity(qty_array.children.len());
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for (i, item) in qty_array.children.iter().enumerate() {
        let at = |f: &str| format!("{qty_name}[{}].{f}", i + 1);
        let sku_text = item
            .child_text(form.sku)
            .ok_or_else(|| err(at(form.sku), "is missing"))?;
        let sku = parse_sku(&at(form.sku), sku_text)?;
        let qty_text = item
            .child_text(form.qty)
            .ok_or_else(|| err(at(form.qty), "is missing"))?;
        let qty = parse_qty(&at(form.qty), qty_text)?;
        let source_given = item.child_text("source").filter(|s| !s.is_empty());
        let source = source_given.unwrap_or(DEFAULT_SOURCE).to_string();
        let (seq, last_order_exported) = seqs
            .get(&(sku_text, source_given))
            .or_else(|| seqs.get(&(sku_text, None)))
            .copied()
            .ok_or_else(|| {
                err(
                    seq_name,
                    format!("SKU {sku:?} (in {qty_name}[{}]) has no sequence id", i + 1),
                )
            })?;
        if let Some(first) = seen.insert((sku.clone(), source.clone()), i + 1) {
            return Err(err(
                at(form.sku),
                format!("SKU {sku:?} (source {source:?}) is already listed at {qty_name}[{first}]"),
            ));
        }
        lines.push(InventoryLine {
            sku,
            source,
            qty,
            seq,
            last_order_exported,
        });
    }
    Ok(lines)
}

/// Longest order number accepted.
pub const MAX_ORDER_LEN: usize = 64;

/// An optional text field: absent or blank is `None`.
fn optional_text(op: &Element, name: &str) -> Option<String> {
    op.child_text(name)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// A yes/no flag: `1`/`0`, `true`/`false`, `yes`/`no`; absent or blank is no. Unlike PHP, the text
/// "false" means no.
fn parse_flag(op: &Element, name: &str) -> Result<bool, FieldError> {
    flag(name, op.child_text(name))
}

/// A yes/no flag's text (see [`parse_flag`]).
pub(crate) fn flag(field: &str, text: Option<&str>) -> Result<bool, FieldError> {
    match text.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("0") | Some("false") | Some("no") => Ok(false),
        Some("1") | Some("true") | Some("yes") => Ok(true),
        Some(other) => Err(err(
            field,
            format!("{other:?} is not a yes/no value (use 1 or 0, true or false)"),
        )),
    }
}

/// A shipment's order number: present, not empty, at most [`MAX_ORDER_LEN`] characters.
pub(crate) fn order_number(field: &str, text: Option<&str>) -> Result<String, FieldError> {
    let order = match text {
        Some(t) if !t.is_empty() => t,
        Some(_) => return Err(err(field, "is empty")),
        None => return Err(err(field, "is missing")),
    };
    if order.chars().count() > MAX_ORDER_LEN {
        return Err(err(
            field,
            format!("the order number is longer than {MAX_ORDER_LEN} characters"),
        ));
    }
    Ok(order.to_string())
}

fn read_shipment(
    op: &Element,
    max_lines: usize,
    max_tracking_numbers: usize,
) -> Result<ShipmentMessage, FieldError> {
    let order = order_number("orderIncrementId", op.child_text("orderIncrementId"))?;
    let message_seq_id = parse_seq("messageSeqId", required_text(op, "messageSeqId")?)?;
    let lines = read_shipment_lines(op, max_lines)?;
    let tracking_numbers = read_tracking_numbers(op, max_tracking_numbers)?;
    let date_shipped = match op.child_text("dateShipped") {
        Some(t) => parse_datetime("dateShipped", t)?,
        None => None,
    };
    Ok(ShipmentMessage {
        message_seq_id,
        order_increment_id: order,
        lines,
        comment: optional_text(op, "comment"),
        notify_customer: parse_flag(op, "email")?,
        include_comment: parse_flag(op, "includeComment")?,
        courier_name: optional_text(op, "courierName"),
        service_name: optional_text(op, "serviceName"),
        tracking_numbers,
        date_shipped,
    })
}

/// The lines of a shipment: Magento 1 key/value items or Magento 2 sku/qty items.
fn read_shipment_lines(op: &Element, max_lines: usize) -> Result<Vec<ShipmentLine>, FieldError> {
    let items = op
        .child("skuQty")
        .ok_or_else(|| err("skuQty", "is missing"))?;
    line_count("skuQty", items.children.len(), max_lines)?;
    let mut lines: Vec<ShipmentLine> = Vec::with_capacity(items.children.len());
    for (i, item) in items.children.iter().enumerate() {
        let at = |f: &str| format!("skuQty[{}].{f}", i + 1);
        // Magento 1 items are key/value, Magento 2 items sku/qty.
        let (sku_field, qty_field) = if item.child("sku").is_some() {
            ("sku", "qty")
        } else {
            ("key", "value")
        };
        let sku_text = item
            .child_text(sku_field)
            .ok_or_else(|| err(at(sku_field), "is missing"))?;
        let sku = parse_sku(&at(sku_field), sku_text)?;
        let qty_text = item
            .child_text(qty_field)
            .ok_or_else(|| err(at(qty_field), "is missing"))?;
        let qty = shipped_qty(&at(qty_field), qty_text)?;
        let line = ShipmentLine {
            sku,
            source: source_or_default(item.child_text("source")),
            qty,
        };
        add_shipment_line(&mut lines, "skuQty", &at(sku_field), line)?;
    }
    Ok(lines)
}

/// A shipment has 1 to `max_lines` lines.
pub(crate) fn line_count(field: &str, n: usize, max_lines: usize) -> Result<(), FieldError> {
    if n == 0 {
        return Err(err(
            field,
            "has no items; a shipment ships at least one SKU",
        ));
    }
    if n > max_lines {
        return Err(err(
            field,
            format!("{n} lines is more than the limit of {max_lines} per message"),
        ));
    }
    Ok(())
}

/// Units shipped on a line: a whole number above 0 that fits a 32-bit signed integer.
pub(crate) fn shipped_qty(field: &str, text: &str) -> Result<i32, FieldError> {
    match text.parse::<i32>() {
        Ok(q) if q > 0 => Ok(q),
        _ => Err(err(
            field,
            format!("{text:?} is not a whole number of units above 0"),
        )),
    }
}

/// A line's stock source: the one named, or [`DEFAULT_SOURCE`] when absent or blank.
pub(crate) fn source_or_default(text: Option<&str>) -> String {
    text.filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_SOURCE)
        .to_string()
}

/// Adds `line` to a shipment's `lines` (the list named `list`), refusing a (SKU, source) listed
/// already; `field` names the new line's SKU.
pub(crate) fn add_shipment_line(
    lines: &mut Vec<ShipmentLine>,
    list: &str,
    field: &str,
    line: ShipmentLine,
) -> Result<(), FieldError> {
    if let Some(first) = lines
        .iter()
        .position(|l| l.sku == line.sku && l.source == line.source)
    {
        return Err(err(
            field,
            format!(
                "SKU {:?} is already listed at {list}[{}]",
                line.sku,
                first + 1
            ),
        ));
    }
    lines.push(line);
    Ok(())
}

/// The tracking numbers of a shipment, from `trackingNumber` and `tracks`, each once.
fn read_tracking_numbers(
    op: &Element,
    max_tracking_numbers: usize,
) -> Result<Vec<String>, FieldError> {
    let tracks = op
        .child("tracks")
        .map(|t| t.children.as_slice())
        .unwrap_or_default();
    let from_tracks = tracks.iter().filter_map(|t| {
        t.child_text("trackingNumber")
            .or(Some(t.text.trim()))
            .filter(|s| !s.is_empty())
    });
    let numbers: Vec<&str> = op
        .child_text("trackingNumber")
        .filter(|s| !s.is_empty())
        .into_iter()
        .chain(from_tracks)
        .collect();
    let field = if tracks.is_empty() {
        "trackingNumber"
    } else {
        "tracks"
    };
    tracking_numbers(field, "trackingNumber", numbers, max_tracking_numbers)
}

/// A shipment's tracking numbers (blanks already left out), each kept once in order: at most
/// `max_tracking_numbers` of them (`field` names the list), each at most 255 characters (`item`
/// names a number).
pub(crate) fn tracking_numbers(
    field: &str,
    item: &str,
    numbers: Vec<&str>,
    max_tracking_numbers: usize,
) -> Result<Vec<String>, FieldError> {
    // Counted before de-duplication: the limit bounds the work, not only what is stored.
    if numbers.len() > max_tracking_numbers {
        return Err(err(
            field,
            format!(
                "{} tracking numbers is more than the limit of {max_tracking_numbers} per shipment",
                numbers.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(numbers.len());
    let mut tracking_numbers: Vec<String> = Vec::with_capacity(numbers.len());
    for number in numbers {
        if number.chars().count() > 255 {
            return Err(err(item, "a tracking number is longer than 255 characters"));
        }
        if seen.insert(number) {
            tracking_numbers.push(number.to_string());
        }
    }
    Ok(tracking_numbers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(name: &str, children: Vec<Element>) -> Element {
        Element {
            name: name.into(),
            children,
            text: String::new(),
        }
    }
    fn leaf(name: &str, text: &str) -> Element {
        Element {
            name: name.into(),
            children: vec![],
            text: text.into(),
        }
    }
    fn kv(k: &str, v: &str) -> Element {
        el("item", vec![leaf("key", k), leaf("value", v)])
    }
    fn m1(qtys: Vec<Element>, seqs: Vec<Element>, msg: &str) -> Element {
        el(
            "orderflowInventoryMultiUpdate",
            vec![
                leaf("sessionId", "s"),
                el("skusQty", qtys),
                el("skusSeqId", seqs),
                leaf("messageSeqId", msg),
            ],
        )
    }

    #[test]
    fn pairs_quantities_and_sequences_by_sku() {
        let op = m1(
            vec![kv("A", "40"), kv("B", "-2")],
            vec![kv("B", "9000452"), kv("A", "9000451")],
            "700042",
        );
        let Call::InventoryUpdate(msg) = read(&op, 100, 1000).unwrap() else {
            panic!("not inventory")
        };
        assert_eq!(msg.message_seq_id, 700042);
        assert_eq!(msg.lines[0].sku, "A");
        assert_eq!(msg.lines[0].seq, 9000451);
        assert_eq!(msg.lines[1].seq, 9000452);
        assert_eq!(msg.lines[1].qty, -2);
    }

    #[test]
    fn passwords_are_read_exactly_as_sent() {
        let login = el(
            "login",
            vec![
                leaf("username", " orderflow "),
                leaf("apiKey", " pass word "),
            ],
        );
        let Call::Login { username, api_key } = read(&login, 10, 10).unwrap() else {
            panic!("not a login")
        };
        assert_eq!(
            (username.as_str(), api_key.as_str()),
            ("orderflow", " pass word ")
        );
        let token = el(
            "integrationAdminTokenServiceV1CreateAdminAccessToken",
            vec![leaf("username", "u"), leaf("password", "pw\t")],
        );
        let Call::AdminToken { password, .. } = read(&token, 10, 10).unwrap() else {
            panic!("not a token request")
        };
        assert_eq!(password, "pw\t");
        let empty = el("login", vec![leaf("username", "u"), leaf("apiKey", "")]);
        assert_eq!(read(&empty, 10, 10).unwrap_err().field, "apiKey");
    }

    #[test]
    fn names_the_field_that_is_wrong() {
        let cases = [
            (
                m1(vec![kv("A", "x")], vec![kv("A", "1")], "1"),
                "skusQty[1].value",
            ),
            (
                m1(vec![kv("A", "1")], vec![kv("A", "0")], "1"),
                "skusSeqId[1].value",
            ),
            (m1(vec![kv("A", "1")], vec![kv("B", "1")], "1"), "skusSeqId"),
            (
                m1(vec![kv("A", "1")], vec![kv("A", "1")], "-3"),
                "messageSeqId",
            ),
            (
                m1(vec![kv("", "1")], vec![kv("A", "1")], "1"),
                "skusQty[1].key",
            ),
            (
                m1(vec![kv("A", "1"), kv("A", "2")], vec![kv("A", "1")], "1"),
                "skusQty[2].key",
            ),
            (
                m1(vec![kv("A", "3000000000")], vec![kv("A", "1")], "1"),
                "skusQty[1].value",
            ),
        ];
        for (op, field) in cases {
            let e = read(&op, 100, 1000).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
        let too_many = m1(
            vec![kv("A", "1"), kv("B", "1")],
            vec![kv("A", "1"), kv("B", "1")],
            "1",
        );
        assert_eq!(read(&too_many, 1, 10).unwrap_err().field, "skusQty");
    }

    #[test]
    fn tracking_numbers_are_limited_and_kept_once_in_order() {
        let shipment = |tracks: &[&str]| {
            el(
                "orderflowShipmentCreate",
                vec![
                    leaf("orderIncrementId", "100"),
                    leaf("messageSeqId", "1"),
                    el("skuQty", vec![kv("A", "1")]),
                    leaf("trackingNumber", "T1"),
                    el("tracks", tracks.iter().map(|t| leaf("item", t)).collect()),
                ],
            )
        };
        let Call::ShipmentCreate(msg) = read(&shipment(&["T2", "T1", "T3", "T2"]), 10, 5).unwrap()
        else {
            panic!("not a shipment")
        };
        assert_eq!(msg.tracking_numbers, ["T1", "T2", "T3"]);
        let e = read(&shipment(&["T2", "T3", "T4", "T5", "T6"]), 10, 5).unwrap_err();
        assert_eq!(e.field, "tracks");
        assert!(
            e.reason
                .starts_with("6 tracking numbers is more than the limit of 5"),
            "{e}"
        );
    }
}
