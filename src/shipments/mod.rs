//! Shipments the warehouse reports. Received and stored whole like inventory; applying them to orders
//! (partial and complete fulfilment) comes with the storefront's orders.

use chrono::NaiveDateTime;

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
    /// The warehouse's message sequence id (> 0).
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
