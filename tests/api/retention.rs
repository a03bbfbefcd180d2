//! Retention (`wharf clean`, the in-process cleaner): old finished records go, in batches, and
//! nothing queued, processing, dead, lost or pending goes whatever its age; shipments, stock, the
//! feed and each order's latest export record stay; a request requeued or reprocessed while the
//! cleaner runs survives; two cleaners at once delete each row once.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use wharf::db::DbConnection;
use wharf::db::schema::{export_lines, exports, outbound_tasks, rejections, requests};

use crate::both_backends;
use crate::creds::{listed_ids, wharf_err, wharf_ok, wharf_with};
use crate::helpers::{Backend, TestApp};

both_backends!(
    clean_deletes_only_old_finished_records_and_a_dry_run_nothing,
    a_request_reprocessed_after_the_selection_survives_the_delete,
    two_cleaners_and_a_reprocess_at_once_lose_nothing,
    the_in_process_cleaner_cleans_on_its_interval,
    the_retention_migration_keeps_shipments_both_ways,
    old_feed_events_go_and_a_reader_behind_them_is_told_to_reconcile,
);

/// Runs a statement on whichever backend `$conn` is (for statements diesel's multi-backend
/// connection does not build, such as `INSERT … SELECT`).
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            DbConnection::Postgresql($c) => $body,
            DbConnection::Sqlite($c) => $body,
        }
    };
}

fn days_ago(days: i64) -> NaiveDateTime {
    wharf::db::now() - TimeDelta::days(days)
}

/// The request id of each messageSeqId.
async fn request_id(app: &TestApp, message_seq_id: i64) -> i64 {
    app.with_conn(move |c| {
        requests::table
            .filter(requests::message_seq_id.eq(message_seq_id))
            .select(requests::id)
            .first(c)
            .unwrap()
    })
    .await
}

/// Makes these requests look `days` old: received and (whatever their state) processed then.
async fn age_requests(app: &TestApp, ids: Vec<i64>, days: i64) {
    app.with_conn(move |c| {
        diesel::update(requests::table.filter(requests::id.eq_any(ids)))
            .set((
                requests::received_at.eq(days_ago(days)),
                requests::processed_at.eq(Some(days_ago(days))),
            ))
            .execute(c)
            .unwrap()
    })
    .await;
}

/// The line of `wharf clean` output about `part`.
fn line_of<'a>(out: &'a str, part: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(part))
        .unwrap_or_else(|| panic!("no line about {part} in:\n{out}"))
}

/// An outbound task as the channel would have left it.
fn insert_task(
    c: &mut DbConnection,
    action: &str,
    subject: &str,
    state: &str,
    attempts: i32,
    at: NaiveDateTime,
) {
    use outbound_tasks as t;
    diesel::insert_into(t::table)
        .values((
            t::channel.eq("warehouse"),
            t::action.eq(action),
            t::subject.eq(subject),
            t::state.eq(state),
            t::attempts.eq(attempts),
            t::done_at.eq((state == "done").then_some(at)),
            t::last_error.eq((state == "lost").then_some("refused: unknown SKU")),
            t::created_at.eq(at),
            t::updated_at.eq(at),
        ))
        .execute(c)
        .unwrap();
}

/// An export exchange with one line, finished at `at`.
fn insert_export(c: &mut DbConnection, message_id: &str, at: NaiveDateTime) {
    diesel::insert_into(exports::table)
        .values((
            exports::message_id.eq(message_id),
            exports::kind.eq("product"),
            exports::operation.eq("merge"),
            exports::url.eq("http://127.0.0.1:9/soap"),
            exports::started_at.eq(at),
            exports::finished_at.eq(at),
            exports::outcome.eq("ok"),
            exports::successes.eq(1),
            exports::duplicates.eq(0),
            exports::failures.eq(0),
            exports::items.eq(1),
        ))
        .execute(c)
        .unwrap();
    let id: i64 = exports::table
        .filter(exports::message_id.eq(message_id))
        .select(exports::id)
        .first(c)
        .unwrap();
    diesel::insert_into(export_lines::table)
        .values((
            export_lines::export_id.eq(id),
            export_lines::line_no.eq(1),
            export_lines::reference.eq("P-1"),
            export_lines::result.eq("success"),
            export_lines::message.eq("ok"),
        ))
        .execute(c)
        .unwrap();
}

/// Old and new records of every kind the cleaner looks at. Returns the request ids by
/// messageSeqId: 1, 2 (inventory) and 10 (shipment) processed long ago, 6 processed now, 3 dead,
/// 4 processing and 5 queued — all three long ago.
async fn fill(app: &TestApp) -> std::collections::BTreeMap<i64, i64> {
    let session = app.login().await;
    app.send_inventory(&session, 1, &[("SKU-A", 5, 1)]).await;
    app.send_inventory(&session, 2, &[("SKU-A", 7, 2)]).await;
    assert_eq!(app.put_order("100001", &[("SKU-A", 2)]).await.0, 201);
    app.send_shipment(&session, "100001", 10, &[("SKU-A", 2)], "TRACK-1")
        .await;
    app.send_inventory(&session, 6, &[("SKU-E", 3, 6)]).await;
    assert_eq!(app.drain().await, 4);
    let mut ids = std::collections::BTreeMap::new();
    for seq in [1, 2, 10, 6] {
        ids.insert(seq, request_id(app, seq).await);
    }
    age_requests(app, vec![ids[&1], ids[&2], ids[&10]], 60).await;

    // Unfinished, and as old: only their state protects them.
    for seq in [3, 4, 5] {
        app.send_inventory(&session, seq, &[("SKU-B", 1, seq)])
            .await;
        ids.insert(seq, request_id(app, seq).await);
    }
    age_requests(app, vec![ids[&3], ids[&4], ids[&5]], 60).await;
    let (dead, processing) = (ids[&3], ids[&4]);
    app.with_conn(move |c| {
        diesel::update(requests::table.find(dead))
            .set((requests::state.eq("dead"), requests::attempts.eq(5)))
            .execute(c)
            .unwrap();
        diesel::update(requests::table.find(processing))
            .set((
                requests::state.eq("processing"),
                requests::lease_owner.eq(Some("another-worker")),
                requests::lease_expires_at.eq(Some(wharf::db::now() + TimeDelta::hours(1))),
            ))
            .execute(c)
            .unwrap();
    })
    .await;

    // One refusal long ago, one now.
    app.post_soap("not a soap message").await;
    app.with_conn(|c| {
        diesel::update(rejections::table)
            .set(rejections::received_at.eq(days_ago(60)))
            .execute(c)
            .unwrap()
    })
    .await;
    app.post_soap("not a soap message either").await;

    // Orders whose export records are old: 100002 exported (a first try superseded by a second,
    // 3 attempts) and cancelled; 100003 lost.
    for id in ["100002", "100003"] {
        assert_eq!(app.put_order(id, &[("SKU-A", 1)]).await.0, 201);
    }
    app.with_conn(|c| {
        use outbound_tasks as t;
        let old = days_ago(60);
        diesel::update(t::table.filter(t::subject.eq_any(["100002", "100003"])))
            .set((
                t::state.eq("done"),
                t::done_at.eq(Some(old)),
                t::updated_at.eq(old),
            ))
            .execute(c)
            .unwrap();
        diesel::update(t::table.filter(t::subject.eq("100003")))
            .set((t::state.eq("lost"), t::attempts.eq(5)))
            .execute(c)
            .unwrap();
        insert_task(c, "order.insert", "100002", "done", 3, old);
        insert_task(c, "order.cancel", "100002", "done", 1, old);
        // Products: pending and lost stay; of two done, the newer stays; a dismissed task
        // superseded by a skipped one goes.
        insert_task(c, "product.merge", "P-PENDING", "pending", 0, old);
        insert_task(c, "product.merge", "P-LOST", "lost", 5, old);
        insert_task(c, "product.merge", "P-DONE", "done", 1, old);
        insert_task(c, "product.merge", "P-DONE", "done", 1, old);
        insert_task(c, "product.merge", "P-DISMISSED", "dismissed", 2, old);
        insert_task(c, "product.merge", "P-DISMISSED", "skipped", 0, old);
        // Another channel's tasks are no record of anything: an old finished one goes.
        diesel::insert_into(t::table)
            .values((
                t::channel.eq("mail"),
                t::action.eq("alert.open"),
                t::subject.eq("incident-1"),
                t::state.eq("done"),
                t::created_at.eq(old),
                t::updated_at.eq(old),
            ))
            .execute(c)
            .unwrap();
        insert_export(c, "old-export", old);
        insert_export(c, "new-export", wharf::db::now());
        insert_incidents(c);
    })
    .await;
    ids
}

/// Incidents: open for 200 days (kept: open), resolved 100 days ago (goes), resolved yesterday
/// (kept); records of alert mails sent 3 days ago (goes) and now (kept).
fn insert_incidents(c: &mut DbConnection) {
    use wharf::db::schema::{alert_mails as m, incidents as i};
    let now = wharf::db::now();
    for (key, state, resolved) in [
        ("orders.lost", "open", None),
        ("backlog:requests", "resolved", Some(days_ago(100))),
        ("backlog:exports", "resolved", Some(days_ago(1))),
    ] {
        diesel::insert_into(i::table)
            .values((
                i::key.eq(key),
                i::state.eq(state),
                i::summary.eq(key),
                i::count.eq(1_i64),
                i::items.eq("[]"),
                i::opened_at.eq(days_ago(200)),
                i::resolved_at.eq(resolved),
                i::updated_at.eq(resolved.unwrap_or(now)),
            ))
            .execute(c)
            .unwrap();
    }
    for at in [days_ago(3), now] {
        diesel::insert_into(m::table)
            .values((m::sent_at.eq(at), m::subject.eq("[wharf] OPEN …")))
            .execute(c)
            .unwrap();
    }
}

/// The incidents left, by key, and how many sent-mail records.
async fn incidents_left(app: &TestApp) -> (Vec<String>, i64) {
    use wharf::db::schema::{alert_mails as m, incidents as i};
    app.with_conn(|c| {
        let keys = i::table.order(i::id).select(i::key).load(c).unwrap();
        (keys, m::table.count().get_result(c).unwrap())
    })
    .await
}

/// The product tasks left: (subject, state), in id order.
async fn product_tasks(app: &TestApp) -> Vec<(String, String)> {
    app.with_conn(|c| {
        use outbound_tasks as t;
        t::table
            .filter(t::action.eq("product.merge"))
            .order(t::id)
            .select((t::subject, t::state))
            .load(c)
            .unwrap()
    })
    .await
}

async fn order(app: &TestApp, id: &str) -> serde_json::Value {
    let (status, view) = app
        .api(reqwest::Method::GET, &format!("/orders/{id}"), None)
        .await;
    assert_eq!(status, 200, "{view}");
    view
}

async fn clean_deletes_only_old_finished_records_and_a_dry_run_nothing(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.retention.enabled = false).await;
    app.expect_leftovers(
        "the queued and processing requests are the point: the cleaner keeps them",
    );
    let ids = fill(&app).await;
    let before = (
        app.stock_of("SKU-A").await,
        order(&app, "100001").await,
        app.feed().await,
        wharf_ok(&app, &["requests", "list", "--limit", "100"]).await,
        product_tasks(&app).await,
    );

    let dry = wharf_ok(&app, &["clean", "--dry-run"]).await;
    assert!(
        line_of(&dry, "requests").contains(" 3 processed requests"),
        "{dry}"
    );
    assert!(line_of(&dry, "requests").ends_with("older than 30 days would go"));
    assert!(line_of(&dry, "request_bodies").contains("kept"), "{dry}");
    assert!(line_of(&dry, "exports").contains(" 1 export"), "{dry}");
    assert!(line_of(&dry, "rejections").contains(" 1 refused"), "{dry}");
    assert!(
        line_of(&dry, "outbound_tasks").contains(" 4 finished"),
        "{dry}"
    );
    assert!(line_of(&dry, "incidents").contains(" 1 resolved"), "{dry}");
    assert!(line_of(&dry, "alert_mails").contains(" 1 records"), "{dry}");
    assert!(dry.contains("dry run: nothing was deleted"), "{dry}");
    let after_dry = (
        app.stock_of("SKU-A").await,
        order(&app, "100001").await,
        app.feed().await,
        wharf_ok(&app, &["requests", "list", "--limit", "100"]).await,
        product_tasks(&app).await,
    );
    assert_eq!(after_dry, before, "a dry run changes nothing");

    let done = wharf_ok(&app, &["clean"]).await;
    let requests_line = line_of(&done, "requests");
    assert!(
        requests_line.contains(" 3 processed requests") && requests_line.contains("3 import lines"),
        "{done}"
    );
    assert!(requests_line.ends_with("deleted"), "{done}");
    assert!(line_of(&done, "outbound_tasks").contains(" 4 finished"));

    // Requests: the old processed ones are gone; the dead, processing, queued and new ones stay.
    let listed = wharf_ok(&app, &["requests", "list", "--limit", "100"]).await;
    let mut left = listed_ids(&listed);
    left.sort_unstable();
    let mut kept = vec![ids[&3], ids[&4], ids[&5], ids[&6]];
    kept.sort_unstable();
    assert_eq!(left, kept, "{listed}");
    for seq in [1, 2, 10] {
        let err = wharf_err(&app, &["requests", "show", &ids[&seq].to_string()]).await;
        assert!(err.contains("does not exist"), "{err}");
    }
    // Their lines went with them (on PostgreSQL no foreign key deletes them: the clean does).
    let orphans: i64 = app
        .with_conn(|c| {
            use wharf::db::schema::request_lines;
            request_lines::table
                .filter(diesel::dsl::not(diesel::dsl::exists(
                    requests::table.filter(requests::id.eq(request_lines::request_id)),
                )))
                .count()
                .get_result(c)
                .unwrap()
        })
        .await;
    assert_eq!(orphans, 0, "lines of deleted requests are left");
    let mut depth = app.queue_depth().await;
    depth.sort();
    let expected: Vec<(String, i64)> = ["dead", "processed", "processing", "queued"]
        .iter()
        .map(|s| (s.to_string(), 1))
        .collect();
    assert_eq!(depth, expected);

    // Stock, the order with its shipment, and the feed are as they were.
    assert_eq!(app.stock_of("SKU-A").await, before.0);
    assert_eq!(order(&app, "100001").await, before.1);
    assert_eq!(app.feed().await, before.2);
    // The shipment's request is gone, but a re-send of its message is still a duplicate. (The
    // drain also applies the queued request: it is due.)
    let session = app.login().await;
    app.send_shipment(&session, "100001", 10, &[("SKU-A", 2)], "TRACK-1")
        .await;
    app.drain().await;
    assert_eq!(
        order(&app, "100001").await["shipments"],
        before.1["shipments"]
    );
    assert_eq!(order(&app, "100001").await["lines"], before.1["lines"]);

    // Exports, refusals and tasks: the old finished ones went, the records views read stayed.
    let exports = wharf_ok(&app, &["exports", "list"]).await;
    assert!(
        exports.contains("new-export") && !exports.contains("old-export"),
        "{exports}"
    );
    let rejected = wharf_ok(&app, &["requests", "rejected"]).await;
    assert_eq!(rejected.lines().filter(|l| l.starts_with('#')).count(), 1);
    let lost = wharf_ok(&app, &["orders", "lost"]).await;
    assert!(lost.contains("100003"), "{lost}");
    let o2 = order(&app, "100002").await;
    assert_eq!(o2["export"]["attempts"], 3, "{o2}");
    assert_eq!(o2["cancellation"]["state"], "sent", "{o2}");
    let tasks: Vec<(String, String)> = [
        ("P-PENDING", "pending"),
        ("P-LOST", "lost"),
        ("P-DONE", "done"),
        ("P-DISMISSED", "skipped"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(product_tasks(&app).await, tasks);
    let mail_tasks: i64 = app
        .with_conn(|c| {
            outbound_tasks::table
                .filter(outbound_tasks::channel.eq("mail"))
                .count()
                .get_result(c)
                .unwrap()
        })
        .await;
    assert_eq!(mail_tasks, 0);
    // The open incident stays however old; of the resolved ones only the recent one.
    assert_eq!(
        incidents_left(&app).await,
        (
            vec!["orders.lost".to_string(), "backlog:exports".to_string()],
            1
        )
    );

    // Bodies may go earlier than their rows: the processed request keeps its row, not its XML;
    // the dead one keeps both.
    let env = [("WHARF_RETENTION__REQUEST_BODIES_DAYS", "0")];
    let run = wharf_with(&app, &["clean"], "", &env).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(
        line_of(&run.stdout, "request_bodies").contains(" 3 raw bodies"),
        "the new request, the re-sent shipment and the queued one the drain applied: {}",
        run.stdout
    );
    let shown = wharf_ok(&app, &["requests", "show", &ids[&6].to_string()]).await;
    assert!(
        shown.contains("no longer kept: dropped by retention"),
        "{shown}"
    );
    assert!(shown.contains("SKU-E"), "its lines stay: {shown}");
    let dead = wharf_ok(&app, &["requests", "show", &ids[&3].to_string()]).await;
    assert!(
        dead.contains("messageSeqId") && !dead.contains("no longer kept"),
        "{dead}"
    );
}

/// Two processed inventory requests, processed `days` ago; returns their ids.
async fn two_old_requests(app: &TestApp, days: i64) -> (i64, i64) {
    let session = app.login().await;
    app.send_inventory(&session, 1, &[("SKU-A", 5, 1)]).await;
    app.send_inventory(&session, 2, &[("SKU-B", 7, 2)]).await;
    assert_eq!(app.drain().await, 2);
    let ids = (request_id(app, 1).await, request_id(app, 2).await);
    age_requests(app, vec![ids.0, ids.1], days).await;
    ids
}

async fn a_request_reprocessed_after_the_selection_survives_the_delete(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.retention.enabled = false).await;
    let (first, second) = two_old_requests(&app, 60).await;
    let deleted = app
        .with_conn(move |c| {
            use wharf::queue::store::clean;
            let cutoff = days_ago(30);
            let selected = clean::finished_before(c, cutoff, 10).unwrap();
            assert_eq!(selected, vec![first, second]);
            // Support reprocesses the first between the cleaner's selection and its delete.
            wharf::queue::lifecycle::reprocess(
                c,
                &[first],
                &wharf::queue::lifecycle::By::cli("support"),
            )
            .unwrap();
            clean::delete_finished(c, &selected, cutoff).unwrap()
        })
        .await;
    assert_eq!(deleted, vec![second]);
    assert_eq!(
        app.drain().await,
        1,
        "the reprocessed request is applied again"
    );
    let shown = wharf_ok(&app, &["requests", "show", &first.to_string()]).await;
    assert!(shown.contains("reprocess"), "{shown}");
    let err = wharf_err(&app, &["requests", "show", &second.to_string()]).await;
    assert!(err.contains("does not exist"), "{err}");
    assert_eq!(app.stock_of("SKU-A").await, Some((5, 1)));
}

/// Doubles the requests `rounds` times with copies processed `days` ago (new messageSeqIds, no
/// lines), so a clean has many batches to do.
async fn copies(app: &TestApp, rounds: u32, days: i64) {
    app.with_conn(move |c| {
        use diesel::sql_types::{Nullable, Timestamp};
        use requests as r;
        for round in 1..=rounds {
            // Powers of two: every copy of every row gets a messageSeqId of its own.
            let offset = (1_i64 << round) * 1_000_000;
            let old = Some(days_ago(days));
            let copy = r::table.select((
                r::operation,
                r::message_seq_id + offset,
                r::caller,
                r::body,
                r::body_hash,
                r::line_count,
                r::state,
                r::attempts,
                r::next_attempt_at,
                r::received_at,
                old.into_sql::<Nullable<Timestamp>>(),
                r::receipts,
                r::conflict,
            ));
            let insert = diesel::insert_into(r::table).values(copy).into_columns((
                r::operation,
                r::message_seq_id,
                r::caller,
                r::body,
                r::body_hash,
                r::line_count,
                r::state,
                r::attempts,
                r::next_attempt_at,
                r::received_at,
                r::processed_at,
                r::receipts,
                r::conflict,
            ));
            on_backend!(c, |c| insert.execute(c)).unwrap();
        }
    })
    .await;
}

async fn two_cleaners_and_a_reprocess_at_once_lose_nothing(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.retention.enabled = false).await;
    let (first, second) = two_old_requests(&app, 60).await;
    copies(&app, 11, 90).await; // 2 · 2^11 = 4096 requests, the copies older than the two
    let copies_made = 4096 - 2;
    // The two real ones are the youngest of the old, so the cleaners reach them last.
    age_requests(&app, vec![first, second], 31).await;

    let settings = wharf::config::RetentionSettings {
        batch_size: 16,
        ..Default::default()
    };
    let now = wharf::db::now();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let cleaners: Vec<_> = (0..2)
        .map(|_| {
            let (pool, settings, started) =
                (app.pool.clone(), settings.clone(), started_tx.clone());
            tokio::task::spawn_blocking(move || {
                let mut conn = pool.get().unwrap();
                let mut progress = |_: &wharf::retention::Progress| {
                    let _ = started.send(());
                    ControlFlow::Continue(())
                };
                wharf::retention::clean(&mut conn, &settings, now, &mut progress).unwrap()
            })
        })
        .collect();
    // The cleaners are deleting; support reprocesses one of the old requests meanwhile.
    started_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let reprocessed = app
        .with_conn(move |c| {
            wharf::queue::lifecycle::reprocess(
                c,
                &[first],
                &wharf::queue::lifecycle::By::cli("support"),
            )
        })
        .await;
    assert_eq!(reprocessed.unwrap(), vec![first], "it was not deleted yet");
    let mut deleted = 0;
    for c in cleaners {
        let counts = c.await.unwrap();
        deleted += counts
            .iter()
            .find(|c| c.part == wharf::retention::Part::Requests)
            .unwrap()
            .rows;
    }
    assert_eq!(
        deleted,
        copies_made + 1,
        "every copy and the second, each once"
    );
    let listed = wharf_ok(&app, &["requests", "list", "--limit", "100"]).await;
    assert_eq!(listed_ids(&listed), vec![first], "{listed}");
    assert_eq!(app.drain().await, 1);
    assert_eq!(app.stock_of("SKU-A").await, Some((5, 1)));
    // Applied again just now, it is no longer old.
    let again = wharf_ok(&app, &["clean", "--dry-run"]).await;
    assert!(
        line_of(&again, "requests").contains(" 0 processed"),
        "{again}"
    );
}

async fn the_in_process_cleaner_cleans_on_its_interval(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.retention.enabled = true;
        s.retention.interval_secs = 1;
        s.retention.requests_days = 0;
    })
    .await;
    app.expect_leftovers("the queued request shows the cleaner keeps what is unfinished");
    let session = app.login().await;
    app.send_inventory(&session, 1, &[("SKU-A", 5, 1)]).await;
    assert_eq!(app.drain().await, 1);
    app.send_inventory(&session, 2, &[("SKU-A", 6, 2)]).await;
    let (applied, queued) = (request_id(&app, 1).await, request_id(&app, 2).await);

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let listed = wharf_ok(&app, &["requests", "list"]).await;
        if listed_ids(&listed) == vec![queued] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "request #{applied} still there: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The run is recorded once the clean has committed: wait for it too.
    loop {
        let runs = app.with_conn(|c| wharf::runs::all(c).unwrap()).await;
        let cleaner = runs.iter().find(|r| r.job == wharf::runs::Job::Cleaner);
        if cleaner.is_some_and(|c| c.last_ok_at.is_some()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cleaner's runs are not recorded: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.stock_of("SKU-A").await, Some((5, 1)));
}

/// Reverts and re-applies this lane's migration (000014), on whichever backend `conn` is.
fn redo_retention_migration(conn: &mut DbConnection) {
    use diesel::migration::MigrationSource;
    use diesel_migrations::{FileBasedMigrations, MigrationHarness};
    fn redo<C, B>(c: &mut C, dir: &str)
    where
        C: MigrationHarness<B>,
        B: diesel::backend::Backend,
        FileBasedMigrations: MigrationSource<B>,
    {
        let source = FileBasedMigrations::from_path(format!(
            "{}/migrations/{dir}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let migrations = MigrationSource::<B>::migrations(&source).unwrap();
        let m = migrations
            .iter()
            .find(|m| m.name().to_string().ends_with("000014_retention"))
            .expect("the retention migration");
        c.revert_migration(&**m).unwrap();
        c.run_migration(&**m).unwrap();
    }
    match conn {
        DbConnection::Sqlite(c) => redo(c, "sqlite"),
        DbConnection::Postgresql(c) => redo(c, "postgres"),
    }
}

async fn the_retention_migration_keeps_shipments_both_ways(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.retention.enabled = false).await;
    let session = app.login().await;
    assert_eq!(app.put_order("100001", &[("SKU-A", 5)]).await.0, 201);
    app.send_shipment(&session, "100001", 10, &[("SKU-A", 1)], "TRACK-1")
        .await;
    app.send_shipment(&session, "100001", 11, &[("SKU-A", 2)], "TRACK-2")
        .await;
    assert_eq!(app.drain().await, 2);
    let before = order(&app, "100001").await;
    assert_eq!(before["shipments"].as_array().unwrap().len(), 2, "{before}");

    // Down and up again: SQLite rebuilds the shipment tables, which must not lose their lines
    // and tracking numbers to the cascade of the old table's drop.
    app.with_conn(redo_retention_migration).await;
    assert_eq!(order(&app, "100001").await, before);

    // And the rebuilt tables still cascade and reference as before: a new shipment is stored
    // whole, and a request deleted by retention leaves its shipment.
    app.send_shipment(&session, "100001", 12, &[("SKU-A", 1)], "TRACK-3")
        .await;
    assert_eq!(app.drain().await, 1);
    assert_eq!(
        order(&app, "100001").await["shipments"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let id = request_id(&app, 10).await;
    age_requests(&app, vec![id], 60).await;
    let done = wharf_ok(&app, &["clean"]).await;
    assert!(
        line_of(&done, "requests").contains(" 1 processed"),
        "{done}"
    );
    let after = order(&app, "100001").await;
    assert_eq!(after["shipments"][0], before["shipments"][0], "{after}");
    assert_eq!(after["tracking_numbers"][0], "TRACK-1", "{after}");
}

async fn old_feed_events_go_and_a_reader_behind_them_is_told_to_reconcile(backend: Backend) {
    use reqwest::Method;
    use wharf::db::schema::feed_events;
    let app = TestApp::spawn_with(backend, |s| s.retention.enabled = false).await;
    let session = app.login().await;
    app.send_inventory(&session, 1, &[("SKU-A", 5, 1), ("SKU-B", 2, 1)])
        .await;
    app.drain().await;
    let old: Vec<i64> = app.feed().await.iter().map(|(id, _, _)| *id).collect();
    assert!(!old.is_empty());
    app.with_conn(|c| {
        diesel::update(feed_events::table)
            .set(feed_events::created_at.eq(days_ago(60)))
            .execute(c)
            .unwrap()
    })
    .await;
    app.send_inventory(&session, 2, &[("SKU-A", 4, 2)]).await;
    app.drain().await;

    let dry = wharf_ok(&app, &["clean", "--dry-run"]).await;
    let expected = format!(" {} feed events", old.len());
    assert!(line_of(&dry, "feed_events").contains(&expected), "{dry}");
    let done = wharf_ok(&app, &["clean"]).await;
    assert!(line_of(&done, "feed_events").contains(&expected), "{done}");

    // A reader from the start, or from within what went, missed events: it is told so.
    let (_, head) = app.api(Method::GET, "/feed/head", None).await;
    let head = head["head"].as_i64().unwrap();
    for after in [0, old[0]] {
        let (status, problem) = app
            .api(Method::GET, &format!("/feed?after={after}"), None)
            .await;
        assert_eq!(status, 410, "{problem}");
        assert_eq!(problem["code"], "cursor_expired", "{problem}");
        assert_eq!(problem["head"], head, "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("Reconcile"),
            "{problem}"
        );
    }
    // A reader that had read what went goes on with what stayed.
    let last_old = *old.last().unwrap();
    let (status, page) = app
        .api(Method::GET, &format!("/feed?after={last_old}"), None)
        .await;
    assert_eq!(status, 200, "{page}");
    let kinds: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["stock.changed"], "{page}");
    assert_eq!(page["last_id"], head);
}
