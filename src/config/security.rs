//! The security sections of the configuration: TLS on the listener, who the callers are
//! (client certificates, bearer tokens), what they may do (identity policies) and the audit
//! log. Checked at load, so a server never starts with a half-understood security setting.

use super::ConfigError;
use crate::duration;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// TLS on the gRPC listener (rustls). With `client_ca_file`, every client must present a
/// certificate issued by that CA: the certificate names the caller.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain, PEM.
    pub cert_file: PathBuf,
    /// The server's private key, PEM.
    pub key_file: PathBuf,
    /// CA certificates (PEM) that issue client certificates. Set: mutual TLS.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// With a client CA: let clients without a certificate complete the handshake, so tooling
    /// can authenticate with a bearer token instead. A certificate that is presented must
    /// still be valid; a request with neither is refused (UNAUTHENTICATED).
    #[serde(default)]
    pub client_certificate_optional: bool,
}

/// Who may call and what they may do. Without this section the server runs the development
/// mode: one implicit admin principal, loopback only.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Bearer tokens for tooling (`authorization: Bearer <token>`), stored as SHA-256 hashes.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Identity policies: IAM JSON documents attached to principals.
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
    /// AWS access keys (SigV4) for the AWS-compatible endpoint.
    #[serde(default)]
    pub access_keys: Vec<AccessKeyConfig>,
}

/// An AWS access key pair for a principal. The secret key comes from an environment variable
/// or a file, never from the configuration itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKeyConfig {
    pub principal: String,
    pub access_key_id: String,
    #[serde(default)]
    pub secret_key_env: Option<String>,
    #[serde(default)]
    pub secret_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The principal name the token stands for (`keyward:principal/<principal>`).
    pub principal: String,
    /// Lower-case hex SHA-256 of the token (`keyward auth new-token` prints both).
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Named in audit records and deny reasons.
    pub name: String,
    /// Principal names the policy is attached to; `*` and `?` wildcards allowed.
    pub principals: Vec<String>,
    /// The policy document in a file...
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// ...or inline.
    #[serde(default)]
    pub document: Option<String>,
}

impl PolicyConfig {
    /// The document's JSON text.
    pub fn text(&self) -> Result<String, ConfigError> {
        match (&self.file, &self.document) {
            (Some(path), None) => {
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })
            }
            (None, Some(text)) => Ok(text.clone()),
            _ => Err(ConfigError::Invalid(format!(
                "auth.policies \"{}\": give exactly one of file and document",
                self.name
            ))),
        }
    }
}

/// When the audit log is synced to disk. Either way a record is written (handed to the
/// kernel, so it survives a crash of the server) before the request is answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditSync {
    /// fdatasync before answering: nothing answered is lost even on power loss.
    EveryBatch,
    /// fdatasync at checkpoints: a power loss may lose the records since the last one.
    #[default]
    Checkpoint,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Default: `<data_dir>/audit/audit.log`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// A checkpoint (a MAC by a key inside the root of trust) after this many records...
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// ...and at least this often while records are unsealed.
    #[serde(
        rename = "checkpoint_interval_secs",
        default = "default_checkpoint_interval",
        deserialize_with = "duration::secs"
    )]
    pub checkpoint_interval: Duration,
    #[serde(default)]
    pub sync: AuditSync,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: None,
            checkpoint_every: default_checkpoint_every(),
            checkpoint_interval: default_checkpoint_interval(),
            sync: AuditSync::default(),
        }
    }
}

impl AuditConfig {
    pub fn path(&self, data_dir: &Path) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| data_dir.join("audit").join("audit.log"))
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.checkpoint_every == 0 {
            return Err(ConfigError::Invalid(
                "audit.checkpoint_every = 0: at least 1".into(),
            ));
        }
        super::at_least(
            "audit.checkpoint_interval_secs",
            self.checkpoint_interval,
            super::SECOND,
        )
    }
}

fn default_checkpoint_every() -> u64 {
    1000
}
fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(60)
}

/// A principal name: what follows `keyward:principal/`. Printable ASCII without spaces, so
/// audit lines and policies cannot be confused by it.
pub fn valid_principal_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 256 && name.bytes().all(|b| b.is_ascii_graphic())
}

impl AuthConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for token in &self.tokens {
            if !valid_principal_name(&token.principal) {
                return Err(ConfigError::Invalid(format!(
                    "auth.tokens: {:?} is not a principal name (printable, no spaces)",
                    token.principal
                )));
            }
            let hash_ok = token.sha256.len() == 64
                && token
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hash_ok {
                return Err(ConfigError::Invalid(format!(
                    "auth.tokens for {}: sha256 must be 64 lower-case hex digits (the token's hash, never the token)",
                    token.principal
                )));
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for key in &self.access_keys {
            if !valid_principal_name(&key.principal) {
                return Err(ConfigError::Invalid(format!(
                    "auth.access_keys: {:?} is not a principal name",
                    key.principal
                )));
            }
            let id_ok = (16..=128).contains(&key.access_key_id.len())
                && key.access_key_id.bytes().all(|b| b.is_ascii_alphanumeric());
            if !id_ok || !ids.insert(key.access_key_id.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "auth.access_keys: access_key_id {:?} must be 16-128 letters and digits, and unique",
                    key.access_key_id
                )));
            }
            if key.secret_key_env.is_some() == key.secret_key_file.is_some() {
                return Err(ConfigError::Invalid(format!(
                    "auth.access_keys {}: give exactly one of secret_key_env and secret_key_file",
                    key.access_key_id
                )));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for policy in &self.policies {
            if policy.name.is_empty() || !names.insert(policy.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "auth.policies: names must be unique and non-empty ({:?})",
                    policy.name
                )));
            }
            if policy.principals.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "auth.policies \"{}\": principals is empty",
                    policy.name
                )));
            }
        }
        Ok(())
    }
}
