//! Wake-ups instead of polling: with every poll interval at 30 s, a stored inventory update is
//! applied and its `stock.changed` reaches a waiting feed long poll long before the interval — in
//! one process on both backends, and on PostgreSQL when the receiver, the worker and the feed reader
//! are different processes (LISTEN/NOTIFY).

use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, spawn_with_log, wait_for_line};

both_backends!(a_stored_request_wakes_the_worker_and_the_feed_in_one_process);

/// Every poll interval in these tests: a wake-up that got lost would show as a 30 s delay.
const POLL_MS: u64 = 30_000;
/// What "at once" must beat: far below the interval (so polling cannot pass), far above the few
/// milliseconds a wake-up takes (so a loaded machine cannot fail it).
const AT_ONCE: Duration = Duration::from_secs(10);

/// Sends inventory updates `rounds` (messageSeqIds) one at a time, each while a long poll on
/// `feed_base` waits, and returns the delays from each acknowledgement to the `stock.changed` the
/// poll answered with.
async fn ack_to_feed(
    app: &TestApp,
    feed_base: &str,
    rounds: std::ops::RangeInclusive<i64>,
) -> Vec<Duration> {
    let session = app.login().await;
    let mut delays = Vec::new();
    for round in rounds {
        let (status, head) = app.api(reqwest::Method::GET, "/feed/head", None).await;
        assert_eq!(status, 200, "{head}");
        let after = head["head"].as_i64().unwrap();
        let poll = app
            .client
            .get(format!("{feed_base}/api/v1/feed?after={after}&wait=60"))
            .bearer_auth(&app.token)
            .send();
        let poll = tokio::spawn(async move {
            let resp = poll.await.expect("the long poll is answered");
            let answered = Instant::now();
            let page: serde_json::Value = resp.json().await.unwrap();
            (answered, page)
        });
        // Let the poll reach its wait (it would then wait the whole interval without a wake-up).
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!poll.is_finished(), "the poll answered before any event");
        let sku = format!("WAKE-{round}");
        let (status, body) = app
            .send_inventory(&session, round, &[(&sku, 7, round)])
            .await;
        let acked = Instant::now();
        assert_eq!(status, 200, "{body}");
        let (answered, page) = tokio::time::timeout(Duration::from_secs(60), poll)
            .await
            .expect("the long poll is answered within its wait")
            .unwrap();
        let events = page["events"].as_array().expect("events").clone();
        assert!(
            events
                .iter()
                .any(|e| e["type"] == "stock.changed" && e["data"]["sku"] == sku.as_str()),
            "round {round}: no stock.changed for {sku} in {page}"
        );
        delays.push(answered.saturating_duration_since(acked));
    }
    delays
}

fn assert_at_once(delays: &[Duration]) {
    for d in delays {
        assert!(
            *d < AT_ONCE,
            "acknowledgement to stock.changed took {d:?} with a {POLL_MS} ms poll interval: the \
             worker or the long poll was not woken ({delays:?})"
        );
    }
}

async fn a_stored_request_wakes_the_worker_and_the_feed_in_one_process(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.worker.in_serve = true;
        s.worker.poll_interval_ms = POLL_MS;
    })
    .await;
    let base = app.base.clone();
    let delays = ack_to_feed(&app, &base, 1..=3).await;
    assert_at_once(&delays);
    assert_eq!(app.queue_depth().await, vec![("processed".into(), 3)]);
}

/// A `wharf serve` or `wharf worker` process on the test's database, with its log line by line.
struct Process {
    child: Child,
    log: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Process {
    /// Starts `wharf <command>` with every poll interval at [`POLL_MS`] and waits until its wake-up
    /// listener is listening.
    fn start(command: &str, db_url: &str) -> Process {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.arg(command)
            .env("DATABASE_URL", db_url)
            .env("WHARF_LISTEN", "127.0.0.1:0")
            .env("WHARF_WORKER__POLL_INTERVAL_MS", POLL_MS.to_string())
            .env("WHARF_WORKER__IN_SERVE", "false")
            .env("WHARF_DB_POOL_SIZE", "3")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let (child, log) = spawn_with_log(&mut cmd);
        let mut p = Process {
            child,
            log,
            seen: Vec::new(),
        };
        p.wait_for("listening for wake-ups");
        p
    }

    /// The first log line containing `needle`, waiting up to 30 s.
    fn wait_for(&mut self, needle: &str) -> String {
        wait_for_line(&self.log, &mut self.seen, needle, Duration::from_secs(30))
    }

    /// `http://host:port` of a `wharf serve`.
    fn base(&mut self) -> String {
        let line = self.wait_for("wharf is listening");
        let addr = line
            .split("address=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        format!("http://{addr}")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PostgreSQL: the test's server (worker off) receives, a `wharf worker` process applies, and a
/// long poll on a `wharf serve` process (worker off) sees the event; then the same with the long
/// poll on the receiving server. Every wake-up crosses a process boundary.
mod requests_and_events_wake_other_processes {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let app = TestApp::spawn_with(Backend::Postgres, |s| {
            s.worker.poll_interval_ms = POLL_MS;
        })
        .await;
        let url = app.db.url.clone();
        let (_worker, mut reader) = tokio::task::spawn_blocking(move || {
            (
                Process::start("worker", &url),
                Process::start("serve", &url),
            )
        })
        .await
        .unwrap();
        let reader_base = reader.base();
        let mut delays = ack_to_feed(&app, &reader_base, 1..=2).await;
        let own_base = app.base.clone();
        delays.extend(ack_to_feed(&app, &own_base, 3..=4).await);
        assert_at_once(&delays);
        assert_eq!(app.queue_depth().await, vec![("processed".into(), 4)]);
    }
}
