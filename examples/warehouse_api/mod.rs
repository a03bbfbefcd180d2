//! An OrderFlow warehouse HTTP simulator: the side of OrderFlow that wharf talks to when it exports
//! orders and products and cancels orders (reference §3.5–§3.8).
//!
//! It serves, under [`WarehouseSim::endpoint`]:
//!
//! * `POST remoteorder/imports/importitems.xml?channel=…&organisation=…`: order import;
//! * `POST remotewarehouse/imports/importitems.xml?channel=…&organisation=…`: product import;
//! * `POST remoteorder/order/cancel.xml?channel=…&organisation=…&externalReference=…`: cancel;
//! * `GET remotewarehouse/inventory.xml?channel=…&organisation=…`: the inventory list, which changes
//!   nothing (what `wharf check` calls to see that the endpoint accepts its credentials). The
//!   reference gives no shape for its answer; this one lists the products imported so far.
//!
//! Requests need HTTP Basic credentials (401 with a Tomcat page otherwise) and the `channel` and
//! `organisation` query parameters (400 otherwise). Import bodies must be sent as `application/xml`
//! (or `text/xml`; 415 otherwise) and are parsed strictly as the real document: an `<imports>` root
//! whose `<import type operation externalReference>` children hold nothing but CDATA with
//! `key=value` lines. Anything else is answered, as OrderFlow does, with HTTP 200 and
//! `<response><exception>Malformed import document: …</exception></response>`. A well-formed
//! document gets an import report in which every item is a success, a failure or a duplicate (an
//! order imported before is a duplicate); [`Behaviour`] forces failures, duplicates, omissions and
//! whole-request faults (HTTP 500, delays, HTML error pages, exceptions, non-XML bodies).
//!
//! Include it with `#[path = "../../examples/warehouse_api/mod.rs"] mod warehouse_api;`.

#![allow(dead_code)]

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::{Method, StatusCode, header};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use quick_xml::Reader;
use quick_xml::escape::{escape, partial_escape};
use quick_xml::events::{BytesDecl, BytesStart, BytesText, Event};

#[cfg(test)]
mod tests;

/// Resource of the order import, relative to the endpoint.
pub const ORDER_IMPORT: &str = "remoteorder/imports/importitems.xml";
/// Resource of the product import, relative to the endpoint.
pub const PRODUCT_IMPORT: &str = "remotewarehouse/imports/importitems.xml";
/// Resource of the order cancellation, relative to the endpoint.
pub const ORDER_CANCEL: &str = "remoteorder/order/cancel.xml";
/// Resource of the inventory list (GET), relative to the endpoint.
pub const INVENTORY: &str = "remotewarehouse/inventory.xml";

/// Largest request body accepted (a batch of a few hundred orders fits easily).
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// A running simulator. Dropping it stops the server too; [`WarehouseSim::stop`] also waits for it.
pub struct WarehouseSim {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    handle: ServerHandle,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// How the simulator answers; replace it with [`WarehouseSim::set_behaviour`].
///
/// Whole-request switches apply in this order: `hang` (the answer is decided, and its effects are
/// stored, at once; it is only delivered late), `http_500`, then, for authorised requests to a known
/// resource, `html_error_page`, `exception`, `garbage`. Otherwise the request is processed, the
/// per-item sets applying in the order `omit`, `fail`, `duplicate`.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// These externalReferences get an importFailure ("Product ZZZ999 not found" style).
    pub fail: HashSet<String>,
    /// These get an importDuplicate ("Order already exists") even if new; nothing is stored.
    pub duplicate: HashSet<String>,
    /// These are left out of the report entirely; nothing is stored.
    pub omit: HashSet<String>,
    /// The next N requests (of any kind) answer HTTP 500 with a Tomcat HTML error page.
    pub http_500: u32,
    /// Delay every answer by this long (to trigger client timeouts).
    pub hang: Option<Duration>,
    /// Answer 200 with an HTML error page whose `body/h2` contains "ERROR" (as OrderFlow does).
    pub html_error_page: bool,
    /// Answer 200 with `<response><exception>Database unavailable</exception></response>`.
    pub exception: bool,
    /// Answer 200 with a body that is not XML.
    pub garbage: bool,
    /// Make every answer this many bytes long: the real answer, then spaces (still well-formed
    /// XML), streamed without being held in memory.
    pub huge_answer: Option<usize>,
}

/// One HTTP request received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request path as sent, with its leading `/`, e.g. `/remoteorder/order/cancel.xml`.
    pub path: String,
    /// The decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// Whether the request carried the right HTTP Basic credentials.
    pub authorized: bool,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body (lossily decoded as UTF-8).
    pub body: String,
    /// The HTTP status answered.
    pub status: u16,
    /// When its body had been read (for latency measurements).
    pub received_at: std::time::Instant,
}

/// An item the warehouse accepted.
#[derive(Clone, Debug)]
pub struct ImportedItem {
    /// The `externalReference` (order increment id or SKU).
    pub external_reference: String,
    /// The `operation` attribute (`insert`, `merge`, …).
    pub operation: String,
    /// The CDATA's `key=value` lines, in document order.
    pub fields: Vec<(String, String)>,
}

impl ImportedItem {
    /// The value of the first field named `key`.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl WarehouseSim {
    /// Starts on 127.0.0.1 (a free port) with these Basic credentials, on the current tokio runtime.
    pub async fn start(username: &str, password: &str) -> WarehouseSim {
        Self::start_on(0, username, password).await
    }

    /// Starts on 127.0.0.1:`port` (0 picks a free one) with these Basic credentials.
    pub async fn start_on(port: u16, username: &str, password: &str) -> WarehouseSim {
        let state = Arc::new(Mutex::new(State::new(username, password)));
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(BODY_LIMIT))
                .default_service(web::to(handle))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("the warehouse simulator cannot bind 127.0.0.1:{port}: {e}"));
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        let task = tokio::spawn(server);
        WarehouseSim {
            addr,
            state,
            handle,
            task: Some(task),
        }
    }

    /// The endpoint base URL to configure in wharf, ending with '/'.
    pub fn endpoint(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The address the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the behaviour for subsequent requests.
    pub fn set_behaviour(&self, b: Behaviour) {
        self.lock().behaviour = b;
    }

    /// Every HTTP request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Orders imported successfully so far, in the order they were accepted (each reference once).
    pub fn orders(&self) -> Vec<ImportedItem> {
        self.lock().orders.clone()
    }

    /// Product imports accepted so far, in order: every accepted merge is listed, so a product sent
    /// twice appears twice (the later one being the warehouse's current data).
    pub fn products(&self) -> Vec<ImportedItem> {
        self.lock().products.clone()
    }

    /// externalReferences cancelled successfully so far, in order.
    pub fn cancelled(&self) -> Vec<String> {
        self.lock().cancelled.clone()
    }

    /// Stops the server (without waiting for requests in flight) and waits until it is down.
    pub async fn stop(mut self) {
        self.handle.stop(false).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Drop for WarehouseSim {
    fn drop(&mut self) {
        if self.task.is_some() {
            // Sends the stop command at once; the returned future only waits for completion.
            drop(self.handle.stop(false));
        }
    }
}

/// Locks the state, ignoring poisoning (a panicking test must not hide the others' results).
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Everything the warehouse knows.
struct State {
    username: String,
    password: String,
    behaviour: Behaviour,
    requests: Vec<Recorded>,
    orders: Vec<ImportedItem>,
    products: Vec<ImportedItem>,
    cancelled: Vec<String>,
}

/// The resources served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Import(Kind),
    Cancel,
    Inventory,
}

/// What an import endpoint takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Order,
    Product,
}

impl Kind {
    /// The `type` attribute this endpoint imports.
    fn type_name(self) -> &'static str {
        match self {
            Kind::Order => "order",
            Kind::Product => "product",
        }
    }
}

/// An answer, before it becomes an HTTP response.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    challenge: bool,
}

const XML: &str = "application/xml;charset=UTF-8";
const HTML: &str = "text/html;charset=utf-8";

impl Reply {
    fn xml(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: XML,
            body,
            challenge: false,
        }
    }

    /// An OrderFlow `<response><exception>` answer.
    fn exception(status: u16, message: &str) -> Reply {
        Reply::xml(
            status,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response><exception>{}</exception></response>",
                partial_escape(message)
            ),
        )
    }

    /// A Tomcat error report page (not well-formed XML, like the real ones).
    fn tomcat(status: u16, reason: &str, description: &str) -> Reply {
        let reason = partial_escape(reason);
        Reply {
            status,
            content_type: HTML,
            body: format!(
                "<html><head><title>Apache Tomcat/7.0.52 - Error report</title></head><body>\
                 <h1>HTTP Status {status} - {reason}</h1><HR size=\"1\" noshade=\"noshade\">\
                 <p><b>type</b> Status report</p><p><b>message</b> <u>{reason}</u></p>\
                 <p><b>description</b> <u>{description}</u></p><HR size=\"1\" noshade=\"noshade\">\
                 <h3>Apache Tomcat/7.0.52</h3></body></html>"
            ),
            challenge: false,
        }
    }

    /// The answer padded with spaces to `size` bytes (or whole, when it is longer).
    fn into_padded_response(self, size: usize) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let head = web::Bytes::from(self.body);
        let size = size.max(head.len());
        HttpResponse::build(status)
            .insert_header((header::CONTENT_TYPE, self.content_type))
            .body(Padded {
                left: size - head.len(),
                head: Some(head),
                size,
            })
    }

    fn into_response(self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = HttpResponse::build(status);
        resp.insert_header((header::CONTENT_TYPE, self.content_type));
        if self.challenge {
            resp.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"OrderFlow\""));
        }
        resp.body(self.body)
    }
}

/// Serves every request: records it, decides the answer, then delivers it (late, when hanging).
async fn handle(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    let received_at = std::time::Instant::now();
    let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (reply, delay, huge) = {
        let mut st = lock(&state);
        let authorized = st.authorized(&req);
        let reply = st.respond(
            req.method(),
            req.path(),
            &query,
            authorized,
            content_type.as_deref(),
            &body,
        );
        st.requests.push(Recorded {
            method: req.method().to_string(),
            path: req.path().to_owned(),
            query,
            authorized,
            content_type,
            body: String::from_utf8_lossy(&body).into_owned(),
            status: reply.status,
            received_at,
        });
        (reply, st.behaviour.hang, st.behaviour.huge_answer)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    match huge {
        Some(size) => reply.into_padded_response(size),
        None => reply.into_response(),
    }
}

/// An answer followed by spaces up to a size, produced as it is sent.
struct Padded {
    head: Option<web::Bytes>,
    size: usize,
    left: usize,
}

/// The spaces a padded answer is sent in.
static SPACES: [u8; 64 * 1024] = [b' '; 64 * 1024];

impl actix_web::body::MessageBody for Padded {
    type Error = std::convert::Infallible;

    fn size(&self) -> actix_web::body::BodySize {
        actix_web::body::BodySize::Sized(self.size as u64)
    }

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<web::Bytes, Self::Error>>> {
        let this = self.get_mut();
        if let Some(head) = this.head.take() {
            return std::task::Poll::Ready(Some(Ok(head)));
        }
        if this.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = this.left.min(SPACES.len());
        this.left -= n;
        std::task::Poll::Ready(Some(Ok(web::Bytes::from_static(&SPACES[..n]))))
    }
}

/// The first value of a query parameter, if present and not empty.
fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

impl State {
    fn new(username: &str, password: &str) -> State {
        State {
            username: username.to_owned(),
            password: password.to_owned(),
            behaviour: Behaviour::default(),
            requests: Vec::new(),
            orders: Vec::new(),
            products: Vec::new(),
            cancelled: Vec::new(),
        }
    }

    /// Whether the request carries this warehouse's HTTP Basic credentials.
    fn authorized(&self, req: &HttpRequest) -> bool {
        let Some(value) = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some((scheme, token)) = value.trim().split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        let Ok(decoded) = STANDARD.decode(token.trim()) else {
            return false;
        };
        let Ok(decoded) = String::from_utf8(decoded) else {
            return false;
        };
        decoded.split_once(':') == Some((self.username.as_str(), self.password.as_str()))
    }

    /// Decides the answer to one request, applying its effects.
    fn respond(
        &mut self,
        method: &Method,
        path: &str,
        query: &[(String, String)],
        authorized: bool,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Reply {
        if self.behaviour.http_500 > 0 {
            self.behaviour.http_500 -= 1;
            return Reply::tomcat(
                500,
                "Internal Server Error",
                "The server encountered an internal error that prevented it from fulfilling this request.",
            );
        }
        let route = match (method, path.strip_prefix('/').unwrap_or(path)) {
            (&Method::POST, ORDER_IMPORT) => Route::Import(Kind::Order),
            (&Method::POST, PRODUCT_IMPORT) => Route::Import(Kind::Product),
            (&Method::POST, ORDER_CANCEL) => Route::Cancel,
            (&Method::GET, INVENTORY) => Route::Inventory,
            _ => {
                return Reply::tomcat(404, path, "The requested resource is not available.");
            }
        };
        if !authorized {
            let mut reply = Reply::tomcat(
                401,
                "Bad credentials",
                "This request requires HTTP authentication.",
            );
            reply.challenge = true;
            return reply;
        }
        if param(query, "channel").is_none() || param(query, "organisation").is_none() {
            return Reply::exception(400, "channel and organisation are required");
        }
        if self.behaviour.html_error_page {
            return Reply {
                status: 200,
                content_type: HTML,
                body: "<html><head><title>OrderFlow - Error</title></head><body>\
                       <h2>ERROR</h2><p>An unexpected error has occurred: \
                       java.lang.NullPointerException</p></body></html>"
                    .to_owned(),
                challenge: false,
            };
        }
        if self.behaviour.exception {
            return Reply::exception(200, "Database unavailable");
        }
        if self.behaviour.garbage {
            return Reply {
                status: 200,
                content_type: "text/plain;charset=UTF-8",
                body:
                    "java.lang.IllegalStateException: Connection pool exhausted (try again later)"
                        .to_owned(),
                challenge: false,
            };
        }
        match route {
            Route::Import(kind) => self.import(kind, content_type, body),
            Route::Cancel => match param(query, "externalReference") {
                None => Reply::exception(400, "externalReference is required"),
                Some(reference) => self.cancel(reference),
            },
            Route::Inventory => self.inventory(),
        }
    }

    /// The inventory list: one element per product imported so far.
    fn inventory(&self) -> Reply {
        let mut body = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<inventory>");
        for p in &self.products {
            let _ = write!(
                body,
                "<product externalReference=\"{}\"/>",
                escape(p.external_reference.as_str())
            );
        }
        body.push_str("</inventory>");
        Reply::xml(200, body)
    }

    /// An import request: the document, then the report.
    fn import(&mut self, kind: Kind, content_type: Option<&str>, body: &[u8]) -> Reply {
        let media = content_type
            .and_then(|c| c.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase());
        if !matches!(media.as_deref(), Some("application/xml" | "text/xml")) {
            return Reply::tomcat(
                415,
                "Unsupported Media Type",
                "The server refused this request because the request entity is in a format not \
                 supported by the requested resource for the requested method.",
            );
        }
        let items = std::str::from_utf8(body)
            .map_err(|e| format!("the body is not UTF-8 ({e})"))
            .and_then(parse_import_document);
        match items {
            Ok(items) => Reply::xml(200, self.report(kind, items)),
            Err(why) => Reply::exception(200, &format!("Malformed import document: {why}")),
        }
    }

    /// Imports the items one by one and writes the import report.
    fn report(&mut self, kind: Kind, items: Vec<ImportDoc>) -> String {
        let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string();
        let mut successes = String::new();
        let mut failures = String::new();
        let mut duplicates = String::new();
        for item in items {
            let head = format!(
                "externalReference=\"{}\" type=\"{}\" operation=\"{}\" queryTime=\"{now}\"",
                escape(&item.external_reference),
                escape(&item.kind),
                escape(&item.operation)
            );
            // Writing to a String cannot fail.
            let _ = match self.judge(kind, item) {
                Outcome::Omitted => Ok(()),
                Outcome::Success => write!(successes, "\n    <importSuccess {head}/>"),
                Outcome::Failure(message, detail) => write!(
                    failures,
                    "\n    <importFailure {head}>\n      <failureMessage>{}</failureMessage>\n      \
                     <failureDetail>{}</failureDetail>\n    </importFailure>",
                    partial_escape(&message),
                    partial_escape(&detail)
                ),
                Outcome::Duplicate(message, detail) => write!(
                    duplicates,
                    "\n    <importDuplicate {head}>\n      <duplicateMessage>{}</duplicateMessage>\n      \
                     <duplicateDetail>{}</duplicateDetail>\n    </importDuplicate>",
                    partial_escape(&message),
                    partial_escape(&detail)
                ),
            };
        }
        let section = |name: &str, lines: String| {
            if lines.is_empty() {
                format!("  <{name}/>")
            } else {
                format!("  <{name}>{lines}\n  </{name}>")
            }
        };
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<importReport>\n{}\n{}\n{}\n</importReport>\n",
            section("importSuccesses", successes),
            section("importFailures", failures),
            section("importDuplicates", duplicates)
        )
    }

    /// Decides one item, storing it when it is accepted.
    fn judge(&mut self, kind: Kind, item: ImportDoc) -> Outcome {
        let reference = item.external_reference.as_str();
        let b = &self.behaviour;
        if b.omit.contains(reference) {
            return Outcome::Omitted;
        }
        if item.kind != kind.type_name() {
            return Outcome::Failure(
                format!("Unsupported import type '{}'", item.kind),
                format!(
                    "this resource imports items of type '{}' only",
                    kind.type_name()
                ),
            );
        }
        if b.fail.contains(reference) {
            return forced_failure(kind, &item);
        }
        let noun = match kind {
            Kind::Order => "Order",
            Kind::Product => "Product",
        };
        if b.duplicate.contains(reference) {
            return Outcome::Duplicate(
                format!("{noun} already exists"),
                format!("externalReference {reference}"),
            );
        }
        let known = match kind {
            Kind::Order => self
                .orders
                .iter()
                .any(|o| o.external_reference == reference),
            Kind::Product => self
                .products
                .iter()
                .any(|p| p.external_reference == reference),
        };
        match (kind, item.operation.as_str()) {
            (Kind::Order | Kind::Product, "insert") if known => Outcome::Duplicate(
                format!("{noun} already exists"),
                format!("externalReference {reference}"),
            ),
            (Kind::Product, "update") if !known => Outcome::Failure(
                format!("Product {reference} not found"),
                format!("externalReference={reference} could not be resolved"),
            ),
            (Kind::Order, "insert") | (Kind::Product, "insert" | "update" | "merge") => {
                let stored = ImportedItem {
                    external_reference: item.external_reference,
                    operation: item.operation,
                    fields: item.fields,
                };
                match kind {
                    Kind::Order => self.orders.push(stored),
                    Kind::Product => self.products.push(stored),
                }
                Outcome::Success
            }
            (_, operation) => Outcome::Failure(
                format!(
                    "Unsupported operation '{operation}' for {}",
                    kind.type_name()
                ),
                format!("externalReference {reference}"),
            ),
        }
    }

    /// A cancellation: performed once for an order the warehouse has.
    fn cancel(&mut self, reference: &str) -> Reply {
        let known = self
            .orders
            .iter()
            .any(|o| o.external_reference == reference);
        let done = self.cancelled.iter().any(|c| c == reference);
        let text = if known && !done {
            self.cancelled.push(reference.to_owned());
            format!("Cancel operation performed for order {reference}")
        } else {
            format!("No cancel operation performed for order {reference}")
        };
        Reply::xml(
            200,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response>{}</response>",
                partial_escape(&text)
            ),
        )
    }
}

/// The failure reported for an item in [`Behaviour::fail`]: an unknown product, as OrderFlow says.
fn forced_failure(kind: Kind, item: &ImportDoc) -> Outcome {
    match kind {
        Kind::Order => {
            let line = item.fields.iter().find(|(k, _)| {
                k.starts_with("orderLine.") && k.ends_with(".product.externalReference")
            });
            match line {
                Some((key, sku)) => Outcome::Failure(
                    format!("Product {sku} not found"),
                    format!("{key}={sku} could not be resolved"),
                ),
                None => Outcome::Failure(
                    "Order has no order lines".to_owned(),
                    format!("externalReference {}", item.external_reference),
                ),
            }
        }
        Kind::Product => Outcome::Failure(
            format!("Product {} could not be saved", item.external_reference),
            format!(
                "externalReference={} rejected by the warehouse",
                item.external_reference
            ),
        ),
    }
}

/// How one item went.
enum Outcome {
    Success,
    /// Message and detail.
    Failure(String, String),
    /// Message and detail.
    Duplicate(String, String),
    Omitted,
}

/// One `<import>` of an import document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportDoc {
    /// The `type` attribute (`order`, `product`, …).
    pub kind: String,
    /// The `operation` attribute.
    pub operation: String,
    /// The `externalReference` attribute (equal to the CDATA's own `externalReference=`).
    pub external_reference: String,
    /// The CDATA's `key=value` lines, in order.
    pub fields: Vec<(String, String)>,
}

/// Where the parser is in an import document.
enum Place {
    /// Before the root element.
    Prolog,
    /// Inside `<imports>`, between items.
    Root,
    /// Inside an `<import>`: its attributes and the CDATA read so far.
    Item {
        attrs: (String, String, String),
        cdata: Option<String>,
    },
    /// After `</imports>`.
    End,
}

/// Parses an import document as OrderFlow reads it, or says why it is not one.
///
/// The root must be `<imports>`, holding only `<import>` elements (and whitespace); each `<import>`
/// must have `type`, `operation` and `externalReference` attributes and hold only CDATA (adjacent
/// CDATA sections are joined, as any XML parser does, so a value's `]]>` may be split across two
/// sections); any text, entity or element in an `<import>` is an error, which is how a value
/// breaking out of its CDATA shows.
pub fn parse_import_document(xml: &str) -> Result<Vec<ImportDoc>, String> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().enable_all_checks(true);
    let mut place = Place::Prolog;
    let mut items = Vec::new();
    let mut first = true;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("{e} (at byte {})", reader.error_position()))?;
        let at_start = std::mem::replace(&mut first, false);
        match event {
            Event::Decl(d) => check_declaration(&d, at_start)?,
            Event::DocType(_) => return Err("DOCTYPE is not allowed".into()),
            Event::Comment(_) | Event::PI(_) => {
                if matches!(place, Place::Item { .. }) {
                    return Err("markup inside <import> outside its CDATA".into());
                }
            }
            Event::Start(e) => place = on_start(place, &e)?,
            Event::Empty(e) => place = on_empty(place, &e)?,
            Event::Text(t) => check_text(&place, &t)?,
            Event::GeneralRef(r) => {
                return Err(format!(
                    "unexpected entity reference &{};",
                    r.as_ref() as &str
                ));
            }
            Event::CData(c) => match &mut place {
                Place::Item { cdata, .. } => {
                    cdata
                        .get_or_insert_with(String::new)
                        .push_str(&c.into_inner());
                }
                _ => return Err("CDATA outside <import>".into()),
            },
            Event::End(_) => {
                place = match place {
                    Place::Item { attrs, cdata } => {
                        items.push(finish_import(attrs, cdata)?);
                        Place::Root
                    }
                    Place::Root => Place::End,
                    Place::Prolog | Place::End => return Err("unbalanced end tag".into()),
                };
            }
            Event::Eof => {
                return match place {
                    Place::End => Ok(items),
                    Place::Prolog => Err("no root element".into()),
                    _ => Err("unexpected end of document".into()),
                };
            }
        }
    }
}

/// The XML declaration may only open the document, and only for UTF-8.
fn check_declaration(d: &BytesDecl, at_start: bool) -> Result<(), String> {
    if !at_start {
        return Err("misplaced XML declaration".into());
    }
    if let Some(enc) = d.encoding() {
        let enc = enc.map_err(|e| e.to_string())?;
        if !enc.eq_ignore_ascii_case("utf-8") {
            return Err(format!("unsupported encoding {enc}"));
        }
    }
    Ok(())
}

/// Where an opening tag leads: `<imports>` as the root, `<import>` inside it, nothing else.
fn on_start(place: Place, e: &BytesStart) -> Result<Place, String> {
    match place {
        Place::Prolog => {
            expect_name(e, "imports", "the root element")?;
            Ok(Place::Root)
        }
        Place::Root => {
            expect_name(e, "import", "a child of <imports>")?;
            Ok(Place::Item {
                attrs: import_attributes(e)?,
                cdata: None,
            })
        }
        Place::Item { attrs, .. } => Err(format!(
            "element <{}> inside <import externalReference=\"{}\">",
            name_of(e),
            attrs.2
        )),
        Place::End => Err("content after the root element".into()),
    }
}

/// An empty element is only allowed as an empty root: an `<import/>` has no CDATA.
fn on_empty(place: Place, e: &BytesStart) -> Result<Place, String> {
    match place {
        Place::Prolog => {
            expect_name(e, "imports", "the root element")?;
            Ok(Place::End)
        }
        Place::Root => {
            expect_name(e, "import", "a child of <imports>")?;
            let (_, _, reference) = import_attributes(e)?;
            Err(format!(
                "<import externalReference=\"{reference}\"> has no CDATA"
            ))
        }
        Place::Item { attrs, .. } => Err(format!(
            "element <{}> inside <import externalReference=\"{}\">",
            name_of(e),
            attrs.2
        )),
        Place::End => Err("content after the root element".into()),
    }
}

/// Text is only whitespace between elements; inside an `<import>` it means a value broke out.
fn check_text(place: &Place, t: &BytesText) -> Result<(), String> {
    match place {
        Place::Item { attrs, .. } => Err(format!(
            "text outside CDATA in <import externalReference=\"{}\"> (a value broke \
             out of its CDATA section?): {:?}",
            attrs.2,
            excerpt(&t.xml10_content())
        )),
        _ => {
            let raw: &str = t.as_ref();
            if !raw.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) {
                return Err(format!("unexpected text {:?}", excerpt(&t.xml10_content())));
            }
            Ok(())
        }
    }
}

/// Turns a closed `<import>` into its item: its CDATA must parse into fields and name the same
/// `externalReference` as the attribute.
fn finish_import(
    attrs: (String, String, String),
    cdata: Option<String>,
) -> Result<ImportDoc, String> {
    let (kind, operation, external_reference) = attrs;
    let Some(text) = cdata else {
        return Err(format!(
            "<import externalReference=\"{external_reference}\"> has no CDATA"
        ));
    };
    let fields = parse_fields(&text).map_err(|e| format!("import {external_reference}: {e}"))?;
    let own = fields
        .iter()
        .find(|(k, _)| k == "externalReference")
        .map(|(_, v)| v.as_str());
    if own != Some(external_reference.as_str()) {
        return Err(format!(
            "import {external_reference}: the CDATA's externalReference is {own:?}"
        ));
    }
    Ok(ImportDoc {
        kind,
        operation,
        external_reference,
        fields,
    })
}

/// Parses CDATA text into `key=value` pairs: one per line, split at the first `=`; one final
/// newline is allowed; a line without `=` (or with an empty key) is an error.
pub fn parse_fields(text: &str) -> Result<Vec<(String, String)>, String> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    if body.is_empty() {
        return Err("empty CDATA".into());
    }
    body.split('\n')
        .enumerate()
        .map(|(n, line)| match line.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
            _ => Err(format!(
                "line {} is not key=value: {:?}",
                n + 1,
                excerpt(line)
            )),
        })
        .collect()
}

/// The qualified name of an element.
fn name_of(e: &BytesStart) -> String {
    e.name().as_ref().to_owned()
}

/// Checks an element's name.
fn expect_name(e: &BytesStart, expected: &str, what: &str) -> Result<(), String> {
    let name = name_of(e);
    if name == expected {
        Ok(())
    } else {
        Err(format!("{what} is <{name}>, expected <{expected}>"))
    }
}

/// The `type`, `operation` and `externalReference` attributes of an `<import>`, all required.
fn import_attributes(e: &BytesStart) -> Result<(String, String, String), String> {
    let (mut kind, mut operation, mut reference) = (None, None, None);
    for attr in e.attributes() {
        let attr = attr.map_err(|err| format!("bad attribute in <import>: {err}"))?;
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|err| format!("bad attribute value in <import>: {err}"))?
            .into_owned();
        match attr.key.as_ref() {
            "type" => kind = Some(value),
            "operation" => operation = Some(value),
            "externalReference" => reference = Some(value),
            _ => {}
        }
    }
    let required = |v: Option<String>, name: &str| {
        v.filter(|v| !v.is_empty())
            .ok_or_else(|| format!("<import> without a {name} attribute"))
    };
    Ok((
        required(kind, "type")?,
        required(operation, "operation")?,
        required(reference, "externalReference")?,
    ))
}

/// The start of a text, for messages.
fn excerpt(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s.to_owned()
    }
}
