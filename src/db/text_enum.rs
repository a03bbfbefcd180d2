//! States and outcomes are Rust enums stored as text: [`text_enum!`](crate::text_enum) declares
//! one with its stored words, and [`read`] parses a stored word once, where a row is read, into
//! the enum (an unknown word is a deserialisation error naming the column's type, not a panic).

/// A stored word that names no variant of the enum it was read into.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {text:?} in the database (written by a newer wharf?)")]
pub struct UnknownText {
    /// What the word should have named (`request state`, …).
    pub kind: &'static str,
    /// The word.
    pub text: String,
}

/// Parses a stored word into `T`, as a diesel deserialisation error when it names no variant, so
/// store functions can `?` it like any other read error.
pub fn read<T>(text: &str) -> diesel::QueryResult<T>
where
    T: std::str::FromStr<Err = UnknownText>,
{
    text.parse()
        .map_err(|e: UnknownText| diesel::result::Error::DeserializationError(Box::new(e)))
}

/// Declares an enum stored as text: each variant with its word (`Queued = "queued"`), `as_str`,
/// `parse`, `ALL`, `Display`, `FromStr` and `TryFrom<String>` (an unknown word is an
/// [`UnknownText`]; the last lets diesel rows read the column with `deserialize_as = String`). Derives and
/// doc comments written on the enum and its variants are kept.
#[macro_export]
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $kind:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The word stored for it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text ),+
                }
            }

            /// The variant a stored word names.
            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $( $text => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        // `pad`, not `write_str`: tables print states in columns (`{:<10}`).
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        // Lets a row struct read the column straight into the enum:
        // `#[diesel(deserialize_as = String)] state: RequestState`.
        impl TryFrom<String> for $name {
            type Error = $crate::db::text_enum::UnknownText;

            fn try_from(text: String) -> Result<$name, Self::Error> {
                text.parse()
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::db::text_enum::UnknownText;

            fn from_str(text: &str) -> Result<$name, Self::Err> {
                $name::parse(text).ok_or_else(|| $crate::db::text_enum::UnknownText {
                    kind: $kind,
                    text: text.to_string(),
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::text_enum! {
        /// A test enum.
        enum Light: "light" {
            /// Stop.
            Red = "red",
            Green = "green",
        }
    }

    #[test]
    fn words_round_trip_and_unknown_words_are_named() {
        for l in Light::ALL {
            assert_eq!(Light::parse(l.as_str()), Some(*l));
        }
        assert_eq!(Light::Green.to_string(), "green");
        assert_eq!(format!("[{:<6}]", Light::Red), "[red   ]");
        let e = super::read::<Light>("blue").unwrap_err().to_string();
        assert!(e.contains("unknown light \"blue\""), "{e}");
        assert_eq!(Light::try_from("red".to_string()), Ok(Light::Red));
        assert!(Light::try_from("blue".to_string()).is_err());
    }
}
