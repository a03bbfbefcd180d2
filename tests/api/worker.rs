//! The worker: leases, takeover after a worker dies, and concurrent workers.

use std::sync::Arc;

use crate::both_backends;
use crate::helpers::{Backend, TestApp};
use wharf::worker::Worker;

both_backends!(
    a_dead_workers_lease_is_taken_over_and_applied_once,
    concurrent_workers_keep_the_newest_value,
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
