//! Order files out through a real sshd on loopback: `--orders` invoiced orders are stored through
//! the storefront API, then one run of the file channel writes them all (recorded, uploaded under
//! a temporary name, size checked, renamed, committed — per batch of the default `batch_size`),
//! and the run reports orders written to files per second. Every order is checked to be in
//! exactly one file under a final name.
//!
//! ```text
//! cargo run --release --example bench_order_files
//! cargo run --release --example bench_order_files -- --postgres postgres://postgres@127.0.0.1:5432/postgres
//! ```
//!
//! Needs Debian's `openssh-server` (`/usr/sbin/sshd`); run as root it logs in the `wharf-sftp`
//! user, as the tests do (`.ci/run` creates it). wharf runs in-process on a fresh database: a
//! temporary SQLite file, or with `--postgres` a database `wharf_files_<random>` created and
//! dropped through that admin URL.

#[path = "common/bench_db.rs"]
mod bench_db;
#[path = "common/orders.rs"]
mod orders;
// The tests' sshd harness: it stops at the first failed step (unwrap), as a benchmark may.
#[allow(clippy::unwrap_used, clippy::expect_used, dead_code)]
#[path = "../tests/api/sshd.rs"]
mod sshd;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use bench_db::BenchDb;
use clap::Parser;
use wharf::Settings;
use wharf::channels::sftp::{FileChannel, export, orders_file};

/// Measures order files written per second through a real sshd.
#[derive(Debug, Parser)]
#[command(name = "bench_order_files")]
struct Args {
    /// Run on PostgreSQL: the admin URL where a database wharf_files_<random> is created and
    /// dropped at the end (SQLite in a temporary directory without it).
    #[arg(long)]
    postgres: Option<String>,
    /// Invoiced orders to write.
    #[arg(long, default_value_t = 5000)]
    orders: usize,
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
            eprintln!("bench_order_files: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    wharf::tls::install_crypto_provider();
    let db = BenchDb::new(args.postgres.as_deref(), "wharf_files")?;
    let sshd = sshd::Sshd::start();
    let channel = sshd.channel("bench");
    let mut settings = Settings {
        database_url: db.url.clone(),
        listen: "127.0.0.1:0".into(),
        ..Settings::default()
    };
    settings.worker.in_serve = false;
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
    let ids: Vec<String> = (1..=args.orders).map(|i| format!("F-{i:06}")).collect();
    orders::put_orders(&base, &token, &ids, &order_json(), CONCURRENCY).await?;

    let ch = FileChannel::new(pool, Arc::new(settings), channel.clone());
    let started = Instant::now();
    let outcome = export::run_once(&ch).await?;
    let took = started.elapsed();
    if let Some(p) = outcome.problem {
        bail!("the run stopped: {p}");
    }
    check_files(&sshd, &ids)?;
    let backend = if args.postgres.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!(
        "order files ({backend}, batch_size {}): {} orders in {} files in {:.2} s = {:.0} orders/s \
         (each file recorded, uploaded, size checked, renamed and committed; sshd on loopback)",
        channel.batch_size,
        outcome.orders,
        outcome.files.len(),
        took.as_secs_f64(),
        outcome.orders as f64 / took.as_secs_f64().max(1e-9)
    );
    Ok(())
}

/// Every order in exactly one file, and no temporary file left.
fn check_files(sshd: &sshd::Sshd, ids: &[String]) -> anyhow::Result<()> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for name in sshd.files("out") {
        if name.starts_with('.') {
            bail!("a temporary file is left: {name}");
        }
        let xml = String::from_utf8(sshd.read(&format!("out/{name}")))?;
        let file = orders_file::parse(&xml).map_err(anyhow::Error::msg)?;
        for o in file.orders {
            *seen.entry(o.increment_id).or_default() += 1;
        }
    }
    if seen.len() != ids.len() || seen.values().any(|n| *n != 1) {
        bail!(
            "{} orders in the files, {} stored; not each exactly once",
            seen.len(),
            ids.len()
        );
    }
    Ok(())
}

fn order_json() -> serde_json::Value {
    let address = serde_json::json!({
        "first_name": "Ada", "last_name": "Lovelace", "street": ["12 St James's Square"],
        "city": "London", "postcode": "SW1Y 4JH", "country": "GB", "email": "ada@example.com"
    });
    serde_json::json!({
        "status": "processing", "source": "web", "currency": "GBP",
        "created_at": "2024-05-01T09:30:00Z",
        "shipping_method": {"code": "flatrate_flatrate", "name": "Flat Rate"},
        "payment_method": "checkmo",
        "billing_address": address, "delivery_address": address,
        "totals": {"subtotal": "20.00", "shipping": "5.00", "tax": "4.17", "grand_total": "25.00"},
        "lines": [{"sku": "ABC123", "name": "Blue Widget", "qty": 2, "unit_price_net": "8.33",
            "unit_price_gross": "10.00", "unit_tax": "1.67", "row_total_net": "16.67",
            "row_total_gross": "20.00", "row_tax": "3.33"}],
    })
}
