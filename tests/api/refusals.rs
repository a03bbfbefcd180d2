//! Refused messages cannot fill the disk, and every message is either stored or refused for a reason:
//! unauthenticated refusals are stored a few a minute per kind and client with a small excerpt and
//! counted beyond that, the warehouse's own refusals are all stored with the large excerpt,
//! characters XML 1.0 cannot carry and a second root element are Client faults naming the field
//! (recorded on PostgreSQL too), and tracking numbers are limited per shipment and stored in chunks.

use std::time::{Duration, Instant};

use crate::both_backends;
use crate::creds::wharf_ok;
use crate::helpers::{Backend, TestApp, faultstring, inventory_envelope};

both_backends!(
    anonymous_floods_store_at_most_the_limit_and_count_the_rest,
    the_warehouse_s_refusals_are_all_stored_with_the_large_excerpt,
    characters_xml_cannot_carry_are_refused_naming_the_field,
    a_second_root_element_is_refused,
    tracking_numbers_are_limited_per_shipment_and_stored_beyond_the_old_statement_limit,
    quoted_names_cannot_make_a_refusal_row_large,
    compressed_bodies_are_refused_unread,
);

const SOAP_OPEN: &str = "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\" \
                         xmlns:ns1=\"urn:Magento\"><SOAP-ENV:Body>";
const SOAP_CLOSE: &str = "</SOAP-ENV:Body></SOAP-ENV:Envelope>";

/// Every stored rejection: (caller, reason, excerpt).
async fn rejections(app: &TestApp) -> Vec<(Option<String>, String, String)> {
    app.with_conn(|c| {
        use diesel::prelude::*;
        use wharf::db::schema::rejections as r;
        r::table
            .order(r::id)
            .select((r::caller, r::reason, r::body_excerpt))
            .load(c)
            .unwrap()
    })
    .await
}

/// Asserts a SOAP Client fault and returns its faultstring.
fn client_fault(status: u16, body: &str) -> String {
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("<faultcode>SOAP-ENV:Client</faultcode>"),
        "{body}"
    );
    faultstring(body)
}

async fn anonymous_floods_store_at_most_the_limit_and_count_the_rest(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.soap.anonymous_rejections_per_minute = 4).await;
    let junk = "junk ".repeat(64 * 1024 / 5);
    // Well-formed SOAP under a session that does not exist, padded to 64 KiB.
    let unauthenticated = inventory_envelope("no-such-session-0123456789", 1, &[("A", 1, 1)])
        .replace(
            "<messageSeqId",
            &format!("<!-- {} --><messageSeqId", "p".repeat(64 * 1024)),
        );
    for _ in 0..20 {
        let (status, body) = app.post_soap(junk.clone()).await;
        client_fault(status, &body);
        let (status, body) = app.post_soap(unauthenticated.clone()).await;
        assert_eq!(
            faultstring(&body),
            "Session expired. Try to relogin.",
            "{status}"
        );
    }

    // Support sees the first four of each kind, and how many more were counted.
    let deadline = Instant::now() + Duration::from_secs(20);
    let shown = loop {
        let shown = wharf_ok(&app, &["requests", "rejected", "--limit", "100"]).await;
        if shown.contains("16 more refused messages (not-envelope) from 127.0.0.1")
            && shown.contains("16 more refused messages (unauthenticated) from 127.0.0.1")
        {
            break shown;
        }
        assert!(
            Instant::now() < deadline,
            "the counts never appeared:\n{shown}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(shown.lines().count(), 10, "{shown}");
    let rows = rejections(&app).await;
    let stored: Vec<_> = rows.iter().filter(|(_, _, e)| !e.is_empty()).collect();
    assert_eq!(stored.len(), 8, "{rows:?}");
    for (caller, reason, excerpt) in &stored {
        assert_eq!(caller, &None, "{reason}");
        assert!(
            excerpt.len() <= 1024,
            "{} bytes kept: {reason}",
            excerpt.len()
        );
    }
    assert_eq!(app.queue_depth().await, vec![]);
}

async fn the_warehouse_s_refusals_are_all_stored_with_the_large_excerpt(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.soap.anonymous_rejections_per_minute = 2).await;
    let s = app.login().await;
    let padding = format!("<!-- {} -->", "p".repeat(8 * 1024));
    for seq in 1..=6 {
        let bad = inventory_envelope(&s, seq, &[("A", 5000, seq)])
            .replace(">5000</value>", ">one</value>")
            .replace("<messageSeqId", &format!("{padding}<messageSeqId"));
        let (status, body) = app.post_soap(bad).await;
        assert!(
            client_fault(status, &body).contains("skusQty[1].value"),
            "{body}"
        );
    }
    // Refused before its session is read (not XML 1.0), yet recognised by its session.
    for seq in 7..=8 {
        let bad = inventory_envelope(&s, seq, &[("A\u{0}B", 1, seq)])
            .replace("<messageSeqId", &format!("{padding}<messageSeqId"));
        let (status, body) = app.post_soap(bad).await;
        assert!(
            client_fault(status, &body).starts_with("Invalid skusQty[1].key: "),
            "{body}"
        );
    }
    let rows = rejections(&app).await;
    assert_eq!(rows.len(), 8, "{rows:?}");
    for (caller, reason, excerpt) in &rows {
        assert_eq!(caller.as_deref(), Some("orderflow"), "{reason}");
        assert!(
            excerpt.len() > 8 * 1024,
            "{} bytes kept: {reason}",
            excerpt.len()
        );
        assert!(!excerpt.contains(&s), "the session is masked");
        assert!(!excerpt.contains('\0'));
    }
    assert!(rows[6].2.contains("A\u{2400}B"), "{}", &rows[6].2[..2000]);
}

async fn characters_xml_cannot_carry_are_refused_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    assert_eq!(app.put_order("100000042", &[("A", 2)]).await.0, 201);
    let feed_before = app.feed().await.len();
    let mut refused = 0;
    for bad in ["\u{0}", "\u{1}", "\u{1b}[2J", "&#1;", "&#xFFFE;"] {
        let inventory = |sku: &str, qty: &str, seq_sku: &str| {
            inventory_envelope(&s, 5, &[("A", 7, 10)])
                .replacen(">A</key>", &format!(">{sku}</key>"), 1)
                .replace(">7</value>", &format!(">{qty}</value>"))
                .replacen(
                    ">A</key><value xsi:type=\"xsd:long\">",
                    &format!(">{seq_sku}</key><value xsi:type=\"xsd:long\">"),
                    1,
                )
        };
        let shipment = format!(
            "{SOAP_OPEN}<ns1:orderflowShipmentCreate><sessionId>{s}</sessionId>\
             <orderIncrementId>100000042</orderIncrementId><skuQty><item><key>A</key><value>2</value></item></skuQty>\
             <courierName>DPD{bad}</courierName><messageSeqId>9</messageSeqId></ns1:orderflowShipmentCreate>{SOAP_CLOSE}"
        );
        let cases = [
            (inventory(&format!("A{bad}"), "7", "A"), "skusQty[1].key"),
            (inventory("A", &format!("7{bad}"), "A"), "skusQty[1].value"),
            (inventory("A", "7", &format!("{bad}A")), "skusSeqId[1].key"),
            (shipment, "courierName"),
        ];
        for (body, field) in cases {
            let (status, answer) = app.post_soap(body).await;
            let reason = client_fault(status, &answer);
            assert!(
                reason.starts_with(&format!("Invalid {field}: "))
                    && reason.contains("not allowed in XML 1.0"),
                "{bad:?} in {field}: {reason}"
            );
            refused += 1;
        }
    }
    // Nothing of them is stored: no request, no stock, no feed event, no shipment.
    assert_eq!(app.drain().await, 0);
    assert_eq!(app.queue_depth().await, vec![]);
    assert_eq!(app.stock_of("A").await, None);
    assert_eq!(app.feed().await.len(), feed_before);
    let (_, order) = app
        .api(reqwest::Method::GET, "/orders/100000042", None)
        .await;
    assert_eq!(order["status"], "processing", "{order}");
    // Every refusal is recorded, with who sent it (on PostgreSQL too, NUL and all).
    let rows = rejections(&app).await;
    assert_eq!(rows.len(), refused, "{rows:?}");
    assert!(
        rows.iter()
            .all(|(c, _, _)| c.as_deref() == Some("orderflow"))
    );
    assert!(
        rows.iter()
            .all(|(_, r, e)| !r.contains('\0') && !e.contains('\0'))
    );
}

async fn a_second_root_element_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    let good = inventory_envelope(&s, 5, &[("A", 3, 10)]);
    let second = inventory_envelope(&s, 6, &[("A", 9, 11)]);
    for body in [
        format!("{good}{second}"),
        format!("{good}<x/>"),
        format!("{good}junk"),
    ] {
        let (status, answer) = app.post_soap(body).await;
        let reason = client_fault(status, &answer);
        assert!(reason.contains("after the Envelope"), "{reason}");
    }
    assert_eq!(app.drain().await, 0);
    assert_eq!(app.stock_of("A").await, None);
    assert_eq!(rejections(&app).await.len(), 3);
    // The same message alone is stored and applied.
    let (status, answer) = app.post_soap(good).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(app.drain().await, 1);
    assert_eq!(app.stock_of("A").await, Some((3, 10)));
}

async fn tracking_numbers_are_limited_per_shipment_and_stored_beyond_the_old_statement_limit(
    backend: Backend,
) {
    // 30 000 numbers: more than one insert could bind on SQLite (10 922 rows of three) or
    // PostgreSQL (21 845).
    const LIMIT: usize = 30_000;
    let app = TestApp::spawn_with(backend, |s| s.soap.max_tracking_numbers = LIMIT).await;
    let s = app.login().await;
    assert_eq!(app.put_order("100000007", &[("A", 2)]).await.0, 201);
    let shipment = |seq: i64, numbers: usize| {
        let tracks: String = (1..=numbers)
            .map(|i| format!("<item>TRK{i}</item>"))
            .collect();
        format!(
            "{SOAP_OPEN}<ns1:orderflowShipmentCreate><sessionId>{s}</sessionId>\
             <orderIncrementId>100000007</orderIncrementId><skuQty><item><key>A</key><value>2</value></item></skuQty>\
             <trackingNumber>TRK1</trackingNumber><tracks>{tracks}</tracks>\
             <messageSeqId>{seq}</messageSeqId></ns1:orderflowShipmentCreate>{SOAP_CLOSE}"
        )
    };
    let (status, answer) = app.post_soap(shipment(1, LIMIT)).await;
    assert_eq!(
        client_fault(status, &answer),
        format!(
            "Invalid tracks: {} tracking numbers is more than the limit of {LIMIT} per shipment",
            LIMIT + 1
        )
    );
    assert_eq!(app.queue_depth().await, vec![]);

    // Just under the limit (the first repeats `trackingNumber`): stored, applied, all numbers kept once.
    let (status, answer) = app.post_soap(shipment(2, LIMIT - 1)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(app.drain().await, 1);
    let (_, order) = app
        .api(reqwest::Method::GET, "/orders/100000007", None)
        .await;
    assert_eq!(order["status"], "complete");
    let numbers = order["tracking_numbers"].as_array().unwrap();
    assert_eq!(numbers.len(), LIMIT - 1);
    assert_eq!(numbers[0], "TRK1");
    assert_eq!(numbers[LIMIT - 2], format!("TRK{}", LIMIT - 1));
}

async fn quoted_names_cannot_make_a_refusal_row_large(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // An unknown operation's name and a claimed user name are the sender's text, quoted in the
    // reason and stored as the caller: 512 KiB of each.
    let name = "x".repeat(512 * 1024);
    let (status, answer) = app
        .post_soap(format!("{SOAP_OPEN}<ns1:{name}/>{SOAP_CLOSE}"))
        .await;
    assert!(client_fault(status, &answer).contains("unknown operation"));
    assert!(app.login_as(&name, "wrong password").await.is_err());
    let stored = rejections(&app).await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    for (caller, reason, excerpt) in &stored {
        let caller = caller.as_deref().unwrap_or_default();
        assert!(
            caller.len() < 1200 && reason.len() < 1200,
            "{}/{}",
            caller.len(),
            reason.len()
        );
        assert!(excerpt.len() <= 1024, "{}", excerpt.len());
        assert!(
            reason.contains("bytes)") || caller.contains("bytes)"),
            "{reason}"
        );
    }
}

async fn compressed_bodies_are_refused_unread(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    // A few KiB of gzip could unpack to gigabytes before any limit saw them.
    for (path, content_type) in [
        ("/soap", "text/xml; charset=utf-8"),
        ("/api/v1/orders/100000001", "application/json"),
    ] {
        let resp = app
            .client
            .request(
                if path == "/soap" {
                    reqwest::Method::POST
                } else {
                    reqwest::Method::PUT
                },
                format!("{}{path}", app.base),
            )
            .header("Content-Type", content_type)
            .header("Content-Encoding", "gzip")
            .header("Authorization", format!("Bearer {}", app.token))
            .body(inventory_envelope(&s, 1, &[("A", 3, 1)]))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 415, "{path}");
        let text = resp.text().await.unwrap();
        assert!(
            text.contains("send the body uncompressed"),
            "{path}: {text}"
        );
    }
    assert_eq!(app.drain().await, 0);
    assert_eq!(app.stock_of("A").await, None);
}
