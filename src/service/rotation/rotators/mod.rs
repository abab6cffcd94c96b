//! Rotators: how one kind of secret gets a new value, applies it to the system that uses it,
//! and proves the system accepts it. Each is a small implementation of `Rotator`; the four-step
//! protocol around them (labels, retries, persistence) is the scheduler's and the same for all.

mod exec;
mod generated;
mod postgresql;

pub use exec::ExecSettings;
pub use generated::check_template;

use super::StepCredentials;
use crate::service::secrets::{SecretsError, SecretsService, Value};
use crate::store::RotatorSpec;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a step is given: the secret, the rotation's token, and the values of the versions
/// labelled AWSCURRENT, AWSPENDING and AWSPREVIOUS (when they have one).
pub struct StepContext<'a> {
    pub secrets: &'a SecretsService,
    pub secret_arn: &'a str,
    pub secret_name: &'a str,
    pub token: &'a str,
    pub current: Option<Value>,
    pub pending: Option<Value>,
    pub previous: Option<Value>,
}

impl StepContext<'_> {
    pub fn pending(&self) -> Result<&Value, RotationError> {
        self.pending
            .as_ref()
            .ok_or_else(|| RotationError::Failed("the pending version has no value".into()))
    }

    pub fn current(&self) -> Result<&Value, RotationError> {
        self.current.as_ref().ok_or_else(|| {
            RotationError::Failed("the secret has no AWSCURRENT value to rotate from".into())
        })
    }
}

/// Why a step failed: shown in DescribeSecret and the log, so never a secret value.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

pub trait Rotator: Send + Sync {
    /// create_secret: the pending version's new value, or `None` when the rotator stored it
    /// itself (an exec program may call PutSecretValue).
    fn create_value<'a>(
        &'a self,
        ctx: &'a StepContext<'a>,
    ) -> BoxFuture<'a, Result<Option<Value>, RotationError>>;

    /// set_secret: make the target system accept the pending value. Must be idempotent.
    fn set_secret<'a>(
        &'a self,
        ctx: &'a StepContext<'a>,
    ) -> BoxFuture<'a, Result<(), RotationError>>;

    /// test_secret: prove the target system accepts the pending value.
    fn test_secret<'a>(
        &'a self,
        ctx: &'a StepContext<'a>,
    ) -> BoxFuture<'a, Result<(), RotationError>>;

    /// finish_secret, before the labels move.
    fn finish_secret<'a>(
        &'a self,
        _ctx: &'a StepContext<'a>,
    ) -> BoxFuture<'a, Result<(), RotationError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Builds the rotator a secret names. Exec rotators come from the server's configuration only:
/// an API caller can pick one by name but never choose what runs.
#[derive(Clone, Default)]
pub struct Rotators {
    exec: BTreeMap<String, ExecSettings>,
    /// Where an exec program reaches this server (KEYWARD_ENDPOINT).
    endpoint: String,
    /// Issues each exec step its credential (KEYWARD_TOKEN).
    credentials: Option<Arc<dyn StepCredentials>>,
}

impl Rotators {
    pub fn new(exec: BTreeMap<String, ExecSettings>, endpoint: String) -> Self {
        Self {
            exec,
            endpoint,
            credentials: None,
        }
    }

    pub fn with_credentials(mut self, credentials: Arc<dyn StepCredentials>) -> Self {
        self.credentials = Some(credentials);
        self
    }

    pub fn build(&self, spec: &RotatorSpec) -> Result<Box<dyn Rotator>, RotationError> {
        Ok(match spec {
            RotatorSpec::Generated { password, template } => Box::new(generated::Generated {
                password: password.clone(),
                template: template.clone(),
            }),
            RotatorSpec::Postgresql {
                strategy,
                admin_secret_id,
                password,
            } => Box::new(postgresql::Postgresql {
                strategy: *strategy,
                admin_secret_id: admin_secret_id.clone(),
                password: password.clone(),
            }),
            RotatorSpec::Exec { name } => {
                let settings = self.exec.get(name).ok_or_else(|| {
                    RotationError::Failed(format!(
                        "no exec rotator named {name:?} in the server's configuration"
                    ))
                })?;
                Box::new(exec::Exec {
                    name: name.clone(),
                    settings: settings.clone(),
                    endpoint: self.endpoint.clone(),
                    credentials: self.credentials.clone(),
                })
            }
        })
    }
}
