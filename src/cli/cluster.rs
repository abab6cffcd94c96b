//! `keyward cluster status`: the nodes of a site on etcd, who holds each background duty, and
//! the health of every etcd member, read from etcd with a node's configuration file.

use super::client::run_client;
use super::output::{Format, print};
use crate::config::{Config, StoreConfig};
use crate::store::EtcdStore;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ClusterCommand {
    /// Nodes (id, address, version, health), the holder of each duty, and etcd's members.
    Status {
        /// A node's configuration file (its `[store]` section says where etcd is).
        #[arg(long, env = "KEYWARD_CONFIG")]
        config: PathBuf,
        #[arg(long, value_enum, default_value = "json")]
        output: Format,
    },
}

/// How long one node or member may take to answer before it counts as unhealthy.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Serialize)]
struct Status {
    nodes: Vec<NodeStatus>,
    duties: Vec<DutyStatus>,
    etcd: Vec<MemberStatus>,
}

#[derive(Serialize)]
struct NodeStatus {
    id: String,
    address: String,
    version: String,
    started: String,
    /// The node's gRPC health: SERVING, NOT_SERVING, or UNREACHABLE.
    health: String,
}

#[derive(Serialize)]
struct DutyStatus {
    duty: String,
    holder: String,
}

#[derive(Serialize)]
struct MemberStatus {
    endpoint: String,
    healthy: bool,
    version: Option<String>,
    db_size_bytes: Option<i64>,
    is_leader: Option<bool>,
    error: Option<String>,
}

pub fn run(args: ClusterArgs) -> ExitCode {
    match args.command {
        ClusterCommand::Status { config, output } => run_client(|| async move {
            let config = Config::load(&config).map_err(|e| e.to_string())?;
            let StoreConfig::Etcd(etcd) = &config.store else {
                return Err(
                    "this configuration's store is not etcd: a single server has no cluster".into(),
                );
            };
            let options = etcd.options().map_err(|e| e.to_string())?;
            let store = EtcdStore::connect(options.clone())
                .await
                .map_err(|e| e.to_string())?;
            let (members, duties) = crate::cluster::snapshot(&store)
                .await
                .map_err(|e| e.to_string())?;
            let mut nodes = Vec::new();
            for member in members {
                let health = node_health(&member.address).await;
                nodes.push(NodeStatus {
                    started: crate::time::rfc3339_ms(member.started.saturating_mul(1000)),
                    id: member.id,
                    address: member.address,
                    version: member.version,
                    health,
                });
            }
            let mut etcd_members = Vec::new();
            for endpoint in &options.endpoints {
                etcd_members.push(member_status(&options, endpoint).await);
            }
            let status = Status {
                nodes,
                duties: duties
                    .into_iter()
                    .map(|(duty, holder)| DutyStatus { duty, holder })
                    .collect(),
                etcd: etcd_members,
            };
            print(output, &status).map_err(|e| e.to_string())
        }),
    }
}

async fn node_health(address: &str) -> String {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let probe = async {
        let channel = tonic::transport::Endpoint::from_shared(address.to_owned())
            .ok()?
            .connect_timeout(PROBE_TIMEOUT)
            .connect()
            .await
            .ok()?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .ok()?;
        Some(answer.into_inner().status().as_str_name().to_owned())
    };
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Some(status)) => status,
        _ => "UNREACHABLE".into(),
    }
}

async fn member_status(options: &crate::store::EtcdOptions, endpoint: &str) -> MemberStatus {
    let mut one = options.clone();
    one.endpoints = vec![endpoint.to_owned()];
    one.timeout = PROBE_TIMEOUT;
    let answer = async {
        let store = EtcdStore::connect(one).await.map_err(|e| e.to_string())?;
        let mut maintenance = store.client().maintenance_client();
        maintenance.status().await.map_err(|e| e.to_string())
    };
    match answer.await {
        Ok(status) => MemberStatus {
            endpoint: endpoint.to_owned(),
            healthy: status.errors().is_empty(),
            version: Some(status.version().to_owned()),
            db_size_bytes: Some(status.db_size()),
            is_leader: Some(
                status
                    .header()
                    .is_some_and(|h| h.member_id() == status.leader()),
            ),
            error: (!status.errors().is_empty()).then(|| status.errors().join("; ")),
        },
        Err(error) => MemberStatus {
            endpoint: endpoint.to_owned(),
            healthy: false,
            version: None,
            db_size_bytes: None,
            is_leader: None,
            error: Some(error),
        },
    }
}
