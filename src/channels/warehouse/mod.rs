//! The warehouse channel: invoiced orders (`order.insert`) and changed products (`product.merge`)
//! in batches over HTTP, the import report deciding each item, and cancellations of exported orders
//! (`order.cancel`), all as tasks of the outbound queue ([`crate::outbound`]): retries with
//! backoff, a lost list for support, a circuit breaker, and a log of every exchange.
//!
//! Order export states (the summary in `orders.export_status`): `pending` → `exported` | `failed`
//! (retried after a backoff) → `lost` (after `max_attempts`); support can `resend` (back to
//! `pending`, attempts reset) or `dismiss` (`dismissed`, handled by hand). An order that shipments
//! complete before it was exported is `skipped` ([`crate::orders::export::skip_unexported`]), and never sent. Tasks
//! are claimed under a lease, so two exporters never send the same order at once. What is sent is
//! built at send time from the current order or product; one whose stored document no longer reads
//! fails on its own, and the rest of its batch goes.
//!
//! Settling is safe with any number of exporters in any number of processes: task writes are
//! compare-and-set on the lease owner, the breaker counts by one atomic upsert, and support actions
//! compare-and-set on the state they saw ([`support`]).

pub mod cancel;
mod client;
pub mod document;
pub(crate) mod items;
pub mod report;
pub(crate) mod settle;
pub mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{ExportSettings, Settings};
use crate::db::lease::{Backoff, Lease, Owner};
use crate::db::{self, Pool};
use crate::feed;
use crate::metrics::{self, Exchanged};
pub use crate::orders::export::ExportStatus;
pub use crate::orders::{CancelState, CancellationView};
pub use crate::outbound::breaker::{BreakerState, breakers};
use crate::outbound::exchange::ExchangeLog;
pub use crate::outbound::exchange::{
    self, BatchError, Exchange, ExportDetail, ExportSummary, export_detail, recent_exports,
};
use crate::outbound::runner::{self, Schedule, Wakes};
use crate::runs::{self, Job};
use items::{Claim, Item, Kind};
use settle::Settler;
pub use support::{Action, Handled, LostOrder, Subject, act, act_in, dismiss, lost_orders, resend};

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

/// Sends the warehouse's tasks.
pub struct Exporter {
    pool: Pool,
    settings: Arc<Settings>,
    http: reqwest::Client,
    owner: Owner,
}

impl Exporter {
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
        let lease = Lease::new(&self.owner, cfg.lease_secs);
        let (claim_lease, claim_cfg) = (lease.clone(), cfg.clone());
        let claimed = self
            .blocking(move |conn| items::claim(conn, kind, &claim_lease, &claim_cfg, due_at))
            .await?;
        let batch = match claimed {
            Claim::Paused(b) => return Ok(BatchOutcome::paused(b)),
            Claim::Items(b) if b.is_empty() => return Ok(BatchOutcome::default()),
            Claim::Items(b) => b,
        };
        let started = db::now();
        let (xml, batch, unreadable) = items::document(kind, batch, started);
        let mut outcome = BatchOutcome::default();
        if !unreadable.is_empty() {
            let (cfg, owner) = (cfg.clone(), lease.owner.clone());
            outcome.add(
                self.blocking(move |conn| {
                    let s = Settler {
                        kind,
                        cfg: &cfg,
                        owner: &owner,
                        confirm: false,
                    };
                    db::write_tx(conn, |conn| settle::unreadable(conn, &s, &unreadable))
                })
                .await
                .inspect(|o| metrics::exported(kind.task_kind(), o, Exchanged::No))?,
            );
        }
        let Some(xml) = xml else {
            return Ok(outcome);
        };
        let url = self.url(kind.resource(), &[])?;
        let answer = self.post(url.clone(), Some(xml.clone())).await;
        let log = ExchangeLog {
            kind: kind.noun(),
            operation: kind.operation(),
            url: url.to_string(),
            started,
            request: Some(xml),
        };
        outcome.add(
            self.settle(kind, batch, answer, log, cfg, lease.owner)
                .await?,
        );
        Ok(outcome)
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
            Err(e) => Err(client::no_answer::unreadable(e, body)),
        });
        let confirm = self.settings.alerts.confirms_customers();
        self.blocking(move |conn| {
            let s = Settler {
                kind,
                cfg: &cfg,
                owner: &owner,
                confirm,
            };
            db::write_tx(conn, |conn| match &parsed {
                Ok((lines, body)) => settle::answered(conn, &s, &batch, lines, &log, body),
                Err(e) => settle::not_answered(conn, &s, &batch, e, &log),
            })
        })
        .await
        .inspect(|o| {
            metrics::exported(kind.task_kind(), o, Exchanged::Yes);
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
            let lease = Lease::new(&self.owner, cfg.lease_secs);
            let (claim_lease, claim_cfg) = (lease.clone(), cfg.clone());
            let claimed = self
                .blocking(move |conn| cancel::claim(conn, &claim_lease, &claim_cfg, run_started))
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
                .send_claimed_cancellations(batch, &cfg, &lease.owner, &mut total)
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
            let reference = c.reference().to_string();
            let url = self.url(
                "remoteorder/order/cancel.xml",
                &[("externalReference", &reference)],
            )?;
            let answer = cancel::classify(self.post(url.clone(), None).await, &reference);
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
            metrics::exported(crate::orders::export::ORDER_CANCEL, &o, Exchanged::Yes);
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

    /// Orders, then cancellations: what follows the orders' schedule. Each part's run is recorded
    /// ([`runs`]: `export.orders`, `export.cancellations`).
    pub async fn run_orders(&self) -> anyhow::Result<RunOutcome> {
        let orders = self.export_orders().await;
        self.record_run(Job::ExportOrders, &orders).await;
        let orders = orders?;
        let cancellations = self.export_cancellations().await;
        self.record_run(Job::ExportCancellations, &cancellations)
            .await;
        let run = RunOutcome {
            orders: Some(orders),
            cancellations: Some(cancellations?),
            products: None,
        };
        run.log();
        Ok(run)
    }

    /// What follows one part's schedule: orders (with cancellations) or products.
    async fn run_part(&self, kind: Kind) -> anyhow::Result<RunOutcome> {
        match kind {
            Kind::Orders => self.run_orders().await,
            Kind::Products => self.run_products().await,
        }
    }

    /// One run of a continuous part. Returns when the next look is due without a wake-up: the
    /// next retry or lease expiry of its waiting tasks, or when the breaker that paused it closes.
    async fn run_continuous(&self, kind: Kind) -> anyhow::Result<Option<NaiveDateTime>> {
        let run = self.run_part(kind).await?;
        let closes = run
            .parts()
            .into_iter()
            .filter_map(|(_, o)| o.breaker.and_then(|b| b.paused_until))
            .min();
        let due = self
            .blocking(move |conn| {
                Ok(crate::outbound::next_due(
                    conn,
                    kind.scheduled(),
                    db::now(),
                )?)
            })
            .await?;
        Ok(due.into_iter().chain(closes).min())
    }

    /// Products: what follows the products' schedule (recorded as `export.products`).
    pub async fn run_products(&self) -> anyhow::Result<RunOutcome> {
        let products = self.export_products().await;
        self.record_run(Job::ExportProducts, &products).await;
        let run = RunOutcome {
            products: Some(products?),
            ..RunOutcome::default()
        };
        run.log();
        Ok(run)
    }

    /// Records how a run of `job` went: failed when it stopped on an error, when the warehouse did
    /// not answer, or when the breaker paused it (nothing went then); ran well otherwise. A
    /// failure to record is logged, never the run's own outcome.
    async fn record_run(&self, job: Job, run: &anyhow::Result<BatchOutcome>) {
        let outcome = match run {
            Err(e) => Err(format!("{e:#}")),
            Ok(o) if o.batch_failed => Err(format!(
                "the warehouse did not answer: {}",
                o.problem.as_deref().unwrap_or("no usable answer")
            )),
            Ok(o) if o.paused => Err("paused by the breaker after failed exchanges".to_string()),
            Ok(_) => Ok(()),
        };
        let recorded = self
            .blocking(move |conn| {
                let now = db::now();
                match &outcome {
                    Ok(()) => runs::ok(conn, job, now)?,
                    Err(e) => runs::failed(conn, job, e, now)?,
                }
                Ok(())
            })
            .await;
        if let Err(e) = recorded {
            tracing::warn!(job = job.as_str(), error = %format!("{e:#}"), "could not record the export run");
        }
    }

    /// Everything due now whose export is enabled: orders, cancellations, products. Returns the
    /// totals of each.
    pub async fn run_once(&self) -> anyhow::Result<RunOutcome> {
        let w = &self.settings.warehouse;
        let mut run = RunOutcome::default();
        if w.orders.enabled {
            run = self.run_orders().await?;
        }
        if w.products.enabled {
            run.products = self.run_products().await?.products;
        }
        Ok(run)
    }
}

/// Starts the warehouse's runners, each on its own schedule: orders and their cancellations on
/// `warehouse.orders.schedule` when order export is enabled, products on
/// `warehouse.products.schedule` when product export is. A schedule is a cron expression or
/// `continuous` (woken when something may be due, sent after `batch_window_ms`).
pub fn spawn_runners(
    pool: &Pool,
    settings: &Arc<Settings>,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let w = &settings.warehouse;
    if !(w.orders.enabled || w.products.enabled) {
        return Vec::new();
    }
    let exporter = match Exporter::new(pool.clone(), settings.clone()) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "the exporter cannot start; exports are off");
            return Vec::new();
        }
    };
    [(Kind::Orders, &w.orders), (Kind::Products, &w.products)]
        .into_iter()
        .filter(|(_, cfg)| cfg.enabled)
        .filter_map(|(kind, cfg)| spawn_runner(&exporter, kind, cfg, stop))
        .collect()
}

/// The runner of one part on its schedule. `None` (logged) when the schedule does not parse:
/// settings are checked at start-up, so that is a last resort.
fn spawn_runner(
    exporter: &Arc<Exporter>,
    kind: Kind,
    cfg: &ExportSettings,
    stop: &watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    let what = kind.runner();
    let schedule = Schedule::parse(&cfg.schedule)
        .map_err(|e| {
            tracing::error!(runner = what, schedule = %cfg.schedule, error = %e,
                "the {what} schedule is neither continuous nor a valid cron expression; it does not run");
        })
        .ok()?;
    let e = exporter.clone();
    Some(match schedule {
        Schedule::Cron(cron) => {
            tokio::spawn(runner::on_schedule(what, cron, stop.clone(), move || {
                let e = e.clone();
                async move { e.run_part(kind).await.map(drop) }
            }))
        }
        Schedule::Continuous => {
            let wakes = Wakes {
                notify: crate::outbound::announced(),
                window: Duration::from_millis(cfg.batch_window_ms),
            };
            tokio::spawn(runner::continuous(what, wakes, stop.clone(), move || {
                let e = e.clone();
                async move { e.run_continuous(kind).await }
            }))
        }
    })
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

impl RunOutcome {
    /// Logs each part that took something or was paused.
    fn log(&self) {
        for (what, o) in self.parts() {
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
    }
}

fn backoff(cfg: &ExportSettings, attempts: i32) -> TimeDelta {
    backoff_of(cfg).after(attempts)
}

/// The retry delays of an export kind's settings.
fn backoff_of(cfg: &ExportSettings) -> Backoff {
    Backoff {
        base_secs: cfg.backoff_base_secs,
        ceiling_secs: cfg.backoff_ceiling_secs,
    }
}
