//! `GET /metrics`: the Prometheus text format — this process's counters and histogram
//! ([`crate::metrics::render`]) and the gauges read from the database
//! ([`crate::metrics::gauges`]).
//!
//! Who may read it: with `[metrics] token` set, a scraper sending `Authorization: Bearer <token>`
//! (compared in constant time; 401 otherwise); without, only clients on loopback (403 otherwise,
//! saying to set the token). The page names no secret, but queue sizes and job times tell an
//! outsider more about the business than it should learn.

use std::net::IpAddr;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::{Digest, Sha256};

use super::AppState;

/// The Prometheus text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The longest a scrape waits for the database before answering 503 (Prometheus's default scrape
/// timeout is 10 s).
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(8);

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics));
}

async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(refused) = refusal(&req, state.settings.metrics.token.as_deref()) {
        return refused;
    }
    let process = crate::metrics::render();
    let (pool, settings) = (state.pool.clone(), state.settings.clone());
    let read = web::block(move || -> Result<String, String> {
        let mut conn = pool.get().map_err(|e| e.to_string())?;
        crate::metrics::gauges::render(&mut conn, &settings.channels, crate::db::now())
            .map_err(|e| e.to_string())
    });
    match tokio::time::timeout(SCRAPE_TIMEOUT, read).await {
        Ok(Ok(Ok(gauges))) => HttpResponse::Ok()
            .content_type(CONTENT_TYPE)
            .body(format!("{process}{gauges}")),
        Ok(Ok(Err(e))) => {
            tracing::error!(error = %e, "/metrics could not read the database gauges");
            unavailable("wharf could not read its database; the metrics are not available now")
        }
        Ok(Err(_)) => unavailable("reading the metrics failed"),
        Err(_) => unavailable("the database did not answer within 8 s"),
    }
}

fn unavailable(why: &str) -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .content_type("text/plain; charset=utf-8")
        .body(format!("{why}\n"))
}

/// The answer refusing a scraper that may not read the metrics (`None`: it may).
fn refusal(req: &HttpRequest, token: Option<&str>) -> Option<HttpResponse> {
    match token.filter(|t| !t.is_empty()) {
        Some(token) => {
            let sent = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim());
            match sent {
                Some(sent) if same(sent, token) => None,
                _ => Some(HttpResponse::Unauthorized()
                    .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"wharf metrics\""))
                    .content_type("text/plain; charset=utf-8")
                    .body(
                        "send the metrics token ([metrics] token) as `Authorization: Bearer <token>`\n",
                    )),
            }
        }
        // Behind a reverse proxy on this host every client arrives from loopback: a forwarded
        // request is not this host's own scraper.
        None if req.peer_addr().is_some_and(|a| loopback(a.ip())) && !forwarded(req) => None,
        None => Some(HttpResponse::Forbidden()
            .content_type("text/plain; charset=utf-8")
            .body(
                "/metrics answers only clients on this host (not forwarded by a proxy) while no \
                 token is set; set [metrics] token (WHARF_METRICS__TOKEN) and have the scraper send it as a Bearer token\n",
            )),
    }
}

/// Whether a proxy forwarded the request (it names the client it came from).
fn forwarded(req: &HttpRequest) -> bool {
    ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|h| req.headers().contains_key(*h))
}

/// Whether `ip` is this host (IPv4 loopback also when mapped into IPv6).
fn loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Compares the sent token with the configured one in constant time: both are hashed first, so
/// neither their lengths nor where they differ shows in the time taken.
fn same(sent: &str, token: &str) -> bool {
    let (a, b) = (Sha256::digest(sent), Sha256::digest(token));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same("s3cret", "s3cret"));
        assert!(!same("s3cre", "s3cret"));
        assert!(!same("", "s3cret"));
        assert!(!same("s3creT", "s3cret"));
    }

    #[test]
    fn loopback_includes_mapped_v4() {
        assert!(loopback("127.0.0.1".parse().unwrap()));
        assert!(loopback("::1".parse().unwrap()));
        assert!(loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!loopback("10.0.0.1".parse().unwrap()));
        assert!(!loopback("::ffff:10.0.0.1".parse().unwrap()));
    }
}
