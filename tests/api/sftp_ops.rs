//! Operating the file channels (issue 16, items 4 and 5): the real sshd stopped, restarted and
//! given a new host key, seen through `FileChannel::connect()` (which records and clears the
//! channel's troubles), the alert monitor's incidents and the mails on a real SMTP server; the
//! failed and stuck shipment files as incidents and gauges; `wharf files` run as the real binary;
//! retention of finished exchanges.
//!
//! The exchanges are the rows the export and import lanes write, inserted directly by
//! [`insert_file`] in the shape those lanes write them (see the contract in
//! `src/channels/sftp/store/mod.rs`): an order file `out` with its name, order count, body, size
//! and hash, its orders' tasks carrying the file's name as their batch; a shipment file `in` with
//! its remote name, request, order, error, body when failed, and runs.

use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use wharf::Settings;
use wharf::alerts::{self, Pass};
use wharf::channels::sftp::FileChannel;
use wharf::channels::sftp::client::RemoteError;
use wharf::config::ChannelSettings;
use wharf::db::schema::{audit_log, channel_troubles, file_exchanges as fx, sftp_host_keys};

use crate::alerts::{CONSOLE, deliver, later, mails_to, monitor, with_subject};
use crate::both_backends;
use crate::helpers::{Backend, TestApp};
use crate::metrics::{promtool_check, scrape, value};
use crate::smtp::SmtpServer;
use crate::sshd::Sshd;

both_backends!(
    a_stopped_server_is_one_incident_and_one_mail_then_resolves,
    a_changed_host_key_is_refused_whatever_the_policy_and_alerted,
    failed_and_stuck_shipment_files_are_incidents_until_seen_or_finished,
    wharf_files_lists_shows_the_failed_and_marks_them_seen,
    retention_deletes_finished_exchanges_and_keeps_what_needs_someone,
);

/// A file exchange as the export and import lanes write it.
#[derive(Debug, Clone)]
pub(crate) struct NewFile {
    pub channel: &'static str,
    pub direction: &'static str,
    pub name: String,
    pub state: &'static str,
    pub size: Option<i64>,
    pub orders: i32,
    pub request_id: Option<i64>,
    pub order: Option<String>,
    pub body: Option<String>,
    pub error: Option<String>,
    pub runs: i32,
    pub seen_at: Option<NaiveDateTime>,
    /// Made this long ago (and finished then, when its state is finished).
    pub age: TimeDelta,
}

impl NewFile {
    /// An order file of `dropbox`, sent a minute ago with `orders` orders in `body`.
    pub fn order_file(name: &str, orders: i32, body: &str) -> NewFile {
        NewFile {
            channel: "dropbox",
            direction: "out",
            name: name.into(),
            state: "sent",
            size: Some(body.len() as i64),
            orders,
            request_id: None,
            order: None,
            body: Some(body.into()),
            error: None,
            runs: 0,
            seen_at: None,
            age: TimeDelta::minutes(1),
        }
    }

    /// A shipment file of `dropbox` in `state`, read a minute ago.
    pub fn shipment_file(name: &str, state: &'static str) -> NewFile {
        NewFile {
            channel: "dropbox",
            direction: "in",
            name: name.into(),
            state,
            size: Some(120),
            orders: 0,
            request_id: None,
            order: None,
            body: None,
            error: None,
            runs: 0,
            seen_at: None,
            age: TimeDelta::minutes(1),
        }
    }

    /// A shipment file that failed for `why`, kept as read (`body`), not yet seen.
    pub fn failed(name: &str, why: &str, body: &str) -> NewFile {
        NewFile {
            size: Some(body.len() as i64),
            body: Some(body.into()),
            error: Some(why.into()),
            ..NewFile::shipment_file(name, "failed")
        }
    }
}

/// Inserts `f` as its lane would have written it; returns its id.
pub(crate) async fn insert_file(app: &TestApp, f: NewFile) -> i64 {
    app.with_conn(move |c| {
        let made = wharf::db::now() - f.age;
        let finished = !["writing", "uploaded", "claimed"].contains(&f.state);
        diesel::insert_into(fx::table)
            .values((
                fx::channel.eq(f.channel),
                fx::direction.eq(f.direction),
                fx::name.eq(&f.name),
                fx::state.eq(f.state),
                fx::size.eq(f.size),
                fx::hash.eq(f.size.map(|_| format!("{:064x}", f.name.len()))),
                fx::orders.eq(f.orders),
                fx::request_id.eq(f.request_id),
                fx::order_increment_id.eq(&f.order),
                fx::body.eq(&f.body),
                fx::error.eq(&f.error),
                fx::runs.eq(f.runs),
                fx::seen_at.eq(f.seen_at),
                fx::created_at.eq(made),
                fx::updated_at.eq(made),
                fx::finished_at.eq(finished.then_some(made)),
            ))
            .execute(c)
            .unwrap();
        fx::table
            .filter(fx::name.eq(&f.name))
            .select(diesel::dsl::max(fx::id))
            .first::<Option<i64>>(c)
            .unwrap()
            .unwrap()
    })
    .await
}

/// The troubles recorded for `channel`: (trouble, detail).
pub(crate) async fn troubles(app: &TestApp, channel: &str) -> Vec<(String, String)> {
    let channel = channel.to_string();
    app.with_conn(move |c| {
        channel_troubles::table
            .filter(channel_troubles::channel.eq(channel))
            .order(channel_troubles::trouble)
            .select((channel_troubles::trouble, channel_troubles::detail))
            .load(c)
            .unwrap()
    })
    .await
}

/// The app's file channel `name` as a runner of this process would hold it.
fn file_channel(app: &TestApp, name: &str) -> FileChannel {
    let c = app
        .settings
        .channels
        .iter()
        .find(|c| c.name == name)
        .unwrap()
        .clone();
    FileChannel::new(app.pool.clone(), app.settings.clone(), c)
}

/// A run's connection: the server's answer, the remote closed when it let us in.
async fn connect(ch: &FileChannel) -> Result<(), RemoteError> {
    match ch.connect().await.unwrap() {
        Ok(remote) => {
            remote.close().await;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// An app with file channel(s) on `sshd` and alert mails to `server`.
async fn app_on(
    backend: Backend,
    server: &SmtpServer,
    channels: Vec<ChannelSettings>,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    TestApp::spawn_with(backend, move |s| {
        mails_to(server, s);
        s.channels = channels;
        adjust(s);
    })
    .await
}

async fn open_keys(app: &TestApp) -> Vec<String> {
    app.with_conn(|c| alerts::open_incidents(c).unwrap())
        .await
        .into_iter()
        .map(|i| i.key)
        .collect()
}

fn has(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?} in:\n{haystack}"
    );
}

async fn a_stopped_server_is_one_incident_and_one_mail_then_resolves(backend: Backend) {
    let mut sshd = Sshd::start();
    let server = SmtpServer::start();
    let app = app_on(backend, &server, vec![sshd.channel("dropbox")], |_| {}).await;
    let ch = file_channel(&app, "dropbox");
    connect(&ch).await.unwrap();
    assert_eq!(troubles(&app, "dropbox").await, []);
    assert_eq!(monitor(&app, later(0)).await, Pass::default());

    sshd.stop();
    let e = connect(&ch).await.unwrap_err();
    assert!(matches!(e, RemoteError::Connect { .. }), "{e}");
    let found = troubles(&app, "dropbox").await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0], ("connection".to_string(), e.to_string()));
    let trouble = |page: &str, kind: &str| {
        value(
            page,
            "wharf_file_channel_trouble",
            &[("channel", "dropbox"), ("trouble", kind)],
        )
    };
    let page = scrape(&app).await;
    assert_eq!(trouble(&page, "connection"), Some(1.0));
    assert_eq!(trouble(&page, "host_key"), Some(0.0));
    let now = later(0);
    let pass = monitor(&app, now).await;
    assert_eq!(pass.opened.len(), 1, "{pass:?}");
    assert_eq!(open_keys(&app).await, ["files:dropbox:connection"]);
    // The next run fails again, another pass finds the incident open: nothing new.
    connect(&ch).await.unwrap_err();
    assert_eq!(monitor(&app, now).await, Pass::default());
    assert_eq!(deliver(&app, now).await.sent, 1);
    let open = server.wait_for_mails(1, Duration::from_secs(10)).remove(0);
    assert_eq!(
        open.subject(),
        "[wharf] OPEN file channel dropbox cannot connect"
    );
    has(
        &open.body,
        &format!("First error: cannot connect to 127.0.0.1:{}", sshd.port),
    );
    has(&open.body, "What to do: wharf cannot reach the SFTP server");
    has(&open.body, &format!("{CONSOLE}/files?channel=dropbox"));

    // Back: the next run gets through and clears the trouble; the incident resolves after the
    // quiet time with one mail threaded under the open one.
    sshd.restart();
    connect(&ch).await.unwrap();
    assert_eq!(troubles(&app, "dropbox").await, []);
    assert_eq!(trouble(&scrape(&app).await, "connection"), Some(0.0));
    let cleared = monitor(&app, now + TimeDelta::seconds(10)).await;
    assert_eq!(cleared.cleared, pass.opened);
    let quiet = app.settings.alerts.resolve_after_secs;
    let at = now + TimeDelta::seconds(quiet + 11);
    assert_eq!(monitor(&app, at).await.resolved, pass.opened);
    assert_eq!(deliver(&app, at).await.sent, 1);
    let mails = server.wait_for_mails(2, Duration::from_secs(10));
    assert_eq!(mails.len(), 2, "{mails:#?}");
    let resolved = with_subject(
        &mails,
        "[wharf] RESOLVED file channel dropbox cannot connect after ",
    );
    assert_eq!(
        resolved.header("in-reply-to"),
        open.header("message-id"),
        "{resolved:#?}"
    );
    assert_eq!(open_keys(&app).await, Vec::<String>::new());
}

async fn a_changed_host_key_is_refused_whatever_the_policy_and_alerted(backend: Backend) {
    let mut sshd = Sshd::start();
    let server = SmtpServer::start();
    let pinned = sshd.channel("pinned");
    let tofu = ChannelSettings {
        host_key_fingerprint: String::new(),
        trust_on_first_use: true,
        ..sshd.channel("tofu")
    };
    let app = app_on(backend, &server, vec![pinned, tofu], |_| {}).await;
    let (pinned, tofu) = (file_channel(&app, "pinned"), file_channel(&app, "tofu"));
    let first = sshd.fingerprint.clone();
    connect(&pinned).await.unwrap();
    // Trust on first use keeps the key it sees first.
    connect(&tofu).await.unwrap();
    let kept = || {
        app.with_conn(|c| {
            sftp_host_keys::table
                .select((sftp_host_keys::channel, sftp_host_keys::fingerprint))
                .load::<(String, String)>(c)
                .unwrap()
        })
    };
    assert_eq!(kept().await, [("tofu".to_string(), first.clone())]);
    connect(&tofu).await.unwrap();

    sshd.new_host_key();
    sshd.restart();
    for ch in [&pinned, &tofu] {
        let e = connect(ch).await.unwrap_err();
        assert!(matches!(e, RemoteError::HostKeyChanged { .. }), "{e}");
        has(&e.to_string(), &first);
        has(&e.to_string(), &sshd.fingerprint);
        let found = troubles(&app, ch.name()).await;
        assert_eq!(found, [("host_key".to_string(), e.to_string())]);
    }
    // The new key is not kept: the first one stays trusted, and refused again next time.
    assert_eq!(kept().await, [("tofu".to_string(), first.clone())]);
    connect(&tofu).await.unwrap_err();

    let now = later(0);
    let pass = monitor(&app, now).await;
    assert_eq!(pass.opened.len(), 2, "{pass:?}");
    assert_eq!(
        open_keys(&app).await,
        ["files:pinned:host_key", "files:tofu:host_key"]
    );
    assert_eq!(deliver(&app, now).await.sent, 1);
    let digest = server.wait_for_mails(1, Duration::from_secs(10)).remove(0);
    has(
        digest.subject(),
        "[wharf] OPEN 2 incidents: file channel pinned: host key refused",
    );
    has(digest.subject(), "file channel tofu: host key refused");
    has(&digest.body, "(trusted on first use)");
    has(&digest.body, "update known_hosts or host_key_fingerprint");
}

async fn failed_and_stuck_shipment_files_are_incidents_until_seen_or_finished(backend: Backend) {
    let sshd = Sshd::start();
    let server = SmtpServer::start();
    let app = app_on(backend, &server, vec![sshd.channel("dropbox")], |_| {}).await;
    app.expect_leftovers("files claimed by a run (and stuck ones) are what the alerts are about");
    // Finished files and a file claimed by a run now are no incident.
    insert_file(
        &app,
        NewFile::order_file("orders_dropbox_1.xml", 2, "<orders/>"),
    )
    .await;
    insert_file(&app, NewFile::shipment_file("ok.xml", "applied")).await;
    insert_file(
        &app,
        NewFile {
            runs: 2,
            ..NewFile::shipment_file("busy.xml", "claimed")
        },
    )
    .await;
    assert_eq!(monitor(&app, later(0)).await, Pass::default());

    let empty = insert_file(&app, NewFile::failed("empty.xml", "the file is empty", "")).await;
    let broken = insert_file(
        &app,
        NewFile::failed(
            "broken.xml",
            "the file is not a shipment document: unexpected end of file in <shipment>",
            "<shipment><order>1",
        ),
    )
    .await;
    let stuck = insert_file(
        &app,
        NewFile {
            runs: 3,
            error: Some("timed out after 5 s".into()),
            ..NewFile::shipment_file("slow.xml", "claimed")
        },
    )
    .await;
    let now = later(0);
    let pass = monitor(&app, now).await;
    assert_eq!(pass.opened.len(), 2, "{pass:?}");
    let open = app.with_conn(|c| alerts::open_incidents(c).unwrap()).await;
    let keys: Vec<&str> = open.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["files:dropbox:failed", "files:dropbox:stuck"]);
    assert_eq!(
        open[0].summary,
        "failed shipment files of file channel dropbox: 2 files (empty.xml, broken.xml)"
    );
    assert_eq!(
        open[1].summary,
        "shipment files stuck in processing/ on file channel dropbox: 1 file (slow.xml)"
    );
    let page = scrape(&app).await;
    promtool_check(&page);
    let of = |name: &str| value(&page, name, &[("channel", "dropbox")]);
    assert_eq!(of("wharf_file_channel_failed_unseen"), Some(2.0));
    assert_eq!(of("wharf_file_channel_stuck"), Some(1.0));
    assert_eq!(deliver(&app, now).await.sent, 1);
    let digest = server.wait_for_mails(1, Duration::from_secs(10)).remove(0);
    for needle in [
        "First error: the file is empty",
        &format!("- {empty}: empty.xml: the file is empty"),
        &format!("{CONSOLE}/files/{empty}"),
        &format!("fix: wharf files seen {empty}"),
        &format!(
            "- {broken}: broken.xml: the file is not a shipment document: unexpected end of file"
        ),
        "moved to failed/ in import_dir",
        &format!("- {stuck}: slow.xml: claimed "),
        "3 runs could not finish it: timed out after 5 s",
        &format!("fix: wharf files show {stuck}"),
    ] {
        has(&digest.body, needle);
    }

    // Support sees one: the incident stays, with one file; the other: it clears. The stuck file
    // is finished by a run: it clears too.
    app.with_conn(move |c| {
        use wharf::channels::sftp::store::ops;
        assert!(ops::mark_seen(c, empty, wharf::db::now()).unwrap());
        assert!(!ops::mark_seen(c, empty, wharf::db::now()).unwrap());
    })
    .await;
    monitor(&app, now).await;
    let open = app.with_conn(|c| alerts::open_incidents(c).unwrap()).await;
    assert_eq!(
        open[0].summary,
        "failed shipment files of file channel dropbox: 1 file (broken.xml)"
    );
    app.with_conn(move |c| {
        use wharf::channels::sftp::store::ops;
        assert!(ops::mark_seen(c, broken, wharf::db::now()).unwrap());
        diesel::update(fx::table.find(stuck))
            .set(fx::state.eq("applied"))
            .execute(c)
            .unwrap();
    })
    .await;
    let cleared = monitor(&app, now + TimeDelta::seconds(5)).await;
    assert_eq!(cleared.cleared.len(), 2, "{cleared:?}");
}

/// A settings file naming file channel `dropbox` on `sshd`, for the binary.
fn config_file(dir: &tempfile::TempDir, sshd: &Sshd) -> std::path::PathBuf {
    let path = dir.path().join("wharf.toml");
    std::fs::write(
        &path,
        format!(
            "[[channels]]\nname = \"dropbox\"\nkind = \"sftp\"\nhost = \"127.0.0.1\"\n\
             port = {}\nuser = \"{}\"\nkey_file = \"{}\"\nhost_key_fingerprint = \"{}\"\n\
             export_dir = \"{}\"\nimport_dir = \"{}\"\n",
            sshd.port,
            sshd.user,
            sshd.key_file.display(),
            sshd.fingerprint,
            sshd.path("out"),
            sshd.path("in"),
        ),
    )
    .unwrap();
    path
}

/// Runs `wharf --config FILE args…` on the app's database: success, stdout, stderr.
async fn wharf(app: &TestApp, config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env("DATABASE_URL", &app.db.url)
        .env("RUST_LOG", "warn")
        .env("WHARF_DB_POOL_SIZE", "2");
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run wharf"))
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn wharf_ok(app: &TestApp, config: &std::path::Path, args: &[&str]) -> String {
    let (ok, out, err) = wharf(app, config, args).await;
    assert!(ok, "wharf {args:?} failed:\n{out}{err}");
    out
}

/// The rows of a `wharf files` table (header dropped, up to the first line that is not a row),
/// each as its cells.
fn table(out: &str) -> Vec<Vec<String>> {
    let mut lines = out.lines();
    assert!(lines.next().unwrap_or("").starts_with("ID "), "{out}");
    lines
        .take_while(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(|l| {
            l.split("  ")
                .filter(|c| !c.is_empty())
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

async fn wharf_files_lists_shows_the_failed_and_marks_them_seen(backend: Backend) {
    let sshd = Sshd::start();
    let server = SmtpServer::start();
    let app = app_on(backend, &server, vec![sshd.channel("dropbox")], |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(&dir, &sshd);
    let document = "<orders><order><id>100042</id></order></orders>";
    let out = insert_file(
        &app,
        NewFile::order_file("orders_dropbox_20261204T101500Z_1.xml", 1, document),
    )
    .await;
    let applied = insert_file(
        &app,
        NewFile {
            request_id: Some(17),
            order: Some("100042".into()),
            ..NewFile::shipment_file("ship_100042.xml", "applied")
        },
    )
    .await;
    let failed = insert_file(
        &app,
        NewFile::failed(
            "big.xml",
            "the file is larger than max_file_bytes (1048576 bytes)",
            "",
        ),
    )
    .await;
    app.with_conn(|c| {
        wharf::channels::sftp::store::set_trouble(
            c,
            "dropbox",
            wharf::channels::sftp::client::Trouble::ExportFolder,
            "the folder \"/srv/out\" does not exist on the server",
            wharf::db::now(),
        )
        .unwrap()
    })
    .await;

    let listed = wharf_ok(&app, &config, &["files"]).await;
    let rows = table(&listed);
    assert_eq!(rows.len(), 3, "{listed}");
    assert_eq!(rows[0][0], failed.to_string());
    assert_eq!(rows[0][1..4], ["dropbox", "in", "big.xml"]);
    assert_eq!(rows[0][6], "failed (not seen)");
    assert_eq!(
        rows[0].last().unwrap(),
        "the file is larger than max_file_bytes (1048576 bytes)"
    );
    assert_eq!(rows[1][0], applied.to_string());
    assert_eq!(rows[1][5..7], ["order 100042, request 17", "applied"]);
    assert_eq!(rows[2][0], out.to_string());
    assert_eq!(
        rows[2][1..7],
        [
            "dropbox",
            "out",
            "orders_dropbox_20261204T101500Z_1.xml",
            &document.len().to_string(),
            "1 order(s)",
            "sent"
        ]
    );
    has(&listed, "trouble: channel dropbox export_folder since ");
    has(
        &listed,
        "the folder \"/srv/out\" does not exist on the server",
    );
    let only_in = wharf_ok(
        &app,
        &config,
        &["files", "list", "--direction", "in", "--state", "applied"],
    )
    .await;
    assert_eq!(table(&only_in).len(), 1, "{only_in}");
    let (ok, _, err) = wharf(&app, &config, &["files", "list", "--channel", "amazon"]).await;
    assert!(!ok);
    has(
        &err,
        "\"amazon\" is not a configured file channel; the file channels are dropbox",
    );

    let shown = wharf_ok(&app, &config, &["files", "show", &out.to_string()]).await;
    has(
        &shown,
        &format!(
            "file exchange #{out}: order file orders_dropbox_20261204T101500Z_1.xml of channel dropbox"
        ),
    );
    has(
        &shown,
        "body:\n<orders>\n  <order>\n    <id>100042</id>\n  </order>\n</orders>",
    );

    let unseen = wharf_ok(&app, &config, &["files", "failed"]).await;
    let rows = table(&unseen);
    assert_eq!(rows.len(), 1, "{unseen}");
    assert_eq!(rows[0][0], failed.to_string());
    has(&unseen, "wharf files seen ID");
    let marked = wharf_ok(
        &app,
        &config,
        &["files", "seen", &failed.to_string(), "--by", "alice"],
    )
    .await;
    has(
        &marked,
        &format!("marked seen: #{failed} big.xml of channel dropbox"),
    );
    let none = wharf_ok(&app, &config, &["files", "failed"]).await;
    assert_eq!(none.trim(), "no failed shipment files wait to be seen");
    let all = wharf_ok(&app, &config, &["files", "failed", "--all"]).await;
    assert_eq!(table(&all)[0][6], "failed (seen)");
    let (ok, _, err) = wharf(&app, &config, &["files", "seen", &failed.to_string()]).await;
    assert!(!ok);
    has(&err, "was marked seen already; nothing changed");
    let (ok, _, err) = wharf(&app, &config, &["files", "seen", &applied.to_string()]).await;
    assert!(!ok);
    has(&err, "is applied, not a failed shipment file");
    let audit: Vec<(String, String, String, String)> = app
        .with_conn(|c| {
            audit_log::table
                .select((
                    audit_log::actor,
                    audit_log::via,
                    audit_log::action,
                    audit_log::subjects,
                ))
                .load(c)
                .unwrap()
        })
        .await;
    assert_eq!(
        audit,
        [(
            "alice".to_string(),
            "cli".to_string(),
            "files.seen".to_string(),
            failed.to_string()
        )]
    );
}

async fn retention_deletes_finished_exchanges_and_keeps_what_needs_someone(backend: Backend) {
    let sshd = Sshd::start();
    let server = SmtpServer::start();
    let app = app_on(backend, &server, vec![sshd.channel("dropbox")], |_| {}).await;
    app.expect_leftovers("retention must keep unfinished files, so the test leaves some");
    let old = TimeDelta::days(31);
    // Four are over and need nobody; an unseen failure, unfinished files and a recent one stay.
    for f in [
        NewFile {
            age: old,
            ..NewFile::order_file("orders_old.xml", 3, "<orders/>")
        },
        NewFile {
            age: old,
            ..NewFile::shipment_file("applied_old.xml", "applied")
        },
        NewFile {
            age: old,
            ..NewFile::shipment_file("repeat_old.xml", "repeat")
        },
        NewFile {
            age: old,
            seen_at: Some(wharf::db::now() - TimeDelta::days(30)),
            ..NewFile::failed("seen_old.xml", "the file is empty", "")
        },
        NewFile {
            age: old,
            ..NewFile::failed("unseen_old.xml", "the file is empty", "")
        },
        NewFile {
            age: old,
            ..NewFile::shipment_file("claimed_old.xml", "claimed")
        },
        NewFile {
            age: old,
            state: "uploaded",
            ..NewFile::order_file("orders_up.xml", 1, "<orders/>")
        },
        NewFile::order_file("orders_new.xml", 1, "<orders/>"),
    ] {
        insert_file(&app, f).await;
    }
    let settings = app.settings.retention.clone();
    let s = settings.clone();
    let counted = app
        .with_conn(move |c| wharf::retention::count(c, &s, wharf::db::now()).unwrap())
        .await;
    let part = |counts: &[wharf::retention::PartCount]| {
        counts
            .iter()
            .find(|p| p.part == wharf::retention::Part::FileExchanges)
            .unwrap()
            .rows
    };
    assert_eq!(part(&counted), 4);
    let done = app
        .with_conn(move |c| {
            wharf::retention::clean(c, &settings, wharf::db::now(), &mut |_| {
                std::ops::ControlFlow::Continue(())
            })
            .unwrap()
        })
        .await;
    assert_eq!(part(&done), 4);
    let mut left: Vec<String> = app
        .with_conn(|c| fx::table.select(fx::name).load(c).unwrap())
        .await;
    left.sort();
    assert_eq!(
        left,
        [
            "claimed_old.xml",
            "orders_new.xml",
            "orders_up.xml",
            "unseen_old.xml"
        ]
    );
}
