//! Every error under `/api` is problem JSON with a stable code — also for routes and methods that do
//! not exist, query strings that do not parse and bodies that are too large — while the SOAP aliases
//! under `/api/v2_soap` keep their own faults. The feed refuses a cursor beyond its newest event.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

both_backends!(
    unknown_routes_and_methods_are_problems,
    malformed_queries_name_the_parameter,
    oversized_bodies_are_problems,
    soap_aliases_under_api_keep_their_faults,
    feed_refuses_a_cursor_beyond_its_head,
);

/// Sends `method url` (absolute path) with the test token; returns status, headers and body.
async fn raw(
    app: &TestApp,
    method: Method,
    url: &str,
    body: Option<Vec<u8>>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = app
        .client
        .request(method, format!("{}{url}", app.base))
        .bearer_auth(&app.token);
    if let Some(b) = body {
        req = req.header("Content-Type", "application/json").body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

/// Asserts a problem answer and returns it.
fn problem(label: &str, status: u16, headers: &reqwest::header::HeaderMap, body: &str) -> Value {
    assert_eq!(
        headers.get("content-type").map(|v| v.to_str().unwrap()),
        Some("application/problem+json"),
        "{label}: {status} {body}"
    );
    let p: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{label}: {e}: {body}"));
    assert_eq!(p["status"], status, "{label}: {p}");
    assert!(!p["detail"].as_str().unwrap().is_empty(), "{label}: {p}");
    p
}

async fn unknown_routes_and_methods_are_problems(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for url in [
        "/api/v1/nothing",
        "/api/v1/orders/A-1/nothing",
        "/api/v2/orders",
        "/api/nothing",
        "/api",
    ] {
        let (status, headers, body) = raw(&app, Method::GET, url, None).await;
        assert_eq!(status, 404, "{url}");
        let p = problem(url, status, &headers, &body);
        assert_eq!(p["code"], "unknown_route", "{url}");
        assert!(p["detail"].as_str().unwrap().contains(url), "{p}");
    }
    for (method, url, allow) in [
        (Method::DELETE, "/api/v1/feed", "GET"),
        (Method::POST, "/api/v1/orders/A-1", "GET, PUT"),
        (Method::GET, "/api/v1/orders/A-1/cancel", "POST"),
        (Method::PATCH, "/api/v1/reservations/Q", "PUT, DELETE"),
    ] {
        let (status, headers, body) = raw(&app, method.clone(), url, None).await;
        assert_eq!(status, 405, "{method} {url}: {body}");
        assert_eq!(headers["allow"], allow, "{method} {url}");
        let p = problem(url, status, &headers, &body);
        assert_eq!(p["code"], "method_not_allowed");
        assert!(
            p["detail"].as_str().unwrap().contains(method.as_str()),
            "{p}"
        );
    }
    // A real resource that is missing is `not_found`, not `unknown_route`.
    let (status, headers, body) = raw(&app, Method::GET, "/api/v1/orders/A-1", None).await;
    assert_eq!(
        problem("order", status, &headers, &body)["code"],
        "not_found"
    );
}

async fn malformed_queries_name_the_parameter(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (url, param) in [
        ("/api/v1/feed?after=x", "after"),
        ("/api/v1/feed?limit=ten", "limit"),
        ("/api/v1/feed?wait=-1", "wait"),
        ("/api/v1/orders?updated_after=yesterday", "updated_after"),
        ("/api/v1/orders?export_status=shipped", "export_status"),
        ("/api/v1/orders?after=not-a-cursor", "after"),
        ("/api/v1/products?limit=1.5", "limit"),
        ("/api/v1/products?after=bm9wZQ", "after"),
    ] {
        let (status, headers, body) = raw(&app, Method::GET, url, None).await;
        assert_eq!(status, 400, "{url}: {body}");
        let p = problem(url, status, &headers, &body);
        assert_eq!(p["code"], "invalid_query", "{url}");
        assert_eq!(p["field"], param, "{url}: {p}");
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("`{param}`")),
            "{p}"
        );
    }
    // Out of range (well-formed) stays 422 invalid_field.
    let (status, headers, body) = raw(&app, Method::GET, "/api/v1/feed?limit=0", None).await;
    assert_eq!(status, 422);
    assert_eq!(problem("limit", status, &headers, &body)["field"], "limit");
}

async fn oversized_bodies_are_problems(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let big = vec![b' '; 1024 * 1024 + 1];
    for url in [
        "/api/v1/orders/BIG-1",
        "/api/v1/products/BIG",
        "/api/v1/reservations/BIG",
    ] {
        let (status, headers, body) = raw(&app, Method::PUT, url, Some(big.clone())).await;
        assert_eq!(status, 413, "{url}");
        let p = problem(url, status, &headers, &body);
        assert_eq!(p["code"], "body_too_large");
        assert!(p["detail"].as_str().unwrap().contains("1048576"), "{p}");
    }
    let (status, _) = app.api(Method::GET, "/orders/BIG-1", None).await;
    assert_eq!(status, 404, "nothing of it was stored");
}

async fn soap_aliases_under_api_keep_their_faults(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, ct, body) = app.post_soap_to("/api/v2_soap/index/", "<not-soap").await;
    assert_eq!(status, 500, "{body}");
    assert!(ct.starts_with("text/xml"), "{ct}");
    assert!(body.contains("Fault"), "{body}");
    let resp = app
        .client
        .get(format!("{}/api/v2_soap?wsdl=1", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.text().await.unwrap().contains("definitions"));
}

async fn feed_refuses_a_cursor_beyond_its_head(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, head) = app.api(Method::GET, "/feed/head", None).await;
    assert_eq!((status, head), (200, serde_json::json!({"head": 0})));
    let (status, page) = app.api(Method::GET, "/feed?after=0", None).await;
    assert_eq!(status, 200, "an empty feed at its head: {page}");

    let s = app.login().await;
    app.send_inventory(&s, 1, &[("H-1", 1, 1), ("H-2", 2, 2)])
        .await;
    app.drain().await;
    let (_, head) = app.api(Method::GET, "/feed/head", None).await;
    assert_eq!(head["head"], 2);
    let (status, page) = app.api(Method::GET, "/feed?after=2", None).await;
    assert_eq!((status, page["events"].as_array().unwrap().len()), (200, 0));

    // A consumer whose cursor comes from a feed that went further (this wharf was restored from
    // an older backup) is told at once, also when it long-polls.
    for url in ["/api/v1/feed?after=3", "/api/v1/feed?after=5000&wait=30"] {
        let started = Instant::now();
        let (status, headers, body) = raw(&app, Method::GET, url, None).await;
        assert!(started.elapsed() < Duration::from_secs(10), "{url} waited");
        assert_eq!(status, 409, "{url}: {body}");
        let p = problem(url, status, &headers, &body);
        assert_eq!(p["code"], "cursor_ahead");
        assert_eq!(p["head"], 2, "{p}");
    }
}
