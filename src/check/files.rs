//! The file channels' check: each `kind = "sftp"` channel's server answers, shows the expected host
//! key, accepts the login, and has the folders wharf works in — within the channel's timeout.

use std::time::Instant;

use super::Finding;
use crate::channels::sftp::client::{self, HostKeyPolicy, Remote};
use crate::config::{ChannelSettings, Settings};
use crate::db;

/// One finding per file channel (none when there is none).
pub async fn checks(settings: &Settings) -> Vec<Finding> {
    let mut findings = Vec::new();
    for c in settings.file_channels() {
        findings.push(check(settings, c).await);
    }
    findings
}

async fn check(settings: &Settings, c: &ChannelSettings) -> Finding {
    let name = format!("channel {}", c.name);
    let policy = HostKeyPolicy::of(c, kept_key(settings, c).await);
    let started = Instant::now();
    let remote = match client::connect(c, policy).await {
        Ok(r) => r,
        Err(e) => return Finding::fail(name, e.to_string()),
    };
    let took = started.elapsed().as_millis();
    let folders = folders(&remote, c).await;
    remote.close().await;
    match folders {
        Ok(list) => Finding::ok(
            name,
            format!(
                "{}:{} answered in {took} ms, host key {} as expected, logged in as {}; {list}",
                c.host,
                c.port,
                short(&c.host_key_fingerprint, c),
                c.user
            ),
        ),
        Err(why) => Finding::fail(name, why),
    }
}

/// The fingerprint shown in the line: the pinned one, or the policy's name.
fn short<'a>(pinned: &'a str, c: &ChannelSettings) -> &'a str {
    if !pinned.is_empty() {
        pinned
    } else if !c.known_hosts.is_empty() {
        "(listed in known_hosts)"
    } else {
        "(trusted on first use)"
    }
}

/// The key a trust-on-first-use channel kept, read from the database when it can be (a check never
/// writes one: the first real run does).
async fn kept_key(settings: &Settings, c: &ChannelSettings) -> Option<String> {
    if !(c.known_hosts.is_empty() && c.host_key_fingerprint.is_empty()) {
        return None;
    }
    let (url, name) = (settings.database_url.clone(), c.name.clone());
    tokio::task::spawn_blocking(move || {
        let pool = db::connect_existing(&url, 1).ok()?;
        let mut conn = pool.get().ok()?;
        crate::channels::sftp::store::first_seen_key(&mut conn, &name).ok()?
    })
    .await
    .ok()?
}

/// Whether the export and import folders exist: "export_dir out/ and import_dir in/ exist".
async fn folders(remote: &Remote, c: &ChannelSettings) -> Result<String, String> {
    let mut seen = Vec::new();
    for (field, dir) in [("export_dir", &c.export_dir), ("import_dir", &c.import_dir)] {
        if dir.is_empty() {
            continue;
        }
        match remote.dir_exists(dir).await {
            Ok(true) => seen.push(format!("{field} {dir} exists")),
            Ok(false) => {
                return Err(format!(
                    "{field} {dir:?} does not exist on {}: create it on the server or correct \
                     channels.{field}",
                    c.host
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(seen.join(", "))
}
