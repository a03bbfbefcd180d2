//! Console sessions: a random cookie value, of which only the SHA-256 is stored; the CSRF token is
//! derived from the cookie, so a copy of the database gives neither. A session ends at logout, when
//! idle for `console.session_idle_secs`, after `console.session_max_secs`, and when its user's
//! password changes or the user is removed (see `auth::manage`).

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use crate::auth::{random_secret, secret_hash};
use crate::config::ConsoleSettings;
use crate::db::schema::{api_users, console_seen, console_sessions};
use crate::db::{self, DbConnection};

/// The session cookie's name.
pub const COOKIE: &str = "wharf_console";

/// What a console user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Reads every page.
    Viewer,
    /// Reads every page and acts (requeue, reprocess, resend, dismiss).
    Operator,
}

impl Role {
    /// The role stored for a user, if it is a console role.
    pub fn of(stored: &str) -> Option<Role> {
        match stored {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

/// The logged-in console user of a request (put there by the guard; handlers take it as an
/// extractor argument).
#[derive(Clone, Debug)]
pub struct Staff {
    /// The user's id.
    pub user_id: i64,
    /// Login name (what the audit log records, as `console:<name>`).
    pub name: String,
    /// What the user may do.
    pub role: Role,
    /// The CSRF token every form of this session carries as `_csrf`.
    pub csrf: String,
}

impl Staff {
    /// Whether the user may act (buttons are shown only then).
    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }

    /// The actor written into audit and action records.
    pub fn actor(&self) -> String {
        format!("console:{}", self.name)
    }
}

/// The CSRF token of the session whose cookie is `cookie`.
pub fn csrf_token(cookie: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"wharf console csrf\0");
    h.update(cookie.as_bytes());
    hex::encode(h.finalize())
}

fn lifetimes(settings: &ConsoleSettings) -> (TimeDelta, TimeDelta) {
    const CENTURY: i64 = 100 * 366 * 24 * 3600;
    let secs = |s: u64| TimeDelta::seconds(i64::try_from(s).unwrap_or(CENTURY).min(CENTURY));
    (
        secs(settings.session_idle_secs),
        secs(settings.session_max_secs),
    )
}

/// Opens a new session for `user_id` (whose password was just checked) and returns the cookie
/// value, given to the browser once. Expired sessions of every user are deleted on the way, so the
/// table stays as small as the number of people logged in.
pub fn open(
    conn: &mut DbConnection,
    user_id: i64,
    settings: &ConsoleSettings,
) -> QueryResult<String> {
    let (idle, max) = lifetimes(settings);
    let now = db::now();
    diesel::delete(
        console_sessions::table.filter(
            console_sessions::last_seen_at
                .lt(now - idle)
                .or(console_sessions::created_at.lt(now - max)),
        ),
    )
    .execute(conn)?;
    let cookie = random_secret();
    diesel::insert_into(console_sessions::table)
        .values((
            console_sessions::id_hash.eq(secret_hash(&cookie)),
            console_sessions::user_id.eq(user_id),
            console_sessions::created_at.eq(now),
            console_sessions::last_seen_at.eq(now),
        ))
        .execute(conn)?;
    Ok(cookie)
}

/// Ends the session of `cookie` (an unknown one is not an error: the browser is logged out
/// either way).
pub fn end(conn: &mut DbConnection, cookie: &str) -> QueryResult<()> {
    diesel::delete(console_sessions::table.find(secret_hash(cookie))).execute(conn)?;
    Ok(())
}

/// How stale `last_seen_at` may grow before a view refreshes it: a minute, or a tenth of the idle
/// lifetime when that is shorter (else a user active every few seconds under a short idle lifetime
/// would be logged out while working, since the stored time lags by up to the refresh interval).
fn refresh_after(idle: TimeDelta) -> TimeDelta {
    TimeDelta::minutes(1).min(idle / 10)
}

/// The user behind `cookie`, if its session is still valid and the user still has a console
/// role. `last_seen_at` is refreshed at most once a minute (see [`refresh_after`]), so a busy page
/// is not a write per view.
pub fn check(
    conn: &mut DbConnection,
    cookie: &str,
    settings: &ConsoleSettings,
) -> QueryResult<Option<Staff>> {
    let id_hash = secret_hash(cookie);
    let found: Option<(i64, String, String, NaiveDateTime, NaiveDateTime)> =
        console_sessions::table
            .inner_join(api_users::table)
            .filter(console_sessions::id_hash.eq(&id_hash))
            .select((
                api_users::id,
                api_users::username,
                api_users::role,
                console_sessions::created_at,
                console_sessions::last_seen_at,
            ))
            .first(conn)
            .optional()?;
    let Some((user_id, name, role, created_at, last_seen_at)) = found else {
        return Ok(None);
    };
    let (idle, max) = lifetimes(settings);
    let now = db::now();
    let Some(role) = Role::of(&role) else {
        return Ok(None);
    };
    if now - last_seen_at > idle || now - created_at > max {
        end(conn, cookie)?;
        return Ok(None);
    }
    if now - last_seen_at > refresh_after(idle) {
        diesel::update(console_sessions::table.find(&id_hash))
            .set(console_sessions::last_seen_at.eq(now))
            .execute(conn)?;
    }
    Ok(Some(Staff {
        user_id,
        name,
        role,
        csrf: csrf_token(cookie),
    }))
}

/// The user's role, if it is a console role (read after a successful login).
pub fn role_of(conn: &mut DbConnection, user_id: i64) -> QueryResult<Option<Role>> {
    let role: Option<String> = api_users::table
        .find(user_id)
        .select(api_users::role)
        .first(conn)
        .optional()?;
    Ok(role.as_deref().and_then(Role::of))
}

/// Until when `user_id` has seen the failures (`None`: never marked).
pub fn seen_at(conn: &mut DbConnection, user_id: i64) -> QueryResult<Option<NaiveDateTime>> {
    console_seen::table
        .find(user_id)
        .select(console_seen::seen_at)
        .first(conn)
        .optional()
}

/// Records that `user_id` has seen every failure up to `at` (one upsert: two tabs marking at once
/// are both fine).
pub fn mark_seen(conn: &mut DbConnection, user_id: i64, at: NaiveDateTime) -> QueryResult<()> {
    crate::with_backend!(&mut *conn, |c| diesel::insert_into(console_seen::table)
        .values((
            console_seen::user_id.eq(user_id),
            console_seen::seen_at.eq(at)
        ))
        .on_conflict(console_seen::user_id)
        .do_update()
        .set(console_seen::seen_at.eq(at))
        .execute(c))?;
    Ok(())
}

/// Up to `limit` sessions not used since before `cutoff` (retention: they have ended).
pub fn unused_before(
    conn: &mut DbConnection,
    cutoff: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<String>> {
    console_sessions::table
        .filter(console_sessions::last_seen_at.lt(cutoff))
        .limit(limit)
        .select(console_sessions::id_hash)
        .load(conn)
}

/// How many sessions were not used since before `cutoff`.
pub fn count_unused_before(conn: &mut DbConnection, cutoff: NaiveDateTime) -> QueryResult<i64> {
    console_sessions::table
        .filter(console_sessions::last_seen_at.lt(cutoff))
        .count()
        .get_result(conn)
}

/// Deletes the sessions `ids` still unused since before `cutoff`. Returns how many.
pub fn delete_unused(
    conn: &mut DbConnection,
    ids: &[String],
    cutoff: NaiveDateTime,
) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::delete(
        console_sessions::table
            .filter(console_sessions::id_hash.eq_any(ids))
            .filter(console_sessions::last_seen_at.lt(cutoff)),
    )
    .execute(conn)
}
