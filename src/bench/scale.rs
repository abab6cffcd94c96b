//! `keyward bench --scale N`: what a large store costs. Loads N secrets with three versions
//! each (reusing those an earlier run loaded, so a run after a restart measures that
//! restart), then reports the load time, ListSecrets' full pagination, GetSecretValue on one
//! hot secret and spread over all N, and from the server's metrics the store's size on disk,
//! the server's RSS and its start-up time.

use crate::api::pb::{self, secrets_manager_service_client::SecretsManagerServiceClient};
use crate::cli::client::Conn;
use serde::Serialize;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PREFIX: &str = "scale/";
const VERSIONS: usize = 3;

type Client = SecretsManagerServiceClient<Conn>;

pub struct Options {
    pub secrets: usize,
    pub concurrency: usize,
    pub connections: usize,
    pub duration: Duration,
    pub value_size: usize,
    pub metrics: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub secrets: usize,
    /// Present when this run loaded secrets (an earlier run's are reused).
    pub load_seconds: Option<f64>,
    pub load_writes_per_sec: Option<f64>,
    /// Every secret on the server, 100 per page.
    pub list_seconds: f64,
    pub listed: usize,
    pub list_pages: usize,
    pub get_hot_ops_per_sec: f64,
    pub get_spread_ops_per_sec: f64,
    pub store_size_bytes: Option<f64>,
    pub resident_bytes: Option<f64>,
    pub start_seconds: Option<f64>,
}

fn name(i: u64) -> String {
    format!("{PREFIX}{i:07}")
}

/// Deterministic tokens make a repeated load an idempotent retry, not a second version.
fn token(i: u64, version: usize) -> String {
    format!("scale-{i:010}-v{version}-{:-<16}", "")
}

fn describe(status: tonic::Status) -> String {
    crate::cli::client::describe(status)
}

async fn clients(
    endpoint: &crate::cli::client::Connect,
    options: &Options,
) -> Result<Vec<Client>, String> {
    let count = options.connections.clamp(1, options.concurrency.max(1));
    Ok(crate::cli::client::spread(endpoint, count)
        .await?
        .into_iter()
        .map(SecretsManagerServiceClient::new)
        .collect())
}

/// Pages through every secret; returns (secrets, scale secrets, pages).
async fn list_all(client: &mut Client) -> Result<(usize, usize, usize), String> {
    let (mut all, mut ours, mut pages) = (0, 0, 0);
    let mut next_token = String::new();
    loop {
        let page = client
            .list_secrets(pb::ListSecretsRequest {
                max_results: Some(100),
                next_token: next_token.clone(),
                ..Default::default()
            })
            .await
            .map_err(describe)?
            .into_inner();
        pages += 1;
        all += page.secret_list.len();
        ours += page
            .secret_list
            .iter()
            .filter(|s| s.name.starts_with(PREFIX))
            .count();
        if page.next_token.is_empty() {
            return Ok((all, ours, pages));
        }
        next_token = page.next_token;
    }
}

async fn load(clients: &[Client], options: &Options) -> Result<(), String> {
    let next = Arc::new(AtomicU64::new(0));
    let value = Arc::new("s".repeat(options.value_size.clamp(1, 65_536)));
    let total = options.secrets as u64;
    let progress = std::io::stderr().is_terminal().then(|| {
        let next = Arc::clone(&next);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let done = next.load(Ordering::Relaxed).min(total);
                eprint!("\r  loading {done}/{total} secrets ");
            }
        })
    });
    let mut workers = Vec::new();
    for worker in 0..options.concurrency.max(1) {
        let mut client = clients[worker % clients.len()].clone();
        let (next, value) = (Arc::clone(&next), Arc::clone(&value));
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<(), String>(());
                }
                client
                    .create_secret(pb::CreateSecretRequest {
                        name: name(i),
                        client_request_token: token(i, 0),
                        secret_string: Some(value.to_string()),
                        ..Default::default()
                    })
                    .await
                    .map_err(describe)?;
                for version in 1..VERSIONS {
                    client
                        .put_secret_value(pb::PutSecretValueRequest {
                            secret_id: name(i),
                            client_request_token: token(i, version),
                            secret_string: Some(format!("{value}{version}")),
                            ..Default::default()
                        })
                        .await
                        .map_err(describe)?;
                }
            }
        }));
    }
    for worker in workers {
        worker.await.map_err(|e| e.to_string())??;
    }
    if let Some(progress) = progress {
        progress.abort();
        eprintln!();
    }
    Ok(())
}

/// GetSecretValue for `duration`: on one secret, or spread over all (a cheap LCG per worker).
async fn reads(clients: &[Client], options: &Options, spread: bool) -> Result<f64, String> {
    let deadline = Instant::now() + options.duration;
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..options.concurrency.max(1) {
        let mut client = clients[worker % clients.len()].clone();
        let total = options.secrets.max(1) as u64;
        workers.push(tokio::spawn(async move {
            let mut state = (worker as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut done = 0u64;
            while Instant::now() < deadline {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let i = if spread { (state >> 33) % total } else { 0 };
                client
                    .get_secret_value(pb::GetSecretValueRequest {
                        secret_id: name(i),
                        ..Default::default()
                    })
                    .await
                    .map_err(describe)?;
                done += 1;
            }
            Ok::<u64, String>(done)
        }));
    }
    let mut done = 0;
    for worker in workers {
        done += worker.await.map_err(|e| e.to_string())??;
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

pub async fn run(
    endpoint: &crate::cli::client::Connect,
    options: Options,
) -> Result<Report, String> {
    let clients = clients(endpoint, &options).await?;
    let mut first = clients[0].clone();
    let (_, existing, _) = list_all(&mut first).await?;
    let (mut load_seconds, mut load_writes_per_sec) = (None, None);
    if existing < options.secrets {
        let started = Instant::now();
        load(&clients, &options).await?;
        let seconds = started.elapsed().as_secs_f64();
        load_seconds = Some(seconds);
        load_writes_per_sec = Some((options.secrets * VERSIONS) as f64 / seconds);
    }
    let started = Instant::now();
    let (listed, _, list_pages) = list_all(&mut first).await?;
    let list_seconds = started.elapsed().as_secs_f64();
    let get_hot_ops_per_sec = reads(&clients, &options, false).await?;
    let get_spread_ops_per_sec = reads(&clients, &options, true).await?;
    let metric = |text: &Option<String>, name| {
        text.as_deref()
            .and_then(|t| crate::metrics::value_of(t, name))
    };
    let text = match &options.metrics {
        Some(addr) => Some(crate::metrics::fetch(addr).await?),
        None => None,
    };
    Ok(Report {
        secrets: options.secrets,
        load_seconds,
        load_writes_per_sec,
        list_seconds,
        listed,
        list_pages,
        get_hot_ops_per_sec,
        get_spread_ops_per_sec,
        store_size_bytes: metric(&text, "keyward_store_size_bytes"),
        resident_bytes: metric(&text, "process_resident_memory_bytes"),
        start_seconds: metric(&text, "keyward_start_seconds"),
    })
}

impl Report {
    pub fn text(&self) -> String {
        let mb = |b: Option<f64>| b.map_or("-".into(), |b| format!("{:.1} MB", b / 1e6));
        let mut out = format!(
            "scale: {} secrets with {VERSIONS} versions each\n",
            self.secrets
        );
        match (self.load_seconds, self.load_writes_per_sec) {
            (Some(s), Some(w)) => {
                out.push_str(&format!("  load        {s:.1} s ({w:.0} writes/s)\n"))
            }
            _ => out.push_str("  load        reused an earlier run's secrets\n"),
        }
        out.push_str(&format!(
            "  list        {} secrets in {} pages, {:.2} s\n  get         {:.0} ops/s on one secret, {:.0} ops/s spread over all\n  store       {} on disk; server RSS {}; start-up {}\n",
            self.listed,
            self.list_pages,
            self.list_seconds,
            self.get_hot_ops_per_sec,
            self.get_spread_ops_per_sec,
            mb(self.store_size_bytes),
            mb(self.resident_bytes),
            self.start_seconds.map_or("-".into(), |s| format!("{s:.2} s")),
        ));
        out
    }
}
