//! `wharf check` on a file channel: the real binary against the real sshd — the server answers
//! with the pinned key, the login works and the folders exist; a missing folder, a changed key and
//! a stopped server each fail with what to do.

use std::process::Command;

use crate::both_backends;
use crate::helpers::{Backend, TestApp};
use crate::sshd::Sshd;

both_backends!(a_file_channel_is_checked_end_to_end);

/// Runs `wharf --config <file> check` against the app's database; returns (exit ok, stdout).
async fn check(app: &TestApp, toml: String) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wharf.toml");
    std::fs::write(&file, toml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.arg("--config")
        .arg(&file)
        .arg("check")
        .current_dir(dir.path())
        .env("DATABASE_URL", &app.db.url)
        .env("RUST_LOG", "warn");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap())
}

fn line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains(&format!(" {name}: ")))
        .unwrap_or_else(|| panic!("no line for {name}:\n{out}"))
}

fn settings(sshd: &Sshd) -> String {
    format!(
        "[[channels]]\nname = \"dropbox\"\nkind = \"sftp\"\nhost = \"127.0.0.1\"\nport = {}\n\
         user = {:?}\nkey_file = {:?}\nhost_key_fingerprint = {:?}\nexport_dir = {:?}\n\
         import_dir = {:?}\ntimeout_secs = 5\nlease_secs = 10\n",
        sshd.port,
        sshd.user,
        sshd.key_file.display().to_string(),
        sshd.fingerprint,
        sshd.path("out"),
        sshd.path("in"),
    )
}

async fn a_file_channel_is_checked_end_to_end(backend: Backend) {
    let mut sshd = Sshd::start();
    let app = TestApp::spawn(backend).await;
    let (ok, out) = check(&app, settings(&sshd)).await;
    assert!(ok, "{out}");
    let l = line(&out, "channel dropbox");
    assert!(l.starts_with("ok"), "{l}");
    assert!(
        l.contains(&sshd.fingerprint) && l.contains("import_dir"),
        "{l}"
    );

    std::fs::remove_dir(sshd.root.join("in")).unwrap();
    let (ok, out) = check(&app, settings(&sshd)).await;
    assert!(!ok, "{out}");
    let l = line(&out, "channel dropbox");
    assert!(
        l.starts_with("FAIL") && l.contains("import_dir") && l.contains("does not exist"),
        "{l}"
    );
    sshd.mkdir("in");

    let pinned = settings(&sshd);
    sshd.new_host_key();
    sshd.restart();
    let (ok, out) = check(&app, pinned).await;
    assert!(!ok, "{out}");
    let l = line(&out, "channel dropbox");
    assert!(l.contains("host key") && l.contains("changed"), "{l}");

    sshd.stop();
    let (ok, out) = check(&app, settings(&sshd)).await;
    assert!(!ok, "{out}");
    let l = line(&out, "channel dropbox");
    assert!(l.starts_with("FAIL") && l.contains("cannot connect"), "{l}");
}
