//! Shared by the `warehouse` simulator and the `bench` command: Magento 1 rpc/encoded envelopes in
//! the exact shape OrderFlow sends (see `m1-login.xml` and `m1-inventory-multi-update-skus.xml`),
//! SOAP login, and a concurrent send loop that checks every acknowledgement and records latencies.
//!
//! Included from each example with `#[path = "common/mod.rs"] mod common;`; not every example uses
//! every item.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The Magento 1 SOAP v2 path OrderFlow posts to.
pub const SOAP_PATH: &str = "/api/v2_soap/index/";

/// How many failures are kept word for word; the rest are only counted.
pub const KEPT_ERRORS: usize = 5;

/// `{base}/api/v2_soap/index/` for a base URL with or without a trailing slash.
pub fn soap_endpoint(base_url: &str) -> String {
    format!("{}{SOAP_PATH}", base_url.trim_end_matches('/'))
}

/// The SKU name of pool entry `i` (1-based): `SKU-000123`.
pub fn sku_name(i: usize) -> String {
    format!("SKU-{i:06}")
}

/// One SKU line of an inventory message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// SKU.
    pub sku: String,
    /// Quantity reported.
    pub qty: i32,
    /// The warehouse's per-SKU sequence id.
    pub seq: i64,
}

/// Escapes text for an XML element.
pub fn xml_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

const ENVELOPE_OPEN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:ns1="urn:Magento" xmlns:xsd="http://www.w3.org/2001/XMLSchema"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xmlns:SOAP-ENC="http://schemas.xmlsoap.org/soap/encoding/"
  SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">
  <SOAP-ENV:Body>
"#;

const ENVELOPE_CLOSE: &str = "  </SOAP-ENV:Body>\n</SOAP-ENV:Envelope>\n";

/// The Magento 1 `login(username, apiKey)` call, shaped like `m1-login.xml`.
pub fn login_envelope(username: &str, api_key: &str) -> String {
    format!(
        "{ENVELOPE_OPEN}    <ns1:login>\n      \
         <username xsi:type=\"xsd:string\">{}</username>\n      \
         <apiKey xsi:type=\"xsd:string\">{}</apiKey>\n    \
         </ns1:login>\n{ENVELOPE_CLOSE}",
        xml_text(username),
        xml_text(api_key)
    )
}

/// An `orderflowInventoryMultiUpdate` call shaped like `m1-inventory-multi-update-skus.xml`:
/// `skusQty` and `skusSeqId` arrays of key/value items and a `messageSeqId`. As in the fixture, the
/// sequence ids are listed in the reverse order of the quantities (wharf pairs them by SKU).
pub fn inventory_envelope(session: &str, message_seq_id: i64, lines: &[Line]) -> String {
    let n = lines.len();
    let mut s = String::with_capacity(600 + n * 230);
    s.push_str(ENVELOPE_OPEN);
    s.push_str("    <ns1:orderflowInventoryMultiUpdate>\n");
    let _ = writeln!(
        s,
        "      <sessionId xsi:type=\"xsd:string\">{}</sessionId>",
        xml_text(session)
    );
    let _ = writeln!(
        s,
        "      <skusQty SOAP-ENC:arrayType=\"ns1:skuQty[{n}]\" xsi:type=\"ns1:skuQtyArray\">"
    );
    for l in lines {
        let _ = writeln!(
            s,
            "        <item xsi:type=\"ns1:skuQty\"><key xsi:type=\"xsd:string\">{}</key>\
             <value xsi:type=\"xsd:int\">{}</value></item>",
            xml_text(&l.sku),
            l.qty
        );
    }
    s.push_str("      </skusQty>\n");
    let _ = writeln!(
        s,
        "      <skusSeqId SOAP-ENC:arrayType=\"ns1:skuSeq[{n}]\" xsi:type=\"ns1:skuSeqArray\">"
    );
    for l in lines.iter().rev() {
        let _ = writeln!(
            s,
            "        <item xsi:type=\"ns1:skuSeq\"><key xsi:type=\"xsd:string\">{}</key>\
             <value xsi:type=\"xsd:long\">{}</value></item>",
            xml_text(&l.sku),
            l.seq
        );
    }
    s.push_str("      </skusSeqId>\n");
    let _ = writeln!(
        s,
        "      <messageSeqId xsi:type=\"xsd:long\">{message_seq_id}</messageSeqId>"
    );
    s.push_str("    </ns1:orderflowInventoryMultiUpdate>\n");
    s.push_str(ENVELOPE_CLOSE);
    s
}

/// The acknowledgement OrderFlow expects for a stored message.
pub fn expected_ack(message_seq_id: i64) -> String {
    format!("Success - Message {message_seq_id} Received")
}

/// The text of the first element with local name `local` (any prefix), entities decoded. Good
/// enough for wharf's answers, which are flat and generated.
pub fn element_text(xml: &str, local: &str) -> Option<String> {
    let mut rest = xml;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest.find(['>', ' ', '/', '\n', '\t', '\r'])?;
        let name = &rest[..end];
        let name_local = name.rsplit(':').next().unwrap_or(name);
        if name_local == local && !name.starts_with('/') {
            let open_end = rest.find('>')?;
            if rest[..open_end].ends_with('/') {
                return Some(String::new());
            }
            let body = &rest[open_end + 1..];
            let close = body.find("</")?;
            return Some(unescape(&body[..close]));
        }
    }
    None
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// An HTTP client for loopback benchmarking: no proxy, keep-alive, no Nagle delay.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    wharf::tls::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .build()
        .context("building the HTTP client")
}

/// POSTs a SOAP body; returns the status and the answer's text.
pub async fn post_soap(
    client: &reqwest::Client,
    endpoint: &str,
    body: String,
) -> reqwest::Result<(u16, String)> {
    let resp = client
        .post(endpoint)
        .header("Content-Type", "text/xml; charset=utf-8")
        .header(
            "SOAPAction",
            "\"urn:Mage_Api_Model_Server_V2_HandlerAction\"",
        )
        .body(body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?))
}

/// Logs in with the Magento 1 `login` call and returns the session id.
pub async fn login(
    client: &reqwest::Client,
    endpoint: &str,
    username: &str,
    api_key: &str,
) -> anyhow::Result<String> {
    let (status, text) = post_soap(client, endpoint, login_envelope(username, api_key))
        .await
        .with_context(|| format!("posting login to {endpoint}"))?;
    if let Some(fault) = element_text(&text, "faultstring") {
        bail!("login as {username:?} refused (HTTP {status}): {fault}");
    }
    match element_text(&text, "loginReturn") {
        Some(session) if status == 200 && !session.is_empty() => Ok(session),
        _ => bail!(
            "unexpected login answer (HTTP {status}): {}",
            shorten(&text)
        ),
    }
}

fn shorten(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() > 300 {
        format!("{}…", s.chars().take(300).collect::<String>())
    } else {
        s.to_string()
    }
}

/// A message ready to post: its bytes (reused as-is for repeats) and the id it must be acknowledged
/// with.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The whole envelope.
    pub body: Arc<str>,
    /// `messageSeqId`.
    pub message_seq_id: i64,
    /// SKU lines in it (for lines/s).
    pub lines: usize,
}

/// What a send loop did.
#[derive(Debug, Default)]
pub struct SendStats {
    /// Requests posted.
    pub sent: usize,
    /// Lines in the requests posted.
    pub lines: usize,
    /// Requests answered with exactly the expected acknowledgement.
    pub ok: usize,
    /// Requests that failed: transport errors, faults, non-200 or a wrong acknowledgement.
    pub errors: usize,
    /// The first few failures, described.
    pub first_errors: Vec<String>,
    /// Latency of every request, successful or not, sorted ascending.
    pub latencies: Vec<Duration>,
    /// Wall time of the whole loop.
    pub elapsed: Duration,
}

impl SendStats {
    /// Requests per second over the whole loop.
    pub fn per_sec(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Lines per second over the whole loop.
    pub fn lines_per_sec(&self) -> f64 {
        self.lines as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Nearest-rank percentile of the latencies (`q` in 0..=1).
    pub fn percentile(&self, q: f64) -> Duration {
        percentile(&self.latencies, q)
    }
}

/// Nearest-rank percentile of sorted durations (`q` in 0..=1); zero when empty.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds, with more decimals for small values.
pub fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1000.0;
    if v < 10.0 {
        format!("{v:.2} ms")
    } else if v < 100.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.0} ms")
    }
}

/// Posts `messages` in order with `concurrency` senders (each takes the next message when it is
/// free, over its own keep-alive connection) and checks every answer is exactly
/// `Success - Message <id> Received`.
pub async fn send_all(
    client: &reqwest::Client,
    endpoint: &str,
    messages: Arc<Vec<Outgoing>>,
    concurrency: usize,
) -> SendStats {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, endpoint) = (client.clone(), endpoint.to_string());
        let (messages, next) = (messages.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut st = SendStats::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(m) = messages.get(i) else { break };
                let t0 = Instant::now();
                let result = post_soap(&client, &endpoint, m.body.to_string()).await;
                st.latencies.push(t0.elapsed());
                st.sent += 1;
                st.lines += m.lines;
                match check_ack(result, m.message_seq_id) {
                    Ok(()) => st.ok += 1,
                    Err(e) => {
                        st.errors += 1;
                        if st.first_errors.len() < KEPT_ERRORS {
                            st.first_errors.push(e);
                        }
                    }
                }
            }
            st
        }));
    }
    let mut total = SendStats::default();
    for t in tasks {
        match t.await {
            Ok(st) => {
                total.sent += st.sent;
                total.lines += st.lines;
                total.ok += st.ok;
                total.errors += st.errors;
                for e in st.first_errors {
                    if total.first_errors.len() < KEPT_ERRORS {
                        total.first_errors.push(e);
                    }
                }
                total.latencies.extend(st.latencies);
            }
            Err(e) => {
                total.errors += 1;
                total.first_errors.push(format!("sender task failed: {e}"));
            }
        }
    }
    total.elapsed = started.elapsed();
    total.latencies.sort_unstable();
    total
}

fn check_ack(result: reqwest::Result<(u16, String)>, id: i64) -> Result<(), String> {
    let (status, text) = result.map_err(|e| format!("message {id}: transport error: {e}"))?;
    if let Some(fault) = element_text(&text, "faultstring") {
        let code = element_text(&text, "faultcode").unwrap_or_default();
        return Err(format!(
            "message {id}: HTTP {status}, fault {code}: {fault}"
        ));
    }
    let want = expected_ack(id);
    match element_text(&text, "result") {
        Some(got) if status == 200 && got == want => Ok(()),
        Some(got) => Err(format!(
            "message {id}: HTTP {status}, answer {got:?}, expected {want:?}"
        )),
        None => Err(format!(
            "message {id}: HTTP {status}, no <result> in answer: {}",
            shorten(&text)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_answers() {
        let ok = "<SOAP-ENV:Envelope><SOAP-ENV:Body><ns1:xResponse><result xsi:type=\"xsd:string\">\
                  Success - Message 7 Received</result></ns1:xResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>";
        assert_eq!(
            element_text(ok, "result").as_deref(),
            Some("Success - Message 7 Received")
        );
        let fault = "<SOAP-ENV:Fault><faultcode>5</faultcode><faultstring>a &amp; b</faultstring>";
        assert_eq!(element_text(fault, "faultstring").as_deref(), Some("a & b"));
        assert_eq!(element_text(fault, "result"), None);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&v, 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
