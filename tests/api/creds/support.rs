//! Support answers "what exactly was received and what happened to it" without SQL:
//! `wharf requests list|show`, and puts requests back with `requeue` (dead, or waiting to retry) and
//! `reprocess` (processed), each recorded with who did it, never behind a worker's back.

use diesel::prelude::*;
use reqwest::Method;
use wharf::worker::Worker;

use super::{listed_ids, listed_row, wharf_err, wharf_ok, wharf_with};
use crate::both_backends;
use crate::helpers::{Backend, TestApp};

both_backends!(
    requests_are_listed_filtered_and_shown,
    a_dead_request_is_requeued_and_recorded,
    a_failed_shipment_is_reprocessed_once_its_order_is_fixed,
    a_request_waiting_to_retry_is_requeued_now,
    a_request_a_worker_holds_is_left_alone,
);

/// Makes applying any line for SKU POISON fail, as a database fault would.
async fn poison(app: &TestApp, backend: Backend, on: bool) {
    let statements: &'static [&'static str] = match (backend, on) {
        (Backend::Sqlite, true) => &["CREATE TRIGGER poison BEFORE INSERT ON import_lines \
             WHEN NEW.sku = 'POISON' BEGIN SELECT RAISE(ABORT, 'poisoned line'); END"],
        (Backend::Postgres, true) => &[
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.sku = 'POISON' THEN RAISE EXCEPTION 'poisoned line'; END IF; \
             RETURN NEW; END $$",
            "CREATE TRIGGER poison BEFORE INSERT ON import_lines \
             FOR EACH ROW EXECUTE FUNCTION poison()",
        ],
        (Backend::Sqlite, false) => &["DROP TRIGGER poison"],
        (Backend::Postgres, false) => &["DROP TRIGGER poison ON import_lines"],
    };
    app.with_conn(move |c| {
        for statement in statements {
            diesel::sql_query(*statement).execute(c).unwrap();
        }
    })
    .await;
}

/// The id of the newest request.
async fn newest(app: &TestApp) -> i64 {
    listed_ids(&wharf_ok(app, &["requests", "list", "--limit", "1"]).await)[0]
}

async fn show(app: &TestApp, id: i64) -> String {
    wharf_ok(app, &["requests", "show", &id.to_string()]).await
}

async fn requests_are_listed_filtered_and_shown(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    app.put_order("100000001", &[("A", 2), ("B", 1)]).await;
    app.send_inventory(&s, 1, &[("A", 5, 10), ("B", 3, 11)])
        .await;
    app.send_inventory(&s, 2, &[("C", 1, 1)]).await;
    app.send_shipment(&s, "100000001", 3, &[("A", 1)], "TRACK-1")
        .await;
    // More than was ordered: the shipment fails as a whole, visibly.
    app.send_shipment(&s, "100000001", 4, &[("B", 5)], "TRACK-2")
        .await;
    assert_eq!(app.drain().await, 4);

    let all = listed_ids(&wharf_ok(&app, &["requests", "list"]).await);
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0] > w[1]), "newest first: {all:?}");
    let [over, shipped, inv_c, inv_ab] = [all[0], all[1], all[2], all[3]];

    let ids = |args: &'static [&'static str]| {
        let app = &app;
        async move {
            let mut full = vec!["requests", "list"];
            full.extend_from_slice(args);
            listed_ids(&wharf_ok(app, &full).await)
        }
    };
    assert_eq!(ids(&["--operation", "shipment"]).await, vec![over, shipped]);
    assert_eq!(
        ids(&["--operation", "inventory.update"]).await,
        vec![inv_c, inv_ab]
    );
    assert_eq!(ids(&["--sku", "C"]).await, vec![inv_c]);
    assert_eq!(ids(&["--sku", "A"]).await, vec![shipped, inv_ab]);
    assert_eq!(
        ids(&["--order", "100000001", "--limit", "1"]).await,
        vec![over]
    );
    assert_eq!(ids(&["--state", "failed"]).await, vec![over]);
    assert_eq!(ids(&["--state", "processed"]).await.len(), 4);
    assert_eq!(ids(&["--state", "dead"]).await, Vec::<i64>::new());
    assert_eq!(ids(&["--message-seq-id", "2"]).await, vec![inv_c]);
    let list = wharf_ok(&app, &["requests", "list"]).await;
    let row = listed_row(&list, over);
    assert!(
        row.contains("shipment.create") && row.contains("orderflow"),
        "{row}"
    );
    assert!(row.contains("processed (1 failed)"), "{row}");
    assert!(
        row.contains("Cannot ship 5 of SKU B on order 100000001"),
        "{row}"
    );

    let shown = show(&app, shipped).await;
    for expected in [
        format!("request #{shipped}"),
        "operation:      shipment.create".to_string(),
        "messageSeqId:   3".to_string(),
        "caller:         orderflow".to_string(),
        "state:          processed".to_string(),
        "shipment:       order 100000001, courier DPD, service Next Day".to_string(),
        "tracking TRACK-1".to_string(),
        "lines (1):".to_string(),
        "import report: 1 success(es), 0 duplicate(s), 0 superseded, 0 failure(s)".to_string(),
        "Success".to_string(),
        "<orderIncrementId>100000001</orderIncrementId>".to_string(),
        "<sessionId>***</sessionId>".to_string(),
    ] {
        assert!(shown.contains(&expected), "{expected:?} missing:\n{shown}");
    }
    let shown = show(&app, inv_ab).await;
    assert!(
        shown.contains("B  source default  qty 3  seq 11"),
        "{shown}"
    );
    assert!(shown.contains("received 5  stored 5  Success"), "{shown}");

    let err = wharf_err(&app, &["requests", "show", "999999"]).await;
    assert!(err.contains("request #999999 does not exist"), "{err}");
    let err = wharf_err(&app, &["requests", "list", "--state", "stuck"]).await;
    assert!(err.contains("unknown state \"stuck\""), "{err}");
    let err = wharf_err(&app, &["requests", "list", "--operation", "login"]).await;
    assert!(err.contains("unknown operation \"login\""), "{err}");
}

async fn a_dead_request_is_requeued_and_recorded(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.worker.max_attempts = 1).await;
    let s = app.login().await;
    app.send_inventory(&s, 1, &[("OK", 1, 1)]).await;
    assert_eq!(app.drain().await, 1);
    let processed = newest(&app).await;
    poison(&app, backend, true).await;
    app.send_inventory(&s, 2, &[("P", 2, 1), ("POISON", 9, 1)])
        .await;
    assert_eq!(app.drain().await, 0);
    let dead = newest(&app).await;

    let list = wharf_ok(&app, &["requests", "list", "--state", "dead"]).await;
    assert_eq!(listed_ids(&list), vec![dead]);
    assert!(listed_row(&list, dead).contains("poisoned line"), "{list}");
    let shown = show(&app, dead).await;
    assert!(shown.contains("state:          dead"), "{shown}");
    assert!(shown.contains("failed attempts (1):"), "{shown}");
    assert!(shown.contains("attempt 1"), "{shown}");
    assert!(
        shown.contains("import report: none (not applied)"),
        "{shown}"
    );

    // Actions that make no sense are refused, all or nothing.
    let err = wharf_err(&app, &["requests", "reprocess", &dead.to_string()]).await;
    assert!(
        err.contains("is dead") && err.contains("wharf requests requeue"),
        "{err}"
    );
    let err = wharf_err(
        &app,
        &[
            "requests",
            "requeue",
            &dead.to_string(),
            &processed.to_string(),
        ],
    )
    .await;
    assert!(
        err.contains(&format!("request #{processed} has been processed")),
        "{err}"
    );
    assert!(
        err.contains("wharf requests reprocess") && err.contains("nothing changed"),
        "{err}"
    );
    let err = wharf_err(&app, &["requests", "requeue", "999999"]).await;
    assert!(err.contains("request #999999 does not exist"), "{err}");
    assert!(show(&app, dead).await.contains("state:          dead"));

    poison(&app, backend, false).await;
    let out = wharf_ok(
        &app,
        &["requests", "requeue", &dead.to_string(), "--by", "alice"],
    )
    .await;
    assert_eq!(
        out.trim(),
        format!("1 request(s) back to the queue: #{dead}")
    );
    let row = listed_row(
        &wharf_ok(&app, &["requests", "list", "--state", "queued"]).await,
        dead,
    );
    assert_eq!(
        row.split_whitespace().nth(7),
        Some("0"),
        "attempts reset: {row}"
    );
    assert_eq!(app.drain().await, 1);
    assert_eq!(app.stock_of("POISON").await, Some((9, 1)));

    let shown = show(&app, dead).await;
    assert!(shown.contains("state:          processed"), "{shown}");
    assert!(
        shown.contains("requeue by alice (was dead after 1 attempt(s); last error:"),
        "{shown}"
    );
    assert!(shown.contains("poisoned line"), "{shown}");
    assert!(shown.contains("import report: 2 success(es)"), "{shown}");
}

async fn a_failed_shipment_is_reprocessed_once_its_order_is_fixed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    app.put_order("5001", &[("A", 1)]).await;
    app.send_shipment(&s, "5001", 7, &[("A", 2)], "TRACK-7")
        .await;
    assert_eq!(app.drain().await, 1);
    let id = newest(&app).await;
    assert_eq!(
        listed_ids(&wharf_ok(&app, &["requests", "list", "--state", "failed"]).await),
        vec![id]
    );

    // Support finds the order was sent short, has it corrected, and applies the shipment again.
    let (status, body) = app.put_order("5001", &[("A", 2)]).await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let err = wharf_err(&app, &["requests", "requeue", &id.to_string()]).await;
    assert!(err.contains("has been processed"), "{err}");
    let out = wharf_ok(
        &app,
        &["requests", "reprocess", &id.to_string(), "--by", "carol"],
    )
    .await;
    assert_eq!(
        out.trim(),
        format!("1 request(s) queued to be applied again: #{id}")
    );
    let shown = show(&app, id).await;
    assert!(shown.contains("state:          queued"), "{shown}");
    assert!(
        shown.contains("reprocess by carol (was processed after 1 attempt(s))"),
        "{shown}"
    );
    assert!(
        shown.contains(
            "replaced import report: 0 success(es), 0 duplicate(s), 0 superseded, 1 failure(s)"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("Failure  Cannot ship 2 of SKU A on order 5001"),
        "{shown}"
    );

    assert_eq!(app.drain().await, 1);
    let (_, order) = app.api(Method::GET, "/orders/5001", None).await;
    assert_eq!(order["lines"][0]["qty_shipped"], 2, "{order}");
    assert_eq!(order["status"], "complete", "{order}");
    let shown = show(&app, id).await;
    assert!(shown.contains("import report: 1 success(es)"), "{shown}");

    // Applying it once more is harmless: the shipment is a duplicate of itself.
    wharf_ok(
        &app,
        &["requests", "reprocess", &id.to_string(), "--by", "carol"],
    )
    .await;
    assert_eq!(app.drain().await, 1);
    let (_, order) = app.api(Method::GET, "/orders/5001", None).await;
    assert_eq!(order["lines"][0]["qty_shipped"], 2, "{order}");
    let shown = show(&app, id).await;
    assert!(
        shown.contains("import report: 0 success(es), 1 duplicate(s)"),
        "{shown}"
    );
    assert_eq!(shown.matches("reprocess by carol").count(), 2, "{shown}");
}

async fn a_request_waiting_to_retry_is_requeued_now(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.worker.max_attempts = 5;
        s.worker.backoff_base_secs = 3600;
    })
    .await;
    let s = app.login().await;
    poison(&app, backend, true).await;
    app.send_inventory(&s, 1, &[("POISON", 4, 1)]).await;
    assert_eq!(app.drain().await, 0);
    let id = newest(&app).await;
    let list = wharf_ok(&app, &["requests", "list", "--state", "retrying"]).await;
    assert_eq!(listed_ids(&list), vec![id]);
    assert!(show(&app, id).await.contains("next attempt:"));
    let err = wharf_err(&app, &["requests", "reprocess", &id.to_string()]).await;
    assert!(
        err.contains("is already queued") && err.contains("wharf requests requeue"),
        "{err}"
    );
    poison(&app, backend, false).await;
    // Not due for an hour …
    assert_eq!(app.drain().await, 0);
    // … unless support says so ($USER names who did it when --by is not given).
    let run = wharf_with(
        &app,
        &["requests", "requeue", &id.to_string()],
        "",
        &[("USER", "bob")],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(app.drain().await, 1);
    // A request that has not failed has nothing to requeue.
    app.send_inventory(&s, 2, &[("FRESH", 1, 1)]).await;
    let fresh = newest(&app).await;
    let err = wharf_err(&app, &["requests", "requeue", &fresh.to_string()]).await;
    assert!(err.contains("has not failed yet"), "{err}");
    assert_eq!(app.drain().await, 1);
    let shown = show(&app, id).await;
    assert!(
        shown.contains("requeue by bob (was queued after 1 attempt(s); last error:"),
        "{shown}"
    );
    assert!(shown.contains("state:          processed"), "{shown}");
}

async fn a_request_a_worker_holds_is_left_alone(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    app.send_inventory(&s, 1, &[("H", 3, 1)]).await;
    let id = newest(&app).await;
    let worker = Worker::new(app.pool.clone(), app.settings.clone());
    let (worker, owner, claimed) = tokio::task::spawn_blocking(move || {
        let (owner, claimed) = worker.claim().unwrap();
        (worker, owner, claimed)
    })
    .await
    .unwrap();
    assert_eq!(claimed.len(), 1);

    for action in ["requeue", "reprocess"] {
        let err = wharf_err(&app, &["requests", action, &id.to_string()]).await;
        assert!(
            err.contains("is being applied by a worker right now"),
            "{err}"
        );
        assert!(err.contains(&owner), "{err}");
    }
    // The worker finishes undisturbed.
    let done = tokio::task::spawn_blocking(move || worker.apply_claimed(&owner, &claimed).unwrap())
        .await
        .unwrap();
    assert_eq!(done.processed, 1);
    assert_eq!(app.stock_of("H").await, Some((3, 1)));
    assert!(!show(&app, id).await.contains("support actions"));
}
