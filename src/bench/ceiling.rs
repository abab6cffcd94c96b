//! The ceilings a service figure is compared with, measured on the same machine and token:
//! raw AES-GCM seal and unseal of a 32-byte key in the root of trust (as many threads as the
//! server has sessions, no gRPC, no async boundary), and an empty RPC (the health check)
//! through the same server.

use crate::backend::RootOfTrust;
use crate::config::Config;
use crate::crypto::envelope::{HEADER_LEN, NONCE_LEN};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[derive(Debug, Clone, Serialize)]
pub struct Ceilings {
    pub sessions: usize,
    /// Raw seals per second of a 32-byte data key (GenerateDataKey's hardware call).
    pub root_seal_ops: f64,
    /// Raw unseals per second (Decrypt's hardware call).
    pub root_unseal_ops: f64,
    /// Health checks per second through the server: the transport's ceiling.
    pub empty_rpc_ops: f64,
}

/// Runs `call` on `threads` threads until `duration` passes; returns calls per second.
fn rate(threads: usize, duration: Duration, call: impl Fn() -> bool + Sync) -> f64 {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let total: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut n = 0u64;
                    while Instant::now() < deadline && call() {
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    });
    total as f64 / started.elapsed().as_secs_f64()
}

/// Seal and unseal rates in the configured root of trust, with a throwaway key it creates and
/// destroys. Blocking.
pub fn root_of_trust(config: &Config, duration: Duration) -> Result<(usize, f64, f64), String> {
    // A second connection to the server's TPM would wait forever behind the server's own on
    // a raw swtpm socket, and would disturb the server's single context on a real one.
    if matches!(
        config.root_of_trust,
        crate::config::RootOfTrustConfig::Tpm(_)
    ) {
        return Err(
            "--ceiling measures a PKCS#11 token beside the running server; with a TPM, compare \
             runs of the server itself (see README, On a TPM)"
                .into(),
        );
    }
    let (root, sessions): (Arc<dyn RootOfTrust>, usize) =
        crate::server::connect_root_of_trust(config).map_err(|e| e.to_string())?;
    let key = root
        .create_key("keyward bench ceiling", &Default::default())
        .map_err(|e| e.to_string())?;
    let nonce = [7u8; NONCE_LEN];
    // The same AAD size as a real request: the header and an empty encryption context.
    let aad = [1u8; HEADER_LEN + 4];
    let data_key = [9u8; 32];
    let outcome = (|| {
        let sealed = root
            .seal(&key, &nonce, &aad, &data_key)
            .map_err(|e| e.to_string())?;
        let seal = rate(sessions, duration, || {
            root.seal(&key, &nonce, &aad, &data_key).is_ok()
        });
        let unseal = rate(sessions, duration, || {
            root.unseal(&key, &nonce, &aad, &sealed).is_ok()
        });
        Ok((sessions, seal, unseal))
    })();
    if let Err(e) = root.destroy_key(&key) {
        eprintln!("warning: could not destroy the ceiling's throwaway key: {e}");
    }
    outcome
}

/// Health checks per second with `concurrency` in flight.
pub async fn empty_rpc(
    endpoint: &crate::cli::client::Connect,
    concurrency: usize,
    connections: usize,
    duration: Duration,
) -> Result<f64, String> {
    let clients: Vec<_> =
        crate::cli::client::spread(endpoint, connections.clamp(1, concurrency.max(1)))
            .await?
            .into_iter()
            .map(HealthClient::new)
            .collect();
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..concurrency.max(1) {
        let mut client = clients[i % clients.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                if client.check(HealthCheckRequest::default()).await.is_err() {
                    break;
                }
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.map_err(|e| e.to_string())?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
