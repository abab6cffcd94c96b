//! The `keyward` command line: `serve` runs the server; the other groups are gRPC clients.

pub mod audit;
pub mod auth;
pub mod backup;
pub mod bench;
pub mod client;
pub mod cluster;
pub mod escrow;
pub mod failover;
pub mod kms;
pub mod output;
mod rotate;
pub mod secrets;
pub mod serve;
pub mod store;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "keyward",
    version,
    about = "Hardware-rooted key management service"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (with no --config: the development default on SoftHSM).
    Serve(serve::ServeArgs),
    /// Key management client (AWS KMS operations).
    Kms(kms::KmsArgs),
    /// Secrets client (AWS Secrets Manager operations).
    Secrets(secrets::SecretsArgs),
    /// Bearer tokens for clients.
    Auth(auth::AuthArgs),
    /// Verify the audit log.
    Audit(audit::AuditArgs),
    /// A site of several nodes on etcd: its nodes, duties and etcd members.
    Cluster(cluster::ClusterArgs),
    /// Move a single server's store into a cluster's etcd.
    Store(store::StoreArgs),
    /// Back up the store (online, or a stopped server's), or check a backup file.
    Backup(backup::BackupArgs),
    /// Restore a backup into an empty data directory (checked by the root of trust first).
    Restore(backup::RestoreArgs),
    /// Key escrow: make the escrow key and its shares, install it in the token, escrow the
    /// keys made before it.
    Escrow(escrow::EscrowArgs),
    /// Rebuild a deployment on new hardware from a backup and the escrow shares.
    Recover(escrow::RecoverArgs),
    /// Load a running server and report throughput and latency.
    Bench(bench::BenchArgs),
}

/// The CLI always sends a token (rule Idempotency 1), as the AWS CLI does.
fn token_or_new(token: String) -> String {
    if token.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        token
    }
}
