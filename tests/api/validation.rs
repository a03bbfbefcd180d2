//! Every malformed or incomplete message gets a Client fault naming the problem, and nothing of it is
//! stored (only the rejection itself, for support).

use crate::both_backends;
use crate::helpers::{Backend, TestApp, faultstring, inventory_envelope, remove_between};

both_backends!(invalid_messages_get_a_fault_and_store_nothing);

async fn invalid_messages_get_a_fault_and_store_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    let good = inventory_envelope(&s, 5, &[("A", 1, 10), ("B", 2, 11)]);

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "malformed XML",
            good.replace("</skusQty>", ""),
            "not well-formed XML",
        ),
        (
            "not SOAP",
            "<hello/>".into(),
            "must be a SOAP 1.1 or 1.2 Envelope",
        ),
        (
            "missing messageSeqId",
            good.replace("<messageSeqId xsi:type=\"xsd:long\">5</messageSeqId>", ""),
            "Invalid messageSeqId: is missing",
        ),
        (
            "missing skusQty",
            remove_between(&good, "<skusQty", "</skusQty>"),
            "Invalid skusQty: is missing",
        ),
        (
            "non-numeric quantity",
            good.replace(
                "<value xsi:type=\"xsd:int\">2</value>",
                "<value xsi:type=\"xsd:int\">two</value>",
            ),
            "Invalid skusQty[2].value: \"two\" is not a whole number",
        ),
        (
            "quantity beyond 32 bits",
            good.replace(
                "<value xsi:type=\"xsd:int\">2</value>",
                "<value xsi:type=\"xsd:int\">2147483648</value>",
            ),
            "Invalid skusQty[2].value: \"2147483648\" is not a whole number",
        ),
        (
            "non-numeric sequence",
            good.replace(
                "<value xsi:type=\"xsd:long\">11</value>",
                "<value xsi:type=\"xsd:long\">1x</value>",
            ),
            "Invalid skusSeqId[2].value: \"1x\" is not a whole number between 1 and",
        ),
        (
            "zero sequence",
            good.replace(
                "<value xsi:type=\"xsd:long\">11</value>",
                "<value xsi:type=\"xsd:long\">0</value>",
            ),
            "Invalid skusSeqId[2].value: \"0\" is not a whole number between 1 and",
        ),
        (
            "SKU without a sequence",
            good.replace(
                "<key xsi:type=\"xsd:string\">B</key><value xsi:type=\"xsd:long\">",
                "<key xsi:type=\"xsd:string\">Z</key><value xsi:type=\"xsd:long\">",
            ),
            "Invalid skusSeqId: SKU \"B\" (in skusQty[2]) has no sequence id",
        ),
        (
            "SKU too long",
            good.replace(">A</key>", &format!(">{}</key>", "X".repeat(65))),
            "the SKU is longer than 64 characters",
        ),
        (
            "unknown operation",
            good.replace(
                "orderflowInventoryMultiUpdate>",
                "orderflowInventoryMultiDelete>",
            ),
            "unknown operation \"orderflowInventoryMultiDelete\"",
        ),
    ];
    for (what, body, expected) in &cases {
        let (status, ct, text) = app.post_soap_to("/soap", body.clone()).await;
        assert_eq!(status, 500, "{what}: {text}");
        assert!(ct.starts_with("text/xml"), "{what}: {ct}");
        assert!(
            text.contains("<faultcode>SOAP-ENV:Client</faultcode>"),
            "{what}: {text}"
        );
        let reason = faultstring(&text);
        assert!(
            reason.contains(expected),
            "{what}: expected {expected:?} in {reason:?}"
        );
    }

    assert_eq!(app.drain().await, 0);
    assert_eq!(app.queue_depth().await, vec![]);
    assert_eq!(app.stock_of("A").await, None);
    let (lines, rejections) = app
        .with_conn(|c| {
            use diesel::prelude::*;
            use wharf::db::schema::request_lines;
            (
                request_lines::table.count().get_result::<i64>(c).unwrap(),
                wharf::queue::recent_rejections(c, 100).unwrap(),
            )
        })
        .await;
    assert_eq!(lines, 0);
    // Support can see every refusal, with who sent it when the session was valid.
    assert_eq!(rejections.len(), cases.len());
    assert!(
        rejections
            .iter()
            .any(|r| r.caller.as_deref() == Some("orderflow")
                && r.reason.contains("skusQty[2].value"))
    );
}
