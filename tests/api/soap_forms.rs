//! Every SOAP form the warehouse may send: Magento 1 rpc/encoded and WS-I, Magento 2 (SOAP 1.2),
//! shipments, any prefixes, any SOAPAction, and each way of authenticating.

use diesel::prelude::*;
use wharf::db::schema::{request_lines, request_shipments, request_tracking, requests};

use crate::both_backends;
use crate::helpers::{
    Backend, PASSWORD, TestApp, USER, element_text, faultstring, fixture, remove_between,
};

both_backends!(
    every_fixture_is_accepted_and_stored_with_its_lines,
    any_envelope_prefix_and_soap_action_works,
    magento2_token_bearer_and_basic_auth,
    shipments_are_validated_and_resends_deduplicated,
    copies_arriving_together_are_stored_once,
);

/// POSTs with explicit headers; returns status, content type and body.
async fn post(
    app: &TestApp,
    path: &str,
    content_type: &str,
    extra: &[(&str, &str)],
    body: String,
) -> (u16, String, String) {
    let mut req = app
        .client
        .post(format!("{}{path}", app.base))
        .header("Content-Type", content_type)
        .body(body);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, resp.text().await.unwrap())
}

/// The stored lines of the request with this operation and messageSeqId: (sku, source, qty, seq).
async fn stored_lines(
    app: &TestApp,
    operation: &'static str,
    message_seq_id: i64,
) -> Vec<(String, String, i32, Option<i64>)> {
    app.with_conn(move |c| {
        request_lines::table
            .inner_join(requests::table)
            .filter(requests::operation.eq(operation))
            .filter(requests::message_seq_id.eq(message_seq_id))
            .order((request_lines::request_id, request_lines::line_no))
            .select((
                request_lines::sku,
                request_lines::source,
                request_lines::qty,
                request_lines::seq,
            ))
            .load(c)
            .unwrap()
    })
    .await
}

async fn token(app: &TestApp, user: &str, password: &str) -> (u16, String) {
    let body = format!(
        "<env:Envelope xmlns:env=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:ns1=\"urn:x\"><env:Body>\
         <ns1:integrationAdminTokenServiceV1CreateAdminAccessTokenRequest><username>{user}</username>\
         <password>{password}</password></ns1:integrationAdminTokenServiceV1CreateAdminAccessTokenRequest>\
         </env:Body></env:Envelope>"
    );
    let (status, _, text) = post(
        app,
        "/soap/default?services=integrationAdminTokenServiceV1",
        "application/soap+xml; charset=utf-8; action=\"integrationAdminTokenServiceV1CreateAdminAccessToken\"",
        &[],
        body,
    )
    .await;
    (status, text)
}

async fn every_fixture_is_accepted_and_stored_with_its_lines(backend: Backend) {
    // The shipments name orders wharf never had; they fail at once instead of waiting for them.
    let app = TestApp::spawn_with(backend, |s| s.worker.unknown_order_retry_secs = 0).await;
    let s = app.login().await;
    let (_, bearer) = token(&app, USER, PASSWORD).await;
    let bearer = format!("Bearer {}", element_text(&bearer, "result").unwrap());

    // (fixture, path, content type, extra headers, response element, messageSeqId)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        &'a str,
        i64,
    );
    let cases: [Case; 5] = [
        (
            "m1-inventory-ws-i.xml",
            "/api/v2_soap/index/",
            "text/xml; charset=utf-8",
            vec![("SOAPAction", "\"\"")],
            "orderflowInventoryMultiUpdateResponseParam",
            700042,
        ),
        (
            "m1-shipment-create.xml",
            "/index.php/api/v2_soap/index/",
            "text/xml; charset=utf-8",
            vec![(
                "SOAPAction",
                "\"urn:Mage_Api_Model_Server_V2_HandlerAction\"",
            )],
            "orderflowShipmentCreateResponse",
            500123,
        ),
        (
            "m2-inventory-update.xml",
            "/soap/default?services=realtimeDespatchOrderFlowInventoryRequestManagementV1",
            "application/soap+xml; charset=utf-8; action=\"realtimeDespatchOrderFlowInventoryRequestManagementV1Update\"",
            vec![("Authorization", bearer.as_str())],
            "realtimeDespatchOrderFlowInventoryRequestManagementV1UpdateResponse",
            700042,
        ),
        (
            "m2-shipment-create.xml",
            "/soap/default?services=realtimeDespatchOrderFlowShipmentRequestManagementV1",
            "text/xml; charset=utf-8",
            vec![],
            "realtimeDespatchOrderFlowShipmentRequestManagementV1CreateResponse",
            77,
        ),
        (
            "m1-inventory-multi-update.xml",
            "/api/v2_soap",
            "text/xml",
            vec![],
            "orderflowInventoryMultiUpdateResponse",
            4,
        ),
    ];
    for (name, path, ct, headers, response, seq) in cases {
        let (status, got_ct, body) = post(&app, path, ct, &headers, fixture(name, &s)).await;
        assert_eq!(status, 200, "{name}: {body}");
        // The answer comes in the request's SOAP version.
        if name == "m2-inventory-update.xml" {
            assert!(
                got_ct.starts_with("application/soap+xml"),
                "{name}: {got_ct}"
            );
            assert!(
                body.contains("http://www.w3.org/2003/05/soap-envelope"),
                "{name}"
            );
        } else {
            assert!(got_ct.starts_with("text/xml"), "{name}: {got_ct}");
            assert!(
                body.contains("http://schemas.xmlsoap.org/soap/envelope/"),
                "{name}"
            );
        }
        assert!(body.contains(&format!(":{response}>")), "{name}: {body}");
        assert_eq!(
            element_text(&body, "result"),
            Some(format!("Success - Message {seq} Received")),
            "{name}"
        );
    }

    // WS-I and Magento 2 both sent message 700042 with different bodies: both stored, one flagged.
    assert_eq!(
        stored_lines(&app, "inventory.update", 4).await,
        vec![("hdd000".into(), "default".into(), 0, Some(10))]
    );
    let m2_lines = stored_lines(&app, "inventory.update", 700042).await;
    assert_eq!(
        m2_lines,
        vec![
            ("ABC123".into(), "default".into(), 40, Some(9000451)),
            ("ABC123".into(), "default".into(), 40, Some(9000451)),
            ("XYZ789".into(), "default".into(), -2, Some(9000452)),
        ]
    );
    assert_eq!(
        stored_lines(&app, "shipment.create", 500123).await,
        vec![
            ("ABC123".into(), "default".into(), 2, None),
            ("XYZ789".into(), "default".into(), 1, None),
        ]
    );
    let shipments = app
        .with_conn(|c| {
            request_shipments::table
                .order(request_shipments::request_id)
                .select((
                    request_shipments::order_increment_id,
                    request_shipments::courier_name,
                    request_shipments::notify_customer,
                    request_shipments::include_comment,
                ))
                .load::<(String, Option<String>, bool, bool)>(c)
                .unwrap()
        })
        .await;
    assert_eq!(
        shipments,
        vec![
            ("100000123".into(), Some("DPD".into()), true, false),
            ("000000005".into(), Some("Generic".into()), true, true),
        ]
    );
    let tracking = app
        .with_conn(|c| {
            request_tracking::table
                .select(request_tracking::tracking_number)
                .load::<String>(c)
                .unwrap()
        })
        .await;
    assert_eq!(tracking, vec!["15501234567890".to_string()]);

    // Everything is applied; the shipments name orders the storefront never sent, so they fail
    // (visibly, in their import report) without touching anything.
    assert_eq!(app.drain().await, 5);
    assert_eq!(app.stock_of("ABC123").await, Some((40, 9000451)));
    assert_eq!(app.queue_depth().await, vec![("processed".to_string(), 5)]);
}

async fn any_envelope_prefix_and_soap_action_works(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    let prefixes = ["soap:", "SOAP-ENV:", "soapenv:", "s:", ""];
    let actions: [Option<&str>; 4] = [
        Some("\"urn:Mage_Api_Model_Server_V2_HandlerAction\""),
        Some("urn:Mage_Api_Model_Server_V2_HandlerAction"),
        Some(""),
        None,
    ];
    let mut seq = 0;
    for p in prefixes {
        for action in actions {
            seq += 1;
            let decl = if p.is_empty() {
                "xmlns=\"http://schemas.xmlsoap.org/soap/envelope/\"".to_string()
            } else {
                format!(
                    "xmlns:{}=\"http://schemas.xmlsoap.org/soap/envelope/\"",
                    p.trim_end_matches(':')
                )
            };
            let body = format!(
                "<{p}Envelope {decl}><{p}Body><m:orderflowInventoryMultiUpdate xmlns:m=\"urn:Magento\">\
                 <sessionId>{s}</sessionId><skusQty><item><key>PFX</key><value>{seq}</value></item></skusQty>\
                 <skusSeqId><item><key>PFX</key><value>{seq}</value></item></skusSeqId>\
                 <messageSeqId>{seq}</messageSeqId></m:orderflowInventoryMultiUpdate></{p}Body></{p}Envelope>"
            );
            let headers: Vec<(&str, &str)> =
                action.map(|a| ("SOAPAction", a)).into_iter().collect();
            let (status, _, text) = post(&app, "/soap", "text/xml", &headers, body).await;
            assert_eq!(status, 200, "prefix {p:?} action {action:?}: {text}");
            assert_eq!(
                element_text(&text, "result"),
                Some(format!("Success - Message {seq} Received"))
            );
        }
    }
    app.drain().await;
    assert_eq!(app.stock_of("PFX").await, Some((seq, seq)));
}

async fn magento2_token_bearer_and_basic_auth(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.soap.token_lifetime_secs = 2).await;
    let inventory = |seq: i64| {
        format!(
            "<env:Envelope xmlns:env=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:ns1=\"urn:m2\"><env:Body>\
             <ns1:realtimeDespatchOrderFlowInventoryRequestManagementV1UpdateRequest>\
             <productQtys><item><sku>TOK</sku><qty>{seq}</qty><source>default</source></item></productQtys>\
             <productSeqs><item><sku>TOK</sku><seq>{seq}</seq></item></productSeqs>\
             <messageSeqId>{seq}</messageSeqId>\
             </ns1:realtimeDespatchOrderFlowInventoryRequestManagementV1UpdateRequest></env:Body></env:Envelope>"
        )
    };
    const CT: &str = "application/soap+xml; charset=utf-8";
    const PATH: &str =
        "/soap/default?services=realtimeDespatchOrderFlowInventoryRequestManagementV1";

    let (status, body) = token(&app, USER, "wrong password").await;
    assert_eq!(status, 500);
    assert!(body.contains("<env:Value>env:Sender</env:Value>"), "{body}");
    assert!(
        element_text(&body, "Text")
            .unwrap()
            .contains("sign-in was incorrect")
    );

    let resp = app
        .client
        .post(format!("{}/soap/default", app.base))
        .header("Content-Type", CT)
        .body(format!(
            "<env:Envelope xmlns:env=\"http://www.w3.org/2003/05/soap-envelope\"><env:Body>\
             <integrationAdminTokenServiceV1CreateAdminAccessTokenRequest><username>{USER}</username>\
             <password>{PASSWORD}</password></integrationAdminTokenServiceV1CreateAdminAccessTokenRequest>\
             </env:Body></env:Envelope>"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers().contains_key("x-wharf-token-expires"));
    let text = resp.text().await.unwrap();
    assert!(text.contains("integrationAdminTokenServiceV1CreateAdminAccessTokenResponse"));
    let bearer = format!("Bearer {}", element_text(&text, "result").unwrap());

    // No credentials at all, then a made-up token: refused, nothing stored.
    let (status, _, body) = post(&app, PATH, CT, &[], inventory(1)).await;
    assert_eq!(status, 500);
    assert!(
        element_text(&body, "Text")
            .unwrap()
            .contains("Authentication required"),
        "{body}"
    );
    let (status, _, body) = post(
        &app,
        PATH,
        CT,
        &[("Authorization", "Bearer nope")],
        inventory(1),
    )
    .await;
    assert_eq!(status, 500);
    assert!(
        element_text(&body, "Text")
            .unwrap()
            .contains("access token is unknown or has expired")
    );

    let (status, _, body) = post(&app, PATH, CT, &[("Authorization", &bearer)], inventory(1)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        element_text(&body, "result").as_deref(),
        Some("Success - Message 1 Received")
    );

    // HTTP Basic with the API user's credentials works too; wrong ones do not.
    use base64::Engine;
    let basic = |u: &str, p: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    };
    let good = basic(USER, PASSWORD);
    let (status, _, body) = post(&app, PATH, CT, &[("Authorization", &good)], inventory(2)).await;
    assert_eq!(status, 200, "{body}");
    let bad = basic(USER, "guess");
    let (status, _, _) = post(&app, PATH, CT, &[("Authorization", &bad)], inventory(3)).await;
    assert_eq!(status, 500);

    // Tokens expire.
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let (status, _, _) = post(&app, PATH, CT, &[("Authorization", &bearer)], inventory(4)).await;
    assert_eq!(status, 500);

    assert_eq!(app.drain().await, 2);
    assert_eq!(app.stock_of("TOK").await, Some((2, 2)));
}

async fn shipments_are_validated_and_resends_deduplicated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.expect_leftovers(
        "it checks how shipments are received and deduplicated, not how they are applied",
    );
    let s = app.login().await;
    let good = fixture("m1-shipment-create.xml", &s);
    let cases = [
        (
            good.replace(
                "<orderIncrementId xsi:type=\"xsd:string\">100000123</orderIncrementId>",
                "",
            ),
            "Invalid orderIncrementId: is missing",
        ),
        (
            good.replace(
                "<value xsi:type=\"xsd:int\">2</value>",
                "<value xsi:type=\"xsd:int\">0</value>",
            ),
            "Invalid skuQty[1].value: \"0\" is not a whole number of units above 0",
        ),
        (
            good.replace(
                "<value xsi:type=\"xsd:int\">1</value></item>",
                "<value xsi:type=\"xsd:int\">1.5</value></item>",
            ),
            "Invalid skuQty[2].value",
        ),
        (
            good.replace(
                "<messageSeqId xsi:type=\"xsd:long\">500123</messageSeqId>",
                "",
            ),
            "Invalid messageSeqId: is missing",
        ),
        (
            remove_between(&good, "<skuQty ", "</skuQty>"),
            "Invalid skuQty: is missing",
        ),
        (
            good.replace(
                "<email xsi:type=\"xsd:int\">1</email>",
                "<email>perhaps</email>",
            ),
            "Invalid email: \"perhaps\" is not a yes/no value",
        ),
    ];
    for (body, expected) in cases {
        let (status, text) = app.post_soap(body).await;
        assert_eq!(status, 500, "{expected}");
        assert!(faultstring(&text).contains(expected), "{expected}: {text}");
    }
    assert_eq!(app.queue_depth().await, vec![]);

    for _ in 0..3 {
        let (status, text) = app.post_soap(good.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(
            element_text(&text, "result").as_deref(),
            Some("Success - Message 500123 Received")
        );
    }
    let receipts = app
        .with_conn(|c| {
            requests::table
                .select((requests::receipts, requests::conflict))
                .load::<(i32, bool)>(c)
                .unwrap()
        })
        .await;
    assert_eq!(
        receipts,
        vec![(3, false)],
        "one request, received three times"
    );
    let different = good.replace("Despatched from Site 1", "Despatched from Site 2");
    assert_eq!(app.post_soap(different).await.0, 200);
    let conflicts = app
        .with_conn(|c| {
            requests::table
                .order(requests::id)
                .select(requests::conflict)
                .load::<bool>(c)
                .unwrap()
        })
        .await;
    assert_eq!(conflicts, vec![false, true]);
}

async fn copies_arriving_together_are_stored_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.expect_leftovers(
        "it checks what is stored when copies arrive together, not how they are applied",
    );
    let s = app.login().await;
    let same = crate::helpers::inventory_envelope(&s, 77, &[("RACE", 1, 1)]);
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let req = app
            .client
            .post(format!("{}/soap", app.base))
            .header("Content-Type", "text/xml")
            .body(same.clone());
        sends.spawn(async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        });
    }
    for (status, body) in sends.join_all().await {
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            element_text(&body, "result").as_deref(),
            Some("Success - Message 77 Received")
        );
    }
    // Two different bodies under one messageSeqId at once: both stored, exactly one flagged.
    let a = crate::helpers::inventory_envelope(&s, 78, &[("RACE", 2, 2)]);
    let b = crate::helpers::inventory_envelope(&s, 78, &[("RACE", 3, 3)]);
    let (ra, rb) = tokio::join!(app.post_soap(a), app.post_soap(b));
    assert_eq!((ra.0, rb.0), (200, 200));
    let rows = app
        .with_conn(|c| {
            requests::table
                .order(requests::id)
                .select((
                    requests::message_seq_id,
                    requests::receipts,
                    requests::conflict,
                ))
                .load::<(i64, i32, bool)>(c)
                .unwrap()
        })
        .await;
    assert_eq!(rows[0], (77, 8, false), "{rows:?}");
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[1..].iter().filter(|r| r.2).count(), 1, "{rows:?}");
}
