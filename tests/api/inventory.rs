//! Inventory multi-updates from SOAP to stock.

use crate::both_backends;
use crate::helpers::{Backend, TestApp, element_text, fixture};

both_backends!(
    fixtures_are_accepted_and_applied,
    stale_sequence_is_superseded_and_equal_is_duplicate,
    sequences_compare_as_numbers,
    sequence_ids_pair_with_quantities_by_sku,
    resent_message_does_not_change_stock_twice,
    same_message_id_with_a_different_body_is_queued,
    negative_quantity_is_stored_as_zero,
    aliases_accept_messages,
);

async fn fixtures_are_accepted_and_applied(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let session = app.login().await;

    let (status, body) = app
        .post_soap(fixture("m1-inventory-multi-update.xml", &session))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        element_text(&body, "result").as_deref(),
        Some("Success - Message 4 Received")
    );
    let (status, body) = app
        .post_soap(fixture("m1-inventory-multi-update-skus.xml", &session))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        element_text(&body, "result").as_deref(),
        Some("Success - Message 700042 Received")
    );
    // Acknowledged means stored, not applied: nothing shows before the worker runs.
    assert_eq!(app.stock_of("hdd000").await, None);

    assert_eq!(app.drain().await, 2);
    assert_eq!(app.stock_of("hdd000").await, Some((0, 10)));
    assert_eq!(app.stock_of("ABC123").await, Some((40, 9000451)));
    assert_eq!(app.stock_of("XYZ789").await, Some((0, 9000452)));
    assert_eq!(app.queue_depth().await, vec![("processed".to_string(), 2)]);
}

async fn stale_sequence_is_superseded_and_equal_is_duplicate(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    assert_eq!(app.send_inventory(&s, 1, &[("SKU-A", 5, 10)]).await.0, 200);
    assert_eq!(app.send_inventory(&s, 2, &[("SKU-A", 3, 9)]).await.0, 200);
    assert_eq!(app.send_inventory(&s, 3, &[("SKU-A", 8, 10)]).await.0, 200);
    app.drain().await;

    assert_eq!(app.stock_of("SKU-A").await, Some((5, 10)));
    assert_eq!(
        app.import_lines(1).await,
        vec![(
            "SKU-A".into(),
            "Success".into(),
            // The warehouse owns stock: a SKU the storefront never sent is applied, and noted.
            "Product Quantity Successfully Updated to 5; the SKU is not in wharf's catalogue"
                .into()
        )]
    );
    assert_eq!(
        app.import_lines(2).await,
        vec![(
            "SKU-A".into(),
            "Superseded".into(),
            "Product quantity update to 3 discarded as already superseded by inventory record 10"
                .into()
        )]
    );
    assert_eq!(
        app.import_lines(3).await,
        vec![(
            "SKU-A".into(),
            "Duplicate".into(),
            "Duplicate Inventory Request Ignored.".into()
        )]
    );
}

async fn sequences_compare_as_numbers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    // As strings "9" > "10" and "999" > "1000"; as numbers they are not.
    app.send_inventory(&s, 1, &[("A", 1, 9), ("B", 1, 999)])
        .await;
    app.drain().await;
    app.send_inventory(&s, 2, &[("A", 2, 10), ("B", 2, 1000)])
        .await;
    app.drain().await;
    assert_eq!(app.stock_of("A").await, Some((2, 10)));
    assert_eq!(app.stock_of("B").await, Some((2, 1000)));
    // And a message received later with a shorter, smaller id is stale.
    app.send_inventory(&s, 3, &[("A", 3, 9)]).await;
    app.drain().await;
    assert_eq!(app.stock_of("A").await, Some((2, 10)));
}

async fn sequence_ids_pair_with_quantities_by_sku(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    // skusSeqId lists the SKUs in another order than skusQty.
    let body = crate::helpers::inventory_envelope(&s, 7, &[("A", 1, 100), ("B", 2, 200), ("C", 3, 300)])
        .replace(
            "<item xsi:type=\"ns1:skuSeq\"><key xsi:type=\"xsd:string\">A</key><value xsi:type=\"xsd:long\">100</value></item>\
             <item xsi:type=\"ns1:skuSeq\"><key xsi:type=\"xsd:string\">B</key><value xsi:type=\"xsd:long\">200</value></item>\
             <item xsi:type=\"ns1:skuSeq\"><key xsi:type=\"xsd:string\">C</key><value xsi:type=\"xsd:long\">300</value></item>",
            "<item xsi:type=\"ns1:skuSeq\"><key xsi:type=\"xsd:string\">C</key><value xsi:type=\"xsd:long\">300</value></item>\
             <item xsi:type=\"ns1:skuSeq\"><key xsi:type=\"xsd:string\">A</key><value xsi:type=\"xsd:long\">100</value></item>\
             <item xsi:type=\"ns1:skuSeq\"><key xsi:type=\"xsd:string\">B</key><value xsi:type=\"xsd:long\">200</value></item>",
        );
    assert!(body.contains(
        "<key xsi:type=\"xsd:string\">C</key><value xsi:type=\"xsd:long\">300</value></item><item"
    ));
    let (status, text) = app.post_soap(body).await;
    assert_eq!(status, 200, "{text}");
    app.drain().await;
    assert_eq!(app.stock_of("A").await, Some((1, 100)));
    assert_eq!(app.stock_of("B").await, Some((2, 200)));
    assert_eq!(app.stock_of("C").await, Some((3, 300)));
}

async fn resent_message_does_not_change_stock_twice(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    let first = crate::helpers::inventory_envelope(&s, 10, &[("A", 5, 10)]);
    assert_eq!(app.post_soap(first.clone()).await.0, 200);
    app.drain().await;
    assert_eq!(app.send_inventory(&s, 11, &[("A", 7, 11)]).await.0, 200);
    app.drain().await;

    // The warehouse re-sends the first message, byte for byte: same answer, nothing queued again.
    let (status, body) = app.post_soap(first).await;
    assert_eq!(status, 200);
    assert_eq!(
        element_text(&body, "result").as_deref(),
        Some("Success - Message 10 Received")
    );
    assert_eq!(app.drain().await, 0);
    assert_eq!(app.stock_of("A").await, Some((7, 11)));
    assert_eq!(app.queue_depth().await, vec![("processed".to_string(), 2)]);
}

async fn same_message_id_with_a_different_body_is_queued(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    assert_eq!(app.send_inventory(&s, 20, &[("A", 5, 10)]).await.0, 200);
    // Same messageSeqId, different content: stored for support to look at, and its lines applied on
    // their own merit (here a newer per-SKU sequence).
    assert_eq!(app.send_inventory(&s, 20, &[("A", 6, 12)]).await.0, 200);
    assert_eq!(app.drain().await, 2);
    assert_eq!(app.stock_of("A").await, Some((6, 12)));
    let conflicts = app
        .with_conn(|c| {
            use diesel::prelude::*;
            use wharf::db::schema::requests;
            requests::table
                .filter(requests::conflict.eq(true))
                .count()
                .get_result::<i64>(c)
                .unwrap()
        })
        .await;
    assert_eq!(conflicts, 1);
}

async fn negative_quantity_is_stored_as_zero(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    app.send_inventory(&s, 1, &[("NEG", -4, 3)]).await;
    app.drain().await;
    assert_eq!(app.stock_of("NEG").await, Some((0, 3)));

    let allowing = TestApp::spawn_with(backend, |s| s.inventory.allow_negative = true).await;
    let s = allowing.login().await;
    allowing.send_inventory(&s, 1, &[("NEG", -4, 3)]).await;
    allowing.drain().await;
    assert_eq!(allowing.stock_of("NEG").await, Some((-4, 3)));
}

async fn aliases_accept_messages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    for (i, path) in [
        "/soap",
        "/api/v2_soap",
        "/api/v2_soap/index",
        "/index.php/api/v2_soap/index/",
    ]
    .into_iter()
    .enumerate()
    {
        let seq = i as i64 + 1;
        let (status, ct, body) = app
            .post_soap_to(
                path,
                crate::helpers::inventory_envelope(&s, seq, &[("P", seq, seq)]),
            )
            .await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(ct.starts_with("text/xml"), "{path}: {ct}");
        assert_eq!(
            element_text(&body, "result"),
            Some(format!("Success - Message {seq} Received")),
            "{path}"
        );
    }
    app.drain().await;
    assert_eq!(app.stock_of("P").await, Some((4, 4)));
}
