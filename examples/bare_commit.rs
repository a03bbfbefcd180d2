//! The bare single-row `INSERT`+`COMMIT` loop of `bench`, alone, on a database wharf already uses:
//! `bench/receipt.sh` runs it on the SQLite file it has just benchmarked wharf's receipt on.
//!
//! ```text
//! cargo run --release --example bare_commit -- --database-url sqlite:///tmp/x/wharf.db --secs 10
//! ```
//!
//! It prints one line, `result rows=N secs=S rate=R` (R: rows per second).

#[path = "common/baseline.rs"]
mod baseline;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Single-row transactions on one connection opened as wharf opens its own.
#[derive(Debug, Parser)]
#[command(name = "bare_commit")]
struct Args {
    /// The database (sqlite://PATH or postgres://…); a scratch table bench_baseline is created and
    /// dropped there.
    #[arg(long)]
    database_url: String,
    /// Stop after this many rows.
    #[arg(long, default_value_t = usize::MAX)]
    rows: usize,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let limit = Duration::try_from_secs_f64(args.secs).ok();
    match baseline::bare_commit_loop(&args.database_url, args.rows, limit) {
        Ok(l) => {
            println!(
                "result rows={} secs={:.2} rate={:.1}",
                l.rows,
                l.elapsed.as_secs_f64(),
                l.per_sec()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bare_commit: {e:#}");
            ExitCode::FAILURE
        }
    }
}
