//! The texts of alert mails and of the customer's confirmation: subject and plain-text body,
//! written when the mail is sent, from the incident rows as they are then.

use chrono::NaiveDateTime;

use super::conditions::{ChannelTrouble, FileAlert};
use super::{Condition, Incident, MAX_ITEMS, conditions, parse_key};
use crate::config::Settings;

/// A mail's subject and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// The subject.
    pub subject: String,
    /// The plain-text body.
    pub body: String,
}

/// The console's base URL for links: `console_url`, else `public_url` + `/admin`, else `/admin`.
pub fn console_url(settings: &Settings) -> String {
    let base = match (&settings.alerts.console_url, &settings.public_url) {
        (Some(c), _) => c.trim().to_string(),
        (None, Some(p)) => format!("{}/admin", p.trim().trim_end_matches('/')),
        (None, None) => "/admin".to_string(),
    };
    base.trim_end_matches('/').to_string()
}

/// The title of an incident: its summary without the count (`lost orders`).
pub fn title(incident: &Incident) -> String {
    match parse_key(&incident.key) {
        Some((c, scope)) => conditions::title(c, scope),
        None => incident.key.clone(),
    }
}

/// The digest of incidents opened together: `[wharf] OPEN lost orders: 3 orders` for one,
/// `[wharf] OPEN 3 incidents: …` for several.
pub fn open_digest(incidents: &[Incident], console: &str) -> Text {
    let subject = match incidents {
        [one] => format!("[wharf] OPEN {}", one.summary),
        many => format!(
            "[wharf] OPEN {} incidents: {}",
            many.len(),
            many.iter()
                .map(|i| i.summary.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ),
    };
    let mut body = String::new();
    for i in incidents {
        body.push_str(&section(i, console));
        body.push('\n');
    }
    body.push_str(
        "You get one mail when an incident opens and one when it resolves (after its condition \
         stayed clear for the quiet time).\n",
    );
    Text { subject, body }
}

/// The resolve mail: `[wharf] RESOLVED lost orders after 42 min`.
pub fn resolved(incident: &Incident, now: NaiveDateTime) -> Text {
    let at = incident.resolved_at.unwrap_or(now);
    let minutes = (at - incident.opened_at).num_minutes();
    let after = if minutes < 1 {
        "after less than a minute".to_string()
    } else {
        format!("after {minutes} min")
    };
    let subject = format!("[wharf] RESOLVED {} {after}", title(incident));
    let body = format!(
        "Resolved: {}\n\nOpened {} UTC, resolved {} UTC ({after}); its condition stayed clear for \
         the quiet time.\nLast seen: {}\n",
        title(incident),
        incident.opened_at.format("%Y-%m-%d %H:%M:%S"),
        at.format("%Y-%m-%d %H:%M:%S"),
        incident.summary,
    );
    Text { subject, body }
}

/// One incident's part of a digest: summary, first error, counts, and up to [`MAX_ITEMS`] items
/// each with its console link and the command that fixes it.
fn section(i: &Incident, console: &str) -> String {
    let (condition, scope) = match parse_key(&i.key) {
        Some((c, s)) => (Some(c), s),
        None => (None, None),
    };
    let mut s = format!(
        "== {} ==\nOpened {} UTC.\n",
        i.summary,
        i.opened_at.format("%Y-%m-%d %H:%M:%S")
    );
    if let Some(e) = &i.first_error {
        s.push_str(&format!("First error: {e}\n"));
    }
    if let Some(c) = condition {
        s.push_str(&format!("What to do: {}\n", advice(c, scope)));
    }
    let shown = i.items.len().min(MAX_ITEMS);
    if shown > 0 {
        s.push_str(&format!("{} of {}:\n", shown, i.count.max(shown as i64)));
    }
    for item in i.items.iter().take(MAX_ITEMS) {
        s.push_str(&format!("- {}", item.id));
        if !item.detail.is_empty() {
            s.push_str(&format!(": {}", item.detail));
        }
        s.push('\n');
        if let Some(c) = condition {
            if let Some(link) = link(c, scope, console, &path_segment(&item.id)) {
                s.push_str(&format!("  {link}\n"));
            }
            if let Some(fix) = fix(c, scope, &shell_word(&item.id)) {
                s.push_str(&format!("  fix: {fix}\n"));
            }
        }
    }
    s
}

/// What the operator does about a condition as a whole.
fn advice(c: Condition, scope: Option<&str>) -> &'static str {
    match c {
        Condition::RequestsDead => {
            "fix the cause (see `wharf requests show ID`), then requeue the requests"
        }
        Condition::OrdersLost | Condition::CancellationsLost => {
            "fix the cause, then resend (`wharf orders resend`) or dismiss (`wharf orders dismiss`)"
        }
        Condition::ProductsLost => {
            "fix the cause (the warehouse's error below), then change the product so it is sent \
            again"
        }
        Condition::Breaker => {
            "the warehouse does not answer: check its endpoint and credentials (`wharf check`); \
             exports resume by themselves when the pause ends"
        }
        Condition::ImportsFailed => {
            "look at the failed lines (`wharf requests show ID` or the console marks them seen)"
        }
        Condition::Backlog if scope == Some("requests") => {
            "check that a worker runs (`wharf worker`, or `serve` with the worker on) and its log"
        }
        Condition::Backlog => "check the exporter's log and `wharf exports list`",
        Condition::Channel => channel_advice(scope),
        Condition::Files => files_advice(scope),
    }
}

/// What the operator does about a file channel's trouble.
fn files_advice(scope: Option<&str>) -> &'static str {
    match scope.and_then(conditions::parse_files_scope) {
        Some((_, FileAlert::Connection)) | None => {
            "wharf cannot reach the SFTP server or log in: check that it runs and the channel's \
            host, port, user and key_file (or password); the runs try again on their schedule and \
            this resolves by itself once one gets through"
        }
        Some((_, FileAlert::HostKey)) => {
            "the server showed a host key the channel does not trust, so nothing was sent or read: \
            find out why (a replaced server, or someone in between); if it was replaced on \
            purpose, update known_hosts or host_key_fingerprint (trust_on_first_use: `wharf files \
            forget-key <channel>` so the next run keeps the new key)"
        }
        Some((_, FileAlert::ExportFolder)) => {
            "export_dir does not exist on the server (wharf does not make it): create it, or fix \
            the setting; the orders wait and go in the next run"
        }
        Some((_, FileAlert::Export)) => {
            "order files could not be written or renamed: check the server's free space and the \
            login's rights in export_dir; the orders wait and go in the next run"
        }
        Some((_, FileAlert::ImportFolder)) => {
            "import_dir does not exist on the server, or processing/, failed/ or archive/ cannot \
            be made in it: create it or fix the setting and the login's rights"
        }
        Some((_, FileAlert::Import)) => {
            "shipment files could not be listed, moved or read: check the login's rights in \
            import_dir and its processing/ folder"
        }
        Some((_, FileAlert::Failed)) => {
            "these shipment files were moved to failed/ in import_dir and nothing of them was \
            applied: look at each (`wharf files show ID` or the console's Files page), have the \
            warehouse send a corrected file, then mark it seen (`wharf files seen ID`)"
        }
        Some((_, FileAlert::Stuck)) => {
            "these shipment files sit in processing/ and several runs could not finish them: look \
            at the channel's log and `wharf files show ID`; a file that is not stored stays there \
            until a run finishes it"
        }
    }
}

/// What the operator does about an order channel's trouble.
fn channel_advice(scope: Option<&str>) -> &'static str {
    match scope.and_then(conditions::parse_channel_scope) {
        Some((_, ChannelTrouble::Dead)) => {
            "the channel refused these pushes for good: fix the cause (the error below: the order \
             or the channel's settings), then send each again (`wharf channels resend ID`), or \
             dismiss it once handled by hand (`wharf channels dismiss ID --reason R`)"
        }
        Some((_, ChannelTrouble::Lost)) => {
            "the channel refused these pushes max_attempts times: fix the cause, then send each \
             again (`wharf channels resend ID`) or dismiss it (`wharf channels dismiss ID --reason R`)"
        }
        Some((_, ChannelTrouble::Ticket)) => {
            "the channel's tickets for these pushes failed: each is sent again after a backoff; \
             look at the errors below and in the channel's back office (after max_attempts a push \
             is lost and waits for `wharf channels resend ID`)"
        }
        Some((_, ChannelTrouble::Paused)) | None => {
            "the channel's API does not answer: check its base_url and token (`wharf check`, \
             `wharf channels`); its pushes resume by themselves when the pause ends"
        }
    }
}

/// What a path segment may hold as it is; everything else is percent-encoded (an order number is
/// the shop's text: `?`, `#`, `/` or a space would break the link).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn path_segment(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, SEGMENT).to_string()
}

/// `id` as one word a POSIX shell reads back as it is: an order number is the shop's text, and an
/// operator pastes the fix command from the mail (`1; rm -rf ~` must stay one harmless argument).
fn shell_word(id: &str) -> String {
    let plain = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:/@+=,".contains(c));
    if plain {
        id.to_string()
    } else {
        format!("'{}'", id.replace('\'', r"'\''"))
    }
}

fn link(c: Condition, scope: Option<&str>, console: &str, id: &str) -> Option<String> {
    match c {
        Condition::RequestsDead | Condition::ImportsFailed => {
            Some(format!("{console}/requests/{id}"))
        }
        Condition::OrdersLost | Condition::CancellationsLost => {
            Some(format!("{console}/orders/{id}"))
        }
        Condition::Backlog if scope == Some("requests") => Some(format!("{console}/requests/{id}")),
        // A channel incident's items are its tasks: the channel page shows one with its order.
        Condition::Channel => Some(format!("{console}/channels?task={id}")),
        // A file channel's failed or stuck files are its exchanges; its troubles name the channel.
        Condition::Files => match scope.and_then(conditions::parse_files_scope) {
            Some((_, FileAlert::Failed | FileAlert::Stuck)) => {
                Some(format!("{console}/files/{id}"))
            }
            _ => Some(format!("{console}/files?channel={id}")),
        },
        Condition::ProductsLost | Condition::Breaker | Condition::Backlog => None,
    }
}

fn fix(c: Condition, scope: Option<&str>, id: &str) -> Option<String> {
    match c {
        Condition::RequestsDead => Some(format!("wharf requests requeue {id}")),
        Condition::OrdersLost | Condition::CancellationsLost => {
            Some(format!("wharf orders resend {id}"))
        }
        Condition::ImportsFailed => Some(format!("wharf requests show {id}")),
        Condition::Channel => match scope.and_then(conditions::parse_channel_scope) {
            Some((_, ChannelTrouble::Dead | ChannelTrouble::Lost)) => {
                Some(format!("wharf channels resend {id}"))
            }
            // A failed ticket is sent again by itself; a paused channel has no items.
            _ => None,
        },
        Condition::Files => match scope.and_then(conditions::parse_files_scope) {
            Some((_, FileAlert::Failed)) => Some(format!("wharf files seen {id}")),
            Some((_, FileAlert::Stuck)) => Some(format!("wharf files show {id}")),
            _ => None,
        },
        Condition::ProductsLost | Condition::Breaker | Condition::Backlog => None,
    }
}

/// The built-in customer confirmation (see `customer_template` for the placeholders).
pub const CUSTOMER_TEMPLATE: &str =
    "Subject: Your order {order_number} is on its way to our warehouse

Dear {customer_name},

your order {order_number} was delayed on its way to our warehouse. It has now arrived there
and will be prepared for shipping. We are sorry for the delay.

Kind regards
";

/// Who a customer mail is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    /// The order number.
    pub order_number: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
}

/// The customer's confirmation from `template` (a first line `Subject: …` is the subject).
pub fn customer(template: &str, c: &Customer) -> Text {
    let name = format!("{} {}", c.first_name, c.last_name);
    let fill = |s: &str| {
        s.replace("{order_number}", &c.order_number)
            .replace("{customer_name}", name.trim())
            .replace("{first_name}", &c.first_name)
            .replace("{last_name}", &c.last_name)
    };
    let (subject, body) = match template.split_once('\n') {
        Some((first, rest)) if first.starts_with("Subject:") => (
            first.trim_start_matches("Subject:").trim().to_string(),
            rest.trim_start_matches(['\r', '\n']),
        ),
        _ => ("Your order {order_number}".to_string(), template),
    };
    Text {
        subject: fill(&subject),
        body: fill(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_numbers_stay_one_harmless_word_in_commands_and_links() {
        assert_eq!(shell_word("100042"), "100042");
        assert_eq!(shell_word("ACME-7/B"), "ACME-7/B");
        assert_eq!(shell_word("1; curl x|sh"), "'1; curl x|sh'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(path_segment("A 1?#/ü"), "A%201%3F%23%2F%C3%BC");
        assert_eq!(path_segment("100-042.x_y~"), "100-042.x_y~");
    }

    #[test]
    fn the_customer_template_fills_its_placeholders() {
        let c = Customer {
            order_number: "100042".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
        };
        let t = customer(CUSTOMER_TEMPLATE, &c);
        assert_eq!(
            t.subject,
            "Your order 100042 is on its way to our warehouse"
        );
        assert!(t.body.starts_with("Dear Ada Lovelace,"), "{}", t.body);
        let plain = customer("Hi {first_name}, {order_number} went.", &c);
        assert_eq!(plain.subject, "Your order 100042");
        assert_eq!(plain.body, "Hi Ada, 100042 went.");
    }
}
