//! The `data` of the feed events the shipments write, as typed schemas for the OpenAPI document
//! (the writers build it with `serde_json::json!`; `tests/api/api_contract.rs` checks live events
//! against these schemas, so a writer that drifts from them fails the suite).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::orders::ShippedLine;

/// `shipment.created`: a shipment was applied to an order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShipmentCreated {
    /// Order number (increment id).
    pub order: String,
    /// The warehouse's message sequence id of the shipment.
    pub message_seq_id: i64,
    /// Units per SKU, in message order.
    pub lines: Vec<ShippedLine>,
    /// Tracking numbers.
    pub tracking_numbers: Vec<String>,
    /// Courier.
    pub courier_name: Option<String>,
    /// Courier service.
    pub service_name: Option<String>,
    /// Whether the customer should get the shipment e-mail.
    pub notify_customer: bool,
    /// Whether that e-mail should carry the comment.
    pub include_comment: bool,
    /// The warehouse's comment.
    pub comment: Option<String>,
}

/// `shipment.failed`: a shipment could not be applied (unknown order after the retry window,
/// SKU not on the order, more units than are left to ship); nothing of it was applied.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShipmentFailed {
    /// Order number (increment id) the shipment named.
    pub order: String,
    /// The warehouse's message sequence id of the shipment.
    pub message_seq_id: i64,
    /// Why it failed, naming the order, SKU and numbers.
    pub reason: String,
    /// The SKU at fault, when one is.
    pub sku: Option<String>,
}
