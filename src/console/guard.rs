//! The one guard in front of every `/admin` path: security headers on every answer; a session for
//! every page but the login page and the assets (a page without one redirects to the login page
//! and comes back after it); and for every POST, a same-origin check (`Origin` /
//! `Sec-Fetch-Site`), the session's CSRF token in the form field `_csrf`, and the role `operator`
//! (a viewer may only log out and mark failures seen). Handlers never repeat these checks: they
//! take the [`Staff`] the guard found.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, web};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::error::ConsoleError;
use super::session::{self, COOKIE, Staff};
use crate::http::AppState;

/// Paths anyone may reach: the login page (and its form) and the style sheet and script.
fn is_public(path: &str) -> bool {
    path == "/admin/login" || path.starts_with("/admin/assets/")
}

/// POSTs a viewer may send: they change only the viewer's own session or banner.
const PERSONAL_POSTS: &[&str] = &["/admin/logout", "/admin/seen"];

/// The content security policy: no inline script or style, nothing from elsewhere, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The guard (see the module documentation), as an actix `from_fn` middleware.
pub async fn guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let mut res = match admit(&mut req).await {
        // (Handlers answer their own errors, extractor failures included: what comes back is a
        // response, which gets the headers below.)
        Ok(()) => next.call(req).await?.map_into_boxed_body(),
        Err(refusal) => req.into_response(refusal),
    };
    harden(res.headers_mut());
    Ok(res)
}

/// Lets the request through (with its [`Staff`] in the extensions), or answers it.
async fn admit(req: &mut ServiceRequest) -> Result<(), HttpResponse> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Err(ConsoleError::internal("console without app state").error_page());
    };
    // Every method but GET and HEAD is checked like a form POST (the console registers only GET
    // and POST routes, but a method that changes nothing needs no exception to be safe).
    let post = !matches!(*req.method(), Method::GET | Method::HEAD);
    if post && let Some(why) = cross_site(req, &state) {
        tracing::warn!(
            path = req.path(),
            why,
            "console form refused: not sent from this site"
        );
        return Err(ConsoleError::Forbidden(format!(
            "This form was not sent from the wharf console itself ({why}), so nothing was done. \
             Open the page in the console and send it again."
        ))
        .error_page());
    }
    if is_public(req.path()) {
        return Ok(());
    }
    let cookie = req.cookie(COOKIE).map(|c| c.value().to_string());
    let staff = match cookie {
        Some(cookie) => look_up(&state, cookie).await?,
        None => None,
    };
    let Some(staff) = staff else {
        return Err(if post && req.path() == "/admin/logout" {
            // Logging out of a session that already ended: done, on to the login page.
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/admin/login"))
                .finish()
        } else if post {
            ConsoleError::Forbidden(
                "Your console session has ended, so nothing was done. Log in again and repeat \
                 the action."
                    .into(),
            )
            .error_page()
        } else {
            to_login(req)
        });
    };
    if post {
        check_form(req, &staff).await?;
    }
    req.extensions_mut().insert(staff);
    Ok(())
}

async fn look_up(state: &AppState, cookie: String) -> Result<Option<Staff>, HttpResponse> {
    let settings = state.settings.console.clone();
    crate::db::blocking(&state.pool, "the console", move |conn| {
        Ok(session::check(conn, &cookie, &settings)?)
    })
    .await
    .map_err(|e| ConsoleError::internal(format!("{e:#}")).error_page())
}

/// The CSRF token and the role of a POST. The body is read here (within the app's body limit) and
/// put back for the handler's form extractor.
async fn check_form(req: &mut ServiceRequest, staff: &Staff) -> Result<(), HttpResponse> {
    let body = req
        .extract::<web::Bytes>()
        .await
        .map_err(|e| ConsoleError::bad("form", e.to_string()).error_page())?;
    let token = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "_csrf")
        .map(|(_, v)| v.into_owned());
    req.set_payload(Payload::from(body));
    match token {
        Some(token) if same_secret(&token, &staff.csrf) => {}
        Some(_) | None => {
            tracing::warn!(path = req.path(), user = %staff.name, "console form refused: CSRF token missing or wrong");
            return Err(ConsoleError::Forbidden(
                "This form's security token is missing or belongs to another session, so \
                 nothing was done. Reload the page and send the form again."
                    .into(),
            )
            .error_page());
        }
    }
    if !staff.is_operator() && !PERSONAL_POSTS.contains(&req.path()) {
        tracing::warn!(path = req.path(), user = %staff.name, "console action refused: viewer");
        return Err(ConsoleError::Forbidden(format!(
            "{} is a viewer: only operators may change anything. Ask an operator, or an \
             administrator for the operator role (wharf users add NAME --role operator).",
            staff.name
        ))
        .error_page());
    }
    Ok(())
}

/// Compares two tokens without stopping at the first difference.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Why a POST looks cross-site, if it does. A browser always sends `Sec-Fetch-Site` or `Origin`
/// with a form; a client that sends neither is not a browser, and still needs the CSRF token.
fn cross_site(req: &ServiceRequest, state: &AppState) -> Option<String> {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("?");
        if !matches!(site, "same-origin" | "none") {
            return Some(format!("Sec-Fetch-Site: {site}"));
        }
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin = origin.to_str().unwrap_or("?").trim_end_matches('/');
    let own_host = req.connection_info().host().to_string();
    let host_of = |o: &str| o.split_once("://").map(|(_, rest)| rest.to_string());
    let allowed = host_of(origin).is_some_and(|h| h == own_host)
        || origin == state.public_url.trim_end_matches('/')
        || state
            .settings
            .console
            .allowed_origins
            .iter()
            .any(|o| o.trim_end_matches('/') == origin);
    (!allowed).then(|| format!("Origin: {origin}"))
}

/// A redirect to the login page that comes back to this page after it.
fn to_login(req: &ServiceRequest) -> HttpResponse {
    let back = req
        .uri()
        .path_and_query()
        .map_or("/admin", |p| p.as_str())
        .to_string();
    let next = utf8_percent_encode(&back, NON_ALPHANUMERIC);
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("/admin/login?next={next}")))
        .finish()
}

/// Where a login may send the browser back to: a console path only (never another site). The path
/// must be `/admin` or below it, and made of the characters a URL path and query may hold as sent
/// (no backslash, which browsers read as `/`; no space or control character, which browsers drop
/// or which could split the `Location` header); anything else goes to the dashboard.
pub fn safe_next(next: Option<&str>) -> String {
    let console_path = |n: &str| {
        (n == "/admin" || n.starts_with("/admin/") || n.starts_with("/admin?"))
            && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
    };
    match next {
        Some(n) if console_path(n) => n.to_string(),
        _ => "/admin".to_string(),
    }
}

/// Security headers of every console answer.
fn harden(headers: &mut HeaderMap) {
    let set = |headers: &mut HeaderMap, name, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, header::CONTENT_SECURITY_POLICY, CSP);
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "same-origin");
    set(headers, header::CACHE_CONTROL, "no-store");
    set(
        headers,
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
}

impl ConsoleError {
    /// This error as an answer (for the guard, which answers before any handler runs).
    pub fn error_page(self) -> HttpResponse {
        actix_web::ResponseError::error_response(&self)
    }
}

impl FromRequest for Staff {
    type Error = ConsoleError;
    type Future = std::future::Ready<Result<Staff, ConsoleError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(
            req.extensions()
                .get::<Staff>()
                .cloned()
                .ok_or_else(|| ConsoleError::Forbidden("This page needs a console login.".into())),
        )
    }
}
