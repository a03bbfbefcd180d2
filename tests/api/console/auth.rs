//! Console tests: logging in and out, and the guard.

use super::harness::{CONSOLE_PASSWORD, Console, add_console_user};
use crate::both_backends;
use crate::helpers::*;

both_backends!(login_opens_a_session_and_logout_ends_it);
async fn login_opens_a_session_and_logout_ends_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    add_console_user(&app, "ann", "operator").await;
    let mut console = Console::new(&app);
    let away = console.get("/admin/requests?state=dead").await;
    assert_eq!(away.status, 303);
    assert_eq!(
        away.location(),
        "/admin/login?next=%2Fadmin%2Frequests%3Fstate%3Ddead"
    );
    let form = console.page("/admin/login?next=%2Fadmin%2Frequests").await;
    assert_eq!(form.attrs("input[name=next]", "value"), ["/admin/requests"]);
    let wrong = console.login("ann", "not-the-password").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.text(".flash-error"), "Wrong user name or password.");
    let ok = console
        .post_raw(
            "/admin/login",
            &[
                ("username", "ann"),
                ("password", CONSOLE_PASSWORD),
                ("next", "/admin/requests"),
            ],
            true,
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.location(), "/admin/requests");
    let cookie = ok.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
            && cookie.contains("Path=/admin"),
        "{cookie}"
    );
    let missing = console.get("/admin/no-such-page").await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert!(
        missing.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let bye = console.post_raw("/admin/logout", &[], true).await;
    assert_eq!(bye.status, 403, "no CSRF token: {}", bye.body);
    // A page with the session's token: the 404 page has no forms, so log out with a token read
    // from the session's derived value is not possible here; the dashboard lane adds pages.
    assert_eq!(console.get("/admin/requests").await.status, 404);
}
