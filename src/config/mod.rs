//! Configuration: the TOML file (`hsm-config/*.toml` are references), and the development
//! default used when no file is given.
//!
//! PINs never appear in the file itself: the file names an environment variable or a file that
//! holds the PIN, and the PIN is held as a `SecretString` from the moment it is read.

mod replication;
mod security;

pub use replication::{PeerConfig, ReplicationConfig, valid_region};

pub use security::{
    AuditConfig, AuditSync, AuthConfig, PolicyConfig, TlsConfig, TokenConfig, valid_principal_name,
};

use secrecy::SecretString;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7443";
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
    #[serde(default = "default_aws_listen")]
    pub aws_listen: String,
    /// How long and how many clients the AWS endpoint waits for.
    #[serde(default)]
    pub aws_endpoint: AwsEndpointConfig,
    pub data_dir: PathBuf,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default = "default_account")]
    pub account_id: String,
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
}

/// Bounds on what a client of the AWS endpoint can hold: a connection that sends its request
/// slowly or never, and the number of connections at once (beyond it, new connections wait in
/// the listen queue until one closes).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsEndpointConfig {
    /// For a request's headers (counted from its first byte) and, separately, its body.
    #[serde(default = "default_aws_read_timeout_ms")]
    pub read_timeout_ms: u64,
    #[serde(default = "default_aws_max_connections")]
    pub max_connections: usize,
}

impl Default for AwsEndpointConfig {
    fn default() -> Self {
        Self {
            read_timeout_ms: default_aws_read_timeout_ms(),
            max_connections: default_aws_max_connections(),
        }
    }
}

fn default_aws_read_timeout_ms() -> u64 {
    10_000
}
fn default_aws_max_connections() -> usize {
    512
}

/// The rotation scheduler, and the exec rotators RotateSecret may name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    #[serde(default = "default_rotation_check_ms")]
    pub check_interval_ms: u64,
    #[serde(default = "default_retry_initial")]
    pub retry_initial_secs: u64,
    #[serde(default = "default_retry_max")]
    pub retry_max_secs: u64,
    #[serde(default = "default_step_timeout")]
    pub step_timeout_secs: u64,
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
    #[serde(default = "default_exec_timeout")]
    pub timeout_secs: u64,
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
            check_interval_ms: default_rotation_check_ms(),
            retry_initial_secs: default_retry_initial(),
            retry_max_secs: default_retry_max(),
            step_timeout_secs: default_step_timeout(),
            exec: Default::default(),
        }
    }
}

impl RotationConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.retry_initial_secs == 0 || self.retry_max_secs < self.retry_initial_secs {
            return Err(ConfigError::Invalid(
                "rotation: retry_initial_secs must be at least 1 and at most retry_max_secs".into(),
            ));
        }
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
            if exec.timeout_secs == 0 {
                return Err(ConfigError::Invalid(format!(
                    "rotation.exec.{name}.timeout_secs must be at least 1"
                )));
            }
        }
        Ok(())
    }
}

fn default_rotation_check_ms() -> u64 {
    60_000
}
fn default_retry_initial() -> u64 {
    60
}
fn default_retry_max() -> u64 {
    3600
}
fn default_step_timeout() -> u64 {
    300
}
fn default_exec_timeout() -> u64 {
    60
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// Unwrapped data keys kept in memory; 0 turns the cache off.
    #[serde(default = "default_cache_entries")]
    pub data_key_cache_entries: usize,
    #[serde(default = "default_cache_seconds")]
    pub data_key_cache_seconds: u64,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            data_key_cache_entries: default_cache_entries(),
            data_key_cache_seconds: default_cache_seconds(),
        }
    }
}

fn default_cache_entries() -> usize {
    10_000
}
fn default_cache_seconds() -> u64 {
    300
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
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    #[serde(default = "default_module")]
    pub module: PathBuf,
    pub token_label: Option<String>,
    pub token_serial: Option<String>,
    pub pin_env: Option<String>,
    pub pin_file: Option<PathBuf>,
    #[serde(default = "default_sessions")]
    pub sessions: usize,
    /// Development only: an SO PIN file; when set, a token with `token_label` is initialised
    /// at start if none exists.
    #[serde(default)]
    pub initialize_token_so_pin_file: Option<PathBuf>,
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
    /// Default mode of new keys: "resident" or "sealed-kek".
    #[serde(default = "default_tpm_key_mode")]
    pub key_mode: String,
    /// PCRs (SHA-256 bank) new keys are bound to unless a request names others. Default none.
    #[serde(default)]
    pub pcrs: Vec<u8>,
    /// Salted HMAC sessions, so data keys cross the bus encrypted. Default: on for `device:`
    /// TCTIs, off otherwise.
    pub parameter_encryption: Option<bool>,
}

fn default_tpm_key_mode() -> String {
    "resident".into()
}

impl TpmConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.key_mode.as_str(), "resident" | "sealed-kek") {
            return Err(ConfigError::Invalid(
                "root_of_trust.key_mode: \"resident\" or \"sealed-kek\"".into(),
            ));
        }
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
    #[serde(default = "default_purge_interval")]
    pub deletion_check_interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    #[serde(default = "default_health_interval")]
    pub check_interval_ms: u64,
}

impl Default for KmsConfig {
    fn default() -> Self {
        Self {
            deletion_check_interval_secs: default_purge_interval(),
        }
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            check_interval_ms: default_health_interval(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7443))
}
pub const DEFAULT_AWS_LISTEN: &str = "127.0.0.1:7444";

fn default_aws_listen() -> String {
    DEFAULT_AWS_LISTEN.into()
}
fn default_region() -> String {
    "local".into()
}
fn default_account() -> String {
    "000000000000".into()
}
fn default_module() -> PathBuf {
    PathBuf::from(DEFAULT_SOFTHSM_MODULE)
}
fn default_sessions() -> usize {
    4
}
fn default_purge_interval() -> u64 {
    60
}
fn default_health_interval() -> u64 {
    2000
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

    /// The AWS endpoint's address; None when it is off.
    pub fn aws_listen(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.aws_listen == "off" {
            return Ok(None);
        }
        self.aws_listen.parse().map(Some).map_err(|_| {
            ConfigError::Invalid(format!(
                "aws_listen = {:?}: an address such as 127.0.0.1:7444, or \"off\"",
                self.aws_listen
            ))
        })
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
        self.rotation.validate()?;
        self.audit.validate()?;
        if self.aws_endpoint.read_timeout_ms == 0 || self.aws_endpoint.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "aws_endpoint: read_timeout_ms and max_connections must be at least 1".into(),
            ));
        }
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
        if let Some(aws) = self.aws_listen()?
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
        if let Some(aws) = self.aws_listen()?
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
        match &self.root_of_trust {
            RootOfTrustConfig::Pkcs11(p) => p.validate(),
            RootOfTrustConfig::Tpm(t) => t.validate(),
            RootOfTrustConfig::Development => Ok(()),
        }
    }

    /// The development default: SoftHSM with a token under `data_dir/softhsm`, created on first
    /// start with random PINs kept in files beside it. Returns the config and the
    /// `SOFTHSM2_CONF` path the process must use.
    pub fn development(
        data_dir: &Path,
        listen: SocketAddr,
    ) -> Result<(Self, PathBuf), ConfigError> {
        let (root_of_trust, conf) = Self::development_token(data_dir)?;
        let config = Config {
            listen,
            metrics_listen: None,
            aws_listen: default_aws_listen(),
            aws_endpoint: AwsEndpointConfig::default(),
            data_dir: data_dir.to_owned(),
            region: default_region(),
            account_id: default_account(),
            root_of_trust,
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
        };
        Ok((config, conf))
    }

    /// Resolves `type = "development"` to the SoftHSM token it stands for. Returns the
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
            token_label: Some(DEV_TOKEN_LABEL.into()),
            token_serial: None,
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
        match (&self.token_label, &self.token_serial) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => {
                return Err(ConfigError::Invalid(
                    "root_of_trust: give exactly one of token_label and token_serial".into(),
                ));
            }
        }
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
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.region, "local");
        let RootOfTrustConfig::Pkcs11(p) = &config.root_of_trust else {
            panic!("not pkcs11")
        };
        assert_eq!(p.sessions, 4);
        assert_eq!(p.module, PathBuf::from(DEFAULT_SOFTHSM_MODULE));
    }

    #[test]
    fn aws_endpoint_bounds_and_exec_rotator_scopes_are_checked() {
        let parse =
            |extra: &str| Config::parse(Path::new("t.toml"), &format!("{MINIMAL}\n{extra}"));
        let defaults = parse("").unwrap();
        assert_eq!(defaults.aws_endpoint.read_timeout_ms, 10_000);
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
}
