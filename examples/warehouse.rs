//! A warehouse simulator: plays OrderFlow against a running wharf over the Magento 1 SOAP dialect.
//!
//! It logs in (`login`), then sends `orderflowInventoryMultiUpdate` messages with random SKUs from a
//! pool, some of them late (their per-SKU sequence ids are older than ones already sent, so wharf must
//! keep the newer value) and some re-sent byte for byte (wharf must acknowledge them again without
//! queueing them twice). Every answer must be exactly `Success - Message <id> Received`.
//!
//! ```text
//! echo 'secret-pass' | wharf users add orderflow --role warehouse --password-stdin
//! wharf serve &
//! cargo run --release --example warehouse -- --password secret-pass --messages 2000 \
//!     --skus-per-message 20 --sku-pool 500 --concurrency 8 --out-of-order 0.1 --repeat 0.05
//! ```
//!
//! At the end it prints the final (qty, seq) that a few SKUs must show once the worker has applied
//! everything; with `--token` it checks every SKU it touched through the storefront API itself.

#[path = "common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::{Line, Outgoing};

/// Plays the OrderFlow warehouse against a running wharf (Magento 1 SOAP dialect).
#[derive(Debug, Parser)]
#[command(name = "warehouse")]
struct Args {
    /// wharf's base URL; messages are posted to {url}/api/v2_soap/index/.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API user to log in as.
    #[arg(long, default_value = "orderflow")]
    user: String,
    /// The API user's password (Magento "API key").
    #[arg(long, env = "WAREHOUSE_PASSWORD", hide_env_values = true)]
    password: String,
    /// Inventory messages to send (repeats come on top).
    #[arg(long, default_value_t = 1000)]
    messages: usize,
    /// SKU lines per message (distinct SKUs).
    #[arg(long, default_value_t = 20)]
    skus_per_message: usize,
    /// Number of SKUs to pick from: SKU-000001 … SKU-<pool>.
    #[arg(long, default_value_t = 500)]
    sku_pool: usize,
    /// Messages in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Fraction of messages held back and sent after all the others, so their per-SKU sequence ids
    /// are older than ones already sent (stale).
    #[arg(long, default_value_t = 0.1)]
    out_of_order: f64,
    /// Fraction of messages sent a second time, byte for byte, somewhere after the first time.
    #[arg(long, default_value_t = 0.05)]
    repeat: f64,
    /// Send each repeat at most this many places after its original (0: anywhere later). Small
    /// values put a repeat in flight together with its original, as when a warehouse times out and
    /// re-sends while the first attempt is still being stored.
    #[arg(long, default_value_t = 0)]
    repeat_within: usize,
    /// First messageSeqId and first per-SKU sequence id. Defaults to the current Unix time in
    /// microseconds, so every run sends newer sequence ids than the runs before it.
    #[arg(long)]
    start_seq: Option<i64>,
    /// Seed of the random choices (SKUs, quantities, which messages are late or repeated).
    #[arg(long)]
    seed: Option<u64>,
    /// How many SKUs to print the expected final state of.
    #[arg(long, default_value_t = 5)]
    show: usize,
    /// A storefront API token: when given, waits for the worker and checks every SKU touched through
    /// GET /api/v1/stock/{sku}.
    #[arg(long, env = "WHARF_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How long `--token` waits for the worker to apply everything, in seconds.
    #[arg(long, default_value_t = 120)]
    verify_timeout: u64,
}

/// One generated message.
struct Message {
    id: i64,
    lines: Vec<Line>,
    body: Arc<str>,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("warehouse: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let start_seq = check_args(&args)?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);

    let endpoint = common::soap_endpoint(&args.url);
    let client = common::http_client()?;
    println!("wharf warehouse simulator → {endpoint}");
    let session = common::login(&client, &endpoint, &args.user, &args.password).await?;
    println!(
        "logged in as {:?} (session {}…); start seq {start_seq}, seed {seed}",
        args.user,
        &session[..session.len().min(8)]
    );

    let messages = generate(&args, &mut rng, &session, start_seq);
    let expected = expected_state(&messages);
    let plan = plan(&args, &mut rng);
    let stale = stale_lines(&args, &messages, &plan.order);

    let outgoing: Vec<Outgoing> = plan
        .schedule
        .iter()
        .map(|&(_, m)| Outgoing {
            body: messages[m].body.clone(),
            message_seq_id: messages[m].id,
            lines: messages[m].lines.len(),
        })
        .collect();
    let requests = outgoing.len();
    println!(
        "sending {} messages × {} SKUs ({} lines) from a pool of {} SKUs, {} at a time: \
         {} held back to arrive late, {} repeats",
        args.messages,
        args.skus_per_message,
        args.messages * args.skus_per_message,
        args.sku_pool,
        args.concurrency,
        plan.late_count,
        plan.repeat_count
    );
    let stats = common::send_all(&client, &endpoint, Arc::new(outgoing), args.concurrency).await;
    print_stats(&args, &stats, requests, &stale);
    let base = args.url.trim_end_matches('/');
    print_expected(&args, base, &expected, stale.skus);

    let mut ok = stats.errors == 0;
    if let Some(token) = &args.token {
        ok &= verify(
            &client,
            base,
            token,
            &expected,
            args.concurrency,
            Duration::from_secs(args.verify_timeout),
        )
        .await?;
    }
    Ok(ok)
}

/// Refuses arguments the generator cannot honour; returns the first sequence id.
fn check_args(args: &Args) -> anyhow::Result<i64> {
    if args.skus_per_message == 0 || args.skus_per_message > args.sku_pool {
        bail!(
            "--skus-per-message must be between 1 and --sku-pool ({}): SKUs in one message are distinct",
            args.sku_pool
        );
    }
    if args.sku_pool > 999_999 {
        bail!("--sku-pool is at most 999999 (SKU-000001 … SKU-999999)");
    }
    for (name, f) in [
        ("--out-of-order", args.out_of_order),
        ("--repeat", args.repeat),
    ] {
        if !(0.0..=1.0).contains(&f) {
            bail!("{name} is a fraction between 0 and 1");
        }
    }
    Ok(match args.start_seq {
        Some(s) if s > 0 => s,
        Some(_) => bail!("--start-seq must be at least 1"),
        None => chrono::Utc::now().timestamp_micros(),
    })
}

/// Generates in the warehouse's own order: message ids and per-SKU sequence ids both increase.
fn generate(args: &Args, rng: &mut StdRng, session: &str, start_seq: i64) -> Vec<Message> {
    let mut messages = Vec::with_capacity(args.messages);
    let mut next_seq = start_seq;
    for i in 0..args.messages {
        let id = start_seq + i as i64;
        let picks = rand::seq::index::sample(rng, args.sku_pool, args.skus_per_message);
        let lines: Vec<Line> = picks
            .iter()
            .map(|p| {
                let seq = next_seq;
                next_seq += 1;
                Line {
                    sku: common::sku_name(p + 1),
                    qty: rng.random_range(0..1000),
                    seq,
                }
            })
            .collect();
        let body: Arc<str> = common::inventory_envelope(session, id, &lines).into();
        messages.push(Message { id, lines, body });
    }
    messages
}

/// The final state wharf must reach: per SKU, the line with the highest sequence id, wherever it
/// was sent.
fn expected_state(messages: &[Message]) -> BTreeMap<String, (i32, i64)> {
    let mut expected: BTreeMap<String, (i32, i64)> = BTreeMap::new();
    for m in messages {
        for l in &m.lines {
            let e = expected.entry(l.sku.clone()).or_insert((l.qty, l.seq));
            if l.seq >= e.1 {
                *e = (l.qty, l.seq);
            }
        }
    }
    expected
}

/// In what order the messages go out.
struct Plan {
    /// Indexes of the messages, each once: on time in order, then the held-back ones.
    order: Vec<usize>,
    /// What is sent, in order: `order` with the repeats slotted in (the keys sort it).
    schedule: Vec<(f64, usize)>,
    late_count: usize,
    repeat_count: usize,
}

/// Send order: messages on time in order, then the held-back ones; repeats somewhere after their
/// original (keys sort the schedule).
fn plan(args: &Args, rng: &mut StdRng) -> Plan {
    let late_count = (args.out_of_order * args.messages as f64).round() as usize;
    let late: HashSet<usize> = rand::seq::index::sample(rng, args.messages, late_count)
        .into_iter()
        .collect();
    let mut order: Vec<usize> = (0..args.messages).filter(|i| !late.contains(i)).collect();
    let mut late_sorted: Vec<usize> = late.iter().copied().collect();
    late_sorted.sort_unstable();
    order.extend(late_sorted);
    let mut schedule: Vec<(f64, usize)> = order
        .iter()
        .enumerate()
        .map(|(pos, &m)| (pos as f64, m))
        .collect();
    let repeat_count = (args.repeat * args.messages as f64).round() as usize;
    let total = order.len() as f64;
    for p in rand::seq::index::sample(rng, order.len(), repeat_count) {
        let last = match args.repeat_within {
            0 => total,
            n => (p + n).min(order.len()) as f64,
        };
        let key = rng.random_range(p as f64 + 0.5..last + 0.5);
        schedule.push((key, order[p]));
    }
    schedule.sort_by(|a, b| a.0.total_cmp(&b.0));
    Plan {
        order,
        schedule,
        late_count,
        repeat_count,
    }
}

/// The stale lines of a send order.
struct Stale {
    msgs: usize,
    lines: usize,
    /// The first few SKUs that received a stale line.
    skus: Vec<String>,
}

/// Stale lines, judged in send order: a line is stale when a newer sequence id for its SKU was
/// sent before it.
fn stale_lines(args: &Args, messages: &[Message], order: &[usize]) -> Stale {
    let mut newest_sent: HashMap<&str, i64> = HashMap::new();
    let (mut stale_msgs, mut stale_lines) = (0usize, 0usize);
    let mut stale_skus: Vec<String> = Vec::new();
    for &m in order {
        let mut stale_here = false;
        for l in &messages[m].lines {
            let newest = newest_sent.entry(&l.sku).or_insert(0);
            if *newest > l.seq {
                stale_lines += 1;
                stale_here = true;
                if stale_skus.len() < args.show {
                    stale_skus.push(l.sku.clone());
                }
            } else {
                *newest = l.seq;
            }
        }
        stale_msgs += stale_here as usize;
    }
    Stale {
        msgs: stale_msgs,
        lines: stale_lines,
        skus: stale_skus,
    }
}

fn print_stats(args: &Args, stats: &common::SendStats, requests: usize, stale: &Stale) {
    println!();
    println!(
        "sent        {} requests: {} messages ({} SKU lines), {} stale messages ({} stale lines, \
         older than a line already sent for the same SKU), {} byte-identical repeats",
        stats.sent,
        args.messages,
        args.messages * args.skus_per_message,
        stale.msgs,
        stale.lines,
        requests - args.messages
    );
    println!(
        "answers     {} ok, {} errors (faults, non-200 or not exactly \"Success - Message <id> Received\")",
        stats.ok, stats.errors
    );
    for e in &stats.first_errors {
        println!("  error: {e}");
    }
    if stats.errors > stats.first_errors.len() {
        println!("  … and {} more", stats.errors - stats.first_errors.len());
    }
    println!(
        "elapsed     {:.2} s: {:.0} messages/s, {:.0} lines/s; latency p50 {}, p99 {}, max {}",
        stats.elapsed.as_secs_f64(),
        stats.per_sec(),
        stats.lines_per_sec(),
        common::ms(stats.percentile(0.50)),
        common::ms(stats.percentile(0.99)),
        common::ms(stats.percentile(1.0)),
    );
}

/// Prints a few SKUs to check by hand: SKU-000001 if it was used, then ones that received a stale
/// line (the stale quantity must not win), then the first others.
fn print_expected(
    args: &Args,
    base: &str,
    expected: &BTreeMap<String, (i32, i64)>,
    stale_skus: Vec<String>,
) {
    let mut shown: Vec<String> = Vec::new();
    let first = common::sku_name(1);
    for s in std::iter::once(first)
        .chain(stale_skus)
        .chain(expected.keys().cloned())
    {
        if shown.len() >= args.show {
            break;
        }
        if expected.contains_key(&s) && !shown.contains(&s) {
            shown.push(s);
        }
    }
    println!();
    println!(
        "expected final stock once the worker has applied everything (highest seq per SKU wins; \
         {} SKUs touched):",
        expected.len()
    );
    for s in &shown {
        let (qty, seq) = expected[s];
        println!("  {s}  qty {qty:>4}  last_seq {seq}");
    }
    println!("check with:");
    for s in shown.iter().take(2) {
        println!("  curl -H \"Authorization: Bearer $TOKEN\" {base}/api/v1/stock/{s}");
    }
}

/// Polls the storefront API until every SKU shows its expected (qty, seq) or the timeout passes.
async fn verify(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    expected: &BTreeMap<String, (i32, i64)>,
    concurrency: usize,
    timeout: Duration,
) -> anyhow::Result<bool> {
    #[derive(serde::Deserialize)]
    struct Level {
        qty: i32,
        last_seq: i64,
    }
    println!();
    println!(
        "checking {} SKUs through {base}/api/v1/stock/…",
        expected.len()
    );
    let started = Instant::now();
    let mut pending: Vec<(String, (i32, i64))> =
        expected.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let mut last_seen: HashMap<String, Option<(i32, i64)>> = HashMap::new();
    loop {
        let mut still = Vec::new();
        for chunk in pending.chunks(concurrency.max(1)) {
            let mut tasks = Vec::new();
            for (sku, want) in chunk {
                let req = client
                    // The sender names no source, so its stock is at the default one.
                    .get(format!("{base}/api/v1/stock/{sku}?source=default"))
                    .bearer_auth(token);
                let (sku, want) = (sku.clone(), *want);
                tasks.push(tokio::spawn(async move {
                    let resp = req.send().await?;
                    let got = match resp.status().as_u16() {
                        200 => {
                            let levels: Vec<Level> = resp.json().await?;
                            levels.first().map(|l| (l.qty, l.last_seq))
                        }
                        404 => None,
                        401 => bail!("the API refused the token (401)"),
                        s => bail!("GET stock of {sku}: HTTP {s}"),
                    };
                    anyhow::Ok((sku, want, got))
                }));
            }
            for t in tasks {
                let (sku, want, got) = t.await.context("checking stock")??;
                if got != Some(want) {
                    last_seen.insert(sku.clone(), got);
                    still.push((sku, want));
                }
            }
        }
        pending = still;
        if pending.is_empty() {
            println!(
                "verified: all {} SKUs show the expected qty and last_seq ({:.1} s after sending ended)",
                expected.len(),
                started.elapsed().as_secs_f64()
            );
            return Ok(true);
        }
        if started.elapsed() >= timeout {
            println!(
                "NOT verified: {} of {} SKUs still differ after {} s (is the worker running?):",
                pending.len(),
                expected.len(),
                timeout.as_secs()
            );
            for (sku, want) in pending.iter().take(common::KEPT_ERRORS) {
                println!(
                    "  {sku}: expected qty {} seq {}, found {:?}",
                    want.0, want.1, last_seen[sku]
                );
            }
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
