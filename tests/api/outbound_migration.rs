//! Migration 000011 (the outbound task queue) carries every export state over: a database filled by
//! the schema before it, in every state, then migrated by the current version, shows users what it
//! showed before — the order API's export and cancellation views, `wharf orders lost`, the products'
//! `export_pending` — and what was due is still sent.

use std::process::Command;

use diesel::prelude::*;
use reqwest::Method;
use wharf::channels::warehouse::Exporter;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, TestDb, migrate_until, order_json};
use crate::warehouse_api::WarehouseSim;

both_backends!(every_export_state_carries_over_to_the_task_queue);

const T: &str = "'2026-11-30 10:00:00'";

/// (increment id, status, export status, attempts, next at, error, handled by, handled at, note)
type OrderFill = (
    &'static str,
    &'static str,
    &'static str,
    i32,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

const ORDERS: &[OrderFill] = &[
    (
        "O-PEND",
        "processing",
        "pending",
        0,
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
    ),
    (
        "O-FAIL",
        "processing",
        "failed",
        2,
        T,
        "'refused twice'",
        "NULL",
        "NULL",
        "NULL",
    ),
    (
        "O-LOST",
        "processing",
        "lost",
        4,
        "NULL",
        "'refused for good'",
        "NULL",
        "NULL",
        "NULL",
    ),
    (
        "O-EXP",
        "processing",
        "exported",
        0,
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "NULL",
    ),
    (
        "O-DISM",
        "processing",
        "dismissed",
        0,
        "NULL",
        "NULL",
        "'bob'",
        T,
        "'sent by e-mail'",
    ),
    (
        "O-SKIP",
        "complete",
        "skipped",
        1,
        "NULL",
        "NULL",
        "NULL",
        "NULL",
        "'shipped before export'",
    ),
    (
        "C-PEND", "canceled", "exported", 0, "NULL", "NULL", "NULL", "NULL", "NULL",
    ),
    (
        "C-SENT", "canceled", "exported", 0, "NULL", "NULL", "NULL", "NULL", "NULL",
    ),
    (
        "C-FAIL", "canceled", "exported", 0, "NULL", "NULL", "NULL", "NULL", "NULL",
    ),
    (
        "C-LOST", "canceled", "exported", 0, "NULL", "NULL", "NULL", "NULL", "NULL",
    ),
    (
        "C-DISM", "canceled", "exported", 0, "NULL", "NULL", "NULL", "NULL", "NULL",
    ),
    (
        "C-UNDISC", "canceled", "exported", 0, "NULL", "NULL", "NULL", "NULL", "NULL",
    ),
];

/// (order, state, attempts, error, sent at, handled by, note)
const CANCELLATIONS: &[(&str, &str, i32, &str, &str, &str, &str)] = &[
    ("C-PEND", "pending", 0, "NULL", "NULL", "NULL", "NULL"),
    ("C-SENT", "sent", 0, "NULL", T, "NULL", "NULL"),
    (
        "C-FAIL",
        "failed",
        1,
        "'not cancelled'",
        "NULL",
        "NULL",
        "NULL",
    ),
    (
        "C-LOST",
        "lost",
        4,
        "'never cancelled'",
        "NULL",
        "NULL",
        "NULL",
    ),
    (
        "C-DISM",
        "dismissed",
        0,
        "NULL",
        "NULL",
        "'alice'",
        "'by phone'",
    ),
];

/// Fills a database migrated up to 000010 as the previous version left it.
fn fill(conn: &mut wharf::db::DbConnection) {
    let document = order_json(&[("A", 1)]).to_string().replace('\'', "''");
    let mut sql = Vec::new();
    for (id, status, export, attempts, next, error, by, at, note) in ORDERS {
        let exported_at = if *export == "exported" { T } else { "NULL" };
        sql.push(format!(
            "INSERT INTO orders (increment_id, status, source, is_virtual, document, ordered_at, \
             received_at, updated_at, exported_at, export_status, export_attempts, export_next_at, \
             export_error, export_handled_by, export_handled_at, export_note) VALUES ('{id}', \
             '{status}', 'web', false, '{document}', {T}, {T}, {T}, {exported_at}, '{export}', \
             {attempts}, {next}, {error}, {by}, {at}, {note})"
        ));
    }
    for (id, state, attempts, error, sent, by, note) in CANCELLATIONS {
        let at = if *by == "NULL" { "NULL" } else { T };
        sql.push(format!(
            "INSERT INTO order_cancellations (order_id, state, attempts, error, sent_at, \
             handled_by, handled_at, note, updated_at) SELECT id, '{state}', {attempts}, {error}, \
             {sent}, {by}, {at}, {note}, {T} FROM orders WHERE increment_id = '{id}'"
        ));
    }
    for (id, action, actor, reason) in [
        ("O-DISM", "dismiss", "bob", "'sent by e-mail'"),
        ("C-DISM", "dismiss_cancellation", "alice", "'by phone'"),
    ] {
        sql.push(format!(
            "INSERT INTO order_export_actions (order_id, action, actor, reason, at) SELECT id, \
             '{action}', '{actor}', {reason}, {T} FROM orders WHERE increment_id = '{id}'"
        ));
    }
    for (sku, pending, attempts, error) in [
        ("P-PEND", true, 0, "NULL"),
        ("P-FAIL", true, 1, "'bad barcode'"),
        ("P-DONE", false, 0, "NULL"),
    ] {
        sql.push(format!(
            "INSERT INTO products (sku, name, document, updated_at, export_pending, exported_at, \
             export_attempts, export_error) VALUES ('{sku}', 'Mug', '{{\"name\": \"Mug\"}}', {T}, \
             {pending}, NULL, {attempts}, {error})"
        ));
    }
    for s in sql {
        diesel::sql_query(&s)
            .execute(conn)
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

async fn view(app: &TestApp, id: &str) -> serde_json::Value {
    let (status, v) = app.api(Method::GET, &format!("/orders/{id}"), None).await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn every_export_state_carries_over_to_the_task_queue(backend: Backend) {
    let db = TestDb::new(backend);
    let pool = wharf::db::connect(&db.url, 2).unwrap();
    tokio::task::spawn_blocking(move || {
        let mut conn = pool.get().unwrap();
        migrate_until(&mut conn, "20261202000010");
        fill(&mut conn);
    })
    .await
    .unwrap();
    let sim = WarehouseSim::start("wharf", "wms secret").await;
    let endpoint = sim.endpoint();
    let app = TestApp::spawn_on(db, move |s| {
        let w = &mut s.warehouse;
        w.endpoint = endpoint;
        (w.username, w.password) = ("wharf".into(), "wms secret".into());
        (w.organisation, w.channel) = ("ACME".into(), "web".into());
        for e in [&mut w.orders, &mut w.products] {
            e.enabled = true;
            e.schedule = "0 0 1 1 *".into();
            e.backoff_base_secs = 0;
        }
    })
    .await;

    check_export_views(&app).await;
    check_cancellation_views(&app).await;
    check_lost_list_and_audit(&app).await;
    for (sku, pending) in [("P-PEND", true), ("P-FAIL", true), ("P-DONE", false)] {
        let (_, p) = app
            .api(Method::GET, &format!("/products/{sku}"), None)
            .await;
        assert_eq!(p["export_pending"], pending, "{p}");
    }

    // What was due is sent, and support's resend works on what was lost.
    let resent = wharf_cli(&app, &["orders", "resend", "O-LOST", "--by", "carol"]);
    assert!(
        resent.contains("1 back to pending: O-LOST (export)"),
        "{resent}"
    );
    let ex = Exporter::new(app.pool.clone(), app.settings.clone()).unwrap();
    let o = ex.export_orders().await.unwrap();
    assert_eq!((o.items, o.exported), (3, 3), "{o:?}");
    let sent: Vec<String> = sim
        .orders()
        .into_iter()
        .map(|o| o.external_reference)
        .collect();
    assert_eq!(sent, ["O-PEND", "O-FAIL", "O-LOST"]);
    assert_eq!(view(&app, "O-LOST").await["export"]["status"], "exported");
    assert_eq!(ex.export_products().await.unwrap().items, 2);
    // Pending, failed, and the cancellation the exporter had not discovered yet.
    assert_eq!(ex.export_cancellations().await.unwrap().items, 3);
    sim.stop().await;
}

async fn check_export_views(app: &TestApp) {
    for (id, _, export, attempts, _, error, _, _, note) in ORDERS {
        let e = view(app, id).await["export"].clone();
        assert_eq!(e["status"], *export, "{id}: {e}");
        assert_eq!(e["attempts"], *attempts, "{id}: {e}");
        let unquote = |s: &str| (s != "NULL").then(|| s.trim_matches('\'').to_string());
        assert_eq!(
            e["last_error"].as_str().map(str::to_string),
            unquote(error),
            "{id}: {e}"
        );
        assert_eq!(
            e["note"].as_str().map(str::to_string),
            unquote(note),
            "{id}: {e}"
        );
        assert_eq!(
            e["next_attempt_at"].is_string(),
            *export == "failed",
            "{id}: {e}"
        );
        assert_eq!(
            e["exported_at"].is_string(),
            *export == "exported",
            "{id}: {e}"
        );
    }
    let dismissed = view(app, "O-DISM").await["export"]["support_action"].clone();
    assert_eq!(dismissed["action"], "dismiss", "{dismissed}");
    assert_eq!(dismissed["by"], "bob", "{dismissed}");
    assert_eq!(dismissed["reason"], "sent by e-mail", "{dismissed}");
}

async fn check_cancellation_views(app: &TestApp) {
    for (id, state, attempts, error, sent, _, _) in CANCELLATIONS {
        let c = view(app, id).await["cancellation"].clone();
        assert_eq!(c["state"], *state, "{id}: {c}");
        assert_eq!(c["attempts"], *attempts, "{id}: {c}");
        assert_eq!(c["last_error"].is_string(), *error != "NULL", "{id}: {c}");
        assert_eq!(c["sent_at"].is_string(), *sent != "NULL", "{id}: {c}");
    }
    let c = view(app, "C-UNDISC").await["cancellation"].clone();
    assert_eq!(c["state"], "pending", "{c}");
    assert!(view(app, "O-EXP").await["cancellation"].is_null());
}

async fn check_lost_list_and_audit(app: &TestApp) {
    let lost = wharf_cli(app, &["orders", "lost"]);
    let lines: Vec<&str> = lost.lines().collect();
    assert_eq!(lines.len(), 2, "{lost}");
    assert!(
        lines[0]
            .starts_with("O-LOST  export        attempts=4  2026-11-30 10:00:00  refused for good"),
        "{lost}"
    );
    assert!(
        lines[1]
            .starts_with("C-LOST  cancellation  attempts=4  2026-11-30 10:00:00  never cancelled"),
        "{lost}"
    );
    let actions = app.order_support_actions().await;
    assert_eq!(
        actions,
        vec![
            (
                "dismiss".to_string(),
                "bob".to_string(),
                Some("sent by e-mail".to_string())
            ),
            (
                "dismiss_cancellation".to_string(),
                "alice".to_string(),
                Some("by phone".to_string())
            ),
        ]
    );
}

/// Runs the `wharf` binary on the app's database; returns its standard output.
fn wharf_cli(app: &TestApp, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .env("DATABASE_URL", &app.db.url)
        .env("RUST_LOG", "warn")
        .env("WHARF_DB_POOL_SIZE", "2")
        .output()
        .expect("run wharf");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wharf {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
