//! Export failures made visible, counted and honest, against the OrderFlow simulator over real HTTP:
//! `wharf export` exit codes and summaries, WARN logs per failed order, `wharf exports list`, two
//! exporters failing at the same moment, late exporters, products changed in flight, and
//! cancellations that back off, get lost, and are resent or dismissed by support.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use reqwest::Method;
use serde_json::json;
use wharf::Settings;
use wharf::channels::warehouse::{self as export, Exporter};
use wharf::db::schema::outbound_tasks;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, TestDb, order_json};
use crate::warehouse_api::{Behaviour, WarehouseSim};

both_backends!(
    export_command_exits_non_zero_and_says_what_failed,
    exports_list_tells_the_exchange_from_the_items,
    two_exporters_failing_at_once_keep_backoff_log_and_breaker_count,
    a_late_exporter_still_records_the_rest_of_its_batch,
    a_product_changed_while_being_sent_is_sent_again,
    a_refused_cancellation_backs_off_then_is_lost_then_resent_or_dismissed,
    an_unanswered_cancellation_waits_counts_on_the_breaker_and_stops_the_run,
    existing_cancellations_and_log_rows_carry_over,
    support_cannot_resend_an_order_while_it_is_being_sent,
    a_stored_document_that_no_longer_reads_fails_its_task_alone,
    a_product_refused_until_lost_is_sent_again_once_changed,
);

const WMS_USER: &str = "wharf";
const WMS_PASSWORD: &str = "wms secret";

/// An app exporting orders and products to a warehouse simulator; the tests (here and in
/// `metrics`) drive the exports themselves.
pub(crate) async fn setup(
    backend: Backend,
    adjust: impl FnOnce(&mut Settings),
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
        for e in [&mut w.orders, &mut w.products] {
            e.enabled = true;
            // The server's own exporter keeps out of the way: the tests run exporters themselves.
            e.schedule = "0 0 1 1 *".into();
            e.batch_size = 10;
            e.max_attempts = 3;
            e.backoff_base_secs = 0;
            e.breaker_threshold = 2;
            e.breaker_pause_secs = 300;
        }
        adjust(s);
    })
    .await;
    (app, sim)
}

fn exporter(app: &TestApp) -> Exporter {
    Exporter::new(app.pool.clone(), app.settings.clone()).unwrap()
}

/// What a `wharf` command run said.
struct Ran {
    ok: bool,
    stdout: String,
    /// Without terminal colour codes.
    stderr: String,
}

/// Runs the `wharf` binary against the app's database and this warehouse endpoint, settings by
/// environment (as an operator's cron job would set them).
async fn wharf(app: &TestApp, endpoint: &str, env: &[(&str, &str)], args: &[&str]) -> Ran {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.args(args)
        .env("DATABASE_URL", &app.db.url)
        .env("RUST_LOG", "warn")
        // A short command needs few connections (the PostgreSQL server is shared by parallel tests).
        .env("WHARF_DB_POOL_SIZE", "2")
        .env("WHARF_WAREHOUSE__ENDPOINT", endpoint)
        .env("WHARF_WAREHOUSE__USERNAME", WMS_USER)
        .env("WHARF_WAREHOUSE__PASSWORD", WMS_PASSWORD)
        .env("WHARF_WAREHOUSE__ORGANISATION", "ACME")
        .env("WHARF_WAREHOUSE__CHANNEL", "web")
        .env("WHARF_WAREHOUSE__TIMEOUT_SECS", "5")
        .env("WHARF_WAREHOUSE__ORDERS__ENABLED", "true")
        .env("WHARF_WAREHOUSE__ORDERS__BACKOFF_BASE_SECS", "0")
        .env("WHARF_WAREHOUSE__ORDERS__BREAKER_THRESHOLD", "2")
        .env("WHARF_WAREHOUSE__ORDERS__BREAKER_PAUSE_SECS", "3");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run wharf"))
        .await
        .unwrap();
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: strip_ansi(&String::from_utf8_lossy(&out.stderr)),
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A loopback endpoint nothing listens on.
fn dead_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/")
}

fn has(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?} in:\n{haystack}"
    );
}

/// Lines of the log at WARN level.
fn warnings(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(" WARN ")).collect()
}

async fn order_view(app: &TestApp, id: &str) -> serde_json::Value {
    let (status, order) = app.api(Method::GET, &format!("/orders/{id}"), None).await;
    assert_eq!(status, 200, "{order}");
    order
}

fn time_of(v: &serde_json::Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

async fn export_command_exits_non_zero_and_says_what_failed(backend: Backend) {
    let (app, sim) = setup(backend, |_| {}).await;
    app.put_order("E-1", &[("A", 1)]).await;
    app.put_order("E-2", &[("B", 1)]).await;

    // Nothing listens at the endpoint.
    let ran = wharf(&app, &dead_endpoint(), &[], &["export"]).await;
    assert!(!ran.ok, "{}", ran.stdout);
    has(
        &ran.stdout,
        "orders: 2 not sent: cannot reach the warehouse (connection refused); sent again from ",
    );
    has(
        &ran.stderr,
        "not everything went to the warehouse (2 orders not sent)",
    );
    let warned = warnings(&ran.stderr);
    for id in ["E-1", "E-2"] {
        assert!(
            warned.iter().any(|l| l.contains(&format!(
                "order {id} not sent: cannot reach the warehouse (connection refused)"
            ))),
            "no WARN for {id}:\n{}",
            ran.stderr
        );
    }

    // The warehouse answers HTTP 500: a second failed batch in a row opens the breaker.
    sim.set_behaviour(Behaviour {
        http_500: 10,
        ..Behaviour::default()
    });
    let ran = wharf(&app, &sim.endpoint(), &[], &["export"]).await;
    assert!(!ran.ok);
    has(
        &ran.stdout,
        "orders: 2 not sent: the warehouse answered HTTP 500 Internal Server Error",
    );
    has(&ran.stdout, "orders: breaker open: exports paused until ");
    has(&ran.stdout, " after 2 failed batches");

    // While paused nothing is sent, and the run still fails.
    let before = sim.requests().len();
    let ran = wharf(&app, &sim.endpoint(), &[], &["export"]).await;
    assert!(!ran.ok);
    has(&ran.stdout, "orders: breaker open: exports paused until ");
    has(&ran.stderr, "order exports paused by the breaker");
    assert_eq!(sim.requests().len(), before, "paused: nothing sent");

    // The pause (3 s) is over; the warehouse refuses one order: counted, logged, exit non-zero.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    sim.set_behaviour(Behaviour {
        fail: ["E-2".to_string()].into(),
        ..Behaviour::default()
    });
    let ran = wharf(&app, &sim.endpoint(), &[], &["export"]).await;
    assert!(!ran.ok);
    has(&ran.stdout, "orders: 2 sent: 1 exported, 1 refused");
    has(
        &ran.stdout,
        "orders: 1 refused by the warehouse, sent again after a backoff: Product B not found",
    );
    assert!(
        warnings(&ran.stderr)
            .iter()
            .any(|l| l.contains("the warehouse refused order E-2 (Product B not found")),
        "{}",
        ran.stderr
    );

    // Refused again at its last attempt: lost.
    let last_attempt = [("WHARF_WAREHOUSE__ORDERS__MAX_ATTEMPTS", "2")];
    let ran = wharf(&app, &sim.endpoint(), &last_attempt, &["export"]).await;
    assert!(!ran.ok);
    has(
        &ran.stdout,
        "orders: 1 lost after 2 attempts: Product B not found",
    );
    has(&ran.stdout, "see `wharf orders lost`");
    has(
        &ran.stderr,
        "not everything went to the warehouse (1 order lost)",
    );

    // Everything went: exit code zero.
    sim.set_behaviour(Behaviour::default());
    app.put_order("E-3", &[("A", 1)]).await;
    let ran = wharf(&app, &sim.endpoint(), &[], &["export"]).await;
    assert!(ran.ok, "{}\n{}", ran.stdout, ran.stderr);
    has(&ran.stdout, "orders: 1 sent: 1 exported, 0 refused");
    has(&ran.stdout, "cancellations: nothing due");
    let ran = wharf(&app, &sim.endpoint(), &[], &["export"]).await;
    assert!(ran.ok);
    has(&ran.stdout, "orders: nothing due");
    sim.stop().await;
}

async fn exports_list_tells_the_exchange_from_the_items(backend: Backend) {
    let (app, sim) = setup(backend, |_| {}).await;
    app.put_order("L-1", &[("A", 1)]).await;
    app.put_order("L-2", &[("B", 1)]).await;
    sim.set_behaviour(Behaviour {
        fail: ["L-2".to_string()].into(),
        ..Behaviour::default()
    });
    let ex = exporter(&app);
    ex.export_orders().await.unwrap();
    app.put_order("L-3", &[("A", 1)]).await;
    sim.set_behaviour(Behaviour {
        http_500: 1,
        ..Behaviour::default()
    });
    let o = ex.export_orders().await.unwrap();
    assert_eq!((o.items, o.not_sent), (2, 2));

    let ran = wharf(&app, &sim.endpoint(), &[], &["exports", "list"]).await;
    assert!(ran.ok, "{}", ran.stderr);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", ran.stdout);
    has(lines[0], "order exports: 1 batch(es) in a row not answered");
    has(
        lines[1],
        "order insert  not answered: http_error (HTTP 500): the warehouse answered HTTP 500",
    );
    has(lines[1], "|  items 2: not decided, sent again later");
    has(
        lines[2],
        "order insert  answered (HTTP 200)  |  items 2: 1 accepted, 0 duplicate, 1 refused",
    );
    sim.stop().await;
}

/// The export columns of an order, read where the API does not show them yet.
#[derive(Queryable, Debug)]
struct ExportColumns {
    increment_id: String,
    next_at: Option<NaiveDateTime>,
    lease_owner: Option<String>,
}

async fn two_exporters_failing_at_once_keep_backoff_log_and_breaker_count(backend: Backend) {
    let (app, sim) = setup(backend, |s| {
        let o = &mut s.warehouse.orders;
        o.batch_size = 1;
        o.breaker_threshold = 100;
        o.backoff_base_secs = 1;
        o.backoff_ceiling_secs = 2;
        o.lease_secs = 300;
    })
    .await;
    const ROUNDS: usize = 3;
    for i in 0..2 * ROUNDS {
        app.put_order(&format!("R-{i}"), &[("A", 1)]).await;
    }
    // Every answer is an HTTP 500, held back briefly so both exporters' answers arrive together
    // and both settle at the same moment.
    sim.set_behaviour(Behaviour {
        http_500: 1000,
        hang: Some(Duration::from_millis(300)),
        ..Behaviour::default()
    });
    let a = Arc::new(exporter(&app));
    let b = Arc::new(exporter(&app));
    let started = wharf::db::now();
    for round in 0..ROUNDS {
        let (ra, rb) = tokio::join!(a.export_order_batch(), b.export_order_batch());
        for r in [ra, rb] {
            let o = r.unwrap_or_else(|e| panic!("round {round}: settling failed: {e:#}"));
            assert!(o.batch_failed && o.items == 1, "round {round}: {o:?}");
        }
    }
    let settled = wharf::db::now();

    // The breaker counted every failed batch, and the log has one row for each.
    let breakers = app.with_conn(|c| export::breakers(c).unwrap()).await;
    assert_eq!(breakers.len(), 1);
    assert_eq!(breakers[0].0, "order");
    assert_eq!(breakers[0].1.failures, 2 * ROUNDS as i32);
    let log = app
        .with_conn(|c| export::recent_exports(c, 100).unwrap())
        .await;
    assert_eq!(log.len(), 2 * ROUNDS, "{log:?}");
    assert!(
        log.iter()
            .all(|e| e.outcome == "http_error" && e.items == 1)
    );

    // Every order is free again and due after its backoff (at most 2 s), not after the lease.
    let rows: Vec<ExportColumns> = app
        .with_conn(|c| {
            outbound_tasks::table
                .filter(outbound_tasks::action.eq("order.insert"))
                .order(outbound_tasks::id)
                .select((
                    outbound_tasks::subject,
                    outbound_tasks::run_after,
                    outbound_tasks::lease_owner,
                ))
                .load(c)
                .unwrap()
        })
        .await;
    for r in &rows {
        assert_eq!(r.lease_owner, None, "{r:?}");
        let next = r
            .next_at
            .unwrap_or_else(|| panic!("no next attempt: {r:?}"));
        assert!(
            next >= started && next <= settled + chrono::TimeDelta::seconds(2),
            "{r:?} (settled by {settled})"
        );
        let view = order_view(&app, &r.increment_id).await;
        assert_eq!(view["export"]["status"], "pending", "{view}");
    }
    // And they are sent once the warehouse is back and the backoff has passed.
    sim.set_behaviour(Behaviour::default());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let o = a.export_orders().await.unwrap();
    assert_eq!((o.items, o.exported), (2 * ROUNDS, 2 * ROUNDS), "{o:?}");
    sim.stop().await;
}

async fn a_late_exporter_still_records_the_rest_of_its_batch(backend: Backend) {
    let (app, sim) = setup(backend, |s| s.warehouse.orders.lease_secs = 1).await;
    app.put_order("T-1", &[("A", 1)]).await;
    app.put_order("T-2", &[("A", 1)]).await;
    sim.set_behaviour(Behaviour {
        hang: Some(Duration::from_millis(2500)),
        ..Behaviour::default()
    });
    let a = Arc::new(exporter(&app));
    let a_run = tokio::spawn({
        let a = a.clone();
        async move { a.export_order_batch().await }
    });
    // A's lease (1 s) runs out while it waits for the answer (2.5 s); B takes T-1 over as soon as
    // it can.
    while sim.requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut settings = (*app.settings).clone();
    settings.warehouse.orders.batch_size = 1;
    let b = Exporter::new(app.pool.clone(), Arc::new(settings)).unwrap();
    let mut rb = b.export_order_batch().await.unwrap();
    for _ in 0..40 {
        if rb.items > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        rb = b.export_order_batch().await.unwrap();
    }
    let ra = a_run
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("A failed: {e:#}"));
    assert_eq!(
        (ra.items, ra.exported),
        (2, 1),
        "A records T-2 and leaves T-1 to B: {ra:?}"
    );
    assert_eq!((rb.items, rb.exported), (1, 1), "{rb:?}");
    for id in ["T-1", "T-2"] {
        assert_eq!(order_view(&app, id).await["export"]["status"], "exported");
    }
    let log = app
        .with_conn(|c| export::recent_exports(c, 10).unwrap())
        .await;
    assert_eq!(log.len(), 2, "both exchanges are logged: {log:?}");
    assert!(log.iter().all(|e| e.outcome == "ok"));
    sim.stop().await;
}

async fn a_product_changed_while_being_sent_is_sent_again(backend: Backend) {
    let (app, sim) = setup(backend, |_| {}).await;
    let product = |name: &str| json!({"name": name, "price": "7.50"});
    let (status, body) = app
        .api(Method::PUT, "/products/MUG-1", Some(product("Blue mug")))
        .await;
    assert!(status == 200 || status == 201, "{body}");
    sim.set_behaviour(Behaviour {
        hang: Some(Duration::from_millis(800)),
        ..Behaviour::default()
    });
    let ex = Arc::new(exporter(&app));
    let run = tokio::spawn({
        let ex = ex.clone();
        async move { ex.export_products().await }
    });
    while sim.requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.api(Method::PUT, "/products/MUG-1", Some(product("Red mug")))
        .await;
    let o = run.await.unwrap().unwrap();
    assert_eq!((o.items, o.exported), (1, 1));
    let (_, view) = app.api(Method::GET, "/products/MUG-1", None).await;
    assert_eq!(
        view["export_pending"], true,
        "the change is still to send: {view}"
    );

    sim.set_behaviour(Behaviour::default());
    let o = ex.export_products().await.unwrap();
    assert_eq!((o.items, o.exported), (1, 1));
    let sent = sim.products();
    assert_eq!(sent.last().unwrap().field("description"), Some("Red mug"));
    let (_, view) = app.api(Method::GET, "/products/MUG-1", None).await;
    assert_eq!(view["export_pending"], false);
    sim.stop().await;
}

/// Gives the warehouse an order by hand, as its staff would, so that it can be cancelled there.
async fn import_by_hand(sim: &WarehouseSim, reference: &str) {
    let doc = format!(
        "<imports><import type=\"order\" operation=\"insert\" externalReference=\"{reference}\">\
         <![CDATA[externalReference={reference}\n]]></import></imports>"
    );
    let resp = reqwest::Client::new()
        .post(format!(
            "{}remoteorder/imports/importitems.xml?channel=web&organisation=ACME",
            sim.endpoint()
        ))
        .basic_auth(WMS_USER, Some(WMS_PASSWORD))
        .header("Content-Type", "application/xml")
        .body(doc)
        .send()
        .await
        .unwrap();
    let report = resp.text().await.unwrap();
    assert!(report.contains("importSuccess "), "{report}");
}

fn cancel_requests(sim: &WarehouseSim) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.path.ends_with("remoteorder/order/cancel.xml"))
        .count()
}

async fn a_refused_cancellation_backs_off_then_is_lost_then_resent_or_dismissed(backend: Backend) {
    let (app, sim) = setup(backend, |s| {
        let o = &mut s.warehouse.orders;
        o.max_attempts = 2;
        o.backoff_base_secs = 2;
        o.backoff_ceiling_secs = 2;
    })
    .await;
    // The warehouse says it already has them, but has them under no such reference: it will refuse
    // to cancel them ("No cancel operation performed").
    for id in ["K-1", "K-2"] {
        app.put_order(id, &[("A", 1)]).await;
    }
    sim.set_behaviour(Behaviour {
        duplicate: ["K-1".to_string(), "K-2".to_string()].into(),
        ..Behaviour::default()
    });
    let ex = exporter(&app);
    assert_eq!(ex.export_orders().await.unwrap().exported, 2);
    sim.set_behaviour(Behaviour::default());
    assert_eq!(
        order_view(&app, "K-1").await["cancellation"],
        serde_json::Value::Null,
        "not cancelled: no cancellation involved"
    );
    for id in ["K-1", "K-2"] {
        let (status, _) = app
            .api(Method::POST, &format!("/orders/{id}/cancel"), None)
            .await;
        assert!(status < 300, "{status}");
    }
    let c = &order_view(&app, "K-1").await["cancellation"];
    assert_eq!(
        (c["state"].as_str(), c["attempts"].as_i64()),
        (Some("pending"), Some(0)),
        "{c}"
    );

    // Refused: it waits for its backoff, for this exporter and for any other.
    let before = wharf::db::now().and_utc();
    let o = ex.export_cancellations().await.unwrap();
    assert_eq!(
        (o.items, o.exported, o.failed, o.lost),
        (2, 0, 2, 0),
        "{o:?}"
    );
    let c = order_view(&app, "K-1").await["cancellation"].clone();
    assert_eq!(
        (c["state"].as_str(), c["attempts"].as_i64()),
        (Some("failed"), Some(1)),
        "{c}"
    );
    has(
        c["last_error"].as_str().unwrap(),
        "No cancel operation performed for order K-1",
    );
    let next = time_of(&c["next_attempt_at"]);
    assert!(
        next > before && next <= before + chrono::TimeDelta::seconds(4),
        "{c}"
    );
    assert_eq!(
        order_view(&app, "K-1").await["export"]["status"],
        "exported"
    );
    assert_eq!(ex.export_cancellations().await.unwrap().items, 0);
    assert_eq!(
        exporter(&app).export_cancellations().await.unwrap().items,
        0
    );
    assert_eq!(cancel_requests(&sim), 2, "no retry before the backoff");

    // Refused at the last attempt: lost, and `wharf export` says so and fails.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let ran = wharf(
        &app,
        &sim.endpoint(),
        &[
            ("WHARF_WAREHOUSE__ORDERS__MAX_ATTEMPTS", "2"),
            ("WHARF_WAREHOUSE__ORDERS__BACKOFF_BASE_SECS", "2"),
        ],
        &["export"],
    )
    .await;
    assert!(!ran.ok);
    has(&ran.stdout, "cancellations: 2 sent: 0 confirmed, 2 refused");
    has(
        &ran.stdout,
        "cancellations: 2 lost after 2 attempts: the warehouse did not cancel order",
    );
    has(&ran.stderr, "2 cancellations lost");
    let c = order_view(&app, "K-2").await["cancellation"].clone();
    assert_eq!(
        (c["state"].as_str(), c["attempts"].as_i64()),
        (Some("lost"), Some(2)),
        "{c}"
    );
    assert!(c["next_attempt_at"].is_null());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        ex.export_cancellations().await.unwrap().items,
        0,
        "lost: not sent"
    );

    // Support sees them, marked as cancellations, and resends one and dismisses the other.
    let ran = wharf(&app, &sim.endpoint(), &[], &["orders", "lost"]).await;
    assert!(ran.ok, "{}", ran.stderr);
    has(&ran.stdout, "K-1  cancellation  attempts=2");
    has(&ran.stdout, "K-2  cancellation  attempts=2");
    import_by_hand(&sim, "K-1").await;
    let ran = wharf(
        &app,
        &sim.endpoint(),
        &[],
        &["orders", "resend", "K-1", "--by", "alice"],
    )
    .await;
    assert!(ran.ok, "{}", ran.stderr);
    has(&ran.stdout, "1 back to pending: K-1 (cancellation)");
    let dismiss = [
        "orders",
        "dismiss",
        "K-2",
        "--reason",
        "cancelled by phone",
        "--by",
        "bob",
    ];
    let ran = wharf(&app, &sim.endpoint(), &[], &dismiss).await;
    assert!(ran.ok, "{}", ran.stderr);
    has(&ran.stdout, "1 dismissed: K-2 (cancellation)");
    assert_eq!(
        order_view(&app, "K-2").await["cancellation"]["state"],
        "dismissed"
    );

    let o = ex.export_cancellations().await.unwrap();
    assert_eq!((o.items, o.exported), (1, 1), "{o:?}");
    assert_eq!(sim.cancelled(), vec!["K-1".to_string()]);
    let c = order_view(&app, "K-1").await["cancellation"].clone();
    assert_eq!(c["state"], "sent", "{c}");
    time_of(&c["sent_at"]);
    let ran = wharf(&app, &sim.endpoint(), &[], &["orders", "lost"]).await;
    has(&ran.stdout, "no lost orders");
    let ran = wharf(&app, &sim.endpoint(), &[], &["orders", "resend", "K-1"]).await;
    assert!(!ran.ok);
    has(
        &ran.stderr,
        "order K-1 is exported and its cancellation is sent",
    );

    let actions = app.order_support_actions().await;
    assert_eq!(
        actions,
        vec![
            ("resend_cancellation".to_string(), "alice".to_string(), None),
            (
                "dismiss_cancellation".to_string(),
                "bob".to_string(),
                Some("cancelled by phone".to_string())
            ),
        ]
    );
    sim.stop().await;
}

async fn an_unanswered_cancellation_waits_counts_on_the_breaker_and_stops_the_run(
    backend: Backend,
) {
    let (app, sim) = setup(backend, |s| s.warehouse.orders.backoff_base_secs = 60).await;
    for id in ["N-1", "N-2"] {
        app.put_order(id, &[("A", 1)]).await;
    }
    let ex = exporter(&app);
    assert_eq!(ex.export_orders().await.unwrap().exported, 2);
    for id in ["N-1", "N-2"] {
        app.api(Method::POST, &format!("/orders/{id}/cancel"), None)
            .await;
    }
    sim.set_behaviour(Behaviour {
        http_500: 1,
        ..Behaviour::default()
    });
    let before = wharf::db::now().and_utc();
    let o = ex.export_cancellations().await.unwrap();
    assert_eq!((o.items, o.not_sent, o.failed), (1, 1, 0), "{o:?}");
    assert!(o.batch_failed);
    assert_eq!(
        cancel_requests(&sim),
        1,
        "the run stops at the first unanswered one"
    );

    // Not counted against it, but it waits for the backoff; the breaker counted the failure.
    let c = order_view(&app, "N-1").await["cancellation"].clone();
    assert_eq!(
        (c["state"].as_str(), c["attempts"].as_i64()),
        (Some("pending"), Some(0)),
        "{c}"
    );
    has(c["last_error"].as_str().unwrap(), "HTTP 500");
    let next = time_of(&c["next_attempt_at"]);
    assert!(next >= before + chrono::TimeDelta::seconds(59), "{c}");
    let log = app
        .with_conn(|c| export::recent_exports(c, 1).unwrap())
        .await;
    assert_eq!(
        (
            log[0].kind.as_str(),
            log[0].outcome.as_str(),
            log[0].items,
            log[0].failures
        ),
        ("cancel", "http_error", 1, 0)
    );
    let breakers = app.with_conn(|c| export::breakers(c).unwrap()).await;
    assert_eq!(breakers[0].1.failures, 1);

    // The one not tried was let go: the next run sends it (and not the one waiting).
    let o = ex.export_cancellations().await.unwrap();
    assert_eq!((o.items, o.exported), (1, 1), "{o:?}");
    assert_eq!(sim.cancelled(), vec!["N-2".to_string()]);
    assert_eq!(
        order_view(&app, "N-1").await["cancellation"]["state"],
        "pending"
    );
    let breakers = app.with_conn(|c| export::breakers(c).unwrap()).await;
    assert!(
        breakers.is_empty(),
        "an answer closes the count: {breakers:?}"
    );

    // Unanswered cancellations open the order breaker, and then wait for it like orders do.
    for id in ["N-3", "N-4"] {
        app.put_order(id, &[("A", 1)]).await;
    }
    assert_eq!(ex.export_orders().await.unwrap().exported, 2);
    for id in ["N-3", "N-4"] {
        app.api(Method::POST, &format!("/orders/{id}/cancel"), None)
            .await;
    }
    sim.set_behaviour(Behaviour {
        http_500: 2,
        ..Behaviour::default()
    });
    assert!(!ex.export_cancellations().await.unwrap().paused);
    let o = ex.export_cancellations().await.unwrap();
    assert!(
        o.batch_failed && o.paused,
        "the second in a row opens it: {o:?}"
    );
    let before = cancel_requests(&sim);
    let o = ex.export_cancellations().await.unwrap();
    assert!(o.paused && o.items == 0, "{o:?}");
    assert_eq!(cancel_requests(&sim), before, "paused: nothing sent");
    let o = ex.export_orders().await.unwrap();
    assert!(o.paused, "the same breaker holds the orders: {o:?}");
    sim.stop().await;
}

async fn existing_cancellations_and_log_rows_carry_over(backend: Backend) {
    let db = TestDb::new(backend);
    let pool = wharf::db::connect(&db.url, 2).unwrap();
    let document = order_json(&[("A", 1)]).to_string().replace('\'', "''");
    tokio::task::spawn_blocking(move || {
        let mut conn = pool.get().unwrap();
        crate::helpers::migrate_until(&mut conn, "20261123000005");
        // As the previous version left them: one cancellation confirmed, one refused last time
        // (its error on the order), and their log rows all 'failure'.
        let t = "'2026-11-30 10:00:00'";
        for (id, status, cancel_sent_at, error) in [
            ("O-SENT", "canceled", t, "NULL"),
            ("O-REFUSED", "canceled", "NULL", "'the warehouse did not cancel order O-REFUSED: No cancel operation performed for order O-REFUSED'"),
            ("O-LIVE", "processing", "NULL", "NULL"),
        ] {
            diesel::sql_query(format!(
                "INSERT INTO orders (increment_id, status, source, is_virtual, document, ordered_at, \
                 received_at, updated_at, exported_at, export_status, cancel_sent_at, export_error) \
                 VALUES ('{id}', '{status}', 'web', false, '{document}', {t}, {t}, {t}, {t}, \
                 'exported', {cancel_sent_at}, {error})"
            ))
            .execute(&mut conn)
            .unwrap();
        }
        for (outcome, http, error, s, f) in [
            ("failure", "500", "'the warehouse answered HTTP 500'", 0, 1),
            ("failure", "200", "'the warehouse did not cancel order O-REFUSED: No cancel operation performed'", 0, 1),
            ("ok", "200", "NULL", 1, 0),
        ] {
            diesel::sql_query(format!(
                "INSERT INTO exports (message_id, kind, operation, url, started_at, finished_at, \
                 outcome, error, successes, duplicates, failures, http_status) VALUES \
                 ('cancel-{outcome}-{http}-{s}', 'cancel', 'cancel', 'http://wms/', {t}, {t}, \
                 '{outcome}', {error}, {s}, 0, {f}, {http})"
            ))
            .execute(&mut conn)
            .unwrap();
        }
        diesel::sql_query(format!(
            "INSERT INTO exports (message_id, kind, operation, url, started_at, finished_at, \
             outcome, successes, duplicates, failures, http_status) VALUES \
             ('order-1', 'order', 'insert', 'http://wms/', {t}, {t}, 'ok', 2, 1, 1, 200)"
        ))
        .execute(&mut conn)
        .unwrap();
    })
    .await
    .unwrap();

    // The current version starts on that database.
    let app = TestApp::spawn_on(db, |_| {}).await;
    let c = order_view(&app, "O-SENT").await["cancellation"].clone();
    assert_eq!(c["state"], "sent", "{c}");
    assert_eq!(
        time_of(&c["sent_at"]).to_rfc3339(),
        "2026-11-30T10:00:00+00:00"
    );
    let c = order_view(&app, "O-REFUSED").await["cancellation"].clone();
    assert_eq!(
        (c["state"].as_str(), c["attempts"].as_i64()),
        (Some("failed"), Some(1)),
        "{c}"
    );
    has(
        c["last_error"].as_str().unwrap(),
        "No cancel operation performed",
    );
    assert!(order_view(&app, "O-LIVE").await["cancellation"].is_null());
    let errors: Vec<Option<String>> = app
        .with_conn(|c| {
            outbound_tasks::table
                .filter(outbound_tasks::action.eq("order.insert"))
                .order(outbound_tasks::id)
                .select(outbound_tasks::last_error)
                .load(c)
                .unwrap()
        })
        .await;
    assert_eq!(
        errors,
        vec![None, None, None],
        "the export's own error is clear"
    );

    let log = app
        .with_conn(|c| export::recent_exports(c, 10).unwrap())
        .await;
    let got: Vec<(&str, &str, i32, i32, i32)> = log
        .iter()
        .map(|e| {
            (
                e.kind.as_str(),
                e.outcome.as_str(),
                e.items,
                e.successes,
                e.failures,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("order", "ok", 4, 2, 1),
            ("cancel", "ok", 1, 1, 0),
            ("cancel", "ok", 1, 0, 1),
            ("cancel", "http_error", 1, 0, 0),
        ]
    );
}

async fn support_cannot_resend_an_order_while_it_is_being_sent(backend: Backend) {
    let (app, sim) = setup(backend, |_| {}).await;
    app.put_order("F-1", &[("A", 1)]).await;
    sim.set_behaviour(Behaviour {
        fail: ["F-1".to_string()].into(),
        ..Behaviour::default()
    });
    let ex = Arc::new(exporter(&app));
    assert_eq!(ex.export_orders().await.unwrap().failed, 1);
    sim.set_behaviour(Behaviour {
        hang: Some(Duration::from_millis(1000)),
        ..Behaviour::default()
    });
    let run = tokio::spawn({
        let ex = ex.clone();
        async move { ex.export_orders().await }
    });
    while sim.requests().len() < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = app
        .with_conn(|c| export::resend(c, Some(&["F-1".to_string()]), "alice"))
        .await
        .unwrap_err()
        .to_string();
    has(
        &refused,
        "the export of order F-1 is being sent to the warehouse right now",
    );
    let o = run.await.unwrap().unwrap();
    assert_eq!(o.exported, 1, "{o:?}");
    let view = order_view(&app, "F-1").await;
    assert_eq!(view["export"]["status"], "exported", "{view}");
    sim.stop().await;
}

/// An order or product row that no longer deserialises (a field removed in a later release)
/// fails its own task with a clear error; the rest of the batch is sent, and the next run too.
async fn a_stored_document_that_no_longer_reads_fails_its_task_alone(backend: Backend) {
    let (app, sim) = setup(backend, |_| {}).await;
    app.put_order("J-1", &[("A", 1)]).await;
    app.put_order("J-BAD", &[("A", 1)]).await;
    app.put_order("J-2", &[("B", 1)]).await;
    for sku in ["JMUG-1", "JMUG-BAD"] {
        let (status, body) = app
            .api(
                Method::PUT,
                &format!("/products/{sku}"),
                Some(json!({"name": "Mug"})),
            )
            .await;
        assert!(status == 200 || status == 201, "{body}");
    }
    app.with_conn(|c| {
        for sql in [
            "UPDATE orders SET document = '{\"removed_field\": 1}' WHERE increment_id = 'J-BAD'",
            "UPDATE products SET document = '{\"removed_field\": 1}' WHERE sku = 'JMUG-BAD'",
        ] {
            diesel::sql_query(sql).execute(c).unwrap();
        }
    })
    .await;
    let ex = exporter(&app);
    let o = ex.export_orders().await.unwrap();
    assert_eq!((o.items, o.exported, o.failed), (3, 2, 1), "{o:?}");
    has(
        o.refusal.as_deref().unwrap(),
        "the stored document of J-BAD cannot be read",
    );
    let sent: Vec<String> = sim
        .orders()
        .into_iter()
        .map(|o| o.external_reference)
        .collect();
    assert_eq!(sent, ["J-1", "J-2"]);
    // (The order view reads the document too, so the task is looked at in the database.)
    let (status, task) = app
        .with_conn(|c| {
            let status: String = wharf::db::schema::orders::table
                .filter(wharf::db::schema::orders::increment_id.eq("J-BAD"))
                .select(wharf::db::schema::orders::export_status)
                .first(c)
                .unwrap();
            let task =
                wharf::outbound::task_of(c, wharf::orders::export::ORDER_INSERT, "J-BAD").unwrap();
            (status, task.unwrap())
        })
        .await;
    assert_eq!(status, "failed");
    assert_eq!(task.attempts, 1, "{task:?}");
    has(task.last_error.as_deref().unwrap(), "cannot be read");
    let o = ex.export_products().await.unwrap();
    assert_eq!((o.items, o.exported, o.failed), (2, 1, 1), "{o:?}");
    let sent: Vec<String> = sim
        .products()
        .into_iter()
        .map(|p| p.external_reference)
        .collect();
    assert_eq!(sent, ["JMUG-1"]);
    let task = app
        .with_conn(|c| {
            wharf::outbound::task_of(c, wharf::products::export::PRODUCT_MERGE, "JMUG-BAD")
                .unwrap()
                .unwrap()
        })
        .await;
    assert_eq!(task.state, wharf::outbound::TaskState::Failed, "{task:?}");
    has(task.last_error.as_deref().unwrap(), "cannot be read");

    // The exporter goes on: an order stored later is sent by the next run.
    app.put_order("J-3", &[("A", 1)]).await;
    let o = ex.export_orders().await.unwrap();
    assert!(o.exported >= 1, "{o:?}");
    assert_eq!(
        order_view(&app, "J-3").await["export"]["status"],
        "exported"
    );
    sim.stop().await;
}

/// A product the warehouse refused `max_attempts` times is not sent again on its own; changing
/// it (what the log tells the operator to do) sends it again.
async fn a_product_refused_until_lost_is_sent_again_once_changed(backend: Backend) {
    let (app, sim) = setup(backend, |_| {}).await;
    let product = |name: &str| json!({"name": name, "price": "7.50"});
    let (status, body) = app
        .api(Method::PUT, "/products/MUG-L", Some(product("Blue mug")))
        .await;
    assert!(status == 200 || status == 201, "{body}");
    sim.set_behaviour(Behaviour {
        fail: ["MUG-L".to_string()].into(),
        ..Behaviour::default()
    });
    let ex = exporter(&app);
    for attempt in 1..=3 {
        let o = ex.export_products().await.unwrap();
        assert_eq!((o.items, o.failed), (1, 1), "attempt {attempt}: {o:?}");
    }
    let o = ex.export_products().await.unwrap();
    assert_eq!(o.items, 0, "refused 3 times, it waits: {o:?}");

    sim.set_behaviour(Behaviour::default());
    let (status, body) = app
        .api(
            Method::PUT,
            "/products/MUG-L",
            Some(product("Blue mug, fixed")),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let o = ex.export_products().await.unwrap();
    assert_eq!((o.items, o.exported), (1, 1), "{o:?}");
    let sent = sim.products();
    assert_eq!(
        sent.last().unwrap().field("description"),
        Some("Blue mug, fixed")
    );
    let (_, view) = app.api(Method::GET, "/products/MUG-L", None).await;
    assert_eq!(view["export_pending"], false, "{view}");
    sim.stop().await;
}
