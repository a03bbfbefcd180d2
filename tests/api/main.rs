//! End-to-end tests: the real server over loopback HTTP, on SQLite and on PostgreSQL.

// This whole crate is tests: clippy's in-test exemption (clippy.toml) covers only `#[test]` functions
// and `#[cfg(test)]` modules, not the helpers and scenario functions a test crate is made of. A
// failed step should stop a test at once, and a scenario reads best as one story however long.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

/// The affiliate system simulator (also used by the examples).
#[path = "../../examples/affiliate_api/mod.rs"]
mod affiliate_api;
mod helpers;
/// The Shopping Feed API simulator (also run by `cargo run --example shoppingfeed_api`).
#[path = "../../examples/shoppingfeed_api/mod.rs"]
mod shoppingfeed_api;
/// A real sshd for the SFTP file channel tests.
mod sshd;
/// The OrderFlow simulator (also used by the examples).
#[path = "../../examples/warehouse_api/mod.rs"]
mod warehouse_api;

mod alerts;
mod api_contract;
mod api_input;
mod api_problems;
mod api_views;
mod auth;
mod channels_affiliate;
mod channels_ops;
mod channels_shoppingfeed;
mod check;
mod cli;
mod clients;
mod console;
mod continuous;
mod crash;
mod creds;
mod export;
mod export_failures;
mod feed;
mod guessing;
mod hostile;
mod inventory;
mod metrics;
mod order_channels;
mod order_rules;
mod orders;
mod outbound_migration;
mod receipts;
mod refusals;
mod retention;
mod schema;
mod sftp_check;
mod sftp_client;
mod sftp_export;
mod sftp_formats;
mod sftp_import;
mod sftp_ops;
mod shipment_failures;
mod shutdown;
mod slow_clients;
mod smtp;
mod soap_forms;
mod splits;
mod startup;
mod stock_api;
mod validation;
mod wakeups;
mod worker;
mod wsdl;
