//! `/api/v1/orders`: create, update, read, cancel, split and list orders.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::query::ApiQuery;
use super::{ApiError, Problem, on_pool, page_limit, parse_json, path_key, query};
use crate::http::AppState;
use crate::http::body::Body;
use crate::orders::{self, ExportStatus, OrderInput, OrderView, SplitInput};

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
pub(super) async fn put_order(
    path: web::Path<String>,
    body: Body,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_key("increment_id", path)?;
    let input: OrderInput = parse_json(&body)?;
    let settings = state.settings.clone();
    let (created, view) = on_pool(&state, move |conn| {
        let created = orders::upsert(conn, &id, &input, &settings.channels)?;
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
pub(super) async fn get_order(
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
pub(super) async fn cancel_order(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_key("increment_id", path)?;
    let settings = state.settings.clone();
    let view = on_pool(&state, move |conn| {
        orders::cancel(conn, &id, &settings.channels)?;
        Ok(orders::get(conn, &id)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Split an order into child orders: each child is a new order with the parent's addresses,
/// methods, status and source, and the units it takes of the parent's lines (units not shipped
/// yet, per SKU); what no child takes stays on the parent. A child's unit prices are the parent's,
/// its row totals the parent's in proportion to its units, its totals the sums of its lines (the
/// shipping and any discount stay with the parent). A parent that keeps nothing gets status `split`
/// and is never exported; its children are exported as orders of their own. After a split, a PUT
/// of the parent may change its status only (`409 order_split` otherwise). All of it happens at
/// once or not at all; the feed gets `order.split`.
#[utoipa::path(post, path = "/api/v1/orders/{increment_id}/split", tag = "orders",
    params(("increment_id" = String, Path, description = "number of the order to split")),
    request_body = SplitInput,
    responses((status = 200, description = "The parent after the split, its `children` listed", body = OrderView),
        (status = 404, description = "No such order (`not_found`)", body = Problem),
        (status = 422, description = "A field is missing or wrong (`invalid_field`, `field` names it: no children, a child number given twice, a SKU the parent does not have, more units than the parent has left to give), or the body is not JSON (`malformed_json`)", body = Problem),
        (status = 409, description = "The order cannot be split: the warehouse has it or is receiving it (`order_locked`), it is cancelled (`order_canceled`), it has shipped completely (`order_complete`), it was split into children that took all of it (`order_split`); or a child's number is an existing order (`order_exists`, `fields` names it)", body = Problem)),
    security(("bearer" = [])))]
pub(super) async fn split_order(
    path: web::Path<String>,
    body: Body,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path_key("increment_id", path)?;
    let input: SplitInput = parse_json(&body)?;
    let settings = state.settings.clone();
    let view = on_pool(&state, move |conn| {
        orders::split::split(conn, &id, &input, &settings.channels)?;
        Ok(orders::get(conn, &id)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Deserialize)]
pub(super) struct OrderListQuery {
    status: Option<String>,
    source: Option<String>,
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
        ("source" = Option<String>, Query, description = "only orders from this source, e.g. `web`, `affiliate`, `marketplace:amazon`"),
        ("export_status" = Option<ExportStatus>, Query, description = "only orders whose export is in this status"),
        ("updated_after" = Option<DateTime<Utc>>, Query, description = "only orders changed strictly after this time, RFC 3339 (`2024-05-01T09:30:00Z`; percent-encode a `+` offset as `%2B`)"),
        ("limit" = Option<i64>, Query, description = "most orders per page, 1–200 (default 50)"),
        ("after" = Option<String>, Query, description = "the `next` of the previous page")),
    responses((status = 200, description = "A page of orders", body = OrderList),
        (status = 422, description = "A parameter is out of range (`invalid_field`)", body = Problem)),
    security(("bearer" = [])))]
pub(super) async fn list_orders(
    query: ApiQuery<OrderListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.0;
    let limit = page_limit(q.limit)?;
    let after = q.after.as_deref().map(order_position).transpose()?;
    let filter = orders::ListFilter {
        status: q.status,
        source: q.source,
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
