//! An order's source decides which channel hears about it, and which changes become pushes:
//! listing by source, routing (a `web` order pushes nothing), the ship delay's debounce (a second
//! shipment inside the delay moves the one push, never adds one), and a cancel dropping an unsent
//! ship even for a channel that does not hear cancels. The channel's ship delay is an hour here, so
//! its sender (whatever it is) never sends: what is asserted is what was enqueued, as the order view
//! shows it.

use reqwest::Method;
use serde_json::Value;
use wharf::config::{ChannelAction, ChannelKind, ChannelSettings};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, order_json};

both_backends!(
    orders_are_listed_by_source,
    only_the_claimed_source_pushes_and_a_second_shipment_moves_the_ship,
    a_cancel_drops_the_unsent_ship,
    a_complete_order_can_be_refunded_and_its_channel_hears_it,
);

fn ships_only(s: &mut wharf::Settings) {
    s.channels.push(ChannelSettings {
        name: "partners".into(),
        kind: ChannelKind::Http,
        sources: vec!["affiliate".into()],
        // Nothing listens there; nothing is sent within the test anyway.
        base_url: "http://127.0.0.1:9".into(),
        secret: "whsec_c2VjcmV0LWtleS1ieXRlcw==".into(),
        actions: Some(vec![ChannelAction::Ship]),
        ship_delay_secs: 3600,
        ..ChannelSettings::default()
    });
}

async fn put(app: &TestApp, id: &str, source: &str, qty: i64) {
    let mut order = order_json(&[("S-1", qty)]);
    order["source"] = Value::from(source);
    let (status, body) = app
        .api(Method::PUT, &format!("/orders/{id}"), Some(order))
        .await;
    assert_eq!(status, 201, "{body}");
}

async fn pushes(app: &TestApp, id: &str) -> Vec<Value> {
    let (status, view) = app.api(Method::GET, &format!("/orders/{id}"), None).await;
    assert_eq!(status, 200, "{view}");
    view["pushes"].as_array().cloned().unwrap_or_default()
}

async fn orders_are_listed_by_source(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    put(&app, "W-1", "web", 1).await;
    put(&app, "A-1", "affiliate", 1).await;
    put(&app, "M-1", "marketplace:amazon", 1).await;
    put(&app, "A-2", "affiliate", 1).await;
    let (status, page) = app.api(Method::GET, "/orders?source=affiliate", None).await;
    assert_eq!(status, 200, "{page}");
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["increment_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["A-1", "A-2"]);
    let (_, page) = app
        .api(Method::GET, "/orders?source=marketplace%3Aamazon", None)
        .await;
    assert_eq!(page["items"][0]["source"], "marketplace:amazon", "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
}

async fn only_the_claimed_source_pushes_and_a_second_shipment_moves_the_ship(backend: Backend) {
    let app = TestApp::spawn_with(backend, ships_only).await;
    put(&app, "W-1", "web", 2).await;
    put(&app, "A-1", "affiliate", 2).await;
    let session = app.login().await;
    app.send_shipment(&session, "W-1", 1, &[("S-1", 2)], "TRK-W")
        .await;
    app.send_shipment(&session, "A-1", 2, &[("S-1", 1)], "TRK-1")
        .await;
    app.drain().await;
    assert!(
        pushes(&app, "W-1").await.is_empty(),
        "a web order pushes nothing"
    );
    let first = pushes(&app, "A-1").await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["channel"], "partners");
    assert_eq!(first[0]["action"], "ship");
    assert_eq!(first[0]["state"], "pending");
    let due_first = first[0]["next_attempt_at"].as_str().unwrap().to_string();
    let created =
        chrono::DateTime::parse_from_rfc3339(first[0]["created_at"].as_str().unwrap()).unwrap();
    let due = chrono::DateTime::parse_from_rfc3339(&due_first).unwrap();
    assert!(
        (due - created).num_seconds() >= 3590,
        "the ship waits ship_delay_secs: {first:?}"
    );

    // The rest ships: still one push, due an hour after this shipment; the order is complete, and a
    // channel that takes ships hears that with the ship (no separate status push).
    app.send_shipment(&session, "A-1", 3, &[("S-1", 1)], "TRK-2")
        .await;
    app.drain().await;
    let second = pushes(&app, "A-1").await;
    assert_eq!(second.len(), 1, "{second:?}");
    let due_second = second[0]["next_attempt_at"].as_str().unwrap();
    assert!(
        due_second > due_first.as_str(),
        "{due_first} then {due_second}"
    );
    let (_, view) = app.api(Method::GET, "/orders/A-1", None).await;
    assert_eq!(view["status"], "complete");
}

async fn a_cancel_drops_the_unsent_ship(backend: Backend) {
    let app = TestApp::spawn_with(backend, ships_only).await;
    put(&app, "A-3", "affiliate", 2).await;
    let session = app.login().await;
    app.send_shipment(&session, "A-3", 4, &[("S-1", 1)], "TRK-3")
        .await;
    app.drain().await;
    let (status, body) = app.api(Method::POST, "/orders/A-3/cancel", None).await;
    assert_eq!(status, 200, "{body}");
    let after = pushes(&app, "A-3").await;
    assert_eq!(after.len(), 1, "the channel hears no cancels: {after:?}");
    assert_eq!(after[0]["state"], "skipped", "{after:?}");
    assert_eq!(
        after[0]["note"],
        "the order was cancelled before its shipment was pushed"
    );
}

/// The usual refund comes after the goods went: a complete order may still become `refunded`, and
/// its channel hears it; it stays refunded whatever the storefront sends next.
async fn a_complete_order_can_be_refunded_and_its_channel_hears_it(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        ships_only(s);
        s.channels[0].actions = Some(vec![ChannelAction::Ship, ChannelAction::Refund]);
    })
    .await;
    put(&app, "A-4", "affiliate", 1).await;
    let session = app.login().await;
    app.send_shipment(&session, "A-4", 5, &[("S-1", 1)], "TRK-4")
        .await;
    app.drain().await;
    let mut order = order_json(&[("S-1", 1)]);
    order["source"] = Value::from("affiliate");
    order["status"] = Value::from("refunded");
    let (status, view) = app
        .api(Method::PUT, "/orders/A-4", Some(order.clone()))
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "refunded");
    let actions: Vec<&str> = view["pushes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["ship", "refund"], "{view}");
    order["status"] = Value::from("processing");
    let (status, view) = app.api(Method::PUT, "/orders/A-4", Some(order)).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "refunded", "a refund stays");
    // The refund push goes to a channel nobody listens at: let its attempt settle.
    app.channels_quiet().await;
}
