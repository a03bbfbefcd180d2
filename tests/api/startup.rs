//! Configuration and start-up, through the real `wharf` binary: database URLs, databases that are
//! missing or unreachable, settings errors and validation, `wharf config`, plain-text logs.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::both_backends;
use crate::helpers::{Backend, TestDb, postgres_admin_url};

both_backends!(
    start_up_names_the_settings_file_and_the_database,
    a_database_that_refuses_us_fails_at_once_with_one_message,
);

/// Runs `wharf ARGS` in `dir` with only the given environment (no inherited `WHARF_*` or
/// `DATABASE_URL`, no `wharf.toml` but one the test writes), stdin closed.
pub fn wharf_in(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run wharf")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lines of stderr that are not log lines (what `wharf:` prints when it gives up).
fn error_lines(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.starts_with("wharf: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn database_urls_other_than_sqlite_and_postgres_are_refused() {
    for command in ["serve", "migrate", "worker"] {
        for url in [
            "garbage",
            "mysql://wharf:pw123@db/wharf",
            "/var/lib/wharf/wharf.db",
            "sqlite::memory:",
            "",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let out = wharf_in(dir.path(), &[("DATABASE_URL", url)], &[command]);
            assert!(!out.status.success(), "{command} {url:?}: {}", stderr(&out));
            let errors = error_lines(&out);
            assert_eq!(errors.len(), 1, "{command} {url:?}: {}", stderr(&out));
            let e = &errors[0];
            assert!(
                e.contains("DATABASE_URL")
                    && e.contains("sqlite://PATH")
                    && e.contains("postgres://"),
                "{command} {url:?}: {e}"
            );
            assert!(!e.contains("pw123"), "the password is shown: {e}");
            assert_eq!(
                std::fs::read_dir(dir.path()).unwrap().count(),
                0,
                "{command} {url:?} created a file"
            );
        }
    }
    // The two messages that say what to write instead.
    let dir = tempfile::tempdir().unwrap();
    let out = wharf_in(dir.path(), &[("DATABASE_URL", "wharf.db")], &["migrate"]);
    assert!(
        stderr(&out).contains("write sqlite://wharf.db"),
        "{}",
        stderr(&out)
    );
    let out = wharf_in(
        dir.path(),
        &[("DATABASE_URL", "mysql://x@h/db")],
        &["migrate"],
    );
    assert!(
        stderr(&out).contains("uses mysql://, which wharf does not support"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn both_sqlite_url_forms_open_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    for url in ["sqlite:wharf.db", "sqlite://wharf.db"] {
        let out = wharf_in(dir.path(), &[("DATABASE_URL", url)], &["migrate"]);
        assert!(out.status.success(), "{url}: {}", stderr(&out));
    }
    let abs = format!("sqlite://{}", dir.path().join("wharf.db").display());
    let out = wharf_in(dir.path(), &[("DATABASE_URL", &abs)], &["migrate"]);
    assert_eq!(
        stdout(&out).trim(),
        "database is up to date",
        "{}",
        stderr(&out)
    );
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.ends_with("-wal") && !n.ends_with("-shm"))
        .collect();
    assert_eq!(files, vec!["wharf.db".to_string()]);
}

#[test]
fn commands_other_than_serve_and_migrate_never_create_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join("wharf.db");
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let url = format!("sqlite://{}", db.display());
    let env = [("DATABASE_URL", url.as_str())];
    for args in [
        &["tokens", "add", "shop"][..],
        &["users", "add", "wms", "--password-stdin"],
        &["worker", "--once"],
        &["worker"],
        &["orders", "lost"],
        &["exports", "list"],
        &["export"],
    ] {
        let out = wharf_in(dir.path(), &env, args);
        assert!(!out.status.success(), "{args:?}: {}", stderr(&out));
        let errors = error_lines(&out);
        assert_eq!(errors.len(), 1, "{args:?}: {}", stderr(&out));
        assert!(
            errors[0].contains(&format!("{} does not exist", db.display()))
                && errors[0].contains("wharf migrate"),
            "{args:?}: {}",
            errors[0]
        );
        assert!(!db.exists(), "{args:?} created {}", db.display());
    }
    // A relative path is reported absolute.
    let out = wharf_in(
        dir.path(),
        &[("DATABASE_URL", "sqlite://data/other.db")],
        &["tokens", "add", "shop"],
    );
    let abs = dir.path().join("data/other.db");
    assert!(
        stderr(&out).contains(&abs.display().to_string()),
        "{}",
        stderr(&out)
    );

    let out = wharf_in(dir.path(), &env, &["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = wharf_in(dir.path(), &env, &["tokens", "add", "shop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim().len(), 64);
}

/// A TCP port that accepts connections and never answers, like a firewall that drops packets.
fn silent_port() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

#[test]
fn an_unreachable_database_fails_within_five_seconds_with_one_message() {
    let (_listener, port) = silent_port();
    let url = format!("postgres://wharf:s3cret@127.0.0.1:{port}/wharf");
    let dir = tempfile::tempdir().unwrap();
    for command in ["serve", "migrate", "worker"] {
        let started = Instant::now();
        let out = wharf_in(dir.path(), &[("DATABASE_URL", &url)], &[command]);
        let took = started.elapsed();
        assert!(!out.status.success());
        assert!(
            took < Duration::from_secs(5),
            "{command} took {took:?}: {}",
            stderr(&out)
        );
        let all = stderr(&out);
        let errors = error_lines(&out);
        assert_eq!(errors.len(), 1, "{all}");
        assert_eq!(
            errors[0],
            format!(
                "wharf: cannot connect to the database postgres://wharf:***@127.0.0.1:{port}/wharf: \
                 no answer within 4 s; check DATABASE_URL"
            ),
            "{all}"
        );
        assert!(!all.contains("s3cret"), "{all}");
        // Nothing but the start-up line and the message: no pool retrying in the log.
        assert!(all.lines().count() <= 2, "{all}");
    }
}

async fn a_database_that_refuses_us_fails_at_once_with_one_message(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (url, shown, reason) = match backend {
        // A directory that does not exist cannot hold the file.
        Backend::Sqlite => {
            let path = dir.path().join("no/such/dir/wharf.db");
            let url = format!("sqlite://{}", path.display());
            (url.clone(), url, "unable to open")
        }
        // A database that does not exist on a server that is up.
        Backend::Postgres => {
            let admin = postgres_admin_url();
            let (base, _) = admin.rsplit_once('/').unwrap();
            let url = format!("{base}/wharf_no_such_database");
            let shown = wharf::config::redact_url(&url);
            (url, shown, "does not exist")
        }
    };
    let started = Instant::now();
    let out = wharf_in(dir.path(), &[("DATABASE_URL", &url)], &["serve"]);
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(5));
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "{}", stderr(&out));
    let e = errors[0].to_lowercase();
    assert!(
        e.starts_with(&format!(
            "wharf: cannot connect to the database {}: ",
            shown.to_lowercase()
        )) && e.contains(reason)
            && e.ends_with("; check database_url"),
        "{}",
        errors[0]
    );
}

async fn start_up_names_the_settings_file_and_the_database(backend: Backend) {
    let db = TestDb::new(backend);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wharf.toml");
    std::fs::write(&config, "[worker]\nbatch_size = 7\n").unwrap();
    let out = wharf_in(
        dir.path(),
        &[("DATABASE_URL", &db.url)],
        &["--config", config.to_str().unwrap(), "migrate"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    // The password hidden (when the test server's URL has one).
    let shown = wharf::config::redact_url(&db.url);
    assert!(
        log.contains(&format!("config={}", config.display())),
        "{log}"
    );
    assert!(log.contains(&format!("database={shown}")), "{log}");
    // Without a file, start-up says so.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = wharf_in(elsewhere.path(), &[("DATABASE_URL", &db.url)], &["migrate"]);
    assert!(
        stderr(&out).contains("config=none (built-in defaults and environment)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_settings_error_is_printed_once_naming_the_setting_and_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let out = wharf_in(
        dir.path(),
        &[("WHARF_WORKER__BATCH_SIZE", "lots")],
        &["serve"],
    );
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        "wharf: invalid setting worker.batch_size (environment variable \
         WHARF_WORKER__BATCH_SIZE): invalid type: found string \"lots\", expected i64"
    );
    std::fs::write(dir.path().join("wharf.toml"), "[worker]\nbatch_sise = 5\n").unwrap();
    let out = wharf_in(dir.path(), &[], &["config"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "wharf: unknown setting worker.batch_sise (in {}); [worker] has ",
            dir.path().join("wharf.toml").display()
        )) && err.contains("batch_size"),
        "{err}"
    );
    assert!(!err.contains("default."), "{err}");
}

#[test]
fn boolean_variables_accept_1_0_true_and_false_in_any_case() {
    let dir = tempfile::tempdir().unwrap();
    for (value, expected) in [
        ("1", true),
        ("0", false),
        ("true", true),
        ("FALSE", false),
        ("True", true),
    ] {
        let out = wharf_in(
            dir.path(),
            &[
                ("WHARF_LOG_JSON", value),
                ("WHARF_WORKER__IN_SERVE", value),
                ("WHARF_INVENTORY__ALLOW_NEGATIVE", value),
                ("WHARF_WAREHOUSE__PRODUCTS__ENABLED", value),
                ("WHARF_WAREHOUSE__ENDPOINT", "https://wms.example.com/web/"),
                ("WHARF_WAREHOUSE__USERNAME", "wharf"),
                ("WHARF_WAREHOUSE__PASSWORD", "pw"),
                ("WHARF_WAREHOUSE__ORGANISATION", "ACME"),
                ("WHARF_WAREHOUSE__CHANNEL", "web"),
            ],
            &["config"],
        );
        assert!(out.status.success(), "{value}: {}", stderr(&out));
        let text = stdout(&out);
        for key in ["log_json", "in_serve", "allow_negative", "enabled"] {
            assert!(
                text.contains(&format!("{key} = {expected}")),
                "{value}: {key}\n{text}"
            );
        }
    }
    let out = wharf_in(dir.path(), &[("WHARF_LOG_JSON", "maybe")], &["config"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("log_json"), "{}", stderr(&out));
}

#[test]
fn text_settings_from_the_environment_are_kept_as_written_and_secrets_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    // Digits-only values would be read as numbers (refused for text, or `0042` turned into 42).
    let out = wharf_in(
        dir.path(),
        &[
            ("WHARF_WAREHOUSE__USERNAME", "0042"),
            ("WHARF_ALERTS__SMTP_PASSWORD", "111111"),
            ("WHARF_METRICS__TOKEN", "007007"),
        ],
        &["config"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("username = \"0042\""), "{text}");
    for secret in ["111111", "007007"] {
        assert!(!text.contains(secret), "{text}");
    }
    // A secret of the wrong type in a file is refused without quoting it.
    std::fs::write(
        dir.path().join("wharf.toml"),
        "[alerts]\nsmtp_password = 271828\n",
    )
    .unwrap();
    let out = wharf_in(dir.path(), &[], &["config"]);
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(said.contains("alerts.smtp_password"), "{said}");
    assert!(!said.contains("271828"), "{said}");
}

#[test]
fn settings_that_cannot_work_stop_serve_and_worker_naming_the_setting() {
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: &[Case] = &[
        (
            &[("WHARF_WAREHOUSE__ORDERS__ENABLED", "1")],
            &[
                "invalid setting warehouse.endpoint (WHARF_WAREHOUSE__ENDPOINT): is empty but \
                 warehouse.orders.enabled is on",
                "invalid setting warehouse.username (WHARF_WAREHOUSE__USERNAME)",
                "invalid setting warehouse.password (WHARF_WAREHOUSE__PASSWORD)",
            ],
        ),
        (
            &[("WHARF_WAREHOUSE__ORDERS__SCHEDULE", "every minute")],
            &[
                "invalid setting warehouse.orders.schedule (WHARF_WAREHOUSE__ORDERS__SCHEDULE): \
               \"every minute\" is not a cron expression",
            ],
        ),
        (
            &[("WHARF_WAREHOUSE__ENDPOINT", "wms.example.com")],
            &[
                "invalid setting warehouse.endpoint (WHARF_WAREHOUSE__ENDPOINT): \
               \"wms.example.com/\" is not a URL",
            ],
        ),
        (
            &[("WHARF_PUBLIC_URL", "ftp://wharf.example.com")],
            &[
                "invalid setting public_url (WHARF_PUBLIC_URL): \"ftp://wharf.example.com\" is not \
               an http:// or https:// URL",
            ],
        ),
    ];
    for command in ["serve", "worker"] {
        for (env, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let out = wharf_in(dir.path(), env, &[command]);
            assert!(!out.status.success(), "{command} {env:?}");
            let err = stderr(&out);
            for e in *expected {
                assert!(
                    err.contains(e),
                    "{command} {env:?}: expected {e:?} in\n{err}"
                );
            }
            // Refused before the database is touched.
            assert!(!dir.path().join("wharf.db").exists(), "{command} {env:?}");
        }
    }
    // `wharf migrate` needs only the database: it runs before the exports are configured.
    let dir = tempfile::tempdir().unwrap();
    let out = wharf_in(
        dir.path(),
        &[("WHARF_WAREHOUSE__ORDERS__ENABLED", "1")],
        &["migrate"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn the_warehouse_endpoint_gets_its_final_slash() {
    let dir = tempfile::tempdir().unwrap();
    let out = wharf_in(
        dir.path(),
        &[("WHARF_WAREHOUSE__ENDPOINT", "https://wms.example.com/web")],
        &["config"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("endpoint = \"https://wms.example.com/web/\""),
        "{}",
        stdout(&out)
    );
}

#[test]
fn wharf_config_prints_the_effective_settings_with_secrets_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wharf.toml");
    std::fs::write(
        &file,
        "listen = \"0.0.0.0:9090\"\n[warehouse]\npassword = \"from-the-file\"\n",
    )
    .unwrap();
    // An unreachable database: `wharf config` must not try to connect.
    let started = Instant::now();
    let out = wharf_in(
        dir.path(),
        &[
            ("DATABASE_URL", "postgres://wharf:s3cret@db.invalid/wharf"),
            ("WHARF_WORKER__BATCH_SIZE", "7"),
        ],
        &["config"],
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!(
            "# The settings in effect: built-in defaults < {} < the environment.",
            file.display()
        )),
        "{text}"
    );
    for line in [
        "database_url = \"postgres://wharf:***@db.invalid/wharf\"",
        "listen = \"0.0.0.0:9090\"",
        "batch_size = 7",
        "password = \"***\"",
        "[warehouse.orders]",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line:?} missing in\n{text}"
        );
    }
    assert!(
        !text.contains("s3cret") && !text.contains("from-the-file"),
        "{text}"
    );

    // Settings that would not start are printed, then refused.
    let out = wharf_in(
        dir.path(),
        &[("WHARF_WAREHOUSE__PRODUCTS__SCHEDULE", "61 * * * *")],
        &["config"],
    );
    assert!(!out.status.success());
    assert!(stdout(&out).contains("schedule = \"61 * * * *\""));
    assert!(
        stderr(&out).contains("invalid setting warehouse.products.schedule"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn wharf_config_defaults_is_a_complete_settings_file() {
    let dir = tempfile::tempdir().unwrap();
    // Printed even when the environment holds a broken setting.
    let out = wharf_in(
        dir.path(),
        &[("WHARF_WORKER__BATCH_SIZE", "lots")],
        &["config", "--defaults"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let defaults = stdout(&out);
    assert!(
        defaults.contains("# env: WHARF_WORKER__BATCH_SIZE\nbatch_size = 100\n"),
        "{defaults}"
    );
    assert!(
        defaults.contains("# public_url = \"https://wharf.example.com\""),
        "{defaults}"
    );
    assert!(defaults.contains("\n[warehouse.orders]\n"), "{defaults}");

    // Read back as a settings file, it changes nothing.
    std::fs::write(dir.path().join("wharf.toml"), &defaults).unwrap();
    let with_file = stdout(&wharf_in(dir.path(), &[], &["config"]));
    let other = tempfile::tempdir().unwrap();
    let without = stdout(&wharf_in(other.path(), &[], &["config"]));
    let body = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("database_url"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(body(&with_file), body(&without));
    // The relative default database is next to the file.
    assert!(
        with_file.contains(&format!(
            "database_url = \"sqlite://{}\"",
            dir.path().join("wharf.db").display()
        )),
        "{with_file}"
    );
}

#[test]
fn logs_through_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = wharf_in(dir.path(), &[], &["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(log.contains(" INFO "), "{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in {log:?}");
}

/// Every dotted key `wharf config --defaults` writes (commented-out ones included).
fn documented_keys() -> Vec<String> {
    let mut keys = Vec::new();
    let mut section = String::new();
    for line in wharf::config::defaults_toml().lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = format!("{name}.");
        } else if let Some((name, _)) = line.trim_start_matches("# ").split_once(" = ")
            && !name.contains(' ')
        {
            keys.push(format!("{section}{name}"));
        }
    }
    keys
}

#[test]
fn the_readme_settings_table_names_real_settings_and_their_variables() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("## Configuration")
        .expect("a Configuration section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    assert!(section.contains("wharf config --defaults"));
    let keys = documented_keys();
    let rows: Vec<(String, String)> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(|c| c.trim().trim_matches('`')).collect();
            (cells[1].to_string(), cells[2].to_string())
        })
        .collect();
    assert!(rows.len() >= 10, "{rows:?}");
    for (key, var) in rows {
        assert!(
            keys.contains(&key),
            "the README lists `{key}`, which is not a setting"
        );
        assert_eq!(var, wharf::config::env_var(&key), "README row for {key}");
    }
}
