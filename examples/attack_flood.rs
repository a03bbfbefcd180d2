//! Attack: anonymous clients flood `POST /soap` with junk while the warehouse sends some invalid
//! messages of its own. Prints how much the database grew and how many of the warehouse's refusals
//! were recorded.
//!
//! ```text
//! cargo build --release --examples
//! target/release/examples/attack_flood                                   # new build, SQLite
//! target/release/examples/attack_flood --wharf /tmp/wharf-before \
//!     --postgres-url postgres://postgres@127.0.0.1:5432/postgres         # old build, both backends
//! ```
//!
//! It spawns the given wharf binary (`wharf migrate`, `wharf users add`, `wharf serve`) over its own
//! temporary SQLite database, and over a fresh PostgreSQL database `wharf_flood_<random>` (created and
//! dropped through the admin URL) when `--postgres-url` is given. Only settings every version knows
//! are set, so the same run works against an older binary.

#[path = "common/mod.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

/// Floods wharf's SOAP endpoint with anonymous junk and measures what it stores.
#[derive(Debug, Parser)]
#[command(name = "attack_flood")]
struct Args {
    /// The wharf binary to attack.
    #[arg(long, default_value = "target/release/wharf")]
    wharf: String,
    /// Admin URL of a PostgreSQL server: also run against a fresh database there.
    #[arg(long)]
    postgres_url: Option<String>,
    /// Skip the SQLite run.
    #[arg(long)]
    skip_sqlite: bool,
    /// How long the flood lasts, in seconds.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// Anonymous clients posting junk at once.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Size of each junk body, in KiB.
    #[arg(long, default_value_t = 64)]
    body_kib: usize,
    /// The warehouse's own invalid messages per second (authenticated).
    #[arg(long, default_value_t = 5)]
    warehouse_rate: u64,
}

const USER: &str = "orderflow";
const PASSWORD: &str = "flood test password";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "attack_flood: {} anonymous clients × {} s, {} KiB bodies, against {}",
        args.clients, args.secs, args.body_kib, args.wharf
    );
    if !args.skip_sqlite {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("wharf.db");
        let url = format!("sqlite://{}", path.display());
        let size = || {
            let file = |suffix: &str| {
                std::fs::metadata(format!("{}{suffix}", path.display()))
                    .map(|m| m.len())
                    .unwrap_or(0)
            };
            Ok(file("") + file("-wal"))
        };
        run("SQLite (file + WAL)", &args, &url, dir.path(), &size).await?;
    }
    if let Some(admin) = &args.postgres_url {
        let name = format!("wharf_flood_{}", std::process::id());
        let mut conn = PgConnection::establish(admin).context("connecting to PostgreSQL")?;
        conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))?;
        conn.batch_execute(&format!("CREATE DATABASE {name}"))?;
        let (base, _) = admin
            .rsplit_once('/')
            .context("the admin URL has no database")?;
        let url = format!("{base}/{name}");
        let dir = tempfile::tempdir()?;
        let size_url = url.clone();
        let size = move || {
            let mut c = PgConnection::establish(&size_url)?;
            Ok(
                diesel::sql_query("SELECT pg_database_size(current_database()) AS n")
                    .get_result::<Count>(&mut c)?
                    .n as u64,
            )
        };
        let result = run(
            "PostgreSQL (pg_database_size)",
            &args,
            &url,
            dir.path(),
            &size,
        )
        .await;
        conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
        result?;
    }
    Ok(())
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Kills the server when the run ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wharf(args: &Args, url: &str) -> Command {
    let mut cmd = Command::new(&args.wharf);
    cmd.env("DATABASE_URL", url).env("RUST_LOG", "warn");
    cmd
}

async fn run(
    label: &str,
    args: &Args,
    url: &str,
    dir: &std::path::Path,
    size: &dyn Fn() -> anyhow::Result<u64>,
) -> anyhow::Result<()> {
    prepare_database(args, url)?;
    let log_path = dir.join("wharf.log");
    let (_server, base) = start_server(args, url, &log_path)?;
    let client = common::http_client()?;
    wait_for_health(&client, &base).await?;
    let endpoint = format!("{base}/soap");
    let session = common::login(&client, &endpoint, USER, PASSWORD).await?;
    let before = size()?;

    let deadline = Instant::now() + Duration::from_secs(args.secs);
    let (tasks, sent) = spawn_flood(args, &client, &endpoint, deadline);
    let warehouse = warehouse_invalid(args, &client, &endpoint, &session, deadline).await;
    for t in tasks {
        let _ = t.await;
    }
    // Let counts held in memory reach the database.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = size()?;
    let (recorded, rows) = count_rejections(url).await?;
    let log_bytes = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
    let sent = sent.load(Ordering::Relaxed);
    let mb = |b: u64| b as f64 / 1e6;
    println!("\n{label}:");
    println!(
        "  anonymous junk posted:        {sent} ({:.0}/s)",
        sent as f64 / args.secs as f64
    );
    println!(
        "  database growth:              {:.2} MB ({:.2} MB -> {:.2} MB)",
        mb(after.saturating_sub(before)),
        mb(before),
        mb(after)
    );
    println!("  rejection rows:               {rows}");
    println!(
        "  warehouse refusals recorded:  {recorded} of {} sent ({} answered with a fault)",
        warehouse.sent, warehouse.faults
    );
    println!("  server log written:           {:.2} MB", mb(log_bytes));
    Ok(())
}

/// Migrates the database and adds the warehouse's user.
fn prepare_database(args: &Args, url: &str) -> anyhow::Result<()> {
    let status = wharf(args, url)
        .arg("migrate")
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("wharf migrate failed");
    }
    let mut add = wharf(args, url)
        .args(["users", "add", USER, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    std::io::Write::write_all(&mut add.stdin.take().context("stdin")?, PASSWORD.as_bytes())?;
    if !add.wait()?.success() {
        bail!("wharf users add failed");
    }
    Ok(())
}

/// Starts `wharf serve` on a free port, its log in `log_path`; returns it with its base URL.
fn start_server(
    args: &Args,
    url: &str,
    log_path: &std::path::Path,
) -> anyhow::Result<(Server, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = std::fs::File::create(log_path)?;
    let server = Server(
        wharf(args, url)
            .arg("serve")
            .env("WHARF_LISTEN", format!("127.0.0.1:{port}"))
            .env("WHARF_WORKER__IN_SERVE", "false")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting wharf serve")?,
    );
    Ok((server, format!("http://127.0.0.1:{port}")))
}

async fn wait_for_health(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while client.get(format!("{base}/health")).send().await.is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("wharf did not answer /health within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Spawns the anonymous clients posting junk until `deadline`; returns them with the count of
/// bodies they got an answer to.
fn spawn_flood(
    args: &Args,
    client: &reqwest::Client,
    endpoint: &str,
    deadline: Instant,
) -> (Vec<tokio::task::JoinHandle<()>>, Arc<AtomicUsize>) {
    let junk = Arc::new(junk_bodies(args.body_kib * 1024));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..args.clients {
        let (client, endpoint, junk, sent) = (
            client.clone(),
            endpoint.to_string(),
            junk.clone(),
            sent.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = i;
            while Instant::now() < deadline {
                let body = junk[n % junk.len()].clone();
                n += 1;
                if common::post_soap(&client, &endpoint, body).await.is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    (tasks, sent)
}

/// What the warehouse's own invalid messages got.
struct WarehouseSent {
    sent: usize,
    faults: usize,
}

/// The warehouse, authenticated, sends invalid messages of its own meanwhile: a quantity that is
/// not a number, and an operation wharf does not know.
async fn warehouse_invalid(
    args: &Args,
    client: &reqwest::Client,
    endpoint: &str,
    session: &str,
    deadline: Instant,
) -> WarehouseSent {
    let mut warehouse_sent = 0usize;
    let mut warehouse_faults = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / args.warehouse_rate.max(1)));
    while Instant::now() < deadline {
        tick.tick().await;
        let seq = warehouse_sent as i64 + 1;
        let line = common::Line {
            sku: "FLOOD-1".into(),
            qty: 424242,
            seq,
        };
        let mut body = common::inventory_envelope(session, seq, &[line]);
        body = if seq % 2 == 0 {
            body.replace(">424242<", ">lots<")
        } else {
            body.replace(
                "orderflowInventoryMultiUpdate",
                "orderflowInventoryMultiDelete",
            )
        };
        warehouse_sent += 1;
        if let Ok((500, text)) = common::post_soap(client, endpoint, body).await
            && text.contains("faultstring")
        {
            warehouse_faults += 1;
        }
    }
    WarehouseSent {
        sent: warehouse_sent,
        faults: warehouse_faults,
    }
}

/// The warehouse's refusals recorded, and all rejection rows.
async fn count_rejections(url: &str) -> anyhow::Result<(i64, i64)> {
    tokio::task::spawn_blocking({
        let url = url.to_string();
        move || -> anyhow::Result<(i64, i64)> {
            let pool = wharf::db::connect(&url, 1)?;
            let mut c = pool.get()?;
            let recorded = diesel::sql_query(format!(
                "SELECT COUNT(*) AS n FROM rejections WHERE caller = '{USER}'"
            ))
            .get_result::<Count>(&mut c)?
            .n;
            let rows = diesel::sql_query("SELECT COUNT(*) AS n FROM rejections")
                .get_result::<Count>(&mut c)?
                .n;
            Ok((recorded, rows))
        }
    })
    .await?
}

/// Junk of about `size` bytes: text that is not XML, and well-formed SOAP under a session that does
/// not exist. The filler is random letters and digits, so PostgreSQL's TOAST compression cannot shrink
/// it away (an attacker would not send compressible junk either).
fn junk_bodies(size: usize) -> Vec<String> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut filler = |n: usize| -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ALPHABET[(state % ALPHABET.len() as u64) as usize] as char
            })
            .collect()
    };
    let mut bodies = Vec::new();
    for _ in 0..8 {
        bodies.push(format!("GET / HTTP/1.1 {}", filler(size)));
        let soap = common::inventory_envelope(
            "no-such-session-00000000000000000000",
            1,
            &[common::Line {
                sku: "JUNK".into(),
                qty: 1,
                seq: 1,
            }],
        )
        .replace(
            "<messageSeqId",
            &format!("<!-- {} --><messageSeqId", filler(size)),
        );
        bodies.push(soap);
    }
    bodies
}
