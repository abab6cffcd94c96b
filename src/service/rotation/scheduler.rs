//! The rotation scheduler: one background task. Each pass rotates the KMS keys that are due,
//! then, for every secret whose index entry is due, opens a scheduled rotation or runs the
//! next step of the one in flight, committing after each step. A failed step is retried after
//! a backoff that doubles up to a cap; the failure shows in DescribeSecret and the log, and
//! retries go on until the rotation completes or is cancelled. One runner per server means a
//! step never runs twice at once.

use super::rotators::{RotationError, Rotators, StepContext};
use crate::service::Clock;
use crate::service::KmsService;
use crate::service::secrets::labels::{CURRENT, PREVIOUS};
use crate::service::secrets::{Next, SecretsService};
use crate::store::{InFlight, RotationStep, RotatorSpec, SecretRecord};
use std::sync::Arc;
use std::time::Duration;

/// Secrets taken per pass; the rest wait for the next pass (which follows at once).
const BATCH: usize = 256;

#[derive(Debug, Clone)]
pub struct RotationSettings {
    /// How often the scheduler looks for due work when nothing wakes it.
    pub check_interval: Duration,
    pub retry_initial_secs: i64,
    pub retry_max_secs: i64,
    /// A step still running after this fails (exec programs have their own, shorter limit).
    pub step_timeout: Duration,
}

impl RotationSettings {
    fn backoff(&self, failed_attempts: u32) -> i64 {
        let doublings = failed_attempts.saturating_sub(1).min(30);
        self.retry_initial_secs
            .saturating_mul(1 << doublings)
            .min(self.retry_max_secs)
    }
}

pub struct Scheduler {
    pub secrets: Arc<SecretsService>,
    pub kms: Arc<KmsService>,
    pub rotators: Rotators,
    pub settings: RotationSettings,
    pub clock: Arc<dyn Clock>,
}

impl Scheduler {
    pub async fn run(&self) {
        let wake = self.secrets.rotation_wake();
        loop {
            let more = self.pass().await;
            if more {
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(self.settings.check_interval) => {}
                () = wake.notified() => {}
            }
        }
    }

    /// One pass over due work; true when a full batch was due and moved (more may wait).
    pub async fn pass(&self) -> bool {
        match self.kms.rotate_due_keys().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(keys = n, "rotated keys on schedule"),
            Err(e) => tracing::warn!(error = %e, "key rotation pass failed; will retry"),
        }
        let names = match self.secrets.rotations_due(self.clock.now(), BATCH).await {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read due rotations; will retry");
                return false;
            }
        };
        let mut moved = false;
        for name in &names {
            moved |= self.advance(name).await;
        }
        moved && names.len() == BATCH
    }

    /// Runs the due steps of one secret's rotation until it finishes, fails or must wait;
    /// true if any step ran.
    async fn advance(&self, name: &str) -> bool {
        let mut ran = false;
        loop {
            let (record, flight, rotator) = match self.secrets.next_rotation_step(name).await {
                Ok(Next::Step {
                    record,
                    flight,
                    rotator,
                }) => (record, flight, rotator),
                Ok(Next::Nothing) => return ran,
                Err(e) => {
                    tracing::warn!(secret = name, error = %e, "cannot start the rotation step; will retry");
                    return ran;
                }
            };
            let step = flight.step.as_str();
            ran = true;
            match self.run_step(&record, &flight, &rotator).await {
                Ok(()) => {
                    tracing::info!(secret = name, version = %flight.token, step, "rotation step done");
                    if let Err(e) = self
                        .secrets
                        .rotation_step_done(name, &flight.token, flight.step)
                        .await
                    {
                        tracing::warn!(secret = name, step, error = %e, "cannot record the rotation step; will retry");
                        return ran;
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    let attempts = self
                        .secrets
                        .rotation_step_failed(name, &flight.token, &message, |n| {
                            self.settings.backoff(n)
                        })
                        .await;
                    tracing::warn!(secret = name, version = %flight.token, step, attempts = ?attempts, error = %message, "rotation step failed; AWSCURRENT is unchanged; will retry");
                    return ran;
                }
            }
        }
    }

    async fn run_step(
        &self,
        record: &SecretRecord,
        flight: &InFlight,
        spec: &RotatorSpec,
    ) -> Result<(), RotationError> {
        let rotator = self.rotators.build(spec)?;
        let value_of = |label: &str| SecretsService::label_holder(record, label);
        let current = match value_of(CURRENT) {
            Some(id) => self.secrets.version_value(record, &id).await?,
            None => None,
        };
        // The previous value helps only to recover a half-applied rotation; unreadable is fine.
        let previous = match value_of(PREVIOUS) {
            Some(id) => self.secrets.version_value(record, &id).await.ok().flatten(),
            None => None,
        };
        let pending = self.secrets.version_value(record, &flight.token).await?;
        let ctx = StepContext {
            secrets: &self.secrets,
            secret_arn: &record.arn,
            secret_name: &record.name,
            token: &flight.token,
            current,
            pending,
            previous,
        };
        let work = async {
            match flight.step {
                RotationStep::CreateSecret => {
                    if ctx.pending.is_some() {
                        return Ok(());
                    }
                    match rotator.create_value(&ctx).await? {
                        Some(value) => Ok(self
                            .secrets
                            .store_pending_value(&record.name, &flight.token, value)
                            .await?),
                        None => {
                            let fresh = self.secrets.describe_secret(&record.arn).await?;
                            match self.secrets.version_value(&fresh, &flight.token).await? {
                                Some(_) => Ok(()),
                                None => Err(RotationError::Failed(
                                    "create_secret stored no value in the pending version".into(),
                                )),
                            }
                        }
                    }
                }
                RotationStep::SetSecret => rotator.set_secret(&ctx).await,
                RotationStep::TestSecret => rotator.test_secret(&ctx).await,
                RotationStep::FinishSecret => rotator.finish_secret(&ctx).await,
            }
        };
        tokio::time::timeout(self.settings.step_timeout, work)
            .await
            .map_err(|_| {
                RotationError::Failed(format!(
                    "{} did not finish within {:?}",
                    flight.step.as_str(),
                    self.settings.step_timeout
                ))
            })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let settings = RotationSettings {
            check_interval: Duration::from_secs(1),
            retry_initial_secs: 30,
            retry_max_secs: 3600,
            step_timeout: Duration::from_secs(1),
        };
        let delays: Vec<i64> = (1..=9).map(|n| settings.backoff(n)).collect();
        assert_eq!(delays, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(settings.backoff(u32::MAX), 3600);
    }
}
