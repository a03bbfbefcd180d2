//! The Standard Webhooks signature (<https://www.standardwebhooks.com>) every affiliate request
//! carries, so the receiver knows it comes from wharf and was not altered or replayed later:
//!
//! - `webhook-id`: the message id (for a push, its idempotency key);
//! - `webhook-timestamp`: when it was signed, in unix seconds (a receiver refuses old ones);
//! - `webhook-signature`: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, the key being
//!   the decoded bytes of the channel's `whsec_<base64>` secret.
//!
//! HMAC-SHA256 comes from `ring::hmac`: ring is already rustls's crypto provider in the tree, so no
//! second crypto crate is built for it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The header with the message id.
pub const ID: &str = "webhook-id";
/// The header with the signing time.
pub const TIMESTAMP: &str = "webhook-timestamp";
/// The header with the signature.
pub const SIGNATURE: &str = "webhook-signature";

/// A channel's signing key.
pub struct Signer {
    key: ring::hmac::Key,
}

impl Signer {
    /// A signer keyed by `key` (the decoded bytes of the `whsec_` secret).
    pub fn new(key: &[u8]) -> Signer {
        Signer {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
        }
    }

    /// The `webhook-signature` value of `body` sent as message `id` at `timestamp`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut ctx = ring::hmac::Context::with_key(&self.key);
        ctx.update(id.as_bytes());
        ctx.update(b".");
        ctx.update(timestamp.to_string().as_bytes());
        ctx.update(b".");
        ctx.update(body);
        format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_standard_webhooks_reference_implementations() {
        // The test vector the Standard Webhooks libraries share: a receiver using any of them
        // accepts what wharf signs.
        let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signer = Signer::new(&key);
        assert_eq!(
            signer.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn the_signature_covers_id_timestamp_and_body() {
        let signer = Signer::new(b"key");
        let base = signer.sign("id", 1, b"{}");
        assert_ne!(base, signer.sign("id2", 1, b"{}"));
        assert_ne!(base, signer.sign("id", 2, b"{}"));
        assert_ne!(base, signer.sign("id", 1, b"{ }"));
        assert_ne!(base, Signer::new(b"other").sign("id", 1, b"{}"));
    }
}
