//! Continuous export: how long from an order's creation through the storefront API (the PUT's
//! answer) until the OrderFlow simulator has received the document that carries it, with
//! `warehouse.orders.schedule = "continuous"`.
//!
//! ```text
//! cargo run --release --example bench_continuous
//! cargo run --release --example bench_continuous -- --postgres-url postgres://postgres@127.0.0.1:5432/postgres
//! cargo run --release --example bench_continuous -- --gap-ms 100   # a busy shop: orders 100 ms apart
//! ```
//!
//! wharf runs in-process (`Application::build` on 127.0.0.1:0, worker off) on a fresh database (a
//! temporary SQLite file, or with `--postgres-url` a database `wharf_cont_<random>` created and
//! dropped through that admin URL), exporting to the simulator on loopback. By default each order
//! is created once the previous one has arrived (an idle shop: every order waits out a whole
//! batching window); with `--gap-ms` orders are created that far apart without waiting, so they
//! share windows and documents.

#[path = "common/bench_db.rs"]
mod bench_db;
#[path = "common/mod.rs"]
mod common;
#[path = "warehouse_api/mod.rs"]
mod warehouse_api;

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench_db::BenchDb;
use clap::Parser;

use warehouse_api::{ORDER_IMPORT, WarehouseSim};
use wharf::Settings;

/// Measures order created → document received by the OrderFlow simulator, continuous export.
#[derive(Debug, Parser)]
#[command(name = "bench_continuous")]
struct Args {
    /// Run on PostgreSQL: the admin URL where a database wharf_cont_<random> is created and dropped
    /// at the end (SQLite in a temporary directory without it).
    #[arg(long)]
    postgres_url: Option<String>,
    /// Orders created.
    #[arg(long, default_value_t = 50)]
    orders: usize,
    /// `warehouse.orders.batch_window_ms`.
    #[arg(long, default_value_t = 1000)]
    window_ms: u64,
    /// Create orders this many milliseconds apart without waiting for them to arrive (0: each
    /// once the previous one arrived).
    #[arg(long, default_value_t = 0)]
    gap_ms: u64,
}

const WMS_USER: &str = "bench";
const WMS_PASSWORD: &str = "bench-wms";

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        wharf::telemetry::init(false);
    }
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_continuous: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    wharf::tls::install_crypto_provider();
    let db = BenchDb::new(args.postgres_url.as_deref(), "wharf_cont")?;
    let sim = WarehouseSim::start(WMS_USER, WMS_PASSWORD).await;
    let shop = Shop::start(&db.url, &sim, args.window_ms).await?;
    let mut created = HashMap::new();
    for n in 1..=args.orders {
        let id = format!("B-{n:05}");
        shop.put_order(&id).await?;
        created.insert(id.clone(), Instant::now());
        if args.gap_ms == 0 {
            arrived(&sim, |refs| refs.contains(&id)).await?;
        } else {
            tokio::time::sleep(Duration::from_millis(args.gap_ms)).await;
        }
    }
    arrived(&sim, |refs| refs.len() >= args.orders).await?;
    let (mut delays, documents) = delays(&sim, &created)?;
    delays.sort();
    let backend = if args.postgres_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let pace = match args.gap_ms {
        0 => "one at a time".to_string(),
        g => format!("{g} ms apart"),
    };
    println!(
        "continuous export ({backend}, window {} ms, {} orders {pace}, {documents} documents): \
         order created -> document received by the OrderFlow simulator: p50 {}  p99 {}  max {}",
        args.window_ms,
        delays.len(),
        common::ms(common::percentile(&delays, 0.5)),
        common::ms(common::percentile(&delays, 0.99)),
        common::ms(delays.last().copied().unwrap_or_default()),
    );
    sim.stop().await;
    Ok(())
}

/// Waits (up to 120 s) until the order references the simulator accepted satisfy `done`.
async fn arrived(sim: &WarehouseSim, done: impl Fn(&[String]) -> bool) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let refs: Vec<String> = sim
            .orders()
            .into_iter()
            .map(|o| o.external_reference)
            .collect();
        if done(&refs) {
            return Ok(());
        }
        if Instant::now() > until {
            bail!(
                "the orders did not arrive within 120 s ({} did)",
                refs.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Per order, from its creation to the first document that carried it; and how many documents
/// there were. An order sent twice is an error.
fn delays(
    sim: &WarehouseSim,
    created: &HashMap<String, Instant>,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let mut received: HashMap<String, Instant> = HashMap::new();
    let mut documents = 0;
    for r in sim.requests() {
        if !r.path.ends_with(ORDER_IMPORT) {
            continue;
        }
        documents += 1;
        let docs = warehouse_api::parse_import_document(&r.body).map_err(anyhow::Error::msg)?;
        for d in docs {
            if received
                .insert(d.external_reference.clone(), r.received_at)
                .is_some()
            {
                bail!("order {} was sent twice", d.external_reference);
            }
        }
    }
    let delays = created
        .iter()
        .map(|(id, at)| {
            let got = received
                .get(id)
                .with_context(|| format!("{id} never arrived"))?;
            Ok(got.saturating_duration_since(*at))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((delays, documents))
}

/// wharf in-process with a continuous order export to `sim`, and a storefront token.
struct Shop {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Shop {
    async fn start(url: &str, sim: &WarehouseSim, window_ms: u64) -> anyhow::Result<Shop> {
        let mut settings = Settings {
            database_url: url.to_string(),
            listen: "127.0.0.1:0".into(),
            ..Settings::default()
        };
        settings.worker.in_serve = false;
        let w = &mut settings.warehouse;
        w.endpoint = sim.endpoint();
        w.username = WMS_USER.into();
        w.password = WMS_PASSWORD.into();
        w.organisation = "ACME".into();
        w.channel = "web".into();
        w.orders.enabled = true;
        w.orders.schedule = "continuous".into();
        w.orders.batch_window_ms = window_ms;
        settings.validate()?;
        let app = wharf::Application::build(settings)
            .await
            .context("building wharf")?;
        let base = format!("http://{}", app.addr());
        let pool = app.pool();
        tokio::spawn(app.run_until_stopped());
        let token = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
            let mut conn = pool.get()?;
            Ok(wharf::auth::add_token(&mut conn, "bench")?)
        })
        .await??;
        Ok(Shop {
            base,
            token,
            client: common::http_client()?,
        })
    }

    /// Creates invoiced order `id` through the storefront API.
    async fn put_order(&self, id: &str) -> anyhow::Result<()> {
        let resp = self
            .client
            .put(format!("{}/api/v1/orders/{id}", self.base))
            .bearer_auth(&self.token)
            .json(&order_json())
            .send()
            .await?;
        let status = resp.status();
        if status.as_u16() != 201 {
            bail!("PUT order {id}: HTTP {status}: {}", resp.text().await?);
        }
        Ok(())
    }
}

/// An invoiced order of two lines.
fn order_json() -> serde_json::Value {
    let address = serde_json::json!({
        "first_name": "Ada", "last_name": "Lovelace", "street": ["12 St James's Square"],
        "city": "London", "postcode": "SW1Y 4JH", "country": "GB", "email": "ada@example.com"
    });
    let line = |sku: &str| {
        serde_json::json!({
            "sku": sku, "name": format!("Product {sku}"), "qty": 2,
            "unit_price_net": "8.33", "unit_price_gross": "10.00", "unit_tax": "1.67",
            "row_total_net": "16.67", "row_total_gross": "20.00", "row_tax": "3.33"
        })
    };
    serde_json::json!({
        "status": "processing",
        "currency": "GBP",
        "billing_address": address,
        "delivery_address": address,
        "totals": {"subtotal": "40.00", "shipping": "5.00", "tax": "7.50", "grand_total": "45.00"},
        "lines": [line("SKU-000001"), line("SKU-000002")],
    })
}
