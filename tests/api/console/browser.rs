//! Console journeys in a real browser: Debian's `chromium`, headless, driven through
//! `chromedriver` (package `chromium-driver`) with fantoccini. Each test starts its own chromedriver
//! on a free loopback port and one browser session, and ends both (also when the journey fails).
//! A failed journey leaves a screenshot at `target/console-screenshots/<test>.png`.
//!
//! `CHROMEDRIVER` and `CHROMIUM` name other binaries than the ones on `PATH` / `/usr/bin/chromium`.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::process::{Child, Command};

use super::harness::{CONSOLE_PASSWORD, add_console_user};
use crate::both_backends;
use crate::helpers::*;

both_backends!(
    logging_in_comes_back_to_the_page_in_a_browser,
    support_finds_a_sku_reads_its_request_and_requeues_a_dead_one_in_a_browser,
    a_lost_order_is_resent_and_its_timeline_tells_the_story_in_a_browser,
);

/// A chromedriver process and the browser session it opened.
struct Browser {
    client: Client,
    driver: Child,
    driver_url: String,
    session: String,
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl Browser {
    /// Starts chromedriver and a headless chromium (retried once on another port, in case another
    /// test took the free port first).
    async fn start() -> Browser {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start().await {
                Ok(browser) => return browser,
                Err(e) => last = e,
            }
        }
        panic!("could not start chromium through chromedriver: {last}");
    }

    async fn try_start() -> Result<Browser, String> {
        let port = free_port();
        let program = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let mut driver = Command::new(&program)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                format!("{program}: {e} (install Debian's chromium and chromium-driver)")
            })?;
        let driver_url = format!("http://127.0.0.1:{port}");
        if let Err(e) = wait_ready(&driver_url).await {
            let _ = driver.kill().await;
            return Err(e);
        }
        let mut options = json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000"],
        });
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        if std::path::Path::new(&binary).exists() {
            options["binary"] = json!(binary);
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let connected = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&driver_url)
            .await;
        let client = match connected {
            Ok(client) => client,
            Err(e) => {
                let _ = driver.kill().await;
                return Err(format!("new session: {e}"));
            }
        };
        let session = client.session_id().await.ok().flatten().unwrap_or_default();
        Ok(Browser {
            client,
            driver,
            driver_url,
            session,
        })
    }

    /// Ends the browser session and chromedriver.
    async fn stop(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.close()).await;
        let _ = self.driver.kill().await;
    }
}

async fn wait_ready(driver_url: &str) -> Result<(), String> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(resp) = client.get(format!("{driver_url}/status")).send().await
            && let Ok(status) = resp.json::<serde_json::Value>().await
            && status["value"]["ready"] == json!(true)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("chromedriver at {driver_url} did not become ready"))
}

/// What a journey gets: the browser, the server's base URL, and where to read the browser's log.
#[derive(Clone)]
struct Tab {
    client: Client,
    base: String,
    log_url: String,
}

impl Tab {
    /// Opens a console path (e.g. `/admin/login`).
    async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    /// The path and query the browser is at.
    async fn at(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// Text of the first element matching `css`, waiting for it to appear.
    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// The first element matching `css`, waiting up to 10 s for it.
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        tokio::time::timeout(
            Duration::from_secs(10),
            self.client.wait().for_element(Locator::Css(css)),
        )
        .await
        .unwrap_or_else(|_| panic!("no {css} within 10 s at {}", self.base))
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
    }

    /// Types into the field named `name` (replacing what it holds).
    async fn fill(&self, name: &str, value: &str) {
        let field = self.find(&format!("[name='{name}']")).await;
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    /// Clicks the first element matching `css` and waits for the new page it leads to.
    async fn click(&self, css: &str) {
        self.client
            .execute("window.wharfOldPage = true", vec![])
            .await
            .unwrap();
        self.find(css).await.click().await.unwrap();
        self.wait_loaded().await;
    }

    /// Clicks a submit button whose form asks first (`data-confirm`), answers the browser's
    /// dialog (`accept`: OK, else Cancel) and returns its text; after OK, waits for the new page.
    async fn click_confirming(&self, css: &str, accept: bool) -> String {
        self.client
            .execute("window.wharfOldPage = true", vec![])
            .await
            .unwrap();
        self.find(css).await.click().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let question = loop {
            match self.client.get_alert_text().await {
                Ok(text) => break text,
                Err(e) if Instant::now() > deadline => panic!("no confirmation dialog: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        if accept {
            self.client.accept_alert().await.unwrap();
            self.wait_loaded().await;
        } else {
            self.client.dismiss_alert().await.unwrap();
        }
        question
    }

    /// Types `text` into the header's search box and goes where it leads.
    async fn search(&self, text: &str) {
        self.fill("q", text).await;
        self.click("form.search button[type=submit]").await;
    }

    /// Texts of every element matching `css` (none is fine).
    async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.client.find_all(Locator::Css(css)).await.unwrap() {
            out.push(e.text().await.unwrap());
        }
        out
    }

    /// Attribute `attr` of every element matching `css`.
    async fn attrs(&self, css: &str, attr: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.client.find_all(Locator::Css(css)).await.unwrap() {
            if let Some(v) = e.attr(attr).await.unwrap() {
                out.push(v);
            }
        }
        out
    }

    /// Logs in at the login page the browser is at (after a redirect to it).
    async fn log_in(&self, user: &str) {
        self.fill("username", user).await;
        self.fill("password", CONSOLE_PASSWORD).await;
        self.click("form button[type=submit]").await;
    }

    /// Asserts that every `<time>` of the page was rewritten into the viewer's time zone by the
    /// page's script (and that the page has some).
    async fn assert_local_times(&self, page: &str) {
        let all = self
            .client
            .find_all(Locator::Css("time[datetime]"))
            .await
            .unwrap();
        let local = self
            .client
            .find_all(Locator::Css("time.local"))
            .await
            .unwrap();
        assert!(!all.is_empty(), "{page}: no times");
        assert_eq!(local.len(), all.len(), "{page}: times left in UTC");
    }

    /// Waits until a new page has loaded (its deferred scripts have run): one without the mark
    /// [`Self::click`] left on the page before.
    async fn wait_loaded(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let loaded = self
                .client
                .execute(
                    "return window.wharfOldPage === undefined && document.readyState === 'complete'",
                    vec![],
                )
                .await;
            // While the browser navigates, a script may find no page to run in: just ask again.
            if matches!(loaded, Ok(v) if v == json!(true)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no new page finished loading within 10 s");
    }

    /// The browser's console messages since the last call (chromedriver's log endpoint).
    async fn log(&self) -> Vec<(String, String)> {
        let resp = reqwest::Client::new()
            .post(&self.log_url)
            .json(&json!({ "type": "browser" }))
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = resp.json().await.unwrap();
        body["value"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or_default().to_string(),
                            e["message"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts that the browser logged a message containing `part` (waiting up to 5 s for it).
    async fn assert_logged(&self, part: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            seen.extend(self.log().await);
            if seen.iter().any(|(_, m)| m.contains(part)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{what}: no {part:?} in the browser's log {seen:#?}");
    }

    /// Asserts that the browser reported no errors (CSP violations, failed loads, script errors)
    /// since the last look.
    async fn assert_no_errors(&self, when: &str) {
        let errors: Vec<_> = self
            .log()
            .await
            .into_iter()
            .filter(|(level, _)| level == "SEVERE" || level == "WARNING")
            .collect();
        assert!(
            errors.is_empty(),
            "{when}: the browser reported {errors:#?}"
        );
    }
}

/// Runs `journey` in a fresh browser against `app`; when it fails, saves a screenshot under
/// `target/console-screenshots/<name>.png`, ends the browser, and fails the test with the
/// journey's own message.
async fn journey<F, Fut>(name: &str, app: &TestApp, journey: F)
where
    F: FnOnce(Tab) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let browser = Browser::start().await;
    let tab = Tab {
        client: browser.client.clone(),
        base: app.base.clone(),
        log_url: format!("{}/session/{}/se/log", browser.driver_url, browser.session),
    };
    let outcome = tokio::spawn(journey(tab)).await;
    if outcome.is_err() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
        let file = dir.join(format!("{name}.png"));
        let shot = tokio::time::timeout(Duration::from_secs(10), browser.client.screenshot()).await;
        match shot {
            Ok(Ok(png)) => {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&file, png).unwrap();
                eprintln!("screenshot of the failed journey: {}", file.display());
            }
            Ok(Err(e)) => eprintln!("no screenshot of the failed journey: {e}"),
            Err(_) => eprintln!("no screenshot of the failed journey: the browser did not answer"),
        }
    }
    browser.stop().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// The screenshot name of a test: its module path after `console::browser::`, `::` as `-`.
fn shot_name(backend: Backend, test: &str) -> String {
    format!("{test}-{}", format!("{backend:?}").to_lowercase())
}

async fn logging_in_comes_back_to_the_page_in_a_browser(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    add_console_user(&app, "ann", "operator").await;
    let name = shot_name(backend, "logging_in_comes_back_to_the_page_in_a_browser");
    journey(&name, &app, |tab| async move {
        tab.open("/admin/stock?sku=A-1").await;
        tab.wait_loaded().await;
        assert_eq!(
            tab.at().await,
            "/admin/login?next=%2Fadmin%2Fstock%3Fsku%3DA%2D1",
            "without a session: the login page"
        );
        assert_eq!(tab.text("h1").await, "wharf console");
        tab.assert_no_errors("the login page (its style sheet under the CSP)")
            .await;
        // The policy holds in a real browser: a script injected into the page does not run.
        let ran = tab
            .client
            .execute(
                "var s = document.createElement('script'); s.textContent = 'window.wharfInline = 1'; \
                 document.head.appendChild(s); return window.wharfInline === 1",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(ran, json!(false), "inline script ran despite the CSP");
        tab.assert_logged("Content Security Policy", "the refused inline script")
            .await;
        tab.fill("username", "ann").await;
        tab.fill("password", "not-the-password").await;
        tab.click("form button[type=submit]").await;
        assert_eq!(tab.text(".flash-error").await, "Wrong user name or password.");
        tab.fill("password", CONSOLE_PASSWORD).await;
        tab.click("form button[type=submit]").await;
        assert_eq!(tab.at().await, "/admin/stock?sku=A-1", "back where it began");
        // The session cookie is HttpOnly: the page's script cannot read it.
        let cookies = tab
            .client
            .execute("return document.cookie", vec![])
            .await
            .unwrap();
        assert_eq!(cookies, json!(""));
        let names: Vec<String> = tab
            .client
            .get_all_cookies()
            .await
            .unwrap()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        assert_eq!(names, [wharf::console::session::COOKIE]);
    })
    .await;
}

/// Runs a worker until nothing is due, from inside a journey.
async fn drain(pool: wharf::db::Pool, settings: std::sync::Arc<wharf::config::Settings>) {
    let worker = wharf::worker::Worker::new(pool, settings);
    tokio::task::spawn_blocking(move || worker.drain())
        .await
        .unwrap()
        .expect("worker drain");
}

async fn support_finds_a_sku_reads_its_request_and_requeues_a_dead_one_in_a_browser(
    backend: Backend,
) {
    use diesel::prelude::*;
    use wharf::db::schema::requests;
    let app = TestApp::spawn(backend).await;
    add_console_user(&app, "ann", "operator").await;
    let product = json!({"name": "Blue mug", "barcode": "5012345678900", "price": "7.50",
                         "weight": "0.35", "weight_unit": "kg"});
    let (status, body) = app
        .api(reqwest::Method::PUT, "/products/MUG-1", Some(product))
        .await;
    assert!(status < 300, "{body}");
    let s = app.login().await;
    assert_eq!(
        app.send_inventory(&s, 7001, &[("MUG-1", 5, 1)]).await.0,
        200
    );
    app.drain().await;
    assert_eq!(
        app.send_inventory(&s, 7002, &[("MUG-1", 4, 2)]).await.0,
        200
    );
    // The second message died after its attempts (say the database refused it for a while).
    let dead: i64 = app
        .with_conn(|c| {
            let id = requests::table
                .filter(requests::message_seq_id.eq(7002))
                .select(requests::id)
                .first(c)
                .unwrap();
            diesel::update(requests::table.find(id))
                .set((
                    requests::state.eq("dead"),
                    requests::attempts.eq(5),
                    requests::last_error.eq("database is locked"),
                ))
                .execute(c)
                .unwrap();
            id
        })
        .await;
    let (pool, settings) = (app.pool.clone(), std::sync::Arc::clone(&app.settings));
    let name = shot_name(backend, "support_finds_a_sku_reads_its_request");
    journey(&name, &app, move |tab| async move {
        tab.open("/admin").await;
        tab.wait_loaded().await;
        tab.log_in("ann").await;
        assert_eq!(tab.at().await, "/admin");
        assert_eq!(tab.text(".unseen-dead").await, "1 dead request");

        // "Why does MUG-1 show 5?": the search box, the SKU's page, its history, the request.
        tab.search("MUG-1").await;
        assert_eq!(tab.at().await, "/admin/stock/MUG-1");
        assert_eq!(tab.text("table.levels td.qty").await, "5");
        assert_eq!(
            tab.attrs("table.history tbody tr", "data-request")
                .await
                .len(),
            1
        );
        tab.assert_local_times("the stock page").await;
        tab.click("table.history tbody tr td a").await;
        assert!(
            tab.at().await.starts_with("/admin/requests/"),
            "{}",
            tab.at().await
        );
        let xml = tab.text("pre.xml.body").await;
        assert!(
            xml.contains("<sku>MUG-1</sku>") || xml.contains("MUG-1"),
            "{xml}"
        );
        assert!(
            xml.lines().count() > 5 && xml.contains("\n  "),
            "not pretty-printed: {xml}"
        );
        tab.assert_no_errors("the request page").await;

        // The dead one: from the dashboard's banner to the request, requeued after confirming.
        tab.open("/admin").await;
        tab.click(".unseen-dead").await;
        assert_eq!(tab.at().await, "/admin/requests?state=dead");
        assert_eq!(
            tab.attrs("tr[data-id]", "data-id").await,
            [dead.to_string()]
        );
        tab.click("tr[data-id] td.num a").await;
        assert_eq!(tab.at().await, format!("/admin/requests/{dead}"));
        assert_eq!(tab.text("dd.error").await, "database is locked");
        tab.click("form.actions button[formaction='/admin/requests/requeue']")
            .await;
        assert_eq!(
            tab.at().await,
            "/admin/requests/requeue",
            "the confirmation page"
        );
        assert_eq!(
            tab.attrs("form.confirm input[name=id]", "value").await,
            [dead.to_string()]
        );
        tab.click("form.confirm button[type=submit]").await;
        let flash = tab.text("p.flash").await;
        assert!(flash.contains('1'), "{flash}");
        tab.open("/admin/audit").await;
        let row = tab.texts("tr[data-audit]").await;
        assert_eq!(row.len(), 1, "{row:?}");
        assert_eq!(tab.text("tr[data-audit] td.actor").await, "console:ann");
        assert_eq!(tab.text("tr[data-audit] td.via").await, "console");
        assert!(
            tab.text("tr[data-audit] td.action")
                .await
                .contains("requeue")
        );

        // The worker applies it: the request and the SKU say so.
        drain(pool, settings).await;
        tab.open(&format!("/admin/requests/{dead}")).await;
        assert_eq!(tab.text("h1 small.state").await, "processed");
        assert_eq!(
            tab.text("p.report-counts").await.split(' ').next(),
            Some("1")
        );
        tab.search("MUG-1").await;
        assert_eq!(tab.text("table.levels td.qty").await, "4");
        assert_eq!(
            tab.attrs("table.history tbody tr", "data-request")
                .await
                .len(),
            2
        );

        // Logging out ends the session: the next page asks to log in again.
        tab.click("form[action='/admin/logout'] button").await;
        assert_eq!(tab.at().await, "/admin/login");
        tab.open("/admin/stock/MUG-1").await;
        tab.wait_loaded().await;
        assert!(
            tab.at().await.starts_with("/admin/login?next="),
            "{}",
            tab.at().await
        );
        tab.assert_no_errors("the journey").await;
    })
    .await;
}

async fn a_lost_order_is_resent_and_its_timeline_tells_the_story_in_a_browser(backend: Backend) {
    use wharf::channels::warehouse::Exporter;
    let (app, sim) = crate::export_failures::setup(backend, |s| {
        s.warehouse.orders.max_attempts = 1;
    })
    .await;
    add_console_user(&app, "ann", "operator").await;
    for (id, qty) in [("L-01", 1), ("L-02", 2)] {
        let (status, body) = app.put_order(id, &[("A", qty)]).await;
        assert!(status < 300, "{body}");
    }
    sim.set_behaviour(crate::warehouse_api::Behaviour {
        fail: ["L-01".to_string(), "L-02".to_string()].into(),
        ..Default::default()
    });
    let exporter = Exporter::new(app.pool.clone(), std::sync::Arc::clone(&app.settings)).unwrap();
    assert_eq!(exporter.export_orders().await.unwrap().lost, 2);
    sim.set_behaviour(crate::warehouse_api::Behaviour::default());
    let name = shot_name(backend, "a_lost_order_is_resent");
    journey(&name, &app, move |tab| async move {
        tab.open("/admin/orders/lost").await;
        tab.wait_loaded().await;
        tab.log_in("ann").await;
        assert_eq!(tab.at().await, "/admin/orders/lost");
        let subjects = tab.texts("tr[data-task] td.subject").await;
        let tasks = tab.attrs("tr[data-task]", "data-task").await;
        let mut sorted = subjects.clone();
        sorted.sort();
        assert_eq!(sorted, ["L-01", "L-02"]);
        let task = &tasks[subjects.iter().position(|s| s == "L-01").unwrap()];
        let button = format!("button.resend-one[value='{task}']");
        // Cancel in the browser's dialog: nothing happens.
        let question = tab.click_confirming(&button, false).await;
        assert!(question.starts_with("Change the"), "{question}");
        assert_eq!(tab.at().await, "/admin/orders/lost");
        assert_eq!(tab.texts("tr[data-task]").await.len(), 2);
        // OK: it is sent again.
        tab.click_confirming(&button, true).await;
        let flash = tab.text("p.flash").await;
        assert!(flash.contains("sent again"), "{flash}");
        tab.open("/admin/orders/lost").await;
        assert_eq!(tab.texts("tr[data-task] td.subject").await, ["L-02"]);

        // The exporter sends it; the order's page tells its whole story.
        assert_eq!(exporter.export_orders().await.unwrap().exported, 1);
        tab.search("L-01").await;
        assert_eq!(tab.at().await, "/admin/orders/L-01");
        assert_eq!(tab.text("dd.export-status .state").await, "exported");
        let kinds = tab.attrs("li.step", "data-kind").await;
        let at = |kind: &str| {
            kinds
                .iter()
                .position(|k| k == kind)
                .unwrap_or_else(|| panic!("no {kind} step in {kinds:?}"))
        };
        assert!(at("received") < at("attempt"), "{kinds:?}");
        assert!(at("attempt") < at("action"), "{kinds:?}");
        assert!(at("action") < at("exported"), "{kinds:?}");
        let action = tab.text("li.step-action").await;
        assert!(action.contains("ann"), "{action}");
        tab.assert_local_times("the order page").await;
        tab.assert_no_errors("the journey").await;
    })
    .await;
    sim.stop().await;
}
