//! `/admin/stock?sku=`: SKUs (all, or those starting with what was typed) with their quantity per
//! source; `/admin/stock/{sku}`: per source the quantity, the high-water sequence id and when it
//! was set, and the history — every import line for the SKU (applied, duplicate, superseded,
//! failed) with its adjustments, newest first — plus what would adjust a line arriving now.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::TimeDelta;
use serde::Deserialize;

use super::imports::{CSV_MAX, LINE_HEADERS, line_row, wants_csv};
use crate::config::Adjust;
use crate::console::view::{self, Chrome};
use crate::console::{ConsoleError, Staff};
use crate::http::AppState;
use crate::imports::store::{self as imports, LinePosition, ReportLine};
use crate::inventory::store::{self, StockLevelRow, UnsentOrder};

/// Registers the page's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/stock", web::get().to(list))
        .route("/stock/{sku}", web::get().to(detail));
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    sku: Option<String>,
    after: Option<String>,
    size: Option<i64>,
    format: Option<String>,
}

/// One SKU of the list with its rows per source.
struct SkuRow {
    sku: String,
    levels: Vec<StockLevelRow>,
}

#[derive(Template)]
#[template(path = "pages/stock/list.html")]
struct ListPage {
    chrome: Chrome,
    sku: String,
    size: i64,
    sizes: [i64; 4],
    rows: Vec<SkuRow>,
    next: Option<String>,
    csv: String,
    first: Option<String>,
}

async fn list(
    req: HttpRequest,
    staff: Staff,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let q: ListQuery = view::query(&req)?;
    let size = view::page_size(q.size)?;
    let csv = wants_csv(q.format.as_deref())?;
    let limit = if csv { CSV_MAX } else { size + 1 };
    let prefix = q.sku.as_ref().map(|s| s.trim().to_string());
    let after = q.after.clone();
    let (skus, levels) = crate::db::blocking(&state.pool, "the console", move |conn| {
        let skus = store::list_skus(conn, prefix.as_deref(), after.as_deref(), limit)?;
        let levels = store::levels(conn, &skus, None)?;
        Ok((skus, levels))
    })
    .await?;
    if csv {
        let rows = levels.iter().map(|l| {
            vec![
                l.sku.clone(),
                l.source.clone(),
                l.qty.to_string(),
                l.last_seq.to_string(),
                l.updated_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            ]
        });
        let headers = &["sku", "source", "qty", "last_seq", "updated_at_utc"];
        return view::csv("stock", headers, rows);
    }
    let cap = usize::try_from(size).unwrap_or(usize::MAX);
    let more = skus.len() > cap;
    let mut by_sku: HashMap<String, Vec<StockLevelRow>> = HashMap::new();
    for l in levels {
        by_sku.entry(l.sku.clone()).or_default().push(l);
    }
    let rows: Vec<SkuRow> = skus
        .into_iter()
        .take(cap)
        .map(|sku| SkuRow {
            levels: by_sku.remove(&sku).unwrap_or_default(),
            sku,
        })
        .collect();
    let next = more
        .then(|| rows.last().map(|r| r.sku.clone()))
        .flatten()
        .map(|last| view::link_with(&req, "after", Some(&last)));
    let page = ListPage {
        chrome: Chrome::new(staff, "stock", "Stock"),
        sku: q.sku.unwrap_or_default(),
        size,
        sizes: view::PAGE_SIZES,
        rows,
        next,
        csv: view::link_with(&req, "format", Some("csv")),
        first: q.after.map(|_| view::link_with(&req, "after", None)),
    };
    view::render(&page)
}

#[derive(Debug, Deserialize)]
struct DetailQuery {
    source: Option<String>,
    after: Option<String>,
    size: Option<i64>,
    format: Option<String>,
}

/// A history cursor: `<request id>.<line no>`.
fn position(value: Option<&str>) -> Result<Option<LinePosition>, ConsoleError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let bad = || ConsoleError::bad("after", "must be <request id>.<line number>, e.g. 1234.5");
    let (request, line) = value.split_once('.').ok_or_else(bad)?;
    Ok(Some((
        request.parse().map_err(|_| bad())?,
        line.parse().map_err(|_| bad())?,
    )))
}

/// What would adjust a line for the SKU arriving now (as `[inventory] adjust` says).
struct Adjusting {
    adjust: &'static str,
    orders: Vec<UnsentOrder>,
    order_units: i64,
    quote_units: Option<i64>,
}

/// One line of the history with its request's operation.
struct HistoryLine {
    line: ReportLine,
    kind: &'static str,
}

#[derive(Template)]
#[template(path = "pages/stock/detail.html")]
struct DetailPage {
    chrome: Chrome,
    sku: String,
    source: String,
    levels: Vec<StockLevelRow>,
    history: Vec<HistoryLine>,
    adjusting: Option<Adjusting>,
    size: i64,
    sizes: [i64; 4],
    next: Option<String>,
    csv: String,
    first: Option<String>,
}

/// Most unsent orders listed on a SKU's page.
const ORDERS_SHOWN: i64 = 50;

fn adjusting(
    conn: &mut crate::db::DbConnection,
    sku: &str,
    settings: &crate::config::InventorySettings,
) -> anyhow::Result<Option<Adjusting>> {
    if settings.adjust == Adjust::None {
        return Ok(None);
    }
    let now = crate::db::now();
    let since = now - TimeDelta::days(settings.unsent_order_cutoff_days);
    let orders =
        store::unsent_orders_of(conn, sku, &settings.unsent_statuses, since, ORDERS_SHOWN)?;
    let order_units = orders.iter().map(|o| i64::from(o.qty)).sum();
    let quote_units = if settings.adjust == Adjust::UnsentOrdersAndQuotes {
        let since = now - TimeDelta::days(settings.active_quote_cutoff_days);
        let units = crate::reservations::store::units_in_active_carts(conn, &[sku], since)?;
        Some(units.get(sku).copied().unwrap_or(0))
    } else {
        None
    };
    Ok(Some(Adjusting {
        adjust: match settings.adjust {
            Adjust::UnsentOrders => "unsent orders",
            _ => "unsent orders and active carts",
        },
        orders,
        order_units,
        quote_units,
    }))
}

async fn detail(
    req: HttpRequest,
    staff: Staff,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let sku = path.into_inner();
    let q: DetailQuery = view::query(&req)?;
    let size = view::page_size(q.size)?;
    let csv = wants_csv(q.format.as_deref())?;
    let before = position(q.after.as_deref())?;
    let limit = if csv { CSV_MAX } else { size + 1 };
    let (s, source) = (sku.clone(), q.source.clone());
    let settings = state.settings.clone();
    let (levels, history, adjusting) =
        crate::db::blocking(&state.pool, "the console", move |conn| {
            let levels = store::levels(conn, std::slice::from_ref(&s), source.as_deref())?;
            let history = imports::sku_history(conn, &s, source.as_deref(), before, limit)?;
            let adjusting = if csv {
                None
            } else {
                adjusting(conn, &s, &settings.inventory)?
            };
            Ok((levels, history, adjusting))
        })
        .await?;
    if csv {
        let name = format!(
            "stock-history-{}",
            sku.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        return view::csv(
            &name,
            LINE_HEADERS,
            history.iter().map(|(l, _)| line_row(l)),
        );
    }
    if levels.is_empty() && history.is_empty() {
        return Err(ConsoleError::NotFound(format!("Stock of SKU {sku}")));
    }
    let cap = usize::try_from(size).unwrap_or(usize::MAX);
    let more = history.len() > cap;
    let history: Vec<HistoryLine> = history
        .into_iter()
        .take(cap)
        .map(|(line, op)| HistoryLine {
            line,
            kind: crate::queue::Operation::parse(&op).map_or("unknown", |o| o.as_str()),
        })
        .collect();
    let next = more
        .then(|| {
            history
                .last()
                .map(|h| format!("{}.{}", h.line.request_id, h.line.line_no))
        })
        .flatten()
        .map(|last| view::link_with(&req, "after", Some(&last)));
    let page = DetailPage {
        chrome: Chrome::new(staff, "stock", format!("Stock of {sku}")),
        sku,
        source: q.source.unwrap_or_default(),
        levels,
        history,
        adjusting,
        size,
        sizes: view::PAGE_SIZES,
        next,
        csv: view::link_with(&req, "format", Some("csv")),
        first: q.after.map(|_| view::link_with(&req, "after", None)),
    };
    view::render(&page)
}
