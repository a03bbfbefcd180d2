//! Stopping, measured on the real binary: `wharf serve` with an open feed long poll and the worker
//! inside it, stopped by SIGTERM and by SIGINT; an export hung on the warehouse that the shutdown
//! deadline cuts short; the access log.

use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, spawn_with_log, wait_for_line};
use crate::warehouse_api::{Behaviour, WarehouseSim};

both_backends!(
    a_stop_signal_answers_long_polls_at_once_and_exits_zero,
    the_shutdown_deadline_cuts_a_hung_export_short,
);

/// A `wharf serve` process and its log, line by line.
struct Server {
    child: Child,
    log: mpsc::Receiver<String>,
    seen: Vec<String>,
    base: String,
}

impl Server {
    /// Starts `wharf serve` on a free port against `db_url` and waits until it listens.
    fn start(db_url: &str, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.arg("serve")
            .env("DATABASE_URL", db_url)
            .env("WHARF_LISTEN", "127.0.0.1:0")
            .env("WHARF_WORKER__POLL_INTERVAL_MS", "50")
            // The PostgreSQL server is shared by every test running at once.
            .env("WHARF_DB_POOL_SIZE", "4")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (child, log) = spawn_with_log(&mut cmd);
        let mut server = Server {
            child,
            log,
            seen: Vec::new(),
            base: String::new(),
        };
        let line = server.wait_for("wharf is listening", Duration::from_secs(30));
        let addr = line
            .split("address=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        server.base = format!("http://{addr}");
        server
    }

    /// The first log line containing `needle`, waiting up to `limit`.
    fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        wait_for_line(&self.log, &mut self.seen, needle, limit)
    }

    fn signal(&self, name: &str) {
        // The shell's own `kill`, so the test needs no procps.
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{name} {}", self.child.id()))
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit (up to `limit`) and returns its exit code and the whole log.
    fn exit(mut self, limit: Duration) -> (Option<i32>, String) {
        let until = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                panic!(
                    "wharf serve did not exit within {limit:?}:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader thread ends with the pipe.
        while let Ok(line) = self.log.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        (status.code(), self.seen.join("\n"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn a_stop_signal_answers_long_polls_at_once_and_exits_zero(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for signal in ["TERM", "INT"] {
        let url = app.db.url.clone();
        let mut server = tokio::task::spawn_blocking(move || Server::start(&url, &[]))
            .await
            .unwrap();
        server.wait_for("worker started", Duration::from_secs(10));
        // A long poll that would wait a minute for an event that never comes.
        let poll = app
            .client
            .get(format!("{}/api/v1/feed?after=0&wait=60", server.base))
            .bearer_auth(&app.token)
            .send();
        let poll = tokio::spawn(async move {
            let resp = poll.await.expect("the long poll is answered");
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!poll.is_finished(), "the poll did not wait");
        let signalled = Instant::now();
        server.signal(signal);
        let (status, page) = tokio::time::timeout(Duration::from_secs(2), poll)
            .await
            .unwrap_or_else(|_| panic!("SIG{signal}: the open long poll was not answered at once"))
            .unwrap();
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["events"], serde_json::json!([]), "{page}");
        assert_eq!(page["last_id"], 0, "{page}");
        let (code, log) = tokio::task::spawn_blocking(move || server.exit(Duration::from_secs(15)))
            .await
            .unwrap();
        let took = signalled.elapsed();
        assert_eq!(code, Some(0), "SIG{signal}:\n{log}");
        assert!(
            took < Duration::from_secs(10),
            "SIG{signal}: took {took:?}\n{log}"
        );
        assert!(
            log.contains(&format!("signal=\"SIG{signal}\""))
                || log.contains(&format!("signal=SIG{signal}")),
            "{log}"
        );
        for needle in ["stopping", "worker stopped", "wharf stopped"] {
            assert!(log.contains(needle), "SIG{signal}: no {needle:?} in\n{log}");
        }
        // The access log: client address, method and path, status; never the query string.
        assert!(
            log.lines()
                .any(|l| l.contains("127.0.0.1 \"GET /api/v1/feed\" 200 ")),
            "{log}"
        );
        assert!(!log.contains("wait=60"), "{log}");
        assert!(!log.contains('\u{1b}'), "colour codes in a piped log");
    }
}

async fn the_shutdown_deadline_cuts_a_hung_export_short(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.expect_leftovers("the export cut short keeps its lease until it expires");
    let (status, body) = app.put_order("HANG-1", &[("SKU-1", 1)]).await;
    assert_eq!(status, 201, "{body}");
    let sim = WarehouseSim::start("wharf", "wms secret").await;
    sim.set_behaviour(Behaviour {
        hang: Some(Duration::from_secs(60)),
        ..Behaviour::default()
    });
    let url = app.db.url.clone();
    let endpoint = sim.endpoint();
    let mut server = tokio::task::spawn_blocking(move || {
        Server::start(
            &url,
            &[
                ("WHARF_SHUTDOWN_DEADLINE_SECS", "3"),
                ("WHARF_WAREHOUSE__ENDPOINT", &endpoint),
                ("WHARF_WAREHOUSE__USERNAME", "wharf"),
                ("WHARF_WAREHOUSE__PASSWORD", "wms secret"),
                ("WHARF_WAREHOUSE__ORGANISATION", "ACME"),
                ("WHARF_WAREHOUSE__CHANNEL", "web"),
                ("WHARF_WAREHOUSE__TIMEOUT_SECS", "120"),
                ("WHARF_WAREHOUSE__ORDERS__ENABLED", "true"),
                ("WHARF_WAREHOUSE__ORDERS__SCHEDULE", "* * * * * *"),
            ],
        )
    })
    .await
    .unwrap();
    server.wait_for("exporter started", Duration::from_secs(10));
    // Wait until the export is on the wire (the simulator records it, then holds its answer).
    let until = Instant::now() + Duration::from_secs(10);
    while sim.requests().is_empty() {
        assert!(Instant::now() < until, "nothing was exported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let signalled = Instant::now();
    server.signal("TERM");
    let (code, log) = tokio::task::spawn_blocking(move || server.exit(Duration::from_secs(20)))
        .await
        .unwrap();
    let took = signalled.elapsed();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "took {took:?} with a 3 s deadline\n{log}"
    );
    assert!(
        log.contains("the exporter did not finish its run before the shutdown deadline"),
        "{log}"
    );
    sim.stop().await;
}
