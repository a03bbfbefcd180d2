//! The `data` of the feed events the inventory writes, as typed schemas for the OpenAPI document
//! (the writer builds it with `serde_json::json!`; `tests/api/api_contract.rs` checks live events
//! against these schemas, so a writer that drifts from them fails the suite).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `stock.changed`: the stock of a SKU at a source was set by a warehouse update.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StockChanged {
    /// SKU.
    pub sku: String,
    /// Stock source (`default` unless the warehouse names one).
    pub source: String,
    /// Units stored now (after any adjustment).
    pub qty: i32,
    /// The warehouse sequence id that set it.
    pub seq: i64,
}
