//! The floor receipt is compared with: single-row `BEGIN; INSERT; COMMIT` transactions on one
//! connection, opened as wharf opens its own (on SQLite: WAL, `synchronous = FULL`, the same
//! pragmas). Shared by `bench` and `bare_commit`; included with
//! `#[path = "common/baseline.rs"] mod baseline;`.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use wharf::db::Backend;

/// Rows committed, and how long it took.
pub struct Loop {
    /// Rows inserted, one transaction each.
    pub rows: usize,
    /// Wall time of the loop (table creation and drop excluded).
    pub elapsed: Duration,
}

impl Loop {
    /// Rows per second.
    pub fn per_sec(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

/// Inserts into a scratch table `bench_baseline` (created and dropped here) one row per transaction
/// until `rows` rows or, with `limit`, that much time, whichever comes first.
pub fn bare_commit_loop(url: &str, rows: usize, limit: Option<Duration>) -> anyhow::Result<Loop> {
    let pool = wharf::db::connect(url, 1)?;
    let mut conn = pool.get()?;
    let id = match Backend::of_url(url) {
        Backend::Postgres => "BIGSERIAL",
        Backend::Sqlite => "INTEGER",
    };
    conn.batch_execute(&format!(
        "CREATE TABLE bench_baseline (id {id} PRIMARY KEY, v TEXT NOT NULL)"
    ))?;
    let started = Instant::now();
    let mut done = 0;
    while done < rows && limit.is_none_or(|l| started.elapsed() < l) {
        conn.batch_execute("BEGIN")?;
        conn.batch_execute(&format!(
            "INSERT INTO bench_baseline (v) VALUES ('row {done}')"
        ))?;
        conn.batch_execute("COMMIT")?;
        done += 1;
    }
    let elapsed = started.elapsed();
    conn.batch_execute("DROP TABLE bench_baseline")?;
    Ok(Loop {
        rows: done,
        elapsed,
    })
}
