//! Products the storefront pushes. Every change adds a task to send it to the warehouse (in the same
//! transaction), unless one is still open.

pub mod export;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::schema::products;
use crate::db::{self, DbConnection};
use crate::outbound;
use crate::validate::{Invalid, check_len, check_sku};
use export::{self as tasks, PRODUCT_MERGE};

/// A product as the storefront sends it (`PUT /api/v1/products/{sku}`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProductInput {
    /// Name.
    pub name: String,
    /// Barcode (EAN, UPC…).
    #[serde(default)]
    pub barcode: Option<String>,
    /// Weight.
    #[serde(default)]
    pub weight: Option<Decimal>,
    /// Unit of the weight, e.g. `kg`.
    #[serde(default)]
    pub weight_unit: Option<String>,
    /// Selling price.
    #[serde(default)]
    pub price: Option<Decimal>,
    /// Cost price.
    #[serde(default)]
    pub cost: Option<Decimal>,
    /// Tax class or code.
    #[serde(default)]
    pub tax_code: Option<String>,
    /// Length.
    #[serde(default)]
    pub length: Option<Decimal>,
    /// Width.
    #[serde(default)]
    pub width: Option<Decimal>,
    /// Height.
    #[serde(default)]
    pub height: Option<Decimal>,
    /// Unit of the dimensions, e.g. `cm`.
    #[serde(default)]
    pub dimension_unit: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
}

impl ProductInput {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), Invalid> {
        check_len("name", &self.name, 1, 255)?;
        if let Some(b) = &self.barcode {
            check_len("barcode", b, 1, 64)?;
        }
        for (field, v) in [
            ("weight", self.weight),
            ("price", self.price),
            ("cost", self.cost),
            ("length", self.length),
            ("width", self.width),
            ("height", self.height),
        ] {
            if v.is_some_and(|v| v.is_sign_negative()) {
                return Err(Invalid::new(field, "must not be negative"));
            }
        }
        Ok(())
    }
}

/// A product as wharf knows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProductView {
    /// SKU.
    pub sku: String,
    /// What the storefront sent.
    #[serde(flatten)]
    pub product: ProductInput,
    /// When the storefront last changed it.
    pub updated_at: DateTime<Utc>,
    /// Whether the change still has to be sent to the warehouse.
    pub export_pending: bool,
    /// When it was last sent.
    pub exported_at: Option<DateTime<Utc>>,
}

/// Creates or replaces a product and marks it pending export (waking continuous exporters). Returns
/// whether it was created.
pub fn upsert(
    conn: &mut DbConnection,
    sku: &str,
    input: &ProductInput,
) -> Result<bool, ProductError> {
    check_sku("sku", sku)?;
    input.validate()?;
    let document = serde_json::to_string(input)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    let now = db::now();
    db::write_tx(conn, |conn| {
        let updated = diesel::update(products::table.find(sku))
            .set((
                products::name.eq(&input.name),
                products::document.eq(&document),
                products::updated_at.eq(now),
            ))
            .execute(conn)?;
        if updated == 0 {
            diesel::insert_into(products::table)
                .values((
                    products::sku.eq(sku),
                    products::name.eq(&input.name),
                    products::document.eq(&document),
                    products::updated_at.eq(now),
                ))
                .execute(conn)?;
        }
        tasks::product_changed(conn, sku, now)?;
        Ok(updated == 0)
    })
    .inspect(|_| crate::outbound::wake_exporters())
}

/// A product row as stored.
#[derive(Queryable)]
struct ProductRow {
    sku: String,
    document: String,
    updated_at: NaiveDateTime,
    exported_at: Option<NaiveDateTime>,
}

impl ProductRow {
    /// The view, `export_pending` when the product has an open task.
    fn into_view(self, export_pending: bool) -> Result<ProductView, ProductError> {
        Ok(ProductView {
            sku: self.sku,
            product: serde_json::from_str(&self.document)
                .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?,
            updated_at: self.updated_at.and_utc(),
            export_pending,
            exported_at: self.exported_at.map(|t| t.and_utc()),
        })
    }
}

/// Reads a product.
pub fn get(conn: &mut DbConnection, sku: &str) -> Result<Option<ProductView>, ProductError> {
    let row: Option<ProductRow> = products::table
        .find(sku)
        .select((
            products::sku,
            products::document,
            products::updated_at,
            products::exported_at,
        ))
        .first(conn)
        .optional()?;
    let Some(row) = row else {
        return Ok(None);
    };
    let pending = !outbound::open_among(conn, PRODUCT_MERGE, &[sku])?.is_empty();
    row.into_view(pending).map(Some)
}

/// Where a product listing page ends: the (`updated_at`, SKU) of its last product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductPosition {
    /// When the product last changed.
    pub updated_at: NaiveDateTime,
    /// Its SKU (breaks ties between products changed in the same microsecond).
    pub sku: String,
}

/// The products in a listing page, and the position of its last one.
#[derive(Debug, Clone)]
pub struct ProductPage {
    /// Products, least recently changed first.
    pub products: Vec<ProductView>,
    /// Position of the last product, when the page is full (more may follow).
    pub next: Option<ProductPosition>,
}

/// Up to `limit` products changed strictly after `updated_after` (if given), ordered by
/// (`updated_at`, SKU), strictly after `after`. Keyset paging, as for orders: a product changed
/// while a client pages through moves behind the client's position and comes again later.
pub fn list(
    conn: &mut DbConnection,
    updated_after: Option<DateTime<Utc>>,
    after: Option<&ProductPosition>,
    limit: i64,
) -> Result<ProductPage, ProductError> {
    let mut query = products::table
        .select((
            products::sku,
            products::document,
            products::updated_at,
            products::exported_at,
        ))
        .order((products::updated_at, products::sku))
        .limit(limit)
        .into_boxed();
    if let Some(t) = updated_after {
        query = query.filter(products::updated_at.gt(t.naive_utc()));
    }
    if let Some(p) = after {
        query = query.filter(
            products::updated_at
                .gt(p.updated_at)
                .or(products::updated_at
                    .eq(p.updated_at)
                    .and(products::sku.gt(p.sku.clone()))),
        );
    }
    let rows: Vec<ProductRow> = query.load(conn)?;
    let next = match rows.last() {
        Some(last) if rows.len() as i64 == limit => Some(ProductPosition {
            updated_at: last.updated_at,
            sku: last.sku.clone(),
        }),
        _ => None,
    };
    let skus: Vec<&str> = rows.iter().map(|r| r.sku.as_str()).collect();
    let pending = outbound::open_among(conn, PRODUCT_MERGE, &skus)?;
    let products = rows
        .into_iter()
        .map(|r| {
            let p = pending.contains(&r.sku);
            r.into_view(p)
        })
        .collect::<Result<_, _>>()?;
    Ok(ProductPage { products, next })
}

/// Whether a SKU is in the catalogue.
pub fn exists(conn: &mut DbConnection, sku: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(products::table.find(sku))).get_result(conn)
}

/// A product request that failed.
#[derive(Debug, thiserror::Error)]
pub enum ProductError {
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// Storage failed.
    #[error("database error: {0}")]
    Db(#[from] diesel::result::Error),
}
