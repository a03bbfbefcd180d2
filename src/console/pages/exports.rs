//! `/admin/exports`: the exchange log (what wharf sent the warehouse and what came back), with
//! the items' verdicts and the transport outcome, filtered by kind, outcome, date and an order
//! number or SKU in the lines, newest first; `/admin/exports/{id}`: one exchange's lines and the
//! XML sent and received (pretty-printed, escaped), each also as a raw download.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::imports::{CSV_MAX, day, wants_csv};
use crate::console::view::{self, Chrome};
use crate::console::{ConsoleError, Staff};
use crate::http::AppState;
use crate::outbound::exchange::{
    self as store, Exchange, ExportFilter, ExportLineView, ExportSummary, LogKind,
};

/// Registers the page's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/exports", web::get().to(list))
        .route("/exports/{id}", web::get().to(detail))
        .route("/exports/{id}/{part}", web::get().to(raw));
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    kind: Option<String>,
    outcome: Option<String>,
    failures: Option<String>,
    from: Option<String>,
    to: Option<String>,
    r#ref: Option<String>,
    after: Option<i64>,
    size: Option<i64>,
    format: Option<String>,
}

const OUTCOMES: &[Exchange] = &[
    Exchange::Answered,
    Exchange::TransportError,
    Exchange::HttpError,
    Exchange::BadAnswer,
    Exchange::Exception,
];

impl ListQuery {
    fn filter(&self) -> Result<ExportFilter, ConsoleError> {
        let kind = self
            .kind
            .as_deref()
            .map(|k| {
                LogKind::parse(k)
                    .ok_or_else(|| ConsoleError::bad("kind", "use order, product or cancel"))
            })
            .transpose()?;
        let outcome = self
            .outcome
            .as_deref()
            .map(|o| {
                Exchange::parse(o).ok_or_else(|| {
                    ConsoleError::bad(
                        "outcome",
                        "use ok, transport_error, http_error, bad_answer or exception",
                    )
                })
            })
            .transpose()?;
        let with_failures = match self.failures.as_deref() {
            None => false,
            Some("1" | "on" | "yes") => true,
            Some(_) => return Err(ConsoleError::bad("failures", "use 1 (or leave it out)")),
        };
        Ok(ExportFilter {
            kind,
            outcome,
            with_failures,
            from: day("from", self.from.as_deref(), false)?,
            until: day("to", self.to.as_deref(), true)?,
            reference: self.r#ref.as_ref().map(|s| s.trim().to_string()),
            before: self.after,
        })
    }
}

/// An exchange as listed, with its outcome word.
struct Row {
    s: ExportSummary,
    outcome: &'static str,
}

fn outcome_word(s: &ExportSummary) -> &'static str {
    s.exchange().map_or("unknown", Exchange::as_str)
}

#[derive(Template)]
#[template(path = "pages/exports/list.html")]
struct ListPage {
    chrome: Chrome,
    kind: String,
    outcome: String,
    failures: bool,
    from: String,
    to: String,
    reference: String,
    size: i64,
    sizes: [i64; 4],
    outcomes: Vec<&'static str>,
    rows: Vec<Row>,
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
    let failures = filter.with_failures;
    let csv = wants_csv(q.format.as_deref())?;
    let limit = if csv { CSV_MAX } else { size + 1 };
    let mut found = crate::db::blocking(&state.pool, "the console", move |conn| {
        Ok(store::list_exports(conn, &filter, limit)?)
    })
    .await?;
    if csv {
        return view::csv("exports", EXPORT_HEADERS, found.iter().map(export_row));
    }
    let cap = usize::try_from(size).unwrap_or(usize::MAX);
    let more = found.len() > cap;
    found.truncate(cap);
    let next = more
        .then(|| found.last().map(|r| r.id.to_string()))
        .flatten()
        .map(|last| view::link_with(&req, "after", Some(&last)));
    let page = ListPage {
        chrome: Chrome::new(staff, "exports", "Exports")
            .refreshing(state.settings.console.refresh_secs),
        kind: q.kind.unwrap_or_default(),
        outcome: q.outcome.unwrap_or_default(),
        failures,
        from: q.from.unwrap_or_default(),
        to: q.to.unwrap_or_default(),
        reference: q.r#ref.unwrap_or_default(),
        size,
        sizes: view::PAGE_SIZES,
        outcomes: OUTCOMES.iter().map(|o| o.as_str()).collect(),
        rows: found
            .into_iter()
            .map(|s| Row {
                outcome: outcome_word(&s),
                s,
            })
            .collect(),
        next,
        csv: view::link_with(&req, "format", Some("csv")),
        first: q.after.map(|_| view::link_with(&req, "after", None)),
    };
    view::render(&page)
}

const EXPORT_HEADERS: &[&str] = &[
    "id",
    "message_id",
    "kind",
    "operation",
    "started_at_utc",
    "outcome",
    "http_status",
    "items",
    "successes",
    "duplicates",
    "failures",
    "error",
];

fn export_row(s: &ExportSummary) -> Vec<String> {
    vec![
        s.id.to_string(),
        s.message_id.clone(),
        s.kind.clone(),
        s.operation.clone(),
        s.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
        outcome_word(s).to_string(),
        s.http_status.map(|h| h.to_string()).unwrap_or_default(),
        s.items.to_string(),
        s.successes.to_string(),
        s.duplicates.to_string(),
        s.failures.to_string(),
        s.error.clone().unwrap_or_default(),
    ]
}

#[derive(Debug, Deserialize)]
struct DetailQuery {
    after: Option<i32>,
    size: Option<i64>,
}

#[derive(Template)]
#[template(path = "pages/exports/detail.html")]
struct DetailPage {
    chrome: Chrome,
    s: ExportSummary,
    outcome: &'static str,
    url: String,
    sent: Option<String>,
    received: Option<String>,
    lines: Vec<ExportLineView>,
    next: Option<String>,
    first: Option<String>,
}

async fn detail(
    req: HttpRequest,
    staff: Staff,
    state: web::Data<AppState>,
    path: web::Path<i64>,
) -> Result<HttpResponse, ConsoleError> {
    let id = path.into_inner();
    let q: DetailQuery = view::query(&req)?;
    let size = view::page_size(q.size)?;
    let after = q.after;
    let (found, mut lines) = crate::db::blocking(&state.pool, "the console", move |conn| {
        let Some(found) = store::export_documents(conn, id)? else {
            return Ok((None, Vec::new()));
        };
        Ok((
            Some(found),
            store::export_lines_page(conn, id, after, size + 1)?,
        ))
    })
    .await?;
    let store::ExportDocuments {
        summary: s,
        url,
        sent,
        received,
    } = found.ok_or_else(|| ConsoleError::NotFound(format!("Export {id}")))?;
    let cap = usize::try_from(size).unwrap_or(usize::MAX);
    let more = lines.len() > cap;
    lines.truncate(cap);
    let next = more
        .then(|| lines.last().map(|l| l.line_no.to_string()))
        .flatten()
        .map(|last| view::link_with(&req, "after", Some(&last)));
    let page = DetailPage {
        chrome: Chrome::new(staff, "exports", format!("Export {id}")),
        outcome: outcome_word(&s),
        s,
        url,
        sent: sent.as_deref().map(view::pretty_xml),
        received: received.as_deref().map(view::pretty_xml),
        lines,
        next,
        first: q.after.map(|_| view::link_with(&req, "after", None)),
    };
    view::render(&page)
}

/// `/admin/exports/{id}/sent.xml` and `/admin/exports/{id}/received.txt`: the exact bytes, as a
/// download (never rendered by the browser).
async fn raw(
    _staff: Staff,
    state: web::Data<AppState>,
    path: web::Path<(i64, String)>,
) -> Result<HttpResponse, ConsoleError> {
    let (id, part) = path.into_inner();
    let sent = match part.as_str() {
        "sent.xml" => true,
        "received.txt" => false,
        _ => return Err(ConsoleError::NotFound(format!("The export page {part}"))),
    };
    let found = crate::db::blocking(&state.pool, "the console", move |conn| {
        Ok(store::export_documents(conn, id)?)
    })
    .await?;
    let docs = found.ok_or_else(|| ConsoleError::NotFound(format!("Export {id}")))?;
    let body = if sent { docs.sent } else { docs.received }.ok_or_else(|| {
        ConsoleError::NotFound(format!(
            "The {} of export {id}",
            if sent { "document sent" } else { "answer" }
        ))
    })?;
    let name = format!("export-{id}-{part}");
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ))
        .body(body))
}
