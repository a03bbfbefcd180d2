//! The queue's SQL: the request rows and their lines, the receipt statement, the claim, the
//! guarded settles (finish, fail, defer), rejections, the rows of support actions, and support's
//! reads ([`inspect`]). Per-backend arms live here, where the SQL must differ.

pub mod clean;
pub mod dashboard;
mod group;
pub mod inspect;

use chrono::NaiveDateTime;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Timestamp};

use super::{Operation, Receipt, RequestState};
use crate::db::lease::{self, Lease};
use crate::db::schema::{
    rejections, request_actions, request_errors, request_lines, request_shipments,
    request_tracking, requests,
};
use crate::db::{self, DbConnection};

/// A request taken by a worker.
#[derive(Debug, Clone, Queryable)]
pub struct Claimed {
    /// Request id.
    pub id: i64,
    /// What it asks for.
    #[diesel(deserialize_as = String)]
    pub operation: Operation,
    /// The warehouse's message sequence id.
    pub message_seq_id: i64,
    /// Attempts including this one.
    pub attempts: i32,
    /// Lines (SKUs, or shipment lines) the request carries.
    pub line_count: i32,
    /// When it was received (for the lag until it is applied).
    pub received_at: NaiveDateTime,
}

/// Claims up to `limit` requests of `operations` that are due (queued and past their retry time, or
/// held under a lease that has expired), oldest first, under `lease` (see [`lease::claim`]).
pub fn claim(
    conn: &mut DbConnection,
    lease: &Lease,
    operations: &[Operation],
    limit: i64,
) -> QueryResult<Vec<Claimed>> {
    use requests::dsl as r;
    let operations: Vec<&str> = operations.iter().map(|o| o.as_str()).collect();
    let now = lease.now;
    lease::claim(
        conn,
        |conn| {
            let due = r::operation.eq_any(&operations).and(
                (r::state
                    .eq(RequestState::Queued.as_str())
                    .and(r::next_attempt_at.le(now)))
                .or(r::state
                    .eq(RequestState::Processing.as_str())
                    .and(r::lease_expires_at.lt(now))),
            );
            crate::load_skip_locked!(
                conn,
                requests::table
                    .filter(due)
                    .order(r::id)
                    .limit(limit)
                    .select(r::id)
            )
        },
        |conn, ids| {
            let mut claimed: Vec<Claimed> = crate::with_backend!(conn, |c| diesel::update(
                requests::table.filter(r::id.eq_any(ids))
            )
            .set((
                r::state.eq(RequestState::Processing.as_str()),
                r::lease_owner.eq(&lease.owner),
                r::lease_expires_at.eq(lease.until),
                r::attempts.eq(r::attempts + 1),
            ))
            .returning((
                r::id,
                r::operation,
                r::message_seq_id,
                r::attempts,
                r::line_count,
                r::received_at,
            ))
            .get_results(c))?;
            claimed.sort_by_key(|c| c.id);
            Ok(claimed)
        },
    )
}

/// Marks claimed requests processed where `owner` still holds them, and returns how many it marked.
/// Run inside the transaction that applies them: the rows stay locked until commit, and a worker
/// whose lease was taken over marks fewer than it asked for and must roll back ([`lease::held`]),
/// so a late finisher can never apply a request a second time.
pub fn finish(conn: &mut DbConnection, ids: &[i64], owner: &str) -> QueryResult<usize> {
    diesel::update(
        requests::table
            .filter(requests::id.eq_any(ids))
            .filter(requests::state.eq(RequestState::Processing.as_str()))
            .filter(requests::lease_owner.eq(owner)),
    )
    .set((
        requests::state.eq(RequestState::Processed.as_str()),
        requests::processed_at.eq(Some(db::now())),
        requests::lease_owner.eq(None::<String>),
        requests::lease_expires_at.eq(None::<NaiveDateTime>),
        requests::last_error.eq(None::<String>),
    ))
    .execute(conn)
}

/// A failed attempt to record.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    /// The attempt that failed.
    pub attempt: i32,
    /// What went wrong.
    pub error: &'a str,
    /// Where the request goes: back to `queued`, or `dead`.
    pub state: RequestState,
    /// When it is due again.
    pub next: NaiveDateTime,
    /// When it failed.
    pub at: NaiveDateTime,
}

/// Puts a claimed request back (or declares it dead) and keeps the error in its history, if
/// `owner` still holds it; returns whether it did.
pub fn fail(conn: &mut DbConnection, id: i64, owner: &str, f: &Failure<'_>) -> QueryResult<bool> {
    db::write_tx(conn, |conn| {
        let held = diesel::update(
            requests::table
                .filter(requests::id.eq(id))
                .filter(requests::state.eq(RequestState::Processing.as_str()))
                .filter(requests::lease_owner.eq(owner)),
        )
        .set((
            requests::state.eq(f.state.as_str()),
            requests::next_attempt_at.eq(f.next),
            requests::lease_owner.eq(None::<String>),
            requests::lease_expires_at.eq(None::<NaiveDateTime>),
            requests::last_error.eq(Some(f.error)),
        ))
        .execute(conn)?;
        if held == 1 {
            diesel::insert_into(request_errors::table)
                .values((
                    request_errors::request_id.eq(id),
                    request_errors::attempt.eq(f.attempt),
                    request_errors::at.eq(f.at),
                    request_errors::error.eq(f.error),
                ))
                .execute(conn)?;
        }
        Ok(held == 1)
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
            .filter(requests::state.eq(RequestState::Processing.as_str()))
            .filter(requests::lease_owner.eq(owner)),
    )
    .set((
        requests::state.eq(RequestState::Queued.as_str()),
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
            .filter(requests::operation.eq(Operation::ShipmentCreate.as_str()))
            .filter(requests::state.eq(RequestState::Queued.as_str()))
            .filter(requests::next_attempt_at.gt(now))
            .filter(requests::id.eq_any(waiting)),
    )
    .set(requests::next_attempt_at.eq(now))
    .execute(conn)
}

/// Number of requests in each state, by the stored word.
pub fn depth_by_state(conn: &mut DbConnection) -> QueryResult<Vec<(String, i64)>> {
    use diesel::dsl::count_star;
    requests::table
        .group_by(requests::state)
        .select((requests::state, count_star()))
        .order(requests::state)
        .load(conn)
}

/// Unfinished requests (queued, processing, dead) by operation and state, for `/metrics`: one
/// indexed count (`requests_due` leads with the state), never a scan of the processed ones.
pub fn unfinished_by_state(
    conn: &mut DbConnection,
) -> QueryResult<Vec<(Operation, RequestState, i64)>> {
    use diesel::dsl::count_star;
    let unfinished = [
        RequestState::Queued,
        RequestState::Processing,
        RequestState::Dead,
    ]
    .map(RequestState::as_str);
    let rows: Vec<(String, String, i64)> = requests::table
        .filter(requests::state.eq_any(unfinished))
        .group_by((requests::operation, requests::state))
        .select((requests::operation, requests::state, count_star()))
        .load(conn)?;
    rows.into_iter()
        .map(|(op, state, n)| Ok((db::text_enum::read(&op)?, db::text_enum::read(&state)?, n)))
        .collect()
}

/// When the oldest queued request was received (`None`: nothing is queued).
pub fn oldest_queued_at(conn: &mut DbConnection) -> QueryResult<Option<NaiveDateTime>> {
    requests::table
        .filter(requests::state.eq(RequestState::Queued.as_str()))
        .select(diesel::dsl::min(requests::received_at))
        .first(conn)
}

/// A received message to store: the request row and its lines.
#[derive(Debug)]
pub struct NewRequest<'a> {
    /// What it asks for.
    pub operation: Operation,
    /// The warehouse's message sequence id.
    pub message_seq_id: i64,
    /// Who sent it.
    pub caller: &'a str,
    /// The whole (masked) body.
    pub body: &'a str,
    /// Its SHA-256, hex.
    pub body_hash: &'a str,
    /// Received at.
    pub now: NaiveDateTime,
    /// Its lines, in the order received.
    pub lines: Vec<NewLine<'a>>,
}

/// A line of a received message (an inventory SKU, or a shipped SKU without `seq`).
#[derive(Debug, Clone, Copy)]
pub struct NewLine<'a> {
    /// SKU.
    pub sku: &'a str,
    /// Stock source.
    pub source: &'a str,
    /// Quantity.
    pub qty: i32,
    /// Sequence id (inventory lines).
    pub seq: Option<i64>,
    /// `lastOrderExported` (inventory lines).
    pub last_order_exported: Option<NaiveDateTime>,
}

/// Stores a received message, after the receipt took its turn (see [`super::receive`]): a copy of
/// an earlier one of the same (operation, messageSeqId) with the same body hash is counted, not
/// stored; otherwise the request (flagged as a conflict when the id was used with another body) and
/// its lines are inserted and workers in other processes are told when it commits.
///
/// The protocol is the same on both backends; only the SQL differs. PostgreSQL does it in one
/// prepared statement ([`ReceiptStatement`]): a look-up, an update or two inserts and a `NOTIFY`
/// as separate statements cost a round trip each, and the receipt is what a warehouse waits for.
pub fn store_request(conn: &mut DbConnection, req: &NewRequest<'_>) -> QueryResult<Receipt> {
    match conn {
        DbConnection::Postgresql(c) => {
            let (id, conflict, repeat): (i64, bool, bool) =
                ReceiptStatement::new(req).get_result(c)?;
            Ok(match (repeat, conflict) {
                (true, _) => Receipt::Repeat(id),
                (false, true) => Receipt::Conflict(id),
                (false, false) => Receipt::Queued(id),
            })
        }
        DbConnection::Sqlite(_) => store_request_stepwise(conn, req),
    }
}

/// Stores a group's messages, after the group took their turns, with the same decisions as
/// [`store_request`] one after the other (a second copy in the group is a repeat of the first).
/// On PostgreSQL a few statements whatever the group's size ([`group`]); on SQLite statement by
/// statement, in process.
pub fn store_requests(
    conn: &mut DbConnection,
    reqs: &[NewRequest<'_>],
) -> QueryResult<Vec<Receipt>> {
    if let DbConnection::Postgresql(c) = conn {
        // Other processes' workers were told when the group's transaction opened (`turns`).
        return group::store(c, reqs);
    }
    reqs.iter()
        .map(|r| store_request_stepwise(conn, r))
        .collect()
}

/// [`store_request`] on SQLite, statement by statement: in process, a statement costs no round trip.
fn store_request_stepwise(conn: &mut DbConnection, req: &NewRequest<'_>) -> QueryResult<Receipt> {
    let same_id: Vec<(i64, String)> = requests::table
        .filter(requests::operation.eq(req.operation.as_str()))
        .filter(requests::message_seq_id.eq(req.message_seq_id))
        .select((requests::id, requests::body_hash))
        .load(conn)?;
    if let Some((id, _)) = same_id.iter().find(|(_, h)| h == req.body_hash) {
        diesel::update(requests::table.find(id))
            .set(requests::receipts.eq(requests::receipts + 1))
            .execute(conn)?;
        return Ok(Receipt::Repeat(*id));
    }
    let conflict = !same_id.is_empty();
    let values = (
        requests::operation.eq(req.operation.as_str()),
        requests::message_seq_id.eq(req.message_seq_id),
        requests::caller.eq(req.caller),
        requests::body.eq(Some(req.body)),
        requests::body_hash.eq(req.body_hash),
        requests::line_count.eq(req.lines.len() as i32),
        requests::state.eq(RequestState::Queued.as_str()),
        requests::attempts.eq(0),
        requests::next_attempt_at.eq(req.now),
        requests::received_at.eq(req.now),
        requests::receipts.eq(1),
        requests::conflict.eq(conflict),
    );
    let id: i64 = crate::with_backend!(&mut *conn, |c| diesel::insert_into(requests::table)
        .values(values)
        .returning(requests::id)
        .get_result(c))?;
    insert_lines(conn, id, &req.lines)?;
    // Other processes are told on commit (nothing on SQLite today; kept so both arms read alike).
    super::announce(conn)?;
    Ok(if conflict {
        Receipt::Conflict(id)
    } else {
        Receipt::Queued(id)
    })
}

/// A stored line, as inserted.
#[derive(Insertable)]
#[diesel(table_name = request_lines)]
struct LineRow<'a> {
    request_id: i64,
    line_no: i32,
    sku: &'a str,
    source: &'a str,
    qty: i32,
    seq: Option<i64>,
    last_order_exported: Option<NaiveDateTime>,
}

/// Inserts request lines (numbered from 1) one statement each: SQLite (the one caller, in process)
/// runs the same prepared single-row insert again faster than it prepares a many-row insert whose
/// text changes with the number of lines.
fn insert_lines(conn: &mut DbConnection, id: i64, lines: &[NewLine<'_>]) -> QueryResult<()> {
    for (i, l) in lines.iter().enumerate() {
        let row = LineRow {
            request_id: id,
            line_no: i as i32 + 1,
            sku: l.sku,
            source: l.source,
            qty: l.qty,
            seq: l.seq,
            last_order_exported: l.last_order_exported,
        };
        crate::with_backend!(&mut *conn, |c| diesel::insert_into(request_lines::table)
            .values(&row)
            .execute(c))?;
    }
    Ok(())
}

/// The header of a received shipment.
#[derive(Debug, Clone, Copy)]
pub struct NewShipment<'a> {
    /// The order shipped.
    pub order_increment_id: &'a str,
    /// Comment.
    pub comment: Option<&'a str>,
    /// Send the customer the shipment e-mail.
    pub notify_customer: bool,
    /// Put the comment in it.
    pub include_comment: bool,
    /// Courier.
    pub courier_name: Option<&'a str>,
    /// Service.
    pub service_name: Option<&'a str>,
    /// When the parcel left.
    pub date_shipped: Option<NaiveDateTime>,
}

/// Stores the header and tracking numbers of a stored shipment request.
pub fn store_shipment(
    conn: &mut DbConnection,
    id: i64,
    header: &NewShipment<'_>,
    tracking_numbers: &[String],
) -> QueryResult<()> {
    diesel::insert_into(request_shipments::table)
        .values((
            request_shipments::request_id.eq(id),
            request_shipments::order_increment_id.eq(header.order_increment_id),
            request_shipments::comment.eq(header.comment),
            request_shipments::notify_customer.eq(header.notify_customer),
            request_shipments::include_comment.eq(header.include_comment),
            request_shipments::courier_name.eq(header.courier_name),
            request_shipments::service_name.eq(header.service_name),
            request_shipments::date_shipped.eq(header.date_shipped),
        ))
        .execute(conn)?;
    let tracks: Vec<_> = tracking_numbers
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
}

/// The receipt of one message as one PostgreSQL statement (see [`store_request`]), the lines passed
/// column by column as arrays.
#[derive(Debug)]
struct ReceiptStatement<'a> {
    req: &'a NewRequest<'a>,
    operation: &'static str,
    line_count: i32,
    skus: Vec<&'a str>,
    sources: Vec<&'a str>,
    qtys: Vec<i32>,
    seqs: Vec<Option<i64>>,
    last_order_exported: Vec<Option<NaiveDateTime>>,
}

impl<'a> ReceiptStatement<'a> {
    fn new(req: &'a NewRequest<'a>) -> ReceiptStatement<'a> {
        let lines = &req.lines;
        ReceiptStatement {
            req,
            operation: req.operation.as_str(),
            line_count: lines.len() as i32,
            skus: lines.iter().map(|l| l.sku).collect(),
            sources: lines.iter().map(|l| l.source).collect(),
            qtys: lines.iter().map(|l| l.qty).collect(),
            seqs: lines.iter().map(|l| l.seq).collect(),
            last_order_exported: lines.iter().map(|l| l.last_order_exported).collect(),
        }
    }
}

impl QueryId for ReceiptStatement<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for ReceiptStatement<'_> {
    /// (request id, conflict, repeat).
    type SqlType = (BigInt, Bool, Bool);
}

/// Run after the receipt's advisory lock, in its own snapshot: look for earlier copies of the
/// messageSeqId; count a copy with the same (masked) body hash; otherwise insert the request
/// (flagged as a conflict when the id was used with another body) and its lines, and tell workers
/// in other processes when it commits (`pg_notify`). Returns one row: (request id, conflict, repeat).
impl QueryFragment<Pg> for ReceiptStatement<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let req = self.req;
        out.push_sql("WITH prior AS (SELECT id, body_hash FROM requests WHERE operation = ");
        out.push_bind_param::<Text, _>(&self.operation)?;
        out.push_sql(" AND message_seq_id = ");
        out.push_bind_param::<BigInt, _>(&req.message_seq_id)?;
        out.push_sql(
            "), repeat AS (UPDATE requests SET receipts = receipts + 1 WHERE id = \
             (SELECT id FROM prior WHERE body_hash = ",
        );
        out.push_bind_param::<Text, _>(&req.body_hash)?;
        out.push_sql(
            " LIMIT 1) RETURNING id), ins AS (INSERT INTO requests (operation, message_seq_id, \
             caller, body, body_hash, line_count, state, attempts, next_attempt_at, received_at, \
             receipts, conflict) SELECT ",
        );
        out.push_bind_param::<Text, _>(&self.operation)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&req.message_seq_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&req.caller)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&req.body)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&req.body_hash)?;
        out.push_sql(", ");
        out.push_bind_param::<Integer, _>(&self.line_count)?;
        // The state is a fixed word, written as a literal like the workers' channel below.
        out.push_sql(&format!(", '{}', 0, ", RequestState::Queued.as_str()));
        out.push_bind_param::<Timestamp, _>(&req.now)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamp, _>(&req.now)?;
        out.push_sql(
            ", 1, EXISTS (SELECT 1 FROM prior) WHERE NOT EXISTS (SELECT 1 FROM prior WHERE body_hash = ",
        );
        out.push_bind_param::<Text, _>(&req.body_hash)?;
        out.push_sql(
            ") RETURNING id, conflict), lines AS (INSERT INTO request_lines (request_id, line_no, \
             sku, source, qty, seq, last_order_exported) SELECT ins.id, t.n, t.sku, t.source, \
             t.qty, t.seq, t.loe FROM ins CROSS JOIN unnest(",
        );
        out.push_bind_param::<Array<Text>, _>(&self.skus)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Text>, _>(&self.sources)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Integer>, _>(&self.qtys)?;
        out.push_sql("::int4[], ");
        out.push_bind_param::<Array<Nullable<BigInt>>, _>(&self.seqs)?;
        out.push_sql("::int8[], ");
        out.push_bind_param::<Array<Nullable<Timestamp>>, _>(&self.last_order_exported)?;
        out.push_sql(
            "::timestamp[]) WITH ORDINALITY AS t(sku, source, qty, seq, loe, n)) \
             SELECT ins.id, ins.conflict, false FROM ins CROSS JOIN LATERAL (SELECT pg_notify(",
        );
        // The workers' wake-up (see `db::wake`), in this statement rather than one more round trip.
        // Both are fixed per process and made of letters, digits, '_' and '-' only, so they are
        // written as literals (the statement text stays the same, and stays prepared).
        out.push_sql(&format!(
            "'{}', '{}') AS wake) w UNION ALL SELECT id, false, true FROM repeat",
            db::wake::Topic::Requests.channel(),
            db::wake::process_token()
        ));
        Ok(())
    }
}

impl RunQueryDsl<PgConnection> for ReceiptStatement<'_> {}

/// A refused message to record, its texts already bounded and masked.
#[derive(Debug, Clone, Copy)]
pub struct NewRejection<'a> {
    /// The authenticated caller, if it got that far.
    pub caller: Option<&'a str>,
    /// The operation, if recognised.
    pub operation: Option<&'a str>,
    /// Why it was refused.
    pub reason: &'a str,
    /// The start of the body.
    pub body_excerpt: &'a str,
}

/// Stores a refusal, received now.
pub fn insert_rejection(conn: &mut DbConnection, r: &NewRejection<'_>) -> QueryResult<()> {
    diesel::insert_into(rejections::table)
        .values((
            rejections::received_at.eq(db::now()),
            rejections::caller.eq(r.caller),
            rejections::operation.eq(r.operation),
            rejections::reason.eq(r.reason),
            rejections::body_excerpt.eq(r.body_excerpt),
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

/// A refused message with the start of its stored excerpt (credentials were masked when it was
/// stored), for the console's list.
#[derive(Debug, Clone, Queryable)]
pub struct RejectionRow {
    /// The refusal.
    pub rejection: Rejection,
    /// The first [`EXCERPT_CHARS`] characters of the stored excerpt.
    pub excerpt: String,
}

/// How much of a refusal's stored excerpt the console's list shows.
pub const EXCERPT_CHARS: i32 = 600;

diesel::define_sql_function! {
    /// SQL `substr` (1-based), the same on SQLite and PostgreSQL.
    fn substr(text: diesel::sql_types::Text, start: diesel::sql_types::Integer, len: diesel::sql_types::Integer) -> diesel::sql_types::Text;
}

/// Rejections newest first, below id `before` when given (keyset pagination), at most `limit`.
pub fn rejections_page(
    conn: &mut DbConnection,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<RejectionRow>> {
    let mut q = rejections::table
        .order(rejections::id.desc())
        .limit(limit)
        .select((
            (
                rejections::id,
                rejections::received_at,
                rejections::caller,
                rejections::operation,
                rejections::reason,
            ),
            substr(rejections::body_excerpt, 1, EXCERPT_CHARS),
        ))
        .into_boxed();
    if let Some(before) = before {
        q = q.filter(rejections::id.lt(before));
    }
    q.load(conn)
}

/// The stored (masked) body excerpts of these rejections: (id, excerpt).
pub fn rejection_excerpts(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Vec<(i64, String)>> {
    rejections::table
        .filter(rejections::id.eq_any(ids))
        .select((rejections::id, rejections::body_excerpt))
        .load(conn)
}

/// A request as checked before acting on it.
#[derive(Debug, Queryable)]
pub struct Current {
    /// Id.
    pub id: i64,
    /// Where it stands.
    #[diesel(deserialize_as = String)]
    pub state: RequestState,
    /// Attempts so far.
    pub attempts: i32,
    /// Who holds it, if anyone.
    pub lease_owner: Option<String>,
    /// Until when.
    pub lease_expires_at: Option<NaiveDateTime>,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
}

/// Reads the requests a support action names, locked until the transaction ends.
pub fn lock_for_action(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Vec<Current>> {
    let query = requests::table
        .filter(requests::id.eq_any(ids))
        .order(requests::id)
        .select((
            requests::id,
            requests::state,
            requests::attempts,
            requests::lease_owner,
            requests::lease_expires_at,
            requests::last_error,
        ));
    match conn {
        DbConnection::Postgresql(c) => query.for_update().load(c),
        DbConnection::Sqlite(c) => query.load(c),
    }
}

/// Compare-and-set back to `queued`, due now, attempts reset: only if the request is still exactly
/// as checked and no worker holds it. Returns whether it was.
pub fn queue_again(
    conn: &mut DbConnection,
    row: &Current,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let changed = diesel::update(
        requests::table
            .filter(requests::id.eq(row.id))
            .filter(requests::state.eq(row.state.as_str()))
            .filter(requests::attempts.eq(row.attempts))
            .filter(requests::lease_owner.is_null()),
    )
    .set((
        requests::state.eq(RequestState::Queued.as_str()),
        requests::attempts.eq(0),
        requests::next_attempt_at.eq(now),
        requests::processed_at.eq(None::<NaiveDateTime>),
        requests::lease_expires_at.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    Ok(changed == 1)
}

/// Records a support action on `row`, as it was before; returns the action's id.
pub fn record_action(
    conn: &mut DbConnection,
    row: &Current,
    action: super::lifecycle::SupportAction,
    actor: &str,
    now: NaiveDateTime,
    note: Option<&str>,
) -> QueryResult<i64> {
    let values = (
        request_actions::request_id.eq(row.id),
        request_actions::action.eq(action.as_str()),
        request_actions::actor.eq(actor),
        request_actions::at.eq(now),
        request_actions::previous_state.eq(row.state.as_str()),
        request_actions::previous_attempts.eq(row.attempts),
        request_actions::previous_error.eq(row.last_error.as_deref()),
        request_actions::note.eq(note),
    );
    crate::with_backend!(conn, |c| diesel::insert_into(request_actions::table)
        .values(values)
        .returning(request_actions::id)
        .get_result(c))
}
