//! The Shopping Feed–style channel against its simulator (`examples/shoppingfeed_api`): which
//! orders push, the ship delay and its debounce, ticket lifecycles (succeed, failed and retried,
//! canceled, never there, past the deadline), answers that are retried without counting (500,
//! 429), a cancel before the delay, several orders in one request, and a push whose lease ran out
//! mid-send. The channel's runner runs in the test server; the tests wait for what the simulator
//! received and for what the order view's `pushes` say.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use wharf::config::{ChannelKind, ChannelSettings};
use wharf::outbound::exchange::{ExportSummary, recent_exports};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, order_json};
use crate::shoppingfeed_api::{Behaviour, Fate, Push, ShoppingFeedSim};

both_backends!(
    a_marketplace_shipment_is_pushed_and_a_web_one_is_not,
    shipments_within_the_delay_go_in_one_push,
    a_shipment_applied_during_the_push_is_pushed_next,
    a_failed_ticket_is_sent_again_until_it_succeeds,
    a_canceled_ticket_is_dead,
    a_ticket_that_never_appears_is_sent_again,
    a_ticket_past_its_deadline_is_sent_again_until_lost,
    busy_and_failing_answers_are_retried_without_counting,
    a_wrong_token_is_not_counted_and_says_what_to_check,
    a_cancel_before_the_delay_skips_the_ship_and_pushes_the_cancel,
    a_refund_pushes_the_whole_order,
    orders_due_together_go_in_one_request,
    a_push_whose_lease_ran_out_mid_send_is_sent_again_once,
);

const TOKEN: &str = "sf-token-123";
const STORE: &str = "4242";
const SOURCE: &str = "marketplace:amazon";

/// How long anything the tests wait for may take at most (a loaded machine is slow; what is
/// waited for normally comes within seconds).
const PATIENCE: Duration = Duration::from_secs(60);

/// A channel name of its own per test, so that its counters are its own in this process's one
/// metrics recorder.
fn channel_name() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "sf-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A `shoppingfeed` channel claiming `marketplace:amazon` on `sim`, quick for tests: no ship
/// delay, a ticket read every second, retries after a second.
fn channel(sim: &ShoppingFeedSim) -> ChannelSettings {
    ChannelSettings {
        name: channel_name(),
        kind: ChannelKind::Shoppingfeed,
        sources: vec![SOURCE.into()],
        base_url: sim.base_url(),
        token: TOKEN.into(),
        store_id: STORE.into(),
        ship_delay_secs: 0,
        ticket_poll_secs: 1,
        ticket_deadline_secs: 60,
        max_attempts: 3,
        timeout_secs: 10,
        backoff_base_secs: 1,
        backoff_ceiling_secs: 2,
        ..ChannelSettings::default()
    }
}

/// The test server with `c` as its only channel.
async fn spawn(backend: Backend, c: &ChannelSettings) -> TestApp {
    let c = c.clone();
    TestApp::spawn_with(backend, move |s| s.channels.push(c)).await
}

/// PUTs order `id` of `source` with these lines.
async fn put(app: &TestApp, id: &str, source: &str, lines: &[(&str, i64)]) {
    let mut order = order_json(lines);
    order["source"] = json!(source);
    let (status, body) = app
        .api(Method::PUT, &format!("/orders/{id}"), Some(order))
        .await;
    assert_eq!(status, 201, "{body}");
}

/// Ships `lines` of order `id` (message `seq`, tracking number `tracking`) and applies it.
async fn ship(
    app: &TestApp,
    session: &str,
    id: &str,
    seq: i64,
    lines: &[(&str, i64)],
    tracking: &str,
) {
    app.send_shipment(session, id, seq, lines, tracking).await;
    assert_eq!(app.drain().await, 1, "shipment {seq} of {id} applied");
    // The worker's commit announces the new task to other processes (NOTIFY on PostgreSQL) but
    // does not wake this process's runners; without this the channel's runner would find it at
    // its 30 s fallback look.
    wharf::outbound::wake_exporters();
}

/// The order view.
async fn order(app: &TestApp, id: &str) -> Value {
    let (status, view) = app.api(Method::GET, &format!("/orders/{id}"), None).await;
    assert_eq!(status, 200, "{view}");
    view
}

/// The order's pushes, as its view lists them.
async fn pushes(app: &TestApp, id: &str) -> Vec<Value> {
    order(app, id).await["pushes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until `ready` gives a value, polling; panics naming `what` after [`PATIENCE`].
async fn wait_for<T, F, Fut>(what: &str, mut ready: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = ready().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the `action` push of order `id` is in `state`; returns it.
async fn push_in(app: &TestApp, id: &str, action: &str, state: &str) -> Value {
    let what = format!("the {action} of {id} becoming {state}");
    wait_for(&what, || async {
        pushes(app, id)
            .await
            .into_iter()
            .rev()
            .find(|p| p["action"] == action)
            .filter(|p| p["state"] == state)
    })
    .await
}

/// The simulator's accepted batches of `operation` once there are `n`.
async fn pushed(sim: &ShoppingFeedSim, operation: &str, n: usize) -> Vec<Push> {
    let what = format!("{n} {operation} batch(es) at the simulator");
    wait_for(&what, || async {
        let p = sim.pushes_of(operation);
        (p.len() >= n).then_some(p)
    })
    .await
}

/// The channel's exchanges in the log, oldest first.
async fn exchanges(app: &TestApp, channel: &str) -> Vec<ExportSummary> {
    let channel = channel.to_string();
    app.with_conn(move |c| {
        let mut all = recent_exports(c, 1000).unwrap();
        all.retain(|e| e.kind == channel);
        all.reverse();
        all
    })
    .await
}

/// The channel's `wharf_channel_pushes_total` of `action` and `outcome` in this process.
async fn pushes_counted(app: &TestApp, channel: &str, action: &str, outcome: &str) -> f64 {
    let page = crate::metrics::scrape(app).await;
    let labels = [
        ("channel", channel),
        ("action", action),
        ("outcome", outcome),
    ];
    crate::metrics::value(&page, "wharf_channel_pushes_total", &labels).unwrap_or(0.0)
}

fn time(v: &Value) -> DateTime<Utc> {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn a_marketplace_shipment_is_pushed_and_a_web_one_is_not(backend: Backend) {
    let sim = ShoppingFeedSim::start(TOKEN, STORE).await;
    let c = channel(&sim);
    let app = spawn(backend, &c).await;
    put(&app, "W-1", "web", &[("SKU-1", 1)]).await;
    put(&app, "M-1", SOURCE, &[("SKU-1", 2), ("SKU-2", 1)]).await;
    let s = app.login().await;
    ship(&app, &s, "W-1", 1, &[("SKU-1", 1)], "TRK-W").await;
    ship(&app, &s, "M-1", 2, &[("SKU-1", 2)], "TRK-1").await;

    // The ticket is read three times: scheduled, running, succeed.
    let done = push_in(&app, "M-1", "ship", "done").await;
    let batches = sim.pushes();
    assert_eq!(
        batches.len(),
        1,
        "only the marketplace order pushes: {batches:?}"
    );
    let b = &batches[0];
    assert_eq!(b.operation, "ship");
    assert_eq!(
        b.orders,
        vec![json!({
            "reference": "M-1", "channelName": "amazon", "carrier": "DPD",
            "trackingNumber": "TRK-1", "trackingLink": "",
            "items": [{"reference": "SKU-1", "quantity": 2}],
        })]
    );
    assert_eq!(b.reads, 3, "scheduled, running, then succeed");
    assert_eq!(done["channel"], c.name.as_str());
    assert_eq!(done["batch_id"], b.batch_id.as_str());
    assert_eq!(done["ticket_id"], b.ticket_of("M-1").unwrap().as_str());
    assert_eq!(done["attempts"], 0);
    assert!(done["done_at"].is_string(), "{done}");
    assert_eq!(pushes(&app, "W-1").await, Vec::<Value>::new());

    let requests = sim.requests();
    assert!(requests.iter().all(|r| r.authorized), "{requests:?}");
    assert_eq!(requests[0].path, format!("/v1/store/{STORE}/order/ship"));
    let reads: Vec<_> = requests.iter().filter(|r| r.method == "GET").collect();
    assert_eq!(reads.len(), 3);
    assert_eq!(reads[0].path, format!("/v1/store/{STORE}/ticket"));
    assert_eq!(
        reads[0].query,
        vec![("batchId".to_string(), b.batch_id.clone())]
    );

    // Every exchange is in the log under the channel's name.
    let log: Vec<(String, String)> = exchanges(&app, &c.name)
        .await
        .into_iter()
        .map(|e| (e.operation, e.outcome))
        .collect();
    let ok = |op: &str| (op.to_string(), "ok".to_string());
    assert_eq!(
        log,
        vec![ok("ship"), ok("ticket"), ok("ticket"), ok("ticket")]
    );
    assert_eq!(pushes_counted(&app, &c.name, "ship", "done").await, 1.0);
    assert_eq!(pushes_counted(&app, &c.name, "ship", "awaiting").await, 3.0);
}

async fn shipments_within_the_delay_go_in_one_push(backend: Backend) {
    let sim = ShoppingFeedSim::start(TOKEN, STORE).await;
    sim.set_behaviour(Behaviour {
        reads_before_done: 0,
        ..Behaviour::default()
    });
    let c = ChannelSettings {
        ship_delay_secs: 2,
        ..channel(&sim)
    };
    let app = spawn(backend, &c).await;
    put(&app, "M-1", SOURCE, &[("SKU-1", 1), ("SKU-2", 1)]).await;
    let s = app.login().await;
    let delay = TimeDelta::seconds(2);
    let close = |a: DateTime<Utc>, b: DateTime<Utc>| (a - b).abs() < TimeDelta::seconds(1);

    ship(&app, &s, "M-1", 1, &[("SKU-1", 1)], "TRK-1").await;
    let view = order(&app, "M-1").await;
    let first = view["pushes"][0].clone();
    assert_eq!(
        (&first["action"], &first["state"]),
        (&json!("ship"), &json!("pending"))
    );
    let due_first = time(&first["next_attempt_at"]);
    assert!(
        close(due_first, time(&view["shipments"][0]["created_at"]) + delay),
        "{view}"
    );

    // The second shipment comes within the delay: the wait starts again from it.
    ship(&app, &s, "M-1", 2, &[("SKU-2", 1)], "TRK-2").await;
    let view = order(&app, "M-1").await;
    let list = view["pushes"].as_array().unwrap();
    assert_eq!(list.len(), 1, "still the one ship, not sent yet: {view}");
    assert_eq!(list[0]["state"], "pending", "{view}");
    let due_second = time(&list[0]["next_attempt_at"]);
    assert!(due_second > due_first, "{due_second} after {due_first}");
    assert!(
        close(
            due_second,
            time(&view["shipments"][1]["created_at"]) + delay
        ),
        "{view}"
    );

    push_in(&app, "M-1", "ship", "done").await;
    let batches = sim.pushes_of("ship");
    assert_eq!(batches.len(), 1, "one push for both shipments: {batches:?}");
    assert_eq!(batches[0].orders[0]["trackingNumber"], "TRK-1,TRK-2");
    assert_eq!(
        batches[0].orders[0]["items"],
        json!([{"reference": "SKU-1", "quantity": 1}, {"reference": "SKU-2", "quantity": 1}])
    );
}

async fn a_shipment_applied_during_the_push_is_pushed_next(backend: Backend) {
    let sim = ShoppingFeedSim::start(TOKEN, STORE).await;
    sim.set_behaviour(Behaviour {
        reads_before_done: 0,
        slow: Some(Duration::from_secs(5)),
        ..Behaviour::default()
    });
    let c = channel(&sim);
    let app = spawn(backend, &c).await;
    put(&app, "M-1", SOURCE, &[("SKU-1", 1), ("SKU-2", 1)]).await;
    let s = app.login().await;
    ship(&app, &s, "M-1", 1, &[("SKU-1", 1)], "TRK-1").await;

    // The second shipment is applied while the first push waits for its answer: the task being
    // sent can take it neither in its body nor by a later wait, so it goes in a push of its own.
    wait_for("the first push", || async {
        (!sim.requests().is_empty()).then_some(())
    })
    .await;
    sim.update_behaviour(|b| b.slow = None);
    ship(&app, &s, "M-1", 2, &[("SKU-2", 1)], "TRK-2").await;

    let batches = pushed(&sim, "ship", 2).await;
    assert_eq!(batches[0].orders[0]["trackingNumber"], "TRK-1");
    assert_eq!(batches[1].orders[0]["trackingNumber"], "TRK-1,TRK-2");
    wait_for("both ships done", || async {
        let list = pushes(&app, "M-1").await;
        (list.len() == 2 && list.iter().all(|p| p["state"] == "done")).then_some(())
    })
    .await;
}

async fn a_failed_ticket_is_sent_again_until_it_succeeds(backend: Backend) {
    let sim = ShoppingFeedSim::start(TOKEN, STORE).await;
    let why = "Amazon refused the carrier code DPD";
    sim.set_behaviour(
        Behaviour {
            reads_before_done: 0,
            ..Behaviour::default()
        }
        .fate("M-1", Fate::Fail(why.into())),
    );
    let c = channel(&sim);
    let app = spawn(backend, &c).await;
    put(&app, "M-1", SOURCE, &[("SKU-1", 1)]).await;
    let s = app.login().await;
    ship(&app, &s, "M-1", 1, &[("SKU-1", 1)], "TRK-1").await;

    let done = push_in(&app, "M-1", "ship", "done").await;
    let batches = sim.pushes_of("ship");
    assert_eq!(
        batches.len(),
        2,
        "sent again after the failed ticket: {batches:?}"
    );
    let failed_ticket = batches[0].ticket_of("M-1").unwrap();
    assert_eq!(done["attempts"], 1, "the failed ticket counts: {done}");
    assert_eq!(done["last_error"], Value::Null);
    assert_eq!(done["batch_id"], batches[1].batch_id.as_str());
    assert_eq!(
        done["ticket_id"],
        batches[1].ticket_of("M-1").unwrap().as_str()
    );

    // The failed read is in the log, naming the ticket and what the API said.
    let log = exchanges(&app, &c.name).await;
    let failed = log
        .iter()
        .find(|e| e.operation == "ticket" && e.failures == 1)
        .unwrap_or_else(|| panic!("no failed ticket read in {log:?}"));
    let error = failed.error.as_deref().unwrap();
    assert!(
        error.contains(&failed_ticket) && error.contains(why),
        "{error}"
    );
    assert_eq!(pushes_counted(&app, &c.name, "ship", "failed").await, 1.0);
    assert_eq!(pushes_counted(&app, &c.name, "ship", "done").await, 1.0);
}

async fn a_canceled_ticket_is_dead(backend: Backend) {
    let sim = ShoppingFeedSim::start(TOKEN, STORE).await;
    let why = "order M-1 was already refunded on the marketplace";
    sim.set_behaviour(
        Behaviour {
            reads_before_done: 1,
            ..Behaviour::default()
        }
        .fate("M-1", Fate::Cancel(why.into())),
    );
    let c = channel(&sim);
    let app = spawn(backend, &c).await;
    put(&app, "M-1", SOURCE, &[("SKU-1", 1)]).await;
    let s = app.login().await;
    ship(&app, &s, "M-1", 1, &[("SKU-1", 1)], "TRK-1").await;

    let dead = push_in(&app, "M-1", "ship", "dead").await;
    let batches = sim.pushes_of("ship");
    assert_eq!(
        batches.len(),
        1,
        "a canceled ticket is not sent again: {batches:?}"
    );
    let ticket = batches[0].ticket_of("M-1").unwrap();
    assert_eq!(dead["ticket_id"], ticket.as_str());
    assert_eq!(dead["batch_id"], batches[0].batch_id.as_str());
    let error = dead["last_error"].as_str().unwrap();
    assert!(
        error.contains(&format!("canceled ticket {ticket}")) && error.contains(why),
        "{error}"
    );
    assert_eq!(
        dead["next_attempt_at"],
        Value::Null,
        "waits for support: {dead}"
    );
    assert_eq!(pushes_counted(&app, &c.name, "ship", "dead").await, 1.0);
}

async fn a_ticket_that_never_appears_is_sent_again(backend: Backend) {
    let sim = ShoppingFeedSim::start(TOKEN, STORE).await;
    sim.set_behaviour(
        Behaviour {
            reads_before_done: 0,
            ..Behaviour::default()
        }
        .fate("M-1", Fate::Vanish),
    );
    let c = channel(&sim);
    let app = spawn(backend, &c).await;
    put(&app, "M-1", SOURCE, &[("SKU-1", 1)]).await;
    let s = app.login().await;
    ship(&app, &s, "M-1", 1, &[("SKU-1", 1)], "TRK-1").await;

    let done = push_in(&app, "M-1", "ship", "done").await;
    let batches = sim.pushes_of("ship");
    assert_eq!(batches.len(), 2, "{batches:?}");
    assert_eq!(done["attempts"], 1, "the missing ticket counts: {done}");
    assert_eq!(done["batch_id"], batches[1].batch_id.as_str());
    let log = exchanges(&app, &c.name).await;
    let missing = log
        .iter()
        .find(|e| e.operation == "ticket" && e.failures == 1)
        .unwrap_or_else(|| panic!("no read without the ticket in {log:?}"));
    let error = missing.error.as_deref().unwrap();
    assert!(
        error.contains("no ticket for order M-1") && error.contains(&batches[0].batch_id),
        "{error}"
    );
}

async fn a_ticket_past_its_deadline_is_sent_again_until_lost(backend: Backend) {
    let sim = ShoppingFeedSim::start(TOKEN, STORE).await;
    sim.set_behaviour(Behaviour {
        reads_before_done: 1000,
        ..Behaviour::default()
    });
    let c = ChannelSettings {
        ticket_deadline_secs: 2,
        max_attempts: 2,
        ..channel(&sim)
    };
    let app = spawn(backend, &c).await;
    put(&app, "M-1", SOURCE, &[("SKU-1", 1)]).await;
    let s = app.login().await;
    ship(&app, &s, "M-1", 1, &[("SKU-1", 1)], "TRK-1").await;

    // Never settled: sent again once, then lost (it cannot go round for ever).
    let lost = push_in(&app, "M-1", "ship", "lost").await;
    assert_eq!(lost["attempts"], 2, "{lost}");
    let batches = sim.pushes_of("ship");
    assert_eq!(batches.len(), 2, "{batches:?}");
    let error = lost["last_error"].as_str().unwrap();
    let ticket = batches[1].ticket_of("M-1").unwrap();
    assert!(error.contains(&format!("ticket {ticket}")), "{error}");
    assert!(
        error.contains("still running") && error.contains("ticket_deadline_secs = 2"),
        "{error}"
    );
}

async fn busy_and_failing_answers_are_retried_without_counting(backend: Backend) {
    let sim = ShoppingFeedSim::start(TOKEN, STORE).await;
    sim.set_behaviour(Behaviour {
        reads_before_done: 0,
        http_500: 1,
        too_many_requests: 1,
        retry_after_secs: 1,
        ..Behaviour::default()
    });
    let c = channel(&sim);
    let app = spawn(backend, &c).await;
    put(&app, "M-1", SOURCE, &[("SKU-1", 1)]).await;
    let s = app.login().await;
    ship(&app, &s, "M-1", 1, &[("SKU-1", 1)], "TRK-1").await;

    let done = push_in(&app, "M-1", "ship", "done").await;
    assert_eq!(
        done["attempts"], 0,
        "neither answer counts against the push: {done}"
    );
    let statuses: Vec<(String, u16)> = sim
        .requests()
        .into_iter()
        .map(|r| (r.method, r.status))
        .collect();
    let post = |s: u16| ("POST".to_string(), s);
    assert_eq!(
        statuses,
        vec![post(500), post(429), post(202), ("GET".to_string(), 200)]
    );
    let log: Vec<(String, Option<i32>)> = exchanges(&app, &c.name)
        .await
        .into_iter()
        .map(|e| (e.outcome, e.http_status))
        .collect();
    let http_error = |s: i32| ("http_error".to_string(), Some(s));
    assert_eq!(
        log,
        vec![
            http_error(500),
            http_error(429),
            ("ok".into(), Some(200)),
            ("ok".into(), Some(200))
        ]
    );
    assert_eq!(
        pushes_counted(&app, &c.name, "ship", "not_answered").await,
        2.0
    );
}

async fn a_wrong_token_is_not_counted_and_says_what_to_check(backend: Backend) {
    let sim = ShoppingFeedSim::start(TOKEN, STORE).await;
    let c = ChannelSettings {
        token: "an-old-token".into(),
        // One try is enough to see; the next would come after the test.
        backoff_base_secs: 600,
        backoff_ceiling_secs: 600,
        ..channel(&sim)
    };
    let app = spawn(backend, &c).await;
    put(&app, "M-1", SOURCE, &[("SKU-1", 1)]).await;
    let s = app.login().await;
    ship(&app, &s, "M-1", 1, &[("SKU-1", 1)], "TRK-1").await;

    let refused = wait_for("the 401 settled", || async {
        pushes(&app, "M-1")
            .await
            .into_iter()
            .find(|p| p["last_error"].is_string())
    })
    .await;
    assert_eq!(refused["state"], "pending", "{refused}");
    assert_eq!(refused["attempts"], 0, "{refused}");
    let error = refused["last_error"].as_str().unwrap();
    assert!(
        error.contains("HTTP 401") && error.contains("check the channel's token"),
        "{error}"
    );
    assert!(
        error.contains(&format!(
            "WHARF_CHANNEL_{}_TOKEN",
            c.name.to_uppercase().replace('-', "_")
        )),
        "{error}"
    );
    let requests = sim.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(!requests[0].authorized);
    assert!(sim.pushes().is_empty(), "nothing was taken on");
}

async fn a_cancel_before_the_delay_skips_the_ship_and_pushes_the_cancel(backend: Backend) {
    let sim = ShoppingFeedSim::start(TOKEN, STORE).await;
    sim.set_behaviour(Behaviour {
        reads_before_done: 0,
        ..Behaviour::default()
    });
    let c = ChannelSettings {
        ship_delay_secs: 600,
        ..channel(&sim)
    };
    let app = spawn(backend, &c).await;
    put(&app, "M-1", SOURCE, &[("SKU-1", 2)]).await;
    let s = app.login().await;
    ship(&app, &s, "M-1", 1, &[("SKU-1", 1)], "TRK-1").await;
    assert_eq!(pushes(&app, "M-1").await[0]["state"], "pending");
    let (status, body) = app.api(Method::POST, "/orders/M-1/cancel", None).await;
    assert_eq!(status, 200, "{body}");

    push_in(&app, "M-1", "cancel", "done").await;
    let list = pushes(&app, "M-1").await;
    let states: Vec<(&str, &str)> = list
        .iter()
        .map(|p| (p["action"].as_str().unwrap(), p["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, vec![("ship", "skipped"), ("cancel", "done")]);
    assert_eq!(
        list[0]["note"],
        "the order was cancelled before its shipment was pushed"
    );
    assert_eq!(sim.pushes_of("ship").len(), 0);
    let cancels = sim.pushes_of("cancel");
    assert_eq!(cancels.len(), 1, "{cancels:?}");
    assert_eq!(
        cancels[0].orders,
        vec![json!({
            "reference": "M-1", "channelName": "amazon",
            "reason": "cancelled in the shop (order status canceled)",
        })]
    );
}

async fn a_refund_pushes_the_whole_order(backend: Backend) {
    let sim = ShoppingFeedSim::start(TOKEN, STORE).await;
    sim.set_behaviour(Behaviour {
        reads_before_done: 0,
        ..Behaviour::default()
    });
    let c = channel(&sim);
    let app = spawn(backend, &c).await;
    put(&app, "M-1", SOURCE, &[("SKU-1", 2), ("SKU-2", 1)]).await;
    let mut closed = order_json(&[("SKU-1", 2), ("SKU-2", 1)]);
    closed["source"] = json!(SOURCE);
    closed["status"] = json!("closed");
    let (status, body) = app.api(Method::PUT, "/orders/M-1", Some(closed)).await;
    assert_eq!(status, 200, "{body}");

    push_in(&app, "M-1", "refund", "done").await;
    let refunds = sim.pushes_of("refund");
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(
        refunds[0].orders,
        vec![json!({
            "reference": "M-1", "channelName": "amazon",
            "refund": {"shipping": true, "products": [
                {"reference": "SKU-1", "quantity": 2}, {"reference": "SKU-2", "quantity": 1},
            ]},
        })]
    );
}

async fn orders_due_together_go_in_one_request(backend: Backend) {
    let sim = ShoppingFeedSim::start(TOKEN, STORE).await;
    sim.set_behaviour(Behaviour {
        reads_before_done: 0,
        http_500: 1,
        ..Behaviour::default()
    });
    // The first push's 500 opens the breaker: what becomes due meanwhile waits for it to close,
    // then goes in one request.
    let c = ChannelSettings {
        breaker_threshold: 1,
        breaker_pause_secs: 5,
        ..channel(&sim)
    };
    let app = spawn(backend, &c).await;
    let ids = ["P-0", "A-1", "A-2", "A-3"];
    for id in ids {
        put(&app, id, SOURCE, &[("SKU-1", 1)]).await;
    }
    let s = app.login().await;
    ship(&app, &s, "P-0", 1, &[("SKU-1", 1)], "TRK-0").await;
    wait_for("the 500 settled", || async {
        pushes(&app, "P-0").await[0]["last_error"]
            .as_str()
            .filter(|e| e.contains("HTTP 500"))
            .map(str::to_string)
    })
    .await;
    for (seq, id) in (2..).zip(&ids[1..]) {
        ship(&app, &s, id, seq, &[("SKU-1", 1)], &format!("TRK-{seq}")).await;
    }

    let batches = pushed(&sim, "ship", 1).await;
    let mut together = batches[0].references();
    together.sort();
    assert_eq!(together, ["A-1", "A-2", "A-3", "P-0"], "{batches:?}");
    for id in ids {
        push_in(&app, id, "ship", "done").await;
    }
    let posts: Vec<u16> = sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.status)
        .collect();
    assert_eq!(
        posts,
        vec![500, 202],
        "nothing was sent while the breaker was open"
    );
}

async fn a_push_whose_lease_ran_out_mid_send_is_sent_again_once(backend: Backend) {
    let sim = ShoppingFeedSim::start(TOKEN, STORE).await;
    sim.set_behaviour(Behaviour {
        reads_before_done: 0,
        slow: Some(Duration::from_secs(4)),
        ..Behaviour::default()
    });
    let c = channel(&sim);
    let app = spawn(backend, &c).await;
    put(&app, "M-1", SOURCE, &[("SKU-1", 1)]).await;
    let s = app.login().await;
    ship(&app, &s, "M-1", 1, &[("SKU-1", 1)], "TRK-1").await;

    // The server's runner has sent the push and waits for the slow answer; its lease runs out
    // (as when a process stalls or dies mid-send) and another runner takes the task over.
    wait_for("the first push", || async {
        (!sim.requests().is_empty()).then_some(())
    })
    .await;
    sim.update_behaviour(|b| b.slow = None);
    let name = c.name.clone();
    let expired = app
        .with_conn(move |conn| {
            use diesel::prelude::*;
            use wharf::db::schema::outbound_tasks as t;
            diesel::update(
                t::table
                    .filter(t::channel.eq(name))
                    .filter(t::subject.eq("M-1"))
                    .filter(t::lease_owner.is_not_null()),
            )
            .set(t::lease_expires_at.eq(Some(wharf::db::now() - TimeDelta::seconds(1))))
            .execute(conn)
            .unwrap()
        })
        .await;
    assert_eq!(expired, 1, "the task is held by the first sender");
    let other = wharf::channels::sync::Pusher::new(app.pool.clone(), c.clone()).unwrap();
    other.run_once().await.unwrap();

    let done = push_in(&app, "M-1", "ship", "done").await;
    // The first sender's answer comes late and is logged, but settles nothing.
    wait_for("both pushes logged", || async {
        let log = exchanges(&app, &c.name).await;
        (log.iter().filter(|e| e.operation == "ship").count() == 2).then_some(())
    })
    .await;
    let batches = sim.pushes_of("ship");
    assert_eq!(batches.len(), 2, "sent again once: {batches:?}");
    assert_eq!(
        done["batch_id"],
        batches[1].batch_id.as_str(),
        "the takeover's batch: {done}"
    );
    assert_eq!(
        done["ticket_id"],
        batches[1].ticket_of("M-1").unwrap().as_str()
    );
    assert_eq!(done["attempts"], 0);
    assert_eq!(pushes(&app, "M-1").await.len(), 1, "one task");
}
