//! Self-tests of the simulator: the wire contract it enforces and every behaviour switch.

use std::time::Duration;

use super::*;

/// The order import fixture (`fixtures/orderflow/order-import-request.xml`).
const ORDER_FIXTURE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<imports><import type="order" operation="insert" externalReference="100000123"><![CDATA[externalReference=100000123
paymentGatewayIdentifier=Check / Money order
totalPriceNet=25
totalPriceGross=30
totalTax=5
shippingPriceNet=5
shippingPriceGross=6
shippingTax=1
goodsPriceNet=20
goodsPriceGross=24
goodsTax=4
currency=GBP
status=processing
exported=2024-05-01T10:20:30
deliveryAddressLine1=1 High Street
deliveryAddressLine2=Flat 2
deliveryAddressLine3=London
deliveryAddressLine4=Greater London
deliveryCountryCode=GB
deliveryPostCode=SW1A 1AA
deliveryContactName=Jane Smith
deliveryEmailAddress=jane@example.com
deliveryDayPhoneNumber=07700900123
invoiceAddressLine1=1 High Street
invoiceAddressLine2=Flat 2
invoiceAddressLine3=London
invoiceAddressLine4=Greater London
invoiceCountryCode=GB
invoicePostCode=SW1A 1AA
invoiceContactName=Jane Smith
invoiceEmailAddress=jane@example.com
invoiceDayPhoneNumber=07700900123
orderLine.1.product.externalReference=ABC123
orderLine.1.quantity=2
orderLine.1.description=Blue Widget
orderLine.1.totalPriceNet=20
orderLine.1.totalPriceGross=24
orderLine.1.totalTax=4
orderLine.1.unitPriceNet=10
orderLine.1.unitPriceGross=12
orderLine.1.unitTax=2
orderLine.1.shipment=entity:shipment
shipment.externalReference=100000123
shipment.deliverySuggestionCode=flatrate_flatrate
shipment.deliverySuggestionName=Flat Rate - Fixed
shipment.orderItem=entity:order
]]></import></imports>"#;

/// The product import fixture (`fixtures/orderflow/product-import-request.xml`).
const PRODUCT_FIXTURE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<imports>
  <import type="product" operation="merge" externalReference="wbk002c-Black-S"><![CDATA[externalReference=wbk002c-Black-S
description=Black Nolita Cami-Black-S
weight=10
priceNet=25.89
sellable=1
priceGross=25.89
magentoType=simple]]></import>
</imports>
"#;

const USER: &str = "orderflow";
const PASSWORD: &str = "s3cret:with=colon";

/// A short order document for each reference, built like the exporter builds it.
fn orders_doc(refs: &[&str]) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<imports>");
    for r in refs {
        xml.push_str(&format!(
            "<import type=\"order\" operation=\"insert\" externalReference=\"{r}\"><![CDATA[\
             externalReference={r}\ncurrency=GBP\norderLine.1.product.externalReference=SKU-{r}\n\
             orderLine.1.quantity=1\nshipment.externalReference={r}\n]]></import>"
        ));
    }
    xml.push_str("</imports>");
    xml
}

/// An HTTP client builder. The package builds reqwest with `rustls-no-provider`, so a crypto
/// provider must be installed first even for plain-HTTP clients.
fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// A default HTTP client.
fn client() -> reqwest::Client {
    client_builder().build().expect("an HTTP client")
}

/// The answer to one request: status, content type and body.
struct Answer {
    status: u16,
    content_type: String,
    body: String,
    challenge: Option<String>,
}

/// POSTs to a resource with the usual query and credentials; `body` is sent as application/xml.
async fn post(
    sim: &WarehouseSim,
    resource: &str,
    extra: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let mut query = vec![("channel", "web shop"), ("organisation", "acme")];
    query.extend_from_slice(extra);
    send(
        client()
            .post(format!("{}{resource}", sim.endpoint()))
            .query(&query)
            .basic_auth(USER, Some(PASSWORD)),
        body,
    )
    .await
}

/// Sends a prepared request, with `body` as application/xml when given.
async fn send(mut req: reqwest::RequestBuilder, body: Option<&str>) -> Answer {
    if let Some(b) = body {
        req = req
            .header("Content-Type", "application/xml")
            .body(b.to_owned());
    }
    let resp = req.send().await.expect("the simulator answers");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type").unwrap_or_default();
    let challenge = header("www-authenticate");
    let status = resp.status().as_u16();
    Answer {
        status,
        content_type,
        body: resp.text().await.expect("a body"),
        challenge,
    }
}

fn refs(items: &[ImportedItem]) -> Vec<String> {
    items.iter().map(|i| i.external_reference.clone()).collect()
}

/// The report's lines of one section: (element name, externalReference).
fn lines(report: &str, section: &str) -> Vec<String> {
    let start = match report.find(&format!("<{section}>")) {
        Some(i) => i,
        None => return Vec::new(),
    };
    let end = report[start..].find(&format!("</{section}>")).unwrap() + start;
    report[start..end]
        .split("externalReference=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_owned())
        .collect()
}

#[tokio::test]
async fn the_order_fixture_is_imported_then_reported_as_a_duplicate() {
    let sim = WarehouseSim::start(USER, PASSWORD).await;
    assert!(sim.endpoint().starts_with("http://127.0.0.1:"));
    assert!(sim.endpoint().ends_with('/'));

    let a = post(&sim, ORDER_IMPORT, &[], Some(ORDER_FIXTURE)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.content_type.starts_with("application/xml"));
    assert!(a.body.starts_with("<?xml"));
    assert_eq!(lines(&a.body, "importSuccesses"), ["100000123"]);
    assert!(
        a.body
            .contains("type=\"order\" operation=\"insert\" queryTime=\"")
    );
    assert!(a.body.contains("<importFailures/>"));
    assert!(a.body.contains("<importDuplicates/>"));

    let orders = sim.orders();
    assert_eq!(refs(&orders), ["100000123"]);
    assert_eq!(orders[0].operation, "insert");
    assert_eq!(orders[0].fields.len(), 46);
    assert_eq!(
        orders[0].fields[0],
        ("externalReference".into(), "100000123".into())
    );
    assert_eq!(orders[0].field("totalPriceGross"), Some("30"));
    assert_eq!(
        orders[0].field("paymentGatewayIdentifier"),
        Some("Check / Money order")
    );
    assert_eq!(orders[0].field("shipment.orderItem"), Some("entity:order"));

    let again = post(&sim, ORDER_IMPORT, &[], Some(ORDER_FIXTURE)).await;
    assert_eq!(again.status, 200);
    assert!(lines(&again.body, "importSuccesses").is_empty());
    assert_eq!(lines(&again.body, "importDuplicates"), ["100000123"]);
    assert!(
        again
            .body
            .contains("<duplicateMessage>Order already exists</duplicateMessage>")
    );
    assert_eq!(sim.orders().len(), 1);

    let recorded = sim.requests();
    assert_eq!(recorded.len(), 2);
    let r = &recorded[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/remoteorder/imports/importitems.xml");
    assert_eq!(
        r.query,
        [
            ("channel".to_owned(), "web shop".to_owned()),
            ("organisation".to_owned(), "acme".to_owned())
        ]
    );
    assert!(r.authorized);
    assert_eq!(r.content_type.as_deref(), Some("application/xml"));
    assert_eq!(r.body, ORDER_FIXTURE);
    assert_eq!(r.status, 200);
    sim.stop().await;
}

#[tokio::test]
async fn fail_duplicate_and_omit_decide_single_items() {
    let sim = WarehouseSim::start(USER, PASSWORD).await;
    sim.set_behaviour(Behaviour {
        fail: ["B".to_owned()].into(),
        duplicate: ["C".to_owned()].into(),
        omit: ["D".to_owned()].into(),
        ..Behaviour::default()
    });
    let a = post(
        &sim,
        ORDER_IMPORT,
        &[],
        Some(&orders_doc(&["A", "B", "C", "D"])),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(lines(&a.body, "importSuccesses"), ["A"]);
    assert_eq!(lines(&a.body, "importFailures"), ["B"]);
    assert_eq!(lines(&a.body, "importDuplicates"), ["C"]);
    assert!(!a.body.contains("\"D\""));
    assert!(
        a.body
            .contains("<failureMessage>Product SKU-B not found</failureMessage>")
    );
    assert!(a.body.contains(
        "<failureDetail>orderLine.1.product.externalReference=SKU-B could not be resolved</failureDetail>"
    ));
    assert!(
        a.body
            .contains("<duplicateDetail>externalReference C</duplicateDetail>")
    );
    assert_eq!(refs(&sim.orders()), ["A"]);

    // Back to normal: only A is known, so only A is a duplicate.
    sim.set_behaviour(Behaviour::default());
    let b = post(
        &sim,
        ORDER_IMPORT,
        &[],
        Some(&orders_doc(&["A", "B", "C", "D"])),
    )
    .await;
    assert_eq!(lines(&b.body, "importSuccesses"), ["B", "C", "D"]);
    assert_eq!(lines(&b.body, "importDuplicates"), ["A"]);
    assert_eq!(refs(&sim.orders()), ["A", "B", "C", "D"]);

    // `fail` wins over an automatic duplicate.
    sim.set_behaviour(Behaviour {
        fail: ["A".to_owned()].into(),
        ..Behaviour::default()
    });
    let c = post(&sim, ORDER_IMPORT, &[], Some(&orders_doc(&["A"]))).await;
    assert_eq!(lines(&c.body, "importFailures"), ["A"]);

    // The same reference twice in one document: the second one is a duplicate.
    sim.set_behaviour(Behaviour::default());
    let d = post(&sim, ORDER_IMPORT, &[], Some(&orders_doc(&["E", "E"]))).await;
    assert_eq!(lines(&d.body, "importSuccesses"), ["E"]);
    assert_eq!(lines(&d.body, "importDuplicates"), ["E"]);
    sim.stop().await;
}

#[tokio::test]
async fn http_500_answers_the_next_requests_with_an_error_page() {
    let sim = WarehouseSim::start(USER, PASSWORD).await;
    sim.set_behaviour(Behaviour {
        http_500: 2,
        ..Behaviour::default()
    });
    for _ in 0..2 {
        let a = post(&sim, ORDER_IMPORT, &[], Some(ORDER_FIXTURE)).await;
        assert_eq!(a.status, 500);
        assert!(a.content_type.starts_with("text/html"));
        assert!(a.body.contains("HTTP Status 500"));
    }
    assert!(sim.orders().is_empty());
    let a = post(&sim, ORDER_IMPORT, &[], Some(ORDER_FIXTURE)).await;
    assert_eq!(a.status, 200);
    assert_eq!(lines(&a.body, "importSuccesses"), ["100000123"]);
    let statuses: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 200]);
    sim.stop().await;
}

#[tokio::test]
async fn hang_delays_the_answer_past_a_client_timeout() {
    let sim = WarehouseSim::start(USER, PASSWORD).await;
    sim.set_behaviour(Behaviour {
        hang: Some(Duration::from_secs(3)),
        ..Behaviour::default()
    });
    let impatient = client_builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let err = impatient
        .post(format!(
            "{}{ORDER_IMPORT}?channel=c&organisation=o",
            sim.endpoint()
        ))
        .basic_auth(USER, Some(PASSWORD))
        .header("Content-Type", "application/xml")
        .body(ORDER_FIXTURE)
        .send()
        .await
        .expect_err("the client times out");
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The warehouse did the work; it was only late to say so.
    assert_eq!(sim.requests().len(), 1);
    assert_eq!(sim.requests()[0].status, 200);
    assert_eq!(refs(&sim.orders()), ["100000123"]);

    // A patient client gets the answer after the delay.
    sim.set_behaviour(Behaviour {
        hang: Some(Duration::from_millis(400)),
        ..Behaviour::default()
    });
    let started = std::time::Instant::now();
    let a = post(&sim, ORDER_IMPORT, &[], Some(ORDER_FIXTURE)).await;
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(lines(&a.body, "importDuplicates"), ["100000123"]);
    // Stopping does not wait for a hanging request.
    sim.set_behaviour(Behaviour {
        hang: Some(Duration::from_secs(30)),
        ..Behaviour::default()
    });
    let endpoint = sim.endpoint();
    let pending = tokio::spawn(async move {
        client()
            .post(format!(
                "{endpoint}{ORDER_CANCEL}?channel=c&organisation=o&externalReference=1"
            ))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    sim.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    pending.abort();
}

#[tokio::test]
async fn error_pages_exceptions_and_garbage_answer_200() {
    let sim = WarehouseSim::start(USER, PASSWORD).await;
    sim.set_behaviour(Behaviour {
        html_error_page: true,
        exception: true,
        garbage: true,
        ..Behaviour::default()
    });
    let a = post(&sim, ORDER_IMPORT, &[], Some(ORDER_FIXTURE)).await;
    assert_eq!(a.status, 200);
    assert!(a.content_type.starts_with("text/html"));
    assert!(a.body.contains("<body><h2>ERROR</h2><p>"));
    assert!(a.body.contains("<title>OrderFlow - Error</title>"));

    sim.set_behaviour(Behaviour {
        exception: true,
        garbage: true,
        ..Behaviour::default()
    });
    let a = post(&sim, ORDER_IMPORT, &[], Some(ORDER_FIXTURE)).await;
    assert_eq!(a.status, 200);
    assert!(
        a.body
            .ends_with("<response><exception>Database unavailable</exception></response>")
    );

    sim.set_behaviour(Behaviour {
        garbage: true,
        ..Behaviour::default()
    });
    let a = post(&sim, ORDER_IMPORT, &[], Some(ORDER_FIXTURE)).await;
    assert_eq!(a.status, 200);
    assert!(!a.body.trim_start().starts_with('<'));
    // The cancel resource is affected too.
    let c = post(&sim, ORDER_CANCEL, &[("externalReference", "1")], None).await;
    assert_eq!(c.body, a.body);

    assert!(sim.orders().is_empty());
    assert_eq!(sim.requests().len(), 4);
    sim.stop().await;
}

#[tokio::test]
async fn credentials_and_query_parameters_are_required() {
    let sim = WarehouseSim::start(USER, PASSWORD).await;
    let url = format!("{}{ORDER_IMPORT}?channel=c&organisation=o", sim.endpoint());
    let http = client();

    let none = send(http.post(&url), Some(ORDER_FIXTURE)).await;
    assert_eq!(none.status, 401);
    assert!(none.content_type.starts_with("text/html"));
    assert!(none.body.contains("HTTP Status 401"));
    assert_eq!(none.challenge.as_deref(), Some("Basic realm=\"OrderFlow\""));

    let wrong = send(
        http.post(&url).basic_auth(USER, Some("nope")),
        Some(ORDER_FIXTURE),
    )
    .await;
    assert_eq!(wrong.status, 401);
    let wrong_user = send(
        http.post(&url).basic_auth("someone", Some(PASSWORD)),
        Some(ORDER_FIXTURE),
    )
    .await;
    assert_eq!(wrong_user.status, 401);

    let no_channel = send(
        http.post(format!("{}{ORDER_IMPORT}?organisation=o", sim.endpoint()))
            .basic_auth(USER, Some(PASSWORD)),
        Some(ORDER_FIXTURE),
    )
    .await;
    assert_eq!(no_channel.status, 400);
    assert!(no_channel.body.ends_with(
        "<response><exception>channel and organisation are required</exception></response>"
    ));
    let no_organisation = send(
        http.post(format!(
            "{}{PRODUCT_IMPORT}?channel=c&organisation=",
            sim.endpoint()
        ))
        .basic_auth(USER, Some(PASSWORD)),
        Some(PRODUCT_FIXTURE),
    )
    .await;
    assert_eq!(no_organisation.status, 400);

    let no_content_type = send(
        http.post(&url)
            .basic_auth(USER, Some(PASSWORD))
            .body(ORDER_FIXTURE),
        None,
    )
    .await;
    assert_eq!(no_content_type.status, 415);

    assert!(sim.orders().is_empty());
    let recorded = sim.requests();
    let seen: Vec<(bool, u16)> = recorded.iter().map(|r| (r.authorized, r.status)).collect();
    assert_eq!(
        seen,
        [
            (false, 401),
            (false, 401),
            (false, 401),
            (true, 400),
            (true, 400),
            (true, 415)
        ]
    );
    assert_eq!(recorded[5].content_type, None);
    sim.stop().await;
}

#[tokio::test]
async fn unknown_resources_are_not_found() {
    let sim = WarehouseSim::start(USER, PASSWORD).await;
    let http = client();
    let get = send(
        http.get(format!(
            "{}{ORDER_IMPORT}?channel=c&organisation=o",
            sim.endpoint()
        ))
        .basic_auth(USER, Some(PASSWORD)),
        None,
    )
    .await;
    assert_eq!(get.status, 404);
    let other = post(&sim, "remoteorder/order/detail.xml", &[], None).await;
    assert_eq!(other.status, 404);
    let double_slash = post(&sim, &format!("/{ORDER_IMPORT}"), &[], Some(ORDER_FIXTURE)).await;
    assert_eq!(double_slash.status, 404);
    let statuses: Vec<(String, u16)> = sim
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("GET".to_owned(), 404),
            ("POST".to_owned(), 404),
            ("POST".to_owned(), 404)
        ]
    );
    sim.stop().await;
}

#[tokio::test]
async fn cancel_performs_once_for_imported_orders() {
    let sim = WarehouseSim::start(USER, PASSWORD).await;
    post(&sim, ORDER_IMPORT, &[], Some(&orders_doc(&["100000200"]))).await;

    let unknown = post(&sim, ORDER_CANCEL, &[("externalReference", "999")], None).await;
    assert_eq!(unknown.status, 200);
    assert!(
        unknown
            .body
            .ends_with("<response>No cancel operation performed for order 999</response>")
    );

    let known = post(
        &sim,
        ORDER_CANCEL,
        &[("externalReference", "100000200")],
        None,
    )
    .await;
    assert_eq!(known.status, 200);
    assert!(
        known
            .body
            .ends_with("<response>Cancel operation performed for order 100000200</response>")
    );
    assert_eq!(sim.cancelled(), ["100000200"]);

    let twice = post(
        &sim,
        ORDER_CANCEL,
        &[("externalReference", "100000200")],
        None,
    )
    .await;
    assert!(
        twice
            .body
            .contains("No cancel operation performed for order 100000200")
    );
    assert_eq!(sim.cancelled(), ["100000200"]);

    let missing = post(&sim, ORDER_CANCEL, &[], None).await;
    assert_eq!(missing.status, 400);

    let r = &sim.requests()[2];
    assert_eq!(r.path, "/remoteorder/order/cancel.xml");
    assert_eq!(r.query[2], ("externalReference".into(), "100000200".into()));
    assert_eq!(r.body, "");
    sim.stop().await;
}

#[tokio::test]
async fn products_are_merged_every_time() {
    let sim = WarehouseSim::start(USER, PASSWORD).await;
    let a = post(&sim, PRODUCT_IMPORT, &[], Some(PRODUCT_FIXTURE)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(lines(&a.body, "importSuccesses"), ["wbk002c-Black-S"]);
    assert!(a.body.contains("type=\"product\" operation=\"merge\""));
    let again = post(&sim, PRODUCT_IMPORT, &[], Some(PRODUCT_FIXTURE)).await;
    assert_eq!(lines(&again.body, "importSuccesses"), ["wbk002c-Black-S"]);

    let products = sim.products();
    assert_eq!(products.len(), 2);
    assert_eq!(products[0].operation, "merge");
    assert_eq!(products[0].fields.len(), 7);
    assert_eq!(products[0].field("magentoType"), Some("simple"));
    assert_eq!(products[0].field("priceGross"), Some("25.89"));
    assert!(sim.orders().is_empty());

    // insert of a known product is a duplicate; update of an unknown one fails.
    let insert = PRODUCT_FIXTURE.replace("operation=\"merge\"", "operation=\"insert\"");
    let a = post(&sim, PRODUCT_IMPORT, &[], Some(&insert)).await;
    assert_eq!(lines(&a.body, "importDuplicates"), ["wbk002c-Black-S"]);
    let update = PRODUCT_FIXTURE
        .replace("operation=\"merge\"", "operation=\"update\"")
        .replace("wbk002c-Black-S", "NEW-1");
    let a = post(&sim, PRODUCT_IMPORT, &[], Some(&update)).await;
    assert_eq!(lines(&a.body, "importFailures"), ["NEW-1"]);

    // A forced failure.
    sim.set_behaviour(Behaviour {
        fail: ["wbk002c-Black-S".to_owned()].into(),
        ..Behaviour::default()
    });
    let a = post(&sim, PRODUCT_IMPORT, &[], Some(PRODUCT_FIXTURE)).await;
    assert_eq!(lines(&a.body, "importFailures"), ["wbk002c-Black-S"]);
    assert_eq!(sim.products().len(), 2);
    sim.stop().await;
}

#[tokio::test]
async fn documents_of_the_wrong_type_fail_per_item() {
    let sim = WarehouseSim::start(USER, PASSWORD).await;
    let a = post(&sim, PRODUCT_IMPORT, &[], Some(ORDER_FIXTURE)).await;
    assert_eq!(lines(&a.body, "importFailures"), ["100000123"]);
    assert!(a.body.contains("Unsupported import type 'order'"));
    let b = post(&sim, ORDER_IMPORT, &[], Some(PRODUCT_FIXTURE)).await;
    assert_eq!(lines(&b.body, "importFailures"), ["wbk002c-Black-S"]);
    let update = ORDER_FIXTURE.replace("operation=\"insert\"", "operation=\"update\"");
    let c = post(&sim, ORDER_IMPORT, &[], Some(&update)).await;
    assert!(c.body.contains("Unsupported operation 'update' for order"));
    assert!(sim.orders().is_empty() && sim.products().is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn a_value_breaking_out_of_its_cdata_is_a_malformed_document() {
    let sim = WarehouseSim::start(USER, PASSWORD).await;
    let broken = ORDER_FIXTURE.replace("Blue Widget", "Evil ]]> Widget");
    let a = post(&sim, ORDER_IMPORT, &[], Some(&broken)).await;
    assert_eq!(a.status, 200);
    assert!(
        a.body
            .contains("<response><exception>Malformed import document: text outside CDATA"),
        "{}",
        a.body
    );
    assert!(sim.orders().is_empty());

    // Split into two CDATA sections, the value survives whole.
    let split = ORDER_FIXTURE.replace("Blue Widget", "Evil ]]]]><![CDATA[> Widget");
    let b = post(&sim, ORDER_IMPORT, &[], Some(&split)).await;
    assert_eq!(lines(&b.body, "importSuccesses"), ["100000123"]);
    assert_eq!(
        sim.orders()[0].field("orderLine.1.description"),
        Some("Evil ]]> Widget")
    );

    let garbage = post(&sim, ORDER_IMPORT, &[], Some("not xml at all")).await;
    assert_eq!(garbage.status, 200);
    assert!(
        garbage
            .body
            .contains("<exception>Malformed import document: ")
    );
    let empty = post(&sim, ORDER_IMPORT, &[], Some("")).await;
    assert!(
        empty
            .body
            .contains("Malformed import document: no root element")
    );
    sim.stop().await;
}

#[test]
fn the_document_parser_reads_well_formed_documents() {
    let ok = parse_import_document(ORDER_FIXTURE).unwrap();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].kind, "order");
    assert_eq!(ok[0].operation, "insert");
    let products = parse_import_document(PRODUCT_FIXTURE).unwrap();
    assert_eq!(products[0].fields.last().unwrap().1, "simple");
    assert!(parse_import_document("<imports/>").unwrap().is_empty());
    assert_eq!(
        parse_import_document(&orders_doc(&["1", "2"]))
            .unwrap()
            .len(),
        2
    );
}

/// Asserts that the parser refuses `xml` with an error that contains `why`.
fn refused(xml: &str, why: &str) {
    let err = parse_import_document(xml).expect_err(xml);
    assert!(err.contains(why), "{xml:?}: {err}");
}

/// A document of one `<import>` with these attributes and this CDATA.
fn one_import(attrs: &str, cdata: &str) -> String {
    format!("<imports><import {attrs}><![CDATA[{cdata}]]></import></imports>")
}

/// The attributes of a valid order import.
const ATTRS: &str = r#"type="order" operation="insert" externalReference="X""#;

#[test]
fn the_document_parser_wants_imports_of_import_elements() {
    refused("<orders/>", "the root element is <orders>");
    refused(
        "<imports><order/></imports>",
        "a child of <imports> is <order>",
    );
}

#[test]
fn the_document_parser_checks_attributes_and_cdata_fields() {
    refused(
        &one_import(r#"type="order" operation="insert""#, "externalReference=X"),
        "without a externalReference attribute",
    );
    refused(
        &one_import(
            r#"operation="insert" externalReference="X""#,
            "externalReference=X",
        ),
        "without a type attribute",
    );
    refused(
        &one_import(ATTRS, "externalReference=Y\n"),
        "the CDATA's externalReference is Some(\"Y\")",
    );
    refused(
        &one_import(ATTRS, "currency=GBP\n"),
        "the CDATA's externalReference is None",
    );
    refused(
        &one_import(ATTRS, "externalReference=X\nno equals sign\n"),
        "line 2 is not key=value",
    );
    refused(
        &one_import(ATTRS, "externalReference=X\n\ncurrency=GBP"),
        "line 2 is not key=value",
    );
    refused(
        &one_import(ATTRS, "externalReference=X\n=value"),
        "line 2 is not key=value",
    );
    refused(&one_import(ATTRS, ""), "empty CDATA");
}

#[test]
fn the_document_parser_refuses_anything_but_cdata_in_an_import() {
    let attrs = ATTRS;
    refused(
        &format!("<imports><import {attrs}/></imports>"),
        "has no CDATA",
    );
    refused(
        &format!("<imports><import {attrs}></import></imports>"),
        "has no CDATA",
    );
    refused(
        &format!("<imports><import {attrs}>externalReference=X</import></imports>"),
        "text outside CDATA",
    );
    refused(
        &format!("<imports><import {attrs}>\n<![CDATA[externalReference=X]]></import></imports>"),
        "text outside CDATA",
    );
    refused(
        &format!("<imports><import {attrs}><![CDATA[externalReference=X]]><b/></import></imports>"),
        "element <b> inside",
    );
    refused(
        &format!(
            "<imports><import {attrs}>&amp;<![CDATA[externalReference=X]]></import></imports>"
        ),
        "entity reference",
    );
}

#[test]
fn the_document_parser_refuses_malformed_documents() {
    let attrs = ATTRS;
    refused("<imports>hello</imports>", "unexpected text");
    refused(
        "<imports></imports><imports/>",
        "content after the root element",
    );
    refused(
        &format!("<imports><import {attrs}><![CDATA[externalReference=X]]></import>"),
        "end of document",
    );
    refused("<imports></import>", "");
    refused(
        r#"<?xml version="1.0" encoding="ISO-8859-1"?><imports/>"#,
        "unsupported encoding",
    );
    refused(r#"<!DOCTYPE imports><imports/>"#, "DOCTYPE");
}

#[test]
fn the_document_parser_keeps_values_as_written() {
    // Values keep their '=' and spaces; the last newline is optional.
    let doc =
        parse_import_document(&one_import(ATTRS, "externalReference=X\nnote=a=b = c ")).unwrap();
    assert_eq!(doc[0].fields[1], ("note".into(), "a=b = c ".into()));
    let doc =
        parse_import_document(&one_import(ATTRS, "externalReference=X\ndeliveryFax=\n")).unwrap();
    assert_eq!(doc[0].fields[1], ("deliveryFax".into(), String::new()));
    // Entities in attributes are resolved.
    let doc = parse_import_document(&one_import(
        r#"type="order" operation="insert" externalReference="A&amp;B""#,
        "externalReference=A&B",
    ))
    .unwrap();
    assert_eq!(doc[0].external_reference, "A&B");
}

#[tokio::test]
async fn the_inventory_list_needs_credentials_and_changes_nothing() {
    let sim = WarehouseSim::start(USER, PASSWORD).await;
    let url = format!("{}{INVENTORY}?channel=c&organisation=o", sim.endpoint());
    let http = client();
    let wrong = send(http.get(&url).basic_auth(USER, Some("nope")), None).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.challenge.as_deref(),
        Some("Basic realm=\"OrderFlow\"")
    );
    let empty = send(http.get(&url).basic_auth(USER, Some(PASSWORD)), None).await;
    assert_eq!(empty.status, 200);
    assert!(
        empty.body.ends_with("<inventory></inventory>"),
        "{}",
        empty.body
    );

    let imported = post(&sim, PRODUCT_IMPORT, &[], Some(PRODUCT_FIXTURE)).await;
    assert_eq!(imported.status, 200);
    let listed = send(http.get(&url).basic_auth(USER, Some(PASSWORD)), None).await;
    assert!(
        listed
            .body
            .contains("<product externalReference=\"wbk002c-Black-S\"/>"),
        "{}",
        listed.body
    );
    // Reading the list imported nothing and cancelled nothing.
    assert_eq!(sim.products().len(), 1);
    assert!(sim.orders().is_empty() && sim.cancelled().is_empty());
    // A POST to it is not the inventory list.
    let posted = send(http.post(&url).basic_auth(USER, Some(PASSWORD)), None).await;
    assert_eq!(posted.status, 404);
    sim.stop().await;
}
