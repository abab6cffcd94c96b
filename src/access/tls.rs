//! TLS on the gRPC listener (rustls through tonic): the server's certificate and, when a
//! client CA is configured, required client certificates. rustls checks the chain and the
//! validity dates during the handshake; a client without an acceptable certificate never
//! reaches a handler.

use crate::config::TlsConfig;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// Makes ring the process's TLS crypto provider. rustls picks one by itself only when exactly
/// one is compiled in; a build that also links aws-lc-rs (the AWS SDKs in the tests) would
/// otherwise fail every handshake. Idempotent.
pub fn use_ring() {
    // Err means a provider is already installed, which is all that is needed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads a PEM file named by the setting `setting`, checking it holds a `marker` block: tonic
/// reports a bad PEM only at the first handshake, so say it at start instead.
pub fn read_pem(path: &std::path::Path, setting: &str, marker: &str) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{setting} {}: {e}", path.display()))?;
    if !String::from_utf8_lossy(&pem).contains(marker) {
        return Err(format!("{setting}: no PEM {marker} found"));
    }
    Ok(pem)
}

pub fn server_config(tls: &TlsConfig) -> Result<ServerTlsConfig, String> {
    use_ring();
    let cert = read_pem(&tls.cert_file, "tls.cert_file", "CERTIFICATE")?;
    let key = read_pem(&tls.key_file, "tls.key_file", "PRIVATE KEY")?;
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &tls.client_ca_file {
        let ca = read_pem(ca, "tls.client_ca_file", "CERTIFICATE")?;
        config = config
            .client_ca_root(Certificate::from_pem(ca))
            .client_auth_optional(tls.client_certificate_optional);
    }
    Ok(config)
}
