//! End-to-end tests: the real server over loopback HTTP, on SQLite and on PostgreSQL.

mod helpers;

mod auth;
mod cli;
mod inventory;
mod stock_api;
mod validation;
mod worker;
mod wsdl;
