//! The test harness: a real wharf server on 127.0.0.1 port 0 over a fresh database per test (a SQLite
//! file in a temp dir, or a new PostgreSQL database under `TEST_DATABASE_URL`), with one helper per
//! endpoint and a way to run the worker until the queue is empty.

use std::sync::Arc;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;
use wharf::Settings;
use wharf::db::{self, Pool};
use wharf::worker::Worker;

/// The API user every test app has.
pub const USER: &str = "orderflow";
/// Its password.
pub const PASSWORD: &str = "correct horse battery";

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn(Backend)` as two tests, `<name>::sqlite` and `<name>::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    )*};
}

/// The PostgreSQL server tests create their databases on. Defaults to the local one, so a run without
/// `TEST_DATABASE_URL` fails loudly instead of silently skipping PostgreSQL.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Work a test must not leave behind: per table, the rows that are still queued or leased. Checked
/// when the test's database is dropped (see [`TestDb::leftovers`]); a new queue adds its line here.
/// A table the database does not have is skipped, so a line may come before its migration.
pub const LEFTOVERS: &[(&str, &str)] = &[
    (
        "requests",
        "state IN ('queued', 'processing') OR lease_owner IS NOT NULL",
    ),
    // An outbound task left mid-send. (Pending tasks are not counted: every stored order has one
    // from the start, waiting until it is exportable, and most tests run with exports off.)
    ("outbound_tasks", "lease_owner IS NOT NULL"),
    // An order file or a shipment file a file channel did not finish.
    (
        "file_exchanges",
        "state IN ('writing', 'uploaded', 'claimed')",
    ),
];

/// A fresh, empty database for one test; dropped with it, after checking that the test left
/// nothing queued or leased (unless it said so with [`TestDb::expect_leftovers`]).
pub struct TestDb {
    pub url: String,
    pg: Option<(String, String)>,
    /// Why this test leaves work queued or leased on purpose, when it does.
    leftovers_expected: std::sync::Mutex<Option<&'static str>>,
    dir: tempfile::TempDir,
}

impl TestDb {
    pub fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => TestDb {
                url: format!("sqlite://{}", dir.path().join("wharf.db").display()),
                pg: None,
                leftovers_expected: std::sync::Mutex::new(None),
                dir,
            },
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("wharf_test_{}", &wharf::auth::random_secret()[..16]);
                let mut conn = PgConnection::establish(&admin).unwrap_or_else(|e| {
                    panic!(
                        "cannot reach PostgreSQL at {admin} ({e}); start it or set TEST_DATABASE_URL"
                    )
                });
                conn.batch_execute(&format!("CREATE DATABASE {name}"))
                    .expect("create test database");
                let (base, _) = admin.rsplit_once('/').expect("database URL has a path");
                TestDb {
                    url: format!("{base}/{name}"),
                    pg: Some((admin, name)),
                    leftovers_expected: std::sync::Mutex::new(None),
                    dir,
                }
            }
        }
    }

    /// Says that this test leaves work queued or leased on purpose (it tests how messages are
    /// received, not applied; a shipment waits for an order it never creates), and why; the check
    /// at the end of the test is then skipped.
    pub fn expect_leftovers(&self, why: &'static str) {
        *self.leftovers_expected.lock().unwrap() = Some(why);
    }

    /// What this database holds of [`LEFTOVERS`]: one line per table with such rows. Tables the
    /// database does not have (migrations never ran) hold nothing.
    pub fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        for (table, condition) in LEFTOVERS {
            let rows = if self.pg.is_some() {
                let mut conn = PgConnection::establish(&self.url).expect("test database");
                let exists = format!(
                    "SELECT COUNT(*) AS n FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_name = '{table}'"
                );
                count_in(&mut conn, &exists, table, condition)
            } else {
                let path = self.dir.path().join("wharf.db");
                if !path.exists() {
                    continue;
                }
                let path = path.to_str().expect("UTF-8 temp path");
                let mut conn = SqliteConnection::establish(path).expect("test database");
                let exists = format!(
                    "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = '{table}'"
                );
                count_in(&mut conn, &exists, table, condition)
            };
            if rows > 0 {
                found.push(format!("{rows} row(s) of {table} where {condition}"));
            }
        }
        found
    }

    /// Panics, naming them, when the test left work queued or leased without saying so.
    fn check_leftovers(&self) {
        if self.leftovers_expected.lock().unwrap().is_some() {
            return;
        }
        let found = self.leftovers();
        assert!(
            found.is_empty(),
            "the test left work queued or leased (drain it, or call \
             expect_leftovers(\"why\") if that is its point):\n{}",
            found.join("\n")
        );
    }
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// The rows of `table` matching `condition`, or 0 when `exists` counts no such table.
fn count_in<C>(conn: &mut C, exists: &str, table: &str, condition: &str) -> i64
where
    C: diesel::Connection,
    for<'a> diesel::query_builder::SqlQuery: diesel::query_dsl::LoadQuery<'a, C, Count>,
{
    use diesel::RunQueryDsl;
    let count = |conn: &mut C, sql: &str| {
        diesel::sql_query(sql)
            .get_result::<Count>(conn)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .n
    };
    if count(conn, exists) == 0 {
        return 0;
    }
    count(
        conn,
        &format!("SELECT COUNT(*) AS n FROM {table} WHERE {condition}"),
    )
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // A test that already failed keeps its own message (a second panic would abort).
        if !std::thread::panicking() {
            self.check_leftovers();
        }
        if let Some((admin, name)) = &self.pg
            && let Ok(mut conn) = PgConnection::establish(admin)
        {
            let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

crate::both_backends!(leftovers_are_found_until_drained);

/// The end-of-test check sees a request left queued, and nothing once the worker applied it.
async fn leftovers_are_found_until_drained(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(app.db.leftovers(), Vec::<String>::new());
    let session = app.login().await;
    let (status, body) = app.send_inventory(&session, 1, &[("SKU-1", 5, 1)]).await;
    assert_eq!(status, 200, "{body}");
    let left = app.db.leftovers();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].contains("of requests where"), "{left:?}");
    assert_eq!(app.drain().await, 1);
    assert_eq!(app.db.leftovers(), Vec::<String>::new());
}

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    pub base: String,
    pub pool: Pool,
    pub settings: Arc<Settings>,
    pub client: reqwest::Client,
    /// A storefront API token.
    pub token: String,
    pub db: TestDb,
}

/// Settings for tests: port 0, worker not running inside the server (tests drive it), small pool.
pub fn test_settings(url: &str) -> Settings {
    let mut s = Settings {
        database_url: url.to_string(),
        listen: "127.0.0.1:0".into(),
        db_pool_size: 6,
        ..Settings::default()
    };
    s.worker.in_serve = false;
    // The tests reach the console over plain HTTP on loopback.
    s.console.insecure_cookies = true;
    s
}

impl TestApp {
    /// Says that this test leaves work queued or leased on purpose, and why (see
    /// [`TestDb::expect_leftovers`]).
    pub fn expect_leftovers(&self, why: &'static str) {
        self.db.expect_leftovers(why);
    }

    /// The server on an existing database (as `TestApp::spawn` does on a fresh one), with a
    /// storefront token but no warehouse user added.
    pub async fn spawn_on(db: TestDb, adjust: impl FnOnce(&mut Settings)) -> TestApp {
        Self::start(db, adjust, false).await
    }

    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> TestApp {
        Self::start(TestDb::new(backend), adjust, true).await
    }

    async fn start(db: TestDb, adjust: impl FnOnce(&mut Settings), add_user: bool) -> TestApp {
        wharf::tls::install_crypto_provider();
        let mut settings = test_settings(&db.url);
        adjust(&mut settings);
        let app = wharf::Application::build(settings.clone())
            .await
            .expect("build app");
        let base = format!("http://{}", app.addr());
        let pool = app.pool();
        tokio::spawn(app.run_until_stopped());
        let p = pool.clone();
        let token = tokio::task::spawn_blocking(move || {
            let mut conn = p.get().unwrap();
            if add_user {
                wharf::auth::add_user(&mut conn, USER, PASSWORD, "warehouse").unwrap();
            }
            wharf::auth::add_token(&mut conn, "storefront").unwrap()
        })
        .await
        .unwrap();
        TestApp {
            base,
            pool,
            settings: Arc::new(settings),
            client: reqwest::Client::new(),
            token,
            db,
        }
    }

    /// POSTs a SOAP body to `path`; returns status, content type and body.
    pub async fn post_soap_to(&self, path: &str, body: impl Into<String>) -> (u16, String, String) {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "text/xml; charset=utf-8")
            .header(
                "SOAPAction",
                "\"urn:Mage_Api_Model_Server_V2_HandlerAction\"",
            )
            .body(body.into())
            .send()
            .await
            .expect("SOAP request");
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, ct, resp.text().await.unwrap())
    }

    /// POSTs a SOAP body to `/soap`.
    pub async fn post_soap(&self, body: impl Into<String>) -> (u16, String) {
        let (status, _, text) = self.post_soap_to("/soap", body).await;
        (status, text)
    }

    /// Logs in with `login(username, apiKey)` and returns the session id.
    pub async fn login_as(&self, user: &str, password: &str) -> Result<String, String> {
        let (status, body) = self.post_soap(login_envelope(user, password)).await;
        match element_text(&body, "loginReturn") {
            Some(s) if status == 200 => Ok(s),
            _ => Err(body),
        }
    }

    /// Logs in as the test user.
    pub async fn login(&self) -> String {
        self.login_as(USER, PASSWORD).await.expect("login")
    }

    /// Sends an inventory multi-update built from `(sku, qty, seq)` lines; returns status and body.
    pub async fn send_inventory(
        &self,
        session: &str,
        message_seq_id: i64,
        lines: &[(&str, i64, i64)],
    ) -> (u16, String) {
        self.post_soap(inventory_envelope(session, message_seq_id, lines))
            .await
    }

    /// Runs a worker until nothing is due; returns the number of requests applied.
    pub async fn drain(&self) -> usize {
        let worker = Worker::new(self.pool.clone(), self.settings.clone());
        tokio::task::spawn_blocking(move || worker.drain())
            .await
            .unwrap()
            .expect("worker drain")
    }

    /// `GET /api/v1/stock/{sku}?source=default` with the test token: status and the stock level at
    /// the `default` source (the one entry of the list), or the problem.
    pub async fn stock(&self, sku: &str) -> (u16, serde_json::Value) {
        let resp = self
            .client
            .get(format!("{}/api/v1/stock/{sku}?source=default", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        match body {
            serde_json::Value::Array(mut levels) if status == 200 => {
                assert_eq!(levels.len(), 1, "one stock level per source: {levels:?}");
                (status, levels.remove(0))
            }
            other => (status, other),
        }
    }

    /// The stored quantity and last sequence id of a SKU, or `None` when none is recorded.
    pub async fn stock_of(&self, sku: &str) -> Option<(i64, i64)> {
        match self.stock(sku).await {
            (200, v) => Some((v["qty"].as_i64().unwrap(), v["last_seq"].as_i64().unwrap())),
            (404, _) => None,
            (status, v) => panic!("stock read for {sku} answered {status}: {v}"),
        }
    }

    /// Calls the storefront API with the test token: status and JSON body (Null when empty).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = self
            .client
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// `PUT /api/v1/orders/{id}` with a valid order of `lines` (sku, qty), status `processing`.
    pub async fn put_order(&self, id: &str, lines: &[(&str, i64)]) -> (u16, serde_json::Value) {
        self.api(
            reqwest::Method::PUT,
            &format!("/orders/{id}"),
            Some(order_json(lines)),
        )
        .await
    }

    /// Sends a Magento 1 shipment (key/value lines, optional tracking number) and checks the answer.
    pub async fn send_shipment(
        &self,
        session: &str,
        order: &str,
        message_seq_id: i64,
        lines: &[(&str, i64)],
        tracking: &str,
    ) {
        let items: String = lines
            .iter()
            .map(|(sku, qty)| format!("<item><key>{sku}</key><value>{qty}</value></item>"))
            .collect();
        let body = format!(
            "{ENVELOPE_OPEN}<ns1:orderflowShipmentCreate><sessionId>{session}</sessionId>\
             <orderIncrementId>{order}</orderIncrementId><skuQty>{items}</skuQty>\
             <comment>Despatched</comment><email>1</email><includeComment>0</includeComment>\
             <courierName>DPD</courierName><serviceName>Next Day</serviceName>\
             <trackingNumber>{tracking}</trackingNumber><dateShipped>2024-05-01</dateShipped>\
             <messageSeqId>{message_seq_id}</messageSeqId></ns1:orderflowShipmentCreate>{ENVELOPE_CLOSE}"
        );
        let (status, text) = self.post_soap(body).await;
        assert_eq!(status, 200, "{text}");
    }

    /// Import lines of a shipment message: (sku, result, message).
    pub async fn shipment_report(&self, message_seq_id: i64) -> Vec<(String, String, String)> {
        self.with_conn(move |c| {
            wharf::imports::store::import_lines_for_message(
                c,
                wharf::queue::OP_SHIPMENT,
                message_seq_id,
            )
            .unwrap()
            .into_iter()
            .map(|l| (l.sku, l.result.to_string(), l.message))
            .collect()
        })
        .await
    }

    /// Reads the whole feed from the start: (id, type, data).
    pub async fn feed(&self) -> Vec<(i64, String, serde_json::Value)> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let (status, page) = self
                .api(
                    reqwest::Method::GET,
                    &format!("/feed?after={after}&limit=1000"),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{page}");
            let events = page["events"].as_array().unwrap().clone();
            if events.is_empty() {
                return out;
            }
            for e in events {
                out.push((
                    e["id"].as_i64().unwrap(),
                    e["type"].as_str().unwrap().to_string(),
                    e["data"].clone(),
                ));
            }
            after = page["last_id"].as_i64().unwrap();
        }
    }

    /// Runs `f` with a database connection, on the blocking pool.
    pub async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut db::DbConnection) -> T + Send + 'static,
    ) -> T {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || f(&mut pool.get().unwrap()))
            .await
            .unwrap()
    }

    /// Wakes the channel runners and waits (at most 30 s) until none of the configured channels'
    /// pushes is due now or being sent: for a test that resent pushes to a channel nobody listens
    /// at, so its runner's attempt has settled (no answer, retried later) before the test ends.
    pub async fn channels_quiet(&self) {
        use diesel::prelude::*;
        use wharf::db::schema::outbound_tasks as t;
        let names: Vec<String> = self
            .settings
            .channels
            .iter()
            .map(|c| c.name.clone())
            .collect();
        let started = std::time::Instant::now();
        loop {
            wharf::outbound::wake_exporters();
            let names = names.clone();
            let busy: i64 = self
                .with_conn(move |conn| {
                    let now = wharf::db::now();
                    let due = t::state
                        .eq_any(["pending", "failed", "awaiting"])
                        .and(t::run_after.is_null().or(t::run_after.le(now)));
                    t::table
                        .filter(t::channel.eq_any(names))
                        .filter(due.or(t::lease_expires_at.gt(now)))
                        .count()
                        .get_result(conn)
                        .unwrap()
                })
                .await;
            if busy == 0 {
                return;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "{busy} channel push(es) still due or being sent after 30 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Support's resends and dismissals of order exports and cancellations, oldest first, as
    /// (`resend` | `dismiss` | `resend_cancellation` | `dismiss_cancellation`, actor, reason).
    pub async fn order_support_actions(&self) -> Vec<(String, String, Option<String>)> {
        self.with_conn(|c| {
            use diesel::prelude::*;
            use wharf::db::schema::{outbound_task_actions as a, outbound_tasks as t};
            let rows: Vec<(String, String, String, Option<String>)> = a::table
                .inner_join(t::table)
                .filter(t::channel.eq("warehouse"))
                .order(a::id)
                .select((t::action, a::action, a::actor, a::reason))
                .load(c)
                .unwrap();
            rows.into_iter()
                .map(|(task, action, actor, reason)| match task.as_str() {
                    "order.cancel" => (format!("{action}_cancellation"), actor, reason),
                    _ => (action, actor, reason),
                })
                .collect()
        })
        .await
    }

    /// Requests per state, e.g. `[("processed", 2)]`.
    pub async fn queue_depth(&self) -> Vec<(String, i64)> {
        self.with_conn(|c| wharf::queue::depth_by_state(c).unwrap())
            .await
    }

    /// Import lines of a message, as `(sku, result, message)`.
    pub async fn import_lines(&self, message_seq_id: i64) -> Vec<(String, String, String)> {
        self.with_conn(move |c| {
            wharf::imports::store::import_lines_for_message(
                c,
                wharf::queue::OP_INVENTORY,
                message_seq_id,
            )
            .unwrap()
            .into_iter()
            .map(|l| (l.sku, l.result.to_string(), l.message))
            .collect()
        })
        .await
    }
}

/// A fixture from `tests/fixtures/`, with the session placeholder replaced.
pub fn fixture(name: &str, session: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {path}: {e}"))
        .replace("[session_authentication_token]", session)
}

const ENVELOPE_OPEN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ns1="urn:Magento" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:SOAP-ENC="http://schemas.xmlsoap.org/soap/encoding/" SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><SOAP-ENV:Body>"#;
const ENVELOPE_CLOSE: &str = "</SOAP-ENV:Body></SOAP-ENV:Envelope>";

/// A Magento 1 `login` call.
pub fn login_envelope(user: &str, password: &str) -> String {
    format!(
        "{ENVELOPE_OPEN}<ns1:login><username xsi:type=\"xsd:string\">{user}</username>\
         <apiKey xsi:type=\"xsd:string\">{password}</apiKey></ns1:login>{ENVELOPE_CLOSE}"
    )
}

/// A Magento 1 rpc/encoded `orderflowInventoryMultiUpdate` with `skusQty`/`skusSeqId`.
pub fn inventory_envelope(
    session: &str,
    message_seq_id: i64,
    lines: &[(&str, i64, i64)],
) -> String {
    let qtys: String = lines
        .iter()
        .map(|(sku, qty, _)| {
            format!("<item xsi:type=\"ns1:skuQty\"><key xsi:type=\"xsd:string\">{sku}</key><value xsi:type=\"xsd:int\">{qty}</value></item>")
        })
        .collect();
    let seqs: String = lines
        .iter()
        .map(|(sku, _, seq)| {
            format!("<item xsi:type=\"ns1:skuSeq\"><key xsi:type=\"xsd:string\">{sku}</key><value xsi:type=\"xsd:long\">{seq}</value></item>")
        })
        .collect();
    format!(
        "{ENVELOPE_OPEN}<ns1:orderflowInventoryMultiUpdate><sessionId xsi:type=\"xsd:string\">{session}</sessionId>\
         <skusQty SOAP-ENC:arrayType=\"ns1:skuQty[{n}]\" xsi:type=\"ns1:skuQtyArray\">{qtys}</skusQty>\
         <skusSeqId SOAP-ENC:arrayType=\"ns1:skuSeq[{n}]\" xsi:type=\"ns1:skuSeqArray\">{seqs}</skusSeqId>\
         <messageSeqId xsi:type=\"xsd:long\">{message_seq_id}</messageSeqId>\
         </ns1:orderflowInventoryMultiUpdate>{ENVELOPE_CLOSE}",
        n = lines.len()
    )
}

/// The text of the first element with this local name (any prefix), unescaped.
pub fn element_text(xml: &str, local: &str) -> Option<String> {
    let mut reader = quick_xml::NsReader::from_str(xml);
    let mut inside = false;
    let mut out = String::new();
    loop {
        match reader.read_event().ok()? {
            quick_xml::events::Event::Start(e) if e.local_name().as_ref() == local => inside = true,
            quick_xml::events::Event::End(e) if inside && e.local_name().as_ref() == local => {
                return Some(out);
            }
            quick_xml::events::Event::Text(t) if inside => out.push_str(&t.xml10_content()),
            quick_xml::events::Event::GeneralRef(r) if inside => {
                let name = r.xml10_content();
                out.push_str(quick_xml::escape::resolve_xml_entity(&name).unwrap_or("?"));
            }
            quick_xml::events::Event::Eof => return None,
            _ => {}
        }
    }
}

/// The faultstring of a SOAP 1.1 fault.
pub fn faultstring(xml: &str) -> String {
    element_text(xml, "faultstring").unwrap_or_else(|| panic!("not a SOAP fault: {xml}"))
}

/// A valid order document with these (sku, qty) lines, status `processing`.
pub fn order_json(lines: &[(&str, i64)]) -> serde_json::Value {
    let address = serde_json::json!({
        "first_name": "Ada", "last_name": "Lovelace", "street": ["12 St James's Square"],
        "city": "London", "postcode": "SW1Y 4JH", "country": "GB", "email": "ada@example.com"
    });
    serde_json::json!({
        "status": "processing",
        "source": "web",
        "currency": "GBP",
        "created_at": "2024-05-01T09:30:00Z",
        "shipping_method": {"code": "flatrate_flatrate", "name": "Flat Rate"},
        "payment_method": "checkmo",
        "billing_address": address,
        "delivery_address": address,
        "totals": {"subtotal": "20.00", "shipping": "5.00", "discount": "0", "tax": "4.17", "grand_total": "25.00"},
        "lines": lines.iter().map(|(sku, qty)| serde_json::json!({
            "sku": sku, "name": format!("Product {sku}"), "qty": qty,
            "unit_price_net": "8.33", "unit_price_gross": "10.00", "unit_tax": "1.67",
            "row_total_net": "16.67", "row_total_gross": "20.00", "row_tax": "3.33"
        })).collect::<Vec<_>>(),
    })
}

/// `s` without the first span from `start` to the end of `end` (to drop an element from a fixture).
pub fn remove_between(s: &str, start: &str, end: &str) -> String {
    let a = s.find(start).unwrap();
    let b = s.find(end).unwrap() + end.len();
    format!("{}{}", &s[..a], &s[b..])
}

/// Spawns `cmd` (its stderr piped) and reads its stderr on a thread into a channel of lines, so a
/// test can wait for log lines without the pipe filling up and blocking the process.
pub fn spawn_with_log(
    cmd: &mut std::process::Command,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = cmd.spawn().expect("start wharf");
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, log)
}

/// The first line of `log` containing `needle`: among those `seen` already, else the next ones
/// (added to `seen`), waiting up to `limit`. Panics with every line seen when none comes.
pub fn wait_for_line(
    log: &std::sync::mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    needle: &str,
    limit: std::time::Duration,
) -> String {
    if let Some(l) = seen.iter().find(|l| l.contains(needle)) {
        return l.clone();
    }
    let until = std::time::Instant::now() + limit;
    while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
        match log.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no log line with {needle:?} in\n{}", seen.join("\n"));
}

/// Applies the migrations of the given backend folder up to and including `last`.
pub fn migrate_until(conn: &mut wharf::db::DbConnection, last: &str) {
    use diesel_migrations::{FileBasedMigrations, MigrationHarness};
    fn run<C: MigrationHarness<B>, B: diesel::backend::Backend>(c: &mut C, dir: &str, last: &str) {
        let source = FileBasedMigrations::from_path(format!(
            "{}/migrations/{dir}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        for m in c.pending_migrations(source).unwrap() {
            if m.name().version().to_string().replace('-', "").as_str() > last {
                break;
            }
            c.run_migration(&*m).unwrap();
        }
    }
    match conn {
        wharf::db::DbConnection::Sqlite(c) => run(c, "sqlite", last),
        wharf::db::DbConnection::Postgresql(c) => run(c, "postgres", last),
    }
}
