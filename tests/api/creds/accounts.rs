//! `wharf users list|remove|passwd` and `wharf tokens list|revoke` through the real binary, and
//! passwords taken exactly as given everywhere (a password may end with a space).

use super::{basic, post, request_token, wharf_err, wharf_ok, wharf_with};
use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, TestApp, USER, element_text, faultstring};

both_backends!(
    users_are_listed_removed_and_given_new_passwords,
    tokens_are_listed_without_the_token_and_revoked,
    passwords_are_never_trimmed,
);

/// An inventory message over WS-I with HTTP Basic credentials; returns the status.
async fn send_with_basic(app: &TestApp, user: &str, password: &str, seq: i64) -> u16 {
    let body = crate::helpers::fixture("m1-inventory-ws-i.xml", "")
        .replace("<sessionId></sessionId>", "")
        .replace("700042", &seq.to_string());
    let auth = basic(user, password);
    post(
        app,
        "/api/v2_soap/index/",
        "text/xml",
        &[("Authorization", auth.as_str())],
        body,
    )
    .await
    .0
}

/// An inventory message with a Bearer admin token; returns the status and body.
async fn send_with_bearer(app: &TestApp, token: &str, seq: i64) -> (u16, String) {
    let body =
        crate::helpers::fixture("m2-inventory-update.xml", "").replace("700042", &seq.to_string());
    let auth = format!("Bearer {token}");
    post(
        app,
        "/soap/default?services=realtimeDespatchOrderFlowInventoryRequestManagementV1",
        "application/soap+xml; charset=utf-8",
        &[("Authorization", auth.as_str())],
        body,
    )
    .await
}

/// The SESSIONS and TOKENS columns of `wharf users list` for `user`.
fn counts(list: &str, user: &str) -> (String, String) {
    let row = list
        .lines()
        .find(|l| l.split_whitespace().next() == Some(user))
        .unwrap_or_else(|| panic!("{user} not listed in\n{list}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    // NAME ROLE CREATED(date time) SESSIONS TOKENS
    (columns[4].to_string(), columns[5].to_string())
}

async fn users_are_listed_removed_and_given_new_passwords(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.expect_leftovers("it checks who may send; the accepted messages are not applied");
    let add = wharf_with(
        &app,
        &["users", "add", "wms2", "--password-stdin"],
        "first-password\n",
        &[],
    )
    .await;
    assert!(add.ok, "{}", add.stderr);

    let session = app.login().await;
    let (_, token) = request_token(&app, USER, PASSWORD).await;
    let token = element_text(&token, "result").unwrap();
    assert_eq!(send_with_basic(&app, USER, PASSWORD, 1).await, 200);

    let list = wharf_ok(&app, &["users", "list"]).await;
    assert!(list.starts_with("NAME"), "{list}");
    assert!(list.contains("warehouse"), "{list}");
    assert_eq!(counts(&list, USER), ("1".into(), "1".into()), "{list}");
    assert_eq!(counts(&list, "wms2"), ("0".into(), "0".into()), "{list}");
    assert!(!list.contains("argon2"), "never the password hash: {list}");

    // A new password ends the user's sessions and tokens at once; the old password stops working,
    // also over HTTP Basic (which the server had verified moments ago).
    let passwd = wharf_with(
        &app,
        &["users", "passwd", USER, "--password-stdin"],
        "a brand new password\n",
        &[],
    )
    .await;
    assert!(passwd.ok, "{}", passwd.stderr);
    assert!(
        passwd
            .stdout
            .contains("ended 1 session(s) and 1 admin token(s)"),
        "{}",
        passwd.stdout
    );
    let (status, body) = app.send_inventory(&session, 2, &[("A", 1, 1)]).await;
    assert_eq!(
        (status, faultstring(&body).as_str()),
        (500, "Session expired. Try to relogin.")
    );
    let (status, body) = send_with_bearer(&app, &token, 3).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("The access token is unknown or has expired"),
        "{body}"
    );
    assert_eq!(send_with_basic(&app, USER, PASSWORD, 4).await, 500);
    assert!(app.login_as(USER, PASSWORD).await.is_err());
    assert_eq!(
        send_with_basic(&app, USER, "a brand new password", 5).await,
        200
    );
    let session = app.login_as(USER, "a brand new password").await.unwrap();

    // Removing a user ends its session and its HTTP Basic access at once.
    let out = wharf_ok(&app, &["users", "remove", USER]).await;
    assert!(
        out.contains("removed user \"orderflow\"; ended 1 session(s)"),
        "{out}"
    );
    let (status, body) = app.send_inventory(&session, 6, &[("A", 1, 1)]).await;
    assert_eq!(
        (status, faultstring(&body).as_str()),
        (500, "Session expired. Try to relogin.")
    );
    assert_eq!(
        send_with_basic(&app, USER, "a brand new password", 7).await,
        500
    );
    let list = wharf_ok(&app, &["users", "list"]).await;
    assert!(!list.contains(USER), "{list}");
    assert!(list.contains("wms2"), "{list}");

    // Clear refusals, nothing changed.
    let err = wharf_err(&app, &["users", "remove", "nobody"]).await;
    assert!(err.contains("user \"nobody\" does not exist"), "{err}");
    for (input, reason) in [
        ("short\n", "at least 8 characters"),
        ("two\nlines\n", "spans several lines"),
    ] {
        let run = wharf_with(
            &app,
            &["users", "passwd", "wms2", "--password-stdin"],
            input,
            &[],
        )
        .await;
        assert!(!run.ok);
        assert!(run.stderr.contains(reason), "{reason}: {}", run.stderr);
    }
    let run = wharf_with(&app, &["users", "passwd", "wms2"], "long enough\n", &[]).await;
    assert!(
        !run.ok && run.stderr.contains("--password-stdin"),
        "{}",
        run.stderr
    );
    assert!(app.login_as("wms2", "first-password").await.is_ok());
}

async fn tokens_are_listed_without_the_token_and_revoked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let add = wharf_with(&app, &["tokens", "add", "shop2"], "", &[]).await;
    assert!(add.ok, "{}", add.stderr);
    let token = add.stdout.trim().to_string();

    let list = wharf_ok(&app, &["tokens", "list"]).await;
    let row = |list: &str, name: &str| {
        list.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} not in\n{list}"))
            .to_string()
    };
    assert!(row(&list, "shop2").ends_with("never"), "{list}");
    assert!(row(&list, "storefront").ends_with("never"), "{list}");
    assert!(
        !list.contains(&token) && !list.contains(&app.token),
        "{list}"
    );

    let stock = |token: String| {
        let client = app.client.clone();
        let url = format!("{}/api/v1/stock/X", app.base);
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        stock(token.clone()).await,
        404,
        "a valid token reaches the handler"
    );
    let list = wharf_ok(&app, &["tokens", "list"]).await;
    let used = row(&list, "shop2");
    assert!(!used.ends_with("never"), "last use recorded: {list}");
    assert!(
        used.contains(&chrono::Utc::now().format("%Y-%m-%d").to_string()),
        "{used}"
    );

    let out = wharf_ok(&app, &["tokens", "revoke", "shop2"]).await;
    assert!(out.contains("revoked token \"shop2\""), "{out}");
    assert_eq!(stock(token).await, 401);
    assert_eq!(
        stock(app.token.clone()).await,
        404,
        "other tokens keep working"
    );
    let list = wharf_ok(&app, &["tokens", "list"]).await;
    assert!(!list.contains("shop2"), "{list}");
    let err = wharf_err(&app, &["tokens", "revoke", "shop2"]).await;
    assert!(err.contains("token \"shop2\" does not exist"), "{err}");
}

async fn passwords_are_never_trimmed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.expect_leftovers("it checks who may send; the accepted messages are not applied");
    let password = " pass word with spaces ";
    let add = wharf_with(
        &app,
        &["users", "add", "spacey", "--password-stdin"],
        &format!("{password}\n"),
        &[],
    )
    .await;
    assert!(add.ok, "{}", add.stderr);

    // SOAP login (apiKey), the Magento 2 token request (password) and HTTP Basic all take the
    // password exactly; without its spaces it is a different password.
    assert!(app.login_as("spacey", password).await.is_ok());
    assert!(app.login_as("spacey", password.trim()).await.is_err());
    let (status, body) = request_token(&app, "spacey", password).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = request_token(&app, "spacey", password.trim()).await;
    assert_eq!(status, 500);
    assert_eq!(send_with_basic(&app, "spacey", password, 1).await, 200);
    assert_eq!(
        send_with_basic(&app, "spacey", password.trim(), 2).await,
        500
    );

    // A password given with a Windows line ending keeps its trailing space too.
    let passwd = wharf_with(
        &app,
        &["users", "passwd", "spacey", "--password-stdin"],
        "ends with a space \r\n",
        &[],
    )
    .await;
    assert!(passwd.ok, "{}", passwd.stderr);
    assert!(app.login_as("spacey", "ends with a space ").await.is_ok());
    assert!(app.login_as("spacey", "ends with a space").await.is_err());
}
