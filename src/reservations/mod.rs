//! Cart reservations (active quotes) the storefront keeps up to date; inventory adjustment subtracts
//! them from what the warehouse reports when `adjust = "unsent_orders_and_quotes"`.

use std::collections::HashSet;

pub mod store;

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::{self, DbConnection};
use crate::validate::{Invalid, check_key, check_sku, check_time};

/// Units of a SKU in a cart.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReservationLine {
    /// SKU.
    pub sku: String,
    /// Units (> 0).
    pub qty: i32,
}

/// A cart (`PUT /api/v1/reservations/{quote_id}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReservationInput {
    /// What the cart holds; an empty list empties it.
    pub lines: Vec<ReservationLine>,
    /// When the cart last changed (defaults to now); carts older than `active_quote_cutoff_days` no
    /// longer count.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

/// Most lines in one cart.
pub const MAX_LINES: usize = 1000;

/// Creates or replaces a cart.
pub fn upsert(
    conn: &mut DbConnection,
    quote_id: &str,
    input: &ReservationInput,
) -> Result<(), ReservationError> {
    check_key("quote_id", quote_id)?;
    if input.lines.len() > MAX_LINES {
        return Err(Invalid::new("lines", format!("at most {MAX_LINES} lines")).into());
    }
    if let Some(t) = input.updated_at {
        check_time("updated_at", t)?;
    }
    let mut seen = HashSet::new();
    for (i, l) in input.lines.iter().enumerate() {
        check_sku(&format!("lines[{i}].sku"), &l.sku)?;
        if l.qty <= 0 {
            return Err(Invalid::new(
                format!("lines[{i}].qty"),
                format!("{} is not a quantity above 0", l.qty),
            )
            .into());
        }
        if !seen.insert(l.sku.as_str()) {
            return Err(Invalid::new(
                format!("lines[{i}].sku"),
                format!("SKU {:?} is listed twice", l.sku),
            )
            .into());
        }
    }
    let at = input
        .updated_at
        .map(|t| t.naive_utc())
        .unwrap_or_else(db::now);
    db::write_tx(conn, |conn| {
        store::replace(conn, quote_id, &input.lines, at)
    })?;
    Ok(())
}

/// Deletes a cart; returns whether it existed.
pub fn delete(conn: &mut DbConnection, quote_id: &str) -> QueryResult<bool> {
    store::delete(conn, quote_id)
}

/// A reservation request that failed.
#[derive(Debug, thiserror::Error)]
pub enum ReservationError {
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// Storage failed.
    #[error("database error: {0}")]
    Db(#[from] diesel::result::Error),
}
