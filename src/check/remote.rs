//! The checks that talk to other systems: the warehouse endpoint (when an export is on) and the SMTP
//! server (when alert mails are on), each within its configured timeout.

use std::time::{Duration, Instant};

use lettre::AsyncTransport;

use super::Finding;
use crate::config::{AlertSettings, Settings, SmtpTls};

/// The OrderFlow API's inventory list (reference §3.8): a GET with the export's credentials that
/// changes nothing, so it shows whether the endpoint answers and accepts them.
pub const WAREHOUSE_PROBE: &str = "remotewarehouse/inventory.xml";

/// The warehouse endpoint answers and accepts wharf's credentials; `off` when no export is on.
pub async fn warehouse(settings: &Settings) -> Finding {
    let w = &settings.warehouse;
    if !(w.orders.enabled || w.products.enabled) {
        return Finding::off(
            "warehouse",
            "exports are off (warehouse.orders.enabled, warehouse.products.enabled): nothing is \
             sent to the warehouse",
        );
    }
    let Ok(mut url) = reqwest::Url::parse(&w.endpoint).and_then(|base| base.join(WAREHOUSE_PROBE))
    else {
        return Finding::fail(
            "warehouse",
            format!(
                "warehouse.endpoint {:?} is not a URL; set the OrderFlow API's base URL",
                w.endpoint
            ),
        );
    };
    url.query_pairs_mut()
        .append_pair("channel", &w.channel)
        .append_pair("organisation", &w.organisation);
    let shown = shown_endpoint(&w.endpoint);
    let timeout = w.timeout_secs.max(1);
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout))
        .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => return Finding::fail("warehouse", format!("no HTTP client ({e})")),
    };
    let started = Instant::now();
    let answer = client
        .get(url)
        .basic_auth(&w.username, Some(&w.password))
        .send()
        .await;
    let took = started.elapsed().as_millis();
    let status = match answer {
        Ok(resp) => resp.status(),
        Err(e) if e.is_timeout() => {
            return Finding::fail(
                "warehouse",
                format!(
                    "{shown} did not answer within {timeout} s (warehouse.timeout_secs); check \
                     the endpoint and the network, or raise the timeout"
                ),
            );
        }
        Err(e) => {
            return Finding::fail(
                "warehouse",
                format!(
                    "cannot reach {shown} ({}); check warehouse.endpoint and the network",
                    crate::outbound::exchange::transport_reason(&e)
                ),
            );
        }
    };
    answered(&shown, &w.username, status, took)
}

/// What the warehouse's status to the probe means.
fn answered(shown: &str, username: &str, status: reqwest::StatusCode, took: u128) -> Finding {
    let probe = format!("GET {WAREHOUSE_PROBE}: HTTP {}", status.as_u16());
    if status.is_success() {
        Finding::ok(
            "warehouse",
            format!(
                "{shown} accepts the credentials of {:?} ({probe} in {took} ms)",
                username
            ),
        )
    } else if matches!(status.as_u16(), 401 | 403) {
        Finding::fail(
            "warehouse",
            format!(
                "{shown} refused the credentials of {:?} ({probe}); check warehouse.username and \
                 warehouse.password",
                username
            ),
        )
    } else {
        Finding::fail(
            "warehouse",
            format!(
                "{shown} answered {probe}; check warehouse.endpoint (the OrderFlow API's base URL, \
                 ending in /)"
            ),
        )
    }
}

/// The endpoint as printed: without any user or password written into the URL.
fn shown_endpoint(endpoint: &str) -> String {
    match reqwest::Url::parse(endpoint) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => endpoint.to_string(),
    }
}

/// The SMTP server accepts a connection and wharf's login; its recipients; the test mail when asked.
pub async fn smtp(a: &AlertSettings, test_mail: Option<&str>) -> Vec<Finding> {
    if !a.mails_on() {
        let mut found = vec![Finding::off(
            "smtp",
            "alert mails are off: set alerts.smtp_host",
        )];
        if test_mail.is_some() {
            found.push(Finding::fail(
                "test mail",
                "not sent: alert mails are off; set alerts.smtp_host",
            ));
        }
        return found;
    }
    let tls = match a.smtp_tls {
        SmtpTls::None => "no TLS",
        SmtpTls::Starttls => "STARTTLS",
        SmtpTls::Tls => "TLS",
    };
    let server = format!("{}:{} ({tls})", a.smtp_host.trim(), a.port());
    let mut found = vec![connect(a, &server).await];
    found.push(if a.to.is_empty() {
        Finding::warn(
            "alert recipients",
            "alerts.to is empty: incidents are tracked but nobody is mailed; set alerts.to",
        )
    } else {
        Finding::ok("alert recipients", a.to.join(", "))
    });
    if let Some(to) = test_mail {
        found.push(send_test_mail(a, &server, to).await);
    }
    found
}

/// The longest a whole SMTP check may take: connecting, TLS and login each get the send timeout.
fn smtp_deadline(a: &AlertSettings) -> Duration {
    Duration::from_secs(a.send_timeout_secs.max(1) * 3)
}

/// Connects, says hello, secures and logs in as `[alerts]` says, then says NOOP.
async fn connect(a: &AlertSettings, server: &str) -> Finding {
    let transport = match crate::channels::smtp::transport(a) {
        Ok(t) => t,
        Err(e) => return Finding::fail("smtp", format!("{server}: {e}; check alerts.smtp_host")),
    };
    let login = if a.smtp_username.is_empty() {
        "without login (alerts.smtp_username is empty)".to_string()
    } else {
        format!("logged in as {:?}", a.smtp_username)
    };
    match tokio::time::timeout(smtp_deadline(a), transport.test_connection()).await {
        Ok(Ok(true)) => Finding::ok("smtp", format!("connected to {server}, {login}")),
        Ok(Ok(false)) => Finding::fail(
            "smtp",
            format!("{server} accepted the connection but not the NOOP command"),
        ),
        Ok(Err(e)) => Finding::fail(
            "smtp",
            format!(
                "{server}: {e}; check alerts.smtp_host, smtp_port and smtp_tls, and \
                 alerts.smtp_username and smtp_password"
            ),
        ),
        Err(_) => Finding::fail(
            "smtp",
            format!(
                "{server} did not answer within {} s; check alerts.smtp_host and smtp_port",
                smtp_deadline(a).as_secs()
            ),
        ),
    }
}

/// Sends one short mail to `to`, the way alert mails go.
async fn send_test_mail(a: &AlertSettings, server: &str, to: &str) -> Finding {
    let Ok(to_addr) = to.parse::<lettre::Address>() else {
        return Finding::fail("test mail", format!("{to:?} is not a mail address"));
    };
    // A mailbox, as alert mails read it: `Wharf <ops@example.com>` is a valid sender too.
    let Ok(from) = a.from.parse::<lettre::message::Mailbox>() else {
        return Finding::fail(
            "test mail",
            format!("alerts.from {:?} is not a mail address; set it", a.from),
        );
    };
    let mail = lettre::Message::builder()
        .from(from)
        .to(lettre::message::Mailbox::new(None, to_addr))
        .subject("[wharf] test mail from wharf check")
        .body(format!(
            "This test mail was sent by `wharf check --send-test-mail {to}` through {server}.\n\
             wharf's alert mails reach you the same way.\n"
        ));
    let mail = match mail {
        Ok(m) => m,
        Err(e) => return Finding::fail("test mail", format!("cannot be written ({e})")),
    };
    let transport = match crate::channels::smtp::transport(a) {
        Ok(t) => t,
        Err(e) => return Finding::fail("test mail", format!("{server}: {e}")),
    };
    match tokio::time::timeout(smtp_deadline(a), transport.send(mail)).await {
        Ok(Ok(_)) => Finding::ok("test mail", format!("{server} accepted a mail to {to}")),
        Ok(Err(e)) => Finding::fail("test mail", format!("not sent to {to}: {e}")),
        Err(_) => Finding::fail(
            "test mail",
            format!(
                "not sent to {to}: {server} did not finish within {} s",
                smtp_deadline(a).as_secs()
            ),
        ),
    }
}
