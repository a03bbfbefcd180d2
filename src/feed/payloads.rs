//! The `data` of each feed event kind, as typed schemas for the OpenAPI document.
//!
//! The writers build their payloads with `serde_json::json!` next to the change they record
//! (`inventory`, `shipments`, `export`); these types say what those payloads hold, so a storefront's
//! client generator gets one typed model per event kind. The contract test in
//! `tests/api/api_contract.rs` checks live events against these schemas, so a writer that drifts
//! from them fails the suite.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::orders::{ExportStatus, ShippedLine};

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

/// `order.completed`: every line of an order has shipped.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderCompleted {
    /// Order number (increment id).
    pub order: String,
}

/// `order.export_status_changed`: an order's export to the warehouse moved to another status.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderExportStatusChanged {
    /// Order number (increment id).
    pub order: String,
    /// The new export status.
    pub status: ExportStatus,
    /// The export status before.
    pub previous: ExportStatus,
    /// What the warehouse said, or who resent or dismissed it.
    pub message: String,
    /// Failed attempts so far (0 after support resends or dismisses).
    pub attempts: i32,
}

/// Every event kind with the name of its payload schema, in the order the OpenAPI document lists them.
pub fn kinds() -> [(&'static str, std::borrow::Cow<'static, str>); 5] {
    [
        (super::STOCK_CHANGED, StockChanged::name()),
        (super::SHIPMENT_CREATED, ShipmentCreated::name()),
        // Written by the shipments rules (`feed::SHIPMENT_FAILED` there).
        ("shipment.failed", ShipmentFailed::name()),
        (super::ORDER_COMPLETED, OrderCompleted::name()),
        (
            super::ORDER_EXPORT_STATUS_CHANGED,
            OrderExportStatusChanged::name(),
        ),
    ]
}
