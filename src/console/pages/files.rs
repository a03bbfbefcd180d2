//! `/admin/files`: the file channels (`kind = "sftp"`) — per channel what is wrong now (its runs'
//! troubles) and its exchanges per state — and every order file written and shipment file read,
//! filtered by channel, direction and state, newest first in keyset pages: name, size, the orders
//! of an order file or the order and request of a shipment file, where it stands, its error and
//! times. `/admin/files/{id}`: one exchange with its body: the document written, pretty-printed,
//! or a failed file byte for byte as read. Operators mark a failed shipment file seen (a compare-and-set with one
//! audit row), which lets its incident resolve.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::NaiveDateTime;
use serde::Deserialize;

use super::lost::order_href;
use crate::audit::{self, Entry, Via};
use crate::channels::sftp::store::{
    self as files, Direction, ExchangeFilter, FileExchange, FileState, TroubleRow, ops,
};
use crate::config::Settings;
use crate::console::error::ConsoleError;
use crate::console::session::Staff;
use crate::console::view::{self, Chrome, Outcome};
use crate::db::{self, DbConnection};
use crate::http::AppState;

/// Registers the page's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/files", web::get().to(list))
        .route("/files/{id}", web::get().to(detail))
        .route("/files/{id}/seen", web::post().to(seen));
}

#[derive(Debug, Deserialize, Default)]
struct ListQuery {
    channel: Option<String>,
    direction: Option<String>,
    state: Option<String>,
    size: Option<i64>,
    after: Option<i64>,
}

/// The configured file channels' names.
fn names(settings: &Settings) -> Vec<String> {
    settings.file_channels().map(|c| c.name.clone()).collect()
}

fn list_words<T: Copy>(all: &[T], word: impl Fn(T) -> &'static str) -> String {
    all.iter().map(|v| word(*v)).collect::<Vec<_>>().join(", ")
}

impl ListQuery {
    fn filter(&self, settings: &Settings) -> Result<ExchangeFilter, ConsoleError> {
        let all = names(settings);
        let channel = match &self.channel {
            Some(c) if all.contains(c) => Some(c.clone()),
            Some(_) => {
                return Err(ConsoleError::bad(
                    "channel",
                    format!(
                        "use one of the configured file channels: {}",
                        all.join(", ")
                    ),
                ));
            }
            None => None,
        };
        let direction = self
            .direction
            .as_deref()
            .map(|d| {
                Direction::parse(d).ok_or_else(|| {
                    ConsoleError::bad("direction", "use out (order files) or in (shipment files)")
                })
            })
            .transpose()?;
        let state = self
            .state
            .as_deref()
            .map(|s| {
                FileState::parse(s).ok_or_else(|| {
                    ConsoleError::bad(
                        "state",
                        format!(
                            "use one of {}",
                            list_words(FileState::ALL, FileState::as_str)
                        ),
                    )
                })
            })
            .transpose()?;
        Ok(ExchangeFilter {
            channel,
            direction,
            state,
        })
    }
}

/// A row of the list (and the head of an exchange's page).
struct Row {
    id: i64,
    channel: String,
    direction: &'static str,
    name: String,
    size: String,
    /// An order file's order count.
    orders: Option<i32>,
    /// A shipment file's order: number and page.
    order: Option<(String, String)>,
    request_id: Option<i64>,
    state: String,
    /// Failed and not yet seen by support.
    unseen: bool,
    seen_at: Option<NaiveDateTime>,
    hash: String,
    runs: i32,
    error: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    finished_at: Option<NaiveDateTime>,
}

/// `1234 B`, `12.3 kB`, `4.5 MB`.
fn bytes(n: i64) -> String {
    const K: f64 = 1000.0;
    let f = n as f64;
    match n {
        ..1000 => format!("{n} B"),
        1000..1_000_000 => format!("{:.1} kB", f / K),
        _ => format!("{:.1} MB", f / K / K),
    }
}

fn row(x: FileExchange) -> Row {
    let out = x.direction == Direction::Out.as_str();
    Row {
        id: x.id,
        direction: if out { "out" } else { "in" },
        size: x.size.map(bytes).unwrap_or_else(|| "–".into()),
        orders: out.then_some(x.orders),
        order: x
            .order_increment_id
            .map(|o| (order_href(&o), o))
            .filter(|_| !out),
        request_id: x.request_id,
        unseen: x.state == FileState::Failed.as_str() && x.seen_at.is_none(),
        seen_at: x.seen_at,
        hash: x.hash.unwrap_or_default(),
        runs: x.runs,
        error: x.error.unwrap_or_default(),
        channel: x.channel,
        name: x.name,
        state: x.state,
        created_at: x.created_at,
        updated_at: x.updated_at,
        finished_at: x.finished_at,
    }
}

/// A file channel's card: what is wrong now and its exchanges per direction and state.
struct Card {
    name: String,
    host: String,
    export_dir: String,
    import_dir: String,
    troubles: Vec<TroubleRow>,
    /// (direction, state, count), the states that have exchanges.
    counts: Vec<(String, String, i64)>,
    unseen: i64,
    stuck: i64,
}

#[derive(Template)]
#[template(path = "pages/files/list.html")]
struct ListPage {
    chrome: Chrome,
    cards: Vec<Card>,
    channels: Vec<String>,
    channel: String,
    direction: String,
    state: String,
    states: Vec<&'static str>,
    size: i64,
    sizes: [i64; 4],
    rows: Vec<Row>,
    next: Option<String>,
    first: Option<String>,
}

fn cards(conn: &mut DbConnection, settings: &Settings) -> anyhow::Result<Vec<Card>> {
    let counts = ops::state_counts(conn)?;
    let mut out = Vec::new();
    for c in settings.file_channels() {
        out.push(Card {
            name: c.name.clone(),
            host: format!("{}@{}:{}", c.user, c.host, c.port),
            export_dir: c.export_dir.clone(),
            import_dir: c.import_dir.clone(),
            troubles: files::troubles(conn, Some(&c.name))?,
            counts: counts
                .iter()
                .filter(|(ch, ..)| *ch == c.name)
                .map(|(_, d, s, n)| (d.clone(), s.clone(), *n))
                .collect(),
            unseen: ops::unseen_failed(conn, &c.name, 0)?.0,
            stuck: ops::stuck(conn, &c.name, 0)?.0,
        });
    }
    Ok(out)
}

async fn list(
    staff: Staff,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let q: ListQuery = view::query(&req)?;
    let size = view::page_size(q.size)?;
    let filter = q.filter(&state.settings)?;
    let (settings, after) = (state.settings.clone(), q.after);
    let (cards, found) = db::blocking(&state.pool, "the console", move |conn| {
        Ok((
            cards(conn, &settings)?,
            files::exchanges(conn, &filter, after, size + 1)?,
        ))
    })
    .await?;
    let mut rows: Vec<Row> = found.into_iter().map(row).collect();
    let next = if rows.len() as i64 > size {
        rows.truncate(usize::try_from(size).unwrap_or(usize::MAX));
        rows.last()
            .map(|r| view::link_with(&req, "after", Some(&r.id.to_string())))
    } else {
        None
    };
    let chrome = Chrome::new(staff, "files", "File channels")
        .refreshing(state.settings.console.refresh_secs);
    view::render(&ListPage {
        chrome,
        cards,
        channels: names(&state.settings),
        channel: q.channel.unwrap_or_default(),
        direction: q.direction.unwrap_or_default(),
        state: q.state.unwrap_or_default(),
        states: FileState::ALL.iter().map(|s| s.as_str()).collect(),
        size,
        sizes: view::PAGE_SIZES,
        rows,
        next,
        first: q.after.map(|_| view::link_with(&req, "after", None)),
    })
}

#[derive(Template)]
#[template(path = "pages/files/detail.html")]
struct DetailPage {
    chrome: Chrome,
    x: Row,
    body: Option<String>,
    /// The body is shown as read (a failed file), not re-indented.
    as_read: bool,
    /// The orders an order file carried (their tasks' batch is its name).
    orders: Vec<(String, String)>,
}

async fn detail(
    staff: Staff,
    path: web::Path<i64>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let id = path.into_inner();
    let found = db::blocking(&state.pool, "the console", move |conn| {
        let Some((x, body)) = files::exchange(conn, id)? else {
            return Ok(None);
        };
        let orders = if x.direction == Direction::Out.as_str() {
            ops::orders_of_file(conn, &x.channel, &x.name)?
        } else {
            Vec::new()
        };
        Ok(Some((x, body, orders)))
    })
    .await?;
    let Some((x, body, orders)) = found else {
        return Err(ConsoleError::NotFound(format!("File exchange #{id}")));
    };
    let title = format!("File {}", x.name);
    // A failed file is shown byte for byte as read: re-indenting what did not parse (a truncated
    // document reads as complete once indented) would hide why it failed.
    let as_read = x.state == FileState::Failed.as_str();
    view::render(&DetailPage {
        chrome: Chrome::new(staff, "files", title),
        x: row(x),
        body: body.map(|b| if as_read { b } else { view::pretty_xml(&b) }),
        as_read,
        orders: orders.into_iter().map(|o| (order_href(&o), o)).collect(),
    })
}

/// Marks failed shipment file `id` seen: a compare-and-set (someone else may have marked it, or
/// it is not a failed file) and one audit row, in one transaction.
async fn seen(
    staff: Staff,
    path: web::Path<i64>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let id = path.into_inner();
    let actor = staff.actor();
    let done = db::blocking(&state.pool, "the console", move |conn| {
        Ok(db::write_tx(conn, |c| mark(c, id, &actor)))
    })
    .await??;
    let back = format!("/admin/files/{id}");
    view::outcome(
        Chrome::new(staff, "files", "Done"),
        &Outcome {
            ok: true,
            message: "The failed file is marked seen: its alert resolves once no other failed \
                      file of the channel waits.",
            items: &[done],
            back: &back,
            back_label: "Back to the file",
        },
    )
}

fn mark(conn: &mut DbConnection, id: i64, actor: &str) -> Result<String, ConsoleError> {
    let Some((x, _)) = files::exchange(conn, id)? else {
        return Err(ConsoleError::NotFound(format!("File exchange #{id}")));
    };
    let what = format!("#{id} {} of channel {}", x.name, x.channel);
    if !ops::mark_seen(conn, id, db::now())? {
        return Err(ConsoleError::Conflict(if x.seen_at.is_some() {
            format!("{what} was marked seen already, so nothing was changed.")
        } else {
            format!(
                "{what} is {}, not a failed shipment file, so there is nothing to mark seen.",
                x.state
            )
        }));
    }
    audit::record(
        conn,
        &Entry {
            actor,
            via: Via::Console,
            action: "files.seen",
            subject_kind: "file",
            subjects: &[id.to_string()],
            filter: None,
            count: 1,
            note: None,
        },
    )?;
    Ok(format!("{what} ({})", x.error.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_for_people() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(12_345), "12.3 kB");
        assert_eq!(bytes(4_500_000), "4.5 MB");
    }
}
