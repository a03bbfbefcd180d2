//! Password checks that guessing cannot turn into a denial of service.
//!
//! An argon2id verification takes 19 MiB and about 50 ms of a core. Run one per request on the
//! blocking pool, holding a pooled connection, and 32 concurrent guessers took the server from
//! 22 MiB to 4 GiB of RSS (glibc keeps freed 19 MiB blocks in each thread's arena) and held all
//! pooled connections, so the warehouse's acknowledgements waited seconds. Here:
//!
//! - at most `auth.password_checks` verifications run at once; the others wait on a semaphore, as
//!   async tasks, holding neither a thread nor a connection;
//! - each running verification uses one of at most that many memory buffers, allocated once and
//!   reused, so argon2's memory is bounded and never handed to the allocator to keep;
//! - the stored hash is read in a short database use; no connection is held while argon2 runs;
//! - failures are counted per user name and per address ([`super::throttle`]); while one must wait,
//!   its attempts are refused after a pause without running argon2 at all.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use diesel::prelude::*;
use tokio::sync::Semaphore;

use super::throttle::{Policy, Throttle, Waiting};
use super::{AuthError, Door, dummy_hash};
use crate::config::AuthSettings;
use crate::db::Pool;
use crate::db::schema::api_users;
use crate::telemetry::Escaped;

/// A user whose password was just checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The user's id.
    pub user_id: i64,
    /// The stored hash the password matched (what [`super::CredentialCache`] remembers).
    pub password_hash: String,
}

/// The process-wide password checker: a few verifications at once, their memory reused, failures
/// throttled.
pub struct PasswordChecker {
    permits: Semaphore,
    /// Argon2 memory of finished verifications, ready for the next (at most one per permit).
    buffers: Mutex<Vec<Vec<Block>>>,
    throttle: Throttle,
    pause: Duration,
}

impl PasswordChecker {
    /// A checker with the settings' concurrency and throttle.
    pub fn new(settings: &AuthSettings) -> PasswordChecker {
        let permits = settings.password_checks.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(4)
        });
        PasswordChecker {
            permits: Semaphore::new(permits.max(1)),
            buffers: Mutex::new(Vec::new()),
            throttle: Throttle::new(Policy::of(settings)),
            pause: Duration::from_millis(settings.throttled_pause_ms),
        }
    }

    /// Checks `username`'s password. Unknown users are checked against a dummy hash, so the answer
    /// takes as long as for a wrong password. While the name or the address must wait, the answer is
    /// [`AuthError::Throttled`], given after the configured pause.
    pub async fn check(
        &self,
        pool: &Pool,
        username: &str,
        password: &str,
        peer: Option<IpAddr>,
        door: Door,
    ) -> Result<Verified, AuthError> {
        if let Some(waiting) = self.throttle.waiting(username, peer, Instant::now()) {
            return Err(self.refuse(waiting).await);
        }
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| AuthError::Hash(e.to_string()))?;
        // A wait may have begun while this attempt queued (the guesser's earlier attempts failed).
        if let Some(waiting) = self.throttle.waiting(username, peer, Instant::now()) {
            drop(permit);
            return Err(self.refuse(waiting).await);
        }
        let found = blocking({
            let pool = pool.clone();
            let username = username.to_string();
            move || stored_hash(&pool, &username, door)
        })
        .await??;
        let buffer = self.take_buffer();
        let (matches, buffer) = blocking({
            let password = password.to_string();
            let phc = found.as_ref().map(|(_, h)| h.clone());
            move || {
                let mut buffer = buffer;
                let matches = match phc.as_deref() {
                    Some(phc) => Ok(verify_with(&password, phc, &mut buffer)),
                    None => dummy_hash().map(|phc| verify_with(&password, phc, &mut buffer)),
                };
                (matches, buffer)
            }
        })
        .await?;
        self.put_buffer(buffer);
        let matches = matches?;
        drop(permit);
        match found {
            Some((user_id, password_hash)) if matches => {
                self.throttle.succeeded(username);
                Ok(Verified {
                    user_id,
                    password_hash,
                })
            }
            _ => {
                let started = self.throttle.failed(username, peer, Instant::now());
                if let Some((failures, wait)) = started.user {
                    tracing::warn!(user = ?Escaped(username), failures, wait_ms = wait.as_millis() as u64,
                        "failed password checks for this user name: further attempts wait");
                }
                if let (Some((failures, wait)), Some(peer)) = (started.address, peer) {
                    tracing::warn!(address = %peer, failures, wait_ms = wait.as_millis() as u64,
                        "failed password checks from this address: further attempts wait");
                }
                Err(AuthError::AccessDenied)
            }
        }
    }

    /// Answers a throttled attempt after the pause, so a guesser that is refused cannot loop fast.
    /// Nothing is held meanwhile but the task.
    async fn refuse(&self, waiting: Waiting) -> AuthError {
        tokio::time::sleep(self.pause).await;
        let left = waiting.remaining().saturating_sub(self.pause);
        AuthError::Throttled {
            // Whole seconds, rounded up: "wait 0 seconds" would invite an immediate retry.
            retry_after_secs: left.as_millis().div_ceil(1000).max(1) as u64,
            per_address: matches!(waiting, Waiting::Address(_)),
        }
    }

    fn take_buffer(&self) -> Vec<Block> {
        self.buffers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_default()
    }

    fn put_buffer(&self, buffer: Vec<Block>) {
        self.buffers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(buffer);
    }
}

/// Runs `f` on the blocking pool within the current tracing span.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AuthError> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// The user's id and stored hash, in one short use of a pooled connection.
fn stored_hash(
    pool: &Pool,
    username: &str,
    door: Door,
) -> Result<Option<(i64, String)>, AuthError> {
    let mut conn = pool
        .get()
        .map_err(|e| AuthError::Unavailable(e.to_string()))?;
    Ok(api_users::table
        .filter(api_users::username.eq(username))
        .filter(api_users::role.eq_any(door.roles()))
        .select((api_users::id, api_users::password_hash))
        .first(&mut conn)
        .optional()?)
}

/// Verifies `password` against a PHC string, with `memory` as argon2's working memory (grown when
/// the hash asks for more; kept for the next verification).
pub(super) fn verify_with(password: &str, phc: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params);
    if argon2
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, memory.as_mut_slice())
        .is_err()
    {
        return false;
    }
    // `Output`'s equality is constant-time.
    argon2::password_hash::Output::new(&out).is_ok_and(|computed| computed == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_what_hash_password_wrote_reusing_one_buffer() {
        let phc = super::super::hash_password("correct horse battery").unwrap();
        let mut memory = Vec::new();
        assert!(verify_with("correct horse battery", &phc, &mut memory));
        let len = memory.len();
        assert_eq!(len, Params::DEFAULT_M_COST as usize);
        assert!(!verify_with("correct horse batterz", &phc, &mut memory));
        assert!(!verify_with("", &phc, &mut memory));
        assert_eq!(memory.len(), len, "the buffer is reused, not grown");
        assert!(!verify_with("x", "not a PHC string", &mut memory));
    }

    #[test]
    fn verifies_hashes_with_other_parameters() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let params = Params::new(8 * 1024, 1, 1, Some(32)).unwrap();
        let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let phc = a.hash_password(b"pw", &salt).unwrap().to_string();
        let mut memory = Vec::new();
        assert!(verify_with("pw", &phc, &mut memory));
        assert!(!verify_with("pW", &phc, &mut memory));
    }
}
