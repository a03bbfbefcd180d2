//! Growing waits after failed password checks, per user name and per client address, counted in
//! memory (per process: a guesser spread over several processes gets each one's free failures, and
//! each still bounds its own password work).
//!
//! Both ledgers are bounded: a user name is kept as its SHA-256 (a guessed name may be megabytes
//! long), and each ledger holds at most [`MAX_ENTRIES`] names or addresses. When a ledger is full,
//! forgotten entries go first, then the one whose last failure is oldest: an attacker who floods it
//! with new names evicts old, quiet entries before the ones it is being made to wait on, and can add
//! names only as fast as passwords are checked.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Most user names, and most addresses, remembered at once.
pub const MAX_ENTRIES: usize = 10_000;

/// When failures start to make a name or address wait, and for how long.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Failures of one user name before it waits.
    pub free_per_user: u32,
    /// Failures from one address before it waits.
    pub free_per_address: u32,
    /// The first wait; doubles with each further failure.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
    /// Failures are forgotten after this long without one.
    pub forget: Duration,
}

impl Policy {
    /// The policy the settings give.
    pub fn of(settings: &crate::config::AuthSettings) -> Policy {
        Policy {
            free_per_user: settings.free_failures_per_user,
            free_per_address: settings.free_failures_per_address,
            base: Duration::from_millis(settings.throttle_base_ms),
            max: Duration::from_secs(settings.throttle_max_secs),
            forget: Duration::from_secs(settings.forget_after_secs),
        }
    }

    /// The wait after the `n`th failure beyond the free ones (1-based).
    fn wait_after(&self, n: u32) -> Duration {
        let doublings = n.saturating_sub(1).min(31);
        self.base.saturating_mul(1 << doublings).min(self.max)
    }
}

/// Who has to wait, and why: what a refusal tells the caller and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// Too many failures for this user name.
    User(Duration),
    /// Too many failures from this address.
    Address(Duration),
}

impl Waiting {
    /// How long until the next attempt is checked.
    pub fn remaining(self) -> Duration {
        match self {
            Waiting::User(d) | Waiting::Address(d) => d,
        }
    }
}

/// What a new failure started, for the one log line per wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Started {
    /// The user name now waits this long (after so many failures).
    pub user: Option<(u32, Duration)>,
    /// The address now waits this long (after so many failures).
    pub address: Option<(u32, Duration)>,
}

/// The failure counts of both ledgers.
pub struct Throttle {
    policy: Policy,
    ledgers: Mutex<Ledgers>,
}

struct Ledgers {
    users: Ledger<[u8; 32]>,
    addresses: Ledger<IpAddr>,
}

impl Throttle {
    /// An empty throttle.
    pub fn new(policy: Policy) -> Throttle {
        Throttle {
            policy,
            ledgers: Mutex::new(Ledgers {
                users: Ledger::default(),
                addresses: Ledger::default(),
            }),
        }
    }

    fn ledgers(&self) -> std::sync::MutexGuard<'_, Ledgers> {
        // Every update leaves the maps consistent, so a panic elsewhere while locked harms nothing.
        self.ledgers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `username` or `peer` must still wait (the longer wait when both must).
    pub fn waiting(&self, username: &str, peer: Option<IpAddr>, now: Instant) -> Option<Waiting> {
        let forget = self.policy.forget;
        let mut l = self.ledgers();
        let user = l.users.remaining(&user_key(username), now, forget);
        let address = peer.and_then(|p| l.addresses.remaining(&address_key(p), now, forget));
        match (user, address) {
            (Some(u), Some(a)) if a > u => Some(Waiting::Address(a)),
            (Some(u), _) => Some(Waiting::User(u)),
            (None, Some(a)) => Some(Waiting::Address(a)),
            (None, None) => None,
        }
    }

    /// Counts a wrong password (or unknown user name) against both.
    pub fn failed(&self, username: &str, peer: Option<IpAddr>, now: Instant) -> Started {
        let p = self.policy;
        let mut l = self.ledgers();
        Started {
            user: l.users.fail(user_key(username), now, p.free_per_user, &p),
            address: peer.and_then(|a| {
                l.addresses
                    .fail(address_key(a), now, p.free_per_address, &p)
            }),
        }
    }

    /// A correct password: the user name starts afresh. The address keeps its count, so that one
    /// account an attacker knows does not reset the count of its guesses at others.
    pub fn succeeded(&self, username: &str) {
        self.ledgers().users.entries.remove(&user_key(username));
    }
}

fn user_key(username: &str) -> [u8; 32] {
    Sha256::digest(username.as_bytes()).into()
}

/// IPv4 addresses as they are; IPv6 by their /64, since a single host is usually given a whole /64
/// and could otherwise pick a fresh address for every guess.
pub(crate) fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
        v4 => v4,
    }
}

/// Failures of one user name or address.
#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    /// Attempts are refused until then.
    wait_until: Option<Instant>,
}

impl Entry {
    fn forgotten(&self, now: Instant, forget: Duration) -> bool {
        now.saturating_duration_since(self.last_failure) >= forget
            && self.wait_until.is_none_or(|t| t <= now)
    }
}

struct Ledger<K> {
    entries: HashMap<K, Entry>,
}

impl<K> Default for Ledger<K> {
    fn default() -> Self {
        Ledger {
            entries: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Copy> Ledger<K> {
    fn remaining(&mut self, key: &K, now: Instant, forget: Duration) -> Option<Duration> {
        let entry = self.entries.get(key)?;
        if entry.forgotten(now, forget) {
            self.entries.remove(key);
            return None;
        }
        entry
            .wait_until
            .map(|t| t.saturating_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Counts a failure; returns the count and the wait when this one starts a wait.
    fn fail(
        &mut self,
        key: K,
        now: Instant,
        free: u32,
        policy: &Policy,
    ) -> Option<(u32, Duration)> {
        if let Some(entry) = self.entries.get(&key)
            && entry.forgotten(now, policy.forget)
        {
            self.entries.remove(&key);
        }
        if !self.entries.contains_key(&key) {
            self.make_room(now, policy.forget);
        }
        let entry = self.entries.entry(key).or_insert(Entry {
            failures: 0,
            last_failure: now,
            wait_until: None,
        });
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        let beyond = entry.failures.checked_sub(free).filter(|n| *n > 0)?;
        let wait = policy.wait_after(beyond);
        if wait.is_zero() {
            return None;
        }
        // Checks that were already running when the wait began do not shorten it.
        let until = now + wait;
        entry.wait_until = Some(entry.wait_until.map_or(until, |t| t.max(until)));
        Some((entry.failures, wait))
    }

    fn make_room(&mut self, now: Instant, forget: Duration) {
        if self.entries.len() < MAX_ENTRIES {
            return;
        }
        self.entries.retain(|_, e| !e.forgotten(now, forget));
        if self.entries.len() < MAX_ENTRIES {
            return;
        }
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, e)| e.last_failure)
            .map(|(k, _)| *k);
        if let Some(k) = oldest {
            self.entries.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn policy() -> Policy {
        Policy {
            free_per_user: 3,
            free_per_address: 5,
            base: S,
            max: 8 * S,
            forget: 60 * S,
        }
    }

    fn addr(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn waits_grow_after_the_free_failures_and_are_capped() {
        let t = Throttle::new(policy());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.failed("ada", None, t0).user, None);
            assert_eq!(t.waiting("ada", None, t0), None);
        }
        let mut waits = Vec::new();
        let mut now = t0;
        for _ in 0..6 {
            let started = t.failed("ada", None, now).user.unwrap();
            assert_eq!(t.waiting("ada", None, now), Some(Waiting::User(started.1)));
            waits.push(started.1.as_secs());
            now += started.1;
            assert_eq!(t.waiting("ada", None, now), None, "the wait ends");
        }
        assert_eq!(waits, [1, 2, 4, 8, 8, 8]);
    }

    #[test]
    fn success_resets_the_user_name_but_not_the_address() {
        let t = Throttle::new(policy());
        let now = Instant::now();
        let a = addr("192.0.2.7");
        for _ in 0..4 {
            t.failed("ada", a, now);
        }
        assert!(matches!(t.waiting("ada", a, now), Some(Waiting::User(_))));
        t.succeeded("ada");
        assert_eq!(t.waiting("ada", a, now + S), None);
        t.failed("bob", a, now + S);
        t.failed("bob", a, now + S);
        assert!(
            matches!(t.waiting("carl", a, now + S), Some(Waiting::Address(_))),
            "six failures from the address"
        );
    }

    #[test]
    fn one_name_waiting_does_not_stop_another() {
        let t = Throttle::new(policy());
        let now = Instant::now();
        for _ in 0..4 {
            t.failed("ada", addr("192.0.2.7"), now);
        }
        assert!(t.waiting("ada", addr("192.0.2.8"), now).is_some());
        assert_eq!(t.waiting("bob", addr("192.0.2.7"), now), None);
    }

    #[test]
    fn failures_are_forgotten_after_a_quiet_period() {
        let t = Throttle::new(policy());
        let now = Instant::now();
        for _ in 0..3 {
            t.failed("ada", None, now);
        }
        let later = now + 61 * S;
        assert_eq!(
            t.failed("ada", None, later).user,
            None,
            "counting from one again"
        );
    }

    #[test]
    fn an_ipv6_host_counts_as_its_64() {
        let t = Throttle::new(policy());
        let now = Instant::now();
        for i in 0..6 {
            t.failed(&format!("u{i}"), addr(&format!("2001:db8:1:2::{i}")), now);
        }
        assert!(t.waiting("x", addr("2001:db8:1:2:ffff::1"), now).is_some());
        assert_eq!(t.waiting("x", addr("2001:db8:1:3::1"), now), None);
        assert_eq!(
            address_key("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_full_ledger_evicts_the_oldest_quiet_entry_first() {
        let t = Throttle::new(policy());
        let t0 = Instant::now();
        for _ in 0..4 {
            t.failed("target", None, t0 + S);
        }
        for i in 0..MAX_ENTRIES + 10 {
            t.failed(&format!("flood{i}"), None, t0);
        }
        assert!(t.ledgers().users.entries.len() <= MAX_ENTRIES);
        // The flood's entries are older than the waiting one's last failure, so they went first.
        assert!(t.waiting("target", None, t0 + S).is_some());
    }
}
