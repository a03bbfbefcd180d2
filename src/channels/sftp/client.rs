//! The SFTP client of a file channel: an SSH connection (russh) checked against the channel's host
//! key policy, logged in with a key or a password, and the SFTP calls wharf makes (russh-sftp),
//! each under the channel's `timeout_secs`. It knows files and folders, nothing of orders.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh_sftp::client::SftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{OpenFlags, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::ChannelSettings;

crate::text_enum! {
    /// What kind of trouble a file channel has, for its incident (`files:<channel>:<trouble>`).
    pub enum Trouble: "file channel trouble" {
        /// The server cannot be reached, the login is refused, or a call timed out.
        Connection = "connection",
        /// The server's host key is not the expected one.
        HostKey = "host_key",
        /// `export_dir` is missing on the server.
        ExportFolder = "export_folder",
        /// An order file could not be written or renamed.
        Export = "export",
        /// `import_dir` (or a folder wharf keeps in it) is missing and cannot be made.
        ImportFolder = "import_folder",
        /// Shipment files could not be listed, moved or read.
        Import = "import",
    }
}

/// Why a remote call failed, for the person reading the log, the console or the alert mail.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    /// No TCP connection or no SSH session.
    #[error("cannot connect to {addr}: {why}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// What failed.
        why: String,
    },
    /// The server's key is not the one expected: refused, whatever the policy.
    #[error(
        "the host key of {addr} changed: expected {expected}, the server showed {got}; \
             if the server's key was replaced on purpose, update the channel's host key setting"
    )]
    HostKeyChanged {
        /// `host:port`.
        addr: String,
        /// The fingerprint (or known_hosts line) expected.
        expected: String,
        /// The fingerprint the server showed.
        got: String,
    },
    /// `known_hosts` does not list the server.
    #[error("{addr} is not listed in {known_hosts} (its key is {got}); add it with ssh-keyscan")]
    HostKeyUnknown {
        /// `host:port`.
        addr: String,
        /// The known_hosts file.
        known_hosts: String,
        /// The fingerprint the server showed.
        got: String,
    },
    /// The login was refused.
    #[error("the server at {addr} refused the login of {user:?} with {method}")]
    Auth {
        /// `host:port`.
        addr: String,
        /// The login.
        user: String,
        /// `the key <file>` or `the password`.
        method: String,
    },
    /// The private key file cannot be read.
    #[error("the key file {file} cannot be read: {why}")]
    KeyFile {
        /// The file.
        file: String,
        /// Why.
        why: String,
    },
    /// A call got no answer within `timeout_secs`.
    #[error("{what} timed out after {secs} s")]
    Timeout {
        /// The call (`listing in/`).
        what: String,
        /// The limit.
        secs: u64,
    },
    /// A folder wharf works in does not exist.
    #[error("the folder {path:?} does not exist on the server")]
    NoFolder {
        /// Its path.
        path: String,
    },
    /// The file is not there (any more).
    #[error("{path:?} does not exist on the server")]
    NotFound {
        /// Its path.
        path: String,
    },
    /// A rename found its target there already.
    #[error("{path:?} exists already on the server")]
    Exists {
        /// Its path.
        path: String,
    },
    /// Any other refusal of the server.
    #[error("{what} failed: {why}")]
    Call {
        /// The call (`writing out/orders_….xml`).
        what: String,
        /// The server's or the protocol's word.
        why: String,
    },
}

impl RemoteError {
    /// The trouble it stands for when it is about reaching the server at all (connection, login,
    /// timeout, host key); `None` for what a single call was refused, which the caller names.
    pub fn reaching(&self) -> Option<Trouble> {
        match self {
            RemoteError::Connect { .. }
            | RemoteError::Auth { .. }
            | RemoteError::KeyFile { .. }
            | RemoteError::Timeout { .. } => Some(Trouble::Connection),
            RemoteError::HostKeyChanged { .. } | RemoteError::HostKeyUnknown { .. } => {
                Some(Trouble::HostKey)
            }
            RemoteError::NoFolder { .. }
            | RemoteError::NotFound { .. }
            | RemoteError::Exists { .. }
            | RemoteError::Call { .. } => None,
        }
    }
}

/// How the server's host key is checked.
#[derive(Debug, Clone)]
pub enum HostKeyPolicy {
    /// Listed in this OpenSSH known_hosts file.
    KnownHosts(String),
    /// This SHA256 fingerprint.
    Fingerprint(String),
    /// Trust on first use: the fingerprint seen first (`None`: none yet, accept and report it).
    FirstUse(Option<String>),
}

impl HostKeyPolicy {
    /// The policy of `c`; `first_seen` is what a trust-on-first-use channel recorded.
    pub fn of(c: &ChannelSettings, first_seen: Option<String>) -> HostKeyPolicy {
        if !c.known_hosts.is_empty() {
            HostKeyPolicy::KnownHosts(c.known_hosts.clone())
        } else if !c.host_key_fingerprint.is_empty() {
            HostKeyPolicy::Fingerprint(c.host_key_fingerprint.clone())
        } else {
            HostKeyPolicy::FirstUse(first_seen)
        }
    }
}

/// What the host key check decided, kept for the error when it refused.
#[derive(Debug, Clone, Default)]
struct Verdict {
    seen: Option<String>,
    refusal: Option<RemoteError>,
}

/// The SSH session's handler: checks the host key against the policy.
struct Checker {
    host: String,
    port: u16,
    addr: String,
    policy: HostKeyPolicy,
    verdict: Arc<Mutex<Verdict>>,
}

impl Checker {
    fn decide(&self, key: &PublicKey) -> Option<RemoteError> {
        let got = key.fingerprint(HashAlg::Sha256).to_string();
        let changed = |expected: String| RemoteError::HostKeyChanged {
            addr: self.addr.clone(),
            expected,
            got: got.clone(),
        };
        match &self.policy {
            HostKeyPolicy::Fingerprint(fp) if *fp == got => None,
            HostKeyPolicy::Fingerprint(fp) => Some(changed(fp.clone())),
            HostKeyPolicy::FirstUse(None) => None,
            HostKeyPolicy::FirstUse(Some(fp)) if *fp == got => None,
            HostKeyPolicy::FirstUse(Some(fp)) => {
                Some(changed(format!("{fp} (trusted on first use)")))
            }
            HostKeyPolicy::KnownHosts(file) => {
                match russh::keys::check_known_hosts_path(&self.host, self.port, key, file) {
                    Ok(true) => None,
                    Ok(false) => Some(RemoteError::HostKeyUnknown {
                        addr: self.addr.clone(),
                        known_hosts: file.clone(),
                        got,
                    }),
                    Err(russh::keys::Error::KeyChanged { line }) => {
                        Some(changed(format!("the key on line {line} of {file}")))
                    }
                    Err(e) => Some(RemoteError::Call {
                        what: format!("reading {file}"),
                        why: e.to_string(),
                    }),
                }
            }
        }
    }
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => PublicKey::from(cert.public_key().clone()),
        };
        let refusal = self.decide(&key);
        let accepted = refusal.is_none();
        let mut v = self
            .verdict
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        v.seen = Some(key.fingerprint(HashAlg::Sha256).to_string());
        v.refusal = refusal;
        Ok(accepted)
    }
}

/// An open SFTP session on a file channel's server.
pub struct Remote {
    sftp: SftpSession,
    ssh: Handle<Checker>,
    timeout: Duration,
    /// The host key's SHA256 fingerprint, as the server showed it.
    pub fingerprint: String,
}

/// Runs `call` under `timeout`, naming it `what` when it runs out.
async fn timed<T, E: std::fmt::Display>(
    timeout: Duration,
    what: impl Fn() -> String,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, RemoteError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(RemoteError::Call {
            what: what(),
            why: e.to_string(),
        }),
        Err(_) => Err(RemoteError::Timeout {
            what: what(),
            secs: timeout.as_secs(),
        }),
    }
}

/// Connects to `c`'s server, checks its host key under `policy`, logs in and opens SFTP.
pub async fn connect(c: &ChannelSettings, policy: HostKeyPolicy) -> Result<Remote, RemoteError> {
    let addr = format!("{}:{}", c.host, c.port);
    let timeout = Duration::from_secs(c.timeout_secs.max(1));
    let verdict = Arc::new(Mutex::new(Verdict::default()));
    let checker = Checker {
        host: c.host.clone(),
        port: c.port,
        addr: addr.clone(),
        policy,
        verdict: verdict.clone(),
    };
    let config = Arc::new(client::Config {
        inactivity_timeout: Some(timeout * 4),
        ..client::Config::default()
    });
    let connecting = client::connect(config, (c.host.clone(), c.port), checker);
    let connected = tokio::time::timeout(timeout, connecting).await;
    let refused = || {
        verdict
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .refusal
            .clone()
    };
    let mut ssh = match connected {
        Err(_) => {
            return Err(RemoteError::Timeout {
                what: format!("connecting to {addr}"),
                secs: timeout.as_secs(),
            });
        }
        Ok(Err(e)) => {
            return Err(refused().unwrap_or(RemoteError::Connect {
                addr,
                why: e.to_string(),
            }));
        }
        Ok(Ok(h)) => h,
    };
    login(&mut ssh, c, &addr, timeout).await?;
    let sftp = open_sftp(&ssh, c, &addr, timeout).await?;
    let fingerprint = verdict
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .seen
        .clone()
        .unwrap_or_default();
    Ok(Remote {
        sftp,
        ssh,
        timeout,
        fingerprint,
    })
}

async fn login(
    ssh: &mut Handle<Checker>,
    c: &ChannelSettings,
    addr: &str,
    timeout: Duration,
) -> Result<(), RemoteError> {
    let what = || format!("logging in to {addr}");
    let (result, method) = if c.key_file.is_empty() {
        let r = timed(
            timeout,
            what,
            ssh.authenticate_password(&c.user, &c.password),
        )
        .await?;
        (r, "the password".to_string())
    } else {
        let key = russh::keys::load_secret_key(Path::new(&c.key_file), None).map_err(|e| {
            RemoteError::KeyFile {
                file: c.key_file.clone(),
                why: e.to_string(),
            }
        })?;
        let hash = timed(timeout, what, ssh.best_supported_rsa_hash())
            .await?
            .flatten();
        let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
        let r = timed(timeout, what, ssh.authenticate_publickey(&c.user, key)).await?;
        (r, format!("the key {}", c.key_file))
    };
    if result.success() {
        Ok(())
    } else {
        Err(RemoteError::Auth {
            addr: addr.to_string(),
            user: c.user.clone(),
            method,
        })
    }
}

async fn open_sftp(
    ssh: &Handle<Checker>,
    _c: &ChannelSettings,
    addr: &str,
    timeout: Duration,
) -> Result<SftpSession, RemoteError> {
    let what = || format!("opening SFTP on {addr}");
    let channel = timed(timeout, what, ssh.channel_open_session()).await?;
    timed(timeout, what, channel.request_subsystem(true, "sftp")).await?;
    let cfg = russh_sftp::client::Config {
        request_timeout_secs: timeout.as_secs().max(1),
        ..russh_sftp::client::Config::default()
    };
    timed(
        timeout,
        what,
        SftpSession::new_with_config(channel.into_stream(), cfg),
    )
    .await
}

/// A file in a remote folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Its name (no folder).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written (seconds since 1970; 0 when the server does not say).
    pub mtime: u64,
}

/// `dir/name` (just `name` when `dir` is empty).
pub fn join(dir: &str, name: &str) -> String {
    let dir = dir.trim_end_matches('/');
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Whether an SFTP error is the server's "no such file".
fn is_missing(e: &SftpError) -> bool {
    matches!(e, SftpError::Status(s) if s.status_code == StatusCode::NoSuchFile)
}

impl Remote {
    /// The regular files of folder `dir`, oldest first (then by name).
    pub async fn list(&self, dir: &str) -> Result<Vec<RemoteFile>, RemoteError> {
        let what = || format!("listing {dir}");
        let listed = tokio::time::timeout(self.timeout, self.sftp.read_dir(dir)).await;
        let entries = match listed {
            Err(_) => {
                return Err(RemoteError::Timeout {
                    what: what(),
                    secs: self.timeout.as_secs(),
                });
            }
            Ok(Err(e)) if is_missing(&e) => {
                return Err(RemoteError::NoFolder {
                    path: dir.to_string(),
                });
            }
            Ok(Err(e)) => {
                return Err(RemoteError::Call {
                    what: what(),
                    why: e.to_string(),
                });
            }
            Ok(Ok(entries)) => entries,
        };
        let mut files: Vec<RemoteFile> = entries
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                let m = e.metadata();
                RemoteFile {
                    name: e.file_name(),
                    size: m.len(),
                    mtime: u64::from(m.mtime.unwrap_or(0)),
                }
            })
            .collect();
        files.sort_by(|a, b| (a.mtime, &a.name).cmp(&(b.mtime, &b.name)));
        Ok(files)
    }

    /// Whether folder `dir` exists.
    pub async fn dir_exists(&self, dir: &str) -> Result<bool, RemoteError> {
        match tokio::time::timeout(self.timeout, self.sftp.metadata(dir)).await {
            Err(_) => Err(RemoteError::Timeout {
                what: format!("looking at {dir}"),
                secs: self.timeout.as_secs(),
            }),
            Ok(Ok(m)) => Ok(m.is_dir()),
            Ok(Err(e)) if is_missing(&e) => Ok(false),
            Ok(Err(e)) => Err(RemoteError::Call {
                what: format!("looking at {dir}"),
                why: e.to_string(),
            }),
        }
    }

    /// Makes folder `dir` unless it exists (its parent must).
    pub async fn ensure_dir(&self, dir: &str) -> Result<(), RemoteError> {
        if self.dir_exists(dir).await? {
            return Ok(());
        }
        let made = timed(
            self.timeout,
            || format!("making {dir}"),
            self.sftp.create_dir(dir),
        )
        .await;
        match made {
            Ok(()) => Ok(()),
            // Made meanwhile by another process.
            Err(_) if self.dir_exists(dir).await? => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The size of file `path` (`None`: there is none).
    pub async fn size(&self, path: &str) -> Result<Option<u64>, RemoteError> {
        match tokio::time::timeout(self.timeout, self.sftp.metadata(path)).await {
            Err(_) => Err(RemoteError::Timeout {
                what: format!("looking at {path}"),
                secs: self.timeout.as_secs(),
            }),
            Ok(Ok(m)) => Ok(Some(m.len())),
            Ok(Err(e)) if is_missing(&e) => Ok(None),
            Ok(Err(e)) => Err(RemoteError::Call {
                what: format!("looking at {path}"),
                why: e.to_string(),
            }),
        }
    }

    /// Reads file `path` whole, refusing one larger than `cap` bytes (`Ok(Err(size))`: it is
    /// larger; nothing more than `cap + 1` bytes is read).
    pub async fn read_capped(
        &self,
        path: &str,
        cap: u64,
    ) -> Result<Result<Vec<u8>, u64>, RemoteError> {
        let what = || format!("reading {path}");
        let read = async {
            let file = match self.sftp.open(path).await {
                Err(e) if is_missing(&e) => return Ok(None),
                other => other?,
            };
            let mut bytes = Vec::new();
            file.take(cap + 1).read_to_end(&mut bytes).await?;
            Ok::<_, SftpError>(Some(bytes))
        };
        match timed(self.timeout, what, read).await? {
            None => Err(RemoteError::NotFound {
                path: path.to_string(),
            }),
            Some(b) if b.len() as u64 > cap => Ok(Err(b.len() as u64)),
            Some(b) => Ok(Ok(b)),
        }
    }

    /// Writes `bytes` to file `path` (created, or truncated), and returns the size the server
    /// then reports for it.
    pub async fn write(&self, path: &str, bytes: &[u8]) -> Result<u64, RemoteError> {
        let what = || format!("writing {path}");
        let write = async {
            let flags = OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE;
            let mut file = self.sftp.open_with_flags(path, flags).await?;
            file.write_all(bytes).await?;
            file.flush().await?;
            file.shutdown().await?;
            Ok::<_, SftpError>(())
        };
        timed(self.timeout, what, write).await?;
        self.size(path).await?.ok_or_else(|| RemoteError::NotFound {
            path: path.to_string(),
        })
    }

    /// Renames `from` to `to`; the server refuses when `to` exists (SFTP v3 rename never
    /// replaces). `NotFound`: `from` is gone; `Exists`: `to` is there.
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), RemoteError> {
        let what = || format!("renaming {from} to {to}");
        match tokio::time::timeout(self.timeout, self.sftp.rename(from, to)).await {
            Err(_) => Err(RemoteError::Timeout {
                what: what(),
                secs: self.timeout.as_secs(),
            }),
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                if self.size(from).await?.is_none() {
                    Err(RemoteError::NotFound {
                        path: from.to_string(),
                    })
                } else if self.size(to).await?.is_some() {
                    Err(RemoteError::Exists {
                        path: to.to_string(),
                    })
                } else {
                    Err(RemoteError::Call {
                        what: what(),
                        why: e.to_string(),
                    })
                }
            }
        }
    }

    /// Deletes file `path`; one already gone is no error.
    pub async fn remove(&self, path: &str) -> Result<(), RemoteError> {
        match tokio::time::timeout(self.timeout, self.sftp.remove_file(path)).await {
            Err(_) => Err(RemoteError::Timeout {
                what: format!("deleting {path}"),
                secs: self.timeout.as_secs(),
            }),
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if is_missing(&e) => Ok(()),
            Ok(Err(e)) => Err(RemoteError::Call {
                what: format!("deleting {path}"),
                why: e.to_string(),
            }),
        }
    }

    /// Ends the session politely (errors ignored: the server may be gone).
    pub async fn close(self) {
        let _ = tokio::time::timeout(self.timeout, self.sftp.close()).await;
        let _ = tokio::time::timeout(
            self.timeout,
            self.ssh
                .disconnect(russh::Disconnect::ByApplication, "done", "en"),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_with_one_slash() {
        assert_eq!(join("in/", "a.xml"), "in/a.xml");
        assert_eq!(join("/srv/in", "a.xml"), "/srv/in/a.xml");
        assert_eq!(join("", "a.xml"), "a.xml");
    }
}
