//! Configuration: the TOML file (`hsm-config/*.toml` are references), and the development
//! default used when no file is given.
//!
//! PINs never appear in the file itself: the file names an environment variable or a file that
//! holds the PIN, and the PIN is held as a `SecretString` from the moment it is read.
//!
//! Typed from the file on: a value that cannot mean anything (an unknown `key_mode`, an
//! `aws_listen` that is neither "off" nor an address, a duration without a known unit) fails
//! to parse, and [`Config::validate`] refuses values below a key's minimum, naming the key. The
//! server wires what it is given and clamps nothing. `type = "development"` is turned into the
//! SoftHSM token it stands for in one place, [`Config::resolve_development`].

mod replication;
mod security;
mod store;

pub use replication::{PeerConfig, ReplicationConfig, valid_region};
pub use store::{EtcdConfig, StoreConfig};

pub use security::{
    AuditConfig, AuditSync, AuthConfig, PolicyConfig, TlsConfig, TokenConfig, valid_principal_name,
};

use crate::duration;
use secrecy::SecretString;
use serde::Deserialize;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7443));
pub const DEFAULT_AWS_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7444));
/// Where `keyward serve` without a file keeps its data.
pub const DEFAULT_DATA_DIR: &str = "keyward-data";
pub const DEFAULT_SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const DEV_TOKEN_LABEL: &str = "keyward-dev";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("cannot prepare the development root of trust in {path}: {source}")]
    Dev {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Prometheus metrics listener; none by default.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// The AWS JSON 1.1 endpoint (AWS SDKs, the aws CLI): an address, or "off".
    #[serde(default)]
    pub aws_listen: AwsListen,
    /// How long and how many clients the AWS endpoint waits for.
    #[serde(default)]
    pub aws_endpoint: AwsEndpointConfig,
    pub data_dir: PathBuf,
    /// Where the data lives: sled under `data_dir` (default), or the site's etcd cluster.
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default = "default_account")]
    pub account_id: String,
    /// The partition of the ARNs Keyward writes: `keyward` (default) or `aws`, for tools that
    /// check ARNs against AWS's pattern. ARNs of either are accepted in requests and policies.
    #[serde(default = "default_partition")]
    pub arn_partition: String,
    pub root_of_trust: RootOfTrustConfig,
    #[serde(default)]
    pub kms: KmsConfig,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub secrets: SecretsConfig,
    #[serde(default)]
    pub rotation: RotationConfig,
    /// TLS on the gRPC listener; none: plaintext (loopback only unless allowed below).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Serving plaintext on a non-loopback address exposes every secret on the network. The
    /// server refuses unless this is set, and warns at every start when it is.
    #[serde(default)]
    pub allow_plaintext_on_network: bool,
    /// Callers and their policies; none: development mode (one implicit admin, loopback only).
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub audit: AuditConfig,
    /// Alarm rules and webhooks; none: no alarms.
    #[serde(default)]
    pub alarms: Option<crate::alarms::AlarmsConfig>,
    /// Peer sites secrets are replicated to and from; none: this site stands alone.
    #[serde(default)]
    pub replication: Option<ReplicationConfig>,
    /// Key escrow; none: keys are not escrowed (and cannot be recovered onto new hardware).
    #[serde(default)]
    pub escrow: Option<EscrowConfig>,
}

/// `[escrow]`: every new key is also wrapped to this public key (see `crate::escrow`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscrowConfig {
    /// The PEM public key `keyward escrow init` wrote.
    pub public_key_file: PathBuf,
}

/// Bounds on what a client of the AWS endpoint can hold: a connection that sends its request
/// slowly or never, and the number of connections at once (beyond it, new connections wait in
/// the listen queue until one closes).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsEndpointConfig {
    /// For a request's headers (counted from its first byte) and, separately, its body.
    #[serde(
        rename = "read_timeout_ms",
        default = "default_aws_read_timeout",
        deserialize_with = "duration::millis"
    )]
    pub read_timeout: Duration,
    #[serde(default = "default_aws_max_connections")]
    pub max_connections: usize,
}

impl Default for AwsEndpointConfig {
    fn default() -> Self {
        Self {
            read_timeout: default_aws_read_timeout(),
            max_connections: default_aws_max_connections(),
        }
    }
}

impl AwsEndpointConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        at_least(
            "aws_endpoint.read_timeout_ms",
            self.read_timeout,
            Duration::from_millis(1),
        )?;
        // The connection slots are a semaphore, which cannot hold more permits than this.
        let max = tokio::sync::Semaphore::MAX_PERMITS;
        if !(1..=max).contains(&self.max_connections) {
            return Err(ConfigError::Invalid(format!(
                "aws_endpoint.max_connections = {}: between 1 and {max}",
                self.max_connections
            )));
        }
        Ok(())
    }
}

fn default_aws_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_aws_max_connections() -> usize {
    512
}

/// The rotation scheduler, and the exec rotators RotateSecret may name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    #[serde(
        rename = "check_interval_ms",
        default = "default_rotation_check",
        deserialize_with = "duration::millis"
    )]
    pub check_interval: Duration,
    /// Whole seconds: the scheduler keeps retry times as epoch seconds.
    #[serde(
        rename = "retry_initial_secs",
        default = "default_retry_initial",
        deserialize_with = "duration::secs"
    )]
    pub retry_initial: Duration,
    #[serde(
        rename = "retry_max_secs",
        default = "default_retry_max",
        deserialize_with = "duration::secs"
    )]
    pub retry_max: Duration,
    #[serde(
        rename = "step_timeout_secs",
        default = "default_step_timeout",
        deserialize_with = "duration::secs"
    )]
    pub step_timeout: Duration,
    #[serde(default)]
    pub exec: std::collections::BTreeMap<String, ExecRotatorConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRotatorConfig {
    /// Absolute path of the program.
    pub command: PathBuf,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(
        rename = "timeout_secs",
        default = "default_exec_timeout",
        deserialize_with = "duration::secs"
    )]
    pub timeout: Duration,
    /// Name patterns (`*` wildcards) of the secrets it may be attached to and rotate. None
    /// given: no secret.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Variables of the server's environment passed on to the program, which otherwise starts
    /// with an empty environment (plus its `KEYWARD_*` variables).
    #[serde(default)]
    pub env: Vec<String>,
}

impl Default for RotationConfig {
    fn default() -> Self {
        Self {
            check_interval: default_rotation_check(),
            retry_initial: default_retry_initial(),
            retry_max: default_retry_max(),
            step_timeout: default_step_timeout(),
            exec: Default::default(),
        }
    }
}

impl RotationConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        // Each check scans the secrets due for rotation: a shorter interval only spins.
        at_least(
            "rotation.check_interval_ms",
            self.check_interval,
            Duration::from_millis(10),
        )?;
        at_least("rotation.retry_initial_secs", self.retry_initial, SECOND)?;
        whole_seconds("rotation.retry_initial_secs", self.retry_initial)?;
        whole_seconds("rotation.retry_max_secs", self.retry_max)?;
        if self.retry_max < self.retry_initial {
            return Err(ConfigError::Invalid(format!(
                "rotation.retry_max_secs = {}: at least retry_initial_secs ({})",
                duration::display(self.retry_max),
                duration::display(self.retry_initial)
            )));
        }
        at_least("rotation.step_timeout_secs", self.step_timeout, SECOND)?;
        for (name, exec) in &self.exec {
            if !exec.command.is_absolute() {
                return Err(ConfigError::Invalid(format!(
                    "rotation.exec.{name}.command must be an absolute path"
                )));
            }
            if let Some(bad) = exec
                .env
                .iter()
                .find(|v| v.is_empty() || v.contains('=') || v.contains('\0'))
            {
                return Err(ConfigError::Invalid(format!(
                    "rotation.exec.{name}.env: {bad:?} is not a variable name"
                )));
            }
            if exec.secrets.iter().any(String::is_empty) {
                return Err(ConfigError::Invalid(format!(
                    "rotation.exec.{name}.secrets: a pattern is empty"
                )));
            }
            at_least(
                &format!("rotation.exec.{name}.timeout_secs"),
                exec.timeout,
                SECOND,
            )?;
        }
        Ok(())
    }
}

fn default_rotation_check() -> Duration {
    Duration::from_secs(60)
}
fn default_retry_initial() -> Duration {
    Duration::from_secs(60)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(3600)
}
fn default_step_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_exec_timeout() -> Duration {
    Duration::from_secs(60)
}

const SECOND: Duration = Duration::from_secs(1);

/// Refuses `value` below `min`, naming the key: the server uses every value as it is.
fn at_least(key: &str, value: Duration, min: Duration) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError::Invalid(format!(
            "{key} = {}: at least {}",
            duration::display(value),
            duration::display(min)
        )));
    }
    Ok(())
}

/// For keys whose consumer counts whole seconds, so "1500ms" is refused rather than cut.
fn whole_seconds(key: &str, value: Duration) -> Result<(), ConfigError> {
    if value.subsec_nanos() != 0 {
        return Err(ConfigError::Invalid(format!(
            "{key} = {}: whole seconds only",
            duration::display(value)
        )));
    }
    Ok(())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// Unwrapped data keys kept in memory; 0 turns the cache off.
    #[serde(default = "default_cache_entries")]
    pub data_key_cache_entries: usize,
    #[serde(
        rename = "data_key_cache_seconds",
        default = "default_cache_max_age",
        deserialize_with = "duration::secs"
    )]
    pub data_key_cache_max_age: Duration,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            data_key_cache_entries: default_cache_entries(),
            data_key_cache_max_age: default_cache_max_age(),
        }
    }
}

fn default_cache_entries() -> usize {
    10_000
}
fn default_cache_max_age() -> Duration {
    Duration::from_secs(300)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum RootOfTrustConfig {
    Pkcs11(Pkcs11Config),
    Tpm(TpmConfig),
    /// The development default's SoftHSM token under `data_dir/softhsm`, created on first
    /// start: for trying settings (rotators, ...) without setting up a token. Never production.
    Development,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawPkcs11")]
pub struct Pkcs11Config {
    pub module: PathBuf,
    pub token: Token,
    pub pin_env: Option<String>,
    pub pin_file: Option<PathBuf>,
    pub sessions: usize,
    /// Development only: an SO PIN file; when set, a token with `token_label` is initialised
    /// at start if none exists (ignored with `token_serial`: a serial is only known once the
    /// token exists).
    pub initialize_token_so_pin_file: Option<PathBuf>,
}

/// Which token: the file's `token_label` or `token_serial`, exactly one. Never a slot number
/// (SoftHSM and some HSMs renumber slots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Label(String),
    Serial(String),
}

/// `[root_of_trust]` with `type = "pkcs11"` as the file writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPkcs11 {
    #[serde(default = "default_module")]
    module: PathBuf,
    token_label: Option<String>,
    token_serial: Option<String>,
    pin_env: Option<String>,
    pin_file: Option<PathBuf>,
    #[serde(default = "default_sessions")]
    sessions: usize,
    #[serde(default)]
    initialize_token_so_pin_file: Option<PathBuf>,
}

impl TryFrom<RawPkcs11> for Pkcs11Config {
    type Error = String;

    fn try_from(raw: RawPkcs11) -> Result<Self, String> {
        let token = match (raw.token_label, raw.token_serial) {
            (Some(label), None) => Token::Label(label),
            (None, Some(serial)) => Token::Serial(serial),
            _ => {
                return Err(
                    "root_of_trust: give exactly one of token_label and token_serial".into(),
                );
            }
        };
        Ok(Self {
            module: raw.module,
            token,
            pin_env: raw.pin_env,
            pin_file: raw.pin_file,
            sessions: raw.sessions,
            initialize_token_so_pin_file: raw.initialize_token_so_pin_file,
        })
    }
}

/// A TPM 2.0 root of trust (see hsm-config/tpm.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmConfig {
    /// `device:/dev/tpmrm0` on a server; `swtpm:host=127.0.0.1,port=N` for swtpm.
    pub tcti: String,
    /// The owner hierarchy's authorization value, from an environment variable or a file.
    /// Neither: empty (the state of a TPM nobody has taken ownership of).
    pub owner_auth_env: Option<String>,
    pub owner_auth_file: Option<PathBuf>,
    /// A persistent SRK (e.g. 0x81000001). Unset: re-created from the standard ECC P-256
    /// template at start (deterministic for a given TPM).
    pub srk_handle: Option<u32>,
    /// Default mode of new keys.
    #[serde(default)]
    pub key_mode: KeyMode,
    /// PCRs (SHA-256 bank) new keys are bound to unless a request names others. Default none.
    #[serde(default)]
    pub pcrs: Vec<u8>,
    /// Salted HMAC sessions, so data keys cross the bus encrypted. Default: on for `device:`
    /// TCTIs, off otherwise.
    pub parameter_encryption: Option<bool>,
}

/// How a TPM holds a new key (see hsm-config/tpm.toml): the file's `key_mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyMode {
    /// A TPM storage key; each data key is sealed and unsealed by the TPM.
    #[default]
    Resident,
    /// A key sealed to the TPM, unsealed once and used in software.
    SealedKek,
}

impl KeyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resident => "resident",
            Self::SealedKek => "sealed-kek",
        }
    }
}

impl std::str::FromStr for KeyMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        [Self::Resident, Self::SealedKek]
            .into_iter()
            .find(|mode| mode.as_str() == text)
            .ok_or_else(|| format!("key_mode = {text:?}: \"resident\" or \"sealed-kek\""))
    }
}

// By hand rather than derived: `root_of_trust` is a tagged enum, and serde reports an error
// inside one at the table, naming neither the key nor the accepted values unless it does.
impl<'de> Deserialize<'de> for KeyMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = KeyMode;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("key_mode \"resident\" or \"sealed-kek\"")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<KeyMode, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl TpmConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.owner_auth_env.is_some() && self.owner_auth_file.is_some() {
            return Err(ConfigError::Invalid(
                "root_of_trust: give at most one of owner_auth_env and owner_auth_file".into(),
            ));
        }
        if let Some(pcr) = self.pcrs.iter().find(|&&p| p > 23) {
            return Err(ConfigError::Invalid(format!(
                "root_of_trust.pcrs: {pcr} is not a PCR (0-23)"
            )));
        }
        Ok(())
    }

    pub fn owner_auth(&self) -> Result<Option<SecretString>, ConfigError> {
        match (&self.owner_auth_env, &self.owner_auth_file) {
            (None, None) => Ok(None),
            (env, file) => read_secret(env.as_deref(), file.as_deref()).map(Some),
        }
    }

    pub fn parameter_encryption(&self) -> bool {
        self.parameter_encryption
            .unwrap_or_else(|| self.tcti.starts_with("device:"))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsConfig {
    #[serde(
        rename = "deletion_check_interval_secs",
        default = "default_purge_interval",
        deserialize_with = "duration::secs"
    )]
    pub deletion_check_interval: Duration,
    /// How long GetParametersForImport's token and wrapping key are valid (AWS: 24 hours).
    #[serde(
        rename = "import_token_lifetime_secs",
        default = "default_import_token_lifetime",
        deserialize_with = "duration::secs"
    )]
    pub import_token_lifetime: Duration,
}

/// AWS's 24 hours (the service's own default too; config sits below the service layer).
fn default_import_token_lifetime() -> Duration {
    Duration::from_secs(86_400)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    #[serde(
        rename = "check_interval_ms",
        default = "default_health_interval",
        deserialize_with = "duration::millis"
    )]
    pub check_interval: Duration,
}

impl Default for KmsConfig {
    fn default() -> Self {
        Self {
            deletion_check_interval: default_purge_interval(),
            import_token_lifetime: default_import_token_lifetime(),
        }
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            check_interval: default_health_interval(),
        }
    }
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN
}
fn default_region() -> String {
    "local".into()
}
fn default_account() -> String {
    "000000000000".into()
}
fn default_partition() -> String {
    "keyward".into()
}
fn default_module() -> PathBuf {
    PathBuf::from(DEFAULT_SOFTHSM_MODULE)
}
fn default_sessions() -> usize {
    4
}
fn default_purge_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_health_interval() -> Duration {
    Duration::from_secs(2)
}

/// Where the AWS endpoint listens: the file's `aws_listen` and `--aws-listen`, "off" or an
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsListen {
    Off,
    On(SocketAddr),
}

impl Default for AwsListen {
    fn default() -> Self {
        Self::On(DEFAULT_AWS_LISTEN)
    }
}

impl AwsListen {
    /// None when it is off.
    pub fn address(self) -> Option<SocketAddr> {
        match self {
            Self::Off => None,
            Self::On(address) => Some(address),
        }
    }
}

impl std::str::FromStr for AwsListen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "off" {
            return Ok(Self::Off);
        }
        text.parse().map(Self::On).map_err(|_| {
            format!("aws_listen = {text:?}: an address such as 127.0.0.1:7444, or \"off\"")
        })
    }
}

impl std::fmt::Display for AwsListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::On(address) => address.fmt(f),
        }
    }
}

impl<'de> Deserialize<'de> for AwsListen {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the whole configuration; `load` does, and so must whoever changes one after.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !valid_region(&self.region) {
            return Err(ConfigError::Invalid(
                "region: letters, digits and '-' only".into(),
            ));
        }
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConfigError::Invalid("account_id: exactly 12 digits".into()));
        }
        if !crate::policy::PARTITIONS.contains(&self.arn_partition.as_str()) {
            return Err(ConfigError::Invalid(format!(
                "arn_partition: one of {}",
                crate::policy::PARTITIONS.join(", ")
            )));
        }
        self.rotation.validate()?;
        self.audit.validate()?;
        self.aws_endpoint.validate()?;
        // More often than this, the probe itself becomes load on the root of trust.
        at_least(
            "health.check_interval_ms",
            self.health.check_interval,
            Duration::from_millis(100),
        )?;
        at_least(
            "kms.deletion_check_interval_secs",
            self.kms.deletion_check_interval,
            SECOND,
        )?;
        at_least(
            "kms.import_token_lifetime_secs",
            self.kms.import_token_lifetime,
            SECOND,
        )?;
        if let Some(replication) = &self.replication {
            replication.validate(&self.region)?;
        }
        if let Some(auth) = &self.auth {
            auth.validate()?;
        }
        if let Some(alarms) = &self.alarms {
            alarms
                .validate()
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        if let Some(aws) = self.aws_listen.address()
            && !aws.ip().is_loopback()
            && !self.allow_plaintext_on_network
        {
            return Err(ConfigError::Invalid(format!(
                "aws_listen = {aws}: the AWS endpoint is plain HTTP; on a non-loopback address it needs \
                 allow_plaintext_on_network = true (or put a TLS proxy in front and listen on loopback)"
            )));
        }
        // The AWS endpoint answers for the same principals: without [auth] a caller signing
        // with the published development key pair is the administrator.
        if let Some(aws) = self.aws_listen.address()
            && !aws.ip().is_loopback()
            && self.auth.is_none()
        {
            return Err(ConfigError::Invalid(format!(
                "aws_listen = {aws}: without an [auth] section every caller is an administrator (the \
                 development access key is published), which is only allowed on a loopback address. \
                 Configure [auth] with access_keys, or set aws_listen to a loopback address or \"off\""
            )));
        }
        let loopback = self.listen.ip().is_loopback();
        if !loopback && self.tls.is_none() && !self.allow_plaintext_on_network {
            return Err(ConfigError::Invalid(format!(
                "listen = {}: plaintext on a non-loopback address would expose every secret on the network. \
                 Configure [tls], or set allow_plaintext_on_network = true if you really mean it",
                self.listen
            )));
        }
        if !loopback && self.auth.is_none() {
            return Err(ConfigError::Invalid(format!(
                "listen = {}: without an [auth] section every caller is an administrator, which is only \
                 allowed on a loopback address. Configure [auth] (client certificates or tokens, and policies)",
                self.listen
            )));
        }
        if let StoreConfig::Etcd(etcd) = &self.store {
            etcd.validate()?;
            if matches!(self.root_of_trust, RootOfTrustConfig::Tpm(_)) {
                return Err(ConfigError::Invalid(
                    "store type \"etcd\" with root_of_trust type \"tpm\": a TPM's keys live in one machine, \
                     so the other nodes of a cluster could not use them. A cluster needs a shared root of \
                     trust (a network HSM through PKCS#11) until TPM key enrolment exists"
                        .into(),
                ));
            }
        }
        match &self.root_of_trust {
            RootOfTrustConfig::Pkcs11(p) => p.validate(),
            RootOfTrustConfig::Tpm(t) => t.validate(),
            RootOfTrustConfig::Development => Ok(()),
        }
    }

    /// What `keyward serve` runs without a file: every default, and `type = "development"`
    /// as the root of trust. Nothing is created until [`Config::resolve_development`].
    pub fn without_file(data_dir: &Path) -> Self {
        Config {
            listen: default_listen(),
            metrics_listen: None,
            aws_listen: AwsListen::default(),
            aws_endpoint: AwsEndpointConfig::default(),
            data_dir: data_dir.to_owned(),
            store: StoreConfig::Sled,
            region: default_region(),
            account_id: default_account(),
            arn_partition: default_partition(),
            root_of_trust: RootOfTrustConfig::Development,
            kms: KmsConfig::default(),
            health: HealthConfig::default(),
            secrets: SecretsConfig::default(),
            rotation: RotationConfig::default(),
            tls: None,
            allow_plaintext_on_network: false,
            auth: None,
            replication: None,
            audit: AuditConfig::default(),
            alarms: None,
            escrow: None,
        }
    }

    /// The development default on `listen`, resolved: SoftHSM with a token under
    /// `data_dir/softhsm`, created on first start with random PINs kept in files beside it.
    /// Returns the config and the `SOFTHSM2_CONF` path the process must use.
    pub fn development(
        data_dir: &Path,
        listen: SocketAddr,
    ) -> Result<(Self, PathBuf), ConfigError> {
        let mut config = Self::without_file(data_dir);
        config.listen = listen;
        let conf = config.resolve_development()?.ok_or_else(|| {
            ConfigError::Invalid("the development default did not resolve".into())
        })?;
        Ok((config, conf))
    }

    /// Resolves `type = "development"` to the SoftHSM token it stands for, once, after every
    /// override of `data_dir`: the one place the development default is made. Returns the
    /// `SOFTHSM2_CONF` path the process must use, if any.
    pub fn resolve_development(&mut self) -> Result<Option<PathBuf>, ConfigError> {
        if !matches!(self.root_of_trust, RootOfTrustConfig::Development) {
            return Ok(None);
        }
        let (root_of_trust, conf) = Self::development_token(&self.data_dir)?;
        self.root_of_trust = root_of_trust;
        Ok(Some(conf))
    }

    fn development_token(data_dir: &Path) -> Result<(RootOfTrustConfig, PathBuf), ConfigError> {
        let dev_error = |path: &Path| {
            let path = path.to_owned();
            move |source| ConfigError::Dev { path, source }
        };
        let softhsm = data_dir.join("softhsm");
        let tokens = softhsm.join("tokens");
        std::fs::create_dir_all(&tokens).map_err(dev_error(&tokens))?;
        let tokens = tokens.canonicalize().map_err(dev_error(&tokens))?;
        let conf = softhsm.join("softhsm2.conf");
        let conf_text = format!(
            "# Written by keyward serve (development default).\n\
             directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        );
        std::fs::write(&conf, conf_text).map_err(dev_error(&conf))?;
        let user_pin = softhsm.join("user.pin");
        let so_pin = softhsm.join("so.pin");
        for pin in [&user_pin, &so_pin] {
            write_random_pin(pin).map_err(dev_error(pin))?;
        }
        let module = std::env::var_os("KEYWARD_PKCS11_MODULE")
            .map(PathBuf::from)
            .unwrap_or_else(default_module);
        let root = RootOfTrustConfig::Pkcs11(Pkcs11Config {
            module,
            token: Token::Label(DEV_TOKEN_LABEL.into()),
            pin_env: None,
            pin_file: Some(user_pin),
            sessions: default_sessions(),
            initialize_token_so_pin_file: Some(so_pin),
        });
        Ok((root, conf))
    }
}

/// Creates a file holding a random PIN, readable by the owner only, unless it exists.
fn write_random_pin(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    let pin = crate::crypto::hex::encode(&bytes);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => file.write_all(pin.as_bytes()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

impl Pkcs11Config {
    fn validate(&self) -> Result<(), ConfigError> {
        match (&self.pin_env, &self.pin_file) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => {
                return Err(ConfigError::Invalid(
                    "root_of_trust: give exactly one of pin_env and pin_file".into(),
                ));
            }
        }
        if !(1..=256).contains(&self.sessions) {
            return Err(ConfigError::Invalid(
                "root_of_trust.sessions: between 1 and 256".into(),
            ));
        }
        Ok(())
    }

    /// Reads the user PIN from its environment variable or file. Errors name the source,
    /// never the content.
    pub fn pin(&self) -> Result<SecretString, ConfigError> {
        read_secret(self.pin_env.as_deref(), self.pin_file.as_deref())
    }
}

pub fn read_secret(env: Option<&str>, file: Option<&Path>) -> Result<SecretString, ConfigError> {
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(value) if !value.is_empty() => Ok(SecretString::from(value)),
            _ => Err(ConfigError::Invalid(format!(
                "the environment variable {var} is not set (it should hold a PIN or authorization value)"
            ))),
        };
    }
    if let Some(path) = file {
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            ConfigError::Read {
                path: path.to_owned(),
                source,
            }
        })?);
        let pin = text.trim_end_matches(['\n', '\r']);
        if pin.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "the secret file {} is empty",
                path.display()
            )));
        }
        return Ok(SecretString::from(pin.to_owned()));
    }
    Err(ConfigError::Invalid(
        "no PIN or authorization source configured".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        data_dir = "/var/lib/keyward"
        [root_of_trust]
        type = "pkcs11"
        token_label = "keyward"
        pin_env = "KEYWARD_PIN"
    "#;

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let config = Config::parse(Path::new("t.toml"), MINIMAL).unwrap();
        assert_eq!(config.listen, DEFAULT_LISTEN);
        assert_eq!(config.listen.to_string(), "127.0.0.1:7443");
        assert_eq!(config.aws_listen, AwsListen::On(DEFAULT_AWS_LISTEN));
        assert_eq!(config.aws_listen.to_string(), "127.0.0.1:7444");
        assert_eq!(config.region, "local");
        let RootOfTrustConfig::Pkcs11(p) = &config.root_of_trust else {
            panic!("not pkcs11")
        };
        assert_eq!(p.sessions, 4);
        assert_eq!(p.module, PathBuf::from(DEFAULT_SOFTHSM_MODULE));
        assert_eq!(p.token, Token::Label("keyward".into()));
    }

    #[test]
    fn the_arn_partition_is_keyward_or_aws_and_the_escrow_table_is_checked() {
        let config = Config::parse(Path::new("t.toml"), MINIMAL).unwrap();
        assert_eq!(config.arn_partition, "keyward");
        let with = |line: &str| format!("{line}\n{MINIMAL}");
        let aws = Config::parse(Path::new("t.toml"), &with("arn_partition = \"aws\"")).unwrap();
        assert_eq!(aws.arn_partition, "aws");
        for bad in [
            "\"aws-cn\"",
            "\"\"",
            "\"Keyward\"",
            &format!("\"{}\"", "a".repeat(300)),
        ] {
            let err = Config::parse(
                Path::new("t.toml"),
                &with(&format!("arn_partition = {bad}")),
            )
            .unwrap_err();
            assert!(
                err.to_string()
                    .contains("arn_partition: one of keyward, aws"),
                "{err}"
            );
        }
        let escrow = |table: &str| format!("{MINIMAL}\n[escrow]\n{table}\n");
        assert!(
            Config::parse(Path::new("t.toml"), &escrow("public_key_file = \"/e.pem\"")).is_ok()
        );
        for bad in [
            "",
            "public_key_file = 3",
            "public_key_file = \"/e.pem\"\nshares = 5",
        ] {
            assert!(
                Config::parse(Path::new("t.toml"), &escrow(bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_token_is_named_by_label_or_serial_never_both_or_neither() {
        let by_serial = MINIMAL.replace("token_label = \"keyward\"", "token_serial = \"8d6a\"");
        let config = Config::parse(Path::new("t.toml"), &by_serial).unwrap();
        let RootOfTrustConfig::Pkcs11(p) = &config.root_of_trust else {
            panic!("not pkcs11")
        };
        assert_eq!(p.token, Token::Serial("8d6a".into()));
        let both = MINIMAL.replace("token_label", "token_serial = \"8d6a\"\ntoken_label");
        let neither = MINIMAL.replace("token_label = \"keyward\"", "");
        for text in [both, neither] {
            let err = Config::parse(Path::new("t.toml"), &text).unwrap_err();
            assert!(
                err.to_string()
                    .contains("exactly one of token_label and token_serial"),
                "{err}"
            );
        }
    }

    #[test]
    fn aws_endpoint_bounds_and_exec_rotator_scopes_are_checked() {
        let parse =
            |extra: &str| Config::parse(Path::new("t.toml"), &format!("{MINIMAL}\n{extra}"));
        let defaults = parse("").unwrap();
        assert_eq!(defaults.aws_endpoint.read_timeout, Duration::from_secs(10));
        assert_eq!(defaults.aws_endpoint.max_connections, 512);
        for bad in [
            "[aws_endpoint]\nread_timeout_ms = 0",
            "[aws_endpoint]\nmax_connections = 0",
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("aws_endpoint"), "{bad}: {err}");
        }
        let err = parse("[aws_endpoint]\nmax_connections = -1").unwrap_err();
        assert!(err.to_string().contains("max_connections"), "{err}");
        let exec = |extra: &str| {
            parse(&format!(
                "[rotation.exec.r]\ncommand = \"/usr/local/bin/r\"\n{extra}"
            ))
        };
        let scoped = exec("secrets = [\"app/*\"]\nenv = [\"PATH\"]").unwrap();
        assert_eq!(scoped.rotation.exec["r"].secrets, ["app/*"]);
        assert!(
            exec("").unwrap().rotation.exec["r"].secrets.is_empty(),
            "none by default"
        );
        for (bad, named) in [
            ("env = [\"A=B\"]", "rotation.exec.r.env"),
            ("env = [\"\"]", "rotation.exec.r.env"),
            ("secrets = [\"\"]", "rotation.exec.r.secrets"),
        ] {
            let err = exec(bad).unwrap_err().to_string();
            assert!(err.contains(named), "{bad}: {err}");
        }
    }

    #[test]
    fn inline_pins_and_unknown_fields_are_refused() {
        let inline = MINIMAL.replace("pin_env = \"KEYWARD_PIN\"", "pin = \"1234\"");
        let err = Config::parse(Path::new("t.toml"), &inline).unwrap_err();
        assert!(err.to_string().contains("unknown field `pin`"), "{err}");
        assert!(!err.to_string().contains("1234"), "{err}");
        let both = MINIMAL.replace("pin_env", "pin_file = \"/p\"\npin_env");
        assert!(Config::parse(Path::new("t.toml"), &both).is_err());
    }

    #[test]
    fn pin_file_is_read_without_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        std::fs::write(&path, "s3cret\n").unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(
            read_secret(None, Some(&path)).unwrap().expose_secret(),
            "s3cret"
        );
    }

    fn parse_with(extra: &str) -> Result<Config, String> {
        Config::parse(Path::new("t.toml"), &format!("{MINIMAL}\n{extra}"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn durations_take_the_old_bare_numbers_or_a_unit() {
        let defaults = parse_with("").unwrap();
        assert_eq!(defaults.health.check_interval, Duration::from_secs(2));
        assert_eq!(
            defaults.kms.deletion_check_interval,
            Duration::from_secs(60)
        );
        assert_eq!(
            defaults.secrets.data_key_cache_max_age,
            Duration::from_secs(300)
        );
        assert_eq!(defaults.rotation.check_interval, Duration::from_secs(60));
        assert_eq!(defaults.rotation.retry_initial, Duration::from_secs(60));
        assert_eq!(defaults.rotation.retry_max, Duration::from_secs(3600));
        assert_eq!(defaults.rotation.step_timeout, Duration::from_secs(300));
        assert_eq!(defaults.audit.checkpoint_interval, Duration::from_secs(60));

        let bare = parse_with(
            "[aws_endpoint]\nread_timeout_ms = 300\n[health]\ncheck_interval_ms = 200\n\
             [kms]\ndeletion_check_interval_secs = 5\n[secrets]\ndata_key_cache_seconds = 0\n\
             [audit]\ncheckpoint_interval_secs = 3600\n\
             [rotation]\ncheck_interval_ms = 100\nretry_initial_secs = 1\nretry_max_secs = 2\n\
             step_timeout_secs = 30\n[rotation.exec.r]\ncommand = \"/bin/r\"\ntimeout_secs = 7",
        )
        .unwrap();
        assert_eq!(bare.aws_endpoint.read_timeout, Duration::from_millis(300));
        assert_eq!(bare.health.check_interval, Duration::from_millis(200));
        assert_eq!(bare.kms.deletion_check_interval, Duration::from_secs(5));
        assert_eq!(bare.secrets.data_key_cache_max_age, Duration::ZERO);
        assert_eq!(bare.audit.checkpoint_interval, Duration::from_secs(3600));
        assert_eq!(bare.rotation.check_interval, Duration::from_millis(100));
        assert_eq!(bare.rotation.retry_initial, Duration::from_secs(1));
        assert_eq!(bare.rotation.retry_max, Duration::from_secs(2));
        assert_eq!(bare.rotation.step_timeout, Duration::from_secs(30));
        assert_eq!(bare.rotation.exec["r"].timeout, Duration::from_secs(7));

        let units = parse_with(
            "[aws_endpoint]\nread_timeout_ms = \"10s\"\n[health]\ncheck_interval_ms = \"1m\"\n\
             [kms]\ndeletion_check_interval_secs = \"1h\"\n[secrets]\ndata_key_cache_seconds = \"5m\"\n\
             [rotation]\ncheck_interval_ms = \"500ms\"\nretry_initial_secs = \"30s\"\n\
             retry_max_secs = \"2h\"\nstep_timeout_secs = \"1500ms\"",
        )
        .unwrap();
        assert_eq!(units.aws_endpoint.read_timeout, Duration::from_secs(10));
        assert_eq!(units.health.check_interval, Duration::from_secs(60));
        assert_eq!(units.kms.deletion_check_interval, Duration::from_secs(3600));
        assert_eq!(
            units.secrets.data_key_cache_max_age,
            Duration::from_secs(300)
        );
        assert_eq!(units.rotation.check_interval, Duration::from_millis(500));
        assert_eq!(units.rotation.retry_initial, Duration::from_secs(30));
        assert_eq!(units.rotation.retry_max, Duration::from_secs(7200));
        assert_eq!(units.rotation.step_timeout, Duration::from_millis(1500));
    }

    #[test]
    fn a_duration_without_a_known_unit_names_the_key_and_the_accepted_forms() {
        for (bad, key) in [
            ("[health]\ncheck_interval_ms = \"2\"", "check_interval_ms"),
            (
                "[kms]\ndeletion_check_interval_secs = \"1d\"",
                "deletion_check_interval_secs",
            ),
            ("[rotation]\nstep_timeout_secs = -5", "step_timeout_secs"),
            ("[aws_endpoint]\nread_timeout_ms = 1.5", "read_timeout_ms"),
        ] {
            let err = parse_with(bad).unwrap_err();
            assert!(err.contains(key), "{bad}: {err}");
            assert!(err.contains("\"30s\""), "{bad}: {err}");
        }
    }

    #[test]
    fn values_below_a_minimum_are_refused_naming_the_key() {
        for (bad, named) in [
            (
                "[health]\ncheck_interval_ms = 99",
                "health.check_interval_ms = 99ms: at least 100ms",
            ),
            (
                "[kms]\ndeletion_check_interval_secs = 0",
                "kms.deletion_check_interval_secs = 0s: at least 1s",
            ),
            (
                "[kms]\ndeletion_check_interval_secs = \"500ms\"",
                "kms.deletion_check_interval_secs",
            ),
            (
                "[rotation]\ncheck_interval_ms = 9",
                "rotation.check_interval_ms = 9ms: at least 10ms",
            ),
            (
                "[rotation]\nstep_timeout_secs = 0",
                "rotation.step_timeout_secs",
            ),
            (
                "[rotation]\nretry_initial_secs = 0",
                "rotation.retry_initial_secs",
            ),
            (
                "[rotation]\nretry_initial_secs = \"1500ms\"",
                "rotation.retry_initial_secs = 1500ms: whole seconds",
            ),
            (
                "[rotation]\nretry_initial_secs = 10\nretry_max_secs = 5",
                "rotation.retry_max_secs",
            ),
            (
                "[rotation.exec.r]\ncommand = \"/bin/r\"\ntimeout_secs = 0",
                "rotation.exec.r.timeout_secs",
            ),
            (
                "[audit]\ncheckpoint_interval_secs = 0",
                "audit.checkpoint_interval_secs",
            ),
            ("[audit]\ncheckpoint_every = 0", "audit.checkpoint_every"),
            (
                "[aws_endpoint]\nread_timeout_ms = 0",
                "aws_endpoint.read_timeout_ms",
            ),
            (
                "[aws_endpoint]\nmax_connections = 0",
                "aws_endpoint.max_connections",
            ),
            (
                "[aws_endpoint]\nmax_connections = 18446744073709551615",
                "aws_endpoint.max_connections",
            ),
        ] {
            let err = parse_with(bad).unwrap_err();
            assert!(err.contains(named), "{bad}: {err}");
        }
        // The minimums themselves are accepted.
        let least = parse_with(
            "[health]\ncheck_interval_ms = 100\n[kms]\ndeletion_check_interval_secs = 1\n\
             [rotation]\ncheck_interval_ms = 10\nretry_initial_secs = 1\nretry_max_secs = 1\n\
             step_timeout_secs = 1",
        );
        assert!(least.is_ok(), "{least:?}");
    }

    #[test]
    fn replication_retries_take_units_and_are_checked() {
        let section = |extra: &str| {
            parse_with(&format!(
                "[replication]\nlisten = \"127.0.0.1:7450\"\ncert_file = \"c\"\nkey_file = \"k\"\n\
                 ca_file = \"ca\"\n{extra}"
            ))
        };
        let defaults = section("").unwrap().replication.unwrap();
        assert_eq!(defaults.retry_initial, Duration::from_millis(500));
        assert_eq!(defaults.retry_max, Duration::from_secs(30));
        let set = section("retry_initial_ms = 100\nretry_max_ms = \"1m\"")
            .unwrap()
            .replication
            .unwrap();
        assert_eq!(set.retry_initial, Duration::from_millis(100));
        assert_eq!(set.retry_max, Duration::from_secs(60));
        let err = section("retry_initial_ms = 0").unwrap_err();
        assert!(err.contains("replication.retry_initial_ms"), "{err}");
        let err = section("retry_initial_ms = \"2s\"\nretry_max_ms = 1000").unwrap_err();
        assert!(err.contains("replication.retry_max_ms = 1s"), "{err}");
    }

    #[test]
    fn aws_listen_is_off_or_an_address() {
        assert_eq!(
            parse_with("").unwrap().aws_listen.address(),
            Some(DEFAULT_AWS_LISTEN)
        );
        let top = |line: &str| {
            Config::parse(Path::new("t.toml"), &format!("{line}\n{MINIMAL}"))
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            top("aws_listen = \"off\"").unwrap().aws_listen,
            AwsListen::Off
        );
        assert_eq!(
            top("aws_listen = \"off\"").unwrap().aws_listen.address(),
            None
        );
        let on = top("aws_listen = \"127.0.0.1:9000\"").unwrap().aws_listen;
        assert_eq!(on.address(), Some("127.0.0.1:9000".parse().unwrap()));
        for bad in ["\"Off\"", "\"localhost:7444\"", "\"\"", "7444"] {
            let err = top(&format!("aws_listen = {bad}")).unwrap_err();
            assert!(err.contains("aws_listen"), "{bad}: {err}");
        }
        let err = top("aws_listen = \"nowhere\"").unwrap_err();
        assert!(
            err.contains("\"off\""),
            "the accepted values are named: {err}"
        );
        // The command line's --aws-listen parses the same way.
        assert_eq!("off".parse::<AwsListen>(), Ok(AwsListen::Off));
        assert!("[::1]:0".parse::<AwsListen>().is_ok());
        assert!(
            "of".parse::<AwsListen>()
                .unwrap_err()
                .contains("aws_listen")
        );
    }

    const TPM: &str = r#"
        data_dir = "/var/lib/keyward"
        [root_of_trust]
        type = "tpm"
        tcti = "device:/dev/tpmrm0"
    "#;

    #[test]
    fn key_mode_is_one_of_two_and_resident_by_default() {
        let tpm = |extra: &str| {
            Config::parse(Path::new("t.toml"), &format!("{TPM}{extra}")).map_err(|e| e.to_string())
        };
        let mode = |extra: &str| match tpm(extra).unwrap().root_of_trust {
            RootOfTrustConfig::Tpm(t) => t.key_mode,
            other => panic!("{other:?}"),
        };
        assert_eq!(mode(""), KeyMode::Resident);
        assert_eq!(mode("key_mode = \"resident\""), KeyMode::Resident);
        assert_eq!(mode("key_mode = \"sealed-kek\""), KeyMode::SealedKek);
        for bad in ["\"sealed_kek\"", "\"Resident\"", "\"\"", "1"] {
            let err = tpm(&format!("key_mode = {bad}")).unwrap_err();
            assert!(err.contains("key_mode"), "{bad}: {err}");
            assert!(
                err.contains("\"resident\" or \"sealed-kek\""),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn alarm_rules_take_only_the_settings_their_kind_has() {
        use crate::alarms::{Condition, Limit};
        let rules = parse_with(
            "[[alarms.rule]]\nname = \"d\"\nkind = \"denied_requests\"\nthreshold = 5\nwindow_secs = \"1m\"\n\
             [[alarms.rule]]\nname = \"p\"\nkind = \"replication_peer_unreachable\"\nwindow_secs = 30\n\
             [[alarms.rule]]\nname = \"f\"\nkind = \"first_read\"",
        )
        .unwrap()
        .alarms
        .unwrap()
        .rules;
        let conditions: Vec<_> = rules.iter().map(|r| r.condition).collect();
        assert_eq!(
            conditions,
            [
                Condition::DeniedRequests(Limit {
                    threshold: 5,
                    window: Duration::from_secs(60)
                }),
                Condition::ReplicationPeerUnreachable {
                    after: Duration::from_secs(30)
                },
                Condition::FirstRead,
            ]
        );
        for (bad, named) in [
            (
                "kind = \"first_read\"\nwindow_secs = 5",
                "first_read takes no threshold or window_secs",
            ),
            (
                "kind = \"decrypt_failures\"\nwindow_secs = 5",
                "decrypt_failures needs a threshold",
            ),
            (
                "kind = \"denied_requests\"\nthreshold = 5",
                "denied_requests needs window_secs",
            ),
            (
                "kind = \"replication_peer_unreachable\"",
                "needs window_secs",
            ),
            (
                "kind = \"denied_requests\"\nthreshold = 1\nwindow_secs = \"1500ms\"",
                "window_secs must be whole seconds",
            ),
            (
                "kind = \"denied_requests\"\nthreshold = 1\nwindow_secs = \"2d\"",
                "window_secs",
            ),
            ("kind = \"everything\"", "first_read"),
        ] {
            let err = parse_with(&format!("[[alarms.rule]]\nname = \"r\"\n{bad}")).unwrap_err();
            assert!(err.contains(named), "{bad}: {err}");
        }
        let err = parse_with("[alarms]\nwebhook_timeout_ms = \"soon\"").unwrap_err();
        assert!(err.contains("webhook_timeout_ms"), "{err}");
    }

    #[test]
    fn the_development_default_is_resolved_once_under_the_final_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::without_file(&dir.path().join("first"));
        assert!(matches!(
            config.root_of_trust,
            RootOfTrustConfig::Development
        ));
        config.validate().unwrap();
        config.data_dir = dir.path().join("chosen");
        let conf = config.resolve_development().unwrap().unwrap();
        assert!(conf.starts_with(dir.path().join("chosen")), "{conf:?}");
        assert!(!dir.path().join("first").exists());
        let RootOfTrustConfig::Pkcs11(p) = &config.root_of_trust else {
            panic!("resolved to the SoftHSM token")
        };
        assert_eq!(p.token, Token::Label(DEV_TOKEN_LABEL.into()));
        // Resolved once: a second call has nothing left to do.
        assert_eq!(config.resolve_development().unwrap(), None);

        let (development, conf) =
            Config::development(&dir.path().join("dev"), "127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(conf.is_file());
        assert_eq!(development.listen.port(), 0);
        assert!(matches!(
            development.root_of_trust,
            RootOfTrustConfig::Pkcs11(_)
        ));
        assert_eq!(development.aws_listen, AwsListen::default());
    }
}
