//! A storefront PUT never moves an order backwards: an identical PUT changes nothing, `complete` and
//! `canceled` stay, what the warehouse has cannot silently change (409), and an order shipped before
//! wharf exported it is never exported afterwards (`skipped`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use wharf::Settings;
use wharf::channels::warehouse::Exporter;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, order_json};
use crate::warehouse_api::{Behaviour, WarehouseSim};

both_backends!(
    an_identical_put_changes_nothing,
    created_at_is_kept_when_a_put_leaves_it_out,
    complete_and_canceled_stay,
    an_exported_order_only_changes_its_status,
    a_put_with_status_canceled_cancels_at_the_warehouse,
    an_order_being_exported_is_locked,
    a_shipped_order_put_again_is_not_exported_again,
    an_order_shipped_before_export_is_skipped,
    shipped_while_being_exported_ends_consistent,
    concurrent_first_puts_create_the_order_once,
    an_order_cancelled_while_being_exported_is_cancelled_once_accepted,
    products_follow_their_own_schedule,
);

const WMS_USER: &str = "wharf";
const WMS_PASSWORD: &str = "wms secret";

async fn setup_with(
    backend: Backend,
    adjust: impl FnOnce(&mut Settings) + Send + 'static,
) -> (TestApp, WarehouseSim) {
    let sim = WarehouseSim::start(WMS_USER, WMS_PASSWORD).await;
    let endpoint = sim.endpoint();
    let app = TestApp::spawn_with(backend, move |s| {
        let w = &mut s.warehouse;
        w.endpoint = endpoint;
        w.username = WMS_USER.into();
        w.password = WMS_PASSWORD.into();
        w.organisation = "ACME".into();
        w.channel = "web".into();
        w.timeout_secs = 5;
        w.orders.enabled = true;
        // The server's own exporter (on its schedule) must not take the orders a test drives.
        w.orders.schedule = "0 0 1 1 *".into();
        w.orders.batch_size = 10;
        w.orders.backoff_base_secs = 0;
        adjust(s);
    })
    .await;
    (app, sim)
}

async fn setup(backend: Backend) -> (TestApp, WarehouseSim) {
    setup_with(backend, |_| {}).await
}

fn exporter(app: &TestApp) -> Exporter {
    Exporter::new(app.pool.clone(), app.settings.clone()).unwrap()
}

async fn get_order(app: &TestApp, id: &str) -> Value {
    let (status, order) = app.api(Method::GET, &format!("/orders/{id}"), None).await;
    assert_eq!(status, 200, "{order}");
    order
}

async fn put(app: &TestApp, id: &str, body: &Value) -> (u16, Value) {
    app.api(Method::PUT, &format!("/orders/{id}"), Some(body.clone()))
        .await
}

/// How often the warehouse received each order in an import document.
fn received_counts(sim: &WarehouseSim) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for r in sim.requests() {
        if r.path.ends_with("remoteorder/imports/importitems.xml")
            && let Ok(docs) = crate::warehouse_api::parse_import_document(&r.body)
        {
            for d in docs {
                *counts.entry(d.external_reference).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// Waits until the warehouse has received `n` requests (an exporter claimed and is sending).
async fn until_received(sim: &WarehouseSim, n: usize) {
    for _ in 0..250 {
        if sim.requests().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the warehouse never received request {n}");
}

async fn ship(app: &TestApp, order: &str, seq: i64, lines: &[(&str, i64)]) {
    let s = app.login().await;
    app.send_shipment(&s, order, seq, lines, &format!("T{seq}"))
        .await;
    app.drain().await;
}

fn kinds(feed: &[(i64, String, Value)]) -> Vec<String> {
    feed.iter().map(|e| e.1.clone()).collect()
}

async fn an_identical_put_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = order_json(&[("A", 2)]);
    assert_eq!(put(&app, "R-1", &body).await.0, 201);
    let before = get_order(&app, "R-1").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (status, after) = put(&app, "R-1", &body).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after, before, "nothing was written, not even updated_at");
    // Amounts that are the same number written differently are the same content.
    let mut same = body.clone();
    same["totals"]["grand_total"] = json!("25.0");
    same["lines"][0]["unit_price_gross"] = json!(10);
    let (status, after) = put(&app, "R-1", &same).await;
    assert_eq!(status, 200);
    assert_eq!(after["updated_at"], before["updated_at"]);
    assert!(app.feed().await.is_empty(), "no feed event");
    // A real change is stored.
    let mut changed = body.clone();
    changed["customer_note"] = json!("Ring twice");
    let (status, after) = put(&app, "R-1", &changed).await;
    assert_eq!(status, 200);
    assert_eq!(after["details"]["customer_note"], "Ring twice");
    assert_ne!(after["updated_at"], before["updated_at"]);
}

async fn created_at_is_kept_when_a_put_leaves_it_out(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut body = order_json(&[("A", 2)]);
    body.as_object_mut().unwrap().remove("created_at");
    assert_eq!(put(&app, "R-2", &body).await.0, 201);
    let first = get_order(&app, "R-2").await["created_at"].clone();
    tokio::time::sleep(Duration::from_millis(50)).await;
    body["customer_note"] = json!("Leave with the neighbour");
    let (status, order) = put(&app, "R-2", &body).await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["created_at"], first, "not reset to now");

    // One given with the order is kept by a later PUT without it.
    let given = order_json(&[("A", 2)]);
    let (_, order) = put(&app, "R-3", &given).await;
    let placed = order["created_at"].clone();
    let mut without = given.clone();
    without.as_object_mut().unwrap().remove("created_at");
    without["coupon"] = json!("SPRING");
    let (_, order) = put(&app, "R-3", &without).await;
    assert_eq!(order["details"]["coupon"], "SPRING");
    assert_eq!(order["created_at"], placed);
    assert_eq!(order["details"]["created_at"], "2024-05-01T09:30:00Z");
}

async fn complete_and_canceled_stay(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = order_json(&[("A", 2)]);
    put(&app, "R-10", &body).await;
    ship(&app, "R-10", 1, &[("A", 2)]).await;
    assert_eq!(get_order(&app, "R-10").await["status"], "complete");
    // The storefront's webhook retries the order as it knew it, or moves its own status on.
    for status in ["processing", "pending", "complete"] {
        let mut again = body.clone();
        again["status"] = json!(status);
        let (code, order) = put(&app, "R-10", &again).await;
        assert_eq!(code, 200, "{status}: {order}");
        assert_eq!(order["status"], "complete", "{status}");
        assert_eq!(order["lines"][0]["qty_shipped"], 2);
    }
    // A completely shipped order cannot be cancelled, by PUT or by the cancel endpoint.
    let mut cancel = body.clone();
    cancel["status"] = json!("canceled");
    let (code, problem) = put(&app, "R-10", &cancel).await;
    assert_eq!(code, 409, "{problem}");
    assert_eq!(problem["code"], "order_complete");
    assert_eq!(problem["fields"], json!(["status"]));
    let (code, problem) = app.api(Method::POST, "/orders/R-10/cancel", None).await;
    assert_eq!(code, 409);
    assert_eq!(problem["code"], "order_complete");

    put(&app, "R-11", &body).await;
    assert_eq!(
        app.api(Method::POST, "/orders/R-11/cancel", None).await.0,
        200
    );
    // A retry of the order as it was before the cancellation changes nothing.
    let (code, order) = put(&app, "R-11", &body).await;
    assert_eq!(code, 200);
    assert_eq!(order["status"], "canceled");
    // Reopening it is refused, and nothing of the PUT is stored.
    let mut reopen = body.clone();
    reopen["customer_note"] = json!("Actually, send it");
    let (code, problem) = put(&app, "R-11", &reopen).await;
    assert_eq!(code, 409, "{problem}");
    assert_eq!(problem["code"], "order_canceled");
    assert_eq!(problem["fields"], json!(["status"]));
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Place a new order"),
        "{problem}"
    );
    let order = get_order(&app, "R-11").await;
    assert_eq!(order["status"], "canceled");
    assert_eq!(order["details"]["customer_note"], Value::Null);
    // Saying it is cancelled (in either spelling) is fine.
    let mut cancelled = body.clone();
    cancelled["status"] = json!("cancelled");
    let (code, order) = put(&app, "R-11", &cancelled).await;
    assert_eq!(code, 200, "{order}");
    assert_eq!(order["status"], "canceled");
}

async fn an_exported_order_only_changes_its_status(backend: Backend) {
    let (app, sim) = setup(backend).await;
    let body = order_json(&[("A", 2), ("B", 1)]);
    put(&app, "R-20", &body).await;
    assert_eq!(exporter(&app).export_orders().await.unwrap().exported, 1);
    let exported = get_order(&app, "R-20").await;
    assert_eq!(exported["export"]["status"], "exported");

    let mut changed = body.clone();
    changed["lines"][0]["qty"] = json!(3);
    changed["lines"][1]["sku"] = json!("C");
    changed["delivery_address"]["postcode"] = json!("EC1A 1BB");
    changed["shipping_method"] = json!({"code": "express", "name": "Express"});
    let (code, problem) = put(&app, "R-20", &changed).await;
    assert_eq!(code, 409, "{problem}");
    assert_eq!(problem["code"], "order_locked");
    assert_eq!(
        problem["fields"],
        json!([
            "shipping_method",
            "delivery_address.postcode",
            "lines[0].qty",
            "lines[1].sku"
        ])
    );
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("has been exported"), "{detail}");
    assert!(detail.contains("cancel it"), "{detail}");
    // A line more or less is refused too.
    let (code, problem) = put(&app, "R-20", &order_json(&[("A", 2)])).await;
    assert_eq!(code, 409);
    assert_eq!(problem["fields"], json!(["lines"]));
    // Nothing of it was stored, and nothing more was sent.
    assert_eq!(get_order(&app, "R-20").await, exported);
    assert_eq!(exporter(&app).export_orders().await.unwrap().items, 0);
    assert_eq!(received_counts(&sim).get("R-20"), Some(&1));

    // Its status may still move on; the export state stays.
    let mut on_hold = body.clone();
    on_hold["status"] = json!("holded");
    let (code, order) = put(&app, "R-20", &on_hold).await;
    assert_eq!(code, 200, "{order}");
    assert_eq!(order["status"], "holded");
    assert_eq!(order["export"]["status"], "exported");
    assert_eq!(
        order["export"]["exported_at"],
        exported["export"]["exported_at"]
    );
    sim.stop().await;
}

async fn a_put_with_status_canceled_cancels_at_the_warehouse(backend: Backend) {
    let (app, sim) = setup(backend).await;
    let body = order_json(&[("A", 1)]);
    put(&app, "R-30", &body).await;
    let ex = exporter(&app);
    ex.export_orders().await.unwrap();
    // Cancelling with other lines is still a change to what the warehouse has.
    let mut cancel = order_json(&[("A", 5)]);
    cancel["status"] = json!("canceled");
    let (code, problem) = put(&app, "R-30", &cancel).await;
    assert_eq!(code, 409, "{problem}");
    assert_eq!(problem["fields"], json!(["lines[0].qty"]));
    let mut cancel = body.clone();
    cancel["status"] = json!("canceled");
    let (code, order) = put(&app, "R-30", &cancel).await;
    assert_eq!(code, 200, "{order}");
    assert_eq!(order["status"], "canceled");
    // Exactly as after POST …/cancel: the exporter tells the warehouse, once.
    assert_eq!(ex.send_cancellations().await.unwrap(), 1);
    assert_eq!(sim.cancelled(), vec!["R-30".to_string()]);
    assert_eq!(ex.send_cancellations().await.unwrap(), 0);
    // An order the warehouse never had is simply cancelled, never sent.
    put(&app, "R-31", &body).await;
    let (code, order) = put(&app, "R-31", &cancel).await;
    assert_eq!(code, 200);
    assert_eq!(order["status"], "canceled");
    assert_eq!(ex.export_orders().await.unwrap().items, 0);
    assert_eq!(ex.send_cancellations().await.unwrap(), 0);
    assert!(!received_counts(&sim).contains_key("R-31"));
    sim.stop().await;
}

async fn an_order_being_exported_is_locked(backend: Backend) {
    let (app, sim) = setup(backend).await;
    let body = order_json(&[("A", 2)]);
    put(&app, "R-40", &body).await;
    sim.set_behaviour(Behaviour {
        hang: Some(Duration::from_millis(1500)),
        ..Behaviour::default()
    });
    let ex = Arc::new(exporter(&app));
    let sending = tokio::spawn({
        let ex = ex.clone();
        async move { ex.export_orders().await.unwrap() }
    });
    until_received(&sim, 1).await;
    let mut changed = body.clone();
    changed["lines"][0]["qty"] = json!(4);
    let (code, problem) = put(&app, "R-40", &changed).await;
    assert_eq!(code, 409, "{problem}");
    assert_eq!(problem["code"], "order_locked");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("is being exported to the warehouse right now"),
        "{problem}"
    );
    assert_eq!(sending.await.unwrap().exported, 1);
    let order = get_order(&app, "R-40").await;
    assert_eq!(order["export"]["status"], "exported");
    assert_eq!(order["lines"][0]["qty"], 2, "what the warehouse received");
    let got = sim.orders();
    assert_eq!(got[0].field("orderLine.1.quantity"), Some("2"));
    sim.stop().await;
}

/// The reproduction: PUT, export, ship fully, PUT again, export again.
async fn a_shipped_order_put_again_is_not_exported_again(backend: Backend) {
    let (app, sim) = setup(backend).await;
    let body = order_json(&[("A", 2)]);
    put(&app, "R-50", &body).await;
    let ex = exporter(&app);
    assert_eq!(ex.export_orders().await.unwrap().exported, 1);
    ship(&app, "R-50", 1, &[("A", 2)]).await;
    let (code, order) = put(&app, "R-50", &body).await;
    assert_eq!(code, 200, "{order}");
    assert_eq!(order["status"], "complete");
    assert_eq!(order["export"]["status"], "exported");
    assert_eq!(ex.export_orders().await.unwrap().items, 0);
    assert_eq!(received_counts(&sim), HashMap::from([("R-50".into(), 1)]));
    sim.stop().await;
}

async fn an_order_shipped_before_export_is_skipped(backend: Backend) {
    // Even where complete orders count as exportable, a skipped one is never sent.
    let (app, sim) = setup_with(backend, |s| {
        s.warehouse.orders.exportable_statuses = vec!["processing".into(), "complete".into()];
    })
    .await;
    let body = order_json(&[("A", 2), ("B", 1)]);
    put(&app, "R-60", &body).await;
    ship(&app, "R-60", 1, &[("A", 1)]).await;
    assert_eq!(
        get_order(&app, "R-60").await["export"]["status"],
        "pending",
        "partly shipped: still to export"
    );
    ship(&app, "R-60", 2, &[("A", 1), ("B", 1)]).await;
    let order = get_order(&app, "R-60").await;
    assert_eq!(order["status"], "complete");
    assert_eq!(order["export"]["status"], "skipped");
    assert_eq!(order["export"]["note"], "shipped before export");
    let feed = app.feed().await;
    let last = feed.last().unwrap();
    assert_eq!(last.1, "order.export_status_changed");
    assert_eq!(
        last.2,
        json!({"order": "R-60", "status": "skipped", "previous": "pending",
            "message": "shipped before export", "attempts": 0})
    );
    // The webhook retry that used to reopen it and get it sent.
    assert_eq!(put(&app, "R-60", &body).await.0, 200);
    let ex = exporter(&app);
    assert_eq!(ex.export_orders().await.unwrap().items, 0);
    assert!(received_counts(&sim).is_empty(), "nothing was sent");
    let order = get_order(&app, "R-60").await;
    assert_eq!(
        (order["status"].clone(), order["export"]["status"].clone()),
        (json!("complete"), json!("skipped"))
    );
    // Its content is settled.
    let (code, problem) = put(&app, "R-60", &order_json(&[("A", 2), ("B", 2)])).await;
    assert_eq!(code, 409);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("has shipped completely")
    );
    sim.stop().await;
}

async fn shipped_while_being_exported_ends_consistent(backend: Backend) {
    let (app, sim) = setup(backend).await;
    let ex = Arc::new(exporter(&app));
    // (order, the warehouse refuses it, export status at the end)
    for (n, (id, refused, end)) in [("R-70", true, "skipped"), ("R-71", false, "exported")]
        .into_iter()
        .enumerate()
    {
        put(&app, id, &order_json(&[("A", 1)])).await;
        // Long enough for the shipment to be applied while the exporter waits for the answer.
        sim.set_behaviour(Behaviour {
            hang: Some(Duration::from_millis(2500)),
            fail: if refused {
                [id.to_string()].into()
            } else {
                Default::default()
            },
            ..Behaviour::default()
        });
        let sending = tokio::spawn({
            let ex = ex.clone();
            async move { ex.export_orders().await.unwrap() }
        });
        until_received(&sim, n + 1).await;
        // The warehouse ships it while wharf's document is on its way.
        ship(&app, id, 10 + n as i64, &[("A", 1)]).await;
        let order = get_order(&app, id).await;
        assert_eq!(order["status"], "complete", "{id}");
        assert_eq!(order["export"]["status"], "skipped", "{id}");
        sending.await.unwrap();
        let order = get_order(&app, id).await;
        assert_eq!(order["export"]["status"], end, "{id}: {order}");
        sim.set_behaviour(Behaviour::default());
        assert_eq!(ex.export_orders().await.unwrap().items, 0, "{id}");
        assert_eq!(received_counts(&sim).get(id), Some(&1), "{id}");
    }
    let feed = app.feed().await;
    assert!(kinds(&feed).contains(&"order.completed".to_string()));
    assert!(
        !feed
            .iter()
            .any(|e| e.1 == "order.export_status_changed" && e.2["status"] == "failed"),
        "a shipped order is never failed-to-retry: {feed:?}"
    );
    sim.stop().await;
}

async fn concurrent_first_puts_create_the_order_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for i in 0..10 {
        let id = format!("R-80-{i}");
        let (a, b) = tokio::join!(
            app.put_order(&id, &[("A", 1)]),
            app.put_order(&id, &[("A", 1)])
        );
        let mut codes = [a.0, b.0];
        codes.sort();
        assert_eq!(codes, [200, 201], "{id}: {a:?} {b:?}");
    }
}

/// An order cancelled while its export is on the way: once the warehouse accepts it, its
/// cancellation is due (added with that acceptance), and it is sent once.
async fn an_order_cancelled_while_being_exported_is_cancelled_once_accepted(backend: Backend) {
    let (app, sim) = setup(backend).await;
    put(&app, "R-60", &order_json(&[("A", 1)])).await;
    sim.set_behaviour(Behaviour {
        hang: Some(Duration::from_millis(800)),
        ..Behaviour::default()
    });
    let ex = Arc::new(exporter(&app));
    let sending = tokio::spawn({
        let ex = ex.clone();
        async move { ex.export_orders().await.unwrap() }
    });
    until_received(&sim, 1).await;
    let (code, order) = app.api(Method::POST, "/orders/R-60/cancel", None).await;
    assert!(code == 200 || code == 204, "{order}");
    assert!(
        get_order(&app, "R-60").await["cancellation"].is_null(),
        "not exported yet"
    );
    assert_eq!(sending.await.unwrap().exported, 1);
    let order = get_order(&app, "R-60").await;
    assert_eq!(order["export"]["status"], "exported", "{order}");
    assert_eq!(order["cancellation"]["state"], "pending", "{order}");
    sim.set_behaviour(Behaviour::default());
    assert_eq!(ex.send_cancellations().await.unwrap(), 1);
    assert_eq!(sim.cancelled(), vec!["R-60".to_string()]);
    assert_eq!(ex.send_cancellations().await.unwrap(), 0);
    let order = get_order(&app, "R-60").await;
    assert_eq!(order["cancellation"]["state"], "sent", "{order}");
    sim.stop().await;
}

/// The server's outbound runners: products go on `warehouse.products.schedule`, orders on theirs.
async fn products_follow_their_own_schedule(backend: Backend) {
    let (app, sim) = setup_with(backend, |s| {
        s.warehouse.orders.schedule = "0 0 1 1 *".into();
        s.warehouse.products.enabled = true;
        s.warehouse.products.schedule = "* * * * * *".into();
    })
    .await;
    put(&app, "R-70", &order_json(&[("A", 1)])).await;
    let (code, body) = app
        .api(
            Method::PUT,
            "/products/SCHED-1",
            Some(json!({"name": "Mug"})),
        )
        .await;
    assert!(code == 200 || code == 201, "{body}");
    for _ in 0..250 {
        if !sim.products().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent: Vec<String> = sim
        .products()
        .into_iter()
        .map(|p| p.external_reference)
        .collect();
    assert_eq!(sent, ["SCHED-1"], "the products' runner sent it");
    // The runner settles after the answer: wait for the product to read as exported, so the test
    // does not end while the runner still holds the task.
    for _ in 0..250 {
        let (_, p) = app.api(Method::GET, "/products/SCHED-1", None).await;
        if !p["exported_at"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, p) = app.api(Method::GET, "/products/SCHED-1", None).await;
    assert!(!p["exported_at"].is_null(), "{p}");
    assert!(
        sim.orders().is_empty(),
        "orders wait for their own schedule"
    );
    sim.stop().await;
}
