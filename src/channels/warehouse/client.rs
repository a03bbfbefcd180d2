//! The warehouse's HTTP side: the exporter's client, its URLs, one POST with a capped answer, and
//! what counts as no usable answer.

use std::time::Duration;

use anyhow::Context;

use crate::config::Settings;
use crate::db::{DbConnection, Pool};
use crate::outbound::exchange::{self, BatchError, Exchange, transport_reason};

use super::report::{self, AnswerError};

/// Why an exchange with the warehouse brought no usable answer.
pub(super) mod no_answer {
    use super::*;

    /// A request that got no HTTP answer at all.
    pub fn transport(e: &reqwest::Error, timeout_secs: u64) -> BatchError {
        let message = if e.is_timeout() {
            format!("the warehouse did not answer within {timeout_secs} s")
        } else {
            format!("cannot reach the warehouse ({})", transport_reason(e))
        };
        BatchError {
            exchange: Exchange::TransportError,
            message,
            http_status: None,
            body: None,
        }
    }

    /// An answer longer than `warehouse.max_answer`; `start` is what was read of it.
    pub fn too_large(status: reqwest::StatusCode, limit: usize, start: String) -> BatchError {
        BatchError {
            exchange: if status.is_success() {
                Exchange::BadAnswer
            } else {
                Exchange::HttpError
            },
            message: format!(
                "answer too large: the warehouse answered HTTP {} with more than {limit} bytes \
                 (warehouse.max_answer); the export log keeps its start",
                status.as_u16()
            ),
            http_status: Some(status.as_u16()),
            body: Some(start),
        }
    }

    /// An answer with an error status.
    pub fn http(status: reqwest::StatusCode, body: String) -> BatchError {
        let message = if status == reqwest::StatusCode::UNAUTHORIZED {
            "the warehouse refused wharf's credentials (HTTP 401): check warehouse.username and \
             warehouse.password"
                .to_string()
        } else {
            // A Tomcat error page reads better as its heading than as the start of its markup.
            let what = match report::parse_import_report(&body) {
                Err(AnswerError::ErrorPage(page)) if !page.is_empty() => page,
                _ => report::excerpt(&body),
            };
            format!("the warehouse answered HTTP {status}: {what}")
        };
        BatchError {
            exchange: Exchange::HttpError,
            message,
            http_status: Some(status.as_u16()),
            body: Some(body),
        }
    }

    /// A 200 answer that is not a usable one.
    pub fn unreadable(e: AnswerError, body: String) -> BatchError {
        BatchError {
            exchange: match e {
                AnswerError::Exception(_) => Exchange::Exception,
                _ => Exchange::BadAnswer,
            },
            message: e.to_string(),
            http_status: Some(200),
            body: Some(body),
        }
    }
}

impl super::Exporter {
    /// An exporter with an HTTP client using the configured timeout (rustls with the ring provider).
    pub fn new(pool: Pool, settings: std::sync::Arc<Settings>) -> anyhow::Result<super::Exporter> {
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.warehouse.timeout_secs.max(1)))
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client for the warehouse")?;
        Ok(super::Exporter {
            pool,
            settings,
            http,
            owner: crate::db::lease::Owner::new("outbound:warehouse"),
        })
    }

    pub(super) fn url(
        &self,
        resource: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<reqwest::Url> {
        let w = &self.settings.warehouse;
        let base = reqwest::Url::parse(&w.endpoint).with_context(|| {
            format!(
                "the warehouse endpoint {:?} is not a URL; set warehouse.endpoint",
                w.endpoint
            )
        })?;
        let mut url = base.join(resource)?;
        url.query_pairs_mut()
            .append_pair("channel", &w.channel)
            .append_pair("organisation", &w.organisation);
        for (k, v) in extra {
            url.query_pairs_mut().append_pair(k, v);
        }
        Ok(url)
    }

    /// Runs `f` with a pooled connection off the async executor.
    pub(super) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        crate::db::blocking(&self.pool, "the exporter", f).await
    }

    /// POSTs a document and returns the body of a 2xx answer.
    pub(super) async fn post(
        &self,
        url: reqwest::Url,
        body: Option<String>,
    ) -> Result<String, BatchError> {
        let w = &self.settings.warehouse;
        let mut req = self
            .http
            .post(url)
            .basic_auth(&w.username, Some(&w.password));
        if let Some(b) = body {
            req = req.header("Content-Type", "application/xml").body(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| no_answer::transport(&e, w.timeout_secs))?;
        let status = resp.status();
        let text = match exchange::read_capped(resp, w.max_answer).await {
            Ok(Ok(t)) => t,
            Ok(Err(start)) => return Err(no_answer::too_large(status, w.max_answer, start)),
            // The answer broke off (or timed out) half-way: nothing usable came back.
            Err(e) => return Err(no_answer::transport(&e, w.timeout_secs)),
        };
        if !status.is_success() {
            return Err(no_answer::http(status, text));
        }
        Ok(text)
    }
}
