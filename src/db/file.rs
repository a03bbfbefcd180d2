//! The SQLite database file is created readable and writable by its owner only (mode 0600): it holds
//! every message the warehouse sent and the hashes of passwords, sessions and tokens.
//!
//! wharf creates the file itself, empty, before SQLite opens it; SQLite then gives the `-wal` and
//! `-shm` files it creates beside it the same mode as the database file (`findCreateFileMode` in its
//! unix VFS, which also `fchmod`s them past the umask), so all three are private. A file that already
//! exists is left as it is — an operator may have widened it on purpose — with a warning if others can
//! read it.

/// Creates the SQLite file at `path` with mode 0600 if it does not exist yet, and warns (once per
/// process) when an existing one is readable by others. Does nothing for `:memory:` and `file:` URIs
/// (SQLite opens those itself). Failures are left for SQLite to report when it opens the file.
pub fn prepare_sqlite_file(path: &str) {
    if path.is_empty() || path == ":memory:" || path.starts_with("file:") {
        return;
    }
    // Closing any descriptor of a database file drops every POSIX lock this process holds on it,
    // SQLite's included. Connections of this process are opened one at a time past this point, so
    // the descriptor that creates the file is closed before any connection can lock it.
    static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = CREATING.lock().unwrap_or_else(|p| p.into_inner());
    create_private(path);
}

#[cfg(unix)]
fn create_private(path: &str) {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    use std::sync::atomic::{AtomicBool, Ordering};
    static WARNED: AtomicBool = AtomicBool::new(false);
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(_) => tracing::info!(path, "created the database file (mode 0600)"),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
                && !WARNED.swap(true, Ordering::Relaxed)
            {
                tracing::warn!(
                    path,
                    mode = format!("{:o}", meta.permissions().mode() & 0o777),
                    "the database file can be read by other users of this machine; \
                     `chmod 600` it (and its -wal and -shm files) unless that is intended"
                );
            }
        }
        Err(_) => {}
    }
}

/// File modes are a unix notion; elsewhere the directory's access rules apply.
#[cfg(not(unix))]
fn create_private(_path: &str) {}
