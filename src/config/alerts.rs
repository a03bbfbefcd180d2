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
    /// Mail the customer when a lost order was resent by support and then exported (off by
    /// default).
    pub customer_confirmation: bool,
    /// The customer mail's template (a plain-text file; see `wharf config --defaults` for the
    /// placeholders); unset: the built-in one.
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
            .field("customer_confirmation", &self.customer_confirmation)
            .field("customer_template", &self.customer_template)
            .finish()
    }
}
