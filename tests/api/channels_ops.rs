//! Operating the order channels (issue 15): `wharf channels` (status, tasks, resend, dismiss) run
//! as the real binary on the app's database, the incidents of a channel mailed to the real SMTP
//! server and resolved once they clear, and the channel gauges of `/metrics`.
//!
//! The pushes are made through the real flow (an order of a channel's source and a shipment: a
//! `ship` task, due after the channel's ship delay). The channels' ship delay is an hour, so their
//! runners never send during a test; where a push must be lost, dead, awaiting its ticket or have
//! a failed ticket, a direct SQL update puts it there (what a sender would have written after the
//! channel's answer), each one saying so. The channels' APIs are a closed port: a push resent by
//! support is not answered and stays pending.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use wharf::Settings;
use wharf::alerts::{self, Pass};
use wharf::channels::sync::Pusher;
use wharf::config::{ChannelAction, ChannelKind, ChannelSettings};
use wharf::db::schema::outbound_tasks as t;

use crate::alerts::{CONSOLE, deliver, later, mails_to, monitor, with_subject};
use crate::both_backends;
use crate::helpers::{Backend, TestApp};
use crate::smtp::SmtpServer;

both_backends!(
    the_cli_lists_pushes_and_resends_or_dismisses_the_lost_and_dead,
    a_channels_incidents_are_mailed_and_resolve_once_cleared,
    the_gauges_count_each_channels_pushes_by_state,
);

/// Where the channels' APIs are: a port nothing listens on.
const NOWHERE: &str = "http://127.0.0.1:1";

/// The channels of these tests: a Shopping Feed–style marketplace and an affiliate system, each
/// waiting an hour before a `ship` (see the module's note).
pub(crate) fn channels() -> Vec<ChannelSettings> {
    let common = ChannelSettings {
        base_url: NOWHERE.into(),
        ship_delay_secs: 3600,
        timeout_secs: 1,
        ..ChannelSettings::default()
    };
    vec![
        ChannelSettings {
            name: "amazon".into(),
            kind: ChannelKind::Shoppingfeed,
            sources: vec!["marketplace:amazon".into()],
            token: "sf-token".into(),
            store_id: "1234".into(),
            breaker_threshold: 1,
            ..common.clone()
        },
        ChannelSettings {
            name: "partners".into(),
            kind: ChannelKind::Http,
            sources: vec!["affiliate".into()],
            secret: "whsec_cGFydG5lcnMtc2lnbmluZy1rZXktMDEyMzQ1Njc4OQ==".into(),
            actions: Some(vec![
                ChannelAction::Ship,
                ChannelAction::Cancel,
                ChannelAction::Edit,
            ]),
            ..common
        },
    ]
}

/// The same channels as a settings file for the `wharf` binary.
fn channels_toml() -> String {
    let mut out = String::new();
    for c in channels() {
        out.push_str(&format!(
            "[[channels]]\nname = {:?}\nkind = {:?}\nsources = {:?}\nbase_url = {:?}\n\
             token = {:?}\nsecret = {:?}\nstore_id = {:?}\nship_delay_secs = {}\n",
            c.name,
            c.kind_word(),
            c.sources,
            c.base_url,
            c.token,
            c.secret,
            c.store_id,
            c.ship_delay_secs
        ));
        if let Some(actions) = &c.actions {
            let words: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
            out.push_str(&format!("actions = {words:?}\n"));
        }
        out.push('\n');
    }
    out
}

/// An app with [`channels`], adjusted by `adjust`.
pub(crate) async fn app_with_channels(
    backend: Backend,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    TestApp::spawn_with(backend, |s| {
        s.channels = channels();
        adjust(s);
    })
    .await
}

/// Stores order `id` of `source` (one line of SKU A) and ships it with message `seq`: a pending
/// `ship` push when a channel claims the source. Returns the push's task id, if there is one.
pub(crate) async fn shipped_order(
    app: &TestApp,
    session: &str,
    id: &str,
    source: &str,
    seq: i64,
) -> Option<i64> {
    store_order(app, id, source).await;
    ship(app, session, id, seq).await
}

/// Ships stored order `id` (its SKU A) with message `seq`. Returns its `ship` push's task id, if
/// a channel hears of it.
pub(crate) async fn ship(app: &TestApp, session: &str, id: &str, seq: i64) -> Option<i64> {
    app.send_shipment(session, id, seq, &[("A", 1)], &format!("TRK-{id}"))
        .await;
    app.drain().await;
    task_id(app, id, "ship").await
}

/// Stores order `id` of `source` with one line of SKU A.
pub(crate) async fn store_order(app: &TestApp, id: &str, source: &str) {
    let mut order = crate::helpers::order_json(&[("A", 1)]);
    order["source"] = source.into();
    let (status, body) = app
        .api(reqwest::Method::PUT, &format!("/orders/{id}"), Some(order))
        .await;
    assert_eq!(status, 201, "{body}");
}

/// The id of the latest `action` push of order `order`.
pub(crate) async fn task_id(app: &TestApp, order: &str, action: &str) -> Option<i64> {
    let (order, action) = (order.to_string(), action.to_string());
    app.with_conn(move |c| {
        t::table
            .filter(t::subject.eq(order))
            .filter(t::action.eq(action))
            .filter(t::channel.ne_all(["warehouse", "smtp"]))
            .order(t::id.desc())
            .select(t::id)
            .first(c)
            .optional()
            .unwrap()
    })
    .await
}

/// Where a sender would have left a push after the channel's answer (see the module's note).
pub(crate) enum Answered {
    /// Refused for good.
    Dead(&'static str),
    /// Refused `attempts` times.
    Lost(i32, &'static str),
    /// Taken on, its ticket (batch, ticket) read again in an hour.
    Awaiting(&'static str, &'static str),
    /// Its ticket (batch) failed; sent again in an hour.
    TicketFailed(&'static str, &'static str),
    /// Its ticket succeeded.
    Done(&'static str, &'static str),
}

/// Puts push `id` where `answered` says, by a direct SQL update: the senders that would write it
/// are not on this branch.
pub(crate) async fn answered(app: &TestApp, id: i64, answered: Answered) {
    app.with_conn(move |c| {
        let now = wharf::db::now();
        let later = now + TimeDelta::hours(1);
        let row = t::table.find(id);
        let n = match answered {
            Answered::Dead(e) => diesel::update(row)
                .set((
                    t::state.eq("dead"),
                    t::attempts.eq(1),
                    t::last_error.eq(e),
                    t::run_after.eq(None::<NaiveDateTime>),
                ))
                .execute(c),
            Answered::Lost(n, e) => diesel::update(row)
                .set((
                    t::state.eq("lost"),
                    t::attempts.eq(n),
                    t::last_error.eq(e),
                    t::run_after.eq(None::<NaiveDateTime>),
                ))
                .execute(c),
            Answered::Awaiting(b, k) => diesel::update(row)
                .set((
                    t::state.eq("awaiting"),
                    t::batch_id.eq(b),
                    t::ticket_id.eq(k),
                    t::sequence.eq(1_i64),
                    t::sent_at.eq(now),
                    t::run_after.eq(later),
                ))
                .execute(c),
            Answered::TicketFailed(b, e) => diesel::update(row)
                .set((
                    t::state.eq("failed"),
                    t::attempts.eq(1),
                    t::batch_id.eq(b),
                    t::sent_at.eq(now),
                    t::last_error.eq(e),
                    t::run_after.eq(later),
                ))
                .execute(c),
            Answered::Done(b, k) => diesel::update(row)
                .set((
                    t::state.eq("done"),
                    t::batch_id.eq(b),
                    t::ticket_id.eq(k),
                    t::sequence.eq(1_i64),
                    t::sent_at.eq(now),
                    t::done_at.eq(now),
                    t::run_after.eq(None::<NaiveDateTime>),
                ))
                .execute(c),
        };
        assert_eq!(n.unwrap(), 1, "push #{id}");
    })
    .await;
}

/// The order's pushes as `GET /api/v1/orders/{id}` shows them.
pub(crate) async fn pushes(app: &TestApp, id: &str) -> Vec<serde_json::Value> {
    let (status, body) = app
        .api(reqwest::Method::GET, &format!("/orders/{id}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["pushes"].as_array().unwrap().clone()
}

/// A settings file with the channels, for the binary.
fn config_file(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("wharf.toml");
    std::fs::write(&path, channels_toml()).unwrap();
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

/// [`wharf`] that must succeed; its stdout.
async fn wharf_ok(app: &TestApp, config: &std::path::Path, args: &[&str]) -> String {
    let (ok, out, err) = wharf(app, config, args).await;
    assert!(ok, "wharf {args:?} failed:\n{out}{err}");
    out
}

/// [`wharf`] that must fail; its stderr.
async fn wharf_refused(app: &TestApp, config: &std::path::Path, args: &[&str]) -> String {
    let (ok, out, err) = wharf(app, config, args).await;
    assert!(!ok, "wharf {args:?} should have failed:\n{out}");
    err
}

fn has(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?} in:\n{haystack}"
    );
}

/// The table rows of `wharf channels tasks` (header dropped), each as its cells.
fn table(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .skip(1)
        .map(|l| {
            l.split("  ")
                .filter(|c| !c.is_empty())
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

async fn the_cli_lists_pushes_and_resends_or_dismisses_the_lost_and_dead(backend: Backend) {
    let app = app_with_channels(backend, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(&dir);
    let session = app.login().await;
    let dead = shipped_order(&app, &session, "A-1", "marketplace:amazon", 1)
        .await
        .unwrap();
    let waiting = shipped_order(&app, &session, "A-2", "marketplace:amazon", 2)
        .await
        .unwrap();
    let lost = shipped_order(&app, &session, "P-1", "affiliate", 3)
        .await
        .unwrap();
    // A web order: no channel claims it, nothing is pushed.
    assert_eq!(shipped_order(&app, &session, "W-1", "web", 4).await, None);
    assert_eq!(pushes(&app, "W-1").await, Vec::<serde_json::Value>::new());
    let first = pushes(&app, "A-1").await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(
        (first[0]["action"].as_str(), first[0]["state"].as_str()),
        (Some("ship"), Some("pending"))
    );
    assert!(first[0]["next_attempt_at"].is_string(), "{first:?}");

    answered(
        &app,
        dead,
        Answered::Dead("HTTP 404: order A-1 is unknown to the marketplace"),
    )
    .await;
    answered(&app, waiting, Answered::Awaiting("B-77", "T-5")).await;
    answered(
        &app,
        lost,
        Answered::Lost(5, "HTTP 422: consignment number missing"),
    )
    .await;

    // `wharf channels`: each channel, what it is and how its pushes stand.
    let status = wharf_ok(&app, &config, &["channels"]).await;
    let (amazon, partners) = status.split_once("\n\n").unwrap();
    has(amazon, "channel amazon (shoppingfeed)");
    has(amazon, "sources:  marketplace:amazon");
    has(amazon, "actions:  ship, cancel, refund");
    has(
        amazon,
        "pending 0, failed 0, lost 0, done 0, dismissed 0, skipped 0, awaiting 1, dead 1",
    );
    has(amazon, "breaker:  closed");
    has(
        amazon,
        "waiting for support: 1 (0 lost, 1 dead): see `wharf channels tasks --channel amazon --state dead`",
    );
    has(partners, "channel partners (http)");
    has(partners, "actions:  ship, cancel, edit");
    has(partners, "lost 1");
    assert_eq!(
        wharf_ok(&app, &config, &["channels", "status"]).await,
        status
    );

    // `wharf channels tasks`: newest first, with the ticket and the error; filters.
    let all = table(&wharf_ok(&app, &config, &["channels", "tasks"]).await);
    let ids: Vec<String> = all.iter().map(|r| r[0].clone()).collect();
    assert_eq!(ids, [lost, waiting, dead].map(|i| i.to_string()));
    assert_eq!(&all[1][1..5], ["amazon", "ship", "A-2", "awaiting"]);
    assert!(
        all[1].contains(&"B-77".to_string()) && all[1].contains(&"T-5".to_string()),
        "{all:?}"
    );
    let dead_rows =
        table(&wharf_ok(&app, &config, &["channels", "tasks", "--state", "dead"]).await);
    assert_eq!(dead_rows.len(), 1);
    assert_eq!(dead_rows[0][3], "A-1");
    assert_eq!(
        dead_rows[0].last().unwrap(),
        "HTTP 404: order A-1 is unknown to the marketplace"
    );
    let of_p1 = table(&wharf_ok(&app, &config, &["channels", "tasks", "--order", "P-1"]).await);
    assert_eq!((of_p1.len(), of_p1[0][1].as_str()), (1, "partners"));
    let amazon_only = wharf_ok(
        &app,
        &config,
        &[
            "channels",
            "tasks",
            "--channel",
            "amazon",
            "--action",
            "ship",
        ],
    )
    .await;
    assert_eq!(table(&amazon_only).len(), 2);
    has(
        &wharf_ok(&app, &config, &["channels", "tasks", "--action", "cancel"]).await,
        "no channel pushes match",
    );
    let err = wharf_refused(&app, &config, &["channels", "tasks", "--state", "stuck"]).await;
    has(
        &err,
        "\"stuck\" is not a task state; use one of pending, failed, lost, done, dismissed, skipped, awaiting, dead",
    );
    let err = wharf_refused(
        &app,
        &config,
        &["channels", "tasks", "--channel", "warehouse"],
    )
    .await;
    has(
        &err,
        "\"warehouse\" is not a configured channel; the channels are amazon, partners",
    );

    // Only lost and dead pushes wait for support; a refusal changes nothing, not even the others.
    let (dead_s, waiting_s, lost_s) = (dead.to_string(), waiting.to_string(), lost.to_string());
    let err = wharf_refused(&app, &config, &["channels", "resend", &dead_s, &waiting_s]).await;
    has(
        &err,
        &format!(
            "#{waiting} amazon ship of order A-2 is awaiting: only lost or dead pushes wait for support; nothing changed"
        ),
    );
    assert_eq!(pushes(&app, "A-1").await[0]["state"], "dead");
    has(
        &wharf_refused(&app, &config, &["channels", "resend", "999999"]).await,
        "task #999999 is not a push of a configured channel",
    );
    has(
        &wharf_refused(&app, &config, &["channels", "dismiss", &lost_s]).await,
        "--reason",
    );

    // Resent: back to pending, attempts reset, recorded with who did it and why.
    let out = wharf_ok(
        &app,
        &config,
        &[
            "channels",
            "resend",
            &dead_s,
            "--reason",
            "listing fixed",
            "--by",
            "alice",
        ],
    )
    .await;
    has(
        &out,
        &format!(
            "1 push(es) back to pending, sent again shortly: #{dead} amazon ship of order A-1 (was dead)"
        ),
    );
    let resent = pushes(&app, "A-1").await;
    assert_eq!(
        (resent[0]["state"].as_str(), resent[0]["attempts"].as_i64()),
        (Some("pending"), Some(0))
    );
    assert_eq!(resent[0]["note"], "listing fixed");
    has(
        &wharf_refused(&app, &config, &["channels", "resend", &dead_s]).await,
        "is pending: only lost or dead pushes wait for support",
    );

    // Dismissed: handled by hand, never sent.
    let out = wharf_ok(
        &app,
        &config,
        &[
            "channels",
            "dismiss",
            &lost_s,
            "--reason",
            "told the affiliate by phone",
            "--by",
            "bob",
        ],
    )
    .await;
    has(
        &out,
        &format!(
            "1 push(es) dismissed (handled by hand, never sent): #{lost} partners ship of order P-1 (was lost)"
        ),
    );
    let dismissed = pushes(&app, "P-1").await;
    assert_eq!(dismissed[0]["state"], "dismissed");
    assert_eq!(dismissed[0]["note"], "told the affiliate by phone");

    // The audit log and the task's own record say who did what.
    let (audit_a, audit_p, actions) = app
        .with_conn(move |c| {
            (
                wharf::audit::naming(c, "order", "A-1", 10).unwrap(),
                wharf::audit::naming(c, "order", "P-1", 10).unwrap(),
                wharf::outbound::actions_on(c, &[dead, lost]).unwrap(),
            )
        })
        .await;
    assert_eq!(audit_a.len(), 1);
    let a = &audit_a[0];
    assert_eq!(
        (a.action.as_str(), a.actor.as_str(), a.via.as_str(), a.count),
        ("channels.resend", "alice", "cli", 1)
    );
    assert_eq!(a.note.as_deref(), Some("listing fixed"));
    assert_eq!(
        (audit_p[0].action.as_str(), audit_p[0].actor.as_str()),
        ("channels.dismiss", "bob")
    );
    let who: Vec<(i64, &str, &str)> = actions
        .iter()
        .map(|(id, a)| (*id, a.action.as_str(), a.actor.as_str()))
        .collect();
    assert_eq!(who, [(dead, "resend", "alice"), (lost, "dismiss", "bob")]);
    let status = wharf_ok(&app, &config, &["channels"]).await;
    has(
        &status,
        "pending 1, failed 0, lost 0, done 0, dismissed 0, skipped 0, awaiting 1, dead 0",
    );
    has(
        &status,
        &format!("oldest pending: #{dead} ship of order A-1"),
    );
    has(&status, "waiting for support: none");
    // The resent push went to its runner, which finds nobody at the channel's address.
    app.channels_quiet().await;
}

/// Opens the breaker of channel `name` the way its sender does: one call not answered counted
/// (`breaker_threshold` is 1) through the channel's own `Pusher`.
pub(crate) async fn breaker_opens(app: &TestApp, name: &str, at: NaiveDateTime) {
    let c = app
        .settings
        .channels
        .iter()
        .find(|c| c.name == name)
        .unwrap()
        .clone();
    let p = Pusher::new(app.pool.clone(), c).unwrap();
    app.with_conn(move |conn| {
        let b = p.breaker_failed(conn, "connection refused", at).unwrap();
        assert!(b.is_open(at), "{b:?}");
    })
    .await;
}

async fn a_channels_incidents_are_mailed_and_resolve_once_cleared(backend: Backend) {
    let server = SmtpServer::start();
    let app = app_with_channels(backend, |s| mails_to(&server, s)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(&dir);
    let session = app.login().await;
    let dead = shipped_order(&app, &session, "A-1", "marketplace:amazon", 1)
        .await
        .unwrap();
    let lost = shipped_order(&app, &session, "A-2", "marketplace:amazon", 2)
        .await
        .unwrap();
    let ticket = shipped_order(&app, &session, "A-3", "marketplace:amazon", 3)
        .await
        .unwrap();
    // Pending pushes alone are no incident.
    assert_eq!(monitor(&app, later(0)).await, Pass::default());
    answered(
        &app,
        dead,
        Answered::Dead("HTTP 400: order A-1 is closed on the marketplace"),
    )
    .await;
    answered(&app, lost, Answered::Lost(5, "HTTP 422: carrier unknown")).await;
    answered(
        &app,
        ticket,
        Answered::TicketFailed("B-9", "ticket B-9 failed: tracking number refused"),
    )
    .await;
    let now = later(0);
    breaker_opens(&app, "amazon", now).await;

    let pass = monitor(&app, now).await;
    assert_eq!(pass.opened.len(), 4, "{pass:?}");
    let open = app.with_conn(|c| alerts::open_incidents(c).unwrap()).await;
    let keys: Vec<&str> = open.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "channel:amazon:dead",
            "channel:amazon:lost",
            "channel:amazon:ticket",
            "channel:amazon:paused"
        ]
    );
    assert_eq!(
        open[0].summary,
        format!(
            "dead pushes to channel amazon: 1 push (order A-1); fix: wharf channels resend {dead}"
        )
    );
    assert_eq!(
        open[1].summary,
        format!(
            "lost pushes to channel amazon: 1 push (order A-2); fix: wharf channels resend {lost}"
        )
    );
    assert_eq!(
        open[2].summary,
        "failed tickets of channel amazon: 1 push (order A-3), sent again after a backoff; see wharf channels tasks --channel amazon --state failed"
    );
    has(
        &open[3].summary,
        "channel amazon paused by its breaker: pushes paused until ",
    );
    has(&open[3].summary, "after 1 call in a row not answered");
    // Another pass finds them open: nothing new.
    assert_eq!(monitor(&app, now).await, Pass::default());

    assert_eq!(deliver(&app, now).await.sent, 1);
    let digest = server.wait_for_mails(1, Duration::from_secs(10)).remove(0);
    has(
        digest.subject(),
        "[wharf] OPEN 4 incidents: dead pushes to channel amazon",
    );
    for needle in [
        "First error: HTTP 400: order A-1 is closed on the marketplace",
        "What to do: the channel refused these pushes for good",
        &format!("- {dead}: order A-1, ship: HTTP 400: order A-1 is closed on the marketplace"),
        &format!("{CONSOLE}/channels?task={dead}"),
        &format!("fix: wharf channels resend {dead}"),
        &format!("fix: wharf channels resend {lost}"),
        &format!("- {ticket}: order A-3, ship: ticket B-9 failed: tracking number refused"),
        "What to do: the channel's tickets for these pushes failed",
        "What to do: the channel's API does not answer",
    ] {
        has(&digest.body, needle);
    }
    // A failed ticket is sent again by itself: no resend command for it.
    assert!(
        !digest
            .body
            .contains(&format!("fix: wharf channels resend {ticket}")),
        "{}",
        digest.body
    );

    // Support resends the dead push and dismisses the lost one; the ticket's retry succeeds (as
    // its sender would record it); the breaker's pause ends.
    wharf_ok(&app, &config, &["channels", "resend", &dead.to_string()]).await;
    wharf_ok(
        &app,
        &config,
        &[
            "channels",
            "dismiss",
            &lost.to_string(),
            "--reason",
            "carrier set by hand",
        ],
    )
    .await;
    answered(&app, ticket, Answered::Done("B-10", "T-10")).await;
    let pause = app.settings.channels[0].breaker_pause_secs;
    let after_pause = now + TimeDelta::seconds(pause + 1);
    assert_eq!(monitor(&app, after_pause).await.cleared.len(), 4);
    let quiet = app.settings.alerts.resolve_after_secs;
    let resolved = monitor(&app, after_pause + TimeDelta::seconds(quiet)).await;
    assert_eq!(resolved.resolved.len(), 4, "{resolved:?}");
    assert_eq!(
        deliver(&app, after_pause + TimeDelta::seconds(quiet))
            .await
            .sent,
        4
    );
    let mails = server.wait_for_mails(5, Duration::from_secs(10));
    let open_id = digest.header("message-id").unwrap();
    for title in [
        "dead pushes to channel amazon",
        "lost pushes to channel amazon",
        "failed tickets of channel amazon",
        "channel amazon paused by its breaker",
    ] {
        let m = with_subject(&mails, &format!("[wharf] RESOLVED {title} after "));
        assert_eq!(m.header("in-reply-to"), Some(open_id));
    }
    // Nothing is left open.
    let keys = app.with_conn(|c| alerts::open_incidents(c).unwrap()).await;
    assert!(keys.is_empty(), "{keys:?}");
}

async fn the_gauges_count_each_channels_pushes_by_state(backend: Backend) {
    use crate::metrics::{promtool_check, scrape, value};
    let app = app_with_channels(backend, |_| {}).await;
    let before = scrape(&app).await;
    promtool_check(&before);
    for channel in ["amazon", "partners"] {
        for state in ["pending", "awaiting", "failed", "lost", "dead"] {
            let labels = [("channel", channel), ("state", state)];
            assert_eq!(
                value(&before, "wharf_channel_tasks", &labels),
                Some(0.0),
                "{channel} {state}"
            );
        }
        assert_eq!(
            value(&before, "wharf_channel_paused", &[("channel", channel)]),
            Some(0.0)
        );
    }

    let session = app.login().await;
    shipped_order(&app, &session, "A-1", "marketplace:amazon", 1)
        .await
        .unwrap();
    let dead = shipped_order(&app, &session, "A-2", "marketplace:amazon", 2)
        .await
        .unwrap();
    let waiting = shipped_order(&app, &session, "A-3", "marketplace:amazon", 3)
        .await
        .unwrap();
    answered(&app, dead, Answered::Dead("HTTP 400: refused")).await;
    answered(&app, waiting, Answered::Awaiting("B-1", "T-1")).await;
    breaker_opens(&app, "amazon", wharf::db::now()).await;
    let after = scrape(&app).await;
    promtool_check(&after);
    let amazon = |state| {
        value(
            &after,
            "wharf_channel_tasks",
            &[("channel", "amazon"), ("state", state)],
        )
    };
    assert_eq!(
        ["pending", "awaiting", "failed", "lost", "dead"].map(amazon),
        [Some(1.0), Some(1.0), Some(0.0), Some(0.0), Some(1.0)]
    );
    assert_eq!(
        value(
            &after,
            "wharf_channel_tasks",
            &[("channel", "partners"), ("state", "pending")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(&after, "wharf_channel_paused", &[("channel", "amazon")]),
        Some(1.0)
    );
    assert_eq!(
        value(&after, "wharf_channel_paused", &[("channel", "partners")]),
        Some(0.0)
    );
    // What the test made due goes to a channel nobody listens at: let those attempts settle.
    app.channels_quiet().await;
}
