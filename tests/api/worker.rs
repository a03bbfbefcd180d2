//! The worker: leases, takeover after a worker dies, and concurrent workers.

use std::sync::Arc;

use diesel::prelude::*;

use crate::both_backends;
use crate::helpers::{Backend, TestApp};
use wharf::worker::Worker;

both_backends!(
    a_dead_workers_lease_is_taken_over_and_applied_once,
    concurrent_workers_keep_the_newest_value,
    requests_applied_together_report_as_if_applied_one_by_one,
    concurrent_workers_meeting_new_skus_apply_everything_once,
    a_request_that_fails_does_not_hold_back_its_batch,
);

async fn a_dead_workers_lease_is_taken_over_and_applied_once(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.worker.lease_secs = 1).await;
    let s = app.login().await;
    app.send_inventory(&s, 1, &[("L", 4, 40)]).await;
    app.send_inventory(&s, 2, &[("M", 5, 50)]).await;

    // Worker A claims both requests and then stops responding before applying anything.
    let dying = Worker::new(app.pool.clone(), app.settings.clone());
    let (owner, claimed) = tokio::task::spawn_blocking({
        let pool = app.pool.clone();
        let settings = app.settings.clone();
        move || Worker::new(pool, settings).claim().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(claimed.len(), 2);
    // While the lease holds, nobody else takes the work.
    assert_eq!(app.drain().await, 0);
    assert_eq!(app.stock_of("L").await, None);

    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    // Worker B takes the expired leases over and applies them.
    assert_eq!(app.drain().await, 2);
    assert_eq!(app.stock_of("L").await, Some((4, 40)));

    // Worker A wakes up and tries to finish: its lease is gone, so nothing is applied a second time.
    let late = tokio::task::spawn_blocking(move || dying.apply_claimed(&owner, &claimed).unwrap())
        .await
        .unwrap();
    assert_eq!(late.processed, 0);
    assert_eq!(late.lost_lease, 2);
    assert_eq!(app.queue_depth().await, vec![("processed".to_string(), 2)]);
    let reports = app.import_lines(1).await.len() + app.import_lines(2).await.len();
    assert_eq!(reports, 2, "each request has exactly one import report");
}

async fn concurrent_workers_keep_the_newest_value(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.worker.batch_size = 3).await;
    let s = app.login().await;
    // 40 messages over the same 5 SKUs, sent with their sequence ids shuffled, so workers see stale
    // and fresh updates in any order.
    let mut seqs: Vec<i64> = (1..=40).collect();
    let mut x: u64 = 0x2545F4914F6CDD1D;
    for i in (1..seqs.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        seqs.swap(i, (x % (i as u64 + 1)) as usize);
    }
    for (n, seq) in seqs.iter().enumerate() {
        let lines: Vec<(String, i64, i64)> = (0..5)
            .map(|k| (format!("C{k}"), seq * 10 + k, *seq))
            .collect();
        let lines: Vec<(&str, i64, i64)> =
            lines.iter().map(|(a, b, c)| (a.as_str(), *b, *c)).collect();
        assert_eq!(app.send_inventory(&s, n as i64 + 1, &lines).await.0, 200);
    }
    let mut handles = Vec::new();
    for _ in 0..3 {
        let w = Arc::new(Worker::new(app.pool.clone(), app.settings.clone()));
        handles.push(tokio::task::spawn_blocking(move || w.drain().unwrap()));
    }
    let mut applied = 0;
    for h in handles {
        applied += h.await.unwrap();
    }
    assert_eq!(
        applied, 40,
        "every request applied exactly once across workers"
    );
    for k in 0..5 {
        assert_eq!(app.stock_of(&format!("C{k}")).await, Some((400 + k, 40)));
    }
}

/// What a user can see after applying: every message's import lines, the stock, and the feed.
#[derive(Debug, PartialEq)]
struct Outcome {
    reports: Vec<Vec<(String, String, String)>>,
    stock: Vec<Option<(i64, i64)>>,
    feed: Vec<(String, serde_json::Value)>,
}

/// Sends messages that hit the same SKUs in and out of order, applies them with `batch_size`, and
/// returns what can be seen.
async fn apply_mixed_messages(backend: Backend, batch_size: i64) -> Outcome {
    let app = TestApp::spawn_with(backend, |s| s.worker.batch_size = batch_size).await;
    let s = app.login().await;
    let messages: &[&[(&str, i64, i64)]] = &[
        &[("A", 50, 5), ("B", 10, 1)],
        &[("A", 70, 7)],
        &[("A", 60, 6), ("B", 11, 1)],
        &[("A", 71, 7), ("C", 30, 3), ("B", -4, 2)],
        &[("C", 31, 12), ("C2", 5, 1)],
    ];
    for (n, lines) in messages.iter().enumerate() {
        assert_eq!(app.send_inventory(&s, n as i64 + 1, lines).await.0, 200);
    }
    assert_eq!(app.drain().await, messages.len());
    let mut reports = Vec::new();
    for n in 1..=messages.len() as i64 {
        reports.push(app.import_lines(n).await);
    }
    let mut stock = Vec::new();
    for sku in ["A", "B", "C", "C2"] {
        stock.push(app.stock_of(sku).await);
    }
    let feed = app.feed().await.into_iter().map(|e| (e.1, e.2)).collect();
    // Times written in bulk read back as the time of the apply.
    let (_, page) = app
        .api(reqwest::Method::GET, "/feed?after=0&limit=1", None)
        .await;
    let event_time: chrono::NaiveDateTime =
        serde_json::from_value::<chrono::DateTime<chrono::Utc>>(
            page["events"][0]["created_at"].clone(),
        )
        .unwrap()
        .naive_utc();
    let line_times: Vec<chrono::NaiveDateTime> = app
        .with_conn(|c| {
            use wharf::db::schema::import_lines;
            import_lines::table
                .select(import_lines::created_at)
                .load(c)
                .unwrap()
        })
        .await;
    let now = chrono::Utc::now().naive_utc();
    for t in line_times.iter().chain([&event_time]) {
        assert!(
            (now - *t).num_seconds().abs() < 60,
            "{t} is not about {now}"
        );
    }
    Outcome {
        reports,
        stock,
        feed,
    }
}

async fn requests_applied_together_report_as_if_applied_one_by_one(backend: Backend) {
    // One batch (one transaction) for all five messages, against one request per batch.
    let together = apply_mixed_messages(backend, 100).await;
    let alone = apply_mixed_messages(backend, 1).await;
    assert_eq!(together, alone);

    let line = |m: usize, i: usize| together.reports[m][i].clone();
    let ok = |sku: &str, qty: i64| {
        (
            sku.to_string(),
            "Success".to_string(),
            format!(
                "Product Quantity Successfully Updated to {qty}; the SKU is not in wharf's catalogue"
            ),
        )
    };
    assert_eq!(line(0, 0), ok("A", 50));
    assert_eq!(line(1, 0), ok("A", 70));
    assert_eq!(
        line(2, 0),
        (
            "A".to_string(),
            "Superseded".to_string(),
            "Product quantity update to 60 discarded as already superseded by inventory record 7"
                .to_string()
        )
    );
    assert_eq!(
        line(2, 1),
        (
            "B".to_string(),
            "Duplicate".to_string(),
            "Duplicate Inventory Request Ignored.".to_string()
        )
    );
    assert_eq!(line(3, 0).1, "Duplicate");
    assert_eq!(line(3, 1), ok("C", 30));
    assert_eq!(line(3, 2).1, "Success");
    assert_eq!(line(4, 0), ok("C", 31));
    assert_eq!(
        together.stock,
        vec![Some((70, 7)), Some((0, 2)), Some((31, 12)), Some((5, 1))]
    );
    // One stock event per applied line, in the order the lines were applied.
    let events: Vec<(String, i64)> = together
        .feed
        .iter()
        .map(|(kind, data)| {
            assert_eq!(kind, "stock.changed");
            (
                data["sku"].as_str().unwrap().to_string(),
                data["qty"].as_i64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, i64)> = [
        ("A", 50),
        ("B", 10),
        ("A", 70),
        ("C", 30),
        ("B", 0),
        ("C", 31),
        ("C2", 5),
    ]
    .iter()
    .map(|(s, q)| (s.to_string(), *q))
    .collect();
    assert_eq!(events, want);
}

async fn concurrent_workers_meeting_new_skus_apply_everything_once(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.worker.batch_size = 4).await;
    let s = app.login().await;
    // 48 messages of 30 SKUs each out of 90 SKUs nobody has seen yet, with shuffled sequence ids:
    // the workers create the same stock rows at the same moments.
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut newest: std::collections::HashMap<String, (i64, i64)> = Default::default();
    let mut seqs: Vec<i64> = (1..=48).collect();
    for i in (1..seqs.len()).rev() {
        seqs.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    for (n, m) in seqs.iter().enumerate() {
        let start = next() % 90;
        let lines: Vec<(String, i64, i64)> = (0..30)
            .map(|k| (format!("N{}", (start + k) % 90), m * 100 + k as i64, *m))
            .collect();
        for (sku, qty, seq) in &lines {
            let e = newest.entry(sku.clone()).or_insert((0, 0));
            if *seq > e.1 {
                *e = (*qty, *seq);
            }
        }
        let lines: Vec<(&str, i64, i64)> =
            lines.iter().map(|(a, b, c)| (a.as_str(), *b, *c)).collect();
        assert_eq!(app.send_inventory(&s, n as i64 + 1, &lines).await.0, 200);
    }
    let mut handles = Vec::new();
    for _ in 0..3 {
        let w = Arc::new(Worker::new(app.pool.clone(), app.settings.clone()));
        handles.push(tokio::task::spawn_blocking(move || w.drain().unwrap()));
    }
    let mut applied = 0;
    for h in handles {
        applied += h.await.unwrap();
    }
    assert_eq!(applied, 48, "every request applied exactly once");
    assert_eq!(app.queue_depth().await, vec![("processed".to_string(), 48)]);
    for (sku, want) in &newest {
        assert_eq!(app.stock_of(sku).await, Some(*want), "{sku}");
    }
    // Every line has its report, and every applied line its one event.
    let mut successes = 0;
    for n in 1..=48 {
        let lines = app.import_lines(n).await;
        assert_eq!(lines.len(), 30, "message {n}");
        successes += lines.iter().filter(|l| l.1 == "Success").count();
    }
    assert_eq!(app.feed().await.len(), successes);
}

async fn a_request_that_fails_does_not_hold_back_its_batch(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.worker.backoff_base_secs = 1).await;
    let s = app.login().await;
    // A fault injected into the database: writing an import line for SKU POISON fails.
    let trigger: &[&str] = match backend {
        Backend::Sqlite => &["CREATE TRIGGER poison BEFORE INSERT ON import_lines \
             WHEN NEW.sku = 'POISON' BEGIN SELECT RAISE(ABORT, 'poisoned line'); END"],
        Backend::Postgres => &[
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.sku = 'POISON' THEN RAISE EXCEPTION 'poisoned line'; END IF; \
             RETURN NEW; END $$",
            "CREATE TRIGGER poison BEFORE INSERT ON import_lines \
             FOR EACH ROW EXECUTE FUNCTION poison()",
        ],
    };
    let ddl = |sql: &'static [&'static str]| {
        app.with_conn(move |c| {
            for statement in sql {
                diesel::sql_query(*statement).execute(c).unwrap();
            }
        })
    };
    // 'static copies for the closure.
    let trigger: &'static [&'static str] = Box::leak(trigger.to_vec().into_boxed_slice());
    ddl(trigger).await;

    app.send_inventory(&s, 1, &[("P1", 1, 1)]).await;
    app.send_inventory(&s, 2, &[("P2", 2, 1), ("POISON", 9, 1)])
        .await;
    app.send_inventory(&s, 3, &[("P3", 3, 1)]).await;
    assert_eq!(app.drain().await, 2, "the two good requests are applied");
    assert_eq!(app.stock_of("P1").await, Some((1, 1)));
    assert_eq!(app.stock_of("P3").await, Some((3, 1)));
    assert_eq!(
        app.stock_of("P2").await,
        None,
        "nothing of the failed request"
    );
    let failed: Vec<(String, Option<String>)> = app
        .with_conn(|c| {
            use wharf::db::schema::requests;
            requests::table
                .filter(requests::message_seq_id.eq(2))
                .select((requests::state, requests::last_error))
                .load(c)
                .unwrap()
        })
        .await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, "queued", "kept for a retry");
    let error = failed[0].1.clone().unwrap_or_default();
    assert!(error.contains("poisoned line"), "{error}");

    // Once the fault is gone, the retry applies it.
    let cleanup: &'static [&'static str] = match backend {
        Backend::Sqlite => &["DROP TRIGGER poison"],
        Backend::Postgres => &["DROP TRIGGER poison ON import_lines"],
    };
    ddl(cleanup).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(app.drain().await, 1);
    assert_eq!(app.stock_of("P2").await, Some((2, 1)));
    assert_eq!(app.stock_of("POISON").await, Some((9, 1)));
    assert_eq!(app.queue_depth().await, vec![("processed".to_string(), 3)]);
}
