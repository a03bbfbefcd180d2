//! `GET /metrics`: what a scraper sees after messages are received, applied and exported, checked
//! by the real `promtool`; the token; and that no label carries what a caller sent.
//!
//! The counters live in the one recorder of this test process, which other tests running at the
//! same time count into too: the tests compare counters before and after (at least the delta they
//! caused), never absolute values. The gauges are read from each test's own database, so those
//! are exact. (A job's success is written at most every `runs::OK_EVERY` per process: the
//! last-run gauges are checked on the first runs of this test's process, as nextest runs each
//! test in its own.)

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, inventory_envelope};
use crate::warehouse_api::Behaviour;

both_backends!(
    a_scrape_shows_receipt_apply_and_export,
    labels_never_carry_what_a_caller_sent,
    the_token_is_required_when_set,
);

/// One sample of a page: its labels and value.
struct Sample {
    labels: HashMap<String, String>,
    value: f64,
}

/// The samples of `page`, by metric name (histogram series keep their `_bucket`, `_sum` and
/// `_count` names).
fn samples(page: &str) -> HashMap<String, Vec<Sample>> {
    let mut out: HashMap<String, Vec<Sample>> = HashMap::new();
    for line in page
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        let value: f64 = value.parse().expect("a sample value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split(',')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("label=value");
                (k.to_string(), v.trim_matches('"').to_string())
            })
            .collect();
        out.entry(name.to_string())
            .or_default()
            .push(Sample { labels, value });
    }
    out
}

/// The value of the series `name` with (at least) `labels`, if the page has it.
pub(crate) fn value(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(page).remove(name)?.into_iter().find_map(|s| {
        labels
            .iter()
            .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            .then_some(s.value)
    })
}

/// A counter's value, 0 when not yet counted.
fn count(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(page, name, labels).unwrap_or(0.0)
}

/// `GET /metrics` (with `token` as a Bearer token when given): status, content type, body.
async fn scrape_with(app: &TestApp, token: Option<&str>) -> (u16, String, String) {
    let mut req = app.client.get(format!("{}/metrics", app.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("GET /metrics");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, resp.text().await.unwrap())
}

/// The page, which must be served as the Prometheus text format.
pub(crate) async fn scrape(app: &TestApp) -> String {
    let (status, ct, page) = scrape_with(app, None).await;
    assert_eq!(status, 200, "{page}");
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    page
}

/// `promtool check metrics` on `page`: it must pass and print nothing.
pub(crate) fn promtool_check(page: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; .ci/run installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n--- page ---\n{page}"
    );
}

const INV: &str = "inventory.update";

async fn a_scrape_shows_receipt_apply_and_export(backend: Backend) {
    let (app, sim) = crate::export_failures::setup(backend, |_| {}).await;
    let before = scrape(&app).await;
    promtool_check(&before);
    assert_eq!(
        value(
            &before,
            "wharf_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    let queued = [("operation", INV), ("state", "queued")];
    assert_eq!(value(&before, "wharf_queue_requests", &queued), Some(0.0));

    // Received: counted, and queued until the worker applies it.
    let session = app.login().await;
    let (status, body) = app
        .send_inventory(&session, 1, &[("SKU-1", 5, 1), ("SKU-2", 3, 1)])
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .send_inventory(&session, 1, &[("SKU-1", 5, 1), ("SKU-2", 3, 1)])
        .await;
    assert_eq!(status, 200, "{body}");
    let received = scrape(&app).await;
    let accepted = [("operation", INV), ("result", "accepted")];
    let repeat = [("operation", INV), ("result", "repeat")];
    let total = "wharf_messages_received_total";
    assert!(count(&received, total, &accepted) >= count(&before, total, &accepted) + 1.0);
    assert!(count(&received, total, &repeat) >= count(&before, total, &repeat) + 1.0);
    assert!(
        count(
            &received,
            "wharf_receipt_seconds_count",
            &[("operation", INV)]
        ) >= 2.0
    );
    assert_eq!(value(&received, "wharf_queue_requests", &queued), Some(1.0));
    let age = value(&received, "wharf_queue_oldest_queued_age_seconds", &[]).unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");

    // Applied: counted per request and per line; the queue is empty again.
    assert_eq!(app.drain().await, 1);
    let applied = scrape(&app).await;
    let done = [("operation", INV), ("outcome", "applied")];
    let applied_total = "wharf_requests_applied_total";
    assert!(count(&applied, applied_total, &done) >= count(&before, applied_total, &done) + 1.0);
    let lines = [("operation", INV), ("result", "Success")];
    let lines_total = "wharf_import_lines_total";
    assert!(count(&applied, lines_total, &lines) >= count(&before, lines_total, &lines) + 2.0);
    assert!(count(&applied, "wharf_apply_seconds_count", &[("operation", INV)]) >= 1.0);
    assert!(
        count(
            &applied,
            "wharf_receipt_to_applied_seconds_count",
            &[("operation", INV)]
        ) >= 1.0
    );
    assert_eq!(value(&applied, "wharf_queue_requests", &queued), Some(0.0));
    assert_eq!(
        value(&applied, "wharf_queue_oldest_queued_age_seconds", &[]),
        Some(0.0)
    );
    assert_eq!(value(&applied, "wharf_dead_requests", &[]), Some(0.0));

    // Exported: items and the exchange counted; each export job's last good run is shown.
    assert_eq!(app.put_order("M-1", &[("SKU-1", 1)]).await.0, 201);
    let pending = [
        ("channel", "warehouse"),
        ("action", "order.insert"),
        ("state", "pending"),
    ];
    assert_eq!(
        value(&scrape(&app).await, "wharf_outbound_tasks", &pending),
        Some(1.0)
    );
    let exporter =
        wharf::channels::warehouse::Exporter::new(app.pool.clone(), app.settings.clone()).unwrap();
    exporter.run_once().await.unwrap();
    let exported = scrape(&app).await;
    let order = [("channel", "warehouse"), ("action", "order.insert")];
    let with = |outcome: &'static str| {
        let mut l = order.to_vec();
        l.push(("outcome", outcome));
        l
    };
    let items = "wharf_export_items_total";
    let batches = "wharf_export_batches_total";
    assert!(
        count(&exported, items, &with("accepted"))
            >= count(&before, items, &with("accepted")) + 1.0
    );
    assert!(
        count(&exported, batches, &with("answered"))
            >= count(&before, batches, &with("answered")) + 1.0
    );
    assert_eq!(
        value(&exported, "wharf_outbound_tasks", &pending),
        None,
        "{exported}"
    );
    let now = chrono::Utc::now().timestamp() as f64;
    for job in [
        "worker",
        "export.orders",
        "export.cancellations",
        "export.products",
    ] {
        let at = value(
            &exported,
            "wharf_last_success_timestamp_seconds",
            &[("job", job)],
        )
        .unwrap_or_else(|| panic!("no last run of {job}:\n{exported}"));
        assert!((now - at).abs() < 120.0, "{job}: {at} vs {now}");
    }

    // The warehouse fails once: the breaker counts it, the item waits, the run is a failure.
    sim.set_behaviour(Behaviour {
        http_500: 1,
        ..Behaviour::default()
    });
    assert_eq!(app.put_order("M-2", &[("SKU-1", 1)]).await.0, 201);
    exporter.run_orders().await.unwrap();
    let failed = scrape(&app).await;
    assert!(
        count(&failed, items, &with("not_sent")) >= count(&before, items, &with("not_sent")) + 1.0
    );
    assert!(
        count(&failed, batches, &with("not_answered"))
            >= count(&before, batches, &with("not_answered")) + 1.0
    );
    let order_breaker = [("breaker", "order")];
    assert_eq!(
        value(&failed, "wharf_breaker_open", &order_breaker),
        Some(0.0)
    );
    assert_eq!(
        value(
            &failed,
            "wharf_breaker_consecutive_failures",
            &order_breaker
        ),
        Some(1.0)
    );
    assert_eq!(value(&failed, "wharf_outbound_tasks", &pending), Some(1.0));
    assert!(
        value(&failed, "wharf_outbound_oldest_due_age_seconds", &order).is_some(),
        "{failed}"
    );
    assert!(
        value(
            &failed,
            "wharf_last_failure_timestamp_seconds",
            &[("job", "export.orders")]
        )
        .is_some(),
        "{failed}"
    );
    promtool_check(&failed);
}

async fn labels_never_carry_what_a_caller_sent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let before = scrape(&app).await;
    // An operation wharf does not know, named to stand out.
    let weird_op = inventory_envelope("session-x", 7, &[("SKU-1", 1, 1)])
        .replace("orderflowInventoryMultiUpdate", "zzInjectedOperation");
    let (status, body) = app.post_soap(weird_op).await;
    assert_eq!(status, 500, "{body}");
    // A login of a user that does not exist, under a name that tries to break the format.
    let evil = "evil\"caller{x=\"1\"}";
    assert!(app.login_as(evil, "nope").await.is_err());
    // A real caller sending to a real operation: its name and SKU are input too.
    let session = app.login().await;
    let (status, body) = app
        .send_inventory(&session, 1, &[("SKU-INJECTED", 1, 1)])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.drain().await, 1);

    let page = scrape(&app).await;
    for input in [
        "zzInjected",
        "evil",
        "SKU-INJECTED",
        "\"orderflow\"",
        &session,
    ] {
        assert!(!page.contains(input), "{input:?} is on the page:\n{page}");
    }
    let unknown = [("operation", "unknown"), ("result", "unknown-operation")];
    let total = "wharf_messages_received_total";
    assert!(count(&page, total, &unknown) >= count(&before, total, &unknown) + 1.0);
    let refused = [("operation", "login"), ("result", "login-refused")];
    assert!(count(&page, total, &refused) >= count(&before, total, &refused) + 1.0);
    promtool_check(&page);
}

async fn the_token_is_required_when_set(backend: Backend) {
    const TOKEN: &str = "scrape-secret-9f2c";
    // Without a token, a request a proxy on this host forwarded is not this host's scraper.
    let open = TestApp::spawn(backend).await;
    let resp = open
        .client
        .get(format!("{}/metrics", open.base))
        .header("X-Forwarded-For", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert!(resp.text().await.unwrap().contains("[metrics] token"));
    drop(open);
    let app = TestApp::spawn_with(backend, |s| s.metrics.token = Some(TOKEN.into())).await;
    let (status, _, body) = scrape_with(&app, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    let (status, _, _) = scrape_with(&app, Some("scrape-secret-9f2")).await;
    assert_eq!(status, 401, "a prefix of the token is not the token");
    let (status, ct, page) = scrape_with(&app, Some(TOKEN)).await;
    assert_eq!(status, 200, "{page}");
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    assert!(!page.contains(TOKEN));
    assert!(value(&page, "wharf_build_info", &[]).is_some());
}
