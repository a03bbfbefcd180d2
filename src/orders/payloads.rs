//! The `data` of the feed events about orders (written by the shipments and the export), as typed
//! schemas for the OpenAPI document (the writers build it with `serde_json::json!`;
//! `tests/api/api_contract.rs` checks live events against these schemas, so a writer that drifts
//! from them fails the suite).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ExportStatus;

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
