//! The console's pages, one module per section, each registering its own routes under `/admin`.

pub mod audit;
pub mod channels;
pub mod dashboard;
pub mod exports;
pub mod files;
pub mod imports;
pub mod lost;
pub mod orders;
pub mod rejections;
pub mod requests;
pub mod search;
pub mod stock;

use actix_web::web;

/// Registers every page.
pub fn routes(cfg: &mut web::ServiceConfig) {
    dashboard::routes(cfg);
    requests::routes(cfg);
    rejections::routes(cfg);
    search::routes(cfg);
    imports::routes(cfg);
    exports::routes(cfg);
    stock::routes(cfg);
    lost::routes(cfg);
    channels::routes(cfg);
    files::routes(cfg);
    orders::routes(cfg);
    audit::routes(cfg);
}
