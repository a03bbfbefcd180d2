//! API errors: each answered as RFC 9457 problem JSON with a stable `code`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::PROBLEM_JSON;
use crate::orders::{self, OrderError};
use crate::products::ProductError;
use crate::reservations::ReservationError;
use crate::validate::Invalid;

/// An API error, answered as problem JSON with a stable `code`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or unknown bearer token.
    #[error(
        "a valid bearer token is required: send `Authorization: Bearer <token>` (create one with `wharf tokens add NAME`)"
    )]
    Unauthorized,
    /// A field is missing or wrong.
    #[error("invalid {0}")]
    Invalid(Invalid),
    /// The body is not JSON at all.
    #[error("the body is not valid JSON: {0}")]
    Malformed(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The change contradicts the current state.
    #[error("{0}")]
    Conflict(String),
    /// An order rule refuses the change (`order_locked`, `order_canceled`, `order_complete`,
    /// `order_split`, `order_exists`).
    #[error(transparent)]
    OrderRefused(orders::Refusal),
    /// Something on wharf's side failed.
    #[error("wharf could not answer because of an internal error; try again")]
    Internal,
    /// A query parameter does not parse.
    #[error("query parameter `{param}` is invalid: {reason}")]
    InvalidQuery {
        /// The parameter.
        param: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The feed cursor is beyond the newest event: the client's cursor comes from a wharf whose
    /// feed went further than this one (this database was restored from an older backup).
    #[error(
        "the cursor {after} is beyond the newest event of this feed ({head}): this wharf's database is \
         older than the cursor (restored from a backup?); events may have been lost. Reconcile with \
         GET /api/v1/orders?updated_after= and /api/v1/stock, then follow the feed from `head`"
    )]
    CursorAhead {
        /// The cursor given.
        after: i64,
        /// The newest event id.
        head: i64,
    },
    /// The feed cursor is older than what retention kept: events after it were deleted.
    #[error(
        "the cursor {after} is older than this feed keeps: events up to {through} were deleted by \
         retention (retention.feed_days), so some after your cursor are gone. Reconcile with \
         GET /api/v1/orders?updated_after= and /api/v1/stock, then follow the feed from `head`"
    )]
    CursorExpired {
        /// The cursor given.
        after: i64,
        /// The highest id deleted.
        through: i64,
        /// The newest event id.
        head: i64,
    },
    /// No route serves this path.
    #[error("no API route is {0}; see /api/v1/openapi.json for the routes")]
    UnknownRoute(String),
    /// The route exists but not for this method.
    #[error("{method} is not served here; this route serves {allow}")]
    MethodNotAllowed {
        /// The method asked for.
        method: String,
        /// The methods served, for the `Allow` header.
        allow: &'static str,
    },
    /// The body is larger than the API accepts.
    #[error("the body is larger than the {0} bytes the API accepts; send less")]
    BodyTooLarge(usize),
    /// Another client error actix answered before a handler ran.
    #[error("{detail}")]
    Http {
        /// Its status.
        status: StatusCode,
        /// What actix said.
        detail: String,
    },
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Invalid(_) => "invalid_field",
            ApiError::Malformed(_) => "malformed_json",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::OrderRefused(r) => r.code.as_str(),
            ApiError::Internal => "internal",
            ApiError::InvalidQuery { .. } => "invalid_query",
            ApiError::CursorAhead { .. } => "cursor_ahead",
            ApiError::CursorExpired { .. } => "cursor_expired",
            ApiError::UnknownRoute(_) => "unknown_route",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::BodyTooLarge(_) => "body_too_large",
            ApiError::Http { .. } => "http_error",
        }
    }

    /// Logs an unexpected failure and answers `500 internal` without its details.
    pub(super) fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "storefront API call failed");
        ApiError::Internal
    }
}

/// An RFC 9457 problem.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What happened and what to do.
    pub detail: String,
    /// Stable machine-readable code: `unauthorized` (401), `invalid_field` and `malformed_json`
    /// (422), `invalid_query` (400), `not_found` (404, the thing asked for does not exist),
    /// `unknown_route` (404, no such route), `method_not_allowed` (405), `conflict`,
    /// `cursor_ahead`, `order_locked`, `order_canceled`, `order_complete`, `order_split` and
    /// `order_exists` (409),
    /// `body_too_large` (413), `http_error` (another 4xx — 408 for a body too slow — or 503 when
    /// too many bodies arrive at once, with `Retry-After`), `internal` (500).
    #[schema(example = "invalid_field")]
    pub code: String,
    /// The field at fault: for `invalid_field` the JSON path of a body field (`lines[0].sku`) or
    /// the name of a path or query parameter (`increment_id`, `status`); for `invalid_query` the
    /// query parameter that does not parse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The newest feed id, for `cursor_ahead`: follow the feed from here after reconciling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<i64>,
    /// The JSON paths of the fields at fault, for `order_locked` and `order_split` (what differs
    /// from what the order holds), `order_canceled`/`order_complete` (`status`) and `order_exists`
    /// (the child's `children[i].increment_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Invalid(_) | ApiError::Malformed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) | ApiError::UnknownRoute(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::CursorAhead { .. } | ApiError::OrderRefused(_) => {
                StatusCode::CONFLICT
            }
            ApiError::CursorExpired { .. } => StatusCode::GONE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::InvalidQuery { .. } => StatusCode::BAD_REQUEST,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Http { status, .. } => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let body = Problem {
            kind: format!("https://wharf.dev/problems/{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: self.to_string(),
            code: self.code().to_string(),
            field: match self {
                ApiError::Invalid(i) => Some(i.field.clone()),
                ApiError::InvalidQuery { param, .. } => Some(param.clone()),
                _ => None,
            },
            head: match self {
                ApiError::CursorAhead { head, .. } | ApiError::CursorExpired { head, .. } => {
                    Some(*head)
                }
                _ => None,
            },
            fields: match self {
                ApiError::OrderRefused(r) if !r.fields.is_empty() => Some(r.fields.clone()),
                _ => None,
            },
        };
        let mut resp = HttpResponse::build(status);
        resp.content_type(PROBLEM_JSON);
        if status == StatusCode::UNAUTHORIZED {
            resp.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            resp.insert_header(("Allow", *allow));
        }
        resp.body(serde_json::to_string(&body).unwrap_or_default())
    }
}

impl From<Invalid> for ApiError {
    fn from(i: Invalid) -> Self {
        ApiError::Invalid(i)
    }
}

impl From<OrderError> for ApiError {
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::Invalid(i) => ApiError::Invalid(i),
            OrderError::NotFound(id) => ApiError::NotFound(format!("order {id:?} does not exist")),
            OrderError::Conflict(m) => ApiError::Conflict(m),
            OrderError::Refused(r) => ApiError::OrderRefused(r),
            OrderError::Db(e) => ApiError::internal(e),
            OrderError::Inconsistent(m) => ApiError::internal(m),
        }
    }
}

impl From<ProductError> for ApiError {
    fn from(e: ProductError) -> Self {
        match e {
            ProductError::Invalid(i) => ApiError::Invalid(i),
            ProductError::Db(e) => ApiError::internal(e),
        }
    }
}

impl From<ReservationError> for ApiError {
    fn from(e: ReservationError) -> Self {
        match e {
            ReservationError::Invalid(i) => ApiError::Invalid(i),
            ReservationError::Db(e) => ApiError::internal(e),
        }
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        ApiError::internal(e)
    }
}
