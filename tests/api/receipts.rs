//! Group commit of receipts: messages arriving together share one transaction and each sender is
//! answered after its commit. Repeats and conflicts stay exact within a group and across groups; a
//! group whose transaction fails stores its messages one by one, so only the bad one fails; and a
//! server killed while groups are being stored has every message it acknowledged.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use wharf::db::DbConnection;
use wharf::db::schema::{request_lines, requests};
use wharf::messages::{InventoryLine, InventoryMessage, ShipmentLine, ShipmentMessage};
use wharf::queue::{Incoming, IncomingMessage, Receipt, ReceiveError, Sender};

use crate::both_backends;
use crate::helpers::{
    Backend, PASSWORD, TestApp, USER, element_text, inventory_envelope, login_envelope,
    spawn_with_log, wait_for_line,
};

both_backends!(
    senders_arriving_together_get_exact_answers,
    a_group_stores_every_message_but_the_one_whose_insert_fails,
    a_group_refuses_only_the_messages_whose_session_is_not_valid,
    a_server_killed_while_receiving_keeps_every_message_it_acknowledged
);

/// POSTs a SOAP body to `{base}/soap`: status and body, or the transport error.
async fn post(client: &reqwest::Client, base: &str, body: String) -> Result<(u16, String), String> {
    let resp = client
        .post(format!("{base}/soap"))
        .header("Content-Type", "text/xml; charset=utf-8")
        .header(
            "SOAPAction",
            "\"urn:Mage_Api_Model_Server_V2_HandlerAction\"",
        )
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await.map_err(|e| e.to_string())?))
}

/// (messageSeqId, receipts, conflict, lines stored) of every request, by id.
async fn stored_requests(app: &TestApp) -> Vec<(i64, i32, bool, i64)> {
    app.with_conn(|c| {
        let rows: Vec<(i64, i64, i32, bool, i32)> = requests::table
            .select((
                requests::id,
                requests::message_seq_id,
                requests::receipts,
                requests::conflict,
                requests::line_count,
            ))
            .order(requests::id)
            .load(c)
            .unwrap();
        rows.into_iter()
            .map(|(id, seq, receipts, conflict, line_count)| {
                let lines: i64 = request_lines::table
                    .filter(request_lines::request_id.eq(id))
                    .count()
                    .get_result(c)
                    .unwrap();
                assert_eq!(lines, i64::from(line_count), "request {id}: lines stored");
                (seq, receipts, conflict, lines)
            })
            .collect()
    })
    .await
}

/// 60 senders at once: 20 messages sent twice with the same body, 5 messageSeqIds sent twice with
/// different bodies, 10 sent once. Every sender is acknowledged; each body is stored once (its
/// repeat counted), each conflict queued and flagged, and the worker applies the stock.
async fn senders_arriving_together_get_exact_answers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let session = app.login().await;
    let mut bodies = Vec::new();
    for seq in 1..=20i64 {
        let sku = format!("GC-{seq}");
        let body = inventory_envelope(&session, seq, &[(&sku, seq, seq), ("GC-X", 1, seq)]);
        bodies.push((seq, body.clone()));
        bodies.push((seq, body));
    }
    for seq in 21..=25i64 {
        let sku = format!("GC-{seq}");
        bodies.push((seq, inventory_envelope(&session, seq, &[(&sku, 1, seq)])));
        bodies.push((seq, inventory_envelope(&session, seq, &[(&sku, 2, seq)])));
    }
    for seq in 26..=35i64 {
        let sku = format!("GC-{seq}");
        bodies.push((seq, inventory_envelope(&session, seq, &[(&sku, seq, seq)])));
    }
    let senders: Vec<_> = bodies
        .into_iter()
        .map(|(seq, body)| {
            let (client, base) = (app.client.clone(), app.base.clone());
            tokio::spawn(async move { (seq, post(&client, &base, body).await) })
        })
        .collect();
    for sender in senders {
        let (seq, answer) = sender.await.unwrap();
        let (status, body) = answer.unwrap();
        assert_eq!(status, 200, "{body}");
        let text = element_text(&body, "result");
        assert_eq!(
            text,
            Some(format!("Success - Message {seq} Received")),
            "{body}"
        );
    }
    let mut by_seq: HashMap<i64, Vec<(i32, bool)>> = HashMap::new();
    for (seq, receipts, conflict, _) in stored_requests(&app).await {
        by_seq.entry(seq).or_default().push((receipts, conflict));
    }
    assert_eq!(by_seq.len(), 35);
    for seq in 1..=20 {
        assert_eq!(
            by_seq[&seq],
            vec![(2, false)],
            "seq {seq}: one request, one repeat"
        );
    }
    for seq in 21..=25 {
        assert_eq!(
            by_seq[&seq],
            vec![(1, false), (1, true)],
            "seq {seq}: the second is a conflict"
        );
    }
    for seq in 26..=35 {
        assert_eq!(by_seq[&seq], vec![(1, false)], "seq {seq}");
    }
    app.drain().await;
    for seq in (1..=20).chain(26..=35) {
        assert_eq!(app.stock_of(&format!("GC-{seq}")).await, Some((seq, seq)));
    }
    assert_eq!(app.stock_of("GC-X").await, Some((1, 20)));
}

/// An inventory message from the test user with one line per SKU.
fn inventory(seq: i64, skus: &[&str], qty: i32) -> Incoming {
    inventory_from(Sender::User(USER.into()), seq, skus, qty)
}

/// An inventory message from `sender` with one line per SKU.
fn inventory_from(sender: Sender, seq: i64, skus: &[&str], qty: i32) -> Incoming {
    let body = format!(
        "<inventory seq=\"{seq}\" qty=\"{qty}\">{}</inventory>",
        skus.join(",")
    );
    let lines = skus
        .iter()
        .map(|sku| InventoryLine {
            sku: sku.to_string(),
            source: "default".into(),
            qty,
            seq,
            last_order_exported: None,
        })
        .collect();
    Incoming::from(
        sender,
        body.into_bytes(),
        IncomingMessage::Inventory(InventoryMessage {
            message_seq_id: seq,
            lines,
        }),
    )
}

fn shipment(seq: i64, order: &str) -> Incoming {
    let message = ShipmentMessage {
        message_seq_id: seq,
        order_increment_id: order.into(),
        lines: vec![ShipmentLine {
            sku: "GS-1".into(),
            source: "default".into(),
            qty: 1,
        }],
        comment: None,
        notify_customer: false,
        include_comment: false,
        courier_name: Some("DPD".into()),
        service_name: None,
        tracking_numbers: vec!["TRACK-1".into()],
        date_shipped: None,
    };
    Incoming::new(
        USER,
        format!("<shipment seq=\"{seq}\">{order}</shipment>").into_bytes(),
        IncomingMessage::Shipment(message),
    )
}

/// A trigger that refuses to store any line of SKU `POISON`, as a failing insert.
fn install_poison(c: &mut DbConnection) {
    let sql = match c {
        DbConnection::Sqlite(_) => {
            "CREATE TRIGGER poison BEFORE INSERT ON request_lines WHEN NEW.sku = 'POISON' \
             BEGIN SELECT RAISE(ABORT, 'poisoned line'); END;"
        }
        DbConnection::Postgresql(_) => {
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.sku = 'POISON' THEN RAISE EXCEPTION 'poisoned line'; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER poison BEFORE INSERT ON request_lines FOR EACH ROW EXECUTE FUNCTION poison();"
        }
    };
    c.batch_execute(sql).unwrap();
}

/// What a list of receipts says, without ids: the kind, or the failure.
fn kinds(receipts: &[wharf::queue::Received]) -> Vec<&'static str> {
    receipts
        .iter()
        .map(|r| match r {
            Ok((Receipt::Queued(_), _)) => "queued",
            Ok((Receipt::Repeat(_), _)) => "repeat",
            Ok((Receipt::Conflict(_), _)) => "conflict",
            Err(_) => "failed",
        })
        .collect()
}

/// A group holding two copies of one message, a conflict, a shipment and one message whose line
/// cannot be inserted: the group's transaction fails, its messages are stored one by one, and all
/// but the bad one are stored with the right receipts. A group without a bad message is stored as
/// one transaction with the same answers.
async fn a_group_stores_every_message_but_the_one_whose_insert_fails(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (failed, together) = app
        .with_conn(|c| {
            install_poison(c);
            let failed = wharf::queue::receive_group(
                c,
                vec![
                    inventory(1, &["GA-1", "GA-2"], 4),
                    inventory(1, &["GA-1", "GA-2"], 4),
                    inventory(2, &["GA-3", "POISON"], 4),
                    inventory(1, &["GA-1", "GA-2"], 9),
                    shipment(3, "GA-ORDER"),
                ],
            );
            let together = wharf::queue::receive_group(
                c,
                vec![
                    inventory(10, &["GB-1"], 1),
                    shipment(11, "GB-ORDER"),
                    inventory(10, &["GB-1"], 1),
                    inventory(10, &["GB-1"], 2),
                ],
            );
            (kinds(&failed), kinds(&together))
        })
        .await;
    assert_eq!(failed, ["queued", "repeat", "failed", "conflict", "queued"]);
    assert_eq!(together, ["queued", "queued", "repeat", "conflict"]);
    let stored = stored_requests(&app).await;
    let summary: Vec<(i64, i32, bool)> = stored.iter().map(|r| (r.0, r.1, r.2)).collect();
    assert_eq!(
        summary,
        [
            (1, 2, false),
            (1, 1, true),
            (3, 1, false),
            (10, 2, false),
            (11, 1, false),
            (10, 1, true)
        ]
    );
    app.expect_leftovers("the shipments wait for orders that do not exist");
}

/// Sessions are checked in the transaction that stores the group: a message whose session was
/// ended, or never existed, is refused and stores nothing, and the others of its group are stored
/// from the user their session names.
async fn a_group_refuses_only_the_messages_whose_session_is_not_valid(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (live, ended) = (app.login().await, app.login().await);
    let end = format!(
        "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:ns1=\"urn:Magento\">\
         <SOAP-ENV:Body><ns1:endSession><sessionId>{ended}</sessionId></ns1:endSession></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    );
    assert_eq!(app.post_soap(end).await.0, 200);
    let lifetimes = wharf::auth::Lifetimes {
        session_idle: chrono::TimeDelta::hours(1),
        max: chrono::TimeDelta::days(1),
    };
    let session = move |id: &str| Sender::Session(id.to_string(), lifetimes);
    let answers = app
        .with_conn(move |c| {
            wharf::queue::receive_group(
                c,
                vec![
                    inventory_from(session(&live), 1, &["GR-1"], 4),
                    inventory_from(session(&ended), 2, &["GR-2"], 4),
                    inventory_from(session("no-such-session"), 3, &["GR-3"], 4),
                    inventory_from(session(&live), 4, &["GR-4"], 4),
                ],
            )
        })
        .await;
    let refused = |r: &wharf::queue::Received| matches!(r, Err(ReceiveError::Refused(_)));
    assert_eq!(kinds(&answers), ["queued", "failed", "failed", "queued"]);
    assert!(refused(&answers[1]) && refused(&answers[2]), "{answers:?}");
    for answer in [&answers[0], &answers[3]] {
        assert!(
            matches!(answer, Ok((_, user)) if user == USER),
            "{answer:?}"
        );
    }
    let stored: Vec<i64> = stored_requests(&app).await.iter().map(|r| r.0).collect();
    assert_eq!(stored, [1, 4]);
    app.drain().await;
    assert_eq!(app.stock_of("GR-2").await, None);
    assert_eq!(app.stock_of("GR-4").await.map(|s| s.0), Some(4));
}

/// A `wharf serve` process (worker off) on the test's database and its address.
fn start_serve(db_url: &str) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.arg("serve")
        .env("DATABASE_URL", db_url)
        .env("WHARF_LISTEN", "127.0.0.1:0")
        .env("WHARF_WORKER__IN_SERVE", "false")
        .env("WHARF_DB_POOL_SIZE", "8")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let (child, log) = spawn_with_log(&mut cmd);
    let mut seen = Vec::new();
    let line = wait_for_line(
        &log,
        &mut seen,
        "wharf is listening",
        Duration::from_secs(30),
    );
    let addr = line
        .split("address=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    // Keep reading its log, so the pipe never fills.
    std::thread::spawn(move || while log.recv().is_ok() {});
    (child, format!("http://{addr}"))
}

/// Logs into the server at `base` as the test user.
async fn login(client: &reqwest::Client, base: &str) -> String {
    let (status, body) = post(client, base, login_envelope(USER, PASSWORD))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    element_text(&body, "loginReturn").expect("a session")
}

/// 16 senders send inventory updates as fast as they are answered to a `wharf serve` process, which
/// is killed (SIGKILL) while groups are being stored. Every messageSeqId it acknowledged is stored
/// whole, and the restarted server receives again.
async fn a_server_killed_while_receiving_keeps_every_message_it_acknowledged(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let url = app.db.url.clone();
    let (mut server, base) = tokio::task::spawn_blocking(move || start_serve(&url))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let session = login(&client, &base).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let senders: Vec<_> = (0..16i64)
        .map(|k| {
            let (client, base, session, acked) =
                (client.clone(), base.clone(), session.clone(), acked.clone());
            tokio::spawn(async move {
                for n in 1.. {
                    let seq = k * 1_000_000 + n;
                    let skus = [
                        format!("KS-{k}-A"),
                        format!("KS-{k}-B"),
                        format!("KS-{k}-C"),
                    ];
                    let lines: Vec<(&str, i64, i64)> =
                        skus.iter().map(|s| (s.as_str(), n, seq)).collect();
                    match post(&client, &base, inventory_envelope(&session, seq, &lines)).await {
                        Ok((200, _)) => acked.lock().unwrap().push(seq),
                        Ok((status, body)) => panic!("message {seq} refused ({status}): {body}"),
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    // Until a good number are acknowledged, then kill it in the middle of receiving.
    while acked.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    for sender in senders {
        sender.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let stored: HashMap<i64, i64> = stored_requests(&app)
        .await
        .into_iter()
        .map(|(seq, _, _, lines)| (seq, lines))
        .collect();
    let missing: Vec<i64> = acked
        .iter()
        .filter(|s| stored.get(s) != Some(&3))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored whole: {missing:?}"
    );
    let url = app.db.url.clone();
    let (mut again, base) = tokio::task::spawn_blocking(move || start_serve(&url))
        .await
        .unwrap();
    let session = login(&client, &base).await;
    let (status, body) = post(
        &client,
        &base,
        inventory_envelope(&session, 99, &[("KS-AFTER", 1, 99)]),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    again.kill().unwrap();
    again.wait().unwrap();
    app.expect_leftovers("the received messages are not applied here");
}
