//! wharf: a SOAP-compatible gateway between a warehouse (OrderFlow's SOAP dialect) and an online store.
//!
//! Data flow, one module per step:
//! - [`soap`] reads the warehouse's envelopes into typed calls ([`messages`], wire-neutral);
//! - [`auth`] checks who is calling;
//! - [`queue`] stores each accepted message whole and hands it out to workers under a lease;
//! - [`worker`] applies queued messages with the business rules of [`inventory`] and
//!   [`shipments`], storing with each its import report ([`imports`]: one
//!   [`LineOutcome`](imports::LineOutcome) per line) and its events on the change [`feed`];
//! - [`outbound`] queues what wharf sends out, in the transaction that causes it, and
//!   [`channels`] send it (the warehouse: orders, products, cancellations);
//! - [`metrics`] counts the events and reads the gauges `GET /metrics` shows;
//! - [`alerts`] opens and resolves incidents (dead requests, lost orders, an open breaker, unseen
//!   import failures, a backlog), each mailed once by the [`channels::smtp`] channel;
//! - [`console`] is the support console at `/admin` (every support action lands in [`audit`]);
//! - [`http`] wires it all to actix-web; [`db`] is storage; [`cli`] the `wharf` command.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod background;
pub mod channels;
pub mod check;
pub mod cli;
pub mod config;
pub mod console;
pub mod db;
pub mod feed;
pub mod http;
pub mod imports;
pub mod inventory;
pub mod messages;
pub mod metrics;
pub mod orders;
pub mod outbound;
pub mod products;
pub mod queue;
pub mod reservations;
pub mod retention;
pub mod runs;
pub mod shipments;
pub mod shutdown;
pub mod soap;
pub mod telemetry;
pub mod tls;
pub mod validate;
pub mod worker;

pub use config::Settings;
pub use http::Application;
