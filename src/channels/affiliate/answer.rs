//! Reading the affiliate system's answers: what a push's answer (and a ticket's) means for its task.
//! Pure functions of the status, the `Retry-After` header and the body, so each rule is tested on
//! its own.

use chrono::{NaiveDateTime, TimeDelta};

use crate::outbound::exchange::{BatchError, Exchange, transport_reason};

/// What came back from one request.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// The body (its start, when it was too large).
    pub body: String,
}

/// How a request went, for the people reading the log and the task.
pub type Reply = Result<Answer, reqwest::Error>;

/// What a push's answer means.
#[derive(Debug)]
pub enum Verdict {
    /// Taken (2xx), or older than what the receiver has (409, with why): done either way.
    Taken {
        /// Why the receiver dropped it (409), when it did.
        stale: Option<String>,
    },
    /// Taken on (202) with a ticket to read until it settles.
    Ticket(String),
    /// Refused for good (another 4xx): why, for support.
    Refused(String),
    /// No usable answer: sent again later.
    NotAnswered(NoAnswer),
}

/// What a ticket read says.
#[derive(Debug)]
pub enum TicketVerdict {
    /// The receiver applied the push.
    Done,
    /// Still being worked on.
    Pending,
    /// The receiver could not apply it: why (the push is sent again).
    Failed(String),
    /// The receiver does not know the ticket (404): the push is sent again.
    Unknown,
    /// Refused for good (another 4xx).
    Refused(String),
    /// No usable answer: read again later.
    NotAnswered(NoAnswer),
}

/// An exchange without a usable answer.
#[derive(Debug)]
pub struct NoAnswer {
    /// For the log and the task: what happened.
    pub error: BatchError,
    /// When the receiver asked to be called again (`Retry-After`).
    pub retry_at: Option<NaiveDateTime>,
    /// Whether it counts on the channel's breaker (the receiver is down or unreachable; a 408 or
    /// 429 is an answer from a receiver that is up).
    pub breaker: bool,
}

/// The HTTP level of an answer, common to pushes and ticket reads.
enum Level<'a> {
    Ok(u16, &'a str),
    Conflict(&'a str),
    Refused(u16, String),
    Unavailable(NoAnswer),
}

fn level<'a>(reply: &'a Reply, channel: &str, timeout_secs: u64, now: NaiveDateTime) -> Level<'a> {
    let a = match reply {
        Ok(a) => a,
        Err(e) => {
            let message = if e.is_timeout() {
                format!(
                    "the affiliate system of channel {channel} did not answer within {timeout_secs} s; \
                     sent again later"
                )
            } else {
                format!(
                    "cannot reach the affiliate system of channel {channel} ({}); sent again later",
                    transport_reason(e)
                )
            };
            return Level::Unavailable(NoAnswer {
                error: BatchError {
                    exchange: Exchange::TransportError,
                    message,
                    http_status: None,
                    body: None,
                },
                retry_at: None,
                breaker: true,
            });
        }
    };
    let said = message_of(&a.body);
    match a.status {
        200..=299 => Level::Ok(a.status, &a.body),
        409 => Level::Conflict(&a.body),
        401 | 403 => Level::Refused(
            a.status,
            format!(
                "the affiliate system of channel {channel} refused wharf's signature (HTTP {}: {said}); \
                 check that the channel's secret is the one it was given",
                a.status
            ),
        ),
        408 | 429 | 500..=599 => {
            let why = match a.status {
                408 => "it gave up waiting for the request".to_string(),
                429 => "it asks wharf to slow down".to_string(),
                _ => format!("it failed ({said})"),
            };
            let retry_at = a.retry_after.as_deref().and_then(|v| retry_after(v, now));
            Level::Unavailable(NoAnswer {
                error: BatchError {
                    exchange: Exchange::HttpError,
                    message: format!(
                        "the affiliate system of channel {channel} answered HTTP {}: {why}; sent again {}",
                        a.status,
                        if retry_at.is_some() {
                            "when it asks (Retry-After)"
                        } else {
                            "later"
                        }
                    ),
                    http_status: Some(a.status),
                    body: Some(a.body.clone()),
                },
                retry_at,
                breaker: a.status >= 500,
            })
        }
        s => Level::Refused(
            s,
            format!(
                "the affiliate system of channel {channel} refused the push for good (HTTP {s}: {said})"
            ),
        ),
    }
}

/// What the answer to a push means.
pub fn push(reply: &Reply, channel: &str, timeout_secs: u64, now: NaiveDateTime) -> Verdict {
    match level(reply, channel, timeout_secs, now) {
        Level::Ok(202, body) => match ticket_of(body) {
            Some(t) => Verdict::Ticket(t),
            None => Verdict::Taken { stale: None },
        },
        Level::Ok(..) => Verdict::Taken { stale: None },
        Level::Conflict(body) => Verdict::Taken {
            stale: Some(format!(
                "the affiliate system already has a newer update of this order ({}); nothing to send",
                message_of(body)
            )),
        },
        Level::Refused(_, why) => Verdict::Refused(why),
        Level::Unavailable(n) => Verdict::NotAnswered(n),
    }
}

/// What the answer to a ticket read (`GET /tickets/{ticket}`) means.
pub fn ticket(
    reply: &Reply,
    channel: &str,
    ticket: &str,
    timeout_secs: u64,
    now: NaiveDateTime,
) -> TicketVerdict {
    match level(reply, channel, timeout_secs, now) {
        Level::Ok(_, body) => ticket_state(body, channel, ticket),
        Level::Refused(404, _) => TicketVerdict::Unknown,
        Level::Refused(_, why) => TicketVerdict::Refused(why),
        Level::Conflict(body) => TicketVerdict::Refused(format!(
            "the affiliate system of channel {channel} answered HTTP 409 to reading ticket {ticket}: {}",
            message_of(body)
        )),
        Level::Unavailable(n) => TicketVerdict::NotAnswered(n),
    }
}

/// `{"state": "pending" | "done" | "failed", "message": …}`.
fn ticket_state(body: &str, channel: &str, ticket: &str) -> TicketVerdict {
    let v: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let state = v.as_ref().and_then(|v| v["state"].as_str());
    match state {
        Some("done") => TicketVerdict::Done,
        Some("pending") => TicketVerdict::Pending,
        Some("failed") => TicketVerdict::Failed(format!(
            "the affiliate system of channel {channel} could not apply the push (ticket {ticket} failed: {}); \
             sent again",
            message_of(body)
        )),
        _ => TicketVerdict::NotAnswered(NoAnswer {
            error: BatchError {
                exchange: Exchange::BadAnswer,
                message: format!(
                    "the affiliate system of channel {channel} answered the read of ticket {ticket} \
                     without a state pending, done or failed ({}); read again later",
                    excerpt(body)
                ),
                http_status: Some(200),
                body: Some(body.to_string()),
            },
            retry_at: None,
            breaker: true,
        }),
    }
}

/// The ticket of a 202 answer: `{"ticket": "…"}`.
fn ticket_of(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let t = v["ticket"].as_str()?.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// What the receiver said: the `message` (or `error`, `detail`, `title`) of a JSON body, else the
/// body's start.
pub fn message_of(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        for field in ["message", "error", "detail", "title"] {
            if let Some(m) = v[field].as_str().filter(|m| !m.trim().is_empty()) {
                return excerpt(m);
            }
        }
    }
    match excerpt(body) {
        e if e.is_empty() => "no message".to_string(),
        e => e,
    }
}

/// The first 200 characters of `text`, on one line.
fn excerpt(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// When a `Retry-After` value (seconds, or an HTTP date) says to call again; never before `now`.
pub fn retry_after(value: &str, now: NaiveDateTime) -> Option<NaiveDateTime> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u32>() {
        return Some(now + TimeDelta::seconds(i64::from(secs)));
    }
    // HTTP dates (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`) are RFC 2822 dates.
    chrono::DateTime::parse_from_rfc2822(v)
        .ok()
        .map(|t| t.naive_utc().max(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Reply {
        Ok(Answer {
            status,
            retry_after: None,
            body: body.into(),
        })
    }

    fn now() -> NaiveDateTime {
        chrono::DateTime::parse_from_rfc3339("2024-05-01T10:00:00Z")
            .unwrap()
            .naive_utc()
    }

    #[test]
    fn successes_tickets_and_stale_updates_are_taken() {
        assert!(matches!(
            push(&answer(200, "{}"), "aff", 30, now()),
            Verdict::Taken { stale: None }
        ));
        assert!(matches!(
            push(&answer(204, ""), "aff", 30, now()),
            Verdict::Taken { stale: None }
        ));
        assert!(matches!(
            push(&answer(202, r#"{"ticket":"tk_1"}"#), "aff", 30, now()),
            Verdict::Ticket(t) if t == "tk_1"
        ));
        // A 202 without a ticket is taken as it stands.
        assert!(matches!(
            push(&answer(202, "accepted"), "aff", 30, now()),
            Verdict::Taken { stale: None }
        ));
        match push(
            &answer(409, r#"{"message":"sequence 2 is older than 3"}"#),
            "aff",
            30,
            now(),
        ) {
            Verdict::Taken { stale: Some(why) } => assert!(why.contains("older than 3"), "{why}"),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn other_client_errors_are_refusals_with_the_receivers_words() {
        match push(
            &answer(400, r#"{"message":"unknown order"}"#),
            "aff",
            30,
            now(),
        ) {
            Verdict::Refused(why) => {
                assert!(why.contains("HTTP 400: unknown order"), "{why}")
            }
            v => panic!("{v:?}"),
        }
        match push(&answer(401, "bad signature"), "aff", 30, now()) {
            Verdict::Refused(why) => {
                assert!(why.contains("signature"), "{why}");
                assert!(why.contains("secret"), "{why}");
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn unavailable_answers_are_retried_and_only_server_errors_count_on_the_breaker() {
        for (status, breaker) in [(500, true), (503, true), (429, false), (408, false)] {
            match push(&answer(status, ""), "aff", 30, now()) {
                Verdict::NotAnswered(n) => {
                    assert_eq!(n.breaker, breaker, "{status}");
                    assert_eq!(n.error.http_status, Some(status));
                }
                v => panic!("{status}: {v:?}"),
            }
        }
        let slow = Ok(Answer {
            status: 429,
            retry_after: Some("7".into()),
            body: String::new(),
        });
        match push(&slow, "aff", 30, now()) {
            Verdict::NotAnswered(n) => {
                assert_eq!(n.retry_at, Some(now() + TimeDelta::seconds(7)));
                assert!(
                    n.error.message.contains("Retry-After"),
                    "{}",
                    n.error.message
                );
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(
            retry_after("120", now()),
            Some(now() + TimeDelta::seconds(120))
        );
        assert_eq!(
            retry_after("Wed, 01 May 2024 10:01:30 GMT", now()),
            Some(now() + TimeDelta::seconds(90))
        );
        // A date already past means now.
        assert_eq!(
            retry_after("Wed, 01 May 2024 09:00:00 GMT", now()),
            Some(now())
        );
        assert_eq!(retry_after("soon", now()), None);
        assert_eq!(retry_after("-5", now()), None);
    }

    #[test]
    fn ticket_reads() {
        let read = |status, body| ticket(&answer(status, body), "aff", "tk_1", 30, now());
        assert!(matches!(
            read(200, r#"{"state":"done"}"#),
            TicketVerdict::Done
        ));
        assert!(matches!(
            read(200, r#"{"state":"pending"}"#),
            TicketVerdict::Pending
        ));
        match read(200, r#"{"state":"failed","message":"stock mismatch"}"#) {
            TicketVerdict::Failed(why) => assert!(why.contains("stock mismatch"), "{why}"),
            v => panic!("{v:?}"),
        }
        assert!(matches!(read(404, ""), TicketVerdict::Unknown));
        assert!(matches!(
            read(200, "<html>"),
            TicketVerdict::NotAnswered(NoAnswer { breaker: true, .. })
        ));
        assert!(matches!(read(502, ""), TicketVerdict::NotAnswered(_)));
    }

    #[test]
    fn messages_come_from_json_fields_or_the_bodys_start() {
        assert_eq!(message_of(r#"{"error":"nope"}"#), "nope");
        assert_eq!(message_of("  plain\n text "), "plain text");
        assert_eq!(message_of(""), "no message");
        assert_eq!(message_of(&"x".repeat(300)).chars().count(), 201);
    }
}
