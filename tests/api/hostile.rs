//! Hostile input: oversized bodies, too many lines, entity tricks, deep nesting, attribute and
//! namespace floods, bad encodings. Each is refused quickly (the client gives up after 10 s, so a hang
//! fails the test) and stores nothing.

use std::time::Duration;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, faultstring, inventory_envelope};

both_backends!(hostile_messages_are_refused_and_store_nothing);

async fn hostile_messages_are_refused_and_store_nothing(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.soap.max_lines = 100).await;
    let s = app.login().await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let send = |body: Vec<u8>| {
        let client = client.clone();
        let url = format!("{}/soap", app.base);
        async move {
            let resp = client
                .post(url)
                .header("Content-Type", "text/xml")
                .body(body)
                .send()
                .await
                .expect("answered before the timeout");
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        }
    };

    // Larger than the 10 MiB default body limit.
    let mut big = inventory_envelope(&s, 1, &[("A", 1, 1)]).into_bytes();
    big.extend(std::iter::repeat_n(b' ', 10 * 1024 * 1024));
    let (status, _) = send(big).await;
    assert_eq!(status, 413);

    let lines: Vec<(String, i64, i64)> = (0..101).map(|i| (format!("L{i}"), 1, 1)).collect();
    let lines: Vec<(&str, i64, i64)> = lines.iter().map(|(a, b, c)| (a.as_str(), *b, *c)).collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "too many lines",
            inventory_envelope(&s, 2, &lines).into_bytes(),
            "more than the limit of 100",
        ),
        (
            "entity expansion",
            format!(
                "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;\">]>{}",
                inventory_envelope(&s, 3, &[("&lol2;", 1, 1)])
            )
            .into_bytes(),
            "DOCTYPE and entity declarations are not allowed",
        ),
        (
            "external entity",
            format!(
                "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>{}",
                inventory_envelope(&s, 4, &[("&xxe;", 1, 1)])
            )
            .into_bytes(),
            "DOCTYPE and entity declarations are not allowed",
        ),
        (
            "undeclared entity",
            inventory_envelope(&s, 5, &[("&bogus;", 1, 1)]).into_bytes(),
            "unknown entity reference &bogus;",
        ),
        (
            "deep nesting",
            format!(
                "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\"><SOAP-ENV:Body>{}{}</SOAP-ENV:Body></SOAP-ENV:Envelope>",
                "<a>".repeat(100_000),
                "</a>".repeat(100_000)
            )
            .into_bytes(),
            "nested deeper than",
        ),
        (
            "attribute flood",
            format!(
                "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\"><SOAP-ENV:Body><x {}/></SOAP-ENV:Body></SOAP-ENV:Envelope>",
                (0..200_000).map(|i| format!("a{i}=\"1\"")).collect::<Vec<_>>().join(" ")
            )
            .into_bytes(),
            "attributes",
        ),
        (
            "namespace flood",
            format!(
                "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\" {}><SOAP-ENV:Body/></SOAP-ENV:Envelope>",
                (0..200_000).map(|i| format!("xmlns:n{i}=\"urn:{i}\"")).collect::<Vec<_>>().join(" ")
            )
            .into_bytes(),
            "too many namespaces",
        ),
        (
            "element flood",
            format!(
                "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\"><SOAP-ENV:Body><op>{}</op></SOAP-ENV:Body></SOAP-ENV:Envelope>",
                "<e/>".repeat(500_000)
            )
            .into_bytes(),
            "more than",
        ),
        (
            "invalid UTF-8",
            {
                let mut b = inventory_envelope(&s, 6, &[("A", 1, 1)]).into_bytes();
                let at = b.len() / 2;
                b.insert(at, 0xff);
                b
            },
            "not valid UTF-8",
        ),
    ];
    for (what, body, expected) in cases {
        let (status, text) = send(body).await;
        assert_eq!(status, 500, "{what}: {text}");
        let reason = faultstring(&text);
        assert!(
            reason.contains(expected),
            "{what}: expected {expected:?} in {reason:?}"
        );
    }
    assert_eq!(app.queue_depth().await, vec![]);
    assert_eq!(app.stock_of("A").await, None);
}
