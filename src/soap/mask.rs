//! Credentials out of everything wharf stores: the text of every `sessionId`, `apiKey` and
//! `password` element (any prefix, any letter case) is replaced by [`MASK`] before a body is hashed
//! or written, so neither a stored request nor a rejection excerpt ever holds a credential, and the
//! duplicate check compares messages without theirs (a re-send after a new login is a repeat).
//!
//! Two ways to find the spans, one way to replace them:
//! - a well-formed envelope: the envelope parser records the content span of every credential
//!   element while it reads ([`Envelope::credentials`](super::Envelope)), so the receipt path does not
//!   read the body twice;
//! - anything else (rejection excerpts, which may be cut off or not XML at all): [`find_lossy`] scans
//!   for what looks like a credential element and masks generously, to the closing tag, the next tag,
//!   or the end of the text when neither comes.
//!
//! HTTP Basic and Bearer credentials travel in headers, which wharf never stores.

use std::borrow::Cow;
use std::ops::Range;

/// What a credential is replaced by.
pub const MASK: &str = "***";

/// Local names of the elements that carry credentials: the Magento 1 session id, the Magento 1
/// login's API key, the Magento 2 token request's password (and a WS-Security `Password`).
const CREDENTIAL_ELEMENTS: [&[u8]; 3] = [b"sessionId", b"apiKey", b"password"];

/// Whether an element with this local name carries a credential. Letter case is ignored: a
/// misspelt `SessionID` is still somebody's session.
pub fn is_credential(local_name: &[u8]) -> bool {
    CREDENTIAL_ELEMENTS
        .iter()
        .any(|c| c.eq_ignore_ascii_case(local_name))
}

/// `body` with each span replaced by [`MASK`]. Spans must be sorted and must not overlap; empty
/// spans are left alone (there is nothing to hide). Borrows when there is nothing to mask.
pub fn apply<'a>(body: &'a [u8], spans: &[Range<usize>]) -> Cow<'a, [u8]> {
    let spans = spans.iter().filter(|s| !s.is_empty());
    if spans.clone().next().is_none() {
        return Cow::Borrowed(body);
    }
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    for span in spans {
        let (start, end) = (span.start.max(at), span.end.min(body.len()));
        if start >= end {
            continue;
        }
        out.extend_from_slice(&body[at..start]);
        out.extend_from_slice(MASK.as_bytes());
        at = end;
    }
    out.extend_from_slice(&body[at..]);
    Cow::Owned(out)
}

/// Masks a stored body exactly as the receipt masks an incoming one — with the spans the envelope
/// parser finds, so the result (and its hash) is what a re-send of it would get — and with the lossy
/// scan when it does not parse. For bodies stored before masking existed.
pub fn mask_stored(body: &str) -> Cow<'_, str> {
    let limits = super::Limits::for_lines(usize::MAX);
    let spans = match super::envelope::parse(body.as_bytes(), limits) {
        Ok(env) => env.credentials,
        Err(_) => find_lossy(body.as_bytes()),
    };
    match apply(body.as_bytes(), &spans) {
        Cow::Borrowed(_) => Cow::Borrowed(body),
        Cow::Owned(v) => Cow::Owned(String::from_utf8_lossy(&v).into_owned()),
    }
}

/// Masks a text that may be cut off or not well-formed (see [`find_lossy`]).
pub fn mask_lossy(text: &str) -> Cow<'_, str> {
    let spans = find_lossy(text.as_bytes());
    match apply(text.as_bytes(), &spans) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        // Spans start after a `>` and end before a `<` or at the end, so the cut points are
        // character boundaries; the lossy conversion never actually replaces anything.
        Cow::Owned(v) => Cow::Owned(String::from_utf8_lossy(&v).into_owned()),
    }
}

/// The spans of credential element contents in a text that may be truncated or malformed. Errs on
/// the side of masking: the content runs to the matching closing tag (any prefix or case), else to
/// the next tag, else (a `<!` that may open a CDATA section, or nothing at all) to the end.
pub fn find_lossy(text: &[u8]) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut at = 0;
    while let Some(lt) = find_byte(text, at, b'<') {
        let name_end = name_end(text, lt + 1);
        let local = local_name(&text[lt + 1..name_end]);
        if !is_credential(local) {
            at = lt + 1;
            continue;
        }
        // The start tag's end; a text cut inside the start tag holds no credential value.
        let Some(gt) = find_byte(text, name_end, b'>') else {
            break;
        };
        if text[gt - 1] == b'/' {
            at = gt + 1; // `<sessionId/>`: empty
            continue;
        }
        let start = gt + 1;
        let end = closing_tag(text, start, local)
            .or_else(|| next_plain_tag(text, start))
            .unwrap_or(text.len());
        if end > start {
            spans.push(start..end);
        }
        at = end.max(start);
    }
    spans
}

fn find_byte(text: &[u8], from: usize, byte: u8) -> Option<usize> {
    text.get(from..)?
        .iter()
        .position(|b| *b == byte)
        .map(|p| from + p)
}

/// Where a tag name that starts at `from` ends (whitespace, `>`, `/` or the end of the text).
fn name_end(text: &[u8], from: usize) -> usize {
    text[from..]
        .iter()
        .position(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'>' | b'/'))
        .map_or(text.len(), |p| from + p)
}

/// The part of a qualified name after its prefix.
fn local_name(qname: &[u8]) -> &[u8] {
    qname.rsplit(|b| *b == b':').next().unwrap_or(qname)
}

/// The position of the first `</[prefix:]name` (letter case ignored) at or after `from`.
fn closing_tag(text: &[u8], from: usize, name: &[u8]) -> Option<usize> {
    let mut at = from;
    while let Some(lt) = find_byte(text, at, b'<') {
        if text.get(lt + 1) == Some(&b'/') {
            let end = name_end(text, lt + 2);
            if local_name(&text[lt + 2..end]).eq_ignore_ascii_case(name) {
                return Some(lt);
            }
        }
        at = lt + 1;
    }
    None
}

/// The next `<` at or after `from`, unless it opens `<!` (a CDATA section may hide anything).
fn next_plain_tag(text: &[u8], from: usize) -> Option<usize> {
    let lt = find_byte(text, from, b'<')?;
    (text.get(lt + 1) != Some(&b'!')).then_some(lt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lossy(s: &str) -> String {
        mask_lossy(s).into_owned()
    }

    #[test]
    fn masks_credentials_whatever_the_prefix_and_case() {
        assert_eq!(
            lossy(
                "<a><ns1:sessionId xsi:type=\"xsd:string\">abc</ns1:sessionId><b>1</b>\
                 <apiKey>k y </apiKey><Password>p</Password><SessionID>s</SessionID></a>"
            ),
            "<a><ns1:sessionId xsi:type=\"xsd:string\">***</ns1:sessionId><b>1</b>\
             <apiKey>***</apiKey><Password>***</Password><SessionID>***</SessionID></a>"
        );
        assert_eq!(
            lossy("<sessionId/><sessionId></sessionId>"),
            "<sessionId/><sessionId></sessionId>"
        );
        assert_eq!(lossy("<username>u</username>"), "<username>u</username>");
    }

    #[test]
    fn masks_what_it_can_in_broken_or_cut_text() {
        // Cut inside the value, inside the closing tag, inside the start tag.
        assert_eq!(lossy("<x><sessionId>abcdef"), "<x><sessionId>***");
        assert_eq!(lossy("<sessionId>abc</sess"), "<sessionId>***</sess");
        assert_eq!(lossy("<x><sessionId xsi:ty"), "<x><sessionId xsi:ty");
        // No closing tag: up to the next tag; a CDATA section: to the end.
        assert_eq!(
            lossy("<apiKey>secret<next>1</next>"),
            "<apiKey>***<next>1</next>"
        );
        assert_eq!(lossy("<apiKey><![CDATA[a<b]]>"), "<apiKey>***");
        // A mismatched closing tag still closes it.
        assert_eq!(
            lossy("<password>pw</PASSWORD><b>2</b>"),
            "<password>***</PASSWORD><b>2</b>"
        );
        assert_eq!(lossy("not xml at all"), "not xml at all");
        assert_eq!(lossy("<<<>>>"), "<<<>>>");
    }

    #[test]
    fn apply_replaces_spans_and_borrows_when_there_are_none() {
        assert!(matches!(apply(b"abc", &[]), Cow::Borrowed(_)));
        let empty = vec![1..1, 2..2];
        assert!(matches!(apply(b"abc", &empty), Cow::Borrowed(_)));
        assert_eq!(&*apply(b"0123456789", &[1..3, 5..9]), b"0***34***9");
    }
}
