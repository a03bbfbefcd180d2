//! The storefront JSON API under `/api/v1`: bearer-token auth, RFC 9457 problem JSON errors with a
//! stable `code`, and an OpenAPI document generated from these handlers at `/api/v1/openapi.json`.

mod doc;
mod error;
mod fallback;
mod feed;
mod guard;
mod orders;
mod products;
mod query;
mod reservations;
mod stock;

pub use error::{ApiError, Problem};

use actix_web::{HttpRequest, HttpResponse, web};
use utoipa::OpenApi;

use super::AppState;
use super::body::BodyLimit;
use crate::feed::Event;
use crate::orders::{ExportStatus, OrderInput, OrderView, SplitInput};
use crate::products::{ProductInput, ProductView};
use crate::reservations::ReservationInput;
use crate::validate::{self, Invalid, TextKind};
use feed::{FeedHead, FeedPage};
use orders::OrderList;
use products::ProductList;
use stock::StockLevel;

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
                    .service(resource("/stock", "GET").route(web::get().to(stock::list_stock)))
                    .service(resource("/stock/{sku}", "GET").route(web::get().to(stock::get_stock)))
                    .service(resource("/orders", "GET").route(web::get().to(orders::list_orders)))
                    .service(
                        resource("/orders/{increment_id}", "GET, PUT")
                            .route(web::put().to(orders::put_order))
                            .route(web::get().to(orders::get_order)),
                    )
                    .service(
                        resource("/orders/{increment_id}/cancel", "POST")
                            .route(web::post().to(orders::cancel_order)),
                    )
                    .service(
                        resource("/orders/{increment_id}/split", "POST")
                            .route(web::post().to(orders::split_order)),
                    )
                    .service(
                        resource("/products", "GET").route(web::get().to(products::list_products)),
                    )
                    .service(
                        resource("/products/{sku}", "GET, PUT")
                            .route(web::put().to(products::put_product))
                            .route(web::get().to(products::get_product)),
                    )
                    .service(
                        resource("/reservations/{quote_id}", "PUT, DELETE")
                            .route(web::put().to(reservations::put_reservation))
                            .route(web::delete().to(reservations::delete_reservation)),
                    )
                    .service(resource("/feed", "GET").route(web::get().to(feed::get_feed)))
                    .service(
                        resource("/feed/head", "GET").route(web::get().to(feed::get_feed_head)),
                    )
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

/// The OpenAPI document of this API, as derived from the handlers; [`doc::document`] finishes it.
#[derive(OpenApi)]
#[openapi(
    info(title = "wharf storefront API", description = "Orders, products, cart reservations, stock and the change feed."),
    paths(stock::get_stock, stock::list_stock, orders::list_orders, orders::put_order,
        orders::get_order, orders::cancel_order, orders::split_order, products::list_products, products::put_product,
        products::get_product, reservations::put_reservation, reservations::delete_reservation,
        feed::get_feed, feed::get_feed_head),
    components(schemas(Problem, StockLevel, FeedPage, FeedHead, Event, OrderInput, OrderView,
        OrderList, ProductInput, ProductView, ProductList, ReservationInput, ExportStatus,
        crate::inventory::payloads::StockChanged, crate::shipments::payloads::ShipmentCreated,
        crate::shipments::payloads::ShipmentFailed, crate::orders::payloads::OrderCompleted,
        crate::orders::payloads::OrderExportStatusChanged, crate::orders::payloads::OrderSplit,
        SplitInput)),
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
