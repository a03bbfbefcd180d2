//! Console tests of the order channels (issue 15): `/admin/channels` (summaries, filters, keyset
//! pages, CSV), resend and dismiss of lost and dead pushes (operator only, CSRF, a confirmation
//! page, compare-and-set on the state confirmed, the audit row), the dashboard's card, and the
//! order page's parent and children links and pushes in its timeline.
//!
//! Pushes are made and moved as `crate::channels_ops` explains (real orders and shipments; a
//! direct SQL update where a sender's answer is needed).

use diesel::prelude::*;
use wharf::db::schema::orders;

use super::harness::{Console, Page};
use crate::both_backends;
use crate::channels_ops::{
    Answered, answered, app_with_channels, breaker_opens, pushes, ship, shipped_order, store_order,
};
use crate::helpers::Backend;

both_backends!(
    operators_resend_and_dismiss_lost_and_dead_pushes_after_confirming,
    a_viewer_sees_the_pushes_but_no_buttons_and_cannot_act,
    the_pushes_come_in_pages_and_the_dashboard_counts_those_waiting,
    an_order_page_links_its_family_and_tells_its_pushes,
);

/// The task ids of the list's rows, in order.
fn rows(page: &Page) -> Vec<String> {
    page.attrs("table.channel-tasks tbody tr[data-task]", "data-task")
}

/// The count a channel's summary shows for `state`.
fn count(page: &Page, channel: &str, state: &str) -> String {
    page.text(&format!(
        "section.channel[data-channel={channel}] tr[data-state={state}] td.num"
    ))
}

async fn operators_resend_and_dismiss_lost_and_dead_pushes_after_confirming(backend: Backend) {
    let app = app_with_channels(backend, |_| {}).await;
    let session = app.login().await;
    let dead = shipped_order(&app, &session, "A-1", "marketplace:amazon", 1)
        .await
        .unwrap();
    let lost = shipped_order(&app, &session, "A-2", "marketplace:amazon", 2)
        .await
        .unwrap();
    let pending = shipped_order(&app, &session, "P-1", "affiliate", 3)
        .await
        .unwrap();
    shipped_order(&app, &session, "W-1", "web", 4).await;
    answered(
        &app,
        dead,
        Answered::Dead("HTTP 400: order A-1 is closed on the marketplace"),
    )
    .await;
    answered(&app, lost, Answered::Lost(5, "HTTP 422: carrier unknown")).await;
    let mut ann = Console::logged_in(&app, "ann", "operator").await;

    // The summaries: counts per state, breaker, oldest pending, what waits for support.
    let page = ann.page("/admin/channels").await;
    assert_eq!(count(&page, "amazon", "dead"), "1");
    assert_eq!(count(&page, "amazon", "lost"), "1");
    assert_eq!(count(&page, "amazon", "pending"), "0");
    assert_eq!(count(&page, "partners", "pending"), "1");
    assert_eq!(
        page.text("section.channel[data-channel=amazon] dd.breaker"),
        "closed"
    );
    assert_eq!(
        page.text("section.channel[data-channel=amazon] dd.oldest-pending"),
        "none"
    );
    assert!(
        page.text("section.channel[data-channel=partners] dd.oldest-pending")
            .starts_with(&format!("#{pending} ship of order P-1, made ")),
        "{}",
        page.body
    );
    assert_eq!(
        page.text("section.channel[data-channel=amazon] dd.sources"),
        "marketplace:amazon"
    );
    assert!(
        page.text("section.channel[data-channel=amazon] dd.stuck")
            .ends_with(": 2")
    );
    assert!(page.texts("header nav a").contains(&"Channels".to_string()));

    // The list: newest first, every row linking to its order; only lost and dead have buttons.
    assert_eq!(rows(&page), [pending, lost, dead].map(|i| i.to_string()));
    assert_eq!(
        page.attrs("td.order a", "href"),
        [
            "/admin/orders/P%2D1",
            "/admin/orders/A%2D2",
            "/admin/orders/A%2D1"
        ]
    );
    assert_eq!(page.count("button.resend-one"), 2);
    assert_eq!(
        page.attrs("button.resend-one", "value"),
        [format!("{lost}:lost"), format!("{dead}:dead")]
    );
    assert_eq!(page.text("p.matching"), "3 matching.");

    // Filters, and values the page cannot use.
    let only = |p: &Page| rows(p);
    assert_eq!(
        only(&ann.page("/admin/channels?state=dead").await),
        [dead.to_string()]
    );
    assert_eq!(
        only(&ann.page("/admin/channels?channel=partners").await),
        [pending.to_string()]
    );
    assert_eq!(
        only(&ann.page("/admin/channels?order=A-2").await),
        [lost.to_string()]
    );
    assert_eq!(
        only(&ann.page(&format!("/admin/channels?task={dead}")).await),
        [dead.to_string()]
    );
    let none = ann.page("/admin/channels?action=cancel").await;
    assert_eq!(none.text("p.empty"), "No push matches this filter.");
    for bad in [
        "state=stuck",
        "channel=warehouse",
        "action=shipped",
        "size=7",
    ] {
        assert_eq!(
            ann.get(&format!("/admin/channels?{bad}")).await.status,
            400,
            "{bad}"
        );
    }
    let csv = ann.get("/admin/channels?channel=amazon&format=csv").await;
    assert_eq!(csv.status, 200);
    assert!(
        csv.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let lines: Vec<&str> = csv.body.lines().collect();
    assert!(
        lines[0].starts_with("task,channel,action,order,state,attempts,next_attempt_utc,batch_id"),
        "{}",
        csv.body
    );
    assert_eq!(lines.len(), 3, "{}", csv.body);
    assert!(
        lines[2].contains("A-1,dead,1,,,,,HTTP 400: order A-1 is closed on the marketplace"),
        "{}",
        csv.body
    );

    // Resend asks first: the confirmation page lists the push as it is now; nothing changed yet.
    let one = format!("{dead}:dead");
    let asked = ann
        .post(
            "/admin/channels/resend",
            &[("one", &one), ("back", "channel=amazon")],
        )
        .await;
    assert_eq!(asked.status, 200, "{}", asked.body);
    assert_eq!(asked.text("h1"), "Confirm: resend");
    assert_eq!(
        asked.attrs("form.confirm input[name=task]", "value"),
        std::slice::from_ref(&one)
    );
    assert_eq!(asked.text("table.confirm-items td.state"), "dead");
    assert_eq!(pushes(&app, "A-1").await[0]["state"], "dead");
    let confirm = |task: String, note: &'static str| {
        vec![
            ("task", task),
            ("confirm", "yes".to_string()),
            ("note", note.to_string()),
            ("back", "channel=amazon".to_string()),
        ]
    };
    let fields = confirm(one.clone(), "listing fixed");
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let done = ann.post("/admin/channels/resend", &fields).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(
        done.text(".flash-ok"),
        "1 push(es) sent again (back to pending, attempts reset)."
    );
    assert_eq!(
        done.texts("ul.done-items li"),
        [format!("#{dead} amazon ship of order A-1 (was dead)")]
    );
    assert_eq!(
        done.attrs("main a", "href").last().unwrap(),
        "/admin/channels?channel=amazon"
    );
    let resent = pushes(&app, "A-1").await;
    assert_eq!(
        (resent[0]["state"].as_str(), resent[0]["attempts"].as_i64()),
        (Some("pending"), Some(0))
    );
    // Confirmed again on what was seen then: it is no longer dead, nothing changes.
    let again = ann.post("/admin/channels/resend", &fields).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(
        again.body.contains("is no longer dead (it is pending now"),
        "{}",
        again.body
    );

    // Dismiss needs a note; the confirmation page carries it; then it is dismissed.
    let one = format!("{lost}:lost");
    let asked = ann
        .post(
            "/admin/channels/dismiss",
            &[("one", &one), ("note", "carrier set by hand")],
        )
        .await;
    assert_eq!(asked.status, 200, "{}", asked.body);
    assert_eq!(
        asked.attrs("form.confirm input[name=note]", "value"),
        ["carrier set by hand"]
    );
    let no_note = ann
        .post(
            "/admin/channels/dismiss",
            &[("task", &one), ("confirm", "yes")],
        )
        .await;
    assert_eq!(no_note.status, 400, "{}", no_note.body);
    assert_eq!(pushes(&app, "A-2").await[0]["state"], "lost");
    let done = ann
        .post(
            "/admin/channels/dismiss",
            &[
                ("task", &one),
                ("confirm", "yes"),
                ("note", "carrier set by hand"),
            ],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let dismissed = pushes(&app, "A-2").await;
    assert_eq!(dismissed[0]["state"], "dismissed");
    assert_eq!(dismissed[0]["note"], "carrier set by hand");
    // A push that never waited for support cannot be confirmed.
    let refused = ann
        .post(
            "/admin/channels/resend",
            &[("one", &format!("{pending}:pending"))],
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);

    // The list shows who handled them; the audit log has both actions.
    let page = ann.page("/admin/channels?channel=amazon").await;
    assert!(
        page.text(&format!("tr[data-task=\"{lost}\"] td.state"))
            .starts_with("dismissed by console:ann")
    );
    assert_eq!(page.count("button.resend-one"), 0);
    let audit = ann.page("/admin/audit?action=channels.resend").await;
    assert_eq!(audit.texts("td.actor"), ["console:ann"]);
    assert_eq!(audit.texts("td.subjects"), ["order: A-1"]);
    assert_eq!(audit.texts("td.note"), ["listing fixed"]);
    let audit = ann.page("/admin/audit?action=channels.dismiss").await;
    assert_eq!(audit.texts("td.subjects"), ["order: A-2"]);

    // Forms from elsewhere, or without this session's token, change nothing.
    let pushed = format!("{pending}:pending");
    let no_token = ann
        .post_raw(
            "/admin/channels/resend",
            &[("task", &pushed), ("confirm", "yes")],
            true,
        )
        .await;
    assert_eq!(no_token.status, 403, "{}", no_token.body);
    let csrf = ann.csrf.clone().unwrap();
    let foreign = ann
        .post_with(
            "/admin/channels/resend",
            &[("_csrf", &csrf), ("task", &pushed), ("confirm", "yes")],
            &[("Origin", "https://evil.example")],
        )
        .await;
    assert_eq!(foreign.status, 403, "{}", foreign.body);
    // The resent pushes went to their runner, which finds nobody at the channel's address.
    app.channels_quiet().await;
}

async fn a_viewer_sees_the_pushes_but_no_buttons_and_cannot_act(backend: Backend) {
    let app = app_with_channels(backend, |_| {}).await;
    let session = app.login().await;
    let dead = shipped_order(&app, &session, "A-1", "marketplace:amazon", 1)
        .await
        .unwrap();
    answered(&app, dead, Answered::Dead("HTTP 400: refused")).await;
    let mut vic = Console::logged_in(&app, "vic", "viewer").await;
    let page = vic.page("/admin/channels").await;
    assert_eq!(rows(&page), [dead.to_string()]);
    assert_eq!(
        page.count("button.resend-one") + page.count("button.dismiss-one"),
        0
    );
    assert_eq!(page.count("table input[name=task]"), 0);
    let one = format!("{dead}:dead");
    for action in ["resend", "dismiss"] {
        let refused = vic
            .post(
                &format!("/admin/channels/{action}"),
                &[("task", &one), ("confirm", "yes"), ("note", "x")],
            )
            .await;
        assert_eq!(refused.status, 403, "{}", refused.body);
        assert!(refused.body.contains("vic is a viewer"), "{}", refused.body);
    }
    assert_eq!(pushes(&app, "A-1").await[0]["state"], "dead");
    // What the test made due goes to a channel nobody listens at: let those attempts settle.
    app.channels_quiet().await;
}

async fn the_pushes_come_in_pages_and_the_dashboard_counts_those_waiting(backend: Backend) {
    let app = app_with_channels(backend, |_| {}).await;
    let session = app.login().await;
    let ids: Vec<String> = (1..=22).map(|i| format!("M-{i:02}")).collect();
    for id in &ids {
        store_order(&app, id, "marketplace:amazon").await;
    }
    for (seq, id) in ids.iter().enumerate() {
        app.send_shipment(&session, id, seq as i64 + 1, &[("A", 1)], "TRK")
            .await;
    }
    app.drain().await;
    let mut tasks = Vec::new();
    for id in &ids {
        tasks.push(
            crate::channels_ops::task_id(&app, id, "ship")
                .await
                .unwrap(),
        );
    }
    // Oldest first, whatever order the worker applied the shipments in.
    tasks.sort_unstable();
    answered(&app, tasks[0], Answered::Dead("HTTP 400: refused")).await;
    answered(&app, tasks[1], Answered::Dead("HTTP 400: refused")).await;
    answered(&app, tasks[2], Answered::Lost(5, "HTTP 422: refused")).await;
    let mut ann = Console::logged_in(&app, "ann", "operator").await;

    let first = ann.page("/admin/channels?channel=amazon&size=20").await;
    assert_eq!(first.text("p.matching"), "22 matching.");
    let newest: Vec<String> = tasks.iter().rev().take(20).map(|i| i.to_string()).collect();
    assert_eq!(rows(&first), newest);
    let next = first.attrs("a[rel=next]", "href");
    assert_eq!(next.len(), 1);
    let second = ann.page(&next[0]).await;
    assert_eq!(rows(&second), [tasks[1].to_string(), tasks[0].to_string()]);
    assert_eq!(second.count("a[rel=next]"), 0);
    // The CSV holds every matching row, whatever page it is asked from.
    let csv_link = second.attrs("a.csv", "href");
    assert_eq!(csv_link, ["/admin/channels?channel=amazon&format=csv"]);
    assert_eq!(ann.get(&csv_link[0]).await.body.lines().count(), 23);

    // The dashboard's card: lost and dead per channel, each a link to the list.
    let dash = ann.page("/admin").await;
    assert_eq!(dash.text("section.card.channels .channels-stuck"), "3");
    assert_eq!(
        dash.text("li[data-channel=amazon] a.channel-dead"),
        "2 dead"
    );
    assert_eq!(
        dash.text("li[data-channel=amazon] a.channel-lost"),
        "1 lost"
    );
    assert_eq!(
        dash.attrs("li[data-channel=amazon] a.channel-dead", "href"),
        ["/admin/channels?channel=amazon&state=dead"]
    );
    assert_eq!(
        dash.text("li[data-channel=partners] a.channel-dead"),
        "0 dead"
    );
    let dead_list = ann.page("/admin/channels?channel=amazon&state=dead").await;
    assert_eq!(
        rows(&dead_list),
        [tasks[1].to_string(), tasks[0].to_string()]
    );

    // A channel paused by its breaker says so on its page, not among the warehouse's breakers.
    breaker_opens(&app, "amazon", wharf::db::now()).await;
    let page = ann.page("/admin/channels").await;
    let breaker = page.text("section.channel[data-channel=amazon] dd.breaker");
    assert!(
        breaker.starts_with("open: pushes paused until "),
        "{breaker}"
    );
    assert!(
        breaker.ends_with("after 1 calls not answered; they resume by themselves"),
        "{breaker}"
    );
    let dash = ann.page("/admin").await;
    assert!(
        !dash
            .text("section.card.breakers")
            .contains("channel:amazon"),
        "{}",
        dash.body
    );
    // What the test made due goes to a channel nobody listens at: let those attempts settle.
    app.channels_quiet().await;
}

async fn an_order_page_links_its_family_and_tells_its_pushes(backend: Backend) {
    let app = app_with_channels(backend, |_| {}).await;
    let session = app.login().await;
    let pushed = shipped_order(&app, &session, "F-1", "affiliate", 1)
        .await
        .unwrap();
    store_order(&app, "F-1-A", "affiliate").await;
    store_order(&app, "F-1-B", "affiliate").await;
    // Children link to their parent (`POST /orders/{id}/split` is not on this branch).
    app.with_conn(|c| {
        let parent: i64 = orders::table
            .filter(orders::increment_id.eq("F-1"))
            .select(orders::id)
            .first(c)
            .unwrap();
        diesel::update(orders::table.filter(orders::increment_id.like("F-1-%")))
            .set(orders::parent_id.eq(parent))
            .execute(c)
            .unwrap();
    })
    .await;
    let mut ann = Console::logged_in(&app, "ann", "operator").await;

    let page = ann.page("/admin/orders/F-1").await;
    assert_eq!(page.text("dd.source"), "affiliate");
    assert_eq!(page.texts("dd.children a"), ["F-1-A", "F-1-B"]);
    assert_eq!(
        page.attrs("dd.children a", "href"),
        ["/admin/orders/F%2D1%2DA", "/admin/orders/F%2D1%2DB"]
    );
    assert_eq!(page.count("dd.parent"), 0);
    let made = page.text("li.step-push");
    assert!(made.contains("Ship push to partners made"), "{made}");
    assert!(made.contains("due "), "{made}");
    assert_eq!(
        page.attrs("li.step-push a", "href"),
        [format!("/admin/channels?task={pushed}")]
    );
    let child = ann.page("/admin/orders/F-1-A").await;
    assert_eq!(child.texts("dd.parent a"), ["F-1"]);
    assert_eq!(child.attrs("dd.parent a", "href"), ["/admin/orders/F%2D1"]);
    assert_eq!(child.count("li.step-push"), 0);

    // Sent and awaiting its ticket, then done: each with the ids the channel gave.
    answered(&app, pushed, Answered::Awaiting("B-1", "T-1")).await;
    let page = ann.page("/admin/orders/F-1").await;
    assert_eq!(
        page.text("li.step-push-sent .what"),
        "Ship push to partners sent, awaiting the channel's ticket"
    );
    assert_eq!(
        page.text("li.step-push-sent .detail"),
        "batch B-1, ticket T-1, push no. 1"
    );
    answered(&app, pushed, Answered::Done("B-1", "T-1")).await;
    let page = ann.page("/admin/orders/F-1").await;
    assert_eq!(
        page.text("li.step-push-done .what"),
        "Ship push to partners done: the channel took it"
    );
    assert_eq!(
        page.text("li.step-push-done .detail"),
        "batch B-1, ticket T-1, push no. 1"
    );

    // A refused push, lost, resent by support: each step in the child's timeline.
    let refused = ship(&app, &session, "F-1-A", 2).await.unwrap();
    answered(
        &app,
        refused,
        Answered::Lost(5, "HTTP 422: consignment number missing"),
    )
    .await;
    let page = ann.page("/admin/orders/F-1-A").await;
    assert_eq!(
        page.text("li.step-push-lost .what"),
        "Ship push to partners lost after 5 attempts: waits for support"
    );
    assert_eq!(
        page.text("li.step-push-lost .detail"),
        "HTTP 422: consignment number missing"
    );
    let one = format!("{refused}:lost");
    let done = ann
        .post(
            "/admin/channels/resend",
            &[("task", &one), ("confirm", "yes"), ("note", "number added")],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let page = ann.page("/admin/orders/F-1-A").await;
    assert_eq!(
        page.text("li.step-push-action .what"),
        "Support resent the ship push to partners"
    );
    assert_eq!(
        page.text("li.step-push-action .detail"),
        "by console:ann: number added"
    );
    assert_eq!(
        page.texts("li.step-audit .what"),
        ["Audited action channels.resend"]
    );
    assert_eq!(page.count("li.step-push-lost"), 0);
    // The other kinds of steps, in order: made before the action.
    let kinds = page.attrs("ol.timeline li", "data-kind");
    let at = |k: &str| {
        kinds
            .iter()
            .position(|x| x == k)
            .unwrap_or_else(|| panic!("{k} in {kinds:?}"))
    };
    assert!(at("push") < at("push-action"), "{kinds:?}");
    // What the test made due goes to a channel nobody listens at: let those attempts settle.
    app.channels_quiet().await;
}
