//! `/api/v1/products`: create, replace, read and list products.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::query::ApiQuery;
use super::{ApiError, Problem, on_pool, page_limit, parse_json, path_key, query};
use crate::http::AppState;
use crate::http::body::Body;
use crate::products::{self, ProductInput, ProductView};

/// Create or replace a product; it becomes pending export.
#[utoipa::path(put, path = "/api/v1/products/{sku}", tag = "products",
    params(("sku" = String, Path, description = "SKU")),
    request_body = ProductInput,
    responses((status = 201, description = "Created", body = ProductView),
        (status = 200, description = "Replaced", body = ProductView),
        (status = 422, description = "A field is missing or wrong (`invalid_field`) or the body is not JSON (`malformed_json`)", body = Problem)),
    security(("bearer" = [])))]
pub(super) async fn put_product(
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
pub(super) async fn get_product(
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

#[derive(Deserialize)]
pub(super) struct ProductListQuery {
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
pub(super) async fn list_products(
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
