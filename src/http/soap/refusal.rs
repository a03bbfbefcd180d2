//! Refused SOAP messages: who sent them, recording the refusal (always for an authenticated
//! caller, counted and capped for anonymous ones) and the fault that answers it.

use super::*;

/// Who sent a refused message.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sender<'a> {
    /// The TCP peer's address.
    pub(super) peer: Option<std::net::IpAddr>,
    /// The authenticated caller, or the user name a refused login claimed.
    pub(super) caller: Option<&'a str>,
    /// Whether `caller` is authenticated: only then is the refusal always stored, with the large
    /// excerpt.
    pub(super) authenticated: bool,
}

/// A refusal to answer and record: who sent it, what kind of refusal it is (the unit the limit of
/// stored anonymous refusals counts) and the operation, when known.
#[derive(Clone, Copy, Debug)]
pub(super) struct Refusal<'a> {
    pub(super) sender: Sender<'a>,
    pub(super) kind: &'static str,
    /// wharf's word for the operation (a constant: it becomes a metric label).
    pub(super) operation: Option<&'static str>,
}

impl<'a> Refusal<'a> {
    pub(super) fn new(
        sender: Sender<'a>,
        kind: &'static str,
        operation: Option<&'static str>,
    ) -> Refusal<'a> {
        Refusal {
            sender,
            kind,
            operation,
        }
    }
}

/// How much of a refused body to store, or `None` when the refusal is only counted: an
/// authenticated caller's refusals are all stored (64 KiB); others' are limited per kind and
/// client address and keep `soap.anonymous_excerpt_bytes`.
pub(super) fn excerpt_bytes(state: &AppState, refusal: Refusal<'_>) -> Option<usize> {
    if refusal.sender.authenticated {
        return Some(queue::EXCERPT_BYTES);
    }
    match state.refusals.admit(refusal.kind, refusal.sender.peer) {
        queue::refusals::Verdict::Store => Some(state.settings.soap.anonymous_excerpt_bytes),
        queue::refusals::Verdict::Count => None,
    }
}

/// Answers with `fault` and records the refusal (taking a connection for it when it is stored).
///
/// These refusals come before the caller is known (the body is not a usable envelope, names no
/// known operation, or a field of an operation without a caller is invalid). When the message
/// carries a credential — a `sessionId` element the lossy scan finds, or a Bearer token — it is
/// looked up (one indexed read), so the warehouse's own broken messages are stored like its other
/// refusals.
pub(super) fn reject(
    state: &AppState,
    version: SoapVersion,
    refusal: Refusal<'_>,
    fault: Fault,
    body: &[u8],
    authorization: Option<&str>,
) -> Reply {
    let sessions = soap::mask::find_lossy(body);
    let bearer = authorization
        .and_then(|h| h.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let mut conn = None;
    let mut identified = None;
    if !sessions.is_empty() || bearer.is_some() {
        match state.pool.get() {
            Ok(mut c) => {
                identified = identify(state, &mut c, body, &sessions, bearer);
                conn = Some(c);
            }
            Err(e) => {
                tracing::error!(error = %e, "no database connection to look up a refused message's sender")
            }
        }
    }
    let refusal = match identified.as_deref() {
        Some(caller) => Refusal {
            sender: Sender {
                caller: Some(caller),
                authenticated: true,
                ..refusal.sender
            },
            ..refusal
        },
        None => refusal,
    };
    let Some(excerpt) = excerpt_bytes(state, refusal) else {
        return counted(version, refusal, fault);
    };
    match conn.map_or_else(|| state.pool.get(), Ok) {
        Ok(mut conn) => record(&mut conn, version, refusal, fault, body, excerpt),
        Err(e) => {
            tracing::error!(error = %e, reason = %Escaped(&fault.message), "could not record a rejected SOAP message");
            Reply::refused(version, &fault, &refusal)
        }
    }
}

/// The API user a refused message's credential belongs to, if it is a live one: the first two
/// credential elements of a plausible length are tried as session ids, then the Bearer token.
pub(super) fn identify(
    state: &AppState,
    conn: &mut crate::db::DbConnection,
    body: &[u8],
    spans: &[std::ops::Range<usize>],
    bearer: Option<&str>,
) -> Option<String> {
    let lifetimes = auth::Lifetimes::of(&state.settings.soap);
    let sessions = spans
        .iter()
        .filter_map(|span| std::str::from_utf8(body.get(span.clone())?).ok())
        .map(str::trim)
        .filter(|s| (8..=256).contains(&s.len()))
        .take(2);
    for session in sessions {
        if let Ok(user) = auth::check_session(conn, session, lifetimes) {
            return Some(user);
        }
    }
    bearer
        .filter(|t| !t.is_empty() && t.len() <= 512)
        .and_then(|t| auth::check_access_token(conn, t, lifetimes).ok())
}

/// Answers with `fault` and records the refusal.
pub(super) fn reject_with(
    state: &AppState,
    conn: &mut crate::db::DbConnection,
    version: SoapVersion,
    refusal: Refusal<'_>,
    fault: Fault,
    body: &[u8],
) -> Reply {
    match excerpt_bytes(state, refusal) {
        Some(excerpt) => record(conn, version, refusal, fault, body, excerpt),
        None => counted(version, refusal, fault),
    }
}

/// A refusal over the limit: answered, counted, logged only at debug level (a flood must not fill
/// the log either).
fn counted(version: SoapVersion, refusal: Refusal<'_>, fault: Fault) -> Reply {
    tracing::debug!(client = ?refusal.sender.peer, kind = refusal.kind,
        reason = %Escaped(&fault.message), "SOAP message rejected (counted, not stored)");
    Reply::refused(version, &fault, &refusal)
}

/// Logs a refusal (input values escaped: a claimed user name may hold line breaks or terminal
/// escapes meant to forge log lines) and stores it with `excerpt` bytes of its body.
fn record(
    conn: &mut crate::db::DbConnection,
    version: SoapVersion,
    refusal: Refusal<'_>,
    fault: Fault,
    body: &[u8],
    excerpt: usize,
) -> Reply {
    let caller = refusal.sender.caller;
    let operation = refusal.operation;
    tracing::warn!(caller = %Escaped(caller.unwrap_or("-")),
        operation = %Escaped(operation.unwrap_or("-")), client = ?refusal.sender.peer,
        reason = %Escaped(&fault.message), "SOAP message rejected");
    if let Err(e) = queue::record_rejection(conn, caller, operation, &fault.message, body, excerpt)
    {
        tracing::error!(error = %e, "could not record a rejected SOAP message");
    }
    Reply::refused(version, &fault, &refusal)
}
