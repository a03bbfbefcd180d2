//! Continuous export (`schedule = "continuous"`): what becomes due is sent within the batching
//! window, woken by the transaction that made it due, instead of at the next cron occurrence — in
//! one process on both backends, and on PostgreSQL when the exporter runs in another process
//! (LISTEN/NOTIFY). No cron fires during these tests, and the exporter's fallback look comes
//! [`CONTINUOUS_FALLBACK`] (30 s) after its last run, so an arrival within [`AT_ONCE`] of the
//! change that followed a run can only be the wake-up's.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use wharf::outbound::runner::CONTINUOUS_FALLBACK;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, spawn_with_log, wait_for_line};
use crate::warehouse_api::{ORDER_IMPORT, WarehouseSim, parse_import_document};

both_backends!(continuous_export_sends_what_becomes_due_within_its_window);

const WMS_USER: &str = "wharf";
const WMS_PASSWORD: &str = "wms secret";

/// What "within the window" must beat: far below the fallback (so the fallback cannot pass), far
/// above the 1 s window and the exchange (so a loaded machine cannot fail it).
const AT_ONCE: Duration = Duration::from_secs(10);

/// The order documents the warehouse received: per request, the references it held.
fn order_batches(sim: &WarehouseSim) -> Vec<Vec<String>> {
    sim.requests()
        .into_iter()
        .filter(|r| r.path.ends_with(ORDER_IMPORT))
        .filter_map(|r| parse_import_document(&r.body).ok())
        .map(|docs| docs.into_iter().map(|d| d.external_reference).collect())
        .collect()
}

/// Waits until `arrived` holds, polling; returns how long that took. Panics after [`AT_ONCE`] × 3.
async fn wait_until(what: &str, mut arrived: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !arrived() {
        assert!(
            started.elapsed() < AT_ONCE * 3,
            "{what}: nothing arrived in {:?}",
            AT_ONCE * 3
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Waits until order `id` reads as `status` (its export settled), so no lease is left behind.
async fn settled(app: &TestApp, id: &str, status: &str) {
    for _ in 0..500 {
        let (_, order) = app.api(Method::GET, &format!("/orders/{id}"), None).await;
        if order["export"]["status"] == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("order {id} did not become {status}");
}

fn assert_at_once(what: &str, delay: Duration) {
    assert!(
        delay < AT_ONCE,
        "{what} took {delay:?} with a continuous schedule (fallback {CONTINUOUS_FALLBACK:?}): the \
         exporter was not woken"
    );
}

async fn continuous_export_sends_what_becomes_due_within_its_window(backend: Backend) {
    let sim = WarehouseSim::start(WMS_USER, WMS_PASSWORD).await;
    let endpoint = sim.endpoint();
    let app = TestApp::spawn_with(backend, move |s| {
        let w = &mut s.warehouse;
        w.endpoint = endpoint;
        w.username = WMS_USER.into();
        w.password = WMS_PASSWORD.into();
        w.organisation = "ACME".into();
        w.channel = "web".into();
        for e in [&mut w.orders, &mut w.products] {
            e.enabled = true;
            e.schedule = "continuous".into();
            e.batch_window_ms = 1000;
        }
    })
    .await;

    // One order alone: sent within the window.
    assert_eq!(app.put_order("C-1", &[("ABC", 1)]).await.0, 201);
    let delay = wait_until("C-1", || order_batches(&sim).len() == 1).await;
    assert_at_once("order created -> document received", delay);
    settled(&app, "C-1", "exported").await;

    // Several orders created together, and one made exportable by an update: one document.
    let mut unpaid = crate::helpers::order_json(&[("ABC", 1)]);
    unpaid["status"] = json!("pending");
    assert_eq!(
        app.api(Method::PUT, "/orders/C-5", Some(unpaid.clone()))
            .await
            .0,
        201
    );
    let created = Instant::now();
    let (a, b, c) = tokio::join!(
        app.put_order("C-2", &[("ABC", 1)]),
        app.put_order("C-3", &[("DEF", 2)]),
        app.put_order("C-4", &[("ABC", 3)]),
    );
    assert_eq!((a.0, b.0, c.0), (201, 201, 201));
    unpaid["status"] = json!("processing");
    assert_eq!(
        app.api(Method::PUT, "/orders/C-5", Some(unpaid)).await.0,
        200
    );
    wait_until("C-2..C-5", || order_batches(&sim).len() >= 2).await;
    assert_at_once("orders created together -> document", created.elapsed());
    let mut together = order_batches(&sim)[1].clone();
    together.sort();
    assert_eq!(together, ["C-2", "C-3", "C-4", "C-5"], "one batch");
    for id in ["C-2", "C-3", "C-4", "C-5"] {
        settled(&app, id, "exported").await;
    }

    // Cancelling an exported order and changing a product: sent within the window too.
    let (status, body) = app.api(Method::POST, "/orders/C-1/cancel", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .api(Method::PUT, "/products/P-1", Some(json!({"name": "Mug"})))
        .await;
    assert!(status == 200 || status == 201, "{body}");
    let delay = wait_until("the cancellation and the product", || {
        sim.cancelled() == ["C-1"] && sim.products().len() == 1
    })
    .await;
    assert_at_once("cancel and product change -> received", delay);
    for _ in 0..500 {
        let (_, order) = app.api(Method::GET, "/orders/C-1", None).await;
        let (_, product) = app.api(Method::GET, "/products/P-1", None).await;
        if order["cancellation"]["state"] == "sent" && !product["exported_at"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Nothing is sent twice, even after more windows pass.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for id in order_batches(&sim).into_iter().flatten() {
        *counts.entry(id).or_default() += 1;
    }
    assert_eq!(counts.len(), 5, "{counts:?}");
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    assert_eq!(order_batches(&sim).len(), 2, "{:?}", order_batches(&sim));
    assert_eq!(sim.products().len(), 1);
    assert_eq!(sim.cancelled(), ["C-1"]);
    sim.stop().await;
}

/// PostgreSQL: the test's server (exports off) stores the orders; a `wharf serve` process with a
/// continuous order export sends them, woken through its listener.
mod continuous_export_is_woken_from_another_process {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let sim = WarehouseSim::start(WMS_USER, WMS_PASSWORD).await;
        let app = TestApp::spawn(Backend::Postgres).await;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.arg("serve")
            .env("DATABASE_URL", &app.db.url)
            .env("WHARF_LISTEN", "127.0.0.1:0")
            .env("WHARF_WORKER__IN_SERVE", "false")
            .env("WHARF_DB_POOL_SIZE", "3")
            .env("WHARF_WAREHOUSE__ENDPOINT", sim.endpoint())
            .env("WHARF_WAREHOUSE__USERNAME", WMS_USER)
            .env("WHARF_WAREHOUSE__PASSWORD", WMS_PASSWORD)
            .env("WHARF_WAREHOUSE__ORGANISATION", "ACME")
            .env("WHARF_WAREHOUSE__CHANNEL", "web")
            .env("WHARF_WAREHOUSE__ORDERS__ENABLED", "1")
            .env("WHARF_WAREHOUSE__ORDERS__SCHEDULE", "continuous")
            .env("WHARF_WAREHOUSE__ORDERS__BATCH_WINDOW_MS", "500")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let (mut child, log) = spawn_with_log(&mut cmd);
        let ready = tokio::task::spawn_blocking(move || {
            let mut seen = Vec::new();
            wait_for_line(&log, &mut seen, "continuous", Duration::from_secs(30));
            wait_for_line(
                &log,
                &mut seen,
                "listening for wake-ups",
                Duration::from_secs(30),
            );
            log
        });
        let _log = ready.await.unwrap();
        // The listener's first connection makes the exporter look once; let that pass.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for round in 1..=2 {
            let id = format!("X-{round}");
            assert_eq!(app.put_order(&id, &[("ABC", 1)]).await.0, 201);
            let delay = wait_until(&id, || sim.orders().len() == round).await;
            assert_at_once("order created in another process -> document", delay);
            settled(&app, &id, "exported").await;
        }
        let _ = child.kill();
        let _ = child.wait();
        sim.stop().await;
    }
}
