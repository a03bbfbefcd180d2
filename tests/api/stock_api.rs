//! `GET /api/v1/stock/{sku}` for the storefront.

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

both_backends!(stock_reads_need_a_token_and_name_unknown_skus);

async fn stock_reads_need_a_token_and_name_unknown_skus(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    app.send_inventory(&s, 1, &[("KNOWN-1", 12, 5)]).await;
    app.drain().await;

    let (status, body) = app.stock("KNOWN-1").await;
    assert_eq!(status, 200);
    assert_eq!(body["sku"], "KNOWN-1");
    assert_eq!(body["source"], "default");
    assert_eq!(body["qty"], 12);
    assert_eq!(body["last_seq"], 5);
    assert!(body["updated_at"].is_string(), "{body}");

    let resp = app
        .client
        .get(format!("{}/api/v1/stock/NOPE", app.base))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(problem["code"], "not_found");
    assert!(problem["detail"].as_str().unwrap().contains("NOPE"));

    for auth in [
        None,
        Some("Bearer wrong-token"),
        Some("Basic b3JkZXJmbG93Og=="),
    ] {
        let mut req = app.client.get(format!("{}/api/v1/stock/KNOWN-1", app.base));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{auth:?}");
        let problem: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(problem["code"], "unauthorized");
    }
}
