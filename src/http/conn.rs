//! How many client connections the server holds: the open-file limit raised at start-up, and a cap
//! on connections below it, so that idle or stalled clients can never take the files the database,
//! the pool and the logs need.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Files kept for everything but client connections, besides the pool: the listener, SQLite's
/// database, WAL and shared-memory files, log files, the exporter's and mailer's outbound
/// connections, the blocking pool's work.
const RESERVED_FILES: u64 = 128;

/// Files one pooled database connection may hold (SQLite: database, WAL, shared memory).
const FILES_PER_DB_CONNECTION: u64 = 3;

/// Raises the soft open-file limit to the hard limit (a default soft limit of 1 024 is common and
/// far too low for a server) and returns the limit in force, `None` when unlimited.
pub fn raise_open_file_limit() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::info!(
                    from = limit.current,
                    to = limit.maximum,
                    "open-file limit raised to its hard limit"
                );
                return limit.maximum;
            }
            Err(e) => tracing::warn!(
                error = %e,
                limit = limit.current,
                "cannot raise the open-file limit; connections are capped below it"
            ),
        }
    }
    limit.current
}

/// The most client connections to hold at once: the setting, lowered when the open-file limit
/// leaves fewer files after the database pool and [`RESERVED_FILES`].
pub fn connection_cap(max_connections: usize, open_files: Option<u64>, db_pool: u32) -> usize {
    let Some(files) = open_files else {
        return max_connections.max(1);
    };
    let kept = RESERVED_FILES + u64::from(db_pool) * FILES_PER_DB_CONNECTION;
    let room = usize::try_from(files.saturating_sub(kept)).unwrap_or(usize::MAX);
    max_connections.min(room).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_keeps_files_for_the_database() {
        assert_eq!(connection_cap(10_000, None, 16), 10_000);
        assert_eq!(connection_cap(10_000, Some(1_048_576), 16), 10_000);
        // 1 024 files, 16 pooled connections: 1 024 - 128 - 48.
        assert_eq!(connection_cap(10_000, Some(1_024), 16), 848);
        assert_eq!(connection_cap(10_000, Some(10), 16), 1);
    }
}
