//! One rustls crypto provider (ring) for every TLS client in the process (reqwest now, lettre later).

/// Installs the process-wide provider; later calls do nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
