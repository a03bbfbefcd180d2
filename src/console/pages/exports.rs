//! The console's exports page (being built).

use actix_web::web;

/// Registers the page's routes.
pub fn routes(_cfg: &mut web::ServiceConfig) {}
