//! The reservations' SQL: carts and their lines. Nothing else writes `reservations` or
//! `reservation_lines`.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::ReservationLine;
use crate::db::DbConnection;
use crate::db::schema::{reservation_lines, reservations};

/// Replaces cart `quote_id` (whether it existed or not) with `lines`, as changed at `at`. Run in a
/// write transaction, so a reader sees the old cart or the new one, never a mix.
pub fn replace(
    conn: &mut DbConnection,
    quote_id: &str,
    lines: &[ReservationLine],
    at: NaiveDateTime,
) -> QueryResult<()> {
    diesel::delete(reservations::table.find(quote_id)).execute(conn)?;
    diesel::insert_into(reservations::table)
        .values((
            reservations::quote_id.eq(quote_id),
            reservations::updated_at.eq(at),
        ))
        .execute(conn)?;
    let rows: Vec<_> = lines
        .iter()
        .map(|l| {
            (
                reservation_lines::quote_id.eq(quote_id),
                reservation_lines::sku.eq(&l.sku),
                reservation_lines::qty.eq(l.qty),
            )
        })
        .collect();
    if !rows.is_empty() {
        crate::with_backend!(&mut *conn, |c| diesel::insert_into(
            reservation_lines::table
        )
        .values(&rows)
        .execute(c))?;
    }
    Ok(())
}

/// Deletes cart `quote_id` (its lines go with it); returns whether it existed.
pub fn delete(conn: &mut DbConnection, quote_id: &str) -> QueryResult<bool> {
    Ok(diesel::delete(reservations::table.find(quote_id)).execute(conn)? == 1)
}

/// Units of each of `skus` in carts changed after `since`, all carts together.
pub fn units_in_active_carts(
    conn: &mut DbConnection,
    skus: &[&str],
    since: NaiveDateTime,
) -> QueryResult<HashMap<String, i64>> {
    let mut units: HashMap<String, i64> = HashMap::new();
    for chunk in skus.chunks(1000) {
        let rows: Vec<(String, i32)> = reservation_lines::table
            .inner_join(reservations::table)
            .filter(reservation_lines::sku.eq_any(chunk))
            .filter(reservations::updated_at.gt(since))
            .select((reservation_lines::sku, reservation_lines::qty))
            .load(conn)?;
        for (sku, qty) in rows {
            *units.entry(sku).or_default() += i64::from(qty);
        }
    }
    Ok(units)
}
