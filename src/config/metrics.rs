//! The `[metrics]` section: who may read `GET /metrics`.

use serde::{Deserialize, Serialize};

/// `GET /metrics` (Prometheus text format). `Debug` hides the token.
#[derive(Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// A bearer token the scraper sends (`Authorization: Bearer …`). Unset: only clients on
    /// loopback may read the metrics.
    pub token: Option<String>,
}

impl std::fmt::Debug for MetricsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsSettings")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}
