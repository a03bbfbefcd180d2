//! Sessions and admin tokens have an absolute lifetime however busy they are, and expired ones are
//! deleted.

use std::time::Duration;

use diesel::prelude::*;
use wharf::db::schema::{access_tokens, soap_sessions};

use super::{post, request_token, wharf_with};
use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, TestApp, USER, element_text, faultstring};

both_backends!(
    a_busy_session_ends_after_its_absolute_lifetime,
    admin_tokens_end_after_the_absolute_lifetime,
    expired_sessions_and_tokens_are_deleted,
);

async fn a_busy_session_ends_after_its_absolute_lifetime(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.soap.session_idle_timeout_secs = 3600;
        s.soap.session_max_lifetime_secs = 3;
    })
    .await;
    app.expect_leftovers(
        "it checks how long credentials are accepted; the accepted messages are not applied",
    );
    let s = app.login().await;
    // Used again and again: never idle, yet over after three seconds.
    assert_eq!(app.send_inventory(&s, 1, &[("A", 1, 1)]).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.send_inventory(&s, 2, &[("A", 2, 2)]).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let (status, body) = app.send_inventory(&s, 3, &[("A", 3, 3)]).await;
    assert_eq!(status, 500);
    assert!(body.contains("<faultcode>5</faultcode>"), "{body}");
    assert_eq!(faultstring(&body), "Session expired. Try to relogin.");
    let s = app.login().await;
    assert_eq!(app.send_inventory(&s, 3, &[("A", 3, 3)]).await.0, 200);
}

async fn admin_tokens_end_after_the_absolute_lifetime(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.soap.token_lifetime_secs = 4 * 3600;
        s.soap.session_max_lifetime_secs = 2;
    })
    .await;
    app.expect_leftovers(
        "it checks how long credentials are accepted; the accepted messages are not applied",
    );
    let resp = app
        .client
        .post(format!("{}/soap/default", app.base))
        .header("Content-Type", "application/soap+xml")
        .body(super::token_envelope(USER, PASSWORD))
        .send()
        .await
        .unwrap();
    let expires = resp.headers()["X-Wharf-Token-Expires"]
        .to_str()
        .unwrap()
        .to_string();
    let token = element_text(&resp.text().await.unwrap(), "result").unwrap();
    // The expiry announced is the absolute limit, not the four-hour token lifetime.
    let expires = chrono::DateTime::parse_from_rfc3339(&expires).unwrap();
    let left = expires.signed_duration_since(chrono::Utc::now());
    assert!(left <= chrono::TimeDelta::seconds(2), "{left}");

    let app = &app;
    let send = |seq: i64| {
        let body = crate::helpers::fixture("m2-inventory-update.xml", "")
            .replace("700042", &seq.to_string());
        let auth = format!("Bearer {token}");
        async move {
            post(
                app,
                "/soap/default?services=realtimeDespatchOrderFlowInventoryRequestManagementV1",
                "application/soap+xml",
                &[("Authorization", auth.as_str())],
                body,
            )
            .await
        }
    };
    assert_eq!(send(1).await.0, 200);
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let (status, body) = send(2).await;
    assert_eq!(status, 500);
    assert!(
        body.contains("The access token is unknown or has expired"),
        "{body}"
    );
}

async fn expired_sessions_and_tokens_are_deleted(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.soap.session_idle_timeout_secs = 3600;
        s.soap.session_max_lifetime_secs = 3;
    })
    .await;
    let stored = || {
        app.with_conn(|c| {
            (
                soap_sessions::table.count().get_result::<i64>(c).unwrap(),
                access_tokens::table.count().get_result::<i64>(c).unwrap(),
            )
        })
    };
    let _ = app.login().await;
    let _ = app.login().await;
    assert_eq!(request_token(&app, USER, PASSWORD).await.0, 200);
    assert_eq!(stored().await, (2, 1));
    // Ended sessions go too.
    let ended = app.login().await;
    let end = format!(
        "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:ns1=\"urn:Magento\">\
         <SOAP-ENV:Body><ns1:endSession><sessionId>{ended}</sessionId></ns1:endSession></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    );
    assert_eq!(app.post_soap(end).await.0, 200);

    // `wharf users list` counts only what is still valid …
    let env = [("WHARF_SOAP__SESSION_MAX_LIFETIME_SECS", "3")];
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let list = wharf_with(&app, &["users", "list"], "", &env).await;
    assert!(list.ok, "{}", list.stderr);
    let row: Vec<String> = list
        .stdout
        .lines()
        .find(|l| l.starts_with(USER))
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(
        (row[4].as_str(), row[5].as_str()),
        ("0", "0"),
        "{}",
        list.stdout
    );

    // … and the next login deletes the expired and ended ones.
    let _ = app.login().await;
    assert_eq!(stored().await, (1, 0));
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(request_token(&app, USER, PASSWORD).await.0, 200);
    assert_eq!(stored().await, (0, 1));
}
