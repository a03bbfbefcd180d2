//! The typed calls the warehouse makes, apart from how they travel: SOAP today (`soap` reads
//! envelopes into them), files over SFTP later. The receipt stores them, the domains apply what was
//! stored. A leaf: it imports nothing of wharf, so every side may import it without a cycle.

use chrono::NaiveDateTime;

/// Operation name of inventory multi-updates, as stored with received requests.
pub const OP_INVENTORY: &str = "inventory.update";
/// Operation name of shipments, as stored with received requests.
pub const OP_SHIPMENT: &str = "shipment.create";

/// Stock source used when the warehouse names none.
pub const DEFAULT_SOURCE: &str = "default";

/// One SKU's line of an inventory message, as validated at receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryLine {
    /// SKU (1–64 characters).
    pub sku: String,
    /// Stock source (`default` unless the warehouse names one).
    pub source: String,
    /// Units the warehouse reports available (may be negative).
    pub qty: i32,
    /// The warehouse's sequence id for this SKU (> 0).
    pub seq: i64,
    /// When the warehouse last took an order into account for this SKU, if it says.
    pub last_order_exported: Option<NaiveDateTime>,
}

/// A whole inventory multi-update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryMessage {
    /// The message's sequence id (> 0).
    pub message_seq_id: i64,
    /// One line per (SKU, source), in the order received.
    pub lines: Vec<InventoryLine>,
}

/// One shipped line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipmentLine {
    /// SKU shipped.
    pub sku: String,
    /// Stock source it left from (`default` unless named).
    pub source: String,
    /// Units shipped (> 0).
    pub qty: i32,
}

/// A whole shipment message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipmentMessage {
    /// The warehouse's message sequence id (> 0 over SOAP; a shipment file has none, and gets a
    /// negative one derived from its SHA-256, see `crate::channels::sftp::shipment_file`).
    pub message_seq_id: i64,
    /// The storefront order number (increment id).
    pub order_increment_id: String,
    /// What was shipped, at least one line.
    pub lines: Vec<ShipmentLine>,
    /// Comment for the shipment.
    pub comment: Option<String>,
    /// Send the customer the shipment e-mail.
    pub notify_customer: bool,
    /// Put the comment in that e-mail.
    pub include_comment: bool,
    /// Courier, e.g. `DPD`.
    pub courier_name: Option<String>,
    /// Courier service, e.g. `Next Day`.
    pub service_name: Option<String>,
    /// Tracking numbers: `trackingNumber` first, then each `tracks` item, without blanks or repeats.
    pub tracking_numbers: Vec<String>,
    /// When the parcel left, as the warehouse says.
    pub date_shipped: Option<NaiveDateTime>,
}
