//! The storefront JSON API under `/api/v1`: bearer-token auth, RFC 9457 problem JSON errors with a
//! stable `code`, and an OpenAPI document generated from these handlers at `/api/v1/openapi.json`.

mod doc;
mod fallback;
mod guard;
mod query;

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::AppState;
use crate::db::schema::stock;
use crate::feed::{self, Event};
use crate::orders::{self, ExportStatus, OrderError, OrderInput, OrderView};
use crate::products::{self, ProductError, ProductInput, ProductView};
use crate::reservations::{self, ReservationError, ReservationInput};
use crate::validate::{self, Invalid, TextKind};
use query::ApiQuery;

use super::body::{Body, BodyLimit};

/// Largest JSON body accepted by the API.
const MAX_JSON: usize = 1024 * 1024;

/// The media type of every error answer (RFC 9457).
const PROBLEM_JSON: &str = "application/problem+json";

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .wrap(fallback::problems())
            .app_data(web::PayloadConfig::new(MAX_JSON))
            .app_data(BodyLimit(MAX_JSON))
            .app_data(web::QueryConfig::default().error_handler(fallback::query_error))
            .service(
                web::scope("/v1")
                    // First of all: no token, no diagnostics (see `guard`).
                    .wrap(actix_web::middleware::from_fn(guard::require_token))
                    .service(resource("/openapi.json", "GET").route(web::get().to(openapi)))
                    .service(resource("/stock", "GET").route(web::get().to(list_stock)))
                    .service(resource("/stock/{sku}", "GET").route(web::get().to(get_stock)))
                    .service(resource("/orders", "GET").route(web::get().to(list_orders)))
                    .service(
                        resource("/orders/{increment_id}", "GET, PUT")
                            .route(web::put().to(put_order))
                            .route(web::get().to(get_order)),
                    )
                    .service(
                        resource("/orders/{increment_id}/cancel", "POST")
                            .route(web::post().to(cancel_order)),
                    )
                    .service(resource("/products", "GET").route(web::get().to(list_products)))
                    .service(
                        resource("/products/{sku}", "GET, PUT")
                            .route(web::put().to(put_product))
                            .route(web::get().to(get_product)),
                    )
                    .service(
                        resource("/reservations/{quote_id}", "PUT, DELETE")
                            .route(web::put().to(put_reservation))
                            .route(web::delete().to(delete_reservation)),
                    )
                    .service(resource("/feed", "GET").route(web::get().to(get_feed)))
                    .service(resource("/feed/head", "GET").route(web::get().to(get_feed_head)))
                    .default_service(web::to(fallback::unknown_route)),
            )
            .default_service(web::to(fallback::unknown_route)),
    );
}

/// A route of the API; other methods than `allow` get a `405 method_not_allowed` problem.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move |req: HttpRequest| {
        fallback::method_not_allowed(req, allow)
    }))
}

/// An API error, answered as problem JSON with a stable `code`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or unknown bearer token.
    #[error(
        "a valid bearer token is required: send `Authorization: Bearer <token>` (create one with `wharf tokens add NAME`)"
    )]
    Unauthorized,
    /// A field is missing or wrong.
    #[error("invalid {0}")]
    Invalid(Invalid),
    /// The body is not JSON at all.
    #[error("the body is not valid JSON: {0}")]
    Malformed(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The change contradicts the current state.
    #[error("{0}")]
    Conflict(String),
    /// An order rule refuses the change (`order_locked`, `order_canceled`, `order_complete`).
    #[error(transparent)]
    OrderRefused(orders::Refusal),
    /// Something on wharf's side failed.
    #[error("wharf could not answer because of an internal error; try again")]
    Internal,
    /// A query parameter does not parse.
    #[error("query parameter `{param}` is invalid: {reason}")]
    InvalidQuery {
        /// The parameter.
        param: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The feed cursor is beyond the newest event: the client's cursor comes from a wharf whose
    /// feed went further than this one (this database was restored from an older backup).
    #[error(
        "the cursor {after} is beyond the newest event of this feed ({head}): this wharf's database is \
         older than the cursor (restored from a backup?); events may have been lost. Reconcile with \
         GET /api/v1/orders?updated_after= and /api/v1/stock, then follow the feed from `head`"
    )]
    CursorAhead {
        /// The cursor given.
        after: i64,
        /// The newest event id.
        head: i64,
    },
    /// No route serves this path.
    #[error("no API route is {0}; see /api/v1/openapi.json for the routes")]
    UnknownRoute(String),
    /// The route exists but not for this method.
    #[error("{method} is not served here; this route serves {allow}")]
    MethodNotAllowed {
        /// The method asked for.
        method: String,
        /// The methods served, for the `Allow` header.
        allow: &'static str,
    },
    /// The body is larger than the API accepts.
    #[error("the body is larger than the {0} bytes the API accepts; send less")]
    BodyTooLarge(usize),
    /// Another client error actix answered before a handler ran.
    #[error("{detail}")]
    Http {
        /// Its status.
        status: StatusCode,
        /// What actix said.
        detail: String,
    },
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Invalid(_) => "invalid_field",
            ApiError::Malformed(_) => "malformed_json",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::OrderRefused(r) => r.code.as_str(),
            ApiError::Internal => "internal",
            ApiError::InvalidQuery { .. } => "invalid_query",
            ApiError::CursorAhead { .. } => "cursor_ahead",
            ApiError::UnknownRoute(_) => "unknown_route",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::BodyTooLarge(_) => "body_too_large",
            ApiError::Http { .. } => "http_error",
        }
    }

    fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "storefront API call failed");
        ApiError::Internal
    }
}

/// An RFC 9457 problem.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What happened and what to do.
    pub detail: String,
    /// Stable machine-readable code: `unauthorized` (401), `invalid_field` and `malformed_json`
    /// (422), `invalid_query` (400), `not_found` (404, the thing asked for does not exist),
    /// `unknown_route` (404, no such route), `method_not_allowed` (405), `conflict`,
    /// `cursor_ahead`, `order_locked`, `order_canceled` and `order_complete` (409),
    /// `body_too_large` (413), `http_error` (another 4xx — 408 for a body too slow — or 503 when
    /// too many bodies arrive at once, with `Retry-After`), `internal` (500).
    #[schema(example = "invalid_field")]
    pub code: String,
    /// The field at fault: for `invalid_field` the JSON path of a body field (`lines[0].sku`) or
    /// the name of a path or query parameter (`increment_id`, `status`); for `invalid_query` the
    /// query parameter that does not parse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The newest feed id, for `cursor_ahead`: follow the feed from here after reconciling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<i64>,
    /// The JSON paths of the fields at fault, for `order_locked` (what differs from what the
    /// warehouse has) and `order_canceled`/`order_complete` (`status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Invalid(_) | ApiError::Malformed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) | ApiError::UnknownRoute(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::CursorAhead { .. } | ApiError::OrderRefused(_) => {
                StatusCode::CONFLICT
            }
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::InvalidQuery { .. } => StatusCode::BAD_REQUEST,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Http { status, .. } => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let body = Problem {
            kind: format!("https://wharf.dev/problems/{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: self.to_string(),
            code: self.code().to_string(),
            field: match self {
                ApiError::Invalid(i) => Some(i.field.clone()),
                ApiError::InvalidQuery { param, .. } => Some(param.clone()),
                _ => None,
            },
            head: match self {
                ApiError::CursorAhead { head, .. } => Some(*head),
                _ => None,
            },
            fields: match self {
                ApiError::OrderRefused(r) if !r.fields.is_empty() => Some(r.fields.clone()),
                _ => None,
            },
        };
        let mut resp = HttpResponse::build(status);
        resp.content_type(PROBLEM_JSON);
        if status == StatusCode::UNAUTHORIZED {
            resp.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            resp.insert_header(("Allow", *allow));
        }
        resp.body(serde_json::to_string(&body).unwrap_or_default())
    }
}

impl From<Invalid> for ApiError {
    fn from(i: Invalid) -> Self {
        ApiError::Invalid(i)
    }
}

impl From<OrderError> for ApiError {
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::Invalid(i) => ApiError::Invalid(i),
            OrderError::NotFound(id) => ApiError::NotFound(format!("order {id:?} does not exist")),
            OrderError::Conflict(m) => ApiError::Conflict(m),
            OrderError::Refused(r) => ApiError::OrderRefused(r),
            OrderError::Db(e) => ApiError::internal(e),
        }
    }
}

impl From<ProductError> for ApiError {
    fn from(e: ProductError) -> Self {
        match e {
            ProductError::Invalid(i) => ApiError::Invalid(i),
            ProductError::Db(e) => ApiError::internal(e),
        }
    }
}

impl From<ReservationError> for ApiError {
    fn from(e: ReservationError) -> Self {
        match e {
            ReservationError::Invalid(i) => ApiError::Invalid(i),
            ReservationError::Db(e) => ApiError::internal(e),
        }
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        ApiError::internal(e)
    }
}

/// Parses a JSON body, naming the field at fault (`lines[1].qty: invalid type…`), and checks that
/// every string in it can be stored and sent to the warehouse ([`validate::check_json_strings`]).
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let parsed = parse_typed(body)?;
    // The body parsed as `T`, so it parses as a JSON value too (same parser, same limits).
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::Malformed(e.to_string()))?;
    validate::check_json_strings(&value)?;
    Ok(parsed)
}

fn parse_typed<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::Malformed(inner.to_string());
        }
        // serde names a missing field only in its message ("missing field `currency`"); the path
        // stops at the object that lacks it. (An unknown field is already the last path segment.)
        let text = inner.to_string();
        let reason = text.split(" at line ").next().unwrap_or(&text).to_string();
        let named = reason
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = match (path.as_str(), named) {
            (".", Some(name)) => name.to_string(),
            (_, Some(name)) => format!("{path}.{name}"),
            (".", None) => "body".to_string(),
            _ => path,
        };
        ApiError::Invalid(Invalid::new(field, reason))
    })
}

/// A path parameter (`sku`, `increment_id`, `quote_id`), refused when it holds a character wharf
/// cannot store or send (`422 invalid_field` naming it). Its length is checked where it is stored:
/// a read of a key too long to exist just finds nothing.
fn path_key(field: &str, path: web::Path<String>) -> Result<String, ApiError> {
    let value = path.into_inner();
    validate::check_text(field, &value, TextKind::Identifier)?;
    Ok(value)
}

/// Runs `f` on the blocking pool with a connection. (The token was checked by [`guard`] before the
/// request got here.)
async fn on_pool<T, F>(state: &web::Data<AppState>, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut crate::db::DbConnection) -> Result<T, ApiError> + Send + 'static,
{
    let span = tracing::Span::current();
    let state = state.clone();
    web::block(move || {
        span.in_scope(|| {
            let mut conn = state.pool.get().map_err(ApiError::internal)?;
            f(&mut conn)
        })
    })
    .await
    .map_err(ApiError::internal)?
}

/// Stock of one SKU at one source.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StockLevel {
    /// SKU.
    pub sku: String,
    /// Stock source.
    pub source: String,
    /// Units stored.
    pub qty: i32,
    /// Highest warehouse sequence id applied.
    pub last_seq: i64,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A `stock` row as stored.
#[derive(Queryable)]
struct StockRow {
    sku: String,
    source: String,
    qty: i32,
    last_seq: i64,
    updated_at: NaiveDateTime,
}

/// Stock of `skus` at every source (or at `source`), ordered by SKU and source.
fn load_stock(
    conn: &mut crate::db::DbConnection,
    skus: &[String],
    source: Option<&str>,
) -> QueryResult<Vec<StockLevel>> {
    let mut query = stock::table
        .filter(stock::sku.eq_any(skus))
        .order((stock::sku, stock::source))
        .select((
            stock::sku,
            stock::source,
            stock::qty,
            stock::last_seq,
            stock::updated_at,
        ))
        .into_boxed();
    if let Some(source) = source {
        query = query.filter(stock::source.eq(source.to_string()));
    }
    let rows: Vec<StockRow> = query.load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| StockLevel {
            sku: r.sku,
            source: r.source,
            qty: r.qty,
            last_seq: r.last_seq,
            updated_at: r.updated_at.and_utc(),
        })
        .collect())
}

#[derive(Deserialize)]
struct SourceQuery {
    source: Option<String>,
}

/// Stock of a SKU at every source it has stock at, ordered by source (the same entries
/// `GET /api/v1/stock?sku=` gives for it); with `?source=`, at that source only (a list of one).
#[utoipa::path(get, path = "/api/v1/stock/{sku}", tag = "stock",
    params(("sku" = String, Path, description = "SKU"),
        ("source" = Option<String>, Query, description = "only this stock source, e.g. `default`")),
    responses((status = 200, description = "Stock per source, at least one entry", body = Vec<StockLevel>),
        (status = 404, description = "No stock is recorded for the SKU (at the source) (`not_found`)", body = Problem)),
    security(("bearer" = [])))]
async fn get_stock(
    path: web::Path<String>,
    query: ApiQuery<SourceQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let sku = path_key("sku", path)?;
    let source = query.0.source;
    let levels = on_pool(&state, move |conn| {
        let levels = load_stock(conn, std::slice::from_ref(&sku), source.as_deref())?;
        if levels.is_empty() {
            return Err(ApiError::NotFound(match source {
                Some(source) => {
                    format!("no stock is recorded for SKU {sku:?} at source {source:?}")
                }
                None => format!("no stock is recorded for SKU {sku:?} at any source"),
            }));
        }
        Ok(levels)
    })
    .await?;
    Ok(HttpResponse::Ok().json(levels))
}

/// Stock of several SKUs at every source: `?sku=A&sku=B` (at most 500). SKUs without stock are left out.
#[utoipa::path(get, path = "/api/v1/stock", tag = "stock",
    params(("sku" = Vec<String>, Query, description = "SKUs, repeated")),
    responses((status = 200, description = "Stock per SKU and source, ordered by SKU then source", body = Vec<StockLevel>),
        (status = 422, description = "No or too many SKUs (`invalid_field`)", body = Problem)),
    security(("bearer" = [])))]
async fn list_stock(
    query: ApiQuery<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let skus: Vec<String> = query
        .0
        .into_iter()
        .filter(|(k, _)| k == "sku")
        .map(|(_, v)| v)
        .collect();
    if skus.is_empty() || skus.len() > 500 {
        return Err(Invalid::new("sku", "give 1 to 500 `sku` query parameters").into());
    }
    let levels = on_pool(&state, move |conn| Ok(load_stock(conn, &skus, None)?)).await?;
    Ok(HttpResponse::Ok().json(levels))
}

/// Create or update an order. Answers 201 when created, 200 otherwise, with the order. A PUT never
/// moves an order backwards: the same content again changes nothing; `complete` and `canceled` stay;
/// reopening a cancelled order is `409 order_canceled`; once the warehouse has the order (exported,
/// skipped, or being exported) only its status may change, anything else is `409 order_locked` with
/// the differing `fields` (cancel it and place a new order instead). Status `canceled` cancels it.
#[utoipa::path(put, path = "/api/v1/orders/{increment_id}", tag = "orders",
    params(("increment_id" = String, Path, description = "order number")),
    request_body = OrderInput,
    responses((status = 201, description = "Created", body = OrderView),
        (status = 200, description = "Replaced", body = OrderView),
        (status = 422, description = "A field is missing or wrong (`invalid_field`, `field` names it) or the body is not JSON (`malformed_json`)", body = Problem),
        (status = 409, description = "The change contradicts what already happened, e.g. fewer units than have shipped (`conflict`)", body = Problem)),
    security(("bearer" = [])))]
async fn put_order(
    path: web::Path<String>,
    body: Body,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_key("increment_id", path)?;
    let input: OrderInput = parse_json(&body)?;
    let (created, view) = on_pool(&state, move |conn| {
        let created = orders::upsert(conn, &id, &input)?;
        Ok((created, orders::get(conn, &id)?))
    })
    .await?;
    Ok(if created {
        HttpResponse::Created().json(view)
    } else {
        HttpResponse::Ok().json(view)
    })
}

/// An order with its export status, shipments, tracking and per-line shipped quantities.
#[utoipa::path(get, path = "/api/v1/orders/{increment_id}", tag = "orders",
    params(("increment_id" = String, Path, description = "order number")),
    responses((status = 200, description = "The order", body = OrderView),
        (status = 404, description = "No such order (`not_found`)", body = Problem)),
    security(("bearer" = [])))]
async fn get_order(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_key("increment_id", path)?;
    let view = on_pool(&state, move |conn| Ok(orders::get(conn, &id)?)).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Cancel an order (not once it has fully shipped).
#[utoipa::path(post, path = "/api/v1/orders/{increment_id}/cancel", tag = "orders",
    params(("increment_id" = String, Path, description = "order number")),
    responses((status = 200, description = "The cancelled order", body = OrderView),
        (status = 404, description = "No such order (`not_found`)", body = Problem),
        (status = 409, description = "The order has shipped completely (`conflict`)", body = Problem)),
    security(("bearer" = [])))]
async fn cancel_order(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_key("increment_id", path)?;
    let view = on_pool(&state, move |conn| {
        orders::cancel(conn, &id)?;
        Ok(orders::get(conn, &id)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Create or replace a product; it becomes pending export.
#[utoipa::path(put, path = "/api/v1/products/{sku}", tag = "products",
    params(("sku" = String, Path, description = "SKU")),
    request_body = ProductInput,
    responses((status = 201, description = "Created", body = ProductView),
        (status = 200, description = "Replaced", body = ProductView),
        (status = 422, description = "A field is missing or wrong (`invalid_field`) or the body is not JSON (`malformed_json`)", body = Problem)),
    security(("bearer" = [])))]
async fn put_product(
    path: web::Path<String>,
    body: Body,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let sku = path_key("sku", path)?;
    let input: ProductInput = parse_json(&body)?;
    let (created, view) = on_pool(&state, move |conn| {
        let created = products::upsert(conn, &sku, &input)?;
        let view = products::get(conn, &sku)?.ok_or(ApiError::Internal)?;
        Ok((created, view))
    })
    .await?;
    Ok(if created {
        HttpResponse::Created().json(view)
    } else {
        HttpResponse::Ok().json(view)
    })
}

/// A product.
#[utoipa::path(get, path = "/api/v1/products/{sku}", tag = "products",
    params(("sku" = String, Path, description = "SKU")),
    responses((status = 200, description = "The product", body = ProductView),
        (status = 404, description = "No such product (`not_found`)", body = Problem)),
    security(("bearer" = [])))]
async fn get_product(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let sku = path_key("sku", path)?;
    let view = on_pool(&state, move |conn| {
        products::get(conn, &sku)?
            .ok_or_else(|| ApiError::NotFound(format!("product {sku:?} does not exist")))
    })
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Create or replace a cart reservation.
#[utoipa::path(put, path = "/api/v1/reservations/{quote_id}", tag = "reservations",
    params(("quote_id" = String, Path, description = "cart (quote) id")),
    request_body = ReservationInput,
    responses((status = 204, description = "Stored"),
        (status = 422, description = "A field is missing or wrong (`invalid_field`) or the body is not JSON (`malformed_json`)", body = Problem)),
    security(("bearer" = [])))]
async fn put_reservation(
    path: web::Path<String>,
    body: Body,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let quote = path_key("quote_id", path)?;
    let input: ReservationInput = parse_json(&body)?;
    on_pool(&state, move |conn| {
        Ok(reservations::upsert(conn, &quote, &input)?)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Delete a cart reservation (checkout finished or cart abandoned).
#[utoipa::path(delete, path = "/api/v1/reservations/{quote_id}", tag = "reservations",
    params(("quote_id" = String, Path, description = "cart (quote) id")),
    responses((status = 204, description = "Deleted"),
        (status = 404, description = "No such reservation (`not_found`)", body = Problem)),
    security(("bearer" = [])))]
async fn delete_reservation(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let quote = path_key("quote_id", path)?;
    on_pool(&state, move |conn| {
        if reservations::delete(conn, &quote)? {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!(
                "reservation {quote:?} does not exist"
            )))
        }
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
struct FeedQuery {
    after: Option<i64>,
    limit: Option<i64>,
    wait: Option<u64>,
}

/// A page of the feed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FeedPage {
    /// Events after the cursor, oldest first.
    pub events: Vec<Event>,
    /// The cursor to pass as `after` next time (the last id returned, or the one given).
    pub last_id: i64,
}

/// Events after `after` in commit order. Store `last_id` and pass it back as `after`: nothing is missed
/// or repeated. With `wait=<seconds>` (at most 60) an empty answer waits until an event arrives. A
/// cursor beyond the newest event is refused (`409 cursor_ahead`, with `head`): this wharf's feed is
/// older than the client's (its database was restored from a backup), so the client must reconcile.
#[utoipa::path(get, path = "/api/v1/feed", tag = "feed",
    params(("after" = Option<i64>, Query, description = "last id seen (default 0)"),
        ("limit" = Option<i64>, Query, description = "most events to return, 1–1000 (default 100)"),
        ("wait" = Option<u64>, Query, description = "seconds to wait for an event when there is none (default 0, at most 60)")),
    responses((status = 200, description = "Events after the cursor, oldest first", body = FeedPage),
        (status = 409, description = "The cursor is beyond the newest event (`cursor_ahead`; `head` is the newest id)", body = Problem),
        (status = 422, description = "A parameter is out of range (`invalid_field`)", body = Problem)),
    security(("bearer" = [])))]
async fn get_feed(
    query: ApiQuery<FeedQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.0;
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(100);
    if after < 0 {
        return Err(Invalid::new("after", "must be 0 or a feed id").into());
    }
    if !(1..=1000).contains(&limit) {
        return Err(Invalid::new("limit", "must be between 1 and 1000").into());
    }
    let wait = Duration::from_secs(q.wait.unwrap_or(0));
    if wait > Duration::from_secs(60) {
        return Err(Invalid::new("wait", "must be at most 60 seconds").into());
    }
    let deadline = Instant::now() + wait;
    // Commits wake the poll (see `db::wake`); reading again after the worker's poll interval only
    // covers a wake-up that could not arrive (SQLite written by another process, a listener
    // reconnecting).
    let fallback = Duration::from_millis(state.settings.worker.poll_interval_ms.max(10));
    loop {
        // Register interest before reading, so an event committed in between still wakes us.
        let notified = feed::notifier().notified();
        let events = on_pool(&state, move |conn| read_feed(conn, after, limit)).await?;
        let now = Instant::now();
        // A stopping server answers at once, so an open poll never holds the shutdown up.
        if !events.is_empty() || now >= deadline || state.shutdown.is_stopping() {
            let last_id = events.last().map(|e| e.id).unwrap_or(after);
            return Ok(HttpResponse::Ok().json(FeedPage { events, last_id }));
        }
        let nap = fallback.min(deadline - now);
        tokio::select! {
            _ = tokio::time::timeout(nap, notified) => {}
            _ = state.shutdown.stopping() => {}
        }
    }
}

/// Events after `after`; when there are none, checks that `after` is not beyond the head.
fn read_feed(
    conn: &mut crate::db::DbConnection,
    after: i64,
    limit: i64,
) -> Result<Vec<Event>, ApiError> {
    let events = feed::read(conn, after, limit)?;
    if events.is_empty() {
        let head = feed::head(conn)?;
        if after > head {
            return Err(ApiError::CursorAhead { after, head });
        }
    }
    Ok(events)
}

/// The newest feed id.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FeedHead {
    /// Id of the newest event (0 while the feed is empty). Start following the feed from here to
    /// get only what happens from now on.
    pub head: i64,
}

/// The id of the newest event.
#[utoipa::path(get, path = "/api/v1/feed/head", tag = "feed",
    responses((status = 200, description = "The newest id", body = FeedHead)),
    security(("bearer" = [])))]
async fn get_feed_head(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let head = on_pool(&state, |conn| Ok(feed::head(conn)?)).await?;
    Ok(HttpResponse::Ok().json(FeedHead { head }))
}

/// Most items a listing page holds.
const MAX_PAGE: i64 = 200;

/// The page size asked for, checked.
fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Invalid::new("limit", format!("must be between 1 and {MAX_PAGE}")).into());
    }
    Ok(limit)
}

#[derive(Deserialize)]
struct OrderListQuery {
    status: Option<String>,
    export_status: Option<ExportStatus>,
    updated_after: Option<DateTime<Utc>>,
    limit: Option<i64>,
    after: Option<String>,
}

/// A page of orders.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderList {
    /// Orders, least recently changed first.
    pub items: Vec<OrderView>,
    /// Pass as `after` (with the same filters) for the next page; `null` when this page is the last.
    pub next: Option<String>,
}

/// Orders changed after a time, for reconciling: keyset paging in (`updated_at`, order) order.
///
/// Walk the pages with `after=<next>` until `next` is `null`. Every order matching the filters is
/// returned once, in the state it has when its page is read; an order that changes during the walk
/// moves behind the cursor and comes again on a later page with its new state (never skipped). To
/// catch up later, start a new walk with `updated_after` = the last `updated_at` seen, less a few
/// seconds: a change committing while you read can carry a slightly earlier time. Export status
/// changes do not move `updated_at`; follow them on the feed or filter with `export_status`.
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders",
    params(("status" = Option<String>, Query, description = "only orders in this status, e.g. `processing`, `complete`, `canceled`"),
        ("export_status" = Option<ExportStatus>, Query, description = "only orders whose export is in this status"),
        ("updated_after" = Option<DateTime<Utc>>, Query, description = "only orders changed strictly after this time, RFC 3339 (`2024-05-01T09:30:00Z`; percent-encode a `+` offset as `%2B`)"),
        ("limit" = Option<i64>, Query, description = "most orders per page, 1–200 (default 50)"),
        ("after" = Option<String>, Query, description = "the `next` of the previous page")),
    responses((status = 200, description = "A page of orders", body = OrderList),
        (status = 422, description = "A parameter is out of range (`invalid_field`)", body = Problem)),
    security(("bearer" = [])))]
async fn list_orders(
    query: ApiQuery<OrderListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.0;
    let limit = page_limit(q.limit)?;
    let after = q.after.as_deref().map(order_position).transpose()?;
    let filter = orders::ListFilter {
        status: q.status,
        export_status: q.export_status,
        updated_after: q.updated_after,
    };
    let page = on_pool(&state, move |conn| {
        Ok(orders::list(conn, &filter, after, limit)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(OrderList {
        items: page.orders,
        next: page
            .next
            .map(|p| query::encode_cursor(p.updated_at, &p.id.to_string())),
    }))
}

fn order_position(cursor: &str) -> Result<orders::OrderPosition, ApiError> {
    let (updated_at, key) = query::decode_cursor(cursor)?;
    let id = key.parse().map_err(|_| ApiError::InvalidQuery {
        param: "after".into(),
        reason: "is not an order cursor; pass the `next` of the previous order page".into(),
    })?;
    Ok(orders::OrderPosition { updated_at, id })
}

#[derive(Deserialize)]
struct ProductListQuery {
    updated_after: Option<DateTime<Utc>>,
    limit: Option<i64>,
    after: Option<String>,
}

/// A page of products.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProductList {
    /// Products, least recently changed first.
    pub items: Vec<ProductView>,
    /// Pass as `after` (with the same filters) for the next page; `null` when this page is the last.
    pub next: Option<String>,
}

/// Products changed after a time, for reconciling: keyset paging in (`updated_at`, SKU) order, with
/// the same guarantees as the order listing (a product changed during the walk comes again later).
#[utoipa::path(get, path = "/api/v1/products", tag = "products",
    params(("updated_after" = Option<DateTime<Utc>>, Query, description = "only products changed strictly after this time, RFC 3339"),
        ("limit" = Option<i64>, Query, description = "most products per page, 1–200 (default 50)"),
        ("after" = Option<String>, Query, description = "the `next` of the previous page")),
    responses((status = 200, description = "A page of products", body = ProductList),
        (status = 422, description = "A parameter is out of range (`invalid_field`)", body = Problem)),
    security(("bearer" = [])))]
async fn list_products(
    query: ApiQuery<ProductListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.0;
    let limit = page_limit(q.limit)?;
    let after = match q.after.as_deref() {
        Some(c) => {
            let (updated_at, sku) = query::decode_cursor(c)?;
            Some(products::ProductPosition { updated_at, sku })
        }
        None => None,
    };
    let page = on_pool(&state, move |conn| {
        Ok(products::list(
            conn,
            q.updated_after,
            after.as_ref(),
            limit,
        )?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(ProductList {
        items: page.products,
        next: page
            .next
            .map(|p| query::encode_cursor(p.updated_at, &p.sku)),
    }))
}

/// The OpenAPI document of this API, as derived from the handlers; [`doc::document`] finishes it.
#[derive(OpenApi)]
#[openapi(
    info(title = "wharf storefront API", description = "Orders, products, cart reservations, stock and the change feed."),
    paths(get_stock, list_stock, list_orders, put_order, get_order, cancel_order, list_products,
        put_product, get_product, put_reservation, delete_reservation, get_feed, get_feed_head),
    components(schemas(Problem, StockLevel, FeedPage, FeedHead, Event, OrderInput, OrderView,
        OrderList, ProductInput, ProductView, ProductList, ReservationInput, ExportStatus,
        crate::inventory::payloads::StockChanged, crate::shipments::payloads::ShipmentCreated,
        crate::shipments::payloads::ShipmentFailed, crate::orders::payloads::OrderCompleted,
        crate::orders::payloads::OrderExportStatusChanged)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(doc::document())
}
