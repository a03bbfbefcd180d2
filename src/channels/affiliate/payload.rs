//! What a push sends, built when it is sent from the order as wharf then knows it (the latest state
//! wins): the request's method, URL and JSON body for each action. The field names are the wire
//! contract documented in [`super`].

use chrono::SecondsFormat;
use serde_json::{Value, json};

use crate::config::ChannelAction;
use crate::orders::{OrderLineView, OrderView};

/// One request, ready to sign and send.
#[derive(Debug, Clone)]
pub struct Request {
    /// `POST` or `PUT`.
    pub method: reqwest::Method,
    /// Where it goes.
    pub url: reqwest::Url,
    /// The JSON body (signed as sent).
    pub body: String,
}

/// The `status` word of a status push: what happened, in the words the receiver maps.
pub fn status_word(action: ChannelAction, order: &OrderView) -> &str {
    match action {
        ChannelAction::Ship => "shipped",
        ChannelAction::Cancel => "canceled",
        ChannelAction::Refund => "refunded",
        ChannelAction::Status | ChannelAction::Edit | ChannelAction::Split => &order.status,
    }
}

/// The request of `action` for `order` (with its `children` for a split) carrying `sequence`.
/// `Err` says, for people, why no request can be made for it.
pub fn build(
    base_url: &str,
    action: ChannelAction,
    order: &OrderView,
    children: &[OrderView],
    sequence: i64,
) -> Result<Request, String> {
    let reference = order.increment_id.as_str();
    let (method, path, body) = match action {
        ChannelAction::Ship
        | ChannelAction::Cancel
        | ChannelAction::Refund
        | ChannelAction::Status => (
            reqwest::Method::POST,
            vec!["orders", reference, "status"],
            status_body(action, order, sequence),
        ),
        ChannelAction::Edit => (
            reqwest::Method::PUT,
            vec!["orders", reference],
            edit_body(order, sequence)?,
        ),
        ChannelAction::Split => (
            reqwest::Method::POST,
            vec!["orders", reference, "split"],
            split_body(order, children, sequence),
        ),
    };
    Ok(Request {
        method,
        url: url(base_url, &path)?,
        body: body.to_string(),
    })
}

/// `base_url` with `segments` appended, each percent-encoded as one path segment (an order number
/// is the shop's own text: a `/`, `?`, `#` or `%` in it stays inside its segment).
pub fn url(base_url: &str, segments: &[&str]) -> Result<reqwest::Url, String> {
    // "." and ".." (even percent-encoded) are dot segments to every URL parser and router: the
    // request would go to another resource.
    if let Some(s) = segments
        .iter()
        .find(|s| s.is_empty() || s.chars().all(|c| c == '.'))
    {
        return Err(format!(
            "{s:?} cannot be sent as part of a URL path (an empty or all-dots order number); \
             handle this order with the affiliate system by hand"
        ));
    }
    let mut url = reqwest::Url::parse(base_url)
        .map_err(|e| format!("the channel's base_url {base_url:?} is not a URL ({e})"))?;
    url.path_segments_mut()
        .map_err(|()| format!("the channel's base_url {base_url:?} cannot have a path"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

fn when(order: &OrderView) -> String {
    // When wharf last changed the order (the change this push tells of, or a later one).
    order
        .updated_at
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `POST /orders/{reference}/status`: what happened, the order's status now, and for a ship the
/// shipments so far (every consignment number: one push carries all of them).
fn status_body(action: ChannelAction, order: &OrderView, sequence: i64) -> Value {
    let mut body = json!({
        "reference": order.increment_id,
        "status": status_word(action, order),
        "order_status": order.status,
        "changed_at": when(order),
        "sequence": sequence,
    });
    if action == ChannelAction::Ship {
        let latest = order.shipments.last();
        body["consignment_number"] = json!(order.tracking_numbers.last());
        body["consignment_numbers"] = json!(order.tracking_numbers);
        body["carrier"] = json!(latest.and_then(|s| s.courier_name.as_deref()));
        body["service"] = json!(latest.and_then(|s| s.service_name.as_deref()));
        body["shipped_at"] = json!(
            latest
                .and_then(|s| s.date_shipped)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        );
        body["lines"] = json!(
            order
                .lines
                .iter()
                .map(
                    |l| json!({"sku": l.line.sku, "qty": l.line.qty, "qty_shipped": l.qty_shipped})
                )
                .collect::<Vec<_>>()
        );
    }
    body
}

/// `PUT /orders/{reference}`: the whole order as the storefront last sent it (addresses, totals,
/// methods), with its status as wharf knows it and its lines with what has shipped of each.
fn edit_body(order: &OrderView, sequence: i64) -> Result<Value, String> {
    let mut body = serde_json::to_value(&order.details).map_err(|e| {
        format!(
            "order {} cannot be written as JSON ({e})",
            order.increment_id
        )
    })?;
    let Some(fields) = body.as_object_mut() else {
        return Err(format!(
            "order {} is not a JSON object once written",
            order.increment_id
        ));
    };
    fields.insert("reference".into(), json!(order.increment_id));
    fields.insert("status".into(), json!(order.status));
    fields.insert("lines".into(), lines(&order.lines));
    fields.insert("tracking_numbers".into(), json!(order.tracking_numbers));
    fields.insert("changed_at".into(), json!(when(order)));
    fields.insert("sequence".into(), json!(sequence));
    Ok(body)
}

/// `POST /orders/{reference}/split`: the lines the parent keeps and each child order with its own.
fn split_body(order: &OrderView, children: &[OrderView], sequence: i64) -> Value {
    json!({
        "reference": order.increment_id,
        "order_status": order.status,
        "lines": lines(&order.lines),
        "children": children.iter().map(|c| json!({
            "reference": c.increment_id,
            "status": c.status,
            "lines": lines(&c.lines),
        })).collect::<Vec<_>>(),
        "changed_at": when(order),
        "sequence": sequence,
    })
}

fn lines(lines: &[OrderLineView]) -> Value {
    json!(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_number_stays_one_path_segment() {
        let u = url("http://aff.example/api", &["orders", "A/1 ?#%é", "status"]).unwrap();
        assert_eq!(
            u.as_str(),
            "http://aff.example/api/orders/A%2F1%20%3F%23%25%C3%A9/status"
        );
        let u = url("http://aff.example/", &["orders", "100", "split"]).unwrap();
        assert_eq!(u.as_str(), "http://aff.example/orders/100/split");
        assert_eq!(u.path_segments().unwrap().count(), 3);
    }

    #[test]
    fn dot_segments_are_refused_not_sent_elsewhere() {
        for bad in [".", "..", "...", ""] {
            let e = url("http://aff.example", &["orders", bad, "status"]).unwrap_err();
            assert!(e.contains("cannot be sent"), "{e}");
        }
        assert!(url("http://aff.example", &["orders", "a.b", "status"]).is_ok());
    }
}
