//! `/admin/audit`: every support action, from the console or the CLI — who, when, what, on which
//! records, under which filter, how many, with the note given — newest first, filtered by actor
//! and action, in keyset pages, and as a CSV of the filter.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use crate::audit::{self, AuditRow};
use crate::console::error::ConsoleError;
use crate::console::session::Staff;
use crate::console::view::{self, Chrome};
use crate::db;
use crate::http::AppState;

/// Registers the page's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/audit", web::get().to(list));
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Format {
    Csv,
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    actor: Option<String>,
    action: Option<String>,
    size: Option<i64>,
    /// The last id of the previous page (ids go down: newest first).
    after: Option<i64>,
    format: Option<Format>,
}

#[derive(Template)]
#[template(path = "pages/audit/list.html")]
struct ListPage {
    chrome: Chrome,
    actor: String,
    action: String,
    size: i64,
    sizes: [i64; 4],
    rows: Vec<AuditRow>,
    next: Option<String>,
    csv: String,
}

/// The most rows one CSV holds.
const CSV_MAX: i64 = 100_000;

async fn list(
    staff: Staff,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let q: ListQuery = view::query(&req)?;
    let size = view::page_size(q.size)?;
    let csv = q.format.is_some();
    let (actor, action) = (q.actor.clone(), q.action.clone());
    let (after, limit) = if csv {
        (None, CSV_MAX)
    } else {
        (q.after, size + 1)
    };
    let mut rows = db::blocking(&state.pool, "the console", move |conn| {
        Ok(audit::list(
            conn,
            after,
            actor.as_deref(),
            action.as_deref(),
            limit,
        )?)
    })
    .await?;
    if csv {
        return csv_of(rows);
    }
    let next = if rows.len() as i64 > size {
        rows.truncate(size as usize);
        rows.last()
            .map(|r| view::link_with(&req, "after", Some(&r.id.to_string())))
    } else {
        None
    };
    let csv = {
        let first = view::link_with(&req, "after", None);
        let sep = if first.contains('?') { '&' } else { '?' };
        format!("{first}{sep}format=csv")
    };
    view::render(&ListPage {
        chrome: Chrome::new(staff, "audit", "Audit log")
            .refreshing(state.settings.console.refresh_secs),
        actor: q.actor.unwrap_or_default(),
        action: q.action.unwrap_or_default(),
        size,
        sizes: view::PAGE_SIZES,
        rows,
        next,
        csv,
    })
}

fn csv_of(rows: Vec<AuditRow>) -> Result<HttpResponse, ConsoleError> {
    view::csv(
        "audit",
        &[
            "id", "at", "actor", "via", "action", "kind", "subjects", "filter", "count", "note",
        ],
        rows.into_iter().map(|r| {
            vec![
                r.id.to_string(),
                r.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                r.actor,
                r.via.as_str().to_string(),
                r.action,
                r.subject_kind,
                r.subjects,
                r.filter.unwrap_or_default(),
                r.count.to_string(),
                r.note.unwrap_or_default(),
            ]
        }),
    )
}
