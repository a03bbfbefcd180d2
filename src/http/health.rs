//! `GET /health` (the process answers) and `GET /ready` (database reachable, migrations applied).

use actix_web::{HttpResponse, web};

use super::AppState;
use crate::db;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/ready", web::get().to(ready));
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let checked = web::block(move || -> Result<(), &'static str> {
        let mut conn = state.pool.get().map_err(|_| "database unreachable")?;
        if db::migrations_applied(&mut conn) {
            Ok(())
        } else {
            Err("database migrations not applied")
        }
    })
    .await;
    match checked {
        Ok(Ok(())) => HttpResponse::Ok().json(serde_json::json!({"status": "ready"})),
        Ok(Err(reason)) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "not ready", "reason": reason})),
        Err(_) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "not ready", "reason": "check failed"})),
    }
}
