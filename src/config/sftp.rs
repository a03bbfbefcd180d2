//! The checks of a `kind = "sftp"` channel: a server to reach, one way to log in, one host key
//! policy, and at least one folder to exchange files in.

use super::channels::ChannelSettings;
use crate::outbound::runner::Schedule;

/// Refuses an SFTP channel that cannot work, naming the setting (`channels[2].host`).
pub(super) fn validate(
    c: &ChannelSettings,
    key: &impl Fn(&str) -> String,
    refuse: &mut impl FnMut(&str, String),
) {
    server(c, key, refuse);
    login(c, key, refuse);
    host_key(c, key, refuse);
    folders(c, key, refuse);
    limits(c, key, refuse);
    for (field, set) in [
        ("base_url", !c.base_url.is_empty()),
        ("token", !c.token.is_empty()),
        ("secret", !c.secret.is_empty()),
        ("store_id", !c.store_id.is_empty()),
        ("actions", c.actions.as_ref().is_some_and(|a| !a.is_empty())),
    ] {
        if set {
            refuse(
                &key(field),
                format!(
                    "an sftp channel has no {field}; it belongs to shoppingfeed and http channels"
                ),
            );
        }
    }
}

fn server(
    c: &ChannelSettings,
    key: &impl Fn(&str) -> String,
    refuse: &mut impl FnMut(&str, String),
) {
    if c.host.trim().is_empty() {
        refuse(
            &key("host"),
            "the SFTP server's host name or address is required".into(),
        );
    }
    if c.port == 0 {
        refuse(&key("port"), "must be a TCP port (1 to 65535)".into());
    }
}

fn login(
    c: &ChannelSettings,
    key: &impl Fn(&str) -> String,
    refuse: &mut impl FnMut(&str, String),
) {
    if c.user.trim().is_empty() {
        refuse(&key("user"), "the login name is required".into());
    }
    match (c.key_file.is_empty(), c.password.is_empty()) {
        (true, true) => refuse(
            &key("key_file"),
            format!(
                "set key_file (a private key) or password (or {}) to log in with",
                c.secret_var("PASSWORD")
            ),
        ),
        (false, false) => refuse(
            &key("password"),
            "set key_file or password, not both".into(),
        ),
        (false, true) => {
            if let Err(e) = std::fs::metadata(&c.key_file) {
                refuse(
                    &key("key_file"),
                    format!("{:?} cannot be read: {e}", c.key_file),
                );
            }
        }
        (true, false) => {}
    }
}

fn host_key(
    c: &ChannelSettings,
    key: &impl Fn(&str) -> String,
    refuse: &mut impl FnMut(&str, String),
) {
    let policies = [
        !c.known_hosts.is_empty(),
        !c.host_key_fingerprint.is_empty(),
        c.trust_on_first_use,
    ];
    if policies.iter().filter(|p| **p).count() != 1 {
        refuse(
            &key("known_hosts"),
            "choose exactly one host key policy: known_hosts (a file), host_key_fingerprint \
             (SHA256:…) or trust_on_first_use = true"
                .into(),
        );
    }
    if !c.known_hosts.is_empty()
        && let Err(e) = std::fs::metadata(&c.known_hosts)
    {
        refuse(
            &key("known_hosts"),
            format!("{:?} cannot be read: {e}", c.known_hosts),
        );
    }
    let fp = &c.host_key_fingerprint;
    if !fp.is_empty() && !is_sha256_fingerprint(fp) {
        refuse(
            &key("host_key_fingerprint"),
            format!(
                "{fp:?} is not a SHA256 fingerprint such as SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s (ssh-keygen -lf prints it)"
            ),
        );
    }
}

/// `SHA256:` and 43 characters of unpadded base64 (32 bytes).
fn is_sha256_fingerprint(fp: &str) -> bool {
    fp.strip_prefix("SHA256:").is_some_and(|b64| {
        b64.len() == 43
            && b64
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '+' || ch == '/')
    })
}

fn folders(
    c: &ChannelSettings,
    key: &impl Fn(&str) -> String,
    refuse: &mut impl FnMut(&str, String),
) {
    if c.export_dir.is_empty() && c.import_dir.is_empty() {
        refuse(
            &key("export_dir"),
            "set export_dir (order files out), import_dir (shipment files in), or both".into(),
        );
    }
    if !c.export_dir.is_empty() && c.export_dir == c.import_dir {
        refuse(
            &key("import_dir"),
            "must differ from export_dir: wharf would read its own order files".into(),
        );
    }
    for (field, schedule) in [
        ("export_schedule", &c.export_schedule),
        ("import_schedule", &c.import_schedule),
    ] {
        if let Err(e) = Schedule::parse(schedule) {
            refuse(
                &key(field),
                format!("{schedule:?} is neither continuous nor a cron expression: {e}"),
            );
        }
    }
    if c.file_pattern.trim().is_empty() || c.file_pattern.contains('/') {
        refuse(
            &key("file_pattern"),
            format!(
                "{:?} is not a file name pattern such as \"*.xml\"",
                c.file_pattern
            ),
        );
    }
}

fn limits(
    c: &ChannelSettings,
    key: &impl Fn(&str) -> String,
    refuse: &mut impl FnMut(&str, String),
) {
    if !(1..=1 << 30).contains(&c.max_file_bytes) {
        refuse(
            &key("max_file_bytes"),
            "must be between 1 and 1073741824 (1 GiB)".into(),
        );
    }
    if !(1..=10_000).contains(&c.batch_size) {
        refuse(
            &key("batch_size"),
            "must be between 1 and 10000 orders per file".into(),
        );
    }
    if c.timeout_secs == 0 || c.poll_secs == 0 {
        refuse(
            &key("timeout_secs"),
            "timeout_secs and poll_secs must be at least 1 second".into(),
        );
    }
    if c.lease_secs < 10 || c.lease_secs < 2 * c.timeout_secs as i64 {
        refuse(
            &key("lease_secs"),
            "must be at least 10 seconds and twice timeout_secs, so a live exchange keeps its claim".into(),
        );
    }
    if c.max_attempts < 1 {
        refuse(&key("max_attempts"), "must be at least 1".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ChannelKind;

    fn sftp() -> ChannelSettings {
        ChannelSettings {
            name: "dropbox".into(),
            kind: ChannelKind::Sftp,
            host: "sftp.example.com".into(),
            user: "shop".into(),
            password: "pw".into(),
            trust_on_first_use: true,
            export_dir: "out".into(),
            import_dir: "in".into(),
            ..ChannelSettings::default()
        }
    }

    fn refused(c: &ChannelSettings) -> Vec<String> {
        let mut out = Vec::new();
        validate(c, &|f: &str| f.to_string(), &mut |k: &str, _m: String| {
            out.push(k.to_string())
        });
        out
    }

    #[test]
    fn a_complete_sftp_channel_passes() {
        assert!(refused(&sftp()).is_empty(), "{:?}", refused(&sftp()));
    }

    #[test]
    fn what_cannot_work_is_refused_naming_the_setting() {
        let bad = ChannelSettings {
            host: String::new(),
            password: String::new(),
            host_key_fingerprint: "MD5:aa".into(),
            import_dir: "out".into(),
            export_schedule: "every minute".into(),
            file_pattern: "a/b".into(),
            base_url: "https://x".into(),
            ..sftp()
        };
        let keys = refused(&bad);
        for k in [
            "host",
            "key_file",
            "known_hosts",
            "host_key_fingerprint",
            "import_dir",
            "export_schedule",
            "file_pattern",
            "base_url",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} not refused: {keys:?}");
        }
    }

    #[test]
    fn fingerprints_are_checked_by_shape() {
        assert!(is_sha256_fingerprint(
            "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"
        ));
        assert!(!is_sha256_fingerprint("SHA256:short"));
        assert!(!is_sha256_fingerprint(
            "uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"
        ));
    }
}
