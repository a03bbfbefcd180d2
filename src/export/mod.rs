//! Exporting to the warehouse: invoiced orders and changed products in batches over HTTP, the import
//! report deciding each item, retries with backoff, a lost-orders list, a circuit breaker, order
//! cancellations, and a log of every exchange.
//!
//! Order export states: `pending` → `exported` | `failed` (retried after a backoff) → `lost` (after
//! `max_attempts`); support can `resend` (back to `pending`, attempts reset) or `dismiss` (`dismissed`,
//! handled by hand). An order that shipments complete before it was exported is `skipped` (see
//! `shipments`), and never sent. Items are claimed under a lease, so two exporters never send the
//! same order at once.

pub mod document;
pub mod report;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use tokio::sync::watch;

use crate::config::{ExportSettings, Settings};
use crate::db::schema::{
    export_breakers, export_lines, exports, order_export_actions, orders, products,
};
use crate::db::{self, DbConnection, Pool};
use crate::feed::{self, NewEvent};
use crate::orders::OrderInput;
use crate::products::ProductInput;
use report::{AnswerError, ReportLine, Verdict};

/// Order export status values.
pub mod status {
    /// Waiting to be sent.
    pub const PENDING: &str = "pending";
    /// Accepted by the warehouse.
    pub const EXPORTED: &str = "exported";
    /// Refused or missing from the report; will be retried.
    pub const FAILED: &str = "failed";
    /// Refused `max_attempts` times; waits for support.
    pub const LOST: &str = "lost";
    /// Handled by hand by support; never sent.
    pub const DISMISSED: &str = "dismissed";
    /// Shipped completely before wharf exported it ("shipped before export"); never sent.
    pub const SKIPPED: &str = "skipped";
}

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Items in the batch (0: nothing was due).
    pub items: usize,
    /// Accepted (success or duplicate).
    pub exported: usize,
    /// Refused or missing, to retry.
    pub failed: usize,
    /// Declared lost in this batch.
    pub lost: usize,
    /// The whole batch failed (transport, HTTP or unreadable answer).
    pub batch_failed: bool,
    /// Exports are paused by the breaker.
    pub paused: bool,
}

/// How a send went wrong as a whole.
#[derive(Debug)]
struct BatchError {
    outcome: &'static str,
    message: String,
    http_status: Option<u16>,
    body: Option<String>,
}

/// Sends batches to the warehouse.
pub struct Exporter {
    pool: Pool,
    settings: Arc<Settings>,
    http: reqwest::Client,
    name: String,
    claims: AtomicU64,
}

impl Exporter {
    /// An exporter with an HTTP client using the configured timeout (rustls with the ring provider).
    pub fn new(pool: Pool, settings: Arc<Settings>) -> anyhow::Result<Exporter> {
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.warehouse.timeout_secs.max(1)))
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client for the warehouse")?;
        let suffix = &crate::auth::random_secret()[..8];
        Ok(Exporter {
            pool,
            settings,
            http,
            name: format!("exporter:{}:{suffix}", std::process::id()),
            claims: AtomicU64::new(0),
        })
    }

    fn owner(&self) -> String {
        format!(
            "{}#{}",
            self.name,
            self.claims.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn url(&self, resource: &str, extra: &[(&str, &str)]) -> anyhow::Result<reqwest::Url> {
        let w = &self.settings.warehouse;
        let base = reqwest::Url::parse(&w.endpoint)
            .with_context(|| format!("the warehouse endpoint {:?} is not a URL", w.endpoint))?;
        let mut url = base.join(resource)?;
        url.query_pairs_mut()
            .append_pair("channel", &w.channel)
            .append_pair("organisation", &w.organisation);
        for (k, v) in extra {
            url.query_pairs_mut().append_pair(k, v);
        }
        Ok(url)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool
                .get()
                .context("no database connection for the exporter")?;
            f(&mut conn)
        })
        .await?
    }

    /// POSTs a document and returns the body of a 2xx answer.
    async fn post(&self, url: reqwest::Url, body: Option<String>) -> Result<String, BatchError> {
        let w = &self.settings.warehouse;
        let mut req = self
            .http
            .post(url)
            .basic_auth(&w.username, Some(&w.password));
        if let Some(b) = body {
            req = req.header("Content-Type", "application/xml").body(b);
        }
        let resp = req.send().await.map_err(|e| BatchError {
            outcome: "transport_error",
            message: if e.is_timeout() {
                format!("the warehouse did not answer within {} s", w.timeout_secs)
            } else {
                format!("cannot reach the warehouse: {e}")
            },
            http_status: None,
            body: None,
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(BatchError {
                outcome: "http_error",
                message: format!(
                    "the warehouse answered HTTP {status}: {}",
                    report::excerpt(&text)
                ),
                http_status: Some(status.as_u16()),
                body: Some(text),
            });
        }
        Ok(text)
    }

    /// Exports batches of due orders until none is due (or the breaker opens). Returns the totals.
    pub async fn export_orders(&self) -> anyhow::Result<BatchOutcome> {
        // Only what was due when the run started: an order that fails in this run waits for its
        // backoff even when that is zero.
        let run_started = db::now();
        let mut total = BatchOutcome::default();
        loop {
            let o = self.order_batch(run_started).await?;
            total.items += o.items;
            total.exported += o.exported;
            total.failed += o.failed;
            total.lost += o.lost;
            total.batch_failed |= o.batch_failed;
            total.paused |= o.paused;
            if o.items == 0 || o.batch_failed || o.paused {
                return Ok(total);
            }
        }
    }

    /// Claims and sends one batch of due orders.
    pub async fn export_order_batch(&self) -> anyhow::Result<BatchOutcome> {
        self.order_batch(db::now()).await
    }

    async fn order_batch(&self, due_at: NaiveDateTime) -> anyhow::Result<BatchOutcome> {
        let cfg = self.settings.warehouse.orders.clone();
        let owner = self.owner();
        let claim_owner = owner.clone();
        let claim_cfg = cfg.clone();
        let claimed = self
            .blocking(move |conn| claim_orders(conn, &claim_owner, &claim_cfg, due_at))
            .await?;
        let batch = match claimed {
            Claim::Paused => {
                return Ok(BatchOutcome {
                    paused: true,
                    ..BatchOutcome::default()
                });
            }
            Claim::Items(b) if b.is_empty() => return Ok(BatchOutcome::default()),
            Claim::Items(b) => b,
        };
        let started = db::now();
        let docs: Vec<(String, OrderInput)> = batch
            .iter()
            .map(|o| {
                (
                    o.reference.clone(),
                    serde_json::from_str(&o.document).expect("stored orders parse"),
                )
            })
            .collect();
        let xml = document::orders_document(&docs, started);
        let url = self.url("remoteorder/imports/importitems.xml", &[])?;
        let answer = self.post(url.clone(), Some(xml.clone())).await;
        let log = ExchangeLog {
            kind: "order",
            operation: "insert",
            url: url.to_string(),
            started,
            request: xml,
        };
        self.settle(batch, answer, log, cfg, owner, Kind::Orders)
            .await
    }

    /// Exports batches of changed products until none is due.
    pub async fn export_products(&self) -> anyhow::Result<BatchOutcome> {
        let run_started = db::now();
        let mut total = BatchOutcome::default();
        loop {
            let cfg = self.settings.warehouse.products.clone();
            let owner = self.owner();
            let claim_owner = owner.clone();
            let claim_cfg = cfg.clone();
            let claimed = self
                .blocking(move |conn| claim_products(conn, &claim_owner, &claim_cfg, run_started))
                .await?;
            let batch = match claimed {
                Claim::Paused => {
                    return Ok(BatchOutcome {
                        paused: true,
                        ..total
                    });
                }
                Claim::Items(b) if b.is_empty() => return Ok(total),
                Claim::Items(b) => b,
            };
            let started = db::now();
            let docs: Vec<(String, ProductInput)> = batch
                .iter()
                .map(|p| {
                    (
                        p.reference.clone(),
                        serde_json::from_str(&p.document).expect("stored products parse"),
                    )
                })
                .collect();
            let xml = document::products_document(&docs);
            let url = self.url("remotewarehouse/imports/importitems.xml", &[])?;
            let answer = self.post(url.clone(), Some(xml.clone())).await;
            let log = ExchangeLog {
                kind: "product",
                operation: "merge",
                url: url.to_string(),
                started,
                request: xml,
            };
            let o = self
                .settle(batch, answer, log, cfg, owner, Kind::Products)
                .await?;
            total.items += o.items;
            total.exported += o.exported;
            total.failed += o.failed;
            total.lost += o.lost;
            total.batch_failed |= o.batch_failed;
            if o.batch_failed {
                return Ok(total);
            }
        }
    }

    /// Records the outcome of a sent batch: per item from the import report, or as a whole when the
    /// answer was an error.
    async fn settle(
        &self,
        batch: Vec<Item>,
        answer: Result<String, BatchError>,
        log: ExchangeLog,
        cfg: ExportSettings,
        owner: String,
        kind: Kind,
    ) -> anyhow::Result<BatchOutcome> {
        let parsed: Result<(Vec<ReportLine>, String), BatchError> = answer.and_then(|body| {
            report::parse_import_report(&body)
                .map(|lines| (lines, body.clone()))
                .map_err(|e| BatchError {
                    outcome: match e {
                        AnswerError::Exception(_) => "exception",
                        _ => "bad_answer",
                    },
                    message: e.to_string(),
                    http_status: Some(200),
                    body: Some(body),
                })
        });
        self.blocking(move |conn| {
            db::write_tx(conn, |conn| -> anyhow::Result<BatchOutcome> {
                match parsed {
                    Ok((lines, body)) => {
                        settle_items(conn, kind, &batch, &lines, &cfg, &owner, &log, body)
                    }
                    Err(e) => settle_failed_batch(conn, kind, &batch, e, &cfg, &owner, &log),
                }
            })
        })
        .await
        .inspect(|o| {
            if o.exported + o.failed > 0 {
                feed::notifier().notify_waiters();
            }
        })
    }

    /// Sends the cancellation of every cancelled order the warehouse already has. Returns how many the
    /// warehouse confirmed.
    pub async fn send_cancellations(&self) -> anyhow::Result<usize> {
        let due: Vec<(i64, String)> = self
            .blocking(|conn| {
                Ok(orders::table
                    .filter(orders::status.eq_any(["canceled", "cancelled"]))
                    .filter(orders::export_status.eq(status::EXPORTED))
                    .filter(orders::cancel_sent_at.is_null())
                    .filter(
                        orders::export_lease_expires_at
                            .is_null()
                            .or(orders::export_lease_expires_at.lt(db::now())),
                    )
                    .order(orders::id)
                    .limit(100)
                    .select((orders::id, orders::increment_id))
                    .load(conn)?)
            })
            .await?;
        let mut sent = 0;
        for (id, reference) in due {
            // Take the order under a lease; another exporter that got here first wins, and if this
            // process dies before recording the answer the lease expires and the cancel is sent again.
            let owner = self.owner();
            let lease = TimeDelta::seconds(self.settings.warehouse.orders.lease_secs);
            let claim_owner = owner.clone();
            let took = self
                .blocking(move |conn| {
                    let now = db::now();
                    Ok(diesel::update(
                        orders::table
                            .find(id)
                            .filter(orders::cancel_sent_at.is_null())
                            .filter(
                                orders::export_lease_expires_at
                                    .is_null()
                                    .or(orders::export_lease_expires_at.lt(now)),
                            ),
                    )
                    .set((
                        orders::export_lease_owner.eq(Some(&claim_owner)),
                        orders::export_lease_expires_at.eq(Some(now + lease)),
                    ))
                    .execute(conn)?
                        == 1)
                })
                .await?;
            if !took {
                continue;
            }
            let started = db::now();
            let url = self.url(
                "remoteorder/order/cancel.xml",
                &[("externalReference", &reference)],
            )?;
            let answer = self.post(url.clone(), None).await;
            let failure = match &answer {
                Ok(body) if body.contains("No cancel operation performed") => Some(format!(
                    "the warehouse did not cancel order {reference}: {}",
                    report::excerpt(body)
                )),
                // An error page, an exception or a non-XML body is not a cancellation either.
                Ok(body) => report::parse_import_report(body)
                    .err()
                    .map(|e| e.to_string()),
                Err(e) => Some(e.message.clone()),
            };
            let (body, http_status) = match &answer {
                Ok(b) => (Some(b.clone()), Some(200)),
                Err(e) => (e.body.clone(), e.http_status),
            };
            let reference2 = reference.clone();
            let succeeded = failure.is_none();
            self.blocking(move |conn| {
                db::write_tx(conn, |conn| -> anyhow::Result<()> {
                    let export_id = insert_export(
                        conn,
                        &ExportRow {
                            kind: "cancel",
                            operation: "cancel",
                            url: url.as_str(),
                            started,
                            outcome: if failure.is_some() { "failure" } else { "ok" },
                            error: failure.as_deref(),
                            counts: (
                                i32::from(failure.is_none()),
                                0,
                                i32::from(failure.is_some()),
                            ),
                            request: None,
                            response: body.as_deref(),
                            http_status,
                        },
                    )?;
                    diesel::insert_into(export_lines::table)
                        .values((
                            export_lines::export_id.eq(export_id),
                            export_lines::line_no.eq(1),
                            export_lines::reference.eq(&reference2),
                            export_lines::result.eq(if failure.is_some() {
                                "Failure"
                            } else {
                                "Success"
                            }),
                            export_lines::message.eq(failure
                                .clone()
                                .unwrap_or_else(|| format!("Order {reference2} cancelled"))),
                        ))
                        .execute(conn)?;
                    // Done, or released for the next run to try again.
                    diesel::update(
                        orders::table
                            .find(id)
                            .filter(orders::export_lease_owner.eq(&owner)),
                    )
                    .set((
                        orders::cancel_sent_at.eq(failure.is_none().then(db::now)),
                        orders::export_error.eq(failure.as_deref()),
                        orders::export_lease_owner.eq(None::<String>),
                        orders::export_lease_expires_at.eq(None::<NaiveDateTime>),
                    ))
                    .execute(conn)?;
                    Ok(())
                })
            })
            .await?;
            if succeeded {
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// Everything due now: orders, products, cancellations.
    pub async fn run_once(&self) -> anyhow::Result<()> {
        let w = &self.settings.warehouse;
        if w.orders.enabled {
            let o = self.export_orders().await?;
            if o.items > 0 {
                tracing::info!(
                    sent = o.items,
                    exported = o.exported,
                    failed = o.failed,
                    lost = o.lost,
                    "order export done"
                );
            }
            self.send_cancellations().await?;
        }
        if w.products.enabled {
            let o = self.export_products().await?;
            if o.items > 0 {
                tracing::info!(
                    sent = o.items,
                    exported = o.exported,
                    failed = o.failed,
                    "product export done"
                );
            }
        }
        Ok(())
    }

    /// Runs on the orders' cron schedule until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let schedule = self.settings.warehouse.orders.schedule.clone();
        let cron = match croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(&schedule)
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(schedule = %schedule, error = %e, "the export schedule is not a valid cron expression; exports are off");
                return;
            }
        };
        tracing::info!(schedule = %schedule, "exporter started");
        loop {
            let now = chrono::Utc::now();
            let next = cron
                .find_next_occurrence(&now, false)
                .unwrap_or(now + TimeDelta::minutes(1));
            let wait = (next - now).to_std().unwrap_or(Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                break;
            }
            if let Err(e) = self.run_once().await {
                tracing::error!(error = %format!("{e:#}"), "export run failed; it runs again on schedule");
            }
        }
        tracing::info!("exporter stopped");
    }
}

/// Starts the exporter on its schedule when order or product export is enabled.
pub fn spawn_if_enabled(
    pool: &Pool,
    settings: &Arc<Settings>,
    stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let w = &settings.warehouse;
    if !(w.orders.enabled || w.products.enabled) {
        return None;
    }
    match Exporter::new(pool.clone(), settings.clone()) {
        Ok(e) => Some(tokio::spawn(Arc::new(e).run(stop))),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "the exporter cannot start; exports are off");
            None
        }
    }
}

/// Orders or products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Orders,
    Products,
}

impl Kind {
    fn breaker(self) -> &'static str {
        match self {
            Kind::Orders => "order",
            Kind::Products => "product",
        }
    }
}

/// A claimed order or product.
struct Item {
    id: i64,
    reference: String,
    document: String,
    attempts: i32,
    previous_status: String,
}

enum Claim {
    Paused,
    Items(Vec<Item>),
}

fn breaker_open(conn: &mut DbConnection, kind: Kind, now: NaiveDateTime) -> QueryResult<bool> {
    let until: Option<Option<NaiveDateTime>> = export_breakers::table
        .find(kind.breaker())
        .select(export_breakers::paused_until)
        .first(conn)
        .optional()?;
    Ok(until.flatten().is_some_and(|t| t > now))
}

fn claim_orders(
    conn: &mut DbConnection,
    owner: &str,
    cfg: &ExportSettings,
    due_at: NaiveDateTime,
) -> anyhow::Result<Claim> {
    let now = db::now();
    db::write_tx(conn, |conn| {
        if breaker_open(conn, Kind::Orders, now)? {
            return Ok(Claim::Paused);
        }
        let min_date = cfg
            .min_order_date
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            // No setting: any date both backends can store.
            .unwrap_or(chrono::DateTime::UNIX_EPOCH.naive_utc());
        let due = orders::status
            .eq_any(&cfg.exportable_statuses)
            .and(orders::is_virtual.eq(false))
            .and(orders::export_status.eq_any([status::PENDING, status::FAILED]))
            .and(
                orders::export_next_at
                    .is_null()
                    .or(orders::export_next_at.le(due_at)),
            )
            .and(
                orders::export_lease_expires_at
                    .is_null()
                    .or(orders::export_lease_expires_at.lt(now)),
            )
            .and(orders::ordered_at.ge(min_date));
        let ids: Vec<i64> = crate::load_skip_locked!(
            conn,
            orders::table
                .filter(due)
                .order(orders::id)
                .limit(cfg.batch_size)
                .select(orders::id)
        )?;
        if ids.is_empty() {
            return Ok(Claim::Items(Vec::new()));
        }
        diesel::update(orders::table.filter(orders::id.eq_any(&ids)))
            .set((
                orders::export_lease_owner.eq(owner),
                orders::export_lease_expires_at.eq(now + TimeDelta::seconds(cfg.lease_secs)),
            ))
            .execute(conn)?;
        let rows: Vec<(i64, String, String, i32, String)> = orders::table
            .filter(orders::id.eq_any(&ids))
            .order(orders::id)
            .select((
                orders::id,
                orders::increment_id,
                orders::document,
                orders::export_attempts,
                orders::export_status,
            ))
            .load(conn)?;
        Ok(Claim::Items(
            rows.into_iter()
                .map(
                    |(id, reference, document, attempts, previous_status)| Item {
                        id,
                        reference,
                        document,
                        attempts,
                        previous_status,
                    },
                )
                .collect(),
        ))
    })
}

fn claim_products(
    conn: &mut DbConnection,
    owner: &str,
    cfg: &ExportSettings,
    due_at: NaiveDateTime,
) -> anyhow::Result<Claim> {
    let now = db::now();
    db::write_tx(conn, |conn| {
        if breaker_open(conn, Kind::Products, now)? {
            return Ok(Claim::Paused);
        }
        let due = products::export_pending
            .eq(true)
            .and(products::export_attempts.lt(cfg.max_attempts))
            .and(
                products::export_next_at
                    .is_null()
                    .or(products::export_next_at.le(due_at)),
            )
            .and(
                products::export_lease_expires_at
                    .is_null()
                    .or(products::export_lease_expires_at.lt(now)),
            );
        let skus: Vec<String> = crate::load_skip_locked!(
            conn,
            products::table
                .filter(due)
                .order(products::updated_at)
                .limit(cfg.batch_size)
                .select(products::sku)
        )?;
        if skus.is_empty() {
            return Ok(Claim::Items(Vec::new()));
        }
        diesel::update(products::table.filter(products::sku.eq_any(&skus)))
            .set((
                products::export_lease_owner.eq(owner),
                products::export_lease_expires_at.eq(now + TimeDelta::seconds(cfg.lease_secs)),
            ))
            .execute(conn)?;
        let rows: Vec<(String, String, i32)> = products::table
            .filter(products::sku.eq_any(&skus))
            .select((products::sku, products::document, products::export_attempts))
            .load(conn)?;
        Ok(Claim::Items(
            rows.into_iter()
                .map(|(sku, document, attempts)| Item {
                    id: 0,
                    reference: sku,
                    document,
                    attempts,
                    previous_status: String::new(),
                })
                .collect(),
        ))
    })
}

/// What was sent, for the export log.
struct ExchangeLog {
    kind: &'static str,
    operation: &'static str,
    url: String,
    started: NaiveDateTime,
    request: String,
}

struct ExportRow<'a> {
    kind: &'a str,
    operation: &'a str,
    url: &'a str,
    started: NaiveDateTime,
    outcome: &'a str,
    error: Option<&'a str>,
    counts: (i32, i32, i32),
    request: Option<&'a str>,
    response: Option<&'a str>,
    http_status: Option<u16>,
}

fn insert_export(conn: &mut DbConnection, row: &ExportRow) -> QueryResult<i64> {
    let message_id = format!("{}-{}", row.kind, &crate::auth::random_secret()[..20]);
    crate::with_backend!(&mut *conn, |c| diesel::insert_into(exports::table)
        .values((
            exports::message_id.eq(&message_id),
            exports::kind.eq(row.kind),
            exports::operation.eq(row.operation),
            exports::url.eq(row.url),
            exports::started_at.eq(row.started),
            exports::finished_at.eq(db::now()),
            exports::outcome.eq(row.outcome),
            exports::error.eq(row.error),
            exports::successes.eq(row.counts.0),
            exports::duplicates.eq(row.counts.1),
            exports::failures.eq(row.counts.2),
            exports::request_xml.eq(row.request),
            exports::response_body.eq(row.response),
            exports::http_status.eq(row.http_status.map(i32::from)),
        ))
        .returning(exports::id)
        .get_result(c))
}

fn backoff(cfg: &ExportSettings, attempts: i32) -> TimeDelta {
    crate::queue::backoff(attempts, cfg.backoff_base_secs, cfg.backoff_ceiling_secs)
}

#[allow(clippy::too_many_arguments)]
fn settle_items(
    conn: &mut DbConnection,
    kind: Kind,
    batch: &[Item],
    lines: &[ReportLine],
    cfg: &ExportSettings,
    owner: &str,
    log: &ExchangeLog,
    body: String,
) -> anyhow::Result<BatchOutcome> {
    let now = db::now();
    let mut outcome = BatchOutcome {
        items: batch.len(),
        ..BatchOutcome::default()
    };
    let mut log_lines: Vec<(String, &'static str, String, Option<String>)> = Vec::new();
    let mut events = Vec::new();
    let (mut successes, mut duplicates, mut failures) = (0, 0, 0);
    for item in batch {
        // A reference with any success is a success; then duplicate; then failure.
        let mine: Vec<&ReportLine> = lines
            .iter()
            .filter(|l| l.reference == item.reference)
            .collect();
        let best = [Verdict::Success, Verdict::Duplicate, Verdict::Failure]
            .into_iter()
            .find_map(|v| mine.iter().find(|l| l.verdict == v).copied());
        let (verdict, message, detail) = match best {
            Some(l) => (l.verdict, l.message.clone(), l.detail.clone()),
            None => (Verdict::Failure, "not in import report".to_string(), None),
        };
        match verdict {
            Verdict::Success => successes += 1,
            Verdict::Duplicate => duplicates += 1,
            Verdict::Failure => failures += 1,
        }
        let accepted = verdict != Verdict::Failure;
        let attempts = if accepted {
            item.attempts
        } else {
            item.attempts + 1
        };
        let lost = !accepted && attempts >= cfg.max_attempts;
        let error = (!accepted).then(|| match &detail {
            Some(d) => format!("{message} ({d})"),
            None => message.clone(),
        });
        match kind {
            Kind::Orders => {
                let new_status = if accepted {
                    status::EXPORTED
                } else if lost {
                    status::LOST
                } else {
                    status::FAILED
                };
                // A refusal must not turn an order that shipped completely while it was being sent
                // (`skipped`, set by the shipment) back into one to retry; an acceptance still wins.
                let n = diesel::update(
                    orders::table
                        .find(item.id)
                        .filter(orders::export_lease_owner.eq(owner))
                        .filter(
                            orders::export_status
                                .ne(status::SKIPPED)
                                .or(accepted.into_sql::<diesel::sql_types::Bool>()),
                        ),
                )
                .set((
                    orders::export_status.eq(new_status),
                    orders::export_attempts.eq(attempts),
                    orders::exported_at.eq(accepted.then_some(now)),
                    orders::export_next_at.eq((!accepted).then(|| now + backoff(cfg, attempts))),
                    orders::export_error.eq(&error),
                    orders::export_lease_owner.eq(None::<String>),
                    orders::export_lease_expires_at.eq(None::<NaiveDateTime>),
                ))
                .execute(conn)?;
                if n == 0 {
                    if !accepted && release_skipped(conn, item.id, owner)? {
                        log_lines.push((item.reference.clone(), verdict.as_str(), message, detail));
                        continue;
                    }
                    anyhow::bail!(
                        "lost the lease on order {} while exporting it",
                        item.reference
                    );
                }
                if new_status != item.previous_status {
                    events.push(NewEvent {
                        kind: feed::ORDER_EXPORT_STATUS_CHANGED,
                        payload: serde_json::json!({
                            "order": item.reference, "status": new_status,
                            "previous": item.previous_status, "message": message, "attempts": attempts,
                        }),
                    });
                }
                if lost {
                    tracing::error!(order = %item.reference, attempts, error = error.as_deref().unwrap_or(""),
                        "order export is lost after its last attempt; resend it with `wharf orders resend`");
                }
            }
            Kind::Products => {
                diesel::update(
                    products::table
                        .find(&item.reference)
                        .filter(products::export_lease_owner.eq(owner)),
                )
                .set((
                    products::export_pending.eq(!accepted),
                    products::export_attempts.eq(if accepted { 0 } else { attempts }),
                    products::exported_at.eq(accepted.then_some(now)),
                    products::export_next_at.eq((!accepted).then(|| now + backoff(cfg, attempts))),
                    products::export_error.eq(&error),
                    products::export_lease_owner.eq(None::<String>),
                    products::export_lease_expires_at.eq(None::<NaiveDateTime>),
                ))
                .execute(conn)?;
            }
        }
        if accepted {
            outcome.exported += 1;
        } else {
            outcome.failed += 1;
            outcome.lost += usize::from(lost);
        }
        log_lines.push((item.reference.clone(), verdict.as_str(), message, detail));
    }
    let export_id = insert_export(
        conn,
        &ExportRow {
            kind: log.kind,
            operation: log.operation,
            url: &log.url,
            started: log.started,
            outcome: "ok",
            error: None,
            counts: (successes, duplicates, failures),
            request: Some(&log.request),
            response: Some(&body),
            http_status: Some(200),
        },
    )?;
    for (i, (reference, result, message, detail)) in log_lines.iter().enumerate() {
        diesel::insert_into(export_lines::table)
            .values((
                export_lines::export_id.eq(export_id),
                export_lines::line_no.eq(i as i32 + 1),
                export_lines::reference.eq(reference),
                export_lines::result.eq(result),
                export_lines::message.eq(message),
                export_lines::detail.eq(detail),
            ))
            .execute(conn)?;
    }
    reset_breaker(conn, kind)?;
    feed::append(conn, &events)?;
    Ok(outcome)
}

/// Releases an order this exporter holds that a shipment marked `skipped` meanwhile. Returns whether
/// it was such an order.
fn release_skipped(conn: &mut DbConnection, id: i64, owner: &str) -> QueryResult<bool> {
    let n = diesel::update(
        orders::table
            .find(id)
            .filter(orders::export_lease_owner.eq(owner))
            .filter(orders::export_status.eq(status::SKIPPED)),
    )
    .set((
        orders::export_lease_owner.eq(None::<String>),
        orders::export_lease_expires_at.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

fn reset_breaker(conn: &mut DbConnection, kind: Kind) -> QueryResult<()> {
    diesel::delete(export_breakers::table.find(kind.breaker())).execute(conn)?;
    Ok(())
}

fn settle_failed_batch(
    conn: &mut DbConnection,
    kind: Kind,
    batch: &[Item],
    e: BatchError,
    cfg: &ExportSettings,
    owner: &str,
    log: &ExchangeLog,
) -> anyhow::Result<BatchOutcome> {
    let now = db::now();
    let failures: i32 = export_breakers::table
        .find(kind.breaker())
        .select(export_breakers::consecutive_failures)
        .first(conn)
        .optional()?
        .unwrap_or(0)
        + 1;
    let paused_until = (failures >= cfg.breaker_threshold)
        .then(|| now + TimeDelta::seconds(cfg.breaker_pause_secs));
    diesel::delete(export_breakers::table.find(kind.breaker())).execute(conn)?;
    diesel::insert_into(export_breakers::table)
        .values((
            export_breakers::kind.eq(kind.breaker()),
            export_breakers::consecutive_failures.eq(failures),
            export_breakers::paused_until.eq(paused_until),
        ))
        .execute(conn)?;
    // The items go back, due again after a backoff; their attempts are not counted against them.
    let retry_at = now + backoff(cfg, failures);
    let refs: Vec<&str> = batch.iter().map(|i| i.reference.as_str()).collect();
    match kind {
        Kind::Orders => {
            diesel::update(
                orders::table
                    .filter(orders::increment_id.eq_any(&refs))
                    .filter(orders::export_lease_owner.eq(owner)),
            )
            .set((
                orders::export_next_at.eq(Some(retry_at)),
                orders::export_error.eq(Some(&e.message)),
                orders::export_lease_owner.eq(None::<String>),
                orders::export_lease_expires_at.eq(None::<NaiveDateTime>),
            ))
            .execute(conn)?;
        }
        Kind::Products => {
            diesel::update(
                products::table
                    .filter(products::sku.eq_any(&refs))
                    .filter(products::export_lease_owner.eq(owner)),
            )
            .set((
                products::export_next_at.eq(Some(retry_at)),
                products::export_error.eq(Some(&e.message)),
                products::export_lease_owner.eq(None::<String>),
                products::export_lease_expires_at.eq(None::<NaiveDateTime>),
            ))
            .execute(conn)?;
        }
    }
    insert_export(
        conn,
        &ExportRow {
            kind: log.kind,
            operation: log.operation,
            url: &log.url,
            started: log.started,
            outcome: e.outcome,
            error: Some(&e.message),
            counts: (0, 0, 0),
            request: Some(&log.request),
            response: e.body.as_deref(),
            http_status: e.http_status,
        },
    )?;
    if let Some(until) = paused_until {
        tracing::error!(kind = kind.breaker(), failures, until = %until, error = %e.message,
            "exports paused: the warehouse failed {failures} batches in a row");
    } else {
        tracing::warn!(kind = kind.breaker(), failures, error = %e.message, "export batch failed; it will be retried");
    }
    Ok(BatchOutcome {
        items: batch.len(),
        batch_failed: true,
        paused: paused_until.is_some(),
        ..BatchOutcome::default()
    })
}

/// An order waiting for support: lost, with its last error.
#[derive(Debug, Clone, Queryable)]
pub struct LostOrder {
    /// Order number.
    pub increment_id: String,
    /// Attempts made.
    pub attempts: i32,
    /// The warehouse's last answer about it.
    pub error: Option<String>,
    /// When it was last changed.
    pub updated_at: NaiveDateTime,
}

/// Orders declared lost, oldest first.
pub fn lost_orders(conn: &mut DbConnection) -> QueryResult<Vec<LostOrder>> {
    orders::table
        .filter(orders::export_status.eq(status::LOST))
        .order(orders::id)
        .select((
            orders::increment_id,
            orders::export_attempts,
            orders::export_error,
            orders::updated_at,
        ))
        .load(conn)
}

/// Puts lost (or failed) orders back to pending with their attempts reset, recording who did it.
/// `None` resends every lost order. Returns the orders resent.
pub fn resend(
    conn: &mut DbConnection,
    ids: Option<&[String]>,
    actor: &str,
) -> anyhow::Result<Vec<String>> {
    support_action(conn, ids, actor, "resend", None)
}

/// Marks lost orders as handled by hand (never sent), recording who did it and why.
pub fn dismiss(
    conn: &mut DbConnection,
    ids: &[String],
    actor: &str,
    reason: &str,
) -> anyhow::Result<Vec<String>> {
    support_action(conn, Some(ids), actor, "dismiss", Some(reason))
}

fn support_action(
    conn: &mut DbConnection,
    ids: Option<&[String]>,
    actor: &str,
    action: &str,
    reason: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    db::write_tx(conn, |conn| {
        let allowed = [status::LOST, status::FAILED];
        let rows: Vec<(i64, String, String)> = match ids {
            Some(ids) => orders::table
                .filter(orders::increment_id.eq_any(ids))
                .select((orders::id, orders::increment_id, orders::export_status))
                .load(conn)?,
            None => orders::table
                .filter(orders::export_status.eq(status::LOST))
                .select((orders::id, orders::increment_id, orders::export_status))
                .load(conn)?,
        };
        if let Some(ids) = ids {
            for id in ids {
                match rows.iter().find(|r| &r.1 == id) {
                    None => anyhow::bail!("order {id:?} does not exist; nothing changed"),
                    Some(r) if !allowed.contains(&r.2.as_str()) => anyhow::bail!(
                        "order {id} is {} (only lost or failed orders can be resent or dismissed); nothing changed",
                        r.2
                    ),
                    Some(_) => {}
                }
            }
        }
        let now = db::now();
        let mut events = Vec::new();
        for (id, reference, previous) in &rows {
            let new_status = if action == "resend" {
                status::PENDING
            } else {
                status::DISMISSED
            };
            diesel::update(orders::table.find(id))
                .set((
                    orders::export_status.eq(new_status),
                    orders::export_attempts.eq(0),
                    orders::export_next_at.eq(None::<NaiveDateTime>),
                    orders::export_handled_by.eq(actor),
                    orders::export_handled_at.eq(now),
                    orders::export_note.eq(reason),
                ))
                .execute(conn)?;
            diesel::insert_into(order_export_actions::table)
                .values((
                    order_export_actions::order_id.eq(id),
                    order_export_actions::action.eq(action),
                    order_export_actions::actor.eq(actor),
                    order_export_actions::reason.eq(reason),
                    order_export_actions::at.eq(now),
                ))
                .execute(conn)?;
            events.push(NewEvent {
                kind: feed::ORDER_EXPORT_STATUS_CHANGED,
                payload: serde_json::json!({
                    "order": reference, "status": new_status, "previous": previous,
                    "message": format!("{action} by {actor}"), "attempts": 0,
                }),
            });
        }
        feed::append(conn, &events)?;
        Ok(rows.into_iter().map(|r| r.1).collect())
    })
}

/// One logged exchange with the warehouse.
#[derive(Debug, Clone, Queryable)]
pub struct ExportSummary {
    /// Id.
    pub id: i64,
    /// Message id.
    pub message_id: String,
    /// `order`, `product` or `cancel`.
    pub kind: String,
    /// `insert`, `merge`, `cancel`.
    pub operation: String,
    /// When it started.
    pub started_at: NaiveDateTime,
    /// `ok`, `transport_error`, `http_error`, `bad_answer`, `exception`, `failure`.
    pub outcome: String,
    /// Successes.
    pub successes: i32,
    /// Duplicates.
    pub duplicates: i32,
    /// Failures.
    pub failures: i32,
    /// The batch-level error.
    pub error: Option<String>,
}

/// The most recent exports, newest first.
pub fn recent_exports(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<ExportSummary>> {
    exports::table
        .order(exports::id.desc())
        .limit(limit)
        .select((
            exports::id,
            exports::message_id,
            exports::kind,
            exports::operation,
            exports::started_at,
            exports::outcome,
            exports::successes,
            exports::duplicates,
            exports::failures,
            exports::error,
        ))
        .load(conn)
}

/// An export with its lines, request and response.
pub type ExportDetail = (
    ExportSummary,
    Vec<(String, String, String, Option<String>)>,
    Option<String>,
    Option<String>,
);

/// One export in full.
pub fn export_detail(conn: &mut DbConnection, id: i64) -> QueryResult<Option<ExportDetail>> {
    let Some(summary) = exports::table
        .find(id)
        .select((
            exports::id,
            exports::message_id,
            exports::kind,
            exports::operation,
            exports::started_at,
            exports::outcome,
            exports::successes,
            exports::duplicates,
            exports::failures,
            exports::error,
        ))
        .first::<ExportSummary>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let lines = export_lines::table
        .filter(export_lines::export_id.eq(id))
        .order(export_lines::line_no)
        .select((
            export_lines::reference,
            export_lines::result,
            export_lines::message,
            export_lines::detail,
        ))
        .load(conn)?;
    let (request, response): (Option<String>, Option<String>) = exports::table
        .find(id)
        .select((exports::request_xml, exports::response_body))
        .first(conn)?;
    Ok(Some((summary, lines, request, response)))
}
