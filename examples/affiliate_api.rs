//! Plays an affiliate system's HTTP API on 127.0.0.1 (status pushes, edits, splits, tickets), so
//! wharf's `kind = "http"` channel can be tried without one:
//!
//! ```sh
//! cargo run --example affiliate_api -- --port 9100
//! # it prints a [[channels]] table for wharf.toml (with the secret it checks signatures with);
//! # orders of source "affiliate" then push their changes to it
//! ```
//!
//! It verifies every request's Standard Webhooks signature and timestamp, applies each
//! idempotency key once and answers 409 to an update older than one it has. `--refuse REF` answers
//! 400 for an order, `--tickets N` takes changes on with a ticket that stays pending for N reads
//! (`--fail-tickets` makes them fail), `--http-500 N` and `--http-429 N` (with `--retry-after`)
//! refuse the next N requests, `--slow-ms MS` delays every answer. Ctrl-C stops it and prints what
//! it received.

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine;
use clap::Parser;

#[path = "affiliate_api/mod.rs"]
mod affiliate_api;

/// Options.
#[derive(Parser)]
#[command(about = "An affiliate system's API simulator for trying wharf's http channel")]
struct Args {
    /// Port on 127.0.0.1 to listen on; 0 picks a free one (printed at start).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The Standard Webhooks secret (whsec_<base64>) signatures are checked with; a new one is made
    /// and printed when not given.
    #[arg(long, env = "AFFILIATE_SECRET")]
    secret: Option<String>,
    /// Order numbers whose changes are refused with 400 (repeatable).
    #[arg(long)]
    refuse: Vec<String>,
    /// Take changes on with 202 and a ticket that reads `pending` this many times, then settles.
    #[arg(long)]
    tickets: Option<u32>,
    /// With --tickets: the tickets fail (with this message) instead of succeeding.
    #[arg(long)]
    fail_tickets: Option<String>,
    /// Answer the first N requests 500.
    #[arg(long, default_value_t = 0)]
    http_500: u32,
    /// Answer the first N requests (after the 500s) 429.
    #[arg(long, default_value_t = 0)]
    http_429: u32,
    /// The Retry-After of the 429 answers (seconds or an HTTP date).
    #[arg(long)]
    retry_after: Option<String>,
    /// Delay every answer by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    slow_ms: u64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let secret = args.secret.clone().unwrap_or_else(|| {
        let raw = wharf::auth::random_secret();
        format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    });
    let sim = affiliate_api::AffiliateSim::start_on(args.port, &secret).await;
    sim.set_behaviour(affiliate_api::Behaviour {
        http_500: args.http_500,
        http_429: args.http_429,
        retry_after: args.retry_after.clone(),
        refuse: args.refuse.iter().cloned().collect::<HashSet<_>>(),
        tickets: args.tickets.map(|n| affiliate_api::TicketPlan {
            pending_reads: n,
            fail: args.fail_tickets.clone(),
        }),
        slow: if args.slow_ms > 0 { u32::MAX } else { 0 },
        delay: Duration::from_millis(args.slow_ms),
    });
    println!("affiliate simulator listening on {}", sim.base_url());
    println!("add to wharf.toml:\n");
    println!(
        "[[channels]]\nname = \"affiliate\"\nkind = \"http\"\nsources = [\"affiliate\"]\n\
         base_url = \"{}\"\nsecret = \"{secret}\"\nship_delay_secs = 10\n",
        sim.base_url()
    );
    println!("stop with Ctrl-C");
    let _ = tokio::signal::ctrl_c().await;
    let requests = sim.requests();
    println!(
        "received {} request(s), applied {} change(s)",
        requests.len(),
        sim.applied().len()
    );
    for r in requests {
        let seq = r
            .sequence()
            .map_or(String::new(), |s| format!(" sequence {s}"));
        let replay = if r.replayed { " (replayed)" } else { "" };
        println!("  {} {}{seq} -> {}{replay}", r.method, r.path, r.status);
    }
    sim.stop().await;
}
