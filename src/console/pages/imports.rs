//! `/admin/imports`: the import reports of applied inventory and shipment requests, filtered by
//! kind, line result, SKU and date, newest first; `/admin/imports/{request_id}`: one report's
//! lines (seq, SKU, source, units received, the adjustments, stored quantity, result, message).

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use serde::Deserialize;

use crate::console::view::{self, Chrome};
use crate::console::{ConsoleError, Staff};
use crate::http::AppState;
use crate::imports::LineOutcome;
use crate::imports::store::{self, LineFilter, ReportFilter, ReportHeader, ReportLine};
use crate::queue::inspect::operation_named;

/// The most rows one CSV download holds (from the page's cursor on).
pub(super) const CSV_MAX: i64 = 10_000;

/// Registers the page's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/imports", web::get().to(list))
        .route("/imports/{request_id}", web::get().to(detail));
}

/// A day given as `YYYY-MM-DD` (what `<input type=date>` sends) as its first moment (`end`: the
/// first moment of the next day, so the range includes the day named).
pub(super) fn day(
    field: &str,
    value: Option<&str>,
    end: bool,
) -> Result<Option<NaiveDateTime>, ConsoleError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let date = NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map_err(|_| ConsoleError::bad(field, "must be a date like 2026-12-31"))?;
    let start = date.and_time(chrono::NaiveTime::MIN);
    Ok(Some(if end {
        start + TimeDelta::days(1)
    } else {
        start
    }))
}

/// A line result as support names it (`failure` or `Failure`).
pub(super) fn outcome_named(value: &str) -> Result<LineOutcome, ConsoleError> {
    LineOutcome::ALL
        .iter()
        .copied()
        .find(|o| o.as_str().eq_ignore_ascii_case(value))
        .ok_or_else(|| ConsoleError::bad("result", "use success, duplicate, superseded or failure"))
}

/// Whether a CSV download was asked for (`format=csv`; `format=html` or none: the page).
pub(super) fn wants_csv(format: Option<&str>) -> Result<bool, ConsoleError> {
    match format {
        None | Some("html") => Ok(false),
        Some("csv") => Ok(true),
        Some(_) => Err(ConsoleError::bad("format", "use csv (or leave it out)")),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    kind: Option<String>,
    result: Option<String>,
    sku: Option<String>,
    from: Option<String>,
    to: Option<String>,
    after: Option<i64>,
    size: Option<i64>,
    format: Option<String>,
}

impl ListQuery {
    fn filter(&self) -> Result<ReportFilter, ConsoleError> {
        Ok(ReportFilter {
            operation: self
                .kind
                .as_deref()
                .map(operation_named)
                .transpose()
                .map_err(|e| ConsoleError::bad("kind", e))?,
            result: self.result.as_deref().map(outcome_named).transpose()?,
            sku: self.sku.as_ref().map(|s| s.trim().to_string()),
            from: day("from", self.from.as_deref(), false)?,
            until: day("to", self.to.as_deref(), true)?,
            before: self.after,
        })
    }
}

#[derive(Template)]
#[template(path = "pages/imports/list.html")]
struct ListPage {
    chrome: Chrome,
    kind: String,
    result: String,
    sku: String,
    from: String,
    to: String,
    size: i64,
    sizes: [i64; 4],
    rows: Vec<ReportHeader>,
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
    let filter = q.filter()?;
    let csv = wants_csv(q.format.as_deref())?;
    let limit = if csv { CSV_MAX } else { size + 1 };
    let mut rows = crate::db::blocking(&state.pool, "the console", move |conn| {
        Ok(store::list_reports(conn, &filter, limit)?)
    })
    .await?;
    if csv {
        return view::csv("imports", REPORT_HEADERS, rows.iter().map(report_row));
    }
    let more = rows.len() > usize::try_from(size).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(size).unwrap_or(usize::MAX));
    let next = more
        .then(|| rows.last().map(|r| r.request_id.to_string()))
        .flatten()
        .map(|last| view::link_with(&req, "after", Some(&last)));
    let page = ListPage {
        chrome: Chrome::new(staff, "imports", "Import reports")
            .refreshing(state.settings.console.refresh_secs),
        kind: q.kind.unwrap_or_default(),
        result: q.result.unwrap_or_default(),
        sku: q.sku.unwrap_or_default(),
        from: q.from.unwrap_or_default(),
        to: q.to.unwrap_or_default(),
        size,
        sizes: view::PAGE_SIZES,
        rows,
        next,
        csv: view::link_with(&req, "format", Some("csv")),
        first: q.after.map(|_| view::link_with(&req, "after", None)),
    };
    view::render(&page)
}

const REPORT_HEADERS: &[&str] = &[
    "request_id",
    "operation",
    "message_seq_id",
    "successes",
    "duplicates",
    "superseded",
    "failures",
    "created_at_utc",
];

fn report_row(r: &ReportHeader) -> Vec<String> {
    vec![
        r.request_id.to_string(),
        r.operation.as_str().to_string(),
        r.message_seq_id.to_string(),
        r.successes.to_string(),
        r.duplicates.to_string(),
        r.superseded.to_string(),
        r.failures.to_string(),
        r.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
    ]
}

#[derive(Debug, Deserialize)]
struct DetailQuery {
    result: Option<String>,
    sku: Option<String>,
    after: Option<i32>,
    size: Option<i64>,
    format: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/imports/detail.html")]
struct DetailPage {
    chrome: Chrome,
    header: ReportHeader,
    result: String,
    sku: String,
    size: i64,
    sizes: [i64; 4],
    lines: Vec<ReportLine>,
    next: Option<String>,
    csv: String,
    first: Option<String>,
}

async fn detail(
    req: HttpRequest,
    staff: Staff,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ConsoleError> {
    let request_id = path.into_inner();
    let q: DetailQuery = view::query(&req)?;
    let size = view::page_size(q.size)?;
    let csv = wants_csv(q.format.as_deref())?;
    let filter = LineFilter {
        result: q.result.as_deref().map(outcome_named).transpose()?,
        sku: q.sku.as_ref().map(|s| s.trim().to_string()),
        after: q.after,
    };
    let limit = if csv { CSV_MAX } else { size + 1 };
    let (header, mut lines) = crate::db::blocking(&state.pool, "the console", move |conn| {
        let Some(header) = store::report_header(conn, request_id)? else {
            return Ok((None, Vec::new()));
        };
        let lines = store::report_lines(conn, request_id, &filter, limit)?;
        Ok((Some(header), lines))
    })
    .await?;
    let header = header.ok_or_else(|| {
        ConsoleError::NotFound(format!("The import report of request {request_id}"))
    })?;
    if csv {
        let name = format!("import-{request_id}");
        return view::csv(&name, LINE_HEADERS, lines.iter().map(line_row));
    }
    let more = lines.len() > usize::try_from(size).unwrap_or(usize::MAX);
    lines.truncate(usize::try_from(size).unwrap_or(usize::MAX));
    let next = more
        .then(|| lines.last().map(|l| l.line_no.to_string()))
        .flatten()
        .map(|last| view::link_with(&req, "after", Some(&last)));
    let page = DetailPage {
        chrome: Chrome::new(
            staff,
            "imports",
            format!("Import report of request {request_id}"),
        ),
        header,
        result: q.result.unwrap_or_default(),
        sku: q.sku.unwrap_or_default(),
        size,
        sizes: view::PAGE_SIZES,
        lines,
        next,
        csv: view::link_with(&req, "format", Some("csv")),
        first: q.after.map(|_| view::link_with(&req, "after", None)),
    };
    view::render(&page)
}

/// The columns of an import-line CSV.
pub(super) const LINE_HEADERS: &[&str] = &[
    "request_id",
    "line_no",
    "seq",
    "sku",
    "source",
    "units_received",
    "adjusted_for_unsent_orders",
    "adjusted_for_quotes",
    "stored_qty",
    "result",
    "message",
    "reference",
    "created_at_utc",
];

/// An import line as a CSV row under [`LINE_HEADERS`].
pub(super) fn line_row(l: &ReportLine) -> Vec<String> {
    let opt = |v: Option<String>| v.unwrap_or_default();
    vec![
        l.request_id.to_string(),
        l.line_no.to_string(),
        opt(l.seq.map(|s| s.to_string())),
        l.sku.clone(),
        l.source.clone(),
        l.units_received.to_string(),
        l.units_adjusted_orders.to_string(),
        l.units_adjusted_quotes.to_string(),
        opt(l.stored_qty.map(|s| s.to_string())),
        l.result.as_str().to_string(),
        l.message.clone(),
        opt(l.reference.clone()),
        l.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
    ]
}
