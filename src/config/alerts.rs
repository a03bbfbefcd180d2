//! The `[alerts]` section: where alert mails go and when incidents open and resolve.

use serde::{Deserialize, Serialize};

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain SMTP (a relay on the same host or LAN).
    None,
    /// Plain connection upgraded with STARTTLS, which is required (port 587 by default).
    Starttls,
    /// TLS from the first byte (SMTPS, port 465 by default).
    Tls,
}

impl SmtpTls {
    /// The port used when `smtp_port` is not set.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

/// Alert mails to the operator, and the incidents that cause them. No `smtp_host`: no mails (the
/// incidents are still tracked, and `wharf check` says mails are off). `Debug` hides the password.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSettings {
    /// The SMTP server mails are handed to. Empty: alert mails are off.
    pub smtp_host: String,
    /// Its port; unset: 25, 587 or 465 by `smtp_tls`.
    pub smtp_port: Option<u16>,
    /// `none`, `starttls` (default) or `tls`.
    pub smtp_tls: SmtpTls,
    /// SMTP user, when the server wants one.
    pub smtp_username: String,
    /// SMTP password.
    pub smtp_password: String,
    /// The sender address of alert mails.
    #[schema(example = "wharf@example.com")]
    pub from: String,
    /// Who gets them: one or more addresses.
    #[schema(example = json!(["ops@example.com"]))]
    pub to: Vec<String>,
    /// The console's base URL, for links in mails (default: `public_url` + `/admin`).
    #[schema(example = "https://wharf.example.com/admin")]
    pub console_url: Option<String>,
    /// Most alert mails per hour, all processes together; what is over waits for the next hour's
    /// digest.
    pub max_mails_per_hour: u32,
    /// A backlog incident opens when the oldest queued request or pending export is older than
    /// this, in seconds.
    pub backlog_alert_after_secs: i64,
    /// An incident resolves once its condition has been clear this long, in seconds, so a flapping
    /// condition sends no storm of mails.
    pub resolve_after_secs: i64,
    /// How often conditions are checked, in seconds.
    pub check_interval_secs: u64,
    /// Seconds before one SMTP send is abandoned (and retried later).
    pub send_timeout_secs: u64,
    /// A mail the SMTP server refused or did not take is sent again after this many seconds,
    /// doubling with each failure up to `mail_backoff_ceiling_secs`.
    pub mail_backoff_base_secs: i64,
    /// The longest wait between two tries of one mail, in seconds.
    pub mail_backoff_ceiling_secs: i64,
    /// Tries of one mail before it is given up (`lost`: shown by `wharf check` and the console).
    pub mail_max_attempts: i32,
    /// Mail the customer when a lost order was resent by support and then exported (off by
    /// default; needs `smtp_host`). Sent to the e-mail address of the order's billing address
    /// (else its delivery address); an order with none is skipped.
    pub customer_confirmation: bool,
    /// The customer mail's template, a plain-text UTF-8 file; unset: the built-in one. A first
    /// line `Subject: …` is the mail's subject (else `Your order {order_number}`). Placeholders:
    /// `{order_number}`, `{customer_name}` (first and last name), `{first_name}`, `{last_name}`.
    #[schema(value_type = Option<String>)]
    pub customer_template: Option<std::path::PathBuf>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            smtp_host: String::new(),
            smtp_port: None,
            smtp_tls: SmtpTls::Starttls,
            smtp_username: String::new(),
            smtp_password: String::new(),
            from: "wharf@localhost".into(),
            to: Vec::new(),
            console_url: None,
            max_mails_per_hour: 12,
            backlog_alert_after_secs: 900,
            resolve_after_secs: 600,
            check_interval_secs: 30,
            send_timeout_secs: 30,
            mail_backoff_base_secs: 60,
            mail_backoff_ceiling_secs: 1800,
            mail_max_attempts: 50,
            customer_confirmation: false,
            customer_template: None,
        }
    }
}

impl AlertSettings {
    /// Whether alert mails are sent at all.
    pub fn mails_on(&self) -> bool {
        !self.smtp_host.trim().is_empty()
    }

    /// What cannot work, as (setting under `alerts.`, what is wrong and what to write instead):
    /// addresses that do not parse, no `to` with `smtp_host` set, intervals that are not
    /// positive, a customer template that cannot be read.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut found = Vec::new();
        let address = |a: &str| a.parse::<lettre::message::Mailbox>().map(drop);
        if let Err(e) = address(&self.from) {
            found.push((
                "from",
                format!("{:?} is not a mail address ({e})", self.from),
            ));
        }
        for a in &self.to {
            if let Err(e) = address(a) {
                found.push(("to", format!("{a:?} is not a mail address ({e})")));
            }
        }
        if self.mails_on() && self.to.is_empty() {
            found.push((
                "to",
                "is empty, so alert mails would go nowhere: give one or more addresses, or unset smtp_host to turn mails off"
                    .into(),
            ));
        }
        for (key, value) in [
            ("backlog_alert_after_secs", self.backlog_alert_after_secs),
            (
                "check_interval_secs",
                i64::try_from(self.check_interval_secs).unwrap_or(1),
            ),
            (
                "send_timeout_secs",
                i64::try_from(self.send_timeout_secs).unwrap_or(1),
            ),
            ("mail_max_attempts", i64::from(self.mail_max_attempts)),
            // 0 would hold every alert mail back for ever.
            ("max_mails_per_hour", i64::from(self.max_mails_per_hour)),
        ] {
            if value <= 0 {
                found.push((key, "must be at least 1".into()));
            }
        }
        for (key, value) in [
            ("resolve_after_secs", self.resolve_after_secs),
            ("mail_backoff_base_secs", self.mail_backoff_base_secs),
            ("mail_backoff_ceiling_secs", self.mail_backoff_ceiling_secs),
        ] {
            if value < 0 {
                found.push((key, "must not be negative".into()));
            }
        }
        if let Some(path) = &self.customer_template
            && let Err(e) = std::fs::read_to_string(path)
        {
            found.push((
                "customer_template",
                format!(
                    "cannot read {} ({e}); fix the file or unset it",
                    path.display()
                ),
            ));
        }
        found
    }

    /// Whether customers get a confirmation of their resent lost orders (on, and mails on).
    pub fn confirms_customers(&self) -> bool {
        self.customer_confirmation && self.mails_on()
    }

    /// The SMTP port in use.
    pub fn port(&self) -> u16 {
        self.smtp_port
            .unwrap_or_else(|| self.smtp_tls.default_port())
    }
}

impl std::fmt::Debug for AlertSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertSettings")
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("smtp_tls", &self.smtp_tls)
            .field("smtp_username", &self.smtp_username)
            .field(
                "smtp_password",
                &if self.smtp_password.is_empty() {
                    ""
                } else {
                    "***"
                },
            )
            .field("from", &self.from)
            .field("to", &self.to)
            .field("console_url", &self.console_url)
            .field("max_mails_per_hour", &self.max_mails_per_hour)
            .field("backlog_alert_after_secs", &self.backlog_alert_after_secs)
            .field("resolve_after_secs", &self.resolve_after_secs)
            .field("check_interval_secs", &self.check_interval_secs)
            .field("send_timeout_secs", &self.send_timeout_secs)
            .field("mail_backoff_base_secs", &self.mail_backoff_base_secs)
            .field("mail_backoff_ceiling_secs", &self.mail_backoff_ceiling_secs)
            .field("mail_max_attempts", &self.mail_max_attempts)
            .field("customer_confirmation", &self.customer_confirmation)
            .field("customer_template", &self.customer_template)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mails_on_need_addresses_that_parse_and_positive_intervals() {
        assert!(AlertSettings::default().problems().is_empty());
        let cfg = AlertSettings {
            smtp_host: "mail.example.com".into(),
            from: "not an address".into(),
            check_interval_secs: 0,
            resolve_after_secs: -1,
            customer_template: Some("/nonexistent/wharf-template.txt".into()),
            ..AlertSettings::default()
        };
        let keys: Vec<&str> = cfg.problems().iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "from",
                "to",
                "check_interval_secs",
                "resolve_after_secs",
                "customer_template"
            ]
        );
        let bad_to = AlertSettings {
            to: vec!["ops@example.com".into(), "nobody".into()],
            ..AlertSettings::default()
        };
        let problems = bad_to.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].1.contains("\"nobody\""), "{problems:?}");
    }
}
