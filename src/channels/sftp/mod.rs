//! File channels (`kind = "sftp"`): a warehouse or ERP that exchanges XML files on an SFTP server.
//!
//! - **Order files out** ([`export`]): the channel's `order.insert` tasks on the outbound queue
//!   (enqueued with each order, see `crate::orders::export::order_stored`), eligible under the
//!   warehouse export's rules, are claimed under a lease and written as one document per batch
//!   ([`orders_file`]): recorded first, uploaded under a temporary name, size checked, renamed to
//!   `orders_<channel>_<UTC timestamp>_<id>.xml`, and only then are the orders marked exported. A
//!   run that died is taken over from the step it reached, so no batch is lost or sent twice.
//! - **Shipment files in** ([`import`]): the import folder is listed oldest first; a file is
//!   claimed by moving it into `processing/`, read under `max_file_bytes`, parsed
//!   ([`shipment_file`]), stored through the same receipt as a SOAP shipment (so the worker applies
//!   it under the same rules), recorded by name, hash and size, and only then deleted or archived.
//!   A file that cannot be used goes to `failed/`, never deleted.
//! - **Troubles** ([`client::Trouble`]): each run records what stopped it (connection, host key,
//!   a missing folder, a file that could not be written or read) in `channel_troubles` and clears
//!   what it got past; the alert monitor opens and resolves incidents from them.
//!
//! Every remote call runs under the channel's `timeout_secs` ([`client`]).

pub mod client;
pub mod export;
pub mod import;
pub mod orders_file;
pub mod shipment_file;
pub mod store;

use std::sync::Arc;

use chrono::NaiveDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{ChannelSettings, Settings};
use crate::db::lease::Owner;
use crate::db::{self, DbConnection, Pool};
use client::{HostKeyPolicy, Remote, RemoteError, Trouble};

/// One file channel in this process: its settings, the database, and its claims' owner.
pub struct FileChannel {
    /// The database.
    pub pool: Pool,
    /// All settings (the warehouse export's rules decide which orders are eligible).
    pub settings: Arc<Settings>,
    /// This channel's table.
    pub channel: ChannelSettings,
    /// Who holds its claims.
    pub owner: Owner,
}

impl FileChannel {
    /// The channel `channel` of `settings`.
    pub fn new(pool: Pool, settings: Arc<Settings>, channel: ChannelSettings) -> FileChannel {
        let owner = Owner::new(&format!("files:{}", channel.name));
        FileChannel {
            pool,
            settings,
            channel,
            owner,
        }
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.channel.name
    }

    /// Runs `f` on a database connection off the async threads.
    pub async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        db::blocking(&self.pool, "a file channel", f).await
    }

    /// Connects to the server and logs in. The connection and host key troubles are recorded
    /// (set when this fails, cleared when it works); a trust-on-first-use channel keeps the key
    /// it sees first and refuses any other from then on.
    pub async fn connect(&self) -> anyhow::Result<Result<Remote, RemoteError>> {
        let name = self.name().to_string();
        let first = if self.uses_first_key() {
            self.db(move |conn| Ok(store::first_seen_key(conn, &name)?))
                .await?
        } else {
            None
        };
        let connected =
            client::connect(&self.channel, HostKeyPolicy::of(&self.channel, first)).await;
        let connected = match connected {
            Ok(remote) => self.keep_first_key(remote).await?,
            Err(e) => Err(e),
        };
        match &connected {
            Ok(_) => {
                self.cleared(Trouble::Connection).await?;
                self.cleared(Trouble::HostKey).await?;
            }
            Err(e) => {
                self.troubled(e.reaching().unwrap_or(Trouble::Connection), &e.to_string())
                    .await?
            }
        }
        Ok(connected)
    }

    fn uses_first_key(&self) -> bool {
        self.channel.known_hosts.is_empty() && self.channel.host_key_fingerprint.is_empty()
    }

    /// Keeps the key a trust-on-first-use channel saw, unless another process kept another one.
    async fn keep_first_key(&self, remote: Remote) -> anyhow::Result<Result<Remote, RemoteError>> {
        if !self.uses_first_key() {
            return Ok(Ok(remote));
        }
        let (name, host, port, seen) = (
            self.name().to_string(),
            self.channel.host.clone(),
            self.channel.port,
            remote.fingerprint.clone(),
        );
        let kept = self
            .db(move |conn| {
                Ok(store::keep_first_key(
                    conn,
                    &name,
                    &host,
                    port,
                    &seen,
                    db::now(),
                )?)
            })
            .await?;
        if kept == remote.fingerprint {
            return Ok(Ok(remote));
        }
        let e = RemoteError::HostKeyChanged {
            addr: format!("{}:{}", self.channel.host, self.channel.port),
            expected: format!("{kept} (trusted on first use)"),
            got: remote.fingerprint.clone(),
        };
        remote.close().await;
        Ok(Err(e))
    }

    /// Records `trouble` with `detail` (and logs it).
    pub async fn troubled(&self, trouble: Trouble, detail: &str) -> anyhow::Result<()> {
        tracing::warn!(channel = %self.name(), trouble = trouble.as_str(), error = %detail,
            "file channel {}: {detail}", self.name());
        let (name, detail) = (self.name().to_string(), detail.to_string());
        self.db(move |conn| {
            Ok(store::set_trouble(
                conn,
                &name,
                trouble,
                &detail,
                db::now(),
            )?)
        })
        .await
    }

    /// Records that `trouble` is over.
    pub async fn cleared(&self, trouble: Trouble) -> anyhow::Result<()> {
        let name = self.name().to_string();
        self.db(move |conn| Ok(store::clear_trouble(conn, &name, trouble)?))
            .await
    }
}

/// Starts each file channel's runners: order files on `export_schedule` when it has an
/// `export_dir`, shipment files on `import_schedule` when it has an `import_dir`.
pub fn spawn_runners(
    pool: &Pool,
    settings: &Arc<Settings>,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut runners = Vec::new();
    for c in settings.file_channels() {
        let ch = Arc::new(FileChannel::new(pool.clone(), settings.clone(), c.clone()));
        if !c.export_dir.is_empty() {
            runners.extend(export::spawn(&ch, stop));
        }
        if !c.import_dir.is_empty() {
            runners.extend(import::spawn(&ch, stop));
        }
    }
    runners
}

/// `orders_<channel>_<UTC timestamp>_<id>.xml`: an order file's final name, never used twice
/// (the id is its exchange's).
pub fn order_file_name(channel: &str, at: NaiveDateTime, id: i64) -> String {
    format!("orders_{channel}_{}_{id}.xml", at.format("%Y%m%dT%H%M%SZ"))
}
