//! Freshness: how long after the SOAP acknowledgement of an inventory update its `stock.changed`
//! reaches a storefront waiting in a feed long poll, at light load (one message at a time).
//!
//! ```text
//! cargo build --release && cargo run --release --example freshness
//! cargo run --release --example freshness -- --postgres-url postgres://postgres@127.0.0.1:5432/postgres
//! cargo run --release --example freshness -- --postgres-url postgres://postgres@127.0.0.1:5432/postgres --split
//! cargo run --release --example freshness -- --wharf /tmp/wharf-before   # an older build, same CLI
//! ```
//!
//! It runs the real binary (`--wharf`, default `target/release/wharf`) with its default settings on
//! a fresh database: a temporary SQLite file, or with `--postgres-url` a database
//! `wharf_fresh_<random>` created and dropped through that admin URL. One `wharf serve` receives,
//! applies (its worker) and answers the long poll; with `--split` (PostgreSQL only) three processes
//! do it — a `wharf serve` with its worker off receives, a `wharf worker` applies, and another
//! `wharf serve` with its worker off answers the long poll — so every hand-over crosses a process.
//! For each message: read the feed head, open a long poll after it, post the update, and time from
//! the acknowledgement to the poll's answer carrying the update's `stock.changed`.

#[path = "common/bench_db.rs"]
mod bench_db;
#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

use bench_db::BenchDb;
use common::Line;

/// Measures acknowledgement → `stock.changed` in a feed long poll on a running wharf binary.
#[derive(Debug, Parser)]
#[command(name = "freshness")]
struct Args {
    /// The wharf binary to run.
    #[arg(long, default_value = "target/release/wharf")]
    wharf: PathBuf,
    /// Run on PostgreSQL: the admin URL where a database wharf_fresh_<random> is created and
    /// dropped at the end (SQLite in a temporary directory without it).
    #[arg(long)]
    postgres_url: Option<String>,
    /// Receiver, worker and feed reader as three processes (PostgreSQL only).
    #[arg(long)]
    split: bool,
    /// Updates sent, one at a time.
    #[arg(long, default_value_t = 200)]
    messages: i64,
    /// Pause between the long poll opening and the update being sent, in milliseconds (so the poll
    /// is waiting, as a storefront's would be).
    #[arg(long, default_value_t = 20)]
    pause_ms: u64,
}

const USER: &str = "bench";
const PASSWORD: &str = "freshness bench password";

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("freshness: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("freshness: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.split && args.postgres_url.is_none() {
        bail!("--split needs --postgres-url: SQLite runs in one process");
    }
    let db = BenchDb::new(args.postgres_url.as_deref(), "wharf_fresh")?;
    let wharf = Wharf {
        bin: args.wharf.clone(),
        url: db.url.clone(),
    };
    wharf.setup()?;
    let token = wharf.token()?;
    let (_processes, soap_base, feed_base) = if args.split {
        let mut receiver = wharf.start("serve", false)?;
        let worker = wharf.start("worker", true)?;
        let mut reader = wharf.start("serve", false)?;
        let (soap, feed) = (receiver.base()?, reader.base()?);
        (vec![receiver, worker, reader], soap, feed)
    } else {
        let mut server = wharf.start("serve", true)?;
        let base = server.base()?;
        (vec![server], base.clone(), base)
    };
    let client = common::http_client()?;
    let endpoint = common::soap_endpoint(&soap_base);
    let session = common::login(&client, &endpoint, USER, PASSWORD).await?;
    let mut delays = Vec::with_capacity(args.messages as usize);
    for n in 1..=args.messages {
        let probe = Probe {
            client: &client,
            feed_base: &feed_base,
            token: &token,
            pause: Duration::from_millis(args.pause_ms),
        };
        delays.push(probe.one(&endpoint, &session, n).await?);
    }
    delays.sort();
    let shape = match (&args.postgres_url, args.split) {
        (None, _) => "SQLite, one process",
        (Some(_), false) => "PostgreSQL, one process",
        (Some(_), true) => "PostgreSQL, receiver, worker and feed reader in three processes",
    };
    println!(
        "{} ({shape}): {} updates, acknowledgement -> stock.changed in a feed long poll: \
         p50 {}  p99 {}  max {}",
        args.wharf.display(),
        delays.len(),
        common::ms(common::percentile(&delays, 0.5)),
        common::ms(common::percentile(&delays, 0.99)),
        common::ms(delays.last().copied().unwrap_or_default()),
    );
    Ok(())
}

/// One timed update.
struct Probe<'a> {
    client: &'a reqwest::Client,
    feed_base: &'a str,
    token: &'a str,
    pause: Duration,
}

impl Probe<'_> {
    /// Opens a long poll, sends update `n`, and returns the time from its acknowledgement to the
    /// poll answer that carries its `stock.changed`.
    async fn one(&self, endpoint: &str, session: &str, n: i64) -> anyhow::Result<Duration> {
        let head: serde_json::Value = self
            .client
            .get(format!("{}/api/v1/feed/head", self.feed_base))
            .bearer_auth(self.token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let after = head["head"].as_i64().context("no feed head")?;
        let sku = common::sku_name(n as usize);
        let poll = tokio::spawn(wait_for_stock(
            self.client.clone(),
            format!("{}/api/v1/feed", self.feed_base),
            self.token.to_string(),
            after,
            sku.clone(),
        ));
        tokio::time::sleep(self.pause).await;
        let lines = [Line {
            sku,
            qty: 5,
            seq: n,
        }];
        let resp = self
            .client
            .post(endpoint)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header(
                "SOAPAction",
                "\"urn:Mage_Api_Model_Server_V2_HandlerAction\"",
            )
            .body(common::inventory_envelope(session, n, &lines))
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        let acked = Instant::now();
        if !status.is_success() || !text.contains(&common::expected_ack(n)) {
            bail!("update {n} not acknowledged (HTTP {status}): {text}");
        }
        let seen = tokio::time::timeout(Duration::from_secs(120), poll)
            .await
            .with_context(|| format!("update {n}: no stock.changed within 120 s"))???;
        Ok(seen.saturating_duration_since(acked))
    }
}

/// Long-polls the feed from `after` until a `stock.changed` for `sku` arrives; returns when the
/// answer carrying it arrived.
async fn wait_for_stock(
    client: reqwest::Client,
    url: String,
    token: String,
    mut after: i64,
    sku: String,
) -> anyhow::Result<Instant> {
    loop {
        let page: serde_json::Value = client
            .get(&url)
            .query(&[("after", after), ("wait", 60)])
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let answered = Instant::now();
        let events = page["events"].as_array().context("no events")?;
        if events
            .iter()
            .any(|e| e["type"] == "stock.changed" && e["data"]["sku"] == sku.as_str())
        {
            return Ok(answered);
        }
        after = page["last_id"].as_i64().context("no last_id")?;
    }
}

/// The binary under test, on the benchmark's database.
struct Wharf {
    bin: PathBuf,
    url: String,
}

impl Wharf {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("DATABASE_URL", &self.url)
            .env("WHARF_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "warn,wharf=info");
        cmd
    }

    /// Migrates and adds the SOAP user.
    fn setup(&self) -> anyhow::Result<()> {
        let out = self.command(&["migrate"]).output()?;
        if !out.status.success() {
            bail!("wharf migrate: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut add = self
            .command(&["users", "add", USER, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", self.bin.display()))?;
        add.stdin
            .take()
            .context("no stdin")?
            .write_all(PASSWORD.as_bytes())?;
        let out = add.wait_with_output()?;
        if !out.status.success() {
            bail!("wharf users add: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// A new storefront token.
    fn token(&self) -> anyhow::Result<String> {
        let out = self.command(&["tokens", "add", "freshness"]).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.lines().map(str::trim).rfind(|l| !l.is_empty()) {
            Some(t) if out.status.success() => Ok(t.to_string()),
            _ => bail!("wharf tokens add: {}", String::from_utf8_lossy(&out.stderr)),
        }
    }

    /// Starts `wharf serve` or `wharf worker` (for `serve`, with its worker on or off).
    fn start(&self, command: &str, worker: bool) -> anyhow::Result<Process> {
        let mut child = self
            .command(&[command])
            .env("WHARF_WORKER__IN_SERVE", worker.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} {command}", self.bin.display()))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (tx, log) = mpsc::channel();
        // Drained to the end, so a chatty log never blocks the process.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        Ok(Process { child, log })
    }
}

/// A running wharf process.
struct Process {
    child: Child,
    log: mpsc::Receiver<String>,
}

impl Process {
    /// `http://host:port` of a `wharf serve`, once it listens.
    fn base(&mut self) -> anyhow::Result<String> {
        let until = Instant::now() + Duration::from_secs(30);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            let line = self
                .log
                .recv_timeout(left)
                .context("wharf serve exited or said nothing")?;
            if line.contains("wharf is listening")
                && let Some(addr) = line
                    .split("address=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
            {
                return Ok(format!("http://{addr}"));
            }
        }
        bail!("wharf serve did not listen within 30 s")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
