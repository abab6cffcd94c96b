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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreConfig {
    #[default]
    Sled,
    Etcd(Box<EtcdConfig>),
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

#[cfg(test)]
mod tests {
    use crate::config::{Config, StoreConfig};
    use std::path::Path;

    const ROOT: &str = "data_dir = \"/d\"\n[root_of_trust]\ntype = \"pkcs11\"\ntoken_label = \"k\"\npin_env = \"P\"\n";
    const STORE: &str = "[store]\ntype = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/kw/a/\"\nnode_id = \"n1\"\n";

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("t.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn sled_is_the_default_and_etcd_takes_its_defaults() {
        assert!(matches!(parse(ROOT).unwrap().store, StoreConfig::Sled));
        let config = parse(&format!("{ROOT}{STORE}")).unwrap();
        let StoreConfig::Etcd(etcd) = config.store else {
            panic!("etcd")
        };
        assert_eq!(etcd.max_txn_ops, 128);
        assert_eq!(etcd.lease_ttl, std::time::Duration::from_secs(10));
        assert_eq!(etcd.timeout, std::time::Duration::from_secs(5));
        let options = etcd.options().unwrap();
        assert_eq!(options.prefix, b"/kw/a/");
        assert!(options.tls.is_none() && options.user.is_none());
    }

    #[test]
    fn bad_store_settings_are_refused_with_the_setting_named() {
        let refused = |extra: &str, expected: &str| {
            let err = parse(&format!("{ROOT}{STORE}{extra}")).unwrap_err();
            assert!(err.contains(expected), "{extra:?}: {err}");
        };
        refused("max_txn_ops = 64\n", "max_txn_ops");
        refused("lease_ttl_secs = 1\n", "lease_ttl_secs");
        refused("timeout_ms = 10\n", "timeout_ms");
        refused("cert_file = \"/c.pem\"\n", "cert_file and key_file");
        refused("username = \"kw\"\n", "password_env or password_file");
        refused("ca_file = \"/ca.pem\"\n", "https endpoints need ca_file");
        for (line, expected) in [
            ("node_id = \"n1\"", "node_id = \"a b\""),
            ("prefix = \"/kw/a/\"", "prefix = \"/kw/a\""),
            (
                "endpoints = [\"http://127.0.0.1:2379\"]",
                "endpoints = [\"127.0.0.1:2379\"]",
            ),
            ("endpoints = [\"http://127.0.0.1:2379\"]", "endpoints = []"),
        ] {
            let text = format!("{ROOT}{}", STORE.replace(line, expected));
            let err = parse(&text).unwrap_err();
            assert!(err.contains("store:"), "{expected}: {err}");
        }
    }

    #[test]
    fn a_tpm_root_cannot_back_a_cluster() {
        let tpm =
            "data_dir = \"/d\"\n[root_of_trust]\ntype = \"tpm\"\ntcti = \"device:/dev/tpmrm0\"\n";
        let err = parse(&format!("{tpm}{STORE}")).unwrap_err();
        assert!(err.contains("a TPM's keys live in one machine"), "{err}");
        assert!(parse(tpm).is_ok(), "a TPM on sled is fine");
    }
}
