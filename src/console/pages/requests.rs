//! `/admin/requests`: the received requests, filtered by everything support asks about (operation,
//! state, received time, messageSeqId, SKU, order number, caller, conflict flag), newest first with
//! keyset pagination; one request in full at `/admin/requests/{id}` with its exact bytes at
//! `…/raw`; and the operator actions requeue and reprocess on one request, on selected ones, or on
//! all requests matching a filter (each confirmed on a second page, each one audit row). The
//! actions are `queue::lifecycle`'s, the same the CLI uses.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};
use serde::Deserialize;

use crate::audit::Via;
use crate::console::view::{self, Chrome, Outcome};
use crate::console::{ConsoleError, Staff};
use crate::http::AppState;
use crate::queue::RequestState;
use crate::queue::inspect::{self, ListedRequest, RequestDetail, RequestFilter, StateFilter};
use crate::queue::lifecycle::{self, By, Expected, SupportAction, SupportError};

/// The most rows one CSV download holds (the newest of the filter, from the page's position).
const CSV_MAX: i64 = 5000;

/// The parameters that make up a filter (the rest place a page: `after`, `size`, `format`).
const FILTER_KEYS: &[&str] = &[
    "operation",
    "state",
    "from",
    "to",
    "seq",
    "sku",
    "order",
    "caller",
    "conflict",
];

/// Registers the pages and actions.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/requests", web::get().to(list))
        .route("/requests/requeue", web::post().to(requeue))
        .route("/requests/reprocess", web::post().to(reprocess))
        .route("/requests/{id}", web::get().to(show))
        .route("/requests/{id}/raw", web::get().to(raw))
        .route("/requests/{id}/lines.csv", web::get().to(lines_csv));
}

/// The list's query string.
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    operation: Option<String>,
    state: Option<String>,
    from: Option<String>,
    to: Option<String>,
    seq: Option<i64>,
    sku: Option<String>,
    order: Option<String>,
    caller: Option<String>,
    conflict: Option<String>,
    after: Option<i64>,
    size: Option<i64>,
    format: Option<String>,
}

/// `from`/`to` as a UTC time: a date (`to` then means the whole day), or a date and time to the
/// minute or second (`to` then includes that minute or second). A trailing `Z` is allowed.
fn parse_time(field: &str, text: &str, end: bool) -> Result<NaiveDateTime, ConsoleError> {
    let text = text.trim().trim_end_matches('Z');
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let start = d.and_time(NaiveTime::MIN);
        return Ok(if end {
            start + TimeDelta::days(1)
        } else {
            start
        });
    }
    let formats = [
        ("%Y-%m-%dT%H:%M:%S%.f", TimeDelta::seconds(1)),
        ("%Y-%m-%d %H:%M:%S%.f", TimeDelta::seconds(1)),
        ("%Y-%m-%dT%H:%M", TimeDelta::minutes(1)),
        ("%Y-%m-%d %H:%M", TimeDelta::minutes(1)),
    ];
    for (format, step) in formats {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(if end { t + step } else { t });
        }
    }
    Err(ConsoleError::bad(
        field,
        format!(
            "{text:?} is not a time; use a date (2026-12-01) or a UTC date and time \
             (2026-12-01T14:30 or 2026-12-01 14:30:00)"
        ),
    ))
}

/// The filter a query string describes (page position and size left at their defaults).
fn parse_filter(q: &ListQuery) -> Result<RequestFilter, ConsoleError> {
    let state = q
        .state
        .as_deref()
        .map(str::parse::<StateFilter>)
        .transpose()
        .map_err(|e| ConsoleError::bad("state", e))?;
    let operation = q
        .operation
        .as_deref()
        .map(inspect::operation_named)
        .transpose()
        .map_err(|e| ConsoleError::bad("operation", e))?;
    let conflict = match q.conflict.as_deref() {
        None => None,
        Some("yes") => Some(true),
        Some("no") => Some(false),
        Some(_) => return Err(ConsoleError::bad("conflict", "use yes or no")),
    };
    let received_from = q
        .from
        .as_deref()
        .map(|t| parse_time("from", t, false))
        .transpose()?;
    let received_before =
        q.to.as_deref()
            .map(|t| parse_time("to", t, true))
            .transpose()?;
    Ok(RequestFilter {
        state,
        operation,
        message_seq_id: q.seq,
        sku: q.sku.clone(),
        order: q.order.clone(),
        caller: q.caller.clone(),
        conflict,
        received_from,
        received_before,
        before_id: None,
        limit: 1,
    })
}

/// The filter part of a query string (what an "all matching" action carries and re-evaluates).
fn filter_string(query: &str) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if FILTER_KEYS.contains(&k.as_ref()) && !v.is_empty() {
            out.append_pair(&k, &v);
        }
    }
    out.finish()
}

/// A filter string (as [`filter_string`] makes it) parsed back; empty values count as absent, as
/// on the list page.
fn parse_filter_string(text: &str) -> Result<RequestFilter, ConsoleError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(text.as_bytes())
        .filter(|(k, v)| FILTER_KEYS.contains(&k.as_ref()) && !v.is_empty())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&pairs)
        .finish();
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(encoded.as_bytes()));
    let q: ListQuery = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        ConsoleError::bad(&field, e.into_inner().to_string())
    })?;
    parse_filter(&q)
}

/// One listed request, as the table and the CSV show it.
struct Row {
    id: i64,
    received_at: NaiveDateTime,
    operation: &'static str,
    seq: i64,
    caller: String,
    state: &'static str,
    failures: i32,
    attempts: i32,
    lines: i32,
    receipts: i32,
    conflict: bool,
    error: String,
}

impl Row {
    fn of(r: ListedRequest) -> Row {
        let s = r.summary;
        let failures = r.report.map_or(0, |c| c.failures);
        Row {
            id: s.id,
            received_at: s.received_at,
            operation: s.operation.as_str(),
            seq: s.message_seq_id,
            caller: s.caller,
            state: if failures > 0 {
                "failed"
            } else {
                s.state.as_str()
            },
            failures,
            attempts: s.attempts,
            lines: s.line_count,
            receipts: s.receipts,
            conflict: s.conflict,
            error: s.last_error.or(r.first_failure).unwrap_or_default(),
        }
    }

    /// The error cut for the table (the detail page has it whole).
    fn short_error(&self) -> String {
        let first = self.error.lines().next().unwrap_or("");
        if first.chars().count() > 120 || first.len() < self.error.trim_end().len() {
            format!("{}…", first.chars().take(119).collect::<String>())
        } else {
            first.to_string()
        }
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.received_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            self.operation.to_string(),
            self.seq.to_string(),
            self.caller.clone(),
            self.state.to_string(),
            self.failures.to_string(),
            self.attempts.to_string(),
            self.lines.to_string(),
            self.receipts.to_string(),
            if self.conflict { "yes" } else { "no" }.to_string(),
            self.error.clone(),
        ]
    }
}

const CSV_HEADERS: &[&str] = &[
    "id",
    "received_at_utc",
    "operation",
    "message_seq_id",
    "caller",
    "state",
    "failed_lines",
    "attempts",
    "lines",
    "receipts",
    "conflict",
    "error",
];

/// A `<select>` option.
struct Choice {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

fn choices(options: &[(&'static str, &'static str)], current: Option<&str>) -> Vec<Choice> {
    options
        .iter()
        .map(|&(value, label)| Choice {
            value,
            label,
            selected: current.unwrap_or("") == value,
        })
        .collect()
}

/// A page-size link.
struct SizeLink {
    size: i64,
    href: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "pages/requests/list.html")]
struct ListPage {
    chrome: Chrome,
    operations: Vec<Choice>,
    states: Vec<Choice>,
    conflicts: Vec<Choice>,
    from: String,
    to: String,
    seq: String,
    sku: String,
    order: String,
    caller: String,
    size: i64,
    sizes: Vec<SizeLink>,
    rows: Vec<Row>,
    next: Option<String>,
    newest: Option<String>,
    csv: String,
    filter: String,
    /// The "all N matching" offer: `Some(N)` when 0 < N ≤ the cap.
    bulk: Option<i64>,
    /// More than the cap match.
    too_many: bool,
    bulk_max: i64,
}

impl ListPage {
    fn form_values(&mut self, q: &ListQuery) {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        self.from = text(&q.from);
        self.to = text(&q.to);
        self.seq = q.seq.map(|s| s.to_string()).unwrap_or_default();
        self.sku = text(&q.sku);
        self.order = text(&q.order);
        self.caller = text(&q.caller);
    }
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
    let mut filter = parse_filter(&q)?;
    filter.before_id = q.after;
    filter.limit = if csv { CSV_MAX } else { size + 1 };
    let bulk_max = state.settings.console.bulk_max;
    // "All N matching": counted only up to the cap (never a full count), and only for operators.
    let count = staff.is_operator() && !csv;
    let (listed, matching) = crate::db::blocking(&state.pool, "the console", move |conn| {
        let listed = inspect::list(conn, &filter)?;
        let matching = if count {
            let ids = inspect::matching_ids(conn, &filter, bulk_max.saturating_add(1))?;
            Some(i64::try_from(ids.len()).unwrap_or(i64::MAX))
        } else {
            None
        };
        Ok((listed, matching))
    })
    .await?;
    let mut rows: Vec<Row> = listed.into_iter().map(Row::of).collect();
    if csv {
        return view::csv("requests", CSV_HEADERS, rows.iter().map(Row::cells));
    }
    let more = rows.len() as i64 > size;
    rows.truncate(usize::try_from(size).unwrap_or(0));
    let next = match rows.last() {
        Some(last) if more => Some(view::link_with(&req, "after", Some(&last.id.to_string()))),
        _ => None,
    };
    let chrome =
        Chrome::new(staff, "requests", "Requests").refreshing(state.settings.console.refresh_secs);
    let [operations, states, conflicts] = options(&q);
    let mut page = ListPage {
        chrome,
        operations,
        states,
        conflicts,
        from: String::new(),
        to: String::new(),
        seq: String::new(),
        sku: String::new(),
        order: String::new(),
        caller: String::new(),
        size,
        sizes: size_links(&req, size),
        rows,
        next,
        newest: q.after.map(|_| view::link_with(&req, "after", None)),
        csv: view::link_with(&req, "format", Some("csv")),
        filter: filter_string(req.query_string()),
        bulk: matching.filter(|n| (1..=bulk_max).contains(n)),
        too_many: matching.is_some_and(|n| n > bulk_max),
        bulk_max,
    };
    page.form_values(&q);
    view::render(&page)
}

/// The filter form's `<select>` options: operation, state, conflict.
fn options(q: &ListQuery) -> [Vec<Choice>; 3] {
    [
        choices(
            &[
                ("", "any"),
                ("inventory.update", "inventory.update"),
                ("shipment.create", "shipment.create"),
            ],
            q.operation.as_deref(),
        ),
        choices(
            &[
                ("", "any"),
                ("queued", "queued"),
                ("retrying", "retrying"),
                ("processing", "processing"),
                ("processed", "processed"),
                ("failed", "failed (processed, failed lines)"),
                ("dead", "dead"),
            ],
            q.state.as_deref(),
        ),
        choices(
            &[
                ("", "any"),
                ("yes", "conflicts only"),
                ("no", "no conflict"),
            ],
            q.conflict.as_deref(),
        ),
    ]
}

fn size_links(req: &HttpRequest, size: i64) -> Vec<SizeLink> {
    view::PAGE_SIZES
        .iter()
        .map(|&s| SizeLink {
            size: s,
            href: view::link_with(req, "size", Some(&s.to_string())),
            current: s == size,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "pages/requests/show.html")]
struct ShowPage {
    chrome: Chrome,
    d: RequestDetail,
    state: &'static str,
    body: Option<String>,
    peer: Option<(i64, Option<String>)>,
    answer: String,
    can_requeue: bool,
    can_reprocess: bool,
}

async fn show(
    path: web::Path<i64>,
    staff: Staff,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let id = path.into_inner();
    let found = crate::db::blocking(&state.pool, "the console", move |conn| {
        let found = inspect::detail(conn, id)?;
        if found.is_some() {
            // Support has now seen its import failures: their incident can resolve (as after
            // `wharf requests show`).
            crate::imports::store::mark_viewed(conn, id, crate::db::now())?;
        }
        Ok(found)
    })
    .await?;
    let Some(mut d) = found else {
        return Err(ConsoleError::NotFound(format!("Request #{id}")));
    };
    let s = &d.summary;
    let failed = d.report.as_ref().is_some_and(|(c, _)| c.failures > 0);
    let page = ShowPage {
        state: if failed { "failed" } else { s.state.as_str() },
        body: d.progress.body.as_deref().map(view::pretty_xml),
        peer: d
            .conflict_peer
            .take()
            .map(|(peer, body)| (peer, body.as_deref().map(view::pretty_xml))),
        answer: crate::soap::received_text(s.message_seq_id),
        can_requeue: s.state == RequestState::Dead
            || (s.state == RequestState::Queued && s.attempts > 0),
        can_reprocess: s.state == RequestState::Processed,
        chrome: Chrome::new(staff, "requests", format!("Request #{id}")),
        d,
    };
    view::render(&page)
}

async fn raw(
    path: web::Path<i64>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let id = path.into_inner();
    let body = crate::db::blocking(&state.pool, "the console", move |conn| {
        Ok(inspect::body_of(conn, id)?)
    })
    .await?;
    match body {
        None => Err(ConsoleError::NotFound(format!("Request #{id}"))),
        Some(None) => Err(ConsoleError::NotFound(format!(
            "The body of request #{id} (retention dropped it; the request's summary is kept)"
        ))),
        Some(Some(body)) => Ok(HttpResponse::Ok()
            .content_type("application/xml")
            .insert_header((
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"request-{id}.xml\""),
            ))
            .body(body)),
    }
}

/// The request's lines with their import report results, as CSV (one row per received line).
async fn lines_csv(
    path: web::Path<i64>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let id = path.into_inner();
    let found = crate::db::blocking(&state.pool, "the console", move |conn| {
        Ok(inspect::detail(conn, id)?)
    })
    .await?;
    let Some(d) = found else {
        return Err(ConsoleError::NotFound(format!("Request #{id}")));
    };
    let report = d.report.map(|(_, lines)| lines).unwrap_or_default();
    let rows = d.lines.into_iter().map(|l| {
        let r = report.iter().find(|r| r.line_no == l.line_no);
        let opt = |v: Option<String>| v.unwrap_or_default();
        vec![
            l.line_no.to_string(),
            l.sku,
            l.source,
            l.qty.to_string(),
            opt(l.seq.map(|s| s.to_string())),
            opt(r.map(|r| r.units_adjusted_orders.to_string())),
            opt(r.map(|r| r.units_adjusted_quotes.to_string())),
            opt(r.and_then(|r| r.stored_qty).map(|q| q.to_string())),
            opt(r.map(|r| r.result.clone())),
            opt(r.map(|r| r.message.clone())),
        ]
    });
    view::csv(
        &format!("request-{id}-lines"),
        &[
            "line",
            "sku",
            "source",
            "units_received",
            "seq",
            "adjusted_unsent_orders",
            "adjusted_quotes",
            "stored_qty",
            "result",
            "message",
        ],
        rows,
    )
}

/// An action form: one or selected requests (`id`, repeated), or all matching a filter (`all=1`,
/// `filter`, `n` = how many the user saw); `confirm=yes` once the user confirmed.
struct ActionForm {
    ids: Vec<i64>,
    all: Option<(String, i64)>,
    confirmed: bool,
}

fn parse_action_form(body: &[u8]) -> Result<ActionForm, ConsoleError> {
    let mut ids = Vec::new();
    let (mut all, mut filter, mut n, mut confirmed) = (false, String::new(), None, false);
    for (k, v) in form_urlencoded::parse(body) {
        match k.as_ref() {
            "id" => ids.push(
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| ConsoleError::bad("id", format!("{v:?} is not a request id")))?,
            ),
            "all" => all = v == "1",
            "filter" => filter = v.into_owned(),
            "n" => {
                n = Some(v.trim().parse::<i64>().map_err(|_| {
                    ConsoleError::bad("n", format!("{v:?} is not a number of requests"))
                })?)
            }
            "confirm" => confirmed = v == "yes",
            _ => {}
        }
    }
    let all = if all {
        let n = n.ok_or_else(|| {
            ConsoleError::bad(
                "n",
                "an action on all matching requests needs the number shown",
            )
        })?;
        Some((filter, n))
    } else {
        if ids.is_empty() {
            return Err(ConsoleError::bad(
                "id",
                "tick at least one request (or use the action on all matching requests)",
            ));
        }
        None
    };
    Ok(ActionForm {
        ids,
        all,
        confirmed,
    })
}

async fn requeue(
    staff: Staff,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    act(staff, state, &body, SupportAction::Requeue).await
}

async fn reprocess(
    staff: Staff,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ConsoleError> {
    act(staff, state, &body, SupportAction::Reprocess).await
}

/// What an action is called on its pages.
fn verb(action: SupportAction) -> &'static str {
    match action {
        SupportAction::Requeue => "requeue",
        SupportAction::Reprocess => "reprocess",
    }
}

#[derive(Template)]
#[template(path = "pages/requests/confirm.html")]
struct ConfirmPage {
    chrome: Chrome,
    action: &'static str,
    question: String,
    ids: Vec<i64>,
    all: Option<(String, i64)>,
    back: String,
}

/// Where the link back from an action goes: the request, or the list with the filter.
fn back_link(form: &ActionForm) -> String {
    match (&form.all, form.ids.as_slice()) {
        (Some((filter, _)), _) if !filter.is_empty() => format!("/admin/requests?{filter}"),
        (None, [one]) => format!("/admin/requests/{one}"),
        _ => "/admin/requests".to_string(),
    }
}

async fn act(
    staff: Staff,
    state: web::Data<AppState>,
    body: &[u8],
    action: SupportAction,
) -> Result<HttpResponse, ConsoleError> {
    let form = parse_action_form(body)?;
    let back = back_link(&form);
    let filter = match &form.all {
        Some((text, _)) => Some(parse_filter_string(text)?),
        None => None,
    };
    if !form.confirmed {
        let question = match &form.all {
            Some((text, n)) => format!(
                "{} all {n} request(s) matching the filter {}?",
                capitalised(verb(action)),
                if text.is_empty() {
                    "(none: every request)"
                } else {
                    text
                }
            ),
            None => format!(
                "{} {} request(s)?",
                capitalised(verb(action)),
                form.ids.len()
            ),
        };
        let page = ConfirmPage {
            chrome: Chrome::new(staff, "requests", format!("Confirm: {}", verb(action))),
            action: verb(action),
            question,
            ids: form.ids,
            all: form.all,
            back,
        };
        return view::render(&page);
    }
    let bulk_max = state.settings.console.bulk_max;
    let actor = staff.actor();
    let ActionForm { ids, all, .. } = form;
    let done = crate::db::blocking(&state.pool, "the console", move |conn| {
        let by = By {
            actor: &actor,
            via: Via::Console,
            filter: all.as_ref().map(|(text, _)| text.as_str()),
        };
        Ok(match (&all, filter) {
            (Some((_, n)), Some(filter)) => lifecycle::act_on_matching(
                conn,
                action,
                &by,
                Expected {
                    count: *n,
                    max: bulk_max,
                },
                |c| inspect::matching_ids(c, &filter, bulk_max.saturating_add(1)),
            ),
            _ => match action {
                SupportAction::Requeue => lifecycle::requeue(conn, &ids, &by),
                SupportAction::Reprocess => lifecycle::reprocess(conn, &ids, &by),
            },
        })
    })
    .await?;
    report(staff, action, done, &back)
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_uppercase().collect::<String>() + chars.as_str()
    })
}

/// The outcome page of an action.
fn report(
    staff: Staff,
    action: SupportAction,
    done: Result<Vec<i64>, SupportError>,
    back: &str,
) -> Result<HttpResponse, ConsoleError> {
    let chrome = Chrome::new(staff, "requests", capitalised(verb(action)));
    let back_label = if back.starts_with("/admin/requests/") {
        "Back to the request"
    } else {
        "Back to the list"
    };
    match done {
        Ok(ids) => {
            let message = match action {
                SupportAction::Requeue => {
                    format!("{} request(s) back to the queue, due now.", ids.len())
                }
                SupportAction::Reprocess => {
                    format!("{} request(s) queued to be applied again.", ids.len())
                }
            };
            let items: Vec<String> = ids.iter().map(|id| format!("#{id}")).collect();
            view::outcome(
                chrome,
                &Outcome {
                    ok: true,
                    message: &message,
                    items: &items,
                    back,
                    back_label,
                },
            )
        }
        Err(SupportError::Db(e)) => Err(ConsoleError::internal(e)),
        Err(refused) => view::outcome(
            chrome,
            &Outcome {
                ok: false,
                message: &capitalised(&refused.to_string()),
                items: &[],
                back,
                back_label,
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_dates_or_datetimes_and_to_includes_its_day() {
        let t = |s: &str, end| parse_time("from", s, end).unwrap().to_string();
        assert_eq!(t("2026-12-01", false), "2026-12-01 00:00:00");
        assert_eq!(t("2026-12-01", true), "2026-12-02 00:00:00");
        assert_eq!(t("2026-12-01T14:30", true), "2026-12-01 14:31:00");
        assert_eq!(t("2026-12-01 14:30:05Z", false), "2026-12-01 14:30:05");
        assert!(parse_time("to", "yesterday", true).is_err());
    }

    #[test]
    fn the_filter_string_keeps_only_filters() {
        assert_eq!(
            filter_string("state=dead&after=10&size=20&sku=A%26B&format=csv&seq="),
            "state=dead&sku=A%26B"
        );
        let f = parse_filter_string("state=dead&sku=A%26B").unwrap();
        assert_eq!(f.sku.as_deref(), Some("A&B"));
        assert!(parse_filter_string("state=nope").is_err());
    }
}
