//! Aliases: friendly names (`alias/NAME`) pointing at one key each.

use super::KmsService;
use super::names::{KeyName, validate_alias};
use crate::service::KmsError;
use crate::service::paging::{self, Page};
use crate::store::{AliasRecord, Expect, KeyRecord, KeyState, StoreError, keyspace};

impl KmsService {
    pub(super) async fn load_alias(
        &self,
        alias_name: &str,
    ) -> Result<Option<(AliasRecord, u64)>, KmsError> {
        Ok(self.aliases.get(alias_name).await?)
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
        let (key, key_version) = self.alias_target(target_key_id).await?;
        let now = self.clock.now();
        let record = AliasRecord {
            alias_name: alias_name.to_owned(),
            target_key_id: key.key_id.clone(),
            created_at: now,
            updated_at: now,
        };
        let ops = vec![
            self.aliases.put(alias_name, &record, Expect::Absent),
            // Guards against the key being purged between our read and this commit.
            self.keys
                .put(&key.key_id, &key, Expect::Version(key_version)),
        ];
        match self.store.commit(ops).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict(what))
                if what.as_bytes().starts_with(keyspace::KMS_ALIASES) =>
            {
                Err(KmsError::AlreadyExists(format!(
                    "alias {} already exists",
                    self.arns.alias(alias_name)
                )))
            }
            Err(StoreError::Conflict(_)) => Err(KmsError::Internal(
                "the target key changed during CreateAlias; retry".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// The key an alias is to name, with its record version (to guard the commit): a key id or
    /// key ARN, not another alias (as in AWS), of a key not pending deletion.
    pub(super) async fn alias_target(
        &self,
        target_key_id: &str,
    ) -> Result<(KeyRecord, u64), KmsError> {
        if let KeyName::Alias(_) = self.arns.parse("target_key_id", target_key_id)? {
            return Err(KmsError::validation(
                "target_key_id",
                "must be a key id or key ARN, not an alias",
            ));
        }
        let (key, key_version) = self.resolve("target_key_id", target_key_id).await?;
        if key.state == KeyState::PendingDeletion {
            return Err(KmsError::InvalidState(format!(
                "{} is pending deletion",
                self.arns.key(&key.key_id)
            )));
        }
        Ok((key, key_version))
    }

    pub async fn delete_alias(&self, alias_name: &str) -> Result<(), KmsError> {
        if alias_name.is_empty() {
            return Err(KmsError::validation("alias_name", "is required"));
        }
        validate_alias(alias_name)?;
        let Some((_, version)) = self.load_alias(alias_name).await? else {
            return Err(KmsError::NotFound(format!(
                "alias {} is not found",
                self.arns.alias(alias_name)
            )));
        };
        self.store
            .commit(vec![
                self.aliases.delete(alias_name, Expect::Version(version)),
            ])
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => KmsError::NotFound(format!(
                    "alias {} is not found",
                    self.arns.alias(alias_name)
                )),
                other => other.into(),
            })
    }

    /// Aliases in name order; only those of `key_id` when it is not empty.
    pub async fn list_aliases(
        &self,
        key_id: &str,
        limit: Option<i32>,
        marker: &str,
    ) -> Result<Page<AliasRecord>, KmsError> {
        let limit = paging::limit(limit, 100, 100)?;
        let target = match key_id {
            "" => None,
            id => Some(self.resolve("key_id", id).await?.0.key_id),
        };
        let mut after = paging::decode_marker(marker, self.aliases.prefix())?;
        let mut items = Vec::new();
        // Filtering by key may skip rows, so keep scanning until the page is full.
        loop {
            let rows = self.aliases.scan(after.as_deref(), limit + 1).await?;
            let exhausted = rows.len() <= limit;
            for (key, record, _) in rows {
                after = Some(key);
                if target.as_ref().is_none_or(|t| *t == record.target_key_id) {
                    if items.len() == limit {
                        let next_marker = items.last().map(|r: &AliasRecord| {
                            paging::encode_marker(&self.aliases.key(&r.alias_name))
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
    pub(super) async fn aliases_of(
        &self,
        key_id: &str,
    ) -> Result<Vec<(AliasRecord, u64)>, KmsError> {
        let mut out = Vec::new();
        for (_, record, version) in self.aliases.scan_all().await? {
            if record.target_key_id == key_id {
                out.push((record, version));
            }
        }
        Ok(out)
    }
}
