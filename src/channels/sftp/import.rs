//! Shipment files in: each run reads the channel's `import_dir` and stores every shipment file
//! through the same receipt as a SOAP shipment, exactly once.
//!
//! A run connects, makes sure `processing/`, `failed/` (and `archive/` when `on_done = "archive"`)
//! exist in the import folder, then:
//! 1. takes over the files of runs that stopped (their lease ran out; a compare-and-set, so two
//!    processes never both take one) and files in `processing/` that no row holds, and counts a run
//!    on the files other runs hold now;
//! 2. lists the folder oldest first (skipping temporary names and names not matching
//!    `file_pattern`) and claims each file: its row first (one unfinished row per name: a second
//!    poller loses there), then a rename into `processing/` (gone: another system took it);
//! 3. reads it under `max_file_bytes` and hashes it;
//! 4. parses and checks it ([`shipment_file`]) and stores it as a shipment request
//!    ([`queue::receive_group`]) under a messageSeqId derived from its hash, so the same bytes
//!    delivered again are a repeat by the receipt's own rules;
//! 5. deletes it (or moves it to `archive/`), and only then finishes its row `applied` or
//!    `repeat`. When that fails the row stays claimed, and the next run finds the receipt says
//!    repeat: nothing is applied twice.
//!
//! A file that cannot be used (empty, not UTF-8, not XML, not a shipment file, a field wrong, too
//! large) goes to `failed/` (never deleted), its row `failed` with the reason and the bytes read,
//! and the refusal is recorded as a refused SOAP message is.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::FileChannel;
use super::client::{Remote, RemoteError, Trouble, join};
use super::shipment_file::{self, Limits};
use super::store::FileState;
use super::store::inbound::{self, Claim, Held, Read};
use crate::config::OnDone;
use crate::outbound::runner::{self, Schedule};
use crate::queue::{self, Incoming, IncomingMessage, Receipt};

/// The runner's name in the log.
const RUNNER: &str = "shipment files";

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Files stored as new shipment requests (and deleted or archived).
    pub applied: usize,
    /// Files whose bytes were stored before (deleted or archived, not applied again).
    pub repeats: usize,
    /// Files moved to `failed/`.
    pub failed: usize,
    /// Files of runs that stopped, taken over.
    pub taken_over: usize,
    /// Files another poller (or system) took first.
    pub lost: usize,
    /// Files left for the next run after a remote call failed.
    pub left: usize,
    /// What stopped the run before it read the folder, if anything did.
    pub stopped: Option<String>,
}

/// Runs the channel's shipment files once. `Err` only when the database fails; what goes wrong on
/// the server is recorded as the channel's trouble (and in [`Outcome::stopped`] when it stopped the
/// run).
pub async fn run_once(ch: &FileChannel) -> anyhow::Result<Outcome> {
    let remote = match ch.connect().await? {
        Ok(r) => r,
        Err(e) => {
            return Ok(Outcome {
                stopped: Some(e.to_string()),
                ..Outcome::default()
            });
        }
    };
    let mut run = Run::new(ch, &remote);
    let done = run.go().await;
    let outcome = std::mem::take(&mut run.outcome);
    drop(run);
    remote.close().await;
    done?;
    if outcome != Outcome::default() {
        tracing::info!(channel = %ch.name(), outcome = ?outcome, "shipment files read");
    }
    Ok(outcome)
}

/// The folders a run works in.
struct Dirs {
    import: String,
    processing: String,
    failed: String,
    archive: String,
}

/// One run.
struct Run<'a> {
    ch: &'a FileChannel,
    remote: &'a Remote,
    dirs: Dirs,
    claim: Claim,
    caller: String,
    limits: Limits,
    outcome: Outcome,
    /// A remote call failed: the `import` trouble stays.
    troubled: bool,
}

/// Whether a run goes on after a file.
enum Next {
    /// With the next file.
    Go,
    /// No: the server cannot be reached.
    Stop,
}

impl<'a> Run<'a> {
    fn new(ch: &'a FileChannel, remote: &'a Remote) -> Run<'a> {
        let import = ch.channel.import_dir.trim_end_matches('/').to_string();
        let now = crate::db::now();
        Run {
            ch,
            remote,
            dirs: Dirs {
                processing: join(&import, "processing"),
                failed: join(&import, "failed"),
                archive: join(&import, "archive"),
                import,
            },
            claim: Claim {
                channel: ch.name().to_string(),
                owner: ch.owner.token(),
                now,
                until: now + chrono::TimeDelta::seconds(ch.channel.lease_secs.max(1)),
            },
            caller: format!("sftp:{}", ch.name()),
            limits: Limits {
                max_lines: ch.settings.soap.max_lines,
                max_tracking_numbers: ch.settings.soap.max_tracking_numbers,
            },
            outcome: Outcome::default(),
            troubled: false,
        }
    }

    async fn go(&mut self) -> anyhow::Result<()> {
        if !self.prepare().await? {
            return Ok(());
        }
        if let Next::Go = self.recover().await? {
            self.take_new().await?;
        }
        if !self.troubled {
            self.ch.cleared(Trouble::Import).await?;
        }
        Ok(())
    }

    /// Makes sure the import folder and the folders wharf keeps in it exist; records the
    /// `import_folder` trouble (naming the folder) when not.
    async fn prepare(&mut self) -> anyhow::Result<bool> {
        let problem = match self.remote.dir_exists(&self.dirs.import).await {
            Ok(true) => self.make_dirs().await.err(),
            Ok(false) => Some(format!(
                "the import folder {:?} does not exist on the server; create it or correct \
                 import_dir",
                self.dirs.import
            )),
            Err(e) => Some(e.to_string()),
        };
        let Some(problem) = problem else {
            self.ch.cleared(Trouble::ImportFolder).await?;
            return Ok(true);
        };
        self.ch.troubled(Trouble::ImportFolder, &problem).await?;
        self.outcome.stopped = Some(problem);
        Ok(false)
    }

    async fn make_dirs(&self) -> Result<(), String> {
        let mut dirs = vec![&self.dirs.processing, &self.dirs.failed];
        if self.ch.channel.on_done == OnDone::Archive {
            dirs.push(&self.dirs.archive);
        }
        for d in dirs {
            self.remote.ensure_dir(d).await.map_err(|e| {
                format!("wharf keeps shipment files in {d:?} and cannot make it: {e}")
            })?;
        }
        Ok(())
    }

    /// Step 1: files of runs that stopped, and files in `processing/` no row holds.
    async fn recover(&mut self) -> anyhow::Result<Next> {
        let claim = self.fresh_claim();
        let taken = self
            .ch
            .db(move |conn| {
                inbound::note_held_by_others(conn, &claim)?;
                Ok(inbound::take_over(conn, &claim)?)
            })
            .await?;
        for held in taken {
            self.outcome.taken_over += 1;
            if let Next::Stop = self.resume(held).await? {
                return Ok(Next::Stop);
            }
        }
        let in_processing = match self.remote.list(&self.dirs.processing).await {
            Ok(files) => files,
            Err(e) => return self.remote_failed(None, &e).await,
        };
        let channel = self.claim.channel.clone();
        let held = self
            .ch
            .db(move |conn| Ok(inbound::unfinished_names(conn, &channel)?))
            .await?;
        for f in in_processing
            .into_iter()
            .filter(|f| !held.contains(&f.name))
        {
            let Some(held) = self.claim_row(&f.name).await? else {
                continue;
            };
            self.outcome.taken_over += 1;
            if let Next::Stop = self.handle(held).await? {
                return Ok(Next::Stop);
            }
        }
        Ok(Next::Go)
    }

    /// A file taken over from a run that stopped: in `processing/`, or still in the import folder
    /// when that run stopped before moving it.
    async fn resume(&mut self, held: Held) -> anyhow::Result<Next> {
        let at = join(&self.dirs.processing, &held.name);
        match self.remote.size(&at).await {
            Ok(Some(_)) => return self.handle(held).await,
            Ok(None) => {}
            Err(e) => return self.remote_failed(Some(&held), &e).await,
        }
        let from = join(&self.dirs.import, &held.name);
        match self.remote.rename(&from, &at).await {
            Ok(()) => self.handle(held).await,
            Err(RemoteError::NotFound { .. }) => self.gone(held).await,
            Err(e) => self.remote_failed(Some(&held), &e).await,
        }
    }

    /// Step 2: the new files of the import folder, oldest first.
    async fn take_new(&mut self) -> anyhow::Result<()> {
        let files = match self.remote.list(&self.dirs.import).await {
            Ok(files) => files,
            Err(e) => return self.remote_failed(None, &e).await.map(drop),
        };
        let pattern = self.ch.channel.file_pattern.clone();
        for f in files
            .into_iter()
            .filter(|f| is_shipment_file(&f.name, &pattern))
        {
            let Some(held) = self.claim_row(&f.name).await? else {
                continue;
            };
            let from = join(&self.dirs.import, &f.name);
            let to = join(&self.dirs.processing, &f.name);
            let next = match self.remote.rename(&from, &to).await {
                Ok(()) => self.handle(held).await?,
                // A file of that name waits in processing/ already: that one first; this one
                // is claimed by a later run.
                Err(RemoteError::Exists { .. }) => self.handle(held).await?,
                Err(RemoteError::NotFound { .. }) => {
                    self.lose(&held).await?;
                    Next::Go
                }
                Err(e) => {
                    self.lose(&held).await?;
                    self.remote_failed(None, &e).await?
                }
            };
            if let Next::Stop = next {
                break;
            }
        }
        Ok(())
    }

    /// The run's claim as of now: a file claimed late in a long run gets its full lease.
    fn fresh_claim(&mut self) -> Claim {
        self.claim.now = crate::db::now();
        self.claim.until =
            self.claim.now + chrono::TimeDelta::seconds(self.ch.channel.lease_secs.max(1));
        self.claim.clone()
    }

    /// Inserts the row that claims file `name`; `None` (counted as lost) when another run holds
    /// it.
    async fn claim_row(&mut self, name: &str) -> anyhow::Result<Option<Held>> {
        let (claim, name) = (self.fresh_claim(), name.to_string());
        let held = self
            .ch
            .db(move |conn| Ok(inbound::claim_file(conn, &claim, &name)?))
            .await?;
        if held.is_none() {
            self.outcome.lost += 1;
        }
        Ok(held)
    }

    /// Lets go of a claim whose file another poller or system took.
    async fn lose(&mut self, held: &Held) -> anyhow::Result<()> {
        let (id, owner) = (held.id, self.claim.owner.clone());
        self.ch
            .db(move |conn| Ok(inbound::drop_claim(conn, id, &owner)?))
            .await?;
        self.outcome.lost += 1;
        Ok(())
    }

    /// Steps 3 to 5 for a file in `processing/`.
    async fn handle(&mut self, held: Held) -> anyhow::Result<Next> {
        let path = join(&self.dirs.processing, &held.name);
        let cap = self.ch.channel.max_file_bytes;
        match self.remote.read_capped(&path, cap).await {
            Ok(Ok(bytes)) => self.use_bytes(held, bytes).await,
            Ok(Err(_)) => {
                let size = match self.remote.size(&path).await {
                    Ok(size) => size.unwrap_or(cap.saturating_add(1)),
                    Err(e) => return self.remote_failed(Some(&held), &e).await,
                };
                let reason = format!(
                    "the file is {size} bytes, more than max_file_bytes ({cap} bytes) allows; \
                     it was not read (raise max_file_bytes to read it)"
                );
                let read = Read {
                    size: i64::try_from(size).unwrap_or(i64::MAX),
                    hash: None,
                };
                self.fail(held, read, reason, None).await
            }
            Err(RemoteError::NotFound { .. }) => self.gone(held).await,
            Err(e) => self.remote_failed(Some(&held), &e).await,
        }
    }

    /// Steps 3 and 4 once the bytes are read: a shipment stored, or a file that cannot be used.
    async fn use_bytes(&mut self, held: Held, bytes: Vec<u8>) -> anyhow::Result<Next> {
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let read = Read {
            size: bytes.len() as i64,
            hash: Some(hex::encode(digest)),
        };
        let seq = shipment_file::message_seq_id(&digest);
        let msg = match shipment_file::read(&bytes, seq, self.limits) {
            Ok(msg) => msg,
            Err(e) => {
                let body = String::from_utf8_lossy(&bytes).into_owned();
                return self.fail(held, read, e.to_string(), Some(body)).await;
            }
        };
        let order = msg.order_increment_id.clone();
        let incoming = Incoming::new(&self.caller, bytes, IncomingMessage::Shipment(msg));
        let (id, owner) = (held.id, self.claim.owner.clone());
        let stored = self
            .ch
            .db(move |conn| {
                let (receipt, _) = queue::receive_group(conn, vec![incoming])
                    .pop()
                    .ok_or_else(|| anyhow::anyhow!("the receipt gave no answer"))??;
                let request = match receipt {
                    Receipt::Queued(r) | Receipt::Repeat(r) | Receipt::Conflict(r) => r,
                };
                let held = inbound::stored(conn, id, &owner, &read, request, &order)?;
                Ok(held.then_some(receipt))
            })
            .await?;
        // A repeat of what this file's own earlier run stored (it could not delete the file then)
        // is still this file's application.
        let repeat = |r: Receipt| matches!(r, Receipt::Repeat(id) if held.request_id != Some(id));
        match stored {
            Some(receipt) => {
                let repeat = repeat(receipt);
                self.done(held, repeat).await
            }
            // Taken over meanwhile (this run was too slow): the new holder finishes it.
            None => Ok(Next::Go),
        }
    }

    /// Step 5: the stored file deleted or archived, then its row finished.
    async fn done(&mut self, held: Held, repeat: bool) -> anyhow::Result<Next> {
        let path = join(&self.dirs.processing, &held.name);
        let removed = match self.ch.channel.on_done {
            OnDone::Delete => self.remote.remove(&path).await,
            OnDone::Archive => self
                .move_aside(&path, &self.dirs.archive, &held.name)
                .await
                .map(drop),
        };
        if let Err(e) = removed {
            return self.remote_failed(Some(&held), &e).await;
        }
        self.finish(&held, repeat).await?;
        Ok(Next::Go)
    }

    async fn finish(&mut self, held: &Held, repeat: bool) -> anyhow::Result<()> {
        let state = if repeat {
            FileState::Repeat
        } else {
            FileState::Applied
        };
        let (id, owner) = (held.id, self.claim.owner.clone());
        self.ch
            .db(move |conn| Ok(inbound::finish_done(conn, id, &owner, state)?))
            .await?;
        if repeat {
            self.outcome.repeats += 1;
        } else {
            self.outcome.applied += 1;
        }
        Ok(())
    }

    /// A file that cannot be used: its reason and bytes recorded, moved to `failed/`, then its row
    /// finished `failed` with the refusal recorded.
    async fn fail(
        &mut self,
        held: Held,
        read: Read,
        reason: String,
        body: Option<String>,
    ) -> anyhow::Result<Next> {
        tracing::warn!(channel = %self.ch.name(), file = %held.name, reason = %reason,
            "shipment file {} cannot be used; moving it to failed/", held.name);
        let (id, owner, why) = (held.id, self.claim.owner.clone(), reason.clone());
        let kept = self
            .ch
            .db(move |conn| {
                Ok(inbound::unusable(
                    conn,
                    id,
                    &owner,
                    &read,
                    &why,
                    body.as_deref(),
                )?)
            })
            .await?;
        if !kept {
            return Ok(Next::Go);
        }
        let path = join(&self.dirs.processing, &held.name);
        let failed = self.dirs.failed.clone();
        let moved = match self.move_aside(&path, &failed, &held.name).await {
            Ok(moved) => moved,
            Err(e) => return self.remote_failed(Some(&held), &e).await,
        };
        let reason = format!("shipment file {}: {reason}; moved to {moved}", held.name);
        self.finish_failed(&held, reason).await?;
        Ok(Next::Go)
    }

    async fn finish_failed(&mut self, held: &Held, reason: String) -> anyhow::Result<()> {
        let (id, owner, caller) = (held.id, self.claim.owner.clone(), self.caller.clone());
        self.ch
            .db(move |conn| Ok(inbound::finish_failed(conn, id, &owner, &caller, &reason)?))
            .await?;
        self.outcome.failed += 1;
        Ok(())
    }

    /// Moves `path` into folder `dir` as `name`, or as `name` with a number added when a file of
    /// that name is there already. Returns where it went.
    async fn move_aside(&self, path: &str, dir: &str, name: &str) -> Result<String, RemoteError> {
        let (stem, ext) = match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
            _ => (name, String::new()),
        };
        for n in 1..=100 {
            let target = if n == 1 {
                join(dir, name)
            } else {
                join(dir, &format!("{stem}-{n}{ext}"))
            };
            match self.remote.rename(path, &target).await {
                Ok(()) => return Ok(target),
                Err(RemoteError::Exists { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(RemoteError::Exists {
            path: join(dir, &format!("{stem}-100{ext}")),
        })
    }

    /// A held file that is no longer in `processing/`: a run that stopped after deleting or moving
    /// it is finished as that run would have; otherwise it was taken away, and its row goes.
    async fn gone(&mut self, held: Held) -> anyhow::Result<Next> {
        if let Some(request) = held.request_id {
            let id = held.id;
            let repeat = self
                .ch
                .db(move |conn| Ok(inbound::stored_before(conn, request, id)?))
                .await?;
            self.finish(&held, repeat).await?;
            return Ok(Next::Go);
        }
        if let Some(reason) = held.error.clone() {
            let in_failed = join(&self.dirs.failed, &held.name);
            match self.remote.size(&in_failed).await {
                Ok(Some(_)) => {
                    let reason = format!(
                        "shipment file {}: {reason}; moved to {in_failed}",
                        held.name
                    );
                    self.finish_failed(&held, reason).await?;
                    return Ok(Next::Go);
                }
                Ok(None) => {}
                Err(e) => return self.remote_failed(Some(&held), &e).await,
            }
        }
        tracing::warn!(channel = %self.ch.name(), file = %held.name,
            "shipment file {} disappeared before wharf read it", held.name);
        self.lose(&held).await?;
        Ok(Next::Go)
    }

    /// A remote call failed: the trouble recorded (`import`, or `connection` when the server
    /// cannot be reached: then the run stops), and the file (if any) let go for the next run.
    async fn remote_failed(
        &mut self,
        held: Option<&Held>,
        e: &RemoteError,
    ) -> anyhow::Result<Next> {
        self.troubled = true;
        let detail = match held {
            Some(h) => format!("shipment file {}: {e}", h.name),
            None => e.to_string(),
        };
        if let Some(h) = held {
            let (id, owner, why) = (h.id, self.claim.owner.clone(), detail.clone());
            self.ch
                .db(move |conn| Ok(inbound::release(conn, id, &owner, &why)?))
                .await?;
            self.outcome.left += 1;
        }
        let reaching = e.reaching();
        self.ch
            .troubled(reaching.unwrap_or(Trouble::Import), &detail)
            .await?;
        Ok(if reaching.is_some() {
            Next::Stop
        } else {
            Next::Go
        })
    }
}

/// Whether a file in the import folder is a shipment file to read: not a temporary name (starting
/// with `.`, ending in `.tmp`, `.part` or `.filepart`) and matching `pattern`.
pub fn is_shipment_file(name: &str, pattern: &str) -> bool {
    let temporary = name.starts_with('.')
        || [".tmp", ".part", ".filepart"]
            .iter()
            .any(|t| name.ends_with(t));
    !temporary && wildcard_match(pattern.as_bytes(), name.as_bytes())
}

/// `*` (any run of characters) and `?` (any one character) wildcards, nothing else special;
/// case-sensitive like the server's file names.
fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    // The classic greedy match with one backtrack point: linear in practice, never exponential.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(b'?') => {
                p += 1;
                n += utf8_len(name[n]);
            }
            Some(c) if *c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    let next = sn + utf8_len(name[sn]);
                    star = Some((sp, next));
                    p = sp + 1;
                    n = next;
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|c| *c == b'*')
}

/// The length of the UTF-8 character that starts with byte `b` (so `?` is one character).
fn utf8_len(b: u8) -> usize {
    match b {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// Starts the shipment file runner: on `import_schedule` (a cron expression), or every
/// `poll_secs` when it is `continuous`. `None` (logged) when the schedule does not parse (settings
/// are checked at start-up, so that is a last resort).
pub fn spawn(ch: &Arc<FileChannel>, stop: &watch::Receiver<bool>) -> Option<JoinHandle<()>> {
    let schedule = Schedule::parse(&ch.channel.import_schedule)
        .map_err(|e| {
            tracing::error!(channel = %ch.name(), schedule = %ch.channel.import_schedule, error = %e,
                "the import_schedule is neither continuous nor a valid cron expression; shipment files are not read");
        })
        .ok()?;
    let ch = ch.clone();
    Some(match schedule {
        Schedule::Cron(cron) => {
            tokio::spawn(runner::on_schedule(RUNNER, cron, stop.clone(), move || {
                let ch = ch.clone();
                async move { run_once(&ch).await.map(drop) }
            }))
        }
        Schedule::Continuous => tokio::spawn(poll(ch, stop.clone())),
    })
}

/// Runs every `poll_secs` until `stop` turns true.
async fn poll(ch: Arc<FileChannel>, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_secs(ch.channel.poll_secs.max(1));
    tracing::info!(channel = %ch.name(), every_secs = every.as_secs(), "{RUNNER} runner started");
    while !*stop.borrow() {
        if let Err(e) = run_once(&ch).await {
            tracing::error!(channel = %ch.name(), error = %format!("{e:#}"),
                "{RUNNER} run failed; it runs again in {} s", every.as_secs());
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
    }
    tracing::info!(channel = %ch.name(), "{RUNNER} runner stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_and_other_names_are_skipped() {
        for (name, pattern, read) in [
            ("ship_1.xml", "*.xml", true),
            ("ship_1.XML", "*.xml", false),
            ("ship_1.xml.part", "*.xml", false),
            ("ship_1.xml.tmp", "*", false),
            ("ship_1.filepart", "*", false),
            (".ship_1.xml", "*.xml", false),
            ("orders.csv", "*.xml", false),
            ("ship_1.xml", "ship_?.xml", true),
            ("ship_12.xml", "ship_?.xml", false),
            ("shipé.xml", "ship?.xml", true),
            ("ship_a_b.xml", "ship_*_*.xml", true),
            ("ship_a.xml", "ship_*_*.xml", false),
            ("anything", "*", true),
            ("a", "", false),
            ("abc", "abc", true),
            ("abcd", "abc", false),
            ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaab", "*a*a*a*a*a*a*c", false),
        ] {
            assert_eq!(is_shipment_file(name, pattern), read, "{name} ~ {pattern}");
        }
    }
}
