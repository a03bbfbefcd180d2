//! Console tests: the dashboard and its unseen-failures banner, lost orders (resend and dismiss one,
//! selected, all matching), an order's timeline, the audit log, and their retention.

use std::process::Command;
use std::sync::Arc;

use chrono::TimeDelta;
use diesel::prelude::*;
use wharf::channels::warehouse::Exporter;
use wharf::db::schema::{
    audit_log, console_sessions, imports, outbound_tasks, request_errors, requests,
};

use super::harness::{Console, Page};
use crate::both_backends;
use crate::export_failures::setup;
use crate::helpers::*;
use crate::warehouse_api::Behaviour;

both_backends!(
    lost_orders_are_resent_and_dismissed_one_selected_or_all_matching,
    a_viewer_sees_no_buttons_and_cannot_act,
    the_dashboard_counts_and_each_user_has_their_own_unseen_banner,
    an_order_timeline_shows_each_step_in_order_with_links,
    the_audit_log_filters_pages_and_downloads,
    retention_deletes_old_audit_rows_and_ended_sessions,
);

/// `(subject, task id)` of each row of a lost list page.
fn rows(page: &Page) -> Vec<(String, String)> {
    page.texts("tr[data-task] td.subject")
        .into_iter()
        .zip(page.attrs("tr[data-task]", "data-task"))
        .collect()
}

fn task_of(page: &Page, subject: &str) -> String {
    rows(page)
        .into_iter()
        .find(|(s, _)| s == subject)
        .unwrap_or_else(|| panic!("no row {subject} in\n{}", page.body))
        .1
}

/// An app whose orders `L-01`…`L-22` were refused once and so are lost (max_attempts 1).
async fn lost_orders(
    backend: Backend,
    bulk_max: i64,
) -> (TestApp, crate::warehouse_api::WarehouseSim) {
    let (app, sim) = setup(backend, |s| {
        s.warehouse.orders.max_attempts = 1;
        s.warehouse.orders.batch_size = 50;
        s.console.bulk_max = bulk_max;
    })
    .await;
    let ids: Vec<String> = (1..=22).map(|i| format!("L-{i:02}")).collect();
    for id in &ids {
        let (status, body) = app.put_order(id, &[("A", 1)]).await;
        assert!(status < 300, "{body}");
    }
    sim.set_behaviour(Behaviour {
        fail: ids.iter().cloned().collect(),
        ..Behaviour::default()
    });
    let ex = Exporter::new(app.pool.clone(), Arc::clone(&app.settings)).unwrap();
    let o = ex.export_orders().await.unwrap();
    assert_eq!(o.lost, 22, "{o:?}");
    sim.set_behaviour(Behaviour::default());
    (app, sim)
}

fn matching(page: &Page) -> String {
    page.text("p.matching")
}

async fn lost_orders_are_resent_and_dismissed_one_selected_or_all_matching(backend: Backend) {
    let (app, sim) = lost_orders(backend, 12).await;
    let mut ann = Console::logged_in(&app, "ann", "operator").await;

    // The list: keyset pages of 20, a filter, tabs with counts, a CSV of the filter.
    let first = ann.page("/admin/orders/lost?size=20").await;
    assert_eq!(matching(&first), "22 matching.");
    assert_eq!(rows(&first).len(), 20);
    assert!(
        first.text("td.error").contains("not found"),
        "{}",
        first.body
    );
    assert_eq!(
        first.attrs("td.subject a", "href")[0],
        "/admin/orders/L%2D01"
    );
    assert!(first.text("nav.tabs").contains("Order exports (22)"));
    let next = first.attrs("a[rel=next]", "href");
    assert_eq!(next.len(), 1);
    let second = ann.page(&next[0]).await;
    let names: Vec<String> = rows(&second).into_iter().map(|r| r.0).collect();
    assert_eq!(names, ["L-21", "L-22"]);
    assert_eq!(second.count("a[rel=next]"), 0);
    let csv = ann.get("/admin/orders/lost?subject=L-2&format=csv").await;
    assert_eq!(csv.status, 200);
    assert!(
        csv.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines[0], "task,kind,subject,attempts,last_error,updated_at");
    assert_eq!(lines.len(), 4, "L-20, L-21, L-22: {}", csv.body);
    let bad = ann.get("/admin/orders/lost?size=7").await;
    assert_eq!(bad.status, 400);

    // One: resent, back to pending; its order page says so.
    let page = ann.page("/admin/orders/lost").await;
    let one = task_of(&page, "L-01");
    let done = ann
        .post(
            "/admin/orders/lost/resend",
            &[("kind", "export"), ("one", &one)],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.text(".flash-ok")
            .starts_with("1 order exports sent again")
    );
    let order = ann.page("/admin/orders/L-01").await;
    assert_eq!(order.text("dd.export-status .state"), "pending");
    assert!(
        order
            .texts("li.step-action .what")
            .contains(&"Support resent the export".into())
    );

    // Selected: a dismissal needs a note; with one, both go.
    let page = ann.page("/admin/orders/lost").await;
    let (two, three) = (task_of(&page, "L-02"), task_of(&page, "L-03"));
    let fields = [
        ("kind", "export"),
        ("id", two.as_str()),
        ("id", three.as_str()),
    ];
    let refused = ann.post("/admin/orders/lost/dismiss", &fields).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let mut with_note = fields.to_vec();
    with_note.push(("note", "sent by courier by hand"));
    let done = ann.post("/admin/orders/lost/dismiss", &with_note).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.texts("ul.done-items li"), ["L-02", "L-03"]);
    assert_eq!(
        matching(&ann.page("/admin/orders/lost").await),
        "19 matching."
    );

    // All matching: the count the user saw must still hold, else nothing changes.
    let filtered = ann.page("/admin/orders/lost?subject=L-1").await;
    assert_eq!(matching(&filtered), "10 matching.");
    assert_eq!(
        filtered.attrs("form.bulk-all input[name=expected]", "value"),
        ["10"]
    );
    let all = |expected: &'static str| {
        vec![
            ("kind", "export"),
            ("scope", "all"),
            ("subject", "L-1"),
            ("expected", expected),
        ]
    };
    let changed = ann.post("/admin/orders/lost/resend", &all("9")).await;
    assert_eq!(changed.status, 409, "{}", changed.body);
    assert!(
        changed
            .body
            .contains("matched 9 when you looked and matches 10 now")
    );
    assert_eq!(
        matching(&ann.page("/admin/orders/lost?subject=L-1").await),
        "10 matching."
    );
    let done = ann.post("/admin/orders/lost/resend", &all("10")).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.texts("ul.done-items li").len(), 10);
    assert_eq!(
        matching(&ann.page("/admin/orders/lost?subject=L-1").await),
        "0 matching."
    );
    // The orders' timelines name the action, each its own (L-12 sits inside the list of ten).
    let order = ann.page("/admin/orders/L-12").await;
    let audited = order.texts("li.step-audit .detail");
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert!(
        audited[0].contains("10 record(s), all matching kind=export&subject=L-1"),
        "{audited:?}"
    );
    let order = ann.page("/admin/orders/L-01").await;
    assert_eq!(
        order.texts("li.step-audit .what"),
        ["Audited action orders.resend"]
    );

    // Above console.bulk_max (12): refused, nothing changed.
    let rest = ann.page("/admin/orders/lost").await;
    assert_eq!(matching(&rest), "9 matching.");
    sim.stop().await;
    for i in 23..=26 {
        app.put_order(&format!("L-{i}"), &[("A", 1)]).await;
    }
    app.with_conn(|c| {
        diesel::update(
            outbound_tasks::table
                .filter(outbound_tasks::state.eq("pending"))
                .filter(outbound_tasks::subject.like("L-2%")),
        )
        .set((
            outbound_tasks::state.eq("lost"),
            outbound_tasks::attempts.eq(1),
            outbound_tasks::last_error.eq("Product A not found"),
        ))
        .execute(c)
        .unwrap()
    })
    .await;
    let many = ann.page("/admin/orders/lost").await;
    assert_eq!(matching(&many), "13 matching.");
    let refused = ann
        .post(
            "/admin/orders/lost/resend",
            &[("kind", "export"), ("scope", "all"), ("expected", "13")],
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body.contains("console.bulk_max = 12"),
        "{}",
        refused.body
    );
    assert_eq!(
        matching(&ann.page("/admin/orders/lost").await),
        "13 matching."
    );

    // The CLI's resend is audited too.
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["orders", "resend", "L-04", "--by", "carol"])
        .env("DATABASE_URL", &app.db.url)
        .env("WHARF_DB_POOL_SIZE", "2")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // One audit row per action: who, what, which filter, how many, the note.
    let resends = ann.page("/admin/audit?action=orders.resend").await;
    assert_eq!(
        resends.texts("td.actor"),
        ["carol", "console:ann", "console:ann"]
    );
    assert_eq!(resends.texts("td.via"), ["cli", "console", "console"]);
    assert_eq!(resends.texts("td.count"), ["1", "10", "1"]);
    assert_eq!(
        resends.texts("td.filter"),
        ["–", "kind=export&subject=L-1", "–"]
    );
    let dismissals = ann.page("/admin/audit?action=orders.dismiss").await;
    assert_eq!(dismissals.texts("td.subjects"), ["order: L-02, L-03"]);
    assert_eq!(dismissals.texts("td.note"), ["sent by courier by hand"]);
}

async fn a_viewer_sees_no_buttons_and_cannot_act(backend: Backend) {
    let (app, sim) = lost_orders(backend, 1000).await;
    sim.stop().await;
    let mut vic = Console::logged_in(&app, "vic", "viewer").await;
    let page = vic.page("/admin/orders/lost").await;
    assert_eq!(rows(&page).len(), 22);
    for hidden in [
        "input[name=id]",
        "button.resend-one",
        "button.dismiss-selected",
        "form.bulk-all",
    ] {
        assert_eq!(page.count(hidden), 0, "{hidden} shown to a viewer");
    }
    let task = task_of(&page, "L-01");
    let refused = vic
        .post(
            "/admin/orders/lost/resend",
            &[("kind", "export"), ("one", &task)],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        matching(&vic.page("/admin/orders/lost").await),
        "22 matching."
    );
    assert_eq!(vic.page("/admin/audit").await.count("tr[data-audit]"), 0);
    // The dashboard's banner is the viewer's own: they may mark it seen.
    let dash = vic.page("/admin").await;
    assert_eq!(dash.count("section.unseen"), 1);
    let at = dash.attrs("section.unseen input[name=at]", "value")[0].clone();
    let seen = vic.post("/admin/seen", &[("at", &at)]).await;
    assert_eq!(seen.status, 303, "{}", seen.body);
    assert_eq!(vic.page("/admin").await.count("section.unseen"), 0);
}

/// Puts a task of `action` for `subject` in the lost state, as the exporter would have.
async fn lose(app: &TestApp, action: &'static str, subject: &'static str) {
    app.with_conn(move |c| {
        let now = wharf::db::now();
        diesel::insert_into(outbound_tasks::table)
            .values((
                outbound_tasks::channel.eq("warehouse"),
                outbound_tasks::action.eq(action),
                outbound_tasks::subject.eq(subject),
                outbound_tasks::state.eq("lost"),
                outbound_tasks::attempts.eq(3),
                outbound_tasks::last_error.eq("Product X not found"),
                outbound_tasks::created_at.eq(now),
                outbound_tasks::updated_at.eq(now),
            ))
            .execute(c)
            .unwrap()
    })
    .await;
}

async fn the_dashboard_counts_and_each_user_has_their_own_unseen_banner(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let session = app.login().await;
    let (status, body) = app.send_inventory(&session, 1, &[("A", 5, 1)]).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.send_inventory(&session, 2, &[("B", 5, 1)]).await;
    assert_eq!(status, 200, "{body}");
    app.drain().await;
    // Request 2 died; request 1's report has a failed line.
    app.with_conn(|c| {
        let ids: Vec<i64> = requests::table
            .order(requests::id)
            .select(requests::id)
            .load(c)
            .unwrap();
        diesel::update(requests::table.find(ids[1]))
            .set((requests::state.eq("dead"), requests::last_error.eq("boom")))
            .execute(c)
            .unwrap();
        diesel::insert_into(request_errors::table)
            .values((
                request_errors::request_id.eq(ids[1]),
                request_errors::attempt.eq(1),
                request_errors::at.eq(wharf::db::now()),
                request_errors::error.eq("boom"),
            ))
            .execute(c)
            .unwrap();
        diesel::update(imports::table.find(ids[0]))
            .set(imports::failures.eq(1))
            .execute(c)
            .unwrap();
    })
    .await;
    lose(&app, "order.insert", "D-1").await;
    lose(&app, "product.merge", "SKU-9").await;

    let mut ann = Console::logged_in(&app, "ann", "operator").await;
    let mut bob = Console::logged_in(&app, "bob", "viewer").await;
    let dash = ann.page("/admin").await;
    assert_eq!(dash.text(".last-day dd.received"), "2");
    assert_eq!(dash.text(".last-day dd.failed"), "1");
    assert!(
        dash.text(".card.dead").contains("inventory.update: 1"),
        "{}",
        dash.body
    );
    assert!(dash.text(".card.dead").contains("boom"));
    assert_eq!(dash.texts(".lost-count"), ["1", "0", "1"]);
    assert!(
        dash.text(".card.requests")
            .contains("dead inventory.update 1")
    );
    assert_eq!(dash.text(".unseen-dead"), "1 dead request");
    assert_eq!(dash.text(".unseen-imports"), "1 failed import");
    assert!(dash.text(".unseen-lost").starts_with("2 lost"));
    assert_eq!(dash.count("input#auto-refresh"), 1);

    // Ann marks them seen: her banner goes, Bob's stays, the import failure is viewed.
    let at = dash.attrs("section.unseen input[name=at]", "value")[0].clone();
    let seen = ann.post("/admin/seen", &[("at", &at)]).await;
    assert_eq!(seen.status, 303);
    assert_eq!(seen.location(), "/admin");
    assert_eq!(ann.page("/admin").await.count("section.unseen"), 0);
    assert_eq!(bob.page("/admin").await.count("section.unseen"), 1);
    let unseen = app
        .with_conn(|c| wharf::imports::store::unseen_failures(c, 10).unwrap().0)
        .await;
    assert_eq!(unseen, 0);

    // What fails afterwards shows again, for her too.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    lose(&app, "order.cancel", "D-2").await;
    let dash = ann.page("/admin").await;
    assert!(
        dash.text(".unseen-lost").starts_with("1 lost"),
        "{}",
        dash.body
    );
    assert_eq!(dash.count(".unseen-dead"), 0);
    assert_eq!(dash.count(".unseen-imports"), 0);
}

async fn an_order_timeline_shows_each_step_in_order_with_links(backend: Backend) {
    let (app, sim) = setup(backend, |_| {}).await;
    let (status, body) = app.put_order("T-1", &[("A", 1), ("B", 1)]).await;
    assert!(status < 300, "{body}");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (status, body) = app.put_order("T-1", &[("A", 2), ("B", 1)]).await;
    assert!(status < 300, "{body}");
    let ex = Exporter::new(app.pool.clone(), Arc::clone(&app.settings)).unwrap();
    sim.set_behaviour(Behaviour {
        fail: ["T-1".to_string()].into(),
        ..Behaviour::default()
    });
    assert_eq!(ex.export_orders().await.unwrap().failed, 1);
    sim.set_behaviour(Behaviour::default());
    assert_eq!(ex.export_orders().await.unwrap().exported, 1);
    let session = app.login().await;
    app.send_shipment(&session, "T-1", 100, &[("A", 2), ("B", 1)], "TRACK-1")
        .await;
    app.drain().await;
    sim.stop().await;

    let mut ann = Console::logged_in(&app, "ann", "viewer").await;
    let page = ann.page("/admin/orders/T-1").await;
    assert_eq!(page.text("dd.status"), "complete");
    assert_eq!(page.text("dd.export-status .state"), "exported");
    let kinds = page.attrs("li.step", "data-kind");
    let at = |kind: &str| {
        kinds
            .iter()
            .position(|k| k == kind)
            .unwrap_or_else(|| panic!("no {kind} step in {kinds:?}"))
    };
    let attempts: Vec<usize> = (0..kinds.len())
        .filter(|&i| kinds[i] == "attempt")
        .collect();
    assert_eq!(attempts.len(), 2, "{kinds:?}");
    assert!(kinds.contains(&"updated".to_string()), "{kinds:?}");
    assert!(at("received") < attempts[0], "{kinds:?}");
    assert!(attempts[1] < at("exported"), "{kinds:?}");
    assert!(at("exported") < at("shipment"), "{kinds:?}");
    assert!(at("shipment") < at("completed"), "{kinds:?}");
    let details = page.texts("li.step-attempt .detail");
    assert!(details[0].starts_with("Failure"), "{details:?}");
    assert!(details[1].starts_with("Success"), "{details:?}");
    let attempt_links = page.attrs("li.step-attempt a", "href");
    assert!(
        attempt_links
            .iter()
            .all(|h| h.starts_with("/admin/exports/")),
        "{attempt_links:?}"
    );
    let shipment = page.text("li.step-shipment");
    assert!(
        shipment.contains("messageSeqId 100") && shipment.contains("TRACK-1"),
        "{shipment}"
    );
    let request = page.attrs("li.step-shipment a", "href");
    assert_eq!(request.len(), 1);
    assert!(request[0].starts_with("/admin/requests/"), "{request:?}");
    assert_eq!(page.texts("table.lines td.sku"), ["A", "B"]);

    let missing = ann.get("/admin/orders/NOPE-1").await;
    assert_eq!(missing.status, 404);
}

async fn the_audit_log_filters_pages_and_downloads(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.with_conn(|c| {
        for i in 0..25 {
            let actor = if i % 5 == 0 {
                "console:bob"
            } else {
                "console:ann"
            };
            let subjects = [format!("R-{i}")];
            wharf::audit::record(
                c,
                &wharf::audit::Entry {
                    actor,
                    via: wharf::audit::Via::Console,
                    action: if i == 24 {
                        "orders.dismiss"
                    } else {
                        "orders.resend"
                    },
                    subject_kind: "order",
                    subjects: &subjects,
                    filter: None,
                    count: 1,
                    note: (i == 24).then_some("=HYPERLINK(\"x\")"),
                },
            )
            .unwrap();
        }
    })
    .await;
    let mut ann = Console::logged_in(&app, "ann", "viewer").await;
    let first = ann.page("/admin/audit?size=20").await;
    assert_eq!(first.count("tr[data-audit]"), 20);
    assert_eq!(first.texts("td.subjects")[0], "order: R-24");
    let next = first.attrs("a[rel=next]", "href");
    let older = ann.page(&next[0]).await;
    assert_eq!(older.count("tr[data-audit]"), 5);
    assert_eq!(older.texts("td.subjects")[4], "order: R-0");

    let bob = ann.page("/admin/audit?actor=console:bob").await;
    assert_eq!(bob.count("tr[data-audit]"), 5);
    assert!(bob.texts("td.actor").iter().all(|a| a == "console:bob"));
    let dismissed = ann.page("/admin/audit?action=orders.dismiss").await;
    assert_eq!(dismissed.texts("td.subjects"), ["order: R-24"]);
    assert_eq!(
        ann.page("/admin/audit?actor=console:bob&action=orders.dismiss")
            .await
            .count("tr[data-audit]"),
        0
    );

    let csv = ann
        .get("/admin/audit?action=orders.dismiss&format=csv")
        .await;
    assert_eq!(csv.status, 200);
    assert!(
        csv.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("audit.csv")
    );
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines.len(), 2, "{}", csv.body);
    assert!(lines[0].starts_with("id,at,actor,via,action"));
    assert!(
        lines[1].contains("'=HYPERLINK"),
        "neutralised: {}",
        lines[1]
    );
    assert_eq!(ann.get("/admin/audit?after=x").await.status, 400);
}

async fn retention_deletes_old_audit_rows_and_ended_sessions(backend: Backend) {
    // The test cleans by itself.
    let app = TestApp::spawn_with(backend, |s| s.retention.enabled = false).await;
    let _ann = Console::logged_in(&app, "ann", "viewer").await;
    let _bob = Console::logged_in(&app, "bob", "viewer").await;
    let counts = app
        .with_conn(|c| {
            for (days, who) in [(400, "old"), (10, "recent")] {
                wharf::audit::record(
                    c,
                    &wharf::audit::Entry {
                        actor: who,
                        via: wharf::audit::Via::Cli,
                        action: "orders.resend",
                        subject_kind: "order",
                        subjects: &[],
                        filter: None,
                        count: 0,
                        note: None,
                    },
                )
                .unwrap();
                diesel::update(audit_log::table.filter(audit_log::actor.eq(who)))
                    .set(audit_log::at.eq(wharf::db::now() - TimeDelta::days(days)))
                    .execute(c)
                    .unwrap();
            }
            // Bob's session was last used two days ago: it has ended.
            let bob: i64 = wharf::db::schema::api_users::table
                .filter(wharf::db::schema::api_users::username.eq("bob"))
                .select(wharf::db::schema::api_users::id)
                .first(c)
                .unwrap();
            diesel::update(console_sessions::table.filter(console_sessions::user_id.eq(bob)))
                .set(console_sessions::last_seen_at.eq(wharf::db::now() - TimeDelta::days(2)))
                .execute(c)
                .unwrap();
            let settings = wharf::config::RetentionSettings::default();
            let counts = wharf::retention::clean(c, &settings, wharf::db::now(), &mut |_| {
                std::ops::ControlFlow::Continue(())
            })
            .unwrap();
            let actors: Vec<String> = audit_log::table.select(audit_log::actor).load(c).unwrap();
            let sessions: i64 = console_sessions::table.count().get_result(c).unwrap();
            (counts, actors, sessions)
        })
        .await;
    let (counts, actors, sessions) = counts;
    let of = |part| counts.iter().find(|c| c.part == part).unwrap().rows;
    assert_eq!(of(wharf::retention::Part::AuditLog), 1);
    assert_eq!(of(wharf::retention::Part::ConsoleSessions), 1);
    assert_eq!(actors, ["recent"]);
    assert_eq!(sessions, 1);
}
