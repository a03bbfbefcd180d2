//! Shipment files in over a real sshd (Debian's `/usr/sbin/sshd` on loopback, as in the tests):
//! `--files` orders are stored through the storefront API, one shipment file per order is put in
//! the channel's import folder, and the run reports shipment files per second from the start of
//! the channel's run until every file is stored (read, checked, received, deleted, its exchange
//! finished) and until every shipment is applied by the worker (which runs inside wharf, woken by
//! each receipt, while the run goes on).
//!
//! ```text
//! cargo run --release --example bench_shipment_files
//! cargo run --release --example bench_shipment_files -- --postgres postgres://postgres@127.0.0.1:5432/postgres
//! ```
//!
//! wharf runs in-process (`Application::build` on 127.0.0.1:0) on a fresh database: a temporary
//! SQLite file, or with `--postgres` a database `wharf_files_<random>` created and dropped through
//! that admin URL. When run as root, sshd logs in the user `wharf-sftp` (`.ci/run` creates it).

#[path = "common/bench_db.rs"]
mod bench_db;
#[path = "common/orders.rs"]
mod orders;
/// The tests' sshd (it panics on a broken setup, which is what a benchmark wants too).
#[allow(dead_code, clippy::unwrap_used, clippy::expect_used)]
#[path = "../tests/api/sshd.rs"]
mod sshd;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench_db::BenchDb;
use clap::Parser;
use diesel::prelude::*;
use wharf::Settings;
use wharf::channels::sftp::FileChannel;
use wharf::channels::sftp::import;
use wharf::db::Pool;

/// Measures shipment files stored and applied per second.
#[derive(Debug, Parser)]
#[command(name = "bench_shipment_files")]
struct Args {
    /// Run on PostgreSQL: the admin URL where a database wharf_files_<random> is created and
    /// dropped at the end (SQLite in a temporary directory without it).
    #[arg(long)]
    postgres: Option<String>,
    /// Orders, and shipment files (one per order).
    #[arg(long, default_value_t = 1000)]
    files: usize,
}

/// Storefront requests in flight while the orders are stored.
const CONCURRENCY: usize = 8;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        wharf::telemetry::init(false);
    }
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_shipment_files: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    wharf::tls::install_crypto_provider();
    let db = BenchDb::new(args.postgres.as_deref(), "wharf_files")?;
    let sshd = sshd::Sshd::start();
    let mut channel = sshd.channel("bench");
    // Shipment files only: the orders stored here queue no order file.
    channel.export_dir.clear();
    let mut settings = Settings {
        database_url: db.url.clone(),
        listen: "127.0.0.1:0".into(),
        ..Settings::default()
    };
    settings.channels.push(channel.clone());
    settings.validate()?;
    let app = wharf::Application::build(settings.clone())
        .await
        .context("building wharf")?;
    let base = format!("http://{}", app.addr());
    let pool = app.pool();
    tokio::spawn(app.run_until_stopped());
    let p = pool.clone();
    let token = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let mut conn = p.get()?;
        Ok(wharf::auth::add_token(&mut conn, "bench")?)
    })
    .await??;

    let ids: Vec<String> = (1..=args.files).map(|i| format!("F-{i:06}")).collect();
    orders::put_orders(&base, &token, &ids, &order_json(), CONCURRENCY).await?;
    for id in &ids {
        sshd.put(&format!("in/ship_{id}.xml"), shipment_file(id));
    }
    let ch = FileChannel::new(pool.clone(), Arc::new(settings), channel);
    let started = Instant::now();
    let outcome = import::run_once(&ch).await?;
    let stored = started.elapsed();
    if outcome.applied != ids.len() {
        bail!(
            "the run stored {} of {} files: {outcome:?}",
            outcome.applied,
            ids.len()
        );
    }
    wait_applied(&pool, ids.len(), Duration::from_secs(600)).await?;
    let applied = started.elapsed();
    let left = sshd.files("in").len() + sshd.files("in/processing").len();
    if left != 0 {
        bail!("{left} files are still on the server");
    }
    let backend = if args.postgres.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let per_sec = |d: Duration| ids.len() as f64 / d.as_secs_f64().max(1e-9);
    println!(
        "shipment files ({backend}, one sshd on loopback, one poller): {} files stored in {:.2} s \
         = {:.0} files/s; all applied by the worker after {:.2} s = {:.0} files/s",
        ids.len(),
        stored.as_secs_f64(),
        per_sec(stored),
        applied.as_secs_f64(),
        per_sec(applied),
    );
    Ok(())
}

/// A shipment file shipping all of order `id`.
fn shipment_file(id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<shipment>\n  \
         <order_increment_id>{id}</order_increment_id>\n  \
         <lines><line><sku>SKU-000001</sku><qty>2</qty></line></lines>\n  \
         <tracking_numbers><tracking_number>T-{id}</tracking_number></tracking_numbers>\n  \
         <courier_name>DPD</courier_name>\n  <service_name>Next Day</service_name>\n  \
         <date_shipped>2024-05-01T10:15:00Z</date_shipped>\n</shipment>\n"
    )
}

/// Waits (up to `limit`) until `n` shipments are applied and nothing is queued.
async fn wait_applied(pool: &Pool, n: usize, limit: Duration) -> anyhow::Result<()> {
    use wharf::db::schema::{requests, shipments};
    let until = Instant::now() + limit;
    loop {
        let p = pool.clone();
        let (applied, open) = tokio::task::spawn_blocking(move || -> anyhow::Result<(i64, i64)> {
            let mut conn = p.get()?;
            let applied = shipments::table.count().get_result(&mut conn)?;
            let open = requests::table
                .filter(requests::state.ne("processed"))
                .count()
                .get_result(&mut conn)?;
            Ok((applied, open))
        })
        .await??;
        if applied == n as i64 && open == 0 {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("{applied} of {n} shipments applied after {limit:?} ({open} requests open)");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn order_json() -> serde_json::Value {
    let address = serde_json::json!({
        "first_name": "Ada", "last_name": "Lovelace", "street": ["12 St James's Square"],
        "city": "London", "postcode": "SW1Y 4JH", "country": "GB", "email": "ada@example.com"
    });
    serde_json::json!({
        "status": "processing",
        "source": "web",
        "currency": "GBP",
        "billing_address": address,
        "delivery_address": address,
        "totals": {"subtotal": "20.00", "shipping": "5.00", "tax": "4.17", "grand_total": "25.00"},
        "lines": [{
            "sku": "SKU-000001", "name": "Product", "qty": 2,
            "unit_price_net": "8.33", "unit_price_gross": "10.00", "unit_tax": "1.67",
            "row_total_net": "16.67", "row_total_gross": "20.00", "row_tax": "3.33"
        }],
    })
}
