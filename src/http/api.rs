//! The storefront JSON API under `/api/v1`: bearer-token auth, `application/problem+json` errors.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::auth;
use crate::db::schema::stock;
use crate::inventory::DEFAULT_SOURCE;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::scope("/api/v1").route("/stock/{sku}", web::get().to(get_stock)));
}

/// An API error, answered as RFC 9457 problem JSON with a stable `code`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or unknown bearer token.
    #[error(
        "a valid bearer token is required: send `Authorization: Bearer <token>` (create one with `wharf tokens add NAME`)"
    )]
    Unauthorized,
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Something on wharf's side failed.
    #[error("wharf could not answer because of an internal error; try again")]
    Internal,
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::Internal => "internal",
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    code: &'a str,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let body = Problem {
            kind: format!("https://wharf.dev/problems/{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: self.to_string(),
            code: self.code(),
        };
        let mut resp = HttpResponse::build(status);
        resp.content_type("application/problem+json");
        if status == StatusCode::UNAUTHORIZED {
            resp.insert_header(("WWW-Authenticate", "Bearer"));
        }
        resp.body(serde_json::to_string(&body).unwrap_or_default())
    }
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Runs `f` on the blocking pool with a connection, after checking the bearer token.
async fn authorized<T, F>(
    req: &HttpRequest,
    state: web::Data<AppState>,
    f: F,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut crate::db::DbConnection) -> Result<T, ApiError> + Send + 'static,
{
    let token = bearer(req).ok_or(ApiError::Unauthorized)?;
    let span = tracing::Span::current();
    web::block(move || {
        span.in_scope(|| {
            let mut conn = state.pool.get().map_err(|e| {
                tracing::error!(error = %e, "no database connection for an API call");
                ApiError::Internal
            })?;
            auth::check_token(&mut conn, &token).map_err(|e| match e {
                auth::AuthError::Db(e) => {
                    tracing::error!(error = %e, "checking an API token failed");
                    ApiError::Internal
                }
                _ => ApiError::Unauthorized,
            })?;
            f(&mut conn)
        })
    })
    .await
    .map_err(|_| ApiError::Internal)?
}

/// Stock of one SKU at one source.
#[derive(Debug, Serialize, Deserialize, Queryable)]
pub struct StockLevel {
    /// SKU.
    pub sku: String,
    /// Stock source.
    pub source: String,
    /// Units stored.
    pub qty: i32,
    /// Highest warehouse sequence id applied.
    pub last_seq: i64,
    /// When it last changed (UTC).
    pub updated_at: NaiveDateTime,
}

#[derive(Deserialize)]
struct SourceQuery {
    source: Option<String>,
}

async fn get_stock(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<SourceQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let sku = path.into_inner();
    let source = query
        .into_inner()
        .source
        .unwrap_or_else(|| DEFAULT_SOURCE.to_string());
    let level = authorized(&req, state, move |conn| {
        stock::table
            .find((&sku, &source))
            .select((
                stock::sku,
                stock::source,
                stock::qty,
                stock::last_seq,
                stock::updated_at,
            ))
            .first::<StockLevel>(conn)
            .optional()
            .map_err(|e| {
                tracing::error!(error = %e, "reading stock failed");
                ApiError::Internal
            })?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "no stock is recorded for SKU {sku:?} at source {source:?}"
                ))
            })
    })
    .await?;
    Ok(HttpResponse::Ok().json(level))
}
