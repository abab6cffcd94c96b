//! The `[store]` section: where a server keeps its data. `type = "sled"` (the default, also
//! when the section is left out): one embedded database under `data_dir`. `type = "etcd"`:
//! the site's etcd cluster, shared by every node of the site (see hsm-config/cluster-node.toml
//! and README "Running a cluster").

use super::{ConfigError, read_secret};
use crate::duration;
use crate::store::{EtcdOptions, EtcdTls};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

// Read once at start: the size of the etcd variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreConfig {
    #[default]
    Sled,
    Etcd(EtcdConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// One URL per etcd member: `http://host:2379`, or `https://...` with `ca_file`.
    pub endpoints: Vec<String>,
    /// Every key of this site starts with it; one prefix per site.
    pub prefix: String,
    /// This node's name, unique in the site: in its audit records, its election entries and
    /// `keyward cluster status`. A second node with a live name refuses to start.
    pub node_id: String,
    /// How other nodes and `keyward cluster status` reach this node's gRPC listener; by
    /// default `http(s)://<listen>`.
    #[serde(default)]
    pub advertise: Option<String>,
    /// CA (PEM) that issued the etcd members' certificates; needed for https endpoints.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM), when etcd requires them.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// etcd user, when etcd has authentication on; the password comes from `password_env`
    /// or `password_file`, never from this file.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Deadline of each call to etcd.
    #[serde(
        rename = "timeout_ms",
        default = "default_timeout",
        deserialize_with = "duration::millis"
    )]
    pub timeout: Duration,
    /// etcd's `--max-txn-ops`: the most operations one commit may carry. Keyward's largest
    /// commit is a secret's deletion (two per stored version plus a few) or a replication
    /// batch; give etcd `--max-txn-ops 1024` and set the same here.
    #[serde(default = "default_max_txn_ops")]
    pub max_txn_ops: usize,
    /// How long a node's lease outlives its last sign of life: after a node dies, its duties
    /// (rotation, purge, replication sending) move to another node within about this time.
    #[serde(
        rename = "lease_ttl_secs",
        default = "default_lease_ttl",
        deserialize_with = "duration::secs"
    )]
    pub lease_ttl: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_max_txn_ops() -> usize {
    128
}
fn default_lease_ttl() -> Duration {
    Duration::from_secs(10)
}

impl EtcdConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(format!("store: {message}")));
        if self.endpoints.is_empty() {
            return invalid("endpoints: give at least one etcd member".into());
        }
        for endpoint in &self.endpoints {
            let https = endpoint.starts_with("https://");
            if !https && !endpoint.starts_with("http://") {
                return invalid(format!(
                    "endpoints: {endpoint:?} is not http:// or https://"
                ));
            }
            if https != self.ca_file.is_some() {
                return invalid(format!(
                    "endpoints: {endpoint} with{} ca_file: https endpoints need ca_file, http ones take none",
                    if self.ca_file.is_some() { "" } else { "out" }
                ));
            }
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return invalid("give both cert_file and key_file, or neither".into());
        }
        if self.prefix.is_empty() || !self.prefix.ends_with('/') {
            return invalid(format!(
                "prefix {:?}: give a non-empty prefix ending in '/', e.g. \"/keyward/site-a/\"",
                self.prefix
            ));
        }
        if self.node_id.is_empty()
            || self.node_id.len() > 64
            || !self
                .node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return invalid(format!(
                "node_id {:?}: 1 to 64 letters, digits, '-', '_' or '.'",
                self.node_id
            ));
        }
        if self.username.is_some() != (self.password_env.is_some() || self.password_file.is_some())
        {
            return invalid(
                "username needs password_env or password_file, and they need username".into(),
            );
        }
        if self.max_txn_ops < 128 {
            return invalid("max_txn_ops: at least 128 (etcd's default)".into());
        }
        if self.lease_ttl < Duration::from_secs(2) {
            return invalid("lease_ttl_secs: at least 2".into());
        }
        if self.timeout < Duration::from_millis(100) {
            return invalid("timeout_ms: at least 100".into());
        }
        Ok(())
    }

    /// What the store needs to connect: files read, password resolved.
    pub fn options(&self) -> Result<EtcdOptions, ConfigError> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })
        };
        let tls = match &self.ca_file {
            Some(ca) => Some(EtcdTls {
                ca: read(ca)?,
                identity: match (&self.cert_file, &self.key_file) {
                    (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                    _ => None,
                },
            }),
            None => None,
        };
        let user = match &self.username {
            Some(user) => Some((
                user.clone(),
                read_secret(self.password_env.as_deref(), self.password_file.as_deref())?,
            )),
            None => None,
        };
        Ok(EtcdOptions {
            endpoints: self.endpoints.clone(),
            prefix: self.prefix.as_bytes().to_vec(),
            tls,
            user,
            timeout: self.timeout,
            max_txn_ops: self.max_txn_ops,
        })
    }
}
