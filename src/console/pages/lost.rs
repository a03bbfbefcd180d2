//! `/admin/orders/lost`: what the warehouse would not take after `max_attempts` — order exports,
//! cancellations and products, one tab each — with the last error and attempts, a filter, keyset
//! pages and a CSV; operators resend or dismiss (with a note) one, the selected, or all N matching
//! the filter (re-evaluated, refused when N changed or above `console.bulk_max`, one audit row).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::NaiveDateTime;
use serde::Deserialize;

use crate::audit::{self, Entry, Via};
use crate::channels::warehouse::{self as export, Action};
use crate::console::error::ConsoleError;
use crate::console::session::Staff;
use crate::console::view::{self, Chrome, Outcome};
use crate::db::{self, DbConnection};
use crate::http::AppState;
use crate::orders::export::{ORDER_CANCEL, ORDER_INSERT};
use crate::outbound::{self, LostFilter, SupportAction, TaskKind, TaskRow};
use crate::products::export::PRODUCT_MERGE;

/// Registers the page's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/orders/lost", web::get().to(list))
        .route("/orders/lost/{action}", web::post().to(act))
        .route("/products/lost", web::get().to(products));
}

/// A tab of the page: what was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LostKind {
    /// Order exports.
    #[default]
    Export,
    /// Cancellations of exported orders.
    Cancellation,
    /// Product exports.
    Product,
}

impl LostKind {
    const ALL: [LostKind; 3] = [LostKind::Export, LostKind::Cancellation, LostKind::Product];

    fn as_str(self) -> &'static str {
        match self {
            LostKind::Export => "export",
            LostKind::Cancellation => "cancellation",
            LostKind::Product => "product",
        }
    }

    fn label(self) -> &'static str {
        match self {
            LostKind::Export => "Order exports",
            LostKind::Cancellation => "Cancellations",
            LostKind::Product => "Products",
        }
    }

    fn task(self) -> TaskKind {
        match self {
            LostKind::Export => ORDER_INSERT,
            LostKind::Cancellation => ORDER_CANCEL,
            LostKind::Product => PRODUCT_MERGE,
        }
    }

    /// Whether its subjects are orders (else products).
    fn is_order(self) -> bool {
        self != LostKind::Product
    }

    /// The audit action of `action` on this kind.
    fn audit_action(self, action: SupportAction) -> &'static str {
        match (self.is_order(), action) {
            (true, SupportAction::Resend) => "orders.resend",
            (true, SupportAction::Dismiss) => "orders.dismiss",
            (false, SupportAction::Resend) => "products.resend",
            (false, SupportAction::Dismiss) => "products.dismiss",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Format {
    Csv,
}

#[derive(Debug, Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    kind: LostKind,
    subject: Option<String>,
    error: Option<String>,
    size: Option<i64>,
    after: Option<i64>,
    format: Option<Format>,
}

impl ListQuery {
    fn filter(&self) -> LostFilter {
        LostFilter {
            subject: self.subject.clone(),
            error: self.error.clone(),
        }
    }
}

/// A tab with how many it holds.
struct Tab {
    href: String,
    label: &'static str,
    count: i64,
    active: bool,
}

/// A row of the list.
struct Row {
    task_id: i64,
    subject: String,
    link: Option<String>,
    attempts: i32,
    error: String,
    updated_at: NaiveDateTime,
}

#[derive(Template)]
#[template(path = "pages/lost/list.html")]
struct ListPage {
    chrome: Chrome,
    kind: &'static str,
    kind_label: &'static str,
    tabs: Vec<Tab>,
    subject: String,
    error: String,
    size: i64,
    sizes: [i64; 4],
    rows: Vec<Row>,
    matching: i64,
    next: Option<String>,
    csv: String,
    bulk_max: i64,
}

/// The order page's path of `increment_id` (percent-encoded).
pub fn order_href(increment_id: &str) -> String {
    format!(
        "/admin/orders/{}",
        percent_encoding::utf8_percent_encode(increment_id, percent_encoding::NON_ALPHANUMERIC)
    )
}

fn row(kind: LostKind, t: TaskRow) -> Row {
    Row {
        task_id: t.id,
        link: kind.is_order().then(|| order_href(&t.subject)),
        subject: t.subject,
        attempts: t.attempts,
        error: t.last_error.unwrap_or_default(),
        updated_at: t.updated_at,
    }
}

/// What the list reads: the count of each tab, the matching count, and one page (or every
/// matching row for the CSV).
struct Read {
    counts: Vec<(LostKind, i64)>,
    matching: i64,
    rows: Vec<TaskRow>,
}

/// The most rows a CSV of lost tasks holds (the lost are few; this only bounds a runaway).
const CSV_MAX: i64 = 100_000;

async fn list(
    staff: Staff,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let q: ListQuery = view::query(&req)?;
    let size = view::page_size(q.size)?;
    let csv = q.format.is_some();
    let (kind, filter, after) = (q.kind, q.filter(), q.after);
    let read = db::blocking(&state.pool, "the console", move |conn| {
        let mut counts = Vec::new();
        for k in LostKind::ALL {
            counts.push((
                k,
                outbound::lost_count(conn, k.task(), &LostFilter::default())?,
            ));
        }
        let matching = outbound::lost_count(conn, kind.task(), &filter)?;
        let rows = if csv {
            outbound::lost_page(conn, kind.task(), &filter, None, CSV_MAX)?
        } else {
            outbound::lost_page(conn, kind.task(), &filter, after, size + 1)?
        };
        Ok(Read {
            counts,
            matching,
            rows,
        })
    })
    .await?;
    if csv {
        return csv_of(kind, read.rows);
    }
    render_list(staff, &req, &state, &q, size, read)
}

fn csv_of(kind: LostKind, rows: Vec<TaskRow>) -> Result<HttpResponse, ConsoleError> {
    view::csv(
        &format!("lost-{}", kind.as_str()),
        &[
            "task",
            "kind",
            "subject",
            "attempts",
            "last_error",
            "updated_at",
        ],
        rows.into_iter().map(|t| {
            vec![
                t.id.to_string(),
                kind.as_str().to_string(),
                t.subject,
                t.attempts.to_string(),
                t.last_error.unwrap_or_default(),
                t.updated_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            ]
        }),
    )
}

fn render_list(
    staff: Staff,
    req: &HttpRequest,
    state: &AppState,
    q: &ListQuery,
    size: i64,
    read: Read,
) -> Result<HttpResponse, ConsoleError> {
    let mut rows: Vec<Row> = read.rows.into_iter().map(|t| row(q.kind, t)).collect();
    let next = if rows.len() as i64 > size {
        rows.truncate(size as usize);
        rows.last()
            .map(|r| view::link_with(req, "after", Some(&r.task_id.to_string())))
    } else {
        None
    };
    let tabs = read
        .counts
        .iter()
        .map(|&(k, count)| Tab {
            href: format!("/admin/orders/lost?kind={}", k.as_str()),
            label: k.label(),
            count,
            active: k == q.kind,
        })
        .collect();
    let csv = {
        let without_page = view::link_with(req, "after", None);
        let sep = if without_page.contains('?') { '&' } else { '?' };
        format!("{without_page}{sep}format=csv")
    };
    let chrome = Chrome::new(
        staff,
        "orders",
        format!("Lost: {}", q.kind.label().to_lowercase()),
    )
    .refreshing(state.settings.console.refresh_secs);
    view::render(&ListPage {
        chrome,
        kind: q.kind.as_str(),
        kind_label: q.kind.label(),
        tabs,
        subject: q.subject.clone().unwrap_or_default(),
        error: q.error.clone().unwrap_or_default(),
        size,
        sizes: view::PAGE_SIZES,
        rows,
        matching: read.matching,
        next,
        csv,
        bulk_max: state.settings.console.bulk_max,
    })
}

/// `/admin/products/lost` is the products tab.
async fn products(req: HttpRequest) -> HttpResponse {
    let rest = req.query_string();
    let location = if rest.is_empty() {
        "/admin/orders/lost?kind=product".to_string()
    } else {
        format!("/admin/orders/lost?kind=product&{rest}")
    };
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// Which records an action is for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Selection {
    /// One task (its row's button).
    One(i64),
    /// The ticked rows.
    Selected(Vec<i64>),
    /// All matching the filter, as many as the user saw.
    All { filter: LostFilter, expected: i64 },
}

/// An action's form, read from the body (`id` repeats, which serde's form reader cannot take).
#[derive(Debug)]
struct ActForm {
    kind: LostKind,
    selection: Selection,
    note: Option<String>,
}

fn parse_form(body: &[u8]) -> Result<ActForm, ConsoleError> {
    let mut kind = None;
    let (mut ids, mut one, mut scope_all, mut expected) = (Vec::new(), None, false, None);
    let (mut subject, mut error, mut note) = (None, None, None);
    let number = |field: &str, v: &str| {
        v.parse::<i64>()
            .map_err(|_| ConsoleError::bad(field, format!("{v:?} is not a number")))
    };
    for (k, v) in form_urlencoded::parse(body) {
        let v = v.trim().to_string();
        if v.is_empty() {
            continue;
        }
        match k.as_ref() {
            "kind" => {
                kind = Some(match v.as_str() {
                    "export" => LostKind::Export,
                    "cancellation" => LostKind::Cancellation,
                    "product" => LostKind::Product,
                    _ => {
                        return Err(ConsoleError::bad(
                            "kind",
                            "use export, cancellation or product",
                        ));
                    }
                })
            }
            "id" => ids.push(number("id", &v)?),
            "one" => one = Some(number("one", &v)?),
            "scope" => scope_all = v == "all",
            "expected" => expected = Some(number("expected", &v)?),
            "subject" => subject = Some(v),
            "error" => error = Some(v),
            "note" => note = Some(v),
            _ => {}
        }
    }
    let kind = kind.ok_or_else(|| ConsoleError::bad("kind", "missing"))?;
    let selection = match (one, scope_all) {
        (Some(id), _) => Selection::One(id),
        (None, true) => Selection::All {
            filter: LostFilter { subject, error },
            expected: expected.ok_or_else(|| {
                ConsoleError::bad(
                    "expected",
                    "the number of matching records you saw is missing",
                )
            })?,
        },
        (None, false) if ids.is_empty() => {
            return Err(ConsoleError::bad(
                "id",
                "tick at least one row (or use \"all matching\")",
            ));
        }
        (None, false) => Selection::Selected(ids),
    };
    Ok(ActForm {
        kind,
        selection,
        note,
    })
}

/// The query string of a filter, as the audit row records it and the link back carries it.
fn filter_query(kind: LostKind, f: &LostFilter) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    out.append_pair("kind", kind.as_str());
    if let Some(s) = &f.subject {
        out.append_pair("subject", s);
    }
    if let Some(e) = &f.error {
        out.append_pair("error", e);
    }
    out.finish()
}

async fn act(
    staff: Staff,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let action = match path.as_str() {
        "resend" => SupportAction::Resend,
        "dismiss" => SupportAction::Dismiss,
        other => return Err(ConsoleError::NotFound(format!("The action {other:?}"))),
    };
    let form = parse_form(&body)?;
    if action == SupportAction::Dismiss && form.note.is_none() {
        return Err(ConsoleError::bad(
            "note",
            "a dismissal needs a note saying how it was handled",
        ));
    }
    let back = match &form.selection {
        Selection::All { filter, .. } => {
            format!("/admin/orders/lost?{}", filter_query(form.kind, filter))
        }
        _ => format!("/admin/orders/lost?kind={}", form.kind.as_str()),
    };
    let bulk_max = state.settings.console.bulk_max;
    let actor = staff.actor();
    let kind = form.kind;
    let done = db::blocking(&state.pool, "the console", move |conn| {
        Ok(db::write_tx(conn, |c| {
            apply(c, &form, action, &actor, bulk_max)
        }))
    })
    .await??;
    if action == SupportAction::Resend {
        outbound::wake_exporters();
    }
    let verb = match action {
        SupportAction::Resend => "sent again (back to pending, attempts reset)",
        SupportAction::Dismiss => "dismissed (handled by hand, never sent)",
    };
    let message = format!("{} {} {verb}.", done.len(), kind.label().to_lowercase());
    view::outcome(
        Chrome::new(staff, "orders", "Done"),
        &Outcome {
            ok: true,
            message: &message,
            items: &done,
            back: &back,
            back_label: "Back to the lost list",
        },
    )
}

/// The task ids an action is for, its selection re-evaluated inside the action's transaction.
fn resolve(
    conn: &mut DbConnection,
    form: &ActForm,
    bulk_max: i64,
) -> Result<Vec<i64>, ConsoleError> {
    let ids = match &form.selection {
        Selection::One(id) => vec![*id],
        Selection::Selected(ids) => ids.clone(),
        Selection::All { filter, expected } => {
            let now = outbound::lost_count(conn, form.kind.task(), filter)?;
            if now != *expected {
                return Err(ConsoleError::Conflict(format!(
                    "The filter matched {expected} when you looked and matches {now} now, so \
                     nothing was changed. Look at the list again and repeat the action."
                )));
            }
            if now > bulk_max {
                return Err(too_many(now, bulk_max));
            }
            outbound::lost_page(conn, form.kind.task(), filter, None, now)?
                .into_iter()
                .map(|t| t.id)
                .collect()
        }
    };
    if ids.len() as i64 > bulk_max {
        return Err(too_many(ids.len() as i64, bulk_max));
    }
    Ok(ids)
}

fn too_many(n: i64, max: i64) -> ConsoleError {
    ConsoleError::Conflict(format!(
        "{n} records are more than one action may change (console.bulk_max = {max}), so nothing \
         was changed. Narrow the filter and act in parts."
    ))
}

/// Resends or dismisses what `form` names and records the audit row, in the caller's
/// transaction. Returns one line per record changed.
fn apply(
    conn: &mut DbConnection,
    form: &ActForm,
    action: SupportAction,
    actor: &str,
    bulk_max: i64,
) -> Result<Vec<String>, ConsoleError> {
    let ids = resolve(conn, form, bulk_max)?;
    let note = form.note.as_deref();
    let subjects = if form.kind.is_order() {
        let orders = outbound::lost_subjects_of(conn, form.kind.task(), &ids)?;
        if orders.len() != ids.len() {
            return Err(ConsoleError::Conflict(
                "Some of these are no longer lost (resent or dismissed meanwhile), so nothing \
                 was changed. Look at the list again."
                    .into(),
            ));
        }
        let how = match action {
            SupportAction::Resend => Action::Resend,
            SupportAction::Dismiss => Action::Dismiss,
        };
        export::act_in(conn, Some(&orders), actor, how, note)
            .map_err(refusal)?
            .into_iter()
            .map(|h| h.increment_id)
            .collect()
    } else {
        let done =
            outbound::act_on_lost(conn, form.kind.task(), &ids, action, actor, note, db::now())
                .map_err(refusal)?;
        if action == SupportAction::Resend && !done.is_empty() {
            outbound::announce(conn)?;
        }
        done
    };
    let filter = match &form.selection {
        Selection::All { filter, .. } => Some(filter_query(form.kind, filter)),
        _ => None,
    };
    audit::record(
        conn,
        &Entry {
            actor,
            via: Via::Console,
            action: form.kind.audit_action(action),
            subject_kind: if form.kind.is_order() {
                "order"
            } else {
                "product"
            },
            subjects: &subjects,
            filter: filter.as_deref(),
            count: subjects.len() as i64,
            note,
        },
    )?;
    Ok(subjects)
}

/// A support action the store refused (changed meanwhile, being sent) is a conflict; a database
/// failure is not.
fn refusal(e: anyhow::Error) -> ConsoleError {
    if e.downcast_ref::<diesel::result::Error>().is_some() {
        ConsoleError::from(e)
    } else {
        ConsoleError::Conflict(format!("{e:#}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_name_one_the_selected_or_all_matching() {
        let one = parse_form(b"kind=export&one=7&id=3&note=x").unwrap();
        assert_eq!(one.selection, Selection::One(7));
        let some = parse_form(b"kind=product&id=3&id=4").unwrap();
        assert_eq!(some.selection, Selection::Selected(vec![3, 4]));
        assert_eq!(some.kind, LostKind::Product);
        let all = parse_form(b"kind=cancellation&scope=all&expected=2&subject=A-").unwrap();
        assert_eq!(
            all.selection,
            Selection::All {
                filter: LostFilter {
                    subject: Some("A-".into()),
                    error: None
                },
                expected: 2
            }
        );
        assert!(parse_form(b"kind=export").is_err());
        assert!(parse_form(b"kind=export&scope=all").is_err());
        assert!(parse_form(b"kind=nope&id=1").is_err());
    }
}
