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

/// The Magento 1 rpc/encoded WSDL; `{{SOAP_URL}}` is replaced by the endpoint's public URL.
const MAGENTO1_WSDL: &str = include_str!("../../wsdl/magento1.wsdl");

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
    let address = format!("{}{}", state.public_url, req.path());
    HttpResponse::Ok()
        .content_type("text/xml; charset=utf-8")
        .body(MAGENTO1_WSDL.replace("{{SOAP_URL}}", &quick_xml::escape::escape(address.as_str())))
}

/// An answer ready to send.
struct Reply {
    status: StatusCode,
    version: SoapVersion,
    xml: String,
}

impl Reply {
    fn fault(version: SoapVersion, fault: &Fault) -> Reply {
        Reply {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            version,
            xml: fault.to_xml(version),
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
    let span = tracing::Span::current();
    let state = state.into_inner();
    let reply = web::block(move || span.in_scope(|| handle(&state, &body, declared))).await;
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
    HttpResponse::build(reply.status)
        .content_type(content_type)
        .body(reply.xml)
}

/// Parses, authenticates, validates and stores one SOAP call.
fn handle(state: &AppState, body: &[u8], declared: SoapVersion) -> Reply {
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
    let Some(kind) = OperationKind::of(&op.name) else {
        let fault = Fault::client(format!(
            "unknown operation {:?}; wharf accepts login, endSession and orderflowInventoryMultiUpdate",
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
    };
    // WS-I wrappers name every answer part `result`; rpc/encoded Magento uses `<op>Return`.
    let wsi = op.name.ends_with("Param");

    match kind {
        OperationKind::Login => {
            let (username, api_key) = match messages::read(op, state.settings.soap.max_lines) {
                Ok(Call::Login { username, api_key }) => (username, api_key),
                Ok(_) => unreachable!("login element read as another call"),
                Err(e) => {
                    let fault = Fault::client(format!("Invalid {e}"));
                    return reject(state, version, None, Some("login"), fault, body);
                }
            };
            match auth::login(&mut conn, &username, &api_key) {
                Ok(session) => answer(
                    &session,
                    if wsi { "result" } else { "loginReturn" },
                    "string",
                ),
                Err(AuthError::AccessDenied) => {
                    tracing::warn!(user = %username, "SOAP login refused");
                    reject_with(
                        &mut conn,
                        version,
                        Some(&username),
                        Some("login"),
                        Fault::access_denied(),
                        body,
                    )
                }
                Err(e) => server_error(version, &e),
            }
        }
        OperationKind::EndSession => match messages::session_id(op) {
            Some(session) => match auth::end_session(&mut conn, session) {
                Ok(()) => answer(
                    "true",
                    if wsi { "result" } else { "endSessionReturn" },
                    "boolean",
                ),
                Err(e) => server_error(version, &e),
            },
            None => reject_with(
                &mut conn,
                version,
                None,
                Some("endSession"),
                Fault::client("Invalid sessionId: is missing"),
                body,
            ),
        },
        OperationKind::InventoryUpdate => {
            let op_name = kind.queue_name();
            let idle = TimeDelta::seconds(state.settings.soap.session_idle_timeout_secs as i64);
            let caller =
                match messages::session_id(op).map(|s| auth::check_session(&mut conn, s, idle)) {
                    Some(Ok(user)) => user,
                    Some(Err(AuthError::Db(e))) => return server_error(version, &e),
                    Some(Err(_)) | None => {
                        return reject_with(
                            &mut conn,
                            version,
                            None,
                            Some(op_name),
                            Fault::session_expired(),
                            body,
                        );
                    }
                };
            let msg = match messages::read(op, state.settings.soap.max_lines) {
                Ok(Call::InventoryUpdate(msg)) => msg,
                Ok(_) => unreachable!("inventory element read as another call"),
                Err(e) => {
                    let fault = Fault::client(format!("Invalid {e}"));
                    return reject_with(
                        &mut conn,
                        version,
                        Some(&caller),
                        Some(op_name),
                        fault,
                        body,
                    );
                }
            };
            match queue::receive_inventory(&mut conn, &caller, body, &msg) {
                Ok(receipt) => {
                    match receipt {
                        Receipt::Queued(id) => {
                            tracing::info!(request = id, message_seq_id = msg.message_seq_id,
                            lines = msg.lines.len(), caller = %caller, "inventory update queued")
                        }
                        Receipt::Repeat(id) => tracing::info!(
                            request = id,
                            message_seq_id = msg.message_seq_id,
                            "identical re-send acknowledged, not queued again"
                        ),
                        Receipt::Conflict(id) => tracing::warn!(
                            request = id,
                            message_seq_id = msg.message_seq_id,
                            "messageSeqId reused with a different body; queued and flagged as a conflict"
                        ),
                    }
                    answer(&soap::received_text(msg.message_seq_id), "result", "string")
                }
                Err(e) => server_error(version, &e),
            }
        }
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
