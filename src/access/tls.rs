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

pub fn server_config(tls: &TlsConfig) -> Result<ServerTlsConfig, String> {
    use_ring();
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).map_err(|e| format!("tls.{what} {}: {e}", path.display()))
    };
    let cert = read(&tls.cert_file, "cert_file")?;
    let key = read(&tls.key_file, "key_file")?;
    for (pem, what, marker) in [
        (&cert, "cert_file", "CERTIFICATE"),
        (&key, "key_file", "PRIVATE KEY"),
    ] {
        // tonic reports a bad PEM only at the first handshake; say it at start instead.
        if !String::from_utf8_lossy(pem).contains(marker) {
            return Err(format!("tls.{what}: no PEM {marker} found"));
        }
    }
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &tls.client_ca_file {
        let ca = read(ca, "client_ca_file")?;
        if !String::from_utf8_lossy(&ca).contains("CERTIFICATE") {
            return Err("tls.client_ca_file: no PEM CERTIFICATE found".into());
        }
        config = config
            .client_ca_root(Certificate::from_pem(ca))
            .client_auth_optional(tls.client_certificate_optional);
    }
    Ok(config)
}
