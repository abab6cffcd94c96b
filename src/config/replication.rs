//! The `[replication]` section: this site's listener for its peers, the certificate it uses
//! both ways, and the peer sites (regions) with the DNS name each one's certificate must carry.

use super::ConfigError;
use crate::duration;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationConfig {
    /// The site-to-site gRPC listener. Mutual TLS only; peers connect here.
    pub listen: SocketAddr,
    /// This site's certificate chain (PEM): served to peers and presented to them.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The CA (PEM) that issues site certificates. Give sites their own CA: any certificate
    /// it issues can serve a peer's endpoint name.
    pub ca_file: PathBuf,
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Wait after a failed send, doubling up to `retry_max_ms`.
    #[serde(
        rename = "retry_initial_ms",
        default = "default_retry_initial",
        deserialize_with = "duration::millis"
    )]
    pub retry_initial: Duration,
    #[serde(
        rename = "retry_max_ms",
        default = "default_retry_max",
        deserialize_with = "duration::millis"
    )]
    pub retry_max: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's `region`, as in its own configuration.
    pub region: String,
    /// `https://host:port` of the peer's replication listener.
    pub endpoint: String,
    /// A DNS name the peer's certificate carries, checked both ways: a caller is that site
    /// only if its client certificate has it, and this site sends to the endpoint only if the
    /// server certificate there has it (whatever host the endpoint names).
    pub identity: String,
    /// Whether this peer may replace a secret of this site's own (a standalone secret, not a
    /// replica of that peer) when it sends `force_overwrite_replica_secret`. Off by default:
    /// the receiving site decides, not the sender.
    #[serde(default)]
    pub allow_overwrite_local: bool,
}

fn default_retry_initial() -> Duration {
    Duration::from_millis(500)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(30)
}

/// A DNS name as a certificate's subject alternative name holds it: dot-separated labels of
/// lower-case letters, digits and '-', none empty or starting or ending with '-'.
fn valid_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Region names: letters, digits and '-', as in ARNs.
pub fn valid_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 64
        && region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl ReplicationConfig {
    pub(super) fn validate(&self, own_region: &str) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(format!("replication: {m}")));
        super::at_least(
            "replication.retry_initial_ms",
            self.retry_initial,
            Duration::from_millis(1),
        )?;
        if self.retry_max < self.retry_initial {
            return Err(ConfigError::Invalid(format!(
                "replication.retry_max_ms = {}: at least retry_initial_ms ({})",
                duration::display(self.retry_max),
                duration::display(self.retry_initial)
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for peer in &self.peers {
            if !valid_region(&peer.region) {
                return invalid(format!(
                    "peer region {:?}: letters, digits and '-' only",
                    peer.region
                ));
            }
            if peer.region == own_region {
                return invalid(format!("peer {} has this site's own region", peer.region));
            }
            if !seen.insert(peer.region.as_str()) {
                return invalid(format!("peer {} is listed twice", peer.region));
            }
            if !peer.endpoint.starts_with("https://") {
                return invalid(format!(
                    "peer {}: endpoint {:?} must be https:// (sites talk over mutual TLS only)",
                    peer.region, peer.endpoint
                ));
            }
            if !valid_dns_name(&peer.identity) {
                return invalid(format!(
                    "peer {}: identity {:?} must be a DNS name its certificate carries, \
                     such as site-b.keyward.internal",
                    peer.region, peer.identity
                ));
            }
        }
        Ok(())
    }

    pub fn peer(&self, region: &str) -> Option<&PeerConfig> {
        self.peers.iter().find(|p| p.region == region)
    }
}

#[cfg(test)]
mod tests {
    use super::valid_dns_name;

    #[test]
    fn identities_are_dns_names() {
        for good in ["site-b", "site-b.keyward.internal", "a1.b2"] {
            assert!(valid_dns_name(good), "{good}");
        }
        for bad in [
            "",
            "spiffe://keyward/site-b",
            "Site-B",
            "-a.b",
            "a-.b",
            "a..b",
            "a.b.",
        ] {
            assert!(!valid_dns_name(bad), "{bad}");
        }
    }
}
