//! Shipments that cannot be applied fail visibly: counted in their import, logged at WARN with the
//! order, SKU and reason, and in the feed as `shipment.failed`. A shipment for an order wharf does not
//! know yet waits for it (orders and shipments race) before it fails. What is left to ship counts
//! every line of a shipment for a SKU together, whatever its source.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::prelude::*;
use reqwest::Method;
use serde_json::{Value, json};
use wharf::db::schema::imports;
use wharf::worker::Worker;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, fixture};

both_backends!(
    failed_shipments_are_counted_logged_and_in_the_feed,
    lines_from_several_sources_count_together,
    a_shipment_waits_for_its_order,
    a_shipment_fails_when_its_order_never_comes,
);

/// Log output written by a worker, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Runs a worker until nothing is due, with its log captured.
async fn drain_logged(app: &TestApp) -> String {
    let worker = Worker::new(app.pool.clone(), app.settings.clone());
    let log = Captured::default();
    let writer = log.clone();
    tokio::task::spawn_blocking(move || {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::with_default(subscriber, || worker.drain())
    })
    .await
    .unwrap()
    .unwrap();
    log.text()
}

/// The failure count in the import header of a shipment message.
async fn import_failures(app: &TestApp, message_seq_id: i64) -> Vec<i32> {
    app.with_conn(move |c| {
        imports::table
            .filter(imports::operation.eq(wharf::queue::OP_SHIPMENT))
            .filter(imports::message_seq_id.eq(message_seq_id))
            .select(imports::failures)
            .load(c)
            .unwrap()
    })
    .await
}

/// A Magento 2 shipment whose lines name their stock source: (sku, qty, source).
pub(crate) async fn send_m2_shipment(
    app: &TestApp,
    session: &str,
    order: &str,
    seq: i64,
    lines: &[(&str, i64, &str)],
) {
    let items: String = lines
        .iter()
        .map(|(sku, qty, source)| {
            format!("<item><sku>{sku}</sku><qty>{qty}</qty><source>{source}</source></item>")
        })
        .collect();
    let body = fixture("m2-shipment-create.xml", session);
    let start = body.find("<skuQty>").unwrap();
    let end = body.find("</skuQty>").unwrap();
    let body = format!("{}<skuQty>{items}{}", &body[..start], &body[end..])
        .replace("000000005", order)
        .replace("<messageSeqId>77<", &format!("<messageSeqId>{seq}<"));
    let (status, _, text) = app
        .post_soap_to(
            "/soap/default?services=realtimeDespatchOrderFlowShipmentRequestManagementV1",
            body,
        )
        .await;
    assert_eq!(status, 200, "{text}");
}

fn failures_in_feed(feed: &[(i64, String, Value)]) -> Vec<Value> {
    feed.iter()
        .filter(|e| e.1 == "shipment.failed")
        .map(|e| e.2.clone())
        .collect()
}

async fn failed_shipments_are_counted_logged_and_in_the_feed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.put_order("F-1", &[("A", 2), ("B", 1)]).await;
    app.put_order("F-2", &[("A", 1)]).await;
    app.api(Method::POST, "/orders/F-2/cancel", None).await;
    let s = app.login().await;
    app.send_shipment(&s, "F-1", 1, &[("Z", 1)], "").await;
    app.send_shipment(&s, "F-1", 2, &[("B", 1), ("A", 3)], "")
        .await;
    app.send_shipment(&s, "F-2", 3, &[("A", 1)], "").await;
    let log = drain_logged(&app).await;

    // Applied (not retried, not dead), each a Failure counted in its import.
    assert_eq!(app.queue_depth().await, vec![("processed".to_string(), 3)]);
    assert_eq!(import_failures(&app, 1).await, vec![1]);
    assert_eq!(import_failures(&app, 2).await, vec![2], "both lines failed");
    assert_eq!(import_failures(&app, 3).await, vec![1]);

    let over = "Cannot ship 3 of SKU A on order F-1: 2 ordered, 0 already shipped, 2 left to ship; \
                shipment 2 not applied";
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("shipment failed"))
        .collect();
    assert_eq!(warnings.len(), 3, "{log}");
    assert!(
        warnings[0].contains("order=F-1") && warnings[0].contains("sku=Z "),
        "{log}"
    );
    assert!(warnings[0].contains("SKU Z is not on order F-1"), "{log}");
    assert!(
        warnings[1].contains("sku=A ") && warnings[1].contains(over),
        "{log}"
    );
    assert!(warnings[2].contains("order=F-2"), "{log}");
    assert!(
        warnings[2].contains("Order F-2 is canceled and cannot be shipped"),
        "{log}"
    );
    assert!(log.contains("business_failures=3 failed=0"), "{log}");

    assert_eq!(
        failures_in_feed(&app.feed().await),
        vec![
            json!({"order": "F-1", "message_seq_id": 1, "sku": "Z",
                "reason": "SKU Z is not on order F-1; shipment 1 not applied"}),
            json!({"order": "F-1", "message_seq_id": 2, "sku": "A", "reason": over}),
            json!({"order": "F-2", "message_seq_id": 3, "sku": null,
                "reason": "Order F-2 is canceled and cannot be shipped; shipment 3 not applied"}),
        ]
    );
    let (_, order) = app.api(Method::GET, "/orders/F-1", None).await;
    assert_eq!(order["shipments"], json!([]));
}

async fn lines_from_several_sources_count_together(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.put_order("S-1", &[("SKU", 5)]).await;
    let s = app.login().await;
    send_m2_shipment(&app, &s, "S-1", 1, &[("SKU", 5, "s1"), ("SKU", 5, "s2")]).await;
    app.drain().await;
    let report = app.shipment_report(1).await;
    assert!(report.iter().all(|(_, r, _)| r == "Failure"), "{report:?}");
    assert!(
        report[0].2.contains(
            "Cannot ship 10 of SKU SKU on order S-1: 5 ordered, 0 already shipped, 5 left to ship \
             (5 from source s1 and 5 from source s2 together)"
        ),
        "{report:?}"
    );
    let (_, order) = app.api(Method::GET, "/orders/S-1", None).await;
    assert_eq!(order["status"], "processing");
    assert_eq!(order["lines"][0]["qty_shipped"], 0, "nothing recorded");
    assert_eq!(failures_in_feed(&app.feed().await).len(), 1);

    // Within what is left, lines from several sources add up.
    send_m2_shipment(&app, &s, "S-1", 2, &[("SKU", 3, "s1"), ("SKU", 2, "s2")]).await;
    app.drain().await;
    let report = app.shipment_report(2).await;
    assert!(report.iter().all(|(_, r, _)| r == "Success"), "{report:?}");
    let (_, order) = app.api(Method::GET, "/orders/S-1", None).await;
    assert_eq!(order["lines"][0]["qty_shipped"], 5);
    assert_eq!(order["status"], "complete");
    // And nothing more may ship from any source.
    send_m2_shipment(&app, &s, "S-1", 3, &[("SKU", 1, "s3")]).await;
    app.drain().await;
    assert_eq!(app.shipment_report(3).await[0].1, "Failure");
}

async fn a_shipment_waits_for_its_order(backend: Backend) {
    // The default wait (15 minutes).
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    app.send_shipment(&s, "W-1", 1, &[("A", 2)], "TRACK-W")
        .await;
    assert_eq!(app.drain().await, 0, "not applied yet");
    assert_eq!(app.queue_depth().await, vec![("queued".to_string(), 1)]);
    assert!(
        app.shipment_report(1).await.is_empty(),
        "no failure recorded"
    );
    assert!(app.feed().await.is_empty());

    // The order arrives: its shipment is due at once and applies.
    assert_eq!(app.put_order("W-1", &[("A", 2)]).await.0, 201);
    assert_eq!(app.drain().await, 1);
    let report = app.shipment_report(1).await;
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].1, "Success", "{report:?}");
    let (_, order) = app.api(Method::GET, "/orders/W-1", None).await;
    assert_eq!(order["status"], "complete");
    assert_eq!(order["tracking_numbers"], json!(["TRACK-W"]));
    assert_eq!(app.queue_depth().await, vec![("processed".to_string(), 1)]);
}

async fn a_shipment_fails_when_its_order_never_comes(backend: Backend) {
    // A short wait, and a single attempt allowed: the tries while waiting are not attempts.
    let app = TestApp::spawn_with(backend, |s| {
        s.worker.unknown_order_retry_secs = 2;
        s.worker.max_attempts = 1;
        s.worker.backoff_base_secs = 0;
    })
    .await;
    let s = app.login().await;
    app.send_shipment(&s, "NEVER-1", 7, &[("A", 1)], "").await;
    let started = std::time::Instant::now();
    let mut tries = 0;
    while app.queue_depth().await != vec![("processed".to_string(), 1)] {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still waiting after its window"
        );
        let log = drain_logged(&app).await;
        if log.contains("shipment waits for its order") {
            tries += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(tries >= 2, "retried while it waited ({tries} tries)");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    let reason =
        "Order NEVER-1 does not exist in wharf (waited 2 s for it); shipment 7 not applied";
    let report = app.shipment_report(7).await;
    assert_eq!(report.len(), 1);
    assert_eq!(
        (report[0].1.as_str(), report[0].2.as_str()),
        ("Failure", reason)
    );
    assert_eq!(import_failures(&app, 7).await, vec![1]);
    assert_eq!(
        failures_in_feed(&app.feed().await),
        vec![json!({"order": "NEVER-1", "message_seq_id": 7, "sku": null, "reason": reason})]
    );
}
