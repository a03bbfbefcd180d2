//! The `data` of the feed events about orders (written by the shipments, the export and splits),
//! as typed schemas for the OpenAPI document (most writers build it with `serde_json::json!`;
//! `tests/api/api_contract.rs` checks live events against these schemas, so a writer that drifts
//! from them fails the suite).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ExportStatus;
use super::split::SplitLine;

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

/// `order.split`: an order was split into child orders (`POST /api/v1/orders/{increment_id}/split`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderSplit {
    /// The order that was split (the parent).
    pub order: String,
    /// The orders made from it, with what each took.
    pub children: Vec<OrderSplitChild>,
    /// What the parent kept, per line (empty when the children took everything: its status is
    /// then `split`).
    pub kept: Vec<SplitLine>,
}

/// A child order of `order.split`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderSplitChild {
    /// Its order number.
    pub order: String,
    /// What it took of the parent, per SKU.
    pub lines: Vec<SplitLine>,
}
