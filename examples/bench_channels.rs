//! The affiliate channel (`kind = "http"`) through the affiliate simulator on loopback:
//!
//! 1. **Throughput**: `--orders` orders of source `affiliate` each get a status change (a storefront
//!    PUT); the pushes are held back while they are made (the channel's breaker held open), then
//!    let go at once, and the run reports status pushes per second from then until the simulator
//!    has received the last one (each is one signed request, and its settling transaction).
//! 2. **Delay**: `--shipments` orders are shipped one at a time (a SOAP shipment, applied by the
//!    worker) with `ship_delay_secs = 0`; the run reports, per shipment, the time from the
//!    shipment's write in its applying transaction (just before that commits) until the simulator
//!    received the ship push, p50/p99/max.
//!
//! ```text
//! cargo run --release --example bench_channels
//! cargo run --release --example bench_channels -- --postgres postgres://postgres@127.0.0.1:5432/postgres
//! ```
//!
//! wharf runs in-process (`Application::build` on 127.0.0.1:0, worker driven by the benchmark) on a
//! fresh database: a temporary SQLite file, or with `--postgres` a database `wharf_chan_<random>`
//! created and dropped through that admin URL.

#[path = "affiliate_api/mod.rs"]
mod affiliate_api;
#[path = "common/bench_db.rs"]
mod bench_db;
#[path = "common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use affiliate_api::{AffiliateSim, Recorded, Route};
use anyhow::{Context, bail};
use bench_db::BenchDb;
use chrono::{DateTime, Utc};
use clap::Parser;
use wharf::Settings;
use wharf::config::{ChannelKind, ChannelSettings};
use wharf::db::Pool;

/// Measures status pushes per second and shipment → ship push delay through the affiliate simulator.
#[derive(Debug, Parser)]
#[command(name = "bench_channels")]
struct Args {
    /// Run on PostgreSQL: the admin URL where a database wharf_chan_<random> is created and dropped
    /// at the end (SQLite in a temporary directory without it).
    #[arg(long)]
    postgres: Option<String>,
    /// Orders that each get a status change (throughput).
    #[arg(long, default_value_t = 1000)]
    orders: usize,
    /// Orders shipped one at a time (delay).
    #[arg(long, default_value_t = 100)]
    shipments: usize,
}

const SECRET: &str = "whsec_YmVuY2ggY2hhbm5lbHMgc2VjcmV0IGtleQ==";
const WMS_USER: &str = "bench";
const WMS_PASSWORD: &str = "bench-wms";
/// Storefront requests in flight while orders are made and changed.
const CONCURRENCY: usize = 8;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        wharf::telemetry::init(false);
    }
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_channels: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    wharf::tls::install_crypto_provider();
    let db = BenchDb::new(args.postgres.as_deref(), "wharf_chan")?;
    let sim = AffiliateSim::start(SECRET).await;
    let shop = Shop::start(&db.url, &sim).await?;
    let backend = if args.postgres.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let (pushed, took) = throughput(&shop, &sim, args.orders).await?;
    println!(
        "affiliate channel ({backend}): {pushed} status pushes in {:.2} s = {:.0} pushes/s \
         (one signed request and one settling transaction each, simulator on loopback)",
        took.as_secs_f64(),
        pushed as f64 / took.as_secs_f64().max(1e-9)
    );
    let mut delays = ship_delays(&shop, &sim, args.shipments).await?;
    delays.sort();
    println!(
        "affiliate channel ({backend}, ship_delay_secs = 0, {} shipments one at a time): shipment \
         committed -> ship push received by the simulator: p50 {}  p99 {}  max {}",
        delays.len(),
        common::ms(common::percentile(&delays, 0.5)),
        common::ms(common::percentile(&delays, 0.99)),
        common::ms(delays.last().copied().unwrap_or_default()),
    );
    sim.stop().await;
    Ok(())
}

/// Makes a status change of each of `n` new orders while the channel is held back, then lets the
/// pushes go. Returns how many arrived and how long from the release to the last one.
async fn throughput(
    shop: &Shop,
    sim: &AffiliateSim,
    n: usize,
) -> anyhow::Result<(usize, Duration)> {
    let ids: Vec<String> = (1..=n).map(|i| format!("B-{i:06}")).collect();
    shop.put_all(&ids, "processing", 201).await?;
    shop.hold_pushes(true).await?;
    shop.put_all(&ids, "holded", 200).await?;
    let released = Instant::now();
    shop.hold_pushes(false).await?;
    wharf::outbound::wake_exporters();
    let got = wait_for(sim, Duration::from_secs(600), |reqs| {
        reqs.iter().filter(|r| is_status(r, "holded")).count() >= n
    })
    .await?;
    let pushes: Vec<&Recorded> = got.iter().filter(|r| is_status(r, "holded")).collect();
    let mut per_order: HashMap<&str, usize> = HashMap::new();
    for r in &pushes {
        if r.status != 200 {
            bail!("a push was answered {}: {:?}", r.status, r.answer);
        }
        *per_order
            .entry(r.reference.as_deref().unwrap_or(""))
            .or_default() += 1;
    }
    if per_order.len() != n || per_order.values().any(|c| *c != 1) {
        bail!("not every order was pushed exactly once");
    }
    let last = pushes
        .iter()
        .map(|r| r.received_at)
        .max()
        .unwrap_or(released);
    Ok((pushes.len(), last.saturating_duration_since(released)))
}

fn is_status(r: &Recorded, status: &str) -> bool {
    r.route == Some(Route::Status)
        && r.json.as_ref().and_then(|j| j["status"].as_str()) == Some(status)
}

/// Ships `n` new orders one at a time, each once the previous one's push arrived. Returns the
/// delays from each shipment's write (its `created_at`, stamped in the applying transaction) to
/// the simulator's receipt of its ship push.
async fn ship_delays(shop: &Shop, sim: &AffiliateSim, n: usize) -> anyhow::Result<Vec<Duration>> {
    let ids: Vec<String> = (1..=n).map(|i| format!("S-{i:06}")).collect();
    shop.put_all(&ids, "processing", 201).await?;
    let session = common::login(&shop.client, &shop.soap, WMS_USER, WMS_PASSWORD).await?;
    // Instants of the simulator are read against the wall clock through one pair sampled here.
    let origin = (Instant::now(), Utc::now());
    let mut delays = Vec::with_capacity(n);
    for (i, id) in ids.iter().enumerate() {
        shop.ship(&session, id, i64::try_from(i + 1)?).await?;
        let got = wait_for(sim, Duration::from_secs(60), |reqs| {
            reqs.iter()
                .any(|r| r.reference.as_deref() == Some(id) && is_status(r, "shipped"))
        })
        .await?;
        let received = got
            .iter()
            .find(|r| r.reference.as_deref() == Some(id) && is_status(r, "shipped"))
            .map(|r| r.received_at)
            .context("the ship push vanished")?;
        let received =
            origin.1 + chrono::TimeDelta::from_std(received.saturating_duration_since(origin.0))?;
        let committed = shop.shipped_at(id).await?;
        delays.push((received - committed).to_std().unwrap_or_default());
    }
    Ok(delays)
}

/// Waits (up to `limit`) until the simulator's requests satisfy `done`; returns them.
async fn wait_for(
    sim: &AffiliateSim,
    limit: Duration,
    done: impl Fn(&[Recorded]) -> bool,
) -> anyhow::Result<Vec<Recorded>> {
    let until = Instant::now() + limit;
    loop {
        let reqs = sim.requests();
        if done(&reqs) {
            return Ok(reqs);
        }
        if Instant::now() > until {
            bail!(
                "the pushes did not arrive within {limit:?} ({} requests did)",
                reqs.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// wharf in-process with the affiliate channel pointed at the simulator.
struct Shop {
    base: String,
    soap: String,
    token: String,
    client: reqwest::Client,
    pool: Pool,
    settings: Arc<Settings>,
    breaker: String,
}

impl Shop {
    async fn start(url: &str, sim: &AffiliateSim) -> anyhow::Result<Shop> {
        let mut settings = Settings {
            database_url: url.to_string(),
            listen: "127.0.0.1:0".into(),
            ..Settings::default()
        };
        settings.worker.in_serve = false;
        let channel = ChannelSettings {
            name: "affiliate".into(),
            kind: ChannelKind::Http,
            sources: vec!["affiliate".into()],
            base_url: sim.base_url(),
            secret: SECRET.into(),
            ship_delay_secs: 0,
            ..ChannelSettings::default()
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
            wharf::auth::add_user(&mut conn, WMS_USER, WMS_PASSWORD, "warehouse")?;
            Ok(wharf::auth::add_token(&mut conn, "bench")?)
        })
        .await??;
        let breaker = wharf::channels::sync::Pusher::new(pool.clone(), channel)?.breaker_key();
        Ok(Shop {
            soap: common::soap_endpoint(&base),
            base,
            token,
            client: common::http_client()?,
            pool,
            settings: Arc::new(settings),
            breaker,
        })
    }

    /// PUTs each of `ids` as an affiliate order with `status`, `CONCURRENCY` at a time; each
    /// answer must be `want`.
    async fn put_all(&self, ids: &[String], status: &str, want: u16) -> anyhow::Result<()> {
        for chunk in ids.chunks(CONCURRENCY) {
            let mut puts = tokio::task::JoinSet::new();
            for id in chunk {
                let (client, url) = (
                    self.client.clone(),
                    format!("{}/api/v1/orders/{id}", self.base),
                );
                let (token, id) = (self.token.clone(), id.clone());
                let mut order = order_json();
                order["status"] = serde_json::json!(status);
                puts.spawn(async move {
                    let resp = client.put(url).bearer_auth(token).json(&order).send().await;
                    (id, resp.map(|r| r.status().as_u16()))
                });
            }
            while let Some(done) = puts.join_next().await {
                let (id, got) = done?;
                let got = got?;
                if got != want {
                    bail!("PUT order {id} with status {status}: HTTP {got}, expected {want}");
                }
            }
        }
        Ok(())
    }

    /// Holds the channel's pushes back (its breaker open for an hour), or lets them go.
    async fn hold_pushes(&self, hold: bool) -> anyhow::Result<()> {
        let (pool, key) = (self.pool.clone(), self.breaker.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut conn = pool.get()?;
            if hold {
                wharf::outbound::breaker::record_failure(
                    &mut conn,
                    &key,
                    1,
                    3600,
                    wharf::db::now(),
                )?;
            } else {
                wharf::outbound::breaker::reset(&mut conn, &key)?;
            }
            Ok(())
        })
        .await?
    }

    /// Sends a shipment of all of order `id` and has the worker apply it.
    async fn ship(&self, session: &str, id: &str, seq: i64) -> anyhow::Result<()> {
        let (status, text) = common::post_soap(
            &self.client,
            &self.soap,
            shipment_envelope(session, id, seq),
        )
        .await?;
        if status != 200 || common::element_text(&text, "faultstring").is_some() {
            bail!("shipment of {id}: HTTP {status}: {text}");
        }
        let worker = wharf::worker::Worker::new(self.pool.clone(), self.settings.clone());
        let applied = tokio::task::spawn_blocking(move || worker.drain()).await??;
        if applied != 1 {
            bail!("the worker applied {applied} requests for the shipment of {id}, not 1");
        }
        Ok(())
    }

    /// When order `id`'s first shipment was written (in its applying transaction).
    async fn shipped_at(&self, id: &str) -> anyhow::Result<DateTime<Utc>> {
        let order: serde_json::Value = self
            .client
            .get(format!("{}/api/v1/orders/{id}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?
            .json()
            .await?;
        let at = order["shipments"][0]["created_at"]
            .as_str()
            .with_context(|| format!("order {id} has no shipment: {order}"))?;
        Ok(DateTime::parse_from_rfc3339(at)?.with_timezone(&Utc))
    }
}

/// A Magento 1 shipment of the whole of order `id` (one line, two units), tracked.
fn shipment_envelope(session: &str, id: &str, seq: i64) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ns1="urn:Magento"><SOAP-ENV:Body><ns1:orderflowShipmentCreate><sessionId>{session}</sessionId><orderIncrementId>{id}</orderIncrementId><skuQty><item><key>SKU-000001</key><value>2</value></item></skuQty><comment>Despatched</comment><email>0</email><includeComment>0</includeComment><courierName>DPD</courierName><serviceName>Next Day</serviceName><trackingNumber>TRK-{seq}</trackingNumber><dateShipped>2024-05-01</dateShipped><messageSeqId>{seq}</messageSeqId></ns1:orderflowShipmentCreate></SOAP-ENV:Body></SOAP-ENV:Envelope>"#
    )
}

/// An order of source `affiliate` with one line of two units.
fn order_json() -> serde_json::Value {
    let address = serde_json::json!({
        "first_name": "Ada", "last_name": "Lovelace", "street": ["12 St James's Square"],
        "city": "London", "postcode": "SW1Y 4JH", "country": "GB", "email": "ada@example.com"
    });
    serde_json::json!({
        "status": "processing",
        "source": "affiliate",
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
