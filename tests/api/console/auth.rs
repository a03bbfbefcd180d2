//! Console tests: logging in and out, sessions and their ends, throttling, the guard (CSRF, Origin,
//! roles, security headers), the console switched off, and console users on the command line.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::harness::{CONSOLE_PASSWORD, Console, Page, add_console_user};
use crate::both_backends;
use crate::helpers::*;

both_backends!(
    login_comes_back_to_the_page_and_logout_ends_the_session,
    the_cookie_is_secure_unless_insecure_cookies_is_set,
    wrong_password_unknown_user_and_other_doors_get_the_same_answer,
    failed_logins_are_throttled_per_user_name_and_per_address,
    sessions_end_when_idle_and_at_their_age_limit,
    a_password_change_or_removal_ends_the_sessions,
    logins_never_redirect_to_another_site,
    posts_without_token_or_from_another_site_are_refused,
    a_viewer_may_look_and_log_out_but_not_act,
    every_admin_answer_carries_the_security_headers,
    the_console_switched_off_answers_404,
    console_users_are_managed_on_the_command_line,
);

/// Whether `console` is logged in: an unknown console page answers 404 with a session and
/// redirects to the login page without one.
async fn logged_in(console: &mut Console) -> bool {
    let page = console.get("/admin/no-such-page").await;
    match page.status {
        404 => true,
        303 => {
            assert!(
                page.location().starts_with("/admin/login?next="),
                "{}",
                page.location()
            );
            false
        }
        other => panic!("unexpected {other}: {}", page.body),
    }
}

async fn login_comes_back_to_the_page_and_logout_ends_the_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    add_console_user(&app, "ann", "operator").await;
    let mut console = Console::new(&app);
    let away = console.get("/admin/requests?state=dead").await;
    assert_eq!(away.status, 303);
    assert_eq!(
        away.location(),
        "/admin/login?next=%2Fadmin%2Frequests%3Fstate%3Ddead"
    );
    let form = console.page(&away.location()).await;
    assert_eq!(
        form.attrs("input[name=next]", "value"),
        ["/admin/requests?state=dead"]
    );
    assert_eq!(form.attrs("input[name=username]", "name"), ["username"]);
    assert_eq!(form.attrs("input[type=password]", "name"), ["password"]);
    let ok = console
        .post_raw(
            "/admin/login",
            &[
                ("username", "ann"),
                ("password", CONSOLE_PASSWORD),
                ("next", "/admin/requests?state=dead"),
            ],
            true,
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.location(), "/admin/requests?state=dead");
    let cookie = ok.headers["set-cookie"].to_str().unwrap().to_string();
    for part in ["HttpOnly", "SameSite=Lax", "Path=/admin"] {
        assert!(cookie.contains(part), "{part} in {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "insecure_cookies in tests: {cookie}"
    );
    let first = console.session_cookie().unwrap();
    assert_eq!(first.len(), 64, "a 256-bit random value");

    // A second login from the same browser opens a new session and ends the one it had.
    let again = console.login("ann", CONSOLE_PASSWORD).await;
    assert_eq!(again.status, 303);
    assert_eq!(again.location(), "/admin", "no next: the dashboard");
    let second = console.session_cookie().unwrap();
    assert_ne!(first, second);
    let mut old = Console::new(&app);
    old.use_session_cookie(&first);
    assert!(!logged_in(&mut old).await, "the earlier session ended");
    assert!(logged_in(&mut console).await);

    let bye = console.post("/admin/logout", &[]).await;
    assert_eq!(bye.status, 303, "{}", bye.body);
    assert_eq!(bye.location(), "/admin/login");
    let cleared = bye.headers["set-cookie"].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert!(!logged_in(&mut console).await);
    // The old cookie, kept by someone, opens nothing either: the session is gone from the server.
    let mut kept = Console::new(&app);
    kept.use_session_cookie(&second);
    assert!(!logged_in(&mut kept).await);
    let stored: i64 = app
        .with_conn(|conn| {
            use diesel::prelude::*;
            use wharf::db::schema::console_sessions;
            console_sessions::table.count().get_result(conn).unwrap()
        })
        .await;
    assert_eq!(stored, 0, "both sessions deleted");
}

async fn the_cookie_is_secure_unless_insecure_cookies_is_set(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.console.insecure_cookies = false).await;
    add_console_user(&app, "ann", "viewer").await;
    let mut console = Console::new(&app);
    let ok = console.login("ann", CONSOLE_PASSWORD).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let cookie = ok.headers["set-cookie"].to_str().unwrap();
    for part in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/admin"] {
        assert!(cookie.contains(part), "{part} in {cookie}");
    }
}

/// The refusal page with the user name it echoes in its form taken out, to compare two refusals.
fn refusal(page: &Page, name: &str) -> (u16, String) {
    let echoed = format!("name=\"username\" value=\"{name}\"");
    assert!(page.body.contains(&echoed), "{echoed} in {}", page.body);
    (page.status, page.body.replace(&echoed, "NAME"))
}

async fn wrong_password_unknown_user_and_other_doors_get_the_same_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    add_console_user(&app, "ann", "operator").await;
    let mut console = Console::new(&app);
    let wrong = console.login("ann", "not-the-password").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.text(".flash-error"), "Wrong user name or password.");
    assert_eq!(
        wrong.attrs("input[name=username]", "value"),
        ["ann"],
        "the name stays in the form"
    );
    let unknown = console.login("nobody", "not-the-password").await;
    assert_eq!(refusal(&unknown, "nobody"), refusal(&wrong, "ann"));
    // The warehouse's SOAP user cannot open the console, even with its right password.
    let warehouse = console.login(USER, PASSWORD).await;
    assert_eq!(refusal(&warehouse, USER), refusal(&wrong, "ann"));
    assert!(console.session_cookie().is_none());
    // A form without the fields is refused the same way, not with a parse error.
    let empty = console.post_raw("/admin/login", &[], true).await;
    assert_eq!(empty.status, 401, "{}", empty.body);
    // A console user cannot log in over SOAP: the same fault as an unknown user.
    let soap_console = app.login_as("ann", CONSOLE_PASSWORD).await.unwrap_err();
    let soap_unknown = app.login_as("nobody", CONSOLE_PASSWORD).await.unwrap_err();
    assert_eq!(faultstring(&soap_console), faultstring(&soap_unknown));
    assert!(app.login_as(USER, PASSWORD).await.is_ok());
}

async fn failed_logins_are_throttled_per_user_name_and_per_address(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.auth.free_failures_per_user = 2;
        s.auth.free_failures_per_address = 4;
        s.auth.throttle_base_ms = 30_000;
        s.auth.throttled_pause_ms = 10;
    })
    .await;
    for name in ["ann", "bob", "carl"] {
        add_console_user(&app, name, "viewer").await;
    }
    let mut console = Console::new(&app);
    for _ in 0..3 {
        assert_eq!(console.login("ann", "wrong-password").await.status, 401);
    }
    // The third failure started a wait for the name: even the right password is not checked.
    let waiting = console.login("ann", CONSOLE_PASSWORD).await;
    assert_eq!(waiting.status, 429, "{}", waiting.body);
    let retry: u64 = waiting.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "Retry-After: {retry}");
    assert!(
        waiting.text(".flash-error").contains("for this user name"),
        "{}",
        waiting.body
    );
    assert!(console.session_cookie().is_none());
    // Another name from the same address is still let in until the address has used its failures.
    let mut bob = Console::new(&app);
    assert_eq!(bob.login("bob", CONSOLE_PASSWORD).await.status, 303);
    assert_eq!(console.login("carl", "wrong-password").await.status, 401);
    assert_eq!(console.login("bob", "wrong-password").await.status, 401);
    // Five failures from 127.0.0.1 (four are free): now every name from it waits.
    let address = console.login("carl", CONSOLE_PASSWORD).await;
    assert_eq!(address.status, 429, "{}", address.body);
    assert!(address.headers.contains_key("retry-after"));
    assert!(
        address.text(".flash-error").contains("from this address"),
        "{}",
        address.body
    );
    // The session bob opened before is not touched by the throttle.
    assert!(logged_in(&mut bob).await);
}

async fn sessions_end_when_idle_and_at_their_age_limit(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.console.session_idle_secs = 3;
        s.console.session_max_secs = 6;
    })
    .await;
    add_console_user(&app, "ann", "operator").await;
    // Used every 1.5 s, a session outlives its 3 s idle limit, but not its 6 s age limit.
    let mut busy = Console::new(&app);
    assert_eq!(busy.login("ann", CONSOLE_PASSWORD).await.status, 303);
    let opened = std::time::Instant::now();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(logged_in(&mut busy).await, "active, so not idle");
    }
    tokio::time::sleep(
        Duration::from_secs(6).saturating_sub(opened.elapsed()) + Duration::from_millis(500),
    )
    .await;
    assert!(!logged_in(&mut busy).await, "older than session_max_secs");
    // Left alone for longer than 3 s, a session has ended.
    let mut idle = Console::new(&app);
    assert_eq!(idle.login("ann", CONSOLE_PASSWORD).await.status, 303);
    assert!(logged_in(&mut idle).await);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(
        !logged_in(&mut idle).await,
        "idle for longer than session_idle_secs"
    );
}

async fn a_password_change_or_removal_ends_the_sessions(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    add_console_user(&app, "ann", "operator").await;
    let mut one = Console::new(&app);
    let mut two = Console::new(&app);
    assert_eq!(one.login("ann", CONSOLE_PASSWORD).await.status, 303);
    assert_eq!(two.login("ann", CONSOLE_PASSWORD).await.status, 303);
    let ended = app
        .with_conn(|conn| wharf::auth::set_password(conn, "ann", "a-new-password").unwrap())
        .await;
    assert_eq!(ended.sessions, 2, "both console sessions");
    assert!(!logged_in(&mut one).await);
    assert!(!logged_in(&mut two).await);
    assert_eq!(one.login("ann", CONSOLE_PASSWORD).await.status, 401);
    assert_eq!(one.login("ann", "a-new-password").await.status, 303);
    assert!(logged_in(&mut one).await);
    let ended = app
        .with_conn(|conn| wharf::auth::remove_user(conn, "ann").unwrap())
        .await;
    assert_eq!(ended.sessions, 1);
    assert!(!logged_in(&mut one).await);
    assert_eq!(one.login("ann", "a-new-password").await.status, 401);
}

async fn logins_never_redirect_to_another_site(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    add_console_user(&app, "ann", "viewer").await;
    let mut console = Console::new(&app);
    let form = console
        .page("/admin/login?next=https%3A%2F%2Fevil.example%2Fadmin")
        .await;
    assert_eq!(form.attrs("input[name=next]", "value"), ["/admin"]);
    for (next, expected) in [
        ("https://evil.example/admin", "/admin"),
        ("//evil.example/admin", "/admin"),
        ("/\\evil.example", "/admin"),
        ("/admin\\@evil.example", "/admin"),
        ("/admin.evil.example", "/admin"),
        ("/admin/x\r\nSet-Cookie: a=b", "/admin"),
        ("/admin/x y", "/admin"),
        ("javascript:alert(1)", "/admin"),
        ("/admin/stock?sku=A%2FB", "/admin/stock?sku=A%2FB"),
        ("/admin", "/admin"),
    ] {
        let page = console
            .post_raw(
                "/admin/login",
                &[
                    ("username", "ann"),
                    ("password", CONSOLE_PASSWORD),
                    ("next", next),
                ],
                true,
            )
            .await;
        assert_eq!(page.status, 303, "{next:?}: {}", page.body);
        assert_eq!(page.location(), expected, "next={next:?}");
    }
}

/// Form fields or headers, as name and value.
type Fields<'a> = Vec<(&'a str, &'a str)>;

async fn posts_without_token_or_from_another_site_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut console = Console::logged_in(&app, "ann", "operator").await;
    let csrf = console.csrf.clone().unwrap();
    let base = app.base.clone();
    let refused: Vec<(&str, Fields, Fields)> = vec![
        ("missing token", vec![], vec![("Origin", &base)]),
        (
            "wrong token",
            vec![("_csrf", "0000000000000000")],
            vec![("Origin", &base)],
        ),
        (
            "foreign Origin",
            vec![("_csrf", &csrf)],
            vec![("Origin", "https://evil.example")],
        ),
        (
            "Origin null",
            vec![("_csrf", &csrf)],
            vec![("Origin", "null")],
        ),
        (
            "cross-site",
            vec![("_csrf", &csrf)],
            vec![("Sec-Fetch-Site", "cross-site")],
        ),
        (
            "same-site (a sibling host)",
            vec![("_csrf", &csrf)],
            vec![("Sec-Fetch-Site", "same-site"), ("Origin", &base)],
        ),
    ];
    for (why, fields, headers) in refused {
        let page = console.post_with("/admin/logout", &fields, &headers).await;
        assert_eq!(page.status, 403, "{why}: {}", page.body);
        assert!(
            page.text(".error-message").contains("nothing was done"),
            "{why}: {}",
            page.body
        );
        assert!(logged_in(&mut console).await, "{why}: still logged in");
    }
    // Methods other than GET are checked like POST.
    let put = console
        .client
        .put(format!("{base}/admin/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 403);
    // The login form itself only from this site (no logging a browser into someone else's account).
    let mut other = Console::new(&app);
    let foreign = other
        .post_with(
            "/admin/login",
            &[("username", "ann"), ("password", CONSOLE_PASSWORD)],
            &[("Origin", "https://evil.example")],
        )
        .await;
    assert_eq!(foreign.status, 403, "{}", foreign.body);
    assert!(other.session_cookie().is_none());
    // A browser's same-origin form with the token goes through.
    let ok = console
        .post_with(
            "/admin/logout",
            &[("_csrf", &csrf)],
            &[("Origin", &base), ("Sec-Fetch-Site", "same-origin")],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    // Without a session a POST does nothing and says so (no redirect that would drop the form)…
    let late = console
        .post_with("/admin/requests/1/requeue", &[("_csrf", &csrf)], &[])
        .await;
    assert_eq!(late.status, 403, "{}", late.body);
    assert!(late.text(".error-message").contains("session has ended"));
    // … but logging out of an ended session just goes to the login page.
    let again = console
        .post_with("/admin/logout", &[("_csrf", &csrf)], &[])
        .await;
    assert_eq!(again.status, 303, "{}", again.body);
    assert_eq!(again.location(), "/admin/login");
}

async fn a_viewer_may_look_and_log_out_but_not_act(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut viewer = Console::logged_in(&app, "vera", "viewer").await;
    for path in [
        "/admin/requests/1/requeue",
        "/admin/requests/requeue",
        "/admin/orders/lost/resend",
    ] {
        let page = viewer.post(path, &[("id", "1")]).await;
        assert_eq!(page.status, 403, "{path}: {}", page.body);
        assert!(
            page.text(".error-message").contains("vera is a viewer"),
            "{}",
            page.body
        );
    }
    assert!(logged_in(&mut viewer).await);
    // An operator's POST to the same (not yet existing) path passes the guard and meets the router.
    let mut operator = Console::logged_in(&app, "otto", "operator").await;
    let page = operator.post("/admin/no-such-action", &[]).await;
    assert_eq!(page.status, 404, "{}", page.body);
    assert_eq!(viewer.post("/admin/logout", &[]).await.status, 303);
    assert!(!logged_in(&mut viewer).await);
}

fn assert_hardened(what: &str, headers: &reqwest::header::HeaderMap) {
    let get = |name: &str| {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("{what}: no {name}"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let csp = get("content-security-policy");
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(part), "{what}: {part} in {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{what}: {csp}"
    );
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("cache-control"), "no-store", "{what}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
}

async fn every_admin_answer_carries_the_security_headers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    add_console_user(&app, "ann", "operator").await;
    let mut anon = Console::new(&app);
    let login = anon.page("/admin/login").await;
    assert_hardened("login page", &login.headers);
    assert_eq!(login.count("script:not([src])"), 0, "no inline script");
    assert_eq!(login.count("[style]"), 0, "no inline style");
    assert_hardened("redirect to login", &anon.get("/admin").await.headers);
    for asset in ["/admin/assets/console.css", "/admin/assets/console.js"] {
        let page = anon.page(asset).await;
        assert_hardened(asset, &page.headers);
    }
    assert_hardened(
        "session ended",
        &anon.post_raw("/admin/logout", &[], true).await.headers,
    );
    assert_hardened(
        "wrong password",
        &anon.login("ann", "wrong-password").await.headers,
    );
    let mut ann = Console::new(&app);
    assert_eq!(ann.login("ann", CONSOLE_PASSWORD).await.status, 303);
    let missing = ann.get("/admin/no-such-page").await;
    assert_eq!(missing.status, 404);
    assert_hardened("404 page", &missing.headers);
    assert_eq!(missing.count("script:not([src])"), 0);
    assert_hardened(
        "CSRF refusal",
        &ann.post_raw("/admin/logout", &[], true).await.headers,
    );
    // A form the handler cannot read (the guard passed it): still an answer with the headers.
    let bad = ann
        .client
        .post(format!("{}/admin/login", app.base))
        .header("Origin", &app.base)
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_hardened("unreadable form", bad.headers());
    assert_hardened("logout", &ann.post("/admin/logout", &[]).await.headers);
}

async fn the_console_switched_off_answers_404(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.console.enabled = false).await;
    add_console_user(&app, "ann", "operator").await;
    let mut console = Console::new(&app);
    for path in ["/admin", "/admin/login", "/admin/assets/console.js"] {
        assert_eq!(console.get(path).await.status, 404, "{path}");
    }
    assert_eq!(console.login("ann", CONSOLE_PASSWORD).await.status, 404);
    assert!(app.login_as(USER, PASSWORD).await.is_ok(), "SOAP still up");
}

fn wharf_cli(db_url: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wharf");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn cli(app: &TestApp, args: &[&str], stdin: &str) -> String {
    let (url, args, stdin) = (
        app.db.url.clone(),
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        stdin.to_string(),
    );
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        wharf_cli(&url, &args, &stdin)
    })
    .await
    .unwrap();
    assert!(ok, "wharf failed: {err}");
    out
}

async fn console_users_are_managed_on_the_command_line(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let help = cli(&app, &["users", "add", "--help"], "").await;
    assert!(
        help.contains("viewer") && help.contains("operator") && help.contains("console"),
        "{help}"
    );
    for cmd in ["list", "remove", "passwd"] {
        let help = cli(&app, &["users", cmd, "--help"], "").await;
        assert!(help.contains("console"), "users {cmd} --help: {help}");
    }
    let out = cli(
        &app,
        &[
            "users",
            "add",
            "olga",
            "--role",
            "operator",
            "--password-stdin",
        ],
        "olga-password\n",
    )
    .await;
    assert!(out.contains("role operator"), "{out}");
    cli(
        &app,
        &[
            "users",
            "add",
            "vic",
            "--role",
            "viewer",
            "--password-stdin",
        ],
        "vic-password\n",
    )
    .await;
    let mut olga = Console::new(&app);
    assert_eq!(olga.login("olga", "olga-password").await.status, 303);
    let mut olga2 = Console::new(&app);
    assert_eq!(olga2.login("olga", "olga-password").await.status, 303);
    assert!(
        app.login_as("olga", "olga-password").await.is_err(),
        "no SOAP"
    );

    let list = cli(&app, &["users", "list"], "").await;
    let row = |name: &str| {
        list.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {list}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert!(list.lines().next().unwrap().contains("CONSOLE"), "{list}");
    let olga_row = row("olga");
    assert_eq!(olga_row[1], "operator");
    assert_eq!(
        olga_row.last().unwrap(),
        "2",
        "two console sessions: {list}"
    );
    let vic_row = row("vic");
    assert_eq!(vic_row[1], "viewer");
    assert_eq!(vic_row.last().unwrap(), "0");
    assert_eq!(row(USER)[1], "warehouse");

    let out = cli(
        &app,
        &["users", "passwd", "olga", "--password-stdin"],
        "olga-new-password\n",
    )
    .await;
    assert!(out.contains("ended 2 session(s)"), "{out}");
    assert!(!logged_in(&mut olga).await && !logged_in(&mut olga2).await);
    assert_eq!(olga.login("olga", "olga-new-password").await.status, 303);
    let out = cli(&app, &["users", "remove", "olga"], "").await;
    assert!(out.contains("ended 1 session(s)"), "{out}");
    assert!(!logged_in(&mut olga).await);
    assert_eq!(olga.login("olga", "olga-new-password").await.status, 401);
}
