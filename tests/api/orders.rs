//! Orders from the storefront and shipments from the warehouse, applied exactly once.

use reqwest::Method;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, order_json};

both_backends!(
    api_validation_errors_name_the_field,
    partial_then_completing_shipment,
    over_shipment_is_rejected_whole,
    shipment_for_unknown_or_cancelled_order_fails,
    duplicate_shipment_is_ignored,
    products_reservations_and_stock_lists,
    openapi_document_is_served,
    order_updates_keep_what_has_shipped,
);

async fn api_validation_errors_name_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let good = order_json(&[("A", 2)]);
    let mut cases: Vec<(serde_json::Value, &str)> = Vec::new();
    let mut v = good.clone();
    v.as_object_mut().unwrap().remove("currency");
    cases.push((v, "currency"));
    let mut v = good.clone();
    v["lines"][0]["qty"] = json!("two");
    cases.push((v, "lines[0].qty"));
    let mut v = good.clone();
    v["lines"][0]["qty"] = json!(0);
    cases.push((v, "lines[0].qty"));
    let mut v = good.clone();
    v["source"] = json!("Market Place!");
    cases.push((v, "source"));
    let mut v = good.clone();
    v["delivery_address"]["country"] = json!("Britain");
    cases.push((v, "delivery_address.country"));
    let mut v = good.clone();
    v["totals"]["grand_total"] = json!("12.3.4");
    cases.push((v, "totals.grand_total"));
    let mut v = good.clone();
    v["colour"] = json!("red");
    cases.push((v, "colour"));
    let mut v = good.clone();
    v["lines"] = json!([]);
    cases.push((v, "lines"));
    for (body, field) in cases {
        let (status, problem) = app.api(Method::PUT, "/orders/1001", Some(body)).await;
        assert_eq!(status, 422, "{field}: {problem}");
        assert_eq!(problem["code"], "invalid_field", "{field}: {problem}");
        assert_eq!(problem["field"], field, "{problem}");
    }
    let resp = app
        .client
        .put(format!("{}/api/v1/orders/1001", app.base))
        .bearer_auth(&app.token)
        .header("Content-Type", "application/json")
        .body("{\"status\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(problem["code"], "malformed_json");
    // Nothing was stored.
    let (status, problem) = app.api(Method::GET, "/orders/1001", None).await;
    assert_eq!(status, 404);
    assert_eq!(problem["code"], "not_found");
    // Without a token nothing is answered.
    let resp = app
        .client
        .get(format!("{}/api/v1/orders/1001", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

async fn partial_then_completing_shipment(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, order) = app
        .put_order("100000123", &[("ABC123", 2), ("XYZ789", 1)])
        .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["export"]["status"], "pending");
    let s = app.login().await;

    app.send_shipment(&s, "100000123", 1, &[("ABC123", 1)], "TRACK-1")
        .await;
    app.drain().await;
    let (_, order) = app.api(Method::GET, "/orders/100000123", None).await;
    assert_eq!(order["status"], "processing", "partially shipped: {order}");
    assert_eq!(order["lines"][0]["qty_shipped"], 1);
    assert_eq!(order["lines"][1]["qty_shipped"], 0);
    assert_eq!(order["tracking_numbers"], json!(["TRACK-1"]));

    app.send_shipment(
        &s,
        "100000123",
        2,
        &[("ABC123", 1), ("XYZ789", 1)],
        "TRACK-2",
    )
    .await;
    app.drain().await;
    let (_, order) = app.api(Method::GET, "/orders/100000123", None).await;
    assert_eq!(order["status"], "complete", "{order}");
    assert_eq!(order["lines"][0]["qty_shipped"], 2);
    assert_eq!(order["lines"][1]["qty_shipped"], 1);
    assert_eq!(order["shipments"].as_array().unwrap().len(), 2);
    assert_eq!(order["shipments"][1]["courier_name"], "DPD");
    assert_eq!(order["tracking_numbers"], json!(["TRACK-1", "TRACK-2"]));

    let feed = app.feed().await;
    let kinds: Vec<&str> = feed.iter().map(|(_, k, _)| k.as_str()).collect();
    // Shipped completely before wharf exported it: never exported now (`skipped`).
    assert_eq!(
        kinds,
        vec![
            "shipment.created",
            "shipment.created",
            "order.completed",
            "order.export_status_changed"
        ]
    );
    assert_eq!(
        feed[1].2["lines"],
        json!([{"sku": "ABC123", "qty": 1}, {"sku": "XYZ789", "qty": 1}])
    );
    assert_eq!(feed[1].2["tracking_numbers"], json!(["TRACK-2"]));
    assert_eq!(feed[2].2["order"], "100000123");
    let ids: Vec<i64> = feed.iter().map(|e| e.0).collect();
    assert_eq!(ids, vec![1, 2, 3, 4]);
}

async fn over_shipment_is_rejected_whole(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.put_order("2001", &[("A", 2), ("B", 1)]).await;
    let s = app.login().await;
    app.send_shipment(&s, "2001", 5, &[("B", 1), ("A", 3)], "T")
        .await;
    app.drain().await;
    let report = app.shipment_report(5).await;
    assert_eq!(report.len(), 2);
    assert!(report.iter().all(|(_, r, _)| r == "Failure"), "{report:?}");
    assert!(
        report[0].2.contains(
            "Cannot ship 3 of SKU A on order 2001: 2 ordered, 0 already shipped, 2 left to ship"
        ),
        "{report:?}"
    );
    // Nothing of it was applied, not even the valid line for B.
    let (_, order) = app.api(Method::GET, "/orders/2001", None).await;
    assert_eq!(order["lines"][1]["qty_shipped"], 0);
    assert_eq!(order["shipments"], json!([]));
    // The feed carries only its failure.
    let kinds: Vec<String> = app.feed().await.into_iter().map(|e| e.1).collect();
    assert_eq!(kinds, vec!["shipment.failed".to_string()]);
    // A SKU that is not on the order fails the same way.
    app.send_shipment(&s, "2001", 6, &[("Z", 1)], "T").await;
    app.drain().await;
    assert!(
        app.shipment_report(6).await[0]
            .2
            .contains("SKU Z is not on order 2001")
    );
}

async fn shipment_for_unknown_or_cancelled_order_fails(backend: Backend) {
    // No wait for orders not known yet (tests/api/shipment_failures.rs covers the wait).
    let app = TestApp::spawn_with(backend, |s| s.worker.unknown_order_retry_secs = 0).await;
    let s = app.login().await;
    app.send_shipment(&s, "404404", 1, &[("A", 1)], "").await;
    app.put_order("3001", &[("A", 1)]).await;
    let (status, order) = app.api(Method::POST, "/orders/3001/cancel", None).await;
    assert_eq!(status, 200);
    assert_eq!(order["status"], "canceled");
    app.send_shipment(&s, "3001", 2, &[("A", 1)], "").await;
    app.drain().await;
    assert!(
        app.shipment_report(1).await[0]
            .2
            .contains("Order 404404 does not exist in wharf")
    );
    assert!(
        app.shipment_report(2).await[0]
            .2
            .contains("Order 3001 is canceled and cannot be shipped")
    );
    assert_eq!(app.queue_depth().await, vec![("processed".to_string(), 2)]);
}

async fn duplicate_shipment_is_ignored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.put_order("4001", &[("A", 5)]).await;
    let s = app.login().await;
    app.send_shipment(&s, "4001", 9, &[("A", 1)], "T-1").await;
    // The same shipment again with a different body (another tracking number): queued as a conflict,
    // then recognised by (order, messageSeqId) and not applied twice.
    app.send_shipment(&s, "4001", 9, &[("A", 1)], "T-2").await;
    assert_eq!(app.drain().await, 2);
    let report = app.shipment_report(9).await;
    assert_eq!(report[0].1, "Success");
    assert_eq!(report[1].1, "Duplicate", "{report:?}");
    let (_, order) = app.api(Method::GET, "/orders/4001", None).await;
    assert_eq!(order["lines"][0]["qty_shipped"], 1);
    // A different message for the same order adds up.
    app.send_shipment(&s, "4001", 10, &[("A", 1)], "T-3").await;
    app.drain().await;
    let (_, order) = app.api(Method::GET, "/orders/4001", None).await;
    assert_eq!(order["lines"][0]["qty_shipped"], 2);
}

async fn products_reservations_and_stock_lists(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let product = json!({"name": "Blue mug", "barcode": "5012345678900", "weight": "0.35",
        "weight_unit": "kg", "price": 7.5, "length": 10, "width": 8, "height": 9.5, "dimension_unit": "cm"});
    let (status, p) = app
        .api(Method::PUT, "/products/MUG-1", Some(product.clone()))
        .await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(p["export_pending"], true);
    assert_eq!(p["name"], "Blue mug");
    let (status, _) = app.api(Method::PUT, "/products/MUG-1", Some(product)).await;
    assert_eq!(status, 200);
    let (status, p) = app
        .api(Method::PUT, "/products/MUG-2", Some(json!({"name": ""})))
        .await;
    assert_eq!(status, 422);
    assert_eq!(p["field"], "name");
    let (status, _) = app.api(Method::GET, "/products/NOPE", None).await;
    assert_eq!(status, 404);

    let cart = json!({"lines": [{"sku": "MUG-1", "qty": 2}]});
    let (status, _) = app.api(Method::PUT, "/reservations/q-1", Some(cart)).await;
    assert_eq!(status, 204);
    let (status, p) = app
        .api(
            Method::PUT,
            "/reservations/q-2",
            Some(json!({"lines": [{"sku": "X", "qty": -1}]})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(p["field"], "lines[0].qty");
    assert_eq!(
        app.api(Method::DELETE, "/reservations/q-1", None).await.0,
        204
    );
    assert_eq!(
        app.api(Method::DELETE, "/reservations/q-1", None).await.0,
        404
    );

    let s = app.login().await;
    app.send_inventory(&s, 1, &[("MUG-1", 4, 1), ("MUG-2", 5, 1)])
        .await;
    app.drain().await;
    let (status, list) = app
        .api(Method::GET, "/stock?sku=MUG-1&sku=MUG-2&sku=NONE", None)
        .await;
    assert_eq!(status, 200);
    let got: Vec<(String, i64)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["sku"].as_str().unwrap().to_string(),
                l["qty"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, vec![("MUG-1".into(), 4), ("MUG-2".into(), 5)]);
    let (status, _) = app.api(Method::GET, "/stock", None).await;
    assert_eq!(status, 422);
}

async fn openapi_document_is_served(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let resp = app
        .client
        .get(format!("{}/api/v1/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let doc: serde_json::Value = resp.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/orders/{increment_id}",
        "/api/v1/feed",
        "/api/v1/stock/{sku}",
        "/api/v1/products/{sku}",
        "/api/v1/reservations/{quote_id}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    assert!(doc["components"]["schemas"]["OrderInput"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

async fn order_updates_keep_what_has_shipped(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.put_order("5001", &[("A", 3)]).await;
    let s = app.login().await;
    app.send_shipment(&s, "5001", 1, &[("A", 2)], "").await;
    app.drain().await;
    // Raising the quantity keeps the shipped units; lowering it below them is a conflict.
    let (status, order) = app.put_order("5001", &[("A", 4), ("B", 1)]).await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["lines"][0]["qty_shipped"], 2);
    let (status, problem) = app.put_order("5001", &[("A", 1)]).await;
    assert_eq!(status, 409);
    assert_eq!(problem["code"], "conflict");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("2 of SKU \"A\" already shipped")
    );
}
