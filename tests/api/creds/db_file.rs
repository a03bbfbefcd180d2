//! The SQLite database file and its WAL and SHM files are readable by their owner only. (SQLite
//! only: PostgreSQL keeps its files under its own server's control.)

use std::os::unix::fs::PermissionsExt;

use crate::helpers::{Backend, TestApp};

fn mode(path: &str) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_and_its_wal_and_shm_are_private() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.expect_leftovers("it checks the file modes of the database a request is stored in");
    let s = app.login().await;
    assert_eq!(app.send_inventory(&s, 1, &[("A", 1, 1)]).await.0, 200);
    let path = app.db.url.trim_start_matches("sqlite://").to_string();
    for file in [path.clone(), format!("{path}-wal"), format!("{path}-shm")] {
        assert_eq!(mode(&file), 0o600, "{file}");
    }

    // The same when a command line tool is the first to open a new database.
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh.db");
    let url = format!("sqlite://{}", fresh.display());
    let run = super::wharf_blocking(&url, &["migrate"], "", &[]);
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(mode(&fresh.display().to_string()), 0o600);
}
