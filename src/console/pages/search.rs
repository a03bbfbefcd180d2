//! `/admin/search?q=`: the one search box. A number that is a messageSeqId goes to its request (to
//! the request list filtered by it when several requests carry it); a SKU of the catalogue goes to
//! its stock page; an order number to the order's page; anything else gets a small page saying so,
//! with links to the list searches. Redirects are 303.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use crate::console::view::{self, Chrome};
use crate::console::{ConsoleError, Staff};
use crate::http::AppState;
use crate::queue::inspect;

/// What is percent-encoded in a SKU or order number put into a path or query: all but the
/// unreserved characters of RFC 3986.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Registers the page.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/search", web::get().to(search));
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    q: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/search/none.html")]
struct NonePage {
    chrome: Chrome,
    q: String,
    enc: String,
    numeric: bool,
}

/// Where a search leads.
enum Found {
    Request(i64),
    Requests(i64),
    Sku,
    Order,
    Nothing,
}

fn see_other(location: String) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

async fn search(
    req: HttpRequest,
    staff: Staff,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let query: SearchQuery = view::query(&req)?;
    let q = query.q.unwrap_or_default().trim().to_string();
    let enc = utf8_percent_encode(&q, COMPONENT).to_string();
    let numeric = q.parse::<i64>().ok();
    let term = q.clone();
    let found = if q.is_empty() {
        Found::Nothing
    } else {
        crate::db::blocking(&state.pool, "the console", move |conn| {
            if let Some(seq) = numeric {
                match inspect::ids_with_seq(conn, seq, 2)?.as_slice() {
                    [one] => return Ok(Found::Request(*one)),
                    [_, _, ..] => return Ok(Found::Requests(seq)),
                    [] => {}
                }
            }
            if crate::products::exists(conn, &term)? {
                return Ok(Found::Sku);
            }
            match crate::orders::get(conn, &term) {
                Ok(_) => Ok(Found::Order),
                Err(crate::orders::OrderError::NotFound(_)) => Ok(Found::Nothing),
                Err(e) => Err(anyhow::anyhow!("{e}")),
            }
        })
        .await?
    };
    match found {
        Found::Request(id) => Ok(see_other(format!("/admin/requests/{id}"))),
        Found::Requests(seq) => Ok(see_other(format!("/admin/requests?seq={seq}"))),
        Found::Sku => Ok(see_other(format!("/admin/stock/{enc}"))),
        Found::Order => Ok(see_other(format!("/admin/orders/{enc}"))),
        Found::Nothing => {
            let mut chrome = Chrome::new(staff, "search", "Nothing found");
            chrome.search = q.clone();
            view::render(&NonePage {
                chrome,
                q,
                enc,
                numeric: numeric.is_some(),
            })
        }
    }
}
