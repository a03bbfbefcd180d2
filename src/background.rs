//! The background work of a process — worker loops, the outbound runners (one per channel part,
//! each on its own schedule), the retention cleaner and (on PostgreSQL) the wake-up listener —
//! started the same way by `wharf serve` and `wharf worker`, and stopped within the shutdown
//! deadline.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::Settings;
use crate::db::Pool;
use crate::db::wake::Listener;
use crate::shutdown::Shutdown;
use crate::worker::Worker;

/// Whether this process runs the worker loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerMode {
    /// Apply queued requests here.
    Run,
    /// Leave them to other processes.
    Off,
}

/// Running background tasks.
pub struct Background {
    worker: Option<JoinHandle<()>>,
    runners: Vec<JoinHandle<()>>,
    cleaner: Option<JoinHandle<()>>,
    listener: Option<Listener>,
    lease_secs: i64,
}

impl Background {
    /// Starts the worker (when `mode` says so), the outbound runners (for each enabled export), the
    /// alert monitor, mail delivery (when `alerts.smtp_host` is set) and, on
    /// PostgreSQL, the listener that wakes this process's worker, feed long polls and continuous
    /// exporters when another process stores a request, commits feed events or makes an export due;
    /// all stop when `shutdown` triggers.
    pub fn start(
        pool: &Pool,
        settings: &Arc<Settings>,
        shutdown: &Shutdown,
        mode: WorkerMode,
    ) -> Background {
        let worker = (mode == WorkerMode::Run).then(|| {
            let w = Arc::new(Worker::new(pool.clone(), settings.clone()));
            tokio::spawn(w.run(shutdown.subscribe()))
        });
        let mut runners =
            crate::channels::warehouse::spawn_runners(pool, settings, &shutdown.subscribe());
        runners.push(crate::alerts::monitor::spawn(
            pool,
            settings,
            &shutdown.subscribe(),
        ));
        runners.extend(crate::channels::sync::spawn_runners(
            pool,
            settings,
            &shutdown.subscribe(),
        ));
        runners.extend(crate::channels::sftp::spawn_runners(
            pool,
            settings,
            &shutdown.subscribe(),
        ));
        runners.extend(crate::channels::smtp::deliver::spawn(
            pool,
            settings,
            &shutdown.subscribe(),
        ));
        let listener = Listener::spawn(&settings.database_url, shutdown.subscribe());
        let cleaner = settings.retention.enabled.then(|| {
            let (pool, retention) = (pool.clone(), settings.retention.clone());
            tokio::spawn(crate::retention::run_every(
                pool,
                retention,
                shutdown.subscribe(),
            ))
        });
        Background {
            worker,
            runners,
            cleaner,
            listener,
            lease_secs: settings.worker.lease_secs,
        }
    }

    /// Waits for the tasks to finish what they hold, until `deadline`. Whatever is still running
    /// then is abandoned: its leases expire and another process takes the work over.
    pub async fn finish(self, deadline: Instant) {
        if let Some(w) = self.worker
            && tokio::time::timeout_at(deadline, w).await.is_err()
        {
            tracing::warn!(
                lease_secs = self.lease_secs,
                "the worker did not finish its batch before the shutdown deadline; its requests are \
                 taken over when their lease expires"
            );
        }
        for r in self.runners {
            if tokio::time::timeout_at(deadline, r).await.is_err() {
                tracing::warn!(
                    "the exporter did not finish its run before the shutdown deadline; the items it \
                     was sending are retried when their lease expires"
                );
            }
        }
        if let Some(c) = self.cleaner
            && tokio::time::timeout_at(deadline, c).await.is_err()
        {
            tracing::warn!(
                "the retention cleaner did not finish its batch before the shutdown deadline; \
                 that batch is rolled back and cleaned next time"
            );
        }
        if let Some(l) = self.listener
            && tokio::time::timeout_at(deadline, l.join()).await.is_err()
        {
            tracing::warn!("the wake-up listener did not stop before the shutdown deadline");
        }
    }
}

/// The deadline for a shutdown that starts now.
pub fn deadline(settings: &Settings) -> Instant {
    Instant::now() + Duration::from_secs(settings.shutdown_deadline_secs.max(1))
}
