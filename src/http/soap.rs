//! SOAP endpoints: `POST /soap` and the Magento 1 aliases, and the WSDLs.
//!
//! Each call is parsed on the thread that read it, its password (if it carries one) checked by the
//! process-wide [`crate::auth::PasswordChecker`] without a thread or connection held while it waits,
//! and a valid inventory update or shipment is stored by the group commit ([`queue::receive`]),
//! which authenticates its session or token in the storing transaction; only then is it answered.
//! Everything else that needs the database (refusals, logins) is handled on the blocking pool.

use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::TimeDelta;

use super::AppState;
use super::body::{self, Body, BodyError, BodyGate, BodyRefusal};
use crate::auth::{self, AuthError};
use crate::metrics::Received;
use crate::queue::{self, IncomingMessage, Receipt};
use crate::soap::messages::{self, Call, OperationKind};
use crate::soap::{self, Fault, Limits, SoapVersion, envelope};
use crate::telemetry::Escaped;

mod refusal;
use refusal::{Refusal, Sender, reject, reject_with};

/// The Magento 1 rpc/encoded WSDL; `{{SOAP_URL}}` is replaced by the endpoint's public URL.
const MAGENTO1_WSDL: &str = include_str!("../../wsdl/magento1.wsdl");
/// The Magento 2 WSDL (token, inventory and shipment services, SOAP 1.2).
const MAGENTO2_WSDL: &str = include_str!("../../wsdl/magento2.wsdl");
/// wharf's own document/literal wrapped WSDL for new integrations.
const WHARF_WSDL: &str = include_str!("../../wsdl/wharf.wsdl");

/// Paths that accept SOAP posts and serve the Magento 1 WSDL on `GET ?wsdl`.
const SOAP_PATHS: &[&str] = &[
    "/soap",
    "/api/v2_soap",
    "/api/v2_soap/",
    "/api/v2_soap/index",
    "/api/v2_soap/index/",
    "/index.php/api/v2_soap",
    "/index.php/api/v2_soap/index",
    "/index.php/api/v2_soap/index/",
];

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    for path in SOAP_PATHS {
        cfg.service(
            web::resource(*path)
                .route(web::post().to(soap_post))
                .route(web::get().to(wsdl_get)),
        );
    }
    // Magento 2: /soap/{store}?services=… (the store code is accepted and ignored).
    cfg.service(
        web::resource("/soap/{store}")
            .route(web::post().to(soap_post))
            .route(web::get().to(magento2_wsdl_get)),
    );
    cfg.route("/wsdl/wharf.wsdl", web::get().to(wharf_wsdl_get));
}

fn wsdl_response(template: &str, address: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/xml; charset=utf-8")
        .body(template.replace("{{SOAP_URL}}", &quick_xml::escape::escape(address)))
}

async fn magento2_wsdl_get(
    req: HttpRequest,
    query: web::Query<std::collections::HashMap<String, String>>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if !query.contains_key("wsdl") {
        return HttpResponse::NotFound()
            .content_type(ContentType::plaintext())
            .body("This is wharf's Magento 2 style SOAP endpoint: POST SOAP messages here, or GET ?wsdl&services=… for the WSDL.\n");
    }
    let address = match query.get("services").filter(|s| !s.is_empty()) {
        Some(services) => format!("{}{}?services={services}", state.public_url, req.path()),
        None => format!("{}{}", state.public_url, req.path()),
    };
    wsdl_response(MAGENTO2_WSDL, &address)
}

async fn wharf_wsdl_get(state: web::Data<AppState>) -> HttpResponse {
    wsdl_response(WHARF_WSDL, &format!("{}/soap", state.public_url))
}

async fn wsdl_get(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let wants_wsdl = req
        .query_string()
        .split('&')
        .any(|kv| kv == "wsdl" || kv.starts_with("wsdl="));
    if !wants_wsdl {
        return HttpResponse::NotFound()
            .content_type(ContentType::plaintext())
            .body("This is wharf's SOAP endpoint: POST SOAP messages here, or GET ?wsdl for the WSDL.\n");
    }
    wsdl_response(
        MAGENTO1_WSDL,
        &format!("{}{}", state.public_url, req.path()),
    )
}

/// An answer ready to send.
struct Reply {
    status: StatusCode,
    version: SoapVersion,
    xml: String,
    /// When an issued admin token expires (RFC 3339), sent as `X-Wharf-Token-Expires`.
    token_expires: Option<String>,
    /// Seconds a throttled caller must wait, sent as `Retry-After`.
    retry_after: Option<u64>,
    /// The operation, as the metrics name it (`unknown` until it is known).
    operation: &'static str,
    /// How the call ended, for the metrics.
    received: Received,
}

impl Reply {
    fn fault(version: SoapVersion, fault: &Fault) -> Reply {
        Reply {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            version,
            xml: fault.to_xml(version),
            token_expires: None,
            retry_after: None,
            operation: "unknown",
            received: Received::Failed,
        }
    }

    /// The fault answering `refusal`.
    fn refused(version: SoapVersion, fault: &Fault, refusal: &Refusal<'_>) -> Reply {
        Reply {
            operation: refusal.operation.unwrap_or("unknown"),
            received: Received::Refused(refusal.kind),
            ..Reply::fault(version, fault)
        }
    }
}

async fn soap_post(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    gate: web::Data<BodyGate>,
) -> HttpResponse {
    // The content type tells the version before the body is parsed, for faults about the body itself.
    let started = std::time::Instant::now();
    let declared = if req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/soap+xml"))
    {
        SoapVersion::V12
    } else {
        SoapVersion::V11
    };
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Failed password checks and stored refusals are counted per TCP peer: a forwarded-for header is
    // the caller's to vary.
    let peer = req.peer_addr().map(|a| a.ip());
    let state = state.into_inner();
    let max_body = state.settings.soap.max_body;
    let body = match body::read(&req, payload.into_inner(), gate.clone(), max_body).await {
        Ok(body) => body,
        Err(refused) => {
            return body_refused(state, declared, refused, authorization, peer, started).await;
        }
    };
    let reply = respond(state, body, declared, authorization, peer).await;
    crate::metrics::soap_call(reply.operation, reply.received, started.elapsed());
    send(reply)
}

fn content_type(version: SoapVersion) -> &'static str {
    match version {
        SoapVersion::V11 => "text/xml; charset=utf-8",
        SoapVersion::V12 => "application/soap+xml; charset=utf-8",
    }
}

fn send(reply: Reply) -> HttpResponse {
    let mut resp = HttpResponse::build(reply.status);
    resp.content_type(content_type(reply.version));
    if let Some(expires) = reply.token_expires {
        resp.insert_header(("X-Wharf-Token-Expires", expires));
    }
    if let Some(secs) = reply.retry_after {
        resp.insert_header(("Retry-After", secs.to_string()));
    }
    resp.body(reply.xml)
}

/// Answers a body that was not read whole with a SOAP fault in the version the content type
/// declares: a Client fault for one over `soap.max_body` (recorded as a rejection like any refused
/// message, from the first 64 KiB that were read), a Server fault for the rest (slow or stalled bodies, the
/// budget spent: not recorded, or a flood of them would fill the database). The connection closes.
async fn body_refused(
    state: std::sync::Arc<AppState>,
    version: SoapVersion,
    mut refused: BodyRefusal,
    authorization: Option<String>,
    peer: Option<std::net::IpAddr>,
    started: std::time::Instant,
) -> HttpResponse {
    let span = tracing::Span::current();
    let excerpt = match &mut refused.error {
        BodyError::TooLarge { excerpt, .. } => std::mem::take(excerpt),
        _ => Vec::new(),
    };
    let e = &refused.error;
    let status = e.status();
    let mut reply = match e {
        BodyError::TooLarge { .. } => {
            let fault = Fault::client(format!("Invalid message: {e}"));
            web::block(move || {
                let anonymous = Sender {
                    peer,
                    caller: None,
                    authenticated: false,
                };
                let refusal = Refusal::new(anonymous, "too-large", None);
                span.in_scope(|| {
                    reject(
                        &state,
                        version,
                        refusal,
                        fault,
                        &excerpt,
                        authorization.as_deref(),
                    )
                })
            })
            .await
            .unwrap_or_else(|_| Reply::fault(version, &Fault::client(e.to_string())))
        }
        BodyError::Broken(_) | BodyError::Encoded(_) => {
            Reply::fault(version, &Fault::client(e.to_string()))
        }
        _ => Reply::fault(version, &Fault::server(e.to_string())),
    };
    reply.status = status;
    let result = match e {
        BodyError::TooLarge { .. } => Received::Refused("too-large"),
        BodyError::Broken(_) | BodyError::Encoded(_) => Received::Refused("unreadable-body"),
        _ => Received::Refused("slow-or-busy"),
    };
    crate::metrics::soap_call("unknown", result, started.elapsed());
    let mut resp = HttpResponse::build(reply.status)
        .content_type(content_type(reply.version))
        .body(refused.answer_body(reply.xml));
    e.apply_headers(&mut resp);
    resp
}

/// Handles one call so that nothing holds a thread or a pooled connection while it waits: the
/// message is read on this thread (a large one on the blocking pool), the password it carries if
/// any is checked by [`auth::PasswordChecker`], and a valid inventory update or shipment is handed
/// to the group commit ([`queue::receive`]), which checks its session or token in the transaction
/// that stores it. What needs the database otherwise — refusals, logins, sessions ending — is
/// handled on the blocking pool with one connection ([`handle`]).
async fn respond(
    state: std::sync::Arc<AppState>,
    body: Body,
    declared: SoapVersion,
    authorization: Option<String>,
    peer: Option<std::net::IpAddr>,
) -> Reply {
    let message = match read_message(&state, body, declared, authorization.as_deref(), peer).await {
        Ok(message) => message,
        Err(Ok(unread)) => {
            let state = state.clone();
            return on_blocking_pool(declared, move || {
                unread.reject(&state, authorization.as_deref())
            })
            .await
            .unwrap_or_else(|reply| reply);
        }
        Err(Err(reply)) => return reply,
    };
    let checked = match message.password() {
        Some((user, password)) => Some(match &message.caller {
            Caller::Basic { .. } => {
                state
                    .credentials
                    .verify(&state.passwords, &state.pool, user, password, peer)
                    .await
            }
            _ => state
                .passwords
                .check(&state.pool, user, password, peer, auth::Door::Soap)
                .await
                .map(|v| v.user_id),
        }),
        None => None,
    };
    if let Some(Err(throttled @ AuthError::Throttled { .. })) = checked {
        return throttled_reply(&message, &throttled);
    }
    let version = message.env.version;
    if let Some(store) = Storing::of(&state, &message, checked.as_ref()) {
        let answer = store.run(&state, &message).await;
        if let Some(reply) = answer {
            return reply;
        }
    }
    on_blocking_pool(version, move || handle(&state, message, checked))
        .await
        .unwrap_or_else(|reply| reply)
}

/// Bodies up to this size are parsed on the thread that read them: that takes microseconds, less
/// than a hop to the blocking pool. Larger ones are parsed there, so that one big message does not
/// hold up the other calls of this thread.
const PARSE_HERE_BYTES: usize = 64 * 1024;

/// [`read`], here or on the blocking pool by the body's size. `Err(Ok(_))`: a refusal still to be
/// recorded; `Err(Err(_))`: the answer.
async fn read_message(
    state: &std::sync::Arc<AppState>,
    body: Body,
    declared: SoapVersion,
    authorization: Option<&str>,
    peer: Option<std::net::IpAddr>,
) -> Result<Message, Result<Box<Unread>, Reply>> {
    if body.len() <= PARSE_HERE_BYTES {
        return read(state, body, declared, authorization, peer).map_err(Ok);
    }
    let (state, authorization) = (state.clone(), authorization.map(str::to_string));
    let read_there = move || read(&state, body, declared, authorization.as_deref(), peer);
    match on_blocking_pool(declared, read_there).await {
        Ok(read) => read.map_err(Ok),
        Err(reply) => Err(Err(reply)),
    }
}

/// A valid inventory update or shipment on its way to the group commit.
struct Storing {
    incoming: queue::Incoming,
    message_seq_id: i64,
    lines: usize,
}

impl Storing {
    /// The message to store, if it is one whose caller can be checked with it and whose fields
    /// are valid; anything else is [`handle`]d, which authenticates before it says what is wrong.
    fn of(
        state: &AppState,
        message: &Message,
        checked: Option<&Result<i64, AuthError>>,
    ) -> Option<Storing> {
        let lifetimes = auth::Lifetimes::of(&state.settings.soap);
        let sender = match (&message.caller, checked) {
            (Caller::Session(id), _) => queue::Sender::Session(id.clone(), lifetimes),
            (Caller::Bearer(token), _) => queue::Sender::Token(token.clone(), lifetimes),
            (Caller::Basic { user, .. }, Some(Ok(_))) => queue::Sender::User(user.clone()),
            _ => return None,
        };
        let (message_seq_id, lines, stored) = match read_call(state, &message.env.operation).ok()? {
            Call::InventoryUpdate(msg) => (
                msg.message_seq_id,
                msg.lines.len(),
                IncomingMessage::Inventory(msg),
            ),
            Call::ShipmentCreate(msg) => (
                msg.message_seq_id,
                msg.lines.len(),
                IncomingMessage::Shipment(msg),
            ),
            _ => return None,
        };
        let masked = soap::mask::apply(&message.body, &message.env.credentials).into_owned();
        Some(Storing {
            incoming: queue::Incoming::from(sender, masked, stored),
            message_seq_id,
            lines,
        })
    }

    /// Stores it and gives the answer; `None` when its caller was refused, which [`handle`]
    /// answers (and records).
    async fn run(self, state: &AppState, message: &Message) -> Option<Reply> {
        let stored = queue::receive(&state.receipts, self.incoming).await;
        if let Err(queue::ReceiveError::Refused(_)) = stored {
            return None;
        }
        let answering = Answering::of(&message.env, message.kind.queue_name());
        Some(answering.acknowledge(stored, self.message_seq_id, self.lines))
    }
}

/// Runs `f` on the blocking pool within the current tracing span; a panic becomes a Server fault.
async fn on_blocking_pool<T: Send + 'static>(
    version: SoapVersion,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Reply> {
    let span = tracing::Span::current();
    web::block(move || span.in_scope(f)).await.map_err(|e| {
        tracing::error!(error = %e, "SOAP handler did not finish");
        Reply::fault(
            version,
            &Fault::server(
                "wharf could not handle the message; nothing was stored. Send it again.",
            ),
        )
    })
}

/// A throttled password check: refused, telling the caller how long to wait. Not recorded as a
/// rejection (a guesser would fill the table) nor logged each time: the throttle logs once when a
/// wait begins.
fn throttled_reply(message: &Message, e: &AuthError) -> Reply {
    let code = match message.kind {
        OperationKind::AdminToken => soap::FaultCode::Client,
        _ => soap::FaultCode::Magento(2),
    };
    let fault = Fault {
        code,
        message: e.to_string(),
    };
    Reply {
        retry_after: match e {
            AuthError::Throttled {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        },
        operation: message.kind.queue_name(),
        received: Received::Throttled,
        ..Reply::fault(message.env.version, &fault)
    }
}

/// How the caller of an operation that needs one authenticates: the `sessionId` in the body
/// (Magento 1 login) when there is one, else the `Authorization` header — `Bearer` with a Magento 2
/// admin token, or `Basic` with an API user's name and password.
enum Caller {
    /// The operation needs no caller (login, endSession, admin token).
    NotNeeded,
    Session(String),
    Bearer(String),
    Basic {
        user: String,
        password: String,
    },
    /// Credentials that cannot be right (no header, unknown scheme, undecodable Basic).
    Refused(AuthError),
}

impl Caller {
    fn of(op: &envelope::Element, authorization: Option<&str>) -> Caller {
        if let Some(session) = messages::session_id(op) {
            return Caller::Session(session.to_string());
        }
        let Some((scheme, value)) = authorization.and_then(|h| h.trim().split_once(' ')) else {
            return Caller::Refused(AuthError::NoCredentials);
        };
        if scheme.eq_ignore_ascii_case("bearer") {
            Caller::Bearer(value.trim().to_string())
        } else if scheme.eq_ignore_ascii_case("basic") {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|decoded| {
                    let (user, password) = decoded.split_once(':')?;
                    Some(Caller::Basic {
                        user: user.to_string(),
                        password: password.to_string(),
                    })
                })
                .unwrap_or(Caller::Refused(AuthError::AccessDenied))
        } else {
            Caller::Refused(AuthError::AccessDenied)
        }
    }
}

/// A parsed SOAP call of a known operation, between the steps of [`respond`].
struct Message {
    /// Holds its share of the body budget until the call is handled.
    body: Body,
    env: envelope::Envelope,
    kind: OperationKind,
    /// Read already when the operation needs no caller; else read once the caller is known, so an
    /// unauthenticated caller learns nothing of how wharf validates.
    call: Option<Call>,
    caller: Caller,
    /// The TCP peer: refusals of unauthenticated callers are limited per client address.
    peer: Option<std::net::IpAddr>,
}

impl Message {
    /// The user name and password to check before the call is handled.
    fn password(&self) -> Option<(&str, &str)> {
        match (&self.call, &self.caller) {
            (Some(Call::Login { username, api_key }), _) => Some((username, api_key)),
            (Some(Call::AdminToken { username, password }), _) => Some((username, password)),
            (_, Caller::Basic { user, password }) => Some((user, password)),
            _ => None,
        }
    }
}

/// A call refused before its caller is known: its refusal is recorded on the blocking pool.
struct Unread {
    body: Body,
    peer: Option<std::net::IpAddr>,
    version: SoapVersion,
    kind: &'static str,
    operation: Option<&'static str>,
    fault: Fault,
}

impl Unread {
    /// Records the refusal (as far as the anonymous limits allow) and answers it.
    fn reject(self, state: &AppState, authorization: Option<&str>) -> Reply {
        let anonymous = Sender {
            peer: self.peer,
            caller: None,
            authenticated: false,
        };
        let refusal = Refusal::new(anonymous, self.kind, self.operation);
        reject(
            state,
            self.version,
            refusal,
            self.fault,
            &self.body,
            authorization,
        )
    }
}

/// Parses a call, refusing what is malformed or unknown. Uses no connection.
fn read(
    state: &AppState,
    body: Body,
    declared: SoapVersion,
    authorization: Option<&str>,
    peer: Option<std::net::IpAddr>,
) -> Result<Message, Box<Unread>> {
    let limits = Limits::for_lines(state.settings.soap.max_lines);
    let env = match envelope::parse(&body, limits) {
        Ok(env) => env,
        Err(e) => {
            let (kind, fault) = (e.kind(), Fault::client(e.to_string()));
            return Err(Box::new(Unread {
                body,
                peer,
                version: declared,
                kind,
                operation: None,
                fault,
            }));
        }
    };
    let version = env.version;
    let op = &env.operation;
    let Some(kind) = OperationKind::of(&op.name) else {
        let fault = Fault::client(format!(
            "unknown operation {:?}; wharf accepts login, endSession, \
             integrationAdminTokenServiceV1CreateAdminAccessToken, inventory updates \
             (orderflowInventoryMultiUpdate, realtimeDespatchOrderFlowInventoryRequestManagementV1Update, \
             inventoryUpdate) and shipments (orderflowShipmentCreate, \
             realtimeDespatchOrderFlowShipmentRequestManagementV1Create, shipmentCreate)",
            op.name
        ));
        return Err(Box::new(Unread {
            body,
            peer,
            version,
            kind: "unknown-operation",
            operation: None,
            fault,
        }));
    };
    let (call, caller) = if kind.needs_caller() {
        (None, Caller::of(op, authorization))
    } else {
        match read_call(state, op) {
            Ok(call) => (Some(call), Caller::NotNeeded),
            Err(e) => {
                return Err(Box::new(Unread {
                    body,
                    peer,
                    version,
                    kind: "invalid-field",
                    operation: Some(kind.queue_name()),
                    fault: Fault::client(format!("Invalid {e}")),
                }));
            }
        }
    };
    Ok(Message {
        body,
        env,
        kind,
        call,
        caller,
        peer,
    })
}

/// Reads the operation's fields under the configured limits.
fn read_call(state: &AppState, op: &envelope::Element) -> Result<Call, messages::FieldError> {
    let soap = &state.settings.soap;
    messages::read(op, soap.max_lines, soap.max_tracking_numbers)
}

/// Authenticates, validates and stores one SOAP call. `checked` is the outcome of the password
/// check [`Message::password`] asked for: the user's id.
fn handle(state: &AppState, message: Message, checked: Option<Result<i64, AuthError>>) -> Reply {
    let Message {
        body,
        env,
        kind,
        call,
        caller,
        peer,
    } = message;
    let mut conn = match state.pool.get() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no database connection for a SOAP call");
            return unavailable(env.version);
        }
    };
    let mut call_in = Handling {
        state,
        conn: &mut conn,
        env: &env,
        body: &body[..],
        peer,
        op_name: kind.queue_name(),
        checked,
    };
    let caller = if kind.needs_caller() {
        match call_in.authenticate(caller) {
            Ok(user) => Some(user),
            Err(refused) => return refused,
        }
    } else {
        None
    };
    let call = match call.map_or_else(|| read_call(state, &env.operation), Ok) {
        Ok(call) => call,
        Err(e) => return call_in.refuse_invalid(caller.as_deref(), &e),
    };
    match call {
        Call::Login { username, .. } => call_in.login(&username),
        Call::EndSession { session_id } => call_in.end_session(&session_id),
        Call::AdminToken { username, .. } => call_in.admin_token(&username),
        Call::InventoryUpdate(msg) => {
            let (seq, lines) = (msg.message_seq_id, msg.lines.len());
            call_in.store(caller, seq, lines, IncomingMessage::Inventory(msg))
        }
        Call::ShipmentCreate(msg) => {
            let (seq, lines) = (msg.message_seq_id, msg.lines.len());
            call_in.store(caller, seq, lines, IncomingMessage::Shipment(msg))
        }
    }
}

/// One SOAP call being handled, with what each stage of [`handle`] needs to answer or refuse it.
struct Handling<'a> {
    state: &'a AppState,
    conn: &'a mut crate::db::DbConnection,
    env: &'a envelope::Envelope,
    body: &'a [u8],
    /// The TCP peer, for refusals.
    peer: Option<std::net::IpAddr>,
    /// The operation as the queue and the refusals name it.
    op_name: &'static str,
    /// The password check's outcome, taken by the one stage that needs it.
    checked: Option<Result<i64, AuthError>>,
}

impl<'a> Handling<'a> {
    /// The password check's outcome. Unchecked means refused: only an operation that carries a
    /// password gets it checked.
    fn take_checked(&mut self) -> Result<i64, AuthError> {
        self.checked.take().unwrap_or(Err(AuthError::AccessDenied))
    }

    /// The sender of a refusal: `caller` when known, authenticated or only claimed.
    fn sender<'b>(&self, caller: Option<&'b str>, authenticated: bool) -> Sender<'b> {
        Sender {
            peer: self.peer,
            caller,
            authenticated,
        }
    }

    /// Records the refusal (as far as its sender's limits allow) and answers with `fault`.
    fn refuse(&mut self, refusal: Refusal<'_>, fault: Fault) -> Reply {
        reject_with(
            self.state,
            self.conn,
            self.env.version,
            refusal,
            fault,
            self.body,
        )
    }

    /// What is hashed and stored: the body with its credentials masked (rejections mask their
    /// excerpt themselves, since theirs need not be well-formed).
    fn masked(&self) -> std::borrow::Cow<'a, [u8]> {
        soap::mask::apply(self.body, &self.env.credentials)
    }

    /// Stores a valid message of an authenticated caller (with whatever arrives meanwhile:
    /// [`queue::receive`]) and answers once it committed.
    fn store(
        &mut self,
        caller: Option<String>,
        seq: i64,
        lines: usize,
        message: IncomingMessage,
    ) -> Reply {
        let caller = caller.unwrap_or_default();
        let incoming = queue::Incoming::new(&caller, self.masked().into_owned(), message);
        let stored = queue::receive_blocking(&self.state.receipts, incoming);
        self.answering().acknowledge(stored, seq, lines)
    }

    fn answering(&self) -> Answering<'a> {
        Answering::of(self.env, self.op_name)
    }

    /// The answer carrying `value` as the response part `part` of XSD type `xsd_type`.
    fn answer(&self, value: &str, part: &str, xsd_type: &str) -> Reply {
        self.answering().answer(value, part, xsd_type)
    }

    /// The name of the answer part ([`Answering::part`]).
    fn part<'p>(&self, rpc_name: &'p str) -> &'p str {
        self.answering().part(rpc_name)
    }

    /// The authenticated caller of an operation that needs one, or the refusal.
    fn authenticate(&mut self, caller: Caller) -> Result<String, Reply> {
        let checked = self.take_checked();
        let e = match authenticate(self.state, self.conn, caller, checked) {
            Ok(user) => return Ok(user),
            Err(e @ (AuthError::Db(_) | AuthError::Unavailable(_) | AuthError::Hash(_))) => {
                return Err(server_error(self.env.version, &e));
            }
            Err(e) => e,
        };
        let fault = match e {
            AuthError::SessionExpired => Fault::session_expired(),
            // Magento 1 clients always send a sessionId; an empty one means "log in again".
            AuthError::NoCredentials if self.env.operation.name.starts_with("orderflow") => {
                Fault::session_expired()
            }
            AuthError::AccessDenied => Fault::access_denied(),
            other => Fault {
                code: soap::FaultCode::Magento(2),
                message: other.to_string(),
            },
        };
        let refusal = Refusal::new(
            self.sender(None, false),
            "unauthenticated",
            Some(self.op_name),
        );
        Err(self.refuse(refusal, fault))
    }

    /// Refuses a call whose fields are invalid.
    fn refuse_invalid(&mut self, caller: Option<&str>, e: &messages::FieldError) -> Reply {
        let sender = self.sender(caller, caller.is_some());
        let refusal = Refusal::new(sender, "invalid-field", Some(self.op_name));
        self.refuse(refusal, Fault::client(format!("Invalid {e}")))
    }

    /// Refuses a login or token request; whoever logs in is not authenticated until it succeeds.
    fn refuse_claimed(&mut self, username: &str, kind: &'static str, fault: Fault) -> Reply {
        let refusal = Refusal::new(self.sender(Some(username), false), kind, Some(self.op_name));
        self.refuse(refusal, fault)
    }

    /// `login`: a new session for a user whose password was checked.
    fn login(&mut self, username: &str) -> Reply {
        let lifetimes = auth::Lifetimes::of(&self.state.settings.soap);
        let opened = self
            .take_checked()
            .and_then(|user_id| auth::open_session(self.conn, user_id, lifetimes));
        match opened {
            Ok(session) => self.answer(&session, self.part("loginReturn"), "string"),
            Err(AuthError::AccessDenied) => {
                // Escaped: a name is the caller's text, and may hold line breaks, terminal escapes
                // or invisible characters meant to forge log lines.
                tracing::warn!(user = ?Escaped(username), "SOAP login refused");
                self.refuse_claimed(username, "login-refused", Fault::access_denied())
            }
            Err(e) => server_error(self.env.version, &e),
        }
    }

    /// `endSession`.
    fn end_session(&mut self, session_id: &str) -> Reply {
        match auth::end_session(self.conn, session_id) {
            Ok(()) => self.answer("true", self.part("endSessionReturn"), "boolean"),
            Err(e) => server_error(self.env.version, &e),
        }
    }

    /// Magento 2's admin token request: a bearer token for a user whose password was checked.
    fn admin_token(&mut self, username: &str) -> Reply {
        let settings = &self.state.settings.soap;
        let lifetime = TimeDelta::seconds(settings.token_lifetime_secs as i64);
        let lifetimes = auth::Lifetimes::of(settings);
        let issued = self
            .take_checked()
            .and_then(|user_id| auth::issue_access_token(self.conn, user_id, lifetime, lifetimes));
        match issued {
            Ok((token, expires)) => Reply {
                token_expires: Some(expires.and_utc().to_rfc3339()),
                ..self.answer(&token, "result", "string")
            },
            Err(AuthError::AccessDenied) => {
                tracing::warn!(user = ?Escaped(username), "admin token refused");
                let fault = Fault {
                    code: soap::FaultCode::Client,
                    message: "The account sign-in was incorrect or your account is disabled \
                              temporarily. Please wait and try again later."
                        .into(),
                };
                self.refuse_claimed(username, "token-refused", fault)
            }
            Err(e) => server_error(self.env.version, &e),
        }
    }
}

/// What an answer to a call is made of: its envelope and the operation's name.
#[derive(Clone, Copy)]
struct Answering<'a> {
    env: &'a envelope::Envelope,
    /// The operation as the queue and the refusals name it.
    op_name: &'static str,
}

impl<'a> Answering<'a> {
    fn of(env: &'a envelope::Envelope, op_name: &'static str) -> Answering<'a> {
        Answering { env, op_name }
    }

    /// The answer carrying `value` as the response part `part` of XSD type `xsd_type`.
    fn answer(&self, value: &str, part: &str, xsd_type: &str) -> Reply {
        let version = self.env.version;
        Reply {
            status: StatusCode::OK,
            version,
            xml: soap::response_xml(
                version,
                &self.env.operation_ns,
                &soap::response_element(&self.env.operation.name),
                part,
                xsd_type,
                value,
            ),
            token_expires: None,
            retry_after: None,
            operation: self.op_name,
            received: Received::Accepted,
        }
    }

    /// The name of the answer part: Magento 1 rpc/encoded names it `<op>Return`; WS-I, Magento 2
    /// and wharf's own WSDL use `result`.
    fn part<'p>(&self, rpc_name: &'p str) -> &'p str {
        let op = &self.env.operation.name;
        if !op.ends_with("Param") && self.env.operation_ns != soap::WHARF_NS {
            rpc_name
        } else {
            "result"
        }
    }

    /// Answers a stored (or repeated) inventory update or shipment.
    fn acknowledge(&self, stored: queue::Received, message_seq_id: i64, lines: usize) -> Reply {
        let received = match &stored {
            Ok((Receipt::Queued(_), _)) => Received::Accepted,
            Ok((Receipt::Repeat(_), _)) => Received::Repeat,
            Ok((Receipt::Conflict(_), _)) => Received::Conflict,
            Err(_) => Received::Failed,
        };
        let reply = match stored {
            Ok((receipt, caller)) => {
                log_receipt(receipt, self.op_name, message_seq_id, lines, &caller);
                let text = soap::received_text(message_seq_id);
                self.answer(&text, "result", "string")
            }
            Err(queue::ReceiveError::Unavailable(_)) => unavailable(self.env.version),
            Err(e) => server_error(self.env.version, &e),
        };
        Reply {
            operation: self.op_name,
            received,
            ..reply
        }
    }
}

/// Logs how a message was stored.
fn log_receipt(receipt: Receipt, operation: &str, message_seq_id: i64, lines: usize, caller: &str) {
    match receipt {
        Receipt::Queued(id) => tracing::info!(
            request = id,
            operation,
            message_seq_id,
            lines,
            caller = %Escaped(caller),
            "message queued"
        ),
        Receipt::Repeat(id) => tracing::info!(
            request = id,
            operation,
            message_seq_id,
            "identical re-send acknowledged, not queued again"
        ),
        Receipt::Conflict(id) => tracing::warn!(
            request = id,
            operation,
            message_seq_id,
            "messageSeqId reused with a different body; queued and flagged as a conflict"
        ),
    }
}

/// The fault when no database connection could be had.
fn unavailable(version: SoapVersion) -> Reply {
    Reply::fault(
        version,
        &Fault::server(
            "wharf's database is unavailable; nothing was stored. Send the message again later.",
        ),
    )
}

/// Who is calling. HTTP Basic passwords were checked before (`checked`, in [`respond`]); sessions
/// and admin tokens are looked up by their hash.
fn authenticate(
    state: &AppState,
    conn: &mut crate::db::DbConnection,
    caller: Caller,
    checked: Result<i64, AuthError>,
) -> Result<String, AuthError> {
    let lifetimes = auth::Lifetimes::of(&state.settings.soap);
    match caller {
        Caller::Session(session) => auth::check_session(conn, &session, lifetimes),
        Caller::Bearer(token) => auth::check_access_token(conn, &token, lifetimes),
        Caller::Basic { user, .. } => checked.map(|_| user),
        Caller::Refused(e) => Err(e),
        Caller::NotNeeded => Err(AuthError::NoCredentials),
    }
}

fn server_error(version: SoapVersion, e: &dyn std::fmt::Display) -> Reply {
    tracing::error!(error = %e, "storing a SOAP call failed");
    Reply::fault(
        version,
        &Fault::server(
            "wharf could not store the message because of a database error; nothing was stored. Send it again.",
        ),
    )
}
