//! `/admin/login` and `/admin/logout`.

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieAge};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::error::ConsoleError;
use super::guard::safe_next;
use super::session::{self, COOKIE};
use crate::auth::{AuthError, Door};
use crate::http::AppState;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    next: &'a str,
    username: &'a str,
    message: Option<String>,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// The login form's fields (a missing one counts as empty: the same answer as a wrong password).
#[derive(Default, Deserialize)]
#[serde(default)]
struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/login", web::get().to(form))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout));
}

fn page(status: actix_web::http::StatusCode, page: &LoginPage<'_>) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(body),
        Err(e) => ConsoleError::from(e).error_page(),
    }
}

async fn form(query: web::Query<NextQuery>) -> HttpResponse {
    let next = safe_next(query.next.as_deref());
    page(
        actix_web::http::StatusCode::OK,
        &LoginPage {
            next: &next,
            username: "",
            message: None,
        },
    )
}

/// Checks the password (throttled per user name and per address, unknown users against a dummy
/// hash: the same answer whatever was wrong), opens a new session and goes back to `next`.
async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LoginForm>,
) -> HttpResponse {
    let next = safe_next(form.next.as_deref());
    let peer = req.peer_addr().map(|a| a.ip());
    let checked = state
        .passwords
        .check(
            &state.pool,
            &form.username,
            &form.password,
            peer,
            Door::Console,
        )
        .await;
    let refuse = |status, message: String| {
        page(
            status,
            &LoginPage {
                next: &next,
                username: &form.username,
                message: Some(message),
            },
        )
    };
    let user_id = match checked {
        Ok(verified) => verified.user_id,
        Err(AuthError::AccessDenied) => {
            return refuse(
                actix_web::http::StatusCode::UNAUTHORIZED,
                "Wrong user name or password.".into(),
            );
        }
        Err(AuthError::Throttled {
            retry_after_secs,
            per_address,
        }) => {
            let message = AuthError::Throttled {
                retry_after_secs,
                per_address,
            }
            .to_string();
            let mut res = refuse(actix_web::http::StatusCode::TOO_MANY_REQUESTS, message);
            res.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(retry_after_secs),
            );
            return res;
        }
        Err(e) => return ConsoleError::internal(e).error_page(),
    };
    let settings = state.settings.console.clone();
    // A new session at every login; the one this browser had before (if any) ends.
    let before = req.cookie(COOKIE).map(|c| c.value().to_string());
    let opened = crate::db::blocking(&state.pool, "the console login", move |conn| {
        if let Some(before) = before {
            session::end(conn, &before)?;
        }
        Ok(session::open(conn, user_id, &settings)?)
    })
    .await;
    match opened {
        Ok(cookie) => {
            tracing::info!(user = %crate::telemetry::Escaped(&form.username), "console login");
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, next))
                .cookie(session_cookie(&state, cookie))
                .finish()
        }
        Err(e) => ConsoleError::from(e).error_page(),
    }
}

fn session_cookie(state: &AppState, value: String) -> Cookie<'static> {
    let mut cookie = Cookie::build(COOKIE, value)
        .path("/admin")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(!state.settings.console.insecure_cookies)
        .finish();
    if value_is_empty(&cookie) {
        cookie.set_max_age(CookieAge::ZERO);
    }
    cookie
}

fn value_is_empty(cookie: &Cookie<'_>) -> bool {
    cookie.value().is_empty()
}

/// Ends the session (guarded like every POST: same origin and CSRF token) and clears the cookie.
async fn logout(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(cookie) = req.cookie(COOKIE) {
        let value = cookie.value().to_string();
        if let Err(e) = crate::db::blocking(&state.pool, "the console logout", move |conn| {
            Ok(session::end(conn, &value)?)
        })
        .await
        {
            return ConsoleError::from(e).error_page();
        }
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/admin/login"))
        .cookie(session_cookie(&state, String::new()))
        .finish()
}
