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
mod feed;
mod hostile;
mod inventory;
mod orders;
mod shutdown;
mod soap_forms;
mod startup;
mod stock_api;
mod validation;
mod worker;
mod wsdl;
