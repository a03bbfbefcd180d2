//! What the storefront reads: stock of a SKU at every source, the export details of an order,
//! RFC 3339 times with their offset, and order and product listings in keyset pages.

use reqwest::Method;
use serde_json::{Value, json};

use crate::api_contract::{app_with_warehouse, send_inventory_with_sources};
use crate::both_backends;
use crate::helpers::{Backend, TestApp, order_json};
use crate::warehouse_api::Behaviour;

both_backends!(
    stock_of_a_sku_lists_every_source,
    order_view_shows_the_export_details,
    times_carry_their_offset,
    orders_are_listed_in_keyset_pages,
    orders_are_listed_by_status_and_time,
    products_are_listed_in_keyset_pages,
    listing_parameters_are_checked,
);

async fn get(app: &TestApp, url: &str) -> Value {
    let (status, body) = app.api(Method::GET, url, None).await;
    assert_eq!(status, 200, "{url}: {body}");
    body
}

async fn stock_of_a_sku_lists_every_source(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    app.send_inventory(&s, 1, &[("S-1", 7, 1), ("S-2", 1, 2)])
        .await;
    send_inventory_with_sources(&app, 2, &[("S-1", "shop2", 4, 3)]).await;
    send_inventory_with_sources(&app, 3, &[("S-1", "eu", 2, 4)]).await;
    app.drain().await;

    let levels = get(&app, "/stock/S-1").await;
    let sources: Vec<(&str, i64)> = levels
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["source"].as_str().unwrap(), l["qty"].as_i64().unwrap()))
        .collect();
    assert_eq!(sources, vec![("default", 7), ("eu", 2), ("shop2", 4)]);
    // The same entries as the list call gives for that SKU.
    let listed = get(&app, "/stock?sku=S-1&sku=S-2").await;
    let of_s1: Vec<&Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["sku"] == "S-1")
        .collect();
    assert_eq!(levels.as_array().unwrap().iter().collect::<Vec<_>>(), of_s1);

    let one = get(&app, "/stock/S-1?source=shop2").await;
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(
        (one[0]["source"].clone(), one[0]["qty"].clone()),
        (json!("shop2"), json!(4))
    );
    assert_eq!(one[0]["last_seq"], 3);

    for (url, named) in [
        ("/stock/S-1?source=nowhere", "\"nowhere\""),
        ("/stock/NOPE", "\"NOPE\""),
    ] {
        let (status, problem) = app.api(Method::GET, url, None).await;
        assert_eq!(status, 404, "{url}");
        assert_eq!(problem["code"], "not_found");
        assert!(
            problem["detail"].as_str().unwrap().contains(named),
            "{problem}"
        );
    }
}

async fn order_view_shows_the_export_details(backend: Backend) {
    let (app, sim) = app_with_warehouse(backend).await;
    for id in ["X-1", "X-2", "X-3"] {
        app.put_order(id, &[("A", 1)]).await;
    }
    let (_, fresh) = app.api(Method::GET, "/orders/X-1", None).await;
    assert_eq!(
        fresh["export"],
        json!({"status": "pending", "exported_at": null, "attempts": 0, "last_error": null,
               "next_attempt_at": null, "note": null, "support_action": null})
    );
    sim.set_behaviour(Behaviour {
        fail: ["X-1".to_string(), "X-2".to_string()].into(),
        ..Behaviour::default()
    });
    let exporter =
        wharf::channels::warehouse::Exporter::new(app.pool.clone(), app.settings.clone()).unwrap();
    exporter.export_orders().await.unwrap();

    let failed = get(&app, "/orders/X-1").await["export"].clone();
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["attempts"], 1);
    let error = failed["last_error"].as_str().unwrap();
    assert!(
        error.contains("not found"),
        "the warehouse's words: {failed}"
    );
    assert!(failed["next_attempt_at"].is_string(), "{failed}");
    let exported = get(&app, "/orders/X-3").await["export"].clone();
    assert_eq!(exported["status"], "exported");
    assert!(exported["exported_at"].is_string());
    assert_eq!(exported["last_error"], Value::Null);

    // Support dismisses one and resends the other: who, when, why.
    app.with_conn(|c| {
        wharf::channels::warehouse::dismiss(c, &["X-1".to_string()], "bob", "sent by e-mail")
            .unwrap();
        wharf::channels::warehouse::resend(c, Some(&["X-2".to_string()]), "alice").unwrap();
    })
    .await;
    let dismissed = get(&app, "/orders/X-1").await["export"].clone();
    assert_eq!(dismissed["status"], "dismissed");
    assert_eq!(dismissed["next_attempt_at"], Value::Null, "never retried");
    let action = &dismissed["support_action"];
    assert_eq!(
        (&action["action"], &action["by"], &action["reason"]),
        (&json!("dismiss"), &json!("bob"), &json!("sent by e-mail"))
    );
    assert!(action["at"].as_str().unwrap().ends_with('Z'), "{action}");
    let resent = get(&app, "/orders/X-2").await["export"].clone();
    assert_eq!(resent["status"], "pending");
    assert_eq!(resent["attempts"], 0);
    assert_eq!(
        resent["last_error"],
        json!(error),
        "kept until an attempt succeeds"
    );
    assert_eq!(
        (
            &resent["support_action"]["action"],
            &resent["support_action"]["by"]
        ),
        (&json!("resend"), &json!("alice"))
    );
    sim.stop().await;
}

/// Whether `v` is an RFC 3339 time with an offset that chrono reads back.
fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok() && s.ends_with('Z'))
}

async fn times_carry_their_offset(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    app.send_inventory(&s, 1, &[("T-1", 5, 1)]).await;
    app.put_order("T-100", &[("T-1", 2)]).await;
    app.send_shipment(&s, "T-100", 2, &[("T-1", 1)], "TRK")
        .await;
    app.drain().await;
    app.api(Method::PUT, "/products/T-1", Some(json!({"name": "Tee"})))
        .await;

    let order = get(&app, "/orders/T-100").await;
    let product = get(&app, "/products/T-1").await;
    let stock = get(&app, "/stock/T-1").await;
    let feed = get(&app, "/feed?after=0").await;
    let mut times = vec![
        ("order.created_at", &order["created_at"]),
        ("order.updated_at", &order["updated_at"]),
        ("shipment.created_at", &order["shipments"][0]["created_at"]),
        (
            "shipment.date_shipped",
            &order["shipments"][0]["date_shipped"],
        ),
        ("product.updated_at", &product["updated_at"]),
        ("stock.updated_at", &stock[0]["updated_at"]),
    ];
    for e in feed["events"].as_array().unwrap() {
        times.push(("event.created_at", &e["created_at"]));
    }
    assert!(times.len() > 6);
    for (what, t) in times {
        assert!(is_rfc3339(t), "{what} is {t}, not RFC 3339 with its offset");
    }
    // The order was placed when the storefront said (2024-05-01T09:30:00Z in the document).
    assert_eq!(order["created_at"], "2024-05-01T09:30:00Z");
}

/// Walks a listing from `first` (a URL with its filters) page by page; returns each page's items'
/// `key` member, and the last page's body.
async fn walk(app: &TestApp, first: &str, key: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut url = first.to_string();
    for _ in 0..20 {
        let page = get(app, &url).await;
        pages.push(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o[key].as_str().unwrap().to_string())
                .collect(),
        );
        match page["next"].as_str() {
            Some(next) => url = format!("{first}&after={next}"),
            None => return pages,
        }
    }
    panic!("the listing never ended: {pages:?}");
}

async fn orders_are_listed_in_keyset_pages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for i in 1..=5 {
        app.put_order(&format!("L-{i}"), &[("A", 1)]).await;
    }
    let page1 = get(&app, "/orders?limit=2").await;
    let ids: Vec<&str> = page1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["increment_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["L-1", "L-2"]);
    let next = page1["next"].as_str().unwrap().to_string();

    // L-1 changes while the client pages through: it comes again later, with its new state; nothing
    // else is skipped or repeated.
    let mut changed = order_json(&[("A", 1)]);
    changed["customer_note"] = json!("ring twice");
    app.api(Method::PUT, "/orders/L-1", Some(changed)).await;
    let page2 = get(&app, &format!("/orders?limit=2&after={next}")).await;
    let page3 = get(
        &app,
        &format!("/orders?limit=2&after={}", page2["next"].as_str().unwrap()),
    )
    .await;
    let seen: Vec<&str> = [&page2, &page3]
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap())
        .map(|o| o["increment_id"].as_str().unwrap())
        .collect();
    assert_eq!(seen, ["L-3", "L-4", "L-5", "L-1"]);
    assert_eq!(page3["items"][1]["details"]["customer_note"], "ring twice");
    let last = get(
        &app,
        &format!("/orders?limit=2&after={}", page3["next"].as_str().unwrap()),
    )
    .await;
    assert_eq!(last, json!({"items": [], "next": null}));
}

async fn orders_are_listed_by_status_and_time(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for i in 1..=5 {
        app.put_order(&format!("L-{i}"), &[("A", 1)]).await;
    }
    app.put_order("L-1", &[("A", 2)]).await;
    // Filters: status, export status, changed after a time (strictly).
    app.api(Method::POST, "/orders/L-3/cancel", None).await;
    assert_eq!(
        walk(&app, "/orders?status=canceled&limit=1", "increment_id")
            .await
            .concat(),
        ["L-3"]
    );
    assert_eq!(
        walk(&app, "/orders?export_status=exported", "increment_id")
            .await
            .concat(),
        Vec::<String>::new()
    );
    let all = walk(
        &app,
        "/orders?export_status=pending&limit=2",
        "increment_id",
    )
    .await;
    assert_eq!(all.concat(), ["L-2", "L-4", "L-5", "L-1", "L-3"]);
    let l5 = get(&app, "/orders/L-5").await["updated_at"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = app
        .client
        .get(format!("{}/api/v1/orders", app.base))
        .query(&[("updated_after", l5.as_str())])
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    let after_l5: Value = resp.json().await.unwrap();
    let ids: Vec<&str> = after_l5["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["increment_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["L-1", "L-3"]);
    // The same instant with an explicit offset (a `+` must be percent-encoded in a query string).
    let offset = l5.replace('Z', "+00:00");
    let same = get(
        &app,
        &format!("/orders?updated_after={}", offset.replace('+', "%2B")),
    )
    .await;
    assert_eq!(same["items"].as_array().unwrap().len(), 2, "{same}");
}

async fn products_are_listed_in_keyset_pages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for sku in ["P-C", "P-A", "P-B"] {
        app.api(
            Method::PUT,
            &format!("/products/{sku}"),
            Some(json!({"name": sku})),
        )
        .await;
    }
    let page1 = get(&app, "/products?limit=2").await;
    assert_eq!(
        page1["items"][0]["sku"], "P-C",
        "least recently changed first"
    );
    assert_eq!(page1["items"][1]["sku"], "P-A");
    app.api(
        Method::PUT,
        "/products/P-C",
        Some(json!({"name": "Renamed"})),
    )
    .await;
    let page2 = get(
        &app,
        &format!(
            "/products?limit=2&after={}",
            page1["next"].as_str().unwrap()
        ),
    )
    .await;
    let skus: Vec<&str> = page2["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sku"].as_str().unwrap())
        .collect();
    assert_eq!(skus, ["P-B", "P-C"]);
    assert_eq!(page2["items"][1]["name"], "Renamed");
    let since = page1["items"][1]["updated_at"].as_str().unwrap();
    let later = walk(
        &app,
        &format!("/products?updated_after={since}&limit=1"),
        "sku",
    )
    .await;
    assert_eq!(later.concat(), ["P-B", "P-C"]);
}

async fn listing_parameters_are_checked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for url in [
        "/orders?limit=0",
        "/orders?limit=201",
        "/products?limit=1000",
    ] {
        let (status, problem) = app.api(Method::GET, url, None).await;
        assert_eq!(status, 422, "{url}");
        assert_eq!(problem["field"], "limit", "{url}");
    }
    // A product cursor is not an order cursor.
    app.api(Method::PUT, "/products/Z-1", Some(json!({"name": "Z"})))
        .await;
    app.api(Method::PUT, "/products/Z-2", Some(json!({"name": "Z"})))
        .await;
    let next = get(&app, "/products?limit=1").await["next"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, problem) = app
        .api(Method::GET, &format!("/orders?after={next}"), None)
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        (problem["code"].clone(), problem["field"].clone()),
        (json!("invalid_query"), json!("after"))
    );
    let (status, _) = app.api(Method::GET, "/orders", None).await;
    assert_eq!(status, 200);
    let resp = app
        .client
        .get(format!("{}/api/v1/orders", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401, "listings need the token too");
}
