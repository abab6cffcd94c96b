//! A key's tags and description, and re-pointing an alias: the small metadata operations AWS
//! SDK users call (TagResource, UntagResource, ListResourceTags, UpdateKeyDescription,
//! UpdateAlias, ListKeyPolicies).

use super::KmsService;
use super::keys::{validate_description, validate_tags};
use super::names::validate_alias;
use crate::service::KmsError;
use crate::service::paging::{self, Page};
use crate::store::{Expect, KeyState, StoreError, Tag};

/// The one key policy name AWS KMS has.
const POLICY_NAMES: &[&str] = &["default"];

impl KmsService {
    /// Adds `tags` to the key, replacing the value of a tag key it already has.
    pub async fn tag_key(&self, key_id: &str, tags: Vec<Tag>) -> Result<(), KmsError> {
        validate_tags(&tags)?;
        let arns = self.arns.clone();
        self.update_key(key_id, |record| {
            refuse_pending_deletion(record, &arns)?;
            let mut merged = record.tags.clone();
            for tag in &tags {
                match merged.iter_mut().find(|t| t.key == tag.key) {
                    Some(existing) => existing.value.clone_from(&tag.value),
                    None => merged.push(tag.clone()),
                }
            }
            validate_tags(&merged)?;
            record.tags = merged;
            Ok(())
        })
        .await
        .map(drop)
    }

    /// Removes the tags with these keys; keys the key does not have are ignored, as in AWS.
    pub async fn untag_key(&self, key_id: &str, tag_keys: Vec<String>) -> Result<(), KmsError> {
        if tag_keys.is_empty() || tag_keys.len() > 50 {
            return Err(KmsError::validation("tag_keys", "1 to 50 tag keys"));
        }
        if tag_keys.iter().any(|k| k.is_empty() || k.len() > 128) {
            return Err(KmsError::validation("tag_keys", "each 1 to 128 characters"));
        }
        let arns = self.arns.clone();
        self.update_key(key_id, |record| {
            refuse_pending_deletion(record, &arns)?;
            record.tags.retain(|t| !tag_keys.contains(&t.key));
            Ok(())
        })
        .await
        .map(drop)
    }

    /// The key's tags in the order they were added, a page at a time.
    pub async fn list_key_tags(
        &self,
        key_id: &str,
        limit: Option<i32>,
        marker: &str,
    ) -> Result<Page<Tag>, KmsError> {
        let limit = paging::limit(limit, 50, 50)?;
        let (record, _) = self.resolve("key_id", key_id).await?;
        let start = offset(marker)?;
        let items: Vec<Tag> = record
            .tags
            .iter()
            .skip(start)
            .take(limit)
            .cloned()
            .collect();
        let next = start + items.len();
        Ok(Page {
            next_marker: (next < record.tags.len()).then(|| next.to_string()),
            items,
        })
    }

    pub async fn update_key_description(
        &self,
        key_id: &str,
        description: &str,
    ) -> Result<(), KmsError> {
        validate_description(description)?;
        let arns = self.arns.clone();
        self.update_key(key_id, |record| {
            refuse_pending_deletion(record, &arns)?;
            description.clone_into(&mut record.description);
            Ok(())
        })
        .await
        .map(drop)
    }

    /// Points an existing alias at another key.
    pub async fn update_alias(
        &self,
        alias_name: &str,
        target_key_id: &str,
    ) -> Result<(), KmsError> {
        validate_alias(alias_name)?;
        let (key, key_version) = self.alias_target(target_key_id).await?;
        let Some((mut alias, alias_version)) = self.load_alias(alias_name).await? else {
            return Err(KmsError::NotFound(format!(
                "alias {} is not found",
                self.arns.alias(alias_name)
            )));
        };
        alias.target_key_id.clone_from(&key.key_id);
        alias.updated_at = self.clock.now();
        let ops = vec![
            self.aliases
                .put(alias_name, &alias, Expect::Version(alias_version)),
            // Guards against the key being purged between our read and this commit.
            self.keys
                .put(&key.key_id, &key, Expect::Version(key_version)),
        ];
        match self.store.commit(ops).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict(_)) => Err(KmsError::Internal(
                "the alias or its target key changed during UpdateAlias; retry".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// The key's policy names: always `default`, as in AWS KMS.
    pub async fn list_key_policies(&self, key_id: &str) -> Result<Vec<String>, KmsError> {
        self.resolve("key_id", key_id).await?;
        Ok(POLICY_NAMES.iter().map(|&n| n.to_owned()).collect())
    }
}

fn refuse_pending_deletion(
    record: &crate::store::KeyRecord,
    arns: &super::names::Arns,
) -> Result<(), KmsError> {
    if record.state == KeyState::PendingDeletion {
        return Err(KmsError::InvalidState(format!(
            "{} is pending deletion",
            arns.key(&record.key_id)
        )));
    }
    Ok(())
}

/// A ListResourceTags marker: the index of the next tag.
fn offset(marker: &str) -> Result<usize, KmsError> {
    if marker.is_empty() {
        return Ok(0);
    }
    marker.parse().map_err(|_| KmsError::InvalidMarker)
}
