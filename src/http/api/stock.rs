//! `GET /api/v1/stock` and `GET /api/v1/stock/{sku}`: stock levels per source.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use diesel::QueryResult;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::query::ApiQuery;
use super::{ApiError, Problem, on_pool, path_key};
use crate::http::AppState;
use crate::validate::Invalid;

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

/// Stock of `skus` at every source (or at `source`), ordered by SKU and source.
fn load_stock(
    conn: &mut crate::db::DbConnection,
    skus: &[String],
    source: Option<&str>,
) -> QueryResult<Vec<StockLevel>> {
    Ok(crate::inventory::store::levels(conn, skus, source)?
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
pub(super) struct SourceQuery {
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
pub(super) async fn get_stock(
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
pub(super) async fn list_stock(
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
