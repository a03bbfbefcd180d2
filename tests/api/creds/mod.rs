//! Secrets and credentials, and support's view of received requests: credentials masked in every
//! stored body and rejection excerpt, repeats recognised after a new login, the database file private
//! to its owner, absolute session and token lifetimes, user and token management, passwords never
//! trimmed, and `wharf requests list|show|requeue|reprocess`.

mod accounts;
mod db_file;
mod lifetimes;
mod masking;
mod support;
mod upgrade;

use std::io::Write;
use std::process::{Command, Stdio};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::helpers::{Backend, TestApp};

/// What a `wharf` command printed.
pub struct Run {
    pub ok: bool,
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the real `wharf` binary against a database, with extra environment and standard input.
pub fn wharf_blocking(db_url: &str, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
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
    let out = child.wait_with_output().unwrap();
    Run {
        ok: out.status.success(),
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `wharf ARGS` against the app's database with `stdin`.
pub async fn wharf_with(app: &TestApp, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
    let url = app.db.url.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.to_string();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        wharf_blocking(&url, &args, &stdin, &env)
    })
    .await
    .unwrap()
}

/// Runs `wharf ARGS` and expects it to succeed; returns its standard output.
pub async fn wharf_ok(app: &TestApp, args: &[&str]) -> String {
    let run = wharf_with(app, args, "", &[]).await;
    assert!(
        run.ok,
        "wharf {args:?} failed ({:?}): {}{}",
        run.status, run.stdout, run.stderr
    );
    run.stdout
}

/// Runs `wharf ARGS` and expects it to fail; returns its standard error.
pub async fn wharf_err(app: &TestApp, args: &[&str]) -> String {
    let run = wharf_with(app, args, "", &[]).await;
    assert!(!run.ok, "wharf {args:?} should have failed: {}", run.stdout);
    run.stderr
}

/// The ids in the first column of `wharf requests list`, newest first.
pub fn listed_ids(list: &str) -> Vec<i64> {
    list.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The row of `wharf requests list` for request `id`.
pub fn listed_row(list: &str, id: i64) -> String {
    list.lines()
        .find(|l| l.split_whitespace().next() == Some(id.to_string().as_str()))
        .unwrap_or_else(|| panic!("request {id} not listed in\n{list}"))
        .to_string()
}

/// POSTs a body with a content type and extra headers; returns status and body.
pub async fn post(
    app: &TestApp,
    path: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: impl Into<String>,
) -> (u16, String) {
    let mut req = app
        .client
        .post(format!("{}{path}", app.base))
        .header("Content-Type", content_type)
        .body(body.into());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// `Authorization: Basic …` for a user name and password.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A Magento 2 admin token request.
pub fn token_envelope(user: &str, password: &str) -> String {
    format!(
        "<env:Envelope xmlns:env=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:ns1=\"urn:x\"><env:Body>\
         <ns1:integrationAdminTokenServiceV1CreateAdminAccessTokenRequest><username>{user}</username>\
         <password>{password}</password></ns1:integrationAdminTokenServiceV1CreateAdminAccessTokenRequest>\
         </env:Body></env:Envelope>"
    )
}

/// Asks for an admin token; returns status and body.
pub async fn request_token(app: &TestApp, user: &str, password: &str) -> (u16, String) {
    post(
        app,
        "/soap/default?services=integrationAdminTokenServiceV1",
        "application/soap+xml; charset=utf-8",
        &[],
        token_envelope(user, password),
    )
    .await
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Where `needle` is stored in the app's database: the tables holding it in a live row (both
/// backends), and on SQLite also the database, WAL and SHM files holding its bytes anywhere (free
/// pages and old WAL frames included).
pub async fn stored_anywhere(app: &TestApp, backend: Backend, needle: &str) -> Vec<String> {
    let pattern = format!("%{needle}%");
    let mut found = app
        .with_conn(move |c| tables_containing(c, backend, &pattern))
        .await;
    if backend == Backend::Sqlite {
        let path = app.db.url.trim_start_matches("sqlite://").to_string();
        for file in [path.clone(), format!("{path}-wal"), format!("{path}-shm")] {
            // Read by another process: closing a descriptor of the database file in this process
            // would drop the POSIX locks the server's SQLite connections hold on it.
            let bytes = Command::new("cat")
                .arg(&file)
                .stderr(Stdio::null())
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(file);
            }
        }
    }
    found
}

fn tables_containing(
    c: &mut wharf::db::DbConnection,
    backend: Backend,
    pattern: &str,
) -> Vec<String> {
    let list = match backend {
        Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
        Backend::Postgres => {
            "SELECT table_name::text AS name FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        }
    };
    let tables: Vec<Name> = diesel::sql_query(list).load(c).unwrap();
    let mut found = Vec::new();
    for Name { name } in tables {
        let query = match backend {
            // Every column of every row, as text.
            Backend::Sqlite => {
                #[derive(QueryableByName)]
                struct Column {
                    #[diesel(sql_type = Text)]
                    name: String,
                }
                let columns: Vec<Column> =
                    diesel::sql_query(format!("SELECT name FROM pragma_table_info('{name}')"))
                        .load(c)
                        .unwrap();
                let any = columns
                    .iter()
                    .map(|col| format!("CAST(\"{}\" AS TEXT) LIKE $1", col.name))
                    .collect::<Vec<_>>()
                    .join(" OR ");
                format!("SELECT COUNT(*) AS n FROM \"{name}\" WHERE {any}")
            }
            Backend::Postgres => {
                format!("SELECT COUNT(*) AS n FROM \"{name}\" t WHERE t::text LIKE $1")
            }
        };
        let n: Count = diesel::sql_query(query)
            .bind::<Text, _>(pattern)
            .get_result(c)
            .unwrap();
        if n.n > 0 {
            found.push(name);
        }
    }
    found
}
