//! Splitting an order through the storefront API (`POST /api/v1/orders/{id}/split`): the children
//! are orders of their own (exported to the warehouse simulator as such), the parent keeps what no
//! child takes, every unit stays accounted for, what the warehouse has cannot be split, bad splits
//! are refused whole, a PUT of the parent cannot undo a split, and the feed and the order's channel
//! hear of it.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};
use wharf::channels::warehouse::Exporter;
use wharf::config::{ChannelKind, ChannelSettings};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, order_json};
use crate::warehouse_api::WarehouseSim;

both_backends!(
    a_split_taking_everything_exports_the_children_not_the_parent,
    a_partial_split_keeps_the_rest_on_the_parent,
    an_exported_order_cannot_be_split,
    a_split_asking_for_what_is_not_there_is_refused_whole,
    a_child_number_in_use_is_refused,
    a_put_of_the_parent_cannot_undo_the_split,
    the_feed_carries_the_split,
    the_parents_channel_hears_the_split,
);

const WMS_USER: &str = "wharf";
const WMS_PASSWORD: &str = "wms secret";

/// A test app exporting orders to the warehouse simulator when a test says so.
async fn setup(backend: Backend) -> (TestApp, WarehouseSim) {
    let sim = WarehouseSim::start(WMS_USER, WMS_PASSWORD).await;
    let endpoint = sim.endpoint();
    let app = TestApp::spawn_with(backend, move |s| {
        let w = &mut s.warehouse;
        w.endpoint = endpoint;
        w.username = WMS_USER.into();
        w.password = WMS_PASSWORD.into();
        w.organisation = "ACME".into();
        w.channel = "web shop".into();
        w.timeout_secs = 5;
        w.orders.enabled = true;
        w.orders.batch_size = 10;
        w.orders.backoff_base_secs = 0;
        // The server's own exporter (on its schedule) must not take the orders a test drives.
        w.orders.schedule = "0 0 1 1 *".into();
    })
    .await;
    (app, sim)
}

async fn export(app: &TestApp) {
    Exporter::new(app.pool.clone(), app.settings.clone())
        .unwrap()
        .export_orders()
        .await
        .unwrap();
}

async fn split(app: &TestApp, id: &str, children: Value) -> (u16, Value) {
    app.api(
        Method::POST,
        &format!("/orders/{id}/split"),
        Some(json!({ "children": children })),
    )
    .await
}

async fn get_order(app: &TestApp, id: &str) -> Value {
    let (status, order) = app.api(Method::GET, &format!("/orders/{id}"), None).await;
    assert_eq!(status, 200, "{order}");
    order
}

/// The order's lines as (sku, qty, qty_shipped).
fn lines(order: &Value) -> Vec<(String, i64, i64)> {
    order["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["sku"].as_str().unwrap().to_string(),
                l["qty"].as_i64().unwrap(),
                l["qty_shipped"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Units per SKU (ordered, shipped) over orders.
fn units(orders: &[&Value]) -> BTreeMap<String, (i64, i64)> {
    let mut out = BTreeMap::new();
    for o in orders {
        for (sku, qty, shipped) in lines(o) {
            let e: &mut (i64, i64) = out.entry(sku).or_default();
            e.0 += qty;
            e.1 += shipped;
        }
    }
    out
}

fn s(v: &str) -> String {
    v.to_string()
}

/// A decimal string of the view as a number of cents (`"6.67"` → 667).
fn cents(v: &Value) -> i64 {
    let text = v
        .as_str()
        .unwrap_or_else(|| panic!("not a decimal string: {v}"));
    let (whole, frac) = text.split_once('.').unwrap_or((text, "0"));
    let frac = format!("{frac:0<2}");
    whole.parse::<i64>().unwrap() * 100 + frac[..2].parse::<i64>().unwrap()
}

async fn a_split_taking_everything_exports_the_children_not_the_parent(backend: Backend) {
    let (app, sim) = setup(backend).await;
    assert_eq!(app.put_order("S-1", &[("MUG", 2), ("CUP", 1)]).await.0, 201);
    let (status, parent) = split(
        &app,
        "S-1",
        json!([
            {"increment_id": "S-1-A", "lines": [{"sku": "MUG", "qty": 2}]},
            {"increment_id": "S-1-B", "lines": [{"sku": "CUP", "qty": 1}]},
        ]),
    )
    .await;
    assert_eq!(status, 200, "{parent}");
    assert_eq!(parent["status"], "split");
    assert_eq!(parent["children"], json!(["S-1-A", "S-1-B"]));
    assert!(lines(&parent).is_empty(), "{parent}");
    assert_eq!(parent["export"]["status"], "skipped");
    assert_eq!(parent["export"]["note"], "split into S-1-A, S-1-B");

    let a = get_order(&app, "S-1-A").await;
    assert_eq!(a["parent"], "S-1");
    assert_eq!(lines(&a), vec![(s("MUG"), 2, 0)]);
    // The parent's document: status, source, currency, addresses, methods.
    let original = order_json(&[("MUG", 2), ("CUP", 1)]);
    assert_eq!(parent["details"]["delivery_address"]["city"], "London");
    for field in ["status", "source", "currency"] {
        assert_eq!(a[field], original[field], "{field}");
    }
    for field in [
        "delivery_address",
        "billing_address",
        "shipping_method",
        "payment_method",
    ] {
        assert_eq!(a["details"][field], parent["details"][field], "{field}");
    }
    // The whole line went to the child: its row totals; the child's totals are its lines'.
    assert_eq!(cents(&a["lines"][0]["row_total_gross"]), 2000);
    assert_eq!(cents(&a["details"]["totals"]["grand_total"]), 2000);
    assert_eq!(cents(&a["details"]["totals"]["subtotal"]), 1667);
    assert_eq!(cents(&a["details"]["totals"]["shipping"]), 0);

    export(&app).await;
    let received: BTreeMap<String, Vec<(String, String)>> = sim
        .orders()
        .into_iter()
        .map(|o| {
            let line = (
                o.field("orderLine.1.product.externalReference")
                    .unwrap()
                    .to_string(),
                o.field("orderLine.1.quantity").unwrap().to_string(),
            );
            assert!(o.field("orderLine.2.quantity").is_none(), "{o:?}");
            (o.external_reference, vec![line])
        })
        .collect();
    assert_eq!(
        received,
        BTreeMap::from([
            (s("S-1-A"), vec![(s("MUG"), s("2"))]),
            (s("S-1-B"), vec![(s("CUP"), s("1"))]),
        ]),
        "the children are exported as their own orders, the parent not at all"
    );
    assert_eq!(
        get_order(&app, "S-1-B").await["export"]["status"],
        "exported"
    );
    assert_eq!(get_order(&app, "S-1").await["export"]["status"], "skipped");
    sim.stop().await;
}

async fn a_partial_split_keeps_the_rest_on_the_parent(backend: Backend) {
    let (app, sim) = setup(backend).await;
    let original = [("MUG", 3), ("CUP", 2), ("PLATE", 1)];
    assert_eq!(app.put_order("S-2", &original).await.0, 201);
    let session = app.login().await;
    app.send_shipment(&session, "S-2", 1, &[("MUG", 1)], "TRK-1")
        .await;
    app.drain().await;
    let before = get_order(&app, "S-2").await;

    let (status, parent) = split(
        &app,
        "S-2",
        json!([
            {"increment_id": "S-2-A", "lines": [{"sku": "MUG", "qty": 1}, {"sku": "CUP", "qty": 1}]},
            {"increment_id": "S-2-B", "lines": [{"sku": "CUP", "qty": 1}]},
        ]),
    )
    .await;
    assert_eq!(status, 200, "{parent}");
    assert_eq!(parent["status"], "processing");
    assert_eq!(parent["export"]["status"], "pending");
    // The CUP line went whole; the MUG line keeps its shipped unit and one more.
    assert_eq!(lines(&parent), vec![(s("MUG"), 2, 1), (s("PLATE"), 1, 0)]);
    assert_eq!(parent["shipments"].as_array().unwrap().len(), 1);
    let a = get_order(&app, "S-2-A").await;
    let b = get_order(&app, "S-2-B").await;
    assert_eq!(lines(&a), vec![(s("MUG"), 1, 0), (s("CUP"), 1, 0)]);
    assert_eq!(lines(&b), vec![(s("CUP"), 1, 0)]);
    assert_eq!(
        units(&[&parent, &a, &b]),
        units(&[&before]),
        "children and parent hold what the order held, per SKU"
    );

    // Row totals are shared by units and add up to the original row: 20.00 over 3 MUGs.
    let mug_a = cents(&a["lines"][0]["row_total_gross"]);
    let mug_parent = cents(&parent["lines"][0]["row_total_gross"]);
    assert_eq!((mug_a, mug_parent), (667, 1333));
    let cup_a = cents(&a["lines"][1]["row_total_gross"]);
    let cup_b = cents(&b["lines"][0]["row_total_gross"]);
    assert_eq!(cup_a + cup_b, 2000);
    assert_eq!(cents(&a["details"]["totals"]["grand_total"]), mug_a + cup_a);

    // The parent is exported with what it kept.
    export(&app).await;
    let exported: Vec<_> = sim
        .orders()
        .into_iter()
        .filter(|o| o.external_reference == "S-2")
        .collect();
    assert_eq!(exported.len(), 1);
    assert_eq!(
        exported[0].field("orderLine.1.product.externalReference"),
        Some("MUG")
    );
    assert_eq!(exported[0].field("orderLine.1.quantity"), Some("2"));
    assert_eq!(
        exported[0].field("orderLine.2.product.externalReference"),
        Some("PLATE")
    );
    assert!(exported[0].field("orderLine.3.quantity").is_none());
    sim.stop().await;
}

async fn an_exported_order_cannot_be_split(backend: Backend) {
    let (app, sim) = setup(backend).await;
    app.put_order("S-3", &[("MUG", 2)]).await;
    export(&app).await;
    assert_eq!(get_order(&app, "S-3").await["export"]["status"], "exported");
    let (status, problem) = split(
        &app,
        "S-3",
        json!([{"increment_id": "S-3-A", "lines": [{"sku": "MUG", "qty": 1}]}]),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "order_locked");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("has been exported to the warehouse") && detail.contains("cancel it"),
        "{detail}"
    );
    let order = get_order(&app, "S-3").await;
    assert_eq!(order["children"], json!([]));
    assert_eq!(lines(&order), vec![(s("MUG"), 2, 0)]);
    assert_eq!(
        app.api(Method::GET, "/orders/S-3-A", None).await.0,
        404,
        "no child was made"
    );
    sim.stop().await;
}

async fn a_split_asking_for_what_is_not_there_is_refused_whole(backend: Backend) {
    let (app, sim) = setup(backend).await;
    app.put_order("S-4", &[("MUG", 3), ("CUP", 1)]).await;
    let session = app.login().await;
    app.send_shipment(&session, "S-4", 1, &[("MUG", 2)], "TRK-1")
        .await;
    app.drain().await;
    let mug = |qty| json!({"sku": "MUG", "qty": qty});
    let cases = [
        (
            "more than has not shipped",
            json!([{"increment_id": "S-4-A", "lines": [mug(2)]}]),
            "children[0].lines[0].qty",
            "1 (3 ordered, 2 shipped, 0 taken",
        ),
        (
            "more than the children before left",
            json!([
                {"increment_id": "S-4-A", "lines": [{"sku": "CUP", "qty": 1}, mug(1)]},
                {"increment_id": "S-4-B", "lines": [mug(1)]},
            ]),
            "children[1].lines[0].qty",
            "0 (3 ordered, 2 shipped, 1 taken",
        ),
        (
            "an SKU the order does not have",
            json!([{"increment_id": "S-4-A", "lines": [{"sku": "BOWL", "qty": 1}]}]),
            "children[0].lines[0].sku",
            "no line of SKU \"BOWL\"",
        ),
        (
            "a child number twice",
            json!([
                {"increment_id": "S-4-A", "lines": [mug(1)]},
                {"increment_id": "S-4-A", "lines": [{"sku": "CUP", "qty": 1}]},
            ]),
            "children[1].increment_id",
            "children[0] already",
        ),
        ("no children", json!([]), "children", "give 1 to"),
        (
            "a quantity of zero",
            json!([{"increment_id": "S-4-A", "lines": [mug(0)]}]),
            "children[0].lines[0].qty",
            "not a quantity above 0",
        ),
    ];
    for (label, children, field, says) in cases {
        let (status, problem) = split(&app, "S-4", children).await;
        assert_eq!(status, 422, "{label}: {problem}");
        assert_eq!(problem["code"], "invalid_field", "{label}: {problem}");
        assert_eq!(problem["field"], field, "{label}: {problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{label}: {detail}");
    }
    let order = get_order(&app, "S-4").await;
    assert_eq!(order["children"], json!([]));
    assert_eq!(lines(&order), vec![(s("MUG"), 3, 2), (s("CUP"), 1, 0)]);
    for child in ["S-4-A", "S-4-B"] {
        assert_eq!(
            app.api(Method::GET, &format!("/orders/{child}"), None)
                .await
                .0,
            404,
            "{child} was not made"
        );
    }

    // Children that take all that has not shipped leave the parent complete, as a shipment would.
    let (status, parent) = split(
        &app,
        "S-4",
        json!([{"increment_id": "S-4-A", "lines": [mug(1), {"sku": "CUP", "qty": 1}]}]),
    )
    .await;
    assert_eq!(status, 200, "{parent}");
    assert_eq!(parent["status"], "complete");
    assert_eq!(lines(&parent), vec![(s("MUG"), 2, 2)]);
    assert_eq!(parent["export"]["status"], "skipped");
    assert_eq!(parent["export"]["note"], "shipped before export");
    let feed = app.feed().await;
    assert!(
        feed.iter()
            .any(|(_, kind, data)| kind == "order.completed" && data["order"] == "S-4"),
        "{feed:?}"
    );
    sim.stop().await;
}

async fn a_child_number_in_use_is_refused(backend: Backend) {
    let (app, sim) = setup(backend).await;
    app.put_order("S-5", &[("MUG", 2)]).await;
    app.put_order("OTHER", &[("CUP", 1)]).await;
    let (status, problem) = split(
        &app,
        "S-5",
        json!([
            {"increment_id": "S-5-A", "lines": [{"sku": "MUG", "qty": 1}]},
            {"increment_id": "OTHER", "lines": [{"sku": "MUG", "qty": 1}]},
        ]),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "order_exists");
    assert_eq!(problem["fields"], json!(["children[1].increment_id"]));
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("order OTHER exists already"),
        "{problem}"
    );
    // Nothing of it was stored, not even the first child.
    assert_eq!(app.api(Method::GET, "/orders/S-5-A", None).await.0, 404);
    let parent = get_order(&app, "S-5").await;
    assert_eq!(
        (parent["children"].clone(), lines(&parent)),
        (json!([]), vec![(s("MUG"), 2, 0)])
    );
    let other = get_order(&app, "OTHER").await;
    assert_eq!(
        (other["parent"].clone(), lines(&other)),
        (Value::Null, vec![(s("CUP"), 1, 0)])
    );
    sim.stop().await;
}

async fn a_put_of_the_parent_cannot_undo_the_split(backend: Backend) {
    let (app, sim) = setup(backend).await;
    let original = order_json(&[("MUG", 2), ("CUP", 1)]);
    app.put_order("S-6", &[("MUG", 2), ("CUP", 1)]).await;
    let (status, _) = split(
        &app,
        "S-6",
        json!([{"increment_id": "S-6-A", "lines": [{"sku": "MUG", "qty": 2}]}]),
    )
    .await;
    assert_eq!(status, 200);

    // The storefront sends the order as it had it before the split.
    let (status, problem) = app
        .api(Method::PUT, "/orders/S-6", Some(original.clone()))
        .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "order_split");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("S-6-A holds 2 × MUG") && detail.contains("holds 1 × CUP itself"),
        "{detail}"
    );
    assert!(
        problem["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f.as_str().unwrap().starts_with("lines")),
        "{problem}"
    );
    let parent = get_order(&app, "S-6").await;
    assert_eq!(lines(&parent), vec![(s("CUP"), 1, 0)]);

    // Its status still changes (the rest of the document as wharf holds it).
    let mut status_only = parent["details"].clone();
    status_only["status"] = json!("holded");
    let (status, changed) = app.api(Method::PUT, "/orders/S-6", Some(status_only)).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["status"], "holded");
    assert_eq!(lines(&changed), vec![(s("CUP"), 1, 0)]);

    // A child follows the normal rules: a PUT may change its lines.
    let (status, child) = app.put_order("S-6-A", &[("MUG", 1), ("SAUCER", 1)]).await;
    assert_eq!(status, 200, "{child}");
    assert_eq!(lines(&child), vec![(s("MUG"), 1, 0), (s("SAUCER"), 1, 0)]);
    assert_eq!(child["parent"], "S-6");

    // A parent that kept nothing stays `split` and cannot be cancelled: its children are the orders.
    app.put_order("S-7", &[("MUG", 1)]).await;
    split(
        &app,
        "S-7",
        json!([{"increment_id": "S-7-A", "lines": [{"sku": "MUG", "qty": 1}]}]),
    )
    .await;
    let (status, problem) = app.api(Method::POST, "/orders/S-7/cancel", None).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "order_split");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("S-7-A holds 1 × MUG"),
        "{problem}"
    );
    let (status, problem) = split(
        &app,
        "S-7",
        json!([{"increment_id": "S-7-B", "lines": [{"sku": "MUG", "qty": 1}]}]),
    )
    .await;
    assert_eq!(
        (status, problem["code"].clone()),
        (409, json!("order_split"))
    );
    assert_eq!(get_order(&app, "S-7").await["status"], "split");
    sim.stop().await;
}

async fn the_feed_carries_the_split(backend: Backend) {
    let (app, sim) = setup(backend).await;
    app.put_order("S-8", &[("MUG", 2), ("CUP", 1)]).await;
    app.put_order("S-9", &[("MUG", 2)]).await;
    split(
        &app,
        "S-8",
        json!([{"increment_id": "S-8-A", "lines": [{"sku": "MUG", "qty": 1}]}]),
    )
    .await;
    split(
        &app,
        "S-9",
        json!([{"increment_id": "S-9-A", "lines": [{"sku": "MUG", "qty": 2}]}]),
    )
    .await;
    let feed = app.feed().await;
    let splits: Vec<&Value> = feed
        .iter()
        .filter(|(_, kind, _)| kind == "order.split")
        .map(|(_, _, data)| data)
        .collect();
    assert_eq!(
        splits,
        vec![
            &json!({
                "order": "S-8",
                "children": [{"order": "S-8-A", "lines": [{"sku": "MUG", "qty": 1}]}],
                "kept": [{"sku": "MUG", "qty": 1}, {"sku": "CUP", "qty": 1}],
            }),
            &json!({
                "order": "S-9",
                "children": [{"order": "S-9-A", "lines": [{"sku": "MUG", "qty": 2}]}],
                "kept": [],
            }),
        ]
    );
    // The parent that kept nothing is never exported, and the feed says so.
    let skipped: Vec<&Value> = feed
        .iter()
        .filter(|(_, kind, data)| kind == "order.export_status_changed" && data["order"] == "S-9")
        .map(|(_, _, data)| data)
        .collect();
    assert_eq!(skipped.len(), 1, "{feed:?}");
    assert_eq!(skipped[0]["status"], "skipped");
    assert_eq!(skipped[0]["message"], "split into S-9-A");
    sim.stop().await;
}

async fn the_parents_channel_hears_the_split(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.channels = vec![ChannelSettings {
            name: "partners".into(),
            kind: ChannelKind::Http,
            sources: vec!["affiliate".into()],
            // Nothing listens there: this test reads the task, not what is sent.
            base_url: "http://127.0.0.1:9/api".into(),
            secret: "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=".into(),
            ..ChannelSettings::default()
        }];
    })
    .await;
    let mut order = order_json(&[("MUG", 2)]);
    order["source"] = json!("affiliate");
    let (status, _) = app.api(Method::PUT, "/orders/S-10", Some(order)).await;
    assert_eq!(status, 201);
    let (status, parent) = split(
        &app,
        "S-10",
        json!([{"increment_id": "S-10-A", "lines": [{"sku": "MUG", "qty": 1}]}]),
    )
    .await;
    assert_eq!(status, 200, "{parent}");
    let pushes: Vec<(&str, &str)> = parent["pushes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["channel"].as_str().unwrap(),
                p["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(pushes, vec![("partners", "split")], "{parent}");
    let child = get_order(&app, "S-10-A").await;
    assert_eq!(
        child["source"], "affiliate",
        "the child keeps the parent's source"
    );

    // A web order's split pushes nothing.
    app.put_order("S-11", &[("MUG", 2)]).await;
    let (_, web) = split(
        &app,
        "S-11",
        json!([{"increment_id": "S-11-A", "lines": [{"sku": "MUG", "qty": 1}]}]),
    )
    .await;
    assert_eq!(web["pushes"], json!([]));
    // The split's push went to nowhere: let its attempt settle before the end-of-test check.
    app.channels_quiet().await;
}
