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

/// A SKU: 1–64 characters.
pub fn check_sku(field: &str, value: &str) -> Result<(), Invalid> {
    check_len(field, value, 1, 64)
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
