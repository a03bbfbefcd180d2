//! Exporting to the warehouse, against the OrderFlow simulator over real HTTP on 127.0.0.1.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use wharf::channels::warehouse::{self as export, Exporter};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, order_json};
use crate::warehouse_api::{Behaviour, WarehouseSim};

both_backends!(
    orders_are_exported_and_the_report_decides_each,
    missing_orders_are_retried_then_lost_then_resent_or_dismissed,
    batch_failures_are_retried_and_open_the_breaker,
    two_exporters_never_send_an_order_twice,
    values_that_could_break_the_document_arrive_intact,
    products_and_cancellations_are_sent,
);

const WMS_USER: &str = "wharf";
const WMS_PASSWORD: &str = "wms secret";

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
        w.timeout_secs = 2;
        for e in [&mut w.orders, &mut w.products] {
            e.enabled = true;
            // The server's own exporter (on its schedule) must not take the orders a test drives.
            e.schedule = "0 0 1 1 *".into();
            e.batch_size = 10;
            e.max_attempts = 3;
            // Retries are due at once, so a test can drive them without waiting.
            e.backoff_base_secs = 0;
            e.breaker_threshold = 2;
            e.breaker_pause_secs = 300;
        }
    })
    .await;
    (app, sim)
}

fn exporter(app: &TestApp) -> Exporter {
    Exporter::new(app.pool.clone(), app.settings.clone()).unwrap()
}

async fn export_status(app: &TestApp, id: &str) -> (String, serde_json::Value) {
    let (status, order) = app.api(Method::GET, &format!("/orders/{id}"), None).await;
    assert_eq!(status, 200, "{order}");
    (
        order["export"]["status"].as_str().unwrap().to_string(),
        order,
    )
}

/// Every order reference the warehouse received, over all requests, with how often.
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

async fn orders_are_exported_and_the_report_decides_each(backend: Backend) {
    let (app, sim) = setup(backend).await;
    for id in ["E-1", "E-2", "E-3"] {
        assert_eq!(app.put_order(id, &[("ABC123", 2)]).await.0, 201);
    }
    let mut virtual_order = order_json(&[("GIFT", 1)]);
    virtual_order["virtual"] = json!(true);
    app.api(Method::PUT, "/orders/E-VIRTUAL", Some(virtual_order))
        .await;
    let mut unpaid = order_json(&[("ABC123", 1)]);
    unpaid["status"] = json!("pending");
    app.api(Method::PUT, "/orders/E-UNPAID", Some(unpaid)).await;

    sim.set_behaviour(Behaviour {
        fail: ["E-2".to_string()].into(),
        duplicate: ["E-3".to_string()].into(),
        ..Behaviour::default()
    });
    let o = exporter(&app).export_orders().await.unwrap();
    assert_eq!((o.items, o.exported, o.failed, o.lost), (3, 2, 1, 0));

    // What went over the wire: one document, Basic auth, XML, channel and organisation.
    let requests = sim.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert!(r.authorized);
    assert_eq!(r.content_type.as_deref(), Some("application/xml"));
    assert!(
        r.query.contains(&("channel".into(), "web shop".into())),
        "{:?}",
        r.query
    );
    assert!(r.query.contains(&("organisation".into(), "ACME".into())));
    let counts = received_counts(&sim);
    assert_eq!(
        counts.len(),
        3,
        "virtual and unpaid orders are not exported: {counts:?}"
    );

    let (s1, o1) = export_status(&app, "E-1").await;
    assert_eq!(s1, "exported");
    assert!(o1["export"]["exported_at"].is_string());
    assert_eq!(
        export_status(&app, "E-3").await.0,
        "exported",
        "a duplicate is already accepted"
    );
    assert_eq!(export_status(&app, "E-2").await.0, "failed");
    assert_eq!(export_status(&app, "E-VIRTUAL").await.0, "pending");

    // The export log has the batch with its counts, lines, and both documents.
    let (log, lines, request, response) = app
        .with_conn(|c| {
            let recent = export::recent_exports(c, 10).unwrap();
            export::export_detail(c, recent[0].id).unwrap().unwrap()
        })
        .await;
    assert_eq!((log.successes, log.duplicates, log.failures), (1, 1, 1));
    assert_eq!(log.outcome, "ok");
    assert!(request.unwrap().contains("externalReference=E-2"));
    assert!(response.unwrap().contains("importReport"));
    let e2 = lines.iter().find(|l| l.0 == "E-2").unwrap();
    assert_eq!(e2.1, "Failure");

    // The storefront heard about every change.
    let feed = app.feed().await;
    let changes: Vec<(String, String)> = feed
        .iter()
        .filter(|e| e.1 == "order.export_status_changed")
        .map(|e| {
            (
                e.2["order"].as_str().unwrap().to_string(),
                e.2["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            ("E-1".to_string(), "exported".to_string()),
            ("E-2".to_string(), "failed".to_string()),
            ("E-3".to_string(), "exported".to_string()),
        ]
    );

    // The failed order is retried and accepted once the warehouse takes it.
    sim.set_behaviour(Behaviour::default());
    let o = exporter(&app).export_orders().await.unwrap();
    assert_eq!((o.items, o.exported), (1, 1));
    assert_eq!(export_status(&app, "E-2").await.0, "exported");
    sim.stop().await;
}

async fn missing_orders_are_retried_then_lost_then_resent_or_dismissed(backend: Backend) {
    let (app, sim) = setup(backend).await;
    app.put_order("M-1", &[("A", 1)]).await;
    app.put_order("M-2", &[("A", 1)]).await;
    sim.set_behaviour(Behaviour {
        omit: ["M-1".into(), "M-2".into()].into(),
        ..Behaviour::default()
    });
    let ex = exporter(&app);
    for attempt in 1..=3 {
        let o = ex.export_order_batch().await.unwrap();
        assert_eq!(o.items, 2, "attempt {attempt}");
        assert_eq!(o.failed, 2);
    }
    let (status, order) = export_status(&app, "M-1").await;
    assert_eq!(status, "lost", "{order}");
    assert_eq!(
        ex.export_order_batch().await.unwrap().items,
        0,
        "lost orders are not sent again"
    );
    let lost = app.with_conn(|c| export::lost_orders(c).unwrap()).await;
    assert_eq!(lost.len(), 2);
    assert_eq!(lost[0].attempts, 3);
    assert_eq!(lost[0].error.as_deref(), Some("not in import report"));

    // Support resends one and dismisses the other; both are recorded with who did it.
    let resent = app
        .with_conn(|c| export::resend(c, Some(&["M-1".to_string()]), "alice").unwrap())
        .await;
    assert_eq!(resent, vec!["M-1".to_string()]);
    app.with_conn(|c| export::dismiss(c, &["M-2".to_string()], "bob", "sent by e-mail").unwrap())
        .await;
    let refused = app
        .with_conn(|c| {
            export::resend(c, Some(&["NOPE".to_string()]), "alice")
                .unwrap_err()
                .to_string()
        })
        .await;
    assert!(refused.contains("does not exist"), "{refused}");
    sim.set_behaviour(Behaviour::default());
    let o = ex.export_orders().await.unwrap();
    assert_eq!((o.items, o.exported), (1, 1));
    assert_eq!(export_status(&app, "M-1").await.0, "exported");
    assert_eq!(export_status(&app, "M-2").await.0, "dismissed");
    let actions = app.order_support_actions().await;
    assert_eq!(
        actions,
        vec![
            ("resend".to_string(), "alice".to_string(), None),
            (
                "dismiss".to_string(),
                "bob".to_string(),
                Some("sent by e-mail".to_string())
            ),
        ]
    );
    sim.stop().await;
}

async fn batch_failures_are_retried_and_open_the_breaker(backend: Backend) {
    let (app, sim) = setup(backend).await;
    app.put_order("B-1", &[("A", 1)]).await;
    let ex = exporter(&app);
    let cases: Vec<(Behaviour, &str)> = vec![
        (
            Behaviour {
                http_500: 1,
                ..Behaviour::default()
            },
            "http_error",
        ),
        (
            Behaviour {
                hang: Some(Duration::from_secs(4)),
                ..Behaviour::default()
            },
            "transport_error",
        ),
        (
            Behaviour {
                html_error_page: true,
                ..Behaviour::default()
            },
            "bad_answer",
        ),
        (
            Behaviour {
                exception: true,
                ..Behaviour::default()
            },
            "exception",
        ),
        (
            Behaviour {
                garbage: true,
                ..Behaviour::default()
            },
            "bad_answer",
        ),
    ];
    for (behaviour, outcome) in cases {
        sim.set_behaviour(behaviour);
        // A good batch in between keeps the breaker closed (it counts consecutive failures).
        let o = ex.export_order_batch().await.unwrap();
        assert!(o.batch_failed, "{outcome}");
        let (status, order) = export_status(&app, "B-1").await;
        assert_eq!(
            status, "pending",
            "{outcome}: the order waits for the next try, not counted against it: {order}"
        );
        let log = app
            .with_conn(|c| export::recent_exports(c, 1).unwrap())
            .await;
        assert_eq!(log[0].outcome, outcome);
        assert!(log[0].error.is_some());
        app.with_conn(|c| {
            use diesel::prelude::*;
            diesel::delete(wharf::db::schema::export_breakers::table)
                .execute(c)
                .unwrap();
        })
        .await;
    }
    let timeout = app
        .with_conn(|c| export::recent_exports(c, 5).unwrap())
        .await;
    assert!(timeout.iter().any(|e| {
        e.error
            .as_deref()
            .unwrap_or("")
            .contains("did not answer within 2 s")
    }));

    // Two failed batches in a row pause exports: the third run does not call the warehouse.
    sim.set_behaviour(Behaviour {
        http_500: 10,
        ..Behaviour::default()
    });
    assert!(ex.export_order_batch().await.unwrap().batch_failed);
    let second = ex.export_order_batch().await.unwrap();
    assert!(second.batch_failed && second.paused);
    let before = sim.requests().len();
    let third = ex.export_order_batch().await.unwrap();
    assert!(third.paused);
    assert_eq!(third.items, 0);
    assert_eq!(sim.requests().len(), before, "paused: nothing sent");
    sim.stop().await;
}

async fn two_exporters_never_send_an_order_twice(backend: Backend) {
    let (app, sim) = setup(backend).await;
    for i in 0..40 {
        app.put_order(&format!("P-{i}"), &[("A", 1)]).await;
    }
    let a = Arc::new(exporter(&app));
    let b = Arc::new(exporter(&app));
    let (ra, rb) = tokio::join!(a.export_orders(), b.export_orders());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.items + rb.items, 40);
    let counts = received_counts(&sim);
    assert_eq!(counts.len(), 40);
    assert!(
        counts.values().all(|n| *n == 1),
        "an order was sent twice: {counts:?}"
    );
    for i in 0..40 {
        assert_eq!(export_status(&app, &format!("P-{i}")).await.0, "exported");
    }
    sim.stop().await;
}

async fn values_that_could_break_the_document_arrive_intact(backend: Backend) {
    let (app, sim) = setup(backend).await;
    let mut order = order_json(&[("A", 1)]);
    order["lines"][0]["name"] = json!("Mug ]]> <b>&amp; \"cup\"\nstatus=hacked");
    order["customer_note"] = json!("Leave at the door\r\nplease");
    order["totals"]["shipping"] = json!("0.00");
    order["totals"]["shipping_tax"] = json!(0);
    app.api(Method::PUT, "/orders/X-1", Some(order)).await;
    let o = exporter(&app).export_orders().await.unwrap();
    assert_eq!(o.exported, 1, "the warehouse could read the document");
    let got = sim.orders();
    let item = &got[0];
    assert_eq!(
        item.field("orderLine.1.description"),
        Some("Mug ]]> <b>&amp; \"cup\"status=hacked")
    );
    assert_eq!(item.field("status"), Some("processing"), "no injected key");
    assert_eq!(
        item.field("customerComment"),
        Some("Leave at the doorplease")
    );
    assert_eq!(
        item.field("shippingPriceNet"),
        Some("0"),
        "zero amounts are sent"
    );
    assert_eq!(item.field("totalPriceGross"), Some("25"));
    assert_eq!(item.field("deliveryCountryCode"), Some("GB"));
    sim.stop().await;
}

async fn products_and_cancellations_are_sent(backend: Backend) {
    let (app, sim) = setup(backend).await;
    app.api(Method::PUT, "/products/MUG-1", Some(json!({"name": "Blue mug", "barcode": "5012345678900", "price": "7.50", "weight": "0.35", "weight_unit": "kg"}))).await;
    let ex = exporter(&app);
    let p = ex.export_products().await.unwrap();
    assert_eq!((p.items, p.exported), (1, 1));
    let products = sim.products();
    assert_eq!(products[0].external_reference, "MUG-1");
    assert_eq!(products[0].operation, "merge");
    assert_eq!(products[0].field("description"), Some("Blue mug"));
    assert_eq!(products[0].field("priceGross"), Some("7.5"));
    let (_, view) = app.api(Method::GET, "/products/MUG-1", None).await;
    assert_eq!(view["export_pending"], false);
    assert_eq!(
        ex.export_products().await.unwrap().items,
        0,
        "unchanged products are not resent"
    );

    // An exported order that is cancelled is cancelled at the warehouse too.
    app.put_order("C-1", &[("A", 1)]).await;
    ex.export_orders().await.unwrap();
    app.api(Method::POST, "/orders/C-1/cancel", None).await;
    assert_eq!(ex.send_cancellations().await.unwrap(), 1);
    assert_eq!(sim.cancelled(), vec!["C-1".to_string()]);
    assert_eq!(ex.send_cancellations().await.unwrap(), 0, "sent once");

    // One the warehouse cannot cancel ("No cancel operation performed") is a failure, kept for retry.
    app.put_order("C-2", &[("A", 1)]).await;
    ex.export_orders().await.unwrap();
    app.with_conn(|c| {
        use diesel::prelude::*;
        use wharf::db::schema::orders;
        // The warehouse has never heard of it under this reference.
        diesel::update(orders::table.filter(orders::increment_id.eq("C-2")))
            .set(orders::increment_id.eq("C-2-UNKNOWN"))
            .execute(c)
            .unwrap();
    })
    .await;
    app.api(Method::POST, "/orders/C-2-UNKNOWN/cancel", None)
        .await;
    ex.send_cancellations().await.unwrap();
    let log = app
        .with_conn(|c| export::recent_exports(c, 1).unwrap())
        .await;
    assert_eq!(log[0].kind, "cancel");
    // The exchange went (answered); the refusal is an item failure, logged apart from it.
    assert_eq!((log[0].outcome.as_str(), log[0].failures), ("ok", 1));
    assert!(
        log[0]
            .error
            .as_deref()
            .unwrap()
            .contains("No cancel operation performed")
    );

    // An unreadable answer is not a cancellation either: kept, and sent again on the next run.
    app.put_order("C-3", &[("A", 1)]).await;
    ex.export_orders().await.unwrap();
    app.api(Method::POST, "/orders/C-3/cancel", None).await;
    sim.set_behaviour(Behaviour {
        garbage: true,
        ..Behaviour::default()
    });
    assert_eq!(ex.send_cancellations().await.unwrap(), 0);
    sim.set_behaviour(Behaviour::default());
    assert_eq!(ex.send_cancellations().await.unwrap(), 1);
    assert!(sim.cancelled().contains(&"C-3".to_string()));
    sim.stop().await;
}

/// PostgreSQL: a storefront cancel that holds the order's row while an exporter claims it (the
/// claim still sees the order invoiced) commits before the exporter reads the order to send it:
/// the order is not sent, and its task is let go as it was, not counted.
#[tokio::test(flavor = "multi_thread")]
async fn an_order_cancelled_while_being_claimed_is_not_sent() {
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    let (app, sim) = setup(Backend::Postgres).await;
    let (status, body) = app.put_order("RACE-1", &[("SKU-1", 1)]).await;
    assert_eq!(status, 201, "{body}");
    let url = app.db.url.clone();
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let (commit_tx, commit_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let mut c = diesel::PgConnection::establish(&url).unwrap();
        c.batch_execute(
            "BEGIN; UPDATE orders SET status = 'canceled' WHERE increment_id = 'RACE-1'",
        )
        .unwrap();
        held_tx.send(()).unwrap();
        commit_rx.recv().unwrap();
        c.batch_execute("COMMIT").unwrap();
    });
    held_rx.recv().unwrap();
    let e = exporter(&app);
    let run = tokio::spawn(async move { e.export_orders().await });
    // Wait until the exporter's read of the claimed order waits for the row the cancel holds.
    let mut watcher = diesel::PgConnection::establish(&app.db.url).unwrap();
    let waiting = "(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                   AND wait_event_type = 'Lock' AND query LIKE '%FOR SHARE%')";
    for _ in 0..500 {
        let n: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(waiting))
            .get_result(&mut watcher)
            .unwrap();
        if n > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    commit_tx.send(()).unwrap();
    holder.join().unwrap();
    let outcome = run.await.unwrap().unwrap();
    assert_eq!((outcome.items, outcome.exported), (0, 0), "{outcome:?}");
    assert!(
        received_counts(&sim).is_empty(),
        "the cancelled order was sent"
    );
    let (status, order) = export_status(&app, "RACE-1").await;
    assert_eq!(status, "pending", "{order}");
    assert_eq!(order["export"]["attempts"], 0, "{order}");
}
