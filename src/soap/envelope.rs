//! Reads a SOAP envelope with quick-xml's `NsReader` into a small tree of the Body's first child.
//!
//! Namespaces are resolved only to recognise the envelope (SOAP 1.1 or 1.2); inside the Body every
//! element is known by its local name, so any prefix or default namespace works and `xsi:type`,
//! `SOAP-ENC:arrayType` and `encodingStyle` are ignored. Hostile documents are cut off early: DTDs and
//! entity declarations are refused, and depth, element and attribute counts are bounded.

use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

/// SOAP 1.1 envelope namespace.
pub const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2 envelope namespace.
pub const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";

/// The SOAP version of a request; the answer uses the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SoapVersion {
    /// SOAP 1.1 (`text/xml`).
    V11,
    /// SOAP 1.2 (`application/soap+xml`).
    V12,
}

/// An element of the Body, known by its local name.
#[derive(Debug, Default, Clone)]
pub struct Element {
    /// Local name, without prefix.
    pub name: String,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// Concatenated character data directly inside this element (entities resolved).
    pub text: String,
}

impl Element {
    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The first child with any of these local names.
    pub fn child_any(&self, names: &[&str]) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| names.contains(&c.name.as_str()))
    }

    /// The trimmed text of the first child with this name.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }
}

/// Bounds that keep a hostile document from costing more than a normal one.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Deepest element nesting accepted.
    pub max_depth: usize,
    /// Most elements in the whole document.
    pub max_elements: usize,
    /// Most attributes (namespace declarations included) on one element.
    pub max_attributes: usize,
}

impl Limits {
    /// Limits fitting messages of up to `max_lines` lines.
    pub fn for_lines(max_lines: usize) -> Limits {
        Limits {
            max_depth: 32,
            // Each line is an item with a handful of fields; leave room for two arrays per line.
            max_elements: max_lines.saturating_mul(16).saturating_add(1_000),
            max_attributes: 64,
        }
    }
}

/// A parsed request: its SOAP version and the Body's first child element.
#[derive(Debug)]
pub struct Envelope {
    /// SOAP 1.1 or 1.2.
    pub version: SoapVersion,
    /// The operation element (first child of Body).
    pub operation: Element,
    /// The namespace URI of the operation element (empty when unqualified); answers use it.
    pub operation_ns: String,
    /// Byte spans of the contents of credential elements (`sessionId`, `apiKey`, `password`, see
    /// [`mask`](super::mask)) anywhere in the document, in order: what is masked before the body is
    /// hashed and stored. Recorded while parsing so the body is not read a second time.
    pub credentials: Vec<std::ops::Range<usize>>,
}

/// Why a body is not a usable SOAP envelope. The text is shown to the caller in a Client fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Not UTF-8.
    #[error("the request body is not valid UTF-8 (byte {0}); send UTF-8 encoded XML")]
    NotUtf8(usize),
    /// Not well-formed XML.
    #[error("the request is not well-formed XML: {0}")]
    Malformed(String),
    /// DTDs can declare entities that expand without bound; SOAP forbids them.
    #[error("DOCTYPE and entity declarations are not allowed in SOAP messages")]
    Doctype,
    /// An entity other than the five XML predefined ones.
    #[error("unknown entity reference &{0};")]
    UnknownEntity(String),
    /// Root is not Envelope in a SOAP namespace.
    #[error("the root element must be a SOAP 1.1 or 1.2 Envelope, found {0}")]
    NotEnvelope(String),
    /// No Body element or nothing in it.
    #[error("the SOAP Body is missing or empty")]
    NoBody,
    /// A limit was exceeded.
    #[error("{0}")]
    TooLarge(String),
    /// A character outside XML 1.0's `Char` production (NUL and the other C0 controls but tab, line
    /// feed and carriage return; U+FFFE, U+FFFF), raw or as a character reference. PostgreSQL text
    /// cannot hold NUL, and escape characters would end up in stock rows, the feed and logs.
    #[error("Invalid {field}: {reason}")]
    InvalidChar {
        /// Where: a field path like the ones in [`FieldError`](super::messages::FieldError)
        /// (`skusQty[2].key`), relative to the operation, or `Header.…` outside the Body.
        field: String,
        /// Which character and how it was written.
        reason: String,
    },
    /// Anything but white space, comments and processing instructions after the Envelope.
    #[error("the request has {0} after the Envelope; send exactly one Envelope per request")]
    AfterRoot(String),
}

impl EnvelopeError {
    /// A short stable name for the kind of problem, whatever the details (counting refusals per
    /// kind must not let a sender make every message a kind of its own).
    pub fn kind(&self) -> &'static str {
        match self {
            EnvelopeError::NotUtf8(_) => "not-utf8",
            EnvelopeError::Malformed(_) => "malformed",
            EnvelopeError::Doctype => "doctype",
            EnvelopeError::UnknownEntity(_) => "unknown-entity",
            EnvelopeError::NotEnvelope(_) => "not-envelope",
            EnvelopeError::NoBody => "no-body",
            EnvelopeError::TooLarge(_) => "too-large",
            EnvelopeError::InvalidChar { .. } => "invalid-character",
            EnvelopeError::AfterRoot(_) => "after-root",
        }
    }
}

/// Whether `c` is a character XML 1.0 allows (`Char ::= #x9 | #xA | #xD | [#x20-#xD7FF] |
/// [#xE000-#xFFFD] | [#x10000-#x10FFFF]`; Rust's `char` already excludes the surrogates).
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{fffd}' | '\u{10000}'..)
}

/// The byte offset and value of the first character of `text` that XML 1.0 does not allow. A byte
/// scan: every such character is a C0 byte or the UTF-8 encoding of U+FFFE/U+FFFF (EF BF BE/BF).
fn first_invalid_char(text: &str) -> Option<(usize, char)> {
    let bytes = text.as_bytes();
    let at = bytes.iter().enumerate().position(|(i, &b)| {
        (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
            || (b == 0xef
                && bytes.get(i + 1) == Some(&0xbf)
                && matches!(bytes.get(i + 2), Some(0xbe | 0xbf)))
    })?;
    text[at..].chars().next().map(|c| (at, c))
}

/// The first character XML 1.0 does not allow in the text of an event (its markup included).
fn invalid_in(event: &Event<'_>) -> Option<char> {
    let text: &str = match event {
        Event::Start(e) | Event::Empty(e) => e,
        Event::End(e) => e,
        Event::Text(e) => e,
        Event::CData(e) => e,
        Event::Comment(e) => e,
        Event::PI(e) => e,
        Event::Decl(e) => e,
        Event::DocType(e) => e,
        Event::GeneralRef(e) => e,
        Event::Eof => "",
    };
    first_invalid_char(text).map(|(_, c)| c)
}

/// How a refused character is named to the caller.
fn describe(c: char, how: &str) -> String {
    let what = if c.is_control() {
        "a control character"
    } else {
        "a noncharacter"
    };
    format!(
        "{how} U+{:04X} ({what}) is not allowed in XML 1.0",
        u32::from(c)
    )
}

/// The character a reference `&#<number>;` stands for, if XML 1.0 allows it; else why not.
fn char_ref(number: &str) -> Result<char, String> {
    let code = match number.strip_prefix('x') {
        Some(hex) if !hex.starts_with(['+', '-']) => u32::from_str_radix(hex, 16).ok(),
        None if !number.starts_with(['+', '-']) => number.parse::<u32>().ok(),
        _ => None,
    };
    let how = || format!("the reference &#{};", crate::telemetry::Escaped(number));
    match code.and_then(char::from_u32) {
        Some(c) if is_xml_char(c) => Ok(c),
        Some(c) => Err(describe(c, &how())),
        None => Err(format!("{} is not a character", how())),
    }
}

/// Every character reference (`&#…;`) in a raw attribute value, checked like text: attribute values
/// are not split into events, so their references are found here.
fn check_attribute_refs(raw: &str) -> Result<(), String> {
    let mut rest = raw;
    while let Some(start) = rest.find("&#") {
        let after = &rest[start + 2..];
        let Some(end) = after.find(';') else { break };
        char_ref(&after[..end])?;
        rest = &after[end..];
    }
    Ok(())
}

/// An open element, for naming the field a refused character is in.
struct Frame {
    name: String,
    /// Its position among its parent's child elements (1-based).
    index: usize,
    /// Child elements seen so far.
    children: usize,
}

/// The field path of the innermost open element, in the style of
/// [`FieldError`](super::messages::FieldError): relative to the operation inside the Body
/// (`skusQty[2].key`; array items named `item` or `complexObjectArray` are shown by position), the
/// operation's own name for its direct text, `Header.…` and the like outside the Body.
fn field_path(frames: &[Frame]) -> String {
    let in_body = frames.get(1).is_some_and(|f| f.name == "Body");
    let below = if in_body && frames.len() >= 3 {
        if frames.len() == 3 {
            return frames[2].name.clone();
        }
        &frames[3..]
    } else if frames.len() > 1 {
        &frames[1..]
    } else if let Some(root) = frames.first() {
        return root.name.clone();
    } else {
        return "document".into();
    };
    let mut path = String::new();
    for f in below {
        if !path.is_empty() && matches!(f.name.as_str(), "item" | "complexObjectArray") {
            path.push_str(&format!("[{}]", f.index));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&f.name);
        }
    }
    path
}

/// Parses `body` into an [`Envelope`].
// One pass over quick-xml's event stream, which is what keeps a hostile envelope cheap: each
// event is checked against the limits and for forbidden characters as it arrives, and updates
// state every arm shares (depth, the open elements naming a field, the Body subtree being built,
// the credential spans to mask). Split into functions, each would take most of that state, and
// the order of the checks per event, which decides which error a bad envelope gets, would no
// longer be readable in one place.
#[allow(
    clippy::too_many_lines,
    reason = "a streaming parser: one loop over the events with state every arm shares"
)]
pub fn parse(body: &[u8], limits: Limits) -> Result<Envelope, EnvelopeError> {
    let text = std::str::from_utf8(body).map_err(|e| EnvelopeError::NotUtf8(e.valid_up_to()))?;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().check_end_names = true;

    let mut version = None;
    // Path of open elements as (local name); `stack` holds the Body subtree being built.
    let mut depth = 0usize;
    let mut elements = 0usize;
    let mut body_depth: Option<usize> = None;
    let mut stack: Vec<Element> = Vec::new();
    let mut operation: Option<Element> = None;
    let mut operation_ns = String::new();
    let mut credentials = Vec::new();
    // The credential element being read: (its depth, where its content starts). The start is the
    // reader's position after the start tag, known once the next event is asked for (the event
    // borrows the reader).
    let mut in_credential: Option<(usize, Option<usize>)> = None;
    // Every event is scanned for characters XML 1.0 does not allow (quick-xml lets control
    // characters through in text); the open elements name the field.
    let mut frames: Vec<Frame> = Vec::new();
    let mut root_closed = false;
    let refused = |frames: &[Frame], reason: String| EnvelopeError::InvalidChar {
        field: field_path(frames),
        reason,
    };

    loop {
        let before = reader.buffer_position() as usize;
        if let Some((_, start @ None)) = &mut in_credential {
            *start = Some(before);
        }
        let (ns, event) = match reader.read_resolved_event() {
            Ok(read) => read,
            Err(e) => {
                // quick-xml gives up on some markup with a control character in it; name the
                // character rather than the parse error it caused.
                let upto = (reader.buffer_position() as usize).min(text.len());
                if let Some((at, c)) = first_invalid_char(text)
                    && at <= upto
                {
                    return Err(refused(&frames, describe(c, "the character")));
                }
                return Err(match e {
                    quick_xml::Error::Namespace(
                        quick_xml::name::NamespaceError::TooManyBindings(n),
                    ) => EnvelopeError::TooLarge(format!(
                        "the message declares too many namespaces (more than {n} in scope)"
                    )),
                    e => EnvelopeError::Malformed(e.to_string()),
                });
            }
        };
        let hit = invalid_in(&event).map(|c| describe(c, "the character"));
        if let Some(reason) = &hit
            && !matches!(event, Event::Start(_) | Event::Empty(_))
        {
            return Err(refused(&frames, reason.clone()));
        }
        let ns_is = |uri: &str| matches!(&ns, ResolveResult::Bound(n) if n.as_ref() == uri);
        match event {
            Event::DocType(_) => return Err(EnvelopeError::Doctype),
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_empty = matches!(event, Event::Empty(_));
                if let Some(reason) = hit {
                    frames.push(Frame {
                        name: e.local_name().as_ref().to_string(),
                        index: frames.last().map_or(1, |p| p.children + 1),
                        children: 0,
                    });
                    return Err(refused(&frames, reason));
                }
                if root_closed {
                    return Err(EnvelopeError::AfterRoot(format!(
                        "a second root element <{}>",
                        crate::telemetry::Escaped(e.name().as_ref())
                    )));
                }
                elements += 1;
                if elements > limits.max_elements {
                    return Err(EnvelopeError::TooLarge(format!(
                        "the message has more than {} elements",
                        limits.max_elements
                    )));
                }
                if e.attributes().take(limits.max_attributes + 1).count() > limits.max_attributes {
                    return Err(EnvelopeError::TooLarge(format!(
                        "element <{}> has more than {} attributes",
                        e.name().as_ref(),
                        limits.max_attributes
                    )));
                }
                let local = e.local_name().as_ref().to_string();
                depth += 1;
                if depth > limits.max_depth {
                    return Err(EnvelopeError::TooLarge(format!(
                        "elements are nested deeper than {} levels",
                        limits.max_depth
                    )));
                }
                if let Some(parent) = frames.last_mut() {
                    parent.children += 1;
                }
                frames.push(Frame {
                    index: frames.last().map_or(1, |p| p.children),
                    name: local.clone(),
                    children: 0,
                });
                for attr in e.attributes().flatten() {
                    if attr.value.contains('&')
                        && let Err(reason) = check_attribute_refs(&attr.value)
                    {
                        let name = crate::telemetry::Escaped(attr.key.as_ref());
                        return Err(refused(&frames, format!("attribute {name}: {reason}")));
                    }
                }
                if !is_empty
                    && in_credential.is_none()
                    && super::mask::is_credential(local.as_bytes())
                {
                    in_credential = Some((depth, None));
                }
                if depth == 1 {
                    version = if local != "Envelope" {
                        None
                    } else if ns_is(SOAP11_NS) {
                        Some(SoapVersion::V11)
                    } else if ns_is(SOAP12_NS) {
                        Some(SoapVersion::V12)
                    } else {
                        None
                    };
                    if version.is_none() {
                        return Err(EnvelopeError::NotEnvelope(format!(
                            "<{}>",
                            e.name().as_ref()
                        )));
                    }
                } else if depth == 2 && local == "Body" && body_depth.is_none() {
                    body_depth = Some(depth);
                } else if let Some(bd) = body_depth
                    && bd != usize::MAX
                    && depth > bd
                {
                    // Only the Body's first child is the operation; siblings after it are ignored, and
                    // so are their descendants (their parent was never pushed).
                    let first_child = depth == bd + 1 && operation.is_none();
                    let nested =
                        depth > bd + 1 && !stack.is_empty() && stack.len() == depth - bd - 1;
                    if first_child && let ResolveResult::Bound(n) = &ns {
                        operation_ns = n.as_ref().to_string();
                    }
                    if first_child || nested {
                        stack.push(Element {
                            name: local,
                            ..Element::default()
                        });
                    }
                }
                if is_empty {
                    close(&mut depth, &mut stack, &mut operation, body_depth);
                    frames.pop();
                    root_closed = depth == 0;
                }
            }
            Event::End(_) => {
                if let Some((d, start)) = in_credential
                    && d == depth
                {
                    credentials.push(start.unwrap_or(before)..before);
                    in_credential = None;
                }
                if body_depth == Some(depth) {
                    body_depth = Some(usize::MAX); // Body closed; ignore anything after it
                }
                close(&mut depth, &mut stack, &mut operation, body_depth);
                frames.pop();
                root_closed = depth == 0;
            }
            Event::Text(t) => {
                if root_closed && !t.trim_ascii().is_empty() {
                    return Err(EnvelopeError::AfterRoot("text".into()));
                }
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            Event::CData(c) => {
                if root_closed {
                    return Err(EnvelopeError::AfterRoot("a CDATA section".into()));
                }
                if let Some(top) = stack.last_mut() {
                    let raw = c.into_inner();
                    top.text.push_str(&raw);
                }
            }
            Event::GeneralRef(r) => {
                if root_closed {
                    return Err(EnvelopeError::AfterRoot("text".into()));
                }
                let resolved: String = if let Some(number) = r.strip_prefix('#') {
                    match char_ref(number) {
                        Ok(ch) => ch.to_string(),
                        Err(reason) => return Err(refused(&frames, reason)),
                    }
                } else {
                    let name = r.xml10_content();
                    match quick_xml::escape::resolve_xml_entity(&name) {
                        Some(s) => s.to_string(),
                        None => return Err(EnvelopeError::UnknownEntity(name.into_owned())),
                    }
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&resolved);
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
        }
    }
    if depth != 0 {
        return Err(EnvelopeError::Malformed(
            "the document ends inside an element".into(),
        ));
    }
    let version = version.ok_or_else(|| EnvelopeError::NotEnvelope("nothing".into()))?;
    let operation = operation.ok_or(EnvelopeError::NoBody)?;
    Ok(Envelope {
        version,
        operation,
        operation_ns,
        credentials,
    })
}

/// Closes the innermost element: attaches it to its parent, or makes it the operation when it is the
/// Body's first child.
fn close(
    depth: &mut usize,
    stack: &mut Vec<Element>,
    operation: &mut Option<Element>,
    body_depth: Option<usize>,
) {
    if let Some(bd) = body_depth
        && bd != usize::MAX
        && *depth > bd
        && stack.len() == *depth - bd
        && let Some(done) = stack.pop()
    {
        match stack.last_mut() {
            Some(parent) => parent.children.push(done),
            None => *operation = Some(done),
        }
    }
    *depth = depth.saturating_sub(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::for_lines(100)
    }

    #[test]
    fn reads_the_operation_whatever_the_prefixes() {
        for (open, close) in [
            (
                "soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"",
                "soap:Envelope",
            ),
            (
                "Envelope xmlns=\"http://schemas.xmlsoap.org/soap/envelope/\"",
                "Envelope",
            ),
        ] {
            let (b_open, b_close) = if open.starts_with("soap") {
                ("soap:Body", "soap:Body")
            } else {
                ("Body", "Body")
            };
            let xml = format!(
                "<{open}><{b_open}><m:login xmlns:m=\"urn:Magento\"><username>u</username>\
                 <apiKey>a&amp;b&#x41;</apiKey></m:login></{b_close}></{close}>"
            );
            let env = parse(xml.as_bytes(), limits()).unwrap();
            assert_eq!(env.version, SoapVersion::V11);
            assert_eq!(env.operation.name, "login");
            assert_eq!(env.operation.child_text("username"), Some("u"));
            assert_eq!(env.operation.child_text("apiKey"), Some("a&bA"));
        }
    }

    #[test]
    fn recognises_soap_12_and_skips_the_header() {
        let xml = "<e:Envelope xmlns:e=\"http://www.w3.org/2003/05/soap-envelope\"><e:Header><x>1</x></e:Header>\
                   <e:Body><op><a/><b>2</b></op><ignored/></e:Body></e:Envelope>";
        let env = parse(xml.as_bytes(), limits()).unwrap();
        assert_eq!(env.version, SoapVersion::V12);
        assert_eq!(env.operation.name, "op");
        assert_eq!(env.operation.children.len(), 2);
        assert_eq!(env.operation.child_text("b"), Some("2"));
    }

    #[test]
    fn refuses_hostile_documents() {
        let doctype = "<!DOCTYPE x [<!ENTITY a \"aaaa\">]><x>&a;</x>";
        assert_eq!(
            parse(doctype.as_bytes(), limits()).unwrap_err(),
            EnvelopeError::Doctype
        );
        let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
        assert!(matches!(
            parse(deep.as_bytes(), limits()).unwrap_err(),
            EnvelopeError::TooLarge(_) | EnvelopeError::NotEnvelope(_)
        ));
        assert!(matches!(
            parse(&[b'<', 0xff, b'>'], limits()).unwrap_err(),
            EnvelopeError::NotUtf8(1)
        ));
        assert!(matches!(
            parse(b"<a><b></a>", limits()).unwrap_err(),
            EnvelopeError::Malformed(_) | EnvelopeError::NotEnvelope(_)
        ));
        assert!(matches!(
            parse(b"<a/>", limits()).unwrap_err(),
            EnvelopeError::NotEnvelope(_)
        ));
    }

    #[test]
    fn records_credential_spans_that_agree_with_the_lossy_scan() {
        let fixtures = [
            include_str!("../../tests/fixtures/m1-login.xml"),
            include_str!("../../tests/fixtures/m1-inventory-multi-update.xml"),
            include_str!("../../tests/fixtures/m1-inventory-multi-update-skus.xml"),
            include_str!("../../tests/fixtures/m1-inventory-ws-i.xml"),
            include_str!("../../tests/fixtures/m1-shipment-create.xml"),
            include_str!("../../tests/fixtures/m2-inventory-update.xml"),
            include_str!("../../tests/fixtures/m2-shipment-create.xml"),
        ];
        for xml in fixtures {
            let xml = xml.replace("[session_authentication_token]", "SeCrEt-SeSsIoN");
            let env = parse(xml.as_bytes(), limits()).unwrap();
            assert_eq!(
                env.credentials,
                super::super::mask::find_lossy(xml.as_bytes()),
                "{xml}"
            );
            let masked = super::super::mask::apply(xml.as_bytes(), &env.credentials);
            let masked = std::str::from_utf8(&masked).unwrap();
            assert!(!masked.contains("SeCrEt-SeSsIoN"), "{masked}");
            assert!(!masked.contains("change-me"), "{masked}");
            // Masking keeps the document well-formed and parseable.
            assert!(parse(masked.as_bytes(), limits()).is_ok(), "{masked}");
        }
        let nested = "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Header>\
                      <Password>h</Password></s:Header><s:Body><op><sessionId><![CDATA[a<b]]>&amp;c\
                      </sessionId><apiKey/></op></s:Body></s:Envelope>";
        let env = parse(nested.as_bytes(), limits()).unwrap();
        let masked = super::super::mask::apply(nested.as_bytes(), &env.credentials);
        assert_eq!(
            std::str::from_utf8(&masked).unwrap(),
            "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Header>\
             <Password>***</Password></s:Header><s:Body><op><sessionId>***</sessionId><apiKey/></op>\
             </s:Body></s:Envelope>"
        );
    }
}

#[cfg(test)]
mod char_tests {
    use super::*;

    fn wrap(inner: &str) -> String {
        format!(
            "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><op>{inner}</op></s:Body></s:Envelope>"
        )
    }

    fn refused_field(xml: &str) -> (String, String) {
        match parse(xml.as_bytes(), Limits::for_lines(100)) {
            Err(EnvelopeError::InvalidChar { field, reason }) => (field, reason),
            other => panic!("{xml:?} gave {other:?}"),
        }
    }

    #[test]
    fn refuses_characters_outside_xml_char_naming_the_field() {
        let items = |bad: &str| {
            wrap(&format!(
                "<skusQty><item><key>A</key><value>1</value></item><item><key>B{bad}</key><value>2</value></item></skusQty>"
            ))
        };
        for bad in [
            "\0", "\u{1}", "\u{1b}", "&#1;", "&#x1b;", "&#xFFFE;", "&#0;", "\u{ffff}",
        ] {
            let (field, reason) = refused_field(&items(bad));
            assert_eq!(field, "skusQty[2].key", "{bad:?}: {reason}");
            assert!(reason.contains("not allowed in XML 1.0"), "{reason}");
        }
        let (field, reason) = refused_field(&wrap("<sessionId a=\"x&#2;\">s</sessionId>"));
        assert_eq!(field, "sessionId");
        assert!(
            reason.contains("attribute a") && reason.contains("&#2;"),
            "{reason}"
        );
        let (field, _) = refused_field(&wrap("<tracks><item>T\u{7}</item></tracks>"));
        assert_eq!(field, "tracks[1]");
        let (field, _) = refused_field(&wrap("<comment><![CDATA[\u{0}]]></comment>"));
        assert_eq!(field, "comment");
        let header = "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Header><a>\u{2}</a></s:Header>\
                      <s:Body><op/></s:Body></s:Envelope>";
        assert_eq!(refused_field(header).0, "Header.a");
        // A control character inside markup is named too.
        assert!(matches!(
            parse(
                wrap("<a\u{1}b>1</a\u{1}b>").as_bytes(),
                Limits::for_lines(100)
            ),
            Err(EnvelopeError::InvalidChar { .. })
        ));
        // Tab, line feed, carriage return and the rest of Unicode pass.
        let fine = parse(
            wrap("<key>a\tb\r\nc é \u{fffd} \u{10000} &#9;&#x10FFFF;</key>").as_bytes(),
            Limits::for_lines(100),
        )
        .unwrap();
        assert!(
            fine.operation
                .child("key")
                .unwrap()
                .text
                .contains('\u{10ffff}')
        );
    }

    #[test]
    fn refuses_anything_after_the_envelope() {
        let one = wrap("<a>1</a>");
        assert!(
            parse(
                format!("{one}\n<!-- ok --> ").as_bytes(),
                Limits::for_lines(100)
            )
            .is_ok()
        );
        for after in [
            one.clone(),
            "<x/>".into(),
            "junk".into(),
            "&amp;".into(),
            "<![CDATA[x]]>".into(),
        ] {
            let err =
                parse(format!("{one}{after}").as_bytes(), Limits::for_lines(100)).unwrap_err();
            assert!(
                matches!(err, EnvelopeError::AfterRoot(_)),
                "{after}: {err:?}"
            );
        }
        assert!(
            parse(format!("{one}{one}").as_bytes(), Limits::for_lines(100))
                .unwrap_err()
                .to_string()
                .contains("a second root element <s:Envelope>")
        );
    }
}
