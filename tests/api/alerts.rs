//! Incidents and alert mails over a real SMTP server (aiosmtpd on loopback): an incident opens once
//! with one mail, incidents opened together share a digest, the resolve mail threads under the open
//! one after the quiet time, a flapping condition sends no storm, the hourly limit holds mails back
//! for a later digest, a mail that cannot be sent waits and goes once the server is back, many
//! monitors (and two wharf processes on one PostgreSQL) make one mail per transition, and a lost
//! order resent by support gets its customer's confirmation.
//!
//! Most tests drive the monitor and the delivery themselves, at chosen times (the app's own timers
//! are set an hour apart so they keep out of the way).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use wharf::Settings;
use wharf::alerts::{self, Pass};
use wharf::channels::smtp::{Delivery, Mailer};
use wharf::channels::warehouse::{self as export, Exporter};
use wharf::config::SmtpTls;
use wharf::db::schema::outbound_tasks as t;

use crate::both_backends;
use crate::helpers::{Backend, TestApp};
use crate::smtp::{Mail, SmtpServer};
use crate::warehouse_api::{Behaviour, WarehouseSim};

both_backends!(
    a_lost_order_opens_one_mail_and_resolves_threaded_under_it,
    incidents_opened_together_share_one_digest,
    a_flapping_condition_sends_no_storm,
    the_hourly_limit_holds_mails_for_a_later_digest,
    a_mail_that_cannot_be_sent_goes_once_the_server_is_back,
    many_monitors_at_once_make_one_incident_and_one_mail,
    dead_requests_unseen_failures_and_an_open_breaker_are_incidents,
    a_customer_without_an_address_is_skipped,
    without_smtp_incidents_are_tracked_and_no_mail_waits,
    senders_at_once_never_take_more_than_the_hourly_slots,
);

const WMS_USER: &str = "wharf";
const WMS_PASSWORD: &str = "wms secret";
pub(crate) const CONSOLE: &str = "https://wharf.example.test/admin";

/// Alert mails to `server`; the app's own monitor and delivery wait an hour between runs, so the
/// test drives them.
pub(crate) fn mails_to(server: &SmtpServer, s: &mut Settings) {
    let a = &mut s.alerts;
    a.smtp_host = "127.0.0.1".into();
    a.smtp_port = Some(server.port);
    a.smtp_tls = SmtpTls::None;
    a.from = "wharf@example.test".into();
    a.to = vec!["ops@example.test".into(), "oncall@example.test".into()];
    a.console_url = Some(CONSOLE.into());
    a.check_interval_secs = 3600;
    a.backlog_alert_after_secs = 60;
    a.send_timeout_secs = 5;
    a.mail_backoff_base_secs = 1;
}

/// An app exporting to a warehouse simulator (its own exporter out of the way), mails to `server`.
async fn with_warehouse(
    backend: Backend,
    server: &SmtpServer,
    adjust: impl FnOnce(&mut Settings),
) -> (TestApp, WarehouseSim) {
    let sim = WarehouseSim::start(WMS_USER, WMS_PASSWORD).await;
    let endpoint = sim.endpoint();
    let app = TestApp::spawn_with(backend, move |s| {
        mails_to(server, s);
        let w = &mut s.warehouse;
        w.endpoint = endpoint;
        w.username = WMS_USER.into();
        w.password = WMS_PASSWORD.into();
        w.organisation = "ACME".into();
        w.channel = "web".into();
        w.timeout_secs = 5;
        w.orders.enabled = true;
        w.orders.schedule = "0 0 1 1 *".into();
        w.orders.max_attempts = 1;
        w.orders.backoff_base_secs = 0;
        adjust(s);
    })
    .await;
    (app, sim)
}

pub(crate) fn later(secs: i64) -> NaiveDateTime {
    wharf::db::now() + TimeDelta::seconds(secs)
}

pub(crate) async fn monitor(app: &TestApp, at: NaiveDateTime) -> Pass {
    let s = app.settings.clone();
    app.with_conn(move |c| alerts::run_once(c, &s, at).unwrap())
        .await
}

pub(crate) async fn deliver(app: &TestApp, at: NaiveDateTime) -> Delivery {
    Mailer::new(app.pool.clone(), app.settings.clone())
        .run_once(at)
        .await
        .unwrap()
}

/// Mail tasks by action and state, e.g. `("incident.open", "done")`.
async fn mail_tasks(app: &TestApp) -> Vec<(String, String)> {
    app.with_conn(|c| {
        t::table
            .filter(t::channel.eq("smtp"))
            .order(t::id)
            .select((t::action, t::state))
            .load(c)
            .unwrap()
    })
    .await
}

/// Queues an inventory message (not applied: a backlog once it is old enough).
async fn queue_request(app: &TestApp, message_seq_id: i64) {
    let session = app.login().await;
    let (status, body) = app
        .send_inventory(&session, message_seq_id, &[("SKU-1", 5, 1)])
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Makes order `id` lost: the warehouse refuses it at its only attempt.
async fn lose_order(app: &TestApp, sim: &WarehouseSim, id: &str) {
    app.put_order(id, &[("A", 1)]).await;
    sim.set_behaviour(Behaviour {
        fail: [id.to_string()].into(),
        ..Behaviour::default()
    });
    let ex = Exporter::new(app.pool.clone(), app.settings.clone()).unwrap();
    let o = ex.export_orders().await.unwrap();
    assert_eq!(o.lost, 1, "{o:?}");
    sim.set_behaviour(Behaviour::default());
}

fn has(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?} in:\n{haystack}"
    );
}

pub(crate) fn with_subject<'a>(mails: &'a [Mail], start: &str) -> &'a Mail {
    mails
        .iter()
        .find(|m| m.subject().starts_with(start))
        .unwrap_or_else(|| panic!("no mail {start:?} in {mails:#?}"))
}

async fn a_lost_order_opens_one_mail_and_resolves_threaded_under_it(backend: Backend) {
    let server = SmtpServer::start();
    let (app, sim) = with_warehouse(backend, &server, |s| {
        s.alerts.customer_confirmation = true;
    })
    .await;
    lose_order(&app, &sim, "L-1").await;

    let now = later(0);
    let pass = monitor(&app, now).await;
    assert_eq!(pass.opened.len(), 1, "{pass:?}");
    // Another pass (or another process) finds the incident open: nothing new.
    assert_eq!(monitor(&app, now).await, Pass::default());
    let d = deliver(&app, now).await;
    assert_eq!((d.sent, d.failed, d.deferred), (1, 0, 0), "{d:?}");
    let open = server.wait_for_mails(1, Duration::from_secs(10)).remove(0);
    assert_eq!(open.subject(), "[wharf] OPEN lost orders: 1 order");
    assert_eq!(
        open.header("to"),
        Some("ops@example.test, oncall@example.test")
    );
    assert_eq!(open.header("from"), Some("wharf@example.test"));
    has(&open.body, "Product A not found");
    has(&open.body, &format!("{CONSOLE}/orders/L-1"));
    has(&open.body, "fix: wharf orders resend L-1");
    let open_id = open.header("message-id").unwrap().to_string();

    // Support resends it and it goes: the condition clears, the quiet time starts.
    let resent = app
        .with_conn(|c| export::resend(c, Some(&["L-1".to_string()]), "alice").unwrap())
        .await;
    assert_eq!(resent, ["L-1"]);
    let ex = Exporter::new(app.pool.clone(), app.settings.clone()).unwrap();
    assert_eq!(ex.export_orders().await.unwrap().exported, 1);
    let quiet = app.settings.alerts.resolve_after_secs;
    let cleared = monitor(&app, now + TimeDelta::seconds(10)).await;
    assert_eq!((cleared.cleared.len(), cleared.resolved.len()), (1, 0));
    let still = monitor(&app, now + TimeDelta::seconds(quiet)).await;
    assert!(
        still.resolved.is_empty(),
        "resolved before the quiet time ended"
    );
    let resolved = monitor(&app, now + TimeDelta::seconds(quiet + 11)).await;
    assert_eq!(resolved.resolved, pass.opened);

    let d = deliver(&app, now + TimeDelta::seconds(quiet + 11)).await;
    assert_eq!(d.sent, 2, "the resolve mail and the customer's: {d:?}");
    let mails = server.wait_for_mails(3, Duration::from_secs(10));
    assert_eq!(mails.len(), 3, "{mails:#?}");
    let resolve = with_subject(&mails, "[wharf] RESOLVED lost orders after ");
    assert_eq!(resolve.header("in-reply-to"), Some(open_id.as_str()));
    assert_eq!(resolve.header("references"), Some(open_id.as_str()));
    has(resolve.subject(), "after 10 min");

    // The customer learns that the resent order reached the warehouse.
    let customer = with_subject(&mails, "Your order L-1");
    assert_eq!(customer.header("to"), Some("ada@example.com"));
    has(&customer.body, "Dear Ada Lovelace,");
    assert_eq!(deliver(&app, later(3600)).await, Delivery::default());
    sim.stop().await;
}

async fn incidents_opened_together_share_one_digest(backend: Backend) {
    let server = SmtpServer::start();
    let (app, sim) = with_warehouse(backend, &server, |_| {}).await;
    lose_order(&app, &sim, "D-1").await;
    lose_order(&app, &sim, "D-2").await;
    queue_request(&app, 1).await;

    let pass = monitor(&app, later(120)).await;
    assert_eq!(pass.opened.len(), 2, "{pass:?}");
    assert_eq!(deliver(&app, later(120)).await.sent, 1);
    let mails = server.wait_for_mails(1, Duration::from_secs(10));
    assert_eq!(mails.len(), 1);
    let digest = &mails[0];
    has(digest.subject(), "[wharf] OPEN 2 incidents: ");
    has(digest.subject(), "lost orders: 2 orders");
    has(
        digest.subject(),
        "backlog of queued requests: the oldest request waits for ",
    );
    for id in ["D-1", "D-2"] {
        has(&digest.body, &format!("{CONSOLE}/orders/{id}"));
        has(&digest.body, &format!("wharf orders resend {id}"));
    }
    has(&digest.body, "2 of 2:");
    has(&digest.body, &format!("{CONSOLE}/requests/"));
    has(&digest.body, "check that a worker runs");
    assert_eq!(
        mail_tasks(&app).await,
        [
            ("incident.open".to_string(), "done".to_string()),
            ("incident.open".to_string(), "done".to_string()),
        ]
    );
    app.drain().await;
    sim.stop().await;
}

async fn a_flapping_condition_sends_no_storm(backend: Backend) {
    let server = SmtpServer::start();
    let app = TestApp::spawn_with(backend, |s| mails_to(&server, s)).await;
    let quiet = app.settings.alerts.resolve_after_secs;
    queue_request(&app, 1).await;
    let t0 = later(120);
    let opened = monitor(&app, t0).await.opened;
    assert_eq!(opened.len(), 1);

    // Clear, back, clear, back: always within the quiet time. One incident, no mail.
    let mut at = t0;
    for seq in 2..5 {
        app.drain().await;
        at += TimeDelta::seconds(30);
        assert_eq!(monitor(&app, at).await.cleared, opened);
        queue_request(&app, seq).await;
        at += TimeDelta::seconds(30);
        let back = monitor(&app, at).await;
        assert_eq!((back.came_back, back.opened), (opened.clone(), vec![]));
    }
    app.drain().await;
    at += TimeDelta::seconds(30);
    assert_eq!(monitor(&app, at).await.cleared, opened);
    assert_eq!(
        monitor(&app, at + TimeDelta::seconds(quiet)).await.resolved,
        opened
    );
    assert_eq!(deliver(&app, at + TimeDelta::seconds(quiet)).await.sent, 2);
    let mails = server.wait_for_mails(2, Duration::from_secs(10));
    let subjects: Vec<&str> = mails.iter().map(Mail::subject).collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    has(subjects[0], "[wharf] OPEN backlog of queued requests");
    has(
        subjects[1],
        "[wharf] RESOLVED backlog of queued requests after ",
    );
}

async fn the_hourly_limit_holds_mails_for_a_later_digest(backend: Backend) {
    let server = SmtpServer::start();
    let app = TestApp::spawn_with(backend, |s| {
        mails_to(&server, s);
        s.alerts.max_mails_per_hour = 1;
        s.warehouse.orders.enabled = true;
        s.warehouse.orders.schedule = "0 0 1 1 *".into();
    })
    .await;
    let now = later(120);
    queue_request(&app, 1).await;
    assert_eq!(monitor(&app, now).await.opened.len(), 1);
    assert_eq!(deliver(&app, now).await.sent, 1);

    // A second incident within the hour: held back, still pending.
    app.put_order("H-1", &[("A", 1)]).await;
    assert_eq!(
        monitor(&app, now + TimeDelta::seconds(60))
            .await
            .opened
            .len(),
        1
    );
    let d = deliver(&app, now + TimeDelta::seconds(60)).await;
    assert_eq!((d.sent, d.deferred), (0, 1), "{d:?}");
    assert_eq!(server.mails().len(), 1);
    assert_eq!(
        mail_tasks(&app).await,
        [
            ("incident.open".to_string(), "done".to_string()),
            ("incident.open".to_string(), "pending".to_string()),
        ]
    );
    let trouble = app
        .with_conn(move |c| alerts::mail_trouble(c, now + TimeDelta::seconds(600)).unwrap())
        .await;
    assert_eq!(trouble.overdue, 1, "{trouble:?}");

    // An hour after the first mail, the held one goes.
    let d = deliver(&app, now + TimeDelta::seconds(3601)).await;
    assert_eq!(d.sent, 1, "{d:?}");
    let mails = server.wait_for_mails(2, Duration::from_secs(10));
    has(mails[1].subject(), "[wharf] OPEN backlog of due exports");
    has(&mails[1].body, "H-1");
    app.drain().await;
}

async fn a_mail_that_cannot_be_sent_goes_once_the_server_is_back(backend: Backend) {
    let mut server = SmtpServer::start();
    let app = TestApp::spawn_with(backend, |s| mails_to(&server, s)).await;
    queue_request(&app, 1).await;
    let now = later(120);
    assert_eq!(monitor(&app, now).await.opened.len(), 1);

    server.stop();
    let d = deliver(&app, now).await;
    assert_eq!((d.sent, d.failed), (0, 1), "{d:?}");
    has(
        d.last_error.as_deref().unwrap(),
        "the SMTP server 127.0.0.1:",
    );
    assert_eq!(
        mail_tasks(&app).await,
        [("incident.open".to_string(), "failed".to_string())]
    );
    let trouble = app
        .with_conn(move |c| alerts::mail_trouble(c, now).unwrap())
        .await;
    assert_eq!(trouble.failed, 1, "{trouble:?}");
    assert!(trouble.last_error.is_some());
    // The operator's dashboards see it too.
    let page = crate::metrics::scrape(&app).await;
    crate::metrics::promtool_check(&page);
    let open = [("condition", "backlog")];
    assert_eq!(
        crate::metrics::value(&page, "wharf_open_incidents", &open),
        Some(1.0)
    );
    let failed = [("state", "failed")];
    assert_eq!(
        crate::metrics::value(&page, "wharf_alert_mails_in_trouble", &failed),
        Some(1.0)
    );
    // Nothing else waits for the mail: the queue is applied, the monitor goes on.
    assert_eq!(app.drain().await, 1);
    assert_eq!(
        monitor(&app, now + TimeDelta::seconds(1))
            .await
            .cleared
            .len(),
        1
    );

    // Before its backoff ends it is not tried; after it, it goes.
    server.restart();
    assert_eq!(deliver(&app, now).await, Delivery::default());
    assert_eq!(deliver(&app, now + TimeDelta::seconds(2)).await.sent, 1);
    let mails = server.wait_for_mails(1, Duration::from_secs(10));
    has(
        mails[0].subject(),
        "[wharf] OPEN backlog of queued requests",
    );
    let trouble = app
        .with_conn(move |c| alerts::mail_trouble(c, now).unwrap())
        .await;
    assert!(!trouble.any(), "{trouble:?}");
}

async fn many_monitors_at_once_make_one_incident_and_one_mail(backend: Backend) {
    let server = SmtpServer::start();
    let app = TestApp::spawn_with(backend, |s| {
        mails_to(&server, s);
        s.alerts.resolve_after_secs = 0;
    })
    .await;
    queue_request(&app, 1).await;
    let at = later(120);
    let passes = concurrently(&app, at).await;
    let opened: Vec<i64> = passes.iter().flat_map(|p| p.opened.clone()).collect();
    assert_eq!(opened.len(), 1, "{passes:?}");
    app.drain().await;
    let passes = concurrently(&app, at + TimeDelta::seconds(1)).await;
    let resolved: Vec<i64> = passes.iter().flat_map(|p| p.resolved.clone()).collect();
    assert_eq!(resolved, opened, "{passes:?}");

    // Several mailers at once: each mail goes once.
    let mailers: Vec<_> = (0..3)
        .map(|_| {
            let m = Mailer::new(app.pool.clone(), app.settings.clone());
            tokio::spawn(async move { m.run_once(at + TimeDelta::seconds(1)).await.unwrap() })
        })
        .collect();
    let mut sent = 0;
    for m in mailers {
        sent += m.await.unwrap().sent;
    }
    // A resolve mail waits while its open mail is being sent by another mailer.
    sent += deliver(&app, at + TimeDelta::seconds(1)).await.sent;
    assert_eq!(sent, 2);
    let mails = server.wait_for_mails(2, Duration::from_secs(10));
    assert_eq!(mails.len(), 2, "{mails:#?}");
}

/// Six monitor passes at the same moment, each on its own connection.
async fn concurrently(app: &TestApp, at: NaiveDateTime) -> Vec<Pass> {
    let passes: Vec<_> = (0..6)
        .map(|_| {
            let (pool, settings) = (app.pool.clone(), app.settings.clone());
            tokio::task::spawn_blocking(move || {
                alerts::run_once(&mut pool.get().unwrap(), &settings, at).unwrap()
            })
        })
        .collect();
    let mut all = Vec::new();
    for p in passes {
        all.push(p.await.unwrap());
    }
    all
}

async fn without_smtp_incidents_are_tracked_and_no_mail_waits(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    queue_request(&app, 1).await;
    assert_eq!(monitor(&app, later(3600)).await.opened.len(), 1);
    let open = app.with_conn(|c| alerts::open_incidents(c).unwrap()).await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].key, "backlog:requests");
    assert_eq!(mail_tasks(&app).await, Vec::<(String, String)>::new());
    app.drain().await;
}

/// Two wharf processes on one PostgreSQL database, each with its own monitor and delivery on a
/// one-second timer: one open mail and one resolve mail. (The test app's own timers keep out of
/// the way; the two are stopped before the database goes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_send_one_mail_per_transition() {
    let server = SmtpServer::start();
    let app = TestApp::spawn_with(Backend::Postgres, |s| mails_to(&server, s)).await;
    let mut settings = (*app.settings).clone();
    settings.alerts.check_interval_secs = 1;
    settings.alerts.backlog_alert_after_secs = 1;
    settings.alerts.resolve_after_secs = 1;
    let mut processes = Vec::new();
    for _ in 0..2 {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let process = wharf::Application::build(settings.clone()).await.unwrap();
        let run = tokio::spawn(process.run_until(async move {
            let _ = stopped.await;
            "end of test"
        }));
        processes.push((stop, run));
    }

    queue_request(&app, 1).await;
    let mails = server.wait_for_mails(1, Duration::from_secs(30));
    has(
        mails[0].subject(),
        "[wharf] OPEN backlog of queued requests",
    );
    app.drain().await;
    let mails = server.wait_for_mails(2, Duration::from_secs(30));
    has(
        mails[1].subject(),
        "[wharf] RESOLVED backlog of queued requests",
    );
    // Both processes keep checking for a few more rounds: nothing more is sent.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert_eq!(server.mails().len(), 2, "{:#?}", server.mails());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (stop, run) in processes {
        stop.send(()).unwrap();
        run.await.unwrap().unwrap();
    }
    assert_eq!(
        mail_tasks(&app).await,
        [
            ("incident.open".to_string(), "done".to_string()),
            ("incident.resolve".to_string(), "done".to_string()),
        ]
    );
}

/// Runs the `wharf` binary on the app's database; returns its standard output.
async fn wharf_cli(app: &TestApp, args: &[&str]) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.args(args)
        .env("DATABASE_URL", &app.db.url)
        .env("RUST_LOG", "warn")
        .env("WHARF_DB_POOL_SIZE", "2");
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run wharf"))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn dead_requests_unseen_failures_and_an_open_breaker_are_incidents(backend: Backend) {
    let server = SmtpServer::start();
    let (app, sim) = with_warehouse(backend, &server, |s| {
        s.warehouse.orders.breaker_threshold = 2;
        s.warehouse.orders.breaker_pause_secs = 300;
        // Order S-1 waits for the breaker: no backlog incident in this test.
        s.alerts.backlog_alert_after_secs = 86_400;
    })
    .await;
    // A request gone dead (as the worker leaves one after its last attempt).
    queue_request(&app, 1).await;
    app.with_conn(|c| {
        use wharf::db::schema::requests as r;
        diesel::update(r::table)
            .set((r::state.eq("dead"), r::last_error.eq("stock row locked")))
            .execute(c)
            .unwrap()
    })
    .await;
    // A shipment that failed, in an import report nobody has looked at.
    app.put_order("S-1", &[("A", 1)]).await;
    let session = app.login().await;
    app.send_shipment(&session, "S-1", 2, &[("Z", 1)], "").await;
    app.drain().await;
    // Two batches the warehouse did not answer: the breaker pauses order exports.
    sim.set_behaviour(Behaviour {
        http_500: 10,
        ..Behaviour::default()
    });
    let ex = Exporter::new(app.pool.clone(), app.settings.clone()).unwrap();
    ex.export_orders().await.unwrap();
    assert!(ex.export_orders().await.unwrap().paused);
    sim.set_behaviour(Behaviour::default());

    let now = later(0);
    assert_eq!(monitor(&app, now).await.opened.len(), 3);
    let open = app.with_conn(|c| alerts::open_incidents(c).unwrap()).await;
    let keys: Vec<&str> = open.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "requests.dead:inventory.update",
            "breaker:warehouse/order",
            "imports.failed"
        ]
    );
    assert_eq!(deliver(&app, now).await.sent, 1);
    let digest = server.wait_for_mails(1, Duration::from_secs(10)).remove(0);
    has(digest.subject(), "[wharf] OPEN 3 incidents: ");
    let dead_id = open[0].items[0].id.as_str();
    let shipment_id = open[2].items[0].id.as_str();
    for needle in [
        "dead requests (inventory.update): 1 request",
        "First error: stock row locked",
        &format!("{CONSOLE}/requests/{dead_id}"),
        &format!("fix: wharf requests requeue {dead_id}"),
        "exports paused by the breaker (warehouse/order): paused until ",
        "after 2 failed batches",
        "import failures not yet seen: 1 import",
        &format!("- {shipment_id}: 1 failed line"),
        &format!("fix: wharf requests show {shipment_id}"),
    ] {
        has(&digest.body, needle);
    }

    // Support requeues the dead request (applied then) and looks at the failed shipment; the
    // breaker's pause ends.
    wharf_cli(&app, &["requests", "requeue", dead_id]).await;
    app.drain().await;
    let shown = wharf_cli(&app, &["requests", "show", shipment_id]).await;
    has(&shown, "S-1");
    let after_pause = now + TimeDelta::seconds(301);
    assert_eq!(monitor(&app, after_pause).await.cleared.len(), 3);
    let quiet = app.settings.alerts.resolve_after_secs;
    let resolved = monitor(&app, after_pause + TimeDelta::seconds(quiet)).await;
    assert_eq!(resolved.resolved.len(), 3);
    assert_eq!(
        deliver(&app, after_pause + TimeDelta::seconds(quiet))
            .await
            .sent,
        3
    );
    let mails = server.wait_for_mails(4, Duration::from_secs(10));
    let open_id = digest.header("message-id").unwrap();
    for title in [
        "dead requests (inventory.update)",
        "exports paused by the breaker (warehouse/order)",
        "import failures not yet seen",
    ] {
        let m = with_subject(&mails, &format!("[wharf] RESOLVED {title} after "));
        assert_eq!(m.header("in-reply-to"), Some(open_id));
    }
    sim.stop().await;
}

async fn a_customer_without_an_address_is_skipped(backend: Backend) {
    let server = SmtpServer::start();
    let (app, sim) = with_warehouse(backend, &server, |s| {
        s.alerts.customer_confirmation = true;
    })
    .await;
    let mut order = crate::helpers::order_json(&[("A", 1)]);
    order["billing_address"]["email"] = serde_json::Value::Null;
    order["delivery_address"]["email"] = serde_json::Value::Null;
    let (status, body) = app
        .api(reqwest::Method::PUT, "/orders/N-1", Some(order))
        .await;
    assert!(status < 300, "{status} {body}");
    sim.set_behaviour(Behaviour {
        fail: ["N-1".to_string()].into(),
        ..Behaviour::default()
    });
    let ex = Exporter::new(app.pool.clone(), app.settings.clone()).unwrap();
    assert_eq!(ex.export_orders().await.unwrap().lost, 1);
    sim.set_behaviour(Behaviour::default());
    app.with_conn(|c| export::resend(c, Some(&["N-1".to_string()]), "alice").unwrap())
        .await;
    assert_eq!(ex.export_orders().await.unwrap().exported, 1);

    let d = deliver(&app, later(0)).await;
    assert_eq!((d.sent, d.skipped), (0, 1), "{d:?}");
    assert_eq!(
        mail_tasks(&app).await,
        [("customer.confirm".to_string(), "skipped".to_string())]
    );
    assert!(server.mails().is_empty());
    sim.stop().await;
}

async fn senders_at_once_never_take_more_than_the_hourly_slots(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let now = later(0);
    // Five senders, each with its connection in hand, go at the same moment for 2 slots; a few
    // rounds, each an hour apart (a fresh budget).
    let mut taken = Vec::new();
    for round in 0..4 {
        let at = now + TimeDelta::hours(2 * round);
        let start = Arc::new(std::sync::Barrier::new(5));
        let takers: Vec<_> = (0..5)
            .map(|n| {
                let (pool, start) = (app.pool.clone(), start.clone());
                tokio::task::spawn_blocking(move || {
                    let mut conn = pool.get().unwrap();
                    start.wait();
                    alerts::store::take_slot(&mut conn, 2, &format!("mail {n}"), at).unwrap()
                })
            })
            .collect();
        taken.clear();
        for t in takers {
            taken.extend(t.await.unwrap());
        }
        assert_eq!(taken.len(), 2, "round {round}: {taken:?}");
    }
    let now = now + TimeDelta::hours(6);
    // A slot given back (its mail was not sent) is free again; an hour later all are.
    app.with_conn(move |c| alerts::store::give_back(c, taken[0]).unwrap())
        .await;
    let again = app
        .with_conn(move |c| {
            let one = alerts::store::take_slot(c, 2, "again", now).unwrap();
            let none = alerts::store::take_slot(c, 2, "over", now).unwrap();
            let later = alerts::store::take_slot(c, 2, "later", now + TimeDelta::hours(1));
            (one.is_some(), none.is_some(), later.unwrap().is_some())
        })
        .await;
    assert_eq!(again, (true, false, true));
}
