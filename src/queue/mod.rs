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

use chrono::TimeDelta;
use diesel::prelude::*;
use sha2::{Digest, Sha256};

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
fn wake_workers(receipt: QueryResult<Receipt>) -> QueryResult<Receipt> {
    if matches!(receipt, Ok(Receipt::Queued(_) | Receipt::Conflict(_))) {
        db::wake::signal(Topic::Requests);
    }
    receipt
}

/// Tells workers in other processes, when the current transaction commits, that a request is due.
pub(crate) fn announce(conn: &mut DbConnection) -> QueryResult<()> {
    db::wake::in_tx(conn, Topic::Requests)
}

/// A received message ready to be stored: who sent it, its body with credentials masked
/// ([`crate::soap::mask`]; it is hashed and stored as given), and what it says.
#[derive(Debug)]
pub struct Incoming {
    caller: String,
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
    /// A message from `caller` whose masked body is `body`. The body is hashed here, by the
    /// sender's thread rather than by whoever stores the group.
    pub fn new(caller: &str, body: Vec<u8>, message: IncomingMessage) -> Incoming {
        Incoming {
            caller: caller.to_owned(),
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

    /// Stores it inside a write transaction that has taken its turn ([`take_turns`]): counted as
    /// a repeat, or the request, its lines and (a shipment) its header and tracking numbers.
    fn store(&self, conn: &mut DbConnection) -> QueryResult<Receipt> {
        let text = String::from_utf8_lossy(&self.body);
        let receipt = store::store_request(conn, &self.request(&text, self.lines()))?;
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

    /// The request row to store, with `text` its body as text.
    fn request<'a>(
        &'a self,
        text: &'a str,
        lines: Vec<store::NewLine<'a>>,
    ) -> store::NewRequest<'a> {
        let (operation, message_seq_id) = self.turn();
        store::NewRequest {
            operation,
            message_seq_id,
            caller: &self.caller,
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
pub type Receipts = db::group::GroupCommit<Incoming, Receipt>;

/// A group takes at most this many messages…
const GROUP_MESSAGES: usize = 256;
/// …and, beyond its first, at most this many lines, so that its transaction stays short.
const GROUP_LINES: usize = 20_000;

/// The receipts of a new process.
pub fn receipts() -> Receipts {
    Receipts::new(GROUP_MESSAGES, GROUP_LINES)
}

/// Stores a received message whole, together with whatever other messages arrive meanwhile: one
/// write transaction for the group, and this returns only after it committed. Only when this
/// returns `Ok` may the sender be told the message was received.
pub fn receive(
    conn: &mut DbConnection,
    receipts: &Receipts,
    incoming: Incoming,
) -> QueryResult<Receipt> {
    let weight = incoming.weight();
    receipts.submit(conn, incoming, weight, receive_group)
}

/// Stores a group of messages in one transaction, as a group commit's leader does ([`receive`]):
/// every message's turn first, then each message in the order given (a second copy of a message in
/// the group is a repeat of the first). If that transaction fails, the messages are stored one by
/// one, so a bad one fails only itself. Returns one receipt per message, in order; workers are
/// woken once it committed.
pub fn receive_group(conn: &mut DbConnection, group: Vec<Incoming>) -> Vec<QueryResult<Receipt>> {
    if group.len() == 1 {
        return vec![store_one(conn, &group[0])];
    }
    let together = db::write_tx(conn, |conn| {
        take_turns(conn, group.iter().map(Incoming::turn))?;
        store_together(conn, &group)
    });
    match together {
        Ok(receipts) => {
            if receipts.iter().any(|r| !matches!(r, Receipt::Repeat(_))) {
                db::wake::signal(Topic::Requests);
            }
            receipts.into_iter().map(Ok).collect()
        }
        Err(e) => {
            tracing::warn!(messages = group.len(), error = %e,
                "a group of receipts failed together; storing its messages one by one");
            group.iter().map(|m| store_one(conn, m)).collect()
        }
    }
}

/// Stores a group's messages, after their turns: the requests and their lines together
/// ([`store::store_requests`]), then each new shipment's header and tracking numbers.
fn store_together(conn: &mut DbConnection, group: &[Incoming]) -> QueryResult<Vec<Receipt>> {
    let texts: Vec<_> = group
        .iter()
        .map(|m| String::from_utf8_lossy(&m.body))
        .collect();
    let reqs: Vec<_> = group
        .iter()
        .zip(&texts)
        .map(|(m, text)| m.request(text, m.lines()))
        .collect();
    let receipts = store::store_requests(conn, &reqs)?;
    for (m, receipt) in group.iter().zip(&receipts) {
        m.store_parts(conn, *receipt)?;
    }
    Ok(receipts)
}

/// Stores one message in a transaction of its own.
fn store_one(conn: &mut DbConnection, incoming: &Incoming) -> QueryResult<Receipt> {
    wake_workers(db::write_tx(conn, |conn| {
        take_turns(conn, [incoming.turn()])?;
        incoming.store(conn)
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
) -> QueryResult<Receipt> {
    let incoming = Incoming::new(
        caller,
        body.to_vec(),
        IncomingMessage::Inventory(msg.clone()),
    );
    store_one(conn, &incoming)
}

/// Two copies of one message arriving together must not both miss each other: on PostgreSQL receipts
/// of the same (operation, messageSeqId) take turns on an advisory lock held until commit (SQLite's
/// BEGIN IMMEDIATE already makes every writer take turns). A group takes the turns of all its
/// messages at once, in key order, so two groups (in two processes) never wait for each other in
/// a circle. The look-up for earlier copies must be a separate, later statement: under READ
/// COMMITTED a statement reads the snapshot taken when it started, so a look-up in the statement
/// that waited for the lock would miss the row the previous holder just committed.
fn take_turns(
    conn: &mut DbConnection,
    turns: impl IntoIterator<Item = (Operation, i64)>,
) -> QueryResult<()> {
    let DbConnection::Postgresql(c) = conn else {
        return Ok(());
    };
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
    match keys[..] {
        [] => Ok(()),
        [(a, b)] => db::sql::AdvisoryXactLock(a, b).execute(c).map(drop),
        _ => db::sql::AdvisoryXactLocks::new(&keys).execute(c).map(drop),
    }
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
