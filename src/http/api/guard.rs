//! The bearer token is checked before anything else of a request is looked at: an unauthenticated
//! caller gets `401 unauthorized` whatever its path parameters, query string or body hold, and never
//! field diagnostics (which would tell an anonymous caller how the API validates). The body of a
//! refused request is not read.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, ResponseError, web};

use super::ApiError;
use crate::auth;
use crate::http::AppState;

/// Routes served without a token. The OpenAPI document describes the API and holds no data; client
/// generators and API testers (openapi-generator, schemathesis) fetch it before they have any
/// credentials.
const PUBLIC: &[&str] = &["/api/v1/openapi.json"];

/// Middleware of the `/api/v1` scope: answers `401` unless the request carries a valid storefront
/// token (`Authorization: Bearer …`), then lets the route run.
pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if PUBLIC.contains(&req.path()) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    match check(req.request()).await {
        Ok(()) => Ok(next.call(req).await?.map_into_left_body()),
        Err(e) => Ok(req.into_response(e.error_response()).map_into_right_body()),
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Looks the token up (by its hash) on the blocking pool, never on the executor.
async fn check(req: &HttpRequest) -> Result<(), ApiError> {
    let token = bearer(req).ok_or(ApiError::Unauthorized)?;
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal("the API runs without its application state"))?
        .clone();
    let span = tracing::Span::current();
    web::block(move || {
        span.in_scope(|| {
            let mut conn = state.pool.get().map_err(ApiError::internal)?;
            match auth::check_token(&mut conn, &token) {
                Ok(_) => Ok(()),
                Err(auth::AuthError::Db(e)) => Err(ApiError::internal(e)),
                Err(_) => Err(ApiError::Unauthorized),
            }
        })
    })
    .await
    .map_err(ApiError::internal)?
}
