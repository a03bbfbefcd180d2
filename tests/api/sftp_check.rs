//! `wharf check` on a file channel: the real binary against the real sshd — the server answers
//! with the pinned key, the login works and the folders exist; a missing folder, a changed key and
//! a stopped server each fail with what to do.

use std::process::Command;

use crate::both_backends;
use crate::helpers::{Backend, TestApp};
use crate::sshd::Sshd;

both_backends!(
    a_file_channel_is_checked_end_to_end,
    a_lost_order_of_a_file_channel_is_resent_with_wharf_channels,
    a_replaced_key_is_trusted_again_after_forget_key,
);

/// Runs `wharf --config <file> check` against the app's database; returns (exit ok, stdout).
async fn check(app: &TestApp, toml: String) -> (bool, String) {
    wharf_cmd(app, toml, &["check"]).await
}

/// Runs `wharf --config <file> <args>` against the app's database; returns (exit ok, stdout and
/// stderr).
async fn wharf_cmd(app: &TestApp, toml: String, args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wharf.toml");
    std::fs::write(&file, toml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.arg("--config")
        .arg(&file)
        .args(args)
        .current_dir(dir.path())
        .env("DATABASE_URL", &app.db.url)
        .env("RUST_LOG", "warn");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap();
    (out.status.success(), text)
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

async fn a_lost_order_of_a_file_channel_is_resent_with_wharf_channels(backend: Backend) {
    use diesel::prelude::*;
    use wharf::db::schema::orders;
    let sshd = Sshd::start();
    let mut c = sshd.channel("dropbox");
    c.max_attempts = 1;
    let channel = c.clone();
    let app = TestApp::spawn_with(backend, move |s| s.channels.push(channel)).await;
    app.put_order("L-1", &[("MUG", 1)]).await;
    // Its stored document stops reading (a bad migration, a hand edit): it cannot go out.
    let original: String = app
        .with_conn(|conn| {
            let doc = orders::table
                .filter(orders::increment_id.eq("L-1"))
                .select(orders::document)
                .first(conn)
                .unwrap();
            diesel::update(orders::table.filter(orders::increment_id.eq("L-1")))
                .set(orders::document.eq("{}"))
                .execute(conn)
                .unwrap();
            doc
        })
        .await;
    let files = wharf::channels::sftp::FileChannel::new(app.pool.clone(), app.settings.clone(), c);
    let out = wharf::channels::sftp::export::run_once(&files)
        .await
        .unwrap();
    assert_eq!((out.files.len(), out.unreadable), (0, 1), "{out:?}");
    let (ok, listed) = wharf_cmd(
        &app,
        settings(&sshd),
        &[
            "channels",
            "tasks",
            "--channel",
            "dropbox",
            "--state",
            "lost",
        ],
    )
    .await;
    assert!(ok, "{listed}");
    let line = listed
        .lines()
        .find(|l| l.contains("L-1"))
        .unwrap_or_else(|| panic!("{listed}"));
    // The task's id comes first.
    let id = line.split_whitespace().next().unwrap().to_string();
    assert!(line.contains("cannot be read"), "{line}");

    // Support repairs the order, then resends it: it goes out in the next file.
    app.with_conn(move |conn| {
        diesel::update(orders::table.filter(orders::increment_id.eq("L-1")))
            .set(orders::document.eq(original))
            .execute(conn)
            .unwrap();
    })
    .await;
    let (ok, said) = wharf_cmd(
        &app,
        settings(&sshd),
        &["channels", "resend", &id, "--reason", "document repaired"],
    )
    .await;
    assert!(ok, "{said}");
    let out = wharf::channels::sftp::export::run_once(&files)
        .await
        .unwrap();
    assert_eq!(out.files.len(), 1, "{out:?}");
    let doc = String::from_utf8(sshd.read(&format!("out/{}", out.files[0]))).unwrap();
    assert!(doc.contains("<increment_id>L-1</increment_id>"), "{doc}");
}

async fn a_replaced_key_is_trusted_again_after_forget_key(backend: Backend) {
    use wharf::channels::sftp::FileChannel;
    let mut sshd = Sshd::start();
    let mut c = sshd.channel("dropbox");
    c.host_key_fingerprint.clear();
    c.trust_on_first_use = true;
    let channel = c.clone();
    let app = TestApp::spawn_with(backend, move |s| s.channels.push(channel)).await;
    let files = FileChannel::new(app.pool.clone(), app.settings.clone(), c);
    files.connect().await.unwrap().unwrap().close().await;
    let first = sshd.fingerprint.clone();
    sshd.new_host_key();
    sshd.restart();
    let refused = files.connect().await.unwrap().err().unwrap();
    assert!(refused.to_string().contains(&first), "{refused}");
    let toml = settings(&sshd).replace(
        &format!("host_key_fingerprint = {:?}", sshd.fingerprint),
        "trust_on_first_use = true",
    );
    let (ok, said) = wharf_cmd(
        &app,
        toml.clone(),
        &["files", "forget-key", "dropbox", "--by", "ann"],
    )
    .await;
    assert!(ok, "{said}");
    assert!(said.contains(&first), "{said}");
    let remote = files.connect().await.unwrap().unwrap();
    assert_eq!(remote.fingerprint, sshd.fingerprint);
    remote.close().await;
    let audited: Vec<(String, String)> = app
        .with_conn(|conn| {
            use diesel::prelude::*;
            use wharf::db::schema::audit_log as a;
            a::table
                .filter(a::action.eq("files.forget_key"))
                .select((a::actor, a::subjects))
                .load(conn)
                .unwrap()
        })
        .await;
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0].0, "ann");
    // The new key is kept now: forgetting needs a key kept, and a third key is refused again.
    sshd.new_host_key();
    sshd.restart();
    assert!(files.connect().await.unwrap().is_err());
}
