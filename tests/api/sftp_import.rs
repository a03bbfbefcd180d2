//! Shipment files in over the real sshd, on both backends: a file is stored through the SOAP
//! shipment's receipt, applied once by the worker and removed; the same bytes again are a repeat;
//! two pollers share a folder without doubling a file; unusable files go to `failed/` with their
//! reason; files left by a run that died are taken over.

use reqwest::Method;
use serde_json::{Value, json};
use wharf::channels::sftp::FileChannel;
use wharf::channels::sftp::client::Trouble;
use wharf::channels::sftp::import::{self, Outcome};
use wharf::channels::sftp::store::inbound::{self, Claim};
use wharf::channels::sftp::store::{self, Direction, ExchangeFilter, FileExchange};
use wharf::config::{ChannelSettings, OnDone};

use crate::helpers::{Backend, TestApp};
use crate::sshd::Sshd;

crate::both_backends!(
    a_shipment_file_is_applied_and_removed,
    an_applied_file_can_be_archived,
    the_same_file_twice_is_applied_once,
    two_pollers_apply_each_file_once,
    unusable_files_go_to_failed_with_their_reason,
    files_left_by_a_run_that_died_are_applied_once,
    an_expired_claim_is_taken_over_by_one_run_only,
    a_file_that_cannot_be_archived_is_finished_by_the_next_run,
    a_missing_import_folder_is_a_trouble_until_it_exists,
    a_continuous_channel_reads_files_by_itself,
);

/// A shipment file for `order` shipping `lines` with tracking number `tracking`.
fn shipment(order: &str, lines: &[(&str, i64)], tracking: &str) -> String {
    let lines: String = lines
        .iter()
        .map(|(sku, qty)| format!("    <line><sku>{sku}</sku><qty>{qty}</qty></line>\n"))
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<shipment>\n  \
         <order_increment_id>{order}</order_increment_id>\n  <lines>\n{lines}  </lines>\n  \
         <tracking_numbers><tracking_number>{tracking}</tracking_number></tracking_numbers>\n  \
         <courier_name>DPD</courier_name>\n  <service_name>Next Day</service_name>\n  \
         <date_shipped>2024-05-01T10:15:00Z</date_shipped>\n  <comment>Despatched</comment>\n  \
         <notify_customer>1</notify_customer>\n</shipment>\n"
    )
}

async fn spawn(
    backend: Backend,
    sshd: &Sshd,
    adjust: impl FnOnce(&mut ChannelSettings),
) -> TestApp {
    let mut c = sshd.channel("dropbox");
    adjust(&mut c);
    TestApp::spawn_with(backend, move |s| s.channels.push(c)).await
}

/// A file channel process of the app's channel (each call: another owner, as another process).
fn poller(app: &TestApp) -> FileChannel {
    FileChannel::new(
        app.pool.clone(),
        app.settings.clone(),
        app.settings.channels[0].clone(),
    )
}

async fn order(app: &TestApp, id: &str) -> Value {
    let (status, order) = app.api(Method::GET, &format!("/orders/{id}"), None).await;
    assert_eq!(status, 200, "{order}");
    order
}

/// The shipment files' exchanges, oldest first.
async fn exchanges(app: &TestApp) -> Vec<FileExchange> {
    let mut rows = app
        .with_conn(|c| {
            let f = ExchangeFilter {
                direction: Some(Direction::In),
                ..ExchangeFilter::default()
            };
            store::exchanges(c, &f, None, 1000).unwrap()
        })
        .await;
    rows.reverse();
    rows
}

/// The exchanges as (name, state), oldest first.
async fn states(app: &TestApp) -> Vec<(String, String)> {
    exchanges(app)
        .await
        .into_iter()
        .map(|x| (x.name, x.state))
        .collect()
}

async fn troubles(app: &TestApp) -> Vec<(String, String)> {
    app.with_conn(|c| store::troubles(c, Some("dropbox")).unwrap())
        .await
        .into_iter()
        .map(|t| (t.trouble, t.detail))
        .collect()
}

async fn a_shipment_file_is_applied_and_removed(backend: Backend) {
    let sshd = Sshd::start();
    let app = spawn(backend, &sshd, |_| {}).await;
    app.put_order("100000123", &[("ABC123", 2), ("XYZ789", 1)])
        .await;
    sshd.put(
        "in/ship_1.xml",
        shipment("100000123", &[("ABC123", 1)], "TRACK-1"),
    );
    // Not shipment files: a temporary name, a partial upload, another pattern.
    sshd.put("in/.ship_2.xml", "half");
    sshd.put("in/ship_3.xml.part", "half");
    sshd.put("in/notes.txt", "hello");

    let outcome = import::run_once(&poller(&app)).await.unwrap();
    assert_eq!(outcome.applied, 1, "{outcome:?}");
    assert_eq!(app.drain().await, 1);
    let o = order(&app, "100000123").await;
    assert_eq!(o["status"], "processing", "partially shipped: {o}");
    assert_eq!(o["lines"][0]["qty_shipped"], 1);
    assert_eq!(o["lines"][1]["qty_shipped"], 0);
    assert_eq!(o["tracking_numbers"], json!(["TRACK-1"]));
    assert_eq!(o["shipments"][0]["courier_name"], "DPD");
    assert_eq!(
        sshd.files("in"),
        vec![".ship_2.xml", "notes.txt", "ship_3.xml.part"]
    );
    assert_eq!(sshd.files("in/processing"), Vec::<String>::new());

    sshd.put(
        "in/ship_4.xml",
        shipment("100000123", &[("ABC123", 1), ("XYZ789", 1)], "TRACK-2"),
    );
    let outcome = import::run_once(&poller(&app)).await.unwrap();
    assert_eq!(outcome.applied, 1, "{outcome:?}");
    app.drain().await;
    let o = order(&app, "100000123").await;
    assert_eq!(o["status"], "complete", "{o}");
    assert_eq!(o["lines"][0]["qty_shipped"], 2);
    assert_eq!(o["lines"][1]["qty_shipped"], 1);
    assert_eq!(o["shipments"].as_array().unwrap().len(), 2);
    assert_eq!(o["tracking_numbers"], json!(["TRACK-1", "TRACK-2"]));
    assert!(!sshd.files("in").contains(&"ship_4.xml".to_string()));
    assert_eq!(sshd.files("in/processing"), Vec::<String>::new());

    // Each file is recorded with its size, hash, request and order.
    let rows = exchanges(&app).await;
    assert_eq!(rows.len(), 2);
    for (row, name) in rows.iter().zip(["ship_1.xml", "ship_4.xml"]) {
        assert_eq!((row.name.as_str(), row.state.as_str()), (name, "applied"));
        assert_eq!(row.order_increment_id.as_deref(), Some("100000123"));
        assert_eq!(row.size, Some(shipment_len(name)));
        assert_eq!(row.hash.as_ref().map(String::len), Some(64));
        assert!(
            row.request_id.is_some() && row.finished_at.is_some(),
            "{row:?}"
        );
    }
    // The request came in as `sftp:<channel>`, the file's bytes as its body.
    let request = rows[0].request_id.unwrap();
    let (caller, body) = app
        .with_conn(move |c| {
            use diesel::prelude::*;
            use wharf::db::schema::requests as r;
            r::table
                .find(request)
                .select((r::caller, r::body))
                .first::<(String, Option<String>)>(c)
                .unwrap()
        })
        .await;
    assert_eq!(caller, "sftp:dropbox");
    assert!(body.unwrap().contains("TRACK-1"));
    assert_eq!(troubles(&app).await, vec![]);
}

/// The size of the shipment file a test put as `name` (the files are gone from the server).
fn shipment_len(name: &str) -> i64 {
    match name {
        "ship_1.xml" => shipment("100000123", &[("ABC123", 1)], "TRACK-1").len() as i64,
        _ => shipment("100000123", &[("ABC123", 1), ("XYZ789", 1)], "TRACK-2").len() as i64,
    }
}

async fn an_applied_file_can_be_archived(backend: Backend) {
    let sshd = Sshd::start();
    let app = spawn(backend, &sshd, |c| c.on_done = OnDone::Archive).await;
    app.put_order("1001", &[("A", 3)]).await;
    let first = shipment("1001", &[("A", 1)], "T1");
    sshd.put("in/ship.xml", &first);
    import::run_once(&poller(&app)).await.unwrap();
    // The warehouse reuses the name for the next parcel: archived beside the first.
    let second = shipment("1001", &[("A", 2)], "T2");
    sshd.put("in/ship.xml", &second);
    let outcome = import::run_once(&poller(&app)).await.unwrap();
    assert_eq!(outcome.applied, 1, "{outcome:?}");
    app.drain().await;
    assert_eq!(order(&app, "1001").await["status"], "complete");
    assert_eq!(sshd.files("in"), Vec::<String>::new());
    assert_eq!(sshd.files("in/processing"), Vec::<String>::new());
    assert_eq!(sshd.files("in/archive"), vec!["ship-2.xml", "ship.xml"]);
    assert_eq!(sshd.read("in/archive/ship.xml"), first.as_bytes());
    assert_eq!(sshd.read("in/archive/ship-2.xml"), second.as_bytes());
}

async fn the_same_file_twice_is_applied_once(backend: Backend) {
    let sshd = Sshd::start();
    let app = spawn(backend, &sshd, |_| {}).await;
    app.put_order("2001", &[("A", 5)]).await;
    let file = shipment("2001", &[("A", 2)], "T1");
    sshd.put("in/ship_a.xml", &file);
    let outcome = import::run_once(&poller(&app)).await.unwrap();
    assert_eq!(outcome.applied, 1, "{outcome:?}");
    app.drain().await;
    // Delivered again, under its own name and under another.
    sshd.put("in/ship_a.xml", &file);
    sshd.put("in/ship_b.xml", &file);
    let outcome = import::run_once(&poller(&app)).await.unwrap();
    assert_eq!((outcome.applied, outcome.repeats), (0, 2), "{outcome:?}");
    app.drain().await;
    let o = order(&app, "2001").await;
    assert_eq!(o["shipments"].as_array().unwrap().len(), 1, "{o}");
    assert_eq!(o["lines"][0]["qty_shipped"], 2);
    assert_eq!(sshd.files("in"), Vec::<String>::new());
    assert_eq!(sshd.files("in/processing"), Vec::<String>::new());
    let rows = exchanges(&app).await;
    let seen: Vec<(&str, &str)> = rows
        .iter()
        .map(|x| (x.name.as_str(), x.state.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("ship_a.xml", "applied"),
            ("ship_a.xml", "repeat"),
            ("ship_b.xml", "repeat")
        ]
    );
    // The repeats point at the one request that was applied.
    assert!(rows.iter().all(|x| x.request_id == rows[0].request_id));
    assert_eq!(app.queue_depth().await, vec![("processed".to_string(), 1)]);
}

async fn two_pollers_apply_each_file_once(backend: Backend) {
    let sshd = Sshd::start();
    let app = spawn(backend, &sshd, |_| {}).await;
    let n = 8;
    for i in 0..n {
        let id = format!("30{i:02}");
        app.put_order(&id, &[("A", 1), ("B", 1)]).await;
        sshd.put(
            &format!("in/ship_{i}.xml"),
            shipment(&id, &[("A", 1), ("B", 1)], &format!("T{i}")),
        );
    }
    let (a, b) = (poller(&app), poller(&app));
    let (x, y) = tokio::join!(import::run_once(&a), import::run_once(&b));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.applied + y.applied, n, "{x:?} {y:?}");
    assert_eq!(x.repeats + y.repeats, 0, "{x:?} {y:?}");
    assert_eq!(x.failed + y.failed, 0, "{x:?} {y:?}");
    app.drain().await;
    for i in 0..n {
        let o = order(&app, &format!("30{i:02}")).await;
        assert_eq!(o["status"], "complete", "{o}");
        assert_eq!(o["shipments"].as_array().unwrap().len(), 1, "{o}");
    }
    assert_eq!(sshd.files("in"), Vec::<String>::new());
    assert_eq!(sshd.files("in/processing"), Vec::<String>::new());
    let rows = states(&app).await;
    assert_eq!(rows.len(), n, "{rows:?}");
    assert!(rows.iter().all(|(_, s)| s == "applied"), "{rows:?}");
    assert_eq!(
        app.queue_depth().await,
        vec![("processed".to_string(), n as i64)]
    );
}

async fn unusable_files_go_to_failed_with_their_reason(backend: Backend) {
    let sshd = Sshd::start();
    let app = spawn(backend, &sshd, |c| c.max_file_bytes = 1000).await;
    app.put_order("4001", &[("A", 1)]).await;
    app.put_order("4002", &[("A", 1)]).await;
    sshd.put("in/a_empty.xml", "");
    sshd.put(
        "in/b_broken.xml",
        "<shipment><order_increment_id>4002</shipment>",
    );
    let zero = shipment("4002", &[("A", 0)], "T0");
    sshd.put("in/c_zero.xml", &zero);
    let big = shipment("4002", &[("A", 1)], &"T".repeat(2000));
    sshd.put("in/d_big.xml", &big);
    sshd.put("in/e_good.xml", shipment("4001", &[("A", 1)], "T1"));
    // A second empty file of a name already in failed/ is kept beside it.
    sshd.mkdir("in/failed");
    sshd.put("in/failed/a_empty.xml", "earlier");

    let outcome = import::run_once(&poller(&app)).await.unwrap();
    assert_eq!((outcome.applied, outcome.failed), (1, 4), "{outcome:?}");
    app.drain().await;
    assert_eq!(order(&app, "4001").await["status"], "complete");
    let o = order(&app, "4002").await;
    assert_eq!(
        o["shipments"],
        json!([]),
        "nothing of the bad files applied: {o}"
    );
    assert_eq!(sshd.files("in"), Vec::<String>::new());
    assert_eq!(sshd.files("in/processing"), Vec::<String>::new());
    assert_eq!(
        sshd.files("in/failed"),
        vec![
            "a_empty-2.xml",
            "a_empty.xml",
            "b_broken.xml",
            "c_zero.xml",
            "d_big.xml"
        ]
    );
    assert_eq!(sshd.read("in/failed/a_empty.xml"), b"earlier");
    assert_eq!(sshd.read("in/failed/c_zero.xml"), zero.as_bytes());

    let rows = exchanges(&app).await;
    let failed: Vec<&FileExchange> = rows.iter().filter(|x| x.state == "failed").collect();
    assert_eq!(failed.len(), 4, "{rows:?}");
    let reason = |name: &str| {
        let row = failed.iter().find(|x| x.name == name).unwrap();
        row.error.clone().unwrap()
    };
    assert!(
        reason("a_empty.xml").contains("empty"),
        "{}",
        reason("a_empty.xml")
    );
    assert!(reason("a_empty.xml").contains("failed/a_empty-2.xml"));
    assert!(
        reason("b_broken.xml").contains("not well-formed XML"),
        "{}",
        reason("b_broken.xml")
    );
    assert!(
        reason("c_zero.xml").contains("Invalid line[1].qty"),
        "{}",
        reason("c_zero.xml")
    );
    assert!(reason("d_big.xml").contains("max_file_bytes (1000 bytes)"));
    // The bytes as read are kept, except those of a file too large to read.
    let bodies = app
        .with_conn(move |c| {
            failed_ids(c)
                .into_iter()
                .map(|(name, id)| (name, store::exchange(c, id).unwrap().unwrap().1))
                .collect::<Vec<_>>()
        })
        .await;
    for (name, body) in bodies {
        match name.as_str() {
            "c_zero.xml" => assert_eq!(body.as_deref(), Some(zero.as_str())),
            "d_big.xml" => assert_eq!(body, None),
            "a_empty.xml" => assert_eq!(body.as_deref(), Some("")),
            _ => assert!(body.unwrap().contains("4002")),
        }
    }
    // Each refusal is recorded as a refused SOAP message is: caller, operation, reason.
    let rejections = app
        .with_conn(|c| {
            use diesel::prelude::*;
            use wharf::db::schema::rejections as r;
            r::table
                .order(r::id)
                .select((r::caller, r::operation, r::reason, r::body_excerpt))
                .load::<(Option<String>, Option<String>, String, String)>(c)
                .unwrap()
        })
        .await;
    assert_eq!(rejections.len(), 4, "{rejections:?}");
    for (caller, operation, _, _) in &rejections {
        assert_eq!(caller.as_deref(), Some("sftp:dropbox"));
        assert_eq!(operation.as_deref(), Some("shipment.create"));
    }
    assert!(
        rejections
            .iter()
            .any(|(_, _, reason, excerpt)| reason.contains("c_zero.xml")
                && reason.contains("line[1].qty")
                && excerpt.contains("<qty>0</qty>")),
        "{rejections:?}"
    );
    assert_eq!(troubles(&app).await, vec![]);
}

fn failed_ids(c: &mut wharf::db::DbConnection) -> Vec<(String, i64)> {
    let f = ExchangeFilter {
        state: Some(store::FileState::Failed),
        ..ExchangeFilter::default()
    };
    store::exchanges(c, &f, None, 100)
        .unwrap()
        .into_iter()
        .map(|x| (x.name, x.id))
        .collect()
}

async fn files_left_by_a_run_that_died_are_applied_once(backend: Backend) {
    let sshd = Sshd::start();
    let app = spawn(backend, &sshd, |_| {}).await;
    app.expect_leftovers("a file another process still holds stays claimed by it");
    for id in ["5001", "5002", "5003", "5004"] {
        app.put_order(id, &[("A", 1)]).await;
    }
    sshd.mkdir("in/processing");
    // A run died after moving the file (its lease has run out) …
    sshd.put(
        "in/processing/moved.xml",
        shipment("5001", &[("A", 1)], "T1"),
    );
    // … after claiming it but before moving it …
    sshd.put("in/claimed.xml", shipment("5002", &[("A", 1)], "T2"));
    // … and a file waits in processing/ with no row at all.
    sshd.put(
        "in/processing/orphan.xml",
        shipment("5003", &[("A", 1)], "T3"),
    );
    // Another process holds this one right now: left alone.
    sshd.put(
        "in/processing/held.xml",
        shipment("5004", &[("A", 1)], "T4"),
    );
    let now = wharf::db::now();
    let claim = |owner: &str, secs: i64| Claim {
        channel: "dropbox".into(),
        owner: owner.into(),
        now: now - chrono::TimeDelta::seconds(60),
        until: now + chrono::TimeDelta::seconds(secs),
    };
    let (dead, alive) = (claim("dead#1", -30), claim("alive#1", 600));
    app.with_conn(move |c| {
        for name in ["moved.xml", "claimed.xml"] {
            inbound::claim_file(c, &dead, name).unwrap().unwrap();
        }
        inbound::claim_file(c, &alive, "held.xml").unwrap().unwrap();
        // A second claim of a held name loses.
        assert!(inbound::claim_file(c, &dead, "held.xml").unwrap().is_none());
    })
    .await;

    let outcome = import::run_once(&poller(&app)).await.unwrap();
    assert_eq!((outcome.applied, outcome.taken_over), (3, 3), "{outcome:?}");
    app.drain().await;
    for id in ["5001", "5002", "5003"] {
        let o = order(&app, id).await;
        assert_eq!(o["shipments"].as_array().unwrap().len(), 1, "{o}");
    }
    assert_eq!(order(&app, "5004").await["shipments"], json!([]));
    assert_eq!(sshd.files("in"), Vec::<String>::new());
    assert_eq!(sshd.files("in/processing"), vec!["held.xml"]);
    let rows = exchanges(&app).await;
    let by_name = |n: &str| rows.iter().find(|x| x.name == n).unwrap().clone();
    for name in ["moved.xml", "claimed.xml", "orphan.xml"] {
        assert_eq!(by_name(name).state, "applied", "{name}");
    }
    // One run found each unfinished.
    assert_eq!(by_name("moved.xml").runs, 1);
    assert_eq!(by_name("claimed.xml").runs, 1);
    assert_eq!(by_name("held.xml").state, "claimed");
    assert_eq!(by_name("held.xml").runs, 1);
    assert_eq!(rows.len(), 4, "{rows:?}");
}

async fn an_expired_claim_is_taken_over_by_one_run_only(backend: Backend) {
    let sshd = Sshd::start();
    let app = spawn(backend, &sshd, |_| {}).await;
    app.with_conn(|c| {
        let now = wharf::db::now();
        let claim = |owner: &str, secs: i64| Claim {
            channel: "dropbox".into(),
            owner: owner.into(),
            now,
            until: now + chrono::TimeDelta::seconds(secs),
        };
        let dead = inbound::claim_file(c, &claim("dead#1", -1), "a.xml")
            .unwrap()
            .unwrap();
        let (first, second) = (claim("first#1", 60), claim("second#1", 60));
        let taken = inbound::take_over(c, &first).unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].id, dead.id);
        assert!(inbound::take_over(c, &second).unwrap().is_empty());
        // The run that lost the file can no longer settle it; the holder can.
        assert!(!inbound::finish_done(c, dead.id, "dead#1", store::FileState::Applied).unwrap());
        assert!(!inbound::drop_claim(c, dead.id, "second#1").unwrap());
        assert_eq!(inbound::note_held_by_others(c, &second).unwrap(), 1);
        assert!(inbound::release(c, dead.id, "first#1", "let go").unwrap());
        let later = Claim {
            now: now + chrono::TimeDelta::seconds(1),
            ..second
        };
        assert_eq!(
            inbound::take_over(c, &later).unwrap()[0].error.as_deref(),
            Some("let go")
        );
        assert!(inbound::finish_done(c, dead.id, "second#1", store::FileState::Applied).unwrap());
    })
    .await;
    let rows = exchanges(&app).await;
    assert_eq!(
        (rows[0].state.as_str(), rows[0].runs),
        ("applied", 3),
        "{rows:?}"
    );
}

async fn a_file_that_cannot_be_archived_is_finished_by_the_next_run(backend: Backend) {
    use std::os::unix::fs::PermissionsExt;
    let sshd = Sshd::start();
    let app = spawn(backend, &sshd, |c| c.on_done = OnDone::Archive).await;
    app.put_order("7001", &[("A", 2)]).await;
    sshd.mkdir("in/archive");
    let archive = sshd.root.join("in/archive");
    std::fs::set_permissions(&archive, std::fs::Permissions::from_mode(0o555)).unwrap();
    sshd.put("in/ship.xml", shipment("7001", &[("A", 1)], "T1"));
    let outcome = import::run_once(&poller(&app)).await.unwrap();
    assert_eq!((outcome.applied, outcome.left), (0, 1), "{outcome:?}");
    // Stored, but still claimed (with why) and still in processing/.
    let rows = exchanges(&app).await;
    assert_eq!(rows[0].state, "claimed");
    assert!(rows[0].request_id.is_some());
    assert!(
        rows[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("archive"),
        "{rows:?}"
    );
    assert_eq!(sshd.files("in/processing"), vec!["ship.xml"]);
    let t = troubles(&app).await;
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0].0, Trouble::Import.as_str());
    assert!(t[0].1.contains("ship.xml"), "{t:?}");

    std::fs::set_permissions(&archive, std::fs::Permissions::from_mode(0o755)).unwrap();
    let outcome = import::run_once(&poller(&app)).await.unwrap();
    assert_eq!((outcome.applied, outcome.taken_over), (1, 1), "{outcome:?}");
    app.drain().await;
    let o = order(&app, "7001").await;
    assert_eq!(o["shipments"].as_array().unwrap().len(), 1, "{o}");
    assert_eq!(o["lines"][0]["qty_shipped"], 1);
    assert_eq!(sshd.files("in/archive"), vec!["ship.xml"]);
    assert_eq!(sshd.files("in/processing"), Vec::<String>::new());
    assert_eq!(
        states(&app).await,
        vec![("ship.xml".into(), "applied".into())]
    );
    assert_eq!(troubles(&app).await, vec![]);
}

async fn a_missing_import_folder_is_a_trouble_until_it_exists(backend: Backend) {
    let sshd = Sshd::start();
    let app = spawn(backend, &sshd, |c| {
        c.import_dir = format!("{}/incoming", c.import_dir)
    })
    .await;
    let outcome = import::run_once(&poller(&app)).await.unwrap();
    let stopped = outcome.stopped.clone().unwrap_or_default();
    assert!(stopped.contains("in/incoming"), "{outcome:?}");
    let t = troubles(&app).await;
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0].0, Trouble::ImportFolder.as_str());
    assert!(
        t[0].1.contains("in/incoming") && t[0].1.contains("import_dir"),
        "{t:?}"
    );
    sshd.mkdir("in/incoming");
    let outcome = import::run_once(&poller(&app)).await.unwrap();
    assert_eq!(outcome, Outcome::default());
    assert_eq!(troubles(&app).await, vec![]);
    assert!(sshd.root.join("in/incoming/processing").is_dir());
    assert!(sshd.root.join("in/incoming/failed").is_dir());
}

async fn a_continuous_channel_reads_files_by_itself(backend: Backend) {
    let sshd = Sshd::start();
    let app = spawn(backend, &sshd, |c| {
        c.import_schedule = "continuous".into();
        c.poll_secs = 1;
    })
    .await;
    app.put_order("6001", &[("A", 1)]).await;
    sshd.put("in/ship.xml", shipment("6001", &[("A", 1)], "T1"));
    let started = std::time::Instant::now();
    loop {
        app.drain().await;
        if order(&app, "6001").await["status"] == "complete" {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the runner did not read the file within 30 s: {:?}",
            sshd.files("in")
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(sshd.files("in"), Vec::<String>::new());
}
