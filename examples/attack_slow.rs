//! Slow and stalled clients against a real wharf process (issue 10 §2).
//!
//! ```text
//! cargo build --release --bin wharf --example attack_slow
//! target/release/examples/attack_slow                         # against target/release/wharf
//! target/release/examples/attack_slow --wharf /tmp/wharf-before
//! target/release/examples/attack_slow --postgres-url postgres://postgres@127.0.0.1:5432/postgres
//! ```
//!
//! It starts `wharf serve` (`--wharf PATH`) on a free port over a fresh SQLite database in a temporary
//! directory (or a fresh PostgreSQL database under `--postgres-url`, dropped at the end), with a soft
//! open-file limit of `--nofile` (1 024, a common default), and creates an API user with
//! `wharf users add`. Then:
//!
//! 1. it opens `--stalled` connections (1 100) that each send a SOAP request head and 3 bytes of
//!    the body, and stall; while they are open it times a new warehouse client: `GET /health`, a
//!    SOAP `login` and an inventory update, each on a new connection (10 s at most each);
//! 2. it closes them, then opens `--bodies` connections (100) that each announce a body of
//!    `--body-size` (10 MiB), send `--sent` bytes of it (all but 1 KiB) and stall; it prints wharf's
//!    resident memory before and at its peak (VmRSS), what each connection was answered and when
//!    it was cut (seconds after it was opened), waiting `--wait-cut` seconds (60) at most.
//!
//! The benchmark raises its own soft open-file limit to the hard limit.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "common/mod.rs"]
mod common;

/// Slow and stalled clients against a wharf binary.
#[derive(Debug, Parser)]
#[command(name = "attack_slow")]
struct Args {
    /// The wharf binary to run.
    #[arg(long, default_value = "target/release/wharf")]
    wharf: PathBuf,
    /// Run on PostgreSQL: the admin URL a database wharf_attack_<random> is created under.
    #[arg(long)]
    postgres_url: Option<String>,
    /// The soft open-file limit wharf is started with.
    #[arg(long, default_value_t = 1024)]
    nofile: u64,
    /// Stalled connections of the first attack.
    #[arg(long, default_value_t = 1100)]
    stalled: usize,
    /// Connections of the second attack.
    #[arg(long, default_value_t = 100)]
    bodies: usize,
    /// Body size each of them announces.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    body_size: usize,
    /// Bytes of the body each of them sends before stalling (default: all but 1 KiB).
    #[arg(long)]
    sent: Option<usize>,
    /// Longest wait for the server to cut the stalled bodies, in seconds.
    #[arg(long, default_value_t = 60)]
    wait_cut: u64,
}

const USER: &str = "attack";
const PASSWORD: &str = "attack-password";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    wharf::tls::install_crypto_provider();
    raise_own_limit();
    let dir = tempfile::tempdir()?;
    let (database_url, pg) = match &args.postgres_url {
        None => (
            format!("sqlite://{}", dir.path().join("wharf.db").display()),
            None,
        ),
        Some(admin) => {
            let name = format!("wharf_attack_{}", &wharf::auth::random_secret()[..10]);
            let mut conn = PgConnection::establish(admin)
                .with_context(|| format!("connecting to {}", wharf::config::redact_url(admin)))?;
            conn.batch_execute(&format!("CREATE DATABASE {name}"))?;
            let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
            (format!("{base}/{name}"), Some((admin.clone(), name)))
        }
    };
    let result = run(&args, &database_url, dir.path()).await;
    if let Some((admin, name)) = pg
        && let Ok(mut conn) = PgConnection::establish(&admin)
    {
        let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    }
    result
}

/// The benchmark holds thousands of sockets itself.
fn raise_own_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let l = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: l.maximum,
            maximum: l.maximum,
        },
    );
}

/// A wharf process, killed when dropped.
struct Server {
    child: Child,
    base: String,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wharf_cmd(args: &Args, database_url: &str, listen: &str) -> Command {
    let mut cmd = Command::new(&args.wharf);
    cmd.env("DATABASE_URL", database_url)
        .env("WHARF_LISTEN", listen)
        .env_remove("RUST_LOG");
    cmd
}

async fn start(args: &Args, database_url: &str, dir: &std::path::Path) -> anyhow::Result<Server> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let status = wharf_cmd(args, database_url, &listen)
        .arg("migrate")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {}", args.wharf.display()))?;
    if !status.success() {
        bail!("wharf migrate failed");
    }
    let mut add = wharf_cmd(args, database_url, &listen)
        .args(["users", "add", USER, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    add.stdin
        .take()
        .context("stdin")?
        .write_all_sync(PASSWORD.as_bytes())?;
    if !add.wait()?.success() {
        bail!("wharf users add failed");
    }
    let log = std::fs::File::create(dir.join("wharf.log"))?;
    // The soft limit is lowered in a shell that then becomes wharf (same pid, for VmRSS).
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -Sn {} && exec \"$0\" serve", args.nofile))
        .arg(&args.wharf)
        .env("DATABASE_URL", database_url)
        .env("WHARF_LISTEN", &listen)
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let server = Server {
        child,
        base: format!("http://{listen}"),
        addr: listen,
    };
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{}/health", server.base)).send().await
            && r.status().is_success()
        {
            return Ok(server);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("wharf did not answer /health within 30 s")
}

trait WriteAllSync {
    fn write_all_sync(self, b: &[u8]) -> std::io::Result<()>;
}

impl WriteAllSync for std::process::ChildStdin {
    fn write_all_sync(mut self, b: &[u8]) -> std::io::Result<()> {
        std::io::Write::write_all(&mut self, b)
    }
}

fn head(length: usize) -> String {
    format!(
        "POST /api/v2_soap/index/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml; charset=utf-8\r\n\
         Content-Length: {length}\r\n\r\n"
    )
}

async fn run(args: &Args, database_url: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    let server = start(args, database_url, dir).await?;
    println!(
        "wharf {} on {} (soft open-file limit {} at start)",
        args.wharf.display(),
        if args.postgres_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        args.nofile
    );
    stalled_heads(args, &server).await?;
    stalled_bodies(args, &server).await?;
    Ok(())
}

/// Times one step of a new client, at most 10 s.
async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> Option<T> {
    let started = Instant::now();
    match tokio::time::timeout(Duration::from_secs(10), f).await {
        Ok(Ok(v)) => {
            println!(
                "  new client: {what} answered in {} ms",
                started.elapsed().as_millis()
            );
            Some(v)
        }
        Ok(Err(e)) => {
            println!(
                "  new client: {what} failed after {} ms: {e:#}",
                started.elapsed().as_millis()
            );
            None
        }
        Err(_) => {
            println!("  new client: {what} not answered within 10 s");
            None
        }
    }
}

async fn stalled_heads(args: &Args, server: &Server) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut stalled = Vec::with_capacity(args.stalled);
    let head = head(4096);
    for _ in 0..args.stalled {
        let mut s = TcpStream::connect(&server.addr).await?;
        s.write_all(head.as_bytes()).await?;
        s.write_all(b"<SO").await?;
        stalled.push(s);
    }
    println!(
        "attack 1: {} connections sent a head and 3 body bytes and stalled (opened in {} ms)",
        stalled.len(),
        started.elapsed().as_millis()
    );
    // A new client on a new connection for each step, as a warehouse would reconnect.
    let new = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .context("client")
    };
    let endpoint = common::soap_endpoint(&server.base);
    timed("GET /health", async {
        let r = new()?.get(format!("{}/health", server.base)).send().await?;
        Ok(r.status().as_u16())
    })
    .await;
    let login_client = new()?;
    let session = timed(
        "SOAP login",
        common::login(&login_client, &endpoint, USER, PASSWORD),
    )
    .await;
    if let Some(session) = session {
        let lines = [common::Line {
            sku: "ATTACK-1".into(),
            qty: 5,
            seq: 1,
        }];
        let body = common::inventory_envelope(&session, 1, &lines);
        timed("SOAP inventory update", async {
            let r = new()?
                .post(&endpoint)
                .header("Content-Type", "text/xml; charset=utf-8")
                .body(body)
                .send()
                .await?;
            let status = r.status().as_u16();
            let text = r.text().await?;
            if status != 200 || !text.contains("Received") {
                bail!("HTTP {status}");
            }
            Ok(())
        })
        .await;
    }
    let open = stalled.iter().filter(|s| still_open(s)).count();
    println!(
        "  then {open} of {} stalled connections still open ({} ms after the first was opened)",
        stalled.len(),
        started.elapsed().as_millis()
    );
    drop(stalled);
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}

/// Whether the server neither answered nor closed the connection yet.
fn still_open(s: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// What became of one stalled body.
#[derive(Debug)]
struct Fate {
    /// Status answered, 0 when none.
    status: u16,
    /// Seconds after the connection was opened that the server closed it; `None`: still open.
    cut_after: Option<f64>,
}

async fn stalled_bodies(args: &Args, server: &Server) -> anyhow::Result<()> {
    let pid = server.child.id();
    let before = vm_rss_kib(pid).context("reading VmRSS")?;
    let sent = args
        .sent
        .unwrap_or(args.body_size.saturating_sub(1024))
        .min(args.body_size);
    let wait = Duration::from_secs(args.wait_cut);
    let mut tasks = Vec::new();
    for _ in 0..args.bodies {
        let addr = server.addr.clone();
        let head = head(args.body_size);
        tasks.push(tokio::spawn(stall_one_body(addr, head, sent, wait)));
    }
    let mut peak = before;
    let sampler_until = Instant::now() + wait + Duration::from_secs(2);
    while !tasks.iter().all(|t| t.is_finished()) && Instant::now() < sampler_until {
        if let Some(rss) = vm_rss_kib(pid) {
            peak = peak.max(rss);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut fates = Vec::new();
    for t in tasks {
        fates.push(t.await?);
    }
    println!(
        "attack 2: {} connections announced {} MiB bodies, sent {} bytes each and stalled",
        args.bodies,
        args.body_size / (1024 * 1024),
        sent
    );
    println!(
        "  wharf VmRSS: {} MiB before, {} MiB at peak: {} MiB added",
        before / 1024,
        peak / 1024,
        peak.saturating_sub(before) / 1024
    );
    print_fates(args, &fates);
    Ok(())
}

/// Opens a connection, sends `head` and `sent` bytes of body, stalls, and waits up to `wait` for
/// the server to answer or close it.
async fn stall_one_body(addr: String, head: String, sent: usize, wait: Duration) -> Fate {
    let opened = Instant::now();
    let Ok(s) = TcpStream::connect(&addr).await else {
        return Fate {
            status: 0,
            cut_after: Some(0.0),
        };
    };
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![b' '; 64 * 1024];
        if w.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let mut left = sent;
        while left > 0 {
            let n = left.min(chunk.len());
            if w.write_all(&chunk[..n]).await.is_err() {
                return;
            }
            left -= n;
        }
        // Stall, holding the connection open.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(w);
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let fate = loop {
        match tokio::time::timeout_at((opened + wait).into(), r.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                break Some(opened.elapsed().as_secs_f64());
            }
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => break None,
        }
    };
    writer.abort();
    let status = String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Fate {
        status,
        cut_after: fate,
    }
}

/// Prints how the stalled bodies were answered and when they were cut.
fn print_fates(args: &Args, fates: &[Fate]) {
    let mut statuses: std::collections::BTreeMap<u16, usize> = Default::default();
    for f in fates {
        *statuses.entry(f.status).or_default() += 1;
    }
    let answered: Vec<String> = statuses
        .iter()
        .map(|(s, n)| {
            if *s == 0 {
                format!("{n} no answer")
            } else {
                format!("{n} HTTP {s}")
            }
        })
        .collect();
    println!("  answered: {}", answered.join(", "));
    let mut cut: Vec<f64> = fates.iter().filter_map(|f| f.cut_after).collect();
    cut.sort_by(f64::total_cmp);
    let open = fates.len() - cut.len();
    if cut.is_empty() {
        println!("  none cut within {} s", args.wait_cut);
    } else {
        println!(
            "  {} cut: after {:.1} s (first), {:.1} s (median), {:.1} s (last); {open} still open after {} s",
            cut.len(),
            cut[0],
            cut[cut.len() / 2],
            cut[cut.len() - 1],
            args.wait_cut
        );
    }
}
