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
        }
    }
}

/// One channel. `Debug` hides the token and the secret. Secrets may also come from the environment:
/// `WHARF_CHANNEL_<NAME>_TOKEN` and `WHARF_CHANNEL_<NAME>_SECRET` (the name upper-cased, `-` as `_`),
/// used when the file leaves them empty.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelSettings {
    /// The channel's name (lowercase letters, digits, `-`, `_`), shown in the console and the CLI
    /// and used as the outbound queue's channel; not `warehouse` or `smtp`.
    pub name: String,
    /// `shoppingfeed` or `http`.
    pub kind: ChannelKind,
    /// The order sources it claims (`marketplace:amazon`, `affiliate`); a source belongs to at most
    /// one channel. Orders of other sources (`web`) push nothing to it.
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

    /// Fills an empty token or secret from the environment.
    pub(super) fn secrets_from_env(&mut self) {
        let (token_var, secret_var) = (self.secret_var("TOKEN"), self.secret_var("SECRET"));
        for (var, field) in [(token_var, &mut self.token), (secret_var, &mut self.secret)] {
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
