//! Reading the warehouse's answers: import reports, and the ways an answer can be an error instead
//! (HTTP error, HTML error page, `<exception>` body, not XML at all).
//!
//! quick-xml rather than yaserde: the report's item element names are not fixed (only their
//! containers are), and the same reader must also recognise HTML pages and exception bodies, which a
//! typed mapping would reject before telling them apart.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::imports::LineOutcome;

/// One line of an import report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportLine {
    /// The item's externalReference.
    pub reference: String,
    /// The verdict.
    pub verdict: LineOutcome,
    /// The warehouse's message (or a success text).
    pub message: String,
    /// The warehouse's detail, if any.
    pub detail: Option<String>,
}

/// Why an answer is not a usable import report. The whole batch is retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// The body is not XML.
    #[error("the warehouse answered with something that is not XML: {0}")]
    NotXml(String),
    /// An HTML error page.
    #[error("the warehouse answered with an error page: {0}")]
    ErrorPage(String),
    /// An `<exception>` element.
    #[error("the warehouse reported an exception: {0}")]
    Exception(String),
}

fn attr(e: &BytesStart, name: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

/// Collapses whitespace and trims.
fn tidy(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses an import report, or says why the answer is not one.
pub fn parse_import_report(body: &str) -> Result<Vec<ReportLine>, AnswerError> {
    let trimmed = body.trim_start();
    if !trimmed.starts_with('<') {
        return Err(AnswerError::NotXml(excerpt(body)));
    }
    let mut reader = Reader::from_str(body);
    let mut p = ReportParser::default();
    loop {
        let event = reader.read_event().map_err(|e| {
            if p.html.seen {
                AnswerError::ErrorPage(p.html.describe())
            } else {
                AnswerError::NotXml(format!("{e}: {}", excerpt(body)))
            }
        })?;
        match event {
            Event::Start(ref e) => p.start(e, false),
            Event::Empty(ref e) => p.start(e, true),
            Event::Text(t) => p.text.push_str(&t.xml10_content()),
            Event::CData(c) => p.text.push_str(&c.into_inner()),
            Event::GeneralRef(r) => {
                let name = r.xml10_content();
                if let Some(s) = quick_xml::escape::resolve_xml_entity(&name) {
                    p.text.push_str(s);
                }
            }
            Event::End(_) => p.end(),
            Event::Eof => break,
            _ => {}
        }
    }
    if p.html.seen {
        return Err(AnswerError::ErrorPage(p.html.describe()));
    }
    if let Some(e) = p.exception {
        return Err(AnswerError::Exception(e));
    }
    Ok(p.lines)
}

/// Where the streaming parse of a report stands.
#[derive(Default)]
struct ReportParser {
    path: Vec<String>,
    lines: Vec<ReportLine>,
    text: String,
    html: HtmlError,
    exception: Option<String>,
}

impl ReportParser {
    /// An element opens: a verdict element (`importSuccesses/…`) starts a line.
    fn start(&mut self, e: &BytesStart, empty: bool) {
        let name = e.local_name().as_ref().to_string();
        if self.path.is_empty() && name.eq_ignore_ascii_case("html") {
            self.html.seen = true;
        }
        if self.path.len() == 2 {
            let verdict = match self.path[1].as_str() {
                "importSuccesses" => Some(LineOutcome::Success),
                "importFailures" => Some(LineOutcome::Failure),
                "importDuplicates" => Some(LineOutcome::Duplicate),
                _ => None,
            };
            if let Some(verdict) = verdict {
                let reference = attr(e, "externalReference").unwrap_or_default();
                self.lines.push(ReportLine {
                    message: format!("Successfully Exported {reference}"),
                    reference,
                    verdict,
                    detail: None,
                });
            }
        }
        self.text.clear();
        if !empty {
            self.path.push(name);
        }
    }

    /// An element closes: its text is a line's message or detail, the exception, or part of an
    /// error page.
    fn end(&mut self) {
        let name = self.path.pop().unwrap_or_default();
        let value = tidy(&self.text);
        if self.path.len() == 3
            && let Some(line) = self.lines.last_mut()
        {
            match name.as_str() {
                "failureMessage" | "duplicateMessage" if !value.is_empty() => {
                    line.message = value.clone()
                }
                "failureDetail" | "duplicateDetail" if !value.is_empty() => {
                    line.detail = Some(value.clone())
                }
                _ => {}
            }
        }
        if name == "exception" && self.path.len() == 1 {
            self.exception = Some(value.clone());
        }
        if self.html.seen {
            match name.to_ascii_lowercase().as_str() {
                "title" => self.html.title = value,
                "h2" | "h1" => self.html.heading = value,
                "p" if self.html.paragraph.is_empty() => self.html.paragraph = value,
                _ => {}
            }
        }
        self.text.clear();
    }
}

#[derive(Default)]
struct HtmlError {
    seen: bool,
    title: String,
    heading: String,
    paragraph: String,
}

impl HtmlError {
    fn describe(&self) -> String {
        [&self.heading, &self.paragraph, &self.title]
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" — ")
    }
}

/// The start of a body, for messages.
pub fn excerpt(body: &str) -> String {
    let t = tidy(body);
    if t.chars().count() > 200 {
        format!("{}…", t.chars().take(200).collect::<String>())
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fixture_report() {
        let lines = parse_import_report(include_str!(
            "../../../tests/fixtures/orderflow/import-report.xml"
        ))
        .unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            ReportLine {
                reference: "100000123".into(),
                verdict: LineOutcome::Success,
                message: "Successfully Exported 100000123".into(),
                detail: None
            }
        );
        assert_eq!(lines[1].verdict, LineOutcome::Failure);
        assert_eq!(lines[1].message, "Product ZZZ999 not found");
        assert_eq!(
            lines[1].detail.as_deref(),
            Some("orderLine.1.product.externalReference=ZZZ999 could not be resolved")
        );
        assert_eq!(lines[2].verdict, LineOutcome::Duplicate);
        assert_eq!(lines[2].message, "Order already exists");
    }

    #[test]
    fn recognises_error_answers() {
        let page = "<html><head><title>Apache Tomcat - Error report</title></head><body><h2>HTTP Status 500 - ERROR</h2><p>Database down</p></body></html>";
        assert!(
            matches!(parse_import_report(page), Err(AnswerError::ErrorPage(m)) if m.contains("ERROR") && m.contains("Database down"))
        );
        let exc = "<response><exception>Malformed import document</exception></response>";
        assert_eq!(
            parse_import_report(exc),
            Err(AnswerError::Exception("Malformed import document".into()))
        );
        assert!(matches!(
            parse_import_report("Service Unavailable"),
            Err(AnswerError::NotXml(_))
        ));
        assert!(matches!(
            parse_import_report("<importReport><x></importReport>"),
            Err(AnswerError::NotXml(_))
        ));
    }
}
