//! Password guessing: failed checks make the user name and the address wait, a correct password
//! after the wait works, the warehouse keeps working meanwhile, and refused names are logged
//! escaped.

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;

use crate::both_backends;
use crate::helpers::{
    Backend, PASSWORD, TestApp, TestDb, USER, element_text, faultstring, inventory_envelope,
    login_envelope,
};

both_backends!(
    wrong_passwords_make_the_name_wait_then_the_right_one_works,
    a_waiting_name_does_not_lock_out_another_user,
    an_address_guessing_many_names_waits_on_every_way_in,
    the_warehouse_keeps_working_while_someone_guesses,
    refused_user_names_are_logged_escaped,
);

/// Test throttle: waits of 1 s (then 2 s…), refusals answered after 50 ms.
fn throttle(free_per_user: u32, free_per_address: u32) -> impl FnOnce(&mut wharf::Settings) {
    move |s| {
        s.auth.free_failures_per_user = free_per_user;
        s.auth.free_failures_per_address = free_per_address;
        s.auth.throttle_base_ms = 1000;
        s.auth.throttled_pause_ms = 50;
    }
}

const WAIT: Duration = Duration::from_millis(1200);

/// Posts a SOAP body with headers; returns status, `Retry-After` and body.
async fn post(
    app: &TestApp,
    path: &str,
    content_type: &str,
    authorization: Option<&str>,
    body: String,
) -> (u16, Option<String>, String) {
    let mut req = app
        .client
        .post(format!("{}{path}", app.base))
        .header("Content-Type", content_type)
        .body(body);
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, resp.text().await.unwrap())
}

async fn login(app: &TestApp, user: &str, password: &str) -> (u16, Option<String>, String) {
    post(
        app,
        "/soap",
        "text/xml; charset=utf-8",
        None,
        login_envelope(user, password),
    )
    .await
}

async fn admin_token(app: &TestApp, user: &str, password: &str) -> (u16, Option<String>, String) {
    let body = format!(
        "<env:Envelope xmlns:env=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:ns1=\"urn:x\"><env:Body>\
         <ns1:integrationAdminTokenServiceV1CreateAdminAccessTokenRequest><username>{user}</username>\
         <password>{password}</password></ns1:integrationAdminTokenServiceV1CreateAdminAccessTokenRequest>\
         </env:Body></env:Envelope>"
    );
    post(
        app,
        "/soap/default?services=integrationAdminTokenServiceV1",
        "application/soap+xml; charset=utf-8",
        None,
        body,
    )
    .await
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// An inventory update authenticated with HTTP Basic.
async fn basic_update(app: &TestApp, user: &str, password: &str, seq: i64) -> (u16, String) {
    let (status, _, body) = post(
        app,
        "/soap",
        "text/xml; charset=utf-8",
        Some(&basic(user, password)),
        inventory_envelope("", seq, &[("A", 1, seq)]),
    )
    .await;
    (status, body)
}

async fn rejections(app: &TestApp) -> usize {
    app.with_conn(|c| wharf::queue::recent_rejections(c, 1000).unwrap().len())
        .await
}

/// The fault text of a SOAP 1.1 or 1.2 fault.
fn fault_text(body: &str) -> String {
    element_text(body, "faultstring")
        .or_else(|| element_text(body, "Text"))
        .unwrap_or_else(|| panic!("not a fault: {body}"))
}

fn assert_told_to_wait(body: &str, whom: &str) {
    let text = fault_text(body);
    assert!(
        text.starts_with(&format!("Too many failed sign-ins {whom}")) && text.contains(" s before"),
        "{body}"
    );
}

async fn wrong_passwords_make_the_name_wait_then_the_right_one_works(backend: Backend) {
    let app = TestApp::spawn_with(backend, throttle(3, 100)).await;
    for _ in 0..4 {
        let (status, retry, body) = login(&app, USER, "guess").await;
        assert_eq!((status, retry), (500, None));
        assert_eq!(faultstring(&body), "Access denied.");
    }
    let recorded = rejections(&app).await;
    assert_eq!(recorded, 4, "each checked refusal is recorded");

    // The fourth failure started a wait: even the right password is refused unchecked, and the
    // answer says how long to wait.
    let (status, retry, body) = login(&app, USER, PASSWORD).await;
    assert_eq!(status, 500);
    assert!(body.contains("<faultcode>2</faultcode>"), "{body}");
    assert_told_to_wait(&body, "for this user name");
    assert_eq!(retry.as_deref(), Some("1"));
    let (_, _, body) = admin_token(&app, USER, PASSWORD).await;
    assert_told_to_wait(&body, "for this user name");
    assert_eq!(
        rejections(&app).await,
        recorded,
        "throttled refusals are not recorded"
    );

    tokio::time::sleep(WAIT).await;
    assert!(app.login_as(USER, PASSWORD).await.is_ok());
    // The success reset the name: three more free failures before a wait.
    for _ in 0..3 {
        let (_, _, body) = login(&app, USER, "guess").await;
        assert_eq!(faultstring(&body), "Access denied.");
    }
    assert!(app.login_as(USER, PASSWORD).await.is_ok());
}

async fn a_waiting_name_does_not_lock_out_another_user(backend: Backend) {
    let app = TestApp::spawn_with(backend, throttle(2, 100)).await;
    app.with_conn(|c| wharf::auth::add_user(c, "second", "second's password", "warehouse"))
        .await
        .unwrap();
    for _ in 0..3 {
        login(&app, USER, "guess").await;
    }
    let (_, _, body) = login(&app, USER, PASSWORD).await;
    assert_told_to_wait(&body, "for this user name");
    // Same address, another name: checked as usual.
    assert!(app.login_as("second", "second's password").await.is_ok());
    let (status, _, body) = admin_token(&app, "second", "second's password").await;
    assert_eq!(status, 200, "{body}");
}

async fn an_address_guessing_many_names_waits_on_every_way_in(backend: Backend) {
    let app = TestApp::spawn_with(backend, throttle(100, 4)).await;
    for i in 0..5 {
        let (_, _, body) = login(&app, &format!("nobody{i}"), "guess").await;
        assert_eq!(faultstring(&body), "Access denied.");
    }
    // Every way of presenting a password is refused from this address, whatever the name.
    let (_, retry, body) = login(&app, USER, PASSWORD).await;
    assert_told_to_wait(&body, "from this address");
    assert!(retry.is_some());
    let (status, _, body) = admin_token(&app, USER, PASSWORD).await;
    assert_eq!(status, 500);
    assert!(body.contains("Sender") || body.contains("Client"), "{body}");
    assert_told_to_wait(&body, "from this address");
    let (status, body) = basic_update(&app, USER, PASSWORD, 1).await;
    assert_eq!(status, 500);
    assert_told_to_wait(&body, "from this address");
    assert_eq!(app.queue_depth().await, vec![]);

    tokio::time::sleep(WAIT).await;
    let (status, body) = basic_update(&app, USER, PASSWORD, 1).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.drain().await, 1);
}

async fn the_warehouse_keeps_working_while_someone_guesses(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        throttle(3, 10)(s);
        // Long enough that the address still waits when the guessers are done.
        s.auth.throttle_base_ms = 10_000;
        s.auth.password_checks = Some(1);
    })
    .await;
    let session = app.login().await;
    // HTTP Basic credentials verified before the guessing started.
    assert_eq!(basic_update(&app, USER, PASSWORD, 1).await.0, 200);

    let app = std::sync::Arc::new(app);
    let mut guessers = Vec::new();
    for g in 0..16 {
        let app = app.clone();
        guessers.push(tokio::spawn(async move {
            for n in 0..6 {
                let user = if g % 2 == 0 {
                    USER.to_string()
                } else {
                    format!("x{g}")
                };
                let (status, _, _) = match g % 3 {
                    0 => login(&app, &user, &format!("guess{n}")).await,
                    1 => admin_token(&app, &user, &format!("guess{n}")).await,
                    _ => {
                        let (s, b) = basic_update(&app, &user, &format!("guess{n}"), 99).await;
                        (s, None, b)
                    }
                };
                assert_eq!(status, 500);
            }
        }));
    }
    for seq in 2..22 {
        let (status, body) = app.send_inventory(&session, seq, &[("A", seq, seq)]).await;
        assert_eq!(status, 200, "{body}");
    }
    for g in guessers {
        g.await.unwrap();
    }
    // By now the address waits, but the session and the remembered Basic credentials still work.
    let (_, _, body) = login(&app, USER, PASSWORD).await;
    assert_told_to_wait(&body, "");
    assert_eq!(basic_update(&app, USER, PASSWORD, 22).await.0, 200);
    let (status, body) = app.send_inventory(&session, 23, &[("A", 23, 23)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.drain().await, 23);
    assert_eq!(app.stock_of("A").await.map(|(qty, _)| qty), Some(23));
}

async fn refused_user_names_are_logged_escaped(backend: Backend) {
    let db = TestDb::new(backend);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("WHARF_LISTEN", format!("127.0.0.1:{port}"))
        .env("WHARF_DB_POOL_SIZE", "2")
        .env("WHARF_WORKER__IN_SERVE", "false")
        // The first failure already starts a wait, so the throttle's line names the user too.
        .env("WHARF_AUTH__FREE_FAILURES_PER_USER", "0")
        .env("WHARF_AUTH__THROTTLED_PAUSE_MS", "0")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("start wharf serve");
    let base = format!("http://127.0.0.1:{port}");
    wharf::tls::install_crypto_provider();
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..150 {
        if let Ok(r) = client.get(format!("{base}/ready")).send().await
            && r.status().is_success()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "wharf serve did not become ready");

    let forged = "2026-01-01T00:00:00.000000Z  INFO wharf: message queued caller=\"admin\"";
    let post = |path: &str, ct: &str, auth: Option<String>, body: String| {
        let mut req = client
            .post(format!("{base}{path}"))
            .header("Content-Type", ct.to_string())
            .body(body);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        req.send()
    };
    // A login and an admin token request whose user name holds a line break and a forged line;
    // HTTP Basic whose name also clears the terminal.
    let name = format!("intruder\n{forged}");
    let resp = post("/soap", "text/xml", None, login_envelope(&name, "guess"))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    let token = format!(
        "<env:Envelope xmlns:env=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:ns1=\"urn:x\"><env:Body>\
         <ns1:integrationAdminTokenServiceV1CreateAdminAccessTokenRequest><username>token-{name}</username>\
         <password>guess</password></ns1:integrationAdminTokenServiceV1CreateAdminAccessTokenRequest>\
         </env:Body></env:Envelope>"
    );
    let resp = post(
        "/soap/default?services=integrationAdminTokenServiceV1",
        "application/soap+xml",
        None,
        token,
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    let resp = post(
        "/soap",
        "text/xml",
        Some(basic(&format!("basic\u{1b}[2J\u{1b}[H\n{forged}"), "guess")),
        inventory_envelope("", 1, &[("A", 1, 1)]),
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 500);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = server.kill();
    let _ = server.wait();
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        !text.lines().any(|l| l.starts_with("2026-01-01")),
        "a user name forged a log line:\n{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "a user name wrote an escape sequence:\n{text}"
    );
    for escaped in [
        "intruder\\n2026-01-01",
        "token-intruder\\n2026-01-01",
        "basic\\u{1b}[2J\\u{1b}[H\\n2026-01-01",
    ] {
        assert!(
            text.contains(escaped),
            "{escaped:?} not logged escaped:\n{text}"
        );
    }
    assert!(text.contains("SOAP login refused"), "{text}");
    assert!(text.contains("admin token refused"), "{text}");
}
