//! `GET /health` (the process answers) and `GET /ready` (not shutting down, database reachable,
//! migrations applied, and writes succeed). Never the warehouse or SMTP: a load balancer taking
//! wharf out of service because a partner is down would stop the warehouse's messages too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use diesel::prelude::*;

use super::AppState;
use crate::db::schema::ready_probe;
use crate::db::{self, DbConnection};

/// The longest `/ready` waits for the database before answering not ready.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the last `/ready` found writes failing (to log each change once, not every poll).
static WRITES_FAILING: AtomicBool = AtomicBool::new(false);

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/ready", web::get().to(ready));
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Why the process cannot serve.
enum NotReady {
    Unreachable,
    Migrations,
    Writes(String),
}

async fn ready(state: web::Data<AppState>) -> HttpResponse {
    // A stopping process finishes what it holds but should get nothing new: 503 tells a load
    // balancer so, whether stopping began before this probe or while it waited on the database.
    let shutdown = state.shutdown.clone();
    if shutdown.is_stopping() {
        return not_ready("shutting down");
    }
    let checked = web::block(move || -> Result<(), NotReady> {
        let mut conn = state.pool.get().map_err(|_| NotReady::Unreachable)?;
        if !db::migrations_applied(&mut conn) {
            return Err(NotReady::Migrations);
        }
        probe_write(&mut conn).map_err(|e| NotReady::Writes(e.to_string()))
    });
    let checked = tokio::time::timeout(READY_TIMEOUT, checked).await;
    if shutdown.is_stopping() {
        return not_ready("shutting down");
    }
    let reason = match checked {
        Ok(Ok(Ok(()))) => {
            if WRITES_FAILING.swap(false, Ordering::Relaxed) {
                tracing::info!("database writes succeed again: ready");
            }
            return HttpResponse::Ok().json(serde_json::json!({"status": "ready"}));
        }
        Ok(Ok(Err(NotReady::Unreachable))) => "database unreachable",
        Ok(Ok(Err(NotReady::Migrations))) => "database migrations not applied",
        Ok(Ok(Err(NotReady::Writes(e)))) => {
            if !WRITES_FAILING.swap(true, Ordering::Relaxed) {
                tracing::error!(error = %e, "database writes fail: not ready");
            }
            "database writes fail"
        }
        Ok(Err(_)) => "check failed",
        Err(_) => "database did not answer within 5 s",
    };
    not_ready(reason)
}

fn not_ready(reason: &str) -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .json(serde_json::json!({"status": "not ready", "reason": reason}))
}

/// A real write, committed, that nothing else reads: the time of the check in the one row of
/// `ready_probe`. It fails as every write does when the database is read-only (a PostgreSQL
/// replica promoted the wrong way, a read-only mount) or refuses writes (disk full). Reads
/// succeeding tell nothing about that, and the warehouse's messages are answered only once they
/// are written. Its own row: the probe does not queue behind apply transactions (which hold the
/// feed counter's row) nor hold them up.
fn probe_write(conn: &mut DbConnection) -> QueryResult<()> {
    db::write_tx(conn, |conn| {
        crate::with_backend!(conn, |c| diesel::update(ready_probe::table.find(1))
            .set(ready_probe::checked_at.eq(db::now()))
            .execute(c))
        .map(|_| ())
    })
}
