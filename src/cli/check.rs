//! `wharf check`: runs [`crate::check`] and prints one line per finding; fails (exit code 1) when
//! any check failed.

use std::path::Path;

use crate::check::{self, Finding, Status};
use crate::config::Settings;

/// Loads the settings itself (a file that does not parse is a finding, not an early exit), checks,
/// and prints every finding before saying whether any failed.
pub fn check(config: Option<&Path>, test_mail: Option<&str>) -> anyhow::Result<()> {
    let findings = match Settings::load_with_file(config) {
        Ok((settings, file)) => {
            crate::telemetry::init(settings.log_json);
            match super::runtime() {
                Ok(rt) => rt.block_on(check::run(&settings, file.as_deref(), test_mail)),
                Err(e) => vec![Finding::fail("wharf", format!("cannot start ({e})"))],
            }
        }
        Err(e) => vec![check::unparsable(&e)],
    };
    for f in &findings {
        println!("{f}");
    }
    let failed = findings.iter().filter(|f| f.status == Status::Fail).count();
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed; see the FAIL lines above");
    }
    Ok(())
}
