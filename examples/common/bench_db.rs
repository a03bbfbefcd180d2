//! A benchmark's own database: a fresh SQLite file in a temporary directory, or a fresh PostgreSQL
//! database on the server of an admin URL, dropped at the end. Included from an example with
//! `#[path = "common/bench_db.rs"] mod bench_db;`.

use anyhow::Context;
use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;

/// The benchmark's database, dropped at the end (PostgreSQL) or with its directory (SQLite).
pub struct BenchDb {
    /// Its URL.
    pub url: String,
    pg: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl BenchDb {
    /// A new database; on PostgreSQL named `<prefix>_<random>`.
    pub fn new(postgres_admin: Option<&str>, prefix: &str) -> anyhow::Result<BenchDb> {
        let dir = tempfile::tempdir()?;
        let Some(admin) = postgres_admin else {
            return Ok(BenchDb {
                url: format!("sqlite://{}", dir.path().join("wharf.db").display()),
                pg: None,
                _dir: dir,
            });
        };
        let name = format!("{prefix}_{}", &wharf::auth::random_secret()[..12]);
        let mut conn =
            PgConnection::establish(admin).with_context(|| format!("connecting to {admin}"))?;
        conn.batch_execute(&format!("CREATE DATABASE {name}"))?;
        let (base, _) = admin
            .rsplit_once('/')
            .context("the admin URL has no path")?;
        Ok(BenchDb {
            url: format!("{base}/{name}"),
            pg: Some((admin.to_string(), name)),
            _dir: dir,
        })
    }
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.pg
            && let Ok(mut conn) = PgConnection::establish(admin)
        {
            let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}
