//! wharf's benchmark: receipt over real loopback HTTP, a bare INSERT+COMMIT baseline on the same
//! database, and worker apply throughput — on SQLite and on PostgreSQL.
//!
//! ```text
//! cargo run --release --example bench
//! cargo run --release --example bench -- --skip-postgres --messages 500
//! cargo run --release --example bench -- --postgres-url postgres://postgres@127.0.0.1:5432/postgres
//! ```
//!
//! Each backend gets a fresh database: a file in a temporary directory for SQLite, a database named
//! `wharf_bench_<random>` for PostgreSQL (created and dropped through the admin URL). wharf runs
//! in-process (`Application::build` on 127.0.0.1:0, worker off), and the senders post over real
//! loopback HTTP from the same process, so on a small machine they take CPU from the server.

#[path = "common/baseline.rs"]
mod baseline;
#[path = "common/mod.rs"]
mod common;
#[path = "warehouse_api/mod.rs"]
mod warehouse_api;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::{Line, Outgoing};
use wharf::Settings;
use wharf::db::Pool;
use wharf::messages::{DEFAULT_SOURCE, InventoryLine, InventoryMessage};

/// Benchmarks wharf's receipt, a bare-commit baseline and the worker, on SQLite and PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Args {
    /// Admin URL of the PostgreSQL server; a database wharf_bench_<random> is created there and
    /// dropped at the end.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres_url: String,
    /// Only benchmark SQLite.
    #[arg(long)]
    skip_postgres: bool,
    /// Only benchmark PostgreSQL.
    #[arg(long)]
    skip_sqlite: bool,
    /// Messages sent per receipt level.
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// SKU lines per receipt message.
    #[arg(long, default_value_t = 10)]
    receipt_lines: usize,
    /// Concurrent senders of each receipt level.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    senders: Vec<usize>,
    /// Rows of the bare INSERT+COMMIT loop.
    #[arg(long, default_value_t = 2000)]
    baseline_rows: usize,
    /// Messages enqueued per apply run.
    #[arg(long, default_value_t = 500)]
    apply_messages: usize,
    /// SKU lines per apply message.
    #[arg(long, default_value_t = 200)]
    lines: usize,
    /// Worker threads of each apply run.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    apply_threads: Vec<usize>,
    /// Number of distinct SKUs messages pick from.
    #[arg(long, default_value_t = 20_000)]
    sku_pool: usize,
    /// A setting for the PostgreSQL benchmark database (`ALTER DATABASE … SET KEY = 'VALUE'`), e.g.
    /// `log_min_duration_statement=5` to log slow statements. Repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pg_setting: Vec<String>,
    /// Invoiced orders exported to the warehouse simulator (0 skips the export benchmark).
    #[arg(long, default_value_t = 10_000)]
    export_orders: usize,
    /// Orders per export document.
    #[arg(long, default_value_t = 100)]
    export_batch: i64,
    /// Keep the databases (the SQLite directory and the PostgreSQL database) for inspection.
    #[arg(long)]
    keep: bool,
}

/// One line of the final table.
struct Row {
    backend: &'static str,
    metric: String,
    value: String,
}

const USER: &str = "bench";
const PASSWORD: &str = "bench-password";

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        wharf::telemetry::init(false);
    }
    let args = Args::parse();
    let mut rows = Vec::new();
    let mut failed = false;
    if !args.skip_sqlite {
        match bench_sqlite(&args, &mut rows).await {
            Ok(()) => {}
            Err(e) => {
                eprintln!("bench: sqlite: {e:#}");
                failed = true;
            }
        }
    }
    if !args.skip_postgres {
        match bench_postgres(&args, &mut rows).await {
            Ok(()) => {}
            Err(e) => {
                eprintln!("bench: postgres: {e:#}");
                failed = true;
            }
        }
    }
    print_table(&rows);
    if failed || rows.iter().any(|r| r.value.contains("MISMATCH")) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print_table(rows: &[Row]) {
    let w = rows
        .iter()
        .map(|r| r.metric.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    println!();
    println!("{:<9} {:<w$}  value", "backend", "metric");
    for r in rows {
        println!("{:<9} {:<w$}  {}", r.backend, r.metric, r.value);
    }
}

async fn bench_sqlite(args: &Args, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let url = format!("sqlite://{}", dir.path().join("wharf.db").display());
    eprintln!("== sqlite: {url}");
    let result = bench_backend("sqlite", &url, args, rows).await;
    if args.keep {
        eprintln!("kept {}", dir.keep().display());
    }
    result
}

async fn bench_postgres(args: &Args, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let name = format!("wharf_bench_{}", &wharf::auth::random_secret()[..10]);
    let url = with_database(&args.postgres_url, &name)?;
    let admin = args.postgres_url.clone();
    let create = name.clone();
    let pg_settings = args
        .pg_setting
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v))
                if !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') =>
            {
                Ok((k.to_string(), v.replace('\'', "''")))
            }
            _ => Err(anyhow::anyhow!("--pg-setting {kv:?} is not KEY=VALUE")),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut conn = PgConnection::establish(&admin).with_context(|| {
            format!(
                "connecting to {} (start it with `pg_ctlcluster 15 main start`, or pass --skip-postgres)",
                wharf::config::redact_url(&admin)
            )
        })?;
        conn.batch_execute(&format!("CREATE DATABASE {create}"))
            .with_context(|| format!("creating database {create}"))?;
        for (k, v) in pg_settings {
            conn.batch_execute(&format!("ALTER DATABASE {create} SET {k} = '{v}'"))
                .with_context(|| format!("setting {k} on database {create}"))?;
        }
        Ok(())
    })
    .await??;
    eprintln!("== postgres: {}", wharf::config::redact_url(&url));
    let result = bench_backend("postgres", &url, args, rows).await;
    if args.keep {
        eprintln!("kept database {name}");
        return result;
    }
    // The in-process server keeps its pool open; FORCE ends those sessions.
    let admin = args.postgres_url.clone();
    let drop = name.clone();
    let dropped = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut conn = PgConnection::establish(&admin)?;
        conn.batch_execute(&format!("DROP DATABASE IF EXISTS {drop} WITH (FORCE)"))?;
        Ok(())
    })
    .await?;
    match dropped {
        Ok(()) => eprintln!("dropped database {name}"),
        Err(e) => eprintln!("bench: could not drop database {name}: {e:#}; drop it by hand"),
    }
    result
}

/// `url` with its database name replaced by `name` (query string kept).
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!("{url:?} is not a postgres:// URL");
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    let host = rest.split_once('/').map_or(rest, |(h, _)| h);
    Ok(format!("{scheme}://{host}/{name}{query}"))
}

/// Generates messages with fresh message ids and per-SKU sequence ids.
struct Generator {
    rng: StdRng,
    next_message: i64,
    next_seq: i64,
    sku_pool: usize,
    /// Expected final (qty, seq) per SKU of everything generated since the last `take_expected`.
    expected: HashMap<String, (i32, i64)>,
}

impl Generator {
    fn new(sku_pool: usize) -> Generator {
        Generator {
            rng: StdRng::seed_from_u64(20_261_123),
            next_message: 1,
            next_seq: 1,
            sku_pool,
            expected: HashMap::new(),
        }
    }

    fn message(&mut self, lines: usize) -> (i64, Vec<Line>) {
        let id = self.next_message;
        self.next_message += 1;
        let picks =
            rand::seq::index::sample(&mut self.rng, self.sku_pool, lines.min(self.sku_pool));
        let lines: Vec<Line> = picks
            .iter()
            .map(|p| {
                let seq = self.next_seq;
                self.next_seq += 1;
                let l = Line {
                    sku: common::sku_name(p + 1),
                    qty: self.rng.random_range(0..1000),
                    seq,
                };
                self.expected.insert(l.sku.clone(), (l.qty, l.seq));
                l
            })
            .collect();
        (id, lines)
    }

    fn take_expected(&mut self) -> HashMap<String, (i32, i64)> {
        std::mem::take(&mut self.expected)
    }
}

async fn bench_backend(
    backend: &'static str,
    url: &str,
    args: &Args,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let (base, pool, settings) = start_wharf(url).await?;
    let endpoint = common::soap_endpoint(&base);
    let client = common::http_client()?;
    let session = common::login(&client, &endpoint, USER, PASSWORD).await?;
    eprintln!(
        "wharf at {base} (pool {} connections, batch {}, worker off while receiving)",
        settings.db_pool_size, settings.worker.batch_size
    );

    let mut generator = Generator::new(args.sku_pool);
    let mut bench = Bench { backend, rows };

    // Warm-up: connections, caches, the session check.
    let warm = receipt_batch(&mut generator, &session, 100, args.receipt_lines);
    let st = common::send_all(&client, &endpoint, warm, 8).await;
    if st.errors > 0 {
        bail!("warm-up failed: {:?}", st.first_errors);
    }

    let receiving = Receiving {
        client: &client,
        endpoint: &endpoint,
        session: &session,
    };
    let last_receipt = bench.receipt(args, &receiving, &mut generator).await;
    bench.baseline(url, args, last_receipt).await?;
    bench
        .apply_backlog(&pool, &settings, args, &mut generator)
        .await?;
    bench
        .apply_big(&pool, &settings, args, &mut generator)
        .await?;

    // e. Export invoiced orders to the warehouse simulator over loopback HTTP.
    if args.export_orders > 0 {
        let value = bench_export(&pool, &settings, args.export_orders, args.export_batch).await?;
        let metric = format!(
            "export {} orders, batch {}",
            args.export_orders, args.export_batch
        );
        bench.report(metric, value);
    }
    Ok(())
}

/// Starts wharf in-process over `url`, worker off, with the warehouse's user; returns its base URL,
/// its pool and its settings.
async fn start_wharf(url: &str) -> anyhow::Result<(String, Pool, Arc<Settings>)> {
    let mut settings = Settings {
        database_url: url.to_string(),
        listen: "127.0.0.1:0".into(),
        ..Settings::default()
    };
    settings.worker.in_serve = false;
    let app = wharf::Application::build(settings.clone())
        .await
        .context("building wharf")?;
    let base = format!("http://{}", app.addr());
    let pool = app.pool();
    let settings = Arc::new(settings);
    tokio::spawn(app.run_until_stopped());
    let p = pool.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut conn = p.get()?;
        wharf::auth::add_user(&mut conn, USER, PASSWORD, "warehouse")?;
        Ok(())
    })
    .await??;
    Ok((base, pool, settings))
}

/// Where the senders post, and as whom.
struct Receiving<'a> {
    client: &'a reqwest::Client,
    endpoint: &'a str,
    session: &'a str,
}

/// The measurements of one backend, reported as they are made.
struct Bench<'a> {
    backend: &'static str,
    rows: &'a mut Vec<Row>,
}

impl Bench<'_> {
    /// Prints a measurement and keeps it for the table.
    fn report(&mut self, metric: String, value: String) {
        eprintln!("{} {metric}: {value}", self.backend);
        self.rows.push(Row {
            backend: self.backend,
            metric,
            value,
        });
    }

    /// b. Receipt at each level of concurrency; returns the last level and its rate.
    async fn receipt(
        &mut self,
        args: &Args,
        to: &Receiving<'_>,
        generator: &mut Generator,
    ) -> Option<(usize, f64)> {
        let mut last_receipt = None;
        for &c in &args.senders {
            let batch = receipt_batch(generator, to.session, args.messages, args.receipt_lines);
            let st = common::send_all(to.client, to.endpoint, batch, c).await;
            let mut value = format!(
                "{:.0} msg/s  p50 {}  p99 {}",
                st.per_sec(),
                common::ms(st.percentile(0.5)),
                common::ms(st.percentile(0.99))
            );
            if st.errors > 0 {
                value.push_str(&format!("  ERRORS {}/{}", st.errors, st.sent));
                for e in &st.first_errors {
                    eprintln!("  error: {e}");
                }
            }
            let metric = format!(
                "receipt {c} sender{} ({}-SKU msgs)",
                if c == 1 { "" } else { "s" },
                args.receipt_lines
            );
            self.report(metric, value);
            last_receipt = Some((c, st.per_sec()));
        }
        last_receipt
    }

    /// c. The floor: one connection, sequential single-row transactions.
    async fn baseline(
        &mut self,
        url: &str,
        args: &Args,
        last_receipt: Option<(usize, f64)>,
    ) -> anyhow::Result<()> {
        let (u, n) = (url.to_string(), args.baseline_rows);
        let baseline = tokio::task::spawn_blocking(move || baseline::bare_commit_loop(&u, n, None))
            .await??
            .per_sec();
        self.report(
            "bare INSERT+COMMIT loop".into(),
            format!("{baseline:.0} rows/s"),
        );
        if let Some((c, r)) = last_receipt {
            // A ratio, not a measurement of its own: kept for the table only.
            self.rows.push(Row {
                backend: self.backend,
                metric: format!("receipt@{c} / bare loop"),
                value: format!("{:.2}x", r / baseline),
            });
        }
        Ok(())
    }

    /// The receipt backlog, applied: small messages show the per-message cost of the worker.
    async fn apply_backlog(
        &mut self,
        pool: &Pool,
        settings: &Arc<Settings>,
        args: &Args,
        generator: &mut Generator,
    ) -> anyhow::Result<()> {
        let threads = args.apply_threads.iter().copied().max().unwrap_or(1);
        generator.take_expected();
        let (processed, lines, elapsed) = drain(pool, settings, threads).await?;
        let value = format!(
            "{:.0} msg/s  {:.0} lines/s  ({processed} msgs, {:.1} s)",
            processed as f64 / elapsed.as_secs_f64(),
            lines as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64()
        );
        let metric = format!(
            "apply receipt backlog, {threads} thread{}",
            if threads == 1 { "" } else { "s" }
        );
        self.report(metric, value);
        Ok(())
    }

    /// d. Apply big messages with 1, 2, … worker threads.
    async fn apply_big(
        &mut self,
        pool: &Pool,
        settings: &Arc<Settings>,
        args: &Args,
        generator: &mut Generator,
    ) -> anyhow::Result<()> {
        for &t in &args.apply_threads {
            let before = processed_count(pool).await?;
            let enqueue = enqueue_direct(pool, generator, args.apply_messages, args.lines).await?;
            eprintln!(
                "enqueued {} messages of {} lines directly in {:.1} s",
                args.apply_messages,
                args.lines,
                enqueue.as_secs_f64()
            );
            let expected = generator.take_expected();
            let (processed, lines, elapsed) = drain(pool, settings, t).await?;
            let after = processed_count(pool).await?;
            let check =
                check_after_drain(pool, before, after, args.apply_messages, expected).await?;
            let value = format!(
                "{:.0} lines/s  ({:.1} msg/s, {processed} msgs, {lines} lines, {:.1} s; {check})",
                lines as f64 / elapsed.as_secs_f64(),
                processed as f64 / elapsed.as_secs_f64(),
                elapsed.as_secs_f64()
            );
            let metric = format!(
                "apply ({}-SKU msgs), {t} thread{}",
                args.lines,
                if t == 1 { "" } else { "s" }
            );
            self.report(metric, value);
        }
        Ok(())
    }
}

/// Creates `n` invoiced orders, exports them all to a simulator, and checks the warehouse got each once.
async fn bench_export(
    pool: &Pool,
    settings: &Settings,
    n: usize,
    batch: i64,
) -> anyhow::Result<String> {
    let sim = warehouse_api::WarehouseSim::start("bench", "bench-wms").await;
    let mut s = settings.clone();
    s.warehouse.endpoint = sim.endpoint();
    s.warehouse.username = "bench".into();
    s.warehouse.password = "bench-wms".into();
    s.warehouse.organisation = "BENCH".into();
    s.warehouse.channel = "web".into();
    s.warehouse.orders.enabled = true;
    s.warehouse.orders.batch_size = batch;
    let order: wharf::orders::OrderInput = serde_json::from_value(serde_json::json!({
        "status": "processing", "currency": "GBP", "payment_method": "card",
        "shipping_method": {"code": "flatrate_flatrate", "name": "Flat Rate"},
        "billing_address": {"first_name": "Ada", "last_name": "Lovelace", "street": ["12 St James's Square"],
            "city": "London", "postcode": "SW1Y 4JH", "country": "GB"},
        "delivery_address": {"first_name": "Ada", "last_name": "Lovelace", "street": ["12 St James's Square"],
            "city": "London", "postcode": "SW1Y 4JH", "country": "GB"},
        "totals": {"subtotal": "20", "shipping": "5", "tax": "4", "grand_total": "29"},
        "lines": [
            {"sku": "EXP-A", "name": "A", "qty": 1, "unit_price_net": "10", "unit_price_gross": "12",
             "row_total_net": "10", "row_total_gross": "12", "row_tax": "2"},
            {"sku": "EXP-B", "name": "B", "qty": 1, "unit_price_net": "10", "unit_price_gross": "12",
             "row_total_net": "10", "row_total_gross": "12", "row_tax": "2"}]
    }))?;
    let p = pool.clone();
    let prefix = format!("BX{}-", &wharf::auth::random_secret()[..6]);
    let created = prefix.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut conn = p.get()?;
        for i in 0..n {
            wharf::orders::upsert(&mut conn, &format!("{created}{i}"), &order, &[])?;
        }
        Ok(())
    })
    .await??;
    let exporter = wharf::channels::warehouse::Exporter::new(pool.clone(), Arc::new(s))?;
    let started = Instant::now();
    let outcome = exporter.export_orders().await?;
    let elapsed = started.elapsed();
    let received = sim
        .orders()
        .iter()
        .filter(|o| o.external_reference.starts_with(&prefix))
        .count();
    sim.stop().await;
    let check = if outcome.exported == n && received == n {
        "ok: every order exported once".to_string()
    } else {
        format!(
            "MISMATCH: exported {} of {n}, warehouse received {received}",
            outcome.exported
        )
    };
    Ok(format!(
        "{:.0} orders/s  ({n} orders in {:.1} s; {check})",
        n as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    ))
}

fn receipt_batch(
    generator: &mut Generator,
    session: &str,
    n: usize,
    lines: usize,
) -> Arc<Vec<Outgoing>> {
    Arc::new(
        (0..n)
            .map(|_| {
                let (id, lines) = generator.message(lines);
                Outgoing {
                    body: common::inventory_envelope(session, id, &lines).into(),
                    message_seq_id: id,
                    lines: lines.len(),
                }
            })
            .collect(),
    )
}

/// Stores `n` messages of `lines` lines straight into the queue (no HTTP), as receipt would.
async fn enqueue_direct(
    pool: &Pool,
    generator: &mut Generator,
    n: usize,
    lines: usize,
) -> anyhow::Result<Duration> {
    let msgs: Vec<(Vec<u8>, InventoryMessage)> = (0..n)
        .map(|_| {
            let (id, lines) = generator.message(lines);
            let body = common::inventory_envelope("bench-direct", id, &lines).into_bytes();
            let msg = InventoryMessage {
                message_seq_id: id,
                lines: lines
                    .into_iter()
                    .map(|l| InventoryLine {
                        sku: l.sku,
                        source: DEFAULT_SOURCE.to_string(),
                        qty: l.qty,
                        seq: l.seq,
                        last_order_exported: None,
                    })
                    .collect(),
            };
            (body, msg)
        })
        .collect();
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Duration> {
        let mut conn = pool.get()?;
        let started = Instant::now();
        for (body, msg) in &msgs {
            match wharf::queue::receive_inventory(&mut conn, USER, body, msg)? {
                wharf::queue::Receipt::Queued(_) => {}
                other => bail!("message {} was not queued: {other:?}", msg.message_seq_id),
            }
        }
        Ok(started.elapsed())
    })
    .await?
}

/// Drains the queue with `threads` threads sharing one worker. Returns (requests processed, lines in
/// them, wall time).
async fn drain(
    pool: &Pool,
    settings: &Arc<Settings>,
    threads: usize,
) -> anyhow::Result<(usize, i64, Duration)> {
    let lines_before = processed_lines(pool).await?;
    let worker = Arc::new(wharf::worker::Worker::new(pool.clone(), settings.clone()));
    let elapsed_processed = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let started = Instant::now();
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                let w = worker.clone();
                std::thread::spawn(move || w.drain())
            })
            .collect();
        let mut processed = 0;
        for h in handles {
            processed += h
                .join()
                .map_err(|_| anyhow::anyhow!("a worker thread panicked"))??;
        }
        Ok((started.elapsed(), processed))
    })
    .await??;
    let (elapsed, processed) = elapsed_processed;
    let lines = processed_lines(pool).await? - lines_before;
    Ok((processed, lines, elapsed))
}

async fn blocking<T: Send + 'static>(
    pool: &Pool,
    f: impl FnOnce(&mut wharf::db::DbConnection) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = pool.get()?;
        f(&mut conn)
    })
    .await?
}

async fn depth(pool: &Pool) -> anyhow::Result<HashMap<String, i64>> {
    blocking(pool, |c| {
        Ok(wharf::queue::depth_by_state(c)?.into_iter().collect())
    })
    .await
}

async fn processed_count(pool: &Pool) -> anyhow::Result<i64> {
    Ok(depth(pool).await?.get("processed").copied().unwrap_or(0))
}

async fn processed_lines(pool: &Pool) -> anyhow::Result<i64> {
    use wharf::db::schema::requests::dsl as r;
    blocking(pool, |c| {
        let n: Option<i64> = r::requests
            .filter(r::state.eq("processed"))
            .select(diesel::dsl::sum(r::line_count))
            .first(c)?;
        Ok(n.unwrap_or(0))
    })
    .await
}

/// After an apply run: exactly `m` more requests processed, nothing left in any other state, and
/// every SKU of the run at the (qty, seq) of its newest line.
async fn check_after_drain(
    pool: &Pool,
    before: i64,
    after: i64,
    m: usize,
    expected: HashMap<String, (i32, i64)>,
) -> anyhow::Result<String> {
    let states = depth(pool).await?;
    let mut problems = Vec::new();
    if after - before != m as i64 {
        problems.push(format!("processed went {before}→{after}, expected +{m}"));
    }
    for (state, n) in &states {
        if state != "processed" && *n > 0 {
            problems.push(format!("{n} left {state}"));
        }
    }
    let skus = expected.len();
    let wrong = blocking(pool, move |c| {
        use wharf::db::schema::stock::dsl as s;
        let found: Vec<(String, i32, i64)> = s::stock
            .filter(s::source.eq(DEFAULT_SOURCE))
            .select((s::sku, s::qty, s::last_seq))
            .load(c)?;
        let found: HashMap<String, (i32, i64)> =
            found.into_iter().map(|(k, q, l)| (k, (q, l))).collect();
        Ok(expected
            .iter()
            .filter(|(k, v)| found.get(*k) != Some(*v))
            .count())
    })
    .await?;
    if wrong > 0 {
        problems.push(format!("{wrong} of {skus} SKUs not at their newest line"));
    }
    Ok(if problems.is_empty() {
        format!("ok: processed +{m}, {skus} SKUs at newest seq")
    } else {
        format!("MISMATCH: {}", problems.join(", "))
    })
}
