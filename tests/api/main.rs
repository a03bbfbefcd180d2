//! End-to-end tests: the real server over loopback HTTP, on SQLite and on PostgreSQL.

mod helpers;
/// The OrderFlow simulator (also used by the examples).
#[path = "../../examples/warehouse_api/mod.rs"]
mod warehouse_api;

mod auth;
mod cli;
mod clients;
mod crash;
mod export;
mod export_failures;
mod feed;
mod hostile;
mod inventory;
mod orders;
mod soap_forms;
mod stock_api;
mod validation;
mod worker;
mod wsdl;
