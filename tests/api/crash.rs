//! Crash safety, measured on real processes: `wharf worker` processes killed with SIGKILL at random
//! moments while they drain a backlog of inventory and shipment messages, and several workers draining
//! one backlog at once. Afterwards every message must have been applied exactly once.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use wharf::db::schema::{imports, requests, shipments};

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

both_backends!(
    workers_killed_at_random_apply_everything_once,
    three_worker_processes_share_a_backlog
);

const ORDERS: usize = 20;
const INVENTORY_MESSAGES: i64 = 400;
const SKUS: i64 = 12;

/// A small xorshift generator: the seed is printed, so a failing run can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the backlog should leave behind: the newest (qty, seq) per SKU.
struct Expected {
    stock: HashMap<String, (i64, i64)>,
}

/// Queues orders' shipments (two per order, completing it) and inventory messages whose per-SKU
/// sequence ids arrive shuffled, some stale.
async fn build_backlog(app: &TestApp, rng: &mut Rng) -> Expected {
    for o in 0..ORDERS {
        let (status, body) = app
            .put_order(&format!("CR-{o}"), &[("SHIP-A", 2), ("SHIP-B", 2)])
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let s = app.login().await;
    let mut order: Vec<i64> = (1..=INVENTORY_MESSAGES).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut stock: HashMap<String, (i64, i64)> = HashMap::new();
    let mut shipment_seq = 10_000;
    for (n, m) in order.iter().enumerate() {
        let lines: Vec<(String, i64, i64)> = (0..6)
            .map(|k| (format!("CR-SKU-{}", (m + k) % SKUS), m * 10 + k, *m))
            .collect();
        for (sku, qty, seq) in &lines {
            let e = stock.entry(sku.clone()).or_insert((0, 0));
            if *seq > e.1 {
                *e = (*qty, *seq);
            }
        }
        let lines: Vec<(&str, i64, i64)> =
            lines.iter().map(|(a, b, c)| (a.as_str(), *b, *c)).collect();
        assert_eq!(app.send_inventory(&s, *m, &lines).await.0, 200);
        if n % 3 == 0 && (shipment_seq - 10_000) < (ORDERS * 2) as i64 {
            let o = (shipment_seq - 10_000) / 2;
            app.send_shipment(
                &s,
                &format!("CR-{o}"),
                shipment_seq,
                &[("SHIP-A", 1), ("SHIP-B", 1)],
                &format!("T{shipment_seq}"),
            )
            .await;
            shipment_seq += 1;
        }
    }
    while (shipment_seq - 10_000) < (ORDERS * 2) as i64 {
        let o = (shipment_seq - 10_000) / 2;
        app.send_shipment(
            &s,
            &format!("CR-{o}"),
            shipment_seq,
            &[("SHIP-A", 1), ("SHIP-B", 1)],
            "",
        )
        .await;
        shipment_seq += 1;
    }
    Expected { stock }
}

fn spawn_worker(db_url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("worker")
        .env("DATABASE_URL", db_url)
        .env("WHARF_WORKER__LEASE_SECS", "2")
        .env("WHARF_WORKER__BATCH_SIZE", "2")
        .env("WHARF_WORKER__POLL_INTERVAL_MS", "50")
        .env("WHARF_WORKER__BACKOFF_BASE_SECS", "1")
        .env("WHARF_WORKER__CONCURRENCY", "1")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wharf worker")
}

/// Waits until nothing is queued or leased, or panics after a minute.
async fn wait_until_drained(app: &TestApp) {
    let started = Instant::now();
    loop {
        let depth = app.queue_depth().await;
        if depth.iter().all(|(state, _)| state == "processed") {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "backlog not drained: {depth:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every request applied exactly once, with the effects a user can see.
async fn check_exactly_once(app: &TestApp, expected: &Expected) {
    let requests_n = (INVENTORY_MESSAGES + (ORDERS * 2) as i64) as usize;
    assert_eq!(
        app.queue_depth().await,
        vec![("processed".to_string(), requests_n as i64)]
    );
    let (imports_n, shipments_n) = app
        .with_conn(|c| {
            let i: i64 = imports::table.count().get_result(c).unwrap();
            let s: i64 = shipments::table.count().get_result(c).unwrap();
            let attempts: Vec<i32> = requests::table.select(requests::attempts).load(c).unwrap();
            assert!(attempts.iter().all(|a| *a >= 1));
            (i as usize, s as usize)
        })
        .await;
    assert_eq!(imports_n, requests_n, "one import report per request");
    assert_eq!(shipments_n, ORDERS * 2, "no shipment lost or doubled");
    for (sku, want) in &expected.stock {
        assert_eq!(app.stock_of(sku).await, Some(*want), "{sku}");
    }
    for o in 0..ORDERS {
        let (_, order) = app
            .api(reqwest::Method::GET, &format!("/orders/CR-{o}"), None)
            .await;
        assert_eq!(order["status"], "complete", "{order}");
        assert_eq!(order["lines"][0]["qty_shipped"], 2);
        assert_eq!(order["lines"][1]["qty_shipped"], 2);
    }
    // The feed: contiguous ids, nothing repeated, one event per effect.
    let feed = app.feed().await;
    let ids: Vec<i64> = feed.iter().map(|e| e.0).collect();
    assert_eq!(
        ids,
        (1..=feed.len() as i64).collect::<Vec<_>>(),
        "feed has gaps or repeats"
    );
    let count = |kind: &str| feed.iter().filter(|e| e.1 == kind).count();
    assert_eq!(count("shipment.created"), ORDERS * 2);
    assert_eq!(count("order.completed"), ORDERS);
    let mut shipped: Vec<i64> = feed
        .iter()
        .filter(|e| e.1 == "shipment.created")
        .map(|e| e.2["message_seq_id"].as_i64().unwrap())
        .collect();
    shipped.sort();
    shipped.dedup();
    assert_eq!(shipped.len(), ORDERS * 2);
    let successes = app
        .with_conn(|c| {
            use wharf::db::schema::import_lines;
            import_lines::table
                .inner_join(imports::table)
                .filter(imports::operation.eq(wharf::queue::OP_INVENTORY))
                .filter(import_lines::result.eq("Success"))
                .count()
                .get_result::<i64>(c)
                .unwrap()
        })
        .await;
    assert_eq!(count("stock.changed") as i64, successes);
}

async fn workers_killed_at_random_apply_everything_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed);
    let expected = build_backlog(&app, &mut rng).await;

    // SIGKILL the worker at random moments while it holds a lease (between claiming requests and
    // finishing them), six times, each time starting a new one.
    let mut worker = spawn_worker(&app.db.url);
    let mut killed_while_busy = 0;
    while killed_while_busy < 6 {
        tokio::time::sleep(Duration::from_millis(rng.below(100))).await;
        let owner = format!("%:{}:%", worker.id());
        let started = Instant::now();
        let holding = loop {
            let (held, left) = app
                .with_conn({
                    let owner = owner.clone();
                    move |c| {
                        let held = requests::table
                            .filter(requests::state.eq("processing"))
                            .filter(requests::lease_owner.like(owner))
                            .count()
                            .get_result::<i64>(c)
                            .unwrap();
                        let left = requests::table
                            .filter(requests::state.ne("processed"))
                            .count()
                            .get_result::<i64>(c)
                            .unwrap();
                        (held, left)
                    }
                })
                .await;
            if held > 0 || left == 0 || started.elapsed() > Duration::from_secs(5) {
                break held > 0;
            }
        };
        if !holding {
            break;
        }
        eprintln!(
            "kill {killed_while_busy}: queue {:?}",
            app.queue_depth().await
        );
        worker.kill().expect("SIGKILL the worker");
        worker.wait().unwrap();
        killed_while_busy += 1;
        worker = spawn_worker(&app.db.url);
    }
    wait_until_drained(&app).await;
    worker.kill().unwrap();
    worker.wait().unwrap();
    // The kills must have landed while the worker held work, or this test proves nothing.
    assert!(
        killed_while_busy >= 3,
        "only {killed_while_busy} kills hit a worker holding a lease"
    );
    let taken_over = app
        .with_conn(|c| {
            requests::table
                .filter(requests::attempts.gt(1))
                .count()
                .get_result::<i64>(c)
                .unwrap()
        })
        .await;
    eprintln!("{taken_over} requests were retried after a worker died holding them");
    check_exactly_once(&app, &expected).await;
}

async fn three_worker_processes_share_a_backlog(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut rng = Rng(0x9E3779B97F4A7C15);
    let expected = build_backlog(&app, &mut rng).await;
    let mut workers: Vec<Child> = (0..3).map(|_| spawn_worker(&app.db.url)).collect();
    wait_until_drained(&app).await;
    for w in &mut workers {
        w.kill().unwrap();
        w.wait().unwrap();
    }
    check_exactly_once(&app, &expected).await;
}
