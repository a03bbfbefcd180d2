//! Who may call wharf: API users (argon2id passwords) with SOAP login sessions, and storefront bearer
//! tokens. Session ids and tokens are random 256-bit values; only their SHA-256 is stored, so a copy of
//! the database does not let anyone in. (A fast hash is enough for values that carry their own
//! entropy; argon2 is kept for human-chosen passwords.)

use std::net::IpAddr;
use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, SaltString};
use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::db::schema::{access_tokens, api_tokens, api_users, soap_sessions};
use crate::db::{self, DbConnection, Pool};

mod manage;
mod passwords;
pub mod throttle;
pub use manage::{
    Ended, TokenSummary, UserSummary, console_sessions, list_tokens, list_users, remove_user,
    revoke_token, set_password,
};
pub use passwords::{PasswordChecker, Verified};

/// Roles a user can have: `warehouse` calls the SOAP API; `viewer` and `operator` log into the
/// console (an operator may also act: requeue, reprocess, resend, dismiss). A user has one role, so
/// a warehouse login never opens the console and a console login never calls SOAP.
pub const ROLES: &[&str] = &["warehouse", "viewer", "operator"];

/// Where a password is being checked: each door lets in only its own roles, and a user of another
/// role is answered exactly like an unknown user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    /// SOAP login, HTTP Basic and admin tokens: role `warehouse`.
    Soap,
    /// The console's login page: roles `viewer` and `operator`.
    Console,
}

impl Door {
    /// The roles this door lets in.
    pub fn roles(self) -> &'static [&'static str] {
        match self {
            Door::Soap => &ROLES[..1],
            Door::Console => &ROLES[1..],
        }
    }
}

/// An authentication or user-management failure.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong user name or password.
    #[error("Access denied.")]
    AccessDenied,
    /// Unknown, ended or idle session.
    #[error("Session expired. Try to relogin.")]
    SessionExpired,
    /// The call carries no credentials at all.
    #[error(
        "Authentication required: send the sessionId from login, an `Authorization: Bearer` token from integrationAdminTokenServiceV1CreateAdminAccessToken, or HTTP Basic credentials of an API user."
    )]
    NoCredentials,
    /// Unknown or expired access token.
    #[error(
        "The access token is unknown or has expired; request a new one with integrationAdminTokenServiceV1CreateAdminAccessToken."
    )]
    TokenExpired,
    /// A user or token name that is already taken.
    #[error("{0} already exists")]
    Exists(String),
    /// A role that wharf does not know.
    #[error("unknown role {0:?}; known roles: {roles}", roles = ROLES.join(", "))]
    UnknownRole(String),
    /// A password that is too short to be safe.
    #[error("the password must be at least 8 characters long")]
    WeakPassword,
    /// A user or token name that does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// Storage failed.
    #[error("database error: {0}")]
    Db(#[from] diesel::result::Error),
    /// Hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// Too many failed password checks for this user name or from this address: the attempt was
    /// refused without checking the password.
    #[error(
        "Too many failed sign-ins {}; the password was not checked. Wait {retry_after_secs} s \
         before trying again.",
        if *per_address { "from this address" } else { "for this user name" }
    )]
    Throttled {
        /// Seconds until an attempt is checked again.
        retry_after_secs: u64,
        /// The address must wait (else the user name).
        per_address: bool,
    },
    /// No database connection could be had.
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

/// A fresh random secret, hex encoded (64 characters).
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// SHA-256 of a secret, hex encoded: what is stored for session ids and tokens.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// A hash to verify against when the user does not exist, so that the answer takes as long as for a
/// wrong password and does not reveal which user names exist.
/// Made on first use; a hashing failure is returned (and tried again next time) like any other.
fn dummy_hash() -> Result<&'static str, AuthError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Ok(hash);
    }
    let hash = hash_password(&random_secret())?;
    Ok(DUMMY.get_or_init(|| hash))
}

/// Creates an API user. Blocking (argon2): call off the async executor.
pub fn add_user(
    conn: &mut DbConnection,
    username: &str,
    password: &str,
    role: &str,
) -> Result<(), AuthError> {
    if !ROLES.contains(&role) {
        return Err(AuthError::UnknownRole(role.to_string()));
    }
    if password.chars().count() < 8 {
        return Err(AuthError::WeakPassword);
    }
    let hash = hash_password(password)?;
    let inserted = diesel::insert_into(api_users::table)
        .values((
            api_users::username.eq(username),
            api_users::password_hash.eq(hash),
            api_users::role.eq(role),
            api_users::created_at.eq(db::now()),
        ))
        .execute(conn);
    match inserted {
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Err(AuthError::Exists(format!("user {username:?}"))),
        other => other.map(|_| ()).map_err(AuthError::from),
    }
}

/// How long login sessions and admin access tokens live.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    /// A session not used for this long has expired.
    pub session_idle: TimeDelta,
    /// No session or admin token outlives this, counted from when it was issued.
    pub max: TimeDelta,
}

impl Lifetimes {
    /// The lifetimes the SOAP settings give.
    pub fn of(soap: &crate::config::SoapSettings) -> Lifetimes {
        // Capped at a century, so that `now - lifetime` stays a representable time.
        const CENTURY: i64 = 100 * 366 * 24 * 3600;
        let secs = |s: u64| TimeDelta::seconds(i64::try_from(s).unwrap_or(CENTURY).min(CENTURY));
        Lifetimes {
            session_idle: secs(soap.session_idle_timeout_secs),
            max: secs(soap.session_max_lifetime_secs),
        }
    }
}

/// Deletes sessions that ended, went idle or outlived [`Lifetimes::max`], and admin tokens that
/// expired or outlived it. Run when sessions or tokens are issued, so the tables stay as small as
/// the number of live callers without a background job; both deletes are single statements, safe
/// when several processes run them at once.
pub fn delete_expired(conn: &mut DbConnection, lifetimes: Lifetimes) -> Result<(), AuthError> {
    let now = db::now();
    diesel::delete(
        soap_sessions::table.filter(
            soap_sessions::ended_at
                .is_not_null()
                .or(soap_sessions::last_seen_at.lt(now - lifetimes.session_idle))
                .or(soap_sessions::created_at.lt(now - lifetimes.max)),
        ),
    )
    .execute(conn)?;
    diesel::delete(
        access_tokens::table.filter(
            access_tokens::expires_at
                .le(now)
                .or(access_tokens::created_at.lt(now - lifetimes.max)),
        ),
    )
    .execute(conn)?;
    Ok(())
}

/// Opens a session for a user whose password was checked ([`PasswordChecker::check`]) and returns
/// its id (given to the caller once, never stored). Expired sessions and tokens are deleted on the
/// way.
pub fn open_session(
    conn: &mut DbConnection,
    user_id: i64,
    lifetimes: Lifetimes,
) -> Result<String, AuthError> {
    delete_expired(conn, lifetimes)?;
    let session = random_secret();
    let now = db::now();
    diesel::insert_into(soap_sessions::table)
        .values((
            soap_sessions::id_hash.eq(secret_hash(&session)),
            soap_sessions::user_id.eq(user_id),
            soap_sessions::created_at.eq(now),
            soap_sessions::last_seen_at.eq(now),
        ))
        .execute(conn)?;
    Ok(session)
}

/// Ends a session; ending an unknown one is not an error (the caller is logged out either way).
pub fn end_session(conn: &mut DbConnection, session: &str) -> Result<(), AuthError> {
    diesel::update(soap_sessions::table.find(secret_hash(session)))
        .set(soap_sessions::ended_at.eq(db::now()))
        .execute(conn)?;
    Ok(())
}

/// A stored login session, as checked.
#[derive(Debug, Queryable)]
struct SessionRow {
    username: String,
    created_at: NaiveDateTime,
    last_seen_at: NaiveDateTime,
    ended_at: Option<NaiveDateTime>,
}

/// Checks a session id and returns the user name behind it. A session idle for longer than
/// `lifetimes.session_idle`, or issued longer ago than `lifetimes.max`, has expired. `last_seen_at`
/// is refreshed at most once a minute, so busy callers do not turn every message into an extra write.
pub fn check_session(
    conn: &mut DbConnection,
    session: &str,
    lifetimes: Lifetimes,
) -> Result<String, AuthError> {
    let id_hash = secret_hash(session);
    let found: Option<SessionRow> = soap_sessions::table
        .inner_join(api_users::table)
        .filter(soap_sessions::id_hash.eq(&id_hash))
        .select((
            api_users::username,
            soap_sessions::created_at,
            soap_sessions::last_seen_at,
            soap_sessions::ended_at,
        ))
        .first(conn)
        .optional()?;
    let now = db::now();
    match found {
        Some(SessionRow {
            username,
            created_at,
            last_seen_at: last_seen,
            ended_at: None,
        }) if now - last_seen <= lifetimes.session_idle && now - created_at <= lifetimes.max => {
            if now - last_seen > TimeDelta::seconds(60) {
                diesel::update(soap_sessions::table.find(&id_hash))
                    .set(soap_sessions::last_seen_at.eq(now))
                    .execute(conn)?;
            }
            Ok(username)
        }
        _ => Err(AuthError::SessionExpired),
    }
}

/// Creates a storefront API token and returns it; only its hash is stored.
pub fn add_token(conn: &mut DbConnection, name: &str) -> Result<String, AuthError> {
    let token = random_secret();
    let inserted = diesel::insert_into(api_tokens::table)
        .values((
            api_tokens::name.eq(name),
            api_tokens::token_hash.eq(secret_hash(&token)),
            api_tokens::created_at.eq(db::now()),
        ))
        .execute(conn);
    match inserted {
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Err(AuthError::Exists(format!("token {name:?}"))),
        other => other.map(|_| token).map_err(AuthError::from),
    }
}

/// Checks a bearer token; returns the token's name. Its `last_used_at` is refreshed at most once a
/// minute, so `wharf tokens list` can show which tokens are still in use without a write per call.
pub fn check_token(conn: &mut DbConnection, token: &str) -> Result<String, AuthError> {
    let (id, name, last_used): (i64, String, Option<NaiveDateTime>) = api_tokens::table
        .filter(api_tokens::token_hash.eq(secret_hash(token)))
        .select((api_tokens::id, api_tokens::name, api_tokens::last_used_at))
        .first(conn)
        .optional()?
        .ok_or(AuthError::AccessDenied)?;
    let now = db::now();
    if last_used.is_none_or(|t| now - t > TimeDelta::seconds(60)) {
        diesel::update(api_tokens::table.find(id))
            .set(api_tokens::last_used_at.eq(now))
            .execute(conn)?;
    }
    Ok(name)
}

/// Creates a Magento 2 style admin access token for a user whose password was checked
/// ([`PasswordChecker::check`]) and returns it with its expiry: `lifetime` from now, or less when
/// [`Lifetimes::max`] is shorter. Expired sessions and tokens are deleted on the way.
pub fn issue_access_token(
    conn: &mut DbConnection,
    user_id: i64,
    lifetime: TimeDelta,
    lifetimes: Lifetimes,
) -> Result<(String, NaiveDateTime), AuthError> {
    delete_expired(conn, lifetimes)?;
    let token = random_secret();
    let now = db::now();
    let expires = now + lifetime.min(lifetimes.max);
    diesel::insert_into(access_tokens::table)
        .values((
            access_tokens::token_hash.eq(secret_hash(&token)),
            access_tokens::user_id.eq(user_id),
            access_tokens::created_at.eq(now),
            access_tokens::expires_at.eq(expires),
        ))
        .execute(conn)?;
    Ok((token, expires))
}

/// Checks an admin access token (`Authorization: Bearer …` on SOAP calls); returns the user name.
/// A token past its expiry, or issued longer ago than `lifetimes.max` (which may have been shortened
/// since), has expired.
pub fn check_access_token(
    conn: &mut DbConnection,
    token: &str,
    lifetimes: Lifetimes,
) -> Result<String, AuthError> {
    let now = db::now();
    access_tokens::table
        .inner_join(api_users::table)
        .filter(access_tokens::token_hash.eq(secret_hash(token)))
        .filter(access_tokens::expires_at.gt(now))
        .filter(access_tokens::created_at.ge(now - lifetimes.max))
        .select(api_users::username)
        .first(conn)
        .optional()?
        .ok_or(AuthError::TokenExpired)
}

/// Remembers recently verified HTTP Basic credentials for a few minutes, so a warehouse that sends
/// them with every message does not pay an argon2 verification per message. Keyed by a SHA-256 of the
/// credentials; holds at most a thousand entries. A remembered entry is trusted only while the user
/// still has the password hash it was verified against (one indexed read), so removing a user or
/// changing its password takes effect at once, also in other processes. A remembered entry needs no
/// new check, so such a warehouse keeps working while someone guesses passwords from its address.
#[derive(Default)]
pub struct CredentialCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, CachedCredential>>,
}

/// A verified user name and password, remembered by its hash.
struct CachedCredential {
    password_hash: String,
    verified_at: std::time::Instant,
}

impl CredentialCache {
    const TTL: std::time::Duration = std::time::Duration::from_secs(300);
    const MAX: usize = 1000;

    fn entries(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, CachedCredential>> {
        // The map stays consistent even if a holder panicked: every update is one insert or clear.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks `username`/`password`, from the cache when verified recently, else with `checker`.
    pub async fn verify(
        &self,
        checker: &PasswordChecker,
        pool: &Pool,
        username: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Result<i64, AuthError> {
        let key = secret_hash(&format!("{username}\0{password}"));
        let remembered = self
            .entries()
            .get(&key)
            .filter(|c| c.verified_at.elapsed() < Self::TTL)
            .map(|c| c.password_hash.clone());
        if let Some(remembered) = remembered {
            let current = passwords::blocking({
                let pool = pool.clone();
                let username = username.to_string();
                move || -> Result<Option<(i64, String)>, AuthError> {
                    let mut conn = pool
                        .get()
                        .map_err(|e| AuthError::Unavailable(e.to_string()))?;
                    Ok(api_users::table
                        .filter(api_users::username.eq(&username))
                        .filter(api_users::role.eq_any(Door::Soap.roles()))
                        .select((api_users::id, api_users::password_hash))
                        .first(&mut conn)
                        .optional()?)
                }
            })
            .await??;
            if let Some((user_id, hash)) = current
                && hash == remembered
            {
                return Ok(user_id);
            }
            self.entries().remove(&key);
        }
        let verified = checker
            .check(pool, username, password, peer, Door::Soap)
            .await?;
        let mut entries = self.entries();
        if entries.len() >= Self::MAX {
            entries.clear();
        }
        entries.insert(
            key,
            CachedCredential {
                password_hash: verified.password_hash,
                verified_at: std::time::Instant::now(),
            },
        );
        Ok(verified.user_id)
    }
}
