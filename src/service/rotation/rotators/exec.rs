//! The `exec` rotator: a program named in the server's configuration, the on-prem analogue of
//! a rotation Lambda, run once per step.
//!
//! Contract (README "Writing an exec rotator"): environment `KEYWARD_STEP` (create_secret,
//! set_secret, test_secret, finish_secret), `KEYWARD_SECRET_ID` (ARN), `KEYWARD_SECRET_NAME`,
//! `KEYWARD_VERSION_ID` (the pending version id), `KEYWARD_ENDPOINT` and `KEYWARD_TOKEN`;
//! on stdin one JSON object with step, secret_id, secret_name, token (the pending version
//! id), endpoint, `current`, `pending` and `previous`, each null or
//! `{"secret_string": ...}` / `{"secret_binary": base64}`. Exit 0 is success.
//!
//! What a program can reach is bounded: it runs only for the secrets its configuration names
//! (`secrets`), with an empty environment plus the variables its configuration lets through
//! (`env`) — never the server's PIN or keys — and `KEYWARD_TOKEN` is a credential for this
//! step only: the actions the step needs on this one secret, revoked when the step ends. For create_secret
//! the program prints the new value on stdout (one trailing newline is dropped), or prints
//! nothing after storing it itself with PutSecretValue. A program still running at its time
//! limit is killed with its process group, and the step counts as failed.

use super::{BoxFuture, RotationError, Rotator, StepContext};
use crate::crypto::SecretBytes;
use crate::service::rotation::StepCredentials;
use crate::service::secrets::Value;
use crate::service::secrets::exec_may_rotate;
use base64::{Engine, engine::general_purpose::STANDARD};
use serde::Serialize;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

/// Output kept from a program: a value's limit on stdout, a short tail of stderr.
const MAX_STDOUT: u64 = 65_536;
const STDERR_SHOWN: usize = 300;

#[derive(Debug, Clone)]
pub struct ExecSettings {
    pub command: PathBuf,
    pub args: Vec<String>,
    pub timeout: Duration,
    /// Name patterns of the secrets it may rotate.
    pub secrets: Vec<String>,
    /// The server's environment variables it is given.
    pub env: Vec<String>,
}

pub struct Exec {
    pub name: String,
    pub settings: ExecSettings,
    pub endpoint: String,
    pub credentials: Option<Arc<dyn StepCredentials>>,
}

/// What each step's credential allows on its secret: reading it, and for create_secret also
/// storing the pending value.
const READ_ACTIONS: &[&str] = &[
    "secretsmanager:GetSecretValue",
    "secretsmanager:DescribeSecret",
    "secretsmanager:ListSecretVersionIds",
];
const CREATE_ACTIONS: &[&str] = &[
    "secretsmanager:GetSecretValue",
    "secretsmanager:DescribeSecret",
    "secretsmanager:ListSecretVersionIds",
    "secretsmanager:PutSecretValue",
];

#[derive(Serialize)]
struct Input<'a> {
    step: &'a str,
    secret_id: &'a str,
    secret_name: &'a str,
    token: &'a str,
    endpoint: &'a str,
    current: Option<ValueJson>,
    pending: Option<ValueJson>,
    previous: Option<ValueJson>,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum ValueJson {
    SecretString(String),
    SecretBinary(String),
}

impl ValueJson {
    fn of(value: &Option<Value>) -> Option<Self> {
        Some(match value.as_ref()? {
            Value::String(b) => {
                Self::SecretString(String::from_utf8_lossy(b.expose()).into_owned())
            }
            Value::Binary(b) => Self::SecretBinary(STANDARD.encode(b.expose())),
        })
    }
}

impl Drop for ValueJson {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        match self {
            Self::SecretString(s) | Self::SecretBinary(s) => s.zeroize(),
        }
    }
}

async fn read_limited(
    stream: Option<impl AsyncRead + Unpin>,
    limit: u64,
) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::new());
    if let Some(stream) = stream {
        stream.take(limit).read_to_end(&mut out).await?;
    }
    Ok(out)
}

/// Kills the program and everything it started (it leads its own process group).
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Exec {
    fn failed(&self, step: &str, what: impl std::fmt::Display) -> RotationError {
        RotationError::Failed(format!("exec rotator {} at {step}: {what}", self.name))
    }

    async fn run(
        &self,
        step: &str,
        ctx: &StepContext<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, RotationError> {
        // Checked here too, not only when attached: the configuration may have changed since.
        if !exec_may_rotate(&self.settings.secrets, ctx.secret_name) {
            return Err(self.failed(
                step,
                format!(
                    "may not rotate {}: rotation.exec.{}.secrets does not name it",
                    ctx.secret_name, self.name
                ),
            ));
        }
        let actions = if step == "create_secret" {
            CREATE_ACTIONS
        } else {
            READ_ACTIONS
        };
        // Lives until the step ends; dropping it revokes it.
        let credential = self
            .credentials
            .as_ref()
            .and_then(|c| c.issue(&self.name, ctx.secret_arn, actions, self.settings.timeout));
        let input = Zeroizing::new(
            serde_json::to_vec(&Input {
                step,
                secret_id: ctx.secret_arn,
                secret_name: ctx.secret_name,
                token: ctx.token,
                endpoint: &self.endpoint,
                current: ValueJson::of(&ctx.current),
                pending: ValueJson::of(&ctx.pending),
                previous: ValueJson::of(&ctx.previous),
            })
            .map_err(|e| self.failed(step, e))?,
        );
        let mut command = tokio::process::Command::new(&self.settings.command);
        command.env_clear();
        for name in &self.settings.env {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        if let Some(credential) = &credential {
            command.env("KEYWARD_TOKEN", credential.token());
        }
        let mut child = command
            .args(&self.settings.args)
            .env("KEYWARD_STEP", step)
            .env("KEYWARD_SECRET_ID", ctx.secret_arn)
            .env("KEYWARD_SECRET_NAME", ctx.secret_name)
            .env("KEYWARD_VERSION_ID", ctx.token)
            .env("KEYWARD_ENDPOINT", &self.endpoint)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                self.failed(
                    step,
                    format!("cannot start {}: {e}", self.settings.command.display()),
                )
            })?;
        let pid = child.id();
        let mut stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let work = async {
            // A program that does not read its input must not block us: write beside reading.
            let feed = async {
                if let Some(stdin) = stdin.as_mut() {
                    let _ = stdin.write_all(&input).await;
                }
                drop(stdin.take());
            };
            let (_, out, err, status) = tokio::join!(
                feed,
                read_limited(stdout, MAX_STDOUT + 1),
                read_limited(stderr, 64 * 1024),
                child.wait()
            );
            (out, err, status)
        };
        let (out, err, status) = match tokio::time::timeout(self.settings.timeout, work).await {
            Ok(done) => done,
            Err(_) => {
                kill_group(pid);
                return Err(self.failed(
                    step,
                    format!("still running after {:?}; stopped", self.settings.timeout),
                ));
            }
        };
        let status = status.map_err(|e| self.failed(step, e))?;
        if !status.success() {
            let err = err.unwrap_or_default();
            let text = String::from_utf8_lossy(&err);
            let tail: String = text
                .trim_end()
                .chars()
                .rev()
                .take(STDERR_SHOWN)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(self.failed(step, format!("{status}: {tail}")));
        }
        let out = out.map_err(|e| self.failed(step, e))?;
        if out.len() as u64 > MAX_STDOUT {
            return Err(self.failed(step, "printed more than 65536 bytes"));
        }
        Ok(out)
    }
}

impl Rotator for Exec {
    fn create_value<'a>(
        &'a self,
        ctx: &'a StepContext<'a>,
    ) -> BoxFuture<'a, Result<Option<Value>, RotationError>> {
        Box::pin(async move {
            let mut out = self.run("create_secret", ctx).await?;
            if out.last() == Some(&b'\n') {
                out.pop();
            }
            if out.is_empty() {
                return Ok(None);
            }
            if std::str::from_utf8(&out).is_err() {
                return Err(self.failed("create_secret", "printed a value that is not UTF-8"));
            }
            Ok(Some(Value::String(SecretBytes::new(std::mem::take(
                &mut *out,
            )))))
        })
    }

    fn set_secret<'a>(
        &'a self,
        ctx: &'a StepContext<'a>,
    ) -> BoxFuture<'a, Result<(), RotationError>> {
        Box::pin(async move { self.run("set_secret", ctx).await.map(drop) })
    }

    fn test_secret<'a>(
        &'a self,
        ctx: &'a StepContext<'a>,
    ) -> BoxFuture<'a, Result<(), RotationError>> {
        Box::pin(async move { self.run("test_secret", ctx).await.map(drop) })
    }

    fn finish_secret<'a>(
        &'a self,
        ctx: &'a StepContext<'a>,
    ) -> BoxFuture<'a, Result<(), RotationError>> {
        Box::pin(async move { self.run("finish_secret", ctx).await.map(drop) })
    }
}
