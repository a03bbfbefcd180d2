//! The durable queue of received messages: store a whole message in one transaction (receipt), claim
//! due messages under a lease, finish them exactly once, retry with backoff, and declare dead the ones
//! that keep failing.
//!
//! States: `queued` → `processing` (leased) → `processed`; a transient failure goes back to `queued`
//! with a later `next_attempt_at`; after `max_attempts` a request is `dead` (kept, visible, replayable).

pub mod inspect;
pub mod lifecycle;
pub mod refusals;
pub mod scrub;

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use crate::db::schema::{
    rejections, request_errors, request_lines, request_shipments, request_tracking, requests,
};
use crate::db::wake::Topic;
use crate::db::{self, DbConnection};
use crate::inventory::InventoryMessage;
use crate::shipments::ShipmentMessage;

/// Operation name of inventory multi-updates in the queue.
pub const OP_INVENTORY: &str = "inventory.update";
/// Operation name of shipments in the queue.
pub const OP_SHIPMENT: &str = "shipment.create";

/// Where a received request stands (stored as text in `requests.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// Waiting for a worker (perhaps until a retry time, after a failed attempt).
    Queued,
    /// Claimed by a worker under a lease.
    Processing,
    /// Applied, with its import report.
    Processed,
    /// Failed `max_attempts` times; kept until support requeues it.
    Dead,
}

impl RequestState {
    /// Every state.
    pub const ALL: [RequestState; 4] = [
        RequestState::Queued,
        RequestState::Processing,
        RequestState::Processed,
        RequestState::Dead,
    ];

    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Queued => "queued",
            RequestState::Processing => "processing",
            RequestState::Processed => "processed",
            RequestState::Dead => "dead",
        }
    }

    /// The state a stored text names.
    pub fn parse(text: &str) -> Option<RequestState> {
        RequestState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for RequestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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

/// Stores an inventory message whole — the request row and one line per SKU — in one transaction.
/// Only when this returns `Ok` may the caller be told the message was received. `body` must already
/// have its credentials masked ([`crate::soap::mask`]): it is hashed and stored as given.
pub fn receive_inventory(
    conn: &mut DbConnection,
    caller: &str,
    body: &[u8],
    msg: &InventoryMessage,
) -> QueryResult<Receipt> {
    if matches!(conn, DbConnection::Postgresql(_)) {
        // One prepared statement after the turn lock instead of a look-up and two inserts.
        let receipt = db::sql::InventoryReceipt {
            operation: OP_INVENTORY,
            message_seq_id: msg.message_seq_id,
            caller,
            body: &String::from_utf8_lossy(body),
            body_hash: &body_hash(body),
            now: db::now(),
            line_count: msg.lines.len() as i32,
            skus: msg.lines.iter().map(|l| l.sku.as_str()).collect(),
            sources: msg.lines.iter().map(|l| l.source.as_str()).collect(),
            qtys: msg.lines.iter().map(|l| l.qty).collect(),
            seqs: msg.lines.iter().map(|l| l.seq).collect(),
            last_order_exported: msg.lines.iter().map(|l| l.last_order_exported).collect(),
        };
        return wake_workers(db::write_tx(conn, |conn| {
            take_turn(conn, OP_INVENTORY, msg.message_seq_id)?;
            let DbConnection::Postgresql(c) = conn else {
                unreachable!("checked above")
            };
            // The statement also wakes other processes' workers (a NOTIFY sent at commit).
            let (id, conflict, repeat): db::sql::ReceiptRow = receipt.get_result(c)?;
            Ok(match (repeat, conflict) {
                (true, _) => Receipt::Repeat(id),
                (false, true) => Receipt::Conflict(id),
                (false, false) => Receipt::Queued(id),
            })
        }));
    }
    wake_workers(receive(
        conn,
        OP_INVENTORY,
        msg.message_seq_id,
        msg.lines.len(),
        caller,
        body,
        |conn, id| {
            let lines: Vec<_> = msg
                .lines
                .iter()
                .enumerate()
                .map(|(i, l)| NewLine {
                    request_id: id,
                    line_no: i as i32 + 1,
                    sku: &l.sku,
                    source: &l.source,
                    qty: l.qty,
                    seq: Some(l.seq),
                    last_order_exported: l.last_order_exported,
                })
                .collect();
            insert_chunked_lines(conn, &lines)
        },
    ))
}

/// Stores a shipment message whole — the request row, its header, lines and tracking numbers — in one
/// transaction. Only when this returns `Ok` may the caller be told the message was received. `body`
/// must already have its credentials masked, as for [`receive_inventory`].
pub fn receive_shipment(
    conn: &mut DbConnection,
    caller: &str,
    body: &[u8],
    msg: &ShipmentMessage,
) -> QueryResult<Receipt> {
    wake_workers(receive(
        conn,
        OP_SHIPMENT,
        msg.message_seq_id,
        msg.lines.len(),
        caller,
        body,
        |conn, id| {
            diesel::insert_into(request_shipments::table)
                .values((
                    request_shipments::request_id.eq(id),
                    request_shipments::order_increment_id.eq(&msg.order_increment_id),
                    request_shipments::comment.eq(&msg.comment),
                    request_shipments::notify_customer.eq(msg.notify_customer),
                    request_shipments::include_comment.eq(msg.include_comment),
                    request_shipments::courier_name.eq(&msg.courier_name),
                    request_shipments::service_name.eq(&msg.service_name),
                    request_shipments::date_shipped.eq(msg.date_shipped),
                ))
                .execute(conn)?;
            let lines: Vec<_> = msg
                .lines
                .iter()
                .enumerate()
                .map(|(i, l)| NewLine {
                    request_id: id,
                    line_no: i as i32 + 1,
                    sku: &l.sku,
                    source: &l.source,
                    qty: l.qty,
                    seq: None,
                    last_order_exported: None,
                })
                .collect();
            insert_chunked_lines(conn, &lines)?;
            let tracks: Vec<_> = msg
                .tracking_numbers
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    (
                        request_tracking::request_id.eq(id),
                        request_tracking::position.eq(i as i32 + 1),
                        request_tracking::tracking_number.eq(t),
                    )
                })
                .collect();
            // Three parameters a row: 1000 rows stay under SQLite's 32 766 and PostgreSQL's 65 535.
            for chunk in tracks.chunks(1000) {
                crate::with_backend!(&mut *conn, |c| diesel::insert_into(request_tracking::table)
                    .values(chunk)
                    .execute(c))?;
            }
            Ok(())
        },
    ))
}

/// A stored line of a received message (an inventory SKU, or a shipped SKU without `seq`).
#[derive(Insertable)]
#[diesel(table_name = request_lines)]
struct NewLine<'a> {
    request_id: i64,
    line_no: i32,
    sku: &'a str,
    source: &'a str,
    qty: i32,
    seq: Option<i64>,
    last_order_exported: Option<NaiveDateTime>,
}

/// Inserts request lines in chunks that stay under both backends' bind-parameter limits.
fn insert_chunked_lines(conn: &mut DbConnection, lines: &[NewLine<'_>]) -> QueryResult<()> {
    for chunk in lines.chunks(1000) {
        crate::with_backend!(&mut *conn, |c| diesel::insert_into(request_lines::table)
            .values(chunk)
            .execute(c))?;
    }
    Ok(())
}

/// The receipt protocol shared by every operation, in one write transaction: a re-send of a stored
/// message (the same masked body, hence the same hash) is counted and not queued again; a new body under a used messageSeqId is queued
/// and flagged as a conflict; otherwise the request row is inserted and `store_parts` writes the rest.
fn receive(
    conn: &mut DbConnection,
    operation: &str,
    message_seq_id: i64,
    line_count: usize,
    caller: &str,
    body: &[u8],
    store_parts: impl FnOnce(&mut DbConnection, i64) -> QueryResult<()>,
) -> QueryResult<Receipt> {
    let hash = body_hash(body);
    let body_text = String::from_utf8_lossy(body);
    db::write_tx(conn, |conn| {
        take_turn(conn, operation, message_seq_id)?;
        let same_id: Vec<(i64, String)> = requests::table
            .filter(requests::operation.eq(operation))
            .filter(requests::message_seq_id.eq(message_seq_id))
            .select((requests::id, requests::body_hash))
            .load(conn)?;
        if let Some((id, _)) = same_id.iter().find(|(_, h)| *h == hash) {
            diesel::update(requests::table.find(id))
                .set(requests::receipts.eq(requests::receipts + 1))
                .execute(conn)?;
            return Ok(Receipt::Repeat(*id));
        }
        let conflict = !same_id.is_empty();
        let now = db::now();
        let values = (
            requests::operation.eq(operation),
            requests::message_seq_id.eq(message_seq_id),
            requests::caller.eq(caller),
            requests::body.eq(Some(body_text.as_ref())),
            requests::body_hash.eq(&hash),
            requests::line_count.eq(line_count as i32),
            requests::state.eq("queued"),
            requests::attempts.eq(0),
            requests::next_attempt_at.eq(now),
            requests::received_at.eq(now),
            requests::receipts.eq(1),
            requests::conflict.eq(conflict),
        );
        let id: i64 = crate::with_backend!(&mut *conn, |c| diesel::insert_into(requests::table)
            .values(values)
            .returning(requests::id)
            .get_result(c))?;
        store_parts(conn, id)?;
        announce(conn)?;
        Ok(if conflict {
            Receipt::Conflict(id)
        } else {
            Receipt::Queued(id)
        })
    })
}

/// Two copies of one message arriving together must not both miss each other: on PostgreSQL receipts
/// of the same (operation, messageSeqId) take turns on an advisory lock held until commit (SQLite's
/// BEGIN IMMEDIATE already makes every writer take turns). The look-up for earlier copies must be a
/// separate, later statement: under READ COMMITTED a statement reads the snapshot taken when it
/// started, so a look-up in the statement that waited for the lock would miss the row the previous
/// holder just committed.
fn take_turn(conn: &mut DbConnection, operation: &str, message_seq_id: i64) -> QueryResult<()> {
    if let DbConnection::Postgresql(c) = conn {
        db::sql::AdvisoryXactLock(
            operation_lock_key(operation),
            message_seq_id as i32 ^ (message_seq_id >> 32) as i32,
        )
        .execute(c)?;
    }
    Ok(())
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
    diesel::insert_into(rejections::table)
        .values((
            rejections::received_at.eq(db::now()),
            rejections::caller.eq(caller.map(bounded)),
            rejections::operation.eq(operation.map(bounded)),
            rejections::reason.eq(bounded(reason)),
            rejections::body_excerpt.eq(excerpt(body, excerpt_bytes)),
        ))
        .execute(conn)?;
    Ok(())
}

/// A refused message, as listed for support.
#[derive(Debug, Clone, Queryable)]
pub struct Rejection {
    /// Id.
    pub id: i64,
    /// When it arrived.
    pub received_at: NaiveDateTime,
    /// The authenticated caller, if it got that far.
    pub caller: Option<String>,
    /// The operation, if recognised.
    pub operation: Option<String>,
    /// Why it was refused.
    pub reason: String,
}

/// The most recent rejections, newest first.
pub fn recent_rejections(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<Rejection>> {
    rejections::table
        .order(rejections::id.desc())
        .limit(limit)
        .select((
            rejections::id,
            rejections::received_at,
            rejections::caller,
            rejections::operation,
            rejections::reason,
        ))
        .load(conn)
}

/// The stored (masked) body excerpts of these rejections: (id, excerpt).
pub fn rejection_excerpts(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Vec<(i64, String)>> {
    rejections::table
        .filter(rejections::id.eq_any(ids))
        .select((rejections::id, rejections::body_excerpt))
        .load(conn)
}

/// Marks claimed requests processed where `owner` still holds them, and returns how many it marked.
/// Run inside the transaction that applies them: the rows stay locked until commit, and a worker whose
/// lease was taken over marks fewer than it asked for and must roll back, so a late finisher can never
/// apply a request a second time.
pub fn finish(conn: &mut DbConnection, ids: &[i64], owner: &str) -> QueryResult<usize> {
    diesel::update(
        requests::table
            .filter(requests::id.eq_any(ids))
            .filter(requests::state.eq("processing"))
            .filter(requests::lease_owner.eq(owner)),
    )
    .set((
        requests::state.eq("processed"),
        requests::processed_at.eq(Some(db::now())),
        requests::lease_owner.eq(None::<String>),
        requests::lease_expires_at.eq(None::<NaiveDateTime>),
        requests::last_error.eq(None::<String>),
    ))
    .execute(conn)
}

/// The retry delay after `attempts` failed attempts: `base · 2^(attempts−1)`, at most `ceiling`.
pub fn backoff(attempts: i32, base_secs: i64, ceiling_secs: i64) -> TimeDelta {
    let exp = attempts.clamp(1, 31) as u32 - 1;
    let secs = base_secs
        .saturating_mul(1i64 << exp)
        .min(ceiling_secs)
        .max(0);
    TimeDelta::seconds(secs)
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
    let now = db::now();
    let next = now
        + backoff(
            attempts,
            settings.backoff_base_secs,
            settings.backoff_ceiling_secs,
        );
    db::write_tx(conn, |conn| {
        let held = diesel::update(
            requests::table
                .filter(requests::id.eq(id))
                .filter(requests::state.eq("processing"))
                .filter(requests::lease_owner.eq(owner)),
        )
        .set((
            requests::state.eq(if dead { "dead" } else { "queued" }),
            requests::next_attempt_at.eq(next),
            requests::lease_owner.eq(None::<String>),
            requests::lease_expires_at.eq(None::<NaiveDateTime>),
            requests::last_error.eq(Some(error)),
        ))
        .execute(conn)?;
        if held == 1 {
            diesel::insert_into(request_errors::table)
                .values((
                    request_errors::request_id.eq(id),
                    request_errors::attempt.eq(attempts),
                    request_errors::at.eq(now),
                    request_errors::error.eq(error),
                ))
                .execute(conn)?;
        }
        Ok(dead)
    })
}

/// Puts a claimed request back to wait until `until` without counting the attempt (the claim counted
/// it): it is not failing, it is early (a shipment whose order has not arrived yet). `note` says why,
/// for support. Does nothing if `owner` no longer holds the lease; returns whether it did it.
pub fn defer(
    conn: &mut DbConnection,
    id: i64,
    owner: &str,
    until: NaiveDateTime,
    note: &str,
) -> QueryResult<bool> {
    let n = diesel::update(
        requests::table
            .filter(requests::id.eq(id))
            .filter(requests::state.eq("processing"))
            .filter(requests::lease_owner.eq(owner)),
    )
    .set((
        requests::state.eq("queued"),
        requests::attempts.eq(requests::attempts - 1),
        requests::next_attempt_at.eq(until),
        requests::lease_owner.eq(None::<String>),
        requests::lease_expires_at.eq(None::<NaiveDateTime>),
        requests::last_error.eq(Some(note)),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Makes the queued shipments for order `increment_id` due now: the order just arrived, so shipments
/// waiting for it need not wait for their next retry. (One the worker is deciding at this very
/// moment is put back with its usual delay, and applied then.)
pub fn wake_shipments_for(conn: &mut DbConnection, increment_id: &str) -> QueryResult<usize> {
    let now = db::now();
    let waiting = request_shipments::table
        .filter(request_shipments::order_increment_id.eq(increment_id))
        .select(request_shipments::request_id);
    diesel::update(
        requests::table
            .filter(requests::operation.eq(OP_SHIPMENT))
            .filter(requests::state.eq("queued"))
            .filter(requests::next_attempt_at.gt(now))
            .filter(requests::id.eq_any(waiting)),
    )
    .set(requests::next_attempt_at.eq(now))
    .execute(conn)
}

/// Number of requests in each state.
pub fn depth_by_state(conn: &mut DbConnection) -> QueryResult<Vec<(String, i64)>> {
    use diesel::dsl::count_star;
    requests::table
        .group_by(requests::state)
        .select((requests::state, count_star()))
        .order(requests::state)
        .load(conn)
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
}
