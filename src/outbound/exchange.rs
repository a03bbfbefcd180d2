//! One exchange with the other side of a channel: how it went as a whole (answered, or why not), and
//! the exchange log (`exports`, `export_lines`) that keeps every exchange with what was sent and what
//! came back, and the verdict on each item.
//!
//! The log keeps the exchange's fate (`outcome`) apart from the items' verdicts (`successes`,
//! `duplicates`, `failures`): an answered batch may still have refused items, and a batch that was
//! not answered has no verdicts at all, only the number of items it carried.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{export_lines, exports};
use crate::db::{self, DbConnection};

/// How an exchange with the warehouse went as a whole, as stored in `exports.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    /// Answered with something readable (the items' verdicts say the rest).
    Answered,
    /// The warehouse could not be reached, or did not answer in time.
    TransportError,
    /// Answered with an HTTP error status.
    HttpError,
    /// Answered 200 with something that is not an answer (an HTML error page, not XML).
    BadAnswer,
    /// Answered 200 with an `<exception>`.
    Exception,
}

impl Exchange {
    /// The word stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Exchange::Answered => "ok",
            Exchange::TransportError => "transport_error",
            Exchange::HttpError => "http_error",
            Exchange::BadAnswer => "bad_answer",
            Exchange::Exception => "exception",
        }
    }

    /// Reads a stored word; `None` for a word this version does not know.
    pub fn parse(s: &str) -> Option<Exchange> {
        [
            Exchange::Answered,
            Exchange::TransportError,
            Exchange::HttpError,
            Exchange::BadAnswer,
            Exchange::Exception,
        ]
        .into_iter()
        .find(|e| e.as_str() == s)
    }
}

/// Why an exchange did not bring a usable answer: the items it carried were not decided.
#[derive(Debug)]
pub struct BatchError {
    /// How the exchange went.
    pub exchange: Exchange,
    /// For people: what happened.
    pub message: String,
    /// The HTTP status answered, if any.
    pub http_status: Option<u16>,
    /// What was answered, if anything.
    pub body: Option<String>,
}

/// Reads an answer of at most `limit` bytes: `Ok(Ok(text))` when it fits, `Ok(Err(start))` with
/// its first bytes (at most `limit` and [`STORED_ANSWER`]) when it does not (the rest is not read: the connection is
/// dropped), `Err` when it broke off.
pub async fn read_capped(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Result<String, String>, reqwest::Error> {
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let declared = resp.content_length().and_then(|n| usize::try_from(n).ok());
    let over = declared.is_some_and(|n| n > limit);
    // What is kept of an answer that is too large: never more than is read of one that fits.
    let start = STORED_ANSWER.min(limit);
    let mut body: Vec<u8> = Vec::with_capacity(declared.unwrap_or(0).min(limit).min(1 << 20));
    while let Some(chunk) = resp.chunk().await? {
        if over || body.len() + chunk.len() > limit {
            body.truncate(start);
            let room = start - body.len();
            body.extend_from_slice(&chunk[..room.min(chunk.len())]);
            if body.len() >= start || !over {
                return Ok(Err(lossy(&body)));
            }
            continue;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(if over {
        Err(lossy(&body))
    } else {
        Ok(lossy(&body))
    })
}

/// Most of an answer kept in the export log: a longer one is stored as its start and a note.
pub const STORED_ANSWER: usize = 1024 * 1024;

/// What the log keeps of an answer: all of it up to [`STORED_ANSWER`] bytes, else its start
/// (cut at a character boundary) and how much was left out.
fn stored_excerpt(answer: &str) -> std::borrow::Cow<'_, str> {
    if answer.len() <= STORED_ANSWER {
        return answer.into();
    }
    let mut end = STORED_ANSWER;
    while !answer.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[… {} more bytes not stored]",
        &answer[..end],
        answer.len() - end
    )
    .into()
}

/// The innermost reason a connection failed, in a few words ("connection refused").
pub fn transport_reason(e: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut innermost: Option<String> = None;
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            let named = match io.kind() {
                K::ConnectionRefused => Some("connection refused"),
                K::ConnectionReset => Some("connection reset"),
                K::ConnectionAborted => Some("connection aborted"),
                K::TimedOut => Some("connection timed out"),
                K::HostUnreachable => Some("host unreachable"),
                K::NetworkUnreachable => Some("network unreachable"),
                _ => None,
            };
            if let Some(n) = named {
                return n.to_string();
            }
        }
        innermost = Some(s.to_string());
        source = s.source();
    }
    innermost.unwrap_or_else(|| e.to_string())
}

/// What was sent, for the export log.
pub struct ExchangeLog {
    /// What was exchanged (the warehouse: `order`, `product` or `cancel`).
    pub kind: &'static str,
    /// The operation asked for (`insert`, `merge`, `cancel`).
    pub operation: &'static str,
    /// Where it went.
    pub url: String,
    /// When it started.
    pub started: NaiveDateTime,
    /// The document sent, if any.
    pub request: Option<String>,
}

/// The items' verdicts in an answer.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Accepted.
    pub successes: i32,
    /// Already there.
    pub duplicates: i32,
    /// Refused.
    pub failures: i32,
}

/// One line of the log: what the warehouse said about one item.
pub struct LogLine {
    /// The item (an order number, a SKU).
    pub reference: String,
    /// The verdict's word.
    pub result: &'static str,
    /// What the other side said.
    pub message: String,
    /// More of it, if any.
    pub detail: Option<String>,
}

/// Logs an answered exchange with its verdicts and lines.
pub fn log_answered(
    conn: &mut DbConnection,
    log: &ExchangeLog,
    outcome: Answered<'_>,
    lines: &[LogLine],
) -> QueryResult<i64> {
    let id = insert(
        conn,
        log,
        Outcome {
            exchange: Exchange::Answered,
            items: outcome.items,
            counts: outcome.counts,
            error: outcome.refusal,
            response: Some(outcome.response),
            http_status: Some(200),
        },
    )?;
    let rows: Vec<_> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            (
                export_lines::export_id.eq(id),
                export_lines::line_no.eq(i32::try_from(i + 1).unwrap_or(i32::MAX)),
                export_lines::reference.eq(&l.reference),
                export_lines::result.eq(l.result),
                export_lines::message.eq(&l.message),
                export_lines::detail.eq(&l.detail),
            )
        })
        .collect();
    // One statement per thousand lines rather than one per line: a batch is settled in one
    // transaction, and its round trips are most of its cost.
    for chunk in rows.chunks(1000) {
        crate::with_backend!(&mut *conn, |c| diesel::insert_into(export_lines::table)
            .values(chunk)
            .execute(c))?;
    }
    Ok(id)
}

/// What an answered exchange brought.
pub struct Answered<'a> {
    /// Items the exchange carried.
    pub items: usize,
    /// Their verdicts.
    pub counts: Counts,
    /// The last refusal's message, if any item was refused.
    pub refusal: Option<&'a str>,
    /// The answer.
    pub response: &'a str,
}

/// Logs an exchange that brought no usable answer.
pub fn log_failed(
    conn: &mut DbConnection,
    log: &ExchangeLog,
    items: usize,
    e: &BatchError,
) -> QueryResult<i64> {
    insert(
        conn,
        log,
        Outcome {
            exchange: e.exchange,
            items,
            counts: Counts::default(),
            error: Some(&e.message),
            response: e.body.as_deref(),
            http_status: e.http_status,
        },
    )
}

struct Outcome<'a> {
    exchange: Exchange,
    items: usize,
    counts: Counts,
    error: Option<&'a str>,
    response: Option<&'a str>,
    http_status: Option<u16>,
}

fn insert(conn: &mut DbConnection, log: &ExchangeLog, o: Outcome<'_>) -> QueryResult<i64> {
    let message_id = format!("{}-{}", log.kind, &crate::auth::random_secret()[..20]);
    crate::with_backend!(&mut *conn, |c| diesel::insert_into(exports::table)
        .values((
            exports::message_id.eq(&message_id),
            exports::kind.eq(log.kind),
            exports::operation.eq(log.operation),
            exports::url.eq(&log.url),
            exports::started_at.eq(log.started),
            exports::finished_at.eq(db::now()),
            exports::outcome.eq(o.exchange.as_str()),
            exports::error.eq(o.error),
            exports::successes.eq(o.counts.successes),
            exports::duplicates.eq(o.counts.duplicates),
            exports::failures.eq(o.counts.failures),
            exports::items.eq(i32::try_from(o.items).unwrap_or(i32::MAX)),
            exports::request_xml.eq(log.request.as_deref()),
            exports::response_body.eq(o.response.map(stored_excerpt)),
            exports::http_status.eq(o.http_status.map(i32::from)),
        ))
        .returning(exports::id)
        .get_result(c))
}

/// One logged exchange with the warehouse.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = exports)]
pub struct ExportSummary {
    /// Id.
    pub id: i64,
    /// Message id.
    pub message_id: String,
    /// `order`, `product` or `cancel`.
    pub kind: String,
    /// `insert`, `merge`, `cancel`.
    pub operation: String,
    /// When it started.
    pub started_at: NaiveDateTime,
    /// How the exchange went as a whole: `ok` (answered), `transport_error`, `http_error`,
    /// `bad_answer`, `exception` (see [`Exchange`]).
    pub outcome: String,
    /// Items accepted.
    pub successes: i32,
    /// Items the warehouse already had.
    pub duplicates: i32,
    /// Items refused (or missing from the report).
    pub failures: i32,
    /// The exchange's error when it was not answered; when it was, the last item refusal, if any.
    pub error: Option<String>,
    /// Items the exchange carried (decided or not).
    pub items: i32,
    /// The HTTP status answered, if any.
    pub http_status: Option<i32>,
}

impl ExportSummary {
    /// How the exchange went, `None` for a word this version does not know.
    pub fn exchange(&self) -> Option<Exchange> {
        Exchange::parse(&self.outcome)
    }
}

/// The most recent exports, newest first.
pub fn recent_exports(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<ExportSummary>> {
    exports::table
        .order(exports::id.desc())
        .limit(limit)
        .select(ExportSummary::as_select())
        .load(conn)
}

/// An export with its lines, request and response.
pub type ExportDetail = (
    ExportSummary,
    Vec<(String, String, String, Option<String>)>,
    Option<String>,
    Option<String>,
);

/// One export in full.
pub fn export_detail(conn: &mut DbConnection, id: i64) -> QueryResult<Option<ExportDetail>> {
    let Some(summary) = exports::table
        .find(id)
        .select(ExportSummary::as_select())
        .first::<ExportSummary>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let lines = export_lines::table
        .filter(export_lines::export_id.eq(id))
        .order(export_lines::line_no)
        .select((
            export_lines::reference,
            export_lines::result,
            export_lines::message,
            export_lines::detail,
        ))
        .load(conn)?;
    let (request, response): (Option<String>, Option<String>) = exports::table
        .find(id)
        .select((exports::request_xml, exports::response_body))
        .first(conn)?;
    Ok(Some((summary, lines, request, response)))
}

/// Up to `limit` exchanges finished before `cutoff`, oldest first (retention). A row is written
/// only once its exchange is over, so none of these is in flight.
pub fn exports_before(
    conn: &mut DbConnection,
    cutoff: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<i64>> {
    crate::load_skip_locked!(
        conn,
        exports::table
            .filter(exports::finished_at.lt(cutoff))
            .order((exports::finished_at, exports::id))
            .limit(limit)
            .select(exports::id)
    )
}

/// How many exchanges finished before `cutoff`.
pub fn count_exports_before(conn: &mut DbConnection, cutoff: NaiveDateTime) -> QueryResult<i64> {
    exports::table
        .filter(exports::finished_at.lt(cutoff))
        .select(diesel::dsl::count_star())
        .get_result(conn)
}

/// Deletes those of `ids` finished before `cutoff`, their lines with them (the foreign key
/// cascades). Returns how many exchanges.
pub fn delete_exports(
    conn: &mut DbConnection,
    ids: &[i64],
    cutoff: NaiveDateTime,
) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::delete(
        exports::table
            .filter(exports::id.eq_any(ids))
            .filter(exports::finished_at.lt(cutoff)),
    )
    .execute(conn)
}

crate::text_enum! {
    /// What an exchange in the log was about (`exports.kind`), as the console filters it.
    pub enum LogKind: "export kind" {
        /// Orders sent to the warehouse.
        Order = "order",
        /// Products sent to the warehouse.
        Product = "product",
        /// Cancellations sent to the warehouse.
        Cancel = "cancel",
    }
}

/// Which exchanges the console lists (`/admin/exports`), newest first.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    /// What they were about.
    pub kind: Option<LogKind>,
    /// How they went as a whole.
    pub outcome: Option<Exchange>,
    /// Only those with at least one failed item.
    pub with_failures: bool,
    /// Finished at or after.
    pub from: Option<NaiveDateTime>,
    /// Finished before.
    pub until: Option<NaiveDateTime>,
    /// With a line about this item (an order number or SKU).
    pub reference: Option<String>,
    /// Keyset: only exchanges with a lower id.
    pub before: Option<i64>,
}

/// Up to `limit` exchanges matching `f`, newest (highest id) first.
pub fn list_exports(
    conn: &mut DbConnection,
    f: &ExportFilter,
    limit: i64,
) -> QueryResult<Vec<ExportSummary>> {
    let mut q = exports::table
        .select(ExportSummary::as_select())
        .into_boxed();
    if let Some(kind) = f.kind {
        q = q.filter(exports::kind.eq(kind.as_str()));
    }
    if let Some(outcome) = f.outcome {
        q = q.filter(exports::outcome.eq(outcome.as_str()));
    }
    if f.with_failures {
        q = q.filter(exports::failures.gt(0));
    }
    if let Some(from) = f.from {
        q = q.filter(exports::finished_at.ge(from));
    }
    if let Some(until) = f.until {
        q = q.filter(exports::finished_at.lt(until));
    }
    if let Some(reference) = &f.reference {
        q = q.filter(
            exports::id.eq_any(
                export_lines::table
                    .filter(export_lines::reference.eq(reference.clone()))
                    .select(export_lines::export_id),
            ),
        );
    }
    if let Some(before) = f.before {
        q = q.filter(exports::id.lt(before));
    }
    q.order(exports::id.desc()).limit(limit).load(conn)
}

/// One line of a logged exchange: the other side's verdict on one item.
#[derive(Debug, Clone, Queryable)]
pub struct ExportLineView {
    /// Position in the exchange.
    pub line_no: i32,
    /// The item (an order number, a SKU).
    pub reference: String,
    /// The verdict's word.
    pub result: String,
    /// What the other side said.
    pub message: String,
    /// More of it, if any.
    pub detail: Option<String>,
}

/// Up to `limit` lines of exchange `id` after line `after`, in line order.
pub fn export_lines_page(
    conn: &mut DbConnection,
    id: i64,
    after: Option<i32>,
    limit: i64,
) -> QueryResult<Vec<ExportLineView>> {
    let mut q = export_lines::table
        .filter(export_lines::export_id.eq(id))
        .select((
            export_lines::line_no,
            export_lines::reference,
            export_lines::result,
            export_lines::message,
            export_lines::detail,
        ))
        .into_boxed();
    if let Some(after) = after {
        q = q.filter(export_lines::line_no.gt(after));
    }
    q.order(export_lines::line_no).limit(limit).load(conn)
}

/// One exchange with its address and the documents sent and received.
#[derive(Debug, Clone, Queryable)]
pub struct ExportDocuments {
    /// The exchange.
    pub summary: ExportSummary,
    /// Where it went.
    pub url: String,
    /// The document sent, if any.
    pub sent: Option<String>,
    /// What came back, if anything (its start, when it was very large).
    pub received: Option<String>,
}

/// Exchange `id` with its URL and the documents sent and received, if it exists.
pub fn export_documents(conn: &mut DbConnection, id: i64) -> QueryResult<Option<ExportDocuments>> {
    exports::table
        .find(id)
        .select((
            ExportSummary::as_select(),
            exports::url,
            exports::request_xml,
            exports::response_body,
        ))
        .first(conn)
        .optional()
}
