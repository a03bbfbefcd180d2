//! The affiliate channel (`kind = "http"`) against the affiliate simulator: what an affiliate
//! system receives for each change of the orders it sent (status pushes, edits, splits), signed and
//! idempotent, and what becomes of each push (the order view's `pushes`, the exchange log) when the
//! receiver refuses, drops a stale update, fails, asks to slow down, answers late or takes the
//! change on with a ticket; and two `wharf serve` processes on one PostgreSQL pushing each change
//! once. The channel's runner runs in the test's server (continuous, woken by each change);
//! shipments are applied with `drain`.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use wharf::config::{ChannelKind, ChannelSettings};

use crate::affiliate_api::{AffiliateSim, Behaviour, Recorded, Route, TicketPlan};
use crate::both_backends;
use crate::helpers::{Backend, TestApp, order_json, spawn_with_log, wait_for_line};

both_backends!(
    status_pushes_reach_the_channel_that_claims_the_source,
    edits_and_splits_push_the_order_as_it_is,
    a_push_signed_with_another_secret_is_refused_and_dead,
    refusals_stale_updates_and_unavailable_answers,
    a_push_answered_too_late_is_sent_again_and_applied_once,
    tickets_are_read_until_done_and_a_failed_one_is_sent_again,
    a_change_while_its_push_is_on_its_way_is_pushed_after_it,
);

/// The channel's secret, which the simulator checks signatures with.
const SECRET: &str = "whsec_d2hhcmYgYWZmaWxpYXRlIGNoYW5uZWwgdGVzdCBrZXk=";
/// A secret the simulator does not know.
const OTHER_SECRET: &str = "whsec_c29tZSBvdGhlciBzZWNyZXQgZW50aXJlbHkh";

/// How long a push may take to arrive or settle before a test gives up: far more than the runner's
/// window, the retries' backoff (1–2 s) and the ticket reads (1 s) need, even on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// The channel `aff` claiming source `affiliate`, pushing to `base_url` at once (no ship delay),
/// with short retries and ticket reads.
fn channel(base_url: String) -> ChannelSettings {
    ChannelSettings {
        name: "aff".into(),
        kind: ChannelKind::Http,
        sources: vec!["affiliate".into()],
        base_url,
        secret: SECRET.into(),
        ship_delay_secs: 0,
        ticket_poll_secs: 1,
        timeout_secs: 10,
        backoff_base_secs: 1,
        backoff_ceiling_secs: 2,
        ..ChannelSettings::default()
    }
}

/// The test server with the channel pointed at `sim`, adjusted by `adjust`.
async fn spawn(
    backend: Backend,
    sim: &AffiliateSim,
    adjust: impl FnOnce(&mut ChannelSettings) + Send + 'static,
) -> TestApp {
    let mut c = channel(sim.base_url());
    adjust(&mut c);
    TestApp::spawn_with(backend, move |s| s.channels.push(c)).await
}

/// A valid order of `lines` from source `source`.
fn order_from(source: &str, lines: &[(&str, i64)]) -> Value {
    let mut o = order_json(lines);
    o["source"] = json!(source);
    o
}

/// PUTs `order` as `id`; the answer must be `status`.
async fn put(app: &TestApp, id: &str, order: &Value, status: u16) {
    let (got, body) = app
        .api(Method::PUT, &format!("/orders/{id}"), Some(order.clone()))
        .await;
    assert_eq!(got, status, "PUT {id}: {body}");
}

/// Waits until `done` holds, polling; panics naming `what` after [`PATIENCE`].
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < PATIENCE,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The order view's `pushes`, once there are `n` and each is in one of `states` (so settled: no
/// sender holds it).
async fn pushes_in(app: &TestApp, id: &str, n: usize, states: &[&str]) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let (status, order) = app.api(Method::GET, &format!("/orders/{id}"), None).await;
        assert_eq!(status, 200, "{order}");
        let pushes = order["pushes"].as_array().cloned().unwrap_or_default();
        let settled = pushes
            .iter()
            .all(|p| states.contains(&p["state"].as_str().unwrap_or("")));
        if pushes.len() == n && settled {
            return pushes;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "order {id}: wanted {n} push(es) in {states:?}, have {pushes:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The simulator's requests about order `id` (pushes to it, not ticket reads).
fn about(sim: &AffiliateSim, id: &str) -> Vec<Recorded> {
    sim.requests()
        .into_iter()
        .filter(|r| r.route != Some(Route::Ticket) && r.reference.as_deref() == Some(id))
        .collect()
}

/// The exchange log's rows of channel `aff`: (operation, outcome, http status, error).
async fn exchanges(app: &TestApp) -> Vec<(String, String, Option<i32>, Option<String>)> {
    app.with_conn(|c| {
        use diesel::prelude::*;
        use wharf::db::schema::exports as e;
        e::table
            .filter(e::kind.eq("aff"))
            .order(e::id)
            .select((e::operation, e::outcome, e::http_status, e::error))
            .load(c)
            .unwrap()
    })
    .await
}

/// The status of a push as the simulator received it.
fn status_of(r: &Recorded) -> &str {
    r.json
        .as_ref()
        .and_then(|j| j["status"].as_str())
        .unwrap_or("")
}

/// An affiliate order number that must be percent-encoded in a path (the encoding of `/`, `?`,
/// `#` and `%` is the payload's unit test: wharf's own API takes no such number in its path).
const A3: &str = "A 3+é";

async fn status_pushes_reach_the_channel_that_claims_the_source(backend: Backend) {
    let sim = AffiliateSim::start(SECRET).await;
    let app = spawn(backend, &sim, |_| {}).await;
    for (id, source) in [
        ("W-1", "web"),
        ("W-2", "web"),
        ("A-1", "affiliate"),
        ("A-2", "affiliate"),
    ] {
        put(&app, id, &order_from(source, &[("SKU-A", 2)]), 201).await;
    }
    put(&app, A3, &order_from("affiliate", &[("SKU-A", 1)]), 201).await;
    put(&app, "A-4", &order_from("affiliate", &[("SKU-A", 1)]), 201).await;

    // A shipment of an affiliate order: pushed with its consignment number; a web order's: not.
    let session = app.login().await;
    app.send_shipment(&session, "W-1", 1, &[("SKU-A", 2)], "TRK-W")
        .await;
    app.send_shipment(&session, "A-1", 2, &[("SKU-A", 2)], "TRK-1")
        .await;
    assert_eq!(app.drain().await, 2);
    until("the ship push of A-1", || about(&sim, "A-1").len() == 1).await;
    let ship = &about(&sim, "A-1")[0];
    assert_eq!(ship.method, "POST");
    assert_eq!(ship.path, "/orders/A-1/status");
    let body = ship.json.clone().unwrap();
    assert_eq!(body["status"], "shipped", "{body}");
    assert_eq!(body["order_status"], "complete", "{body}");
    assert_eq!(body["consignment_number"], "TRK-1", "{body}");
    assert_eq!(body["consignment_numbers"], json!(["TRK-1"]), "{body}");
    assert_eq!(body["carrier"], "DPD", "{body}");
    assert_eq!(body["lines"][0]["qty_shipped"], 2, "{body}");
    assert!(
        body["changed_at"].as_str().unwrap().ends_with('Z'),
        "{body}"
    );

    // Another status, a cancellation (of an order whose number needs encoding) and a refund.
    let mut holded = order_from("affiliate", &[("SKU-A", 2)]);
    holded["status"] = json!("holded");
    put(&app, "A-2", &holded, 200).await;
    cancel_ok(&app, A3).await;
    let mut refunded = order_from("affiliate", &[("SKU-A", 1)]);
    refunded["status"] = json!("refunded");
    put(&app, "A-4", &refunded, 200).await;
    cancel_ok(&app, "W-2").await;
    until("the status pushes", || {
        ["A-2", A3, "A-4"]
            .iter()
            .all(|id| about(&sim, id).len() == 1)
    })
    .await;
    assert_eq!(status_of(&about(&sim, "A-2")[0]), "holded");
    let cancel = &about(&sim, A3)[0];
    assert_eq!(cancel.path, "/orders/A%203+%C3%A9/status");
    assert_eq!(status_of(cancel), "canceled");
    assert_eq!(cancel.json.as_ref().unwrap()["order_status"], "canceled");
    assert!(
        cancel
            .json
            .as_ref()
            .unwrap()
            .get("consignment_number")
            .is_none()
    );
    assert_eq!(status_of(&about(&sim, "A-4")[0]), "refunded");

    // Once A-2's push is in, its next change is a second push with a higher sequence.
    pushes_in(&app, "A-2", 1, &["done"]).await;
    holded["status"] = json!("processing");
    put(&app, "A-2", &holded, 200).await;
    until("A-2's second push", || about(&sim, "A-2").len() == 2).await;
    let sequences: Vec<i64> = about(&sim, "A-2")
        .iter()
        .filter_map(Recorded::sequence)
        .collect();
    assert_eq!(sequences, [1, 2]);
    assert_eq!(status_of(&about(&sim, "A-2")[1]), "processing");

    // Every request was signed with the channel's secret and carried its own stable key.
    let requests = sim.requests();
    assert_eq!(requests.len(), 5, "web orders push nothing: {requests:#?}");
    let mut keys = HashSet::new();
    for r in &requests {
        assert!(r.signed && r.status == 200 && !r.replayed, "{r:#?}");
        let key = r.idempotency_key.clone().unwrap();
        assert!(key.starts_with("wharf-"), "{key}");
        assert_eq!(r.webhook_id.as_deref(), Some(key.as_str()));
        assert!(keys.insert(key), "each push has its own key");
    }

    // What the order views and the exchange log say.
    let a1 = pushes_in(&app, "A-1", 1, &["done"]).await;
    assert_eq!(a1[0]["channel"], "aff");
    assert_eq!(a1[0]["action"], "ship");
    assert_eq!(a1[0]["sequence"], 1);
    assert_eq!(a1[0]["attempts"], 0);
    assert!(a1[0]["done_at"].is_string(), "{a1:?}");
    let a2 = pushes_in(&app, "A-2", 2, &["done"]).await;
    assert_eq!(
        a2.iter().map(|p| p["action"].clone()).collect::<Vec<_>>(),
        ["status", "status"]
    );
    pushes_in(&app, A3, 1, &["done"]).await;
    pushes_in(&app, "A-4", 1, &["done"]).await;
    for web in ["W-1", "W-2"] {
        assert!(pushes_in(&app, web, 0, &[]).await.is_empty());
    }
    let log = exchanges(&app).await;
    let mut operations: Vec<&str> = log.iter().map(|(op, ..)| op.as_str()).collect();
    operations.sort_unstable();
    assert_eq!(operations, ["cancel", "refund", "ship", "status", "status"]);
    assert!(
        log.iter()
            .all(|(_, outcome, status, _)| outcome == "ok" && *status == Some(200))
    );
    let page = crate::metrics::scrape(&app).await;
    let done = |action| {
        crate::metrics::value(
            &page,
            "wharf_channel_pushes_total",
            &[("channel", "aff"), ("action", action), ("outcome", "done")],
        )
    };
    assert_eq!(done("ship"), Some(1.0), "{page}");
    assert_eq!(done("status"), Some(2.0), "{page}");
    sim.stop().await;
}

async fn edits_and_splits_push_the_order_as_it_is(backend: Backend) {
    let sim = AffiliateSim::start(SECRET).await;
    let app = spawn(backend, &sim, |_| {}).await;
    let mut order = order_from("affiliate", &[("SKU-A", 1)]);
    put(&app, "E-1", &order, 201).await;
    order = order_from("affiliate", &[("SKU-A", 3), ("SKU-B", 1)]);
    order["delivery_address"]["city"] = json!("Bath");
    put(&app, "E-1", &order, 200).await;
    until("the edit of E-1", || about(&sim, "E-1").len() == 1).await;
    let edit = &about(&sim, "E-1")[0];
    assert_eq!(
        (edit.method.as_str(), edit.path.as_str()),
        ("PUT", "/orders/E-1")
    );
    let body = edit.json.clone().unwrap();
    assert_eq!(body["reference"], "E-1");
    assert_eq!(body["status"], "processing");
    assert_eq!(body["sequence"], 1);
    assert_eq!(body["delivery_address"]["city"], "Bath", "{body}");
    let lines: Vec<(String, i64, i64)> = body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let sku = l["sku"].as_str().unwrap().to_string();
            (
                sku,
                l["qty"].as_i64().unwrap(),
                l["qty_shipped"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(lines, [("SKU-A".into(), 3, 0), ("SKU-B".into(), 1, 0)]);
    pushes_in(&app, "E-1", 1, &["done"]).await;

    // A split: the storefront's split request is another part's; here the family is recorded as
    // it makes it (the child linked to its parent) and the split task enqueued in the same
    // transaction, as it does.
    put(&app, "S-1", &order_from("affiliate", &[("SKU-A", 1)]), 201).await;
    put(
        &app,
        "S-1-2",
        &order_from("affiliate", &[("SKU-B", 2)]),
        201,
    )
    .await;
    let channels = app.settings.channels.clone();
    app.with_conn(move |c| {
        use diesel::prelude::*;
        use wharf::db::schema::orders as o;
        wharf::db::write_tx(c, |c| {
            let parent: i64 = o::table
                .filter(o::increment_id.eq("S-1"))
                .select(o::id)
                .first(c)?;
            diesel::update(o::table.filter(o::increment_id.eq("S-1-2")))
                .set(o::parent_id.eq(Some(parent)))
                .execute(c)?;
            let split = wharf::orders::sync::Change::Split;
            wharf::orders::sync::changed(c, &channels, "S-1", "affiliate", split, wharf::db::now())
        })
        .unwrap()
    })
    .await;
    wharf::outbound::wake_exporters();
    until("the split of S-1", || about(&sim, "S-1").len() == 1).await;
    let split = &about(&sim, "S-1")[0];
    assert_eq!(
        (split.method.as_str(), split.path.as_str()),
        ("POST", "/orders/S-1/split")
    );
    let body = split.json.clone().unwrap();
    assert_eq!(body["lines"][0]["sku"], "SKU-A", "{body}");
    assert_eq!(body["children"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["children"][0]["reference"], "S-1-2", "{body}");
    assert_eq!(body["children"][0]["lines"][0]["sku"], "SKU-B", "{body}");
    assert_eq!(body["children"][0]["lines"][0]["qty"], 2, "{body}");
    assert_eq!(split.status, 201);
    let pushes = pushes_in(&app, "S-1", 1, &["done"]).await;
    assert_eq!(pushes[0]["action"], "split");
    sim.stop().await;
}

async fn a_push_signed_with_another_secret_is_refused_and_dead(backend: Backend) {
    let sim = AffiliateSim::start(SECRET).await;
    let app = spawn(backend, &sim, |c| c.secret = OTHER_SECRET.into()).await;
    put(&app, "X-1", &order_from("affiliate", &[("SKU-A", 1)]), 201).await;
    let (status, body) = app.api(Method::POST, "/orders/X-1/cancel", None).await;
    assert_eq!(status, 200, "{body}");
    let pushes = pushes_in(&app, "X-1", 1, &["dead"]).await;
    let error = pushes[0]["last_error"].as_str().unwrap();
    assert!(error.contains("HTTP 401"), "{error}");
    assert!(
        error.contains("signature") && error.contains("secret"),
        "{error}"
    );
    let requests = about(&sim, "X-1");
    assert_eq!(
        requests.len(),
        1,
        "a dead push is not sent again: {requests:#?}"
    );
    assert!(!requests[0].signed);
    assert!(sim.applied().is_empty());
    let log = exchanges(&app).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].2, Some(401), "{log:?}");
    sim.stop().await;
}

async fn refusals_stale_updates_and_unavailable_answers(backend: Backend) {
    let sim = AffiliateSim::start(SECRET).await;
    let app = spawn(backend, &sim, |_| {}).await;
    for id in ["R-400", "R-409", "R-500", "R-429"] {
        put(&app, id, &order_from("affiliate", &[("SKU-A", 1)]), 201).await;
    }

    // 400: refused for good; dead with the receiver's words, not sent again.
    sim.set_behaviour(Behaviour {
        refuse: HashSet::from(["R-400".to_string()]),
        ..Behaviour::default()
    });
    cancel_ok(&app, "R-400").await;
    let dead = pushes_in(&app, "R-400", 1, &["dead"]).await;
    let error = dead[0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("HTTP 400: order R-400 is unknown here"),
        "{error}"
    );

    // 409: the receiver already has a newer update of the order; done, and the log says why.
    sim.set_behaviour(Behaviour::default());
    newer_update_at_the_receiver(&sim, "R-409", 7).await;
    cancel_ok(&app, "R-409").await;
    pushes_in(&app, "R-409", 1, &["done"]).await;
    let stale = about(&sim, "R-409");
    assert_eq!(stale.last().unwrap().status, 409);
    assert_eq!(
        sim.applied_to("R-409").len(),
        1,
        "only the receiver's own newer update"
    );
    let log = exchanges(&app).await;
    let noted = log
        .iter()
        .find(|(_, _, status, _)| *status == Some(409))
        .unwrap();
    assert!(
        noted.3.as_deref().unwrap().contains("newer update"),
        "{noted:?}"
    );

    // 500, then 429 with Retry-After: sent again (same key) until taken.
    sim.set_behaviour(Behaviour {
        http_500: 1,
        ..Behaviour::default()
    });
    cancel_ok(&app, "R-500").await;
    pushes_in(&app, "R-500", 1, &["done"]).await;
    sim.set_behaviour(Behaviour {
        http_429: 1,
        retry_after: Some("1".into()),
        ..Behaviour::default()
    });
    cancel_ok(&app, "R-429").await;
    let pushes = pushes_in(&app, "R-429", 1, &["done"]).await;
    assert_eq!(pushes[0]["attempts"], 0, "no answer counts no attempt");
    for (id, first) in [("R-500", 500), ("R-429", 429)] {
        let sent = about(&sim, id);
        let statuses: Vec<u16> = sent.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [first, 200], "{id}");
        assert_eq!(sent[0].idempotency_key, sent[1].idempotency_key, "{id}");
        assert_eq!(sent[0].sequence(), sent[1].sequence(), "{id}");
        assert_eq!(sim.applied_to(id).len(), 1, "{id}");
    }
    let log = exchanges(&app).await;
    for status in [500, 429] {
        assert!(
            log.iter()
                .any(|(_, outcome, s, _)| outcome == "http_error" && *s == Some(status)),
            "{log:?}"
        );
    }
    sim.stop().await;
}

/// `POST /orders/{id}/cancel`.
async fn app_cancel(app: &TestApp, id: &str) -> (u16, Value) {
    app.api(Method::POST, &format!("/orders/{id}/cancel"), None)
        .await
}

/// Cancels order `id`, which must be accepted.
async fn cancel_ok(app: &TestApp, id: &str) {
    let (status, body) = app_cancel(app, id).await;
    assert_eq!(status, 200, "{body}");
}

/// Applies at the simulator, as another sender would, an update of `id` with `sequence`.
async fn newer_update_at_the_receiver(sim: &AffiliateSim, id: &str, sequence: i64) {
    let body = json!({"status": "processing", "sequence": sequence}).to_string();
    let (msg, ts) = ("elsewhere-1", chrono::Utc::now().timestamp());
    let key = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(&SECRET["whsec_".len()..])
            .unwrap()
    };
    let signature =
        wharf::channels::affiliate::sign::Signer::new(&key).sign(msg, ts, body.as_bytes());
    let resp = reqwest::Client::new()
        .post(format!("{}/orders/{id}/status", sim.base_url()))
        .header("webhook-id", msg)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .header("Idempotency-Key", msg)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

/// The receiver applies the push, then answers after wharf stopped waiting (as after a crash
/// between sending and settling): the push is sent again with the same key and sequence, the
/// receiver answers it as the first time, and the change is applied once.
async fn a_push_answered_too_late_is_sent_again_and_applied_once(backend: Backend) {
    let sim = AffiliateSim::start(SECRET).await;
    let app = spawn(backend, &sim, |c| c.timeout_secs = 1).await;
    put(&app, "L-1", &order_from("affiliate", &[("SKU-A", 1)]), 201).await;
    sim.set_behaviour(Behaviour {
        slow: 1,
        delay: Duration::from_secs(3),
        ..Behaviour::default()
    });
    let (status, body) = app_cancel(&app, "L-1").await;
    assert_eq!(status, 200, "{body}");
    let pushes = pushes_in(&app, "L-1", 1, &["done"]).await;
    let sent = about(&sim, "L-1");
    assert!(sent.len() >= 2, "{sent:#?}");
    assert!(
        !sent[0].replayed && sent[1..].iter().all(|r| r.replayed),
        "{sent:#?}"
    );
    for r in &sent {
        assert_eq!(r.idempotency_key, sent[0].idempotency_key);
        assert_eq!(r.sequence(), Some(1));
    }
    assert_eq!(sim.applied_to("L-1").len(), 1);
    assert_eq!(pushes[0]["sequence"], 1);
    let log = exchanges(&app).await;
    let late = log
        .iter()
        .find(|(_, outcome, ..)| outcome == "transport_error")
        .unwrap();
    assert!(
        late.3
            .as_deref()
            .unwrap()
            .contains("did not answer within 1 s"),
        "{late:?}"
    );
    sim.stop().await;
}

async fn tickets_are_read_until_done_and_a_failed_one_is_sent_again(backend: Backend) {
    let sim = AffiliateSim::start(SECRET).await;
    let app = spawn(backend, &sim, |_| {}).await;
    for id in ["T-1", "T-2"] {
        put(&app, id, &order_from("affiliate", &[("SKU-A", 1)]), 201).await;
    }
    // Taken on with a ticket that reads pending once, then done.
    sim.set_behaviour(Behaviour {
        tickets: Some(TicketPlan {
            pending_reads: 1,
            fail: None,
        }),
        ..Behaviour::default()
    });
    let (status, body) = app_cancel(&app, "T-1").await;
    assert_eq!(status, 200, "{body}");
    let pushes = pushes_in(&app, "T-1", 1, &["done"]).await;
    assert_eq!(pushes[0]["ticket_id"], "tk_1", "{pushes:?}");
    assert_eq!(pushes[0]["batch_id"], "tk_1", "{pushes:?}");
    let reads: Vec<String> = ticket_reads(&sim);
    assert_eq!(reads, ["pending", "done"]);
    assert_eq!(sim.applied_to("T-1").len(), 1);

    // A ticket that fails: the push is sent again (an attempt counted) and taken the second time.
    sim.set_behaviour(Behaviour {
        tickets: Some(TicketPlan {
            pending_reads: 0,
            fail: Some("stock mismatch".into()),
        }),
        ..Behaviour::default()
    });
    let (status, body) = app_cancel(&app, "T-2").await;
    assert_eq!(status, 200, "{body}");
    until("the failed ticket", || {
        ticket_reads(&sim).contains(&"failed".to_string())
    })
    .await;
    sim.set_behaviour(Behaviour {
        tickets: Some(TicketPlan::default()),
        ..Behaviour::default()
    });
    let pushes = pushes_in(&app, "T-2", 1, &["done"]).await;
    assert!(pushes[0]["attempts"].as_i64().unwrap() >= 1, "{pushes:?}");
    let sent = about(&sim, "T-2");
    assert!(sent.len() >= 2, "{sent:#?}");
    assert!(
        sent.iter()
            .all(|r| r.idempotency_key == sent[0].idempotency_key && r.status == 202)
    );
    assert_eq!(sim.applied_to("T-2").len(), 1);
    let log = exchanges(&app).await;
    assert!(
        log.iter().any(|(op, _, _, error)| op == "ticket"
            && error
                .as_deref()
                .is_some_and(|e| e.contains("stock mismatch"))),
        "{log:?}"
    );
    sim.stop().await;
}

/// A status change made while the previous one's push waits for its answer finds that push's
/// task open, so adds none; the push, once answered, is followed by one with the new status.
async fn a_change_while_its_push_is_on_its_way_is_pushed_after_it(backend: Backend) {
    let sim = AffiliateSim::start(SECRET).await;
    let app = spawn(backend, &sim, |_| {}).await;
    let mut order = order_from("affiliate", &[("SKU-A", 1)]);
    put(&app, "F-1", &order, 201).await;
    sim.set_behaviour(Behaviour {
        slow: 1,
        delay: Duration::from_secs(2),
        ..Behaviour::default()
    });
    order["status"] = json!("holded");
    put(&app, "F-1", &order, 200).await;
    until("the first push", || about(&sim, "F-1").len() == 1).await;
    order["status"] = json!("payment_review");
    put(&app, "F-1", &order, 200).await;
    let pushes = pushes_in(&app, "F-1", 2, &["done"]).await;
    let sent = about(&sim, "F-1");
    let statuses: Vec<&str> = sent.iter().map(status_of).collect();
    assert_eq!(statuses, ["holded", "payment_review"], "{sent:#?}");
    let sequences: Vec<i64> = sent.iter().filter_map(Recorded::sequence).collect();
    assert_eq!(sequences, [1, 2]);
    assert_ne!(sent[0].idempotency_key, sent[1].idempotency_key);
    assert_eq!(sim.applied_to("F-1").len(), 2);
    assert_eq!(pushes[1]["sequence"], 2);
    sim.stop().await;
}

/// The states the simulator answered ticket reads with, in order.
fn ticket_reads(sim: &AffiliateSim) -> Vec<String> {
    sim.requests()
        .iter()
        .filter(|r| r.route == Some(Route::Ticket))
        .filter_map(|r| Some(r.answer["state"].as_str()?.to_string()))
        .collect()
}

/// PostgreSQL: two `wharf serve` processes with the channel, on one database. Changes made
/// through either are pushed once each, whichever process's runner takes them.
mod two_processes_push_each_change_once {
    use super::*;

    /// A `wharf serve` with the channel configured in `config`.
    struct Serve {
        child: std::process::Child,
        /// Kept so the thread reading its log keeps reading (a full pipe would stop the process).
        _log: std::sync::mpsc::Receiver<String>,
        base: String,
    }

    impl Serve {
        fn start(config: &std::path::Path, db_url: &str) -> Serve {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
            cmd.arg("--config")
                .arg(config)
                .arg("serve")
                .env("DATABASE_URL", db_url)
                .env("WHARF_LISTEN", "127.0.0.1:0")
                .env("WHARF_WORKER__IN_SERVE", "false")
                .env("WHARF_DB_POOL_SIZE", "4")
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let (child, log) = spawn_with_log(&mut cmd);
            let mut seen = Vec::new();
            let limit = Duration::from_secs(30);
            let line = wait_for_line(&log, &mut seen, "wharf is listening", limit);
            wait_for_line(&log, &mut seen, "listening for wake-ups", limit);
            let addr = line
                .split("address=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or_else(|| panic!("no address in {line:?}"))
                .to_string();
            Serve {
                child,
                _log: log,
                base: format!("http://{addr}"),
            }
        }
    }

    impl Drop for Serve {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let sim = AffiliateSim::start(SECRET).await;
        // The test's own server has no channel: it only made the database and the token.
        let app = TestApp::spawn(Backend::Postgres).await;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("wharf.toml");
        std::fs::write(
            &config,
            format!(
                "[[channels]]\nname = \"aff\"\nkind = \"http\"\nsources = [\"affiliate\"]\n\
                 base_url = \"{}\"\nsecret = \"{SECRET}\"\nship_delay_secs = 0\n\
                 backoff_base_secs = 1\nbackoff_ceiling_secs = 2\n",
                sim.base_url()
            ),
        )
        .unwrap();
        let url = app.db.url.clone();
        let (a, b) = tokio::task::spawn_blocking(move || {
            (Serve::start(&config, &url), Serve::start(&config, &url))
        })
        .await
        .unwrap();
        let bases = [a.base.clone(), b.base.clone()];
        let orders: Vec<String> = (1..=20).map(|n| format!("P-{n:02}")).collect();
        let call = |i: usize, method: Method, path: String, body: Option<Value>| {
            let mut req = app
                .client
                .request(method, format!("{}/api/v1{path}", bases[i % 2]))
                .bearer_auth(&app.token);
            if let Some(b) = body {
                req = req.json(&b);
            }
            async move { req.send().await.unwrap().status().as_u16() }
        };
        for (i, id) in orders.iter().enumerate() {
            let order = order_from("affiliate", &[("SKU-A", 1)]);
            assert_eq!(
                call(i, Method::PUT, format!("/orders/{id}"), Some(order)).await,
                201
            );
        }
        // A status change of each, through the other process than the one that made it; then,
        // once those are in, a cancellation of each.
        let mut holded = order_from("affiliate", &[("SKU-A", 1)]);
        holded["status"] = json!("holded");
        for (i, id) in orders.iter().enumerate() {
            let path = format!("/orders/{id}");
            assert_eq!(
                call(i + 1, Method::PUT, path, Some(holded.clone())).await,
                200
            );
        }
        until("the status pushes", || sim.applied().len() >= orders.len()).await;
        for (i, id) in orders.iter().enumerate() {
            assert_eq!(
                call(i, Method::POST, format!("/orders/{id}/cancel"), None).await,
                200
            );
        }
        for id in &orders {
            pushes_in(&app, id, 2, &["done"]).await;
        }
        let requests = sim.requests();
        let mut seen: HashMap<(String, String), usize> = HashMap::new();
        for r in &requests {
            assert!(r.signed && r.status == 200 && !r.replayed, "{r:#?}");
            let what = (r.reference.clone().unwrap(), status_of(r).to_string());
            *seen.entry(what).or_default() += 1;
        }
        assert_eq!(requests.len(), 2 * orders.len(), "{seen:?}");
        for id in &orders {
            for status in ["holded", "canceled"] {
                assert_eq!(
                    seen.get(&(id.clone(), status.to_string())),
                    Some(&1),
                    "{id} {status}"
                );
            }
        }
        drop((a, b));
        sim.stop().await;
    }
}
