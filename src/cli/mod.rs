//! The `wharf` command line: one binary, one subcommand per job.

mod channels;
mod check;
mod clean;
mod config;
mod exports;
mod files;
mod requests;
mod users;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::background::{Background, WorkerMode};
use crate::config::{Settings, redact_url};
use crate::db;
use crate::http::Application;
use crate::shutdown::Shutdown;
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
    /// Apply pending database migrations and exit (creates an SQLite database that does not exist).
    Migrate,
    /// Print the effective settings (secrets redacted) and check them; exits 1 when they would not
    /// start.
    Config {
        /// Print a complete, commented wharf.toml with every setting at its default instead.
        #[arg(long)]
        defaults: bool,
    },
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
    /// Order channels (marketplaces, affiliate systems): each one's status (the default), their
    /// pushes, and resend or dismiss of the lost and dead ones.
    Channels {
        /// What to do (default: status).
        #[command(subcommand)]
        command: Option<channels::ChannelsCommand>,
    },
    /// File channels (SFTP): their order and shipment files (the default: list), one in full,
    /// the failed ones support has not seen, and marking one seen.
    Files {
        /// What to do (default: list).
        #[command(subcommand)]
        command: Option<files::FilesCommand>,
    },
    /// Export to the warehouse now (orders, products, cancellations), without waiting for the schedule.
    Export,
    /// Check the configuration, database, queue, warehouse endpoint, SMTP and users, one line each;
    /// exits 1 when any check fails.
    Check {
        /// Also send a short test mail to this address through the alert mail server.
        #[arg(long, value_name = "ADDRESS")]
        send_test_mail: Option<String>,
    },
    /// Delete finished records older than the `[retention]` days now (never anything queued,
    /// processing, dead, lost or pending); prints per part what went.
    Clean {
        /// Only count and print what would go; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
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

fn load(cli: &Cli) -> anyhow::Result<(Settings, Option<PathBuf>)> {
    let (settings, file) = Settings::load_with_file(cli.config.as_deref())?;
    crate::telemetry::init(settings.log_json);
    Ok((settings, file))
}

/// Says which settings file and database are in use.
fn start(command: &str, settings: &Settings, file: Option<&Path>) -> anyhow::Result<()> {
    let config = match file {
        Some(p) => p.display().to_string(),
        None => "none (built-in defaults and environment)".to_string(),
    };
    let database = db::DbTarget::parse(&settings.database_url)?.display();
    tracing::info!(%config, %database, "wharf {command} starting");
    Ok(())
}

/// Opens the pool of an existing database and applies pending migrations (a command may be the
/// first to run after an upgrade). Only `serve` and `migrate` create a database.
pub(crate) fn open(settings: &Settings) -> anyhow::Result<db::Pool> {
    let pool = db::connect_existing(&settings.database_url, settings.db_pool_size)?;
    crate::queue::scrub::migrate(&pool)
        .with_context(|| format!("database {}", redact_url(&settings.database_url)))?;
    Ok(pool)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // The defaults are printed even when the environment holds a setting that does not parse.
    if let Command::Config { defaults: true } = cli.command {
        config::defaults();
        return Ok(());
    }
    // A file that does not parse is one of the findings of `check`, not a reason to stop early.
    if let Command::Check { send_test_mail } = &cli.command {
        return check::check(cli.config.as_deref(), send_test_mail.as_deref());
    }
    let (settings, file) = load(&cli)?;
    match cli.command {
        Command::Serve => {
            settings.validate()?;
            start("serve", &settings, file.as_deref())?;
            block_on(async move {
                let app = Application::build(settings).await?;
                app.run_until_stopped().await?;
                Ok(())
            })
        }
        Command::Worker { once } => {
            settings.validate()?;
            start("worker", &settings, file.as_deref())?;
            let pool = open(&settings)?;
            let settings = Arc::new(settings);
            if once {
                let worker = Worker::new(pool, settings);
                let n = worker.drain()?;
                println!("applied {n} request(s); nothing else is due");
                return Ok(());
            }
            block_on(run_worker(pool, settings))
        }
        Command::Migrate => migrate(&settings, file.as_deref()),
        Command::Config { .. } => config::show(&settings, file.as_deref()),
        Command::Users(cmd) => users::users(&settings, cmd),
        Command::Tokens(cmd) => users::tokens(&settings, cmd),
        Command::Requests(cmd) => requests::requests(&settings, cmd),
        Command::Orders(cmd) => exports::orders(&settings, cmd),
        Command::Exports(cmd) => exports::exports(&settings, cmd),
        Command::Channels { command } => channels::channels(&settings, command),
        Command::Files { command } => files::files(&settings, command),
        Command::Export => exports::export(settings),
        // Loaded by the check itself, above.
        Command::Check { .. } => Ok(()),
        Command::Clean { dry_run } => clean::clean(&settings, dry_run),
    }
}

/// `wharf migrate`: creates the database when it is an SQLite file that does not exist yet.
fn migrate(settings: &Settings, file: Option<&Path>) -> anyhow::Result<()> {
    start("migrate", settings, file)?;
    let pool = db::connect(&settings.database_url, 1)?;
    let applied = crate::queue::scrub::migrate(&pool)?;
    if applied.is_empty() {
        println!("database is up to date");
    } else {
        for m in applied {
            println!("applied migration {m}");
        }
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Runs `f` on a fresh runtime. Dropping a runtime waits for every blocking task without limit; the
/// shutdown deadline has already been spent waiting for them, so this waits only briefly more.
fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let rt = runtime()?;
    let result = rt.block_on(f);
    rt.shutdown_timeout(Duration::from_millis(500));
    result
}

/// `wharf worker`: the worker loops and the exporter until SIGTERM or SIGINT, then the work in hand
/// finishes within `shutdown_deadline_secs`.
async fn run_worker(pool: db::Pool, settings: Arc<Settings>) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    let background = Background::start(&pool, &settings, &shutdown, WorkerMode::Run);
    let signal = crate::shutdown::signal().await;
    tracing::info!(
        signal,
        deadline_secs = settings.shutdown_deadline_secs,
        "stopping: claiming no new work, finishing the batch in hand"
    );
    shutdown.trigger();
    background
        .finish(crate::background::deadline(&settings))
        .await;
    tracing::info!("wharf worker stopped");
    Ok(())
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
