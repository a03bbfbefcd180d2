//! The SMTP channel: alert mails (and customer confirmations) handed to the operator's mail server.

use std::time::Duration;

pub mod deliver;

pub use deliver::{Delivery, Mailer};

use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, Tokio1Executor};

use crate::config::{AlertSettings, SmtpTls};

/// A mail transport to the server of `[alerts]`, with its TLS mode, port, credentials (when a user
/// is set) and `send_timeout_secs` for every SMTP command. Fails only on a host name rustls cannot
/// use (TLS modes).
pub fn transport(
    cfg: &AlertSettings,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, lettre::transport::smtp::Error> {
    let host = cfg.smtp_host.trim();
    let builder = match cfg.smtp_tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?,
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?,
    };
    let mut builder = builder
        .port(cfg.port())
        .timeout(Some(Duration::from_secs(cfg.send_timeout_secs.max(1))));
    if !cfg.smtp_username.is_empty() {
        builder = builder.credentials(Credentials::new(
            cfg.smtp_username.clone(),
            cfg.smtp_password.clone(),
        ));
    }
    Ok(builder.build())
}
