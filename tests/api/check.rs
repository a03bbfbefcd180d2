//! `wharf check` on the real binary — against a configured database, an unreachable one and one with
//! a pending migration; the real SMTP test server with right and wrong passwords and a test mail;
//! the warehouse simulator with right and wrong credentials — and `/ready` while shutting down and
//! before migrations.

use std::process::Command;
use std::time::Duration;

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, TestApp, TestDb, USER, migrate_until, test_settings};
use crate::smtp::SmtpServer;
use crate::warehouse_api::WarehouseSim;

both_backends!(
    every_check_passes_on_a_configured_database,
    an_unreachable_database_or_a_pending_migration_fails,
    ready_refuses_while_shutting_down_and_before_migrations,
);

/// What one `wharf check` printed and how it exited.
struct Checked {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Checked {
    /// The line of check `name` (`"database"` finds `ok   database: …`).
    fn line(&self, name: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| {
                l.get(5..)
                    .is_some_and(|rest| rest.starts_with(&format!("{name}: ")))
            })
            .unwrap_or_else(|| panic!("no {name:?} line in\n{}", self.stdout))
    }

    /// Asserts that check `name` came out `status` with `text` in its line.
    fn expect(&self, status: &str, name: &str, text: &str) {
        let line = self.line(name);
        assert!(
            line.starts_with(&format!("{status:<4} {name}: ")) && line.contains(text),
            "expected {status} {name}: …{text}…, got {line:?} in\n{}",
            self.stdout
        );
    }

    /// Asserts that `secret` appears nowhere in what was printed.
    fn hides(&self, secret: &str) {
        assert!(
            !self.stdout.contains(secret) && !self.stderr.contains(secret),
            "{secret:?} was printed:\n{}\n{}",
            self.stdout,
            self.stderr
        );
    }
}

/// Runs `wharf check` (with `args`) against `db_url` with `env` set, off the async executor.
async fn check(db_url: &str, env: &[(&str, &str)], args: &[&str]) -> Checked {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.arg("check")
        .args(args)
        // The test's own directory holds no wharf.toml; this one keeps it from finding one.
        .current_dir(std::env::temp_dir())
        .env("DATABASE_URL", db_url)
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run wharf check"))
        .await
        .unwrap();
    Checked {
        success: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// `url` with a password in it (the local PostgreSQL trusts loopback, so it is never asked for):
/// what the output must not show.
fn with_password(url: &str, password: &str) -> String {
    url.replacen("postgres@", &format!("postgres:{password}@"), 1)
}

async fn every_check_passes_on_a_configured_database(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let url = with_password(&app.db.url, "db-secret-9d1f");
    let out = check(&url, &[], &[]).await;
    assert!(out.success, "{}\n{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains("FAIL"), "{}", out.stdout);
    out.expect("ok", "configuration", "parses and validates");
    out.expect("ok", "database", "reachable at");
    out.expect("ok", "migrations", "all applied");
    out.expect("ok", "clock", "");
    out.expect("ok", "queue", "0 queued, 0 processing, 0 processed, 0 dead");
    out.expect("ok", "warehouse users", &format!("1: {USER}"));
    out.expect(
        "warn",
        "console operators",
        "0 operators (-), 0 viewers: nobody can",
    );
    out.expect("off", "warehouse", "exports are off");
    out.expect("off", "smtp", "alert mails are off: set alerts.smtp_host");
    out.expect("ok", "incidents", "none open");
    out.expect("ok", "alert mails", "none (alert mails are off)");
    out.hides("db-secret-9d1f");
    out.hides(PASSWORD);
    if backend == Backend::Postgres {
        out.expect("ok", "database", "postgres://postgres:***@127.0.0.1");
    }

    // A request queued for two hours is a backlog, and once dead a warning naming the command to
    // look with; the exit stays 0. (Written directly: a worker would apply it at once.)
    let set_state = |state: &'static str| {
        app.with_conn(move |conn| {
            use diesel::prelude::*;
            use wharf::db::schema::requests;
            let received = wharf::db::now() - chrono::TimeDelta::hours(2);
            diesel::delete(requests::table).execute(conn).unwrap();
            diesel::insert_into(requests::table)
                .values((
                    requests::operation.eq("inventory.update"),
                    requests::message_seq_id.eq(1_i64),
                    requests::caller.eq(USER),
                    requests::body_hash.eq("0"),
                    requests::line_count.eq(0),
                    requests::state.eq(state),
                    requests::attempts.eq(5),
                    requests::next_attempt_at.eq(received),
                    requests::received_at.eq(received),
                    requests::receipts.eq(1),
                    requests::conflict.eq(false),
                ))
                .execute(conn)
                .unwrap();
        })
    };
    set_state("queued").await;
    let backlog = [("WHARF_ALERTS__BACKLOG_ALERT_AFTER_SECS", "600")];
    let out = check(&app.db.url, &backlog, &[]).await;
    assert!(out.success, "{}\n{}", out.stdout, out.stderr);
    out.expect(
        "warn",
        "queue",
        "1 queued, 0 processing, 0 processed, 0 dead; oldest queued 2 h ago; backlog",
    );
    out.expect("warn", "queue", "alerts.backlog_alert_after_secs = 600");
    set_state("dead").await;
    let out = check(&app.db.url, &backlog, &[]).await;
    assert!(out.success, "{}\n{}", out.stdout, out.stderr);
    out.expect(
        "warn",
        "queue",
        "1 dead: see `wharf requests list --state dead`",
    );
    // Once the alert monitor has seen it, it is an open incident.
    let settings = app.settings.clone();
    app.with_conn(move |conn| wharf::alerts::run_once(conn, &settings, wharf::db::now()).unwrap())
        .await;
    let out = check(&app.db.url, &[], &[]).await;
    assert!(
        out.success,
        "{}
{}",
        out.stdout, out.stderr
    );
    out.expect(
        "warn",
        "incidents",
        "1 open: dead requests (inventory.update): 1 request",
    );

    // The background jobs' runs, as serve and worker record them.
    app.with_conn(|conn| {
        use wharf::runs::{self, Job};
        let now = wharf::db::now();
        runs::ok(conn, Job::Worker, now).unwrap();
        runs::failed(conn, Job::ExportOrders, "cannot reach the warehouse", now).unwrap();
    })
    .await;
    let out = check(&app.db.url, &[], &[]).await;
    assert!(out.success, "{}\n{}", out.stdout, out.stderr);
    out.expect("ok", "job worker", "last ran well");
    out.expect("warn", "job export.orders", "cannot reach the warehouse");
}

async fn an_unreachable_database_or_a_pending_migration_fails(backend: Backend) {
    let unreachable = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            format!("sqlite://{}", dir.path().join("missing.db").display())
        }
        // Nothing listens on port 1.
        Backend::Postgres => "postgres://postgres:db-secret-77a0@127.0.0.1:1/wharf".to_string(),
    };
    let out = check(&unreachable, &[], &[]).await;
    assert!(!out.success, "{}", out.stdout);
    out.expect("FAIL", "database", "cannot be opened");
    out.hides("db-secret-77a0");
    assert!(out.stderr.contains("check(s) failed"), "{}", out.stderr);
    // A check does not create the database it was pointed at.
    if let Some(path) = unreachable.strip_prefix("sqlite://") {
        assert!(!std::path::Path::new(path).exists());
    }

    let db = TestDb::new(backend);
    let url = db.url.clone();
    tokio::task::spawn_blocking(move || {
        let pool = wharf::db::connect(&url, 1).unwrap();
        migrate_until(&mut pool.get().unwrap(), "20261203000011");
    })
    .await
    .unwrap();
    let out = check(&db.url, &[], &[]).await;
    assert!(!out.success, "{}", out.stdout);
    out.expect("FAIL", "migrations", "background_runs");
    out.expect("FAIL", "migrations", "run `wharf migrate`");
    // The check only looked: the migration is still pending.
    let out = check(&db.url, &[], &[]).await;
    out.expect("FAIL", "migrations", "background_runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_is_checked_with_its_login_and_a_test_mail_is_delivered() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let server = SmtpServer::start_with_auth("wharf-mailer", "mail-secret-31c4");
    let port = server.port.to_string();
    let mut env = vec![
        ("WHARF_ALERTS__SMTP_HOST", "127.0.0.1"),
        ("WHARF_ALERTS__SMTP_PORT", port.as_str()),
        ("WHARF_ALERTS__SMTP_TLS", "none"),
        ("WHARF_ALERTS__SMTP_USERNAME", "wharf-mailer"),
        ("WHARF_ALERTS__SMTP_PASSWORD", "mail-secret-31c4"),
        ("WHARF_ALERTS__FROM", "wharf@example.test"),
        ("WHARF_ALERTS__TO", "[\"ops@example.test\"]"),
    ];
    let out = check(&app.db.url, &env, &[]).await;
    assert!(out.success, "{}\n{}", out.stdout, out.stderr);
    out.expect("ok", "smtp", "logged in as \"wharf-mailer\"");
    out.expect("ok", "secrets", "alerts.smtp_password");
    out.expect("ok", "alert recipients", "ops@example.test");
    out.hides("mail-secret-31c4");
    assert!(server.mails().is_empty(), "a plain check sends no mail");

    let out = check(
        &app.db.url,
        &env,
        &["--send-test-mail", "someone@example.test"],
    )
    .await;
    assert!(out.success, "{}\n{}", out.stdout, out.stderr);
    out.expect("ok", "test mail", "accepted a mail to someone@example.test");
    let mails = tokio::task::spawn_blocking(move || {
        let mails = server.wait_for_mails(1, Duration::from_secs(10));
        (server, mails)
    })
    .await
    .unwrap();
    let (server, mails) = mails;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].subject(), "[wharf] test mail from wharf check");
    assert!(
        mails[0]
            .header("to")
            .unwrap()
            .contains("someone@example.test"),
        "{:?}",
        mails[0]
    );
    assert!(
        mails[0].body.contains("alert mails reach you"),
        "{}",
        mails[0].body
    );

    env[4] = ("WHARF_ALERTS__SMTP_PASSWORD", "wrong-secret-5b2e");
    let out = check(
        &app.db.url,
        &env,
        &["--send-test-mail", "someone@example.test"],
    )
    .await;
    assert!(!out.success, "{}", out.stdout);
    out.expect("FAIL", "smtp", "check alerts.smtp_host");
    out.expect("FAIL", "test mail", "not sent to someone@example.test");
    out.hides("wrong-secret-5b2e");

    // A user without a password: missing secret, named with its environment variable.
    env.remove(4);
    let out = check(&app.db.url, &env, &[]).await;
    assert!(!out.success, "{}", out.stdout);
    out.expect(
        "FAIL",
        "secrets",
        "alerts.smtp_password (WHARF_ALERTS__SMTP_PASSWORD)",
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warehouse_endpoint_is_checked_with_the_export_credentials() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let sim = WarehouseSim::start("wharf-export", "wh-secret-0e7a").await;
    let endpoint = sim.endpoint();
    let mut env = vec![
        ("WHARF_WAREHOUSE__ORDERS__ENABLED", "true"),
        ("WHARF_WAREHOUSE__ENDPOINT", endpoint.as_str()),
        ("WHARF_WAREHOUSE__USERNAME", "wharf-export"),
        ("WHARF_WAREHOUSE__PASSWORD", "wh-secret-0e7a"),
        ("WHARF_WAREHOUSE__ORGANISATION", "acme"),
        ("WHARF_WAREHOUSE__CHANNEL", "web"),
        ("WHARF_WAREHOUSE__TIMEOUT_SECS", "5"),
    ];
    let out = check(&app.db.url, &env, &[]).await;
    assert!(out.success, "{}\n{}", out.stdout, out.stderr);
    out.expect(
        "ok",
        "warehouse",
        "accepts the credentials of \"wharf-export\" (GET remotewarehouse/inventory.xml: HTTP 200",
    );
    out.expect("ok", "secrets", "present: warehouse.password");
    out.hides("wh-secret-0e7a");
    let probes = sim.requests();
    assert_eq!(probes.len(), 1);
    assert_eq!(probes[0].method, "GET");
    assert_eq!(probes[0].path, "/remotewarehouse/inventory.xml");
    assert!(probes[0].authorized);
    let query: Vec<(&str, &str)> = probes[0]
        .query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(query, [("channel", "web"), ("organisation", "acme")]);
    assert!(sim.orders().is_empty() && sim.products().is_empty());

    env[3] = ("WHARF_WAREHOUSE__PASSWORD", "wrong-secret-c0de");
    let out = check(&app.db.url, &env, &[]).await;
    assert!(!out.success, "{}", out.stdout);
    out.expect(
        "FAIL",
        "warehouse",
        "refused the credentials of \"wharf-export\" (GET remotewarehouse/inventory.xml: HTTP 401); \
         check warehouse.username and warehouse.password",
    );
    out.hides("wrong-secret-c0de");

    sim.stop().await;
    let out = check(&app.db.url, &env, &[]).await;
    assert!(!out.success, "{}", out.stdout);
    out.expect("FAIL", "warehouse", "cannot reach");
}

async fn ready_refuses_while_shutting_down_and_before_migrations(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ready = |client: reqwest::Client, base: String| async move {
        let resp = client.get(format!("{base}/ready")).send().await?;
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await?;
        Ok::<_, reqwest::Error>((status, body))
    };
    let (status, body) = ready(app.client.clone(), app.base.clone()).await.unwrap();
    assert_eq!(
        (status, &body["status"]),
        (200, &serde_json::json!("ready"))
    );

    // The last migration reverted, as after starting an old build's database with a new binary
    // that has not migrated it yet.
    let pool = app.pool.clone();
    let reverted = tokio::task::spawn_blocking(move || revert_last(&mut pool.get().unwrap()))
        .await
        .unwrap();
    let (status, body) = ready(app.client.clone(), app.base.clone()).await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["reason"], "database migrations not applied", "{body}");
    let pool = app.pool.clone();
    tokio::task::spawn_blocking(move || migrate_until(&mut pool.get().unwrap(), &reverted))
        .await
        .unwrap();
    let (status, _) = ready(app.client.clone(), app.base.clone()).await.unwrap();
    assert_eq!(status, 200);

    // A server of its own, stopped while a probe waits on the database (the probe's row locked by
    // another connection): the probe in flight answers 503 once stopping has begun. (New
    // connections are refused from then on: the listener closes at once.)
    let server = wharf::Application::build(test_settings(&app.db.url))
        .await
        .unwrap();
    let base = format!("http://{}", server.addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run_until(async move {
        let _ = stopped.await;
        "test"
    }));
    let (status, _) = ready(app.client.clone(), base.clone()).await.unwrap();
    assert_eq!(status, 200);
    let (locked_tx, locked) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let url = app.db.url.clone();
    let locker = std::thread::spawn(move || {
        use diesel::connection::SimpleConnection;
        let pool = wharf::db::connect(&url, 1).unwrap();
        let mut conn = pool.get().unwrap();
        match backend {
            Backend::Sqlite => conn.batch_execute("BEGIN IMMEDIATE").unwrap(),
            Backend::Postgres => conn
                .batch_execute("BEGIN; SELECT checked_at FROM ready_probe WHERE id = 1 FOR UPDATE")
                .unwrap(),
        }
        locked_tx.send(()).unwrap();
        let _ = released.recv_timeout(Duration::from_secs(10));
        conn.batch_execute("ROLLBACK").unwrap();
    });
    locked.recv().unwrap();
    let probe = tokio::spawn(ready(app.client.clone(), base.clone()));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!probe.is_finished(), "the probe did not wait for the lock");
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    release.send(()).unwrap();
    let (status, body) = probe.await.unwrap().unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["reason"], "shutting down", "{body}");
    locker.join().unwrap();
    tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

/// Reverts the last applied migration of `conn`'s backend; returns its version, to reapply it with
/// [`migrate_until`].
fn revert_last(conn: &mut wharf::db::DbConnection) -> String {
    use diesel_migrations::{FileBasedMigrations, MigrationHarness};
    fn run<C: MigrationHarness<B>, B: diesel::backend::Backend>(c: &mut C, dir: &str) -> String {
        let source = FileBasedMigrations::from_path(format!(
            "{}/migrations/{dir}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        c.revert_last_migration(source)
            .unwrap()
            .to_string()
            .replace('-', "")
    }
    match conn {
        wharf::db::DbConnection::Sqlite(c) => run(c, "sqlite"),
        wharf::db::DbConnection::Postgresql(c) => run(c, "postgres"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_that_do_not_parse_or_validate_fail_the_check() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let out = check(&app.db.url, &[("WHARF_DB_POOL_SIZE", "lots")], &[]).await;
    assert!(!out.success, "{}", out.stdout);
    out.expect("FAIL", "configuration", "db_pool_size");
    out.expect("FAIL", "configuration", "run wharf check again");

    // Parses, but an export without its endpoint and password would not start.
    let out = check(
        &app.db.url,
        &[("WHARF_WAREHOUSE__PRODUCTS__ENABLED", "true")],
        &[],
    )
    .await;
    assert!(!out.success, "{}", out.stdout);
    out.expect(
        "FAIL",
        "configuration",
        "warehouse.endpoint (WHARF_WAREHOUSE__ENDPOINT)",
    );
    out.expect(
        "FAIL",
        "secrets",
        "missing: warehouse.password (WHARF_WAREHOUSE__PASSWORD)",
    );
    // The database checks still ran.
    out.expect("ok", "database", "reachable");
}
