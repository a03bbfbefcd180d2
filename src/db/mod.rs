//! Storage: one diesel connection type over SQLite and PostgreSQL, a pool, the embedded migrations,
//! and the few places where SQL must differ per backend (`sql.rs`).

pub mod copy;
pub mod file;
pub mod schema;
pub mod sql;

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
    /// `sqlite://path` or a bare file path
    Sqlite,
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
#[derive(Debug)]
pub struct Manager {
    url: String,
    backend: Backend,
}

/// The database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Could not connect.
    #[error("cannot connect to the database {url}: {source}")]
    Connect {
        /// The URL, password hidden.
        url: String,
        /// Why.
        source: r2d2::Error,
    },
    /// No connection could be taken from the pool.
    #[error("no database connection available: {0}")]
    Pool(#[from] r2d2::Error),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(String),
}

impl Manager {
    fn sqlite_path(&self) -> &str {
        self.url.strip_prefix("sqlite://").unwrap_or(&self.url)
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = ConnectionError;

    fn connect(&self) -> Result<DbConnection, ConnectionError> {
        match self.backend {
            Backend::Postgres => Ok(DbConnection::Postgresql(PgConnection::establish(
                &self.url,
            )?)),
            Backend::Sqlite => {
                file::prepare_sqlite_file(self.sqlite_path());
                let mut c = SqliteConnection::establish(self.sqlite_path())?;
                // busy_timeout first: switching to WAL takes a lock that other new connections wait
                // for. WAL lets readers run beside the one writer; FULL sync because an acknowledgement
                // promises the message survives a power cut; busy_timeout makes writers queue
                // instead of failing.
                c.batch_execute(
                    "PRAGMA busy_timeout = 15000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
                )
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
                Ok(DbConnection::Sqlite(c))
            }
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

/// Opens a pool for `url` (password never logged) without running migrations.
pub fn connect(url: &str, max_size: u32) -> Result<Pool, DbError> {
    let backend = Backend::of_url(url);
    let manager = Manager {
        url: url.to_string(),
        backend,
    };
    r2d2::Pool::builder()
        .max_size(max_size.max(1))
        // A `SELECT 1` before every checkout would double the round trips of short calls; broken
        // connections are detected by `has_broken` and replaced instead.
        .test_on_check_out(false)
        .connection_timeout(Duration::from_secs(30))
        .build(manager)
        .map_err(|source| DbError::Connect {
            url: crate::config::redact_url(url),
            source,
        })
}

/// Applies every pending migration; safe to run from several processes at once on PostgreSQL
/// (serialised by an advisory lock).
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
    let applied = run(&mut conn).map_err(DbError::Migrate)?;
    // Credentials that versions before masking stored in clear are masked once, right after the
    // migration that lists them.
    crate::queue::scrub::run(&mut conn).map_err(|e| {
        DbError::Migrate(format!(
            "masking credentials stored by an earlier version failed (it resumes next time): {e}"
        ))
    })?;
    Ok(applied)
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
        DbConnection::Postgresql(c) => AnsiTransactionManager::begin_transaction(c)?,
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
