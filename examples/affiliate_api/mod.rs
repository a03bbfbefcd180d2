//! An affiliate system's HTTP API simulator: the receiving side of wharf's `kind = "http"` channel
//! (see `wharf::channels::affiliate` for the contract).
//!
//! It serves, under [`AffiliateSim::base_url`]:
//!
//! * `POST /orders/{reference}/status`: a status change (`status`, `sequence` required);
//! * `PUT /orders/{reference}`: the whole order (`lines`, `sequence` required);
//! * `POST /orders/{reference}/split`: a split (`children`, `sequence` required);
//! * `GET /tickets/{ticket}`: a ticket's `state` (`pending`, `done`, `failed`).
//!
//! Like a careful receiver it checks, in this order, the Standard Webhooks signature of every
//! request (`webhook-id`, `webhook-timestamp` within five minutes, `webhook-signature` by the
//! endpoint's secret; 401 with the reason otherwise), the `Idempotency-Key` of every change (400
//! without one; a key it has taken before gets the first answer again and changes nothing), the
//! body (400 when it is not the JSON a route needs), and the `sequence`: it keeps the highest
//! applied per order and answers 409 to an update that is not newer. A key whose change was not
//! taken (a refusal, a stale update, a failed ticket) is forgotten, so the same key sent again is
//! decided afresh. [`Behaviour`] makes it answer 500, 429 with `Retry-After`, 400 for chosen
//! orders, 202 with tickets, or slowly (the change is applied and its answer decided at once; only
//! the delivery is late).
//!
//! Include it with `#[path = "../../examples/affiliate_api/mod.rs"] mod affiliate_api;`.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::http::{Method, StatusCode, header};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

#[cfg(test)]
mod tests;

/// How far a `webhook-timestamp` may be from the simulator's clock, in seconds (the Standard
/// Webhooks libraries' default tolerance).
pub const TOLERANCE_SECS: i64 = 300;

/// Largest request body accepted.
const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// A running simulator. Dropping it stops the server too; [`AffiliateSim::stop`] also waits.
pub struct AffiliateSim {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    handle: ServerHandle,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// How the simulator answers; replace it with [`AffiliateSim::set_behaviour`]. The switches apply
/// in this order: `http_500`, `http_429` (both before the signature is read, like a proxy in
/// front), then the checks above, then `refuse`, then `tickets`; `slow` delays whatever the
/// answer is.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// The next N requests are answered 500.
    pub http_500: u32,
    /// The next N requests are answered 429, with `retry_after` as their `Retry-After`.
    pub http_429: u32,
    /// The `Retry-After` of the 429 answers (seconds or an HTTP date), if any.
    pub retry_after: Option<String>,
    /// Changes of these orders are refused with 400 ("unknown order").
    pub refuse: HashSet<String>,
    /// Changes are taken on with 202 and a ticket instead of applied at once.
    pub tickets: Option<TicketPlan>,
    /// The next N answers are delivered `delay` late (after the change is applied).
    pub slow: u32,
    /// How late.
    pub delay: Duration,
}

/// How tickets go.
#[derive(Clone, Debug, Default)]
pub struct TicketPlan {
    /// Reads that find a ticket still `pending` before it settles.
    pub pending_reads: u32,
    /// When set, tickets fail with this message (the change is not applied, its key forgotten);
    /// else they succeed (the change is applied).
    pub fail: Option<String>,
}

/// Which resource a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `POST /orders/{reference}/status`.
    Status,
    /// `PUT /orders/{reference}`.
    Edit,
    /// `POST /orders/{reference}/split`.
    Split,
    /// `GET /tickets/{ticket}`.
    Ticket,
}

/// One HTTP request received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// `GET`, `POST`, `PUT`.
    pub method: String,
    /// The path as sent (percent-encoded).
    pub path: String,
    /// The resource, when the path is one.
    pub route: Option<Route>,
    /// The order number (or ticket id) of the path, decoded.
    pub reference: Option<String>,
    /// The `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
    /// The `webhook-id` header.
    pub webhook_id: Option<String>,
    /// Whether the Standard Webhooks signature verified.
    pub signed: bool,
    /// The body.
    pub body: String,
    /// The body as JSON, when it is.
    pub json: Option<Value>,
    /// The status answered.
    pub status: u16,
    /// The body answered.
    pub answer: Value,
    /// Whether the answer was the stored one of an earlier request with the same key.
    pub replayed: bool,
    /// When its body had been read.
    pub received_at: Instant,
}

impl Recorded {
    /// The body's `sequence`, if any.
    pub fn sequence(&self) -> Option<i64> {
        self.json.as_ref().and_then(|j| j["sequence"].as_i64())
    }
}

/// A change the simulator applied.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The order number.
    pub reference: String,
    /// What kind of change.
    pub route: Route,
    /// Its sequence.
    pub sequence: i64,
    /// The body.
    pub body: Value,
    /// The idempotency key it came with.
    pub key: String,
    /// When it was received.
    pub received_at: Instant,
}

impl AffiliateSim {
    /// Starts on 127.0.0.1 (a free port) verifying signatures with `secret` (`whsec_<base64>`).
    pub async fn start(secret: &str) -> AffiliateSim {
        Self::start_on(0, secret).await
    }

    /// Starts on 127.0.0.1:`port` (0 picks a free one).
    pub async fn start_on(port: u16, secret: &str) -> AffiliateSim {
        let key = secret
            .strip_prefix("whsec_")
            .and_then(|b64| STANDARD.decode(b64).ok())
            .unwrap_or_else(|| panic!("the simulator's secret must be whsec_<base64>"));
        let state = Arc::new(Mutex::new(State::new(&key)));
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(BODY_LIMIT))
                .default_service(web::to(handle))
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("the affiliate simulator cannot bind 127.0.0.1:{port}: {e}"));
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        let task = tokio::spawn(server);
        AffiliateSim {
            addr,
            state,
            handle,
            task: Some(task),
        }
    }

    /// The base URL to configure as the channel's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the behaviour for the requests that follow.
    pub fn set_behaviour(&self, b: Behaviour) {
        self.lock().behaviour = b;
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Every change applied, in order.
    pub fn applied(&self) -> Vec<Applied> {
        self.lock().applied.clone()
    }

    /// The changes applied to order `reference`, in order.
    pub fn applied_to(&self, reference: &str) -> Vec<Applied> {
        self.applied()
            .into_iter()
            .filter(|a| a.reference == reference)
            .collect()
    }

    /// Stops the server and waits until it is down.
    pub async fn stop(mut self) {
        self.handle.stop(false).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Drop for AffiliateSim {
    fn drop(&mut self) {
        if self.task.is_some() {
            drop(self.handle.stop(false));
        }
    }
}

/// Locks the state, ignoring poisoning (a panicking test must not hide the others' results).
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An answer, before it becomes an HTTP response.
#[derive(Clone, Debug)]
struct Reply {
    status: u16,
    body: Value,
    retry_after: Option<String>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            retry_after: None,
        }
    }

    fn message(status: u16, message: impl Into<String>) -> Reply {
        Reply::json(status, json!({ "message": message.into() }))
    }

    fn into_response(self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = HttpResponse::build(status);
        if let Some(v) = self.retry_after {
            resp.insert_header((header::RETRY_AFTER, v));
        }
        resp.content_type("application/json")
            .body(self.body.to_string())
    }
}

/// A change taken on with a ticket.
struct Ticket {
    key: String,
    change: Applied,
    pending_reads: u32,
    fail: Option<String>,
    /// The final state once read: `done` or `failed`.
    settled: Option<&'static str>,
}

/// Everything the affiliate system knows.
struct State {
    key: ring::hmac::Key,
    behaviour: Behaviour,
    requests: Vec<Recorded>,
    applied: Vec<Applied>,
    /// The answer given to each key whose change was taken.
    answers: HashMap<String, Reply>,
    /// The highest sequence applied per order.
    sequences: HashMap<String, i64>,
    tickets: HashMap<String, Ticket>,
}

/// Serves every request: decides the answer (applying its change) and records the request, then
/// delivers the answer (late, when slow).
async fn handle(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    let received_at = Instant::now();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (route, reference) = route(req.method(), req.path());
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let (reply, delay) = {
        let mut st = lock(&state);
        let incoming = Incoming {
            route,
            reference: reference.as_deref(),
            key: header("idempotency-key"),
            json: json.as_ref(),
            received_at,
        };
        let signed = st.verify(
            header("webhook-id").as_deref(),
            header("webhook-timestamp").as_deref(),
            header("webhook-signature").as_deref(),
            &body,
        );
        let (reply, replayed) = st.respond(&incoming, signed.as_ref().err());
        st.requests.push(Recorded {
            method: req.method().to_string(),
            path: req.path().to_owned(),
            route,
            reference: reference.clone(),
            idempotency_key: incoming.key.clone(),
            webhook_id: header("webhook-id"),
            signed: signed.is_ok(),
            body: String::from_utf8_lossy(&body).into_owned(),
            json: json.clone(),
            status: reply.status,
            answer: reply.body.clone(),
            replayed,
            received_at,
        });
        (reply, st.behaviour.take_slow())
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    reply.into_response()
}

/// The route and decoded reference of a path.
fn route(method: &Method, path: &str) -> (Option<Route>, Option<String>) {
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    let route = match (method, parts.as_slice()) {
        (&Method::POST, ["orders", _, "status"]) => Route::Status,
        (&Method::PUT, ["orders", _]) => Route::Edit,
        (&Method::POST, ["orders", _, "split"]) => Route::Split,
        (&Method::GET, ["tickets", _]) => Route::Ticket,
        _ => return (None, None),
    };
    (Some(route), segments.get(1).cloned())
}

/// One request as [`State::respond`] reads it.
struct Incoming<'a> {
    route: Option<Route>,
    reference: Option<&'a str>,
    key: Option<String>,
    json: Option<&'a Value>,
    received_at: Instant,
}

impl Behaviour {
    fn take_slow(&mut self) -> Option<Duration> {
        (self.slow > 0).then(|| {
            self.slow -= 1;
            self.delay
        })
    }
}

impl State {
    fn new(key: &[u8]) -> State {
        State {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
            behaviour: Behaviour::default(),
            requests: Vec::new(),
            applied: Vec::new(),
            answers: HashMap::new(),
            sequences: HashMap::new(),
            tickets: HashMap::new(),
        }
    }

    /// Checks the Standard Webhooks headers: `Err` says why they do not verify.
    fn verify(
        &self,
        id: Option<&str>,
        timestamp: Option<&str>,
        signatures: Option<&str>,
        body: &[u8],
    ) -> Result<(), String> {
        let (Some(id), Some(timestamp), Some(signatures)) = (id, timestamp, signatures) else {
            return Err(
                "webhook-id, webhook-timestamp and webhook-signature are all required".into(),
            );
        };
        let ts: i64 = timestamp
            .parse()
            .map_err(|_| format!("webhook-timestamp {timestamp:?} is not unix seconds"))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if (now - ts).abs() > TOLERANCE_SECS {
            return Err(format!(
                "webhook-timestamp {ts} is more than {TOLERANCE_SECS} s from now ({now}): too old \
                 or from the future"
            ));
        }
        let mut signed = format!("{id}.{ts}.").into_bytes();
        signed.extend_from_slice(body);
        let matches = signatures.split(' ').any(|s| {
            s.strip_prefix("v1,")
                .and_then(|b64| STANDARD.decode(b64).ok())
                .is_some_and(|sig| ring::hmac::verify(&self.key, &signed, &sig).is_ok())
        });
        if matches {
            Ok(())
        } else {
            Err("no v1 signature in webhook-signature matches this endpoint's secret".into())
        }
    }

    /// Decides the answer to one request, applying its change. Returns it, and whether it is the
    /// stored answer of the request's key.
    fn respond(&mut self, r: &Incoming<'_>, unsigned: Option<&String>) -> (Reply, bool) {
        let b = &mut self.behaviour;
        if b.http_500 > 0 {
            b.http_500 -= 1;
            return (Reply::message(500, "simulated failure"), false);
        }
        if b.http_429 > 0 {
            b.http_429 -= 1;
            let mut reply = Reply::message(429, "too many requests");
            reply.retry_after = b.retry_after.clone();
            return (reply, false);
        }
        let (Some(route), Some(reference)) = (r.route, r.reference) else {
            return (Reply::message(404, "no such resource"), false);
        };
        if let Some(why) = unsigned {
            return (Reply::message(401, why.clone()), false);
        }
        if route == Route::Ticket {
            return (self.read_ticket(reference), false);
        }
        let Some(key) = r.key.clone() else {
            return (Reply::message(400, "Idempotency-Key is required"), false);
        };
        if let Some(stored) = self.answers.get(&key) {
            return (stored.clone(), true);
        }
        let reply = self.change(route, reference, &key, r);
        if (200..300).contains(&reply.status) {
            self.answers.insert(key, reply.clone());
        }
        (reply, false)
    }

    /// A change not seen before: checked, then applied (or taken on with a ticket).
    fn change(&mut self, route: Route, reference: &str, key: &str, r: &Incoming<'_>) -> Reply {
        let Some(body) = r.json.filter(|j| j.is_object()) else {
            return Reply::message(400, "the body is not a JSON object");
        };
        let Some(sequence) = body["sequence"].as_i64() else {
            return Reply::message(400, "sequence (an integer) is required");
        };
        let required = match route {
            Route::Status => body["status"].is_string(),
            Route::Edit => body["lines"].is_array(),
            Route::Split => body["children"].is_array(),
            Route::Ticket => true,
        };
        if !required {
            return Reply::message(400, format!("the body lacks what {route:?} needs"));
        }
        if self.behaviour.refuse.contains(reference) {
            return Reply::message(400, format!("order {reference} is unknown here"));
        }
        if let Some(&newest) = self.sequences.get(reference)
            && sequence <= newest
        {
            return Reply::message(
                409,
                format!("sequence {sequence} is not newer than {newest}, which is applied"),
            );
        }
        let change = Applied {
            reference: reference.to_string(),
            route,
            sequence,
            body: body.clone(),
            key: key.to_string(),
            received_at: r.received_at,
        };
        match self.behaviour.tickets.clone() {
            Some(plan) => {
                let id = format!("tk_{}", self.tickets.len() + 1);
                self.tickets.insert(
                    id.clone(),
                    Ticket {
                        key: key.to_string(),
                        change,
                        pending_reads: plan.pending_reads,
                        fail: plan.fail,
                        settled: None,
                    },
                );
                Reply::json(202, json!({ "ticket": id }))
            }
            None => {
                self.apply(change);
                let status = if route == Route::Split { 201 } else { 200 };
                Reply::json(
                    status,
                    json!({ "reference": reference, "sequence": sequence }),
                )
            }
        }
    }

    /// Applies a change, unless a newer one of its order was applied meanwhile (a ticket that
    /// settled late): a receiver keeps the newest.
    fn apply(&mut self, change: Applied) {
        let newest = self.sequences.entry(change.reference.clone()).or_insert(0);
        if change.sequence > *newest {
            *newest = change.sequence;
            self.applied.push(change);
        }
    }

    /// A ticket read: pending for its first reads, then done (the change applied) or failed (its
    /// key forgotten, so the change sent again is taken afresh).
    fn read_ticket(&mut self, id: &str) -> Reply {
        let Some(t) = self.tickets.get_mut(id) else {
            return Reply::message(404, format!("no ticket {id}"));
        };
        if t.settled.is_none() && t.pending_reads > 0 {
            t.pending_reads -= 1;
            return Reply::json(200, json!({ "ticket": id, "state": "pending" }));
        }
        if t.settled.is_none() {
            if t.fail.is_some() {
                t.settled = Some("failed");
                let key = t.key.clone();
                self.answers.remove(&key);
            } else {
                t.settled = Some("done");
                let change = t.change.clone();
                self.apply(change);
            }
        }
        let Some(t) = self.tickets.get(id) else {
            return Reply::message(404, format!("no ticket {id}"));
        };
        Reply::json(
            200,
            json!({ "ticket": id, "state": t.settled, "message": t.fail }),
        )
    }
}
