//! A warehouse on files, end to end against the real sshd: the order file wharf writes is valid
//! under `schemas/orders-file.xsd`; the warehouse answers with a shipment file valid under
//! `schemas/shipment-file.xsd`, built from what the order file says; wharf reads it, the worker
//! applies it, and the order is complete with its tracking number — the schemas document exactly
//! what is written and read (checked by libxml2's `xmllint`, which `.ci/run` installs).

use std::process::Command;

use reqwest::Method;
use wharf::channels::sftp::{FileChannel, export, import};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, element_text};
use crate::sshd::Sshd;

both_backends!(an_order_goes_out_in_a_file_and_its_shipment_file_completes_it);

/// Validates file `path` against schema `schema` (a path from the repository's root).
fn validate(schema: &str, path: &std::path::Path) {
    let schema = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(schema);
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&schema)
        .arg(path)
        .output()
        .expect("xmllint (Debian's libxml2-utils; .ci/run installs it)");
    assert!(
        out.status.success(),
        "{} is not valid under {}:\n{}",
        path.display(),
        schema.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn an_order_goes_out_in_a_file_and_its_shipment_file_completes_it(backend: Backend) {
    let sshd = Sshd::start();
    let c = sshd.channel("dropbox");
    let channel = c.clone();
    let app = TestApp::spawn_with(backend, move |s| s.channels.push(channel)).await;
    let (status, body) = app.put_order("F-1", &[("MUG", 2), ("CUP", 1)]).await;
    assert_eq!(status, 201, "{body}");
    let files = FileChannel::new(app.pool.clone(), app.settings.clone(), c);
    let out = export::run_once(&files).await.unwrap();
    assert_eq!(out.files.len(), 1, "{out:?}");
    let name = &out.files[0];
    validate("schemas/orders-file.xsd", &sshd.root.join("out").join(name));

    // The warehouse reads the order file and ships what it lists.
    let doc = String::from_utf8(sshd.read(&format!("out/{name}"))).unwrap();
    let order = element_text(&doc, "increment_id").unwrap();
    let lines: String = doc
        .split("<line>")
        .skip(1)
        .map(|l| {
            let (sku, qty) = (
                element_text(l, "sku").unwrap(),
                element_text(l, "qty").unwrap(),
            );
            format!("<line><sku>{sku}</sku><qty>{qty}</qty></line>")
        })
        .collect();
    let shipment = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<shipment>\
         <order_increment_id>{order}</order_increment_id><lines>{lines}</lines>\
         <tracking_numbers><tracking_number>TRK-F-1</tracking_number></tracking_numbers>\
         <courier_name>DPD</courier_name><date_shipped>2026-12-04T10:15:00Z</date_shipped>\
         </shipment>\n"
    );
    sshd.put("in/ship_F-1.xml", &shipment);
    validate(
        "schemas/shipment-file.xsd",
        &sshd.root.join("in/ship_F-1.xml"),
    );
    let read = import::run_once(&files).await.unwrap();
    assert_eq!(read.applied, 1, "{read:?}");
    app.drain().await;
    let (status, o) = app.api(Method::GET, "/orders/F-1", None).await;
    assert_eq!(status, 200, "{o}");
    assert_eq!(o["status"], "complete", "{o}");
    assert_eq!(o["export"]["status"], "exported", "{o}");
    assert_eq!(o["tracking_numbers"], serde_json::json!(["TRK-F-1"]), "{o}");
    assert!(sshd.files("in").is_empty() && sshd.files("in/processing").is_empty());
}
