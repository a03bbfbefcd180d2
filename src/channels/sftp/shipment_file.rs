//! The shipment file: one shipment of one order per file, a typed, namespace-free XML document
//! (yaserde), documented by `schemas/shipment-file.xsd`. It carries what a SOAP shipment carries
//! and is checked by the same field checks and limits (`crate::soap::messages`), so a file and a
//! SOAP call that say the same become the same [`ShipmentMessage`].
//!
//! ```xml
//! <shipment>
//!   <order_increment_id>100000123</order_increment_id>
//!   <lines>
//!     <line><sku>ABC123</sku><qty>2</qty></line>
//!     <line><sku>XYZ789</sku><qty>1</qty><source>leeds</source></line>
//!   </lines>
//!   <tracking_numbers><tracking_number>TRACK-1</tracking_number></tracking_numbers>
//!   <courier_name>DPD</courier_name>
//!   <service_name>Next Day</service_name>
//!   <date_shipped>2024-05-01T10:15:00Z</date_shipped>
//!   <comment>Despatched</comment>
//!   <notify_customer>1</notify_customer>
//!   <include_comment>0</include_comment>
//! </shipment>
//! ```
//!
//! Values are read as text and checked here rather than typed as numbers in the structs, so that a
//! wrong value is refused naming its field (`line[2].qty`) the way a SOAP fault names it.

use std::collections::HashMap;

use quick_xml::events::Event;
use yaserde::{YaDeserialize, YaSerialize};

use crate::messages::{ShipmentLine, ShipmentMessage};
use crate::soap::messages::{self as fields, FieldError};

/// The root element's name.
pub const ROOT: &str = "shipment";

/// A shipment file as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, YaDeserialize, YaSerialize)]
#[yaserde(rename = "shipment")]
pub struct ShipmentFile {
    /// The storefront order number (increment id); required.
    #[yaserde(rename = "order_increment_id")]
    pub order_increment_id: Option<String>,
    /// What was shipped; at least one line.
    #[yaserde(rename = "lines")]
    pub lines: Option<Lines>,
    /// The parcels' tracking numbers.
    #[yaserde(rename = "tracking_numbers")]
    pub tracking_numbers: Option<TrackingNumbers>,
    /// The courier (`DPD`).
    #[yaserde(rename = "courier_name")]
    pub courier_name: Option<String>,
    /// The courier's service (`Next Day`).
    #[yaserde(rename = "service_name")]
    pub service_name: Option<String>,
    /// When the parcel left: `2024-05-01T10:15:00Z`, `2024-05-01 10:15:00` or `2024-05-01`.
    #[yaserde(rename = "date_shipped")]
    pub date_shipped: Option<String>,
    /// A comment for the shipment.
    #[yaserde(rename = "comment")]
    pub comment: Option<String>,
    /// Send the customer the shipment e-mail: `1`/`0`, `true`/`false`, `yes`/`no` (default no).
    #[yaserde(rename = "notify_customer")]
    pub notify_customer: Option<String>,
    /// Put the comment in that e-mail (same values, default no).
    #[yaserde(rename = "include_comment")]
    pub include_comment: Option<String>,
}

/// The shipped lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, YaDeserialize, YaSerialize)]
pub struct Lines {
    /// One per (SKU, source).
    #[yaserde(rename = "line")]
    pub line: Vec<Line>,
}

/// One shipped line.
#[derive(Debug, Clone, Default, PartialEq, Eq, YaDeserialize, YaSerialize)]
pub struct Line {
    /// The SKU (1–64 characters).
    #[yaserde(rename = "sku")]
    pub sku: Option<String>,
    /// Units shipped, a whole number above 0.
    #[yaserde(rename = "qty")]
    pub qty: Option<String>,
    /// The stock source it left from (`default` when absent).
    #[yaserde(rename = "source")]
    pub source: Option<String>,
}

/// The tracking numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, YaDeserialize, YaSerialize)]
pub struct TrackingNumbers {
    /// Each number; blanks are left out, repeats kept once.
    #[yaserde(rename = "tracking_number")]
    pub number: Vec<String>,
}

/// Elements that may appear more than once under their parent.
const LISTS: [&str; 2] = ["line", "tracking_number"];

/// Why a file is not a usable shipment file, for the row, the rejection and the alert.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// Nothing in it (or only white space).
    #[error("the file is empty; the warehouse must write one shipment per file")]
    Empty,
    /// Not UTF-8.
    #[error("the file is not UTF-8 text (the byte at offset {0} is not); write it in UTF-8")]
    NotUtf8(usize),
    /// Not well-formed XML.
    #[error("the file is not well-formed XML: {0}")]
    NotXml(String),
    /// XML, but not a shipment file.
    #[error("the file is not a shipment file (see schemas/shipment-file.xsd): {0}")]
    NotShipment(String),
    /// A shipment file with a field missing or wrong.
    #[error("Invalid {0}")]
    Invalid(FieldError),
}

impl FileError {
    /// The field at fault, when one is.
    pub fn field(&self) -> Option<&str> {
        match self {
            FileError::Invalid(e) => Some(&e.field),
            _ => None,
        }
    }
}

impl From<FieldError> for FileError {
    fn from(e: FieldError) -> FileError {
        FileError::Invalid(e)
    }
}

/// The limits a shipment is checked under (the SOAP receipt's: `soap.max_lines`,
/// `soap.max_tracking_numbers`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most lines.
    pub max_lines: usize,
    /// Most tracking numbers.
    pub max_tracking_numbers: usize,
}

/// Reads and checks a shipment file. `message_seq_id` is what the receipt files it under (a file
/// carries none; the caller derives one from its content).
pub fn read(
    bytes: &[u8],
    message_seq_id: i64,
    limits: Limits,
) -> Result<ShipmentMessage, FileError> {
    let text = std::str::from_utf8(bytes).map_err(|e| FileError::NotUtf8(e.valid_up_to()))?;
    if text.trim().is_empty() {
        return Err(FileError::Empty);
    }
    let file: ShipmentFile = yaserde::de::from_str(text).map_err(reading_error)?;
    check_shape(text)?;
    file.into_message(message_seq_id, limits)
}

/// What yaserde's error means: malformed XML (wherever the reader noticed it, perhaps inside a
/// field), a field that is not what it should be, or something else that is not a shipment file.
fn reading_error(e: yaserde::Error) -> FileError {
    let mut inner = &e;
    while let yaserde::Error::Field { source, .. } = inner {
        inner = source;
    }
    if let yaserde::Error::Reader(r) = inner {
        return FileError::NotXml(r.to_string());
    }
    match e {
        yaserde::Error::Field { name, source } => FileError::Invalid(FieldError {
            field: name,
            reason: source.to_string(),
        }),
        other => FileError::NotShipment(other.to_string()),
    }
}

/// What yaserde does not check: the root element is `<shipment>`, and no field is given twice
/// (yaserde would keep the last one silently — two order numbers must not ship either).
/// quick-xml reads the document, already known to be well-formed, element by element.
fn check_shape(text: &str) -> Result<(), FileError> {
    let mut reader = quick_xml::Reader::from_str(text);
    // Per open element: its field path (`line[2]`) and the children seen so far, with how many
    // of each.
    let mut open: Vec<(String, HashMap<String, usize>)> = Vec::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| FileError::NotXml(e.to_string()))?;
        let (e, empty) = match event {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                open.pop();
                continue;
            }
            Event::Eof => return Ok(()),
            _ => continue,
        };
        let name = e.local_name().into_inner().to_string();
        let path = match open.last_mut() {
            None if name != ROOT => {
                return Err(FileError::NotShipment(format!(
                    "its root element is <{name}>, not <{ROOT}>"
                )));
            }
            None => String::new(),
            Some((parent, seen)) => {
                let n = seen.entry(name.clone()).or_insert(0);
                *n += 1;
                let is_list = LISTS.contains(&name.as_str());
                let path = match (is_list, parent.is_empty()) {
                    (true, _) => format!("{name}[{n}]"),
                    (false, true) => name,
                    (false, false) => format!("{parent}.{name}"),
                };
                if *n > 1 && !is_list {
                    return Err(FileError::Invalid(FieldError {
                        field: path,
                        reason: "is given twice; a shipment file describes one shipment".into(),
                    }));
                }
                path
            }
        };
        if !empty {
            open.push((path, HashMap::new()));
        }
    }
}

impl ShipmentFile {
    /// The shipment it describes, checked as a SOAP shipment is.
    pub fn into_message(
        self,
        message_seq_id: i64,
        limits: Limits,
    ) -> Result<ShipmentMessage, FileError> {
        let order = fields::order_number("order_increment_id", self.order_increment_id.as_deref())?;
        let lines = read_lines(self.lines.unwrap_or_default().line, limits.max_lines)?;
        let numbers = self.tracking_numbers.unwrap_or_default().number;
        let tracking_numbers = fields::tracking_numbers(
            "tracking_numbers",
            "tracking_number",
            numbers
                .iter()
                .map(String::as_str)
                .filter(|n| !n.is_empty())
                .collect(),
            limits.max_tracking_numbers,
        )?;
        let date_shipped = match self.date_shipped.as_deref() {
            Some(t) => fields::parse_datetime("date_shipped", t)?,
            None => None,
        };
        let blank_is_none = |t: Option<String>| t.filter(|t| !t.is_empty());
        Ok(ShipmentMessage {
            message_seq_id,
            order_increment_id: order,
            lines,
            comment: blank_is_none(self.comment),
            notify_customer: fields::flag("notify_customer", self.notify_customer.as_deref())?,
            include_comment: fields::flag("include_comment", self.include_comment.as_deref())?,
            courier_name: blank_is_none(self.courier_name),
            service_name: blank_is_none(self.service_name),
            tracking_numbers,
            date_shipped,
        })
    }
}

fn read_lines(given: Vec<Line>, max_lines: usize) -> Result<Vec<ShipmentLine>, FileError> {
    fields::line_count("lines", given.len(), max_lines)?;
    let mut lines = Vec::with_capacity(given.len());
    for (i, line) in given.into_iter().enumerate() {
        let at = |f: &str| format!("line[{}].{f}", i + 1);
        let missing = |f: &str| FieldError {
            field: at(f),
            reason: "is missing".into(),
        };
        let sku = fields::parse_sku(&at("sku"), line.sku.as_deref().ok_or(missing("sku"))?)?;
        let qty = fields::shipped_qty(&at("qty"), line.qty.as_deref().ok_or(missing("qty"))?)?;
        let line = ShipmentLine {
            sku,
            source: fields::source_or_default(line.source.as_deref()),
            qty,
        };
        fields::add_shipment_line(&mut lines, "line", &at("sku"), line)?;
    }
    Ok(lines)
}

/// The messageSeqId a file's content stands for: the first 8 bytes of its SHA-256, made negative
/// so that it never meets the warehouse's own (positive) ids. The same bytes delivered again get
/// the same id, and the receipt then counts them as a repeat.
pub fn message_seq_id(sha256: &[u8; 32]) -> i64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&sha256[..8]);
    // 63 bits, then below zero: -1 ..= -2^63.
    -((u64::from_be_bytes(first) >> 1) as i64) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_lines: 3,
        max_tracking_numbers: 2,
    };

    const GOOD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<shipment>
  <order_increment_id>100000123</order_increment_id>
  <lines>
    <line><sku>ABC123</sku><qty>2</qty></line>
    <line><sku>XYZ789</sku><qty>1</qty><source>leeds</source></line>
  </lines>
  <tracking_numbers>
    <tracking_number>TRACK-1</tracking_number>
    <tracking_number/>
    <tracking_number>TRACK-1</tracking_number>
  </tracking_numbers>
  <courier_name>DPD</courier_name>
  <service_name>Next Day</service_name>
  <date_shipped>2024-05-01T10:15:00+01:00</date_shipped>
  <comment>Despatched &amp; on its way</comment>
  <notify_customer>yes</notify_customer>
</shipment>
"#;

    fn read_str(text: &str) -> Result<ShipmentMessage, FileError> {
        read(text.as_bytes(), -7, LIMITS)
    }

    #[test]
    fn a_good_file_is_the_shipment_a_soap_call_would_be() {
        let msg = read_str(GOOD).unwrap();
        assert_eq!(
            msg,
            ShipmentMessage {
                message_seq_id: -7,
                order_increment_id: "100000123".into(),
                lines: vec![
                    ShipmentLine {
                        sku: "ABC123".into(),
                        source: "default".into(),
                        qty: 2
                    },
                    ShipmentLine {
                        sku: "XYZ789".into(),
                        source: "leeds".into(),
                        qty: 1
                    },
                ],
                comment: Some("Despatched & on its way".into()),
                notify_customer: true,
                include_comment: false,
                courier_name: Some("DPD".into()),
                service_name: Some("Next Day".into()),
                tracking_numbers: vec!["TRACK-1".into()],
                date_shipped: chrono::NaiveDate::from_ymd_opt(2024, 5, 1)
                    .and_then(|d| d.and_hms_opt(9, 15, 0)),
            }
        );
    }

    #[test]
    fn a_written_file_reads_back() {
        let file = ShipmentFile {
            order_increment_id: Some("42".into()),
            lines: Some(Lines {
                line: vec![Line {
                    sku: Some("A<&>".into()),
                    qty: Some("3".into()),
                    source: None,
                }],
            }),
            ..ShipmentFile::default()
        };
        let text = yaserde::ser::to_string(&file).unwrap();
        let msg = read_str(&text).unwrap();
        assert_eq!(msg.order_increment_id, "42");
        assert_eq!(msg.lines[0].sku, "A<&>");
        assert_eq!(msg.lines[0].qty, 3);
    }

    /// `GOOD` with `from` replaced by `to`.
    fn good_but(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "{from}");
        GOOD.replacen(from, to, 1)
    }

    /// Refuses each `GOOD` with `from` replaced by `to`, naming `field`.
    fn refused_naming(cases: &[(&str, &str, &str)]) {
        for (from, to, field) in cases {
            let e = read_str(&good_but(from, to)).unwrap_err();
            assert_eq!(e.field(), Some(*field), "{from} -> {to}: {e}");
            assert!(
                e.to_string().starts_with(&format!("Invalid {field}: ")),
                "{e}"
            );
        }
    }

    #[test]
    fn each_bad_line_is_refused_naming_its_field() {
        refused_naming(&[
            (
                "<order_increment_id>100000123</order_increment_id>",
                "",
                "order_increment_id",
            ),
            ("100000123", "", "order_increment_id"),
            ("100000123", &"9".repeat(65), "order_increment_id"),
            ("<qty>2</qty>", "<qty>0</qty>", "line[1].qty"),
            ("<qty>1</qty>", "<qty>-1</qty>", "line[2].qty"),
            ("<qty>2</qty>", "<qty>two</qty>", "line[1].qty"),
            ("<qty>2</qty>", "<qty>99999999999</qty>", "line[1].qty"),
            ("<qty>2</qty>", "", "line[1].qty"),
            ("<sku>ABC123</sku>", "<sku></sku>", "line[1].sku"),
            ("<sku>ABC123</sku>", "", "line[1].sku"),
            (
                "<sku>ABC123</sku>",
                &format!("<sku>{}</sku>", "S".repeat(65)),
                "line[1].sku",
            ),
            (
                "XYZ789</sku><qty>1</qty><source>leeds",
                "ABC123</sku><qty>1</qty><source>",
                "line[2].sku",
            ),
            (
                "<lines>",
                "<lines><line><sku>A</sku><qty>1</qty></line><line><sku>B</sku><qty>1</qty></line>",
                "lines",
            ),
            (
                "<line><sku>ABC123</sku><qty>2</qty></line>\n    <line><sku>XYZ789</sku><qty>1</qty><source>leeds</source></line>",
                "",
                "lines",
            ),
        ]);
    }

    #[test]
    fn each_bad_field_is_refused_naming_it() {
        refused_naming(&[
            (
                "<tracking_number/>",
                "<tracking_number>T2</tracking_number><tracking_number>T3</tracking_number>",
                "tracking_numbers",
            ),
            (
                "TRACK-1</tracking_number>\n    <tracking_number/>",
                &format!("{}</tracking_number><tracking_number/>", "T".repeat(256)),
                "tracking_number",
            ),
            ("2024-05-01T10:15:00+01:00", "yesterday", "date_shipped"),
            (
                "<notify_customer>yes",
                "<notify_customer>maybe",
                "notify_customer",
            ),
            (
                "<service_name>",
                "<include_comment>2</include_comment><service_name>",
                "include_comment",
            ),
            (
                "<courier_name>DPD</courier_name>",
                "<courier_name>DPD</courier_name><courier_name>UPS</courier_name>",
                "courier_name",
            ),
            (
                "<order_increment_id>100000123</order_increment_id>",
                "<order_increment_id>1</order_increment_id><order_increment_id>2</order_increment_id>",
                "order_increment_id",
            ),
            ("<qty>1</qty>", "<qty>1</qty><qty>5</qty>", "line[2].qty"),
            (
                "<comment>Despatched &amp; on its way</comment>",
                "<comment><b>x</b></comment>",
                "comment",
            ),
        ]);
    }

    #[test]
    fn what_is_not_a_shipment_file_says_so() {
        assert_eq!(read_str(""), Err(FileError::Empty));
        assert_eq!(read_str(" \n\t"), Err(FileError::Empty));
        assert_eq!(
            read(b"<shipment>\xff</shipment>", -1, LIMITS),
            Err(FileError::NotUtf8(10))
        );
        for broken in [
            "not xml",
            "<shipment><lines>",
            "<shipment></lines>",
            "<a></b>",
        ] {
            let e = read_str(broken).unwrap_err();
            assert!(matches!(e, FileError::NotXml(_)), "{broken}: {e:?}");
        }
        let e = read_str(&GOOD.replace("shipment>", "orders>")).unwrap_err();
        assert!(matches!(e, FileError::NotShipment(_)), "{e:?}");
        assert!(e.to_string().contains("<orders>"), "{e}");
        let doctype = "<!DOCTYPE shipment [<!ENTITY a \"aaaa\">]><shipment/>";
        assert!(read_str(doctype).is_err());
        let e = read_str(&GOOD.replace("<shipment>", "<shipment xmlns=\"urn:x\">")).unwrap_err();
        assert!(matches!(e, FileError::NotShipment(_)), "{e:?}");
    }

    #[test]
    fn the_same_bytes_are_the_same_negative_message_seq_id() {
        use sha2::Digest;
        let a: [u8; 32] = sha2::Sha256::digest(GOOD.as_bytes()).into();
        let b: [u8; 32] = sha2::Sha256::digest(good_but("DPD", "UPS").as_bytes()).into();
        assert_eq!(message_seq_id(&a), message_seq_id(&a));
        assert_ne!(message_seq_id(&a), message_seq_id(&b));
        assert!(message_seq_id(&a) < 0 && message_seq_id(&b) < 0);
        assert_eq!(message_seq_id(&[0; 32]), -1);
        assert_eq!(message_seq_id(&[0xff; 32]), i64::MIN);
    }
}
