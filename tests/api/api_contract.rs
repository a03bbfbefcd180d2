//! The storefront API as a client generator sees it: the served OpenAPI document is valid OpenAPI
//! 3.1 (checked by `openapi-spec-validator`), and live responses of every kind validate against the
//! schemas of that same document (checked by `tests/clients/check_responses.py` with `jsonschema`).
//! `.ci/run` installs both Python packages.

use std::process::Command;

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, TestApp, USER, order_json};
use crate::warehouse_api::{Behaviour, WarehouseSim};

both_backends!(
    openapi_document_is_valid_openapi_3_1,
    live_responses_match_their_schemas,
    the_response_check_names_what_is_wrong,
);

/// The document as served, unauthenticated like a client generator fetches it.
pub async fn served_document(app: &TestApp) -> Value {
    let resp = app
        .client
        .get(format!("{}/api/v1/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.unwrap()
}

fn python(args: &[&str]) -> (bool, String) {
    let out = Command::new("python3")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 (install it; .ci/run does): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn openapi_document_is_valid_openapi_3_1(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let doc = served_document(&app).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let (ok, out) = python(&["-m", "openapi_spec_validator", path.to_str().unwrap()]);
    assert!(
        ok,
        "openapi-spec-validator refuses the served document:\n{out}"
    );

    // What a generator needs beyond validity: every error is problem JSON, every status documented,
    // every event kind typed.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                if !status.starts_with(['4', '5']) || response.get("$ref").is_some() {
                    continue;
                }
                let types: Vec<&String> = response["content"].as_object().unwrap().keys().collect();
                assert_eq!(
                    types,
                    vec!["application/problem+json"],
                    "{method} {path} {status}"
                );
            }
            assert!(op["responses"].get("500").is_some(), "{method} {path}");
        }
    }
    let statuses = &doc["components"]["schemas"]["ExportStatus"]["enum"];
    assert_eq!(
        statuses,
        &json!([
            "pending",
            "exported",
            "failed",
            "lost",
            "dismissed",
            "skipped"
        ])
    );
    let mapping = doc["components"]["schemas"]["Event"]["discriminator"]["mapping"]
        .as_object()
        .unwrap();
    let mut kinds: Vec<&String> = mapping.keys().collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            "order.completed",
            "order.export_status_changed",
            "order.split",
            "shipment.created",
            "shipment.failed",
            "stock.changed"
        ]
    );
    let failed = &doc["components"]["schemas"]["ShipmentFailed"]["properties"];
    for member in ["order", "message_seq_id", "reason", "sku"] {
        assert!(
            failed.get(member).is_some(),
            "shipment.failed lacks {member}"
        );
    }
}

/// Live responses, recorded for the checker.
struct Recorder<'a> {
    app: &'a TestApp,
    records: Vec<Value>,
}

impl Recorder<'_> {
    /// Calls `url` (under `/api/v1`) and records the answer as a response of operation
    /// `method template`; returns status and body.
    async fn call(
        &mut self,
        label: &str,
        method: Method,
        template: &str,
        url: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .app
            .client
            .request(method.clone(), format!("{}/api/v1{url}", self.app.base))
            .bearer_auth(&self.app.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(label, method, template, req).await
    }

    async fn send(
        &mut self,
        label: &str,
        method: Method,
        template: &str,
        req: reqwest::RequestBuilder,
    ) -> (u16, Value) {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let text = resp.text().await.unwrap();
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{label}: not JSON ({e}): {text}"))
        };
        self.records.push(json!({
            "label": label, "method": method.as_str(), "path": format!("/api/v1{template}"),
            "status": status, "content_type": content_type, "body": body,
        }));
        (status, body)
    }

    /// Runs the checker over everything recorded; returns whether all passed and its output.
    fn check(&self, doc: &Value) -> (bool, String) {
        check_responses(doc, &self.records)
    }
}

fn check_responses(doc: &Value, records: &[Value]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let doc_path = dir.path().join("openapi.json");
    let records_path = dir.path().join("responses.json");
    std::fs::write(&doc_path, serde_json::to_vec(doc).unwrap()).unwrap();
    std::fs::write(&records_path, serde_json::to_vec(records).unwrap()).unwrap();
    let script = format!(
        "{}/tests/clients/check_responses.py",
        env!("CARGO_MANIFEST_DIR")
    );
    python(&[
        &script,
        doc_path.to_str().unwrap(),
        records_path.to_str().unwrap(),
    ])
}

const WMS_USER: &str = "wharf";
const WMS_PASSWORD: &str = "wms secret";

/// A test app exporting to the OrderFlow simulator, retries due at once, lost after 2 attempts.
pub async fn app_with_warehouse(backend: Backend) -> (TestApp, WarehouseSim) {
    let sim = WarehouseSim::start(WMS_USER, WMS_PASSWORD).await;
    let endpoint = sim.endpoint();
    let app = TestApp::spawn_with(backend, move |s| {
        let w = &mut s.warehouse;
        w.endpoint = endpoint;
        w.username = WMS_USER.into();
        w.password = WMS_PASSWORD.into();
        w.organisation = "ACME".into();
        w.channel = "web".into();
        w.timeout_secs = 2;
        w.orders.enabled = true;
        // The tests run the exporter themselves: the server's own runner must not take a task
        // at a minute's turn (it did, and held it at the end-of-test check).
        w.orders.schedule = "0 0 1 1 *".into();
        w.orders.max_attempts = 2;
        w.orders.backoff_base_secs = 0;
    })
    .await;
    (app, sim)
}

/// Sends a Magento 2 inventory update with sources, `(sku, source, qty, seq)` lines, over HTTP Basic.
pub async fn send_inventory_with_sources(
    app: &TestApp,
    message_seq_id: i64,
    lines: &[(&str, &str, i64, i64)],
) {
    let qtys: String = lines
        .iter()
        .map(|(sku, source, qty, _)| {
            format!("<item><sku>{sku}</sku><qty>{qty}</qty><source>{source}</source></item>")
        })
        .collect();
    let seqs: String = lines
        .iter()
        .map(|(sku, _, _, seq)| format!("<item><sku>{sku}</sku><seq>{seq}</seq></item>"))
        .collect();
    let body = format!(
        "<env:Envelope xmlns:env=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:ns1=\"urn:m2\"><env:Body>\
         <ns1:realtimeDespatchOrderFlowInventoryRequestManagementV1UpdateRequest>\
         <productQtys>{qtys}</productQtys><productSeqs>{seqs}</productSeqs>\
         <messageSeqId>{message_seq_id}</messageSeqId>\
         </ns1:realtimeDespatchOrderFlowInventoryRequestManagementV1UpdateRequest></env:Body></env:Envelope>"
    );
    let resp = app
        .client
        .post(format!(
            "{}/soap/default?services=realtimeDespatchOrderFlowInventoryRequestManagementV1",
            app.base
        ))
        .basic_auth(USER, Some(PASSWORD))
        .header("Content-Type", "application/soap+xml; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
}

/// Stock from the warehouse, two orders shipped (one completely), two orders exported (one
/// refused until lost, then dismissed), a product, a reservation.
async fn build_history(app: &TestApp, sim: &WarehouseSim) {
    let s = app.login().await;
    app.send_inventory(&s, 1, &[("C-A", 10, 1), ("C-B", 3, 2)])
        .await;
    send_inventory_with_sources(app, 2, &[("C-A", "shop2", 4, 3)]).await;
    for id in ["C-1", "C-2", "C-3"] {
        assert_eq!(app.put_order(id, &[("C-A", 2), ("C-B", 1)]).await.0, 201);
    }
    sim.set_behaviour(Behaviour {
        fail: ["C-3".to_string()].into(),
        ..Behaviour::default()
    });
    let exporter =
        wharf::channels::warehouse::Exporter::new(app.pool.clone(), app.settings.clone()).unwrap();
    exporter.export_orders().await.unwrap();
    exporter.export_orders().await.unwrap();
    app.with_conn(|c| {
        wharf::channels::warehouse::dismiss(c, &["C-3".to_string()], "bob", "sent by e-mail")
            .unwrap()
    })
    .await;
    app.send_shipment(&s, "C-1", 10, &[("C-A", 1)], "TRK-1")
        .await;
    app.send_shipment(&s, "C-1", 11, &[("C-A", 1), ("C-B", 1)], "TRK-2")
        .await;
    // More than is left to ship: fails whole (and is on the feed once the shipments rules say so).
    app.send_shipment(&s, "C-2", 12, &[("C-A", 5)], "").await;
    app.drain().await;
}

/// A split body: one child `child` taking `qty` of `C-A`.
fn split_body(child: &str, qty: i64) -> Value {
    json!({"children": [{"increment_id": child, "lines": [{"sku": "C-A", "qty": qty}]}]})
}

/// One call to record: (label, method, path template, URL under `/api/v1`, body).
type Call<'a> = (&'a str, Method, &'a str, &'a str, Option<Value>);

/// Successful answers of every operation, in an order that makes each meaningful.
#[rustfmt::skip] // a table, one call per line
fn successful_calls() -> Vec<Call<'static>> {
    let order = "/orders/{increment_id}";
    let split = "/orders/{increment_id}/split";
    let mut changed = order_json(&[("C-B", 2)]);
    changed["customer_note"] = json!("leave at the door");
    let product = json!({"name": "Mug", "barcode": "5012345678900", "price": "7.50", "weight": 0.3});
    let (p, q) = ("/products/{sku}", "/reservations/{quote_id}");
    let cart = json!({"lines": [{"sku": "C-A", "qty": 1}]});
    vec![
        ("order shipped", Method::GET, order, "/orders/C-1", None),
        ("order dismissed", Method::GET, order, "/orders/C-3", None),
        ("order exported", Method::GET, order, "/orders/C-2", None),
        ("order created", Method::PUT, order, "/orders/C-4", Some(order_json(&[("C-B", 1)]))),
        ("order replaced", Method::PUT, order, "/orders/C-4", Some(changed)),
        ("order cancelled", Method::POST, "/orders/{increment_id}/cancel", "/orders/C-4/cancel", None),
        ("order to split", Method::PUT, order, "/orders/C-5", Some(order_json(&[("C-A", 2), ("C-B", 1)]))),
        ("order split", Method::POST, split, "/orders/C-5/split", Some(split_body("C-5-A", 1))),
        ("order list", Method::GET, "/orders", "/orders?limit=2", None),
        ("order list, last page", Method::GET, "/orders", "/orders?export_status=dismissed", None),
        ("product created", Method::PUT, p, "/products/MUG-1", Some(product.clone())),
        ("product replaced", Method::PUT, p, "/products/MUG-1", Some(product)),
        ("product", Method::GET, p, "/products/MUG-1", None),
        ("product list", Method::GET, "/products", "/products?updated_after=2020-01-01T00:00:00Z", None),
        ("stock of a SKU", Method::GET, "/stock/{sku}", "/stock/C-A", None),
        ("stock at a source", Method::GET, "/stock/{sku}", "/stock/C-A?source=shop2", None),
        ("stock list", Method::GET, "/stock", "/stock?sku=C-A&sku=C-B&sku=NONE", None),
        ("feed", Method::GET, "/feed", "/feed?after=0&limit=1000", None),
        ("feed head", Method::GET, "/feed/head", "/feed/head", None),
        ("reservation stored", Method::PUT, q, "/reservations/Q1", Some(cart)),
        ("reservation deleted", Method::DELETE, q, "/reservations/Q1", None),
    ]
}

async fn live_responses_match_their_schemas(backend: Backend) {
    let (app, sim) = app_with_warehouse(backend).await;
    build_history(&app, &sim).await;
    let mut r = Recorder {
        app: &app,
        records: Vec::new(),
    };
    let mut answers = std::collections::HashMap::new();
    for (label, method, template, url, body) in successful_calls() {
        let (status, answer) = r.call(label, method, template, url, body).await;
        assert!((200..300).contains(&status), "{label}: {status} {answer}");
        answers.insert(label, answer);
    }
    // The history has what the checker should see: shipments, a dismissal, several sources,
    // every event kind the rules write today.
    assert_eq!(
        answers["order shipped"]["shipments"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(answers["order dismissed"]["export"]["status"], "dismissed");
    assert_eq!(answers["order split"]["children"], json!(["C-5-A"]));
    assert_eq!(answers["stock of a SKU"].as_array().unwrap().len(), 2);
    let kinds: Vec<&str> = answers["feed"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for kind in [
        "stock.changed",
        "shipment.created",
        "order.completed",
        "order.export_status_changed",
        "order.split",
    ] {
        assert!(kinds.contains(&kind), "no {kind} event to check: {kinds:?}");
    }

    record_problems(&mut r).await;
    let doc = served_document(&app).await;
    let (ok, out) = r.check(&doc);
    assert!(
        ok,
        "live responses do not match the served document:\n{out}"
    );
    for record in &r.records {
        let line = format!("ok {}\n", record["label"].as_str().unwrap());
        assert!(out.contains(&line), "{line:?} not checked:\n{out}");
    }
    sim.stop().await;
}

/// Error answers a handler gives, with their status.
#[rustfmt::skip] // a table, one call per line
fn problem_calls() -> Vec<(Call<'static>, u16)> {
    let order = "/orders/{increment_id}";
    let cancel = "/orders/{increment_id}/cancel";
    let split = "/orders/{increment_id}/split";
    vec![
        (("no such order", Method::GET, order, "/orders/NOPE", None), 404),
        (("no such reservation", Method::DELETE, "/reservations/{quote_id}", "/reservations/Q1", None), 404),
        (("bad field", Method::PUT, order, "/orders/X-1", Some(json!({"status": 1}))), 422),
        (("cancel shipped", Method::POST, cancel, "/orders/C-1/cancel", None), 409),
        (("split exported", Method::POST, split, "/orders/C-2/split", Some(split_body("C-2-A", 1))), 409),
        (("split too much", Method::POST, split, "/orders/C-5/split", Some(split_body("C-5-B", 9))), 422),
        (("bad query", Method::GET, "/feed", "/feed?limit=ten", None), 400),
        (("limit out of range", Method::GET, "/orders", "/orders?limit=0", None), 422),
        (("cursor ahead", Method::GET, "/feed", "/feed?after=999999", None), 409),
        (("no stock", Method::GET, "/stock/{sku}", "/stock/NONE", None), 404),
    ]
}

/// Error answers of each kind, recorded for the checker.
async fn record_problems(r: &mut Recorder<'_>) {
    let order = "/orders/{increment_id}";
    for ((label, method, template, url, body), want) in problem_calls() {
        let (status, problem) = r.call(label, method, template, url, body).await;
        assert_eq!(status, want, "{label}: {problem}");
    }
    let base = r.app.base.clone();
    let client = r.app.client.clone();
    let unauthorized = client.get(format!("{base}/api/v1/orders/C-1"));
    r.send("no token", Method::GET, order, unauthorized).await;
    let oversized = client
        .put(format!("{base}/api/v1/products/BIG"))
        .bearer_auth(&r.app.token)
        .header("Content-Type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024]);
    let (status, _) = r
        .send("body too large", Method::PUT, "/products/{sku}", oversized)
        .await;
    assert_eq!(status, 413);
    // No operation documents these; they are problems all the same.
    for (label, method, url) in [
        ("unknown route", Method::GET, "/api/v1/nothing/here"),
        ("unknown API version", Method::GET, "/api/v2/orders"),
        ("method not allowed", Method::DELETE, "/api/v1/orders/C-1"),
    ] {
        let req = client
            .request(method.clone(), format!("{base}{url}"))
            .bearer_auth(&r.app.token);
        r.send(label, method, url.trim_start_matches("/api/v1"), req)
            .await;
        let last = r.records.last_mut().unwrap();
        last["schema"] = json!("Problem");
        last["media"] = json!("application/problem+json");
    }
}

async fn the_response_check_names_what_is_wrong(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let doc = served_document(&app).await;
    let product = json!({
        "sku": "MUG-1", "name": "Mug", "barcode": null, "weight": null, "weight_unit": null,
        "price": "7.50", "cost": null, "tax_code": null, "length": null, "width": null,
        "height": null, "dimension_unit": null, "description": null,
        "updated_at": "2024-05-01T09:30:00Z", "export_pending": true, "exported_at": null,
    });
    let record = |label: &str, body: Value| {
        json!({"label": label, "method": "GET", "path": "/api/v1/products/{sku}", "status": 200,
               "content_type": "application/json", "body": body})
    };
    let (ok, out) = check_responses(&doc, &[record("good", product.clone())]);
    assert!(ok, "{out}");

    // A time without offset (as wharf wrote them before), an undocumented member, a wrong type.
    let mut naive = product.clone();
    naive["updated_at"] = json!("2024-05-01T09:30:00");
    let mut extra = product.clone();
    extra["colour"] = json!("red");
    let mut typed = product.clone();
    typed["export_pending"] = json!("yes");
    let mut wrong_status = record("undocumented status", product.clone());
    wrong_status["status"] = json!(418);
    let records = [
        record("naive time", naive),
        record("extra member", extra),
        record("wrong type", typed),
        wrong_status,
    ];
    let (ok, out) = check_responses(&doc, &records);
    assert!(!ok, "{out}");
    for expected in [
        "FAIL naive time (GET /api/v1/products/{sku} -> 200: at $.updated_at:",
        "FAIL extra member (GET /api/v1/products/{sku} -> 200: at $:",
        "'colour'",
        "FAIL wrong type (GET /api/v1/products/{sku} -> 200: at $.export_pending:",
        "FAIL undocumented status (GET /api/v1/products/{sku} -> 418: status 418 is not documented",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
}
