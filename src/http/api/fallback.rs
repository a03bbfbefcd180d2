//! Problem JSON for what goes wrong before a handler runs: unknown routes and methods, query strings
//! and bodies that actix's extractors refuse. Every answer under `/api` is then problem JSON, so a
//! client has one error shape to handle.

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{ConnectionType, StatusCode};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use super::{ApiError, MAX_JSON, PROBLEM_JSON};
use crate::http::body::Alongside;

/// Answered for a path under `/api` that no route serves.
pub async fn unknown_route(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::UnknownRoute(req.path().to_string()))
}

/// Answered when a route exists but not for this method; `allow` lists the methods it serves.
pub async fn method_not_allowed(
    req: HttpRequest,
    allow: &'static str,
) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        allow,
    })
}

/// The error handler of `web::Query` under `/api` (the API's own handlers use `ApiQuery`, which
/// also names the parameter).
pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    _req: &HttpRequest,
) -> actix_web::Error {
    ApiError::InvalidQuery {
        param: "query".into(),
        reason: err.to_string(),
    }
    .into()
}

/// Middleware turning any error answer that is not problem JSON yet into one.
pub fn problems<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(to_problem)
}

fn to_problem<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let cause = res.response().error().map(|e| e.to_string());
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::BodyTooLarge(MAX_JSON),
        StatusCode::NOT_FOUND => ApiError::UnknownRoute(res.request().path().to_string()),
        // A body refused for the budget says so and when to retry; it is not a server fault.
        StatusCode::SERVICE_UNAVAILABLE => ApiError::Http {
            status,
            detail: cause.unwrap_or_else(|| "busy; retry later".to_string()),
        },
        s if s.is_server_error() => {
            tracing::error!(
                status = s.as_u16(),
                cause = cause.as_deref().unwrap_or(""),
                "storefront API call failed"
            );
            ApiError::Internal
        }
        s => ApiError::Http {
            status: s,
            detail: cause.unwrap_or_else(|| s.canonical_reason().unwrap_or("error").to_string()),
        },
    };
    let mut answer = error.error_response();
    // Keep what the original answer told the client about retrying or allowed methods, and that
    // the connection closes (a body left unread cannot be followed by another request).
    if res.response().head().connection_type() == ConnectionType::Close {
        answer.head_mut().set_connection_type(ConnectionType::Close);
    }
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = res.headers().get(&name) {
            answer.headers_mut().insert(name, HeaderValue::clone(v));
        }
    }
    let (req, res) = res.into_parts();
    // The replaced body may hold a request body left unread (`body::Unread`), which must live
    // until the answer is sent for actix to close the connection rather than drain it.
    let (_, replaced) = res.into_parts();
    let answer = answer.map_body(|_, problem| Alongside::new(problem, replaced).boxed());
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, answer).map_into_right_body(),
    ))
}
