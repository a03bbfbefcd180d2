//! Request bodies read under limits that slow and stalled clients cannot outlast: a deadline on the
//! whole body, a minimum rate, a size limit, and one budget for the bytes of every body the process
//! holds at once.
//!
//! actix's `web::Bytes` extractor has only the size limit: a body dripped at one byte a second, or
//! stalled after three bytes, holds its connection forever, and a hundred bodies stalled just short
//! of the limit hold a gigabyte. Here the buffer grows only as bytes arrive, and every byte held is
//! counted against [`BodyGate`]'s budget before it is allocated.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, MessageBody};

use actix_web::dev::{self, Decompress};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentEncoding, ContentType};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use futures_core::Stream;
use tokio::time::Instant;

use crate::config::HttpSettings;

/// How long each minimum-rate window lasts: a body must bring `body_min_rate` × 5 bytes in every
/// 5 s it is arriving. Long enough that a client pausing for a TCP retransmission is not cut off.
pub const RATE_WINDOW: Duration = Duration::from_secs(5);

/// How long a client refused for the budget is told to wait (`Retry-After`, seconds).
pub const RETRY_AFTER_SECS: u64 = 5;

/// How much of a body over the size limit is kept for the record of its rejection.
pub const EXCERPT: usize = 64 * 1024;

/// The process-wide limits on request bodies (one per server, shared by every worker thread).
#[derive(Debug)]
pub struct BodyGate {
    budget: usize,
    held: AtomicUsize,
    timeout: Duration,
    min_rate: u64,
}

impl BodyGate {
    /// A gate with the settings' budget, deadline and minimum rate.
    pub fn new(settings: &HttpSettings) -> BodyGate {
        BodyGate {
            budget: settings.body_budget,
            held: AtomicUsize::new(0),
            timeout: Duration::from_secs(settings.body_timeout_secs.max(1)),
            min_rate: settings.body_min_rate,
        }
    }

    /// Bytes of bodies held right now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes of the budget, or nothing when they do not fit.
    fn try_take(&self, n: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(n).filter(|&after| after <= self.budget)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Budget held by one body; given back when it is dropped.
struct Held {
    gate: web::Data<BodyGate>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gate.give_back(self.bytes);
    }
}

/// A whole request body, holding its share of the budget until dropped.
pub struct Body {
    data: Vec<u8>,
    _held: Held,
}

impl std::ops::Deref for Body {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.data
    }
}

/// Why a body was not read whole. Every kind but [`BodyError::Broken`] leaves bytes unread, so the
/// answer closes the connection (see [`Unread`]).
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Larger than the endpoint accepts.
    #[error("the body is larger than the {limit} bytes accepted here; send less")]
    TooLarge {
        /// The endpoint's limit.
        limit: usize,
        /// The first bytes received (at most [`EXCERPT`]), for the record.
        excerpt: Vec<u8>,
    },
    /// Not whole within `http.body_timeout_secs`.
    #[error("the body did not arrive within {0} s; connection closed")]
    Deadline(u64),
    /// Slower than `http.body_min_rate`.
    #[error(
        "the body arrived slower than {0} bytes/s (fewer than {least} bytes in {secs} s); connection \
         closed",
        least = .0 * RATE_WINDOW.as_secs(),
        secs = RATE_WINDOW.as_secs()
    )]
    TooSlow(u64),
    /// The budget for bodies in flight is spent.
    #[error(
        "wharf is receiving too many request bodies at once; nothing was stored, send it again in \
         {RETRY_AFTER_SECS} s"
    )]
    Busy,
    /// The client broke the body off, or its encoding is broken.
    #[error("the body could not be read: {0}")]
    Broken(String),
    /// A `Content-Encoding` other than identity: a few KiB of gzip, zstd or brotli can unpack to
    /// gigabytes before any limit could see them, so bodies are accepted uncompressed only.
    #[error("Content-Encoding {0:?} is not accepted; send the body uncompressed")]
    Encoded(String),
}

impl BodyError {
    /// The status to answer.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Deadline(_) | BodyError::TooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            BodyError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            BodyError::Broken(_) => StatusCode::BAD_REQUEST,
            BodyError::Encoded(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }

    /// Sets the headers every answer about this error needs: `Connection: close` (the rest of the
    /// body is not read, so the connection cannot carry another request) and, when the budget is
    /// spent, `Retry-After`.
    pub fn apply_headers(&self, resp: &mut HttpResponse) {
        resp.head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
        if matches!(self, BodyError::Busy) {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(RETRY_AFTER_SECS),
            );
        }
    }

    fn log(&self, req: &HttpRequest) {
        let peer = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        match self {
            BodyError::Broken(_) | BodyError::Encoded(_) => {
                tracing::info!(peer, path = ?req.path(), reason = %self, "request body not read");
            }
            _ => tracing::warn!(peer, path = ?req.path(), reason = %self, "request body refused"),
        }
    }
}

/// The part of a body that was not read, kept in the body of the answer until actix has sent it.
/// actix decides when an answer is sent whether to close the connection: while the request body
/// is still held it closes; once the request body is dropped it *drains* a chunked one to keep the
/// connection alive, for as long as the client keeps sending, deadline or not.
pub struct Unread(#[allow(dead_code)] Decompress<dev::Payload>);

/// A body that was not read whole: why, and what was left unread.
pub struct BodyRefusal {
    /// Why.
    pub error: BodyError,
    unread: RefCell<Option<Unread>>,
}

impl BodyRefusal {
    /// The body of the answer: `bytes`, holding what was left unread until they are sent.
    pub fn answer_body(&self, bytes: impl Into<web::Bytes>) -> HoldingBody {
        let bytes = bytes.into();
        HoldingBody {
            size: bytes.len() as u64,
            bytes: Some(bytes),
            _unread: self.unread.borrow_mut().take(),
        }
    }
}

/// An answer's bytes, and the request body left unread (see [`Unread`]).
pub struct HoldingBody {
    size: u64,
    bytes: Option<web::Bytes>,
    _unread: Option<Unread>,
}

impl MessageBody for HoldingBody {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.size)
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<web::Bytes, Self::Error>>> {
        Poll::Ready(self.get_mut().bytes.take().map(Ok))
    }
}

/// A body that sends `body` and holds `keep` until it is dropped: the storefront API's problem JSON
/// replacing an answer whose body holds an unread request body.
pub struct Alongside<A> {
    body: A,
    _keep: Box<dyn std::any::Any>,
}

impl<A> Alongside<A> {
    /// `body`, holding `keep`.
    pub fn new(body: A, keep: impl std::any::Any) -> Alongside<A> {
        Alongside {
            body,
            _keep: Box::new(keep),
        }
    }
}

impl<A: MessageBody + Unpin> MessageBody for Alongside<A> {
    type Error = A::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<web::Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}

impl std::fmt::Debug for BodyRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::fmt::Display for BodyRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// The plain answer; the storefront API turns it into problem JSON, SOAP endpoints answer a fault.
impl ResponseError for BodyRefusal {
    fn status_code(&self) -> StatusCode {
        self.error.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.error.status())
            .content_type(ContentType::plaintext())
            .body(self.answer_body(self.error.to_string()));
        self.error.apply_headers(&mut resp);
        resp
    }
}

/// The largest body an endpoint accepts, in its `app_data`.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// Reads the body of `req` under the gate's limits and at most `limit` bytes. A compressed body
/// (`Content-Encoding` other than identity) is refused unread: actix's decoder unpacks a whole chunk
/// at once, past any limit.
pub async fn read(
    req: &HttpRequest,
    payload: dev::Payload,
    gate: web::Data<BodyGate>,
    limit: usize,
) -> Result<Body, BodyRefusal> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let stream = Decompress::new(payload, ContentEncoding::Identity);
    if let Some(encoding) = content_encoding(req) {
        let error = BodyError::Encoded(encoding);
        error.log(req);
        return Err(BodyRefusal {
            error,
            unread: RefCell::new(Some(Unread(stream))),
        });
    }
    let mut reader = Reader {
        stream,
        gate,
        limit,
        declared,
    };
    reader.run().await.map_err(|error| {
        error.log(req);
        BodyRefusal {
            error,
            unread: RefCell::new(Some(Unread(reader.stream))),
        }
    })
}

/// The request's `Content-Encoding`, unless it is absent or identity.
fn content_encoding(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::CONTENT_ENCODING)?;
    let value = String::from_utf8_lossy(value.as_bytes())
        .trim()
        .to_ascii_lowercase();
    (!value.is_empty() && value != "identity").then(|| value.chars().take(64).collect())
}

struct Reader {
    stream: Decompress<dev::Payload>,
    gate: web::Data<BodyGate>,
    limit: usize,
    declared: Option<usize>,
}

impl Reader {
    async fn run(&mut self) -> Result<Body, BodyError> {
        let started = Instant::now();
        let deadline = started + self.gate.timeout;
        let min_rate = self.gate.min_rate;
        let mut window_end = started + RATE_WINDOW;
        let mut window_bytes: u64 = 0;
        // A declared length over the limit is refused, but only after the first bytes are read
        // for the record of the refusal.
        let mut too_large = self.declared.is_some_and(|d| d > self.limit);
        let mut data: Vec<u8> = Vec::new();
        let mut held = Held {
            gate: self.gate.clone(),
            bytes: 0,
        };
        let slow = |too_large: bool, data: Vec<u8>, e: BodyError| {
            if too_large {
                BodyError::TooLarge {
                    limit: self.limit,
                    excerpt: data,
                }
            } else {
                e
            }
        };
        loop {
            let now = Instant::now();
            if now >= deadline {
                let e = BodyError::Deadline(self.gate.timeout.as_secs());
                return Err(slow(too_large, data, e));
            }
            if min_rate > 0 && now >= window_end {
                if window_bytes < min_rate.saturating_mul(RATE_WINDOW.as_secs()) {
                    return Err(slow(too_large, data, BodyError::TooSlow(min_rate)));
                }
                window_end = now + RATE_WINDOW;
                window_bytes = 0;
            }
            let wake = if min_rate > 0 {
                window_end.min(deadline)
            } else {
                deadline
            };
            let next = std::future::poll_fn(|cx| Pin::new(&mut self.stream).poll_next(cx));
            let chunk = match tokio::time::timeout_at(wake, next).await {
                Err(_) => continue,
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(BodyError::Broken(e.to_string())),
                Ok(Some(Ok(chunk))) => chunk,
            };
            window_bytes = window_bytes.saturating_add(chunk.len() as u64);
            if !too_large && data.len() + chunk.len() > self.limit {
                too_large = true;
                // The excerpt is all that is kept: give back the rest of the buffer now (the
                // budget share it was counted in is returned when this read ends).
                data.truncate(EXCERPT);
                data.shrink_to(EXCERPT);
            }
            if too_large {
                let room = EXCERPT.saturating_sub(data.len());
                data.extend_from_slice(&chunk[..room.min(chunk.len())]);
                if data.len() >= EXCERPT {
                    return Err(BodyError::TooLarge {
                        limit: self.limit,
                        excerpt: data,
                    });
                }
                continue;
            }
            self.grow(&mut data, &mut held, chunk.len())?;
            data.extend_from_slice(&chunk);
        }
        if too_large {
            return Err(BodyError::TooLarge {
                limit: self.limit,
                excerpt: data,
            });
        }
        Ok(Body { data, _held: held })
    }

    /// Makes room for `more` bytes, doubling the buffer (never past the declared length or the
    /// limit) and taking what it adds from the budget before allocating it.
    fn grow(&self, data: &mut Vec<u8>, held: &mut Held, more: usize) -> Result<(), BodyError> {
        let needed = data.len() + more;
        if needed <= data.capacity() {
            return Ok(());
        }
        let ceiling = self.declared.unwrap_or(self.limit).min(self.limit);
        let want = (data.capacity() * 2).max(8 * 1024).min(ceiling).max(needed);
        let before = data.capacity();
        if !self.gate.try_take(want - before) {
            return Err(BodyError::Busy);
        }
        held.bytes += want - before;
        data.reserve_exact(want - data.len());
        // The allocator may round up; what it gave is what is held.
        let extra = data.capacity().saturating_sub(want);
        if extra > 0 {
            self.gate.held.fetch_add(extra, Ordering::AcqRel);
            held.bytes += extra;
        }
        Ok(())
    }
}

/// Extracts the whole body under the gate's limits and the route's [`BodyLimit`] (the storefront
/// API's handlers use it in place of `web::Bytes`).
impl FromRequest for Body {
    type Error = BodyRefusal;
    type Future = Pin<Box<dyn Future<Output = Result<Body, BodyRefusal>>>>;

    fn from_request(req: &HttpRequest, payload: &mut dev::Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let gate = req
                .app_data::<web::Data<BodyGate>>()
                .cloned()
                .ok_or_else(|| BodyRefusal {
                    error: BodyError::Broken("no body gate configured".into()),
                    unread: RefCell::new(None),
                })?;
            let limit = req
                .app_data::<BodyLimit>()
                .map_or(crate::config::SoapSettings::default().max_body, |l| l.0);
            read(&req, payload, gate, limit).await
        })
    }
}

/// A gate shared by the server's workers.
pub fn gate(settings: &HttpSettings) -> web::Data<BodyGate> {
    web::Data::from(Arc::new(BodyGate::new(settings)))
}
