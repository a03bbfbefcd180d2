//! Typed settings: built-in defaults, overridden by an optional TOML file (`--config FILE`, default
//! `wharf.toml` when it exists), overridden by the environment.
//!
//! Environment variables: `DATABASE_URL`, and `WHARF_<KEY>` for top-level keys (`WHARF_LISTEN`,
//! `WHARF_PUBLIC_URL`, …) or `WHARF_<SECTION>__<KEY>` for nested ones (`WHARF_WORKER__BATCH_SIZE=50`).

use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Every setting wharf reads. `Debug` redacts secrets (the database password).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the data lives: `sqlite://path/to/wharf.db` (default `sqlite://wharf.db`, next to the config
    /// file when one is given) or `postgres://user:pass@host/db`.
    pub database_url: String,
    /// Address the HTTP server binds to (`WHARF_LISTEN`, default `127.0.0.1:8080`). Port 0 picks a free one.
    pub listen: String,
    /// The URL the warehouse reaches wharf at, written into served WSDLs. Defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// Largest number of pooled database connections per process.
    pub db_pool_size: u32,
    /// Logs as JSON lines instead of human-readable text.
    pub log_json: bool,
    /// The SOAP receiver.
    pub soap: SoapSettings,
    /// The background worker that applies queued requests.
    pub worker: WorkerSettings,
    /// Inventory rules.
    pub inventory: InventorySettings,
    /// Exports to the warehouse's HTTP API.
    pub warehouse: WarehouseSettings,
}

/// The warehouse's HTTP API and what is exported to it. `Debug` hides the password.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarehouseSettings {
    /// Base URL of the OrderFlow API, ending with `/` (e.g. `https://wms.example.com/web/`).
    pub endpoint: String,
    /// HTTP Basic user.
    pub username: String,
    /// HTTP Basic password.
    pub password: String,
    /// OrderFlow organisation code.
    pub organisation: String,
    /// OrderFlow channel code.
    pub channel: String,
    /// Seconds before a call to the warehouse is abandoned.
    pub timeout_secs: u64,
    /// Order export.
    pub orders: ExportSettings,
    /// Product export.
    pub products: ExportSettings,
}

impl std::fmt::Debug for WarehouseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarehouseSettings")
            .field("endpoint", &self.endpoint)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() { "" } else { "***" },
            )
            .field("organisation", &self.organisation)
            .field("channel", &self.channel)
            .field("timeout_secs", &self.timeout_secs)
            .field("orders", &self.orders)
            .field("products", &self.products)
            .finish()
    }
}

/// One kind of export (orders or products).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportSettings {
    /// Export at all.
    pub enabled: bool,
    /// When to look for work: a cron expression (croner syntax; 5 or 6 fields, seconds optional).
    pub schedule: String,
    /// Most items per document.
    pub batch_size: i64,
    /// Order statuses that are ready to ship (invoiced). Unused for products.
    pub exportable_statuses: Vec<String>,
    /// Only orders placed on or after this date (YYYY-MM-DD) are exported. Unused for products.
    pub min_order_date: Option<chrono::NaiveDate>,
    /// Attempts before an item is declared lost.
    pub max_attempts: i32,
    /// First retry delay after a failure, in seconds; doubles per attempt.
    pub backoff_base_secs: i64,
    /// Longest retry delay, in seconds.
    pub backoff_ceiling_secs: i64,
    /// Consecutive failed batches (transport errors, HTTP errors, unreadable answers) that pause exports.
    pub breaker_threshold: i32,
    /// How long exports pause once the breaker opens, in seconds.
    pub breaker_pause_secs: i64,
    /// How long an exporter holds the items it is sending before another may take them, in seconds.
    pub lease_secs: i64,
}

impl Default for WarehouseSettings {
    fn default() -> Self {
        WarehouseSettings {
            endpoint: String::new(),
            username: String::new(),
            password: String::new(),
            organisation: String::new(),
            channel: String::new(),
            timeout_secs: 30,
            orders: ExportSettings::default(),
            products: ExportSettings::default(),
        }
    }
}

impl Default for ExportSettings {
    fn default() -> Self {
        ExportSettings {
            enabled: false,
            schedule: "* * * * *".into(),
            batch_size: 100,
            exportable_statuses: vec!["processing".into()],
            min_order_date: None,
            max_attempts: 4,
            backoff_base_secs: 60,
            backoff_ceiling_secs: 3600,
            breaker_threshold: 5,
            breaker_pause_secs: 300,
            lease_secs: 300,
        }
    }
}

/// Settings of the SOAP receiver.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SoapSettings {
    /// A `login` session that has not been used for this many seconds expires (fault 5).
    pub session_idle_timeout_secs: u64,
    /// Largest accepted request body in bytes; larger bodies are answered 413.
    pub max_body: usize,
    /// Largest number of lines (SKUs or shipment lines) in one message.
    pub max_lines: usize,
    /// Lifetime of Magento 2 admin access tokens, in seconds (Magento's default is 4 hours).
    pub token_lifetime_secs: u64,
    /// The longest a `login` session or an admin access token lives, however busy, in seconds
    /// (default 24 hours): a leaked session id or token stops working by then. Expired sessions
    /// and tokens are deleted whenever someone logs in or asks for a token.
    pub session_max_lifetime_secs: u64,
}

/// Settings of the worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Run the worker inside `wharf serve` (a separate `wharf worker` process works either way).
    pub in_serve: bool,
    /// Number of applier threads in one process; each claims its own batches. One is the default:
    /// a second thread mostly waits on the first one's stock row locks and on the feed counter (the
    /// benchmark measured 64 000–69 000 lines/s with one thread on PostgreSQL, 72 000–76 000 with two).
    pub concurrency: usize,
    /// Most requests claimed at once.
    pub batch_size: i64,
    /// Most SKU lines applied in one transaction: consecutive inventory requests of a batch are applied
    /// together up to this many lines (each still gets its own import report). Larger transactions
    /// apply faster and hold stock row locks longer.
    pub transaction_lines: i64,
    /// How long an idle worker waits before looking for work again, in milliseconds.
    pub poll_interval_ms: u64,
    /// How long a claim holds before another worker may take the request over, in seconds.
    pub lease_secs: i64,
    /// Attempts before a request that keeps failing is declared dead.
    pub max_attempts: i32,
    /// First retry delay after a transient failure, in seconds; doubles per attempt.
    pub backoff_base_secs: i64,
    /// Longest retry delay, in seconds.
    pub backoff_ceiling_secs: i64,
    /// How long a shipment for an order wharf does not know yet waits for the storefront to push it,
    /// in seconds (default 900: orders and shipments race). Meanwhile it is retried with the backoff
    /// above (base doubling up to the ceiling; these tries do not count towards `max_attempts`);
    /// after it the shipment fails (a Failure in its import report, `shipment.failed` in the feed).
    /// 0 fails it at once.
    pub unknown_order_retry_secs: i64,
}

/// Inventory rules.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InventorySettings {
    /// Store negative quantities as they come; when off (default) a negative quantity is stored as 0.
    pub allow_negative: bool,
    /// What to subtract from the quantity the warehouse reports: `none` (default), `unsent_orders`
    /// (units of orders the warehouse has not seen yet), or `unsent_orders_and_quotes` (and units in
    /// active carts).
    pub adjust: Adjust,
    /// Order statuses whose units count as unsent while the order is not exported.
    pub unsent_statuses: Vec<String>,
    /// Only orders changed within this many days count as unsent.
    pub unsent_order_cutoff_days: i64,
    /// Only carts changed within this many days count as active.
    pub active_quote_cutoff_days: i64,
}

/// Inventory adjustment mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Adjust {
    /// Store what the warehouse reports.
    None,
    /// Subtract units of orders not yet exported (or exported after the line's `lastOrderExported`).
    UnsentOrders,
    /// Also subtract units in active carts.
    UnsentOrdersAndQuotes,
}

impl Default for InventorySettings {
    fn default() -> Self {
        InventorySettings {
            allow_negative: false,
            adjust: Adjust::None,
            unsent_statuses: vec!["pending".into(), "processing".into()],
            unsent_order_cutoff_days: 1,
            active_quote_cutoff_days: 1,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database_url: "sqlite://wharf.db".into(),
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            db_pool_size: 16,
            log_json: false,
            soap: SoapSettings::default(),
            worker: WorkerSettings::default(),
            inventory: InventorySettings::default(),
            warehouse: WarehouseSettings::default(),
        }
    }
}

impl Default for SoapSettings {
    fn default() -> Self {
        SoapSettings {
            session_idle_timeout_secs: 3600,
            max_body: 10 * 1024 * 1024,
            max_lines: 10_000,
            token_lifetime_secs: 4 * 3600,
            session_max_lifetime_secs: 24 * 3600,
        }
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            in_serve: true,
            concurrency: 1,
            batch_size: 100,
            transaction_lines: 20_000,
            poll_interval_ms: 500,
            lease_secs: 60,
            max_attempts: 10,
            backoff_base_secs: 5,
            backoff_ceiling_secs: 3600,
            unknown_order_retry_secs: 900,
        }
    }
}

/// A settings file or variable that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid settings: {0}")]
pub struct SettingsError(#[from] Box<figment::Error>);

impl Settings {
    /// Loads defaults < `file` (or `wharf.toml` in the working directory when it exists) < environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
        let path: Option<PathBuf> = match file {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from("wharf.toml")).filter(|p| p.exists()),
        };
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(p) = &path {
            figment = figment.merge(Toml::file_exact(p));
        }
        figment = figment
            .merge(Env::prefixed("WHARF_").split("__"))
            .merge(Env::raw().only(&["DATABASE_URL"]));
        let mut settings: Settings = figment.extract().map_err(Box::new)?;
        // A relative SQLite path in a config file is read next to that file.
        if let (Some(p), Some(rel)) = (&path, settings.database_url.strip_prefix("sqlite://"))
            && !rel.starts_with('/')
            && rel != ":memory:"
            && std::env::var_os("DATABASE_URL").is_none()
            && let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty())
        {
            settings.database_url = format!("sqlite://{}", dir.join(rel).display());
        }
        Ok(settings)
    }

    /// The base URL written into served WSDLs, without a trailing slash.
    pub fn public_base_url(&self, bound: Option<std::net::SocketAddr>) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => match bound {
                Some(addr) => format!("http://{addr}"),
                None => format!("http://{}", self.listen),
            },
        }
    }
}

/// Hides the password of a `scheme://user:password@host/…` URL.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("database_url", &redact_url(&self.database_url))
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("db_pool_size", &self.db_pool_size)
            .field("log_json", &self.log_json)
            .field("soap", &self.soap)
            .field("worker", &self.worker)
            .field("inventory", &self.inventory)
            .field("warehouse", &self.warehouse)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_database_password() {
        let s = Settings {
            database_url: "postgres://wharf:s3cret@db/wharf".into(),
            ..Settings::default()
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("postgres://wharf:***@db/wharf"), "{shown}");
    }
}
