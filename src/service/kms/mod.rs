//! The KMS service: key lifecycle, aliases and cryptographic operations with AWS KMS
//! semantics. Each submodule holds one family of operations.

mod aliases;
pub mod cache;
mod crypto;
mod import;
mod keys;
pub mod names;
pub mod policy;
mod purge;
mod rotation;
mod tags;

pub use crypto::{
    DataKeySpec, Decrypt, Encrypt, GenerateDataKey, GeneratedDataKey, Opened, ReEncrypt, ReSealed,
    Sealed, check_algorithm, context,
};
pub use import::{ImportMaterial, ImportParametersOut};
pub use keys::NewKey;
pub use names::Arns;
pub use rotation::RotationStatus as KeyRotationStatus;

use crate::backend::Hardware;
use crate::service::{Clock, KmsError};
use crate::store::{AliasRecord, KeyRecord, KeyState, Store, Table, Updated, keyspace};
use names::KeyName;
use std::sync::Arc;
use uuid::Uuid;

/// Guarded read-modify-write attempts before giving up under contention.
const MAX_ATTEMPTS: usize = 8;

pub struct KmsService {
    hw: Hardware,
    store: Store,
    /// Key records by key id.
    keys: Table<KeyRecord>,
    /// Alias records by alias name.
    aliases: Table<AliasRecord>,
    clock: Arc<dyn Clock>,
    arns: Arns,
    data_keys: cache::DataKeyCache,
    /// How long GetParametersForImport's answer is valid.
    import_token_lifetime: std::time::Duration,
    /// With escrow on, every key version made here is escrowed or not made.
    escrow: Option<crate::escrow::EscrowKey>,
}

impl KmsService {
    pub fn new(hw: Hardware, store: Store, clock: Arc<dyn Clock>, arns: Arns) -> Self {
        Self {
            hw,
            keys: Table::new(store.clone(), keyspace::KMS_KEYS),
            aliases: Table::new(store.clone(), keyspace::KMS_ALIASES),
            store,
            clock,
            arns,
            data_keys: cache::DataKeyCache::new(0, std::time::Duration::ZERO),
            import_token_lifetime: import::DEFAULT_TOKEN_LIFETIME,
            escrow: None,
        }
    }

    /// Import tokens and wrapping keys valid for `lifetime` instead of AWS's 24 hours.
    pub fn with_import_token_lifetime(mut self, lifetime: std::time::Duration) -> Self {
        self.import_token_lifetime = lifetime;
        self
    }

    /// Escrows every key version made from now on to `escrow`.
    pub fn with_escrow(mut self, escrow: Option<crate::escrow::EscrowKey>) -> Self {
        self.escrow = escrow;
        self
    }

    pub fn escrow(&self) -> Option<&crate::escrow::EscrowKey> {
        self.escrow.as_ref()
    }

    /// Keeps up to `entries` unwrapped data keys for `max_age` (see [`cache`]); 0 is off.
    pub fn with_data_key_cache(mut self, entries: usize, max_age: std::time::Duration) -> Self {
        self.data_keys = cache::DataKeyCache::new(entries, max_age);
        self
    }

    /// Data-key cache (hits, misses) since start.
    pub fn data_key_cache_stats(&self) -> (u64, u64) {
        self.data_keys.stats()
    }

    pub fn arns(&self) -> &Arns {
        &self.arns
    }

    /// Probes the root of trust: Ok when a request could be served now.
    pub async fn check_root_of_trust(&self) -> Result<(), KmsError> {
        Ok(self.hw.probe(|root| root.check()).await?)
    }

    /// The root of trust, for callers with their own keys in it (the audit checkpoint key).
    pub fn hardware(&self) -> &Hardware {
        &self.hw
    }

    /// Root-of-trust call counters (requests only).
    pub fn hardware_counters(&self) -> &crate::backend::Counters {
        self.hw.counters()
    }

    /// Unwrapped data keys currently cached.
    pub fn data_key_cache_len(&self) -> usize {
        self.data_keys.len()
    }

    async fn load(&self, id: &str) -> Result<Option<(KeyRecord, u64)>, KmsError> {
        Ok(self.keys.get(id).await?)
    }

    /// Resolves a client's `key_id` (id, ARN, alias, alias ARN) to the key id.
    async fn resolve_id(&self, field: &'static str, input: &str) -> Result<String, KmsError> {
        match self.arns.parse(field, input)? {
            KeyName::Id(id) => Ok(id.to_string()),
            KeyName::Alias(alias) => self
                .load_alias(&alias)
                .await?
                .map(|(record, _)| record.target_key_id)
                .ok_or_else(|| {
                    KmsError::NotFound(format!("alias {} is not found", self.arns.alias(&alias)))
                }),
        }
    }

    /// The key record a client names, with its store version.
    async fn resolve(
        &self,
        field: &'static str,
        input: &str,
    ) -> Result<(KeyRecord, u64), KmsError> {
        let id = self.resolve_id(field, input).await?;
        self.load(&id)
            .await?
            .ok_or_else(|| KmsError::NotFound(format!("key {} does not exist", self.arns.key(&id))))
    }

    /// Applies `change` to the key named by `input` and commits it, retrying on concurrent
    /// updates. `change` sees the latest record each attempt.
    async fn update_key<T>(
        &self,
        input: &str,
        change: impl FnMut(&mut KeyRecord) -> Result<T, KmsError>,
    ) -> Result<(KeyRecord, T), KmsError> {
        let id = self.resolve_id("key_id", input).await?;
        match self.keys.update(&id, MAX_ATTEMPTS, change).await? {
            Updated::Done(record, out) => Ok((record, out)),
            Updated::Missing => Err(KmsError::NotFound(format!(
                "key {} does not exist",
                self.arns.key(&id)
            ))),
            Updated::Contended => Err(KmsError::Internal(
                format!("key {id}: too many concurrent updates").into(),
            )),
        }
    }

    /// Refuses keys that may not be used for cryptography right now.
    fn require_enabled(&self, record: &KeyRecord) -> Result<(), KmsError> {
        if record.material_expired(self.clock.now()) && record.state != KeyState::PendingDeletion {
            return Err(KmsError::InvalidState(format!(
                "{} is pending import: its imported key material has expired",
                self.arns.key(&record.key_id)
            )));
        }
        match record.state {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(KmsError::Disabled(self.arns.key(&record.key_id))),
            KeyState::PendingDeletion => Err(KmsError::InvalidState(format!(
                "{} is pending deletion",
                self.arns.key(&record.key_id)
            ))),
            KeyState::PendingImport => Err(KmsError::InvalidState(format!(
                "{} is pending import: it has no key material",
                self.arns.key(&record.key_id)
            ))),
        }
    }
}

fn new_key_id() -> String {
    Uuid::new_v4().to_string()
}
