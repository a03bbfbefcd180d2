//! What operators do with users and tokens from the command line: list them, remove a user or
//! change its password (which ends its sessions and admin tokens at once), revoke a storefront token.

use chrono::{NaiveDateTime, TimeDelta};
use diesel::dsl::count_star;
use diesel::prelude::*;

use super::{AuthError, Lifetimes, hash_password};
use crate::db::schema::{access_tokens, api_tokens, api_users, console_sessions, soap_sessions};
use crate::db::{self, DbConnection};

/// An API user as listed for operators (never its password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    /// Login name.
    pub username: String,
    /// Role.
    pub role: String,
    /// When it was created.
    pub created_at: NaiveDateTime,
    /// Login sessions still valid.
    pub sessions: i64,
    /// Admin access tokens still valid.
    pub tokens: i64,
}

/// What removing a user or changing its password ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// Login sessions deleted.
    pub sessions: usize,
    /// Admin access tokens deleted.
    pub tokens: usize,
}

/// A storefront API token as listed for operators (never the token or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct TokenSummary {
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at: NaiveDateTime,
    /// When it was last used (to the minute), if ever.
    pub last_used_at: Option<NaiveDateTime>,
}

#[derive(Queryable)]
struct UserRow {
    id: i64,
    username: String,
    role: String,
    created_at: NaiveDateTime,
}

/// Every API user by name, with how many sessions and admin tokens are still valid under `lifetimes`.
pub fn list_users(
    conn: &mut DbConnection,
    lifetimes: Lifetimes,
) -> Result<Vec<UserSummary>, AuthError> {
    let now = db::now();
    let users: Vec<UserRow> = api_users::table
        .order(api_users::username)
        .select((
            api_users::id,
            api_users::username,
            api_users::role,
            api_users::created_at,
        ))
        .load(conn)?;
    let sessions: Vec<(i64, i64)> = soap_sessions::table
        .filter(soap_sessions::ended_at.is_null())
        .filter(soap_sessions::last_seen_at.ge(now - lifetimes.session_idle))
        .filter(soap_sessions::created_at.ge(now - lifetimes.max))
        .group_by(soap_sessions::user_id)
        .select((soap_sessions::user_id, count_star()))
        .load(conn)?;
    let tokens: Vec<(i64, i64)> = access_tokens::table
        .filter(access_tokens::expires_at.gt(now))
        .filter(access_tokens::created_at.ge(now - lifetimes.max))
        .group_by(access_tokens::user_id)
        .select((access_tokens::user_id, count_star()))
        .load(conn)?;
    let count = |rows: &[(i64, i64)], id: i64| {
        rows.iter()
            .find(|(user, _)| *user == id)
            .map_or(0, |(_, n)| *n)
    };
    Ok(users
        .into_iter()
        .map(|u| UserSummary {
            sessions: count(&sessions, u.id),
            tokens: count(&tokens, u.id),
            username: u.username,
            role: u.role,
            created_at: u.created_at,
        })
        .collect())
}

/// How many console sessions each user has that are still valid under the console's lifetimes,
/// by user name (users without one are not listed).
pub fn console_sessions(
    conn: &mut DbConnection,
    console: &crate::config::ConsoleSettings,
) -> Result<Vec<(String, i64)>, AuthError> {
    let now = db::now();
    let secs = |s: u64| TimeDelta::seconds(i64::try_from(s).unwrap_or(CENTURY).min(CENTURY));
    Ok(console_sessions::table
        .inner_join(api_users::table)
        .filter(console_sessions::last_seen_at.ge(now - secs(console.session_idle_secs)))
        .filter(console_sessions::created_at.ge(now - secs(console.session_max_secs)))
        .group_by(api_users::username)
        .select((api_users::username, count_star()))
        .load(conn)?)
}

/// A century in seconds: the cap on lifetimes, so that `now - lifetime` stays representable.
const CENTURY: i64 = 100 * 366 * 24 * 3600;

/// Deletes every session and admin token of a user: they stop working with the next call.
fn end_everything(conn: &mut DbConnection, user_id: i64) -> QueryResult<Ended> {
    let sessions = diesel::delete(soap_sessions::table.filter(soap_sessions::user_id.eq(user_id)))
        .execute(conn)?;
    let tokens = diesel::delete(access_tokens::table.filter(access_tokens::user_id.eq(user_id)))
        .execute(conn)?;
    let console =
        diesel::delete(console_sessions::table.filter(console_sessions::user_id.eq(user_id)))
            .execute(conn)?;
    Ok(Ended {
        sessions: sessions + console,
        tokens,
    })
}

fn user_id(conn: &mut DbConnection, username: &str) -> Result<i64, AuthError> {
    api_users::table
        .filter(api_users::username.eq(username))
        .select(api_users::id)
        .first(conn)
        .optional()?
        .ok_or_else(|| AuthError::NotFound(format!("user {username:?}")))
}

/// Removes an API user, ending its sessions and admin tokens in the same transaction. Requests it
/// sent stay (they name their caller).
pub fn remove_user(conn: &mut DbConnection, username: &str) -> Result<Ended, AuthError> {
    db::write_tx(conn, |conn| {
        let id = user_id(conn, username)?;
        let ended = end_everything(conn, id)?;
        diesel::delete(api_users::table.find(id)).execute(conn)?;
        Ok(ended)
    })
}

/// Gives an API user a new password (taken exactly as given, never trimmed) and ends its sessions
/// and admin tokens, so whoever held the old one is out at once. Blocking (argon2).
pub fn set_password(
    conn: &mut DbConnection,
    username: &str,
    password: &str,
) -> Result<Ended, AuthError> {
    if password.chars().count() < 8 {
        return Err(AuthError::WeakPassword);
    }
    let hash = hash_password(password)?;
    db::write_tx(conn, |conn| {
        let id = user_id(conn, username)?;
        diesel::update(api_users::table.find(id))
            .set(api_users::password_hash.eq(&hash))
            .execute(conn)?;
        Ok(end_everything(conn, id)?)
    })
}

/// Every storefront API token by name.
pub fn list_tokens(conn: &mut DbConnection) -> Result<Vec<TokenSummary>, AuthError> {
    Ok(api_tokens::table
        .order(api_tokens::name)
        .select((
            api_tokens::name,
            api_tokens::created_at,
            api_tokens::last_used_at,
        ))
        .load(conn)?)
}

/// Revokes a storefront API token: calls with it are refused from now on.
pub fn revoke_token(conn: &mut DbConnection, name: &str) -> Result<(), AuthError> {
    match diesel::delete(api_tokens::table.filter(api_tokens::name.eq(name))).execute(conn)? {
        0 => Err(AuthError::NotFound(format!("token {name:?}"))),
        _ => Ok(()),
    }
}
