//! The Magento 1 WSDL, served with the address rewritten and nothing to fetch from the internet.

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

both_backends!(magento1_wsdl_is_served_with_our_address);

async fn magento1_wsdl_is_served_with_our_address(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (path, address) in [
        ("/soap?wsdl", "/soap"),
        ("/api/v2_soap?wsdl=1", "/api/v2_soap"),
        ("/api/v2_soap/index/?wsdl=1", "/api/v2_soap/index/"),
    ] {
        let resp = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let wsdl = resp.text().await.unwrap();
        assert!(
            wsdl.contains(&format!("location=\"{}{address}\"", app.base)),
            "{path}: address not rewritten"
        );
        assert!(!wsdl.contains("{{"), "{path}: placeholder left");
        // Every location a client would follow is ours: no schema or WSDL import from elsewhere.
        for (i, _) in wsdl.match_indices("ocation=\"") {
            let target = &wsdl[i + 9..];
            assert!(
                target.starts_with(&app.base),
                "{path}: points outside: {}",
                &target[..40.min(target.len())]
            );
        }
        for op in [
            "login",
            "endSession",
            "orderflowInventoryMultiUpdate",
            "orderflowShipmentCreate",
        ] {
            assert!(
                wsdl.contains(&format!("<operation name=\"{op}\""))
                    || wsdl.contains(&format!("<wsdl:operation name=\"{op}\"")),
                "{path}: {op} missing"
            );
        }
    }
    let resp = app
        .client
        .get(format!("{}/soap", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}
