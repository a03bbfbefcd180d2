//! SOAP endpoints: `POST /soap` and the Magento 1 aliases, and the WSDLs.
//!
//! Each call is handled on the blocking pool (XML parsing, argon2 and diesel all block): parse,
//! authenticate, validate, store in one transaction, and only then answer.

use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::TimeDelta;

use super::AppState;
use super::body::{self, BodyError, BodyGate, BodyRefusal};
use crate::auth::{self, AuthError};
use crate::queue::{self, Receipt};
use crate::soap::messages::{self, Call, OperationKind};
use crate::soap::{self, Fault, Limits, SoapVersion, envelope};

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

async fn soap_post(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    gate: web::Data<BodyGate>,
) -> HttpResponse {
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
    let span = tracing::Span::current();
    let state = state.into_inner();
    let max_body = state.settings.soap.max_body;
    let body = match body::read(&req, payload.into_inner(), gate.clone(), max_body).await {
        Ok(body) => body,
        Err(refused) => return body_refused(state, declared, refused, span).await,
    };
    let reply = web::block(move || {
        span.in_scope(|| handle(&state, &body, declared, authorization.as_deref()))
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
    resp.body(reply.xml)
}

/// Answers a body that was not read whole with a SOAP fault in the version the content type
/// declares: a Client fault for one over `soap.max_body` (recorded as a rejection with its first
/// 64 KiB, like any refused message), a Server fault for the rest (slow or stalled bodies, the
/// budget spent: not recorded, or a flood of them would fill the database). The connection closes.
async fn body_refused(
    state: std::sync::Arc<AppState>,
    version: SoapVersion,
    refused: BodyRefusal,
    span: tracing::Span,
) -> HttpResponse {
    let e = &refused.error;
    let status = e.status();
    let mut reply = match e {
        BodyError::TooLarge { excerpt, .. } => {
            let fault = Fault::client(format!("Invalid message: {e}"));
            let excerpt = excerpt.clone();
            web::block(move || {
                span.in_scope(|| reject(&state, version, None, None, fault, &excerpt))
            })
            .await
            .unwrap_or_else(|_| Reply::fault(version, &Fault::client(e.to_string())))
        }
        BodyError::Broken(_) => Reply::fault(version, &Fault::client(e.to_string())),
        _ => Reply::fault(version, &Fault::server(e.to_string())),
    };
    reply.status = status;
    let mut resp = HttpResponse::build(reply.status)
        .content_type(content_type(reply.version))
        .body(refused.answer_body(reply.xml));
    e.apply_headers(&mut resp);
    resp
}

/// Parses, authenticates, validates and stores one SOAP call.
fn handle(
    state: &AppState,
    body: &[u8],
    declared: SoapVersion,
    authorization: Option<&str>,
) -> Reply {
    let limits = Limits::for_lines(state.settings.soap.max_lines);
    let env = match envelope::parse(body, limits) {
        Ok(env) => env,
        Err(e) => {
            return reject(
                state,
                declared,
                None,
                None,
                Fault::client(e.to_string()),
                body,
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
        return reject(state, version, None, None, fault, body);
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
                return reject_with(&mut conn, version, None, Some(op_name), fault, body);
            }
        }
    } else {
        None
    };
    let call = match messages::read(op, state.settings.soap.max_lines) {
        Ok(call) => call,
        Err(e) => {
            return reject_with(
                &mut conn,
                version,
                caller.as_deref(),
                Some(op_name),
                invalid(e),
                body,
            );
        }
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
                    &mut conn,
                    version,
                    Some(&username),
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
                        &mut conn,
                        version,
                        Some(&username),
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
            caller,
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

/// Answers with `fault` and records the refusal (taking a connection for it).
fn reject(
    state: &AppState,
    version: SoapVersion,
    caller: Option<&str>,
    operation: Option<&str>,
    fault: Fault,
    body: &[u8],
) -> Reply {
    match state.pool.get() {
        Ok(mut conn) => reject_with(&mut conn, version, caller, operation, fault, body),
        Err(e) => {
            tracing::error!(error = %e, reason = %fault.message, "could not record a rejected SOAP message");
            Reply::fault(version, &fault)
        }
    }
}

/// Answers with `fault` and records the refusal.
fn reject_with(
    conn: &mut crate::db::DbConnection,
    version: SoapVersion,
    caller: Option<&str>,
    operation: Option<&str>,
    fault: Fault,
    body: &[u8],
) -> Reply {
    tracing::warn!(caller = caller.unwrap_or("-"), operation = operation.unwrap_or("-"),
        reason = %fault.message, "SOAP message rejected");
    if let Err(e) = queue::record_rejection(conn, caller, operation, &fault.message, body) {
        tracing::error!(error = %e, "could not record a rejected SOAP message");
    }
    Reply::fault(version, &fault)
}
