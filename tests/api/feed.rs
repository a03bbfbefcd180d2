//! The change feed under concurrent writers, long polling, and inventory adjustment.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use wharf::config::Adjust;
use wharf::worker::Worker;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, inventory_envelope};

both_backends!(
    feed_is_gapless_and_ordered_under_concurrent_writers,
    long_poll_returns_when_an_event_arrives,
    inventory_adjusts_for_unsent_orders_and_carts,
    orders_the_warehouse_has_seen_are_not_subtracted,
);

async fn feed_is_gapless_and_ordered_under_concurrent_writers(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.worker.batch_size = 2).await;
    let s = app.login().await;
    for m in 1..=60i64 {
        let lines: Vec<(String, i64, i64)> = (0..4)
            .map(|k| (format!("F{}", (m + k) % 9), m, m))
            .collect();
        let lines: Vec<(&str, i64, i64)> =
            lines.iter().map(|(a, b, c)| (a.as_str(), *b, *c)).collect();
        assert_eq!(app.send_inventory(&s, m, &lines).await.0, 200);
    }
    // A reader follows the feed with a small page size while three workers write it, until the
    // workers are done and it has caught up.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        let client = app.client.clone();
        let url = format!("{}/api/v1/feed", app.base);
        let token = app.token.clone();
        tokio::spawn(async move {
            let mut seen: Vec<i64> = Vec::new();
            let mut after = 0;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(60) {
                let page: serde_json::Value = client
                    .get(&url)
                    .query(&[
                        ("after", after.to_string()),
                        ("limit", "7".into()),
                        ("wait", "1".into()),
                    ])
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let events = page["events"].as_array().unwrap();
                for e in events {
                    seen.push(e["id"].as_i64().unwrap());
                }
                after = page["last_id"].as_i64().unwrap();
                if events.is_empty() && done.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
            }
            seen
        })
    };
    let mut workers = Vec::new();
    for _ in 0..3 {
        let w = Arc::new(Worker::new(app.pool.clone(), app.settings.clone()));
        workers.push(tokio::task::spawn_blocking(move || w.drain().unwrap()));
    }
    let mut applied = 0;
    for w in workers {
        applied += w.await.unwrap();
    }
    assert_eq!(applied, 60);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.unwrap();
    // Workers apply messages in any order, so some lines are superseded; every applied line is one
    // stock.changed event, and the reader saw each exactly once, in id order, with no gap.
    let successes = app
        .with_conn(|c| {
            use diesel::prelude::*;
            use wharf::db::schema::import_lines;
            import_lines::table
                .filter(import_lines::result.eq("Success"))
                .count()
                .get_result::<i64>(c)
                .unwrap()
        })
        .await;
    assert!(
        successes >= 9,
        "at least the newest line of each SKU applied"
    );
    assert_eq!(seen, (1..=successes).collect::<Vec<i64>>());
    let feed = app.feed().await;
    assert!(feed.iter().all(|(_, k, _)| k == "stock.changed"));
    // The last event per SKU carries the stock the API reports.
    for k in 0..9 {
        let sku = format!("F{k}");
        let last = feed
            .iter()
            .rev()
            .find(|(_, _, d)| d["sku"] == sku.as_str())
            .unwrap();
        let (qty, seq) = app.stock_of(&sku).await.unwrap();
        assert_eq!(
            (
                last.2["qty"].as_i64().unwrap(),
                last.2["seq"].as_i64().unwrap()
            ),
            (qty, seq)
        );
    }
}

async fn long_poll_returns_when_an_event_arrives(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    let poll = {
        let client = app.client.clone();
        let url = format!("{}/api/v1/feed?after=0&wait=30", app.base);
        let token = app.token.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let page: serde_json::Value = client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (started.elapsed(), page)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!poll.is_finished(), "an empty feed waits");
    app.send_inventory(&s, 1, &[("LP", 3, 1)]).await;
    app.drain().await;
    let (elapsed, page) = poll.await.unwrap();
    assert!(
        elapsed < Duration::from_secs(25),
        "returned at the event, not the timeout: {elapsed:?}"
    );
    assert_eq!(page["events"][0]["type"], "stock.changed");
    assert_eq!(
        page["events"][0]["data"],
        json!({"sku": "LP", "source": "default", "qty": 3, "seq": 1})
    );
    assert_eq!(page["last_id"], 1);
    let (status, problem) = app.api(Method::GET, "/feed?wait=61", None).await;
    assert_eq!(status, 422);
    assert_eq!(problem["field"], "wait");
}

async fn inventory_adjusts_for_unsent_orders_and_carts(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.inventory.adjust = Adjust::UnsentOrdersAndQuotes
    })
    .await;
    // 3 units on an order the warehouse has not seen, 2 in an active cart, 1 in a cancelled order.
    app.put_order("7001", &[("ADJ", 3)]).await;
    app.put_order("7002", &[("ADJ", 1)]).await;
    app.api(Method::POST, "/orders/7002/cancel", None).await;
    app.api(
        Method::PUT,
        "/reservations/cart-1",
        Some(json!({"lines": [{"sku": "ADJ", "qty": 2}]})),
    )
    .await;
    let s = app.login().await;
    app.send_inventory(&s, 1, &[("ADJ", 10, 1), ("OTHER", 4, 1)])
        .await;
    app.drain().await;
    assert_eq!(app.stock_of("ADJ").await, Some((5, 1)));
    assert_eq!(app.stock_of("OTHER").await, Some((4, 1)));
    let lines = app
        .with_conn(|c| {
            use diesel::prelude::*;
            use wharf::db::schema::import_lines;
            import_lines::table
                .order(import_lines::line_no)
                .select((
                    import_lines::units_received,
                    import_lines::units_adjusted_orders,
                    import_lines::units_adjusted_quotes,
                    import_lines::stored_qty,
                    import_lines::message,
                ))
                .load::<(i32, i32, i32, Option<i32>, String)>(c)
                .unwrap()
        })
        .await;
    assert_eq!(
        (lines[0].0, lines[0].1, lines[0].2, lines[0].3),
        (10, 3, 2, Some(5))
    );
    assert!(
        lines[0]
            .4
            .contains("less 3 in unsent orders and 2 in active carts"),
        "{}",
        lines[0].4
    );
    // Below zero after adjustment is stored as 0.
    app.send_inventory(&s, 2, &[("ADJ", 4, 2)]).await;
    app.drain().await;
    assert_eq!(app.stock_of("ADJ").await, Some((0, 2)));
}

async fn orders_the_warehouse_has_seen_are_not_subtracted(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.inventory.adjust = Adjust::UnsentOrders).await;
    app.put_order("7101", &[("LOE", 3)]).await;
    // The order went to the warehouse at 10:00.
    app.with_conn(|c| {
        use diesel::prelude::*;
        use wharf::db::schema::orders;
        let at = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
            .unwrap()
            .and_hms_opt(10, 0, 0)
            .unwrap();
        diesel::update(orders::table.filter(orders::increment_id.eq("7101")))
            .set(orders::exported_at.eq(Some(at)))
            .execute(c)
            .unwrap();
    })
    .await;
    let s = app.login().await;
    // The warehouse's figure for LOE accounts for orders up to `seen`.
    let send = |m: i64, seen: &str| {
        let body = inventory_envelope(&s, m, &[("LOE", 10, m)]).replacen(
            "</value></item></skusSeqId>",
            &format!(
                "</value><lastOrderExported xsi:type=\"xsd:dateTime\">{seen}</lastOrderExported></item></skusSeqId>"
            ),
            1,
        );
        app.post_soap(body)
    };
    // At 09:00 it had not seen the order: its 3 units are still to come off.
    assert_eq!(send(1, "2026-01-01T09:00:00").await.0, 200);
    app.drain().await;
    assert_eq!(app.stock_of("LOE").await, Some((7, 1)));
    // At 11:00 it had: nothing is subtracted.
    assert_eq!(send(2, "2026-01-01T11:00:00").await.0, 200);
    app.drain().await;
    assert_eq!(app.stock_of("LOE").await, Some((10, 2)));
    let adjusted = app
        .with_conn(|c| {
            use diesel::prelude::*;
            use wharf::db::schema::import_lines;
            import_lines::table
                .order(import_lines::request_id)
                .select(import_lines::units_adjusted_orders)
                .load::<i32>(c)
                .unwrap()
        })
        .await;
    assert_eq!(adjusted, vec![3, 0]);
}
