//! The `wharf` binary's user and token commands, against the same database as a running server.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

both_backends!(users_and_tokens_created_on_the_command_line_work);

fn wharf(db_url: &str, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wharf");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

async fn users_and_tokens_created_on_the_command_line_work(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let url = app.db.url.clone();

    let out = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            wharf(
                &url,
                &[
                    "users",
                    "add",
                    "wms2",
                    "--role",
                    "warehouse",
                    "--password-stdin",
                ],
                "s3cret-enough\n",
            )
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(app.login_as("wms2", "s3cret-enough").await.is_ok());

    // Same name again, an unknown role, and a short password are refused with a reason.
    for (args, input, reason) in [
        (
            vec!["users", "add", "wms2", "--password-stdin"],
            "another-password\n",
            "already exists",
        ),
        (
            vec![
                "users",
                "add",
                "wms3",
                "--role",
                "admin",
                "--password-stdin",
            ],
            "another-password\n",
            "unknown role",
        ),
        (
            vec!["users", "add", "wms4", "--password-stdin"],
            "short\n",
            "at least 8 characters",
        ),
        (vec!["users", "add", "wms5"], "", "--password-stdin"),
    ] {
        let url = url.clone();
        let out = tokio::task::spawn_blocking(move || wharf(&url, &args, input))
            .await
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(reason), "expected {reason:?} in {err}");
    }

    let out = tokio::task::spawn_blocking(move || wharf(&url, &["tokens", "add", "shop"], ""))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(token.len(), 64);
    let resp = app
        .client
        .get(format!("{}/api/v1/stock/X", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        404,
        "a valid token reaches the handler"
    );
}
