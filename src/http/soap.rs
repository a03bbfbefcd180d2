//! SOAP endpoints: `POST /soap` and the Magento 1 aliases, and the WSDLs.
//!
//! Each call is handled on the blocking pool (XML parsing, argon2 and diesel all block): parse,
//! authenticate, validate, store in one transaction, and only then answer.

use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::TimeDelta;

use super::AppState;
use crate::auth::{self, AuthError};
use crate::queue::{self, Receipt};
use crate::soap::messages::{self, Call, OperationKind};
use crate::soap::{self, Fault, Limits, SoapVersion, envelope};
use crate::telemetry::Escaped;

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
}

impl Reply {
    fn fault(version: SoapVersion, fault: &Fault) -> Reply {
        Reply {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            version,
            xml: fault.to_xml(version),
            token_expires: None,
        }
    }
}

async fn soap_post(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    // The content type tells the version before the body is parsed, for faults about the body itself.
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
    // The TCP peer, not a header it could forge: refusals of unauthenticated callers are limited per
    // client address.
    let peer = req.peer_addr().map(|a| a.ip());
    let span = tracing::Span::current();
    let state = state.into_inner();
    let reply = web::block(move || {
        span.in_scope(|| handle(&state, &body, declared, authorization.as_deref(), peer))
    })
    .await;
    let reply = reply.unwrap_or_else(|e| {
        tracing::error!(error = %e, "SOAP handler did not finish");
        Reply::fault(
            declared,
            &Fault::server(
                "wharf could not handle the message; nothing was stored. Send it again.",
            ),
        )
    });
    let content_type = match reply.version {
        SoapVersion::V11 => "text/xml; charset=utf-8",
        SoapVersion::V12 => "application/soap+xml; charset=utf-8",
    };
    let mut resp = HttpResponse::build(reply.status);
    resp.content_type(content_type);
    if let Some(expires) = reply.token_expires {
        resp.insert_header(("X-Wharf-Token-Expires", expires));
    }
    resp.body(reply.xml)
}

/// Parses, authenticates, validates and stores one SOAP call.
fn handle(
    state: &AppState,
    body: &[u8],
    declared: SoapVersion,
    authorization: Option<&str>,
    peer: Option<std::net::IpAddr>,
) -> Reply {
    let anonymous = Sender {
        peer,
        caller: None,
        authenticated: false,
    };
    let limits = Limits::for_lines(state.settings.soap.max_lines);
    let env = match envelope::parse(body, limits) {
        Ok(env) => env,
        Err(e) => {
            let fault = Fault::client(e.to_string());
            let kind = e.kind();
            return reject(
                state,
                declared,
                anonymous,
                kind,
                None,
                fault,
                body,
                authorization,
            );
        }
    };
    let version = env.version;
    let op = &env.operation;
    // What is hashed and stored: the body with its credentials masked (rejections mask their
    // excerpt themselves, since theirs need not be well-formed).
    let masked = soap::mask::apply(body, &env.credentials);
    let Some(kind) = OperationKind::of(&op.name) else {
        let fault = Fault::client(format!(
            "unknown operation {:?}; wharf accepts login, endSession, \
             integrationAdminTokenServiceV1CreateAdminAccessToken, inventory updates \
             (orderflowInventoryMultiUpdate, realtimeDespatchOrderFlowInventoryRequestManagementV1Update, \
             inventoryUpdate) and shipments (orderflowShipmentCreate, \
             realtimeDespatchOrderFlowShipmentRequestManagementV1Create, shipmentCreate)",
            op.name
        ));
        return reject(
            state,
            version,
            anonymous,
            "unknown-operation",
            None,
            fault,
            body,
            authorization,
        );
    };
    let mut conn = match state.pool.get() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no database connection for a SOAP call");
            return Reply::fault(
                version,
                &Fault::server(
                    "wharf's database is unavailable; nothing was stored. Send the message again later.",
                ),
            );
        }
    };
    let answer = |value: &str, part: &str, xsd_type: &str| Reply {
        status: StatusCode::OK,
        version,
        xml: soap::response_xml(
            version,
            &env.operation_ns,
            &soap::response_element(&op.name),
            part,
            xsd_type,
            value,
        ),
        token_expires: None,
    };
    // Magento 1 rpc/encoded names its answer parts `<op>Return`; WS-I, Magento 2 and wharf's own WSDL
    // use `result`.
    let rpc = !op.name.ends_with("Param") && env.operation_ns != soap::WHARF_NS;
    let op_name = kind.queue_name();
    let invalid = |e: messages::FieldError| Fault::client(format!("Invalid {e}"));

    let caller = if kind.needs_caller() {
        match authenticate(state, &mut conn, op, authorization) {
            Ok(user) => Some(user),
            Err(AuthError::Db(e)) => return server_error(version, &e),
            Err(e) => {
                let fault = match e {
                    AuthError::SessionExpired => Fault::session_expired(),
                    // Magento 1 clients always send a sessionId; an empty one means "log in again".
                    AuthError::NoCredentials if op.name.starts_with("orderflow") => {
                        Fault::session_expired()
                    }
                    AuthError::AccessDenied => Fault::access_denied(),
                    other => Fault {
                        code: soap::FaultCode::Magento(2),
                        message: other.to_string(),
                    },
                };
                return reject_with(
                    state,
                    &mut conn,
                    version,
                    anonymous,
                    "unauthenticated",
                    Some(op_name),
                    fault,
                    body,
                );
            }
        }
    } else {
        None
    };
    let soap_settings = &state.settings.soap;
    let call = match messages::read(
        op,
        soap_settings.max_lines,
        soap_settings.max_tracking_numbers,
    ) {
        Ok(call) => call,
        Err(e) => {
            let sender = Sender {
                caller: caller.as_deref(),
                authenticated: caller.is_some(),
                ..anonymous
            };
            return reject_with(
                state,
                &mut conn,
                version,
                sender,
                "invalid-field",
                Some(op_name),
                invalid(e),
                body,
            );
        }
    };
    // Whoever logs in is not authenticated until the login succeeds.
    let claiming = |username| Sender {
        caller: Some(username),
        ..anonymous
    };

    match call {
        Call::Login { username, api_key } => match auth::login(
            &mut conn,
            &username,
            &api_key,
            auth::Lifetimes::of(&state.settings.soap),
        ) {
            Ok(session) => answer(
                &session,
                if rpc { "loginReturn" } else { "result" },
                "string",
            ),
            Err(AuthError::AccessDenied) => {
                tracing::warn!(user = %username, "SOAP login refused");
                let fault = Fault::access_denied();
                reject_with(
                    state,
                    &mut conn,
                    version,
                    claiming(&username),
                    "login-refused",
                    Some(op_name),
                    fault,
                    body,
                )
            }
            Err(e) => server_error(version, &e),
        },
        Call::EndSession { session_id } => match auth::end_session(&mut conn, &session_id) {
            Ok(()) => answer(
                "true",
                if rpc { "endSessionReturn" } else { "result" },
                "boolean",
            ),
            Err(e) => server_error(version, &e),
        },
        Call::AdminToken { username, password } => {
            let lifetime = TimeDelta::seconds(state.settings.soap.token_lifetime_secs as i64);
            let lifetimes = auth::Lifetimes::of(&state.settings.soap);
            match auth::create_access_token(&mut conn, &username, &password, lifetime, lifetimes) {
                Ok((token, expires)) => Reply {
                    token_expires: Some(expires.and_utc().to_rfc3339()),
                    ..answer(&token, "result", "string")
                },
                Err(AuthError::AccessDenied) => {
                    tracing::warn!(user = %username, "admin token refused");
                    let fault = Fault {
                        code: soap::FaultCode::Client,
                        message: "The account sign-in was incorrect or your account is disabled \
                                  temporarily. Please wait and try again later."
                            .into(),
                    };
                    reject_with(
                        state,
                        &mut conn,
                        version,
                        claiming(&username),
                        "token-refused",
                        Some(op_name),
                        fault,
                        body,
                    )
                }
                Err(e) => server_error(version, &e),
            }
        }
        Call::InventoryUpdate(msg) => {
            let caller = caller.as_deref().unwrap_or_default();
            let stored = queue::receive_inventory(&mut conn, caller, &masked, &msg);
            acknowledge(stored, op_name, msg.message_seq_id, msg.lines.len(), caller)
                .map(|text| answer(&text, "result", "string"))
                .unwrap_or_else(|e| server_error(version, &e))
        }
        Call::ShipmentCreate(msg) => {
            let caller = caller.as_deref().unwrap_or_default();
            let stored = queue::receive_shipment(&mut conn, caller, &masked, &msg);
            acknowledge(stored, op_name, msg.message_seq_id, msg.lines.len(), caller)
                .map(|text| answer(&text, "result", "string"))
                .unwrap_or_else(|e| server_error(version, &e))
        }
    }
}

/// Logs how a message was stored and gives the acknowledgement text.
fn acknowledge(
    stored: diesel::QueryResult<Receipt>,
    operation: &str,
    message_seq_id: i64,
    lines: usize,
    caller: &str,
) -> diesel::QueryResult<String> {
    match stored? {
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
    Ok(soap::received_text(message_seq_id))
}

/// Who is calling: the `sessionId` in the body (Magento 1 login) when there is one, else the
/// `Authorization` header — `Bearer` with a Magento 2 admin token, or `Basic` with an API user's
/// name and password.
fn authenticate(
    state: &AppState,
    conn: &mut crate::db::DbConnection,
    op: &envelope::Element,
    authorization: Option<&str>,
) -> Result<String, AuthError> {
    let lifetimes = auth::Lifetimes::of(&state.settings.soap);
    if let Some(session) = messages::session_id(op) {
        return auth::check_session(conn, session, lifetimes);
    }
    let Some((scheme, value)) = authorization.and_then(|h| h.trim().split_once(' ')) else {
        return Err(AuthError::NoCredentials);
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        auth::check_access_token(conn, value.trim(), lifetimes)
    } else if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or(AuthError::AccessDenied)?;
        let (user, password) = decoded.split_once(':').ok_or(AuthError::AccessDenied)?;
        state.credentials.verify(conn, user, password)
    } else {
        Err(AuthError::AccessDenied)
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

/// Who sent a refused message.
#[derive(Clone, Copy, Debug)]
struct Sender<'a> {
    /// The TCP peer's address.
    peer: Option<std::net::IpAddr>,
    /// The authenticated caller, or the user name a refused login claimed.
    caller: Option<&'a str>,
    /// Whether `caller` is authenticated: only then is the refusal always stored, with the large
    /// excerpt.
    authenticated: bool,
}

/// How much of a refused body to store, or `None` when the refusal is only counted: an
/// authenticated caller's refusals are all stored (64 KiB); others' are limited per `kind` and
/// client address and keep `soap.anonymous_excerpt_bytes`.
fn excerpt_bytes(state: &AppState, sender: Sender<'_>, kind: &'static str) -> Option<usize> {
    if sender.authenticated {
        return Some(queue::EXCERPT_BYTES);
    }
    match state.refusals.admit(kind, sender.peer) {
        queue::refusals::Verdict::Store => Some(state.settings.soap.anonymous_excerpt_bytes),
        queue::refusals::Verdict::Count => None,
    }
}

/// Answers with `fault` and records the refusal (taking a connection for it when it is stored).
///
/// These refusals come before the caller is known (the body is not a usable envelope, or names no
/// known operation). When the message carries a credential — a `sessionId` element the lossy scan
/// finds, or a Bearer token — it is looked up (one indexed read), so the warehouse's own broken
/// messages are stored like its other refusals.
#[allow(clippy::too_many_arguments)]
fn reject(
    state: &AppState,
    version: SoapVersion,
    sender: Sender<'_>,
    kind: &'static str,
    operation: Option<&str>,
    fault: Fault,
    body: &[u8],
    authorization: Option<&str>,
) -> Reply {
    let sessions = soap::mask::find_lossy(body);
    let bearer = authorization
        .and_then(|h| h.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let mut conn = None;
    let mut identified = None;
    if !sessions.is_empty() || bearer.is_some() {
        match state.pool.get() {
            Ok(mut c) => {
                identified = identify(state, &mut c, body, &sessions, bearer);
                conn = Some(c);
            }
            Err(e) => {
                tracing::error!(error = %e, "no database connection to look up a refused message's sender")
            }
        }
    }
    let sender = match identified.as_deref() {
        Some(caller) => Sender {
            caller: Some(caller),
            authenticated: true,
            ..sender
        },
        None => sender,
    };
    let Some(excerpt) = excerpt_bytes(state, sender, kind) else {
        return counted(version, sender, kind, fault);
    };
    let conn = match conn {
        Some(c) => Ok(c),
        None => state.pool.get(),
    };
    match conn {
        Ok(mut conn) => record(&mut conn, version, sender, operation, fault, body, excerpt),
        Err(e) => {
            tracing::error!(error = %e, reason = %Escaped(&fault.message), "could not record a rejected SOAP message");
            Reply::fault(version, &fault)
        }
    }
}

/// The API user a refused message's credential belongs to, if it is a live one: the first two
/// credential elements of a plausible length are tried as session ids, then the Bearer token.
fn identify(
    state: &AppState,
    conn: &mut crate::db::DbConnection,
    body: &[u8],
    spans: &[std::ops::Range<usize>],
    bearer: Option<&str>,
) -> Option<String> {
    let lifetimes = auth::Lifetimes::of(&state.settings.soap);
    let sessions = spans
        .iter()
        .filter_map(|span| std::str::from_utf8(body.get(span.clone())?).ok())
        .map(str::trim)
        .filter(|s| (8..=256).contains(&s.len()))
        .take(2);
    for session in sessions {
        if let Ok(user) = auth::check_session(conn, session, lifetimes) {
            return Some(user);
        }
    }
    bearer
        .filter(|t| !t.is_empty() && t.len() <= 512)
        .and_then(|t| auth::check_access_token(conn, t, lifetimes).ok())
}

/// Answers with `fault` and records the refusal.
#[allow(clippy::too_many_arguments)]
fn reject_with(
    state: &AppState,
    conn: &mut crate::db::DbConnection,
    version: SoapVersion,
    sender: Sender<'_>,
    kind: &'static str,
    operation: Option<&str>,
    fault: Fault,
    body: &[u8],
) -> Reply {
    match excerpt_bytes(state, sender, kind) {
        Some(excerpt) => record(conn, version, sender, operation, fault, body, excerpt),
        None => counted(version, sender, kind, fault),
    }
}

/// A refusal over the limit: answered, counted, logged only at debug level (a flood must not fill
/// the log either).
fn counted(version: SoapVersion, sender: Sender<'_>, kind: &str, fault: Fault) -> Reply {
    tracing::debug!(client = ?sender.peer, kind, reason = %Escaped(&fault.message),
        "SOAP message rejected (counted, not stored)");
    Reply::fault(version, &fault)
}

fn record(
    conn: &mut crate::db::DbConnection,
    version: SoapVersion,
    sender: Sender<'_>,
    operation: Option<&str>,
    fault: Fault,
    body: &[u8],
    excerpt: usize,
) -> Reply {
    let caller = sender.caller;
    tracing::warn!(caller = %Escaped(caller.unwrap_or("-")),
        operation = %Escaped(operation.unwrap_or("-")), client = ?sender.peer,
        reason = %Escaped(&fault.message), "SOAP message rejected");
    if let Err(e) = queue::record_rejection(conn, caller, operation, &fault.message, body, excerpt)
    {
        tracing::error!(error = %e, "could not record a rejected SOAP message");
    }
    Reply::fault(version, &fault)
}
