//! The checks that read the database: reachable, migrations applied, clock skew, the queue, the
//! background jobs' last runs, and users. Blocking (diesel): run off the async executor.

use std::time::Instant;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{Finding, age};
use crate::alerts;
use crate::config::Settings;
use crate::db::{self, DbConnection};
use crate::queue::{self, RequestState};
use crate::runs::{self, Run};

/// Skew between this host's clock and the database's above which a warning is printed: leases,
/// retry times and ages mix times taken by wharf and by the database.
const MAX_SKEW_SECS: f64 = 5.0;

/// Every database check, in the order printed. When the database cannot be opened, that is the one
/// finding (nothing else can be read).
pub fn checks(settings: &Settings) -> Vec<Finding> {
    let shown = db::redact_url(&settings.database_url);
    // `connect_existing`: a check must not create the SQLite file it was pointed at by mistake.
    let mut conn = match db::connect_existing(&settings.database_url, 1)
        .map_err(|e| e.to_string())
        .and_then(|pool| pool.get().map_err(|e| e.to_string()))
    {
        Ok(conn) => conn,
        Err(e) => {
            return vec![Finding::fail(
                "database",
                format!("{shown} cannot be opened: {e}"),
            )];
        }
    };
    let mut findings = vec![Finding::ok("database", format!("reachable at {shown}"))];
    let migrated = migrations(&mut conn);
    let current = migrated.status == super::Status::Ok;
    findings.push(migrated);
    findings.push(clock(&mut conn));
    // After a failed read, tables may simply not exist yet: with migrations pending that is the
    // cause already reported, so the read is a warning, not a second failure.
    let unread = |name: &str, e: &dyn std::fmt::Display| {
        let detail = format!("cannot be read ({e})");
        if current {
            Finding::fail(name, detail)
        } else {
            Finding::warn(
                name,
                format!("{detail}; apply the pending migrations first"),
            )
        }
    };
    findings.push(queue(&mut conn, settings).unwrap_or_else(|e| unread("queue", &e)));
    match runs::all(&mut conn) {
        Ok(all) => findings.extend(jobs(&all)),
        Err(e) => findings.push(unread("background jobs", &e)),
    }
    findings.push(incidents(&mut conn).unwrap_or_else(|e| unread("incidents", &e)));
    findings.push(alert_mails(&mut conn, settings).unwrap_or_else(|e| unread("alert mails", &e)));
    findings.push(users(&mut conn, settings).unwrap_or_else(|e| unread("warehouse users", &e)));
    findings.push(
        console_users(&mut conn, settings).unwrap_or_else(|e| unread("console operators", &e)),
    );
    findings
}

/// Every embedded migration applied, or the pending ones by name.
fn migrations(conn: &mut DbConnection) -> Finding {
    match db::pending_migrations(conn) {
        Ok(pending) if pending.is_empty() => Finding::ok("migrations", "all applied"),
        Ok(pending) => Finding::fail(
            "migrations",
            format!(
                "{} pending: {}; run `wharf migrate` (serve applies them too when it starts)",
                pending.len(),
                pending.join(", ")
            ),
        ),
        Err(e) => Finding::fail("migrations", format!("cannot read which are applied ({e})")),
    }
}

/// The database's clock against this host's. SQLite is a file read by this process: one clock.
fn clock(conn: &mut DbConnection) -> Finding {
    let DbConnection::Postgresql(c) = conn else {
        return Finding::ok("clock", "SQLite runs in this process: one clock, no skew");
    };
    let before = Instant::now();
    let asked = db::now();
    let theirs = diesel::select(diesel::dsl::sql::<diesel::sql_types::Timestamp>(
        "CAST(CURRENT_TIMESTAMP AT TIME ZONE 'UTC' AS timestamp)",
    ))
    .get_result::<NaiveDateTime>(c);
    let theirs = match theirs {
        Ok(t) => t,
        Err(e) => return Finding::fail("clock", format!("cannot read the database's time ({e})")),
    };
    // The database read its clock somewhere within the round trip: compare with its middle.
    let trip = before.elapsed();
    let ours = asked + chrono::TimeDelta::from_std(trip / 2).unwrap_or_default();
    let skew = (theirs - ours).num_milliseconds() as f64 / 1000.0;
    let ahead = if skew > 0.0 { "ahead of" } else { "behind" };
    let text = format!(
        "the database's clock is {:.1} s {ahead} this host's",
        skew.abs()
    );
    if skew.abs() > MAX_SKEW_SECS {
        Finding::warn(
            "clock",
            format!("{text}: leases and retry times mix both clocks; sync them (NTP)"),
        )
    } else {
        Finding::ok("clock", text)
    }
}

/// Depth by state, the oldest queued request's age, dead requests.
fn queue(conn: &mut DbConnection, settings: &Settings) -> QueryResult<Finding> {
    let depth = queue::depth_by_state(conn)?;
    let count = |state: RequestState| {
        depth
            .iter()
            .find(|(s, _)| s == state.as_str())
            .map_or(0, |(_, n)| *n)
    };
    let by_state: Vec<String> = RequestState::ALL
        .iter()
        .map(|s| format!("{} {}", count(*s), s.as_str()))
        .collect();
    let mut detail = by_state.join(", ");
    let oldest = queue::oldest_queued_at(conn)?.map(|at| (db::now() - at).num_seconds().max(0));
    if let Some(secs) = oldest {
        detail.push_str(&format!("; oldest queued {} ago", age(secs)));
    }
    let mut advice = Vec::new();
    let dead = count(RequestState::Dead);
    if dead > 0 {
        advice.push(format!(
            "{dead} dead: see `wharf requests list --state dead`, then `wharf requests requeue` \
             once the cause is fixed"
        ));
    }
    let limit = settings.alerts.backlog_alert_after_secs;
    if let Some(secs) = oldest.filter(|s| *s > limit) {
        advice.push(format!(
            "backlog: the oldest queued request waits {} (over alerts.backlog_alert_after_secs = \
             {limit}); is a worker running? see `wharf requests list --state queued`",
            age(secs)
        ));
    }
    Ok(if advice.is_empty() {
        Finding::ok("queue", detail)
    } else {
        Finding::warn("queue", format!("{detail}; {}", advice.join("; ")))
    })
}

/// One line per background job that ever ran: when it last ran well, and its last error when that
/// came later.
fn jobs(all: &[Run]) -> Vec<Finding> {
    if all.is_empty() {
        return vec![Finding::ok(
            "background jobs",
            "none has run on this database yet (serve and worker record their runs)",
        )];
    }
    let now = db::now();
    let ago = |t: NaiveDateTime| age((now - t).num_seconds().max(0));
    all.iter()
        .map(|run| {
            let name = format!("job {}", run.job.as_str());
            let ok = run
                .last_ok_at
                .map(|t| format!("last ran well {} ago", ago(t)));
            match run.last_failed_at {
                Some(failed) if run.last_ok_at.is_none_or(|ok| failed > ok) => Finding::warn(
                    name,
                    format!(
                        "failed {} ago: {}{}; see the log of the process that runs it",
                        ago(failed),
                        run.last_error.as_deref().unwrap_or("no error recorded"),
                        ok.map(|ok| format!(" ({ok})")).unwrap_or_default()
                    ),
                ),
                _ => Finding::ok(name, ok.unwrap_or_else(|| "ran".into())),
            }
        })
        .collect()
}

/// At least one user the warehouse can log in with.
fn users(conn: &mut DbConnection, settings: &Settings) -> Result<Finding, crate::auth::AuthError> {
    let users = crate::auth::list_users(conn, crate::auth::Lifetimes::of(&settings.soap))?;
    let names: Vec<&str> = users
        .iter()
        .filter(|u| u.role == "warehouse")
        .map(|u| u.username.as_str())
        .collect();
    Ok(if names.is_empty() {
        Finding::fail(
            "warehouse users",
            "none: the warehouse cannot log in; add one with `wharf users add NAME --password-stdin`",
        )
    } else {
        Finding::ok(
            "warehouse users",
            format!("{}: {}", names.len(), names.join(", ")),
        )
    })
}

/// The console's users by role: a warning when nobody may act (no operator), off when the console
/// is off.
fn console_users(
    conn: &mut DbConnection,
    settings: &Settings,
) -> Result<Finding, crate::auth::AuthError> {
    const NAME: &str = "console operators";
    if !settings.console.enabled {
        return Ok(Finding::off(
            NAME,
            "the console is off (console.enabled = false)",
        ));
    }
    let users = crate::auth::list_users(conn, crate::auth::Lifetimes::of(&settings.soap))?;
    let of_role = |role: crate::console::Role| {
        users
            .iter()
            .filter(|u| crate::console::Role::of(&u.role) == Some(role))
            .map(|u| u.username.as_str())
            .collect::<Vec<_>>()
    };
    let operators = of_role(crate::console::Role::Operator);
    let viewers = of_role(crate::console::Role::Viewer);
    let counts = format!(
        "{} operator{} ({}), {} viewer{}",
        operators.len(),
        if operators.len() == 1 { "" } else { "s" },
        if operators.is_empty() {
            "-".to_string()
        } else {
            operators.join(", ")
        },
        viewers.len(),
        if viewers.len() == 1 { "" } else { "s" },
    );
    Ok(if operators.is_empty() {
        Finding::warn(
            NAME,
            format!(
                "{counts}: nobody can resend, dismiss or requeue from the console; add one with \
                 `wharf users add NAME --role operator --password-stdin`"
            ),
        )
    } else {
        Finding::ok(NAME, counts)
    })
}

/// The incidents open now, by summary.
fn incidents(conn: &mut DbConnection) -> QueryResult<Finding> {
    let open = alerts::open_incidents(conn)?;
    if open.is_empty() {
        return Ok(Finding::ok("incidents", "none open"));
    }
    let summaries: Vec<&str> = open.iter().map(|i| i.summary.as_str()).collect();
    Ok(Finding::warn(
        "incidents",
        format!(
            "{} open: {}; each alert mail says what fixes it",
            open.len(),
            summaries.join("; ")
        ),
    ))
}

/// Alert mails that do not go: refused or given up is a failure (nobody hears of trouble), held
/// back (the hourly limit) a warning.
fn alert_mails(conn: &mut DbConnection, settings: &Settings) -> QueryResult<Finding> {
    let trouble = alerts::mail_trouble(conn, db::now())?;
    if !trouble.any() {
        let detail = if settings.alerts.mails_on() {
            "none waiting to be sent"
        } else {
            "none (alert mails are off)"
        };
        return Ok(Finding::ok("alert mails", detail));
    }
    let why = trouble
        .last_error
        .as_deref()
        .map(|e| format!("; last error: {e}"))
        .unwrap_or_default();
    let detail = format!(
        "{} failed (retried), {} given up, {} overdue{why}",
        trouble.failed, trouble.lost, trouble.overdue
    );
    if trouble.failed + trouble.lost > 0 {
        Ok(Finding::fail(
            "alert mails",
            format!("{detail}; check the smtp line below and the SMTP server's log"),
        ))
    } else {
        Ok(Finding::warn(
            "alert mails",
            format!(
                "{detail}; held back by alerts.max_mails_per_hour, or the mailer is not running"
            ),
        ))
    }
}
