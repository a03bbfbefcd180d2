//! `/admin`: the dashboard — requests per state, the oldest queued request, dead requests by
//! operation, lost order exports, cancellations and products, the order channels' pushes waiting
//! for support (lost or dead), the file channels' troubles, unseen failed files and stuck files,
//! the breakers, the background jobs'
//! last runs, the last 24 hours, open incidents, alert mails in trouble, and a banner of failures
//! this user has not seen yet with its "mark as seen" (`POST /admin/seen`, viewers too). Every
//! number is an indexed count over a small or bounded set: the page may auto-refresh.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::{NaiveDateTime, TimeDelta};
use serde::Deserialize;

use crate::alerts::conditions::channel_breaker_key;
use crate::alerts::{self, Incident, MailTrouble};
use crate::console::error::ConsoleError;
use crate::console::session::{self, Staff};
use crate::console::view::{self, Chrome};
use crate::db::{self, DbConnection};
use crate::http::AppState;
use crate::imports::store as imports;
use crate::orders::export::{ORDER_CANCEL, ORDER_INSERT};
use crate::outbound::{self, LostFilter, TaskKind, TaskState};
use crate::products::export::PRODUCT_MERGE;
use crate::queue::inspect::{self, DeadRequests};
use crate::queue::store::dashboard as requests;
use crate::queue::{Operation, RequestState};
use crate::runs::{self, Run};

/// Registers the page's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("", web::get().to(page))
        .route("/", web::get().to(page))
        .route("/seen", web::post().to(seen));
}

/// What was lost, per kind, with where its list is.
struct Lost {
    label: &'static str,
    count: i64,
    href: &'static str,
}

const LOST_KINDS: [(TaskKind, &str, &str); 3] = [
    (
        ORDER_INSERT,
        "order exports",
        "/admin/orders/lost?kind=export",
    ),
    (
        ORDER_CANCEL,
        "cancellations",
        "/admin/orders/lost?kind=cancellation",
    ),
    (PRODUCT_MERGE, "products", "/admin/orders/lost?kind=product"),
];

/// A breaker, as shown.
struct Breaker {
    kind: String,
    open: bool,
    failures: i32,
    paused_until: Option<NaiveDateTime>,
}

/// An order channel's pushes waiting for support.
struct ChannelStuck {
    name: String,
    lost: i64,
    dead: i64,
}

/// A file channel's state: its troubles now, its failed files not yet seen, its stuck files.
struct FileChannelState {
    name: String,
    troubles: Vec<String>,
    unseen: i64,
    stuck: i64,
}

/// Each of the file channels `names`, as the dashboard shows it.
fn file_channels(
    conn: &mut DbConnection,
    names: &[String],
) -> anyhow::Result<Vec<FileChannelState>> {
    use crate::channels::sftp::store::{self as files, ops};
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        out.push(FileChannelState {
            name: name.clone(),
            troubles: files::troubles(conn, Some(name))?
                .into_iter()
                .map(|t| t.trouble)
                .collect(),
            unseen: ops::unseen_failed(conn, name, 0)?.0,
            stuck: ops::stuck(conn, name, 0)?.0,
        });
    }
    Ok(out)
}

/// Failures this user has not marked seen.
struct Unseen {
    since: Option<NaiveDateTime>,
    dead: i64,
    imports: i64,
    lost: i64,
}

impl Unseen {
    fn any(&self) -> bool {
        self.dead + self.imports + self.lost > 0
    }
}

/// Everything the page shows.
struct Numbers {
    now: NaiveDateTime,
    states: Vec<(Operation, RequestState, i64)>,
    oldest_queued: Option<(i64, NaiveDateTime)>,
    dead: Vec<DeadRequests>,
    lost: Vec<Lost>,
    breakers: Vec<Breaker>,
    runs: Vec<Run>,
    received: i64,
    processed: i64,
    failed: i64,
    incidents: Vec<Incident>,
    mail: MailTrouble,
    unseen: Unseen,
    /// Per configured order channel (none: no channel configured, no card).
    channels: Vec<ChannelStuck>,
    /// Per configured file channel (none: no card).
    files: Vec<FileChannelState>,
}

#[derive(Template)]
#[template(path = "pages/dashboard/page.html")]
struct Page {
    chrome: Chrome,
    n: Numbers,
    oldest_age: String,
    lost_total: i64,
    channels_stuck: i64,
}

/// How long ago `t` was, in the unit that fits.
fn age(now: NaiveDateTime, t: NaiveDateTime) -> String {
    let secs = (now - t).num_seconds().max(0);
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs / 60),
        7200..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

/// The lost and dead pushes of each of `channels`.
fn channels_stuck(
    conn: &mut DbConnection,
    channels: &[String],
) -> anyhow::Result<Vec<ChannelStuck>> {
    let names: Vec<&str> = channels.iter().map(String::as_str).collect();
    let counts = outbound::channel_state_counts(conn, &names, &TaskState::STUCK)?;
    let count = |name: &str, s: TaskState| {
        counts
            .iter()
            .find(|(c, state, _)| c == name && *state == s)
            .map_or(0, |(_, _, n)| *n)
    };
    Ok(names
        .iter()
        .map(|name| ChannelStuck {
            name: name.to_string(),
            lost: count(name, TaskState::Lost),
            dead: count(name, TaskState::Dead),
        })
        .collect())
}

fn read(
    conn: &mut DbConnection,
    user_id: i64,
    channels: &[String],
    file_names: &[String],
) -> anyhow::Result<Numbers> {
    let now = db::now();
    let day_ago = now - TimeDelta::hours(24);
    let since = session::seen_at(conn, user_id)?;
    let mut lost = Vec::new();
    let mut lost_unseen = 0;
    for (kind, label, href) in LOST_KINDS {
        let count = outbound::lost_count(conn, kind, &LostFilter::default())?;
        lost_unseen += outbound::lost_since(conn, kind, since)?;
        lost.push(Lost { label, count, href });
    }
    let breakers = outbound::breaker::breakers(conn)?
        .into_iter()
        // The order channels' breakers are shown on their own page (`/admin/channels`).
        .filter(|(kind, _)| !channels.iter().any(|c| *kind == channel_breaker_key(c)))
        .map(|(kind, b)| Breaker {
            open: b.is_open(now),
            kind,
            failures: b.failures,
            paused_until: b.paused_until,
        })
        .collect();
    let unseen = Unseen {
        since,
        dead: requests::dead_since(conn, since)?,
        imports: imports::failed_since(conn, since)?,
        lost: lost_unseen,
    };
    Ok(Numbers {
        now,
        states: crate::queue::unfinished_by_state(conn)?,
        oldest_queued: inspect::oldest_queued(conn, now)?,
        dead: inspect::dead_by_operation(conn, 5)?,
        lost,
        breakers,
        runs: runs::all(conn)?,
        received: requests::received_since(conn, day_ago)?,
        processed: requests::processed_since(conn, day_ago)?,
        failed: requests::failed_since(conn, day_ago)?,
        incidents: alerts::open_incidents(conn)?,
        mail: alerts::mail_trouble(conn, now)?,
        unseen,
        channels: channels_stuck(conn, channels)?,
        files: file_channels(conn, file_names)?,
    })
}

async fn page(staff: Staff, state: web::Data<AppState>) -> Result<HttpResponse, ConsoleError> {
    let user_id = staff.user_id;
    let channels: Vec<String> = state
        .settings
        .channels
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let file_names: Vec<String> = state
        .settings
        .file_channels()
        .map(|c| c.name.clone())
        .collect();
    let n = db::blocking(&state.pool, "the console", move |conn| {
        read(conn, user_id, &channels, &file_names)
    })
    .await?;
    let oldest_age = n
        .oldest_queued
        .map(|(_, t)| age(n.now, t))
        .unwrap_or_default();
    let lost_total = n.lost.iter().map(|l| l.count).sum();
    let channels_stuck = n.channels.iter().map(|c| c.lost + c.dead).sum();
    view::render(&Page {
        chrome: Chrome::new(staff, "dashboard", "Dashboard")
            .refreshing(state.settings.console.refresh_secs),
        n,
        oldest_age,
        lost_total,
        channels_stuck,
    })
}

/// The "mark as seen" form: the moment the page was shown (what the user saw goes up to then).
#[derive(Debug, Deserialize)]
struct SeenForm {
    at: Option<String>,
}

/// Marks the failures shown seen for this user (up to when the page was shown, never later than
/// now) and the import failures among them viewed, then goes back to the dashboard.
async fn seen(
    staff: Staff,
    form: web::Form<SeenForm>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let now = db::now();
    let at = match form.at.as_deref().filter(|s| !s.is_empty()) {
        None => now,
        Some(s) => NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
            .map_err(|_| ConsoleError::bad("at", "not a time (YYYY-MM-DDTHH:MM:SS)"))?
            .min(now),
    };
    let user_id = staff.user_id;
    db::blocking(&state.pool, "the console", move |conn| {
        db::write_tx(conn, |c| {
            session::mark_seen(c, user_id, at)?;
            imports::mark_failures_viewed(c, at, now)
        })?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/admin"))
        .finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_in_the_unit_that_fits() {
        let t = chrono::DateTime::from_timestamp(1_000_000, 0)
            .map(|d| d.naive_utc())
            .unwrap_or_default();
        assert_eq!(age(t + TimeDelta::seconds(5), t), "5 s");
        assert_eq!(age(t + TimeDelta::minutes(5), t), "5 min");
        assert_eq!(age(t + TimeDelta::hours(5), t), "5 h");
        assert_eq!(age(t + TimeDelta::days(5), t), "5 days");
    }
}
