//! The configuration checks: the settings parse and validate, and every secret a feature in use
//! needs is present (reported as present or missing, never shown).

use std::path::Path;

use super::Finding;
use crate::config::Settings;

/// Where the settings came from, for the configuration line.
fn source(file: Option<&Path>) -> String {
    match file {
        Some(p) => p.display().to_string(),
        None => "no settings file (built-in defaults and environment)".to_string(),
    }
}

/// The settings did not parse: the one finding there is, since nothing else can be checked.
pub fn unparsable(error: &dyn std::fmt::Display) -> Finding {
    Finding::fail(
        "configuration",
        format!("{error:#}; fix it, then run wharf check again"),
    )
}

/// The settings parsed; do they validate (what `serve` and `worker` refuse to start with)?
pub fn configuration(settings: &Settings, file: Option<&Path>) -> Finding {
    let from = source(file);
    match settings.validate() {
        Ok(()) => Finding::ok("configuration", format!("{from}: parses and validates")),
        Err(invalid) => {
            let problems: Vec<String> = invalid.to_string().lines().map(str::to_owned).collect();
            Finding::fail(
                "configuration",
                format!(
                    "{from}: {}; serve and worker refuse to start until this is fixed",
                    problems.join("; ")
                ),
            )
        }
    }
}

/// Every secret a feature in use needs, by setting name: which are present, which are missing.
pub fn secrets(settings: &Settings) -> Finding {
    let w = &settings.warehouse;
    let a = &settings.alerts;
    let exports_on = w.orders.enabled || w.products.enabled;
    let mut present = Vec::new();
    let mut missing = Vec::new();
    let mut unused = Vec::new();
    let mut need = |key: &'static str, wanted: bool, value: &str| match (wanted, value.is_empty()) {
        (true, false) => present.push(key),
        (true, true) => missing.push(key),
        (false, false) => unused.push(key),
        (false, true) => {}
    };
    need("warehouse.password", exports_on, &w.password);
    need(
        "alerts.smtp_password",
        a.mails_on() && !a.smtp_username.is_empty(),
        &a.smtp_password,
    );
    if let Some(token) = &settings.metrics.token {
        need("metrics.token", true, token);
    }
    if !missing.is_empty() {
        let vars: Vec<String> = missing
            .iter()
            .map(|k| format!("{k} ({})", crate::config::env_var(k)))
            .collect();
        return Finding::fail(
            "secrets",
            format!(
                "missing: {}; set them in the settings file or the environment",
                vars.join(", ")
            ),
        );
    }
    let mut detail = if present.is_empty() {
        "none needed by the features in use".to_string()
    } else {
        format!("present: {}", present.join(", "))
    };
    if !unused.is_empty() {
        detail.push_str(&format!(
            "; set but unused: {} (its feature is off)",
            unused.join(", ")
        ));
    }
    Finding::ok("secrets", detail)
}
