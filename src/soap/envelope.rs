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
}

/// Parses `body` into an [`Envelope`].
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

    loop {
        let before = reader.buffer_position() as usize;
        if let Some((_, start @ None)) = &mut in_credential {
            *start = Some(before);
        }
        let (ns, event) = reader.read_resolved_event().map_err(|e| match e {
            quick_xml::Error::Namespace(quick_xml::name::NamespaceError::TooManyBindings(n)) => {
                EnvelopeError::TooLarge(format!(
                    "the message declares too many namespaces (more than {n} in scope)"
                ))
            }
            e => EnvelopeError::Malformed(e.to_string()),
        })?;
        let ns_is = |uri: &str| matches!(&ns, ResolveResult::Bound(n) if n.as_ref() == uri);
        match event {
            Event::DocType(_) => return Err(EnvelopeError::Doctype),
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_empty = matches!(event, Event::Empty(_));
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
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    let raw = c.into_inner();
                    top.text.push_str(&raw);
                }
            }
            Event::GeneralRef(r) => {
                let resolved: String = match r.resolve_char_ref() {
                    Ok(Some(ch)) => ch.to_string(),
                    Ok(None) => {
                        let name = r.xml10_content();
                        match quick_xml::escape::resolve_xml_entity(&name) {
                            Some(s) => s.to_string(),
                            None => return Err(EnvelopeError::UnknownEntity(name.into_owned())),
                        }
                    }
                    Err(e) => return Err(EnvelopeError::Malformed(e.to_string())),
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
        && !stack.is_empty()
        && stack.len() == *depth - bd
    {
        let done = stack.pop().expect("checked non-empty");
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
