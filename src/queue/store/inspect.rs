//! What support reads about received requests without SQL (the read side of the queue's store, used
//! as `queue::inspect`): a filtered list, newest first, and one
//! request in full — what was received (the stored body, credentials masked), its lines, what
//! happened to it (import report, failed attempts), and what support did with it.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::{
    import_lines, imports, replaced_import_lines, request_actions, request_errors, request_lines,
    request_shipments, request_tracking, requests,
};
use crate::queue::lifecycle::SupportAction;
use crate::queue::{Operation, RequestState};

/// Which requests to list by where they stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    /// In one state.
    State(RequestState),
    /// Queued again after failed attempts, waiting for the next one.
    Retrying,
    /// Processed, with at least one failed line in the import report (e.g. a shipment for an
    /// order that did not exist).
    Failed,
}

impl std::str::FromStr for StateFilter {
    type Err = String;

    fn from_str(s: &str) -> Result<StateFilter, String> {
        match s {
            "retrying" => Ok(StateFilter::Retrying),
            "failed" => Ok(StateFilter::Failed),
            other => RequestState::parse(other).map(StateFilter::State).ok_or_else(|| {
                format!(
                    "unknown state {other:?}; use queued, retrying, processing, processed, failed or dead"
                )
            }),
        }
    }
}

/// The operation support names (`inventory` or `inventory.update`, `shipment` or
/// `shipment.create`).
pub fn operation_named(name: &str) -> Result<Operation, String> {
    match name {
        "inventory" => Ok(Operation::InventoryUpdate),
        "shipment" => Ok(Operation::ShipmentCreate),
        other => Operation::parse(other).ok_or_else(|| {
            let (i, s) = (Operation::InventoryUpdate, Operation::ShipmentCreate);
            format!("unknown operation {other:?}; use {i} (or inventory) or {s} (or shipment)")
        }),
    }
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    /// Where they stand.
    pub state: Option<StateFilter>,
    /// The operation.
    pub operation: Option<Operation>,
    /// The warehouse's messageSeqId.
    pub message_seq_id: Option<i64>,
    /// Requests with a line for this SKU.
    pub sku: Option<String>,
    /// Shipments for this order number.
    pub order: Option<String>,
    /// Sent by this API user.
    pub caller: Option<String>,
    /// Flagged (`true`) or not flagged (`false`) as a conflicting re-use of a messageSeqId.
    pub conflict: Option<bool>,
    /// Received at or after this time (UTC).
    pub received_from: Option<NaiveDateTime>,
    /// Received before this time (UTC).
    pub received_before: Option<NaiveDateTime>,
    /// Only ids below this one (keyset pagination: the last id of the previous page).
    pub before_id: Option<i64>,
    /// At most this many, newest first.
    pub limit: i64,
}

/// A received request as listed.
#[derive(Debug, Clone, Queryable)]
pub struct RequestSummary {
    /// Id.
    pub id: i64,
    /// What it asks for.
    #[diesel(deserialize_as = String)]
    pub operation: Operation,
    /// The warehouse's messageSeqId.
    pub message_seq_id: i64,
    /// The API user who sent it.
    pub caller: String,
    /// Where it stands.
    #[diesel(deserialize_as = String)]
    pub state: RequestState,
    /// Attempts at applying it so far.
    pub attempts: i32,
    /// When it first arrived.
    pub received_at: NaiveDateTime,
    /// Lines it carries.
    pub line_count: i32,
    /// How many times it was received (re-sends are counted here).
    pub receipts: i32,
    /// Its messageSeqId was used before with a different body.
    pub conflict: bool,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
}

/// Counts of an import report.
#[derive(Debug, Clone, Copy, Queryable, PartialEq, Eq)]
pub struct ReportCounts {
    /// Lines applied.
    pub successes: i32,
    /// Lines already applied before.
    pub duplicates: i32,
    /// Lines older than what is stored.
    pub superseded: i32,
    /// Lines that failed.
    pub failures: i32,
}

/// A listed request with the outcome of its import report, if it has one.
#[derive(Debug, Clone)]
pub struct ListedRequest {
    /// The request.
    pub summary: RequestSummary,
    /// Its import report's counts.
    pub report: Option<ReportCounts>,
    /// The message of its first failed import line.
    pub first_failure: Option<String>,
}

/// The requests `filter` selects, newest first.
pub fn list(conn: &mut DbConnection, filter: &RequestFilter) -> QueryResult<Vec<ListedRequest>> {
    let rows: Vec<RequestSummary> = filtered(filter).load(conn)?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let reports: Vec<(i64, ReportCounts)> = imports::table
        .filter(imports::request_id.eq_any(&ids))
        .select((
            imports::request_id,
            (
                imports::successes,
                imports::duplicates,
                imports::superseded,
                imports::failures,
            ),
        ))
        .load(conn)?;
    let failures: Vec<(i64, String)> = import_lines::table
        .filter(import_lines::request_id.eq_any(&ids))
        .filter(import_lines::result.eq(crate::imports::LineOutcome::Failure.as_str()))
        .order((import_lines::request_id, import_lines::line_no))
        .select((import_lines::request_id, import_lines::message))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|summary| ListedRequest {
            report: reports
                .iter()
                .find(|(id, _)| *id == summary.id)
                .map(|(_, c)| *c),
            first_failure: failures
                .iter()
                .find(|(id, _)| *id == summary.id)
                .map(|(_, m)| m.clone()),
            summary,
        })
        .collect())
}

type Db = <DbConnection as diesel::Connection>::Backend;

macro_rules! summary_columns {
    () => {
        (
            requests::id,
            requests::operation,
            requests::message_seq_id,
            requests::caller,
            requests::state,
            requests::attempts,
            requests::received_at,
            requests::line_count,
            requests::receipts,
            requests::conflict,
            requests::last_error,
        )
    };
}

/// The SQL type of a [`RequestSummary`] row.
type SummarySql = <summary_columns!() as Expression>::SqlType;

/// The list query for `filter`, newest first (keyset on the id: rows arriving later never shift a
/// page). Each filter has an index (migration `console_requests`): `requests (state, id)`,
/// `(operation, id)`, `(caller, id)`, `(message_seq_id)`, `(received_at)`, the conflicts' partial
/// index, `request_lines (sku)`, `request_shipments (order_increment_id)` and the failed imports'
/// partial index.
fn filtered(filter: &RequestFilter) -> requests::BoxedQuery<'_, Db, SummarySql> {
    narrowed(
        requests::table
            .select(summary_columns!())
            .order(requests::id.desc())
            .limit(filter.limit.max(1))
            .into_boxed(),
        filter,
    )
}

/// The ids `filter` selects (without its page position and limit), newest first, at most `limit`:
/// what an "all matching this filter" action acts on.
pub fn matching_ids(
    conn: &mut DbConnection,
    filter: &RequestFilter,
    limit: i64,
) -> QueryResult<Vec<i64>> {
    let whole = RequestFilter {
        before_id: None,
        ..filter.clone()
    };
    narrowed(
        requests::table
            .select(requests::id)
            .order(requests::id.desc())
            .limit(limit.max(1))
            .into_boxed(),
        &whole,
    )
    .load(conn)
}

/// `q` narrowed to what `filter` selects.
fn narrowed<'a, ST: 'a>(
    mut q: requests::BoxedQuery<'a, Db, ST>,
    filter: &'a RequestFilter,
) -> requests::BoxedQuery<'a, Db, ST> {
    q = match filter.state {
        None => q,
        Some(StateFilter::State(s)) => q.filter(requests::state.eq(s.as_str())),
        Some(StateFilter::Retrying) => q
            .filter(requests::state.eq(RequestState::Queued.as_str()))
            .filter(requests::attempts.gt(0)),
        Some(StateFilter::Failed) => q
            .filter(requests::state.eq(RequestState::Processed.as_str()))
            .filter(
                requests::id.eq_any(
                    imports::table
                        .filter(imports::failures.gt(0))
                        .select(imports::request_id),
                ),
            ),
    };
    if let Some(op) = filter.operation {
        q = q.filter(requests::operation.eq(op.as_str()));
    }
    if let Some(seq) = filter.message_seq_id {
        q = q.filter(requests::message_seq_id.eq(seq));
    }
    if let Some(caller) = &filter.caller {
        q = q.filter(requests::caller.eq(caller));
    }
    if let Some(conflict) = filter.conflict {
        q = q.filter(requests::conflict.eq(conflict));
    }
    if let Some(from) = filter.received_from {
        q = q.filter(requests::received_at.ge(from));
    }
    if let Some(before) = filter.received_before {
        q = q.filter(requests::received_at.lt(before));
    }
    if let Some(id) = filter.before_id {
        q = q.filter(requests::id.lt(id));
    }
    if let Some(sku) = &filter.sku {
        q = q.filter(
            requests::id.eq_any(
                request_lines::table
                    .filter(request_lines::sku.eq(sku))
                    .select(request_lines::request_id),
            ),
        );
    }
    if let Some(order) = &filter.order {
        q = q.filter(
            requests::id.eq_any(
                request_shipments::table
                    .filter(request_shipments::order_increment_id.eq(order))
                    .select(request_shipments::request_id),
            ),
        );
    }
    q
}

/// The requests (at most `limit`, oldest first) with this messageSeqId, of any operation: what the
/// console's search box looks for first.
pub fn ids_with_seq(conn: &mut DbConnection, seq: i64, limit: i64) -> QueryResult<Vec<i64>> {
    requests::table
        .filter(requests::message_seq_id.eq(seq))
        .order(requests::id)
        .limit(limit)
        .select(requests::id)
        .load(conn)
}

/// The stored body of request `id` (credentials masked), exactly as stored; `None` when there is no
/// such request, `Some(None)` once retention dropped the body.
pub fn body_of(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Option<String>>> {
    requests::table
        .find(id)
        .select(requests::body)
        .first(conn)
        .optional()
}

/// Where a request's processing stands beyond its summary.
#[derive(Debug, Clone, Queryable)]
pub struct Progress {
    /// When the next attempt is due (queued requests).
    pub next_attempt_at: NaiveDateTime,
    /// When it was applied.
    pub processed_at: Option<NaiveDateTime>,
    /// The worker holding it.
    pub lease_owner: Option<String>,
    /// Until when.
    pub lease_expires_at: Option<NaiveDateTime>,
    /// The stored body, credentials masked (`None` once retention dropped it).
    pub body: Option<String>,
}

/// The header of a received shipment.
#[derive(Debug, Clone, Queryable)]
pub struct ShipmentHeader {
    /// The order shipped.
    pub order_increment_id: String,
    /// Courier.
    pub courier_name: Option<String>,
    /// Service.
    pub service_name: Option<String>,
    /// Shipped date.
    pub date_shipped: Option<NaiveDateTime>,
    /// Comment.
    pub comment: Option<String>,
}

/// A received line.
#[derive(Debug, Clone, Queryable)]
pub struct ReceivedLine {
    /// Position (1-based).
    pub line_no: i32,
    /// SKU.
    pub sku: String,
    /// Stock source.
    pub source: String,
    /// Quantity.
    pub qty: i32,
    /// Sequence id (inventory lines).
    pub seq: Option<i64>,
}

/// A line of an import report (current, or replaced by a reprocess).
#[derive(Debug, Clone, Queryable)]
pub struct ReportLine {
    /// Position (1-based).
    pub line_no: i32,
    /// Sequence id.
    pub seq: Option<i64>,
    /// SKU.
    pub sku: String,
    /// Stock source.
    pub source: String,
    /// Units the warehouse reported.
    pub units_received: i32,
    /// Units taken off for orders not yet sent to the warehouse.
    pub units_adjusted_orders: i32,
    /// Units taken off for open quotes.
    pub units_adjusted_quotes: i32,
    /// Quantity stored after the line.
    pub stored_qty: Option<i32>,
    /// `Success`, `Duplicate`, `Superseded` or `Failure`.
    pub result: String,
    /// What happened.
    pub message: String,
}

/// A failed attempt.
#[derive(Debug, Clone, Queryable)]
pub struct AttemptError {
    /// Which attempt (counted since the last requeue).
    pub attempt: i32,
    /// When.
    pub at: NaiveDateTime,
    /// What went wrong.
    pub error: String,
}

/// Something support did with the request.
#[derive(Debug, Clone)]
pub struct ActionRecord {
    /// The row.
    pub action: ActionRow,
    /// The import report it replaced (reprocess).
    pub replaced: Vec<ReportLine>,
}

/// A stored support action.
#[derive(Debug, Clone, Queryable)]
pub struct ActionRow {
    /// Id.
    pub id: i64,
    /// What support did.
    #[diesel(deserialize_as = String)]
    pub action: SupportAction,
    /// Who did it.
    pub actor: String,
    /// When.
    pub at: NaiveDateTime,
    /// The state before.
    #[diesel(deserialize_as = String)]
    pub previous_state: RequestState,
    /// The attempts before.
    pub previous_attempts: i32,
    /// The last error before.
    pub previous_error: Option<String>,
    /// What else changed (the replaced report's counts).
    pub note: Option<String>,
}

/// One request in full.
#[derive(Debug, Clone)]
pub struct RequestDetail {
    /// The summary.
    pub summary: RequestSummary,
    /// Processing times, lease and body.
    pub progress: Progress,
    /// Other requests with the same operation and messageSeqId.
    pub same_message: Vec<i64>,
    /// The other side of a conflict: the first other request with this operation and messageSeqId
    /// (for a flagged request, the one received first) and its stored body.
    pub conflict_peer: Option<(i64, Option<String>)>,
    /// The shipment header and tracking numbers (shipments).
    pub shipment: Option<(ShipmentHeader, Vec<String>)>,
    /// The received lines.
    pub lines: Vec<ReceivedLine>,
    /// The import report, when applied.
    pub report: Option<(ReportCounts, Vec<ReportLine>)>,
    /// Failed attempts, oldest first.
    pub errors: Vec<AttemptError>,
    /// Support actions, oldest first.
    pub actions: Vec<ActionRecord>,
}

/// One request in full, or `None` when there is no such request.
pub fn detail(conn: &mut DbConnection, id: i64) -> QueryResult<Option<RequestDetail>> {
    let Some(summary) = requests::table
        .find(id)
        .select(summary_columns!())
        .first::<RequestSummary>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let progress: Progress = requests::table
        .find(id)
        .select((
            requests::next_attempt_at,
            requests::processed_at,
            requests::lease_owner,
            requests::lease_expires_at,
            requests::body,
        ))
        .first(conn)?;
    let same_message = requests::table
        .filter(requests::operation.eq(summary.operation.as_str()))
        .filter(requests::message_seq_id.eq(summary.message_seq_id))
        .filter(requests::id.ne(id))
        .order(requests::id)
        .select(requests::id)
        .load(conn)?;
    let conflict_peer = match same_message.first() {
        Some(&peer) => body_of(conn, peer)?.map(|body| (peer, body)),
        None => None,
    };
    Ok(Some(RequestDetail {
        summary,
        progress,
        same_message,
        conflict_peer,
        shipment: shipment(conn, id)?,
        lines: received_lines(conn, id)?,
        report: report(conn, id)?,
        errors: request_errors::table
            .filter(request_errors::request_id.eq(id))
            .order(request_errors::id)
            .select((
                request_errors::attempt,
                request_errors::at,
                request_errors::error,
            ))
            .load(conn)?,
        actions: actions(conn, id)?,
    }))
}

fn shipment(
    conn: &mut DbConnection,
    id: i64,
) -> QueryResult<Option<(ShipmentHeader, Vec<String>)>> {
    let Some(header) = request_shipments::table
        .find(id)
        .select((
            request_shipments::order_increment_id,
            request_shipments::courier_name,
            request_shipments::service_name,
            request_shipments::date_shipped,
            request_shipments::comment,
        ))
        .first::<ShipmentHeader>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let tracking = request_tracking::table
        .filter(request_tracking::request_id.eq(id))
        .order(request_tracking::position)
        .select(request_tracking::tracking_number)
        .load(conn)?;
    Ok(Some((header, tracking)))
}

fn received_lines(conn: &mut DbConnection, id: i64) -> QueryResult<Vec<ReceivedLine>> {
    request_lines::table
        .filter(request_lines::request_id.eq(id))
        .order(request_lines::line_no)
        .select((
            request_lines::line_no,
            request_lines::sku,
            request_lines::source,
            request_lines::qty,
            request_lines::seq,
        ))
        .load(conn)
}

fn report(
    conn: &mut DbConnection,
    id: i64,
) -> QueryResult<Option<(ReportCounts, Vec<ReportLine>)>> {
    let Some(counts) = imports::table
        .find(id)
        .select((
            imports::successes,
            imports::duplicates,
            imports::superseded,
            imports::failures,
        ))
        .first::<ReportCounts>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let lines = import_lines::table
        .filter(import_lines::request_id.eq(id))
        .order(import_lines::line_no)
        .select((
            import_lines::line_no,
            import_lines::seq,
            import_lines::sku,
            import_lines::source,
            import_lines::units_received,
            import_lines::units_adjusted_orders,
            import_lines::units_adjusted_quotes,
            import_lines::stored_qty,
            import_lines::result,
            import_lines::message,
        ))
        .load(conn)?;
    Ok(Some((counts, lines)))
}

fn actions(conn: &mut DbConnection, id: i64) -> QueryResult<Vec<ActionRecord>> {
    let rows: Vec<ActionRow> = request_actions::table
        .filter(request_actions::request_id.eq(id))
        .order(request_actions::id)
        .select((
            request_actions::id,
            request_actions::action,
            request_actions::actor,
            request_actions::at,
            request_actions::previous_state,
            request_actions::previous_attempts,
            request_actions::previous_error,
            request_actions::note,
        ))
        .load(conn)?;
    rows.into_iter()
        .map(|action| {
            let replaced = replaced_import_lines::table
                .filter(replaced_import_lines::action_id.eq(action.id))
                .order(replaced_import_lines::line_no)
                .select((
                    replaced_import_lines::line_no,
                    replaced_import_lines::seq,
                    replaced_import_lines::sku,
                    replaced_import_lines::source,
                    replaced_import_lines::units_received,
                    replaced_import_lines::units_adjusted_orders,
                    replaced_import_lines::units_adjusted_quotes,
                    replaced_import_lines::stored_qty,
                    replaced_import_lines::result,
                    replaced_import_lines::message,
                ))
                .load(conn)?;
            Ok(ActionRecord { action, replaced })
        })
        .collect()
}

/// The dead requests of one operation, for the alert monitor.
#[derive(Debug, Clone)]
pub struct DeadRequests {
    /// The operation.
    pub operation: Operation,
    /// How many are dead.
    pub count: i64,
    /// The oldest of them (at most the limit asked for), oldest first, each with why it failed
    /// last.
    pub oldest: Vec<(i64, Option<String>)>,
}

/// Dead requests per operation (operations with none are left out), each with its oldest `limit`
/// ids.
pub fn dead_by_operation(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<DeadRequests>> {
    let mut found = Vec::new();
    for operation in Operation::ALL {
        let dead = requests::table
            .filter(requests::state.eq(RequestState::Dead.as_str()))
            .filter(requests::operation.eq(operation.as_str()));
        let count: i64 = dead.count().get_result(conn)?;
        if count == 0 {
            continue;
        }
        let oldest = dead
            .order(requests::id)
            .limit(limit)
            .select((requests::id, requests::last_error))
            .load(conn)?;
        found.push(DeadRequests {
            operation: *operation,
            count,
            oldest,
        });
    }
    Ok(found)
}

/// The oldest request waiting in the queue and due by `now` (not one waiting for its retry time):
/// its id and when it was received.
pub fn oldest_queued(
    conn: &mut DbConnection,
    now: NaiveDateTime,
) -> QueryResult<Option<(i64, NaiveDateTime)>> {
    requests::table
        .filter(requests::state.eq(RequestState::Queued.as_str()))
        .filter(requests::next_attempt_at.le(now))
        .order(requests::received_at)
        .select((requests::id, requests::received_at))
        .first(conn)
        .optional()
}
