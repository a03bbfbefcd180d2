//! Nothing is anonymous: login sessions, their expiry, and wrong credentials.

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, TestApp, USER, element_text, faultstring};

both_backends!(
    wrong_password_is_access_denied,
    missing_or_unknown_session_is_expired,
    idle_session_expires,
    ended_session_no_longer_works,
);

async fn wrong_password_is_access_denied(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = app.login_as(USER, "not the password").await.unwrap_err();
    assert!(body.contains("<faultcode>2</faultcode>"), "{body}");
    assert_eq!(faultstring(&body), "Access denied.");
    // An unknown user gets exactly the same answer.
    let body = app.login_as("nobody", PASSWORD).await.unwrap_err();
    assert_eq!(faultstring(&body), "Access denied.");
    assert!(app.login_as(USER, PASSWORD).await.is_ok());
}

async fn missing_or_unknown_session_is_expired(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for session in ["", "0123456789abcdef"] {
        let (status, body) = app.send_inventory(session, 1, &[("A", 1, 1)]).await;
        assert_eq!(status, 500);
        assert!(body.contains("<faultcode>5</faultcode>"), "{body}");
        assert_eq!(faultstring(&body), "Session expired. Try to relogin.");
    }
    assert_eq!(app.queue_depth().await, vec![]);
}

async fn idle_session_expires(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.soap.session_idle_timeout_secs = 1).await;
    let s = app.login().await;
    assert_eq!(app.send_inventory(&s, 1, &[("A", 1, 1)]).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = app.send_inventory(&s, 2, &[("A", 2, 2)]).await;
    assert_eq!(status, 500);
    assert_eq!(faultstring(&body), "Session expired. Try to relogin.");
    // Logging in again works.
    let s = app.login().await;
    assert_eq!(app.send_inventory(&s, 2, &[("A", 2, 2)]).await.0, 200);
    assert_eq!(app.drain().await, 2);
}

async fn ended_session_no_longer_works(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.login().await;
    let end = format!(
        "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:ns1=\"urn:Magento\">\
         <SOAP-ENV:Body><ns1:endSession><sessionId>{s}</sessionId></ns1:endSession></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    );
    let (status, body) = app.post_soap(end).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        element_text(&body, "endSessionReturn").as_deref(),
        Some("true")
    );
    let (status, body) = app.send_inventory(&s, 1, &[("A", 1, 1)]).await;
    assert_eq!(status, 500);
    assert_eq!(faultstring(&body), "Session expired. Try to relogin.");
}
