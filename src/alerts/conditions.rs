//! The conditions incidents are about: each reads the database (through the store of the domain
//! that owns the rows) and says what is wrong at `now`, one [`Finding`] per key. Nothing here
//! writes.

use chrono::NaiveDateTime;
use diesel::QueryResult;

use super::{Condition, Item, MAX_ITEMS, key, store};
use crate::channels::sftp::client::Trouble;
use crate::channels::sftp::store::{self as files, ops as file_ops};
use crate::config::Settings;
use crate::db::DbConnection;
use crate::orders::export::{ORDER_CANCEL, ORDER_INSERT};
use crate::outbound::{self, TaskKind, TaskRow, TaskState};
use crate::products::export::PRODUCT_MERGE;

/// Something wrong now, under its incident's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The incident's key.
    pub key: String,
    /// One line: what and how many.
    pub summary: String,
    /// How many things it is about.
    pub count: i64,
    /// The error of the first (oldest) of them, when there is one.
    pub first_error: Option<String>,
    /// Up to [`MAX_ITEMS`] of them, oldest first.
    pub items: Vec<Item>,
}

/// Everything wrong at `now`.
pub fn evaluate(
    conn: &mut DbConnection,
    settings: &Settings,
    now: NaiveDateTime,
) -> QueryResult<Vec<Finding>> {
    let mut found = dead_requests(conn)?;
    for (condition, kind, noun) in [
        (Condition::OrdersLost, ORDER_INSERT, "order"),
        (Condition::CancellationsLost, ORDER_CANCEL, "cancellation"),
        (Condition::ProductsLost, PRODUCT_MERGE, "product"),
    ] {
        found.extend(lost(conn, condition, kind, noun)?);
    }
    found.extend(open_breakers(conn, now)?);
    found.extend(unseen_import_failures(conn)?);
    found.extend(backlog(conn, settings, now)?);
    for c in &settings.channels {
        found.extend(channel(conn, &c.name, now)?);
    }
    for c in settings.file_channels() {
        found.extend(file_channel(conn, &c.name)?);
    }
    Ok(found)
}

/// What an incident's title is: its summary without the count (`lost orders`).
pub fn title(condition: Condition, scope: Option<&str>) -> String {
    let scope = scope.unwrap_or("");
    match condition {
        Condition::RequestsDead => format!("dead requests ({scope})"),
        Condition::OrdersLost => "lost orders".into(),
        Condition::CancellationsLost => "lost cancellations".into(),
        Condition::ProductsLost => "lost products".into(),
        Condition::Breaker => format!("exports paused by the breaker ({scope})"),
        Condition::ImportsFailed => "import failures not yet seen".into(),
        Condition::Backlog if scope == "requests" => "backlog of queued requests".into(),
        Condition::Backlog => "backlog of due exports".into(),
        Condition::Channel => match parse_channel_scope(scope) {
            Some((name, ChannelTrouble::Dead)) => format!("dead pushes to channel {name}"),
            Some((name, ChannelTrouble::Lost)) => format!("lost pushes to channel {name}"),
            Some((name, ChannelTrouble::Ticket)) => format!("failed tickets of channel {name}"),
            Some((name, ChannelTrouble::Paused)) => {
                format!("channel {name} paused by its breaker")
            }
            None => format!("order channel trouble ({scope})"),
        },
        Condition::Files => match parse_files_scope(scope) {
            Some((name, alert)) => file_title(name, alert),
            None => format!("file channel trouble ({scope})"),
        },
    }
}

fn plural(n: i64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn dead_requests(conn: &mut DbConnection) -> QueryResult<Vec<Finding>> {
    let dead = crate::queue::inspect::dead_by_operation(conn, MAX_ITEMS as i64)?;
    Ok(dead
        .into_iter()
        .map(|d| {
            let scope = d.operation.as_str();
            Finding {
                key: key(Condition::RequestsDead, Some(scope)),
                summary: format!(
                    "{}: {}",
                    title(Condition::RequestsDead, Some(scope)),
                    plural(d.count, "request")
                ),
                count: d.count,
                first_error: d.oldest.first().and_then(|(_, e)| e.clone()),
                items: d
                    .oldest
                    .into_iter()
                    .map(|(id, error)| Item {
                        id: id.to_string(),
                        detail: error.unwrap_or_default(),
                    })
                    .collect(),
            }
        })
        .collect())
}

fn lost(
    conn: &mut DbConnection,
    condition: Condition,
    kind: TaskKind,
    noun: &str,
) -> QueryResult<Option<Finding>> {
    let (count, tasks) = outbound::first_in_state(conn, kind, TaskState::Lost, MAX_ITEMS as i64)?;
    if count == 0 {
        return Ok(None);
    }
    Ok(Some(Finding {
        key: key(condition, None),
        summary: format!("{}: {}", title(condition, None), plural(count, noun)),
        count,
        first_error: tasks.first().and_then(|t| t.last_error.clone()),
        items: tasks
            .into_iter()
            .map(|t| Item {
                id: t.subject,
                detail: t.last_error.unwrap_or_default(),
            })
            .collect(),
    }))
}

fn open_breakers(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<Vec<Finding>> {
    let breakers = outbound::breaker::breakers(conn)?;
    Ok(breakers
        .into_iter()
        // An order channel's breaker is its own incident (see `channel`).
        .filter(|(name, b)| b.is_open(now) && !name.starts_with(CHANNEL_BREAKER_PREFIX))
        .map(|(name, b)| {
            let scope = format!("{}/{name}", outbound::WAREHOUSE);
            let until = b
                .paused_until
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default();
            Finding {
                key: key(Condition::Breaker, Some(&scope)),
                summary: format!(
                    "{}: paused until {until} after {}",
                    title(Condition::Breaker, Some(&scope)),
                    plural(i64::from(b.failures), "failed batch").replace("batchs", "batches")
                ),
                count: i64::from(b.failures),
                first_error: None,
                items: Vec::new(),
            }
        })
        .collect())
}

fn unseen_import_failures(conn: &mut DbConnection) -> QueryResult<Option<Finding>> {
    let (count, oldest) = crate::imports::store::unseen_failures(conn, MAX_ITEMS as i64)?;
    if count == 0 {
        return Ok(None);
    }
    Ok(Some(Finding {
        key: key(Condition::ImportsFailed, None),
        summary: format!(
            "{}: {}",
            title(Condition::ImportsFailed, None),
            plural(count, "import")
        ),
        count,
        first_error: None,
        items: oldest
            .into_iter()
            .map(|(id, failures)| Item {
                id: id.to_string(),
                detail: plural(i64::from(failures), "failed line"),
            })
            .collect(),
    }))
}

/// The oldest due request and the oldest due export (of the exports that are on), when older
/// than `backlog_alert_after_secs`.
fn backlog(
    conn: &mut DbConnection,
    settings: &Settings,
    now: NaiveDateTime,
) -> QueryResult<Vec<Finding>> {
    let limit = chrono::TimeDelta::seconds(settings.alerts.backlog_alert_after_secs);
    let mut found = Vec::new();
    let oldest = [
        (
            "requests",
            "request",
            crate::queue::inspect::oldest_queued(conn, now)?.map(|(id, at)| (id.to_string(), at)),
        ),
        (
            "exports",
            "export",
            store::oldest_due_export(conn, &settings.warehouse, now)?,
        ),
    ];
    for (scope, noun, oldest) in oldest {
        let Some((id, since)) = oldest.filter(|(_, since)| now - *since > limit) else {
            continue;
        };
        found.push(Finding {
            key: key(Condition::Backlog, Some(scope)),
            summary: format!(
                "{}: the oldest {noun} waits for {}",
                title(Condition::Backlog, Some(scope)),
                waited(now - since)
            ),
            count: 1,
            first_error: None,
            items: vec![Item {
                id,
                detail: format!("waiting since {} UTC", since.format("%Y-%m-%d %H:%M:%S")),
            }],
        });
    }
    Ok(found)
}

/// A wait for people: `40 s`, `12 min`, `3 h 5 min`.
fn waited(d: chrono::TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    match secs {
        0..60 => format!("{secs} s"),
        60..7200 => format!("{} min", secs / 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

crate::text_enum! {
    /// What is wrong with an order channel: the last part of its incident's key
    /// (`channel:<name>:<trouble>`).
    pub enum ChannelTrouble: "channel trouble" {
        /// Pushes the channel refused for good wait for support.
        Dead = "dead",
        /// Pushes refused `max_attempts` times wait for support.
        Lost = "lost",
        /// Pushes whose ticket failed (state `failed` with a batch id): sent again after a backoff.
        Ticket = "ticket",
        /// The channel's breaker paused it: its API did not answer.
        Paused = "paused",
    }
}

/// The scope of an order channel's incident key: `amazon:dead` (the key is `channel:amazon:dead`).
pub fn channel_scope(name: &str, trouble: ChannelTrouble) -> String {
    format!("{name}:{}", trouble.as_str())
}

/// The channel and the trouble of a channel incident's scope (channel names hold no `:`).
pub fn parse_channel_scope(scope: &str) -> Option<(&str, ChannelTrouble)> {
    let (name, trouble) = scope.rsplit_once(':')?;
    Some((name, ChannelTrouble::parse(trouble)?))
}

pub use crate::outbound::breaker::{CHANNEL_BREAKER_PREFIX, channel_breaker_key};

/// `1 push`, `3 pushes`.
fn pushes(n: i64) -> String {
    if n == 1 {
        "1 push".into()
    } else {
        format!("{n} pushes")
    }
}

/// The orders of `tasks`, each once, for a summary: `order 100042`, `orders 1, 2, 3 and 4 more`.
fn orders_of(tasks: &[TaskRow], count: i64) -> String {
    const SHOWN: usize = 5;
    let mut orders: Vec<&str> = Vec::new();
    for t in tasks {
        if !orders.contains(&t.subject.as_str()) {
            orders.push(&t.subject);
        }
    }
    let more = if orders.len() > SHOWN || count > tasks.len() as i64 {
        " and more"
    } else {
        ""
    };
    let shown = orders[..orders.len().min(SHOWN)].join(", ");
    match orders.len() {
        1 if more.is_empty() => format!("order {shown}"),
        _ => format!("orders {shown}{more}"),
    }
}

/// Everything wrong with order channel `name` at `now`: its dead pushes, its lost ones, its failed
/// tickets, its breaker.
fn channel(conn: &mut DbConnection, name: &str, now: NaiveDateTime) -> QueryResult<Vec<Finding>> {
    let mut found = Vec::new();
    for (trouble, state, ticketed) in [
        (ChannelTrouble::Dead, TaskState::Dead, false),
        (ChannelTrouble::Lost, TaskState::Lost, false),
        (ChannelTrouble::Ticket, TaskState::Failed, true),
    ] {
        let (count, tasks) =
            outbound::channel_in_state(conn, name, state, ticketed, MAX_ITEMS as i64)?;
        if count == 0 {
            continue;
        }
        let scope = channel_scope(name, trouble);
        let what = format!(
            "{}: {} ({})",
            title(Condition::Channel, Some(&scope)),
            pushes(count),
            orders_of(&tasks, count)
        );
        let summary = match (trouble, tasks.as_slice()) {
            (ChannelTrouble::Ticket, _) => format!(
                "{what}, sent again after a backoff; see wharf channels tasks --channel {name} --state failed"
            ),
            (_, [one]) if count == 1 => format!("{what}; fix: wharf channels resend {}", one.id),
            _ => format!(
                "{what}; fix: wharf channels resend ID (wharf channels tasks --channel {name} --state {state} lists them)"
            ),
        };
        found.push(Finding {
            key: key(Condition::Channel, Some(&scope)),
            summary,
            count,
            first_error: tasks.first().and_then(|t| t.last_error.clone()),
            items: tasks
                .into_iter()
                .map(|t| Item {
                    id: t.id.to_string(),
                    detail: format!(
                        "order {}, {}: {}",
                        t.subject,
                        t.action,
                        t.last_error.as_deref().unwrap_or("no error recorded")
                    ),
                })
                .collect(),
        });
    }
    found.extend(channel_paused(conn, name, now)?);
    Ok(found)
}

/// The channel's breaker, when it pauses the channel at `now`.
fn channel_paused(
    conn: &mut DbConnection,
    name: &str,
    now: NaiveDateTime,
) -> QueryResult<Option<Finding>> {
    let Some(b) = outbound::breaker::open_at(conn, &channel_breaker_key(name), now)? else {
        return Ok(None);
    };
    let scope = channel_scope(name, ChannelTrouble::Paused);
    let until = b
        .paused_until
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    Ok(Some(Finding {
        key: key(Condition::Channel, Some(&scope)),
        summary: format!(
            "{}: pushes paused until {until} after {} in a row not answered; they resume by \
             themselves (see wharf channels)",
            title(Condition::Channel, Some(&scope)),
            plural(i64::from(b.failures), "call")
        ),
        count: i64::from(b.failures),
        first_error: None,
        items: Vec::new(),
    }))
}

crate::text_enum! {
    /// What is wrong with a file channel: the last part of its incident's key
    /// (`files:<name>:<alert>`). The first six are its runs' troubles (`channel_troubles`, the
    /// words of [`Trouble`]); the last two are read from its exchanges.
    pub enum FileAlert: "file channel alert" {
        /// The server cannot be reached, the login is refused, or calls time out.
        Connection = "connection",
        /// The server's host key is not the one trusted.
        HostKey = "host_key",
        /// `export_dir` is missing on the server.
        ExportFolder = "export_folder",
        /// Order files cannot be written or renamed.
        Export = "export",
        /// `import_dir` (or a folder wharf keeps in it) is missing and cannot be made.
        ImportFolder = "import_folder",
        /// Shipment files cannot be listed, moved or read.
        Import = "import",
        /// Shipment files went to `failed/` (empty, unreadable, too large, not a shipment) and
        /// support has not seen them.
        Failed = "failed",
        /// Shipment files sit in `processing/` after more than two runs found them unfinished.
        Stuck = "stuck",
    }
}

impl FileAlert {
    /// The alert of a run's trouble.
    pub fn of(trouble: Trouble) -> FileAlert {
        match trouble {
            Trouble::Connection => FileAlert::Connection,
            Trouble::HostKey => FileAlert::HostKey,
            Trouble::ExportFolder => FileAlert::ExportFolder,
            Trouble::Export => FileAlert::Export,
            Trouble::ImportFolder => FileAlert::ImportFolder,
            Trouble::Import => FileAlert::Import,
        }
    }
}

/// The scope of a file channel's incident key: `dropbox:connection` (the key is
/// `files:dropbox:connection`).
pub fn files_scope(name: &str, alert: FileAlert) -> String {
    format!("{name}:{}", alert.as_str())
}

/// The channel and the alert of a file channel incident's scope (channel names hold no `:`).
pub fn parse_files_scope(scope: &str) -> Option<(&str, FileAlert)> {
    let (name, alert) = scope.rsplit_once(':')?;
    Some((name, FileAlert::parse(alert)?))
}

fn file_title(name: &str, alert: FileAlert) -> String {
    match alert {
        FileAlert::Connection => format!("file channel {name} cannot connect"),
        FileAlert::HostKey => format!("file channel {name}: host key refused"),
        FileAlert::ExportFolder => format!("file channel {name}: export folder missing"),
        FileAlert::Export => format!("file channel {name}: order files cannot be written"),
        FileAlert::ImportFolder => format!("file channel {name}: import folder missing"),
        FileAlert::Import => format!("file channel {name}: shipment files cannot be read"),
        FileAlert::Failed => format!("failed shipment files of file channel {name}"),
        FileAlert::Stuck => format!("shipment files stuck in processing/ on file channel {name}"),
    }
}

/// `a.xml, b.xml and 3 more`: the names of `rows` for a summary (`count` of them in all).
fn file_names(rows: &[files::FileExchange], count: i64) -> String {
    const SHOWN: usize = 3;
    let names: Vec<&str> = rows.iter().take(SHOWN).map(|r| r.name.as_str()).collect();
    let more = count - names.len() as i64;
    if more > 0 {
        format!("{} and {more} more", names.join(", "))
    } else {
        names.join(", ")
    }
}

/// Everything wrong with file channel `name`: each trouble its runs recorded, its failed shipment
/// files not yet seen, its files stuck in `processing/`.
fn file_channel(conn: &mut DbConnection, name: &str) -> QueryResult<Vec<Finding>> {
    let mut found = Vec::new();
    for t in files::troubles(conn, Some(name))? {
        // A word written by a newer wharf is left to it.
        let Some(trouble) = Trouble::parse(&t.trouble) else {
            continue;
        };
        let scope = files_scope(name, FileAlert::of(trouble));
        found.push(Finding {
            key: key(Condition::Files, Some(&scope)),
            summary: title(Condition::Files, Some(&scope)),
            count: 1,
            first_error: Some(t.detail.clone()),
            items: vec![Item {
                id: name.to_string(),
                detail: format!(
                    "since {} UTC: {}",
                    t.since.format("%Y-%m-%d %H:%M:%S"),
                    t.detail
                ),
            }],
        });
    }
    for (alert, (count, rows)) in [
        (
            FileAlert::Failed,
            file_ops::unseen_failed(conn, name, MAX_ITEMS as i64)?,
        ),
        (
            FileAlert::Stuck,
            file_ops::stuck(conn, name, MAX_ITEMS as i64)?,
        ),
    ] {
        if count == 0 {
            continue;
        }
        let scope = files_scope(name, alert);
        found.push(Finding {
            key: key(Condition::Files, Some(&scope)),
            summary: format!(
                "{}: {} ({})",
                title(Condition::Files, Some(&scope)),
                plural(count, "file"),
                file_names(&rows, count)
            ),
            count,
            first_error: rows.first().and_then(|r| r.error.clone()),
            items: rows
                .into_iter()
                .map(|r| Item {
                    id: r.id.to_string(),
                    detail: match alert {
                        FileAlert::Stuck => format!(
                            "{}: claimed {} UTC, {} runs could not finish it{}",
                            r.name,
                            r.created_at.format("%Y-%m-%d %H:%M:%S"),
                            r.runs,
                            r.error.map(|e| format!(": {e}")).unwrap_or_default()
                        ),
                        _ => format!(
                            "{}: {}",
                            r.name,
                            r.error.as_deref().unwrap_or("no reason recorded")
                        ),
                    },
                })
                .collect(),
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_channels_keys_parse_back_and_its_troubles_keep_their_words() {
        for t in Trouble::ALL {
            assert_eq!(FileAlert::of(*t).as_str(), t.as_str());
        }
        for alert in FileAlert::ALL {
            let k = key(Condition::Files, Some(&files_scope("drop-box_1", *alert)));
            let (condition, scope) = super::super::parse_key(&k).unwrap();
            assert_eq!(condition, Condition::Files);
            assert_eq!(
                parse_files_scope(scope.unwrap()),
                Some(("drop-box_1", *alert))
            );
            assert!(title(condition, scope).contains("file channel drop-box_1"));
        }
        assert_eq!(
            key(
                Condition::Files,
                Some(&files_scope("dropbox", FileAlert::HostKey))
            ),
            "files:dropbox:host_key"
        );
        assert_eq!(parse_files_scope("dropbox:upside_down"), None);
    }
}
