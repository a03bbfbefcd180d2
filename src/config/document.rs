//! `wharf config`: the settings as a `wharf.toml`, either the effective ones (secrets redacted) or
//! the defaults with every setting's documentation.
//!
//! Nothing here is written by hand per setting. The keys, their order and their values come from
//! serialising [`Settings`]; the comments are the settings' doc comments, which the
//! `utoipa::ToSchema` derive on the settings types captures at compile time (the same mechanism
//! the API's OpenAPI document uses, so no extra dependency). A setting added to `Settings` therefore
//! appears in `wharf config --defaults` with its doc comment, and the tests below fail, naming the
//! key, when one has no doc comment or when the output stops parsing back to the defaults.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value as Json;
use toml_edit::{Item, TableLike};
use utoipa::{PartialSchema, ToSchema};

use super::Settings;
use super::env::env_var;

/// What the schema says about one setting.
#[derive(Debug, Clone, Default)]
struct Doc {
    /// The doc comment, as written (lines kept).
    text: String,
    /// An example value from `#[schema(example = …)]`, shown for settings unset by default.
    example: Option<Json>,
    /// The JSON schema type (`string`, `integer`, …), for a placeholder when there is no example.
    kind: Option<String>,
}

/// The doc of every setting, by dotted key (`worker.batch_size`), read from the settings' schema.
fn docs() -> BTreeMap<String, Doc> {
    let mut components = Vec::new();
    Settings::schemas(&mut components);
    let components: BTreeMap<String, Json> = components
        .into_iter()
        .filter_map(|(name, schema)| Some((name, serde_json::to_value(schema).ok()?)))
        .collect();
    let mut out = BTreeMap::new();
    if let Ok(root) = serde_json::to_value(Settings::schema()) {
        collect_docs(&root, "", &components, &mut out);
    }
    out
}

fn collect_docs(
    schema: &Json,
    prefix: &str,
    components: &BTreeMap<String, Json>,
    out: &mut BTreeMap<String, Doc>,
) {
    let Some(properties) = schema.get("properties").and_then(Json::as_object) else {
        return;
    };
    for (name, property) in properties {
        let key = join(prefix, name);
        let kind = match property.get("type") {
            Some(Json::String(t)) => Some(t.as_str()),
            // `["string", "null"]` for an Option.
            Some(Json::Array(ts)) => ts.iter().filter_map(Json::as_str).find(|t| *t != "null"),
            _ => None,
        }
        .map(str::to_string);
        out.insert(
            key.clone(),
            Doc {
                text: property
                    .get("description")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
                example: property
                    .get("examples")
                    .and_then(|e| e.get(0))
                    .or_else(|| property.get("example"))
                    .cloned(),
                kind,
            },
        );
        let referenced = property
            .get("$ref")
            .and_then(Json::as_str)
            .and_then(|r| r.rsplit('/').next())
            .and_then(|name| components.get(name));
        if let Some(component) = referenced {
            collect_docs(component, &key, components, out);
        }
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// The settings file wharf would read as its defaults, every setting documented (`wharf config
/// --defaults`).
pub fn defaults_toml() -> String {
    let mut out = String::from(
        "# wharf.toml: every setting, with its default value (`wharf config --defaults`).\n\
         #\n\
         # Precedence: built-in defaults < this file (./wharf.toml, or --config FILE) < the environment.\n\
         # Each setting's environment variable is named above it: DATABASE_URL, WHARF_<KEY> for top-level\n\
         # keys, WHARF_<SECTION>__<KEY> for nested ones (WHARF_WAREHOUSE__ORDERS__ENABLED=1).\n\
         # Booleans from the environment may be written 1/0 or true/false.\n",
    );
    render(&Settings::default(), true, &mut out);
    out
}

/// The settings in effect, as a `wharf.toml` with every secret replaced by `***` (`wharf config`).
/// `source` says where they came from, for the header.
pub fn effective_toml(settings: &Settings, source: &str) -> String {
    let mut out = format!(
        "# The settings in effect: built-in defaults < {source} < the environment.\n\
         # Secrets are shown as ***. `wharf config --defaults` documents every setting.\n"
    );
    render(settings, false, &mut out);
    out
}

fn render(settings: &Settings, documented: bool, out: &mut String) {
    let docs = docs();
    match toml_edit::ser::to_document(settings) {
        Ok(mut doc) => {
            redact(doc.as_table_mut());
            write_table(doc.as_table(), "", &docs, documented, out);
        }
        // Every settings type serialises to TOML (a test renders them); should one stop doing so,
        // say it in the output rather than panic.
        Err(e) => {
            let _ = writeln!(out, "# the settings cannot be written as TOML: {e}");
        }
    }
}

/// Writes the plain values of `table`, then its unset settings (commented out), then its
/// sub-tables, so that the result is valid TOML.
fn write_table(
    table: &dyn TableLike,
    prefix: &str,
    docs: &BTreeMap<String, Doc>,
    documented: bool,
    out: &mut String,
) {
    let plain = |i: &Item| i.as_table_like().is_none() && tables_in(i).is_none();
    for (name, item) in table.iter().filter(|(_, i)| plain(i)) {
        let key = join(prefix, name);
        if documented {
            comment(out, docs.get(&key), &key);
        }
        let _ = writeln!(out, "{name} = {}", value_text(item));
    }
    // Options that are unset do not serialise; the schema still knows them.
    let unset = docs.iter().filter(|(key, _)| {
        key.rsplit_once('.').map_or("", |(p, _)| p) == prefix
            && table.get(key.rsplit('.').next().unwrap_or(key)).is_none()
    });
    for (key, doc) in unset {
        let name = key.rsplit('.').next().unwrap_or(key);
        if documented {
            comment(out, Some(doc), key);
            let _ = writeln!(out, "# {name} = {}   (unset by default)", placeholder(doc));
        } else {
            let _ = writeln!(out, "# {name} is not set");
        }
    }
    for (name, item) in table.iter() {
        if let Some(sub) = item.as_table_like() {
            let key = join(prefix, name);
            out.push('\n');
            if documented {
                let doc = docs.get(&key);
                for line in doc.map(|d| d.text.as_str()).unwrap_or_default().lines() {
                    let _ = writeln!(out, "# {line}");
                }
            }
            let _ = writeln!(out, "[{key}]");
            write_table(sub, &key, docs, documented, out);
        }
        // A list of tables (`[[channels]]`): one table each, as they are written by hand.
        for sub in tables_in(item).into_iter().flatten() {
            let key = join(prefix, name);
            let _ = writeln!(out, "\n[[{key}]]");
            write_table(sub, &key, docs, documented, out);
        }
    }
}

/// The tables of a non-empty list of tables (serialised as an array of inline tables).
fn tables_in(item: &Item) -> Option<Vec<&toml_edit::InlineTable>> {
    let tables: Option<Vec<_>> = item
        .as_array()?
        .iter()
        .map(toml_edit::Value::as_inline_table)
        .collect();
    tables.filter(|t| !t.is_empty())
}

/// The doc comment of a setting and its environment variable, above it.
fn comment(out: &mut String, doc: Option<&Doc>, key: &str) {
    out.push('\n');
    for line in doc.map(|d| d.text.as_str()).unwrap_or_default().lines() {
        let _ = writeln!(out, "# {line}");
    }
    let _ = writeln!(out, "# env: {}", env_var(key));
}

fn value_text(item: &Item) -> String {
    match item.as_value() {
        Some(v) => v.clone().decorated("", "").to_string(),
        None => String::new(),
    }
}

/// A value to show for a setting that is unset by default.
fn placeholder(doc: &Doc) -> String {
    if let Some(example) = &doc.example {
        return match example {
            Json::String(s) => toml_edit::Value::from(s.as_str()).to_string(),
            other => other.to_string(),
        };
    }
    match doc.kind.as_deref() {
        Some("integer" | "number") => "0".into(),
        Some("boolean") => "false".into(),
        Some("array") => "[]".into(),
        _ => "\"\"".into(),
    }
}

/// Hides every secret: a string setting whose name has the word `password`, `secret`, `token` or
/// `key` in it (`password`, `api_token`, …), and the password inside any URL
/// (`postgres://wharf:***@db/wharf`). Decided by the shape of the settings, not by a list, so a
/// secret added later is hidden too.
fn redact(table: &mut dyn TableLike) {
    for (name, item) in table.iter_mut() {
        if let Some(sub) = item.as_table_like_mut() {
            redact(sub);
            continue;
        }
        if let Some(list) = item.as_array_mut() {
            for t in list
                .iter_mut()
                .filter_map(toml_edit::Value::as_inline_table_mut)
            {
                redact(t);
            }
            continue;
        }
        let Some(text) = item.as_str() else {
            continue;
        };
        let hidden = if is_secret_name(name.get()) && !text.is_empty() {
            "***".to_string()
        } else {
            super::redact_url(text)
        };
        if hidden != text {
            *item = toml_edit::value(hidden);
        }
    }
}

/// Whether a setting's name marks it as a secret (`token_lifetime_secs` is a number, so only
/// string settings are ever hidden).
pub(super) fn is_secret_name(name: &str) -> bool {
    name.split('_')
        .any(|word| matches!(word, "password" | "passwd" | "secret" | "token" | "key"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Figment;
    use figment::providers::{Format, Toml};

    /// Every setting, as dotted keys, from the serialised defaults (unset options included).
    fn setting_keys(value: &Json, prefix: &str, out: &mut Vec<String>) {
        if let Some(map) = value.as_object() {
            for (name, v) in map {
                let key = join(prefix, name);
                if v.is_object() {
                    setting_keys(v, &key, out);
                } else {
                    out.push(key);
                }
            }
        }
    }

    fn all_keys() -> Vec<String> {
        let mut keys = Vec::new();
        setting_keys(
            &serde_json::to_value(Settings::default()).unwrap(),
            "",
            &mut keys,
        );
        keys
    }

    #[test]
    fn the_defaults_file_reads_back_as_the_defaults() {
        let text = defaults_toml();
        let parsed: Settings = Figment::from(Toml::string(&text))
            .extract()
            .unwrap_or_else(|e| panic!("`wharf config --defaults` does not parse: {e}\n{text}"));
        assert_eq!(
            serde_json::to_value(&parsed).unwrap(),
            serde_json::to_value(Settings::default()).unwrap(),
            "`wharf config --defaults` does not read back as Settings::default():\n{text}"
        );
    }

    #[test]
    fn every_setting_is_in_the_defaults_file() {
        let text = defaults_toml();
        let written: toml_edit::DocumentMut = text.parse().unwrap();
        for key in all_keys() {
            let (section, name) = key.rsplit_once('.').unwrap_or(("", &key));
            let table = section
                .split('.')
                .filter(|s| !s.is_empty())
                .try_fold(written.as_item(), |t, s| t.get(s));
            let set = table.and_then(|t| t.get(name)).is_some();
            let commented = text.contains(&format!("# {name} = "));
            assert!(
                set || commented,
                "setting `{key}` is missing from `wharf config --defaults`; does its type derive \
                 utoipa::ToSchema like the other settings types in src/config.rs?\n{text}"
            );
        }
    }

    #[test]
    fn every_setting_has_a_doc_comment() {
        let docs = docs();
        for key in all_keys() {
            let doc = docs.get(&key).unwrap_or_else(|| {
                panic!(
                    "setting `{key}` is not in the settings schema; derive utoipa::ToSchema on its \
                     section's type (src/config.rs) so `wharf config --defaults` can document it"
                )
            });
            assert!(
                !doc.text.is_empty(),
                "setting `{key}` has no doc comment; write one above its field in src/config.rs \
                 (it is what `wharf config --defaults` prints)"
            );
        }
    }

    #[test]
    fn secrets_are_redacted_by_their_shape() {
        let mut s = Settings {
            database_url: "postgres://wharf:s3cret@db/wharf".into(),
            ..Settings::default()
        };
        s.warehouse.password = "hunter2".into();
        s.warehouse.endpoint = "https://user:pa55@wms.example.com/web/".into();
        let text = effective_toml(&s, "no settings file");
        for secret in ["s3cret", "hunter2", "pa55"] {
            assert!(!text.contains(secret), "{secret} shown in\n{text}");
        }
        assert!(text.contains("postgres://wharf:***@db/wharf"), "{text}");
        assert!(text.contains("password = \"***\""), "{text}");
        // A number that merely has "token" in its name is not a secret.
        assert!(text.contains("token_lifetime_secs = 14400"), "{text}");
        assert!(is_secret_name("api_token") && is_secret_name("smtp_password"));
        assert!(!is_secret_name("tokens_per_minute") && !is_secret_name("keyboard"));
    }

    #[test]
    fn channels_are_written_as_tables_with_their_secrets_hidden() {
        let mut s = Settings::default();
        for (name, secret) in [("partners", "whsec_cGFydG5lcnM="), ("feed", "")] {
            s.channels.push(crate::config::ChannelSettings {
                name: name.into(),
                sources: vec![format!("marketplace:{name}")],
                secret: secret.into(),
                token: format!("bearer-{name}"),
                ..Default::default()
            });
        }
        let text = effective_toml(&s, "a test");
        for secret in ["whsec_cGFydG5lcnM=", "bearer-partners", "bearer-feed"] {
            assert!(!text.contains(secret), "{secret} shown in\n{text}");
        }
        assert_eq!(text.matches("[[channels]]").count(), 2, "{text}");
        let back: Settings = toml_edit::de::from_str(&text).unwrap();
        assert_eq!(back.channels.len(), 2);
        assert_eq!(back.channels[1].name, "feed");
        assert_eq!(back.channels[1].secret, "");
    }
}
