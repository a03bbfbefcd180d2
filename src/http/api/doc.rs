//! Finishes the OpenAPI document utoipa derives from the handlers, where the derivation cannot say
//! what the API does:
//!
//! - a view that flattens an input (`ProductView` = SKU + `ProductInput` + export fields) comes out
//!   as `allOf` of the input and the rest; the input schema forbids unknown members
//!   (`additionalProperties: false`, from `deny_unknown_fields`), so every real view would fail it.
//!   Those are merged into one object schema with the members of both.
//! - `Event` becomes one schema per event kind with its typed `data`, discriminated by `type`.
//! - every error answer is `application/problem+json`, and the errors any call can meet (401, 400
//!   for a query that does not parse, 413, 500) are documented on every operation they apply to.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};
use utoipa::OpenApi;

use super::ApiDoc;
use crate::feed;
use crate::inventory::payloads::StockChanged;
use crate::orders::payloads::{OrderCompleted, OrderExportStatusChanged, OrderSplit};
use crate::shipments::payloads::{ShipmentCreated, ShipmentFailed};

const SCHEMAS: &str = "#/components/schemas/";

/// The finished document (built once).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
        merge_flattened(&mut doc);
        typed_events(&mut doc);
        problem_responses(&mut doc);
        describe(&mut doc);
        doc
    })
}

fn schemas(doc: &mut Value) -> Option<&mut Map<String, Value>> {
    doc.pointer_mut("/components/schemas")?.as_object_mut()
}

/// The properties and required members of an object schema, inline or referenced.
fn object_members(
    all: &Map<String, Value>,
    item: &Value,
) -> Option<(Map<String, Value>, Vec<Value>)> {
    let schema = match item.get("$ref").and_then(Value::as_str) {
        Some(r) => all.get(r.strip_prefix(SCHEMAS)?)?,
        None => item,
    };
    if schema.get("type")? != "object" {
        return None;
    }
    let properties = schema.get("properties")?.as_object()?.clone();
    let required = schema
        .get("required")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Some((properties, required))
}

/// Replaces each `allOf` of object schemas (a flattened struct) with one open object schema.
fn merge_flattened(doc: &mut Value) {
    let Some(all) = schemas(doc) else { return };
    let snapshot = all.clone();
    for schema in all.values_mut() {
        let Some(items) = schema.get("allOf").and_then(Value::as_array) else {
            continue;
        };
        let mut properties = Map::new();
        let mut required = Vec::new();
        let mut mergeable = true;
        for item in items {
            match object_members(&snapshot, item) {
                Some((p, r)) => {
                    properties.extend(p);
                    required.extend(
                        r.into_iter()
                            .filter(|r| !required.contains(r))
                            .collect::<Vec<_>>(),
                    );
                }
                None => mergeable = false,
            }
        }
        if !mergeable {
            continue;
        }
        let mut merged = json!({"type": "object", "required": required, "properties": properties});
        if let Some(d) = schema.get("description") {
            merged["description"] = d.clone();
        }
        *schema = merged;
    }
}

/// Every event kind with the name of its payload schema (each kept by the domain that writes it), in
/// the order the document lists them.
fn event_kinds() -> [(&'static str, std::borrow::Cow<'static, str>); 6] {
    use utoipa::ToSchema;
    [
        (feed::STOCK_CHANGED, StockChanged::name()),
        (feed::SHIPMENT_CREATED, ShipmentCreated::name()),
        (feed::SHIPMENT_FAILED, ShipmentFailed::name()),
        (feed::ORDER_COMPLETED, OrderCompleted::name()),
        (
            feed::ORDER_EXPORT_STATUS_CHANGED,
            OrderExportStatusChanged::name(),
        ),
        (feed::ORDER_SPLIT, OrderSplit::name()),
    ]
}

/// `Event` as one variant per kind, each with its typed `data`.
fn typed_events(doc: &mut Value) {
    let Some(all) = schemas(doc) else { return };
    let Some(derived) = all.get("Event").cloned() else {
        return;
    };
    let mut variants = Vec::new();
    let mut mapping = Map::new();
    for (kind, payload) in event_kinds() {
        let name = format!("{payload}Event");
        let mut variant = derived.clone();
        variant["description"] = json!(format!("A `{kind}` event."));
        variant["properties"]["type"] =
            json!({"type": "string", "enum": [kind], "description": "The event kind."});
        variant["properties"]["data"] = json!({"$ref": format!("{SCHEMAS}{payload}")});
        all.insert(name.clone(), variant);
        variants.push(json!({"$ref": format!("{SCHEMAS}{name}")}));
        mapping.insert(kind.to_string(), json!(format!("{SCHEMAS}{name}")));
    }
    all.insert(
        "Event".into(),
        json!({
            "description": "A feed event: `type` says which kind, and so what `data` holds.",
            "oneOf": variants,
            "discriminator": {"propertyName": "type", "mapping": mapping},
        }),
    );
}

/// A reusable response carrying a problem.
fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {super::PROBLEM_JSON: {"schema": {"$ref": format!("{SCHEMAS}Problem")}}},
    })
}

/// Error answers as problem JSON, and the errors every operation can meet.
fn problem_responses(doc: &mut Value) {
    let common = [
        (
            "Unauthorized",
            "No or unknown bearer token (`unauthorized`); see `WWW-Authenticate`.",
        ),
        (
            "InvalidQuery",
            "A query parameter does not parse (`invalid_query`; `field` names it).",
        ),
        (
            "InvalidField",
            "A field or a path or query parameter is wrong (`invalid_field`; `field` names it), \
             e.g. it holds a control character wharf cannot store or send to the warehouse.",
        ),
        (
            "BodyTooLarge",
            "The body is larger than the API accepts, 1 MiB (`body_too_large`).",
        ),
        (
            "Internal",
            "wharf failed on its side (`internal`); try again.",
        ),
    ];
    if let Some(components) = doc.get_mut("components").and_then(Value::as_object_mut) {
        let responses = components.entry("responses").or_insert_with(|| json!({}));
        for (name, description) in common {
            responses[name] = problem_response(description);
        }
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for operation in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|p| p.values_mut())
    {
        let secured = operation.get("security").is_some();
        let has_query = operation["parameters"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
        let has_body = operation.get("requestBody").is_some();
        let has_params = operation["parameters"]
            .as_array()
            .is_some_and(|ps| !ps.is_empty());
        let Some(responses) = operation
            .get_mut("responses")
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for (status, response) in responses.iter_mut() {
            if status.starts_with(['4', '5'])
                && let Some(content) = response.get_mut("content").and_then(Value::as_object_mut)
                && let Some(schema) = content.remove("application/json")
            {
                content.insert(super::PROBLEM_JSON.into(), schema);
            }
        }
        let wanted = [
            ("401", "Unauthorized", secured),
            ("400", "InvalidQuery", has_query),
            ("413", "BodyTooLarge", has_body),
            ("422", "InvalidField", has_params || has_body),
            ("500", "Internal", true),
        ];
        for (status, name, applies) in wanted {
            if applies && !responses.contains_key(status) {
                responses.insert(
                    status.into(),
                    json!({"$ref": format!("#/components/responses/{name}")}),
                );
            }
        }
    }
}

/// The document's own description: what holds for every route.
fn describe(doc: &mut Value) {
    doc["info"]["description"] = json!(
        "Orders, products, cart reservations, stock and the change feed of wharf.\n\n\
         Every call needs `Authorization: Bearer <token>` (`wharf tokens add NAME`), and the token \
         is checked first: without a valid one every route answers 401 `unauthorized`, whatever \
         the request holds. Only this document is served without a token. Strings (in the body, \
         the path and the query) must not hold NUL or other control characters (tab, line feed \
         and carriage return are allowed in free text such as names and notes), nor U+FFFE or \
         U+FFFF: such a value is 422 `invalid_field` naming it. Every error is \
         `application/problem+json` with a stable `code`; besides the ones listed per operation, \
         an unknown route answers 404 `unknown_route` and a method a route does not serve 405 \
         `method_not_allowed` (with `Allow`). Times are RFC 3339 in UTC (`2024-05-01T09:30:00Z`)."
    );
    // utoipa copies Cargo's (empty) license; an empty license name says nothing.
    if let Some(info) = doc["info"].as_object_mut() {
        info.remove("license");
    }
}
