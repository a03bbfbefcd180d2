//! Console tests of the file channels (issue 16): `/admin/files` (each channel's troubles and
//! counts, the exchanges with their filters and pages), an exchange's page with its body
//! pretty-printed, the dashboard's line, marking a failed shipment file seen (operator only, CSRF,
//! a compare-and-set, the audit row, its incident clearing), and the order page's file lines.
//!
//! The exchanges are inserted as the export and import lanes write them (see
//! `crate::sftp_ops::insert_file`).

use diesel::prelude::*;
use scraper::Selector;
use wharf::db::schema::{audit_log, file_exchanges as fx, outbound_tasks as t, shipments};

use super::harness::{Console, Page};
use crate::alerts::{later, monitor};
use crate::both_backends;
use crate::helpers::{Backend, TestApp};
use crate::sftp_ops::{NewFile, insert_file};
use crate::sshd::Sshd;

both_backends!(
    the_files_page_lists_filters_and_shows_an_exchange,
    an_operator_marks_a_failed_file_seen_and_its_incident_clears,
    an_order_page_tells_the_file_it_went_out_in_and_its_shipment_came_in,
);

async fn app_with_dropbox(backend: Backend, sshd: &Sshd) -> TestApp {
    let c = sshd.channel("dropbox");
    TestApp::spawn_with(backend, move |s| s.channels.push(c)).await
}

/// The exchange ids of the list's rows, in order.
fn rows(page: &Page) -> Vec<i64> {
    page.attrs("table.files tbody tr[data-id]", "data-id")
        .iter()
        .map(|id| id.parse().unwrap())
        .collect()
}

/// The body as the page shows it, whitespace kept.
fn body_text(page: &Page) -> String {
    let sel = Selector::parse("pre.body").unwrap();
    page.html
        .select(&sel)
        .next()
        .unwrap_or_else(|| panic!("no body in\n{}", page.body))
        .text()
        .collect()
}

/// The four files of a day: an order file sent, a shipment file applied, one failed, one stuck.
async fn four_files(app: &TestApp) -> [i64; 4] {
    let out = insert_file(
        app,
        NewFile::order_file(
            "orders_dropbox_20261204T101500Z_1.xml",
            2,
            "<orders><order><id>100042</id></order><order><id>100043</id></order></orders>",
        ),
    )
    .await;
    let applied = insert_file(
        app,
        NewFile {
            request_id: Some(7),
            order: Some("100042".into()),
            ..NewFile::shipment_file("ship_100042.xml", "applied")
        },
    )
    .await;
    let failed = insert_file(
        app,
        NewFile::failed(
            "broken.xml",
            "the file is not a shipment document: unexpected end of file",
            "<shipment><order>1",
        ),
    )
    .await;
    let stuck = insert_file(
        app,
        NewFile {
            runs: 3,
            ..NewFile::shipment_file("slow.xml", "claimed")
        },
    )
    .await;
    [out, applied, failed, stuck]
}

async fn the_files_page_lists_filters_and_shows_an_exchange(backend: Backend) {
    let sshd = Sshd::start();
    let app = app_with_dropbox(backend, &sshd).await;
    app.expect_leftovers("a shipment file stuck in processing/ is what the page shows");
    let [out, applied, failed, stuck] = four_files(&app).await;
    app.with_conn(|c| {
        wharf::channels::sftp::store::set_trouble(
            c,
            "dropbox",
            wharf::channels::sftp::client::Trouble::Connection,
            "cannot connect to 127.0.0.1:22: connection refused",
            wharf::db::now(),
        )
        .unwrap()
    })
    .await;
    let mut vic = Console::logged_in(&app, "vic", "viewer").await;

    // The dashboard's line: what is wrong with the channel now, what waits for support.
    let dashboard = vic.page("/admin").await;
    assert_eq!(
        dashboard.text("section.card.files li[data-channel=dropbox]"),
        "dropbox: connection , 1 failed not seen , 1 stuck"
    );

    let page = vic.page("/admin/files").await;
    assert_eq!(page.text("nav a[aria-current=page]"), "Files");
    assert_eq!(rows(&page), [stuck, failed, applied, out]);
    let card = "section.file-channel[data-channel=dropbox]";
    let trouble = page.text(&format!("{card} li.trouble[data-trouble=connection]"));
    assert!(
        trouble.starts_with("connection since ")
            && trouble.ends_with(": cannot connect to 127.0.0.1:22: connection refused"),
        "{trouble}"
    );
    assert_eq!(page.text(&format!("{card} dd.unseen")), "1");
    assert_eq!(page.text(&format!("{card} dd.stuck")), "1");
    assert_eq!(
        page.text(&format!(
            "{card} tr[data-direction=in][data-state=failed] td.num"
        )),
        "1"
    );
    let row = |id: i64, cell: &str| page.text(&format!("tr[data-id=\"{id}\"] td.{cell}"));
    assert_eq!(row(out, "name"), "orders_dropbox_20261204T101500Z_1.xml");
    assert_eq!(row(out, "what"), "2 order(s)");
    assert_eq!(row(out, "size"), "77 B");
    assert_eq!(row(applied, "what"), "order 100042 , request #7");
    assert_eq!(row(failed, "state"), "failed not seen");
    assert_eq!(
        row(failed, "error"),
        "the file is not a shipment document: unexpected end of file"
    );
    // A viewer has no button to mark it seen.
    assert_eq!(page.count("form[action$=\"/seen\"]"), 0);

    for (query, expected) in [
        ("?direction=in", vec![stuck, failed, applied]),
        ("?state=failed", vec![failed]),
        ("?channel=dropbox&direction=out", vec![out]),
        ("?direction=in&size=20&after=", vec![stuck, failed, applied]),
    ] {
        let page = vic.page(&format!("/admin/files{query}")).await;
        assert_eq!(rows(&page), expected, "{query}");
    }
    let page = vic.get("/admin/files?state=lost").await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("state"), "{}", page.body);
    let page = vic.get("/admin/files?channel=amazon").await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(
        page.body
            .contains("use one of the configured file channels: dropbox")
    );

    // An order file's page: its orders (from their tasks' batch) and the document, indented.
    app.with_conn(|c| {
        for order in ["100042", "100043"] {
            diesel::insert_into(t::table)
                .values((
                    t::channel.eq("dropbox"),
                    t::action.eq("order.insert"),
                    t::subject.eq(order),
                    t::state.eq("done"),
                    t::batch_id.eq("orders_dropbox_20261204T101500Z_1.xml"),
                    t::created_at.eq(wharf::db::now()),
                    t::updated_at.eq(wharf::db::now()),
                ))
                .execute(c)
                .unwrap();
        }
    })
    .await;
    let page = vic.page(&format!("/admin/files/{out}")).await;
    assert_eq!(
        page.text("h1"),
        "File orders_dropbox_20261204T101500Z_1.xml"
    );
    assert_eq!(page.text("dd.orders"), "2: 100042 , 100043");
    assert_eq!(
        page.attrs("dd.orders a", "href"),
        ["/admin/orders/100042", "/admin/orders/100043"]
    );
    assert_eq!(
        body_text(&page),
        "<orders>\n  <order>\n    <id>100042</id>\n  </order>\n  <order>\n    <id>100043</id>\n  </order>\n</orders>"
    );
    // A failed file's page shows it as read, however broken.
    let page = vic.page(&format!("/admin/files/{failed}")).await;
    assert_eq!(body_text(&page), "<shipment><order>1");
    assert_eq!(page.text("dd.state"), "failed (not seen by support)");
    let page = vic.page(&format!("/admin/files/{applied}")).await;
    assert_eq!(page.attrs("dd.request a", "href"), ["/admin/requests/7"]);
    assert_eq!(page.attrs("dd.order a", "href"), ["/admin/orders/100042"]);
    assert_eq!(vic.get("/admin/files/999999").await.status, 404);
}

async fn an_operator_marks_a_failed_file_seen_and_its_incident_clears(backend: Backend) {
    let sshd = Sshd::start();
    let app = app_with_dropbox(backend, &sshd).await;
    app.expect_leftovers("a shipment file stuck in processing/ is what the page shows");
    let [_, applied, failed, _] = four_files(&app).await;
    let opened = monitor(&app, later(0)).await.opened;
    assert_eq!(opened.len(), 2, "the failed and the stuck file");

    // A viewer may not.
    let mut vic = Console::logged_in(&app, "vic", "viewer").await;
    vic.page(&format!("/admin/files/{failed}")).await;
    let refused = vic.post(&format!("/admin/files/{failed}/seen"), &[]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    // Nor a form without the session's token.
    let mut ann = Console::logged_in(&app, "ann", "operator").await;
    let page = ann.page(&format!("/admin/files/{failed}")).await;
    assert_eq!(page.count("form[action$=\"/seen\"] button"), 1);
    let forged = ann
        .post_raw(
            &format!("/admin/files/{failed}/seen"),
            &[("_csrf", "not-the-token")],
            true,
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let seen_at = |id: i64| {
        app.with_conn(move |c| {
            fx::table
                .find(id)
                .select(fx::seen_at)
                .first::<Option<chrono::NaiveDateTime>>(c)
                .unwrap()
        })
    };
    assert_eq!(seen_at(failed).await, None);

    let done = ann.post(&format!("/admin/files/{failed}/seen"), &[]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.text("p.flash")
            .starts_with("The failed file is marked seen"),
        "{}",
        done.body
    );
    assert_eq!(
        done.text("ul.done-items li"),
        format!(
            "#{failed} broken.xml of channel dropbox (the file is not a shipment document: \
             unexpected end of file)"
        )
    );
    assert!(seen_at(failed).await.is_some());
    let page = ann.page(&format!("/admin/files/{failed}")).await;
    assert_eq!(page.count("form[action$=\"/seen\"]"), 0);
    assert!(page.text("dd.state").starts_with("failed (seen "));
    let audit: Vec<(String, String, String, String, i64)> = app
        .with_conn(|c| {
            audit_log::table
                .select((
                    audit_log::actor,
                    audit_log::via,
                    audit_log::action,
                    audit_log::subjects,
                    audit_log::count,
                ))
                .load(c)
                .unwrap()
        })
        .await;
    assert_eq!(
        audit,
        [(
            "console:ann".to_string(),
            "console".to_string(),
            "files.seen".to_string(),
            failed.to_string(),
            1
        )]
    );
    // Twice, or on a file that did not fail: nothing changes.
    for id in [failed, applied] {
        let again = ann.post(&format!("/admin/files/{id}/seen"), &[]).await;
        assert_eq!(again.status, 409, "{}", again.body);
    }
    let pass = monitor(&app, later(5)).await;
    assert_eq!(pass.cleared, opened[..1], "{pass:?}");
    let open = app
        .with_conn(|c| wharf::alerts::open_incidents(c).unwrap())
        .await;
    assert_eq!(
        open.iter()
            .filter(|i| i.clear_since.is_none())
            .map(|i| i.key.as_str())
            .collect::<Vec<_>>(),
        ["files:dropbox:stuck"]
    );
}

async fn an_order_page_tells_the_file_it_went_out_in_and_its_shipment_came_in(backend: Backend) {
    let sshd = Sshd::start();
    let app = app_with_dropbox(backend, &sshd).await;
    let (status, body) = app.put_order("100042", &[("A", 1)]).await;
    assert_eq!(status, 201, "{body}");
    let name = "orders_dropbox_20261204T101500Z_1.xml";
    // The export lane sent it in an order file: its task is done with the file's name as batch.
    let sent = app
        .with_conn(move |c| {
            diesel::update(
                t::table
                    .filter(t::channel.eq("dropbox"))
                    .filter(t::subject.eq("100042")),
            )
            .set((t::state.eq("done"), t::batch_id.eq(name)))
            .execute(c)
            .unwrap()
        })
        .await;
    assert_eq!(sent, 1, "the order has one task on the file channel");
    let out = insert_file(&app, NewFile::order_file(name, 1, "<orders/>")).await;
    // The import lane stored a shipment file as a shipment request, applied by the worker.
    let session = app.login().await;
    app.send_shipment(&session, "100042", 1, &[("A", 1)], "TRK-1")
        .await;
    app.drain().await;
    let request: i64 = app
        .with_conn(|c| {
            shipments::table
                .select(shipments::request_id.assume_not_null())
                .first(c)
                .unwrap()
        })
        .await;
    let came = insert_file(
        &app,
        NewFile {
            request_id: Some(request),
            order: Some("100042".into()),
            ..NewFile::shipment_file("ship_100042.xml", "applied")
        },
    )
    .await;

    let mut vic = Console::logged_in(&app, "vic", "viewer").await;
    let page = vic.page("/admin/orders/100042").await;
    let steps = page.texts("li[data-kind=file-out], li[data-kind=file-in]");
    assert_eq!(steps.len(), 2, "{}", page.body);
    assert!(
        steps[0].contains(&format!("Went out in file {name}")),
        "{steps:?}"
    );
    assert!(
        steps[0].contains("channel dropbox, 1 order(s) in the file"),
        "{steps:?}"
    );
    assert!(
        steps[1].contains("Shipment came in file ship_100042.xml"),
        "{steps:?}"
    );
    assert_eq!(
        page.attrs("li[data-kind=file-out] a", "href"),
        [format!("/admin/files/{out}")]
    );
    assert_eq!(
        page.attrs("li[data-kind=file-in] a", "href"),
        [format!("/admin/files/{came}")]
    );
}
