//! Storing orders through the storefront API for the file channel benchmarks.

use anyhow::bail;

/// PUTs `order` under each of `ids` at `base` (`/api/v1/orders/{id}`), `concurrency` at a time,
/// and fails unless every one is created (201).
pub async fn put_orders(
    base: &str,
    token: &str,
    ids: &[String],
    order: &serde_json::Value,
    concurrency: usize,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for chunk in ids.chunks(concurrency.max(1)) {
        let mut puts = tokio::task::JoinSet::new();
        for id in chunk {
            let (client, url) = (client.clone(), format!("{base}/api/v1/orders/{id}"));
            let (token, id, order) = (token.to_string(), id.clone(), order.clone());
            puts.spawn(async move {
                let resp = client.put(url).bearer_auth(token).json(&order).send().await;
                (id, resp.map(|r| r.status().as_u16()))
            });
        }
        while let Some(done) = puts.join_next().await {
            let (id, got) = done?;
            let got = got?;
            if got != 201 {
                bail!("PUT order {id}: HTTP {got}, expected 201");
            }
        }
    }
    Ok(())
}
