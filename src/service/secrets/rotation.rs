//! RotateSecret and CancelRotateSecret, and the state changes the rotation scheduler makes as
//! a rotation moves through its four steps (rules Rotation 1-6 in `service::secrets`).
//!
//! A rotation's progress lives in the secret's record (`RotationRecord::in_flight`) and is
//! committed after every step, together with an entry in a due-time index, so the scheduler
//! finds due work without reading every secret and a restart resumes where it stopped.

use super::indexes;
use super::labels::{self, CURRENT, PENDING};
use super::values::Value;
use super::write::{MAX_VERSIONS, Named};
use super::{SecretsError, SecretsService, limits, secret_key};
use crate::service::rotation::schedule::Schedule;
use crate::store::keyspace::{self, SECRETS_BY_ROTATION};
use crate::store::{
    self, Expect, InFlight, Op, RotationRecord, RotationStep, RotatorSpec, SecretRecord,
    SecretVersionMeta,
};
use crate::time::Timestamp;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationRules {
    pub automatically_after_days: Option<i64>,
    pub schedule_expression: Option<String>,
    pub duration: Option<String>,
}

impl RotationRules {
    pub fn schedule(&self) -> Result<Schedule, SecretsError> {
        Schedule::parse(
            self.automatically_after_days,
            self.schedule_expression.as_deref(),
            self.duration.as_deref(),
        )
        .map_err(|e| SecretsError::invalid("rotation_rules", e.to_string()))
    }

    fn of(rotation: &RotationRecord) -> Self {
        Self {
            automatically_after_days: rotation.automatically_after_days,
            schedule_expression: rotation.schedule_expression.clone(),
            duration: rotation.duration.clone(),
        }
    }

    fn is_set(&self) -> bool {
        self.automatically_after_days.is_some() || self.schedule_expression.is_some()
    }
}

/// RotateSecret's and CancelRotateSecret's answer: the secret and the version the rotation
/// started or stopped, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationAnswer {
    pub secret: Named,
    pub version_id: Option<String>,
}

pub struct RotateRequest {
    pub secret_id: String,
    pub client_request_token: String,
    pub rules: Option<RotationRules>,
    pub rotator: Option<RotatorSpec>,
    pub rotate_immediately: bool,
}

/// What the scheduler should do next for one secret.
pub enum Next {
    Nothing,
    /// Run `flight.step` of the rotation in flight.
    Step {
        record: Box<SecretRecord>,
        flight: InFlight,
        rotator: RotatorSpec,
    },
}

/// The due-index changes when a record's rotation goes from `old` to `new`.
fn due_ops(name: &str, old: Option<&RotationRecord>, new: Option<&RotationRecord>) -> Vec<Op> {
    indexes::move_entry(
        SECRETS_BY_ROTATION,
        name,
        old.and_then(RotationRecord::due_at),
        new.and_then(RotationRecord::due_at),
    )
}

/// Where AWSPENDING sits on a version other than AWSCURRENT's: a rotation not finished.
fn unfinished_pending(record: &SecretRecord) -> Option<usize> {
    let pending = labels::holder(&record.versions, PENDING)?;
    (labels::holder(&record.versions, CURRENT) != Some(pending)).then_some(pending)
}

/// Rule Rotation 1: the pending version exists first, labelled AWSPENDING, without a value.
fn add_pending_version(
    record: &mut SecretRecord,
    token: &str,
    now: Timestamp,
) -> Result<(), SecretsError> {
    if record.versions.len() >= MAX_VERSIONS {
        return Err(SecretsError::LimitExceeded(format!(
            "{} has {MAX_VERSIONS} versions",
            record.name
        )));
    }
    record.versions.push(SecretVersionMeta::empty(token, now));
    let at = record.versions.len() - 1;
    labels::move_label(&mut record.versions, PENDING, at)
}

/// Whether an exec rotator configured with these secret-name patterns may rotate `name`.
/// No patterns: none (the configuration must say where each program may act).
pub fn exec_may_rotate(patterns: &[String], name: &str) -> bool {
    use crate::policy::{Case, wildcard_match};
    patterns
        .iter()
        .any(|pattern| wildcard_match(pattern, name, Case::Sensitive))
}

fn start_flight(token: &str, now: Timestamp) -> InFlight {
    InFlight {
        token: token.to_owned(),
        step: RotationStep::CreateSecret,
        started_at: now,
        failed_attempts: 0,
        last_error: None,
        retry_at: now,
    }
}

fn next_window_start(rotation: &RotationRecord, after: Timestamp) -> Option<Timestamp> {
    if !rotation.enabled {
        return None;
    }
    RotationRules::of(rotation)
        .schedule()
        .ok()?
        .next_window(after.secs())
        .map(|w| Timestamp::from_secs(w.start))
}

impl SecretsService {
    /// Commits `record` (read at `version`) and moves its due-index entry along.
    async fn commit_rotation(
        &self,
        before: Option<&RotationRecord>,
        record: &SecretRecord,
        version: u64,
    ) -> Result<(), SecretsError> {
        let mut ops = due_ops(&record.name, before, record.rotation.as_ref());
        ops.push(Op::Put {
            key: secret_key(&record.name),
            value: store::encode(record),
            expect: Expect::Version(version),
        });
        self.commit(ops).await
    }

    /// RotateSecret: stores the rules and rotator, and (by default) starts a rotation whose
    /// pending version is the token. Returns the secret's ARN and name and the pending version.
    pub async fn rotate_secret(
        &self,
        request: RotateRequest,
    ) -> Result<RotationAnswer, SecretsError> {
        limits::token(&request.client_request_token)?;
        if let Some(rules) = &request.rules {
            rules.schedule()?;
        }
        let (snapshot, _) = self.resolve_writable(&request.secret_id).await?;
        if let Some(rotator) = &request.rotator {
            self.check_rotator(rotator, &snapshot.name)?;
        }
        let _writer = self.lock(&snapshot.name).lock().await;
        let (mut record, version) = self.resolve_writable(&snapshot.arn).await?;
        let before = record.rotation.clone();
        let now = self.clock.now();

        if let Some(flight) = before.as_ref().and_then(|r| r.in_flight.as_ref()) {
            if flight.token == request.client_request_token {
                // A retried request for the rotation already under way.
                return Ok(RotationAnswer {
                    version_id: Some(flight.token.clone()),
                    secret: Named::of(record),
                });
            }
            return Err(SecretsError::InvalidRequest(format!(
                "a previous rotation of {} isn't complete (version {} is at {}); it will be reattempted",
                record.name,
                flight.token,
                flight.step.as_str()
            )));
        }
        if let Some(at) = unfinished_pending(&record) {
            let pending_id = record.versions[at].version_id.clone();
            // Rule Rotation 3: refuse, and make sure the scheduler takes that rotation up again.
            if let Some(rotation) = record.rotation.as_mut()
                && rotation.in_flight.is_none()
            {
                rotation.in_flight = Some(start_flight(&pending_id, now));
                self.commit_rotation(before.as_ref(), &record, version)
                    .await?;
                self.rotation_wake.notify_one();
            }
            return Err(SecretsError::InvalidRequest(format!(
                "a previous rotation of {} isn't complete (version {pending_id} still has AWSPENDING); that rotation will be reattempted",
                record.name
            )));
        }

        let rotator = match (request.rotator, &before) {
            (Some(rotator), _) => rotator,
            (None, Some(existing)) => existing.rotator.clone(),
            (None, None) => {
                return Err(SecretsError::invalid(
                    "rotator",
                    "this secret has no rotator yet: name one",
                ));
            }
        };
        let rules = request
            .rules
            .or_else(|| before.as_ref().map(RotationRules::of))
            .unwrap_or_default();
        let mut rotation = RotationRecord {
            enabled: rules.is_set(),
            automatically_after_days: rules.automatically_after_days,
            schedule_expression: rules.schedule_expression.clone(),
            duration: rules.duration.clone(),
            rotator,
            last_rotated_at: before.as_ref().and_then(|r| r.last_rotated_at),
            next_rotation_at: None,
            in_flight: None,
        };
        let mut started = None;
        if request.rotate_immediately {
            let token = super::write::version_id_for(&request.client_request_token);
            if labels::index(&record.versions, &token).is_some() {
                return Err(SecretsError::Exists(format!(
                    "You can't use ClientRequestToken {token} because that value is already in \
                     use for a version of secret {}.",
                    record.arn
                )));
            }
            add_pending_version(&mut record, &token, now)?;
            rotation.in_flight = Some(start_flight(&token, now));
            started = Some(token);
        }
        rotation.next_rotation_at = next_window_start(&rotation, now);
        record.rotation = Some(rotation);
        record.last_changed_at = now;
        self.commit_rotation(before.as_ref(), &record, version)
            .await?;
        self.rotation_wake.notify_one();
        tracing::info!(secret = %record.name, pending = ?started, "rotation configured");
        Ok(RotationAnswer {
            secret: Named::of(record),
            version_id: started,
        })
    }

    /// CancelRotateSecret (rule Rotation 5): rotation off, the rotation in flight stopped,
    /// labels untouched. Returns the ARN, name and the version a stopped rotation left.
    pub async fn cancel_rotate_secret(
        &self,
        secret_id: &str,
    ) -> Result<RotationAnswer, SecretsError> {
        let (snapshot, _) = self.resolve_writable(secret_id).await?;
        let _writer = self.lock(&snapshot.name).lock().await;
        let (mut record, version) = self.resolve_writable(&snapshot.arn).await?;
        let before = record.rotation.clone();
        let Some(rotation) = record.rotation.as_mut() else {
            return Err(SecretsError::InvalidRequest(format!(
                "{} has no rotation configured",
                record.name
            )));
        };
        let stopped = rotation.in_flight.take().map(|f| f.token);
        rotation.enabled = false;
        rotation.next_rotation_at = None;
        self.commit_rotation(before.as_ref(), &record, version)
            .await?;
        tracing::info!(secret = %record.name, stopped = ?stopped, "rotation cancelled");
        Ok(RotationAnswer {
            secret: Named::of(record),
            version_id: stopped,
        })
    }

    /// Other secrets a rotation of `secret_id` reads with `requested` (or, when the request
    /// names none, the rotator the secret has): a PostgreSQL administrator's secret. RotateSecret
    /// authorises each for its caller, since the server reads it on that caller's behalf.
    pub async fn secrets_a_rotation_reads(
        &self,
        secret_id: &str,
        requested: Option<&RotatorSpec>,
    ) -> Result<Vec<String>, SecretsError> {
        let stored;
        let rotator = match requested {
            Some(rotator) => rotator,
            None => {
                stored = self
                    .describe_secret(secret_id)
                    .await?
                    .rotation
                    .map(|rotation| rotation.rotator);
                match &stored {
                    Some(rotator) => rotator,
                    None => return Ok(Vec::new()),
                }
            }
        };
        Ok(match rotator {
            RotatorSpec::Postgresql {
                admin_secret_id: Some(admin),
                ..
            } => vec![admin.clone()],
            _ => Vec::new(),
        })
    }

    /// Whether `rotator` may be attached to the secret `secret_name`.
    fn check_rotator(&self, rotator: &RotatorSpec, secret_name: &str) -> Result<(), SecretsError> {
        match rotator {
            RotatorSpec::Exec { name } => match self.exec_rotators.get(name) {
                None => Err(SecretsError::invalid(
                    "rotator",
                    format!("no exec rotator named {name:?} in the server's configuration"),
                )),
                Some(patterns) if !exec_may_rotate(patterns, secret_name) => {
                    Err(SecretsError::invalid(
                        "rotator",
                        format!(
                            "exec rotator {name:?} may not be attached to {secret_name}: \
                             rotation.exec.{name}.secrets does not name it"
                        ),
                    ))
                }
                Some(_) => Ok(()),
            },
            RotatorSpec::Postgresql {
                strategy: store::PostgresStrategy::AlternatingUsers,
                admin_secret_id: None,
                ..
            } => Err(SecretsError::invalid(
                "rotator",
                "alternating-users needs admin_secret_id",
            )),
            RotatorSpec::Generated {
                template: Some(template),
                ..
            } => crate::service::rotation::rotators::check_template(template)
                .map_err(|e| SecretsError::invalid("rotator", e)),
            _ => Ok(()),
        }
    }

    /// Up to `limit` names of secrets with rotation work due at `now`, oldest due first.
    /// Secrets marked for deletion keep their entries (a restore resumes them) but are passed
    /// over; entries whose secret is gone or whose schedule moved on are removed.
    pub async fn rotations_due(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<String>, SecretsError> {
        let mut names = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        while names.len() < limit {
            let page = self
                .store
                .scan(SECRETS_BY_ROTATION, after.as_deref(), limit)
                .await?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = Some(last.clone());
            for (key, _) in page {
                let Some((due, name)) = keyspace::parse_time_key(SECRETS_BY_ROTATION, &key) else {
                    continue;
                };
                if due > now || names.len() == limit {
                    return Ok(names);
                }
                match self.load_by_name(name).await? {
                    Some((record, _))
                        if record.rotation.as_ref().and_then(RotationRecord::due_at)
                            == Some(due) =>
                    {
                        if record.deletion_date.is_none() {
                            names.push(name.to_owned());
                        }
                    }
                    _ => {
                        self.commit(vec![Op::Delete {
                            key: key.clone(),
                            expect: Expect::Any,
                        }])
                        .await?;
                    }
                }
            }
        }
        Ok(names)
    }

    /// For the scheduler: opens a scheduled rotation whose window has come (resuming an
    /// unfinished one if AWSPENDING is left over), and returns the step due now, if any.
    pub async fn next_rotation_step(&self, name: &str) -> Result<Next, SecretsError> {
        let _writer = self.lock(name).lock().await;
        let Some((mut record, version)) = self.load_by_name(name).await? else {
            return Ok(Next::Nothing);
        };
        let Some(before) = record.rotation.clone() else {
            return Ok(Next::Nothing);
        };
        let now = self.clock.now();
        if record.deletion_date.is_some() {
            return Ok(Next::Nothing);
        }
        if before.in_flight.is_none() {
            let Some(due) = before
                .next_rotation_at
                .filter(|&t| before.enabled && t <= now)
            else {
                return Ok(Next::Nothing);
            };
            let window = RotationRules::of(&before).schedule()?.duration_secs();
            if now >= due.add_secs(window) {
                tracing::info!(
                    secret = name,
                    "the rotation window passed while the server was down; rotating once now"
                );
            }
            let token = match unfinished_pending(&record) {
                Some(at) => record.versions[at].version_id.clone(),
                None => {
                    let token = uuid::Uuid::new_v4().to_string();
                    add_pending_version(&mut record, &token, now)?;
                    token
                }
            };
            if let Some(rotation) = record.rotation.as_mut() {
                rotation.in_flight = Some(start_flight(&token, now));
                rotation.next_rotation_at = next_window_start(rotation, now);
            }
            record.last_changed_at = now;
            self.commit_rotation(Some(&before), &record, version)
                .await?;
            tracing::info!(secret = name, version = %token, "scheduled rotation started");
        }
        match record.rotation.as_ref() {
            Some(RotationRecord {
                in_flight: Some(flight),
                rotator,
                ..
            }) if flight.retry_at <= now => Ok(Next::Step {
                flight: flight.clone(),
                rotator: rotator.clone(),
                record: Box::new(record.clone()),
            }),
            _ => Ok(Next::Nothing),
        }
    }

    /// Records that `step` of the rotation `token` succeeded. After finish_secret, AWSCURRENT
    /// moves to the new version (AWSPREVIOUS follows) and AWSPENDING leaves it, in the same
    /// commit that ends the rotation. Nothing happens if the rotation was cancelled meanwhile.
    pub async fn rotation_step_done(
        &self,
        name: &str,
        token: &str,
        step: RotationStep,
    ) -> Result<(), SecretsError> {
        let _writer = self.lock(name).lock().await;
        let Some((mut record, version)) = self.load_by_name(name).await? else {
            return Ok(());
        };
        let before = record.rotation.clone();
        if !before
            .as_ref()
            .and_then(|r| r.in_flight.as_ref())
            .is_some_and(|f| f.token == token && f.step == step)
        {
            return Ok(());
        }
        let now = self.clock.now();
        match step.next() {
            Some(next) => {
                if let Some(flight) = record.rotation.as_mut().and_then(|r| r.in_flight.as_mut()) {
                    flight.step = next;
                    flight.failed_attempts = 0;
                    flight.last_error = None;
                    flight.retry_at = now;
                }
            }
            None => {
                let at = labels::index(&record.versions, token)
                    .filter(|&at| record.versions[at].has_value)
                    .ok_or_else(|| {
                        SecretsError::InvalidRequest(format!(
                            "version {token} of {name} has no value to make current"
                        ))
                    })?;
                labels::move_label(&mut record.versions, CURRENT, at)?;
                record.versions[at].stages.retain(|s| s != PENDING);
                if let Some(rotation) = record.rotation.as_mut() {
                    rotation.in_flight = None;
                    rotation.last_rotated_at = Some(now);
                    rotation.next_rotation_at = next_window_start(rotation, now);
                }
                record.last_changed_at = now;
                tracing::info!(secret = name, version = token, "rotation finished");
            }
        }
        self.commit_rotation(before.as_ref(), &record, version)
            .await
    }

    /// Records a failed attempt at the current step; the next is not before `retry_at`.
    pub async fn rotation_step_failed(
        &self,
        name: &str,
        token: &str,
        error: &str,
        retry_after: impl FnOnce(u32) -> i64,
    ) -> Result<u32, SecretsError> {
        let _writer = self.lock(name).lock().await;
        let Some((mut record, version)) = self.load_by_name(name).await? else {
            return Ok(0);
        };
        let before = record.rotation.clone();
        let now = self.clock.now();
        let Some(flight) = record
            .rotation
            .as_mut()
            .and_then(|r| r.in_flight.as_mut())
            .filter(|f| f.token == token)
        else {
            return Ok(0);
        };
        flight.failed_attempts += 1;
        flight.last_error = Some(error.to_owned());
        flight.retry_at = now.add_secs(retry_after(flight.failed_attempts));
        let attempts = flight.failed_attempts;
        self.commit_rotation(before.as_ref(), &record, version)
            .await?;
        Ok(attempts)
    }

    /// create_secret: stores `value` in the pending version under AWSPENDING, unless that
    /// version already has one (a repeated step).
    pub async fn store_pending_value(
        &self,
        name: &str,
        token: &str,
        value: Value,
    ) -> Result<(), SecretsError> {
        let (snapshot, _) = self.resolve_live(name).await?;
        if labels::index(&snapshot.versions, token)
            .is_some_and(|at| snapshot.versions[at].has_value)
        {
            return Ok(());
        }
        self.write_version(&snapshot, token, value, Some(&[PENDING.to_owned()]), None)
            .await?;
        Ok(())
    }

    /// The value of version `version_id`, if that version exists and has one.
    pub async fn version_value(
        &self,
        record: &SecretRecord,
        version_id: &str,
    ) -> Result<Option<Value>, SecretsError> {
        match labels::index(&record.versions, version_id) {
            Some(at) if record.versions[at].has_value => {
                let stored = self.load_value_record(record, version_id).await?;
                Ok(Some(
                    self.open(&record.arn, &record.name, version_id, &stored)
                        .await?,
                ))
            }
            _ => Ok(None),
        }
    }

    /// The id of the version holding `label`, if any.
    pub fn label_holder(record: &SecretRecord, label: &str) -> Option<String> {
        labels::holder(&record.versions, label).map(|at| record.versions[at].version_id.clone())
    }

    pub fn rotation_wake(&self) -> std::sync::Arc<tokio::sync::Notify> {
        std::sync::Arc::clone(&self.rotation_wake)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PasswordPolicy;

    fn rotation(enabled: bool, next: Option<i64>, retry_at: Option<i64>) -> RotationRecord {
        let (next, retry_at) = (
            next.map(Timestamp::from_secs),
            retry_at.map(Timestamp::from_secs),
        );
        RotationRecord {
            enabled,
            automatically_after_days: Some(1),
            schedule_expression: None,
            duration: None,
            rotator: RotatorSpec::Generated {
                password: PasswordPolicy::default(),
                template: None,
            },
            last_rotated_at: None,
            next_rotation_at: next,
            in_flight: retry_at.map(|at| InFlight {
                retry_at: at,
                ..start_flight("t", Timestamp::EPOCH)
            }),
        }
    }

    #[test]
    fn the_index_follows_the_due_time() {
        // A rotation in flight is due at its retry time, whatever the schedule says.
        let at = |secs| Some(Timestamp::from_secs(secs));
        assert_eq!(rotation(true, Some(50), Some(7)).due_at(), at(7));
        assert_eq!(rotation(true, Some(50), None).due_at(), at(50));
        assert_eq!(rotation(false, Some(50), None).due_at(), None);
        let moved = due_ops(
            "s",
            Some(&rotation(true, Some(50), None)),
            Some(&rotation(true, Some(80), None)),
        );
        let key = |t| keyspace::time_key(SECRETS_BY_ROTATION, Timestamp::from_secs(t), "s");
        assert!(
            matches!(&moved[..], [Op::Delete { key: old, .. }, Op::Put { key: new, .. }]
            if *old == key(50) && *new == key(80))
        );
        let same = rotation(true, Some(50), None);
        assert!(due_ops("s", Some(&same), Some(&same)).is_empty());
        let off = due_ops("s", Some(&same), Some(&rotation(false, None, None)));
        assert!(matches!(&off[..], [Op::Delete { .. }]));
    }
}
