//! A Shopping Feed API simulator: the side of the Shopping Feed store API (v1) that wharf's
//! `shoppingfeed` channel talks to when it tells a marketplace that an order shipped, was
//! cancelled or was refunded.
//!
//! It serves, under [`ShoppingFeedSim::base_url`]:
//!
//! * `POST /v1/store/{storeId}/order/{operation}` (`ship`, `cancel`, `refund`): a batch of order
//!   operations, `{"order":[{"reference":…,"channelName":…, …}]}`, answered `202 Accepted` with the
//!   batch (`{"id": "<batch id>", "_links": {"ticket": {"href": …}}}`) and one ticket per order;
//! * `GET /v1/store/{storeId}/ticket?batchId=…`: the batch's tickets (a HAL page, the tickets in
//!   `_embedded.ticket`), each with its `state`: `scheduled`, then `running`, then its fate
//!   (`succeed` by default, or `failed`, or `canceled`); a ticket may also never appear.
//!
//! Requests need `Authorization: Bearer <token>` (401 otherwise) and the store id it was started
//! with (404 otherwise). Bodies must be `application/json` (415 otherwise) and are parsed strictly
//! as the API's order operations (unknown fields, a missing `reference` or `channelName`, no order
//! or more than 100: 400 with a problem document). Errors are problem documents
//! (`{"type","title","status","detail"}`) like the real API's. [`Behaviour`] sets each order's
//! ticket fates, how many reads a ticket spends before it settles, and whole-request faults
//! (HTTP 500, 429 with `Retry-After`, slow answers). Every request is recorded.
//!
//! Include it with `#[path = "../../examples/shoppingfeed_api/mod.rs"] mod shoppingfeed_api;`.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::http::{Method, StatusCode, header};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde::Deserialize;
use serde_json::{Value, json};

/// The order operations served.
pub const OPERATIONS: [&str; 3] = ["ship", "cancel", "refund"];

/// Most orders one request may carry (the API's limit).
pub const MAX_ORDERS: usize = 100;

/// Largest request body accepted.
const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// A running simulator. Dropping it stops the server too; [`ShoppingFeedSim::stop`] also waits.
pub struct ShoppingFeedSim {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    handle: ServerHandle,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// What becomes of one ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// `succeed`: the marketplace took the operation.
    Succeed,
    /// `failed`, with the API's reason.
    Fail(String),
    /// `canceled`: the API refused the operation for good, with its reason.
    Cancel(String),
    /// The ticket never appears in its batch.
    Vanish,
}

/// How the simulator answers; replace it with [`ShoppingFeedSim::set_behaviour`].
///
/// Whole-request switches apply in this order: `slow` (the answer is decided, and its effects
/// stored, at once; it is only delivered late), `http_500`, `too_many_requests`, then the request
/// is checked (token, store, route, body) and served.
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// Reads a ticket spends before it settles: the first reads `scheduled`, the next ones
    /// `running`, then its fate. 0: settled at the first read.
    pub reads_before_done: u32,
    /// Per order reference, the fates of its next tickets, in order (each push of the order takes
    /// the next one); once they are used up, its tickets succeed.
    pub fates: HashMap<String, VecDeque<Fate>>,
    /// The next N requests answer HTTP 500.
    pub http_500: u32,
    /// The next N requests answer HTTP 429 with `Retry-After: retry_after_secs`.
    pub too_many_requests: u32,
    /// The `Retry-After` of a 429, in seconds.
    pub retry_after_secs: u64,
    /// Delay every answer by this long.
    pub slow: Option<Duration>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            reads_before_done: 2,
            fates: HashMap::new(),
            http_500: 0,
            too_many_requests: 0,
            retry_after_secs: 1,
            slow: None,
        }
    }
}

impl Behaviour {
    /// Adds `fate` as the fate of the next ticket of order `reference` not given one yet.
    pub fn fate(mut self, reference: &str, fate: Fate) -> Behaviour {
        self.fates
            .entry(reference.to_owned())
            .or_default()
            .push_back(fate);
        self
    }
}

/// One HTTP request received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, e.g. `/v1/store/42/order/ship`.
    pub path: String,
    /// The decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// Whether it carried the right bearer token.
    pub authorized: bool,
    /// The body (lossily decoded as UTF-8).
    pub body: String,
    /// The HTTP status answered.
    pub status: u16,
    /// When its body had been read.
    pub received_at: Instant,
}

/// An accepted batch of order operations.
#[derive(Clone, Debug)]
pub struct Push {
    /// `ship`, `cancel` or `refund`.
    pub operation: String,
    /// The batch id answered.
    pub batch_id: String,
    /// The orders as sent (one JSON object each).
    pub orders: Vec<Value>,
    /// Their tickets: (order reference, ticket id, fate), in the order sent.
    pub tickets: Vec<(String, String, Fate)>,
    /// How many times its tickets were read.
    pub reads: u32,
}

impl Push {
    /// The order references it carried.
    pub fn references(&self) -> Vec<String> {
        self.orders
            .iter()
            .filter_map(|o| o["reference"].as_str().map(str::to_owned))
            .collect()
    }

    /// The ticket id of order `reference` in this batch.
    pub fn ticket_of(&self, reference: &str) -> Option<String> {
        self.tickets
            .iter()
            .find(|(r, _, _)| r == reference)
            .map(|(_, id, _)| id.clone())
    }
}

impl ShoppingFeedSim {
    /// Starts on 127.0.0.1 (a free port) for this token and store id, on the current runtime.
    pub async fn start(token: &str, store_id: &str) -> ShoppingFeedSim {
        Self::start_on(0, token, store_id).await
    }

    /// Starts on 127.0.0.1:`port` (0 picks a free one).
    pub async fn start_on(port: u16, token: &str, store_id: &str) -> ShoppingFeedSim {
        let state = Arc::new(Mutex::new(State::new(token, store_id)));
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
        .unwrap_or_else(|e| {
            panic!("the Shopping Feed simulator cannot bind 127.0.0.1:{port}: {e}")
        });
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        let task = tokio::spawn(server);
        ShoppingFeedSim {
            addr,
            state,
            handle,
            task: Some(task),
        }
    }

    /// The API's base URL to configure as the channel's `base_url` (no trailing `/`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the behaviour for subsequent requests.
    pub fn set_behaviour(&self, b: Behaviour) {
        self.lock().behaviour = b;
    }

    /// Changes the behaviour in place (fates already taken stay taken).
    pub fn update_behaviour(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.lock().behaviour);
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Every accepted batch, in order.
    pub fn pushes(&self) -> Vec<Push> {
        self.lock().pushes.clone()
    }

    /// The accepted batches of `operation`, in order.
    pub fn pushes_of(&self, operation: &str) -> Vec<Push> {
        self.pushes()
            .into_iter()
            .filter(|p| p.operation == operation)
            .collect()
    }

    /// Stops the server (without waiting for requests in flight) and waits until it is down.
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

impl Drop for ShoppingFeedSim {
    fn drop(&mut self) {
        if self.task.is_some() {
            // Sends the stop command at once; the returned future only waits for completion.
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

/// Everything the API knows.
struct State {
    token: String,
    store_id: String,
    behaviour: Behaviour,
    requests: Vec<Recorded>,
    pushes: Vec<Push>,
    next_id: u64,
}

/// An answer, before it becomes an HTTP response.
struct Reply {
    status: u16,
    body: Value,
    retry_after: Option<u64>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            retry_after: None,
        }
    }

    /// A problem document (RFC 7807), as the API answers its errors.
    fn problem(status: u16, title: &str, detail: impl Into<String>) -> Reply {
        Reply::json(
            status,
            json!({
                "type": "http://api.shopping-feed.com/v1/errors",
                "title": title,
                "status": status,
                "detail": detail.into(),
            }),
        )
    }

    fn into_response(self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = HttpResponse::build(status);
        let media = if self.status >= 400 {
            "application/problem+json"
        } else {
            "application/json"
        };
        resp.insert_header((header::CONTENT_TYPE, media));
        if let Some(secs) = self.retry_after {
            resp.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        resp.body(self.body.to_string())
    }
}

/// Serves every request: records it, decides the answer, then delivers it (late, when slow).
async fn handle(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    let received_at = Instant::now();
    let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (reply, delay) = {
        let mut st = lock(&state);
        let authorized = st.authorized(&req);
        let reply = st.respond(
            req.method(),
            req.path(),
            &query,
            authorized,
            content_type.as_deref(),
            &body,
        );
        st.requests.push(Recorded {
            method: req.method().to_string(),
            path: req.path().to_owned(),
            query,
            authorized,
            body: String::from_utf8_lossy(&body).into_owned(),
            status: reply.status,
            received_at,
        });
        (reply, st.behaviour.slow)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    reply.into_response()
}

/// The resources served.
enum Route<'a> {
    Operation(&'a str),
    Tickets,
}

/// Splits `/v1/store/{storeId}/{rest}` into the store id and the route.
fn route<'a>(method: &Method, path: &'a str) -> Option<(&'a str, Route<'a>)> {
    let rest = path.strip_prefix("/v1/store/")?;
    let (store, rest) = rest.split_once('/')?;
    let route = match (method, rest.split_once('/')) {
        (&Method::POST, Some(("order", op))) if OPERATIONS.contains(&op) => Route::Operation(op),
        (&Method::GET, None) if rest == "ticket" => Route::Tickets,
        _ => return None,
    };
    Some((store, route))
}

/// One order item: a SKU and how many.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    reference: String,
    quantity: u32,
}

/// An order of a `ship` operation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Ship {
    reference: String,
    channel_name: String,
    #[serde(default)]
    carrier: String,
    #[serde(default)]
    tracking_number: String,
    #[serde(default)]
    tracking_link: String,
    #[serde(default)]
    items: Vec<Item>,
}

/// An order of a `cancel` operation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Cancel {
    reference: String,
    channel_name: String,
    #[serde(default)]
    reason: String,
}

/// An order of a `refund` operation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Refund {
    reference: String,
    channel_name: String,
    refund: RefundSpec,
}

/// What a refund gives back: the shipping costs or not, and which items (none: the whole order).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundSpec {
    shipping: bool,
    #[serde(default)]
    products: Vec<Item>,
}

/// A batch body: `{"order": [...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch<T> {
    order: Vec<T>,
}

/// What every operation's order has: its reference, its channel and its items.
trait OrderOp {
    fn reference(&self) -> &str;
    fn channel_name(&self) -> &str;
    fn items(&self) -> &[Item];
}

impl OrderOp for Ship {
    fn reference(&self) -> &str {
        &self.reference
    }
    fn channel_name(&self) -> &str {
        &self.channel_name
    }
    fn items(&self) -> &[Item] {
        &self.items
    }
}

impl OrderOp for Cancel {
    fn reference(&self) -> &str {
        &self.reference
    }
    fn channel_name(&self) -> &str {
        &self.channel_name
    }
    fn items(&self) -> &[Item] {
        &[]
    }
}

impl OrderOp for Refund {
    fn reference(&self) -> &str {
        &self.reference
    }
    fn channel_name(&self) -> &str {
        &self.channel_name
    }
    fn items(&self) -> &[Item] {
        &self.refund.products
    }
}

/// Parses a batch of `operation` strictly; returns the references and channels, or why not.
fn parse_batch(operation: &str, body: &[u8]) -> Result<Vec<(String, String)>, String> {
    fn check<T: OrderOp + for<'de> Deserialize<'de>>(
        body: &[u8],
    ) -> Result<Vec<(String, String)>, String> {
        let batch: Batch<T> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        if batch.order.is_empty() || batch.order.len() > MAX_ORDERS {
            return Err(format!(
                "order: give 1 to {MAX_ORDERS} orders, not {}",
                batch.order.len()
            ));
        }
        let mut seen = HashSet::new();
        for (i, o) in batch.order.iter().enumerate() {
            if o.reference().trim().is_empty() || o.channel_name().trim().is_empty() {
                return Err(format!(
                    "order[{i}]: reference and channelName must not be empty"
                ));
            }
            if !seen.insert(o.reference().to_owned()) {
                return Err(format!(
                    "order[{i}]: {} is already in this batch",
                    o.reference()
                ));
            }
            if let Some(item) = o
                .items()
                .iter()
                .find(|it| it.reference.is_empty() || it.quantity == 0)
            {
                return Err(format!(
                    "order[{i}]: item {:?} needs a reference and a quantity above 0",
                    item.reference
                ));
            }
        }
        Ok(batch
            .order
            .iter()
            .map(|o| (o.reference().to_owned(), o.channel_name().to_owned()))
            .collect())
    }
    match operation {
        "ship" => check::<Ship>(body),
        "cancel" => check::<Cancel>(body),
        _ => check::<Refund>(body),
    }
}

/// The first value of a query parameter, if present and not empty.
fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

impl State {
    fn new(token: &str, store_id: &str) -> State {
        State {
            token: token.to_owned(),
            store_id: store_id.to_owned(),
            behaviour: Behaviour::default(),
            requests: Vec::new(),
            pushes: Vec::new(),
            next_id: 1,
        }
    }

    /// Whether the request carries this API's bearer token.
    fn authorized(&self, req: &HttpRequest) -> bool {
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .is_some_and(|(scheme, token)| {
                scheme.eq_ignore_ascii_case("bearer") && token.trim() == self.token
            })
    }

    /// Decides the answer to one request, applying its effects.
    fn respond(
        &mut self,
        method: &Method,
        path: &str,
        query: &[(String, String)],
        authorized: bool,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Reply {
        if self.behaviour.http_500 > 0 {
            self.behaviour.http_500 -= 1;
            return Reply::problem(500, "Internal Server Error", "the API is having a bad day");
        }
        if self.behaviour.too_many_requests > 0 {
            self.behaviour.too_many_requests -= 1;
            let mut reply = Reply::problem(429, "Too Many Requests", "slow down");
            reply.retry_after = Some(self.behaviour.retry_after_secs);
            return reply;
        }
        if !authorized {
            return Reply::problem(401, "Unauthorized", "a valid bearer token is required");
        }
        let Some((store, route)) = route(method, path) else {
            return Reply::problem(
                404,
                "Not Found",
                format!("no such resource: {method} {path}"),
            );
        };
        if store != self.store_id {
            return Reply::problem(404, "Not Found", format!("store {store} does not exist"));
        }
        match route {
            Route::Operation(op) => self.operation(op, content_type, body),
            Route::Tickets => match param(query, "batchId") {
                None => Reply::problem(400, "Bad Request", "batchId is required"),
                Some(batch) => self.tickets(batch),
            },
        }
    }

    fn new_id(&mut self, prefix: &str) -> String {
        let id = format!("{prefix}{:08x}", self.next_id);
        self.next_id += 1;
        id
    }

    /// An order operation: the batch, its tickets with their fates, answered 202.
    fn operation(&mut self, op: &str, content_type: Option<&str>, body: &[u8]) -> Reply {
        let media = content_type
            .and_then(|c| c.split(';').next())
            .map(str::trim);
        if media != Some("application/json") {
            return Reply::problem(415, "Unsupported Media Type", "send application/json");
        }
        let orders = match parse_batch(op, body) {
            Ok(orders) => orders,
            Err(why) => return Reply::problem(400, "Bad Request", why),
        };
        let batch_id = self.new_id("batch-");
        let mut tickets = Vec::with_capacity(orders.len());
        for (reference, _) in &orders {
            let fate = self
                .behaviour
                .fates
                .get_mut(reference)
                .and_then(VecDeque::pop_front)
                .unwrap_or(Fate::Succeed);
            tickets.push((reference.clone(), self.new_id("ticket-"), fate));
        }
        let sent: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        self.pushes.push(Push {
            operation: op.to_owned(),
            batch_id: batch_id.clone(),
            orders: sent["order"].as_array().cloned().unwrap_or_default(),
            tickets,
            reads: 0,
        });
        let href = format!("/v1/store/{}/ticket?batchId={batch_id}", self.store_id);
        Reply::json(
            202,
            json!({"id": batch_id, "_links": {"ticket": {"href": href}}}),
        )
    }

    /// The tickets of a batch, as they stand at this read.
    fn tickets(&mut self, batch_id: &str) -> Reply {
        let before_done = self.behaviour.reads_before_done;
        let store = self.store_id.clone();
        let Some(push) = self.pushes.iter_mut().find(|p| p.batch_id == batch_id) else {
            return Reply::problem(404, "Not Found", format!("batch {batch_id} does not exist"));
        };
        push.reads += 1;
        let read = push.reads;
        let tickets: Vec<Value> = push
            .tickets
            .iter()
            .filter(|(_, _, fate)| *fate != Fate::Vanish)
            .map(|(reference, id, fate)| ticket_json(push, reference, id, fate, read, before_done))
            .collect();
        let n = tickets.len();
        let href = format!("/v1/store/{store}/ticket?batchId={batch_id}");
        Reply::json(
            200,
            json!({
                "total": n, "limit": 100, "pages": 1, "page": 1, "count": n,
                "_links": {"self": {"href": href}},
                "_embedded": {"ticket": tickets},
            }),
        )
    }
}

/// One ticket at read number `read`: `scheduled` first, `running` until `before_done` reads have
/// passed, then its fate.
fn ticket_json(
    push: &Push,
    reference: &str,
    id: &str,
    fate: &Fate,
    read: u32,
    before_done: u32,
) -> Value {
    let (state, error) = if read > before_done {
        match fate {
            Fate::Fail(why) => ("failed", Some(why.as_str())),
            Fate::Cancel(why) => ("canceled", Some(why.as_str())),
            Fate::Succeed | Fate::Vanish => ("succeed", None),
        }
    } else if read == 1 {
        ("scheduled", None)
    } else {
        ("running", None)
    };
    let channel = push
        .orders
        .iter()
        .find(|o| o["reference"] == reference)
        .and_then(|o| o["channelName"].as_str())
        .unwrap_or_default();
    let mut payload = json!({
        "reference": reference, "channelName": channel, "operation": push.operation,
    });
    if let Some(why) = error {
        payload["error"] = json!(why);
    }
    json!({"id": id, "batchId": push.batch_id, "state": state, "payload": payload})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_parsed_strictly() {
        let ok = br#"{"order":[{"reference":"A","channelName":"amazon","carrier":"DPD",
            "trackingNumber":"T1","trackingLink":"","items":[{"reference":"SKU","quantity":1}]}]}"#;
        assert_eq!(
            parse_batch("ship", ok),
            Ok(vec![("A".to_string(), "amazon".to_string())])
        );
        let unknown = br#"{"order":[{"reference":"A","channelName":"amazon","colour":"red"}]}"#;
        assert!(parse_batch("ship", unknown).unwrap_err().contains("colour"));
        let no_channel = br#"{"order":[{"reference":"A"}]}"#;
        assert!(
            parse_batch("cancel", no_channel)
                .unwrap_err()
                .contains("channelName")
        );
        assert!(parse_batch("cancel", br#"{"order":[]}"#).is_err());
        let refund = br#"{"order":[{"reference":"A","channelName":"amazon",
            "refund":{"shipping":true,"products":[{"reference":"SKU","quantity":2}]}}]}"#;
        assert!(parse_batch("refund", refund).is_ok());
        let twice = br#"{"order":[{"reference":"A","channelName":"x"},{"reference":"A","channelName":"x"}]}"#;
        assert!(
            parse_batch("cancel", twice)
                .unwrap_err()
                .contains("already")
        );
    }

    #[test]
    fn tickets_go_scheduled_running_then_their_fate() {
        let push = Push {
            operation: "ship".into(),
            batch_id: "b".into(),
            orders: vec![json!({"reference": "A", "channelName": "amazon"})],
            tickets: Vec::new(),
            reads: 0,
        };
        let states: Vec<Value> = (1..=3)
            .map(|read| {
                ticket_json(&push, "A", "t", &Fate::Fail("no".into()), read, 2)["state"].clone()
            })
            .collect();
        assert_eq!(
            states,
            [json!("scheduled"), json!("running"), json!("failed")]
        );
        assert_eq!(
            ticket_json(&push, "A", "t", &Fate::Succeed, 1, 0)["state"],
            json!("succeed")
        );
    }

    #[test]
    fn routes_need_the_store_and_a_known_operation() {
        assert!(matches!(
            route(&Method::POST, "/v1/store/42/order/ship"),
            Some(("42", Route::Operation("ship")))
        ));
        assert!(matches!(
            route(&Method::GET, "/v1/store/42/ticket"),
            Some(("42", Route::Tickets))
        ));
        assert!(route(&Method::POST, "/v1/store/42/order/teleport").is_none());
        assert!(route(&Method::GET, "/v1/store/42/order/ship").is_none());
    }
}
