//! Aliases: friendly names (`alias/NAME`) pointing at one key each.

use super::names::{KeyName, validate_alias};
use super::{ALIAS_PREFIX, KmsService, alias_storage_key, key_storage_key};
use crate::service::KmsError;
use crate::service::paging::{self, Page};
use crate::store::{self, AliasRecord, Expect, KeyState, Op};

impl KmsService {
    pub(super) fn load_alias(
        &self,
        alias_name: &str,
    ) -> Result<Option<(AliasRecord, u64)>, KmsError> {
        let key = alias_storage_key(alias_name);
        match self.store.get(&key)? {
            Some(found) => Ok(Some((store::decode(&key, &found.value)?, found.version))),
            None => Ok(None),
        }
    }

    pub async fn create_alias(
        &self,
        alias_name: &str,
        target_key_id: &str,
    ) -> Result<(), KmsError> {
        if alias_name.is_empty() {
            return Err(KmsError::validation("alias_name", "is required"));
        }
        validate_alias(alias_name)?;
        // As in AWS, an alias must point at a key, not at another alias.
        if let KeyName::Alias(_) = self.arns.parse("target_key_id", target_key_id)? {
            return Err(KmsError::validation(
                "target_key_id",
                "must be a key id or key ARN, not an alias",
            ));
        }
        let (key, key_version) = self.resolve("target_key_id", target_key_id)?;
        if key.state == KeyState::PendingDeletion {
            return Err(KmsError::InvalidState(format!(
                "{} is pending deletion",
                self.arns.key(&key.key_id)
            )));
        }
        let now = self.clock.now();
        let record = AliasRecord {
            alias_name: alias_name.to_owned(),
            target_key_id: key.key_id.clone(),
            created_at: now,
            updated_at: now,
        };
        let ops = vec![
            Op::Put {
                key: alias_storage_key(alias_name),
                value: store::encode(&record),
                expect: Expect::Absent,
            },
            // Guards against the key being purged between our read and this commit.
            Op::Put {
                key: key_storage_key(&key.key_id),
                value: store::encode(&key),
                expect: Expect::Version(key_version),
            },
        ];
        match self.store.commit(ops).await {
            Ok(()) => Ok(()),
            Err(crate::store::StoreError::Conflict(what)) if what.starts_with("kms/alias/") => {
                Err(KmsError::AlreadyExists(format!(
                    "alias {} already exists",
                    self.arns.alias(alias_name)
                )))
            }
            Err(crate::store::StoreError::Conflict(_)) => Err(KmsError::Internal(
                "the target key changed during CreateAlias; retry".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete_alias(&self, alias_name: &str) -> Result<(), KmsError> {
        if alias_name.is_empty() {
            return Err(KmsError::validation("alias_name", "is required"));
        }
        validate_alias(alias_name)?;
        let Some((_, version)) = self.load_alias(alias_name)? else {
            return Err(KmsError::NotFound(format!(
                "alias {} is not found",
                self.arns.alias(alias_name)
            )));
        };
        self.store
            .commit(vec![Op::Delete {
                key: alias_storage_key(alias_name),
                expect: Expect::Version(version),
            }])
            .await
            .map_err(|e| match e {
                crate::store::StoreError::Conflict(_) => KmsError::NotFound(format!(
                    "alias {} is not found",
                    self.arns.alias(alias_name)
                )),
                other => other.into(),
            })
    }

    /// Aliases in name order; only those of `key_id` when it is not empty.
    pub fn list_aliases(
        &self,
        key_id: &str,
        limit: Option<i32>,
        marker: &str,
    ) -> Result<Page<AliasRecord>, KmsError> {
        let limit = paging::limit(limit, 100, 100)?;
        let target = match key_id {
            "" => None,
            id => Some(self.resolve("key_id", id)?.0.key_id),
        };
        let mut after = paging::decode_marker(marker, ALIAS_PREFIX)?;
        let mut items = Vec::new();
        // Filtering by key may skip rows, so keep scanning until the page is full.
        loop {
            let rows = self.store.scan(ALIAS_PREFIX, after.as_deref(), limit + 1)?;
            let exhausted = rows.len() <= limit;
            for (key, value) in rows {
                let record: AliasRecord = store::decode(&key, &value.value)?;
                after = Some(key);
                if target.as_ref().is_none_or(|t| *t == record.target_key_id) {
                    if items.len() == limit {
                        let next_marker = items.last().map(|r: &AliasRecord| {
                            paging::encode_marker(&alias_storage_key(&r.alias_name))
                        });
                        return Ok(Page { items, next_marker });
                    }
                    items.push(record);
                }
            }
            if exhausted {
                return Ok(Page {
                    items,
                    next_marker: None,
                });
            }
        }
    }

    /// Every alias pointing at `key_id` (used when the key is purged).
    pub(super) fn aliases_of(&self, key_id: &str) -> Result<Vec<(AliasRecord, u64)>, KmsError> {
        let mut out = Vec::new();
        for (key, value) in self.store.scan_all(ALIAS_PREFIX)? {
            let record: AliasRecord = store::decode(&key, &value.value)?;
            if record.target_key_id == key_id {
                out.push((record, value.version));
            }
        }
        Ok(out)
    }
}
