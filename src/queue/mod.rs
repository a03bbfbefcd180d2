//! The durable queue of received messages: store a whole message in one transaction (receipt), claim
//! due messages under a lease, finish them exactly once, retry with backoff, and declare dead the ones
//! that keep failing.
//!
//! States: `queued` → `processing` (leased) → `processed`; a transient failure goes back to `queued`
//! with a later `next_attempt_at`; after `max_attempts` a request is `dead` (kept, visible, replayable).

pub mod lifecycle;
pub mod refusals;
pub mod scrub;
pub mod store;

pub use store::inspect;

use std::collections::HashMap;

use chrono::TimeDelta;
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use crate::auth::{self, AuthError};
use crate::db::lease::Backoff;
use crate::db::wake::Topic;
use crate::db::{self, DbConnection};
use crate::messages::{InventoryMessage, ShipmentMessage};
pub use crate::messages::{OP_INVENTORY, OP_SHIPMENT};
pub use store::{
    Claimed, Rejection, depth_by_state, recent_rejections, rejection_excerpts, wake_shipments_for,
};
pub use store::{oldest_queued_at, unfinished_by_state};

crate::text_enum! {
    /// Where a received request stands (stored as text in `requests.state`).
    pub enum RequestState: "request state" {
        /// Waiting for a worker (perhaps until a retry time, after a failed attempt).
        Queued = "queued",
        /// Claimed by a worker under a lease.
        Processing = "processing",
        /// Applied, with its import report.
        Processed = "processed",
        /// Failed `max_attempts` times; kept until support requeues it.
        Dead = "dead",
    }
}

crate::text_enum! {
    /// What a received request asks for (stored as text in `requests.operation`; the words are
    /// [`OP_INVENTORY`] and [`OP_SHIPMENT`]).
    pub enum Operation: "operation" {
        /// An inventory multi-update.
        InventoryUpdate = "inventory.update",
        /// A shipment.
        ShipmentCreate = "shipment.create",
    }
}

/// How a stored message was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// First time: queued.
    Queued(i64),
    /// A re-send of a message already stored, identical once credentials are masked (so also after
    /// a new login): counted, not queued again.
    Repeat(i64),
    /// A new body under a messageSeqId already used: queued and flagged for support.
    Conflict(i64),
}

/// The SHA-256 of a message body, hex encoded.
pub fn body_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// What an idle worker waits on: woken when a request is stored in this process and, on PostgreSQL,
/// when another process stores one (see [`db::wake`]).
pub fn stored_requests() -> &'static tokio::sync::Notify {
    Topic::Requests.notifier()
}

/// Wakes the workers once a request has been queued: this process's at once (its transaction has
/// committed), other processes' through the `NOTIFY` that [`announce`] put in that transaction.
fn wake_workers(receipt: Received) -> Received {
    if matches!(receipt, Ok((Receipt::Queued(_) | Receipt::Conflict(_), _))) {
        db::wake::signal(Topic::Requests);
    }
    receipt
}

/// Tells workers in other processes, when the current transaction commits, that a request is due.
pub(crate) fn announce(conn: &mut DbConnection) -> QueryResult<()> {
    db::wake::in_tx(conn, Topic::Requests)
}

/// Who sent a received message: a user whose credentials were checked already (HTTP Basic, an SFTP
/// channel), or a session or admin token, checked in the transaction that stores the message so
/// that a session ended a moment before is refused, not used.
#[derive(Debug, Clone)]
pub enum Sender {
    /// A known API user.
    User(String),
    /// A Magento 1 `sessionId` from `login`.
    Session(String, auth::Lifetimes),
    /// A Magento 2 admin access token.
    Token(String, auth::Lifetimes),
}

impl Sender {
    /// Who it is, as the storing transaction sees it.
    fn identify(&self, conn: &mut DbConnection) -> Result<String, AuthError> {
        match self {
            Sender::User(user) => Ok(user.clone()),
            Sender::Session(id, lifetimes) => auth::check_session(conn, id, *lifetimes),
            Sender::Token(token, lifetimes) => auth::check_access_token(conn, token, *lifetimes),
        }
    }

    /// The same sender in a group, whatever the lifetimes.
    fn key(&self) -> (u8, &str) {
        match self {
            Sender::User(user) => (0, user),
            Sender::Session(id, _) => (1, id),
            Sender::Token(token, _) => (2, token),
        }
    }
}

/// Why a message was not stored.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// Its sender's session or token is unknown, ended or expired.
    #[error(transparent)]
    Refused(AuthError),
    /// No database connection could be had.
    #[error("wharf's database is unavailable: {0}")]
    Unavailable(String),
    /// The group commit could not answer for it ([`db::group`]).
    #[error("the group commit's writer {0}; this message was not stored")]
    Lost(&'static str),
    /// Storing failed.
    #[error("database error: {0}")]
    Db(#[from] diesel::result::Error),
}

impl ReceiveError {
    /// An identification failure: the database's, or the sender's.
    fn identifying(e: AuthError) -> ReceiveError {
        match e {
            AuthError::Db(e) => ReceiveError::Db(e),
            e => ReceiveError::Refused(e),
        }
    }
}

/// What one message's receipt came to: how it was stored and who sent it, or why it was not.
pub type Received = Result<(Receipt, String), ReceiveError>;

/// A received message ready to be stored: who sent it, its body with credentials masked
/// ([`crate::soap::mask`]; it is hashed and stored as given), and what it says.
#[derive(Debug)]
pub struct Incoming {
    sender: Sender,
    body: Vec<u8>,
    hash: String,
    message: IncomingMessage,
}

/// What a received message asks for.
#[derive(Debug)]
pub enum IncomingMessage {
    /// An inventory multi-update.
    Inventory(InventoryMessage),
    /// A shipment.
    Shipment(ShipmentMessage),
}

impl Incoming {
    /// A message from the known user `caller` whose masked body is `body`.
    pub fn new(caller: &str, body: Vec<u8>, message: IncomingMessage) -> Incoming {
        Incoming::from(Sender::User(caller.to_owned()), body, message)
    }

    /// A message from `sender` whose masked body is `body`. The body is hashed here, by the
    /// receiving thread rather than by the committer that stores the group.
    pub fn from(sender: Sender, body: Vec<u8>, message: IncomingMessage) -> Incoming {
        Incoming {
            sender,
            hash: body_hash(&body),
            body,
            message,
        }
    }

    /// The receipt's turn: its operation and messageSeqId.
    fn turn(&self) -> (Operation, i64) {
        match &self.message {
            IncomingMessage::Inventory(m) => (Operation::InventoryUpdate, m.message_seq_id),
            IncomingMessage::Shipment(m) => (Operation::ShipmentCreate, m.message_seq_id),
        }
    }

    /// Its size for a group's limit: its lines.
    fn weight(&self) -> usize {
        match &self.message {
            IncomingMessage::Inventory(m) => m.lines.len(),
            IncomingMessage::Shipment(m) => m.lines.len() + m.tracking_numbers.len(),
        }
    }

    /// Stores it from `caller` inside a write transaction that has taken its turn ([`turns`]):
    /// counted as a repeat, or the request, its lines and (a shipment) its header and tracking
    /// numbers.
    fn store(&self, conn: &mut DbConnection, caller: &str) -> QueryResult<Receipt> {
        let text = String::from_utf8_lossy(&self.body);
        let receipt = store::store_request(conn, &self.request(caller, &text, self.lines()))?;
        self.store_parts(conn, receipt)?;
        Ok(receipt)
    }

    /// Its lines as stored.
    fn lines(&self) -> Vec<store::NewLine<'_>> {
        match &self.message {
            IncomingMessage::Inventory(msg) => inventory_lines(msg),
            IncomingMessage::Shipment(msg) => shipment_lines(msg),
        }
    }

    /// What a new shipment request stores beside its lines: its header and tracking numbers.
    fn store_parts(&self, conn: &mut DbConnection, receipt: Receipt) -> QueryResult<()> {
        match (&self.message, receipt) {
            (IncomingMessage::Shipment(msg), Receipt::Queued(id) | Receipt::Conflict(id)) => {
                store::store_shipment(conn, id, &shipment_header(msg), &msg.tracking_numbers)
            }
            _ => Ok(()),
        }
    }

    /// The request row to store, from `caller`, with `text` its body as text.
    fn request<'a>(
        &'a self,
        caller: &'a str,
        text: &'a str,
        lines: Vec<store::NewLine<'a>>,
    ) -> store::NewRequest<'a> {
        let (operation, message_seq_id) = self.turn();
        store::NewRequest {
            operation,
            message_seq_id,
            caller,
            body: text,
            body_hash: &self.hash,
            now: db::now(),
            lines,
        }
    }
}

fn inventory_lines(msg: &InventoryMessage) -> Vec<store::NewLine<'_>> {
    msg.lines
        .iter()
        .map(|l| store::NewLine {
            sku: &l.sku,
            source: &l.source,
            qty: l.qty,
            seq: Some(l.seq),
            last_order_exported: l.last_order_exported,
        })
        .collect()
}

fn shipment_lines(msg: &ShipmentMessage) -> Vec<store::NewLine<'_>> {
    msg.lines
        .iter()
        .map(|l| store::NewLine {
            sku: &l.sku,
            source: &l.source,
            qty: l.qty,
            seq: None,
            last_order_exported: None,
        })
        .collect()
}

fn shipment_header(msg: &ShipmentMessage) -> store::NewShipment<'_> {
    store::NewShipment {
        order_increment_id: &msg.order_increment_id,
        comment: msg.comment.as_deref(),
        notify_customer: msg.notify_customer,
        include_comment: msg.include_comment,
        courier_name: msg.courier_name.as_deref(),
        service_name: msg.service_name.as_deref(),
        date_shipped: msg.date_shipped,
    }
}

/// The receipts of one process (one database): messages that arrive together are stored by one
/// transaction ([`db::group`]).
pub type Receipts = db::group::GroupCommit<Incoming, Received>;

/// A group takes at most this many messages and, beyond its first, at most this many lines, so
/// that its transaction stays short.
const GROUP_MESSAGES: usize = 256;
const GROUP_LINES: usize = 20_000;

/// Committers of a PostgreSQL database ([`db::group::Limits`]).
const PG_COMMITTERS: usize = 2;

/// The receipts of a new process: committer threads storing groups with connections of `pool` (a
/// `backend` database): one on SQLite (one writer at a time), [`PG_COMMITTERS`] on PostgreSQL.
pub fn receipts(pool: &db::Pool, backend: db::Backend) -> std::io::Result<Receipts> {
    let committers = match backend {
        db::Backend::Sqlite => 1,
        db::Backend::Postgres => PG_COMMITTERS,
    };
    let limits = db::group::Limits {
        committers,
        jobs: GROUP_MESSAGES,
        weight: GROUP_LINES,
    };
    let pool = pool.clone();
    Receipts::start(
        "wharf-receipts",
        limits,
        |what| Err(ReceiveError::Lost(what)),
        move |group| match pool.get() {
            Ok(mut conn) => receive_group(&mut conn, group),
            Err(e) => {
                tracing::error!(error = %e, messages = group.len(),
                    "no database connection to store received messages");
                group
                    .iter()
                    .map(|_| Err(ReceiveError::Unavailable(e.to_string())))
                    .collect()
            }
        },
    )
}

/// Stores a received message whole, together with whatever other messages arrive meanwhile: one
/// write transaction for the group, and this returns only after it committed. Only when this
/// returns `Ok` may the sender be told the message was received.
pub async fn receive(receipts: &Receipts, incoming: Incoming) -> Received {
    let weight = incoming.weight();
    receipts.submit(incoming, weight).await
}

/// [`receive`] on a thread outside the async runtime (the blocking pool): blocks until answered.
pub fn receive_blocking(receipts: &Receipts, incoming: Incoming) -> Received {
    let weight = incoming.weight();
    receipts.submit_blocking(incoming, weight)
}

/// Stores a group of messages in one transaction, as the group commit does ([`receive`]): every
/// message's turn first, then its sender's identity, then each message in the order given (a second
/// copy of a message in the group is a repeat of the first). A message whose sender is refused is
/// not stored. If that transaction fails, the messages are stored one by one, so a bad one fails
/// only itself. Returns one answer per message, in order; workers are woken once it committed.
pub fn receive_group(conn: &mut DbConnection, group: Vec<Incoming>) -> Vec<Received> {
    if group.len() == 1 {
        return vec![store_one(conn, &group[0])];
    }
    // Other processes' workers are told even if the group turns out to hold only repeats: one
    // needless wake-up, where telling them only when needed would cost a round trip more.
    let opening = turns(group.iter().map(Incoming::turn), true);
    let together = db::write_tx_opening(conn, &opening, |conn| {
        let callers = identify(conn, &group)?;
        store_together(conn, &group, callers)
    });
    match together {
        Ok(receipts) => {
            if receipts
                .iter()
                .any(|r| matches!(r, Ok((Receipt::Queued(_) | Receipt::Conflict(_), _))))
            {
                db::wake::signal(Topic::Requests);
            }
            receipts
        }
        Err(e) => {
            tracing::warn!(messages = group.len(), error = %e,
                "a group of receipts failed together; storing its messages one by one");
            group.iter().map(|m| store_one(conn, m)).collect()
        }
    }
}

/// Who sent each message of a group, each distinct sender looked up once; a refused sender is that
/// message's answer.
fn identify(
    conn: &mut DbConnection,
    group: &[Incoming],
) -> Result<Vec<Result<String, AuthError>>, ReceiveError> {
    let mut known: HashMap<(u8, &str), String> = HashMap::new();
    let mut callers = Vec::with_capacity(group.len());
    for m in group {
        if let Some(user) = known.get(&m.sender.key()) {
            callers.push(Ok(user.clone()));
            continue;
        }
        match m.sender.identify(conn) {
            Ok(user) => {
                known.insert(m.sender.key(), user.clone());
                callers.push(Ok(user));
            }
            Err(AuthError::Db(e)) => return Err(e.into()),
            Err(e) => callers.push(Err(e)),
        }
    }
    Ok(callers)
}

/// Stores a group's messages from their identified `callers`, after their turns: the requests and
/// their lines together ([`store::store_requests`]), then each new shipment's header and tracking
/// numbers. A message whose caller was refused is answered with the refusal.
fn store_together(
    conn: &mut DbConnection,
    group: &[Incoming],
    callers: Vec<Result<String, AuthError>>,
) -> Result<Vec<Received>, ReceiveError> {
    let texts: Vec<_> = group
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body))
        .collect();
    let accepted: Vec<(&Incoming, &str, &str)> = group
        .iter()
        .zip(&callers)
        .zip(&texts)
        .filter_map(|((m, caller), text)| Some((m, caller.as_deref().ok()?, text.as_ref())))
        .collect();
    let reqs: Vec<_> = accepted
        .iter()
        .map(|(m, caller, text)| m.request(caller, text, m.lines()))
        .collect();
    let receipts = if reqs.is_empty() {
        Vec::new()
    } else {
        store::store_requests(conn, &reqs)?
    };
    for ((m, _, _), receipt) in accepted.iter().zip(&receipts) {
        m.store_parts(conn, *receipt)?;
    }
    let mut receipts = receipts.into_iter();
    Ok(callers
        .into_iter()
        .map(|caller| match caller {
            Ok(caller) => match receipts.next() {
                Some(receipt) => Ok((receipt, caller)),
                None => Err(ReceiveError::Lost("gave no answer")),
            },
            Err(e) => Err(ReceiveError::Refused(e)),
        })
        .collect())
}

/// Stores one message in a transaction of its own.
fn store_one(conn: &mut DbConnection, incoming: &Incoming) -> Received {
    // Its receipt statement tells other processes' workers itself, when it queues the message.
    let opening = turns([incoming.turn()], false);
    wake_workers(db::write_tx_opening(conn, &opening, |conn| {
        let caller = incoming
            .sender
            .identify(conn)
            .map_err(ReceiveError::identifying)?;
        let receipt = incoming.store(conn, &caller)?;
        Ok((receipt, caller))
    }))
}

/// Stores an inventory message whole — the request row and one line per SKU — in a transaction of
/// its own, without a group (the SOAP receipt uses [`receive`]). Only when this returns `Ok` may the
/// caller be told the message was received. `body` must already have its credentials masked.
pub fn receive_inventory(
    conn: &mut DbConnection,
    caller: &str,
    body: &[u8],
    msg: &InventoryMessage,
) -> Result<Receipt, ReceiveError> {
    let incoming = Incoming::new(
        caller,
        body.to_vec(),
        IncomingMessage::Inventory(msg.clone()),
    );
    store_one(conn, &incoming).map(|(receipt, _)| receipt)
}

/// Two copies of one message arriving together must not both miss each other: on PostgreSQL receipts
/// of the same (operation, messageSeqId) take turns on an advisory lock held until commit (SQLite's
/// BEGIN IMMEDIATE already makes every writer take turns). A group takes the turns of all its
/// messages at once, in key order, so two groups (in two processes) never wait for each other in
/// a circle. The look-up for earlier copies must be a separate, later statement: under READ
/// COMMITTED a statement reads the snapshot taken when it started, so a look-up in the statement
/// that waited for the lock would miss the row the previous holder just committed.
///
/// This gives the statements taking the turns, which the transaction opens with
/// ([`db::write_tx_opening`]: in the round trip of its `BEGIN`, each its own statement), and, when
/// `announce`, the `NOTIFY` telling other processes' workers on commit ([`announce`]).
fn turns(turns: impl IntoIterator<Item = (Operation, i64)>, announce: bool) -> String {
    use std::fmt::Write;
    let mut keys: Vec<(i32, i32)> = turns
        .into_iter()
        .map(|(operation, seq)| {
            (
                operation_lock_key(operation.as_str()),
                seq as i32 ^ (seq >> 32) as i32,
            )
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut sql = String::with_capacity(40 * keys.len() + 64);
    for (a, b) in keys {
        let _ = write!(sql, "SELECT pg_advisory_xact_lock({a}, {b}); ");
    }
    if announce {
        sql.push_str(&db::wake::notify_sql(Topic::Requests));
    }
    sql
}

/// A stable 32-bit key per operation for the receipt advisory lock.
fn operation_lock_key(operation: &str) -> i32 {
    operation
        .bytes()
        .fold(0x5f3759dfu32, |h, b| h.rotate_left(5) ^ u32::from(b)) as i32
}

/// How much of an authenticated caller's refused body is kept.
pub const EXCERPT_BYTES: usize = 64 * 1024;

/// Keeps the first `max` bytes of a refused body, cut on a character boundary, with whatever looks
/// like a credential masked. The cut comes first: it bounds the work, and the masking copes with a
/// credential cut in half (it masks to the end).
fn excerpt(body: &[u8], max: usize) -> String {
    let cut = &body[..body.len().min(max)];
    let text = match std::str::from_utf8(cut) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(e) if e.error_len().is_none() => String::from_utf8_lossy(&cut[..e.valid_up_to()]),
        Err(_) => String::from_utf8_lossy(cut),
    };
    storable(&crate::soap::mask::mask_lossy(&text)).into_owned()
}

/// Text as a column can hold it: PostgreSQL text cannot hold NUL (the whole insert fails, and the
/// refusal would go unrecorded), so NUL is written as U+2400 SYMBOL FOR NULL (␀) on both backends.
pub fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        text.replace('\0', "\u{2400}").into()
    } else {
        text.into()
    }
}

/// At most this many bytes of a refusal's reason, operation or claimed caller are stored: each may
/// quote the sender's own text (an unknown operation's name, a claimed user name), which must not
/// make a refusal row large.
const TEXT_BYTES: usize = 1024;

/// `text` made storable and cut to [`TEXT_BYTES`] on a character boundary, saying how much was cut.
fn bounded(text: &str) -> std::borrow::Cow<'_, str> {
    let text = storable(text);
    if text.len() <= TEXT_BYTES {
        return text;
    }
    let end = (0..=TEXT_BYTES)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}…(+{} bytes)", &text[..end], text.len() - end).into()
}

/// Records a refused message so support can see it: when, who, which operation, why, and the first
/// `excerpt_bytes` of the body (credentials masked, NUL shown as ␀ so the row is always written).
pub fn record_rejection(
    conn: &mut DbConnection,
    caller: Option<&str>,
    operation: Option<&str>,
    reason: &str,
    body: &[u8],
    excerpt_bytes: usize,
) -> QueryResult<()> {
    store::insert_rejection(
        conn,
        &store::NewRejection {
            caller: caller.map(bounded).as_deref(),
            operation: operation.map(bounded).as_deref(),
            reason: &bounded(reason),
            body_excerpt: &excerpt(body, excerpt_bytes),
        },
    )
}

/// The retry delay after `attempts` failed attempts: `base · 2^(attempts−1)`, at most `ceiling`
/// ([`Backoff`]; kept for the export, which has its own settings).
pub fn backoff(attempts: i32, base_secs: i64, ceiling_secs: i64) -> TimeDelta {
    Backoff {
        base_secs,
        ceiling_secs,
    }
    .after(attempts)
}

/// Records a transient failure of a claimed request: back to `queued` with a later retry time, or
/// `dead` once `attempts` reached `max_attempts`, and the error in the request's error history.
/// Does nothing if `owner` no longer holds the lease. Returns whether the request is now dead.
pub fn fail(
    conn: &mut DbConnection,
    id: i64,
    owner: &str,
    attempts: i32,
    error: &str,
    settings: &crate::config::WorkerSettings,
) -> QueryResult<bool> {
    let dead = attempts >= settings.max_attempts;
    let backoff = Backoff {
        base_secs: settings.backoff_base_secs,
        ceiling_secs: settings.backoff_ceiling_secs,
    };
    let now = db::now();
    let failure = store::Failure {
        attempt: attempts,
        error,
        state: if dead {
            RequestState::Dead
        } else {
            RequestState::Queued
        },
        next: now + backoff.after(attempts),
        at: now,
    };
    store::fail(conn, id, owner, &failure)?;
    Ok(dead)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_ceiling() {
        assert_eq!(backoff(1, 5, 3600), TimeDelta::seconds(5));
        assert_eq!(backoff(3, 5, 3600), TimeDelta::seconds(20));
        assert_eq!(backoff(30, 5, 3600), TimeDelta::seconds(3600));
    }

    #[test]
    fn operations_are_stored_as_the_message_names() {
        assert_eq!(Operation::InventoryUpdate.as_str(), OP_INVENTORY);
        assert_eq!(Operation::ShipmentCreate.as_str(), OP_SHIPMENT);
    }
}
