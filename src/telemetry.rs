//! Logging setup: human-readable or JSON lines on stderr, filtered by `RUST_LOG` (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are ignored (tests call it freely). Colours only
/// when stderr is a terminal and `NO_COLOR` is unset: escape codes in a log file or journal are noise.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Shows an input-derived value (a user name, an operation name, a fault reason quoting a field) in a
/// log line without letting it shape the log: control characters (a newline would start a fake line,
/// ESC sequences drive the terminal), other non-printable and bidirectional-override characters,
/// backslashes and quotes are written as escapes (`\n`, `\u{1b}`, `\\`, `\"`), and the value is cut
/// after [`Escaped::MAX_CHARS`] characters, saying how much was left out.
pub struct Escaped<'a>(pub &'a str);

impl Escaped<'_> {
    /// Most characters shown before the value is cut.
    pub const MAX_CHARS: usize = 1000;
}

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        for (n, (at, c)) in self.0.char_indices().enumerate() {
            if n == Self::MAX_CHARS {
                return write!(f, "…(+{} bytes)", self.0.len() - at);
            }
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if shown_as_is(c) => f.write_char(c)?,
                c => write!(f, "\\u{{{:x}}}", u32::from(c))?,
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Whether a character can be written into a log line as it is: not a control character (C0, DEL,
/// C1), not a line or paragraph separator, not an invisible format character that reorders or hides
/// text (bidirectional overrides and isolates, zero-width characters, the BOM), not a noncharacter.
fn shown_as_is(c: char) -> bool {
    !(c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{fffe}'
                | '\u{ffff}'
        ))
}

#[cfg(test)]
mod tests {
    use super::Escaped;

    #[test]
    fn escapes_what_could_forge_a_line_or_drive_a_terminal() {
        let forged =
            "x\n2026-01-01T00:00:00Z  INFO wharf: login caller=\"admin\"\u{1b}[2J\u{1b}[H\\";
        let shown = Escaped(forged).to_string();
        assert!(
            !shown.contains('\n') && !shown.contains('\u{1b}'),
            "{shown}"
        );
        assert_eq!(
            shown,
            "x\\n2026-01-01T00:00:00Z  INFO wharf: login caller=\\\"admin\\\"\\u{1b}[2J\\u{1b}[H\\\\"
        );
        assert_eq!(
            Escaped("a\u{0}b\r\t\u{202e}\u{85}é").to_string(),
            "a\\u{0}b\\r\\t\\u{202e}\\u{85}é"
        );
        assert_eq!(format!("{:?}", Escaped("o\"k")), "\"o\\\"k\"");
    }

    #[test]
    fn cuts_long_values() {
        let long = "é".repeat(Escaped::MAX_CHARS + 44);
        let shown = Escaped(&long).to_string();
        assert_eq!(
            shown,
            format!("{}…(+88 bytes)", "é".repeat(Escaped::MAX_CHARS))
        );
    }
}
