//! `/api/v1/reservations/{quote_id}`: cart reservations.

use actix_web::{HttpResponse, web};

use super::{ApiError, Problem, on_pool, parse_json, path_key};
use crate::http::AppState;
use crate::http::body::Body;
use crate::reservations::{self, ReservationInput};

/// Create or replace a cart reservation.
#[utoipa::path(put, path = "/api/v1/reservations/{quote_id}", tag = "reservations",
    params(("quote_id" = String, Path, description = "cart (quote) id")),
    request_body = ReservationInput,
    responses((status = 204, description = "Stored"),
        (status = 422, description = "A field is missing or wrong (`invalid_field`) or the body is not JSON (`malformed_json`)", body = Problem)),
    security(("bearer" = [])))]
pub(super) async fn put_reservation(
    path: web::Path<String>,
    body: Body,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let quote = path_key("quote_id", path)?;
    let input: ReservationInput = parse_json(&body)?;
    on_pool(&state, move |conn| {
        Ok(reservations::upsert(conn, &quote, &input)?)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Delete a cart reservation (checkout finished or cart abandoned).
#[utoipa::path(delete, path = "/api/v1/reservations/{quote_id}", tag = "reservations",
    params(("quote_id" = String, Path, description = "cart (quote) id")),
    responses((status = 204, description = "Deleted"),
        (status = 404, description = "No such reservation (`not_found`)", body = Problem)),
    security(("bearer" = [])))]
pub(super) async fn delete_reservation(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let quote = path_key("quote_id", path)?;
    on_pool(&state, move |conn| {
        if reservations::delete(conn, &quote)? {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!(
                "reservation {quote:?} does not exist"
            )))
        }
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
