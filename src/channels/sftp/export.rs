//! Order files out: a file channel's due `order.insert` tasks, eligible under the warehouse
//! export's rules (its statuses, virtual orders, `min_order_date`; the same claim as the
//! warehouse's, `crate::channels::warehouse::items`), go out as one [`orders_file`] per batch of
//! at most `batch_size`, exactly once. Each step is recorded before the next:
//!
//! 1. one transaction records the file (`writing`, under the claim's lease, with its document, size
//!    and hash; its name from its id) and marks its tasks with that name;
//! 2. the document is uploaded under a temporary name (`.<name>.part`: warehouses and the import
//!    side skip names starting with `.`), the size the server reports is checked, and the file
//!    is marked `uploaded`;
//! 3. the temporary file is renamed to the final name (a rename never replaces);
//! 4. one transaction marks the file `sent`, its tasks done, its orders `exported`, and tells the
//!    feed.
//!
//! A run that died leaves its file unfinished; once its lease runs out the next run takes it over
//! (compare-and-set) and finishes it from the step it reached, with the document it recorded:
//! `writing` is uploaded again under the same name; `uploaded` is renamed if the temporary file
//! is still there, and otherwise was renamed already (the final file is there, or the warehouse
//! has taken it), so it is only committed. No batch is written twice or lost.
//!
//! A missing `export_dir` (trouble `export_folder`) stops a run before it claims anything; an
//! upload or rename the server refuses (trouble `export`) sets its file aside for the next run;
//! failures to reach the server are recorded by [`FileChannel::connect`]. The troubles clear after
//! a run that wrote everything due.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::client::{self, Remote, RemoteError, Trouble};
use super::store::FileState;
use super::store::out::{self, OutBatch};
use super::{FileChannel, orders_file};
use crate::channels::warehouse::items::{self, Item, Kind};
use crate::channels::warehouse::settle::{self, Settler};
use crate::config::ExportSettings;
use crate::db::lease::Lease;
use crate::db::{self, DbConnection};
use crate::orders::OrderInput;
use crate::orders::export::order_file;
use crate::outbound::runner::{self, Schedule, Wakes};

/// Where a crash test stops a batch: right after that step, leaving exactly what a process killed
/// at that moment leaves (nothing after the step is done; the file's lease is left to run out).
/// For crash tests only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAfter {
    /// After step 2: complete under its temporary name, marked `uploaded`, not renamed.
    Upload,
    /// After step 3: under its final name, its orders not yet marked exported.
    Rename,
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The files it finished (final names), oldest first, including those taken over.
    pub files: Vec<String>,
    /// Of those, the files an earlier run had left unfinished.
    pub recovered: usize,
    /// The orders it marked exported.
    pub orders: usize,
    /// Orders whose stored document does not read (each counts an attempt).
    pub unreadable: usize,
    /// Why it stopped before everything due was written, when it did.
    pub problem: Option<String>,
}

/// One run: takes over what died, then writes batches until none is due. Connection, folder and
/// export troubles are recorded (and cleared after a run that wrote everything).
pub async fn run_once(ch: &FileChannel) -> anyhow::Result<Outcome> {
    run(ch, None).await
}

/// Like [`run_once`], but the first new batch stops after `stop` as a killed process would (for
/// crash tests only).
pub async fn run_stopping_after(ch: &FileChannel, stop: StopAfter) -> anyhow::Result<Outcome> {
    run(ch, Some(stop)).await
}

async fn run(ch: &FileChannel, stop: Option<StopAfter>) -> anyhow::Result<Outcome> {
    anyhow::ensure!(
        !ch.channel.export_dir.is_empty(),
        "file channel {} has no export_dir: it writes no order files",
        ch.name()
    );
    // Only what was due when the run started: an order that fails in this run waits its backoff.
    let started = db::now();
    let remote = match ch.connect().await? {
        Ok(r) => r,
        Err(e) => {
            return Ok(Outcome {
                problem: Some(e.to_string()),
                ..Outcome::default()
            });
        }
    };
    let mut outcome = Outcome::default();
    let result = run_connected(ch, &remote, stop, started, &mut outcome).await;
    if stop.is_some() {
        // Killed: the connection just drops, and nothing else is recorded.
        drop(remote);
        return result.map(|()| outcome);
    }
    remote.close().await;
    result?;
    if outcome.problem.is_none() {
        ch.cleared(Trouble::Export).await?;
    }
    if !outcome.files.is_empty() || outcome.problem.is_some() {
        tracing::info!(channel = %ch.name(), files = outcome.files.len(), orders = outcome.orders,
            recovered = outcome.recovered, unreadable = outcome.unreadable,
            problem = outcome.problem.as_deref().unwrap_or(""),
            "file channel {}: {} order file(s) written with {} order(s)",
            ch.name(), outcome.files.len(), outcome.orders);
    }
    Ok(outcome)
}

/// What became of one batch.
enum Sent {
    /// Under its final name, its orders exported.
    Done(usize),
    /// Stopped as a crash test asked.
    Stopped,
    /// Set aside for the next run, with why.
    Failed(String),
    /// Another run holds it now.
    NotHeld,
}

async fn run_connected(
    ch: &FileChannel,
    remote: &Remote,
    stop: Option<StopAfter>,
    started: NaiveDateTime,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let dir = &ch.channel.export_dir;
    match remote.dir_exists(dir).await {
        Ok(true) => ch.cleared(Trouble::ExportFolder).await?,
        Ok(false) => {
            let why = format!(
                "the export folder {dir:?} does not exist on {}:{}; create it there, or correct \
                 export_dir of channel {}. No order file is written until it exists",
                ch.channel.host,
                ch.channel.port,
                ch.name()
            );
            ch.troubled(Trouble::ExportFolder, &why).await?;
            outcome.problem = Some(why);
            return Ok(());
        }
        Err(e) => return troubled(ch, &e, outcome).await,
    }
    // One at a time, so that a run that stops holds none it did not start on.
    loop {
        let (name, lease) = (
            ch.name().to_string(),
            Lease::new(&ch.owner, ch.channel.lease_secs),
        );
        let taken = ch
            .db(move |conn| out::take_over(conn, &name, &lease))
            .await?;
        let Some(b) = taken else { break };
        tracing::warn!(channel = %ch.name(), file = %b.name, state = b.state.as_str(),
            "file channel {}: finishing order file {}, left {} by an earlier run",
            ch.name(), b.name, b.state.as_str());
        let done = finish(ch, remote, b.clone(), None, true).await?;
        if !tally(ch, b, done, outcome, true) {
            return Ok(());
        }
    }
    loop {
        let Some(b) = next_batch(ch, started, outcome).await? else {
            return Ok(());
        };
        let done = finish(ch, remote, b.clone(), stop, false).await?;
        if !tally(ch, b, done, outcome, false) {
            return Ok(());
        }
    }
}

/// Adds a batch's fate to the run's outcome. Returns whether the run goes on.
fn tally(
    ch: &FileChannel,
    b: OutBatch,
    sent: Sent,
    outcome: &mut Outcome,
    recovered: bool,
) -> bool {
    match sent {
        Sent::Done(orders) => {
            outcome.files.push(b.name);
            outcome.orders += orders;
            outcome.recovered += usize::from(recovered);
            true
        }
        Sent::Stopped => false,
        Sent::NotHeld => {
            tracing::warn!(channel = %ch.name(), file = %b.name,
                "file channel {}: another run took order file {} over; it finishes it", ch.name(), b.name);
            true
        }
        Sent::Failed(why) => {
            outcome.problem = Some(why);
            false
        }
    }
}

/// Records a remote failure as its trouble (`export` unless it is about reaching the server).
async fn troubled(ch: &FileChannel, e: &RemoteError, outcome: &mut Outcome) -> anyhow::Result<()> {
    ch.troubled(e.reaching().unwrap_or(Trouble::Export), &e.to_string())
        .await?;
    outcome.problem = Some(e.to_string());
    Ok(())
}

/// The warehouse export's rules with this channel's batch size, lease, attempts and backoff.
fn rules(ch: &FileChannel) -> ExportSettings {
    let c = &ch.channel;
    ExportSettings {
        batch_size: i64::try_from(c.batch_size).unwrap_or(i64::MAX).max(1),
        max_attempts: c.max_attempts,
        backoff_base_secs: c.backoff_base_secs,
        backoff_ceiling_secs: c.backoff_ceiling_secs,
        lease_secs: c.lease_secs,
        ..ch.settings.warehouse.orders.clone()
    }
}

/// Claims the next batch of due, eligible orders and records it (step 1); orders whose stored
/// document does not read fail on their own. `None` when nothing is due.
async fn next_batch(
    ch: &FileChannel,
    due_at: NaiveDateTime,
    outcome: &mut Outcome,
) -> anyhow::Result<Option<OutBatch>> {
    loop {
        let lease = Lease::new(&ch.owner, ch.channel.lease_secs);
        let (name, cfg) = (ch.name().to_string(), rules(ch));
        let claimed = ch
            .db(move |conn| {
                let kind = order_file(&name);
                let tasks = crate::outbound::claim(conn, &lease, |conn| {
                    items::claim_orders(conn, kind, &cfg, due_at, lease.now)
                })?;
                if tasks.is_empty() {
                    return Ok(None);
                }
                let batch = items::load_orders(conn, tasks, &cfg, &lease)?;
                record_readable(conn, &name, &cfg, &lease, batch).map(Some)
            })
            .await?;
        match claimed {
            None => return Ok(None),
            Some((unreadable, batch)) => {
                outcome.unreadable += unreadable;
                if batch.is_some() {
                    return Ok(batch);
                }
                // Nothing of this batch could be written; the next one may.
            }
        }
    }
}

/// Settles the claimed orders whose stored document does not read, and records a file of the
/// others. Returns how many did not read, and the file (none when no order read).
fn record_readable(
    conn: &mut DbConnection,
    channel: &str,
    cfg: &ExportSettings,
    lease: &Lease,
    batch: Vec<Item>,
) -> anyhow::Result<(usize, Option<OutBatch>)> {
    let (mut sent, mut unreadable) = (Vec::new(), Vec::new());
    let docs: Vec<(String, OrderInput)> = items::readable(batch, &mut sent, &mut unreadable);
    if !unreadable.is_empty() {
        for (i, why) in &unreadable {
            tracing::warn!(channel, order = %i.reference(), error = %why,
                "file channel {channel}: order {} cannot go into an order file: {why}", i.reference());
        }
        let s = Settler {
            kind: Kind::Orders,
            cfg,
            owner: &lease.owner,
            confirm: false,
        };
        db::write_tx(conn, |conn| settle::unreadable(conn, &s, &unreadable))?;
    }
    if docs.is_empty() {
        return Ok((unreadable.len(), None));
    }
    let refs: Vec<&str> = docs.iter().map(|(r, _)| r.as_str()).collect();
    let placed: HashMap<String, NaiveDateTime> = out::ordered_at(conn, &refs)?;
    let task_ids: Vec<i64> = sent.iter().map(|i| i.task.id).collect();
    let b = out::record(conn, channel, lease, &task_ids, |name, now| {
        let entries = docs
            .iter()
            .map(|(r, o)| orders_file::order_entry(r, placed.get(r).copied().unwrap_or(now), o))
            .collect();
        orders_file::document(channel, name, now, entries).map_err(anyhow::Error::msg)
    })?;
    Ok((unreadable.len(), Some(b)))
}

/// The temporary name a file is uploaded under.
fn part_name(name: &str) -> String {
    format!(".{name}.part")
}

/// Takes batch `b` from the step it reached to its end (or to `stop`); `recovering` when an
/// earlier run left it. A refusal of the server sets it aside.
async fn finish(
    ch: &FileChannel,
    remote: &Remote,
    b: OutBatch,
    stop: Option<StopAfter>,
    recovering: bool,
) -> anyhow::Result<Sent> {
    match steps(ch, remote, b.clone(), stop, recovering).await? {
        Ok(sent) => Ok(sent),
        Err(e) => set_aside(ch, &b, &e).await,
    }
}

async fn steps(
    ch: &FileChannel,
    remote: &Remote,
    mut b: OutBatch,
    stop: Option<StopAfter>,
    recovering: bool,
) -> anyhow::Result<Result<Sent, RemoteError>> {
    let dir = &ch.channel.export_dir;
    let (temp, last) = (
        client::join(dir, &part_name(&b.name)),
        client::join(dir, &b.name),
    );
    if recovering {
        match renamed_already(remote, &b, &temp, &last).await {
            Ok(true) => return Ok(Ok(commit(ch, &b).await?)),
            Ok(false) => {}
            Err(e) => return Ok(Err(e)),
        }
    }
    if b.state == FileState::Writing {
        if let Err(e) = upload(remote, &b, &temp).await {
            return Ok(Err(e));
        }
        let (now, marked) = (db::now(), b.clone());
        if !ch
            .db(move |conn| Ok(out::mark_uploaded(conn, &marked, now)?))
            .await?
        {
            return Ok(Ok(Sent::NotHeld));
        }
        b.state = FileState::Uploaded;
        if stop == Some(StopAfter::Upload) {
            return Ok(Ok(Sent::Stopped));
        }
    }
    match remote.rename(&temp, &last).await {
        Ok(()) => {}
        // Renamed meanwhile by a run that held it before: the final name is there.
        Err(RemoteError::NotFound { .. }) if matches!(remote.size(&last).await, Ok(Some(_))) => {}
        Err(e) => return Ok(Err(e)),
    }
    if stop == Some(StopAfter::Rename) {
        return Ok(Ok(Sent::Stopped));
    }
    Ok(Ok(commit(ch, &b).await?))
}

/// Whether an unfinished file was renamed already: its final name is there, or it was uploaded
/// and neither name is there any more (the warehouse has taken the renamed file).
async fn renamed_already(
    remote: &Remote,
    b: &OutBatch,
    temp: &str,
    last: &str,
) -> Result<bool, RemoteError> {
    if remote.size(last).await?.is_some() {
        return Ok(true);
    }
    Ok(b.state == FileState::Uploaded && remote.size(temp).await?.is_none())
}

/// Step 2: writes the document under its temporary name, and checks the size the server reports.
async fn upload(remote: &Remote, b: &OutBatch, temp: &str) -> Result<(), RemoteError> {
    let size = remote.write(temp, b.body.as_bytes()).await?;
    if size != b.body.len() as u64 {
        return Err(RemoteError::Call {
            what: format!("writing {temp}"),
            why: format!(
                "the server holds {size} bytes of the {} written; the file is written again \
                 on the next run",
                b.body.len()
            ),
        });
    }
    Ok(())
}

/// Step 4.
async fn commit(ch: &FileChannel, b: &OutBatch) -> anyhow::Result<Sent> {
    let (name, batch) = (ch.name().to_string(), b.clone());
    let committed = ch
        .db(
            move |conn| match out::commit(conn, &name, &batch, db::now()) {
                Ok(c) => Ok(Some(c)),
                Err(e) if out::is_lease_lost(&e) => Ok(None),
                Err(e) => Err(e),
            },
        )
        .await?;
    Ok(match committed {
        Some(c) => {
            crate::feed::wake_readers();
            Sent::Done(c.orders.len())
        }
        None => Sent::NotHeld,
    })
}

/// A batch the server refused (or could not be reached for): its trouble recorded, the file set
/// aside for the next run, which takes it over at once.
async fn set_aside(ch: &FileChannel, b: &OutBatch, e: &RemoteError) -> anyhow::Result<Sent> {
    let why = format!("order file {} could not be written: {e}", b.name);
    ch.troubled(e.reaching().unwrap_or(Trouble::Export), &why)
        .await?;
    let (batch, error) = (b.clone(), why.clone());
    let held = ch
        .db(move |conn| Ok(out::set_aside(conn, &batch, &error, db::now())?))
        .await?;
    Ok(if held {
        Sent::Failed(why)
    } else {
        Sent::NotHeld
    })
}

/// When a continuous runner looks again without a wake-up: the next retry, or when a lease held
/// on one of the channel's orders runs out.
async fn next_due(ch: &FileChannel) -> anyhow::Result<Option<NaiveDateTime>> {
    let name = ch.name().to_string();
    ch.db(move |conn| {
        Ok(crate::outbound::next_due(
            conn,
            &[order_file(&name)],
            db::now(),
        )?)
    })
    .await
}

/// Starts the order file runner of `ch`: on its `export_schedule` (a cron expression), or
/// `continuous` (woken when orders are stored or change, one second's window). `None` (logged)
/// when the schedule does not parse: settings are checked at start-up, so that is a last resort.
pub fn spawn(ch: &Arc<FileChannel>, stop: &watch::Receiver<bool>) -> Option<JoinHandle<()>> {
    let what = crate::outbound::intern(&format!("order files of {}", ch.name()));
    let schedule = Schedule::parse(&ch.channel.export_schedule)
        .map_err(|e| {
            tracing::error!(runner = what, schedule = %ch.channel.export_schedule, error = %e,
                "the {what} export_schedule is neither continuous nor a valid cron expression; it does not run");
        })
        .ok()?;
    let ch = ch.clone();
    Some(match schedule {
        Schedule::Cron(cron) => {
            tokio::spawn(runner::on_schedule(what, cron, stop.clone(), move || {
                let ch = ch.clone();
                async move { run_once(&ch).await.map(drop) }
            }))
        }
        Schedule::Continuous => {
            let wakes = Wakes {
                notify: crate::outbound::announced(),
                window: Duration::from_secs(1),
            };
            tokio::spawn(runner::continuous(what, wakes, stop.clone(), move || {
                let ch = ch.clone();
                async move {
                    run_once(&ch).await?;
                    next_due(&ch).await
                }
            }))
        }
    })
}
