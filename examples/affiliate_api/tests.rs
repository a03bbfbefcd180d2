//! Self-tests of the simulator: the checks a receiver makes that wharf, sending correctly, never
//! trips (a stale timestamp, a missing key, a replay), so they are seen to work here.

use super::*;
use wharf::channels::affiliate::sign::Signer;

const SECRET: &str = "whsec_c2ltdWxhdG9yIHNlbGYtdGVzdCBzZWNyZXQ=";

/// A client (reqwest is built without a default TLS provider: wharf installs one).
fn client() -> reqwest::Client {
    wharf::tls::install_crypto_provider();
    reqwest::Client::new()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// POSTs `body` to `path`, signed as message `id` at `ts` with `key`, with `idempotency` as its key.
async fn post(
    sim: &AffiliateSim,
    path: &str,
    body: &Value,
    (id, ts, key): (&str, i64, &[u8]),
    idempotency: Option<&str>,
) -> (u16, Value) {
    let body = body.to_string();
    let mut req = client()
        .post(format!("{}{path}", sim.base_url()))
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header(
            "webhook-signature",
            Signer::new(key).sign(id, ts, body.as_bytes()),
        )
        .body(body);
    if let Some(k) = idempotency {
        req = req.header("Idempotency-Key", k);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

fn key() -> Vec<u8> {
    STANDARD.decode(&SECRET["whsec_".len()..]).unwrap()
}

#[tokio::test]
async fn refuses_what_is_not_signed_by_its_secret_or_is_too_old() {
    let sim = AffiliateSim::start(SECRET).await;
    let body = json!({"status": "shipped", "sequence": 1});
    let (status, answer) = post(
        &sim,
        "/orders/A-1/status",
        &body,
        ("m1", now(), b"wrong"),
        Some("m1"),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        answer["message"].as_str().unwrap().contains("secret"),
        "{answer}"
    );
    let old = now() - TOLERANCE_SECS - 60;
    let (status, answer) = post(
        &sim,
        "/orders/A-1/status",
        &body,
        ("m2", old, &key()),
        Some("m2"),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        answer["message"].as_str().unwrap().contains("too old"),
        "{answer}"
    );
    let (status, answer) = post(
        &sim,
        "/orders/A-1/status",
        &body,
        ("m3", now(), &key()),
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key"),
        "{answer}"
    );
    assert!(sim.applied().is_empty());
    let signed: Vec<bool> = sim.requests().iter().map(|r| r.signed).collect();
    assert_eq!(signed, [false, false, true]);
    sim.stop().await;
}

#[tokio::test]
async fn applies_a_key_once_and_drops_older_sequences() {
    let sim = AffiliateSim::start(SECRET).await;
    let k = key();
    let two = json!({"status": "shipped", "sequence": 2});
    assert_eq!(
        post(
            &sim,
            "/orders/A%2F1/status",
            &two,
            ("k1", now(), &k),
            Some("k1")
        )
        .await
        .0,
        200
    );
    // The same key again: the first answer, nothing applied twice.
    assert_eq!(
        post(
            &sim,
            "/orders/A%2F1/status",
            &two,
            ("k1", now(), &k),
            Some("k1")
        )
        .await
        .0,
        200
    );
    let one = json!({"status": "processing", "sequence": 1});
    let (status, answer) = post(
        &sim,
        "/orders/A%2F1/status",
        &one,
        ("k2", now(), &k),
        Some("k2"),
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    let applied = sim.applied_to("A/1");
    assert_eq!(applied.len(), 1, "{applied:?}");
    assert_eq!(applied[0].sequence, 2);
    let replayed: Vec<bool> = sim.requests().iter().map(|r| r.replayed).collect();
    assert_eq!(replayed, [false, true, false]);
    sim.stop().await;
}

#[tokio::test]
async fn tickets_stay_pending_then_settle() {
    let sim = AffiliateSim::start(SECRET).await;
    sim.set_behaviour(Behaviour {
        tickets: Some(TicketPlan {
            pending_reads: 1,
            fail: None,
        }),
        ..Behaviour::default()
    });
    let k = key();
    let body = json!({"status": "canceled", "sequence": 1});
    let (status, answer) = post(
        &sim,
        "/orders/T-1/status",
        &body,
        ("t1", now(), &k),
        Some("t1"),
    )
    .await;
    assert_eq!(status, 202);
    let ticket = answer["ticket"].as_str().unwrap().to_string();
    let read = || async {
        let ts = now();
        let id = format!("read-{ts}");
        let resp = client()
            .get(format!("{}/tickets/{ticket}", sim.base_url()))
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", Signer::new(&k).sign(&id, ts, b""))
            .send()
            .await
            .unwrap();
        resp.json::<Value>().await.unwrap()["state"].clone()
    };
    assert_eq!(read().await, "pending");
    assert!(sim.applied().is_empty());
    assert_eq!(read().await, "done");
    assert_eq!(read().await, "done");
    assert_eq!(sim.applied_to("T-1").len(), 1);
    sim.stop().await;
}
