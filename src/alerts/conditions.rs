//! The conditions incidents are about: each reads the database (through the store of the domain
//! that owns the rows) and says what is wrong at `now`, one [`Finding`] per key. Nothing here
//! writes.

use chrono::NaiveDateTime;
use diesel::QueryResult;

use super::{Condition, Item, MAX_ITEMS, key, store};
use crate::config::Settings;
use crate::db::DbConnection;
use crate::orders::export::{ORDER_CANCEL, ORDER_INSERT};
use crate::outbound::{self, TaskKind, TaskState};
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
        .filter(|(_, b)| b.is_open(now))
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
