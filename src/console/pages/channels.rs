//! `/admin/channels`: the order channels of `[[channels]]` (marketplaces, affiliate systems) — per
//! channel its pushes per state, its breaker and its oldest pending push — and their pushes
//! (tasks) filtered by channel, state, action, order or task id, newest first, in keyset pages and
//! as CSV, each row linking to its order. Operators resend or dismiss lost and dead pushes (one or
//! the ticked ones): a confirmation page first, then one transaction that compare-and-sets each on
//! the state confirmed, with one audit row.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::NaiveDateTime;
use serde::Deserialize;

use super::imports::{CSV_MAX, wants_csv};
use super::lost::order_href;
use crate::alerts::conditions::channel_breaker_key;
use crate::audit::{self, Entry, Via};
use crate::config::{ChannelAction, ChannelSettings, Settings};
use crate::console::error::ConsoleError;
use crate::console::session::Staff;
use crate::console::view::{self, Chrome, Outcome};
use crate::db::{self, DbConnection};
use crate::http::AppState;
use crate::outbound::breaker::{self, BreakerState};
use crate::outbound::{self, ChannelTask, ChannelTaskFilter, SupportAction, TaskRow, TaskState};

/// Registers the page's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/channels", web::get().to(list))
        .route("/channels/{action}", web::post().to(act));
}

#[derive(Debug, Deserialize, Default)]
struct ListQuery {
    channel: Option<String>,
    state: Option<String>,
    action: Option<String>,
    order: Option<String>,
    task: Option<i64>,
    size: Option<i64>,
    after: Option<i64>,
    format: Option<String>,
}

/// The configured channels' names.
fn names(settings: &Settings) -> Vec<String> {
    settings.channels.iter().map(|c| c.name.clone()).collect()
}

impl ListQuery {
    fn filter(&self, settings: &Settings) -> Result<ChannelTaskFilter, ConsoleError> {
        let all = names(settings);
        let channels = match &self.channel {
            Some(c) if all.contains(c) => vec![c.clone()],
            Some(_) => {
                return Err(ConsoleError::bad(
                    "channel",
                    format!("use one of the configured channels: {}", all.join(", ")),
                ));
            }
            None => all,
        };
        let state = self
            .state
            .as_deref()
            .map(|s| {
                TaskState::parse(s).ok_or_else(|| {
                    ConsoleError::bad("state", format!("use one of {}", words(TaskState::ALL)))
                })
            })
            .transpose()?;
        let action = self
            .action
            .as_deref()
            .map(|a| {
                ChannelAction::parse(a)
                    .map(|a| a.as_str().to_string())
                    .ok_or_else(|| {
                        ConsoleError::bad(
                            "action",
                            "use ship, cancel, refund, status, edit or split",
                        )
                    })
            })
            .transpose()?;
        Ok(ChannelTaskFilter {
            channels,
            state,
            action,
            subject: self.order.as_ref().map(|o| o.trim().to_string()),
            id: self.task,
        })
    }
}

fn words(states: &[TaskState]) -> String {
    states
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A channel's summary.
struct Summary {
    name: String,
    kind: &'static str,
    sources: String,
    actions: String,
    /// Every state with its count, in the states' order.
    counts: Vec<(&'static str, i64)>,
    stuck: i64,
    breaker: Option<BreakerState>,
    open: bool,
    oldest: Option<TaskRow>,
}

/// A row of the list.
struct Row {
    id: i64,
    channel: String,
    action: String,
    order: String,
    order_link: String,
    state: &'static str,
    stuck: bool,
    attempts: i32,
    next: Option<NaiveDateTime>,
    batch: String,
    ticket: String,
    sequence: String,
    error: String,
    note: String,
    handled: Option<(String, NaiveDateTime)>,
    updated_at: NaiveDateTime,
}

fn row(ct: ChannelTask) -> Row {
    let t = ct.task;
    let open = matches!(
        t.state,
        TaskState::Pending | TaskState::Failed | TaskState::Awaiting
    );
    Row {
        id: t.id,
        order_link: order_href(&t.subject),
        stuck: TaskState::STUCK.contains(&t.state),
        state: t.state.as_str(),
        next: t.run_after.filter(|_| open),
        channel: t.channel,
        action: t.action,
        order: t.subject,
        attempts: t.attempts,
        batch: t.batch_id.unwrap_or_default(),
        ticket: t.ticket_id.unwrap_or_default(),
        sequence: t.sequence.map(|s| s.to_string()).unwrap_or_default(),
        error: t.last_error.unwrap_or_default(),
        note: t.note.unwrap_or_default(),
        handled: ct.handled_by.zip(ct.handled_at),
        updated_at: t.updated_at,
    }
}

#[derive(Template)]
#[template(path = "pages/channels/list.html")]
struct ListPage {
    chrome: Chrome,
    summaries: Vec<Summary>,
    channel: String,
    state: String,
    action: String,
    order: String,
    task: String,
    states: Vec<&'static str>,
    actions: Vec<&'static str>,
    channels: Vec<String>,
    size: i64,
    sizes: [i64; 4],
    rows: Vec<Row>,
    matching: i64,
    any_stuck: bool,
    next: Option<String>,
    first: Option<String>,
    csv: String,
    back: String,
}

/// What the list reads.
struct Read {
    summaries: Vec<Summary>,
    matching: i64,
    tasks: Vec<ChannelTask>,
}

fn summaries(
    conn: &mut DbConnection,
    channels: &[ChannelSettings],
    now: NaiveDateTime,
) -> anyhow::Result<Vec<Summary>> {
    let names: Vec<&str> = channels.iter().map(|c| c.name.as_str()).collect();
    let counts = outbound::channel_state_counts(conn, &names, TaskState::ALL)?;
    let breakers = breaker::breakers(conn)?;
    let mut out = Vec::with_capacity(channels.len());
    for c in channels {
        let count = |s: TaskState| {
            counts
                .iter()
                .find(|(name, state, _)| *name == c.name && *state == s)
                .map_or(0, |(_, _, n)| *n)
        };
        let key = channel_breaker_key(&c.name);
        let breaker = breakers.iter().find(|(k, _)| *k == key).map(|(_, b)| *b);
        out.push(Summary {
            name: c.name.clone(),
            kind: c.kind_word(),
            sources: c.sources.join(", "),
            actions: c
                .actions()
                .into_iter()
                .map(ChannelAction::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            counts: TaskState::ALL
                .iter()
                .map(|s| (s.as_str(), count(*s)))
                .collect(),
            stuck: count(TaskState::Lost) + count(TaskState::Dead),
            open: breaker.is_some_and(|b| b.is_open(now)),
            breaker,
            oldest: outbound::oldest_pending(conn, &c.name)?,
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
    let csv = wants_csv(q.format.as_deref())?;
    let (settings, after) = (state.settings.clone(), q.after);
    let limit = if csv { CSV_MAX } else { size + 1 };
    let read = db::blocking(&state.pool, "the console", move |conn| {
        Ok(Read {
            summaries: summaries(conn, &settings.channels, db::now())?,
            matching: outbound::count_channel_tasks(conn, &filter)?,
            tasks: outbound::channel_tasks(conn, &filter, after, limit)?,
        })
    })
    .await?;
    if csv {
        return view::csv(
            "channel-tasks",
            CSV_HEADERS,
            read.tasks.into_iter().map(csv_row),
        );
    }
    let mut rows: Vec<Row> = read.tasks.into_iter().map(row).collect();
    let next = if rows.len() as i64 > size {
        rows.truncate(usize::try_from(size).unwrap_or(usize::MAX));
        rows.last()
            .map(|r| view::link_with(&req, "after", Some(&r.id.to_string())))
    } else {
        None
    };
    let chrome = Chrome::new(staff, "channels", "Order channels")
        .refreshing(state.settings.console.refresh_secs);
    view::render(&ListPage {
        chrome,
        summaries: read.summaries,
        channel: q.channel.clone().unwrap_or_default(),
        state: q.state.clone().unwrap_or_default(),
        action: q.action.clone().unwrap_or_default(),
        order: q.order.clone().unwrap_or_default(),
        task: q.task.map(|t| t.to_string()).unwrap_or_default(),
        states: TaskState::ALL.iter().map(|s| s.as_str()).collect(),
        actions: ChannelAction::ALL.map(ChannelAction::as_str).to_vec(),
        channels: names(&state.settings),
        size,
        sizes: view::PAGE_SIZES,
        any_stuck: rows.iter().any(|r| r.stuck),
        rows,
        matching: read.matching,
        next,
        first: q.after.map(|_| view::link_with(&req, "after", None)),
        csv: csv_link(req.query_string()),
        back: filter_string(req.query_string()),
    })
}

/// The CSV of the list's filter (every matching row, whatever page is shown).
fn csv_link(query: &str) -> String {
    let filter = filter_string(query);
    let sep = if filter.is_empty() { "" } else { "&" };
    format!("/admin/channels?{filter}{sep}format=csv")
}

/// The filters of a query string (no page position, size or format), as a query string: what an
/// action's link back carries.
fn filter_string(query: &str) -> String {
    const FILTERS: [&str; 5] = ["channel", "state", "action", "order", "task"];
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if FILTERS.contains(&k.as_ref()) && !v.is_empty() {
            out.append_pair(&k, &v);
        }
    }
    out.finish()
}

const CSV_HEADERS: &[&str] = &[
    "task",
    "channel",
    "action",
    "order",
    "state",
    "attempts",
    "next_attempt_utc",
    "batch_id",
    "ticket_id",
    "sequence",
    "last_error",
    "created_at_utc",
    "updated_at_utc",
    "handled_by",
    "note",
];

fn csv_row(ct: ChannelTask) -> Vec<String> {
    let t = ct.task;
    let time = |t: NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
    vec![
        t.id.to_string(),
        t.channel,
        t.action,
        t.subject,
        t.state.as_str().to_string(),
        t.attempts.to_string(),
        t.run_after.map(time).unwrap_or_default(),
        t.batch_id.unwrap_or_default(),
        t.ticket_id.unwrap_or_default(),
        t.sequence.map(|s| s.to_string()).unwrap_or_default(),
        t.last_error.unwrap_or_default(),
        time(t.created_at),
        time(t.updated_at),
        ct.handled_by.unwrap_or_default(),
        t.note.unwrap_or_default(),
    ]
}

/// A task an action names, with the state the user saw it in (`17:dead`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    id: i64,
    state: TaskState,
}

/// An action's form: the row's button (`one`) or the ticked rows (`task`, repeated), the note,
/// the list's filter to go back to, and `confirm=yes` once confirmed.
#[derive(Debug, PartialEq, Eq)]
struct ActForm {
    tasks: Vec<Seen>,
    note: Option<String>,
    back: String,
    confirmed: bool,
}

fn parse_seen(field: &str, v: &str) -> Result<Seen, ConsoleError> {
    let bad = || {
        ConsoleError::bad(
            field,
            format!("{v:?} is not a task and its state (17:dead)"),
        )
    };
    let (id, state) = v.split_once(':').ok_or_else(bad)?;
    Ok(Seen {
        id: id.parse().map_err(|_| bad())?,
        state: TaskState::parse(state).ok_or_else(bad)?,
    })
}

fn parse_form(body: &[u8]) -> Result<ActForm, ConsoleError> {
    let (mut one, mut ticked) = (None, Vec::new());
    let (mut note, mut back, mut confirmed) = (None, String::new(), false);
    for (k, v) in form_urlencoded::parse(body) {
        let v = v.trim().to_string();
        if v.is_empty() {
            continue;
        }
        match k.as_ref() {
            "one" => one = Some(parse_seen("one", &v)?),
            "task" => ticked.push(parse_seen("task", &v)?),
            "note" => note = Some(v),
            "back" => back = filter_string(&v),
            "confirm" => confirmed = v == "yes",
            _ => {}
        }
    }
    let mut tasks = match one {
        Some(one) => vec![one],
        None => ticked,
    };
    tasks.sort_by_key(|s| s.id);
    tasks.dedup_by_key(|s| s.id);
    if tasks.is_empty() {
        return Err(ConsoleError::bad(
            "task",
            "tick at least one lost or dead push (or use its row's button)",
        ));
    }
    Ok(ActForm {
        tasks,
        note,
        back,
        confirmed,
    })
}

#[derive(Template)]
#[template(path = "pages/channels/confirm.html")]
struct ConfirmPage {
    chrome: Chrome,
    action: &'static str,
    question: String,
    rows: Vec<Row>,
    note: String,
    note_needed: bool,
    back: String,
}

fn back_href(back: &str) -> String {
    if back.is_empty() {
        "/admin/channels".to_string()
    } else {
        format!("/admin/channels?{back}")
    }
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
    let names = names(&state.settings);
    if !form.confirmed {
        return confirm(staff, &state, action, form, names).await;
    }
    if action == SupportAction::Dismiss && form.note.is_none() {
        return Err(ConsoleError::bad(
            "note",
            "a dismissal needs a note saying how the push was handled",
        ));
    }
    let back = back_href(&form.back);
    let actor = staff.actor();
    let done = db::blocking(&state.pool, "the console", move |conn| {
        Ok(db::write_tx(conn, |c| {
            apply(c, &names, &form, action, &actor)
        }))
    })
    .await??;
    if action == SupportAction::Resend {
        outbound::wake_exporters();
    }
    let message = match action {
        SupportAction::Resend => format!(
            "{} push(es) sent again (back to pending, attempts reset).",
            done.len()
        ),
        SupportAction::Dismiss => format!(
            "{} push(es) dismissed (handled by hand, never sent).",
            done.len()
        ),
    };
    view::outcome(
        Chrome::new(staff, "channels", "Done"),
        &Outcome {
            ok: true,
            message: &message,
            items: &done,
            back: &back,
            back_label: "Back to the channel pushes",
        },
    )
}

/// The confirmation page: the pushes as they are now (each must still wait for support).
async fn confirm(
    staff: Staff,
    state: &AppState,
    action: SupportAction,
    form: ActForm,
    names: Vec<String>,
) -> Result<HttpResponse, ConsoleError> {
    let ids: Vec<i64> = form.tasks.iter().map(|s| s.id).collect();
    let found = db::blocking(&state.pool, "the console", move |conn| {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut found = Vec::new();
        for id in ids {
            found.push((id, outbound::channel_task(conn, &names, id)?));
        }
        Ok(found)
    })
    .await?;
    let mut rows = Vec::new();
    for (id, task) in found {
        let task = task.ok_or_else(|| ConsoleError::NotFound(format!("Channel push #{id}")))?;
        if !TaskState::STUCK.contains(&task.task.state) {
            return Err(ConsoleError::Conflict(format!(
                "Push #{id} is {} now, not lost or dead, so nothing was changed. Look at the \
                 list again.",
                task.task.state
            )));
        }
        rows.push(row(task));
    }
    let verb = verb(action);
    let page = ConfirmPage {
        chrome: Chrome::new(staff, "channels", format!("Confirm: {verb}")),
        action: verb,
        question: format!(
            "{} {} push(es)?",
            match action {
                SupportAction::Resend => "Send again (back to pending, attempts reset)",
                SupportAction::Dismiss => "Dismiss (handled by hand, never sent)",
            },
            rows.len()
        ),
        rows,
        note: form.note.unwrap_or_default(),
        note_needed: action == SupportAction::Dismiss,
        back: form.back,
    };
    view::render(&page)
}

fn verb(action: SupportAction) -> &'static str {
    match action {
        SupportAction::Resend => "resend",
        SupportAction::Dismiss => "dismiss",
    }
}

/// Resends or dismisses the pushes `form` names, each a compare-and-set on the state confirmed,
/// and records the audit row, in the caller's transaction: all or none. Returns a line per push.
fn apply(
    conn: &mut DbConnection,
    names: &[String],
    form: &ActForm,
    action: SupportAction,
    actor: &str,
) -> Result<Vec<String>, ConsoleError> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let note = form.note.as_deref();
    let now = db::now();
    let (mut done, mut orders) = (Vec::new(), Vec::new());
    for seen in &form.tasks {
        let task = outbound::channel_task(conn, &names, seen.id)?
            .ok_or_else(|| ConsoleError::NotFound(format!("Channel push #{}", seen.id)))?
            .task;
        let what = format!(
            "#{} {} {} of order {}",
            task.id, task.channel, task.action, task.subject
        );
        let acted = TaskState::STUCK.contains(&seen.state)
            && outbound::act(conn, seen.id, seen.state, action, actor, note, now)?;
        if !acted {
            return Err(ConsoleError::Conflict(format!(
                "{what} is no longer {} (it is {} now, or being sent), so nothing was changed. \
                 Look at the list again.",
                seen.state, task.state
            )));
        }
        done.push(format!("{what} (was {})", seen.state));
        orders.push(task.subject);
    }
    if action == SupportAction::Resend {
        outbound::announce(conn)?;
    }
    audit::record(
        conn,
        &Entry {
            actor,
            via: Via::Console,
            action: match action {
                SupportAction::Resend => "channels.resend",
                SupportAction::Dismiss => "channels.dismiss",
            },
            subject_kind: "order",
            subjects: &orders,
            filter: None,
            count: orders.len() as i64,
            note,
        },
    )?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_name_the_row_or_the_ticked_with_the_state_seen() {
        let one =
            parse_form(b"one=7:dead&task=3:lost&note=x&back=state%3Ddead%26after%3D9").unwrap();
        assert_eq!(
            one.tasks,
            [Seen {
                id: 7,
                state: TaskState::Dead
            }]
        );
        assert_eq!(one.back, "state=dead");
        assert!(!one.confirmed);
        let some = parse_form(b"task=4:lost&task=3:dead&task=4:lost&confirm=yes").unwrap();
        assert_eq!(some.tasks.iter().map(|s| s.id).collect::<Vec<_>>(), [3, 4]);
        assert!(some.confirmed);
        assert!(parse_form(b"note=x").is_err());
        assert!(parse_form(b"task=3").is_err());
        assert!(parse_form(b"task=3:stuck").is_err());
    }

    #[test]
    fn the_filter_string_keeps_only_filters() {
        assert_eq!(
            filter_string("channel=amazon&after=10&size=20&format=csv&order=A%26B&state="),
            "channel=amazon&order=A%26B"
        );
    }
}
