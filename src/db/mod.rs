//! Storage: one diesel connection type over SQLite and PostgreSQL, a pool, the embedded migrations,
//! and the few places where SQL must differ per backend (`sql.rs`).

pub mod copy;
pub mod file;
pub mod group;
pub mod lease;
pub mod schema;
pub mod sql;
pub mod text_enum;
pub mod wake;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{NaiveDateTime, Utc};
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::R2D2Connection;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, ConnectionError};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// Migrations for each backend; the folders hold identical version names.
const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// A connection to either backend. Queries written with the diesel DSL run on both; code that must
/// differ per backend matches on the variant (see [`with_backend!`](crate::with_backend)).
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    /// PostgreSQL, the production backend.
    Postgresql(PgConnection),
    /// Embedded SQLite, the default.
    Sqlite(SqliteConnection),
}

/// Which database a URL points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `postgres://` or `postgresql://`
    Postgres,
    /// `sqlite://path` or `sqlite:path`
    Sqlite,
}

/// How long start-up waits for the first database connection before it gives up with one message.
/// Four seconds leave room for the rest of the start within the five the operator is promised.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

/// libpq's `connect_timeout`, which bounds every later (re)connection too. A second longer than
/// [`CONNECT_TIMEOUT`], so that at start-up the clearer "no answer within 4 s" is what people read.
const PG_CONNECT_TIMEOUT_SECS: u64 = 5;

/// A database URL, checked: the only two forms wharf can open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DbTarget {
    /// `postgres://…` or `postgresql://…`, passed to libpq as written.
    Postgres(String),
    /// The file of `sqlite://PATH` or `sqlite:PATH` (`sqlite:///abs/path` and `sqlite:/abs/path` are
    /// absolute, `sqlite://wharf.db` and `sqlite:wharf.db` relative to the working directory).
    Sqlite(PathBuf),
}

/// A database URL wharf cannot open: what is wrong with it and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DATABASE_URL {0}")]
pub struct UrlError(String);

impl UrlError {
    /// The problem without the variable's name (for messages that already name the setting).
    pub fn reason(&self) -> &str {
        &self.0
    }
}

/// What to write instead, repeated by every URL error.
const URL_FORMS: &str = "write sqlite://PATH for an SQLite file (e.g. sqlite://wharf.db) \
                         or postgres://USER:PASSWORD@HOST/DATABASE for PostgreSQL";

impl DbTarget {
    /// Reads a database URL. Anything but SQLite or PostgreSQL is refused, so that a typo never
    /// becomes an SQLite file named after it.
    pub fn parse(url: &str) -> Result<DbTarget, UrlError> {
        let refuse = |why: String| UrlError(format!("{why}; {URL_FORMS}"));
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DbTarget::Postgres(url.to_string()));
        }
        let Some(rest) = url.strip_prefix("sqlite:") else {
            return Err(match url.split_once("://") {
                Some((scheme, _)) => refuse(format!(
                    "{} uses {scheme}://, which wharf does not support",
                    redact_url(url)
                )),
                None if url.trim().is_empty() => refuse("is empty".into()),
                None => refuse(format!(
                    "{url:?} has no scheme (if it is an SQLite file, write sqlite://{url})"
                )),
            });
        };
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(refuse(format!("{url:?} names no file")));
        }
        if path == ":memory:" || path.starts_with("file:") || path.contains("mode=memory") {
            // Every pooled connection would open its own, empty, in-memory database.
            return Err(refuse(format!(
                "{url:?} asks for an in-memory or URI-style SQLite database, which wharf cannot \
                 share between its connections"
            )));
        }
        Ok(DbTarget::Sqlite(PathBuf::from(path)))
    }

    /// The URL to show people: the password hidden, an SQLite path made absolute.
    pub fn display(&self) -> String {
        match self {
            DbTarget::Postgres(url) => redact_url(url),
            DbTarget::Sqlite(path) => format!("sqlite://{}", absolute(path).display()),
        }
    }

    /// The backend this URL selects.
    pub fn backend(&self) -> Backend {
        match self {
            DbTarget::Postgres(_) => Backend::Postgres,
            DbTarget::Sqlite(_) => Backend::Sqlite,
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

/// `path` made absolute against the working directory (as written when that fails).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

impl Backend {
    /// The backend named by a URL's scheme.
    pub fn of_url(url: &str) -> Backend {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// A pool of connections.
pub type Pool = r2d2::Pool<Manager>;
/// A connection taken from the pool.
pub type PooledConn = r2d2::PooledConnection<Manager>;

/// Runs the same block against the concrete connection type of either backend, for SQL the diesel
/// multi-backend cannot express (upserts with `RETURNING`, row locks, `BEGIN IMMEDIATE`).
#[macro_export]
macro_rules! with_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConnection::Postgresql($c) => $body,
            $crate::db::DbConnection::Sqlite($c) => $body,
        }
    };
}

/// Loads the rows of a claim query. On PostgreSQL the rows are locked and rows another transaction is
/// claiming are skipped (`FOR UPDATE SKIP LOCKED`), so concurrent claimers take different rows; on
/// SQLite the caller's `BEGIN IMMEDIATE` transaction already excludes every other writer.
#[macro_export]
macro_rules! load_skip_locked {
    ($conn:expr, $query:expr) => {
        match $conn {
            $crate::db::DbConnection::Postgresql(c) => $query.for_update().skip_locked().load(c),
            $crate::db::DbConnection::Sqlite(c) => $query.load(c),
        }
    };
}

/// Opens connections of the backend the URL names, with the per-connection settings SQLite needs.
#[derive(Clone, Debug)]
pub struct Manager {
    target: DbTarget,
}

/// The database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL names no database wharf can open (the message says what to write instead).
    #[error(transparent)]
    Url(#[from] UrlError),
    /// Could not connect. One line, so that it is printed once and read at a glance.
    #[error("cannot connect to the database {url}: {reason}; check DATABASE_URL")]
    Connect {
        /// The URL, password hidden.
        url: String,
        /// Why, on one line.
        reason: String,
    },
    /// The SQLite file does not exist and this command does not create databases.
    #[error(
        "the SQLite database {} does not exist; create it with `wharf migrate` (or by starting \
         `wharf serve`), or point DATABASE_URL at the database wharf serve uses",
        .0.display()
    )]
    Missing(PathBuf),
    /// No connection could be taken from the pool (the cause follows as the error's source).
    #[error("no database connection available")]
    Pool(#[from] r2d2::Error),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(String),
}

impl Manager {
    /// A manager for a checked URL; PostgreSQL connection attempts give up after
    /// [`PG_CONNECT_TIMEOUT_SECS`] unless the URL sets its own `connect_timeout`.
    fn new(target: DbTarget) -> Manager {
        let target = match target {
            DbTarget::Postgres(url) if !url.contains("connect_timeout=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                let secs = PG_CONNECT_TIMEOUT_SECS;
                DbTarget::Postgres(format!("{url}{sep}connect_timeout={secs}"))
            }
            other => other,
        };
        Manager { target }
    }

    fn open_sqlite(path: &Path) -> Result<SqliteConnection, ConnectionError> {
        let path = path.to_str().ok_or_else(|| {
            ConnectionError::InvalidConnectionUrl("the SQLite path is not valid UTF-8".into())
        })?;
        file::prepare_sqlite_file(path);
        let mut c = SqliteConnection::establish(path)?;
        // busy_timeout first: switching to WAL takes a lock that other new connections wait
        // for. WAL lets readers run beside the one writer; FULL sync because an acknowledgement
        // promises the message survives a power cut; busy_timeout makes writers queue
        // instead of failing.
        c.batch_execute(
            "PRAGMA busy_timeout = 15000; PRAGMA journal_mode = WAL; \
             PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
        Ok(c)
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = ConnectionError;

    fn connect(&self) -> Result<DbConnection, ConnectionError> {
        match &self.target {
            DbTarget::Postgres(url) => Ok(DbConnection::Postgresql(PgConnection::establish(url)?)),
            DbTarget::Sqlite(path) => Ok(DbConnection::Sqlite(Manager::open_sqlite(path)?)),
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), ConnectionError> {
        conn.batch_execute("SELECT 1")
            .map_err(ConnectionError::CouldntSetupConfiguration)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        conn.is_broken()
    }
}

/// Opens a pool for `url` (password never logged) without running migrations. One connection is
/// opened first, within [`CONNECT_TIMEOUT`]: a database that is unreachable or refuses us fails here
/// with one message instead of a pool retrying (and logging) for the whole checkout timeout.
pub fn connect(url: &str, max_size: u32) -> Result<Pool, DbError> {
    let target = DbTarget::parse(url)?;
    let shown = target.display();
    let manager = probe(Manager::new(target), &shown)?;
    Ok(r2d2::Pool::builder()
        .max_size(max_size.max(1))
        // A `SELECT 1` before every checkout would double the round trips of short calls; broken
        // connections are detected by `has_broken` and replaced instead.
        .test_on_check_out(false)
        // How long a caller waits for a free connection under load; reachability was proven above.
        .connection_timeout(Duration::from_secs(30))
        // Connections open when first needed, not all at once in r2d2's background threads: the
        // probe proved the database answers, and a short command (`wharf requests list`) exiting
        // while those threads were still inside libpq's connect aborted the process (SIGABRT).
        .min_idle(Some(0))
        .build_unchecked(manager))
}

/// Like [`connect`], for commands that must not create a database: a missing SQLite file is an
/// error naming its absolute path instead of a new, empty database.
pub fn connect_existing(url: &str, max_size: u32) -> Result<Pool, DbError> {
    if let DbTarget::Sqlite(path) = DbTarget::parse(url)?
        && !path.exists()
    {
        return Err(DbError::Missing(absolute(&path)));
    }
    connect(url, max_size)
}

/// Opens and drops one connection on a helper thread, giving up after [`CONNECT_TIMEOUT`] (libpq's
/// own timeout does not cover every way a connection can hang, name resolution for one).
fn probe(manager: Manager, shown: &str) -> Result<Manager, DbError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let m = manager.clone();
    std::thread::spawn(move || {
        let result = r2d2::ManageConnection::connect(&m).map(drop);
        let _ = tx.send(result);
    });
    let reason = match rx.recv_timeout(CONNECT_TIMEOUT) {
        Ok(Ok(())) => return Ok(manager),
        Ok(Err(e)) => one_line(&e.to_string()),
        Err(_) => format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
    };
    Err(DbError::Connect {
        url: shown.to_string(),
        reason,
    })
}

/// libpq's messages span lines ("…failed: Connection refused\n\tIs the server running…").
fn one_line(s: &str) -> String {
    s.lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Applies every pending migration; safe to run from several processes at once on PostgreSQL
/// (serialised by an advisory lock). Data steps that follow a migration belong to their domain
/// (`queue::scrub::migrate` runs this, then masks old credentials).
pub fn migrate(pool: &Pool) -> Result<Vec<String>, DbError> {
    let mut conn = pool.get().map_err(DbError::Pool)?;
    let run = |conn: &mut DbConnection| -> Result<Vec<String>, String> {
        match conn {
            DbConnection::Postgresql(c) => {
                c.batch_execute("SELECT pg_advisory_lock(7261656)")
                    .map_err(|e| e.to_string())?;
                let r = c
                    .run_pending_migrations(PG_MIGRATIONS)
                    .map(|v| v.iter().map(|m| m.to_string()).collect())
                    .map_err(|e| e.to_string());
                let _ = c.batch_execute("SELECT pg_advisory_unlock(7261656)");
                r
            }
            DbConnection::Sqlite(c) => c
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map(|v| v.iter().map(|m| m.to_string()).collect())
                .map_err(|e| e.to_string()),
        }
    };
    run(&mut conn).map_err(DbError::Migrate)
}

/// Whether every embedded migration has been applied (for `/ready`).
pub fn migrations_applied(conn: &mut DbConnection) -> bool {
    match conn {
        DbConnection::Postgresql(c) => c
            .has_pending_migration(PG_MIGRATIONS)
            .map(|p| !p)
            .unwrap_or(false),
        DbConnection::Sqlite(c) => c
            .has_pending_migration(SQLITE_MIGRATIONS)
            .map(|p| !p)
            .unwrap_or(false),
    }
}

/// The names of the embedded migrations not applied yet, oldest first (for `wharf check`).
pub fn pending_migrations(conn: &mut DbConnection) -> Result<Vec<String>, String> {
    fn names<B: diesel::backend::Backend>(
        c: &mut impl MigrationHarness<B>,
        source: EmbeddedMigrations,
    ) -> Result<Vec<String>, String> {
        c.pending_migrations(source)
            .map(|v| v.iter().map(|m| m.name().to_string()).collect())
            .map_err(|e| e.to_string())
    }
    match conn {
        DbConnection::Postgresql(c) => names(c, PG_MIGRATIONS),
        DbConnection::Sqlite(c) => names(c, SQLITE_MIGRATIONS),
    }
}

/// Runs `f` in a write transaction: `BEGIN IMMEDIATE` on SQLite (so two writers queue on the lock
/// instead of failing when one upgrades from reading), plain `BEGIN` on PostgreSQL. Commits when `f`
/// returns `Ok`, rolls back otherwise.
pub fn write_tx<T, E>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    write_tx_opening(conn, "", f)
}

/// [`write_tx`] whose PostgreSQL transaction opens with the statements `opening` (`;`-separated, no
/// parameters: the simple query protocol) sent with its `BEGIN` in one round trip. Ignored on
/// SQLite, where a statement costs no round trip.
pub fn write_tx_opening<T, E>(
    conn: &mut DbConnection,
    opening: &str,
    f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    // SQLite has one writer at a time. Writers of this process queue on a mutex (woken in turn)
    // rather than on busy_timeout's sleep-and-retry, which makes waits long and unfair under load;
    // busy_timeout still covers writers in other processes.
    static SQLITE_WRITER: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = match conn {
        DbConnection::Sqlite(_) => Some(SQLITE_WRITER.lock().unwrap_or_else(|p| p.into_inner())),
        DbConnection::Postgresql(_) => None,
    };
    match conn {
        DbConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?
        }
        DbConnection::Postgresql(c) if opening.is_empty() => {
            AnsiTransactionManager::begin_transaction(c)?
        }
        DbConnection::Postgresql(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, &format!("BEGIN; {opening}"))?
        }
    }
    match f(conn) {
        Ok(v) => {
            with_backend!(conn, |c| AnsiTransactionManager::commit_transaction(c))?;
            Ok(v)
        }
        Err(e) => {
            // The error that made us roll back is the one worth reporting.
            let _ = with_backend!(conn, |c| AnsiTransactionManager::rollback_transaction(c));
            Err(e)
        }
    }
}

/// The current time as stored in the database: UTC, microsecond precision (what both backends keep).
pub fn now() -> NaiveDateTime {
    use chrono::{DurationRound, TimeDelta};
    let t = Utc::now().naive_utc();
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}

/// Runs `f` with a connection of `pool` on tokio's blocking threads, for async callers (the
/// exporter, the mailer): diesel blocks, and must not hold up the async executor. `who` names the
/// caller in the error when no connection can be had (`no database connection for {who}`).
pub async fn blocking<T: Send + 'static>(
    pool: &Pool,
    who: &'static str,
    f: impl FnOnce(&mut DbConnection) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = pool
            .get()
            .map_err(|e| anyhow::anyhow!("no database connection for {who}: {e}"))?;
        f(&mut conn)
    })
    .await?
}
