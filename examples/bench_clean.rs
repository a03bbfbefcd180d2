//! Retention benchmark: how fast the cleaner deletes old processed requests (rows per second), and
//! the p99 SOAP receipt latency while it runs, against the same senders without a clean — on
//! SQLite and on PostgreSQL.
//!
//! ```text
//! cargo run --release --example bench_clean
//! cargo run --release --example bench_clean -- --skip-postgres --requests 20000
//! ```
//!
//! Each backend gets a fresh database (a temporary SQLite file; a database `wharf_bench_clean_<random>`
//! on PostgreSQL, created and dropped through the admin URL), filled by SQL with `--requests` old
//! processed inventory requests of `--lines` lines each, with their import reports (`2·lines + 2`
//! rows a request). wharf runs in-process (worker and in-process cleaner off); the clean is the
//! library's `retention::clean`, as `wharf clean` runs it, while `--senders` post receipts over
//! loopback HTTP until it ends.

#[path = "common/mod.rs"]
mod common;

use std::ops::ControlFlow;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;

use common::{Line, Outgoing};
use wharf::Settings;
use wharf::db::Pool;

/// Benchmarks the retention cleaner and the receipt latency while it runs.
#[derive(Debug, Parser)]
#[command(name = "bench_clean")]
struct Args {
    /// Admin URL of the PostgreSQL server; a database wharf_bench_clean_<random> is created there
    /// and dropped at the end.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres_url: String,
    /// Only benchmark SQLite.
    #[arg(long)]
    skip_postgres: bool,
    /// Only benchmark PostgreSQL.
    #[arg(long)]
    skip_sqlite: bool,
    /// Old processed requests to fill and clean.
    #[arg(long, default_value_t = 50_000)]
    requests: u32,
    /// Lines per request (each also has as many import lines).
    #[arg(long, default_value_t = 10)]
    lines: u32,
    /// Rows per cleaner transaction (`retention.batch_size`).
    #[arg(long, default_value_t = 500)]
    batch_size: i64,
    /// Concurrent receipt senders, during the clean and for the baseline.
    #[arg(long, default_value_t = 4)]
    senders: usize,
    /// Receipts sent for the baseline without a clean.
    #[arg(long, default_value_t = 2000)]
    baseline_messages: usize,
}

const USER: &str = "bench";
const PASSWORD: &str = "bench-password";
/// Lines of each receipt sent.
const RECEIPT_LINES: usize = 10;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        wharf::telemetry::init(false);
    }
    let args = Args::parse();
    let mut failed = false;
    let mut report = Vec::new();
    if !args.skip_sqlite {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => {
                eprintln!("bench_clean: a temporary directory: {e}");
                return ExitCode::FAILURE;
            }
        };
        let url = format!("sqlite://{}", dir.path().join("wharf.db").display());
        match bench_backend("sqlite", &url, &args).await {
            Ok(line) => report.push(line),
            Err(e) => {
                eprintln!("bench_clean: sqlite: {e:#}");
                failed = true;
            }
        }
    }
    if !args.skip_postgres {
        match bench_postgres(&args).await {
            Ok(line) => report.push(line),
            Err(e) => {
                eprintln!("bench_clean: postgres: {e:#}");
                failed = true;
            }
        }
    }
    for line in report {
        println!("{line}");
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn bench_postgres(args: &Args) -> anyhow::Result<String> {
    let name = format!("wharf_bench_clean_{}", &wharf::auth::random_secret()[..10]);
    let Some((scheme, rest)) = args.postgres_url.split_once("://") else {
        bail!("{:?} is not a postgres:// URL", args.postgres_url);
    };
    let host = rest.split_once('/').map_or(rest, |(h, _)| h);
    let url = format!("{scheme}://{host}/{name}");
    let admin = args.postgres_url.clone();
    let run_admin = |sql: String| {
        let admin = admin.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut conn = PgConnection::establish(&admin)
                .with_context(|| format!("connecting to {}", wharf::config::redact_url(&admin)))?;
            conn.batch_execute(&sql)?;
            Ok(())
        })
    };
    run_admin(format!("CREATE DATABASE {name}")).await??;
    let result = bench_backend("postgres", &url, args).await;
    // The in-process server keeps its pool open; FORCE ends those sessions.
    if let Err(e) = run_admin(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await? {
        eprintln!("bench_clean: could not drop database {name}: {e:#}; drop it by hand");
    }
    result
}

/// Fills, measures the baseline, cleans while sending; returns the report line.
async fn bench_backend(backend: &str, url: &str, args: &Args) -> anyhow::Result<String> {
    let (endpoint, pool) = start_wharf(url).await?;
    let client = common::http_client()?;
    let session = common::login(&client, &endpoint, USER, PASSWORD).await?;
    eprintln!(
        "== {backend}: filling {} old requests of {} lines",
        args.requests, args.lines
    );
    let filled = Instant::now();
    fill(&pool, args.requests, args.lines).await?;
    eprintln!("filled in {:.1}s", filled.elapsed().as_secs_f64());

    let mut next_id = 1;
    let mut batch = |n: usize| {
        let messages = receipts(&session, next_id, n);
        next_id += n as i64;
        messages
    };
    let warm = common::send_all(&client, &endpoint, batch(200), args.senders).await;
    if warm.errors > 0 {
        bail!("warm-up failed: {:?}", warm.first_errors);
    }
    let base = common::send_all(
        &client,
        &endpoint,
        batch(args.baseline_messages),
        args.senders,
    )
    .await;

    let done = Arc::new(AtomicBool::new(false));
    let cleaner = {
        let (pool, done) = (pool.clone(), done.clone());
        let settings = wharf::config::RetentionSettings {
            batch_size: args.batch_size,
            ..Default::default()
        };
        tokio::task::spawn_blocking(move || -> anyhow::Result<(i64, Duration)> {
            let mut conn = pool.get()?;
            let started = Instant::now();
            let mut progress = |_: &wharf::retention::Progress| ControlFlow::Continue(());
            let counts =
                wharf::retention::clean(&mut conn, &settings, wharf::db::now(), &mut progress);
            done.store(true, Ordering::Release);
            let requests = counts?
                .iter()
                .find(|c| c.part == wharf::retention::Part::Requests)
                .map_or(0, |c| c.rows);
            Ok((requests, started.elapsed()))
        })
    };
    let mut during = Vec::new();
    let mut errors = 0;
    while !done.load(Ordering::Acquire) {
        let st = common::send_all(&client, &endpoint, batch(100), args.senders).await;
        errors += st.errors;
        during.extend(st.latencies);
    }
    let (deleted, took) = cleaner.await??;
    if deleted != i64::from(args.requests) {
        bail!(
            "the clean deleted {deleted} requests, not the {} filled",
            args.requests
        );
    }
    during.sort_unstable();
    let rows = deleted * (2 * i64::from(args.lines) + 2);
    let secs = took.as_secs_f64().max(1e-9);
    Ok(format!(
        "{backend:<9} clean: {deleted} requests ({rows} rows) in {secs:.1}s = {:.0} requests/s, \
         {:.0} rows/s (batch {}) | receipt p50 / p99 while cleaning: {} / {} over {} receipts \
         ({errors} failed); without a clean: {} / {}",
        deleted as f64 / secs,
        rows as f64 / secs,
        args.batch_size,
        common::ms(common::percentile(&during, 0.5)),
        common::ms(common::percentile(&during, 0.99)),
        during.len(),
        common::ms(base.percentile(0.5)),
        common::ms(base.percentile(0.99)),
    ))
}

/// `n` inventory receipts from messageSeqId `first`.
fn receipts(session: &str, first: i64, n: usize) -> Arc<Vec<Outgoing>> {
    let messages = (0..n as i64)
        .map(|i| {
            let id = first + i;
            let lines: Vec<Line> = (0..RECEIPT_LINES)
                .map(|l| Line {
                    sku: common::sku_name(l + 1),
                    qty: 1,
                    seq: id * 100 + l as i64,
                })
                .collect();
            Outgoing {
                body: common::inventory_envelope(session, id, &lines).into(),
                message_seq_id: id,
                lines: RECEIPT_LINES,
            }
        })
        .collect();
    Arc::new(messages)
}

/// Starts wharf in-process over `url` (worker and cleaner off) with the warehouse's user; returns
/// its SOAP endpoint and its pool.
async fn start_wharf(url: &str) -> anyhow::Result<(String, Pool)> {
    let mut settings = Settings {
        database_url: url.to_string(),
        listen: "127.0.0.1:0".into(),
        ..Settings::default()
    };
    settings.worker.in_serve = false;
    settings.retention.enabled = false;
    let app = wharf::Application::build(settings)
        .await
        .context("building wharf")?;
    let endpoint = common::soap_endpoint(&format!("http://{}", app.addr()));
    let pool = app.pool();
    tokio::spawn(app.run_until_stopped());
    let p = pool.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut conn = p.get()?;
        wharf::auth::add_user(&mut conn, USER, PASSWORD, "warehouse")?;
        Ok(())
    })
    .await??;
    Ok((endpoint, pool))
}

/// Inserts `n` processed requests from a year ago (messageSeqIds from 10⁹, so receipts never
/// meet them), each with `lines` lines, an import header and `lines` import lines. Plain SQL that
/// both backends run (a recursive CTE counts).
async fn fill(pool: &Pool, n: u32, lines: u32) -> anyhow::Result<()> {
    let body = format!("<inventory>{}</inventory>", "<line/>".repeat(300));
    let old = "'2025-01-01 00:00:00'";
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
         INSERT INTO requests (operation, message_seq_id, caller, body, body_hash, line_count, \
         state, attempts, next_attempt_at, received_at, processed_at, receipts, conflict) \
         SELECT 'inventory.update', 1000000000 + i, 'bench', '{body}', 'h' || i, {lines}, \
         'processed', 1, {old}, {old}, {old}, 1, false FROM n;
         WITH RECURSIVE l(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM l WHERE j < {lines}) \
         INSERT INTO request_lines (request_id, line_no, sku, source, qty, seq) \
         SELECT r.id, l.j, 'SKU-' || l.j, 'default', 1, r.id * 100 + l.j \
         FROM requests r CROSS JOIN l WHERE r.caller = 'bench';
         INSERT INTO imports (request_id, operation, message_seq_id, successes, duplicates, \
         superseded, failures, created_at) SELECT id, operation, message_seq_id, {lines}, 0, 0, 0, \
         {old} FROM requests WHERE caller = 'bench';
         INSERT INTO import_lines (request_id, line_no, seq, sku, source, units_received, \
         units_adjusted_orders, units_adjusted_quotes, stored_qty, result, message, created_at) \
         SELECT request_id, line_no, seq, sku, source, qty, 0, 0, qty, 'success', '', {old} \
         FROM request_lines WHERE request_id IN (SELECT id FROM requests WHERE caller = 'bench');"
    );
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut conn = pool.get()?;
        conn.batch_execute(&sql).context("filling old requests")?;
        Ok(())
    })
    .await?
}
