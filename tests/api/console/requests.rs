//! Console tests: the request list and detail, requeue/reprocess (one, selected, all matching),
//! rejected messages and the search box.

use diesel::prelude::*;
use wharf::db::schema::{audit_log, requests};
use wharf::messages::{InventoryLine, InventoryMessage};
use wharf::queue::Receipt;

use super::harness::{Console, Page};
use crate::both_backends;
use crate::helpers::*;

/// Stores an inventory message from `caller` with one line per SKU (qty 5, seq = messageSeqId)
/// and the exact `body` given; returns the request id.
async fn receive(app: &TestApp, caller: &str, seq: i64, skus: &[&str], body: &str) -> i64 {
    let msg = InventoryMessage {
        message_seq_id: seq,
        lines: skus
            .iter()
            .map(|sku| InventoryLine {
                sku: sku.to_string(),
                source: "default".into(),
                qty: 5,
                seq,
                last_order_exported: None,
            })
            .collect(),
    };
    let (caller, body) = (caller.to_string(), body.to_string());
    match app
        .with_conn(move |c| {
            wharf::queue::receive_inventory(c, &caller, body.as_bytes(), &msg).unwrap()
        })
        .await
    {
        Receipt::Queued(id) | Receipt::Conflict(id) | Receipt::Repeat(id) => id,
    }
}

/// A plain body for message `seq`.
fn body(seq: i64) -> String {
    format!("<m><seq>{seq}</seq></m>")
}

/// Marks queued requests dead, as after their last failed attempt (never applied, so no import
/// report).
async fn make_dead(app: &TestApp, ids: Vec<i64>) {
    app.with_conn(move |c| {
        diesel::update(requests::table.filter(requests::id.eq_any(ids)))
            .set((
                requests::state.eq("dead"),
                requests::attempts.eq(5),
                requests::last_error.eq("warehouse said no"),
            ))
            .execute(c)
            .unwrap()
    })
    .await;
}

/// The request ids a list page shows, in order.
fn ids(page: &Page) -> Vec<i64> {
    page.attrs("tr[data-id]", "data-id")
        .iter()
        .map(|id| id.parse().unwrap())
        .collect()
}

/// The `href` of the "older" link, if any.
fn next_link(page: &Page) -> Option<String> {
    page.attrs("a.next", "href").into_iter().next()
}

/// The audit rows: (actor, via, action, subjects, filter, count).
type AuditRow = (String, String, String, String, Option<String>, i64);

async fn audit_rows(app: &TestApp) -> Vec<AuditRow> {
    app.with_conn(|c| {
        audit_log::table
            .order(audit_log::id)
            .select((
                audit_log::actor,
                audit_log::via,
                audit_log::action,
                audit_log::subjects,
                audit_log::filter,
                audit_log::count,
            ))
            .load(c)
            .unwrap()
    })
    .await
}

async fn state_of(app: &TestApp, id: i64) -> String {
    app.with_conn(move |c| {
        requests::table
            .find(id)
            .select(requests::state)
            .first(c)
            .unwrap()
    })
    .await
}

both_backends!(every_filter_selects_its_requests);
async fn every_filter_selects_its_requests(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.worker.unknown_order_retry_secs = 0).await;
    let a = receive(&app, "wh-a", 1, &["SKU-A"], &body(1)).await;
    let b = receive(&app, "wh-b", 2, &["SKU-B"], &body(2)).await;
    let session = app.login().await;
    app.send_shipment(&session, "ORD-9", 3, &[("SKU-B", 1)], "TRK")
        .await;
    let ship: i64 = app
        .with_conn(|c| {
            requests::table
                .filter(requests::operation.eq("shipment.create"))
                .select(requests::id)
                .first(c)
                .unwrap()
        })
        .await;
    app.drain().await; // the shipment fails (no order ORD-9): processed with a failed line
    let conflict = receive(&app, "wh-a", 1, &["SKU-A"], "<m><other/></m>").await;
    make_dead(&app, vec![b]).await;
    app.with_conn(move |c| {
        diesel::update(requests::table.find(a))
            .set(
                requests::received_at.eq(chrono::NaiveDate::from_ymd_opt(2026, 1, 5)
                    .unwrap()
                    .and_hms_opt(10, 30, 0)
                    .unwrap()),
            )
            .execute(c)
            .unwrap()
    })
    .await;
    app.expect_leftovers("the conflicting copy stays queued: the list is what is tested");

    let mut console = Console::logged_in(&app, "ann", "viewer").await;
    let all = console.page("/admin/requests").await;
    assert_eq!(ids(&all), [conflict, ship, b, a]);
    let cases: &[(&str, Vec<i64>)] = &[
        ("operation=shipment.create", vec![ship]),
        ("operation=inventory", vec![conflict, b, a]),
        ("state=dead", vec![b]),
        ("state=queued", vec![conflict]),
        ("state=failed", vec![ship]),
        ("state=processed", vec![ship, a]),
        ("seq=1", vec![conflict, a]),
        ("sku=SKU-B", vec![ship, b]),
        ("order=ORD-9", vec![ship]),
        ("caller=wh-b", vec![b]),
        ("conflict=yes", vec![conflict]),
        ("conflict=no", vec![ship, b, a]),
        ("from=2026-01-05&to=2026-01-05", vec![a]),
        ("to=2026-01-05T10:30", vec![a]),
        ("from=2026-01-05T10:31", vec![conflict, ship, b]),
        ("seq=1&caller=wh-a&conflict=no", vec![a]),
        ("sku=&state=", vec![conflict, ship, b, a]),
    ];
    for (query, want) in cases {
        let page = console.page(&format!("/admin/requests?{query}")).await;
        assert_eq!(&ids(&page), want, "?{query}");
    }
    let failed = console.page("/admin/requests?state=failed").await;
    assert!(
        failed.text("td.state").contains("1 failed"),
        "{}",
        failed.body
    );
    for (query, field) in [
        ("state=nope", "state"),
        ("operation=order.create", "operation"),
        ("from=yesterday", "from"),
        ("seq=x", "seq"),
        ("conflict=maybe", "conflict"),
        ("size=30", "size"),
        ("format=pdf", "format"),
    ] {
        let page = console.get(&format!("/admin/requests?{query}")).await;
        assert_eq!(page.status, 400, "?{query}");
        assert!(
            page.body.contains(field),
            "?{query} names {field}: {}",
            page.body
        );
    }
}

both_backends!(page_sizes_and_cursor_stay_stable_while_requests_arrive);
async fn page_sizes_and_cursor_stay_stable_while_requests_arrive(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut first = Vec::new();
    for seq in 1..=205 {
        first.push(receive(&app, "wh", seq, &["S"], &body(seq)).await);
    }
    app.expect_leftovers("the requests are listed, not applied");
    let newest_first: Vec<i64> = first.iter().rev().copied().collect();
    let mut console = Console::logged_in(&app, "ann", "viewer").await;
    for size in [20usize, 50, 100, 200] {
        let page = console.page(&format!("/admin/requests?size={size}")).await;
        assert_eq!(ids(&page), newest_first[..size], "size {size}");
        assert!(next_link(&page).is_some(), "size {size} has a next page");
        assert_eq!(page.count("a.next"), 1);
    }
    let default = console.page("/admin/requests").await;
    assert_eq!(ids(&default).len(), 50);

    let page1 = console.page("/admin/requests?state=queued&size=100").await;
    assert_eq!(ids(&page1), newest_first[..100]);
    let next = next_link(&page1).unwrap();
    assert!(
        next.contains("state=queued") && next.contains("size=100"),
        "{next}"
    );
    // New requests arrive between the two pages: the next page is the same.
    for seq in 1000..1010 {
        receive(&app, "wh", seq, &["S"], &body(seq)).await;
    }
    let page2 = console.page(&next).await;
    assert_eq!(ids(&page2), newest_first[100..200]);
    let last = console.page(&next_link(&page2).unwrap()).await;
    assert_eq!(ids(&last), newest_first[200..]);
    assert_eq!(next_link(&last), None, "no page after the last");
    assert_eq!(last.count("a.newest"), 1);
    let csv = console
        .get("/admin/requests?state=queued&size=20&format=csv")
        .await;
    assert_eq!(csv.status, 200);
    assert_eq!(
        csv.body.lines().count(),
        1 + 215,
        "header and every matching row"
    );
}

both_backends!(all_matching_is_re_evaluated_capped_confirmed_and_audited);
async fn all_matching_is_re_evaluated_capped_confirmed_and_audited(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.console.bulk_max = 4).await;
    let mut dead = Vec::new();
    for seq in 1..=3 {
        dead.push(receive(&app, "wh", seq, &["S"], &body(seq)).await);
    }
    make_dead(&app, dead.clone()).await;
    let mut console = Console::logged_in(&app, "ann", "operator").await;
    let list = console.page("/admin/requests?state=dead&size=20").await;
    assert_eq!(list.text("form.bulk strong.matching"), "3");
    assert_eq!(
        list.attrs("form.bulk input[name=filter]", "value"),
        ["state=dead"]
    );
    assert_eq!(list.attrs("form.bulk input[name=n]", "value"), ["3"]);

    // Another request dies after the page was shown: the 3 the user saw are no longer the filter.
    let late = receive(&app, "wh", 4, &["S"], &body(4)).await;
    make_dead(&app, vec![late]).await;
    let form = [("all", "1"), ("filter", "state=dead"), ("n", "3")];
    let confirm = console.post("/admin/requests/requeue", &form).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(confirm.text("p.question").contains("all 3 request(s)"));
    assert_eq!(
        confirm.attrs("form.confirm input[name=confirm]", "value"),
        ["yes"]
    );
    assert_eq!(
        state_of(&app, dead[0]).await,
        "dead",
        "asking changes nothing"
    );
    let refused = console
        .post(
            "/admin/requests/requeue",
            &[
                ("all", "1"),
                ("filter", "state=dead"),
                ("n", "3"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.text(".flash-error").contains("now matches 4"),
        "{}",
        refused.body
    );
    assert_eq!(state_of(&app, dead[0]).await, "dead");
    assert!(
        audit_rows(&app).await.is_empty(),
        "nothing done, nothing audited"
    );

    let done = console
        .post(
            "/admin/requests/requeue",
            &[
                ("all", "1"),
                ("filter", "state=dead"),
                ("n", "4"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.text(".flash-ok")
            .contains("4 request(s) back to the queue")
    );
    for id in dead.iter().chain([&late]) {
        assert_eq!(state_of(&app, *id).await, "queued");
    }
    let subjects = format!("{}, {}, {}, {}", dead[0], dead[1], dead[2], late);
    assert_eq!(
        audit_rows(&app).await,
        [(
            "console:ann".to_string(),
            "console".to_string(),
            "requests.requeue".to_string(),
            subjects,
            Some("state=dead".to_string()),
            4
        )]
    );

    // Over the cap: the list offers no "all" action, and the server refuses one anyway.
    app.drain().await;
    let mut more = dead.clone();
    more.push(late);
    more.push(receive(&app, "wh", 5, &["S"], &body(5)).await);
    app.drain().await;
    make_dead(&app, more).await;
    let list = console.page("/admin/requests?state=dead").await;
    assert_eq!(list.count("form.bulk"), 0);
    assert!(list.text("p.bulk").contains("More than 4"));
    let capped = console
        .post(
            "/admin/requests/requeue",
            &[
                ("all", "1"),
                ("filter", "state=dead"),
                ("n", "5"),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(capped.status, 409, "{}", capped.body);
    assert!(capped.body.contains("console.bulk_max"), "{}", capped.body);
    assert_eq!(audit_rows(&app).await.len(), 1);
    app.expect_leftovers("dead requests are what the test acts on");
}

both_backends!(one_and_selected_actions_confirm_and_the_cli_audits_too);
async fn one_and_selected_actions_confirm_and_the_cli_audits_too(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let a = receive(&app, "wh", 1, &["S"], &body(1)).await;
    let b = receive(&app, "wh", 2, &["S"], &body(2)).await;
    let c = receive(&app, "wh", 3, &["S"], &body(3)).await;
    make_dead(&app, vec![a]).await;
    app.drain().await;
    let mut console = Console::logged_in(&app, "ann", "operator").await;
    let detail = console.page(&format!("/admin/requests/{a}")).await;
    assert_eq!(
        detail.count("form.actions button"),
        1,
        "a dead request offers requeue only"
    );
    assert_eq!(
        detail.attrs("form.actions button", "formaction"),
        ["/admin/requests/requeue"]
    );
    let id = a.to_string();
    let ask = console
        .post("/admin/requests/requeue", &[("id", &id)])
        .await;
    assert_eq!(ask.status, 200);
    assert_eq!(
        ask.attrs("form.confirm input[name=id]", "value"),
        std::slice::from_ref(&id)
    );
    assert_eq!(state_of(&app, a).await, "dead");
    let done = console
        .post(
            "/admin/requests/requeue",
            &[("id", &id), ("confirm", "yes")],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(state_of(&app, a).await, "queued");
    assert_eq!(
        done.attrs("main a", "href").last().unwrap(),
        &format!("/admin/requests/{a}")
    );
    app.drain().await;
    let after = console.page(&format!("/admin/requests/{a}")).await;
    assert!(after.text("table.support-actions").contains("console:ann"));

    // Selected: b and c are processed, so reprocess both; requeueing a processed one is refused.
    let (sb, sc) = (b.to_string(), c.to_string());
    let refused = console
        .post(
            "/admin/requests/requeue",
            &[("id", &sb), ("confirm", "yes")],
        )
        .await;
    assert_eq!(refused.status, 409);
    assert!(refused.text(".flash-error").contains("has been processed"));
    let done = console
        .post(
            "/admin/requests/reprocess",
            &[("id", &sb), ("id", &sc), ("confirm", "yes")],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    app.drain().await;
    let by_cli = app
        .with_conn(move |conn| {
            wharf::queue::lifecycle::reprocess(conn, &[a], &wharf::queue::lifecycle::By::cli("sam"))
        })
        .await
        .unwrap();
    assert_eq!(by_cli, [a]);
    app.drain().await;
    let rows = audit_rows(&app).await;
    let summary: Vec<(&str, &str, &str, &str, i64)> = rows
        .iter()
        .map(|r| (r.0.as_str(), r.1.as_str(), r.2.as_str(), r.3.as_str(), r.5))
        .collect();
    let (ida, both) = (a.to_string(), format!("{b}, {c}"));
    assert_eq!(
        summary,
        [
            (
                "console:ann",
                "console",
                "requests.requeue",
                ida.as_str(),
                1
            ),
            (
                "console:ann",
                "console",
                "requests.reprocess",
                both.as_str(),
                2
            ),
            ("sam", "cli", "requests.reprocess", ida.as_str(), 1),
        ]
    );
    assert!(
        rows.iter().all(|r| r.4.is_none()),
        "no filter on one/selected actions"
    );
    let empty = console
        .post("/admin/requests/requeue", &[("confirm", "yes")])
        .await;
    assert_eq!(empty.status, 400);
}

both_backends!(a_viewer_sees_no_buttons_and_cannot_act);
async fn a_viewer_sees_no_buttons_and_cannot_act(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let a = receive(&app, "wh", 1, &["S"], &body(1)).await;
    make_dead(&app, vec![a]).await;
    let mut viewer = Console::logged_in(&app, "vic", "viewer").await;
    for path in [
        "/admin/requests".to_string(),
        "/admin/requests?state=dead".to_string(),
        format!("/admin/requests/{a}"),
    ] {
        let page = viewer.page(&path).await;
        let posts = page.attrs("form[method=post]", "action");
        assert_eq!(posts, ["/admin/logout"], "{path}: only the logout form");
        assert_eq!(page.count("input[name=id]"), 0, "{path}");
        assert_eq!(page.count("form.bulk"), 0, "{path}");
    }
    let id = a.to_string();
    let refused = viewer
        .post(
            "/admin/requests/requeue",
            &[("id", &id), ("confirm", "yes")],
        )
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(state_of(&app, a).await, "dead");
    let mut operator = Console::logged_in(&app, "olga", "operator").await;
    let page = operator.page("/admin/requests?state=dead").await;
    assert_eq!(page.attrs("input[name=id]", "value"), [id]);
    assert_eq!(page.count("form.bulk"), 1);
    app.expect_leftovers("the dead request stays dead");
}

both_backends!(bodies_show_as_text_and_raw_is_the_exact_bytes);
async fn bodies_show_as_text_and_raw_is_the_exact_bytes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let hostile = "<m><note><![CDATA[<script>alert(1)</script> ]]> done]]></note>\
                   <x a=\"&quot;&gt;\"><img src=x onerror=alert(2)></x></m>";
    let first = receive(&app, "wh<b>", 7, &["<i>SKU</i>"], "<m><orig>1</orig></m>").await;
    let id = receive(&app, "wh<b>", 7, &["<i>SKU</i>"], hostile).await;
    app.expect_leftovers("the requests are read, not applied");
    let mut console = Console::logged_in(&app, "ann", "viewer").await;
    let page = console.page(&format!("/admin/requests/{id}")).await;
    assert_eq!(
        page.count("main script, main img, main i, main b"),
        0,
        "{}",
        page.body
    );
    let shown = page.text("pre.body");
    assert!(shown.contains("<script>alert(1)</script>"), "{shown}");
    assert!(shown.contains("]]>"), "{shown}");
    assert!(page.text("dl.summary").contains("wh<b>"));
    assert!(page.text("table.lines").contains("<i>SKU</i>"));
    // The conflict: this body beside the first one.
    assert!(page.text("dd.same-message").contains("conflict"));
    assert!(
        page.text("pre.peer").contains("<orig>1</orig>"),
        "{}",
        page.body
    );
    assert!(
        page.text("code.answer")
            .contains("Success - Message 7 Received")
    );
    let list = console.page("/admin/requests").await;
    assert_eq!(list.count("main i, main b"), 0);
    assert_eq!(ids(&list), [id, first]);

    let raw = console.get(&format!("/admin/requests/{id}/raw")).await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.body, hostile, "the exact stored bytes");
    assert_eq!(raw.headers["content-type"], "application/xml");
    assert_eq!(
        raw.headers["content-disposition"],
        format!("attachment; filename=\"request-{id}.xml\"").as_str()
    );
    assert_eq!(raw.headers["x-content-type-options"], "nosniff");
    assert_eq!(console.get("/admin/requests/999999/raw").await.status, 404);
    assert_eq!(console.get("/admin/requests/999999").await.status, 404);
}

both_backends!(viewing_a_failed_request_marks_its_failures_seen);
async fn viewing_a_failed_request_marks_its_failures_seen(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.worker.unknown_order_retry_secs = 0).await;
    let session = app.login().await;
    app.send_shipment(&session, "NO-SUCH", 11, &[("S", 1)], "T1")
        .await;
    app.drain().await;
    assert_eq!(unseen_failures(&app).await, 1);
    let id: i64 = app
        .with_conn(|c| requests::table.select(requests::id).first(c).unwrap())
        .await;
    let mut console = Console::logged_in(&app, "ann", "viewer").await;
    let page = console.page(&format!("/admin/requests/{id}")).await;
    assert!(page.text("p.report-counts").contains("1 failure(s)"));
    let report = page.text("table.report");
    assert!(
        report.contains("Failure") || report.contains("failure"),
        "{report}"
    );
    assert_eq!(
        page.attrs("dl.summary a[href^='/admin/orders/']", "href"),
        ["/admin/orders/NO-SUCH"]
    );
    assert_eq!(unseen_failures(&app).await, 0, "seen once viewed");
}

async fn unseen_failures(app: &TestApp) -> i64 {
    app.with_conn(|c| wharf::imports::store::unseen_failures(c, 10).unwrap().0)
        .await
}

both_backends!(rejections_show_masked_excerpts_page_by_page);
async fn rejections_show_masked_excerpts_page_by_page(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for i in 0..22 {
        let body = format!(
            "<Envelope><Body><login><username>u{i}</username><apiKey>TOPSECRET-{i}</apiKey>\
             </login><sessionId>SESSION-SECRET-{i}</sessionId><bad/></Body></Envelope>"
        );
        app.with_conn(move |c| {
            wharf::queue::record_rejection(
                c,
                Some("=HYPERLINK(\"http://x\",\"y\")"),
                Some("login"),
                "not a SOAP envelope",
                body.as_bytes(),
                64 * 1024,
            )
            .unwrap()
        })
        .await;
    }
    let mut console = Console::logged_in(&app, "ann", "viewer").await;
    let page = console.page("/admin/rejections?size=20").await;
    assert_eq!(page.count("tr[data-id]"), 20);
    assert!(!page.body.contains("TOPSECRET") && !page.body.contains("SESSION-SECRET"));
    assert!(page.text("pre.excerpt").contains("***"), "{}", page.body);
    assert!(page.text("td.reason").contains("not a SOAP envelope"));
    let next = next_link(&page).unwrap();
    // A new refusal between the pages does not shift the next one.
    app.with_conn(|c| wharf::queue::record_rejection(c, None, None, "late", b"<x/>", 100).unwrap())
        .await;
    let page2 = console.page(&next).await;
    assert_eq!(page2.count("tr[data-id]"), 2);
    assert_eq!(next_link(&page2), None);
    let csv = console.get("/admin/rejections?format=csv").await;
    assert_eq!(csv.status, 200);
    assert!(!csv.body.contains("TOPSECRET"));
    assert!(csv.body.contains("'=HYPERLINK"), "{}", csv.body);
    assert!(!csv.body.contains(",=HYPERLINK") && !csv.body.contains("\"=HYPERLINK"));

    // A refusal through the SOAP door: the session id it carried is masked too.
    let (status, _) = app
        .send_inventory("SESSION-NOT-VALID-42", 5, &[("S", 1, 1)])
        .await;
    assert_ne!(status, 200);
    let page = console.page("/admin/rejections?size=20").await;
    assert!(!page.body.contains("SESSION-NOT-VALID-42"), "{}", page.body);
    let csv = console.get("/admin/rejections?format=csv").await;
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(csv.body.as_bytes())
        .records()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 22 + 2, "{}", csv.body);
    assert!(rows[0][5].contains("<sessionId xsi:type=\"xsd:string\">***</sessionId>"));
}

both_backends!(csv_cells_are_neutralised);
async fn csv_cells_are_neutralised(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let sku = "=HYPERLINK(\"http://evil.example\",\"click\")";
    let id = receive(&app, "@caller", 1, &[sku, "+1", "SKU-OK"], &body(1)).await;
    app.drain().await;
    let mut console = Console::logged_in(&app, "ann", "viewer").await;
    let lines = console
        .get(&format!("/admin/requests/{id}/lines.csv"))
        .await;
    assert_eq!(lines.status, 200);
    assert!(
        lines.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let mut reader = csv::Reader::from_reader(lines.body.as_bytes());
    let skus: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[1].to_string())
        .collect();
    assert_eq!(
        skus,
        [format!("'{sku}"), "'+1".to_string(), "SKU-OK".to_string()]
    );
    let list = console.get("/admin/requests?format=csv").await;
    let mut reader = csv::Reader::from_reader(list.body.as_bytes());
    let row = reader.records().next().unwrap().unwrap();
    assert_eq!(&row[4], "'@caller");
    let by_sku = console
        .page(&format!("/admin/requests?sku={}", urlencode(sku)))
        .await;
    assert_eq!(ids(&by_sku), [id]);
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

both_backends!(search_goes_straight_to_the_record);
async fn search_goes_straight_to_the_record(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let one = receive(&app, "wh", 4242, &["S"], &body(4242)).await;
    receive(&app, "wh", 77, &["S"], &body(77)).await;
    let session = app.login().await;
    app.put_order("ORD-5", &[("MUG-1", 1)]).await;
    app.send_shipment(&session, "ORD-5", 77, &[("MUG-1", 1)], "T")
        .await;
    let product = serde_json::json!({"name": "Mug", "barcode": "5012345678900", "price": "7.50", "weight": 0.3});
    let (status, body) = app
        .api(reqwest::Method::PUT, "/products/MUG-1", Some(product))
        .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    app.drain().await;
    let mut console = Console::logged_in(&app, "ann", "viewer").await;
    let cases = [
        ("4242", format!("/admin/requests/{one}")),
        (" 4242 ", format!("/admin/requests/{one}")),
        ("77", "/admin/requests?seq=77".to_string()),
        ("MUG-1", "/admin/stock/MUG-1".to_string()),
        ("ORD-5", "/admin/orders/ORD-5".to_string()),
    ];
    for (q, want) in cases {
        let page = console
            .get(&format!("/admin/search?q={}", urlencode(q)))
            .await;
        assert_eq!(page.status, 303, "{q}: {}", page.body);
        assert_eq!(page.location(), want, "{q}");
    }
    let none = console.page("/admin/search?q=%3Cb%3Enothing").await;
    assert_eq!(none.text("h1"), "Nothing found");
    assert_eq!(none.count("main b"), 0, "the query shows as text");
    assert!(none.text("p.empty").contains("<b>nothing"));
    assert_eq!(
        none.attrs("input[name=q]", "value"),
        ["<b>nothing"],
        "the box keeps the query"
    );
    assert!(
        none.attrs("ul.searches a", "href")
            .contains(&"/admin/requests?sku=%3Cb%3Enothing".to_string())
    );
    let empty = console.page("/admin/search?q=").await;
    assert_eq!(empty.text("h1"), "Nothing found");
}
