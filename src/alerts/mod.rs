//! Incidents and the alert mails they cause.
//!
//! - **Conditions** ([`conditions`]) read the database and say what is wrong now: requests gone
//!   dead (per operation), orders, cancellations or products lost, a breaker open, import failures
//!   support has not seen, a backlog, per order channel its dead and lost pushes, its failed
//!   tickets and its breaker, and per file channel what its runs could not get past (connection,
//!   host key, folders, writing or reading files), its failed shipment files not yet seen and its
//!   files stuck in `processing/`. Each finding has a stable key (`orders.lost`,
//!   `requests.dead:inventory.update`, `breaker:warehouse/order`, `backlog:requests`,
//!   `channel:amazon:dead`, `files:dropbox:connection`).
//! - **Incidents** (table `incidents`, SQL in [`store`]) open once and resolve once per key,
//!   whatever the number of processes: every change is a compare-and-set on the row (one open
//!   incident per key by a partial unique index), and the mail it causes is an outbound task on
//!   channel `smtp` enqueued in the same transaction ([`crate::outbound::enqueue`]), so N
//!   processes make one mail. A condition that clears starts the quiet time
//!   (`resolve_after_secs`, the row's `clear_since`); back before it ends, the incident stays open
//!   with no mail; clear all along, it resolves with one mail.
//! - **The monitor** ([`monitor`]) evaluates the conditions every `check_interval_secs` in every
//!   `serve` and `worker` process and applies the transitions.
//! - **Mails** ([`mail`]) are written when they are sent, by the SMTP channel
//!   ([`crate::channels::smtp`]): one digest for the incidents opened, a resolve mail threaded
//!   under the open one, and the customer's confirmation of a resent lost order.
//!
//! With no `smtp_host` incidents are still tracked (for `wharf check` and the console) and no
//! mail task is enqueued.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use crate::outbound::TaskKind;

pub mod conditions;
pub mod mail;
pub mod monitor;
pub mod store;

pub use conditions::Finding;
pub use monitor::{Pass, run_once};
pub use store::{MailTrouble, incident, mail_trouble, open_incidents};

/// The mail channel of the outbound queue.
pub const SMTP: &str = "smtp";

/// The open mail of an incident (subject: the incident id).
pub const INCIDENT_OPEN: TaskKind = TaskKind {
    channel: SMTP,
    action: "incident.open",
};

/// The resolve mail of an incident (subject: the incident id).
pub const INCIDENT_RESOLVE: TaskKind = TaskKind {
    channel: SMTP,
    action: "incident.resolve",
};

/// The customer's confirmation that a resent lost order reached the warehouse (subject: the
/// order number).
pub const CUSTOMER_CONFIRM: TaskKind = TaskKind {
    channel: SMTP,
    action: "customer.confirm",
};

/// Every kind of task on the mail channel.
pub const MAIL_KINDS: [TaskKind; 3] = [INCIDENT_OPEN, INCIDENT_RESOLVE, CUSTOMER_CONFIRM];

crate::text_enum! {
    /// What an incident is about: the first part of its key.
    pub enum Condition: "incident condition" {
        /// Requests of one operation gone dead (`requests.dead:inventory.update`).
        RequestsDead = "requests.dead",
        /// Order exports lost: refused `max_attempts` times.
        OrdersLost = "orders.lost",
        /// Cancellations of exported orders lost.
        CancellationsLost = "cancellations.lost",
        /// Product exports lost.
        ProductsLost = "products.lost",
        /// Exports paused by a breaker (`breaker:warehouse/order`).
        Breaker = "breaker",
        /// Import reports with failed lines support has not looked at.
        ImportsFailed = "imports.failed",
        /// The oldest queued request or due export is too old (`backlog:requests`,
        /// `backlog:exports`).
        Backlog = "backlog",
        /// An order channel's pushes need a person (`channel:amazon:dead`, `channel:amazon:lost`),
        /// its tickets fail (`channel:amazon:ticket`), or its breaker paused it
        /// (`channel:amazon:paused`); see [`conditions::ChannelTrouble`].
        Channel = "channel",
        /// A file channel cannot do its work (`files:dropbox:connection`, `files:dropbox:host_key`,
        /// a missing folder, files that cannot be written or read), has failed shipment files
        /// support has not seen (`files:dropbox:failed`) or files stuck in `processing/`
        /// (`files:dropbox:stuck`); see [`conditions::FileAlert`].
        Files = "files",
    }
}

crate::text_enum! {
    /// Where an incident stands. An open one whose condition cleared has `clear_since` set.
    pub enum IncidentState: "incident state" {
        /// Its condition holds, or cleared less than the quiet time ago.
        Open = "open",
        /// Its condition stayed clear for the quiet time.
        Resolved = "resolved",
    }
}

/// The stable key of a condition, with its scope when it has one (`requests.dead:shipment.create`).
pub fn key(condition: Condition, scope: Option<&str>) -> String {
    match scope {
        Some(s) => format!("{}:{s}", condition.as_str()),
        None => condition.as_str().to_string(),
    }
}

/// The condition and scope of a stored key (`None`: a key this build does not know).
pub fn parse_key(key: &str) -> Option<(Condition, Option<&str>)> {
    let (word, scope) = match key.split_once(':') {
        Some((w, s)) => (w, Some(s)),
        None => (key, None),
    };
    word.parse().ok().map(|c| (c, scope))
}

/// One thing an incident lists: what it is (a request id, an order number, a SKU) and a detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The request id, order number or SKU.
    pub id: String,
    /// What to know about it (its error, its failed lines).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// An incident as stored.
#[derive(Debug, Clone)]
pub struct Incident {
    /// Id (the subject of its mail tasks).
    pub id: i64,
    /// Its stable key.
    pub key: String,
    /// Open or resolved.
    pub state: IncidentState,
    /// One line: what and how many (`lost orders: 3 orders`).
    pub summary: String,
    /// How many things it is about (orders, requests, failed batches).
    pub count: i64,
    /// The first error seen when it opened.
    pub first_error: Option<String>,
    /// Up to [`MAX_ITEMS`] of the things it is about.
    pub items: Vec<Item>,
    /// When it opened.
    pub opened_at: NaiveDateTime,
    /// Since when its condition is clear (open incidents in their quiet time).
    pub clear_since: Option<NaiveDateTime>,
    /// When it resolved.
    pub resolved_at: Option<NaiveDateTime>,
    /// The Message-ID of its open mail, once sent (the resolve mail threads under it).
    pub message_id: Option<String>,
}

impl Incident {
    /// Its condition (`None`: a key written by a newer wharf).
    pub fn condition(&self) -> Option<Condition> {
        parse_key(&self.key).map(|(c, _)| c)
    }
}

/// Most items an incident keeps and a mail lists.
pub const MAX_ITEMS: usize = 20;
