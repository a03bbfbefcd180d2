//! Slow and stalled clients cannot hold the server: bodies dripped too slowly or not whole by the
//! deadline are cut (408, connection closed, nothing stored), bodies over `soap.max_body` get a SOAP
//! fault and are recorded, a spent body budget is answered 503 with `Retry-After`, stalled
//! connections leave room for new clients; the warehouse's answers are read up to
//! `warehouse.max_answer`; `/ready` turns not ready while writes fail.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wharf::channels::warehouse::Exporter;
use wharf::channels::warehouse::exchange;

use crate::both_backends;
use crate::helpers::{
    Backend, PASSWORD, TestApp, USER, element_text, faultstring, inventory_envelope, order_json,
};
use crate::warehouse_api::{Behaviour, WarehouseSim};

both_backends!(
    a_body_dripped_slower_than_the_minimum_rate_is_cut_and_nothing_stored,
    a_body_not_whole_by_the_deadline_is_cut,
    an_oversized_soap_body_gets_a_fault_in_its_version_and_is_recorded,
    a_spent_body_budget_is_answered_503_with_retry_after,
    stalled_connections_leave_room_for_new_clients,
    a_warehouse_answer_over_the_cap_fails_the_batch_and_only_its_start_is_kept,
    ready_turns_not_ready_while_writes_fail_and_recovers,
);

/// An HTTP/1.1 request head for `path` announcing a body of `length` bytes.
fn head(method: &str, path: &str, headers: &[(&str, &str)], length: usize) -> String {
    let mut h =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n");
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    h
}

/// Connects and sends `head` and the first bytes of the body.
async fn open(app: &TestApp, head: &str, first: &[u8]) -> TcpStream {
    let addr = app.base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(first).await.unwrap();
    s
}

/// What came back on a raw connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
    /// The server closed the connection after the answer.
    closed: bool,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Reads one answer; `closed` tells whether the server then closed the connection (read until end of
/// stream, at most 40 s).
async fn read_answer(r: &mut (impl AsyncReadExt + Unpin)) -> Answer {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut closed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        match tokio::time::timeout_at(deadline, r.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
        closed,
    }
}

const SOAP11: (&str, &str) = ("Content-Type", "text/xml; charset=utf-8");

async fn a_body_dripped_slower_than_the_minimum_rate_is_cut_and_nothing_stored(backend: Backend) {
    // 200 bytes/s: at least 1 000 bytes in each 5 s window.
    let app = TestApp::spawn_with(backend, |s| s.http.body_min_rate = 200).await;
    let session = app.login().await;
    let soap = inventory_envelope(&session, 7, &[("DRIP-1", 5, 1)]);
    let order = order_json(&[("DRIP-1", 1)]).to_string();
    let token = format!("Bearer {}", app.token);
    let api_head = head(
        "PUT",
        "/api/v1/orders/DRIP-100",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &token),
        ],
        order.len(),
    );
    // Both bodies drip one byte a second, each on its own connection, and both are answered
    // while still arriving.
    let drip = |stream: TcpStream, body: Vec<u8>| async move {
        let (mut r, mut w) = stream.into_split();
        let writer = tokio::spawn(async move {
            for b in body.into_iter().skip(3) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if w.write_all(&[b]).await.is_err() {
                    break;
                }
            }
        });
        let answer = read_answer(&mut r).await;
        writer.abort();
        answer
    };
    let soap_conn = open(
        &app,
        &head("POST", "/soap", &[SOAP11], soap.len()),
        &soap.as_bytes()[..3],
    )
    .await;
    let api_conn = open(&app, &api_head, &order.as_bytes()[..3]).await;
    let (soap_answer, api_answer) = tokio::join!(
        drip(soap_conn, soap.clone().into_bytes()),
        drip(api_conn, order.clone().into_bytes())
    );

    assert_eq!(soap_answer.status, 408, "{soap_answer:?}");
    assert!(soap_answer.closed, "{soap_answer:?}");
    assert_eq!(soap_answer.header("connection").as_deref(), Some("close"));
    assert!(
        soap_answer
            .header("content-type")
            .unwrap()
            .starts_with("text/xml"),
        "{soap_answer:?}"
    );
    assert!(
        faultstring(&soap_answer.body).contains("slower than 200 bytes/s"),
        "{}",
        soap_answer.body
    );
    assert_eq!(api_answer.status, 408, "{api_answer:?}");
    assert!(api_answer.closed, "{api_answer:?}");
    let problem: serde_json::Value = serde_json::from_str(&api_answer.body).unwrap();
    assert_eq!(problem["status"], 408, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("slower than"),
        "{problem}"
    );

    assert!(app.queue_depth().await.is_empty());
    assert_eq!(app.stock_of("DRIP-1").await, None);
    let (status, _) = app.api(Method::GET, "/orders/DRIP-100", None).await;
    assert_eq!(status, 404);
}

async fn a_body_not_whole_by_the_deadline_is_cut(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.http.body_timeout_secs = 2;
        s.http.body_min_rate = 0;
    })
    .await;
    app.expect_leftovers(
        "it checks how request bodies are read; the requests it stores are not applied",
    );
    let session = app.login().await;
    let soap = inventory_envelope(&session, 8, &[("LATE-1", 5, 1)]);
    let half = soap.len() / 2;
    let mut conn = open(
        &app,
        &head("POST", "/soap", &[SOAP11], soap.len()),
        &soap.as_bytes()[..half],
    )
    .await;
    let answer = read_answer(&mut conn).await;
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(answer.closed, "{answer:?}");
    assert!(
        faultstring(&answer.body).contains("did not arrive within 2 s"),
        "{}",
        answer.body
    );
    // A chunked body that keeps coming, a chunk every 200 ms, is cut at the deadline too (actix
    // would otherwise drain the rest of a chunked body after the answer).
    let soap_chunked = "POST /soap HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n\
                        Transfer-Encoding: chunked\r\n\r\n"
        .to_string();
    let api_chunked = format!(
        "PUT /api/v1/orders/LATE-100 HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/json\r\nAuthorization: Bearer {}\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        app.token
    );
    for (head, first) in [(soap_chunked, "3\r\n<SO\r\n"), (api_chunked, "1\r\n{\r\n")] {
        let (mut r, mut w) = open(&app, &head, first.as_bytes()).await.into_split();
        let writer = tokio::spawn(async move {
            for _ in 0..150 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if w.write_all(b"1\r\n \r\n").await.is_err() {
                    break;
                }
            }
        });
        let answer = read_answer(&mut r).await;
        writer.abort();
        assert_eq!(answer.status, 408, "{answer:?}");
        assert!(
            answer.closed,
            "still open after the body kept coming: {answer:?}"
        );
    }
    let (status, _) = app.api(Method::GET, "/orders/LATE-100", None).await;
    assert_eq!(status, 404);

    assert!(app.queue_depth().await.is_empty());
    // The server still answers a whole message at once.
    let (status, body) = app.send_inventory(&session, 9, &[("LATE-1", 5, 1)]).await;
    assert_eq!(status, 200, "{body}");
}

async fn an_oversized_soap_body_gets_a_fault_in_its_version_and_is_recorded(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.soap.max_body = 4096).await;
    let session = app.login().await;
    let lines: Vec<(String, i64, i64)> = (0..200).map(|i| (format!("BIG-{i}"), 1, 1)).collect();
    let lines: Vec<(&str, i64, i64)> = lines.iter().map(|(s, q, n)| (s.as_str(), *q, *n)).collect();
    let soap11 = inventory_envelope(&session, 10, &lines);
    assert!(soap11.len() > 8192);
    let (status, ct, body) = app.post_soap_to("/soap", soap11.clone()).await;
    assert_eq!(status, 413, "{body}");
    assert!(ct.starts_with("text/xml"), "{ct}");
    assert!(
        body.contains("<faultcode>SOAP-ENV:Client</faultcode>"),
        "{body}"
    );
    assert!(
        faultstring(&body).contains("larger than the 4096 bytes"),
        "{body}"
    );

    // SOAP 1.2 (Magento 2), declared by the content type, gets a 1.2 fault.
    let soap12 = format!(
        "<env:Envelope xmlns:env=\"http://www.w3.org/2003/05/soap-envelope\"><env:Body>{}</env:Body></env:Envelope>",
        "<x/>".repeat(2000)
    );
    let resp = app
        .client
        .post(format!("{}/soap/default", app.base))
        .header("Content-Type", "application/soap+xml; charset=utf-8")
        .body(soap12)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/soap+xml"), "{ct}");
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("http://www.w3.org/2003/05/soap-envelope"),
        "{body}"
    );
    assert_eq!(
        element_text(&body, "Value").as_deref(),
        Some("env:Sender"),
        "{body}"
    );

    let rejections = app
        .with_conn(|c| {
            let r = wharf::queue::recent_rejections(c, 10).unwrap();
            let ids: Vec<i64> = r.iter().map(|r| r.id).collect();
            (r, wharf::queue::rejection_excerpts(c, &ids).unwrap())
        })
        .await;
    let (rejections, excerpts) = rejections;
    assert_eq!(rejections.len(), 2, "{rejections:?}");
    for r in &rejections {
        assert!(r.reason.contains("larger than the 4096 bytes"), "{r:?}");
    }
    // The record keeps the start of the body, credentials masked.
    let first = excerpts
        .iter()
        .find(|(id, _)| *id == rejections[1].id)
        .map(|(_, e)| e.clone())
        .unwrap();
    assert!(first.contains("BIG-0"), "{first}");
    assert!(!first.contains(&session), "session id stored in clear");
    assert!(app.queue_depth().await.is_empty());
}

async fn a_spent_body_budget_is_answered_503_with_retry_after(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.http.body_budget = 16 * 1024).await;
    app.expect_leftovers(
        "it checks how request bodies are read; the requests it stores are not applied",
    );
    let session = app.login().await;
    // One client holds 10 KiB of the 16 KiB budget with a body it has not finished sending.
    let held = format!("{}{}", "<!--", "x".repeat(12 * 1024));
    let mut holder = open(
        &app,
        &head("POST", "/soap", &[SOAP11], held.len()),
        &held.as_bytes()[..10 * 1024],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let lines: Vec<(String, i64, i64)> = (0..40).map(|i| (format!("BUSY-{i}"), 1, 1)).collect();
    let lines: Vec<(&str, i64, i64)> = lines.iter().map(|(s, q, n)| (s.as_str(), *q, *n)).collect();
    let soap = inventory_envelope(&session, 11, &lines);
    assert!(
        soap.len() > 8 * 1024 && soap.len() < 14 * 1024,
        "{}",
        soap.len()
    );
    let mut conn = open(
        &app,
        &head("POST", "/soap", &[SOAP11], soap.len()),
        soap.as_bytes(),
    )
    .await;
    let answer = read_answer(&mut conn).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(
        answer.header("retry-after").as_deref(),
        Some("5"),
        "{answer:?}"
    );
    assert!(
        answer
            .body
            .contains("<faultcode>SOAP-ENV:Server</faultcode>"),
        "{answer:?}"
    );
    assert!(
        faultstring(&answer.body).contains("too many request bodies"),
        "{answer:?}"
    );
    assert!(answer.closed);

    let order = serde_json::json!({"note": "y".repeat(9000)}).to_string();
    let token = format!("Bearer {}", app.token);
    let api_head = head(
        "PUT",
        "/api/v1/orders/BUSY-1",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &token),
        ],
        order.len(),
    );
    let mut conn = open(&app, &api_head, order.as_bytes()).await;
    let answer = read_answer(&mut conn).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(
        answer.header("retry-after").as_deref(),
        Some("5"),
        "{answer:?}"
    );
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("application/problem+json")
    );
    assert!(app.queue_depth().await.is_empty());

    // Once the holder is done, its share comes back and the message goes through.
    holder
        .write_all(&held.as_bytes()[10 * 1024..])
        .await
        .unwrap();
    let answer = read_answer(&mut holder).await;
    assert_eq!(
        answer.status, 500,
        "an unterminated comment is a fault: {answer:?}"
    );
    let (status, body) = app.post_soap(soap).await;
    assert_eq!(status, 200, "{body}");
}

async fn stalled_connections_leave_room_for_new_clients(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.expect_leftovers(
        "it checks how request bodies are read; the requests it stores are not applied",
    );
    let soap_head = head("POST", "/soap", &[SOAP11], 4096);
    let mut stalled = Vec::new();
    for _ in 0..200 {
        stalled.push(open(&app, &soap_head, b"<s:").await);
    }
    // A new warehouse client is served while all of them wait.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let health = client
        .get(format!("{}/health", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let session = app.login_as(USER, PASSWORD).await.unwrap();
    let (status, body) = app.send_inventory(&session, 12, &[("NEW-1", 3, 1)]).await;
    assert_eq!(status, 200, "{body}");
    // And the stalled ones are cut once their first rate window passes.
    let answer = read_answer(&mut stalled[0]).await;
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(answer.closed);
    assert_eq!(app.queue_depth().await, vec![("queued".to_string(), 1)]);
}

async fn a_warehouse_answer_over_the_cap_fails_the_batch_and_only_its_start_is_kept(
    backend: Backend,
) {
    let sim = WarehouseSim::start("wharf", "wms secret").await;
    let endpoint = sim.endpoint();
    let app = TestApp::spawn_with(backend, move |s| {
        let w = &mut s.warehouse;
        w.endpoint = endpoint;
        w.username = "wharf".into();
        w.password = "wms secret".into();
        w.organisation = "ACME".into();
        w.channel = "web".into();
        w.timeout_secs = 10;
        w.max_answer = 64 * 1024;
        w.orders.enabled = true;
        w.orders.schedule = "0 0 1 1 *".into();
        w.orders.backoff_base_secs = 0;
    })
    .await;
    app.put_order("HUGE-1", &[("A", 1)]).await;
    sim.set_behaviour(Behaviour {
        huge_answer: Some(4 * 1024 * 1024),
        ..Behaviour::default()
    });
    let exporter = Exporter::new(app.pool.clone(), app.settings.clone()).unwrap();
    let outcome = exporter.export_orders().await.unwrap();
    assert_eq!((outcome.items, outcome.not_sent), (1, 1), "{outcome:?}");

    let (status, order) = app.api(Method::GET, "/orders/HUGE-1", None).await;
    assert_eq!(status, 200);
    let last_error = order["export"]["last_error"].as_str().unwrap_or_default();
    assert!(last_error.contains("answer too large"), "{order}");
    let (summary, response) = app
        .with_conn(|c| {
            let s = exchange::recent_exports(c, 1).unwrap().remove(0);
            let (_, _, _, response) = exchange::export_detail(c, s.id).unwrap().unwrap();
            (s, response.unwrap_or_default())
        })
        .await;
    assert_eq!(summary.outcome, "bad_answer", "{summary:?}");
    assert!(summary.error.unwrap().contains("answer too large"));
    assert!(response.starts_with("<?xml"), "{}", &response[..100]);
    assert!(
        response.len() <= 64 * 1024,
        "{} bytes stored",
        response.len()
    );

    // An answer under the cap is read and settles the order.
    sim.set_behaviour(Behaviour {
        huge_answer: Some(32 * 1024),
        ..Behaviour::default()
    });
    exporter.export_orders().await.unwrap();
    let (_, order) = app.api(Method::GET, "/orders/HUGE-1", None).await;
    assert_eq!(order["export"]["status"], "exported", "{order}");
    sim.stop().await;
}

/// Makes every write of requests and of the feed fail, as a full disk would. A live database
/// cannot be made read-only under open connections in a way both backends share (SQLite keeps its
/// file open; PostgreSQL's `default_transaction_read_only` reaches new sessions only), so
/// triggers refuse the writes.
fn refuse_writes(conn: &mut wharf::db::DbConnection, refuse: bool) {
    let sql = match (conn, refuse) {
        (wharf::db::DbConnection::Sqlite(c), true) => {
            c.batch_execute(
                "CREATE TRIGGER full_requests BEFORE INSERT ON requests \
                 BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END; \
                 CREATE TRIGGER full_feed BEFORE UPDATE ON ready_probe \
                 BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
            )
        }
        (wharf::db::DbConnection::Sqlite(c), false) => {
            c.batch_execute("DROP TRIGGER full_requests; DROP TRIGGER full_feed;")
        }
        (wharf::db::DbConnection::Postgresql(c), true) => c.batch_execute(
            "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = '53100'; \
             END $$; \
             CREATE TRIGGER full_requests BEFORE INSERT ON requests FOR EACH ROW EXECUTE FUNCTION disk_full(); \
             CREATE TRIGGER full_feed BEFORE UPDATE ON ready_probe FOR EACH ROW EXECUTE FUNCTION disk_full();",
        ),
        (wharf::db::DbConnection::Postgresql(c), false) => {
            c.batch_execute("DROP FUNCTION disk_full() CASCADE;")
        }
    };
    sql.expect("triggers");
}

async fn ready_turns_not_ready_while_writes_fail_and_recovers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.expect_leftovers(
        "it checks /ready while writes fail; the request stored on recovery is not applied",
    );
    let session = app.login().await;
    let ready = || async {
        let resp = app
            .client
            .get(format!("{}/ready", app.base))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<serde_json::Value>().await.unwrap())
    };
    assert_eq!(ready().await.0, 200);

    app.with_conn(|c| refuse_writes(c, true)).await;
    let (status, body) = app.send_inventory(&session, 13, &[("FULL-1", 1, 1)]).await;
    assert_eq!(status, 500, "{body}");
    let (status, why) = ready().await;
    assert_eq!(status, 503, "{why}");
    assert_eq!(why["reason"], "database writes fail", "{why}");
    // Still not ready on the next poll, for as long as writes fail.
    assert_eq!(ready().await.0, 503);

    app.with_conn(|c| refuse_writes(c, false)).await;
    let (status, why) = ready().await;
    assert_eq!(status, 200, "{why}");
    let (status, body) = app.send_inventory(&session, 13, &[("FULL-1", 1, 1)]).await;
    assert_eq!(status, 200, "{body}");
}
