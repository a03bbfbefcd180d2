//! actix-web wiring: the SOAP endpoints and WSDLs, the storefront API, health, metrics.

mod api;
pub mod body;
mod conn;
mod health;
mod metrics;
mod soap;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context;

use crate::background::{Background, WorkerMode};
use crate::config::Settings;
use crate::db::{self, Pool};
use crate::shutdown::Shutdown;

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
    /// Checks passwords a few at a time and throttles failed checks.
    pub passwords: crate::auth::PasswordChecker,
    /// Turns on when the server starts stopping (long polls answer at once).
    pub shutdown: Shutdown,
    /// How many refusals of unauthenticated callers are stored.
    pub refusals: Arc<crate::queue::refusals::RefusalLimiter>,
    /// Stores received messages in groups ([`crate::queue::receive`]).
    pub receipts: Arc<crate::queue::Receipts>,
}

impl AppState {
    /// What the handlers share, for a server bound to `addr`. Starts the refusals' flusher.
    fn new(
        pool: &Pool,
        settings: &Arc<Settings>,
        addr: SocketAddr,
        shutdown: &Shutdown,
    ) -> std::io::Result<AppState> {
        let refusals = Arc::new(crate::queue::refusals::RefusalLimiter::new(
            settings.soap.anonymous_rejections_per_minute,
        ));
        crate::queue::refusals::spawn_flusher(refusals.clone(), pool.clone());
        let backend = match db::DbTarget::parse(&settings.database_url) {
            Ok(db::DbTarget::Sqlite(_)) => db::Backend::Sqlite,
            _ => db::Backend::Postgres,
        };
        Ok(AppState {
            pool: pool.clone(),
            settings: settings.clone(),
            public_url: settings.public_base_url(Some(addr)),
            credentials: crate::auth::CredentialCache::default(),
            passwords: crate::auth::PasswordChecker::new(&settings.auth),
            shutdown: shutdown.clone(),
            refusals,
            receipts: Arc::new(crate::queue::receipts(pool, backend)?),
        })
    }
}

/// Connects to the database and applies migrations (and the credential scrub) off the runtime.
async fn connect(settings: &Arc<Settings>) -> anyhow::Result<Pool> {
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Pool> {
        let pool = db::connect(&settings.database_url, settings.db_pool_size)?;
        crate::queue::scrub::migrate(&pool)?;
        Ok(pool)
    })
    .await?
}

/// A built server, bound to its port, not yet running.
pub struct Application {
    addr: SocketAddr,
    server: Server,
    pool: Pool,
    settings: Arc<Settings>,
    shutdown: Shutdown,
}

impl Application {
    /// Connects to the database, applies migrations, and binds `settings.listen` (port 0 picks a free
    /// port: see [`Application::addr`]).
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let settings = Arc::new(settings);
        crate::metrics::install();
        let pool = connect(&settings).await?;
        let listener = TcpListener::bind(&settings.listen)
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let addr = listener.local_addr()?;
        let shutdown = Shutdown::new();
        let state = web::Data::new(AppState::new(&pool, &settings, addr, &shutdown)?);
        let max_body = settings.soap.max_body;
        let gate = body::gate(&settings.http);
        // Every client connection is an open file: raise the limit, and cap connections below it
        // so that a flood of stalled clients leaves files for the database (actix's cap is per
        // worker thread; connections beyond it wait in the listen backlog).
        let open_files = conn::raise_open_file_limit();
        let cap = conn::connection_cap(
            settings.http.max_connections,
            open_files,
            settings.db_pool_size,
        );
        let workers = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        let per_worker = (cap / workers).max(1);
        tracing::info!(
            open_files,
            max_connections = per_worker * workers,
            workers,
            "connection cap"
        );
        let console_enabled = settings.console.enabled;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(gate.clone())
                .app_data(web::PayloadConfig::new(max_body))
                .wrap(tracing_actix())
                .configure(soap::routes)
                .configure(api::routes)
                .configure(health::routes)
                .configure(metrics::routes)
                .configure(|cfg| {
                    if console_enabled {
                        crate::console::routes(cfg);
                    }
                })
        })
        .workers(workers)
        .max_connections(per_worker)
        .listen(listener)?
        // Signals are handled by `run_until_stopped`, which first answers long polls and stops the
        // background work; actix's own grace period is the same deadline, counted from then.
        .disable_signals()
        .shutdown_timeout(settings.shutdown_deadline_secs.max(1))
        .run();
        Ok(Application {
            addr,
            server,
            pool,
            settings,
            shutdown,
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

    /// Serves until SIGTERM or SIGINT, running the worker beside it when `worker.in_serve` is on,
    /// then stops as [`Application::run_until`] describes.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(crate::shutdown::signal()).await
    }

    /// Serves until `stop` resolves (with the reason to log), then stops within
    /// `shutdown_deadline_secs`: open feed long polls are answered at once, the worker and exporter
    /// claim nothing new, requests in flight and the work in hand get until the deadline to finish.
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = &'static str>,
    ) -> std::io::Result<()> {
        let mode = if self.settings.worker.in_serve {
            WorkerMode::Run
        } else {
            WorkerMode::Off
        };
        let background = Background::start(&self.pool, &self.settings, &self.shutdown, mode);
        tracing::info!(address = %self.addr, "wharf is listening");
        let handle = self.server.handle();
        let mut server = tokio::spawn(self.server);
        let ended = tokio::select! {
            reason = stop => {
                tracing::info!(
                    signal = reason,
                    deadline_secs = self.settings.shutdown_deadline_secs,
                    "stopping: answering open long polls, claiming no new work, finishing what is in hand"
                );
                None
            }
            ended = &mut server => Some(ended),
        };
        let deadline = crate::background::deadline(&self.settings);
        self.shutdown.trigger();
        let result = match ended {
            Some(ended) => ended,
            None => {
                // Stop accepting, let requests in flight finish (actix cuts them off at the same
                // deadline), then collect the server task.
                let _ = tokio::time::timeout_at(deadline, handle.stop(true)).await;
                match tokio::time::timeout_at(deadline, server).await {
                    Ok(ended) => ended,
                    Err(_) => Ok(Ok(())),
                }
            }
        };
        background.finish(deadline).await;
        tracing::info!("wharf stopped");
        result.unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

/// Logs one line per request: client address (the TCP peer, not a header it could forge), method,
/// path, status, time. Neither the query string, headers nor bodies, which may carry credentials.
fn tracing_actix() -> actix_web::middleware::Logger {
    actix_web::middleware::Logger::new("%a \"%{METHOD}xi %U\" %s %Dms")
        .custom_request_replace("METHOD", |req| req.method().to_string())
        .exclude("/health")
}
