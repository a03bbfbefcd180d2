//! Stopping: the one place that knows wharf is shutting down, and the signals that start it.
//!
//! A SIGTERM or SIGINT triggers [`Shutdown`]; everything that waits — feed long polls, worker loops,
//! the exporter's schedule — watches it and stops at once, and whatever is in hand gets until
//! `shutdown_deadline_secs` to finish.

use std::sync::Arc;

use tokio::sync::watch;

/// A shared "we are stopping" flag. Cheap to clone; every clone sees the same flag.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// Not stopping yet.
    pub fn new() -> Shutdown {
        Shutdown {
            tx: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Starts stopping (idempotent).
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether stopping has started.
    pub fn is_stopping(&self) -> bool {
        *self.tx.borrow()
    }

    /// A receiver that turns `true` when stopping starts (what the worker and exporter loops take).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    /// Resolves once stopping has started (at once if it already has).
    pub async fn stopping(&self) {
        let mut rx = self.subscribe();
        // The sender lives in `self`, so the wait can only end by the flag turning true.
        let _ = rx.wait_for(|stopping| *stopping).await;
    }
}

/// Waits for SIGTERM or SIGINT (Ctrl-C) and returns its name.
pub async fn signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch for SIGTERM; only SIGINT (Ctrl-C) stops wharf gracefully");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
