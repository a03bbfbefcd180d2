//! The console's one error type: every failure a page or action can have, mapped once to an HTML
//! page that says what happened and what to do.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

/// What went wrong while serving a console page or action.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No such record (`what` names it, e.g. "request 17").
    #[error("{0} does not exist (it may have been deleted by retention).")]
    NotFound(String),
    /// A query-string or form value the page cannot use; `field` names it.
    #[error("{field}: {message}")]
    BadInput {
        /// The parameter at fault.
        field: String,
        /// Why, and what is accepted.
        message: String,
    },
    /// The user may not do this (a viewer posting an action, a form from another site).
    #[error("{0}")]
    Forbidden(String),
    /// The action no longer fits what is stored (e.g. the records matching a filter changed).
    #[error("{0}")]
    Conflict(String),
    /// The database or something else failed; details are in the server log.
    #[error("{0}")]
    Internal(String),
}

impl ConsoleError {
    /// A bad value of `field`.
    pub fn bad(field: &str, message: impl Into<String>) -> ConsoleError {
        ConsoleError::BadInput {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// Logs `e` and returns an error page that points at the log.
    pub fn internal(e: impl std::fmt::Display) -> ConsoleError {
        tracing::error!(error = %e, "console page failed");
        ConsoleError::Internal(
            "wharf could not read or write its database just now; the server log has the details. \
             Try again in a moment."
                .into(),
        )
    }
}

impl From<anyhow::Error> for ConsoleError {
    fn from(e: anyhow::Error) -> ConsoleError {
        ConsoleError::internal(format!("{e:#}"))
    }
}

impl From<diesel::result::Error> for ConsoleError {
    fn from(e: diesel::result::Error) -> ConsoleError {
        ConsoleError::internal(e)
    }
}

impl From<askama::Error> for ConsoleError {
    fn from(e: askama::Error) -> ConsoleError {
        ConsoleError::internal(e)
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: String,
}

impl ResponseError for ConsoleError {
    fn status_code(&self) -> StatusCode {
        match self {
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::BadInput { .. } => StatusCode::BAD_REQUEST,
            ConsoleError::Forbidden(_) => StatusCode::FORBIDDEN,
            ConsoleError::Conflict(_) => StatusCode::CONFLICT,
            ConsoleError::Internal(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let title = match self {
            ConsoleError::NotFound(_) => "Not found",
            ConsoleError::BadInput { .. } => "This page cannot be shown with these values",
            ConsoleError::Forbidden(_) => "Not allowed",
            ConsoleError::Conflict(_) => "Nothing was changed",
            ConsoleError::Internal(_) => "Something went wrong",
        };
        let page = ErrorPage {
            title,
            message: self.to_string(),
        };
        let body = page.render().unwrap_or_else(|_| format!("{title}: {self}"));
        HttpResponse::build(self.status_code())
            .content_type("text/html; charset=utf-8")
            .body(body)
    }
}
