//! What every console page needs: its frame ([`Chrome`]), rendering, query strings that name the
//! field at fault, page sizes and links for keyset pagination, CSV downloads, pretty XML, and the
//! page that reports an action's outcome.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use serde::de::DeserializeOwned;

use super::error::ConsoleError;
use super::session::Staff;

/// The frame around a page: who is logged in, which section is open, the page title, the search
/// box's text and the auto-refresh offer. Every page template has a field `chrome` of this type
/// and `{% extends "base.html" %}`.
pub struct Chrome {
    /// The logged-in user (name, role, CSRF token).
    pub staff: Staff,
    /// The open section: `dashboard`, `requests`, `imports`, `exports`, `orders`, `channels`,
    /// `files`, `stock`, `rejections`, `audit` (or `search`).
    pub section: &'static str,
    /// The page title.
    pub title: String,
    /// What the search box shows.
    pub search: String,
    /// `Some(seconds)`: the page offers auto-refresh (lists and the dashboard).
    pub refresh: Option<u64>,
}

/// A link of the navigation bar.
pub struct NavItem {
    /// Where it goes.
    pub href: &'static str,
    /// What it says.
    pub label: &'static str,
    /// It is the open section.
    pub active: bool,
}

const NAV: &[(&str, &str, &str)] = &[
    ("dashboard", "/admin", "Dashboard"),
    ("requests", "/admin/requests", "Requests"),
    ("imports", "/admin/imports", "Imports"),
    ("exports", "/admin/exports", "Exports"),
    ("orders", "/admin/orders/lost", "Lost orders"),
    ("channels", "/admin/channels", "Channels"),
    ("files", "/admin/files", "Files"),
    ("stock", "/admin/stock", "Stock"),
    ("rejections", "/admin/rejections", "Rejected"),
    ("audit", "/admin/audit", "Audit"),
];

impl Chrome {
    /// The frame of a page in `section` titled `title`.
    pub fn new(staff: Staff, section: &'static str, title: impl Into<String>) -> Chrome {
        Chrome {
            staff,
            section,
            title: title.into(),
            search: String::new(),
            refresh: None,
        }
    }

    /// Offers auto-refresh every `secs` seconds (`console.refresh_secs`).
    pub fn refreshing(mut self, secs: u64) -> Chrome {
        self.refresh = Some(secs);
        self
    }

    /// The navigation bar.
    pub fn nav(&self) -> Vec<NavItem> {
        NAV.iter()
            .map(|(section, href, label)| NavItem {
                href,
                label,
                active: *section == self.section,
            })
            .collect()
    }
}

/// Renders a page as HTML (200).
pub fn render(page: &impl Template) -> Result<HttpResponse, ConsoleError> {
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page.render()?))
}

/// Parses the query string into `T`; a bad value is a [`ConsoleError::BadInput`] naming the
/// parameter. Empty parameters (`?sku=`, what an empty filter field sends) count as absent.
pub fn query<T: DeserializeOwned>(req: &HttpRequest) -> Result<T, ConsoleError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(req.query_string().as_bytes())
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&pairs)
        .finish();
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(encoded.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        ConsoleError::bad(
            if field == "." { "query" } else { &field },
            e.into_inner().to_string(),
        )
    })
}

/// The page sizes lists offer.
pub const PAGE_SIZES: [i64; 4] = [20, 50, 100, 200];

/// A list's page size from its `size` parameter (default 50); other values are refused.
pub fn page_size(size: Option<i64>) -> Result<i64, ConsoleError> {
    match size {
        None => Ok(50),
        Some(s) if PAGE_SIZES.contains(&s) => Ok(s),
        Some(_) => Err(ConsoleError::bad(
            "size",
            "must be 20, 50, 100 or 200 rows per page",
        )),
    }
}

/// This page's query string with `key` set to `value` (or removed), e.g. the next page's link:
/// `?state=dead&size=50&after=1234`. Filters stay, so every view is a link.
pub fn link_with(req: &HttpRequest, key: &str, value: Option<&str>) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        if k != key && !v.is_empty() {
            out.append_pair(&k, &v);
        }
    }
    if let Some(value) = value {
        out.append_pair(key, value);
    }
    let query = out.finish();
    if query.is_empty() {
        req.path().to_string()
    } else {
        format!("{}?{query}", req.path())
    }
}

/// A cell as written into a CSV download: a value that a spreadsheet would run as a formula
/// (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`.
pub fn neutralise(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_string(),
    }
}

/// A CSV download (`filename` without the extension) of `rows` under `headers`, every cell
/// neutralised.
pub fn csv(
    filename: &str,
    headers: &[&str],
    rows: impl IntoIterator<Item = Vec<String>>,
) -> Result<HttpResponse, ConsoleError> {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    w.write_record(headers).map_err(ConsoleError::internal)?;
    for row in rows {
        w.write_record(row.iter().map(|c| neutralise(c)))
            .map_err(ConsoleError::internal)?;
    }
    let bytes = w.into_inner().map_err(ConsoleError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{filename}.csv\""),
        ))
        .body(bytes))
}

/// `xml` re-indented for reading (two spaces per level); text that does not parse as XML comes
/// back as it was. The template escapes the result, so markup in it shows as text.
pub fn pretty_xml(xml: &str) -> String {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut writer = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => break,
            Ok(event) => {
                if writer.write_event(event).is_err() {
                    return xml.to_string();
                }
            }
            Err(_) => return xml.to_string(),
        }
    }
    String::from_utf8(writer.into_inner()).unwrap_or_else(|_| xml.to_string())
}

#[derive(Template)]
#[template(path = "done.html")]
struct DonePage<'a> {
    chrome: Chrome,
    kind: &'a str,
    message: &'a str,
    items: &'a [String],
    back: &'a str,
    back_label: &'a str,
}

/// The page an action answers with: what was done (`ok`) or why nothing was (`error`), the
/// records it touched, and a link back to where the user came from.
pub struct Outcome<'a> {
    /// `true`: the action was done.
    pub ok: bool,
    /// One sentence saying what happened.
    pub message: &'a str,
    /// The records touched (or refused), one line each.
    pub items: &'a [String],
    /// Where the link back goes (the list with its filter, the record).
    pub back: &'a str,
    /// What the link back says.
    pub back_label: &'a str,
}

/// Renders an action's [`Outcome`] inside `chrome`.
pub fn outcome(chrome: Chrome, o: &Outcome<'_>) -> Result<HttpResponse, ConsoleError> {
    let page = DonePage {
        chrome,
        kind: if o.ok { "ok" } else { "error" },
        message: o.message,
        items: o.items,
        back: o.back,
        back_label: o.back_label,
    };
    let status = if o.ok {
        actix_web::http::StatusCode::OK
    } else {
        actix_web::http::StatusCode::CONFLICT
    };
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(page.render()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised() {
        assert_eq!(neutralise("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(neutralise("-2"), "'-2");
        assert_eq!(neutralise("@cmd"), "'@cmd");
        assert_eq!(neutralise("+1"), "'+1");
        assert_eq!(neutralise("SKU-1"), "SKU-1");
    }

    #[test]
    fn xml_is_indented_and_broken_xml_kept() {
        let pretty = pretty_xml("<a><b>1</b></a>");
        assert_eq!(pretty, "<a>\n  <b>1</b>\n</a>");
        assert_eq!(pretty_xml("<a><b></a>"), "<a><b></a>");
    }
}
