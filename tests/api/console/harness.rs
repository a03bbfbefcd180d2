//! A console user's browser, minus the browser: a cookie-keeping HTTP client that sends forms the
//! way a browser does (same-origin `Origin`, the page's `_csrf`), and pages parsed as HTML.

use std::sync::Arc;

use reqwest::cookie::{CookieStore, Jar};
use reqwest::redirect::Policy;
use scraper::{Html, Selector};

use crate::helpers::TestApp;

/// The password every console test user gets.
pub const CONSOLE_PASSWORD: &str = "console-pass-1";

/// A fetched console page.
pub struct Page {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body as sent.
    pub body: String,
    /// The body parsed as HTML.
    pub html: Html,
}

impl Page {
    /// Text of every element matching `selector`, whitespace collapsed.
    pub fn texts(&self, selector: &str) -> Vec<String> {
        let sel = Selector::parse(selector).unwrap_or_else(|e| panic!("selector {selector}: {e}"));
        self.html
            .select(&sel)
            .map(|e| e.text().collect::<Vec<_>>().join(" "))
            .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    }

    /// Text of the first element matching `selector` (panics when there is none).
    pub fn text(&self, selector: &str) -> String {
        self.texts(selector)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no {selector} in page:\n{}", self.body))
    }

    /// How many elements match `selector`.
    pub fn count(&self, selector: &str) -> usize {
        let sel = Selector::parse(selector).unwrap_or_else(|e| panic!("selector {selector}: {e}"));
        self.html.select(&sel).count()
    }

    /// Attribute `attr` of every element matching `selector`.
    pub fn attrs(&self, selector: &str, attr: &str) -> Vec<String> {
        let sel = Selector::parse(selector).unwrap_or_else(|e| panic!("selector {selector}: {e}"));
        self.html
            .select(&sel)
            .filter_map(|e| e.value().attr(attr).map(str::to_string))
            .collect()
    }

    /// The page's CSRF token (from its first `_csrf` field).
    pub fn csrf(&self) -> String {
        self.attrs("input[name=_csrf]", "value")
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no _csrf field in page:\n{}", self.body))
    }

    /// The `Location` header of a redirect.
    pub fn location(&self) -> String {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }
}

/// One console user's client: keeps its cookies, follows no redirect by itself (tests look at
/// them), sends forms with this server's `Origin`.
pub struct Console {
    /// The server's base URL (`http://127.0.0.1:port`).
    pub base: String,
    /// The client (cookie store on).
    pub client: reqwest::Client,
    /// Its cookies.
    pub jar: Arc<Jar>,
    /// The CSRF token of the last page fetched that had one (or of the session a login opened).
    pub csrf: Option<String>,
}

// Used by the lanes of issue 12 as their tests arrive.
#[allow(dead_code)]
impl Console {
    /// A client with no session yet.
    pub fn new(app: &TestApp) -> Console {
        let jar = Arc::new(Jar::default());
        Console {
            base: app.base.clone(),
            client: reqwest::Client::builder()
                .cookie_provider(jar.clone())
                .redirect(Policy::none())
                .build()
                .unwrap(),
            jar,
            csrf: None,
        }
    }

    /// The session cookie's value this client holds for `/admin`, if any.
    pub fn session_cookie(&self) -> Option<String> {
        let url = format!("{}/admin/", self.base).parse().unwrap();
        let header = self.jar.cookies(&url)?;
        let prefix = format!("{}=", wharf::console::session::COOKIE);
        header
            .to_str()
            .unwrap()
            .split("; ")
            .find_map(|c| c.strip_prefix(prefix.as_str()))
            .map(str::to_string)
    }

    /// Gives this client `cookie` as its session cookie (e.g. one another client was logged out
    /// of, to see that it no longer opens anything).
    pub fn use_session_cookie(&mut self, cookie: &str) {
        let url = format!("{}/admin/", self.base).parse().unwrap();
        self.jar.add_cookie_str(
            &format!("{}={cookie}; Path=/admin", wharf::console::session::COOKIE),
            &url,
        );
        self.csrf = Some(wharf::console::session::csrf_token(cookie));
    }

    /// Creates console user `name` with `role` (`viewer` or `operator`) and logs in as it.
    pub async fn logged_in(app: &TestApp, name: &str, role: &str) -> Console {
        add_console_user(app, name, role).await;
        let mut console = Console::new(app);
        let page = console.login(name, CONSOLE_PASSWORD).await;
        assert_eq!(page.status, 303, "login of {name}: {}", page.body);
        console
    }

    /// Posts the login form; returns the answer (303 on success). After a success, [`Self::post`]
    /// carries the new session's CSRF token (the one its pages' forms carry).
    pub async fn login(&mut self, name: &str, password: &str) -> Page {
        let page = self
            .post_raw(
                "/admin/login",
                &[("username", name), ("password", password)],
                true,
            )
            .await;
        // (A `Secure` cookie is not kept over plain HTTP: then there is none to read.)
        if page.status == 303
            && let Some(cookie) = self.session_cookie()
        {
            self.csrf = Some(wharf::console::session::csrf_token(&cookie));
        }
        page
    }

    /// GETs `path` (e.g. `/admin/requests?state=dead`).
    pub async fn get(&mut self, path: &str) -> Page {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let page = read(resp).await;
        if page.count("input[name=_csrf]") > 0 {
            self.csrf = Some(page.csrf());
        }
        page
    }

    /// GETs `path` and asserts a 200.
    pub async fn page(&mut self, path: &str) -> Page {
        let page = self.get(path).await;
        assert_eq!(page.status, 200, "GET {path}: {}", page.body);
        page
    }

    /// Posts a form to `path` as the console's own page would: with the session's CSRF token
    /// (from the last page fetched) and this server's `Origin`.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self
            .csrf
            .clone()
            .expect("fetch a console page before posting (the CSRF token comes from it)");
        let mut all: Vec<(&str, &str)> = vec![("_csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all, true).await
    }

    /// Posts exactly `fields` to `path`, with this server's `Origin` when `same_origin`.
    pub async fn post_raw(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        same_origin: bool,
    ) -> Page {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .form(fields);
        if same_origin {
            req = req.header("Origin", &self.base);
        }
        read(req.send().await.unwrap()).await
    }

    /// Posts `fields` with extra headers (e.g. a foreign `Origin` or `Sec-Fetch-Site`).
    pub async fn post_with(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .form(fields);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        read(req.send().await.unwrap()).await
    }
}

async fn read(resp: reqwest::Response) -> Page {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.unwrap();
    let html = Html::parse_document(&body);
    Page {
        status,
        headers,
        body,
        html,
    }
}

/// Adds console user `name` with `role` and [`CONSOLE_PASSWORD`].
pub async fn add_console_user(app: &TestApp, name: &str, role: &str) {
    let (name, role) = (name.to_string(), role.to_string());
    app.with_conn(move |conn| wharf::auth::add_user(conn, &name, CONSOLE_PASSWORD, &role).unwrap())
        .await;
}
