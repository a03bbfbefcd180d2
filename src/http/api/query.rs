//! Query strings and listing cursors of the storefront API.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use base64::Engine;
use chrono::{DateTime, NaiveDateTime, Timelike};
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::validate::{self, TextKind};

/// A query string parsed into `T`; a parameter that does not parse is a `400 invalid_query` problem
/// naming it (actix's own `web::Query` says only "invalid digit found in string").
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned> FromRequest for ApiQuery<T> {
    type Error = ApiError;
    type Future = Ready<Result<ApiQuery<T>, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse_query(req.query_string()).map(ApiQuery))
    }
}

/// Parses a query string, naming the parameter at fault. A value holding a character wharf cannot
/// store or send (NUL, another control character) is `422 invalid_field` naming the parameter, even
/// where the handler would ignore it: every value is checked here, in one place.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        validate::check_text(&name, &value, TextKind::Identifier)?;
    }
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let param = match e.path().to_string() {
            p if p == "." => "query".to_string(),
            p => p,
        };
        ApiError::InvalidQuery {
            param,
            reason: e.into_inner().to_string(),
        }
    })
}

/// Encodes a listing position (a change time and a tie-breaking key) as an opaque cursor.
pub fn encode_cursor(updated_at: NaiveDateTime, key: &str) -> String {
    let t = updated_at.and_utc();
    let raw = format!("{}.{:09}:{key}", t.timestamp(), t.nanosecond());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// Decodes a cursor made by [`encode_cursor`]; anything else is a `400 invalid_query` problem for
/// parameter `after`.
pub fn decode_cursor(cursor: &str) -> Result<(NaiveDateTime, String), ApiError> {
    let invalid = || ApiError::InvalidQuery {
        param: "after".into(),
        reason: "is not a cursor this API handed out; pass the `next` of the previous page".into(),
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(invalid)?;
    let (time, key) = raw.split_once(':').ok_or_else(invalid)?;
    let (secs, nanos) = time.split_once('.').ok_or_else(invalid)?;
    let secs: i64 = secs.parse().map_err(|_| invalid())?;
    let nanos: u32 = nanos.parse().map_err(|_| invalid())?;
    let at = DateTime::from_timestamp(secs, nanos).ok_or_else(invalid)?;
    // A forged cursor could carry a key no SKU can hold (PostgreSQL refuses NUL in a comparison).
    validate::check_text("after", key, TextKind::Identifier).map_err(|_| invalid())?;
    Ok((at.naive_utc(), key.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Q {
        #[allow(dead_code)]
        limit: Option<i64>,
    }

    #[test]
    fn a_bad_parameter_is_named() {
        match parse_query::<Q>("limit=ten") {
            Err(ApiError::InvalidQuery { param, .. }) => assert_eq!(param, "limit"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_control_character_in_any_value_is_refused_and_named() {
        for (query, param) in [
            ("limit=1&status=a%00b", "status"),
            ("unknown=%07", "unknown"),
        ] {
            match parse_query::<Q>(query) {
                Err(ApiError::Invalid(i)) => assert_eq!(i.field, param),
                other => panic!("{query}: {other:?}"),
            }
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let t = DateTime::from_timestamp(1_700_000_000, 123_456_000)
            .unwrap()
            .naive_utc();
        let c = encode_cursor(t, "SKU:1");
        assert_eq!(decode_cursor(&c).unwrap(), (t, "SKU:1".to_string()));
        assert!(decode_cursor("not a cursor").is_err());
        assert!(decode_cursor("").is_err());
        let forged = encode_cursor(t, "A\u{0}B");
        assert!(decode_cursor(&forged).is_err());
    }
}
