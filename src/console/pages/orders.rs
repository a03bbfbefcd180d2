//! `/admin/orders/{increment_id}`: an order's story on one page — received, last changed, each
//! export attempt and the warehouse's answer, exported, each shipment with its tracking and the
//! request that brought it, completed, the cancellation sent, every support action on its export
//! or cancellation (console or CLI), and its pushes to the channel it came from (made, sent and
//! awaiting a ticket, refused, lost or dead, resent or dismissed, done), the order file it went out
//! in and the shipment file each shipment came in (file channels) — with links to the records,
//! to the orders it was split from or into, its lines and where it stands.

use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::NaiveDateTime;

use super::lost;
use crate::channels::sftp::store::{self as files, FileExchange, FileState};
use crate::console::error::ConsoleError;
use crate::console::session::Staff;
use crate::console::view::{self, Chrome};
use crate::db::{self, DbConnection};
use crate::http::AppState;
use crate::orders::history::{self, History};
use crate::orders::{self, OrderError, OrderLineView};
use crate::outbound::{self, ChannelTask, SupportAction, TaskAction, TaskRow, TaskState};

/// Registers the page's routes (after `/orders/lost`, which `lost` registers first).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/orders/{increment_id}", web::get().to(page));
}

/// One step of the timeline.
struct Step {
    at: NaiveDateTime,
    /// A word for styling and tests (`received`, `export`, `exported`, `shipment`, …).
    kind: &'static str,
    what: String,
    detail: String,
    link: Option<(String, String)>,
}

impl Step {
    fn new(at: NaiveDateTime, kind: &'static str, what: impl Into<String>) -> Step {
        Step {
            at,
            kind,
            what: what.into(),
            detail: String::new(),
            link: None,
        }
    }

    fn detail(mut self, detail: impl Into<String>) -> Step {
        self.detail = detail.into();
        self
    }

    fn link(mut self, href: String, label: impl Into<String>) -> Step {
        self.link = Some((href, label.into()));
        self
    }
}

#[derive(Template)]
#[template(path = "pages/orders/order.html")]
struct OrderPage {
    chrome: Chrome,
    status: String,
    source: String,
    /// The order it was split from: number and page.
    parent: Option<(String, String)>,
    /// The orders split from it: number and page each.
    children: Vec<(String, String)>,
    export_status: String,
    export_error: Option<String>,
    cancellation: Option<String>,
    lines: Vec<OrderLineView>,
    steps: Vec<Step>,
}

/// The steps of the export and the cancellation: each attempt the warehouse answered, the tasks'
/// ends, and support's actions.
fn export_steps(h: &History, steps: &mut Vec<Step>) {
    for a in &h.attempts {
        let what = match a.operation.as_str() {
            "cancel" => "Cancellation sent",
            _ => "Export attempt",
        };
        steps.push(
            Step::new(a.started_at, "attempt", what)
                .detail(format!("{} ({}): {}", a.result, a.outcome, a.message))
                .link(
                    format!("/admin/exports/{}", a.export_id),
                    format!("exchange #{}", a.export_id),
                ),
        );
    }
    if let Some(at) = h.exported_at {
        steps.push(Step::new(
            at,
            "exported",
            "Exported: the warehouse accepted it",
        ));
    }
    for (action, t) in &h.tasks {
        let cancel = action == "order.cancel";
        match (t.state, t.done_at) {
            (TaskState::Done, Some(at)) if cancel => steps.push(Step::new(
                at,
                "cancelled",
                "Cancellation confirmed by the warehouse",
            )),
            (TaskState::Lost, _) => steps.push(
                Step::new(
                    t.updated_at,
                    "lost",
                    format!(
                        "{} lost after {} attempts",
                        if cancel { "Cancellation" } else { "Export" },
                        t.attempts
                    ),
                )
                .detail(t.last_error.clone().unwrap_or_default())
                .link(
                    format!(
                        "/admin/orders/lost?kind={}&subject={}",
                        if cancel { "cancellation" } else { "export" },
                        encode(&h.order.increment_id)
                    ),
                    "lost list",
                ),
            ),
            (TaskState::Skipped, _) => steps.push(
                Step::new(t.updated_at, "skipped", "Export skipped")
                    .detail(t.note.clone().unwrap_or_default()),
            ),
            _ => {}
        }
    }
    action_steps(h, steps);
}

/// Support's resends and dismissals of the export or the cancellation, and the audit rows (console
/// or CLI) that name the order.
fn action_steps(h: &History, steps: &mut Vec<Step>) {
    for r in &h.audit {
        let mut detail = format!("by {} ({}), {} record(s)", r.actor, r.via.as_str(), r.count);
        if let Some(f) = &r.filter {
            detail.push_str(&format!(", all matching {f}"));
        }
        if let Some(n) = &r.note {
            detail.push_str(&format!(": {n}"));
        }
        steps.push(
            Step::new(r.at, "audit", format!("Audited action {}", r.action))
                .detail(detail)
                .link(
                    format!("/admin/audit?action={}", encode(&r.action)),
                    "audit log",
                ),
        );
    }
    for (task, a) in &h.actions {
        let of = match h.tasks.iter().find(|(_, t)| t.id == *task) {
            Some((action, _)) if action == "order.cancel" => "cancellation",
            _ => "export",
        };
        let what = match a.action {
            SupportAction::Resend => format!("Support resent the {of}"),
            SupportAction::Dismiss => format!("Support dismissed the {of}"),
        };
        steps.push(
            Step::new(a.at, "action", what)
                .detail(format!(
                    "by {}{}",
                    a.actor,
                    a.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ))
                .link(
                    format!("/admin/audit?actor={}", encode(&a.actor)),
                    "audit log",
                ),
        );
    }
}

/// The order's pushes to the channel it came from, with support's actions on them, and the
/// files it went out in and its shipments came in.
struct Pushes {
    tasks: Vec<ChannelTask>,
    actions: Vec<(i64, TaskAction)>,
    /// The order files of its file channel tasks (found by their batch, the file's name).
    files_out: Vec<FileExchange>,
    /// The shipment files its shipments' requests came in, with the shipment's id.
    files_in: Vec<(i64, FileExchange)>,
}

fn pushes_of(
    conn: &mut DbConnection,
    h: &History,
    file_channels: &[String],
) -> diesel::QueryResult<Pushes> {
    let own = [outbound::WAREHOUSE, crate::alerts::SMTP];
    let tasks = outbound::channel_tasks_of_subject(conn, &h.order.increment_id, &own)?;
    let ids: Vec<i64> = tasks.iter().map(|t| t.task.id).collect();
    let actions = outbound::actions_on(conn, &ids)?;
    let mut files_out = Vec::new();
    for t in tasks.iter().map(|ct| &ct.task) {
        if let (true, Some(batch)) = (file_channels.contains(&t.channel), &t.batch_id) {
            files_out.extend(files::exchange_named(conn, &t.channel, batch)?);
        }
    }
    let mut files_in = Vec::new();
    for s in &h.shipments {
        if let Some(r) = s.request_id {
            files_in.extend(files::exchange_of_request(conn, r)?.map(|x| (s.id, x)));
        }
    }
    Ok(Pushes {
        tasks,
        actions,
        files_out,
        files_in,
    })
}

/// "Went out in file …" for each order file that carried it (once sent) and "Shipment came in
/// file …" for each shipment file it was shipped by.
fn file_steps(p: &Pushes, steps: &mut Vec<Step>) {
    for x in &p.files_out {
        let sent = x.state == FileState::Sent.as_str();
        let what = if sent {
            format!("Went out in file {}", x.name)
        } else {
            format!("Being written to file {} ({})", x.name, x.state)
        };
        steps.push(
            Step::new(x.finished_at.unwrap_or(x.updated_at), "file-out", what)
                .detail(format!(
                    "channel {}, {} order(s) in the file",
                    x.channel, x.orders
                ))
                .link(format!("/admin/files/{}", x.id), format!("file #{}", x.id)),
        );
    }
    for (shipment, x) in &p.files_in {
        steps.push(
            Step::new(
                x.created_at,
                "file-in",
                format!("Shipment came in file {}", x.name),
            )
            .detail(format!("channel {}, shipment #{shipment}", x.channel))
            .link(format!("/admin/files/{}", x.id), format!("file #{}", x.id)),
        );
    }
}

/// `Ship push to amazon`.
fn push_name(t: &TaskRow) -> String {
    let mut action = t.action.clone();
    if let Some(first) = action.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    format!("{action} push to {}", t.channel)
}

/// What the channel answered a push with: `batch B-1, ticket T-9, push no. 3`.
fn ticket_detail(t: &TaskRow) -> String {
    let mut parts = Vec::new();
    if let Some(b) = &t.batch_id {
        parts.push(format!("batch {b}"));
    }
    if let Some(k) = &t.ticket_id {
        parts.push(format!("ticket {k}"));
    }
    if let Some(n) = t.sequence {
        parts.push(format!("push no. {n}"));
    }
    parts.join(", ")
}

fn at_time(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The steps of the order's pushes: made (and when due), sent and awaiting its ticket, refused
/// or not answered (with the error), lost or dead, done, skipped, and support's actions.
fn push_steps(p: &Pushes, steps: &mut Vec<Step>) {
    for ct in &p.tasks {
        let t = &ct.task;
        let name = push_name(t);
        let href = format!("/admin/channels?task={}", t.id);
        let label = format!("push #{}", t.id);
        let mut made = Step::new(t.created_at, "push", format!("{name} made"));
        if let (TaskState::Pending, Some(due)) = (t.state, t.run_after) {
            made = made.detail(format!("due {}", at_time(due)));
        }
        steps.push(made.link(href.clone(), label.clone()));
        if let Some(at) = ct.sent_at {
            let what = if t.state == TaskState::Awaiting {
                format!("{name} sent, awaiting the channel's ticket")
            } else {
                format!("{name} sent, answered with a ticket")
            };
            steps.push(Step::new(at, "push-sent", what).detail(ticket_detail(t)));
        }
        if let Some(step) = push_end(ct, &name) {
            steps.push(step.link(href, label));
        }
    }
    for (task, a) in &p.actions {
        let Some(ct) = p.tasks.iter().find(|t| t.task.id == *task) else {
            continue;
        };
        let verb = match a.action {
            SupportAction::Resend => "resent",
            SupportAction::Dismiss => "dismissed",
        };
        let reason = a
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        steps.push(
            Step::new(
                a.at,
                "push-action",
                format!("Support {verb} the {}", push_name(&ct.task).to_lowercase()),
            )
            .detail(format!("by {}{reason}", a.actor))
            .link(
                format!("/admin/audit?actor={}", encode(&a.actor)),
                "audit log",
            ),
        );
    }
}

/// Where a push stands now, as a step (none while it simply waits to be sent or read).
fn push_end(ct: &ChannelTask, name: &str) -> Option<Step> {
    let t = &ct.task;
    let error = t.last_error.clone().unwrap_or_default();
    let again = t.run_after.map(at_time).unwrap_or_else(|| "now".into());
    // A push support resent keeps its last refusal until it is tried again: not a new failure.
    let tried_since_support = ct.handled_at.is_none_or(|at| t.updated_at > at);
    let step = match t.state {
        TaskState::Pending if t.last_error.is_some() && tried_since_support => Step::new(
            t.updated_at,
            "push-retry",
            format!("{name} not answered, sent again from {again}"),
        )
        .detail(error),
        TaskState::Failed if t.batch_id.is_some() => Step::new(
            t.updated_at,
            "push-failed",
            format!(
                "{name}: its ticket failed (attempt {}), sent again from {again}",
                t.attempts
            ),
        )
        .detail(error),
        TaskState::Failed => Step::new(
            t.updated_at,
            "push-failed",
            format!(
                "{name} refused (attempt {}), sent again from {again}",
                t.attempts
            ),
        )
        .detail(error),
        TaskState::Lost => Step::new(
            t.updated_at,
            "push-lost",
            format!(
                "{name} lost after {} attempts: waits for support",
                t.attempts
            ),
        )
        .detail(error),
        TaskState::Dead => Step::new(
            t.updated_at,
            "push-dead",
            format!("{name} refused for good (dead): waits for support"),
        )
        .detail(error),
        TaskState::Done => Step::new(
            t.done_at.unwrap_or(t.updated_at),
            "push-done",
            format!("{name} done: the channel took it"),
        )
        .detail(ticket_detail(t)),
        TaskState::Skipped => Step::new(t.updated_at, "push-skipped", format!("{name} skipped"))
            .detail(t.note.clone().unwrap_or_default()),
        TaskState::Pending | TaskState::Awaiting | TaskState::Dismissed => return None,
    };
    Some(step)
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Every step, oldest first (steps at the same moment keep the order they were added in).
fn timeline(h: &History, pushes: &Pushes) -> Vec<Step> {
    let o = &h.order;
    let mut steps = vec![
        Step::new(h.received_at, "received", "Received from the storefront")
            .detail(format!("status {}, from {}", o.status, o.source)),
    ];
    if h.updated_at > h.received_at {
        steps.push(Step::new(h.updated_at, "updated", "Last changed").detail(
            "the storefront's last update, a cancellation or a shipment (wharf keeps the \
                 current version only)",
        ));
    }
    export_steps(h, &mut steps);
    push_steps(pushes, &mut steps);
    file_steps(pushes, &mut steps);
    for s in &h.shipments {
        let mut detail = format!("messageSeqId {}", s.message_seq_id);
        if let Some(c) = &s.courier_name {
            detail.push_str(&format!(", {c}"));
        }
        if !s.tracking.is_empty() {
            detail.push_str(&format!(", tracking {}", s.tracking.join(", ")));
        }
        if let Some(d) = s.date_shipped {
            detail.push_str(&format!(", left {}", d.format("%Y-%m-%d %H:%M UTC")));
        }
        let step =
            Step::new(s.created_at, "shipment", format!("Shipment #{}", s.id)).detail(detail);
        steps.push(match s.request_id {
            Some(r) => step.link(format!("/admin/requests/{r}"), format!("request #{r}")),
            None => step,
        });
    }
    if o.status == orders::COMPLETE {
        let at = h.shipments.last().map_or(h.updated_at, |s| s.created_at);
        steps.push(Step::new(at, "completed", "Completed: everything shipped"));
    }
    steps.sort_by_key(|s| s.at);
    steps
}

async fn page(
    staff: Staff,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let increment_id = path.into_inner();
    let id = increment_id.clone();
    let file_channels: Vec<String> = state
        .settings
        .file_channels()
        .map(|c| c.name.clone())
        .collect();
    let found = db::blocking(&state.pool, "the console", move |conn| {
        Ok(match history::history(conn, &id) {
            Ok(h) => {
                let p = pushes_of(conn, &h, &file_channels)?;
                Ok((h, p))
            }
            Err(e) => Err(e),
        })
    })
    .await?;
    let (h, pushes) = match found {
        Ok(found) => found,
        Err(OrderError::NotFound(_)) => {
            return Err(ConsoleError::NotFound(format!("Order {increment_id}")));
        }
        Err(e) => return Err(ConsoleError::internal(e)),
    };
    let steps = timeline(&h, &pushes);
    let o = h.order;
    let family = |n: String| (lost::order_href(&n), n);
    let mut chrome = Chrome::new(staff, "orders", format!("Order {}", o.increment_id));
    chrome.search = o.increment_id.clone();
    view::render(&OrderPage {
        chrome,
        status: o.status,
        source: o.source,
        parent: o.parent.map(family),
        children: o.children.into_iter().map(family).collect(),
        export_status: o.export.status.as_str().to_string(),
        export_error: o.export.last_error,
        cancellation: o.cancellation.map(|c| c.state.as_str().to_string()),
        lines: o.lines,
        steps,
    })
}
