//! The environment as a settings source: booleans written the way shells write them, strings
//! kept as written, and errors that name the variable a person actually set (never a secret's
//! value).

use figment::error::Kind;
use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

/// Wraps an environment provider so that every setting whose default is a boolean also accepts
/// `1`/`0` and `true`/`false` in any case (`WHARF_LOG_JSON=1`, `…__ENABLED=TRUE`). Which keys are
/// booleans is read from the defaults, so a boolean setting added later needs nothing extra.
///
/// It also keeps string settings as written: figment reads every variable as TOML-ish syntax, so
/// `WHARF_ALERTS__SMTP_PASSWORD=111111` would become a number (refused for a string setting, with
/// the value in the message) and `007` would lose its zeros. Where the default is a string, or a
/// setting without default is named like a secret (`metrics.token`), the variable's own text is
/// used.
pub(super) struct LenientBools<P> {
    inner: P,
    defaults: Dict,
    prefix: &'static str,
}

impl<P: Provider> LenientBools<P> {
    /// `inner`'s values (variables named `prefix` + the key), with booleans coerced where
    /// `defaults` holds a boolean and strings kept as written where it holds a string.
    pub(super) fn new(inner: P, defaults: Dict, prefix: &'static str) -> Self {
        LenientBools {
            inner,
            defaults,
            prefix,
        }
    }
}

impl<P: Provider> Provider for LenientBools<P> {
    fn metadata(&self) -> Metadata {
        self.inner.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut data = self.inner.data()?;
        for dict in data.values_mut() {
            coerce(dict, &self.defaults, self.prefix, "");
        }
        Ok(data)
    }
}

fn coerce(dict: &mut Dict, defaults: &Dict, prefix: &str, path: &str) {
    for (key, value) in dict.iter_mut() {
        let full = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match (value, defaults.get(key)) {
            (Value::Dict(_, inner), Some(Value::Dict(_, inner_defaults))) => {
                coerce(inner, inner_defaults, prefix, &full)
            }
            // A section whose defaults are all unset (`[metrics]`) has no dict among them.
            (Value::Dict(_, inner), None) => coerce(inner, &Dict::new(), prefix, &full),
            (value, Some(Value::Bool(..))) => {
                if let Some(b) = as_bool(value) {
                    *value = Value::Bool(value.tag(), b);
                }
            }
            (value @ (Value::Num(..) | Value::Bool(..)), default)
                if matches!(default, Some(Value::String(..)))
                    || (matches!(default, None | Some(Value::Empty(..)))
                        && super::document::is_secret_name(key)) =>
            {
                if let Some(text) = raw_var(prefix, &full) {
                    *value = Value::String(value.tag(), text);
                }
            }
            _ => {}
        }
    }
}

/// The text of the variable that set `key` (`prefix` + the key, `.` as `__`, any case).
fn raw_var(prefix: &str, key: &str) -> Option<String> {
    let name = format!("{prefix}{}", key.replace('.', "__"));
    std::env::vars_os().find_map(|(k, v)| {
        let k = k.to_str()?;
        k.eq_ignore_ascii_case(&name)
            .then(|| v.into_string().ok())?
    })
}

/// `1`, `0`, `true`, `false` (any case); anything else is left for serde to refuse.
fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(_, b) => Some(*b),
        Value::Num(_, n) => match n.to_u128() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(_, s) => match s.to_ascii_lowercase().as_str() {
            "1" | "true" => Some(true),
            "0" | "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// The environment variable that sets `key` (a dotted settings key such as `worker.batch_size`).
pub fn env_var(key: &str) -> String {
    if key == "database_url" {
        return "DATABASE_URL".into();
    }
    format!("WHARF_{}", key.replace('.', "__").to_ascii_uppercase())
}

/// One figment error as one sentence for people: the dotted key (figment's own message starts with
/// the profile, `default.`, which means nothing to an operator) and where the value came from.
pub(super) fn describe(e: &Error) -> String {
    let key = e.path.join(".");
    let from = origin(e.metadata.as_ref(), &key);
    match &e.kind {
        Kind::UnknownField(field, expected) => {
            // The path may or may not already end with the unknown key, depending on the source.
            let mut path = e.path.clone();
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            let full = path.join(".");
            let section = match path.len() {
                1 => "the top level".to_string(),
                n => format!("[{}]", path[..n - 1].join(".")),
            };
            let from = origin(e.metadata.as_ref(), &full);
            format!(
                "unknown setting {full}{from}; {section} has {}",
                expected.join(", ")
            )
        }
        kind if key.is_empty() => match e.metadata.as_ref().and_then(|md| md.source.as_ref()) {
            Some(figment::Source::File(path)) => format!(
                "cannot read the settings file {}: {}",
                path.display(),
                kind.to_string().trim()
            ),
            _ => format!("invalid settings{from}: {}", kind.to_string().trim()),
        },
        // The message quotes the value found: never for a secret.
        _ if e
            .path
            .last()
            .is_some_and(|k| super::document::is_secret_name(k)) =>
        {
            format!(
                "invalid setting {key}{from}: not a text value (the value is not shown: it is a secret)"
            )
        }
        kind => format!("invalid setting {key}{from}: {}", kind.to_string().trim()),
    }
}

/// ` (environment variable X)` or ` (in FILE)`, or nothing when unknown.
fn origin(metadata: Option<&Metadata>, key: &str) -> String {
    let Some(md) = metadata else {
        return String::new();
    };
    if md.name.contains("environment") {
        // The un-prefixed provider only ever reads DATABASE_URL.
        let var = if md.name.contains("WHARF_") {
            format!("WHARF_{}", key.replace('.', "__").to_ascii_uppercase())
        } else {
            env_var(key)
        };
        return format!(" (environment variable {var})");
    }
    match &md.source {
        Some(figment::Source::File(path)) => format!(" (in {})", path.display()),
        _ => String::new(),
    }
}
