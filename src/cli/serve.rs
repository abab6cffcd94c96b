//! `keyward serve`: resolves the configuration (file or development default) and runs the
//! server until SIGINT or SIGTERM.

use crate::config::{
    AwsListen, Config, ConfigError, DEFAULT_DATA_DIR, RootOfTrustConfig, StoreConfig,
};
use crate::server::{Keyward, StartError};
use clap::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (see hsm-config/). Without one, the development default runs.
    #[arg(long, env = "KEYWARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7443, or the config file's `listen`].
    #[arg(long, env = "KEYWARD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory [default: ./keyward-data, or the config file's `data_dir`].
    #[arg(long, env = "KEYWARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics [default: the config file's
    /// `metrics_listen`, else off].
    #[arg(long, env = "KEYWARD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// The AWS JSON 1.1 endpoint for AWS SDKs and the aws CLI: ADDR or `off`
    /// [default: 127.0.0.1:7444, or the config file's `aws_listen`].
    #[arg(long, env = "KEYWARD_AWS_LISTEN")]
    pub aws_listen: Option<AwsListen>,
    /// This node's id on a cluster (`[store] type = "etcd"`), so that every node can run from
    /// one configuration file [default: the file's `store.node_id`].
    #[arg(long, env = "KEYWARD_NODE_ID")]
    pub node_id: Option<String>,
}

/// A resolved configuration, plus environment the process must set before any thread starts
/// (SoftHSM reads `SOFTHSM2_CONF` once, at C_Initialize).
pub struct Prepared {
    pub config: Config,
    pub env: Vec<(&'static str, PathBuf)>,
    pub development: bool,
}

pub fn prepare(args: ServeArgs) -> Result<Prepared, StartError> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::without_file(Path::new(DEFAULT_DATA_DIR)),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if args.metrics_listen.is_some() {
        config.metrics_listen = args.metrics_listen;
    }
    if let Some(aws) = args.aws_listen {
        config.aws_listen = aws;
    }
    if let Some(node_id) = args.node_id {
        match &mut config.store {
            StoreConfig::Etcd(etcd) => etcd.node_id = node_id,
            StoreConfig::Sled => {
                return Err(ConfigError::Invalid(
                    "--node-id is for a cluster node; this configuration's store is not etcd"
                        .into(),
                )
                .into());
            }
        }
    }
    config.validate()?;
    // After the overrides: the development token lives under the data_dir finally chosen.
    let softhsm_conf = config.resolve_development()?;
    let mut env: Vec<(&'static str, PathBuf)> = softhsm_conf
        .iter()
        .map(|conf| ("SOFTHSM2_CONF", conf.clone()))
        .collect();
    // tpm2-tss logs expected refusals (a PCR policy no longer met) as ERROR lines on
    // stderr; Keyward reports them itself. An explicit TSS2_LOG wins.
    if matches!(config.root_of_trust, RootOfTrustConfig::Tpm(_))
        && std::env::var_os("TSS2_LOG").is_none()
    {
        env.push(("TSS2_LOG", PathBuf::from("all+none")));
    }
    Ok(Prepared {
        development: softhsm_conf.is_some(),
        env,
        config,
    })
}

/// Runs the prepared server on a new runtime; returns when it has shut down.
pub fn run(prepared: Prepared) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let shutdown = shutdown_signal()?;
        let config = prepared.config;
        if prepared.development {
            tracing::warn!(
                data_dir = %config.data_dir.display(),
                "DEVELOPMENT DEFAULT: SoftHSM token under the data directory with PINs in plain \
                 files beside it. For development and tests only; production needs --config"
            );
        }
        if !config.listen.ip().is_loopback() && config.tls.is_none() {
            tracing::warn!(
                listen = %config.listen,
                "PLAINTEXT ON THE NETWORK (allow_plaintext_on_network): every secret crosses the network in clear"
            );
        }
        if config.auth.is_none() {
            tracing::warn!(
                "DEVELOPMENT MODE: no [auth] section, so every caller is the administrator \
                 keyward:principal/admin (loopback only). Production needs [auth]"
            );
        }
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let address = listener.local_addr()?;
        let metrics = match config.metrics_listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
            None => None,
        };
        let aws = match config.aws_listen.address() {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
            None => None,
        };
        let replication = match &config.replication {
            Some(r) => Some(tokio::net::TcpListener::bind(r.listen).await?),
            None => None,
        };
        let mut keyward = Keyward::open(config).await?;
        if let Some(metrics) = metrics {
            println!("keyward metrics on {}", metrics.local_addr()?);
            keyward = keyward.with_metrics(metrics);
        }
        if let Some(aws) = aws {
            println!("keyward aws endpoint on http://{}", aws.local_addr()?);
            keyward = keyward.with_aws(aws);
        }
        if let Some(replication) = replication {
            println!("keyward replication on {}", replication.local_addr()?);
            keyward = keyward.with_replication(replication);
        }
        tracing::info!(%address, "serving");
        // Tests and scripts wait for this line to know the server accepts connections.
        println!("keyward listening on {address}");
        keyward.run(listener, shutdown).await?;
        Ok(())
    })
}

/// Registers SIGINT and SIGTERM handlers now (so a signal that arrives before the server runs
/// is not lost to the default action) and resolves when either arrives.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down");
    })
}

/// Sets what native libraries read once, at initialisation (`SOFTHSM2_CONF`, `TSS2_LOG`). Call
/// only from `main`'s thread before any runtime or other thread exists.
pub fn set_env(env: &[(&'static str, PathBuf)]) {
    for (name, value) in env {
        // SAFETY: called before any runtime or other thread exists (see above), so nothing can
        // read the environment concurrently.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var(name, value);
        }
    }
}
