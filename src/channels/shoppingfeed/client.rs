//! The API's HTTP side: its URLs, one request with the bearer token and a capped answer, and what
//! each answer means for the tasks it was about.

use chrono::TimeDelta;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};

use super::super::sync::Pusher;
use super::Operation;
use crate::outbound::exchange::{self, BatchError, Exchange, transport_reason};

/// Most of an answer read: batches of 100 tickets fit easily.
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// Longest `Retry-After` followed; a longer one is cut to this.
const MAX_RETRY_AFTER: TimeDelta = TimeDelta::hours(1);

/// What an exchange brought.
pub(super) enum Reply {
    /// A 2xx answer: its status and body.
    Ok { status: u16, body: String },
    /// 429: the API asks to wait this long (not counted against the tasks nor the breaker).
    Busy { wait: TimeDelta, error: BatchError },
    /// No usable answer (transport, timeout, 5xx, 401/403, an unreadable answer): due again
    /// after a backoff, counted by the breaker.
    Down(BatchError),
    /// Another 4xx: the API refused the request (counted against each task).
    Refused(BatchError),
}

/// `{base}/v1/store/{storeId}/{rest…}`.
fn url(p: &Pusher, rest: &[&str]) -> anyhow::Result<reqwest::Url> {
    let base = p.channel.base_url.trim_end_matches('/');
    let mut url = reqwest::Url::parse(base).map_err(|e| {
        anyhow::anyhow!(
            "channel {}: base_url {:?} is not a URL ({e}); fix it in its [[channels]] table",
            p.name,
            p.channel.base_url
        )
    })?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("channel {}: base_url cannot take a path", p.name))?
        .pop_if_empty()
        .extend(["v1", "store", p.channel.store_id.as_str()])
        .extend(rest);
    Ok(url)
}

/// Where an order operation is posted.
pub(super) fn operation_url(p: &Pusher, op: Operation) -> anyhow::Result<reqwest::Url> {
    url(p, &["order", op.word()])
}

/// Where a batch's tickets are read.
pub(super) fn tickets_url(p: &Pusher, batch_id: &str) -> anyhow::Result<reqwest::Url> {
    let mut url = url(p, &["ticket"])?;
    url.query_pairs_mut().append_pair("batchId", batch_id);
    Ok(url)
}

/// POSTs a JSON body.
pub(super) async fn post(p: &Pusher, url: reqwest::Url, body: String) -> Reply {
    let req = p
        .http
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .body(body);
    exchange_with(p, req).await
}

/// GETs a resource.
pub(super) async fn get(p: &Pusher, url: reqwest::Url) -> Reply {
    exchange_with(p, p.http.get(url)).await
}

async fn exchange_with(p: &Pusher, req: reqwest::RequestBuilder) -> Reply {
    let sent = req
        .bearer_auth(&p.channel.token)
        .header(ACCEPT, "application/json")
        .send()
        .await;
    let resp = match sent {
        Ok(resp) => resp,
        Err(e) => return Reply::Down(transport(p, &e)),
    };
    let status = resp.status();
    let wait = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(retry_after);
    let body = match exchange::read_capped(resp, MAX_ANSWER).await {
        Ok(Ok(body)) => body,
        Ok(Err(start)) => {
            let message = format!(
                "channel {}: the API answered HTTP {} with more than {MAX_ANSWER} bytes; the \
                 exchange log keeps its start",
                p.name,
                status.as_u16()
            );
            return Reply::Down(error(Exchange::BadAnswer, message, status, start));
        }
        // The answer broke off half-way: nothing usable came back.
        Err(e) => return Reply::Down(transport(p, &e)),
    };
    classify(p, status, wait, body)
}

/// What an answer with `status` means.
fn classify(p: &Pusher, status: StatusCode, wait: Option<TimeDelta>, body: String) -> Reply {
    let name = p.name;
    let code = status.as_u16();
    if status.is_success() {
        return Reply::Ok { status: code, body };
    }
    let what = detail(&body);
    match status {
        StatusCode::TOO_MANY_REQUESTS => {
            let wait = wait.unwrap_or_else(|| p.backoff().after(1).max(TimeDelta::seconds(1)));
            let message = format!(
                "channel {name}: the API asked wharf to slow down (HTTP 429); sent again after {} s",
                wait.num_seconds()
            );
            Reply::Busy {
                wait,
                error: error(Exchange::HttpError, message, status, body),
            }
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            let message = format!(
                "channel {name}: the API refused wharf's token for store {} (HTTP {code}: {what}); \
                 check the channel's token (or {}) and store_id",
                p.channel.store_id,
                p.channel.secret_var("TOKEN")
            );
            Reply::Down(error(Exchange::HttpError, message, status, body))
        }
        s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
            let message = format!("channel {name}: the API answered HTTP {code}: {what}");
            Reply::Down(error(Exchange::HttpError, message, status, body))
        }
        s if s.is_client_error() => {
            let message =
                format!("channel {name}: the API refused the request (HTTP {code}: {what})");
            Reply::Refused(error(Exchange::HttpError, message, status, body))
        }
        _ => {
            let message = format!("channel {name}: the API answered HTTP {code}, not an answer");
            Reply::Down(error(Exchange::BadAnswer, message, status, body))
        }
    }
}

fn error(exchange: Exchange, message: String, status: StatusCode, body: String) -> BatchError {
    BatchError {
        exchange,
        message,
        http_status: Some(status.as_u16()),
        body: Some(body),
    }
}

/// A request that got no HTTP answer.
fn transport(p: &Pusher, e: &reqwest::Error) -> BatchError {
    let message = if e.is_timeout() {
        format!(
            "channel {}: the API did not answer within {} s (timeout_secs)",
            p.name, p.channel.timeout_secs
        )
    } else {
        format!(
            "channel {}: cannot reach the API at {} ({})",
            p.name,
            p.channel.base_url,
            transport_reason(e)
        )
    };
    BatchError {
        exchange: Exchange::TransportError,
        message,
        http_status: None,
        body: None,
    }
}

/// A `Retry-After` value: seconds, or an HTTP date.
fn retry_after(value: &str) -> Option<TimeDelta> {
    let value = value.trim();
    let wait = match value.parse::<i64>() {
        Ok(secs) => TimeDelta::seconds(secs),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            at.with_timezone(&chrono::Utc) - chrono::Utc::now()
        }
    };
    Some(wait.clamp(TimeDelta::zero(), MAX_RETRY_AFTER))
}

/// What an error answer says, for people: a problem document's `detail` (or `title`,
/// `message`), else the start of the body on one line.
pub(super) fn detail(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        for key in ["detail", "title", "message", "error"] {
            if let Some(s) = v[key].as_str().filter(|s| !s.trim().is_empty()) {
                return s.trim().to_string();
            }
        }
    }
    let line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None if line.is_empty() => "an empty answer".to_string(),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after("7"), Some(TimeDelta::seconds(7)));
        assert_eq!(retry_after("-3"), Some(TimeDelta::zero()));
        assert_eq!(retry_after("999999"), Some(MAX_RETRY_AFTER));
        let soon = (chrono::Utc::now() + TimeDelta::seconds(120)).to_rfc2822();
        let wait = retry_after(&soon).unwrap();
        assert!(wait > TimeDelta::seconds(100) && wait <= TimeDelta::seconds(120));
        assert_eq!(retry_after("soon"), None);
    }

    #[test]
    fn details_come_from_problem_documents() {
        let problem = r#"{"type":"x","title":"Bad Request","status":400,"detail":"order[0]: no channelName"}"#;
        assert_eq!(detail(problem), "order[0]: no channelName");
        assert_eq!(detail("<html>\n  oops  </html>"), "<html> oops </html>");
        assert_eq!(detail(""), "an empty answer");
    }
}
