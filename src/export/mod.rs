//! Exporting to the warehouse: invoiced orders and changed products in batches over HTTP, the import
//! report deciding each item, retries with backoff, a lost-orders list, a circuit breaker, order
//! cancellations, and a log of every exchange.
//!
//! Order export states: `pending` → `exported` | `failed` (retried after a backoff) → `lost` (after
//! `max_attempts`); support can `resend` (back to `pending`, attempts reset) or `dismiss` (`dismissed`,
//! handled by hand). An order that shipments complete before it was exported is `skipped` (see
//! `shipments`), and never sent. Items are claimed under a lease, so two exporters never send the
//! same order at once.
//! Cancellations go the same way (see [`cancel`]).
//!
//! Settling is safe with any number of exporters in any number of processes: item writes are
//! compare-and-set on the lease owner, the breaker counts by one atomic upsert ([`breaker`]), and
//! support actions compare-and-set on the state they saw ([`support`]).

pub mod breaker;
pub mod cancel;
pub mod document;
pub mod exchange;
mod items;
pub mod report;
pub mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use chrono::{NaiveDateTime, TimeDelta};
use tokio::sync::watch;

use crate::config::{ExportSettings, Settings};
use crate::db::{self, DbConnection, Pool};
use crate::feed;
pub use breaker::{BreakerState, breakers};
pub use cancel::{CancelState, CancellationView, cancellation_view};
use exchange::{BatchError, ExchangeLog};
pub use exchange::{Exchange, ExportDetail, ExportSummary, export_detail, recent_exports};
use items::{Claim, Item, Kind};
pub use support::{Action, Handled, LostOrder, Subject, act, dismiss, lost_orders, resend};

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

/// What one batch, or a whole run, did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Items taken (0: nothing was due).
    pub items: usize,
    /// Accepted (success or duplicate; for cancellations: confirmed).
    pub exported: usize,
    /// Refused or missing, to retry (including those lost).
    pub failed: usize,
    /// Declared lost.
    pub lost: usize,
    /// Items of batches that got no usable answer (transport, HTTP status, unreadable answer).
    pub not_sent: usize,
    /// A batch got no usable answer.
    pub batch_failed: bool,
    /// Exports are paused by the breaker.
    pub paused: bool,
    /// Why the last refused item was refused.
    pub refusal: Option<String>,
    /// Why the last batch that got no usable answer got none.
    pub problem: Option<String>,
    /// When the items not sent are due again.
    pub retry_at: Option<NaiveDateTime>,
    /// The breaker, when it is open.
    pub breaker: Option<BreakerState>,
}

impl BatchOutcome {
    fn paused(b: BreakerState) -> BatchOutcome {
        BatchOutcome {
            paused: true,
            breaker: Some(b),
            ..BatchOutcome::default()
        }
    }

    fn not_sent(
        items: usize,
        e: &BatchError,
        retry_at: NaiveDateTime,
        b: BreakerState,
        now: NaiveDateTime,
    ) -> BatchOutcome {
        let open = b.is_open(now);
        BatchOutcome {
            items,
            not_sent: items,
            batch_failed: true,
            paused: open,
            problem: Some(e.message.clone()),
            retry_at: Some(retry_at),
            breaker: open.then_some(b),
            ..BatchOutcome::default()
        }
    }

    /// Adds a later batch's outcome to a run's totals.
    pub fn add(&mut self, o: BatchOutcome) {
        self.items += o.items;
        self.exported += o.exported;
        self.failed += o.failed;
        self.lost += o.lost;
        self.not_sent += o.not_sent;
        self.batch_failed |= o.batch_failed;
        self.paused |= o.paused;
        self.refusal = o.refusal.or(self.refusal.take());
        self.problem = o.problem.or(self.problem.take());
        self.retry_at = o.retry_at.or(self.retry_at);
        self.breaker = o.breaker.or(self.breaker);
    }

    /// Whether everything that was due went: nothing refused, lost or unsent, breaker closed.
    pub fn all_went(&self) -> bool {
        self.failed == 0 && self.lost == 0 && self.not_sent == 0 && !self.paused
    }
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
        let resp = req
            .send()
            .await
            .map_err(|e| BatchError::transport(&e, w.timeout_secs))?;
        let status = resp.status();
        let text = match exchange::read_capped(resp, w.max_answer).await {
            Ok(Ok(t)) => t,
            Ok(Err(start)) => return Err(BatchError::too_large(status, w.max_answer, start)),
            // The answer broke off (or timed out) half-way: nothing usable came back.
            Err(e) => return Err(BatchError::transport(&e, w.timeout_secs)),
        };
        if !status.is_success() {
            return Err(BatchError::http(status, text));
        }
        Ok(text)
    }

    /// Exports batches of due orders until none is due (or a batch gets no answer, or the breaker
    /// opens). Returns the totals.
    pub async fn export_orders(&self) -> anyhow::Result<BatchOutcome> {
        self.export_run(Kind::Orders).await
    }

    /// Exports batches of changed products until none is due. Returns the totals.
    pub async fn export_products(&self) -> anyhow::Result<BatchOutcome> {
        self.export_run(Kind::Products).await
    }

    /// Claims and sends one batch of due orders.
    pub async fn export_order_batch(&self) -> anyhow::Result<BatchOutcome> {
        self.batch(Kind::Orders, db::now()).await
    }

    async fn export_run(&self, kind: Kind) -> anyhow::Result<BatchOutcome> {
        // Only what was due when the run started: an item that fails in this run waits for its
        // backoff even when that is zero.
        let run_started = db::now();
        let mut total = BatchOutcome::default();
        loop {
            let o = self.batch(kind, run_started).await?;
            let stop = o.items == 0 || o.batch_failed || o.paused;
            total.add(o);
            if stop {
                return Ok(total);
            }
        }
    }

    async fn batch(&self, kind: Kind, due_at: NaiveDateTime) -> anyhow::Result<BatchOutcome> {
        let cfg = kind.settings(&self.settings.warehouse).clone();
        let owner = self.owner();
        let (claim_owner, claim_cfg) = (owner.clone(), cfg.clone());
        let claimed = self
            .blocking(move |conn| items::claim(conn, kind, &claim_owner, &claim_cfg, due_at))
            .await?;
        let batch = match claimed {
            Claim::Paused(b) => return Ok(BatchOutcome::paused(b)),
            Claim::Items(b) if b.is_empty() => return Ok(BatchOutcome::default()),
            Claim::Items(b) => b,
        };
        let started = db::now();
        let xml = items::document(kind, &batch, started)?;
        let url = self.url(kind.resource(), &[])?;
        let answer = self.post(url.clone(), Some(xml.clone())).await;
        let log = ExchangeLog {
            kind: kind.noun(),
            operation: kind.operation(),
            url: url.to_string(),
            started,
            request: Some(xml),
        };
        self.settle(kind, batch, answer, log, cfg, owner).await
    }

    /// Records the outcome of a sent batch: per item from the import report, or as a whole when the
    /// answer was an error.
    async fn settle(
        &self,
        kind: Kind,
        batch: Vec<Item>,
        answer: Result<String, BatchError>,
        log: ExchangeLog,
        cfg: ExportSettings,
        owner: String,
    ) -> anyhow::Result<BatchOutcome> {
        let parsed = answer.and_then(|body| match report::parse_import_report(&body) {
            Ok(lines) => Ok((lines, body)),
            Err(e) => Err(BatchError::unreadable(e, body)),
        });
        self.blocking(move |conn| {
            db::write_tx(conn, |conn| match &parsed {
                Ok((lines, body)) => {
                    items::settle_items(conn, kind, &batch, lines, &cfg, &owner, &log, body)
                }
                Err(e) => items::settle_failed_batch(conn, kind, &batch, e, &cfg, &owner, &log),
            })
        })
        .await
        .inspect(|o| {
            if o.exported + o.failed > 0 {
                feed::wake_readers();
            }
        })
    }

    /// Sends the cancellation of every cancelled order the warehouse already has. Returns how many the
    /// warehouse confirmed.
    pub async fn send_cancellations(&self) -> anyhow::Result<usize> {
        Ok(self.export_cancellations().await?.exported)
    }

    /// Sends the due cancellations of exported orders, one request each, until none is due (or one
    /// gets no answer, or the breaker opens). Returns the totals (`exported`: confirmed).
    pub async fn export_cancellations(&self) -> anyhow::Result<BatchOutcome> {
        let cfg = self.settings.warehouse.orders.clone();
        let run_started = db::now();
        let mut total = BatchOutcome::default();
        loop {
            let owner = self.owner();
            let (claim_owner, claim_cfg) = (owner.clone(), cfg.clone());
            let claimed = self
                .blocking(move |conn| cancel::claim(conn, &claim_owner, &claim_cfg, run_started))
                .await?;
            let batch = match claimed {
                cancel::CancelClaim::Paused(b) => {
                    total.add(BatchOutcome::paused(b));
                    return Ok(total);
                }
                cancel::CancelClaim::Items(b) if b.is_empty() => return Ok(total),
                cancel::CancelClaim::Items(b) => b,
            };
            let stopped = self
                .send_claimed_cancellations(batch, &cfg, &owner, &mut total)
                .await?;
            if stopped {
                return Ok(total);
            }
        }
    }

    /// Sends claimed cancellations one by one. Returns whether the run must stop (no answer, or
    /// the breaker opened); the ones not tried then are let go.
    async fn send_claimed_cancellations(
        &self,
        batch: Vec<cancel::Claimed>,
        cfg: &ExportSettings,
        owner: &str,
        total: &mut BatchOutcome,
    ) -> anyhow::Result<bool> {
        let mut batch = batch.into_iter();
        while let Some(c) = batch.next() {
            let started = db::now();
            let url = self.url(
                "remoteorder/order/cancel.xml",
                &[("externalReference", &c.reference)],
            )?;
            let answer = cancel::classify(self.post(url.clone(), None).await, &c.reference);
            let log = ExchangeLog {
                kind: "cancel",
                operation: "cancel",
                url: url.to_string(),
                started,
                request: None,
            };
            let (settle_cfg, settle_owner) = (cfg.clone(), owner.to_string());
            let o = self
                .blocking(move |conn| {
                    cancel::settle(conn, &c, &answer, &settle_cfg, &settle_owner, &log)
                })
                .await?;
            let stop = o.batch_failed || o.paused;
            total.add(o);
            if stop {
                let rest: Vec<cancel::Claimed> = batch.collect();
                let owner = owner.to_string();
                self.blocking(move |conn| Ok(cancel::release(conn, &rest, &owner)?))
                    .await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Everything due now: orders, cancellations, products. Returns the totals of each.
    pub async fn run_once(&self) -> anyhow::Result<RunOutcome> {
        let w = &self.settings.warehouse;
        let mut run = RunOutcome::default();
        if w.orders.enabled {
            run.orders = Some(self.export_orders().await?);
            run.cancellations = Some(self.export_cancellations().await?);
        }
        if w.products.enabled {
            run.products = Some(self.export_products().await?);
        }
        for (what, o) in run.parts() {
            if o.items > 0 || o.paused {
                tracing::info!(
                    taken = o.items,
                    accepted = o.exported,
                    refused = o.failed,
                    lost = o.lost,
                    not_sent = o.not_sent,
                    paused = o.paused,
                    "{what} export done"
                );
            }
        }
        Ok(run)
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

/// What one export run did, per part (`None`: not run).
#[derive(Debug, Default, Clone)]
pub struct RunOutcome {
    /// Orders.
    pub orders: Option<BatchOutcome>,
    /// Cancellations of exported orders.
    pub cancellations: Option<BatchOutcome>,
    /// Products.
    pub products: Option<BatchOutcome>,
}

impl RunOutcome {
    /// The parts that ran, named (`orders`, `cancellations`, `products`).
    pub fn parts(&self) -> Vec<(&'static str, &BatchOutcome)> {
        [
            ("orders", &self.orders),
            ("cancellations", &self.cancellations),
            ("products", &self.products),
        ]
        .into_iter()
        .filter_map(|(name, o)| o.as_ref().map(|o| (name, o)))
        .collect()
    }
}

fn backoff(cfg: &ExportSettings, attempts: i32) -> TimeDelta {
    crate::queue::backoff(attempts, cfg.backoff_base_secs, cfg.backoff_ceiling_secs)
}
