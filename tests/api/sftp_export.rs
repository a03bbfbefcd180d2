//! Order files out (issue 16, item 2) against the real sshd: eligible orders go out in one file per
//! batch under final names only, exactly once — across a crash between upload and rename, between
//! rename and commit, and with two processes writing at once — and a missing folder or a refused
//! upload is a trouble until the next run writes the file.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use wharf::channels::sftp::FileChannel;
use wharf::channels::sftp::export::{self, StopAfter};
use wharf::channels::sftp::orders_file;
use wharf::channels::sftp::store;
use wharf::config::ChannelSettings;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, order_json};
use crate::sshd::Sshd;

both_backends!(
    eligible_orders_go_out_one_file_per_batch_under_final_names,
    an_order_whose_stored_document_does_not_read_stays_out_alone,
    a_crash_between_upload_and_rename_neither_loses_nor_doubles_a_batch,
    a_crash_between_rename_and_commit_neither_loses_nor_doubles_a_batch,
    two_processes_write_each_order_once,
    a_missing_export_folder_is_a_trouble_until_it_exists,
    a_refused_upload_is_written_again_by_the_next_run,
    a_continuous_channel_writes_orders_as_they_are_stored,
);

const CHANNEL: &str = "dropbox";

async fn setup(
    backend: Backend,
    adjust: impl FnOnce(&mut ChannelSettings),
) -> (TestApp, Sshd, ChannelSettings) {
    let sshd = Sshd::start();
    let mut c = sshd.channel(CHANNEL);
    c.batch_size = 2;
    adjust(&mut c);
    let channel = c.clone();
    let app = TestApp::spawn_with(backend, move |s| s.channels.push(c)).await;
    (app, sshd, channel)
}

/// A file channel "process" of its own (its own lease owner) on `app`'s database.
fn process(app: &TestApp, c: &ChannelSettings) -> FileChannel {
    FileChannel::new(app.pool.clone(), app.settings.clone(), c.clone())
}

async fn put_orders(app: &TestApp, ids: &[&str]) {
    for id in ids {
        let (status, body) = app.put_order(id, &[("ABC123", 1)]).await;
        assert_eq!(status, 201, "{body}");
    }
}

async fn export_status(app: &TestApp, id: &str) -> String {
    let (status, order) = app.api(Method::GET, &format!("/orders/{id}"), None).await;
    assert_eq!(status, 200, "{order}");
    order["export"]["status"].as_str().unwrap().to_string()
}

async fn export_statuses(app: &TestApp, ids: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        out.push(export_status(app, id).await);
    }
    out
}

/// Whether `name` is a final order file name of the channel: `orders_<channel>_<ts>_<id>.xml`.
fn is_final_name(name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(&format!("orders_{CHANNEL}_"))
        .and_then(|r| r.strip_suffix(".xml"))
    else {
        return false;
    };
    let Some((ts, id)) = rest.split_once('_') else {
        return false;
    };
    let b = ts.as_bytes();
    ts.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && ts[..8]
            .chars()
            .chain(ts[9..15].chars())
            .all(|c| c.is_ascii_digit())
        && !id.is_empty()
        && id.chars().all(|c| c.is_ascii_digit())
}

/// The files in `out/`, checked to be final names only, with the orders each holds.
fn order_files(sshd: &Sshd) -> Vec<(String, Vec<String>)> {
    sshd.files("out")
        .into_iter()
        .map(|name| {
            assert!(is_final_name(&name), "not a final order file name: {name}");
            let xml = String::from_utf8(sshd.read(&format!("out/{name}"))).unwrap();
            let file = orders_file::parse(&xml).unwrap_or_else(|e| panic!("{name}: {e}\n{xml}"));
            assert_eq!(file.file, name);
            assert_eq!(file.channel, CHANNEL);
            assert_eq!(file.count as usize, file.orders.len(), "{xml}");
            let ids = file.orders.into_iter().map(|o| o.increment_id).collect();
            (name, ids)
        })
        .collect()
}

/// How often each order appears over all the files in `out/`.
fn order_counts(sshd: &Sshd) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for (_, ids) in order_files(sshd) {
        for id in ids {
            *counts.entry(id).or_insert(0) += 1;
        }
    }
    counts
}

fn once_each(ids: &[&str]) -> HashMap<String, usize> {
    ids.iter().map(|id| (id.to_string(), 1)).collect()
}

async fn troubles(app: &TestApp) -> Vec<(String, String)> {
    app.with_conn(|c| {
        store::troubles(c, Some(CHANNEL))
            .unwrap()
            .into_iter()
            .map(|t| (t.trouble, t.detail))
            .collect()
    })
    .await
}

/// Waits for `c`'s lease to run out, as a later run after a crash would.
async fn lease_runs_out(c: &ChannelSettings) {
    tokio::time::sleep(Duration::from_millis(
        u64::try_from(c.lease_secs).unwrap() * 1000 + 200,
    ))
    .await;
}

async fn eligible_orders_go_out_one_file_per_batch_under_final_names(backend: Backend) {
    let (app, sshd, c) = setup(backend, |_| {}).await;
    let ids = ["F-1", "F-2", "F-3", "F-4", "F-5"];
    put_orders(&app, &ids).await;
    let mut unpaid = order_json(&[("ABC123", 1)]);
    unpaid["status"] = json!("pending");
    app.api(Method::PUT, "/orders/F-UNPAID", Some(unpaid)).await;
    let mut gift = order_json(&[("GIFT", 1)]);
    gift["virtual"] = json!(true);
    app.api(Method::PUT, "/orders/F-VIRTUAL", Some(gift)).await;

    let ch = process(&app, &c);
    let o = export::run_once(&ch).await.unwrap();
    assert_eq!((o.files.len(), o.orders, o.problem), (3, 5, None));

    let files = order_files(&sshd);
    assert_eq!(
        files.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        {
            let mut names = o.files.clone();
            names.sort();
            names
        },
        "final names only, no temporary file left"
    );
    let sizes: Vec<usize> = files.iter().map(|(_, ids)| ids.len()).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 5);
    assert!(sizes.iter().all(|n| (1..=2).contains(n)), "{sizes:?}");
    assert_eq!(order_counts(&sshd), once_each(&ids));
    assert_eq!(export_statuses(&app, &ids).await, vec!["exported"; 5]);
    assert_eq!(export_status(&app, "F-UNPAID").await, "pending");
    assert_eq!(export_status(&app, "F-VIRTUAL").await, "pending");

    // What a warehouse needs of an order, as stored.
    let (name, first) = &files[0];
    let xml = String::from_utf8(sshd.read(&format!("out/{name}"))).unwrap();
    let file = orders_file::parse(&xml).unwrap();
    let order = &file.orders[0];
    assert_eq!(order.increment_id, first[0]);
    assert_eq!(order.status, "processing");
    assert_eq!(order.ordered_at, "2024-05-01T09:30:00Z");
    assert_eq!(order.customer.email.as_deref(), Some("ada@example.com"));
    assert_eq!(order.lines.line[0].sku, "ABC123");
    assert_eq!(order.lines.line[0].qty, 1);
    assert_eq!(order.totals.grand_total, "25");
    assert_eq!(
        order.shipping_method.as_ref().unwrap().code,
        "flatrate_flatrate"
    );

    // The exchange records the file as sent, with the bytes' size and hash.
    let bytes = sshd.read(&format!("out/{name}"));
    let n = name.clone();
    let (exchange, body) = app
        .with_conn(move |conn| {
            let x = store::exchange_named(conn, CHANNEL, &n).unwrap().unwrap();
            store::exchange(conn, x.id).unwrap().unwrap()
        })
        .await;
    assert_eq!(exchange.state, "sent");
    assert_eq!(exchange.direction, "out");
    assert_eq!(exchange.size, Some(bytes.len() as i64));
    assert_eq!(
        exchange.hash.as_deref(),
        Some(store::out::sha256_hex(&bytes).as_str())
    );
    assert_eq!(body.as_deref().map(str::as_bytes), Some(bytes.as_slice()));
    assert_eq!(exchange.orders as usize, first.len());

    // The feed says each order went out, and in which file.
    let feed = app.feed().await;
    let exported: Vec<&serde_json::Value> = feed
        .iter()
        .filter(|(_, kind, data)| {
            kind == "order.export_status_changed" && data["status"] == "exported"
        })
        .map(|(_, _, data)| data)
        .collect();
    assert_eq!(exported.len(), 5, "{feed:?}");
    let f1 = exported.iter().find(|d| d["order"] == first[0]).unwrap();
    assert!(
        f1["message"].as_str().unwrap().contains(name.as_str()),
        "{f1}"
    );

    // Nothing is due any more: a second run writes nothing.
    let again = export::run_once(&ch).await.unwrap();
    assert_eq!((again.files.len(), again.orders), (0, 0));
    assert_eq!(sshd.files("out").len(), 3);
    assert!(troubles(&app).await.is_empty());
}

async fn an_order_whose_stored_document_does_not_read_stays_out_alone(backend: Backend) {
    let (app, sshd, c) = setup(backend, |c| c.max_attempts = 2).await;
    put_orders(&app, &["U-1", "U-2", "U-3"]).await;
    app.with_conn(|conn| {
        use diesel::prelude::*;
        use wharf::db::schema::orders;
        diesel::update(orders::table.filter(orders::increment_id.eq("U-2")))
            .set(orders::document.eq("{\"not\": \"an order\"}"))
            .execute(conn)
            .unwrap();
    })
    .await;
    let ch = process(&app, &c);
    let o = export::run_once(&ch).await.unwrap();
    assert_eq!((o.orders, o.unreadable), (2, 1));
    assert_eq!(order_counts(&sshd), once_each(&["U-1", "U-3"]));
    assert_eq!(
        export_statuses(&app, &["U-1", "U-3"]).await,
        vec!["exported", "exported"]
    );
    // Its order cannot be shown over the API any more; its export status and task say why.
    let (status, task) = app
        .with_conn(|conn| {
            use diesel::prelude::*;
            use wharf::db::schema::orders;
            let status: String = orders::table
                .filter(orders::increment_id.eq("U-2"))
                .select(orders::export_status)
                .first(conn)
                .unwrap();
            let task =
                wharf::outbound::task_of(conn, wharf::orders::export::order_file(CHANNEL), "U-2")
                    .unwrap()
                    .unwrap();
            (status, task)
        })
        .await;
    assert_eq!(status, "failed");
    assert_eq!((task.state.as_str(), task.attempts), ("failed", 1));
    assert!(
        task.last_error
            .as_deref()
            .unwrap()
            .contains("cannot be read"),
        "{task:?}"
    );
}

async fn a_crash_between_upload_and_rename_neither_loses_nor_doubles_a_batch(backend: Backend) {
    let (app, sshd, c) = setup(backend, |c| c.lease_secs = 1).await;
    let ids = ["A-1", "A-2", "A-3"];
    put_orders(&app, &ids).await;
    let crashed = process(&app, &c);
    export::run_stopping_after(&crashed, StopAfter::Upload)
        .await
        .unwrap();
    // Killed after the upload: only the temporary name is there, and no order is exported.
    let left = sshd.files("out");
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(".orders_dropbox_") && left[0].ends_with(".xml.part"));
    assert_eq!(export_statuses(&app, &ids).await, vec!["pending"; 3]);

    // Another process while the dead run's lease on the file holds leaves that batch alone, even
    // when the orders' own leases ran out (as they do for a run that looked for unfinished files
    // just before): they wait for whoever finishes their file.
    app.with_conn(|conn| {
        use diesel::prelude::*;
        use wharf::db::schema::outbound_tasks as t;
        let past = wharf::db::now() - chrono::TimeDelta::seconds(5);
        diesel::update(t::table.filter(t::channel.eq(CHANNEL)))
            .set(t::lease_expires_at.eq(Some(past)))
            .execute(conn)
            .unwrap();
    })
    .await;
    let other = process(&app, &c);
    let o = export::run_once(&other).await.unwrap();
    assert_eq!((o.files.len(), o.orders, o.recovered), (1, 1, 0));

    // Once the lease ran out, the next run renames the file the dead run uploaded.
    lease_runs_out(&c).await;
    let o = export::run_once(&other).await.unwrap();
    assert_eq!((o.files.len(), o.orders, o.recovered), (1, 2, 1));
    assert_eq!(sshd.files("out").len(), 2);
    assert_eq!(order_counts(&sshd), once_each(&ids));
    assert_eq!(export_statuses(&app, &ids).await, vec!["exported"; 3]);
    assert!(export::run_once(&other).await.unwrap().files.is_empty());
    assert_eq!(sshd.files("out").len(), 2);
}

async fn a_crash_between_rename_and_commit_neither_loses_nor_doubles_a_batch(backend: Backend) {
    let (app, sshd, c) = setup(backend, |c| c.lease_secs = 1).await;
    put_orders(&app, &["R-1", "R-2"]).await;
    export::run_stopping_after(&process(&app, &c), StopAfter::Rename)
        .await
        .unwrap();
    // Killed after the rename: the final file is there, its orders are not exported yet.
    let files = order_files(&sshd);
    assert_eq!(files.len(), 1);
    assert_eq!(
        export_statuses(&app, &["R-1", "R-2"]).await,
        vec!["pending"; 2]
    );
    lease_runs_out(&c).await;
    let o = export::run_once(&process(&app, &c)).await.unwrap();
    assert_eq!(
        (o.files.clone(), o.orders, o.recovered),
        (vec![files[0].0.clone()], 2, 1)
    );
    assert_eq!(order_files(&sshd), files, "the file is not written again");
    assert_eq!(
        export_statuses(&app, &["R-1", "R-2"]).await,
        vec!["exported"; 2]
    );

    // Again, and this time the warehouse takes the file before the run that died is taken over:
    // neither name is there, so it is committed without writing it again.
    put_orders(&app, &["R-3"]).await;
    export::run_stopping_after(&process(&app, &c), StopAfter::Rename)
        .await
        .unwrap();
    let taken: Vec<String> = sshd
        .files("out")
        .into_iter()
        .filter(|n| !files.iter().any(|(f, _)| f == n))
        .collect();
    assert_eq!(taken.len(), 1);
    std::fs::remove_file(sshd.root.join("out").join(&taken[0])).unwrap();
    lease_runs_out(&c).await;
    let o = export::run_once(&process(&app, &c)).await.unwrap();
    assert_eq!((o.orders, o.recovered), (1, 1));
    assert_eq!(
        order_files(&sshd),
        files,
        "nothing written for the batch taken"
    );
    assert_eq!(export_status(&app, "R-3").await, "exported");
}

async fn two_processes_write_each_order_once(backend: Backend) {
    let (app, sshd, c) = setup(backend, |c| c.lease_secs = 1).await;
    let ids: Vec<String> = (1..=9).map(|i| format!("T-{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    put_orders(&app, &ids[..2]).await;
    // A third process died after uploading a batch: both take it over at the same moment.
    export::run_stopping_after(&process(&app, &c), StopAfter::Upload)
        .await
        .unwrap();
    put_orders(&app, &ids[2..]).await;
    lease_runs_out(&c).await;
    let (a, b) = (process(&app, &c), process(&app, &c));
    let (oa, ob) = tokio::join!(export::run_once(&a), export::run_once(&b));
    let (oa, ob) = (oa.unwrap(), ob.unwrap());
    assert_eq!(oa.orders + ob.orders, 9, "{oa:?} {ob:?}");
    assert_eq!(oa.recovered + ob.recovered, 1, "{oa:?} {ob:?}");
    assert_eq!(oa.files.len() + ob.files.len(), sshd.files("out").len());
    assert_eq!(order_counts(&sshd), once_each(&ids));
    assert_eq!(export_statuses(&app, &ids).await, vec!["exported"; 9]);
}

async fn a_missing_export_folder_is_a_trouble_until_it_exists(backend: Backend) {
    let sshd_dir = "outbox";
    let (app, sshd, c) = setup(backend, |_| {}).await;
    let mut c = c;
    c.export_dir = sshd.path(sshd_dir);
    put_orders(&app, &["M-1"]).await;
    let ch = process(&app, &c);
    let o = export::run_once(&ch).await.unwrap();
    assert!(o.files.is_empty());
    assert!(
        o.problem.as_deref().unwrap().contains(&c.export_dir),
        "{o:?}"
    );
    assert!(sshd.files(sshd_dir).is_empty());
    assert_eq!(export_status(&app, "M-1").await, "pending");
    let t = troubles(&app).await;
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0].0, "export_folder");
    assert!(t[0].1.contains(&c.export_dir), "{t:?}");

    sshd.mkdir(sshd_dir);
    let o = export::run_once(&ch).await.unwrap();
    assert_eq!((o.files.len(), o.orders, o.problem), (1, 1, None));
    assert_eq!(sshd.files(sshd_dir), o.files);
    assert_eq!(export_status(&app, "M-1").await, "exported");
    assert!(troubles(&app).await.is_empty());
}

async fn a_refused_upload_is_written_again_by_the_next_run(backend: Backend) {
    use std::os::unix::fs::PermissionsExt;
    let (app, sshd, c) = setup(backend, |_| {}).await;
    put_orders(&app, &["W-1", "W-2"]).await;
    let out = sshd.root.join("out");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o555)).unwrap();
    let ch = process(&app, &c);
    let o = export::run_once(&ch).await.unwrap();
    assert!(o.files.is_empty());
    assert!(o.problem.is_some(), "{o:?}");
    assert!(sshd.files("out").is_empty());
    assert_eq!(
        export_statuses(&app, &["W-1", "W-2"]).await,
        vec!["pending"; 2]
    );
    let t = troubles(&app).await;
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0].0, "export");
    assert!(t[0].1.contains("could not be written"), "{t:?}");

    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = export::run_once(&ch).await.unwrap();
    assert_eq!((o.files.len(), o.orders, o.recovered), (1, 2, 1));
    assert_eq!(order_counts(&sshd), once_each(&["W-1", "W-2"]));
    assert_eq!(
        export_statuses(&app, &["W-1", "W-2"]).await,
        vec!["exported"; 2]
    );
    assert!(troubles(&app).await.is_empty());
}

async fn a_continuous_channel_writes_orders_as_they_are_stored(backend: Backend) {
    let (app, sshd, _) = setup(backend, |c| c.export_schedule = "continuous".into()).await;
    put_orders(&app, &["C-1"]).await;
    let started = Instant::now();
    while export_status(&app, "C-1").await != "exported" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the continuous runner wrote no file for C-1 within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(order_counts(&sshd), once_each(&["C-1"]));
}
