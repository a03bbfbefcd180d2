//! Console tests: the data pages — import reports and their lines, the exchange log with the XML
//! sent and received, stock and a SKU's history — with every filter, page size, the keyset's next
//! page, CSV downloads (neutralised) and escaping.

use super::harness::{Console, Page};
use crate::both_backends;
use crate::export_failures::setup;
use crate::helpers::*;
use crate::warehouse_api::Behaviour;

both_backends!(
    imports_filter_page_and_download,
    import_detail_shows_lines_with_their_adjustments,
    stock_history_explains_the_number,
    stock_list_finds_skus_by_prefix_page_by_page,
    exports_filter_and_show_escaped_xml_sent_and_received,
);

fn today() -> String {
    chrono::Utc::now()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string()
}

fn yesterday() -> String {
    (chrono::Utc::now().date_naive() - chrono::Days::new(1))
        .format("%Y-%m-%d")
        .to_string()
}

/// The `data-id` of every row of the page's table.
fn ids(page: &Page) -> Vec<i64> {
    page.attrs("tbody tr[data-id]", "data-id")
        .iter()
        .map(|s| s.parse().unwrap())
        .collect()
}

/// The page's "next page" link.
fn next(page: &Page) -> Option<String> {
    page.attrs("a[rel=next]", "href").into_iter().next()
}

async fn imports_filter_page_and_download(backend: Backend) {
    // A shipment for an unknown order fails at once (no wait for the order to arrive).
    let app = TestApp::spawn_with(backend, |s| s.worker.unknown_order_retry_secs = 0).await;
    let s = app.login().await;
    // 23 inventory messages for SKU-1.., one with a formula-looking SKU, one stale line.
    for n in 1..=23i64 {
        let sku = format!("SKU-{n}");
        assert_eq!(app.send_inventory(&s, n, &[(&sku, 5, 10 + n)]).await.0, 200);
    }
    app.send_inventory(&s, 24, &[("=SUM(A1)", 1, 1), ("SKU-1", 4, 2)])
        .await;
    // A shipment for an order wharf does not know: a report with a failed line.
    app.send_shipment(&s, "NO-SUCH-ORDER", 25, &[("SKU-2", 1)], "T1")
        .await;
    app.drain().await;
    let mut c = Console::logged_in(&app, "vera", "viewer").await;

    let all = c.page("/admin/imports").await;
    assert_eq!(ids(&all).len(), 25, "{:?}", ids(&all));
    assert_eq!(ids(&all)[0], 25, "newest first");
    assert!(next(&all).is_none());

    let page1 = c.page("/admin/imports?kind=inventory&size=20").await;
    let first = ids(&page1);
    assert_eq!(first.len(), 20);
    assert_eq!(first[0], 24);
    let link = next(&page1).expect("a next page");
    assert!(link.contains("kind=inventory") && link.contains("size=20") && link.contains("after="));
    let page2 = c.page(&link).await;
    assert_eq!(ids(&page2), [4, 3, 2, 1]);
    assert!(next(&page2).is_none());

    let shipments = c.page("/admin/imports?kind=shipment").await;
    assert_eq!(ids(&shipments), [25]);
    let failed = c.page("/admin/imports?result=failure").await;
    assert_eq!(ids(&failed), [25]);
    let superseded = c.page("/admin/imports?result=Superseded").await;
    assert_eq!(ids(&superseded), [24]);
    assert!(ids(&c.page("/admin/imports?result=duplicate").await).is_empty());
    let sku1 = c.page("/admin/imports?sku=SKU-1").await;
    assert_eq!(ids(&sku1), [24, 1]);
    let dated = c
        .page(&format!("/admin/imports?from={}&to={}", today(), today()))
        .await;
    assert_eq!(ids(&dated).len(), 25);
    let before = c.page(&format!("/admin/imports?to={}", yesterday())).await;
    assert!(ids(&before).is_empty());
    for size in [20, 50, 100, 200] {
        let p = c.page(&format!("/admin/imports?size={size}")).await;
        assert_eq!(ids(&p).len(), 25.min(size));
    }
    for bad in [
        "size=30",
        "kind=orders",
        "result=ok",
        "from=yesterday",
        "after=x",
    ] {
        let p = c.get(&format!("/admin/imports?{bad}")).await;
        assert_eq!(p.status, 400, "{bad}: {}", p.body);
        let field = bad.split('=').next().unwrap();
        assert!(p.body.contains(field), "{bad}: {}", p.body);
    }

    let csv = c
        .get("/admin/imports?kind=inventory&sku=SKU-1&format=csv")
        .await;
    assert_eq!(csv.status, 200);
    assert!(
        csv.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("imports.csv")
    );
    let rows: Vec<&str> = csv.body.lines().collect();
    assert_eq!(rows.len(), 3, "{}", csv.body);
    assert!(rows[1].starts_with("24,inventory.update,24,1,0,1,0,"));
    let lines = c.get("/admin/imports/24?format=csv").await;
    assert!(lines.body.contains("\n24,1,1,'=SUM(A1),"), "{}", lines.body);
    assert!(!lines.body.contains(",=SUM"), "{}", lines.body);
}

async fn import_detail_shows_lines_with_their_adjustments(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.inventory.adjust = wharf::config::Adjust::UnsentOrders;
    })
    .await;
    assert!(app.put_order("100001", &[("SKU-A", 2)]).await.0 < 300);
    let s = app.login().await;
    let lines: Vec<(String, i64, i64)> = (1..=25).map(|n| (format!("L{n:02}"), n, n)).collect();
    let mut with_a: Vec<(&str, i64, i64)> = lines
        .iter()
        .map(|(sku, q, seq)| (sku.as_str(), *q, *seq))
        .collect();
    with_a.push(("SKU-A", 7, 3));
    app.send_inventory(&s, 9, &with_a).await;
    app.drain().await;
    let mut c = Console::logged_in(&app, "ann", "operator").await;

    let page = c.page("/admin/imports/1?size=20").await;
    assert_eq!(page.count("table.lines tbody tr"), 20);
    assert_eq!(
        page.attrs("a[href='/admin/requests/1']", "href").len(),
        1,
        "links to its request"
    );
    assert!(page.text("dl.summary").contains("26 success"));
    let rest = c.page(&next(&page).expect("more lines")).await;
    assert_eq!(rest.count("table.lines tbody tr"), 6);
    let a = rest.texts("tr[data-line='26'] td");
    // line, seq, SKU, source, received, − unsent orders, − quotes, stored, result, message
    assert_eq!(
        a[..9],
        ["26", "3", "SKU-A", "default", "7", "2", "0", "5", "Success"]
    );

    let only_a = c.page("/admin/imports/1?sku=SKU-A").await;
    assert_eq!(only_a.count("table.lines tbody tr"), 1);
    let none = c.page("/admin/imports/1?result=failure").await;
    assert_eq!(none.count("table.lines tbody tr"), 0);
    assert_eq!(c.get("/admin/imports/99").await.status, 404);
    assert_eq!(c.get("/admin/imports/1?result=bad").await.status, 400);
}

async fn stock_history_explains_the_number(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.inventory.adjust = wharf::config::Adjust::UnsentOrders;
    })
    .await;
    let s = app.login().await;
    assert_eq!(app.send_inventory(&s, 1, &[("SKU-A", 5, 10)]).await.0, 200);
    app.drain().await;
    assert!(app.put_order("100007", &[("SKU-A", 1)]).await.0 < 300);
    assert_eq!(app.send_inventory(&s, 2, &[("SKU-A", 3, 9)]).await.0, 200);
    assert_eq!(app.send_inventory(&s, 3, &[("SKU-A", 8, 10)]).await.0, 200);
    assert_eq!(
        app.send_inventory(&s, 4, &[("SKU-A", 9, 11), ("SKU-B", 2, 1)])
            .await
            .0,
        200
    );
    app.drain().await;
    let mut c = Console::logged_in(&app, "vera", "viewer").await;

    let page = c.page("/admin/stock/SKU-A").await;
    assert_eq!(page.text("table.levels td.qty"), "8");
    assert_eq!(page.text("table.levels td.seq"), "11");
    let rows = page.attrs("table.history tbody tr", "data-request");
    assert_eq!(rows, ["4", "3", "2", "1"], "newest first");
    let cells = |req: &str| page.texts(&format!("tr[data-request='{req}'] td"));
    // request, kind, source, seq, received, − orders, − quotes, stored, result, message
    assert_eq!(
        cells("4")[1..9],
        [
            "inventory.update",
            "default",
            "11",
            "9",
            "1",
            "0",
            "8",
            "Success"
        ]
    );
    assert_eq!(cells("3")[8], "Duplicate");
    assert_eq!(cells("2")[8], "Superseded");
    assert!(cells("2")[9].contains("superseded by inventory record 10"));
    assert_eq!(cells("1")[3..9], ["10", "5", "0", "0", "5", "Success"]);
    assert_eq!(
        page.attrs("tr[data-request='2'] a", "href")[0],
        "/admin/requests/2"
    );
    // What a line arriving now would subtract: the order not exported yet.
    assert!(page.text("p.adjusting").contains("1 unit(s) on 1 order(s)"));
    assert_eq!(page.text("table.unsent td"), "100007");

    let paged = c.page("/admin/stock/SKU-A?size=20").await;
    assert!(next(&paged).is_none());
    assert_eq!(c.get("/admin/stock/SKU-A?after=4").await.status, 400);
    let older = c.page("/admin/stock/SKU-A?after=3.1").await;
    assert_eq!(
        older.attrs("table.history tbody tr", "data-request"),
        ["2", "1"]
    );
    let at = c.page("/admin/stock/SKU-A?source=default").await;
    assert_eq!(at.count("table.history tbody tr"), 4);
    let elsewhere = c.get("/admin/stock/SKU-A?source=nowhere").await;
    assert_eq!(elsewhere.status, 404);
    assert_eq!(c.get("/admin/stock/NO-SUCH").await.status, 404);

    let csv = c.get("/admin/stock/SKU-A?format=csv").await;
    assert_eq!(csv.status, 200);
    assert_eq!(csv.body.lines().count(), 5, "{}", csv.body);
    assert!(
        csv.body
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("4,1,11,SKU-A,default,9,1,0,8,Success,")
    );
}

async fn stock_list_finds_skus_by_prefix_page_by_page(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    let lines: Vec<(String, i64, i64)> = (1..=25).map(|n| (format!("AB-{n:02}"), n, 1)).collect();
    let mut all: Vec<(&str, i64, i64)> =
        lines.iter().map(|(k, q, s)| (k.as_str(), *q, *s)).collect();
    all.extend([("ab-lower", 1, 1), ("AC-1", 3, 1), ("@cmd", 4, 1)]);
    app.send_inventory(&s, 1, &all).await;
    app.drain().await;
    let mut c = Console::logged_in(&app, "vera", "viewer").await;

    let skus = |p: &Page| p.attrs("tbody tr[data-sku]", "data-sku");
    let ab = c.page("/admin/stock?sku=AB-&size=20").await;
    assert_eq!(skus(&ab).len(), 20);
    assert_eq!(skus(&ab)[0], "AB-01");
    let rest = c.page(&next(&ab).expect("a next page")).await;
    assert_eq!(skus(&rest), ["AB-21", "AB-22", "AB-23", "AB-24", "AB-25"]);
    assert!(next(&rest).is_none());
    assert_eq!(skus(&c.page("/admin/stock?sku=AC").await), ["AC-1"]);
    assert_eq!(skus(&c.page("/admin/stock?sku=ab").await), ["ab-lower"]);
    let every = c.page("/admin/stock?size=50").await;
    assert_eq!(skus(&every).len(), 28);
    assert_eq!(skus(&every)[0], "@cmd", "byte-wise order");
    assert_eq!(every.text("tr[data-sku='AC-1'] td.qty"), "3");
    let csv = c.get("/admin/stock?format=csv").await;
    assert!(csv.body.contains("\n'@cmd,default,4,1,"), "{}", csv.body);
    assert_eq!(c.get("/admin/stock?size=10").await.status, 400);
}

async fn exports_filter_and_show_escaped_xml_sent_and_received(backend: Backend) {
    let (app, sim) = setup(backend, |_| {}).await;
    let hostile = "<script>alert(1)</script>]]>";
    assert!(app.put_order("L-1", &[(hostile, 1)]).await.0 < 300);
    assert!(app.put_order("L-2", &[("B", 1)]).await.0 < 300);
    sim.set_behaviour(Behaviour {
        fail: ["L-2".to_string()].into(),
        ..Behaviour::default()
    });
    let ex =
        wharf::channels::warehouse::Exporter::new(app.pool.clone(), app.settings.clone()).unwrap();
    ex.export_orders().await.unwrap();
    app.put_order("L-3", &[("A", 1)]).await;
    sim.set_behaviour(Behaviour {
        http_500: 1,
        ..Behaviour::default()
    });
    ex.export_orders().await.unwrap();
    let mut c = Console::logged_in(&app, "vera", "viewer").await;

    let all = c.page("/admin/exports").await;
    let exports = ids(&all);
    assert_eq!(exports.len(), 2, "{}", all.body);
    let (failed, answered) = (exports[0], exports[1]);
    assert_eq!(
        all.text(&format!("tr[data-id='{failed}'] td.outcome")),
        "http_error"
    );
    assert_eq!(ids(&c.page("/admin/exports?kind=order").await), exports);
    assert!(ids(&c.page("/admin/exports?kind=product").await).is_empty());
    assert_eq!(
        ids(&c.page("/admin/exports?outcome=http_error").await),
        [failed]
    );
    assert_eq!(ids(&c.page("/admin/exports?outcome=ok").await), [answered]);
    assert_eq!(ids(&c.page("/admin/exports?failures=1").await), [answered]);
    assert_eq!(ids(&c.page("/admin/exports?ref=L-2").await), [answered]);
    assert_eq!(
        ids(&c.page(&format!("/admin/exports?from={}", today())).await),
        exports
    );
    assert!(ids(&c.page(&format!("/admin/exports?to={}", yesterday())).await).is_empty());
    let first = c.page("/admin/exports?size=20").await;
    assert!(next(&first).is_none());
    assert_eq!(c.get("/admin/exports?outcome=fine").await.status, 400);
    assert_eq!(c.get("/admin/exports?size=7").await.status, 400);
    let csv = c.get("/admin/exports?format=csv").await;
    assert_eq!(csv.body.lines().count(), 3, "{}", csv.body);

    let detail = c.page(&format!("/admin/exports/{answered}")).await;
    let verdicts = detail.texts("table.lines td.result");
    assert_eq!(verdicts.len(), 2, "{}", detail.body);
    let sent = detail.text("pre.sent");
    // The document carries the SKU in CDATA (its `]]>` split in two): shown as text, re-indented.
    assert!(
        sent.contains("externalReference=<script>alert(1)</script>]]]]><![CDATA[>"),
        "{sent}"
    );
    assert!(
        detail
            .body
            .contains("&#60;imports&#62;\n  &#60;import type="),
        "pretty-printed and escaped: {}",
        detail.body
    );
    assert!(detail.text("pre.received").contains("L-2"));
    assert_eq!(
        detail.count("script"),
        1,
        "only console.js: {}",
        detail.body
    );
    assert!(!detail.body.contains("<script>alert"));
    let raw = c.get(&format!("/admin/exports/{answered}/sent.xml")).await;
    assert_eq!(raw.status, 200);
    assert!(
        raw.headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(raw.headers["content-type"], "application/octet-stream");
    assert!(
        raw.body
            .contains("<script>alert(1)</script>]]]]><![CDATA[>")
    );
    let answer = c
        .get(&format!("/admin/exports/{answered}/received.txt"))
        .await;
    assert!(answer.body.contains("L-2"));

    let unanswered = c.page(&format!("/admin/exports/{failed}")).await;
    assert!(unanswered.text("dl.summary").contains("HTTP 500"));
    assert_eq!(unanswered.count("table.lines"), 0);
    assert_eq!(c.get("/admin/exports/999999").await.status, 404);
    assert_eq!(
        c.get(&format!("/admin/exports/{failed}/other"))
            .await
            .status,
        404
    );
    sim.stop().await;
}
