//! What is stored of an order's story, for the console's order page: when it was received and last
//! changed, every export line that named it (with its exchange), its warehouse tasks and the
//! support actions on them, and its shipments with their tracking and the request that brought
//! each. (wharf keeps the order's current version only, not each version the storefront sent.)

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{OrderError, OrderView};
use crate::db::DbConnection;
use crate::db::schema::{export_lines, exports, orders, shipment_tracking, shipments};
use crate::outbound::{self, TaskAction, TaskRow};

/// An export line that named the order, with the exchange it was part of.
#[derive(Debug, Clone, Queryable)]
pub struct ExportAttempt {
    /// The exchange (`exports.id`).
    pub export_id: i64,
    /// `insert` or `cancel`.
    pub operation: String,
    /// When the exchange started.
    pub started_at: NaiveDateTime,
    /// How the exchange went (`answered`, `http_error`, …).
    pub outcome: String,
    /// What the warehouse said of this order (`success`, `failure`, `duplicate`).
    pub result: String,
    /// Its message.
    pub message: String,
}

/// A shipment of the order, with the request that brought it.
#[derive(Debug, Clone)]
pub struct ShipmentRecord {
    /// The shipment's id.
    pub id: i64,
    /// The request that created it (`None` once retention deleted it).
    pub request_id: Option<i64>,
    /// The warehouse's messageSeqId.
    pub message_seq_id: i64,
    /// When wharf applied it.
    pub created_at: NaiveDateTime,
    /// When the parcel left, as the warehouse says.
    pub date_shipped: Option<NaiveDateTime>,
    /// Courier.
    pub courier_name: Option<String>,
    /// Tracking numbers.
    pub tracking: Vec<String>,
}

/// An order's stored story.
#[derive(Debug, Clone)]
pub struct History {
    /// The order as the API shows it (lines, export, cancellation, shipments).
    pub order: OrderView,
    /// When wharf first received it.
    pub received_at: NaiveDateTime,
    /// When it last changed (the storefront's last update, a cancellation or a shipment).
    pub updated_at: NaiveDateTime,
    /// When the warehouse accepted it.
    pub exported_at: Option<NaiveDateTime>,
    /// Every export line that named it, oldest first.
    pub attempts: Vec<ExportAttempt>,
    /// Its warehouse tasks (`order.insert`, `order.cancel`), oldest first, with their action.
    pub tasks: Vec<(String, TaskRow)>,
    /// Support's actions on those tasks, oldest first, with the task each was on.
    pub actions: Vec<(i64, TaskAction)>,
    /// Its shipments, oldest first.
    pub shipments: Vec<ShipmentRecord>,
    /// The newest audit rows (console and CLI actions) naming it.
    pub audit: Vec<crate::audit::AuditRow>,
}

/// The most audit rows an order's story shows.
const AUDIT_ROWS: i64 = 100;

/// The story of order `increment_id`.
pub fn history(conn: &mut DbConnection, increment_id: &str) -> Result<History, OrderError> {
    let order = super::get(conn, increment_id)?;
    let (id, received_at, updated_at, exported_at): (
        i64,
        NaiveDateTime,
        NaiveDateTime,
        Option<NaiveDateTime>,
    ) = orders::table
        .filter(orders::increment_id.eq(increment_id))
        .select((
            orders::id,
            orders::received_at,
            orders::updated_at,
            orders::exported_at,
        ))
        .first(conn)?;
    let attempts = export_lines::table
        .inner_join(exports::table)
        .filter(export_lines::reference.eq(increment_id))
        .filter(exports::kind.eq_any(["order", "cancel"]))
        .order((exports::started_at, exports::id))
        .select((
            exports::id,
            exports::operation,
            exports::started_at,
            exports::outcome,
            export_lines::result,
            export_lines::message,
        ))
        .load(conn)?;
    let tasks: Vec<(String, TaskRow)> =
        outbound::tasks_of_subject(conn, outbound::WAREHOUSE, increment_id)?
            .into_iter()
            .filter(|(action, _)| action.starts_with("order."))
            .collect();
    let ids: Vec<i64> = tasks.iter().map(|(_, t)| t.id).collect();
    let actions = outbound::actions_on(conn, &ids)?;
    let shipments = shipments_of(conn, id)?;
    let audit = crate::audit::naming(conn, "order", increment_id, AUDIT_ROWS)?;
    Ok(History {
        order,
        received_at,
        updated_at,
        exported_at,
        attempts,
        tasks,
        actions,
        shipments,
        audit,
    })
}

type ShipmentColumns = (
    i64,
    Option<i64>,
    i64,
    NaiveDateTime,
    Option<NaiveDateTime>,
    Option<String>,
);

fn shipments_of(conn: &mut DbConnection, order_id: i64) -> QueryResult<Vec<ShipmentRecord>> {
    let rows: Vec<ShipmentColumns> = shipments::table
        .filter(shipments::order_id.eq(order_id))
        .order(shipments::id)
        .select((
            shipments::id,
            shipments::request_id,
            shipments::message_seq_id,
            shipments::created_at,
            shipments::date_shipped,
            shipments::courier_name,
        ))
        .load(conn)?;
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let tracks: Vec<(i64, String)> = shipment_tracking::table
        .filter(shipment_tracking::shipment_id.eq_any(&ids))
        .order((shipment_tracking::shipment_id, shipment_tracking::position))
        .select((
            shipment_tracking::shipment_id,
            shipment_tracking::tracking_number,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(id, request_id, message_seq_id, created_at, date_shipped, courier_name)| {
                ShipmentRecord {
                    id,
                    request_id,
                    message_seq_id,
                    created_at,
                    date_shipped,
                    courier_name,
                    tracking: tracks
                        .iter()
                        .filter(|t| t.0 == id)
                        .map(|t| t.1.clone())
                        .collect(),
                }
            },
        )
        .collect())
}
