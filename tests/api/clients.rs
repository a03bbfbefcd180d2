//! Real SOAP clients against the served WSDLs: PHP's SoapClient (Magento 1 rpc/encoded) and Python's
//! zeep (wharf's document/literal WSDL and the Magento 2 WSDL). `.ci/run` installs both.

use std::process::Command;

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, TestApp, USER};

both_backends!(
    php_soapclient_speaks_magento1,
    zeep_speaks_wharf_and_magento2
);

fn run_client(program: &str, script: &str, base: &str) -> String {
    let path = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(program)
        .arg(&path)
        .args([base, USER, PASSWORD])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (install it; .ci/run does): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// messageSeqIds of the shipment messages received.
async fn shipments_received(app: &TestApp) -> Vec<i64> {
    app.with_conn(|c| {
        use diesel::prelude::*;
        use wharf::db::schema::requests;
        requests::table
            .filter(requests::operation.eq(wharf::queue::OP_SHIPMENT))
            .order(requests::message_seq_id)
            .select(requests::message_seq_id)
            .load(c)
            .unwrap()
    })
    .await
}

async fn php_soapclient_speaks_magento1(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Drained, its shipments still wait for their orders, which this test never creates.
    app.expect_leftovers("its shipments wait for orders the test never creates");
    let base = app.base.clone();
    let out = tokio::task::spawn_blocking(move || run_client("php", "m1_soapclient.php", &base))
        .await
        .unwrap();
    assert!(out.contains("Success - Message 9001 Received"), "{out}");
    app.drain().await;
    assert_eq!(app.stock_of("PHP-A").await, Some((11, 101)));
    assert_eq!(app.stock_of("PHP-B").await, Some((12, 102)));
    assert_eq!(
        app.stock_of("PHP-C").await,
        None,
        "the refused message stored nothing"
    );
    assert_eq!(shipments_received(&app).await, vec![9002]);
}

async fn zeep_speaks_wharf_and_magento2(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Drained, its shipments still wait for their orders, which this test never creates.
    app.expect_leftovers("its shipments wait for orders the test never creates");
    let base = app.base.clone();
    let out = tokio::task::spawn_blocking(move || run_client("python3", "zeep_client.py", &base))
        .await
        .unwrap();
    assert!(out.contains("Success - Message 9201 Received"), "{out}");
    app.drain().await;
    assert_eq!(app.stock_of("ZW-A").await, Some((21, 201)));
    assert_eq!(app.stock_of("ZM-A").await, Some((31, 301)));
    assert_eq!(
        app.stock_of("ZW-B").await,
        None,
        "the refused message stored nothing"
    );
    assert_eq!(shipments_received(&app).await, vec![9102, 9202]);
}
