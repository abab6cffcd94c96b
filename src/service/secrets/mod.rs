//! Secrets with AWS Secrets Manager semantics: versions, staging labels, idempotent writes,
//! scheduled deletion, tags, listing and random passwords. Each version's value is sealed in
//! software under a fresh data key from the secret's KMS key.
//!
//! # The rules
//!
//! These are the rules the code and the tests cite ("Labels 7", "Rotation 3"), stated once,
//! here. They follow AWS Secrets Manager (API 2017-10-17); where AWS is silent, the rule is
//! Keyward's decision. Sizes and characters are in [`limits`].
//!
//! ## Labels (staging labels)
//!
//! 1. A label sits on at most one version of a secret; attaching it elsewhere takes it from
//!    the version that had it.
//! 2. CreateSecret with a value makes the first version and labels it AWSCURRENT; without a
//!    value it makes none. A secret's first version always gets AWSCURRENT, besides any labels
//!    the request names (a first PutSecretValue with `["AWSPENDING"]` yields both).
//! 3. PutSecretValue without labels: the new version gets AWSCURRENT, and the version that
//!    lost it gets AWSPREVIOUS (from whichever version had it). The response says
//!    `["AWSCURRENT"]`.
//! 4. PutSecretValue with labels: the new version gets exactly those, each taken from its old
//!    holder. AWSCURRENT moves only if named, and then AWSPREVIOUS goes to the version it
//!    left; `["AWSPENDING"]` leaves AWSCURRENT where it was.
//! 5. UpdateSecret with a value behaves as rule 3; with only a description or KMS key it makes
//!    no version and returns no version id.
//! 6. UpdateSecretVersionStage adds the label to `move_to_version_id`. If another version
//!    holds it, `remove_from_version_id` must name that version (else InvalidParameter). With
//!    no `move_to_version_id` the label is only removed. Moving AWSCURRENT moves AWSPREVIOUS to
//!    the version it left; moving AWSCURRENT onto AWSPENDING's version keeps AWSPENDING there.
//! 7. A version without labels is deprecated: DescribeSecret, ListSecrets and
//!    ListSecretVersionIds leave it out unless `include_deprecated` is set. Deprecated versions
//!    beyond the newest 100 are deleted, never one less than 24 hours old.
//! 8. GetSecretValue with neither version id nor stage reads AWSCURRENT; with both they must
//!    name the same version; a label on no version is NotFound.
//!
//! ## Idempotency
//!
//! 1. The client request token becomes the new version's id; without one a UUID is generated
//!    (the CLI always sends one).
//! 2. A token already used in the secret with the same value: success, no new version.
//! 3. A token already used with another value: ResourceExists ("you can't modify an existing
//!    version").
//! 4. CreateSecret of an existing name: ResourceExists, unless token and value are those of
//!    its first version, when it succeeds and changes nothing (a retried create is safe).
//!
//! ## Deletion
//!
//! 1. DeleteSecret schedules deletion after the recovery window (7-30 days, default 30);
//!    `force_delete_without_recovery` deletes at once and excludes a window. The answer
//!    carries the deletion date.
//! 2. While scheduled, reads, writes and rotation fail with InvalidRequest ("marked for
//!    deletion"); ListSecrets hides the secret unless `include_planned_deletion`; CreateSecret
//!    of its name fails with InvalidRequest.
//! 3. RestoreSecret cancels the deletion.
//! 4. When the window ends, a background task removes the data and wrapped keys for good; a
//!    restart keeps the schedule.
//!
//! ## Rotation (four steps)
//!
//! 1. RotateSecret stores the rules and rotator and, when rotating (`rotate_immediately`,
//!    default true), makes the pending version, whose id is the token, labelled AWSPENDING and
//!    without a value.
//! 2. The rotator runs `create_secret` (a value for the pending version, if it has none),
//!    `set_secret` (apply it to the target system), `test_secret` (prove the target accepts
//!    it) and `finish_secret`, after which AWSCURRENT moves to the token's version (AWSPREVIOUS
//!    follows) and AWSPENDING is removed. Each step is idempotent and retried on failure.
//! 3. After a rotation AWSPENDING is nowhere or on AWSCURRENT's version. Anywhere else, the
//!    next RotateSecret fails with InvalidRequest ("a previous rotation isn't complete") and
//!    the scheduler takes that rotation up again.
//! 4. A failed rotation leaves AWSCURRENT alone: clients never read a half-made value.
//! 5. CancelRotateSecret turns rotation off and stops the rotation in flight; labels stay.
//! 6. Schedules: `automatically_after_days` (1-1000), or `rate(N hours|N days)` (at most every
//!    4 hours) or `cron(min hour day-of-month month day-of-week year)`, in UTC, with an
//!    optional window `duration` (`Nh`).

mod error;
mod indexes;
pub mod labels;
mod lifecycle;
pub mod limits;
mod listing;
mod password;
pub mod policy;
mod read;
pub mod replica;
mod rotation;
mod values;
mod write;

pub use error::SecretsError;
pub use lifecycle::{Deleted, Deletion};
pub use listing::{Filter, ListOptions};
pub use password::PasswordOptions;
pub use read::{BatchItem, GetValue, ReadCheck, SecretValue};
pub use replica::{
    Applied, Delivered, Incoming, ReplicaInfo, ReplicaRegion, ReplicaState, ReplicaVersion,
};
pub use rotation::{Next, RotateRequest, RotationAnswer, RotationRules, exec_may_rotate};
pub use values::Value;
pub use write::{Named, NewSecret, PutValue, SecretUpdate, StageMove};

use crate::service::Clock;
use crate::service::kms::KmsService;
use crate::service::kms::names::Arns;
use crate::store::{self, SecretRecord, Store, keyspace};
use std::sync::Arc;

/// The KMS key secrets use when none is named; created at first start.
pub const DEFAULT_KEY_ALIAS: &str = "alias/keyward/secretsmanager";

const LOCK_STRIPES: usize = 64;

fn secret_key(name: &str) -> Vec<u8> {
    keyspace::secret(name)
}

fn value_prefix(secret: &SecretRecord) -> Vec<u8> {
    keyspace::secret_values(&secret.id)
}

fn value_key(secret: &SecretRecord, version_id: &str) -> Vec<u8> {
    keyspace::secret_value(&secret.id, version_id)
}

pub struct SecretsService {
    kms: Arc<KmsService>,
    store: Store,
    clock: Arc<dyn Clock>,
    arns: Arns,
    /// Writers to one secret take its stripe, so concurrent writes queue instead of retrying
    /// on conflicts; the guarded commit stays as the correctness check.
    locks: Vec<tokio::sync::Mutex<()>>,
    /// Exec rotators the configuration names, with the patterns of the secret names each may
    /// be attached to: RotateSecret accepts only these, only there.
    exec_rotators: std::collections::BTreeMap<String, Vec<String>>,
    /// Tells the rotation scheduler that a rotation was requested.
    rotation_wake: Arc<tokio::sync::Notify>,
    /// The replication log, when this site has peers.
    outbox: Option<Arc<crate::service::secrets::replica::outbox::Outbox>>,
}

impl SecretsService {
    pub fn new(kms: Arc<KmsService>, store: Store, clock: Arc<dyn Clock>) -> Self {
        let arns = kms.arns().clone();
        Self {
            kms,
            store,
            clock,
            arns,
            locks: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            exec_rotators: Default::default(),
            rotation_wake: Default::default(),
            outbox: None,
        }
    }

    /// The exec rotators RotateSecret may name, with the secret-name patterns of each.
    pub fn with_exec_rotators(
        mut self,
        rotators: impl IntoIterator<Item = (String, Vec<String>)>,
    ) -> Self {
        self.exec_rotators = rotators.into_iter().collect();
        self
    }

    /// Creates the default KMS key and its alias unless they exist.
    pub async fn ensure_default_key(&self) -> Result<(), SecretsError> {
        use crate::service::KmsError;
        match self.kms.describe_key(DEFAULT_KEY_ALIAS).await {
            Ok(_) => return Ok(()),
            Err(KmsError::NotFound(_)) => {}
            Err(e) => return Err(SecretsError::Internal(e.into())),
        }
        let key = self
            .kms
            .create_key(crate::service::kms::NewKey {
                description: "Default key for Keyward secrets".into(),
                key_usage: String::new(),
                key_spec: String::new(),
                tags: Vec::new(),
                protection: Default::default(),
                origin: String::new(),
            })
            .await
            .map_err(SecretsError::from_kms_write)?;
        match self.kms.create_alias(DEFAULT_KEY_ALIAS, &key.key_id).await {
            Ok(()) => Ok(()),
            // Another node of a cluster starting at the same moment made the default key.
            Err(KmsError::AlreadyExists(_)) => {
                if let Err(e) = self.kms.discard_unused_key(&key.key_id).await {
                    tracing::warn!(key_id = %key.key_id, error = %e, "an unused default key is left behind");
                }
                Ok(())
            }
            Err(e) => Err(SecretsError::Internal(e.into())),
        }
    }

    fn lock(&self, name: &str) -> &tokio::sync::Mutex<()> {
        &self.locks[self.stripe(name)]
    }

    fn stripe(&self, name: &str) -> usize {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        name.hash(&mut hasher);
        (hasher.finish() as usize) % LOCK_STRIPES
    }

    fn secret_arn(&self, name: &str) -> Result<String, SecretsError> {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let mut suffix = String::with_capacity(6);
        let mut bytes = [0u8; 6];
        getrandom::fill(&mut bytes).map_err(|e| SecretsError::Internal(e.into()))?;
        for b in bytes {
            // 62 does not divide 256: a slight bias is harmless in an identifier.
            suffix.push(ALPHABET[b as usize % ALPHABET.len()] as char);
        }
        Ok(self.arns.secret(name, &suffix))
    }

    async fn load_by_name(&self, name: &str) -> Result<Option<(SecretRecord, u64)>, SecretsError> {
        let key = secret_key(name);
        match self.store.get(&key).await? {
            Some(found) => {
                let record = store::decode(&key, &found.value).map_err(|e| {
                    tracing::error!(secret = name, error = %e, "damaged secret record");
                    SecretsError::DecryptionFailure(format!("{name}: the stored record is damaged"))
                })?;
                Ok(Some((record, found.version)))
            }
            None => Ok(None),
        }
    }

    /// The secret a client names, deleted or not. As AWS resolves a secret id: an exact name
    /// first, then a full ARN (the name, a hyphen and the random six-character suffix), then a
    /// partial ARN (the ARN without the suffix). Names cannot hold `:`, so an id starting with
    /// `arn:` is never a name.
    async fn resolve(&self, secret_id: &str) -> Result<(SecretRecord, u64), SecretsError> {
        limits::secret_id(secret_id)?;
        let not_found = || {
            // AWS's words exactly: scripts and runbooks match on them.
            SecretsError::NotFound("Secrets Manager can't find the specified secret.".into())
        };
        // Either partition names the same secret (a record keeps the ARN it was made with, in
        // the partition configured then): compared in Keyward's own.
        let canonical = crate::policy::canonical_arn(secret_id);
        let secret_id = canonical.as_ref();
        let prefix = format!(
            "arn:keyward:secretsmanager:{}:{}:secret:",
            self.arns.region, self.arns.account_id
        );
        let same = |arn: &str| crate::policy::canonical_arn(arn) == secret_id;
        let Some(rest) = secret_id.strip_prefix(&prefix) else {
            if secret_id.starts_with("arn:") {
                return Err(not_found());
            }
            return self.load_by_name(secret_id).await?.ok_or_else(not_found);
        };
        let full_name = rest
            .len()
            .checked_sub(7)
            .filter(|&cut| rest.as_bytes()[cut] == b'-')
            .map(|cut| &rest[..cut]);
        if let Some(name) = full_name
            && let Some((record, version)) = self.load_by_name(name).await?
            && same(&record.arn)
        {
            return Ok((record, version));
        }
        match self.load_by_name(rest).await? {
            Some((record, version))
                if crate::policy::canonical_arn(&record.arn)
                    .strip_prefix(secret_id)
                    .is_some_and(|suffix| suffix.len() == 7 && suffix.starts_with('-')) =>
            {
                Ok((record, version))
            }
            _ => Err(not_found()),
        }
    }

    /// Like `resolve`, refusing secrets scheduled for deletion (rule Deletion 2).
    async fn resolve_live(&self, secret_id: &str) -> Result<(SecretRecord, u64), SecretsError> {
        let (record, version) = self.resolve(secret_id).await?;
        if record.deletion_date.is_some() {
            return Err(SecretsError::InvalidRequest(format!(
                "secret {} is marked for deletion",
                record.name
            )));
        }
        Ok((record, version))
    }

    /// Like `resolve_live`, refusing replicas: for client writes.
    async fn resolve_writable(&self, secret_id: &str) -> Result<(SecretRecord, u64), SecretsError> {
        let (record, version) = self.resolve_live(secret_id).await?;
        self.writable(&record)?;
        Ok((record, version))
    }

    fn today(&self) -> crate::time::Timestamp {
        self.clock.now().start_of_day()
    }
}
