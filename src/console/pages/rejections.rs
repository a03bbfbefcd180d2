//! `/admin/rejections`: the messages wharf refused (faults), newest first with keyset pagination:
//! when, why, who sent it (the authenticated caller or the claimed name) and the start of the body.
//! The excerpt is shown exactly as stored, and it was stored with credentials masked
//! (`queue::record_rejection`, and `queue::scrub` for rows from before masking): nothing here
//! unmasks or re-reads the sender's original.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::console::view::{self, Chrome};
use crate::console::{ConsoleError, Staff};
use crate::http::AppState;
use crate::queue::store::{self, RejectionRow};

/// The most rows one CSV download holds.
const CSV_MAX: i64 = 5000;

/// Registers the page.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/rejections", web::get().to(list));
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    after: Option<i64>,
    size: Option<i64>,
    format: Option<String>,
}

/// A page-size link.
struct SizeLink {
    size: i64,
    href: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "pages/rejections/list.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<RejectionRow>,
    sizes: Vec<SizeLink>,
    next: Option<String>,
    newest: Option<String>,
    csv: String,
}

fn cells(r: &RejectionRow) -> Vec<String> {
    let j = &r.rejection;
    vec![
        j.id.to_string(),
        j.received_at.format("%Y-%m-%d %H:%M:%S").to_string(),
        j.caller.clone().unwrap_or_default(),
        j.operation.clone().unwrap_or_default(),
        j.reason.clone(),
        r.excerpt.clone(),
    ]
}

async fn list(
    req: HttpRequest,
    staff: Staff,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let q: ListQuery = view::query(&req)?;
    let size = view::page_size(q.size)?;
    let csv = match q.format.as_deref() {
        None => false,
        Some("csv") => true,
        Some(_) => {
            return Err(ConsoleError::bad(
                "format",
                "the only download is format=csv",
            ));
        }
    };
    let limit = if csv { CSV_MAX } else { size + 1 };
    let after = q.after;
    let mut rows = crate::db::blocking(&state.pool, "the console", move |conn| {
        Ok(store::rejections_page(conn, after, limit)?)
    })
    .await?;
    if csv {
        return view::csv(
            "rejections",
            &[
                "id",
                "received_at_utc",
                "caller",
                "operation",
                "reason",
                "excerpt",
            ],
            rows.iter().map(cells),
        );
    }
    let more = rows.len() as i64 > size;
    rows.truncate(usize::try_from(size).unwrap_or(0));
    let next = match rows.last() {
        Some(last) if more => Some(view::link_with(
            &req,
            "after",
            Some(&last.rejection.id.to_string()),
        )),
        _ => None,
    };
    let page = ListPage {
        chrome: Chrome::new(staff, "rejections", "Rejected messages")
            .refreshing(state.settings.console.refresh_secs),
        rows,
        sizes: view::PAGE_SIZES
            .iter()
            .map(|&s| SizeLink {
                size: s,
                href: view::link_with(&req, "size", Some(&s.to_string())),
                current: s == size,
            })
            .collect(),
        next,
        newest: after.map(|_| view::link_with(&req, "after", None)),
        csv: view::link_with(&req, "format", Some("csv")),
    };
    view::render(&page)
}
