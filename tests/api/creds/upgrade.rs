//! Upgrading a database written by a version that stored credentials in clear: they are masked when
//! the new version migrates, and the hashes recomputed so that a re-send of an old message after a
//! new login is still recognised as a repeat.

use std::sync::Arc;

use diesel::prelude::*;
use diesel_migrations::{FileBasedMigrations, MigrationHarness};
use wharf::db::DbConnection;
use wharf::db::schema::{rejections, request_lines, requests};

use super::{listed_ids, listed_row, stored_anywhere, wharf_ok};
use crate::both_backends;
use crate::helpers::{
    Backend, PASSWORD, TestApp, TestDb, USER, element_text, inventory_envelope, login_envelope,
    test_settings,
};

both_backends!(credentials_stored_by_an_earlier_version_are_masked_on_upgrade);

/// The first migration that masks stored credentials; the database is built up to just before it.
const MASKING_MIGRATION: &str = "2026-12-01-000008";

const OLD_SESSION_1: &str = "0ld5e55i0n0ne0123456789abcdef0123456789abcdef0123456789abcdef01";
const OLD_SESSION_2: &str = "0ld5e55i0ntw00123456789abcdef0123456789abcdef0123456789abcdef02";
const OLD_PASSWORD: &str = "Old-Rejected-Password-42";

fn migrate_before_masking(conn: &mut DbConnection, backend: Backend) {
    let dir = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let source =
        FileBasedMigrations::from_path(format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR")))
            .unwrap();
    macro_rules! run_before {
        ($c:expr) => {{
            for m in $c.pending_migrations(source).unwrap() {
                if m.name().to_string().as_str() < MASKING_MIGRATION {
                    $c.run_migration(&*m).unwrap();
                }
            }
        }};
    }
    match conn {
        DbConnection::Postgresql(c) => run_before!(c),
        DbConnection::Sqlite(c) => run_before!(c),
    }
}

/// What the earlier version stored: the body as received and the hash of that body.
fn store_old_request(conn: &mut DbConnection, body: &str, conflict: bool) -> i64 {
    use sha2::Digest;
    let now = wharf::db::now();
    let id: i64 = wharf::with_backend!(conn, |c| diesel::insert_into(requests::table)
        .values((
            requests::operation.eq("inventory.update"),
            requests::message_seq_id.eq(5),
            requests::caller.eq(USER),
            requests::body.eq(body),
            requests::body_hash.eq(hex::encode(sha2::Sha256::digest(body.as_bytes()))),
            requests::line_count.eq(1),
            requests::state.eq("processed"),
            requests::attempts.eq(1),
            requests::next_attempt_at.eq(now),
            requests::received_at.eq(now),
            requests::receipts.eq(1),
            requests::conflict.eq(conflict),
        ))
        .returning(requests::id)
        .get_result(c))
    .unwrap();
    diesel::insert_into(request_lines::table)
        .values((
            request_lines::request_id.eq(id),
            request_lines::line_no.eq(1),
            request_lines::sku.eq("A"),
            request_lines::source.eq("default"),
            request_lines::qty.eq(5),
            request_lines::seq.eq(Some(10i64)),
        ))
        .execute(conn)
        .unwrap();
    id
}

async fn credentials_stored_by_an_earlier_version_are_masked_on_upgrade(backend: Backend) {
    let db = TestDb::new(backend);
    let url = db.url.clone();
    let (first, second) = tokio::task::spawn_blocking(move || {
        let pool = wharf::db::connect(&url, 1).unwrap();
        let mut conn = pool.get().unwrap();
        migrate_before_masking(&mut conn, backend);
        let body = |s| inventory_envelope(s, 5, &[("A", 5, 10)]);
        let first = store_old_request(&mut conn, &body(OLD_SESSION_1), false);
        // The same message re-sent after a new login: stored as a conflict by the earlier version.
        let second = store_old_request(&mut conn, &body(OLD_SESSION_2), true);
        diesel::insert_into(rejections::table)
            .values((
                rejections::received_at.eq(wharf::db::now()),
                rejections::operation.eq("login"),
                rejections::reason.eq("Access denied."),
                rejections::body_excerpt.eq(login_envelope(USER, OLD_PASSWORD)),
            ))
            .execute(&mut *conn)
            .unwrap();
        (first, second)
    })
    .await
    .unwrap();

    // The new version starts: it migrates and masks.
    let app = start_on(db).await;
    for secret in [OLD_SESSION_1, OLD_SESSION_2, OLD_PASSWORD] {
        assert_eq!(
            stored_anywhere(&app, backend, secret).await,
            Vec::<String>::new(),
            "{secret} is still stored"
        );
    }
    for id in [first, second] {
        let shown = wharf_ok(&app, &["requests", "show", &id.to_string()]).await;
        assert!(
            shown.contains("<sessionId xsi:type=\"xsd:string\">***</sessionId>"),
            "{shown}"
        );
        assert!(
            shown.contains("<value xsi:type=\"xsd:int\">5</value>"),
            "{shown}"
        );
    }
    let rejected = wharf_ok(&app, &["requests", "rejected", "--body"]).await;
    assert!(
        rejected.contains("<apiKey xsi:type=\"xsd:string\">***</apiKey>"),
        "{rejected}"
    );

    // The warehouse logs in and re-sends the old message: a repeat of the first copy.
    let s = app.login().await;
    let (status, body) = app.send_inventory(&s, 5, &[("A", 5, 10)]).await;
    assert_eq!(status, 200);
    assert_eq!(
        element_text(&body, "result").as_deref(),
        Some("Success - Message 5 Received")
    );
    let list = wharf_ok(&app, &["requests", "list"]).await;
    assert_eq!(
        listed_ids(&list),
        vec![second, first],
        "nothing queued: {list}"
    );
    assert_eq!(
        listed_row(&list, first).split_whitespace().nth(9),
        Some("2"),
        "{list}"
    );
    assert_eq!(app.drain().await, 0);

    // Migrating again changes nothing.
    let again = wharf_ok(&app, &["migrate"]).await;
    assert_eq!(again.trim(), "database is up to date");
}

/// Starts the server on an existing database, as an upgrade would.
async fn start_on(db: TestDb) -> TestApp {
    wharf::tls::install_crypto_provider();
    let settings = test_settings(&db.url);
    let app = wharf::Application::build(settings.clone()).await.unwrap();
    let base = format!("http://{}", app.addr());
    let pool = app.pool();
    tokio::spawn(app.run_until_stopped());
    let p = pool.clone();
    let token = tokio::task::spawn_blocking(move || {
        let mut conn = p.get().unwrap();
        wharf::auth::add_user(&mut conn, USER, PASSWORD, "warehouse").unwrap();
        wharf::auth::add_token(&mut conn, "storefront").unwrap()
    })
    .await
    .unwrap();
    TestApp {
        base,
        pool,
        settings: Arc::new(settings),
        client: reqwest::Client::new(),
        token,
        db,
    }
}
