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

both_backends!(logging_in_comes_back_to_the_page_in_a_browser);

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
