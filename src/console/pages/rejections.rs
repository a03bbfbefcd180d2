//! The console's rejections page (being built).

use actix_web::web;

/// Registers the page's routes.
pub fn routes(_cfg: &mut web::ServiceConfig) {}
