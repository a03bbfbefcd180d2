//! Typed settings: built-in defaults, overridden by an optional TOML file (`--config FILE`, default
//! `wharf.toml` when it exists), overridden by the environment.
//!
//! Environment variables: `DATABASE_URL`, and `WHARF_<KEY>` for top-level keys (`WHARF_LISTEN`,
//! `WHARF_PUBLIC_URL`, …) or `WHARF_<SECTION>__<KEY>` for nested ones (`WHARF_WORKER__BATCH_SIZE=50`).
//! Booleans from the environment may be written `1`/`0` or `true`/`false`.
//!
//! Every setting's doc comment is also its documentation in `wharf config --defaults`
//! ([`defaults_toml`]); the settings types derive `utoipa::ToSchema` only to make those comments
//! readable at run time.

mod alerts;
mod channels;
mod console;
mod document;
mod env;
mod metrics;
mod retention;
mod sftp;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use alerts::{AlertSettings, SmtpTls};
pub use channels::{ChannelAction, ChannelKind, ChannelSettings, OnDone};
pub use console::ConsoleSettings;
pub use document::{defaults_toml, effective_toml};
pub use env::env_var;
pub use metrics::MetricsSettings;
pub use retention::RetentionSettings;
pub use validate::{InvalidSettings, Problem};

/// Every setting wharf reads. `Debug` redacts secrets (the database password).
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the data lives: an SQLite file, `sqlite://path/to/wharf.db` or `sqlite:path/to/wharf.db`
    /// (`sqlite:///var/lib/wharf.db` is absolute; a relative path is read next to the settings file
    /// when one is used), or PostgreSQL, `postgres://user:pass@host/db` (or `postgresql://`). Anything
    /// else is refused, and in-memory SQLite too (each pooled connection would get its own database).
    pub database_url: String,
    /// Address the HTTP server binds to (`WHARF_LISTEN`, default `127.0.0.1:8080`). Port 0 picks a free one.
    pub listen: String,
    /// The URL the warehouse reaches wharf at, written into served WSDLs. Defaults to `http://<listen>`.
    #[schema(example = "https://wharf.example.com")]
    pub public_url: Option<String>,
    /// Largest number of pooled database connections per process.
    pub db_pool_size: u32,
    /// Logs as JSON lines instead of human-readable text.
    pub log_json: bool,
    /// The SOAP receiver.
    pub soap: SoapSettings,
    /// Password checks and how password guessing is slowed down.
    pub auth: AuthSettings,
    /// The HTTP server: connections and request bodies, on every endpoint.
    pub http: HttpSettings,
    /// The background worker that applies queued requests.
    pub worker: WorkerSettings,
    /// Inventory rules.
    pub inventory: InventorySettings,
    /// Exports to the warehouse's HTTP API.
    pub warehouse: WarehouseSettings,
    /// Alert mails to the operator.
    pub alerts: AlertSettings,
    /// How long finished records are kept.
    pub retention: RetentionSettings,
    /// `GET /metrics`.
    pub metrics: MetricsSettings,
    /// The support console at `/admin`.
    pub console: ConsoleSettings,
    /// Marketplaces and affiliate systems told about their orders' shipments and status changes,
    /// one `[[channels]]` table each (see the README's channels section).
    pub channels: Vec<ChannelSettings>,
    /// On SIGTERM or SIGINT, the longest wharf takes to stop, in seconds: open feed long polls are
    /// answered at once, no new work is claimed, and requests in flight, the worker's batch and the
    /// exporter's run get this long to finish. What is still unfinished then is left to its lease,
    /// which another process takes over when it expires. Keep it below the time your supervisor
    /// waits before SIGKILL (Kubernetes and systemd: 30 s, Docker: 10 s).
    pub shutdown_deadline_secs: u64,
}

/// The warehouse's HTTP API and what is exported to it. `Debug` hides the password.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WarehouseSettings {
    /// Base URL of the OrderFlow API (e.g. `https://wms.example.com/web/`); a missing final `/` is
    /// added, since the API's paths are resolved below it.
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
    /// Largest answer read from the warehouse, in bytes (default 16 MiB): a longer one is cut off
    /// there and its batch fails "answer too large" (retried like any unanswered batch). The export
    /// log keeps at most the first 1 MiB of any answer.
    pub max_answer: usize,
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
            .field("max_answer", &self.max_answer)
            .field("orders", &self.orders)
            .field("products", &self.products)
            .finish()
    }
}

/// One kind of export (orders or products).
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ExportSettings {
    /// Export at all.
    pub enabled: bool,
    /// When to look for work: a cron expression (croner syntax; 5 or 6 fields, seconds optional), or
    /// `continuous`: whatever becomes due (an order stored or changed so that it is exportable, an
    /// exported order cancelled, a product changed, an export resent) is sent within
    /// `batch_window_ms`, woken at once — across processes too on PostgreSQL (LISTEN/NOTIFY) —
    /// instead of at the next occurrence; a retry is sent when it falls due, and every 30 seconds
    /// the exporter looks anyway, in case a wake-up was lost.
    pub schedule: String,
    /// With `schedule = "continuous"`: how long the exporter waits after a wake-up before it sends,
    /// in milliseconds (1 to 60000), so that what becomes due together goes in one document. Also
    /// the shortest time between two runs.
    pub batch_window_ms: u64,
    /// Most items per document.
    pub batch_size: i64,
    /// Order statuses that are ready to ship (invoiced). Unused for products.
    pub exportable_statuses: Vec<String>,
    /// Only orders placed on or after this date (YYYY-MM-DD) are exported. Unused for products.
    #[schema(example = "2026-01-01")]
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
            max_answer: 16 * 1024 * 1024,
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
            batch_window_ms: 1000,
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
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SoapSettings {
    /// A `login` session that has not been used for this many seconds expires (fault 5).
    pub session_idle_timeout_secs: u64,
    /// Largest accepted request body in bytes; a larger one is answered 413 with a SOAP Client
    /// fault and recorded as a rejection with its first 64 KiB.
    pub max_body: usize,
    /// Largest number of lines (SKUs or shipment lines) in one message.
    pub max_lines: usize,
    /// Lifetime of Magento 2 admin access tokens, in seconds (Magento's default is 4 hours).
    pub token_lifetime_secs: u64,
    /// The longest a `login` session or an admin access token lives, however busy, in seconds
    /// (default 24 hours): a leaked session id or token stops working by then. Expired sessions
    /// and tokens are deleted whenever someone logs in or asks for a token.
    pub session_max_lifetime_secs: u64,
    /// Most tracking numbers in one shipment (`trackingNumber` plus the `tracks` items); more is
    /// refused with a Client fault naming the field.
    pub max_tracking_numbers: usize,
    /// Refused messages of callers that are not authenticated (junk, failed logins, unknown
    /// sessions) stored per minute, per kind of refusal and client address. The rest are counted, not
    /// stored: a row "N more … counted, not stored" says how many. Refusals of authenticated callers
    /// are always stored.
    pub anonymous_rejections_per_minute: u32,
    /// How much of an unauthenticated caller's refused body is kept, in bytes (authenticated
    /// callers' refusals keep 64 KiB).
    pub anonymous_excerpt_bytes: usize,
}

/// Password checks (SOAP `login`, admin token requests, HTTP Basic) and the throttle on failed ones.
/// A failed check counts against the user name and against the client address (the TCP peer; for
/// IPv6 its /64, which one host usually holds whole). After the free failures each further one makes
/// that name or address wait: `throttle_base_ms`, doubling per failure, at most `throttle_max_secs`.
/// While it waits, its attempts are refused without checking the password. A correct password after
/// the wait works, and resets the count of that user name.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Most password verifications running at once (argon2id: 19 MiB and about 50 ms of one core
    /// each); the others wait their turn holding neither a thread nor a database connection. Unset:
    /// the number of cores, at most 4.
    pub password_checks: Option<usize>,
    /// Failed password checks for one user name before it is throttled.
    pub free_failures_per_user: u32,
    /// Failed password checks from one client address before it is throttled (more than per user:
    /// several callers may share an address).
    pub free_failures_per_address: u32,
    /// The first wait once the free failures are used up, in milliseconds; doubles with each further
    /// failure.
    pub throttle_base_ms: u64,
    /// The longest wait, in seconds.
    pub throttle_max_secs: u64,
    /// Failures of a user name or address are forgotten after this many seconds without one.
    pub forget_after_secs: u64,
    /// A throttled attempt is answered after this pause, in milliseconds (without checking the
    /// password), so that a guesser cannot spin wharf's CPU by asking again at once.
    pub throttled_pause_ms: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            password_checks: None,
            free_failures_per_user: 5,
            free_failures_per_address: 20,
            throttle_base_ms: 1000,
            throttle_max_secs: 60,
            forget_after_secs: 900,
            throttled_pause_ms: 1000,
        }
    }
}

/// Settings of the HTTP server, for every endpoint (SOAP, storefront API, health).
///
/// A client that sends its request slowly holds a connection, an open file and the part of its
/// body received so far: these bound what slow or stalled clients can take.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// A request body must arrive whole within this many seconds of its head (default 30); a later
    /// one is answered 408 and its connection closed.
    pub body_timeout_secs: u64,
    /// The slowest a request body may arrive, in bytes per second, judged over each 5 s window
    /// (default 1024: a body stalled for 5 s is answered 408 and its connection closed). 0 turns
    /// the check off, leaving `body_timeout_secs`.
    pub body_min_rate: u64,
    /// Most bytes of request bodies held at once by the whole process while they arrive and are
    /// handled (default 64 MiB: six bodies of the largest `soap.max_body` at once; buffers grow by
    /// doubling, and the allocator adds its own, so resident memory grows by up to twice this).
    /// A body that would pass it is answered 503 with `Retry-After`.
    pub body_budget: usize,
    /// Most client connections open at once (default 10 000). Start-up raises the open-file limit
    /// to its hard limit and lowers this cap below it when needed, keeping files for the database
    /// and the pool, so a flood of idle connections cannot lock wharf out of its own database.
    /// Connections beyond the cap wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            body_timeout_secs: 30,
            body_min_rate: 1024,
            body_budget: 64 * 1024 * 1024,
            max_connections: 10_000,
        }
    }
}

/// Settings of the worker.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// The fallback poll, in milliseconds: how long an idle worker waits for a wake-up before
    /// looking for work anyway, and how often a waiting feed long poll reads again without one.
    /// A stored request wakes the worker, and committed events wake long polls, at once — in
    /// other processes too on PostgreSQL (LISTEN/NOTIFY) — so this only bounds how late a lost
    /// wake-up is made up for (SQLite written by another process, a listener reconnecting).
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
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
            auth: AuthSettings::default(),
            http: HttpSettings::default(),
            worker: WorkerSettings::default(),
            inventory: InventorySettings::default(),
            warehouse: WarehouseSettings::default(),
            alerts: AlertSettings::default(),
            retention: RetentionSettings::default(),
            metrics: MetricsSettings::default(),
            console: ConsoleSettings::default(),
            channels: Vec::new(),
            shutdown_deadline_secs: 25,
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
            max_tracking_numbers: 1_000,
            anonymous_rejections_per_minute: 10,
            anonymous_excerpt_bytes: 1024,
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

/// A settings file or variable that could not be read: one line per problem, each naming the
/// setting (`worker.batch_size`) and where its value came from.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(String);

impl From<figment::Error> for SettingsError {
    fn from(e: figment::Error) -> Self {
        let mut lines: Vec<String> = Vec::new();
        for one in e {
            let line = env::describe(&one);
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
        SettingsError(lines.join("\n"))
    }
}

impl From<Box<figment::Error>> for SettingsError {
    fn from(e: Box<figment::Error>) -> Self {
        SettingsError::from(*e)
    }
}

impl Settings {
    /// The channels that hear about their orders' shipments and status changes (not `sftp`).
    pub fn push_channels(&self) -> impl Iterator<Item = &ChannelSettings> {
        self.channels.iter().filter(|c| !c.is_files())
    }

    /// The channels that exchange files (`sftp`).
    pub fn file_channels(&self) -> impl Iterator<Item = &ChannelSettings> {
        self.channels.iter().filter(|c| c.is_files())
    }

    /// Loads defaults < `file` (or `wharf.toml` in the working directory when it exists) < environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
        Ok(Settings::load_with_file(file)?.0)
    }

    /// Like [`Settings::load`], also returning the settings file that was read (`None`: defaults and
    /// environment only), for start-up to say which one is in use.
    pub fn load_with_file(
        file: Option<&Path>,
    ) -> Result<(Settings, Option<PathBuf>), SettingsError> {
        let path: Option<PathBuf> = match file {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from("wharf.toml")).filter(|p| p.exists()),
        };
        let path = path.map(|p| std::path::absolute(&p).unwrap_or(p));
        let defaults = Serialized::defaults(Settings::default());
        let default_values = figment::Provider::data(&defaults)
            .ok()
            .and_then(|mut by_profile| by_profile.remove(&figment::Profile::Default))
            .unwrap_or_default();
        let mut figment = Figment::from(defaults);
        if let Some(p) = &path {
            figment = figment.merge(Toml::file_exact(p));
        }
        figment = figment
            .merge(env::LenientBools::new(
                // `WHARF_CHANNEL_<NAME>_TOKEN|SECRET` are a channel's secrets, read by name into
                // its `[[channels]]` table (see `ChannelSettings`), not settings keys.
                Env::prefixed("WHARF_")
                    .filter(|k| !k.as_str().to_ascii_lowercase().starts_with("channel_"))
                    .split("__"),
                default_values.clone(),
                "WHARF_",
            ))
            .merge(env::LenientBools::new(
                Env::raw().only(&["DATABASE_URL"]),
                default_values,
                "",
            ));
        let mut settings: Settings = figment.extract()?;
        let from_env = figment
            .find_metadata("database_url")
            .is_some_and(|md| md.name.contains("environment"));
        if let Some(p) = &path
            && !from_env
        {
            settings.database_url = sqlite_next_to(&settings.database_url, p);
        }
        settings.normalise();
        Ok((settings, path))
    }

    /// Fixes what has one obvious meaning: the warehouse endpoint gets its final `/`, without which
    /// `https://wms/web` + `remoteorder/…` would resolve to `https://wms/remoteorder/…`.
    fn normalise(&mut self) {
        let endpoint = &mut self.warehouse.endpoint;
        if !endpoint.is_empty() && !endpoint.ends_with('/') {
            endpoint.push('/');
        }
        for c in &mut self.channels {
            c.secrets_from_env();
            let trimmed = c.base_url.trim_end_matches('/').len();
            c.base_url.truncate(trimmed);
        }
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

/// A relative SQLite path in a config file is read next to that file (other URLs unchanged).
fn sqlite_next_to(url: &str, config: &Path) -> String {
    match crate::db::DbTarget::parse(url) {
        Ok(crate::db::DbTarget::Sqlite(rel)) if rel.is_relative() => {
            match config.parent().filter(|d| !d.as_os_str().is_empty()) {
                Some(dir) => format!("sqlite://{}", dir.join(rel).display()),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

// Defined in `db` (which shows URLs in its errors and must not import config), kept here too for
// the settings' own messages and callers.
pub use crate::db::redact_url;

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("database_url", &redact_url(&self.database_url))
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("db_pool_size", &self.db_pool_size)
            .field("log_json", &self.log_json)
            .field("soap", &self.soap)
            .field("auth", &self.auth)
            .field("http", &self.http)
            .field("worker", &self.worker)
            .field("inventory", &self.inventory)
            .field("warehouse", &self.warehouse)
            .field("alerts", &self.alerts)
            .field("retention", &self.retention)
            .field("metrics", &self.metrics)
            .field("console", &self.console)
            .field("channels", &self.channels)
            .field("shutdown_deadline_secs", &self.shutdown_deadline_secs)
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
