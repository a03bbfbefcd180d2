//! actix-web wiring: the SOAP endpoints and WSDLs, the storefront API, health.

mod api;
mod health;
mod soap;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use tokio::sync::watch;

use crate::config::Settings;
use crate::db::{self, Pool};
use crate::worker::Worker;

/// Shared state of the HTTP handlers.
pub struct AppState {
    /// Database pool.
    pub pool: Pool,
    /// Settings.
    pub settings: Arc<Settings>,
    /// Base URL written into WSDLs (no trailing slash).
    pub public_url: String,
    /// Recently verified HTTP Basic credentials.
    pub credentials: crate::auth::CredentialCache,
}

/// A built server, bound to its port, not yet running.
pub struct Application {
    addr: SocketAddr,
    server: Server,
    pool: Pool,
    settings: Arc<Settings>,
}

impl Application {
    /// Connects to the database, applies migrations, and binds `settings.listen` (port 0 picks a free
    /// port: see [`Application::addr`]).
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let settings = Arc::new(settings);
        let pool = {
            let settings = settings.clone();
            tokio::task::spawn_blocking(move || -> anyhow::Result<Pool> {
                let pool = db::connect(&settings.database_url, settings.db_pool_size)?;
                db::migrate(&pool)?;
                Ok(pool)
            })
            .await??
        };
        let listener = TcpListener::bind(&settings.listen)
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let addr = listener.local_addr()?;
        let state = web::Data::new(AppState {
            pool: pool.clone(),
            settings: settings.clone(),
            public_url: settings.public_base_url(Some(addr)),
            credentials: crate::auth::CredentialCache::default(),
        });
        let max_body = settings.soap.max_body;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(max_body))
                .wrap(tracing_actix())
                .configure(soap::routes)
                .configure(api::routes)
                .configure(health::routes)
        })
        .listen(listener)?
        .shutdown_timeout(30)
        .run();
        Ok(Application {
            addr,
            server,
            pool,
            settings,
        })
    }

    /// The address the server is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The database pool the server uses.
    pub fn pool(&self) -> Pool {
        self.pool.clone()
    }

    /// Serves until the server is stopped (SIGINT/SIGTERM), running the worker beside it when
    /// `worker.in_serve` is on. On shutdown, requests in flight are answered and the worker finishes
    /// the batch it holds.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let worker = self.settings.worker.in_serve.then(|| {
            let w = Arc::new(Worker::new(self.pool.clone(), self.settings.clone()));
            tokio::spawn(w.run(stop_rx))
        });
        let exporter =
            crate::export::spawn_if_enabled(&self.pool, &self.settings, stop_tx.subscribe());
        tracing::info!(address = %self.addr, "wharf is listening");
        let result = self.server.await;
        let _ = stop_tx.send(true);
        if let Some(w) = worker {
            let _ = w.await;
        }
        if let Some(e) = exporter {
            let _ = e.await;
        }
        result
    }
}

/// Logs one line per request (method, path, status, time) without headers or bodies, which may
/// carry credentials.
fn tracing_actix() -> actix_web::middleware::Logger {
    actix_web::middleware::Logger::new("%r %s %Dms").exclude("/health")
}
