//! The support console: server-rendered pages at `/admin` for users with the role `viewer` or
//! `operator`. [`guard`] stands in front of every path (session, same-origin and CSRF checks,
//! roles, security headers); [`login`] opens and ends sessions; [`pages`] holds the pages, each
//! with its askama templates beside it (`askama.toml` points askama at this folder); [`view`] is
//! what they share. Pages read through the domains' store modules; the console owns only its
//! sessions (`console_sessions`, `console_seen`).

pub mod error;
pub mod guard;
mod login;
pub mod pages;
pub mod session;
pub mod view;

use actix_web::{HttpResponse, middleware, web};

pub use error::ConsoleError;
pub use session::{Role, Staff};
pub use view::Chrome;

/// Registers `/admin` and everything under it.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .wrap(middleware::from_fn(guard::guard))
            .route("/assets/console.css", web::get().to(css))
            .route("/assets/console.js", web::get().to(js))
            .route("/assets/favicon.svg", web::get().to(icon))
            .configure(login::routes)
            .configure(pages::routes)
            .default_service(web::to(not_found)),
    );
}

async fn css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(include_str!("assets/console.css"))
}

async fn js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(include_str!("assets/console.js"))
}

/// The tab icon (without it, every browser asks for `/favicon.ico` and logs a 404).
async fn icon() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("image/svg+xml")
        .body(include_str!("assets/favicon.svg"))
}

async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
    ConsoleError::NotFound(format!("The console page {}", req.path())).error_page()
}
