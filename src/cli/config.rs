//! `wharf config`: what wharf would run with, and the documented defaults.

use std::path::Path;

use crate::config::{Settings, defaults_toml, effective_toml};

/// Prints the effective settings (secrets redacted), then refuses — exit 1, one line per problem —
/// when they would not start.
pub(super) fn show(settings: &Settings, file: Option<&Path>) -> anyhow::Result<()> {
    let source = match file {
        Some(p) => p.display().to_string(),
        None => "no settings file".to_string(),
    };
    print!("{}", effective_toml(settings, &source));
    settings.validate()?;
    Ok(())
}

/// Prints a complete, commented `wharf.toml` holding the defaults.
pub(super) fn defaults() {
    print!("{}", defaults_toml());
}
