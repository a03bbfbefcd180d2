//! Plays the Shopping Feed store API (order operations and their tickets) on 127.0.0.1, so wharf's
//! `shoppingfeed` channel can be tried without a Shopping Feed account:
//!
//! ```sh
//! cargo run --example shoppingfeed_api -- --port 9100 --token sf-secret --store-id 1234
//! # then configure a channel in wharf.toml:
//! #   [[channels]]
//! #   name = "amazon"
//! #   kind = "shoppingfeed"
//! #   sources = ["marketplace:amazon"]
//! #   base_url = "http://127.0.0.1:9100"
//! #   token = "sf-secret"
//! #   store_id = "1234"
//! # and ship an order whose source is marketplace:amazon
//! ```
//!
//! It checks the bearer token and the store id, parses every batch strictly, answers 202 with a
//! batch id, and serves the batch's tickets: `scheduled`, then `running`, then `succeed` after
//! `--reads` reads. `--fail REF`, `--cancel REF` and `--vanish REF` make the next ticket of that
//! order fail, be canceled or never appear; `--http-500 N` and `--too-many N` answer the next N
//! requests 500 or 429 (`--retry-after S`); `--slow-ms` delays every answer. Ctrl-C stops it and
//! prints what it received.

use clap::Parser;

#[path = "shoppingfeed_api/mod.rs"]
mod shoppingfeed_api;

use shoppingfeed_api::{Behaviour, Fate, ShoppingFeedSim};

/// Options.
#[derive(Parser)]
#[command(about = "A Shopping Feed store API simulator for trying wharf's shoppingfeed channel")]
struct Args {
    /// Bearer token wharf must send.
    #[arg(long)]
    token: String,
    /// The store id in the URLs.
    #[arg(long, default_value = "1234")]
    store_id: String,
    /// Reads a ticket spends scheduled and running before it settles.
    #[arg(long, default_value_t = 2)]
    reads: u32,
    /// Order references whose next ticket fails (repeatable).
    #[arg(long)]
    fail: Vec<String>,
    /// Order references whose next ticket is canceled (repeatable).
    #[arg(long)]
    cancel: Vec<String>,
    /// Order references whose next ticket never appears (repeatable).
    #[arg(long)]
    vanish: Vec<String>,
    /// Answer the next N requests HTTP 500.
    #[arg(long, default_value_t = 0)]
    http_500: u32,
    /// Answer the next N requests HTTP 429.
    #[arg(long, default_value_t = 0)]
    too_many: u32,
    /// The Retry-After of a 429, in seconds.
    #[arg(long, default_value_t = 5)]
    retry_after: u64,
    /// Delay every answer by this many milliseconds.
    #[arg(long)]
    slow_ms: Option<u64>,
    /// Port on 127.0.0.1 to listen on; 0 picks a free one (printed at start).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

impl Args {
    fn behaviour(&self) -> Behaviour {
        let mut b = Behaviour {
            reads_before_done: self.reads,
            http_500: self.http_500,
            too_many_requests: self.too_many,
            retry_after_secs: self.retry_after,
            slow: self.slow_ms.map(std::time::Duration::from_millis),
            ..Behaviour::default()
        };
        for r in &self.fail {
            b = b.fate(
                r,
                Fate::Fail(format!("the marketplace refused the update of {r}")),
            );
        }
        for r in &self.cancel {
            b = b.fate(
                r,
                Fate::Cancel(format!("order {r} cannot be changed any more")),
            );
        }
        for r in &self.vanish {
            b = b.fate(r, Fate::Vanish);
        }
        b
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let sim = ShoppingFeedSim::start_on(args.port, &args.token, &args.store_id).await;
    sim.set_behaviour(args.behaviour());
    println!(
        "Shopping Feed simulator listening; base_url: {} (store {})",
        sim.base_url(),
        args.store_id
    );
    println!("stop with Ctrl-C");
    let _ = tokio::signal::ctrl_c().await;
    let requests = sim.requests();
    println!("received {} request(s):", requests.len());
    for r in &requests {
        println!("  {} {} -> {}", r.method, r.path, r.status);
    }
    for p in sim.pushes() {
        println!(
            "  batch {} ({}): {} (tickets read {} time(s))",
            p.batch_id,
            p.operation,
            p.references().join(", "),
            p.reads
        );
    }
    sim.stop().await;
}
