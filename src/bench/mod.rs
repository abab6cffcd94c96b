//! `keyward bench`: a load generator against a running server, in the binary so that it
//! measures the real client path (tonic, HTTP/2, the server's hardware boundary).
//!
//! It prepares what its operation needs (a KMS key, a blob, secrets), runs `concurrency` workers
//! over a few connections (spread round-robin over the `--endpoint` addresses) for a duration or a number of requests, and reports throughput,
//! latency percentiles and errors by AWS exception name.

pub mod ceiling;
pub mod report;
pub mod scale;

use crate::api::pb::{
    self, key_management_service_client::KeyManagementServiceClient,
    secrets_manager_service_client::SecretsManagerServiceClient,
};
use crate::api::status::exception_name;
use crate::cli::client::Conn;
use clap::ValueEnum;
use report::Report;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Op {
    GenerateDataKey,
    Decrypt,
    Encrypt,
    GetSecretValue,
    PutSecretValue,
    CreateSecret,
    /// 80 % GetSecretValue, 10 % GenerateDataKey, 5 % Decrypt, 5 % PutSecretValue.
    Mixed,
}

impl Op {
    /// The ceiling this operation's throughput is compared with, if any.
    pub fn ceiling(self, c: &ceiling::Ceilings) -> Option<(&'static str, f64)> {
        match self {
            Self::GenerateDataKey | Self::Encrypt => Some(("root-of-trust seal", c.root_seal_ops)),
            Self::Decrypt => Some(("root-of-trust unseal", c.root_unseal_ops)),
            // With the data-key cache warm a read makes no hardware call.
            Self::GetSecretValue => Some(("empty RPC", c.empty_rpc_ops)),
            Self::PutSecretValue | Self::CreateSecret | Self::Mixed => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::GenerateDataKey => "generate-data-key",
            Self::Decrypt => "decrypt",
            Self::Encrypt => "encrypt",
            Self::GetSecretValue => "get-secret-value",
            Self::PutSecretValue => "put-secret-value",
            Self::CreateSecret => "create-secret",
            Self::Mixed => "mixed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub op: Op,
    pub concurrency: usize,
    pub connections: usize,
    /// Stop after this many requests (else after `duration`).
    pub requests: Option<u64>,
    pub duration: Duration,
    pub warmup: Duration,
    pub value_size: usize,
    /// The server's metrics endpoint, to report root-of-trust calls per request.
    pub metrics: Option<String>,
    /// Sites the secrets this run creates are replicated to.
    pub replica_regions: Vec<String>,
}

/// The counters the report derives server-side figures from.
struct Snapshot {
    calls: f64,
    hits: f64,
    misses: f64,
}

async fn snapshot(metrics: &str) -> Result<Snapshot, String> {
    let text = crate::metrics::fetch(metrics).await?;
    let value =
        |name| crate::metrics::value_of(&text, name).ok_or_else(|| format!("metrics lack {name}"));
    Ok(Snapshot {
        calls: value("keyward_root_of_trust_calls_total")?,
        hits: value("keyward_data_key_cache_hits_total")?,
        misses: value("keyward_data_key_cache_misses_total")?,
    })
}

fn server_side(before: &Snapshot, after: &Snapshot, requests: u64) -> report::ServerSide {
    let reads = (after.hits - before.hits) + (after.misses - before.misses);
    report::ServerSide {
        root_of_trust_calls_per_request: (after.calls - before.calls) / requests.max(1) as f64,
        data_key_cache_hit_rate: (reads > 0.0).then(|| (after.hits - before.hits) / reads),
    }
}

/// What the workers use, made once before the run.
struct Target {
    key_id: String,
    blob: Vec<u8>,
    hot_secret: String,
    value: String,
    /// Distinguishes this run's secrets from earlier runs' on the same server.
    run: String,
    replicas: Vec<pb::ReplicaRegionType>,
}

#[derive(Clone)]
struct Clients {
    kms: KeyManagementServiceClient<Conn>,
    sm: SecretsManagerServiceClient<Conn>,
}

const BENCH_KEY_ALIAS: &str = "alias/keyward/bench";
/// A secret holds at most 200 versions younger than a day: writers move on after this many.
const VERSIONS_PER_SECRET: u64 = 150;

async fn prepare(clients: &mut Clients, options: &Options) -> Result<Target, String> {
    let describe = |e: tonic::Status| format!("{}: {}", exception_name(&e), e.message());
    let key_id = match clients
        .kms
        .describe_key(pb::DescribeKeyRequest {
            key_id: BENCH_KEY_ALIAS.into(),
        })
        .await
    {
        Ok(found) => found
            .into_inner()
            .key_metadata
            .map(|m| m.key_id)
            .unwrap_or_default(),
        Err(_) => {
            let created = clients
                .kms
                .create_key(pb::CreateKeyRequest {
                    description: "keyward bench".into(),
                    ..Default::default()
                })
                .await
                .map_err(describe)?
                .into_inner()
                .key_metadata
                .map(|m| m.key_id)
                .unwrap_or_default();
            clients
                .kms
                .create_alias(pb::CreateAliasRequest {
                    alias_name: BENCH_KEY_ALIAS.into(),
                    target_key_id: created.clone(),
                })
                .await
                .map_err(describe)?;
            created
        }
    };
    let blob = clients
        .kms
        .generate_data_key(pb::GenerateDataKeyRequest {
            key_id: key_id.clone(),
            key_spec: "AES_256".into(),
            ..Default::default()
        })
        .await
        .map_err(describe)?
        .into_inner()
        .ciphertext_blob;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let value = "v".repeat(options.value_size.clamp(1, 65_536));
    let hot_secret = format!("bench/{run}/hot");
    clients
        .sm
        .create_secret(pb::CreateSecretRequest {
            name: hot_secret.clone(),
            secret_string: Some(value.clone()),
            ..Default::default()
        })
        .await
        .map_err(describe)?;
    Ok(Target {
        key_id,
        blob,
        hot_secret,
        value,
        run,
        replicas: options
            .replica_regions
            .iter()
            .map(|region| pb::ReplicaRegionType {
                region: region.clone(),
                kms_key_id: String::new(),
            })
            .collect(),
    })
}

/// One request of `op`; `worker` and `n` (the worker's request count) name what it writes.
async fn request(
    clients: &mut Clients,
    target: &Target,
    op: Op,
    worker: usize,
    n: u64,
) -> Result<(), tonic::Status> {
    // In a mixed run each kind of request counts its own requests, so writes still start
    // each secret with a create.
    let (op, n) = match op {
        Op::Mixed => match n % 20 {
            0 | 1 => (Op::GenerateDataKey, n),
            2 => (Op::Decrypt, n),
            3 => (Op::PutSecretValue, n / 20),
            _ => (Op::GetSecretValue, n),
        },
        op => (op, n),
    };
    match op {
        Op::GenerateDataKey => clients
            .kms
            .generate_data_key(pb::GenerateDataKeyRequest {
                key_id: target.key_id.clone(),
                key_spec: "AES_256".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        Op::Decrypt => clients
            .kms
            .decrypt(pb::DecryptRequest {
                ciphertext_blob: target.blob.clone(),
                ..Default::default()
            })
            .await
            .map(drop),
        Op::Encrypt => clients
            .kms
            .encrypt(pb::EncryptRequest {
                key_id: target.key_id.clone(),
                plaintext: target.value.as_bytes()[..target.value.len().min(4096)].to_vec(),
                ..Default::default()
            })
            .await
            .map(drop),
        Op::GetSecretValue => clients
            .sm
            .get_secret_value(pb::GetSecretValueRequest {
                secret_id: target.hot_secret.clone(),
                ..Default::default()
            })
            .await
            .map(drop),
        Op::PutSecretValue => {
            let name = format!("bench/{}/w{worker}/{}", target.run, n / VERSIONS_PER_SECRET);
            let token = format!("{}-{worker:0>8}-{n:0>20}", target.run);
            if n % VERSIONS_PER_SECRET == 0 {
                clients
                    .sm
                    .create_secret(pb::CreateSecretRequest {
                        name,
                        client_request_token: token,
                        secret_string: Some(target.value.clone()),
                        add_replica_regions: target.replicas.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(drop)
            } else {
                clients
                    .sm
                    .put_secret_value(pb::PutSecretValueRequest {
                        secret_id: name,
                        client_request_token: token,
                        secret_string: Some(target.value.clone()),
                        ..Default::default()
                    })
                    .await
                    .map(drop)
            }
        }
        Op::CreateSecret | Op::Mixed => clients
            .sm
            .create_secret(pb::CreateSecretRequest {
                name: format!("bench/{}/c/{worker}/{n}", target.run),
                secret_string: Some(target.value.clone()),
                add_replica_regions: target.replicas.clone(),
                ..Default::default()
            })
            .await
            .map(drop),
    }
}

/// The AWS exception name, or the gRPC code for failures that never reached a handler.
fn error_name(status: &tonic::Status) -> String {
    status
        .metadata()
        .get(crate::api::status::ERROR_METADATA)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{:?}", status.code()))
}

struct WorkerResult {
    samples: Vec<u64>,
    errors: BTreeMap<String, u64>,
}

/// Runs the bench against `endpoint` and returns its report.
pub async fn run(
    endpoint: &crate::cli::client::Connect,
    options: Options,
) -> Result<Report, String> {
    let count = options.connections.clamp(1, options.concurrency.max(1));
    let mut connections = Vec::new();
    for channel in crate::cli::client::spread(endpoint, count).await? {
        connections.push(Clients {
            kms: KeyManagementServiceClient::new(channel.clone()),
            sm: SecretsManagerServiceClient::new(channel),
        });
    }
    let target = Arc::new(prepare(&mut connections[0], &options).await?);

    if options.requests.is_none() && !options.warmup.is_zero() {
        let warm_until = Instant::now() + options.warmup;
        let mut warmers = Vec::new();
        for worker in 0..options.concurrency {
            let mut clients = connections[worker % connections.len()].clone();
            let target = Arc::clone(&target);
            let op = options.op;
            warmers.push(tokio::spawn(async move {
                let mut n = 1_000_000_000;
                while Instant::now() < warm_until {
                    let _ = request(&mut clients, &target, op, worker, n).await;
                    n += 1;
                }
            }));
        }
        for warmer in warmers {
            let _ = warmer.await;
        }
    }

    let before = match &options.metrics {
        Some(metrics) => Some(snapshot(metrics).await?),
        None => None,
    };
    let claimed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + options.duration;
    let progress = std::io::stderr().is_terminal().then(|| {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = done.load(Ordering::Relaxed);
                eprint!("\r  {:>9} ops/s   {:>10} done ", now - last, now);
                last = now;
            }
        })
    });
    let mut workers = Vec::new();
    for worker in 0..options.concurrency.max(1) {
        let mut clients = connections[worker % connections.len()].clone();
        let target = Arc::clone(&target);
        let (claimed, done) = (Arc::clone(&claimed), Arc::clone(&done));
        let (op, requests) = (options.op, options.requests);
        workers.push(tokio::spawn(async move {
            let mut result = WorkerResult {
                samples: Vec::new(),
                errors: BTreeMap::new(),
            };
            let mut n = 0;
            loop {
                let more = match requests {
                    Some(total) => claimed.fetch_add(1, Ordering::Relaxed) < total,
                    None => Instant::now() < deadline,
                };
                if !more {
                    return result;
                }
                let sent = Instant::now();
                match request(&mut clients, &target, op, worker, n).await {
                    Ok(()) => result.samples.push(sent.elapsed().as_micros() as u64),
                    Err(status) => *result.errors.entry(error_name(&status)).or_default() += 1,
                }
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut samples = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for worker in workers {
        let result = worker
            .await
            .map_err(|e| format!("bench worker failed: {e}"))?;
        samples.extend(result.samples);
        for (name, count) in result.errors {
            *errors.entry(name).or_default() += count;
        }
    }
    let elapsed = started.elapsed();
    if let Some(progress) = progress {
        progress.abort();
        eprintln!();
    }
    let mut report = Report::new(
        options.op.name(),
        options.concurrency,
        elapsed,
        samples,
        errors,
    );
    if let (Some(metrics), Some(before)) = (&options.metrics, before) {
        let after = snapshot(metrics).await?;
        report.server = Some(server_side(&before, &after, report.requests));
    }
    Ok(report)
}
