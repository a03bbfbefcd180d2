//! Password guessing against a running wharf: does it exhaust memory or starve the warehouse?
//!
//! ```text
//! cargo build --release --examples
//! target/release/examples/attack_passwords                         # target/release/wharf, SQLite
//! target/release/examples/attack_passwords --wharf /tmp/wharf-before
//! target/release/examples/attack_passwords --postgres-url postgres://postgres@127.0.0.1:5432/postgres
//! ```
//!
//! Spawns the given wharf binary (`serve`, its own temporary SQLite database, or a fresh PostgreSQL
//! database `wharf_attack_<random>` created and dropped through `--postgres-url`), creates an API
//! user with `wharf users add`, and logs a legitimate warehouse in once. Then, for `--secs`, it
//! runs `--attackers` concurrent clients that guess passwords as fast as they are answered — a
//! third each with SOAP `login`, the Magento 2 admin token request and HTTP Basic on an inventory
//! update; half of them guess the real user's password, half invent user names — while the
//! warehouse sends an inventory update every `--interval-ms` with its session and times each
//! acknowledgement. The server's RSS is sampled from `/proc/<pid>/status`.
//!
//! Prints: peak RSS (VmHWM), RSS at the end (after the attack, when the server is idle), the
//! warehouse's acknowledgement p50/p99/max and failures, and how many attacker requests were
//! answered. If the server's RSS passes `--rss-limit-mib` it is killed (the machine may be shared)
//! and the figures say so.

#[path = "common/mod.rs"]
mod common;

use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use clap::Parser;
use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;

use common::{Line, ms, percentile};

const USER: &str = "warehouse";
const PASSWORD: &str = "the real warehouse password";

/// Password guessing against a spawned wharf, with a legitimate warehouse beside it.
#[derive(Debug, Parser)]
#[command(name = "attack_passwords")]
struct Args {
    /// The wharf binary to run.
    #[arg(long, default_value = "target/release/wharf")]
    wharf: String,
    /// Run on PostgreSQL: the admin URL of a server where a database wharf_attack_<random> is
    /// created and dropped at the end. Without it, a temporary SQLite file.
    #[arg(long)]
    postgres_url: Option<String>,
    /// Concurrent guessing clients.
    #[arg(long, default_value_t = 256)]
    attackers: usize,
    /// How long the attack lasts, in seconds.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// The warehouse sends an inventory update this often, in milliseconds.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
    /// Kill the server if its RSS passes this many MiB.
    #[arg(long, default_value_t = 8192)]
    rss_limit_mib: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("attack_passwords: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The database the server runs on; a PostgreSQL one is dropped with it.
struct Database {
    url: String,
    pg: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Database {
    fn new(postgres_url: Option<&str>) -> anyhow::Result<Database> {
        let dir = tempfile::tempdir()?;
        let Some(admin) = postgres_url else {
            return Ok(Database {
                url: format!("sqlite://{}", dir.path().join("wharf.db").display()),
                pg: None,
                _dir: dir,
            });
        };
        let name = format!("wharf_attack_{}", &wharf::auth::random_secret()[..12]);
        let mut conn =
            PgConnection::establish(admin).with_context(|| format!("connecting to {admin}"))?;
        conn.batch_execute(&format!("CREATE DATABASE {name}"))?;
        let (base, _) = admin
            .rsplit_once('/')
            .context("the PostgreSQL URL has no database path")?;
        Ok(Database {
            url: format!("{base}/{name}"),
            pg: Some((admin.to_string(), name)),
            _dir: dir,
        })
    }

    fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.pg
            && let Ok(mut conn) = PgConnection::establish(admin)
        {
            let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// The spawned server; killed when dropped.
struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wharf(args: &Args, db: &Database) -> Command {
    // Absolute, since the server runs in the database's directory.
    let program = std::fs::canonicalize(&args.wharf).unwrap_or_else(|_| args.wharf.clone().into());
    let mut cmd = Command::new(program);
    cmd.env("DATABASE_URL", &db.url)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn")
        .current_dir(db.dir());
    cmd
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn start(args: &Args, db: &Database) -> anyhow::Result<(Server, String)> {
    let out = wharf(args, db)
        .arg("migrate")
        .output()
        .with_context(|| format!("running {}", args.wharf))?;
    if !out.status.success() {
        bail!(
            "wharf migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut add = wharf(args, db)
        .args(["users", "add", USER, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    {
        use std::io::Write;
        add.stdin
            .take()
            .context("stdin")?
            .write_all(PASSWORD.as_bytes())?;
    }
    let out = add.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "wharf users add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let port = free_port()?;
    let log = std::fs::File::create(db.dir().join("serve.log"))?;
    let child = wharf(args, db)
        .arg("serve")
        .env("WHARF_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let server = Server { child };
    let base = format!("http://127.0.0.1:{port}");
    let client = common::http_client()?;
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/ready")).send().await
            && r.status().is_success()
        {
            return Ok((server, base));
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("wharf did not become ready within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// VmRSS and VmHWM of a process, in KiB.
fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

/// What one attacker sends.
#[derive(Clone, Copy)]
enum Guess {
    Login,
    AdminToken,
    Basic,
}

fn admin_token_envelope(user: &str, password: &str) -> String {
    format!(
        "<env:Envelope xmlns:env=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:ns1=\"urn:x\"><env:Body>\
         <ns1:integrationAdminTokenServiceV1CreateAdminAccessTokenRequest><username>{}</username>\
         <password>{}</password></ns1:integrationAdminTokenServiceV1CreateAdminAccessTokenRequest>\
         </env:Body></env:Envelope>",
        common::xml_text(user),
        common::xml_text(password)
    )
}

async fn guess(
    client: &reqwest::Client,
    base: &str,
    kind: Guess,
    user: &str,
    password: &str,
) -> reqwest::Result<u16> {
    let request = match kind {
        Guess::Login => client
            .post(common::soap_endpoint(base))
            .header("Content-Type", "text/xml; charset=utf-8")
            .body(common::login_envelope(user, password)),
        Guess::AdminToken => client
            .post(format!("{base}/soap/default?services=integrationAdminTokenServiceV1"))
            .header(
                "Content-Type",
                "application/soap+xml; charset=utf-8; action=\"integrationAdminTokenServiceV1CreateAdminAccessToken\"",
            )
            .body(admin_token_envelope(user, password)),
        Guess::Basic => client
            .post(common::soap_endpoint(base))
            .header("Content-Type", "text/xml; charset=utf-8")
            .header(
                "Authorization",
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                ),
            )
            .body(common::inventory_envelope("", 1, &[line(1)])),
    };
    let resp = request.send().await?;
    let status = resp.status().as_u16();
    resp.bytes().await?;
    Ok(status)
}

fn line(seq: i64) -> Line {
    Line {
        sku: "ATTACK-SKU".into(),
        qty: (seq % 1000) as i32,
        seq,
    }
}

/// The legitimate warehouse: one inventory update per interval with its session, each timed.
async fn warehouse(
    client: reqwest::Client,
    base: String,
    session: String,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> Acks {
    let began = Instant::now();
    let mut latencies = Vec::new();
    let mut timeline = Vec::new();
    let mut failures = 0;
    let mut first = Vec::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 1_000_000i64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        seq += 1;
        let t0 = Instant::now();
        let sent = client
            .post(common::soap_endpoint(&base))
            .header("Content-Type", "text/xml; charset=utf-8")
            .body(common::inventory_envelope(&session, seq, &[line(seq)]))
            .send()
            .await;
        let answer = match sent {
            Ok(r) => r.text().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        latencies.push(t0.elapsed());
        timeline.push((t0 - began, t0.elapsed()));
        let ok = answer
            .as_deref()
            .ok()
            .and_then(|a| common::element_text(a, "result"))
            .is_some_and(|r| r == common::expected_ack(seq));
        if !ok {
            failures += 1;
            if first.len() < 3 {
                first.push(match answer {
                    Ok(a) => common::element_text(&a, "faultstring").unwrap_or(a),
                    Err(e) => e,
                });
            }
        }
    }
    latencies.sort_unstable();
    timeline.sort_by_key(|(_, l)| std::cmp::Reverse(*l));
    timeline.truncate(5);
    Acks {
        latencies,
        failures,
        first,
        slowest: timeline,
    }
}

/// What the warehouse saw.
#[derive(Default)]
struct Acks {
    /// Every acknowledgement's latency, sorted.
    latencies: Vec<Duration>,
    failures: usize,
    /// The first few failures, described.
    first: Vec<String>,
    /// The slowest acknowledgements: when they were sent (from the start) and how long they took.
    slowest: Vec<(Duration, Duration)>,
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let db = Database::new(args.postgres_url.as_deref())?;
    let (server, base) = start(args, &db).await?;
    let pid = server.child.id();
    let (rss_idle, _) = rss_kib(pid).context("reading the server's /proc status")?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(args.attackers + 8)
        .timeout(Duration::from_secs(60))
        .build()?;
    let session = common::login(&client, &common::soap_endpoint(&base), USER, PASSWORD).await?;
    println!(
        "wharf {} on {}: {} attackers for {} s, warehouse every {} ms; idle RSS {}",
        args.wharf,
        if db.pg.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        args.attackers,
        args.secs,
        args.interval_ms,
        mib(rss_idle)
    );

    let stop = Arc::new(AtomicBool::new(false));
    let attack = spawn_attackers(args, &client, &base, &stop);
    let legit = tokio::spawn(warehouse(
        client.clone(),
        base.clone(),
        session,
        Duration::from_millis(args.interval_ms),
        stop.clone(),
    ));

    let watch = watch_rss(args, pid, rss_idle).await;
    let hwm = rss_kib(pid).map(|(_, h)| h).unwrap_or(watch.peak_rss);
    let mut server = server;
    if watch.killed_at.is_some() {
        let _ = server.child.kill();
    }
    stop.store(true, Ordering::Relaxed);
    let attack_secs = watch.started.elapsed().as_secs_f64();
    // Attackers still waiting for an answer are abandoned: what counts is what was answered.
    for a in &attack.tasks {
        a.abort();
    }
    let answered_n = attack.answered.load(Ordering::Relaxed);
    let acks = match tokio::time::timeout(Duration::from_secs(70), legit).await {
        Ok(Ok(r)) => r,
        _ => Acks {
            first: vec!["the warehouse loop did not finish".into()],
            ..Acks::default()
        },
    };
    // Let requests in flight finish and the server go idle, then see what it kept.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let end = rss_kib(pid);
    let rss_end = end.map(|(r, _)| r);
    let hwm = hwm.max(end.map_or(0, |(_, h)| h));

    if let Some(at) = watch.killed_at {
        println!(
            "server killed at {:.1} s: RSS passed --rss-limit-mib {} MiB",
            at.as_secs_f64(),
            args.rss_limit_mib
        );
    }
    println!("peak RSS (VmHWM)        {}", mib(hwm.max(watch.peak_rss)));
    match rss_end {
        Some(r) => println!("RSS at end (idle, +3 s)  {}", mib(r)),
        None => println!("RSS at end (idle, +3 s)  - (server gone)"),
    }
    print_acks(acks);
    println!(
        "attacker requests        {} answered ({:.0}/s), {} failed in transport",
        answered_n,
        answered_n as f64 / attack_secs,
        attack.unanswered.load(Ordering::Relaxed)
    );
    drop(server);
    Ok(())
}

/// The attackers, and how many of their guesses were answered or failed in transport.
struct Attack {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    answered: Arc<AtomicU64>,
    unanswered: Arc<AtomicU64>,
}

/// Spawns the attackers, each guessing one way (login, admin token, Basic) until `stop`.
fn spawn_attackers(
    args: &Args,
    client: &reqwest::Client,
    base: &str,
    stop: &Arc<AtomicBool>,
) -> Attack {
    let answered = Arc::new(AtomicU64::new(0));
    let unanswered = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..args.attackers {
        let (client, base, stop) = (client.clone(), base.to_string(), stop.clone());
        let (answered, unanswered) = (answered.clone(), unanswered.clone());
        tasks.push(tokio::spawn(async move {
            let kind = [Guess::Login, Guess::AdminToken, Guess::Basic][i % 3];
            let user = if i % 2 == 0 {
                USER.to_string()
            } else {
                format!("guess{i}")
            };
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                match guess(&client, &base, kind, &user, &format!("guess-{i}-{n}")).await {
                    Ok(_) => answered.fetch_add(1, Ordering::Relaxed),
                    Err(_) => unanswered.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    Attack {
        tasks,
        answered,
        unanswered,
    }
}

/// How the server's memory went during the attack.
struct Watch {
    started: Instant,
    peak_rss: u64,
    /// When the RSS passed the limit, if it did.
    killed_at: Option<Duration>,
}

/// Samples the server's RSS for the attack's duration, stopping early when it passes the limit or
/// the server is gone.
async fn watch_rss(args: &Args, pid: u32, rss_idle: u64) -> Watch {
    let started = Instant::now();
    let mut peak_rss = rss_idle;
    let mut killed_at = None;
    while started.elapsed() < Duration::from_secs(args.secs) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Some((rss, _)) = rss_kib(pid) else { break };
        peak_rss = peak_rss.max(rss);
        if rss > args.rss_limit_mib * 1024 {
            killed_at = Some(started.elapsed());
            break;
        }
    }
    Watch {
        started,
        peak_rss,
        killed_at,
    }
}

fn print_acks(acks: Acks) {
    let Acks {
        latencies,
        failures,
        first,
        slowest,
    } = acks;
    println!(
        "warehouse acks           {} sent, {} failed; p50 {}, p99 {}, max {}",
        latencies.len(),
        failures,
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!(
        "slowest acks             {}",
        slowest
            .iter()
            .map(|(at, took)| format!("{} at {:.1} s", ms(*took), at.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for f in first {
        println!(
            "  warehouse failure: {}",
            f.chars().take(200).collect::<String>()
        );
    }
}
