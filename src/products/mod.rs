//! Products the storefront pushes. Every change marks the product pending export to the warehouse.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::schema::products;
use crate::db::{self, DbConnection};
use crate::validate::{Invalid, check_len, check_sku};

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
    /// When it last changed.
    pub updated_at: NaiveDateTime,
    /// Whether the change still has to be sent to the warehouse.
    pub export_pending: bool,
    /// When it was last sent.
    pub exported_at: Option<NaiveDateTime>,
}

/// Creates or replaces a product and marks it pending export. Returns whether it was created.
pub fn upsert(
    conn: &mut DbConnection,
    sku: &str,
    input: &ProductInput,
) -> Result<bool, ProductError> {
    check_sku("sku", sku)?;
    input.validate()?;
    let document = serde_json::to_string(input).expect("products serialise");
    let now = db::now();
    db::write_tx(conn, |conn| {
        let updated = diesel::update(products::table.find(sku))
            .set((
                products::name.eq(&input.name),
                products::document.eq(&document),
                products::updated_at.eq(now),
                products::export_pending.eq(true),
            ))
            .execute(conn)?;
        if updated == 1 {
            return Ok(false);
        }
        diesel::insert_into(products::table)
            .values((
                products::sku.eq(sku),
                products::name.eq(&input.name),
                products::document.eq(&document),
                products::updated_at.eq(now),
                products::export_pending.eq(true),
            ))
            .execute(conn)?;
        Ok(true)
    })
}

/// Reads a product.
pub fn get(conn: &mut DbConnection, sku: &str) -> Result<Option<ProductView>, ProductError> {
    let row: Option<(String, String, NaiveDateTime, bool, Option<NaiveDateTime>)> = products::table
        .find(sku)
        .select((
            products::sku,
            products::document,
            products::updated_at,
            products::export_pending,
            products::exported_at,
        ))
        .first(conn)
        .optional()?;
    Ok(match row {
        None => None,
        Some((sku, document, updated_at, export_pending, exported_at)) => Some(ProductView {
            sku,
            product: serde_json::from_str(&document)
                .map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))?,
            updated_at,
            export_pending,
            exported_at,
        }),
    })
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
