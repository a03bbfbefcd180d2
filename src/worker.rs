//! The worker: claims batches of due requests under a lease and applies each one in a single
//! transaction together with its import report.
//!
//! Runs inside `wharf serve` by default and alone as `wharf worker`; any number of workers may share
//! one PostgreSQL database. A worker killed at any instant leaves either nothing (the transaction rolls
//! back and the lease expires, so another worker takes the request over) or the whole effect.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{NaiveDateTime, TimeDelta};
use tokio::sync::watch;

use crate::config::Settings;
use crate::db::lease::{self, Lease, LeaseLost, Owner};
use crate::db::{self, DbConnection, Pool};
use crate::feed;
use crate::imports::{self, Report};
use crate::inventory;
use crate::metrics::{self, Applied};
use crate::queue::{self, Claimed, Operation, store};
use crate::runs::{self, Job};
use crate::shipments;
use crate::telemetry::Escaped;

/// Operations this worker knows how to apply; others stay queued for a worker that does.
pub const APPLIED_OPERATIONS: &[Operation] =
    &[Operation::InventoryUpdate, Operation::ShipmentCreate];

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Requests claimed.
    pub claimed: usize,
    /// Requests applied and marked processed.
    pub processed: usize,
    /// Requests that failed and were scheduled for retry or declared dead.
    pub failed: usize,
    /// Requests another worker had taken over before this one finished.
    pub lost_lease: usize,
    /// Requests applied as a business failure (a shipment that could not be applied at all: its
    /// import report holds Failure lines). They are processed, and counted in `processed` too.
    pub business_failures: usize,
    /// Shipments put back to wait for an order wharf does not know yet (not counted as attempts).
    pub waiting: usize,
}

/// How applying one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finished {
    /// Its effect and report are committed.
    Done,
    /// Committed as a business failure (its report says why).
    BusinessFailure,
}

/// A worker bound to a pool and settings. Cheap to clone via `Arc`.
pub struct Worker {
    pool: Pool,
    settings: Arc<Settings>,
    owner: Owner,
}

impl Worker {
    /// A worker named after this host and process (and a random suffix, so two workers in one process
    /// never share a lease owner).
    pub fn new(pool: Pool, settings: Arc<Settings>) -> Worker {
        Worker {
            pool,
            settings,
            owner: Owner::new("worker"),
        }
    }

    /// This worker's name (the prefix of its lease owners).
    pub fn name(&self) -> &str {
        self.owner.name()
    }

    /// Claims one batch (every claim gets its own owner token) without applying it. Used by
    /// [`Worker::run_batch`], and by tests that simulate a worker dying while it holds a lease.
    pub fn claim(&self) -> anyhow::Result<(String, Vec<Claimed>)> {
        let mut conn = self
            .pool
            .get()
            .context("no database connection for the worker")?;
        let lease = Lease::new(&self.owner, self.settings.worker.lease_secs);
        let claimed = store::claim(
            &mut conn,
            &lease,
            APPLIED_OPERATIONS,
            self.settings.worker.batch_size,
        )
        .context("claiming queued requests")?;
        Ok((lease.owner, claimed))
    }

    /// Claims and applies one batch, and records how it went ([`runs`]: the worker's last good
    /// and last failed run).
    pub fn run_batch(&self) -> anyhow::Result<BatchOutcome> {
        let batch = self
            .claim()
            .and_then(|(owner, claimed)| self.apply_claimed(&owner, &claimed));
        self.record_run(batch.as_ref().map(drop).map_err(|e| format!("{e:#}")));
        batch
    }

    /// Writes how a batch went to [`runs`] (a success at most every [`runs::OK_EVERY`]). A failure
    /// to write it is only logged at debug level: the batch's own failure, logged by the caller,
    /// is what matters, and the database is then likely what failed.
    fn record_run(&self, outcome: Result<(), String>) {
        if outcome.is_ok() && !runs::ok_wanted(Job::Worker) {
            return;
        }
        let now = db::now();
        let written = self
            .pool
            .get()
            .map_err(|e| e.to_string())
            .and_then(|mut conn| {
                match &outcome {
                    Ok(()) => runs::ok(&mut conn, Job::Worker, now),
                    Err(e) => runs::failed(&mut conn, Job::Worker, e, now),
                }
                .map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            tracing::debug!(error = %e, "could not record the worker's run");
        }
    }

    /// Applies requests claimed under `owner`, in order. Consecutive inventory requests are applied
    /// together in one transaction (up to `worker.transaction_lines` lines), each with its own import
    /// report; if that transaction fails for any reason, its requests are applied again one by one, so
    /// a request that cannot be applied never holds back the others.
    pub fn apply_claimed(&self, owner: &str, claimed: &[Claimed]) -> anyhow::Result<BatchOutcome> {
        let mut outcome = BatchOutcome {
            claimed: claimed.len(),
            ..BatchOutcome::default()
        };
        if claimed.is_empty() {
            return Ok(outcome);
        }
        let mut conn = self
            .pool
            .get()
            .context("no database connection for the worker")?;
        let mut rest = claimed;
        while !rest.is_empty() {
            let group = self.group_len(rest);
            let (now, later) = rest.split_at(group);
            rest = later;
            if group > 1 {
                let started = std::time::Instant::now();
                match self.apply_together(&mut conn, owner, now) {
                    Ok(()) => {
                        outcome.processed += group;
                        metrics::applied(Operation::InventoryUpdate, Applied::Done, group);
                        tracing::debug!(
                            requests = group,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "applied together"
                        );
                        continue;
                    }
                    Err(e) => tracing::info!(
                        requests = group,
                        error = %format!("{e:#}"),
                        "applying requests together failed; applying them one by one"
                    ),
                }
            }
            for req in now {
                self.apply_alone(&mut conn, owner, req, &mut outcome)?;
            }
        }
        tracing::info!(
            processed = outcome.processed,
            business_failures = outcome.business_failures,
            failed = outcome.failed,
            waiting = outcome.waiting,
            lost_lease = outcome.lost_lease,
            "worker batch done"
        );
        Ok(outcome)
    }

    /// How many of the leading requests go into one transaction: a run of inventory requests within
    /// their attempt limit, up to `transaction_lines` lines (at least one request).
    fn group_len(&self, claimed: &[Claimed]) -> usize {
        let groupable = |r: &Claimed| {
            r.operation == Operation::InventoryUpdate
                && r.attempts <= self.settings.worker.max_attempts
        };
        let mut lines = 0i64;
        let mut n = 0;
        for req in claimed {
            lines += i64::from(req.line_count);
            if n > 0 && (!groupable(req) || lines > self.settings.worker.transaction_lines) {
                break;
            }
            n += 1;
            if !groupable(req) {
                break;
            }
        }
        n.max(1)
    }

    /// Applies a run of inventory requests in one transaction.
    fn apply_together(
        &self,
        conn: &mut DbConnection,
        owner: &str,
        reqs: &[Claimed],
    ) -> anyhow::Result<()> {
        self.in_transaction(conn, owner, reqs, |conn, ids| {
            inventory::apply(conn, ids, &self.settings.inventory)
                .context("applying inventory lines")
        })
    }

    /// Applies `reqs` with `apply` (which returns one report per request) in one transaction that
    /// first marks them processed — rolling back if any lease was taken over — and then stores their
    /// import reports and feed events.
    fn in_transaction(
        &self,
        conn: &mut DbConnection,
        owner: &str,
        reqs: &[Claimed],
        apply: impl FnOnce(&mut DbConnection, &[i64]) -> anyhow::Result<Vec<Report>>,
    ) -> anyhow::Result<()> {
        let ids: Vec<i64> = reqs.iter().map(|r| r.id).collect();
        let started = std::time::Instant::now();
        let (events, lines) = db::write_tx(conn, |conn| -> anyhow::Result<_> {
            lease::held(store::finish(conn, &ids, owner)?, ids.len(), owner)?;
            let reports = apply(conn, &ids)?;
            let lines = imports::Summary::total(reports.iter().map(|r| &r.summary));
            Ok((
                self.record(conn, reqs.iter().zip(reports).collect())?,
                lines,
            ))
        })?;
        if events > 0 {
            feed::wake_readers();
        }
        // Counted once committed: a group that rolls back is applied again one by one.
        if let Some(first) = reqs.first() {
            let now = db::now();
            let lags: Vec<Duration> = reqs
                .iter()
                .map(|r| (now - r.received_at).to_std().unwrap_or_default())
                .collect();
            metrics::transaction(first.operation, started.elapsed(), &lags, &lines);
        }
        Ok(())
    }

    /// Stores import reports and appends their feed events (last, so the feed counter's lock is held
    /// only for the commit). Returns the number of events.
    fn record(
        &self,
        conn: &mut DbConnection,
        mut applied: Vec<(&Claimed, Report)>,
    ) -> anyhow::Result<usize> {
        let events: Vec<feed::NewEvent> = applied
            .iter_mut()
            .flat_map(|(_, r)| std::mem::take(&mut r.events))
            .collect();
        let reports: Vec<(imports::store::Header<'_>, &Report)> = applied
            .iter()
            .map(|(req, report)| {
                let header = imports::store::Header {
                    request_id: req.id,
                    operation: req.operation.as_str(),
                    message_seq_id: req.message_seq_id,
                };
                (header, report)
            })
            .collect();
        imports::store::write_imports(conn, &reports).context("writing the import report")?;
        feed::append(conn, &events).context("writing feed events")?;
        Ok(events.len())
    }

    /// Applies one request in its own transaction, recording a failure for retry.
    fn apply_alone(
        &self,
        conn: &mut DbConnection,
        owner: &str,
        req: &Claimed,
        outcome: &mut BatchOutcome,
    ) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        match self.apply_one(conn, owner, req) {
            Ok(applied) => {
                outcome.processed += 1;
                outcome.business_failures += usize::from(applied == Finished::BusinessFailure);
                let counted = match applied {
                    Finished::Done => Applied::Done,
                    Finished::BusinessFailure => Applied::BusinessFailure,
                };
                metrics::applied(req.operation, counted, 1);
                tracing::debug!(
                    request = req.id,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "applied"
                );
            }
            Err(e) if e.is::<shipments::OrderNotKnownYet>() => {
                outcome.waiting += 1;
                metrics::applied(req.operation, Applied::Waiting, 1);
                if let Some(wait) = e.downcast_ref::<shipments::OrderNotKnownYet>() {
                    self.wait_for_order(conn, owner, req, wait)?;
                }
            }
            Err(e) if e.is::<LeaseLost>() => {
                outcome.lost_lease += 1;
                metrics::applied(req.operation, Applied::LostLease, 1);
                tracing::warn!(
                    request = req.id,
                    "request was taken over by another worker after this worker's lease expired; \
                     nothing applied here"
                );
            }
            Err(e) => {
                outcome.failed += 1;
                let dead = queue::fail(
                    conn,
                    req.id,
                    owner,
                    req.attempts,
                    &format!("{e:#}"),
                    &self.settings.worker,
                )
                .context("recording a failed attempt")?;
                let counted = if dead {
                    Applied::Dead
                } else {
                    Applied::Retried
                };
                metrics::applied(req.operation, counted, 1);
                if dead {
                    tracing::error!(request = req.id, attempts = req.attempts, error = %format!("{e:#}"),
                        "request is dead after its last attempt; it is kept and can be requeued by hand");
                } else {
                    tracing::warn!(request = req.id, attempts = req.attempts, error = %format!("{e:#}"),
                        "applying a request failed; it will be retried");
                }
            }
        }
        Ok(())
    }

    fn apply_one(
        &self,
        conn: &mut DbConnection,
        owner: &str,
        req: &Claimed,
    ) -> anyhow::Result<Finished> {
        if req.attempts > self.settings.worker.max_attempts {
            anyhow::bail!(
                "the request was claimed {} times without finishing (its workers stopped or timed out)",
                req.attempts - 1
            );
        }
        let wait_for_order = TimeDelta::seconds(self.settings.worker.unknown_order_retry_secs);
        let mut failure = None;
        self.in_transaction(
            conn,
            owner,
            std::slice::from_ref(req),
            |conn, ids| match req.operation {
                Operation::InventoryUpdate => inventory::apply(conn, ids, &self.settings.inventory)
                    .context("applying inventory lines"),
                Operation::ShipmentCreate => {
                    match shipments::apply(
                        conn,
                        req.id,
                        req.message_seq_id,
                        wait_for_order,
                        &self.settings.channels,
                    ) {
                        Ok(applied) => {
                            failure = applied.failure;
                            Ok(vec![applied.report])
                        }
                        // Not an error to retry: rolled back and put back to wait for the order.
                        Err(shipments::ApplyError::NotKnownYet(wait)) => Err(wait.into()),
                        Err(e) => Err(anyhow::Error::new(e).context("applying the shipment")),
                    }
                }
            },
        )?;
        // A shipment may have made a push to its order's channel due (or restarted its ship
        // delay): the channel's runner in this process looks now rather than at its fallback.
        // (Other processes hear of it through the NOTIFY the shipment's transaction sent.)
        if req.operation == Operation::ShipmentCreate && !self.settings.channels.is_empty() {
            crate::outbound::wake_exporters();
        }
        // Logged only once the failure is committed: support looks for these.
        Ok(match failure {
            Some(f) => {
                tracing::warn!(request = req.id, message_seq_id = req.message_seq_id, order = %Escaped(&f.order),
                    sku = %Escaped(f.sku.as_deref().unwrap_or("-")), reason = %Escaped(&f.reason),
                    "shipment failed: nothing of it was applied");
                Finished::BusinessFailure
            }
            None => Finished::Done,
        })
    }

    /// Puts a shipment whose order wharf does not know yet back in the queue until its next try: the
    /// worker's backoff (base doubling up to the ceiling, measured from when it arrived) and never
    /// later than the end of its wait, when it is tried a last time and fails if the order is still
    /// missing.
    fn wait_for_order(
        &self,
        conn: &mut DbConnection,
        owner: &str,
        req: &Claimed,
        wait: &shipments::OrderNotKnownYet,
    ) -> anyhow::Result<()> {
        let now = db::now();
        let next = next_try(now, wait, &self.settings.worker);
        let note = wait.to_string();
        if store::defer(conn, req.id, owner, next, &note).context("putting a shipment back")? {
            tracing::info!(request = req.id, order = %Escaped(&wait.order), next_try = %next, until = %wait.until,
                "shipment waits for its order, which wharf does not know yet");
        }
        Ok(())
    }

    /// Applies batches until nothing is due. Returns the number of requests processed.
    pub fn drain(&self) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let o = self.run_batch()?;
            total += o.processed;
            if o.claimed == 0 {
                return Ok(total);
            }
        }
    }

    /// Runs until `stop` turns true, with `concurrency` applier loops. A batch in flight is finished
    /// before returning, so shutdown never leaves a lease to expire.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let loops = self.settings.worker.concurrency.max(1);
        let mut handles = Vec::with_capacity(loops);
        for _ in 0..loops {
            let worker = self.clone();
            let stop = stop.clone();
            handles.push(tokio::spawn(worker.run_loop(stop)));
        }
        for h in handles {
            let _ = h.await;
        }
    }

    async fn run_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let idle = Duration::from_millis(self.settings.worker.poll_interval_ms.max(10));
        tracing::info!(worker = %self.name(), "worker started");
        loop {
            if *stop.borrow() {
                break;
            }
            // Created before claiming, so a request stored while this batch looks still wakes the
            // wait below (see `db::wake`).
            let stored = queue::stored_requests().notified();
            let worker = self.clone();
            let next = match tokio::task::spawn_blocking(move || worker.run_batch()).await {
                Ok(Ok(o)) if o.claimed > 0 => Next::Claim,
                Ok(Ok(_)) => Next::Idle,
                Ok(Err(e)) => {
                    tracing::error!(error = %format!("{e:#}"), "worker batch failed; retrying after a pause");
                    Next::Pause
                }
                Err(e) => {
                    tracing::error!(error = %e, "worker batch panicked; retrying after a pause");
                    Next::Pause
                }
            };
            match next {
                Next::Claim => {}
                // The interval is only the fallback: a stored request wakes the worker at once.
                Next::Idle => tokio::select! {
                    _ = tokio::time::sleep(idle) => {}
                    _ = stored => {}
                    _ = stop.changed() => {}
                },
                // After a failure wake-ups are not followed, so a broken database is not hammered.
                Next::Pause => tokio::select! {
                    _ = tokio::time::sleep(idle) => {}
                    _ = stop.changed() => {}
                },
            }
        }
        tracing::info!(worker = %self.name(), "worker stopped");
    }
}

/// What an applier loop does after a batch.
enum Next {
    /// Claim again at once: there may be more.
    Claim,
    /// Nothing was due: wait for a stored request or the poll interval.
    Idle,
    /// The batch failed: wait the poll interval.
    Pause,
}

/// When a shipment waiting for its order is tried next: as long again as it has waited so far (so the
/// delays double), at least the backoff base (and a second, so a zero base cannot spin) and at most
/// its ceiling, and never after the end of the wait.
fn next_try(
    now: NaiveDateTime,
    wait: &shipments::OrderNotKnownYet,
    settings: &crate::config::WorkerSettings,
) -> NaiveDateTime {
    let floor = settings.backoff_base_secs.max(1);
    let ceiling = settings.backoff_ceiling_secs.max(floor);
    let waited = (now - wait.received_at).num_seconds();
    let delay = TimeDelta::seconds(waited.clamp(floor, ceiling));
    (now + delay).min(wait.until)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(received_at: NaiveDateTime, wait_secs: i64) -> shipments::OrderNotKnownYet {
        shipments::OrderNotKnownYet {
            order: "1".into(),
            message_seq_id: 1,
            received_at,
            until: received_at + TimeDelta::seconds(wait_secs),
        }
    }

    #[test]
    fn waits_for_an_order_double_and_end_with_the_window() {
        let settings = crate::config::WorkerSettings::default();
        let t0 = db::now();
        let w = waiting(t0, 900);
        let at = |secs: i64| t0 + TimeDelta::seconds(secs);
        // The base first, then as long again as waited so far.
        assert_eq!(next_try(t0, &w, &settings), at(5));
        assert_eq!(next_try(at(5), &w, &settings), at(10));
        assert_eq!(next_try(at(40), &w, &settings), at(80));
        // The last try is at the end of the window, not after it.
        assert_eq!(next_try(at(640), &w, &settings), at(900));
        let zero_base = crate::config::WorkerSettings {
            backoff_base_secs: 0,
            ..settings
        };
        assert_eq!(next_try(t0, &w, &zero_base), at(1), "never spins");
    }
}
