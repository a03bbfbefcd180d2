//! The storefront JSON API under `/api/v1`: bearer-token auth, RFC 9457 problem JSON errors with a
//! stable `code`, and an OpenAPI document generated from these handlers at `/api/v1/openapi.json`.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::AppState;
use crate::auth;
use crate::db::schema::stock;
use crate::feed::{self, Event};
use crate::inventory::DEFAULT_SOURCE;
use crate::orders::{self, OrderError, OrderInput, OrderView};
use crate::products::{self, ProductError, ProductInput, ProductView};
use crate::reservations::{self, ReservationError, ReservationInput};
use crate::validate::Invalid;

/// Largest JSON body accepted by the API.
const MAX_JSON: usize = 1024 * 1024;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .app_data(web::PayloadConfig::new(MAX_JSON))
            .route("/openapi.json", web::get().to(openapi))
            .route("/stock", web::get().to(list_stock))
            .route("/stock/{sku}", web::get().to(get_stock))
            .route("/orders/{increment_id}", web::put().to(put_order))
            .route("/orders/{increment_id}", web::get().to(get_order))
            .route(
                "/orders/{increment_id}/cancel",
                web::post().to(cancel_order),
            )
            .route("/products/{sku}", web::put().to(put_product))
            .route("/products/{sku}", web::get().to(get_product))
            .route("/reservations/{quote_id}", web::put().to(put_reservation))
            .route(
                "/reservations/{quote_id}",
                web::delete().to(delete_reservation),
            )
            .route("/feed", web::get().to(get_feed)),
    );
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
    /// Something on wharf's side failed.
    #[error("wharf could not answer because of an internal error; try again")]
    Internal,
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Invalid(_) => "invalid_field",
            ApiError::Malformed(_) => "malformed_json",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Internal => "internal",
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
    /// Stable machine-readable code: `unauthorized`, `invalid_field`, `malformed_json`, `not_found`,
    /// `conflict`, `internal`.
    pub code: String,
    /// The JSON path of the field at fault, for `invalid_field`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Invalid(_) | ApiError::Malformed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
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
                _ => None,
            },
        };
        let mut resp = HttpResponse::build(status);
        resp.content_type("application/problem+json");
        if status == StatusCode::UNAUTHORIZED {
            resp.insert_header(("WWW-Authenticate", "Bearer"));
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

/// Parses a JSON body, naming the field at fault (`lines[1].qty: invalid type…`).
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
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
    state: &web::Data<AppState>,
    f: F,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut crate::db::DbConnection) -> Result<T, ApiError> + Send + 'static,
{
    let token = bearer(req).ok_or(ApiError::Unauthorized)?;
    let span = tracing::Span::current();
    let state = state.clone();
    web::block(move || {
        span.in_scope(|| {
            let mut conn = state.pool.get().map_err(ApiError::internal)?;
            auth::check_token(&mut conn, &token).map_err(|e| match e {
                auth::AuthError::Db(e) => ApiError::internal(e),
                _ => ApiError::Unauthorized,
            })?;
            f(&mut conn)
        })
    })
    .await
    .map_err(ApiError::internal)?
}

/// Stock of one SKU at one source.
#[derive(Debug, Serialize, Deserialize, Queryable, ToSchema)]
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

/// Stock of a SKU at a source (default `default`).
#[utoipa::path(get, path = "/api/v1/stock/{sku}", tag = "stock",
    params(("sku" = String, Path, description = "SKU"), ("source" = Option<String>, Query, description = "stock source, default `default`")),
    responses((status = 200, body = StockLevel), (status = 404, body = Problem), (status = 401, body = Problem)),
    security(("bearer" = [])))]
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
    let level = authorized(&req, &state, move |conn| {
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
            .optional()?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "no stock is recorded for SKU {sku:?} at source {source:?}"
                ))
            })
    })
    .await?;
    Ok(HttpResponse::Ok().json(level))
}

/// Stock of several SKUs at every source: `?sku=A&sku=B` (at most 500). SKUs without stock are left out.
#[utoipa::path(get, path = "/api/v1/stock", tag = "stock",
    params(("sku" = Vec<String>, Query, description = "SKUs, repeated")),
    responses((status = 200, body = Vec<StockLevel>), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn list_stock(
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let skus: Vec<String> = query
        .into_inner()
        .into_iter()
        .filter(|(k, _)| k == "sku")
        .map(|(_, v)| v)
        .collect();
    if skus.is_empty() || skus.len() > 500 {
        return Err(Invalid::new("sku", "give 1 to 500 `sku` query parameters").into());
    }
    let levels = authorized(&req, &state, move |conn| {
        Ok(stock::table
            .filter(stock::sku.eq_any(&skus))
            .order((stock::sku, stock::source))
            .select((
                stock::sku,
                stock::source,
                stock::qty,
                stock::last_seq,
                stock::updated_at,
            ))
            .load::<StockLevel>(conn)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(levels))
}

/// Create or replace an order. Answers 201 when created, 200 when replaced, with the order.
#[utoipa::path(put, path = "/api/v1/orders/{increment_id}", tag = "orders",
    params(("increment_id" = String, Path, description = "order number")),
    request_body = OrderInput,
    responses((status = 201, body = OrderView), (status = 200, body = OrderView),
        (status = 422, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
async fn put_order(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let input: OrderInput = parse_json(&body)?;
    let (created, view) = authorized(&req, &state, move |conn| {
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
    responses((status = 200, body = OrderView), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn get_order(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let view = authorized(&req, &state, move |conn| Ok(orders::get(conn, &id)?)).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Cancel an order (not once it has fully shipped).
#[utoipa::path(post, path = "/api/v1/orders/{increment_id}/cancel", tag = "orders",
    params(("increment_id" = String, Path, description = "order number")),
    responses((status = 200, body = OrderView), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
async fn cancel_order(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let view = authorized(&req, &state, move |conn| {
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
    responses((status = 201, body = ProductView), (status = 200, body = ProductView), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn put_product(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let sku = path.into_inner();
    let input: ProductInput = parse_json(&body)?;
    let (created, view) = authorized(&req, &state, move |conn| {
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
    responses((status = 200, body = ProductView), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn get_product(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let sku = path.into_inner();
    let view = authorized(&req, &state, move |conn| {
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
    responses((status = 204), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn put_reservation(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let quote = path.into_inner();
    let input: ReservationInput = parse_json(&body)?;
    authorized(&req, &state, move |conn| {
        Ok(reservations::upsert(conn, &quote, &input)?)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Delete a cart reservation (checkout finished or cart abandoned).
#[utoipa::path(delete, path = "/api/v1/reservations/{quote_id}", tag = "reservations",
    params(("quote_id" = String, Path, description = "cart (quote) id")),
    responses((status = 204), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn delete_reservation(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let quote = path.into_inner();
    authorized(&req, &state, move |conn| {
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
/// or repeated. With `wait=<seconds>` (at most 60) an empty answer waits until an event arrives.
#[utoipa::path(get, path = "/api/v1/feed", tag = "feed",
    params(("after" = Option<i64>, Query, description = "last id seen (default 0)"),
        ("limit" = Option<i64>, Query, description = "most events to return, 1–1000 (default 100)"),
        ("wait" = Option<u64>, Query, description = "seconds to wait for an event when there is none (default 0, at most 60)")),
    responses((status = 200, body = FeedPage), (status = 422, body = Problem)),
    security(("bearer" = [])))]
async fn get_feed(
    req: HttpRequest,
    query: web::Query<FeedQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
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
    loop {
        // Register interest before reading, so an event committed in between still wakes us.
        let notified = feed::notifier().notified();
        let events = authorized(&req, &state, move |conn| {
            Ok(feed::read(conn, after, limit)?)
        })
        .await?;
        let now = Instant::now();
        // A stopping server answers at once, so an open poll never holds the shutdown up.
        if !events.is_empty() || now >= deadline || state.shutdown.is_stopping() {
            let last_id = events.last().map(|e| e.id).unwrap_or(after);
            return Ok(HttpResponse::Ok().json(FeedPage { events, last_id }));
        }
        let nap = feed::POLL_EVERY.min(deadline - now);
        tokio::select! {
            _ = tokio::time::timeout(nap, notified) => {}
            _ = state.shutdown.stopping() => {}
        }
    }
}

/// The OpenAPI document of this API.
#[derive(OpenApi)]
#[openapi(
    info(title = "wharf storefront API", description = "Orders, products, cart reservations, stock and the change feed."),
    paths(get_stock, list_stock, put_order, get_order, cancel_order, put_product, get_product,
        put_reservation, delete_reservation, get_feed),
    components(schemas(Problem, StockLevel, FeedPage, Event, OrderInput, OrderView, ProductInput,
        ProductView, ReservationInput)),
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
    HttpResponse::Ok().json(ApiDoc::openapi())
}
