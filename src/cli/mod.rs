//! The `wharf` command line: one binary, one subcommand per job.

mod exports;
mod requests;
mod users;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{Settings, redact_url};
use crate::db;
use crate::http::Application;
use crate::worker::Worker;

/// wharf — a SOAP-compatible gateway between an OrderFlow warehouse and an online store.
#[derive(Debug, Parser)]
#[command(name = "wharf", version, about)]
pub struct Cli {
    /// Settings file (TOML). Defaults to ./wharf.toml when it exists; environment variables
    /// (DATABASE_URL, WHARF_LISTEN, WHARF_WORKER__BATCH_SIZE, …) override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (SOAP, API) with the worker inside it.
    Serve,
    /// Run only the worker that applies queued messages.
    Worker {
        /// Apply everything that is due, then exit.
        #[arg(long)]
        once: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage API users (the warehouse's SOAP logins).
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Manage storefront API tokens.
    #[command(subcommand)]
    Tokens(users::TokensCommand),
    /// Received requests: list, show, requeue, reprocess; rejected messages; queue depth.
    #[command(subcommand)]
    Requests(requests::RequestsCommand),
    /// Lost orders: list, resend, dismiss.
    #[command(subcommand)]
    Orders(exports::OrdersCommand),
    /// The log of exports to the warehouse.
    #[command(subcommand)]
    Exports(exports::ExportsCommand),
    /// Export to the warehouse now (orders, products, cancellations), without waiting for the schedule.
    Export,
}

/// Runs the command and turns errors into a message and exit code 1.
pub fn main(cli: Cli) -> ExitCode {
    crate::tls::install_crypto_provider();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wharf: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(cli: &Cli) -> anyhow::Result<Settings> {
    let settings = Settings::load(cli.config.as_deref())?;
    crate::telemetry::init(settings.log_json);
    Ok(settings)
}

/// Opens the pool and applies migrations (every command may be the first to touch the database).
pub(crate) fn open(settings: &Settings) -> anyhow::Result<db::Pool> {
    let pool = db::connect(&settings.database_url, settings.db_pool_size)?;
    db::migrate(&pool)
        .with_context(|| format!("database {}", redact_url(&settings.database_url)))?;
    Ok(pool)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = load(&cli)?;
    match cli.command {
        Command::Serve => runtime()?.block_on(async move {
            let app = Application::build(settings).await?;
            app.run_until_stopped().await?;
            Ok(())
        }),
        Command::Worker { once } => {
            let pool = open(&settings)?;
            let settings = Arc::new(settings);
            let worker = Arc::new(Worker::new(pool.clone(), settings.clone()));
            if once {
                let n = worker.drain()?;
                println!("applied {n} request(s); nothing else is due");
                return Ok(());
            }
            runtime()?.block_on(async move {
                let (tx, rx) = tokio::sync::watch::channel(false);
                let exporter = crate::export::spawn_if_enabled(&pool, &settings, tx.subscribe());
                let run = tokio::spawn(worker.run(rx));
                shutdown_signal().await;
                tracing::info!("stopping: finishing the batch in hand");
                let _ = tx.send(true);
                let _ = run.await;
                if let Some(e) = exporter {
                    let _ = e.await;
                }
                Ok(())
            })
        }
        Command::Migrate => {
            let pool = db::connect(&settings.database_url, 1)?;
            let applied = db::migrate(&pool)?;
            if applied.is_empty() {
                println!("database is up to date");
            } else {
                for m in applied {
                    println!("applied migration {m}");
                }
            }
            Ok(())
        }
        Command::Users(cmd) => users::users(&settings, cmd),
        Command::Tokens(cmd) => users::tokens(&settings, cmd),
        Command::Requests(cmd) => requests::requests(&settings, cmd),
        Command::Orders(cmd) => exports::orders(&settings, cmd),
        Command::Exports(cmd) => exports::exports(&settings, cmd),
        Command::Export => exports::export(settings),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
