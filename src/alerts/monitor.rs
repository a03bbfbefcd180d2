//! The alert monitor: every `check_interval_secs`, in every `serve` and `worker` process (each on
//! its own timer; the compare-and-set on the incident rows makes them agree), evaluates the
//! conditions and applies the transitions, recording each pass as [`Job::Alerts`].

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{INCIDENT_OPEN, INCIDENT_RESOLVE, conditions, store};
use crate::config::Settings;
use crate::db::{self, DbConnection, Pool};
use crate::outbound;
use crate::runs::{self, Job};

/// What one pass changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// Incidents this pass opened.
    pub opened: Vec<i64>,
    /// Incidents this pass resolved.
    pub resolved: Vec<i64>,
    /// Open incidents whose condition cleared in this pass (their quiet time started).
    pub cleared: Vec<i64>,
    /// Open incidents whose condition came back during their quiet time (no mail).
    pub came_back: Vec<i64>,
}

/// Evaluates the conditions as they are at `now` and applies the transitions in one writing
/// transaction: a finding with no open incident opens one (and enqueues its open mail, when mails
/// are on); one with an open incident brings it up to date; an open incident with no finding starts
/// its quiet time, and resolves (with its resolve mail) once clear for `resolve_after_secs`.
pub fn run_once(
    conn: &mut DbConnection,
    settings: &Settings,
    now: NaiveDateTime,
) -> anyhow::Result<Pass> {
    let findings = conditions::evaluate(conn, settings, now)?;
    let cfg = &settings.alerts;
    let mails = cfg.mails_on();
    let cutoff = now - TimeDelta::seconds(cfg.resolve_after_secs.max(0));
    let pass = db::write_tx(conn, |conn| -> diesel::QueryResult<Pass> {
        let mut pass = Pass::default();
        one_pass_at_a_time(conn)?;
        let open = store::open_incidents(conn)?;
        for f in &findings {
            match open.iter().find(|i| i.key == f.key) {
                Some(i) => {
                    if store::refresh(conn, i.id, f, now)? && i.clear_since.is_some() {
                        pass.came_back.push(i.id);
                    }
                }
                None => {
                    if let Some(id) = store::insert_open(conn, f, now)? {
                        if mails {
                            outbound::enqueue(conn, INCIDENT_OPEN, &[&id.to_string()], now)?;
                        }
                        pass.opened.push(id);
                    }
                }
            }
        }
        for i in open
            .iter()
            .filter(|i| !findings.iter().any(|f| f.key == i.key))
        {
            if i.clear_since.is_none() && store::start_clear(conn, i.id, now)? {
                pass.cleared.push(i.id);
            }
            if store::resolve(conn, i.id, cutoff, now)? {
                if mails && announced(conn, i)? {
                    outbound::enqueue(conn, INCIDENT_RESOLVE, &[&i.id.to_string()], now)?;
                }
                pass.resolved.push(i.id);
            }
        }
        Ok(pass)
    })?;
    pass.log(conn);
    Ok(pass)
}

/// Whether the incident's open mail went or may still go: only then is its resolve mail sent (an
/// incident opened while mails were off, or whose open mail was given up, gets no "RESOLVED" for
/// something never announced).
fn announced(conn: &mut DbConnection, i: &super::Incident) -> diesel::QueryResult<bool> {
    if i.message_id.is_some() {
        return Ok(true);
    }
    let open = outbound::task_of(conn, INCIDENT_OPEN, &i.id.to_string())?;
    Ok(open.is_some_and(|t| outbound::TaskState::DUE.contains(&t.state)))
}

/// Passes of several processes take turns (PostgreSQL: an advisory lock held until commit; SQLite's
/// BEGIN IMMEDIATE already does). Without it two passes that saw different findings would lock
/// incident rows in different orders (refresh in findings order, clear and resolve in id order)
/// and deadlock; in turn, each reads the incidents the one before committed.
fn one_pass_at_a_time(conn: &mut DbConnection) -> diesel::QueryResult<()> {
    /// `alrt`: the first half of the key, apart from the receipts' per-operation keys.
    const ALERTS_LOCK: i32 = 0x616c_7274;
    if let DbConnection::Postgresql(c) = conn {
        use diesel::RunQueryDsl;
        db::sql::AdvisoryXactLock(ALERTS_LOCK, 0).execute(c)?;
    }
    Ok(())
}

impl Pass {
    fn log(&self, conn: &mut DbConnection) {
        for (ids, what) in [(&self.opened, "opened"), (&self.resolved, "resolved")] {
            for id in ids {
                let summary = store::incident(conn, *id)
                    .ok()
                    .flatten()
                    .map(|i| i.summary)
                    .unwrap_or_default();
                tracing::warn!(incident = id, summary = %summary, "incident #{id} {what}: {summary}");
            }
        }
    }
}

/// Starts the monitor: a pass every `check_interval_secs` (the first one interval after start)
/// until `stop` turns true. A pass that fails is logged and recorded; the next comes on time.
pub fn spawn(
    pool: &Pool,
    settings: &Arc<Settings>,
    stop: &watch::Receiver<bool>,
) -> JoinHandle<()> {
    let (pool, settings, mut stop) = (pool.clone(), settings.clone(), stop.clone());
    tokio::spawn(async move {
        let every = Duration::from_secs(settings.alerts.check_interval_secs.max(1));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                break;
            }
            let (pool, settings) = (pool.clone(), settings.clone());
            let ran = tokio::task::spawn_blocking(move || pass(&pool, &settings)).await;
            if let Err(e) = ran {
                tracing::error!(error = %e, "the alert monitor's pass stopped unexpectedly; the next one runs on time");
            }
        }
    })
}

/// One pass on a pooled connection, recorded in `background_runs`.
fn pass(pool: &Pool, settings: &Settings) {
    let mut conn = match pool.get() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the alert monitor has no database connection; incidents are checked again at the next pass");
            return;
        }
    };
    let outcome = run_once(&mut conn, settings, db::now()).map(drop);
    if let Err(e) = &outcome {
        tracing::error!(error = %format!("{e:#}"),
            "the alert monitor could not check incidents; it tries again at the next pass");
    }
    if let Err(e) = runs::record(&mut conn, Job::Alerts, &outcome, db::now()) {
        tracing::warn!(error = %e, "the alert monitor's run could not be recorded");
    }
}
