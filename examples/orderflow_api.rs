//! Plays the warehouse's OrderFlow HTTP API on 127.0.0.1 (order and product imports with real import
//! reports, cancellations), so wharf's exporter can be tried without a warehouse:
//!
//! ```sh
//! cargo run --example orderflow_api -- --port 9000 --user wharf --password secret
//! # then point wharf at the endpoint it prints (WHARF_WAREHOUSE__ENDPOINT=http://127.0.0.1:9000/)
//! # and run `wharf export`
//! ```
//!
//! It checks HTTP Basic auth and the channel/organisation parameters, parses every document strictly,
//! and answers like OrderFlow (duplicates for orders it already has). `--fail REF` makes it refuse an
//! order, `--huge-answer BYTES` pads every answer to that size. Ctrl-C stops it and prints what it
//! received.

use std::collections::HashSet;

use clap::Parser;

#[path = "warehouse_api/mod.rs"]
mod warehouse_api;

/// Options.
#[derive(Parser)]
#[command(about = "An OrderFlow HTTP API simulator for trying wharf's exports")]
struct Args {
    /// HTTP Basic user wharf must send.
    #[arg(long, default_value = "wharf")]
    user: String,
    /// HTTP Basic password wharf must send.
    #[arg(long)]
    password: String,
    /// Order references to refuse (repeatable).
    #[arg(long)]
    fail: Vec<String>,
    /// Pad every answer with spaces to this many bytes (to try wharf's `warehouse.max_answer`).
    #[arg(long, value_name = "BYTES")]
    huge_answer: Option<usize>,
    /// Port on 127.0.0.1 to listen on; 0 picks a free one (printed at start), so a fixed port keeps
    /// wharf's configured endpoint valid across restarts.
    #[arg(long, default_value_t = 0)]
    port: u16,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let sim = warehouse_api::WarehouseSim::start_on(args.port, &args.user, &args.password).await;
    sim.set_behaviour(warehouse_api::Behaviour {
        fail: args.fail.iter().cloned().collect::<HashSet<_>>(),
        huge_answer: args.huge_answer,
        ..warehouse_api::Behaviour::default()
    });
    println!(
        "OrderFlow simulator listening; endpoint: {}",
        sim.endpoint()
    );
    println!("stop with Ctrl-C");
    let _ = tokio::signal::ctrl_c().await;
    let requests = sim.requests();
    println!(
        "received {} request(s); {} order(s), {} product(s) imported; {} order(s) cancelled",
        requests.len(),
        sim.orders().len(),
        sim.products().len(),
        sim.cancelled().len()
    );
    for r in requests {
        println!("  {} {} -> {}", r.method, r.path, r.status);
    }
    sim.stop().await;
}
