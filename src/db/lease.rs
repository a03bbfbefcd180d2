//! The one lease protocol, shared by the inbound request queue and the outbound task queue.
//!
//! - **Owner naming** ([`Owner`]): a worker or runner is named once (role, host, process, random
//!   suffix, so two in one process never collide) and every claim gets its own token
//!   (`name#n`): a finisher that took a batch and lost it can never settle a later batch by mistake.
//! - **Batch claim** ([`claim`]): one writing transaction selects due rows and marks them leased.
//!   PostgreSQL locks the selected rows and skips rows another claimer holds right now
//!   (`FOR UPDATE SKIP LOCKED`, through [`load_skip_locked!`](crate::load_skip_locked)); SQLite serialises claimers
//!   with `BEGIN IMMEDIATE` ([`super::write_tx`]).
//! - **Guarded settle** ([`held`]): every write that ends a lease filters on `lease_owner = owner`
//!   (and, for requests, their leased state), and anything else that takes a row from a lease
//!   (support's actions) clears the owner. A finisher that must settle all of its rows or none (the
//!   worker applying a batch) returns [`LeaseLost`] when it finds fewer, which rolls its transaction
//!   back; one that settles item by item (an outbound batch, each item with its own verdict) skips
//!   the items it no longer holds. Either way a late finisher leaves rows to whoever holds them now.
//! - **Backoff** ([`Backoff`]): the retry delay after a failed attempt.
//!
//! The queues keep their own tables and their own selection of what is due (the SQL of each lives in
//! its domain's store); this module holds the protocol only and imports no domain type.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{NaiveDateTime, TimeDelta};
use diesel::QueryResult;

use super::DbConnection;

/// Names the holder of leases: one name per worker or runner, one token per claim.
#[derive(Debug)]
pub struct Owner {
    name: String,
    claims: AtomicU64,
}

impl Owner {
    /// An owner for `role` (`worker`, `outbound:warehouse`, …) named after this host and process,
    /// with a random suffix.
    pub fn new(role: &str) -> Owner {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "wharf".into());
        let suffix = &random_suffix();
        Owner {
            name: format!("{role}:{host}:{}:{suffix}", std::process::id()),
            claims: AtomicU64::new(0),
        }
    }

    /// The name, the prefix of every token.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A fresh token for one claim.
    pub fn token(&self) -> String {
        let n = self.claims.fetch_add(1, Ordering::Relaxed);
        format!("{}#{n}", self.name)
    }
}

/// Eight random alphanumerics (from the OS generator, like every secret wharf makes).
fn random_suffix() -> String {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(8)
        .map(char::from)
        .collect()
}

/// One claim: who holds it, and until when.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The claim's token (see [`Owner::token`]).
    pub owner: String,
    /// When the claim started.
    pub now: NaiveDateTime,
    /// When the rows become claimable again if the holder does not settle them.
    pub until: NaiveDateTime,
}

impl Lease {
    /// A new claim by `owner` lasting `secs` from now.
    pub fn new(owner: &Owner, secs: i64) -> Lease {
        let now = super::now();
        Lease {
            owner: owner.token(),
            now,
            until: now + TimeDelta::seconds(secs.max(1)),
        }
    }
}

/// Claims a batch in one writing transaction: `select` picks the due ids (with [`load_skip_locked!`](crate::load_skip_locked)),
/// `take` marks them leased to `lease` and returns the claimed rows. Nothing is claimed when
/// `select` finds nothing.
pub fn claim<T>(
    conn: &mut DbConnection,
    select: impl FnOnce(&mut DbConnection) -> QueryResult<Vec<i64>>,
    take: impl FnOnce(&mut DbConnection, &[i64]) -> QueryResult<Vec<T>>,
) -> QueryResult<Vec<T>> {
    super::write_tx(conn, |conn| {
        let ids = select(conn)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        take(conn, &ids)
    })
}

/// The rows of a settle were no longer all held by its owner: their lease expired and another
/// holder took them. The settling transaction must roll back.
#[derive(Debug, thiserror::Error)]
#[error("lease lost: {owner} still held {held} of the {expected} rows it settled")]
pub struct LeaseLost {
    /// The claim's token.
    pub owner: String,
    /// Rows it still held.
    pub held: usize,
    /// Rows it meant to settle.
    pub expected: usize,
}

/// Checks the row count of a guarded write (one filtered on the lease owner): all `expected`
/// rows must have been written.
pub fn held(written: usize, expected: usize, owner: &str) -> Result<(), LeaseLost> {
    if written == expected {
        Ok(())
    } else {
        Err(LeaseLost {
            owner: owner.to_string(),
            held: written,
            expected,
        })
    }
}

/// Retry delays: `base · 2^(attempts−1)`, at most `ceiling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay, in seconds.
    pub base_secs: i64,
    /// The longest delay, in seconds.
    pub ceiling_secs: i64,
}

impl Backoff {
    /// The delay after `attempts` failed attempts.
    pub fn after(self, attempts: i32) -> TimeDelta {
        let exp = attempts.clamp(1, 31).unsigned_abs() - 1;
        let secs = self
            .base_secs
            .saturating_mul(1i64 << exp)
            .min(self.ceiling_secs)
            .max(0);
        TimeDelta::seconds(secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_ceiling() {
        let b = Backoff {
            base_secs: 30,
            ceiling_secs: 3600,
        };
        let secs: Vec<i64> = (1..=9).map(|a| b.after(a).num_seconds()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(b.after(0).num_seconds(), 30);
        assert_eq!(b.after(i32::MAX).num_seconds(), 3600);
    }

    #[test]
    fn tokens_differ_per_claim_and_per_owner() {
        let (a, b) = (Owner::new("worker"), Owner::new("worker"));
        assert_ne!(a.name(), b.name());
        let (t1, t2) = (a.token(), a.token());
        assert_ne!(t1, t2);
        assert!(t1.starts_with(a.name()));
    }

    #[test]
    fn a_short_settle_is_a_lost_lease() {
        assert!(held(3, 3, "w#1").is_ok());
        let e = held(2, 3, "w#1").unwrap_err();
        assert_eq!((e.held, e.expected), (2, 3));
    }
}
