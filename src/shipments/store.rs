//! The shipments' SQL: reading a stored shipment request and the order it names, and storing the
//! shipment. Per-backend arms are here; nothing else writes `shipments`, `shipment_lines` or
//! `shipment_tracking` (the order's own rows are written by [`crate::orders::store`]).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{Header, OrderLine, Request, RequestLine, Target};
use crate::db::schema::{
    order_lines, orders, request_lines, request_shipments, request_tracking, requests,
    shipment_lines, shipment_tracking, shipments,
};
use crate::db::{self, DbConnection};

/// The stored shipment request `request_id` (header, lines in order, tracking numbers in order).
pub fn load_request(
    conn: &mut DbConnection,
    request_id: i64,
    message_seq_id: i64,
) -> QueryResult<Request> {
    let received_at: NaiveDateTime = requests::table
        .find(request_id)
        .select(requests::received_at)
        .first(conn)?;
    let header: Header = request_shipments::table
        .find(request_id)
        .select((
            request_shipments::order_increment_id,
            request_shipments::comment,
            request_shipments::notify_customer,
            request_shipments::include_comment,
            request_shipments::courier_name,
            request_shipments::service_name,
            request_shipments::date_shipped,
        ))
        .first(conn)?;
    let lines: Vec<RequestLine> = request_lines::table
        .filter(request_lines::request_id.eq(request_id))
        .order(request_lines::line_no)
        .select((
            request_lines::line_no,
            request_lines::sku,
            request_lines::source,
            request_lines::qty,
        ))
        .load(conn)?;
    let tracking: Vec<String> = request_tracking::table
        .filter(request_tracking::request_id.eq(request_id))
        .order(request_tracking::position)
        .select(request_tracking::tracking_number)
        .load(conn)?;
    Ok(Request {
        id: request_id,
        message_seq_id,
        received_at,
        header,
        lines,
        tracking,
    })
}

/// The order row is locked for the rest of the transaction: two shipments of one order, or a
/// shipment and a storefront update of it, apply one after the other.
pub fn lock_order(conn: &mut DbConnection, order_no: &str) -> QueryResult<Option<Target>> {
    let query = orders::table
        .filter(orders::increment_id.eq(order_no))
        .select((
            orders::id,
            orders::status,
            orders::is_virtual,
            orders::export_status,
            orders::source,
        ));
    match conn {
        DbConnection::Postgresql(c) => query.for_update().first(c).optional(),
        // SQLite's write transaction (BEGIN IMMEDIATE) already excludes every other writer.
        DbConnection::Sqlite(c) => query.first(c).optional(),
    }
}

/// Whether order `order_id` already has the shipment `message_seq_id`.
pub fn already_shipped(
    conn: &mut DbConnection,
    order_id: i64,
    message_seq_id: i64,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        shipments::table
            .filter(shipments::order_id.eq(order_id))
            .filter(shipments::message_seq_id.eq(message_seq_id)),
    ))
    .get_result(conn)
}

/// The order's lines with what has shipped of each, in line order.
pub fn order_lines(conn: &mut DbConnection, order_id: i64) -> QueryResult<Vec<OrderLine>> {
    order_lines::table
        .filter(order_lines::order_id.eq(order_id))
        .order(order_lines::line_no)
        .select((
            order_lines::line_no,
            order_lines::sku,
            order_lines::qty,
            order_lines::qty_shipped,
        ))
        .load(conn)
}

/// Stores the shipment of `req` on order `order_id`, with its lines and tracking numbers.
pub fn insert_shipment(conn: &mut DbConnection, req: &Request, order_id: i64) -> QueryResult<()> {
    let h = &req.header;
    let shipment_id: i64 =
        crate::with_backend!(&mut *conn, |c| diesel::insert_into(shipments::table)
            .values((
                shipments::request_id.eq(req.id),
                shipments::order_id.eq(order_id),
                shipments::message_seq_id.eq(req.message_seq_id),
                shipments::courier_name.eq(&h.courier_name),
                shipments::service_name.eq(&h.service_name),
                shipments::comment.eq(&h.comment),
                shipments::notify_customer.eq(h.notify_customer),
                shipments::include_comment.eq(h.include_comment),
                shipments::date_shipped.eq(h.date_shipped),
                shipments::created_at.eq(db::now()),
            ))
            .returning(shipments::id)
            .get_result(c))?;
    for l in &req.lines {
        diesel::insert_into(shipment_lines::table)
            .values((
                shipment_lines::shipment_id.eq(shipment_id),
                shipment_lines::line_no.eq(l.line_no),
                shipment_lines::sku.eq(&l.sku),
                shipment_lines::qty.eq(l.qty),
            ))
            .execute(conn)?;
    }
    let tracks: Vec<_> = req
        .tracking
        .iter()
        .enumerate()
        .map(|(i, number)| {
            (
                shipment_tracking::shipment_id.eq(shipment_id),
                shipment_tracking::position.eq(i as i32 + 1),
                shipment_tracking::tracking_number.eq(number),
            )
        })
        .collect();
    // Three parameters a row: 1000 rows stay under SQLite's 32 766 and PostgreSQL's 65 535.
    for chunk in tracks.chunks(1000) {
        crate::with_backend!(&mut *conn, |c| diesel::insert_into(
            shipment_tracking::table
        )
        .values(chunk)
        .execute(c))?;
    }
    Ok(())
}
