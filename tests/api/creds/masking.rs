//! No credential is stored in clear: session ids in every stored body (every SOAP form), passwords
//! and session ids in rejection excerpts (also cut off or not well-formed), and HTTP Basic / Bearer
//! credentials, which are headers, nowhere. And a re-send after a new login is a repeat.

use super::{basic, listed_ids, listed_row, post, request_token, stored_anywhere, wharf_ok};
use crate::both_backends;
use crate::helpers::{
    Backend, PASSWORD, TestApp, USER, element_text, faultstring, fixture, inventory_envelope,
    login_envelope,
};

both_backends!(
    stored_bodies_hold_no_credentials_in_any_form,
    rejection_excerpts_hold_no_credentials,
    a_resend_after_a_new_login_is_a_repeat,
);

const M1: &str = "text/xml; charset=utf-8";
const M2: &str = "application/soap+xml; charset=utf-8";

async fn stored_bodies_hold_no_credentials_in_any_form(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.expect_leftovers("it checks the stored bodies, which applying them would not change");
    let s = app.login().await;
    let (_, token) = request_token(&app, USER, PASSWORD).await;
    let token = element_text(&token, "result").unwrap();
    let bearer = format!("Bearer {token}");
    let basic = basic(USER, PASSWORD);

    // (what, path, content type, headers, body)
    type Case<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, &'a str)>, String);
    let cases: Vec<Case> = vec![
        (
            "M1 rpc/encoded",
            "/soap",
            M1,
            vec![],
            inventory_envelope(&s, 1, &[("A", 1, 1)]),
        ),
        (
            "M1 fixture",
            "/api/v2_soap",
            M1,
            vec![],
            fixture("m1-inventory-multi-update.xml", &s),
        ),
        (
            "M1 skuQty spelling",
            "/api/v2_soap",
            M1,
            vec![],
            fixture("m1-inventory-multi-update-skus.xml", &s),
        ),
        (
            "M1 WS-I",
            "/api/v2_soap/index/",
            M1,
            vec![],
            fixture("m1-inventory-ws-i.xml", &s),
        ),
        (
            "M1 shipment",
            "/index.php/api/v2_soap/index/",
            M1,
            vec![],
            fixture("m1-shipment-create.xml", &s),
        ),
        (
            "M2 inventory, Bearer",
            "/soap/default?services=realtimeDespatchOrderFlowInventoryRequestManagementV1",
            M2,
            vec![("Authorization", bearer.as_str())],
            fixture("m2-inventory-update.xml", &s),
        ),
        (
            "M2 shipment with a session",
            "/soap/default?services=realtimeDespatchOrderFlowShipmentRequestManagementV1",
            M1,
            vec![],
            fixture("m2-shipment-create.xml", &s),
        ),
        (
            "M1 WS-I, Basic",
            "/api/v2_soap/index/",
            M1,
            vec![("Authorization", basic.as_str())],
            fixture("m1-inventory-ws-i.xml", "").replace("<sessionId></sessionId>", ""),
        ),
    ];
    for (what, path, ct, headers, body) in &cases {
        let (status, answer) = post(&app, path, ct, headers, body.clone()).await;
        assert_eq!(status, 200, "{what}: {answer}");
    }

    let list = wharf_ok(&app, &["requests", "list"]).await;
    let ids = listed_ids(&list);
    assert_eq!(ids.len(), cases.len(), "{list}");
    let mut masked_sessions = 0;
    for id in ids {
        let shown = wharf_ok(&app, &["requests", "show", &id.to_string()]).await;
        assert!(
            !shown.contains(&s),
            "request {id} shows the session id:\n{shown}"
        );
        assert!(
            shown.contains("XML received (credentials masked)"),
            "{shown}"
        );
        masked_sessions += shown.matches(">***</sessionId>").count();
    }
    // Every form that carried a sessionId shows it masked (the Bearer and Basic ones carry none).
    assert_eq!(masked_sessions, 6);

    for secret in [s.as_str(), token.as_str(), PASSWORD] {
        assert_eq!(
            stored_anywhere(&app, backend, secret).await,
            Vec::<String>::new(),
            "{secret} is stored"
        );
    }
}

async fn rejection_excerpts_hold_no_credentials(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    let wrong_key = "Wrong-Login-Key-4711";
    let wrong_token_password = "Wrong-Token-Pass-0815";
    let unknown_session = "Unknown-Session-1234567890";
    let malformed_session = "Malformed-Session-9876543210";
    let cut_session = "CutSession0123456789abcdefCutSession0123456789abcdef";

    // A refused login and token request: the password is in the excerpt only as ***.
    assert!(app.login_as(USER, wrong_key).await.is_err());
    let (status, _) = request_token(&app, USER, wrong_token_password).await;
    assert_eq!(status, 500);
    // An unknown session, and a message refused for a bad field under a valid session.
    let (status, body) = app.send_inventory(unknown_session, 1, &[("A", 1, 1)]).await;
    assert_eq!(
        faultstring(&body),
        "Session expired. Try to relogin.",
        "{status}"
    );
    let bad = inventory_envelope(&s, 2, &[("A", 1, 1)])
        .replace(">1</value></item></skusQty>", ">x</value></item></skusQty>");
    let (status, body) = app.post_soap(bad).await;
    assert!(
        faultstring(&body).contains("skusQty[1].value"),
        "{status} {body}"
    );
    // Not well-formed XML.
    let malformed = format!(
        "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\"><SOAP-ENV:Body>\
         <ns1:orderflowInventoryMultiUpdate xmlns:ns1=\"urn:Magento\"><sessionId>{malformed_session}</sessionID>\
         </ns1:orderflowInventoryMultiUpdate></SOAP-ENV:Body>"
    );
    let (status, body) = app.post_soap(malformed).await;
    assert!(
        faultstring(&body).contains("well-formed"),
        "{status} {body}"
    );
    // A body longer than the 64 KiB excerpt, cut in the middle of the session id.
    let prefix = format!(
        "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\"><SOAP-ENV:Body>\
         <ns1:unknownOperation xmlns:ns1=\"urn:Magento\"><!-- {} -->",
        "x".repeat(64 * 1024 - 300)
    );
    let padding = 64 * 1024 - prefix.len() - "<sessionId>".len() - 20;
    let long = format!(
        "{prefix}{}<sessionId>{cut_session}</sessionId></ns1:unknownOperation></SOAP-ENV:Body></SOAP-ENV:Envelope>",
        " ".repeat(padding)
    );
    let (status, body) = app.post_soap(long).await;
    assert!(
        faultstring(&body).contains("unknown operation"),
        "{status} {body}"
    );

    let shown = wharf_ok(&app, &["requests", "rejected", "--body"]).await;
    assert_eq!(
        shown.matches("\n#").count() + 1,
        6,
        "six rejections:\n{shown}"
    );
    for secret in [
        wrong_key,
        wrong_token_password,
        unknown_session,
        s.as_str(),
        malformed_session,
        &cut_session[..12],
    ] {
        assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
        assert_eq!(
            stored_anywhere(&app, backend, secret).await,
            Vec::<String>::new(),
            "{secret} is stored"
        );
    }
    // What is not a credential is still there for support to read.
    assert!(
        shown.contains("<username xsi:type=\"xsd:string\">orderflow</username>"),
        "{shown}"
    );
    assert!(
        shown.contains("<apiKey xsi:type=\"xsd:string\">***</apiKey>"),
        "{shown}"
    );
    assert!(shown.contains("<password>***</password>"), "{shown}");
    assert!(shown.contains("<sessionId>***</sessionID>"), "{shown}");
    assert!(shown.contains("<sessionId>***"), "{shown}");
    assert!(
        shown.contains("<key xsi:type=\"xsd:string\">A</key>"),
        "{shown}"
    );
    // The login envelope the test sends is the same one SoapClient sends; sanity-check the helper.
    assert!(login_envelope(USER, "k").contains("<apiKey xsi:type=\"xsd:string\">k</apiKey>"));
}

async fn a_resend_after_a_new_login_is_a_repeat(backend: Backend) {
    // The shipment's order is never created: let it fail at once instead of waiting for the order.
    let app = TestApp::spawn_with(backend, |s| s.worker.unknown_order_retry_secs = 0).await;
    app.expect_leftovers("the conflicting body sent last is stored to be listed, not applied");
    let first = app.login().await;
    assert_eq!(app.send_inventory(&first, 10, &[("A", 5, 10)]).await.0, 200);
    app.send_shipment(&first, "100000001", 11, &[("A", 1)], "TRACK1")
        .await;

    // The warehouse logs in again (new session id) and re-sends both messages.
    let second = app.login().await;
    assert_ne!(first, second);
    let (status, body) = app.send_inventory(&second, 10, &[("A", 5, 10)]).await;
    assert_eq!(status, 200);
    assert_eq!(
        element_text(&body, "result").as_deref(),
        Some("Success - Message 10 Received")
    );
    app.send_shipment(&second, "100000001", 11, &[("A", 1)], "TRACK1")
        .await;

    // Acknowledged and counted, not queued again, not a conflict.
    let list = wharf_ok(&app, &["requests", "list"]).await;
    let ids = listed_ids(&list);
    assert_eq!(ids.len(), 2, "{list}");
    for id in ids {
        let row = listed_row(&list, id);
        let columns: Vec<&str> = row.split_whitespace().collect();
        // ID, date, time, operation, seq, caller, state, attempts, lines, receipts, conflict
        assert_eq!(columns[9], "2", "received twice: {row}");
        assert_eq!(columns[10], "-", "not a conflict: {row}");
    }
    assert_eq!(app.drain().await, 2);

    // A different body under a used messageSeqId is still a conflict.
    let third = app.login().await;
    assert_eq!(app.send_inventory(&third, 10, &[("A", 6, 12)]).await.0, 200);
    let list = wharf_ok(&app, &["requests", "list", "--message-seq-id", "10"]).await;
    let ids = listed_ids(&list);
    assert_eq!(ids.len(), 2, "{list}");
    assert!(listed_row(&list, ids[0]).contains("conflict"), "{list}");
}
