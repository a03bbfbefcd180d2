//! Field checks shared by the storefront API's inputs. Errors name the field (a JSON path).

/// A field that is missing or wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    /// JSON path of the field, e.g. `lines[2].qty`.
    pub field: String,
    /// What is wrong and what is expected.
    pub reason: String,
}

impl Invalid {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
        Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Text of `min..=max` characters.
pub fn check_len(field: &str, value: &str, min: usize, max: usize) -> Result<(), Invalid> {
    let n = value.chars().count();
    if n < min {
        Err(Invalid::new(
            field,
            if min == 1 {
                "must not be empty".to_string()
            } else {
                format!("must be at least {min} characters")
            },
        ))
    } else if n > max {
        Err(Invalid::new(
            field,
            format!("must be at most {max} characters"),
        ))
    } else {
        Ok(())
    }
}

/// A SKU: 1–64 characters, no control characters.
pub fn check_sku(field: &str, value: &str) -> Result<(), Invalid> {
    check_len(field, value, 1, 64)?;
    check_text(field, value, TextKind::Identifier)
}

/// A key named in a path or given by the storefront (order number, cart id): 1–64 characters, no
/// control characters.
pub fn check_key(field: &str, value: &str) -> Result<(), Invalid> {
    check_len(field, value, 1, 64)?;
    check_text(field, value, TextKind::Identifier)
}

/// A short machine code such as a status: 1–32 characters of letters, digits, `_` and `-`.
pub fn check_code(field: &str, value: &str) -> Result<(), Invalid> {
    check_len(field, value, 1, 32)?;
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        Ok(())
    } else {
        Err(Invalid::new(
            field,
            format!("{value:?} may hold only letters, digits, _ and -"),
        ))
    }
}

/// A time RFC 3339 can write: in UTC within years 0000–9999. (An offset can push `0000-01-01T00:00
/// +01:00` into year −1, which wharf would then answer as `-0001-12-31T23:00:00Z`, not RFC 3339.)
pub fn check_time(field: &str, value: chrono::DateTime<chrono::Utc>) -> Result<(), Invalid> {
    use chrono::Datelike;
    if (0..=9999).contains(&value.year()) {
        Ok(())
    } else {
        Err(Invalid::new(
            field,
            "is outside years 0000–9999 once in UTC; give a real time, e.g. 2024-05-01T09:30:00Z",
        ))
    }
}

/// What a string may hold besides printable characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// Names, addresses, notes, descriptions: tab, line feed and carriage return are kept (the
    /// export strips CR/LF where a value must stay on one line).
    FreeText,
    /// SKUs, order numbers, cart ids, codes and query parameters: no control character at all,
    /// since a line break or a tab in a key only ever hides a mistake.
    Identifier,
}

/// Whether XML 1.0 can carry `c` (its `Char` production). Every value wharf stores may be sent to
/// the warehouse inside an XML document, and PostgreSQL refuses NUL in text outright, so a value
/// holding anything else is refused when it arrives rather than failing later.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// A string wharf can store on both backends and send in XML: every character an XML 1.0 `Char`
/// and, for an [`TextKind::Identifier`], no control character (C0, DEL, C1) either.
pub fn check_text(field: &str, value: &str, kind: TextKind) -> Result<(), Invalid> {
    let bad = value
        .chars()
        .enumerate()
        .find(|(_, c)| !is_xml_char(*c) || (kind == TextKind::Identifier && c.is_control()));
    let Some((at, c)) = bad else {
        return Ok(());
    };
    let what = if c.is_control() {
        "a control character"
    } else {
        "a noncharacter"
    };
    let allowed = match kind {
        TextKind::FreeText => {
            "of the control characters only tab, line feed and carriage return are allowed"
        }
        TextKind::Identifier => {
            "this field allows no control character at all, not even a tab or a line break"
        }
    };
    Err(Invalid::new(
        field,
        format!(
            "holds U+{:04X} ({what}) at character {}, which wharf cannot store or send to the \
             warehouse; remove it ({allowed})",
            u32::from(c),
            at + 1,
        ),
    ))
}

/// Checks every string of a JSON body as [`TextKind::FreeText`], naming the first one at fault by
/// its JSON path (`lines[0].sku`, `billing_address.street[1]`), so no input type can forget a field.
/// Identifier fields get the stricter check from their own validation ([`check_sku`], …).
/// (serde_json parses at most 128 levels deep, which bounds the recursion.)
pub fn check_json_strings(value: &serde_json::Value) -> Result<(), Invalid> {
    walk_json(value, &mut String::new())
}

fn walk_json(value: &serde_json::Value, path: &mut String) -> Result<(), Invalid> {
    use serde_json::Value;
    let len = path.len();
    let result = match value {
        Value::String(s) => check_text(
            if path.is_empty() { "body" } else { path },
            s,
            TextKind::FreeText,
        ),
        Value::Array(items) => items.iter().enumerate().try_for_each(|(i, item)| {
            path.truncate(len);
            path.push_str(&format!("[{i}]"));
            walk_json(item, path)
        }),
        Value::Object(members) => members.iter().try_for_each(|(name, item)| {
            path.truncate(len);
            if len > 0 {
                path.push('.');
            }
            path.push_str(name);
            walk_json(item, path)
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    };
    path.truncate(len);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_outside_xml_are_refused_and_named() {
        for bad in ["a\u{0}b", "\u{1}", "x\u{1F}", "\u{FFFE}", "\u{FFFF}"] {
            let e = check_text("name", bad, TextKind::FreeText).unwrap_err();
            assert_eq!(e.field, "name");
            assert!(e.reason.contains("U+"), "{e}");
        }
        for good in [
            "Mug\tblue\r\nsecond line",
            "Ünïcødé ✓",
            "\u{10FFFF}",
            "\u{85}",
        ] {
            check_text("name", good, TextKind::FreeText).unwrap();
        }
    }

    #[test]
    fn identifiers_refuse_every_control_character() {
        for bad in ["A\tB", "A\nB", "A\u{7F}", "A\u{85}", "A\u{0}"] {
            assert!(
                check_text("sku", bad, TextKind::Identifier).is_err(),
                "{bad:?}"
            );
        }
        check_sku("sku", "MUG-1 blue/ß").unwrap();
    }

    #[test]
    fn times_stay_within_what_rfc_3339_writes() {
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        check_time("created_at", at("0000-01-01T00:00:00Z")).unwrap();
        check_time("created_at", at("9999-12-31T23:59:59Z")).unwrap();
        let e = check_time("created_at", at("0000-01-01T00:00:00+00:01")).unwrap_err();
        assert_eq!(e.field, "created_at");
        check_time("created_at", at("9999-12-31T23:59:59-00:01")).unwrap_err();
    }

    #[test]
    fn json_strings_are_named_by_their_path() {
        let doc = serde_json::json!({
            "status": "ok",
            "lines": [{"sku": "A"}, {"sku": "B", "tags": ["x", "y\u{0}"]}],
            "billing_address": {"street": ["ok", "bad\u{FFFF}"]},
        });
        let e = check_json_strings(&doc).unwrap_err();
        assert!(
            e.field == "lines[1].tags[1]" || e.field == "billing_address.street[1]",
            "{e}"
        );
        let e = check_json_strings(&serde_json::json!({"a": {"b": "\u{1}"}})).unwrap_err();
        assert_eq!(e.field, "a.b");
        check_json_strings(&serde_json::json!({"a": ["fine\n", 1, null, true]})).unwrap();
        let e = check_json_strings(&serde_json::json!("\u{0}")).unwrap_err();
        assert_eq!(e.field, "body");
    }
}
