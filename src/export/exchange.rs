//! One exchange with the warehouse: how it went as a whole (answered, or why not), and the export log
//! that keeps every exchange with what was sent and what came back.
//!
//! The log keeps the exchange's fate (`outcome`) apart from the items' verdicts (`successes`,
//! `duplicates`, `failures`): an answered batch may still have refused items, and a batch that was
//! not answered has no verdicts at all, only the number of items it carried.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::report::{self, AnswerError};
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
pub(super) struct BatchError {
    pub exchange: Exchange,
    /// For people: what happened.
    pub message: String,
    pub http_status: Option<u16>,
    pub body: Option<String>,
}

impl BatchError {
    /// A request that got no HTTP answer at all.
    pub fn transport(e: &reqwest::Error, timeout_secs: u64) -> BatchError {
        let message = if e.is_timeout() {
            format!("the warehouse did not answer within {timeout_secs} s")
        } else {
            format!("cannot reach the warehouse ({})", transport_reason(e))
        };
        BatchError {
            exchange: Exchange::TransportError,
            message,
            http_status: None,
            body: None,
        }
    }

    /// An answer with an error status.
    pub fn http(status: reqwest::StatusCode, body: String) -> BatchError {
        let message = if status == reqwest::StatusCode::UNAUTHORIZED {
            "the warehouse refused wharf's credentials (HTTP 401): check warehouse.username and \
             warehouse.password"
                .to_string()
        } else {
            // A Tomcat error page reads better as its heading than as the start of its markup.
            let what = match report::parse_import_report(&body) {
                Err(AnswerError::ErrorPage(page)) if !page.is_empty() => page,
                _ => report::excerpt(&body),
            };
            format!("the warehouse answered HTTP {status}: {what}")
        };
        BatchError {
            exchange: Exchange::HttpError,
            message,
            http_status: Some(status.as_u16()),
            body: Some(body),
        }
    }

    /// An answer longer than `warehouse.max_answer`; `start` is what was read of it.
    pub fn too_large(status: reqwest::StatusCode, limit: usize, start: String) -> BatchError {
        BatchError {
            exchange: if status.is_success() {
                Exchange::BadAnswer
            } else {
                Exchange::HttpError
            },
            message: format!(
                "answer too large: the warehouse answered HTTP {} with more than {limit} bytes \
                 (warehouse.max_answer); the export log keeps its start",
                status.as_u16()
            ),
            http_status: Some(status.as_u16()),
            body: Some(start),
        }
    }

    /// A 200 answer that is not a usable one.
    pub fn unreadable(e: AnswerError, body: String) -> BatchError {
        BatchError {
            exchange: match e {
                AnswerError::Exception(_) => Exchange::Exception,
                _ => Exchange::BadAnswer,
            },
            message: e.to_string(),
            http_status: Some(200),
            body: Some(body),
        }
    }
}

/// Reads an answer of at most `limit` bytes: `Ok(Ok(text))` when it fits, `Ok(Err(start))` with
/// its first bytes (at most `limit` and [`STORED_ANSWER`]) when it does not (the rest is not read: the connection is
/// dropped), `Err` when it broke off.
pub(super) async fn read_capped(
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
fn transport_reason(e: &reqwest::Error) -> String {
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
pub(super) struct ExchangeLog {
    /// `order`, `product` or `cancel`.
    pub kind: &'static str,
    pub operation: &'static str,
    pub url: String,
    pub started: NaiveDateTime,
    pub request: Option<String>,
}

/// The items' verdicts in an answer.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Counts {
    pub successes: i32,
    pub duplicates: i32,
    pub failures: i32,
}

/// One line of the log: what the warehouse said about one item.
pub(super) struct LogLine {
    pub reference: String,
    pub result: &'static str,
    pub message: String,
    pub detail: Option<String>,
}

/// Logs an answered exchange with its verdicts and lines.
pub(super) fn log_answered(
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
    for (i, l) in lines.iter().enumerate() {
        diesel::insert_into(export_lines::table)
            .values((
                export_lines::export_id.eq(id),
                export_lines::line_no.eq(i as i32 + 1),
                export_lines::reference.eq(&l.reference),
                export_lines::result.eq(l.result),
                export_lines::message.eq(&l.message),
                export_lines::detail.eq(&l.detail),
            ))
            .execute(conn)?;
    }
    Ok(id)
}

/// What an answered exchange brought.
pub(super) struct Answered<'a> {
    pub items: usize,
    pub counts: Counts,
    /// The last refusal's message, if any item was refused.
    pub refusal: Option<&'a str>,
    pub response: &'a str,
}

/// Logs an exchange that brought no usable answer.
pub(super) fn log_failed(
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
#[derive(Debug, Clone, Queryable)]
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

type SummaryColumns = (
    exports::id,
    exports::message_id,
    exports::kind,
    exports::operation,
    exports::started_at,
    exports::outcome,
    exports::successes,
    exports::duplicates,
    exports::failures,
    exports::error,
    exports::items,
    exports::http_status,
);

const SUMMARY: SummaryColumns = (
    exports::id,
    exports::message_id,
    exports::kind,
    exports::operation,
    exports::started_at,
    exports::outcome,
    exports::successes,
    exports::duplicates,
    exports::failures,
    exports::error,
    exports::items,
    exports::http_status,
);

/// The most recent exports, newest first.
pub fn recent_exports(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<ExportSummary>> {
    exports::table
        .order(exports::id.desc())
        .limit(limit)
        .select(SUMMARY)
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
        .select(SUMMARY)
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
