//! Test fixtures: a real `keyward serve` process on 127.0.0.1 with its own data directory and
//! its own SoftHSM token, and helpers to talk to it.
#![allow(dead_code)]

use keyward::api::pb::{self, key_management_service_client::KeyManagementServiceClient};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

pub type Kms = KeyManagementServiceClient<Channel>;

/// An AWS SDK client (`aws_sdk_kms` or `aws_sdk_secretsmanager`) for a test server's AWS
/// endpoint: only the endpoint URL, the region and the development key pair set, as a user's
/// code would.
#[macro_export]
macro_rules! sdk_client {
    ($sdk:ident, $server:expr) => {{
        let config = $sdk::Config::builder()
            .behavior_version_latest()
            .endpoint_url($server.aws.as_deref().expect("AWS endpoint"))
            .region($sdk::config::Region::new("local"))
            .credentials_provider($sdk::config::Credentials::new(
                keyward::aws::signing::DEVELOPMENT_ACCESS_KEY_ID,
                keyward::aws::signing::DEVELOPMENT_SECRET_KEY,
                None,
                None,
                "test",
            ))
            .build();
        $sdk::Client::from_conf(config)
    }};
}

pub const BIN: &str = env!("CARGO_BIN_EXE_keyward");
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running server. Killed on drop; `stop` shuts it down gracefully.
pub struct Server {
    child: Option<Child>,
    pub endpoint: String,
    /// `host:port` of the metrics listener, when started with `--metrics-listen`.
    pub metrics: Option<String>,
    /// `http://host:port` of the AWS JSON endpoint.
    pub aws: Option<String>,
    pub data_dir: PathBuf,
    log: PathBuf,
    /// The TPM behind it when the suite runs on swtpm; dropped after the server.
    pub swtpm: Option<swtpm::Swtpm>,
    /// The etcd behind it when the suite runs on etcd; dropped after the server.
    pub etcd: Option<etcd::Etcd>,
}

/// The store the suite runs on, from `KEYWARD_TEST_STORE`: `sled` (default) or `etcd` (each
/// server on a one-member etcd of its own). `softhsm/run-tests` runs the suite on both.
pub fn on_etcd() -> bool {
    match std::env::var("KEYWARD_TEST_STORE").as_deref() {
        Ok("etcd") => true,
        Ok("sled") | Err(_) => false,
        Ok(other) => panic!("KEYWARD_TEST_STORE={other}: sled or etcd"),
    }
}

/// The root of trust the suite runs on, from `KEYWARD_TEST_ROOT`: `softhsm` (default),
/// `tpm-resident` or `tpm-sealed-kek`. `softhsm/run-tests` runs the suite on each.
pub fn tpm_mode() -> Option<&'static str> {
    match std::env::var("KEYWARD_TEST_ROOT").as_deref() {
        Ok("tpm-resident") => Some("resident"),
        Ok("tpm-sealed-kek") => Some("sealed-kek"),
        Ok("softhsm") | Err(_) => None,
        Ok(other) => panic!("KEYWARD_TEST_ROOT={other}: softhsm, tpm-resident or tpm-sealed-kek"),
    }
}

/// The `[root_of_trust]` table for a server on `data_dir`, and the swtpm behind it when the
/// suite runs on a TPM. The TPM's state sits beside the data directory, so a server restarted
/// on the same directory finds the same TPM.
pub fn root_of_trust(data_dir: &Path) -> (String, Option<swtpm::Swtpm>) {
    match tpm_mode() {
        None => ("[root_of_trust]\ntype = \"development\"\n".into(), None),
        Some(mode) => {
            let tpm = swtpm::Swtpm::start(&data_dir.with_extension("swtpm"));
            let table = tpm_table(&tpm, mode, "");
            (table, Some(tpm))
        }
    }
}

/// A `[root_of_trust]` table for `tpm` in `mode`, plus `extra` lines.
pub fn tpm_table(tpm: &swtpm::Swtpm, mode: &str, extra: &str) -> String {
    format!(
        "[root_of_trust]\ntype = \"tpm\"\ntcti = \"{}\"\nkey_mode = \"{mode}\"\n{extra}\n",
        tpm.tcti()
    )
}

/// Writes the config file of a server on `data_dir` (beside it, `.toml`): the suite's root of
/// trust and store, and `extra` (TOML). Returns its path and the swtpm behind it on a TPM run.
pub fn write_config(data_dir: &Path, extra: &str) -> (PathBuf, Option<swtpm::Swtpm>) {
    let (table, tpm) = root_of_trust(data_dir);
    let table = if on_etcd() {
        let store = etcd::store_table(&data_dir.with_extension("etcd"), "node-1", "");
        format!("{table}\n{store}")
    } else {
        table
    };
    let config = data_dir.with_extension("toml");
    // Top-level keys must come before the first table.
    let (top, tables) = match extra.find("\n[") {
        Some(at) if !extra.starts_with('[') => extra.split_at(at),
        _ if extra.starts_with('[') => ("", extra),
        _ => (extra, ""),
    };
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n{top}\n{table}\n{tables}\n",
            data_dir.display()
        ),
    )
    .expect("write config");
    (config, tpm)
}

impl Server {
    /// The development default on a fresh data directory; on a TPM run, a server on swtpm.
    pub fn start(data_dir: &Path) -> Server {
        if tpm_mode().is_none() && !on_etcd() {
            return Self::spawn(data_dir, &[], &[]);
        }
        Self::with_config(data_dir, "")
    }

    /// A server whose config file has the suite's root of trust and `extra` (TOML).
    pub fn with_config(data_dir: &Path, extra: &str) -> Server {
        Self::with_config_via(&[], data_dir, extra)
    }

    /// `with_config`, started by `wrapper` (see `try_spawn_via`).
    pub fn with_config_via(wrapper: &[&str], data_dir: &Path, extra: &str) -> Server {
        let (config, tpm) = write_config(data_dir, extra);
        let mut server = Self::try_spawn_via(
            wrapper,
            data_dir,
            &["--config", config.to_str().expect("utf-8")],
            &[],
        )
        .unwrap_or_else(|e| panic!("server did not start: {e}"));
        server.swtpm = tpm;
        server
    }

    /// `keyward serve` with extra arguments and environment.
    pub fn spawn(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::try_spawn(data_dir, args, env).unwrap_or_else(|e| panic!("server did not start: {e}"))
    }

    /// Starts a server; on failure returns what it printed.
    pub fn try_spawn(
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server, String> {
        Self::try_spawn_via(&[], data_dir, args, env)
    }

    /// Like `try_spawn`, with the server started by `wrapper` (a program and its arguments
    /// before the server's path), e.g. to set resource limits.
    pub fn try_spawn_via(
        wrapper: &[&str],
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server, String> {
        std::fs::create_dir_all(data_dir).map_err(|e| e.to_string())?;
        // On an etcd run, a server whose configuration was written for etcd gets its etcd
        // (started again after a restart, on the same ports and data).
        let etcd_dir = data_dir.with_extension("etcd");
        let etcd =
            (on_etcd() && etcd::laid_out(&etcd_dir)).then(|| etcd::Etcd::start(&etcd_dir, 1, &[]));
        let log = data_dir.join("server.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| e.to_string())?;
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(BIN);
                command
            }
            None => Command::new(BIN),
        };
        command
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--aws-listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("KEYWARD_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // The metrics and AWS endpoint lines, when there are any, come before the
            // listening line.
            let (mut metrics, mut aws) = (None, None);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("keyward metrics on ") {
                    metrics = Some(addr.to_owned());
                }
                if let Some(url) = line.strip_prefix("keyward aws endpoint on ") {
                    aws = Some(url.to_owned());
                }
                if let Some(addr) = line.strip_prefix("keyward listening on ") {
                    let _ = tx.send((addr.to_owned(), metrics.take(), aws.take()));
                }
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok((addr, metrics, aws)) => Ok(Server {
                child: Some(child),
                endpoint: format!("http://{addr}"),
                metrics,
                aws,
                data_dir: data_dir.to_owned(),
                log,
                swtpm: None,
                etcd,
            }),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                Err(format!(
                    "exit {status:?}; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ))
            }
        }
    }

    pub async fn kms(&self) -> Kms {
        KeyManagementServiceClient::connect(self.endpoint.clone())
            .await
            .expect("connect")
    }

    pub async fn health(&self) -> i32 {
        let channel = Channel::from_shared(self.endpoint.clone())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let mut client = HealthClient::new(channel);
        client
            .check(HealthCheckRequest {
                service: "keyward.v1.KeyManagementService".into(),
            })
            .await
            .expect("health check")
            .into_inner()
            .status
    }

    /// The server's process id (to signal it).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: a crash, with no chance to flush anything.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill");
        child.wait().expect("wait");
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = child.wait().expect("wait");
        assert!(
            exit.success(),
            "server exited with {exit}; log:\n{}",
            self.log()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port nothing listens on now: for sites, whose peers must know each other's port before
/// any site starts (so the listener cannot ask for port 0 itself), and for a dead address. The
/// port is taken below the kernel's ephemeral range (32768 and up), where every other test
/// server's port-0 listener gets its port: one of those grabbing it between now and a site's
/// start made the replication tests fail with "Address already in use". Each test process
/// (nextest runs one per test, with neighbouring pids) takes ports from its own block of
/// `BLOCK`, and a port something holds is skipped.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20_000;
    const BLOCK: u16 = 30;
    const BLOCKS: u16 = 400;
    const SPAN: u16 = BLOCK * BLOCKS;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let offset = (std::process::id() % u32::from(BLOCKS)) as u16 * BLOCK;
    for _ in 0..SPAN {
        let port = FIRST + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN);
}

pub const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
pub const NOT_SERVING: i32 =
    tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;

/// GET /metrics from `addr` (`host:port`) with nothing but std: the whole HTTP response.
pub fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    response
}

/// Polls `check` until it returns true; panics after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// sled releases its directory lock when its background threads notice the database was
/// dropped, a moment after `drop`: retry while the lock is still held.
pub async fn wait_for_lock<T, E, F, Fut>(mut open: F) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match open().await {
            Ok(opened) => return opened,
            Err(e) if e.to_string().contains("could not acquire lock") => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "store still locked: {e}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("reopen failed: {e}"),
        }
    }
}

/// Asserts the gRPC code and the AWS exception name in `x-keyward-error`.
#[track_caller]
/// The audit records for `action` in the log of the server on `data_dir`, parsed.
pub fn audit_records(data_dir: &Path, action: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(data_dir.join("audit").join("audit.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|record| record["action"] == action)
        .collect()
}

/// `keyward audit verify FILE EXTRA` against `server`: (success, output).
pub fn audit_verify(server: &Server, file: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["audit", "--endpoint", &server.endpoint, "verify"])
        .arg(file)
        .args(extra)
        .output()
        .expect("run keyward audit verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

pub fn assert_error(status: &Status, code: Code, exception: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    let name = status
        .metadata()
        .get("x-keyward-error")
        .and_then(|v| v.to_str().ok());
    assert_eq!(name, Some(exception), "{status:?}");
}

pub async fn create_key(kms: &mut Kms, description: &str) -> pb::KeyMetadata {
    kms.create_key(pb::CreateKeyRequest {
        description: description.into(),
        ..Default::default()
    })
    .await
    .expect("create key")
    .into_inner()
    .key_metadata
    .expect("metadata")
}

pub async fn describe(kms: &mut Kms, key_id: &str) -> pb::KeyMetadata {
    kms.describe_key(pb::DescribeKeyRequest {
        key_id: key_id.into(),
    })
    .await
    .expect("describe key")
    .into_inner()
    .key_metadata
    .expect("metadata")
}

pub async fn encrypt(
    kms: &mut Kms,
    key_id: &str,
    plaintext: &[u8],
    ctx: &[(&str, &str)],
) -> Vec<u8> {
    kms.encrypt(pb::EncryptRequest {
        key_id: key_id.into(),
        plaintext: plaintext.to_vec(),
        encryption_context: context(ctx),
        encryption_algorithm: String::new(),
    })
    .await
    .expect("encrypt")
    .into_inner()
    .ciphertext_blob
}

pub async fn decrypt(kms: &mut Kms, blob: &[u8], ctx: &[(&str, &str)]) -> Result<Vec<u8>, Status> {
    kms.decrypt(pb::DecryptRequest {
        ciphertext_blob: blob.to_vec(),
        encryption_context: context(ctx),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().plaintext)
}

pub fn context(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The shell commands of README's section `heading` (every ```sh block in it, in order), run
/// with `bash -euo pipefail` from the repository root with the built `keyward` first on PATH,
/// stopped after `timeout_secs`. Afterwards every process whose command line contains
/// `leftovers` is killed (what the walkthrough started and a failure left running).
pub fn run_readme_section(
    heading: &str,
    timeout_secs: u32,
    leftovers: &str,
) -> (bool, String, String) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(repo.join("README.md")).expect("README.md");
    // `heading` with its hashes ("## Backup and recovery", "### Bring your own key"): the
    // section ends at the next heading of its level or above.
    let start = readme
        .find(&format!("{heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading:?} in README.md"));
    let level = heading.chars().take_while(|c| *c == '#').count();
    let mut in_code = false;
    let section: String = readme[start + heading.len()..]
        .lines()
        .take_while(|line| {
            if line.starts_with("```") {
                in_code = !in_code;
            }
            let hashes = line.chars().take_while(|c| *c == '#').count();
            in_code || hashes == 0 || hashes > level || !line[hashes..].starts_with(' ')
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let script: String = section
        .split("```sh\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap_or_default())
        .collect();
    assert!(
        !script.is_empty(),
        "no commands in README section {heading:?}"
    );
    let bin_dir = Path::new(BIN).parent().expect("the binary's directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("timeout")
        .args([
            &timeout_secs.to_string(),
            "bash",
            "-euo",
            "pipefail",
            "-c",
            &script,
        ])
        .current_dir(repo)
        .env("PATH", path)
        .env_remove("KEYWARD_ENDPOINT")
        .env_remove("KEYWARD_CONFIG")
        .output()
        .expect("run bash");
    let _ = Command::new("pkill")
        .args(["-9", "-f", "--", leftovers])
        .status();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub mod auth;
pub mod aws;
pub mod cli;
pub mod cluster;
pub mod etcd;
pub mod pki;
pub mod postgres;
pub mod rotation;
pub mod sites;
pub mod swtpm;

pub mod secrets {
    //! Helpers for the secrets API.
    use keyward::api::pb::{self, secrets_manager_service_client::SecretsManagerServiceClient};
    use keyward::cli::client::{Conn, Connect, connect};
    use std::collections::BTreeMap;
    use tonic::Status;

    /// A client as the CLI makes one: with a bearer token, or none.
    pub type Sm = SecretsManagerServiceClient<Conn>;

    pub async fn client(server: &super::Server) -> Sm {
        SecretsManagerServiceClient::new(
            connect(&Connect::plain(&server.endpoint))
                .await
                .expect("connect"),
        )
    }

    /// A client presenting `token` as its bearer token.
    pub async fn client_with_token(server: &super::Server, token: &str) -> Sm {
        let mut to = Connect::plain(&server.endpoint);
        to.token = Some(token.to_owned());
        SecretsManagerServiceClient::new(connect(&to).await.expect("connect"))
    }

    /// A 32-character token from a short tag, so tests read well.
    pub fn token(tag: &str) -> String {
        format!("{tag:-<32}")
    }

    pub async fn create(sm: &mut Sm, name: &str, value: Option<&str>) -> pb::CreateSecretResponse {
        try_create(sm, name, value, "")
            .await
            .expect("create secret")
    }

    pub async fn try_create(
        sm: &mut Sm,
        name: &str,
        value: Option<&str>,
        token: &str,
    ) -> Result<pb::CreateSecretResponse, Status> {
        sm.create_secret(pb::CreateSecretRequest {
            name: name.into(),
            client_request_token: token.into(),
            secret_string: value.map(str::to_owned),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
    }

    pub async fn put(
        sm: &mut Sm,
        secret: &str,
        token: &str,
        value: &str,
        stages: &[&str],
    ) -> Result<pb::PutSecretValueResponse, Status> {
        sm.put_secret_value(pb::PutSecretValueRequest {
            secret_id: secret.into(),
            client_request_token: token.into(),
            secret_string: Some(value.into()),
            version_stages: stages.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
    }

    pub async fn get(
        sm: &mut Sm,
        secret: &str,
        version_id: &str,
        stage: &str,
    ) -> Result<pb::GetSecretValueResponse, Status> {
        sm.get_secret_value(pb::GetSecretValueRequest {
            secret_id: secret.into(),
            version_id: version_id.into(),
            version_stage: stage.into(),
        })
        .await
        .map(|r| r.into_inner())
    }

    pub async fn value(sm: &mut Sm, secret: &str, stage: &str) -> String {
        get(sm, secret, "", stage)
            .await
            .expect("get secret value")
            .secret_string
            .expect("a string value")
    }

    /// Every version, deprecated ones too, in the order ListSecretVersionIds gives them
    /// (newest first), through every page.
    pub async fn versions(sm: &mut Sm, secret: &str) -> Vec<pb::SecretVersionsListEntry> {
        let mut all = Vec::new();
        let mut next_token = String::new();
        loop {
            let page = sm
                .list_secret_version_ids(pb::ListSecretVersionIdsRequest {
                    secret_id: secret.into(),
                    include_deprecated: true,
                    next_token: next_token.clone(),
                    ..Default::default()
                })
                .await
                .expect("list versions")
                .into_inner();
            all.extend(page.versions);
            if page.next_token.is_empty() {
                return all;
            }
            next_token = page.next_token;
        }
    }

    /// Every version (deprecated too) with its sorted labels.
    pub async fn stages(sm: &mut Sm, secret: &str) -> BTreeMap<String, Vec<String>> {
        versions(sm, secret)
            .await
            .into_iter()
            .map(|v| {
                let mut s = v.version_stages;
                s.sort();
                (v.version_id, s)
            })
            .collect()
    }

    /// `[(version, [labels])]` as a map, for exact comparisons.
    pub fn expect(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(v, s)| {
                let mut s: Vec<String> = s.iter().map(|x| x.to_string()).collect();
                s.sort();
                (v.to_string(), s)
            })
            .collect()
    }

    pub async fn move_stage(
        sm: &mut Sm,
        secret: &str,
        stage: &str,
        move_to: &str,
        remove_from: &str,
    ) -> Result<(), Status> {
        sm.update_secret_version_stage(pb::UpdateSecretVersionStageRequest {
            secret_id: secret.into(),
            version_stage: stage.into(),
            remove_from_version_id: remove_from.into(),
            move_to_version_id: move_to.into(),
        })
        .await
        .map(|_| ())
    }
}
