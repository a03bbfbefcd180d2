//! The `[[channels]]` tables: marketplaces and affiliate systems that hear back about the orders
//! they sent (status sync, see `crate::channels::sync`). One table per channel; each claims a set of
//! order sources.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// What a channel speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// A Shopping Feed–style marketplace API: order operations in batches, answered with a ticket
    /// that is polled until it succeeds or fails.
    Shoppingfeed,
    /// An affiliate system's HTTP API: one signed request per change (Standard Webhooks).
    Http,
    /// A warehouse or ERP that exchanges XML files on an SFTP server: order files out to
    /// `export_dir`, shipment files in from `import_dir` (see `crate::channels::sftp`).
    Sftp,
}

/// What a channel hears about an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelAction {
    /// A shipment (part of the order, or the rest of it) left; sent `ship_delay_secs` after the
    /// last shipment, carrying every tracking number.
    Ship,
    /// The order was cancelled (an unsent `ship` of it is dropped).
    Cancel,
    /// The order was refunded (status `refunded` or `closed`).
    Refund,
    /// Any other status change (`complete` when everything shipped, a storefront's new status).
    Status,
    /// The storefront changed what the order holds (the full order is sent).
    Edit,
    /// The order was split into child orders.
    Split,
}

impl ChannelAction {
    /// Every action.
    pub const ALL: [ChannelAction; 6] = [
        ChannelAction::Ship,
        ChannelAction::Cancel,
        ChannelAction::Refund,
        ChannelAction::Status,
        ChannelAction::Edit,
        ChannelAction::Split,
    ];

    /// The word used in settings and as the outbound task's action.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelAction::Ship => "ship",
            ChannelAction::Cancel => "cancel",
            ChannelAction::Refund => "refund",
            ChannelAction::Status => "status",
            ChannelAction::Edit => "edit",
            ChannelAction::Split => "split",
        }
    }

    /// Reads a task's action word.
    pub fn parse(word: &str) -> Option<ChannelAction> {
        ChannelAction::ALL.into_iter().find(|a| a.as_str() == word)
    }
}

impl ChannelKind {
    /// The actions a channel of this kind receives when `actions` is not set.
    pub fn default_actions(self) -> Vec<ChannelAction> {
        match self {
            ChannelKind::Shoppingfeed => vec![
                ChannelAction::Ship,
                ChannelAction::Cancel,
                ChannelAction::Refund,
            ],
            ChannelKind::Http => ChannelAction::ALL.to_vec(),
            ChannelKind::Sftp => Vec::new(),
        }
    }

    /// The actions this kind can send at all.
    pub fn supported(self) -> &'static [ChannelAction] {
        match self {
            ChannelKind::Shoppingfeed => &[
                ChannelAction::Ship,
                ChannelAction::Cancel,
                ChannelAction::Refund,
            ],
            ChannelKind::Http => &ChannelAction::ALL,
            // Files carry orders out and shipments in; no status pushes.
            ChannelKind::Sftp => &[],
        }
    }
}

/// What becomes of a shipment file once it is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnDone {
    /// Deleted from the server.
    Delete,
    /// Moved to `{import_dir}/archive/`.
    Archive,
}

/// One channel. `Debug` hides the token, the secret and the password. Secrets may also come from the
/// environment: `WHARF_CHANNEL_<NAME>_TOKEN`, `WHARF_CHANNEL_<NAME>_SECRET` and
/// `WHARF_CHANNEL_<NAME>_PASSWORD` (the name upper-cased, `-` as `_`), used when the file leaves
/// them empty. The fields from `host` on are those of `kind = "sftp"`.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelSettings {
    /// The channel's name (lowercase letters, digits, `-`, `_`), shown in the console and the CLI
    /// and used as the outbound queue's channel; not `warehouse` or `smtp`.
    pub name: String,
    /// `shoppingfeed`, `http` or `sftp`.
    pub kind: ChannelKind,
    /// The order sources it claims (`marketplace:amazon`, `affiliate`); a source belongs to at most
    /// one pushing channel. Orders of other sources (`web`) push nothing to it. For `sftp`: the
    /// sources whose orders go out in its files (empty: every order).
    pub sources: Vec<String>,
    /// Base URL of its API (`https://api.shopping-feed.com`, `https://affiliate.example.com/api`).
    pub base_url: String,
    /// Bearer token (`shoppingfeed`).
    pub token: String,
    /// Standard Webhooks secret `whsec_<base64>` (`http`): requests are signed with HMAC-SHA256
    /// keyed by the decoded bytes.
    pub secret: String,
    /// Store id (`shoppingfeed`).
    pub store_id: String,
    /// What it hears about: a list of `ship`, `cancel`, `refund`, `status`, `edit`, `split` (unset:
    /// `ship`, `cancel`, `refund` for `shoppingfeed`; all of them for `http`).
    pub actions: Option<Vec<ChannelAction>>,
    /// How long a `ship` waits after the order's last shipment, in seconds, so a tracking number
    /// can still arrive; every new shipment restarts the wait and one push carries them all.
    pub ship_delay_secs: u64,
    /// How often a ticket is read while it is `scheduled` or `running`, in seconds (the wait grows
    /// with each poll, up to ten times this).
    pub ticket_poll_secs: u64,
    /// A ticket that has not succeeded or failed this long after the push is given up on and the
    /// push is sent again, in seconds.
    pub ticket_deadline_secs: u64,
    /// Refusals (and failed tickets) before a task is declared lost and waits for support.
    pub max_attempts: i32,
    /// Most orders in one request (`shoppingfeed` allows 100).
    pub batch_size: usize,
    /// Seconds before a call is abandoned.
    pub timeout_secs: u64,
    /// First retry delay after a failure, in seconds; doubles per attempt.
    pub backoff_base_secs: i64,
    /// Longest retry delay, in seconds.
    pub backoff_ceiling_secs: i64,
    /// Consecutive calls without a usable answer (transport errors, 5xx) that pause the channel.
    pub breaker_threshold: i32,
    /// How long the channel pauses once its breaker opens, in seconds.
    pub breaker_pause_secs: i64,
    /// The SFTP server's host name or address (`sftp`).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The login.
    pub user: String,
    /// The private key file (OpenSSH format) to log in with; or `password`.
    pub key_file: String,
    /// The password to log in with, when there is no `key_file` (or
    /// `WHARF_CHANNEL_<NAME>_PASSWORD`).
    pub password: String,
    /// Host key policy, one of three: an OpenSSH `known_hosts` file that lists the server…
    pub known_hosts: String,
    /// …or the server key's fingerprint (`SHA256:…`, as `ssh-keygen -lf` prints it)…
    pub host_key_fingerprint: String,
    /// …or trust the key seen first and keep it (in the database). A key that differs from the
    /// expected one is always refused and alerted.
    pub trust_on_first_use: bool,
    /// The remote folder order files are written to (unset: no order files).
    pub export_dir: String,
    /// When order files are written: a cron expression or `continuous`.
    pub export_schedule: String,
    /// The remote folder shipment files are read from (unset: no shipment files). wharf uses
    /// `processing/`, `failed/` and `archive/` inside it, and creates them.
    pub import_dir: String,
    /// When the import folder is read: a cron expression or `continuous` (every
    /// `poll_secs`).
    pub import_schedule: String,
    /// How often a `continuous` import schedule reads the folder, in seconds.
    pub poll_secs: u64,
    /// Which shipment file names are read (`*` and `?` wildcards); temporary names (starting with
    /// `.`, ending in `.tmp`, `.part` or `.filepart`) never are.
    pub file_pattern: String,
    /// What becomes of an applied shipment file: `delete` or `archive`.
    pub on_done: OnDone,
    /// The largest shipment file read, in bytes; a larger one goes to `failed/`.
    pub max_file_bytes: u64,
    /// How long a claimed batch or file is held by one process before another may take it over,
    /// in seconds.
    pub lease_secs: i64,
}

impl Default for ChannelSettings {
    fn default() -> Self {
        ChannelSettings {
            name: String::new(),
            kind: ChannelKind::Http,
            sources: Vec::new(),
            base_url: String::new(),
            token: String::new(),
            secret: String::new(),
            store_id: String::new(),
            actions: None,
            ship_delay_secs: 300,
            ticket_poll_secs: 30,
            ticket_deadline_secs: 3600,
            max_attempts: 5,
            batch_size: 100,
            timeout_secs: 30,
            backoff_base_secs: 60,
            backoff_ceiling_secs: 3600,
            breaker_threshold: 5,
            breaker_pause_secs: 300,
            host: String::new(),
            port: 22,
            user: String::new(),
            key_file: String::new(),
            password: String::new(),
            known_hosts: String::new(),
            host_key_fingerprint: String::new(),
            trust_on_first_use: false,
            export_dir: String::new(),
            export_schedule: "*/15 * * * *".into(),
            import_dir: String::new(),
            import_schedule: "*/15 * * * *".into(),
            poll_secs: 60,
            file_pattern: "*.xml".into(),
            on_done: OnDone::Delete,
            max_file_bytes: 10 * 1024 * 1024,
            lease_secs: 300,
        }
    }
}

impl std::fmt::Debug for ChannelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |s: &str| if s.is_empty() { "" } else { "***" };
        f.debug_struct("ChannelSettings")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("sources", &self.sources)
            .field("base_url", &self.base_url)
            .field("token", &hidden(&self.token))
            .field("secret", &hidden(&self.secret))
            .field("store_id", &self.store_id)
            .field("actions", &self.actions)
            .field("ship_delay_secs", &self.ship_delay_secs)
            .field("ticket_poll_secs", &self.ticket_poll_secs)
            .field("max_attempts", &self.max_attempts)
            .field("batch_size", &self.batch_size)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &hidden(&self.password))
            .field("export_dir", &self.export_dir)
            .field("import_dir", &self.import_dir)
            .finish_non_exhaustive()
    }
}

/// Channel names wharf uses itself.
const RESERVED: [&str; 2] = ["warehouse", "smtp"];

impl ChannelSettings {
    /// The actions it receives (its `actions`, or its kind's defaults).
    pub fn actions(&self) -> Vec<ChannelAction> {
        self.actions
            .clone()
            .unwrap_or_else(|| self.kind.default_actions())
    }

    /// Whether it receives `action`.
    pub fn wants(&self, action: ChannelAction) -> bool {
        self.actions().contains(&action)
    }

    /// The Standard Webhooks key: the decoded bytes of `whsec_<base64>`.
    pub fn signing_key(&self) -> Option<Vec<u8>> {
        use base64::Engine;
        let b64 = self.secret.trim().strip_prefix("whsec_")?;
        base64::engine::general_purpose::STANDARD.decode(b64).ok()
    }

    /// The environment variable that may hold this channel's `what` (`TOKEN`, `SECRET`).
    pub fn secret_var(&self, what: &str) -> String {
        format!(
            "WHARF_CHANNEL_{}_{what}",
            self.name.to_ascii_uppercase().replace('-', "_")
        )
    }

    /// The word of its kind, as in the settings (`shoppingfeed`, `http`, `sftp`).
    pub fn kind_word(&self) -> &'static str {
        match self.kind {
            ChannelKind::Shoppingfeed => "shoppingfeed",
            ChannelKind::Http => "http",
            ChannelKind::Sftp => "sftp",
        }
    }

    /// Whether it exchanges files (`sftp`) rather than pushing status changes.
    pub fn is_files(&self) -> bool {
        self.kind == ChannelKind::Sftp
    }

    /// Fills an empty token, secret or password from the environment.
    pub(super) fn secrets_from_env(&mut self) {
        let vars = [
            self.secret_var("TOKEN"),
            self.secret_var("SECRET"),
            self.secret_var("PASSWORD"),
        ];
        let fields = [&mut self.token, &mut self.secret, &mut self.password];
        for (var, field) in vars.into_iter().zip(fields) {
            if field.is_empty()
                && let Ok(v) = std::env::var(var)
            {
                *field = v;
            }
        }
    }
}

/// Refuses channels that cannot work, naming the setting (`channels[0].secret`).
pub(super) fn validate(channels: &[ChannelSettings], refuse: &mut impl FnMut(&str, String)) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut claimed: HashMap<&str, &str> = HashMap::new();
    for (i, c) in channels.iter().enumerate() {
        let key = |field: &str| format!("channels[{i}].{field}");
        let name_ok = !c.name.is_empty()
            && c.name.len() <= 40
            && c.name
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "-_".contains(ch));
        if !name_ok {
            refuse(
                &key("name"),
                format!(
                    "{:?} is not a channel name: 1 to 40 lowercase letters, digits, - and _",
                    c.name
                ),
            );
        } else if RESERVED.contains(&c.name.as_str()) {
            refuse(
                &key("name"),
                format!("{:?} is wharf's own channel; choose another name", c.name),
            );
        } else if let Some(j) = names.insert(&c.name, i) {
            refuse(
                &key("name"),
                format!("{:?} is already the name of channels[{j}]", c.name),
            );
        }
        if c.is_files() {
            super::sftp::validate(c, &key, refuse);
            continue;
        }
        validate_one(c, &key, refuse);
        for s in &c.sources {
            if let Some(other) = claimed.insert(s, &c.name) {
                refuse(
                    &key("sources"),
                    format!("source {s:?} is already claimed by channel {other:?}"),
                );
            }
        }
    }
}

fn validate_one(
    c: &ChannelSettings,
    key: &impl Fn(&str) -> String,
    refuse: &mut impl FnMut(&str, String),
) {
    if c.sources.is_empty() {
        refuse(
            &key("sources"),
            "list the order sources it claims, e.g. [\"marketplace:amazon\"]".into(),
        );
    }
    if let Err(why) = reqwest::Url::parse(&c.base_url)
        .map_err(|e| e.to_string())
        .and_then(|u| match u.scheme() {
            "http" | "https" => Ok(()),
            s => Err(format!("the scheme {s:?} is not http or https")),
        })
    {
        refuse(
            &key("base_url"),
            format!("{:?} is not a URL ({why})", c.base_url),
        );
    }
    match c.kind {
        ChannelKind::Shoppingfeed => {
            if c.token.is_empty() {
                refuse(
                    &key("token"),
                    format!(
                        "the API's bearer token is required (or {})",
                        c.secret_var("TOKEN")
                    ),
                );
            }
            if c.store_id.is_empty() {
                refuse(&key("store_id"), "the store id is required".into());
            }
        }
        ChannelKind::Sftp => {}
        ChannelKind::Http => {
            if c.signing_key().is_none_or(|k| k.is_empty()) {
                refuse(
                    &key("secret"),
                    format!(
                        "a Standard Webhooks secret whsec_<base64> is required (or {})",
                        c.secret_var("SECRET")
                    ),
                );
            }
        }
    }
    for a in c.actions() {
        if !c.kind.supported().contains(&a) {
            refuse(
                &key("actions"),
                format!("a {:?} channel cannot send {:?}", c.kind, a.as_str()),
            );
        }
    }
    if c.max_attempts < 1 {
        refuse(&key("max_attempts"), "must be at least 1".into());
    }
    if !(1..=100).contains(&c.batch_size) {
        refuse(&key("batch_size"), "must be between 1 and 100".into());
    }
    if c.ticket_poll_secs == 0 || c.timeout_secs == 0 {
        refuse(
            &key("ticket_poll_secs"),
            "ticket_poll_secs and timeout_secs must be at least 1 second".into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn affiliate() -> ChannelSettings {
        ChannelSettings {
            name: "partners".into(),
            kind: ChannelKind::Http,
            sources: vec!["affiliate".into()],
            base_url: "https://affiliate.example.com/api".into(),
            secret: "whsec_c2VjcmV0LWtleS1ieXRlcw==".into(),
            ..ChannelSettings::default()
        }
    }

    fn problems(channels: &[ChannelSettings]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        validate(channels, &mut |k: &str, m: String| {
            out.push((k.to_string(), m))
        });
        out
    }

    #[test]
    fn a_complete_channel_passes_and_its_secret_decodes() {
        let c = affiliate();
        assert!(problems(std::slice::from_ref(&c)).is_empty());
        assert_eq!(c.signing_key().as_deref(), Some(&b"secret-key-bytes"[..]));
        assert_eq!(c.actions(), ChannelAction::ALL.to_vec());
        assert!(!format!("{c:?}").contains("whsec_"));
    }

    #[test]
    fn what_cannot_work_is_refused_naming_the_setting() {
        let mut bad = affiliate();
        bad.secret = "not-a-whsec".into();
        bad.base_url = "ftp://x".into();
        let mut feed = ChannelSettings {
            name: "warehouse".into(),
            kind: ChannelKind::Shoppingfeed,
            sources: vec!["affiliate".into()],
            actions: Some(vec![ChannelAction::Edit]),
            batch_size: 500,
            ..affiliate()
        };
        feed.token.clear();
        let keys: Vec<String> = problems(&[bad, feed]).into_iter().map(|p| p.0).collect();
        for key in [
            "channels[0].secret",
            "channels[0].base_url",
            "channels[1].name",
            "channels[1].sources",
            "channels[1].token",
            "channels[1].store_id",
            "channels[1].actions",
            "channels[1].batch_size",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} not refused: {keys:?}");
        }
    }

    #[test]
    fn two_channels_cannot_share_a_name() {
        let keys: Vec<String> = problems(&[
            affiliate(),
            ChannelSettings {
                sources: vec!["marketplace:x".into()],
                ..affiliate()
            },
        ])
        .into_iter()
        .map(|p| p.0)
        .collect();
        assert_eq!(keys, vec!["channels[1].name".to_string()]);
    }
}
