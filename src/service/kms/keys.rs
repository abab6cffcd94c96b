//! Key lifecycle: create, describe, list, enable/disable, scheduled deletion, rotation.

use super::{KmsService, new_key_id};
use crate::backend::{KeyKind, KeyProtection, KeyRef};
use crate::service::KmsError;
use crate::service::paging::{self, Page};
use crate::store::{
    self, Expect, ImportRecord, KeyRecord, KeyState, KeyVersionRecord, ORIGIN_EXTERNAL, Tag,
};

const MAX_DESCRIPTION: usize = 8192;
const MAX_TAGS: usize = 50;
pub const DEFAULT_DELETION_WINDOW_DAYS: i32 = 30;

pub struct NewKey {
    pub description: String,
    pub key_usage: String,
    pub key_spec: String,
    pub tags: Vec<Tag>,
    /// TPM key mode and PCR binding; default: the root of trust's defaults.
    pub protection: KeyProtection,
    /// "" or "AWS_KMS": material made in the root of trust; "EXTERNAL": imported later.
    pub origin: String,
}

/// Whether the key's material is to be imported; refuses origins Keyward does not offer.
fn external_origin(origin: &str) -> Result<bool, KmsError> {
    match origin {
        "" | "AWS_KMS" => Ok(false),
        ORIGIN_EXTERNAL => Ok(true),
        "AWS_CLOUDHSM" | "EXTERNAL_KEY_STORE" => Err(KmsError::UnsupportedOperation(format!(
            "origin {origin} needs a custom key store, which Keyward does not have"
        ))),
        other => Err(KmsError::validation(
            "origin",
            format!(
                "value '{other}' failed to satisfy constraint: Member must satisfy enum value set: [AWS_KMS, EXTERNAL]"
            ),
        )),
    }
}

fn validate_new_key(new: &NewKey) -> Result<(), KmsError> {
    if new.description.len() > MAX_DESCRIPTION {
        return Err(KmsError::validation(
            "description",
            format!("at most {MAX_DESCRIPTION} characters"),
        ));
    }
    if !matches!(new.key_usage.as_str(), "" | "ENCRYPT_DECRYPT") {
        return Err(KmsError::validation(
            "key_usage",
            "only ENCRYPT_DECRYPT is supported",
        ));
    }
    if !matches!(new.key_spec.as_str(), "" | "SYMMETRIC_DEFAULT") {
        return Err(KmsError::validation(
            "key_spec",
            "only SYMMETRIC_DEFAULT is supported",
        ));
    }
    validate_tags(&new.tags)
}

/// At most [`MAX_TAGS`]: keys of 1 to 128 characters, values of at most 256.
pub(super) fn validate_tags(tags: &[Tag]) -> Result<(), KmsError> {
    if tags.len() > MAX_TAGS {
        return Err(KmsError::validation(
            "tags",
            format!("at most {MAX_TAGS} tags"),
        ));
    }
    for tag in tags {
        if tag.key.is_empty() || tag.key.len() > 128 {
            return Err(KmsError::validation("tags.tag_key", "1 to 128 characters"));
        }
        if tag.value.len() > 256 {
            return Err(KmsError::validation(
                "tags.tag_value",
                "at most 256 characters",
            ));
        }
    }
    Ok(())
}

pub(super) fn validate_description(description: &str) -> Result<(), KmsError> {
    if description.len() > MAX_DESCRIPTION {
        return Err(KmsError::validation(
            "description",
            format!("at most {MAX_DESCRIPTION} characters"),
        ));
    }
    Ok(())
}

impl KmsService {
    pub async fn create_key(&self, new: NewKey) -> Result<KeyRecord, KmsError> {
        validate_new_key(&new)?;
        if external_origin(&new.origin)? {
            return self.create_external_key(new).await;
        }
        let key_id = new_key_id();
        let label = format!("keyward {key_id} v1");
        let requested = new.protection.clone();
        let protection = self
            .hw
            .run(move |root| root.resolve_protection(&requested))
            .await?;
        let (material, escrow) = self.new_material(label, protection.clone()).await?;
        let now = self.clock.now();
        let record = KeyRecord {
            key_id: key_id.clone(),
            description: new.description,
            created_at: now,
            state: KeyState::Enabled,
            deletion_date: None,
            pending_window_days: None,
            origin: self.hw.kind().to_owned(),
            tags: new.tags,
            versions: vec![KeyVersionRecord {
                version: 1,
                created_at: now,
                material: material.clone(),
                on_demand: false,
                escrow,
            }],
            rotation: None,
            protection,
            policy: None,
            policy_as_written: false,
            import: None,
        };
        let op = self.keys.put(&key_id, &record, Expect::Absent);
        if let Err(e) = self.store.commit(vec![op]).await {
            // Do not leave material in the token that no record names.
            let _ = self.hw.run(move |root| root.destroy_key(&material)).await;
            return Err(e.into());
        }
        tracing::info!(key_id = %record.key_id, "created key");
        Ok(record)
    }

    /// A key in PendingImport, without material: nothing is made in the root of trust yet.
    async fn create_external_key(&self, new: NewKey) -> Result<KeyRecord, KmsError> {
        if new.protection != KeyProtection::default() {
            return Err(KmsError::validation(
                "tpm_key_mode",
                "keys with origin EXTERNAL take no TPM key mode or PCR binding",
            ));
        }
        self.check_import_supported().await?;
        let key_id = new_key_id();
        let record = KeyRecord {
            key_id: key_id.clone(),
            description: new.description,
            created_at: self.clock.now(),
            state: KeyState::PendingImport,
            deletion_date: None,
            pending_window_days: None,
            origin: ORIGIN_EXTERNAL.to_owned(),
            tags: new.tags,
            versions: Vec::new(),
            rotation: None,
            protection: KeyProtection::default(),
            policy: None,
            policy_as_written: false,
            import: Some(ImportRecord::default()),
        };
        let op = self.keys.put(&key_id, &record, Expect::Absent);
        self.store.commit(vec![op]).await?;
        tracing::info!(key_id = %record.key_id, "created key for imported material");
        Ok(record)
    }

    /// The key as clients see it: imported material past its expiry reads as PendingImport
    /// even before the purge duty has deleted it.
    pub async fn describe_key(&self, key_id: &str) -> Result<KeyRecord, KmsError> {
        let mut record = self.resolve("key_id", key_id).await?.0;
        if record.material_expired(self.clock.now()) && record.state != KeyState::PendingDeletion {
            record.state = KeyState::PendingImport;
        }
        Ok(record)
    }

    pub async fn list_keys(
        &self,
        limit: Option<i32>,
        marker: &str,
    ) -> Result<Page<KeyRecord>, KmsError> {
        let limit = paging::limit(limit, 100, 1000)?;
        let prefix = self.keys.prefix();
        let after = paging::decode_marker(marker, prefix)?;
        // Raw rows: only the page's records are decoded, not the one read to see if more follow.
        let mut rows = self.store.scan(prefix, after.as_deref(), limit + 1).await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_marker = more
            .then(|| rows.last().map(|(k, _)| paging::encode_marker(k)))
            .flatten();
        let items = rows
            .iter()
            .map(|(k, v)| store::decode(k, &v.value))
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next_marker })
    }

    pub async fn enable_key(&self, key_id: &str) -> Result<(), KmsError> {
        self.set_enabled(key_id, KeyState::Enabled).await
    }

    pub async fn disable_key(&self, key_id: &str) -> Result<(), KmsError> {
        self.set_enabled(key_id, KeyState::Disabled).await
    }

    async fn set_enabled(&self, key_id: &str, state: KeyState) -> Result<(), KmsError> {
        let arns = self.arns.clone();
        self.update_key(key_id, |record| {
            if record.state == KeyState::PendingDeletion {
                return Err(KmsError::InvalidState(format!(
                    "{} is pending deletion",
                    arns.key(&record.key_id)
                )));
            }
            if record.state == KeyState::PendingImport {
                return Err(KmsError::InvalidState(format!(
                    "{} is pending import",
                    arns.key(&record.key_id)
                )));
            }
            record.state = state;
            Ok(())
        })
        .await?;
        Ok(())
    }

    pub async fn schedule_key_deletion(
        &self,
        key_id: &str,
        window_days: Option<i32>,
    ) -> Result<KeyRecord, KmsError> {
        let days = window_days.unwrap_or(DEFAULT_DELETION_WINDOW_DAYS);
        if !(7..=30).contains(&days) {
            return Err(KmsError::validation(
                "pending_window_in_days",
                "must be between 7 and 30",
            ));
        }
        let now = self.clock.now();
        let arns = self.arns.clone();
        let (record, ()) = self
            .update_key(key_id, |record| {
                if record.state == KeyState::PendingDeletion {
                    return Err(KmsError::InvalidState(format!(
                        "{} is already pending deletion",
                        arns.key(&record.key_id)
                    )));
                }
                record.state = KeyState::PendingDeletion;
                record.deletion_date = Some(now.add_days(i64::from(days)));
                record.pending_window_days = Some(days);
                Ok(())
            })
            .await?;
        tracing::info!(key_id = %record.key_id, days, "scheduled key deletion");
        Ok(record)
    }

    /// Cancels a scheduled deletion; the key comes back Disabled, as in AWS KMS.
    pub async fn cancel_key_deletion(&self, key_id: &str) -> Result<KeyRecord, KmsError> {
        let now = self.clock.now();
        let arns = self.arns.clone();
        let (record, ()) = self
            .update_key(key_id, |record| {
                let arn = arns.key(&record.key_id);
                match (record.state, record.deletion_date) {
                    (KeyState::PendingDeletion, Some(date)) if date > now => {}
                    // Past its date the material may already be going: too late to cancel.
                    (KeyState::PendingDeletion, _) => {
                        return Err(KmsError::InvalidState(format!("{arn} is being deleted")));
                    }
                    _ => {
                        return Err(KmsError::InvalidState(format!(
                            "{arn} is not pending deletion"
                        )));
                    }
                }
                // As in AWS: a key without material goes back to waiting for it.
                record.state = if record.is_external() && record.versions.is_empty() {
                    KeyState::PendingImport
                } else {
                    KeyState::Disabled
                };
                record.deletion_date = None;
                record.pending_window_days = None;
                Ok(())
            })
            .await?;
        Ok(record)
    }

    /// A new master key version in the root of trust, escrowed when escrow is on (and refused
    /// when it cannot be).
    async fn new_material(
        &self,
        label: String,
        protection: crate::backend::KeyProtection,
    ) -> Result<(KeyRef, Option<crate::escrow::Escrowed>), KmsError> {
        let Some(escrow) = &self.escrow else {
            let material = self
                .hw
                .run(move |root| root.create_key(&label, &protection))
                .await?;
            return Ok((material, None));
        };
        let (material, escrowed) =
            crate::escrow::create(&self.hw, escrow, KeyKind::Master, label, protection).await?;
        Ok((material, Some(escrowed)))
    }

    /// Adds a key version made in the root of trust; new encryptions use it, older versions
    /// stay to decrypt what they protected.
    pub async fn rotate_key_on_demand(&self, key_id: &str) -> Result<(KeyRecord, u32), KmsError> {
        self.add_key_version(key_id, true).await
    }

    /// A new version in the root of trust, on demand or by the rotation schedule.
    pub(super) async fn add_key_version(
        &self,
        key_id: &str,
        on_demand: bool,
    ) -> Result<(KeyRecord, u32), KmsError> {
        let (record, _) = self.resolve("key_id", key_id).await?;
        refuse_external_rotation(&record, &self.arns)?;
        self.require_enabled(&record)?;
        let label = format!("keyward {} rotated", record.key_id);
        let (material, escrow) = self.new_material(label, record.protection.clone()).await?;
        let now = self.clock.now();
        let arns = self.arns.clone();
        let outcome = self
            .update_key(&record.key_id, |record| {
                if record.state != KeyState::Enabled {
                    return Err(KmsError::InvalidState(format!(
                        "{} is not enabled",
                        arns.key(&record.key_id)
                    )));
                }
                let version = record.versions.last().map_or(1, |v| v.version + 1);
                record.versions.push(KeyVersionRecord {
                    version,
                    created_at: now,
                    material: material.clone(),
                    on_demand,
                    escrow: escrow.clone(),
                });
                if !on_demand {
                    super::rotation::schedule_next(record, now);
                }
                Ok(version)
            })
            .await;
        if outcome.is_err() {
            let material = material.clone();
            let _ = self.hw.run(move |root| root.destroy_key(&material)).await;
        }
        let (record, version) = outcome?;
        tracing::info!(key_id = %record.key_id, version, "rotated key");
        Ok((record, version))
    }

    /// Versions created by rotation (every version after the first), oldest first.
    pub async fn list_key_rotations(
        &self,
        key_id: &str,
        limit: Option<i32>,
        marker: &str,
    ) -> Result<(KeyRecord, Page<KeyVersionRecord>), KmsError> {
        let limit = paging::limit(limit, 100, 1000)?;
        let (record, _) = self.resolve("key_id", key_id).await?;
        let after: u32 = match marker {
            "" => 1,
            m => m.parse().map_err(|_| KmsError::InvalidMarker)?,
        };
        let mut items: Vec<KeyVersionRecord> = record
            .versions
            .iter()
            .filter(|v| v.version > after)
            .take(limit + 1)
            .cloned()
            .collect();
        let more = items.len() > limit;
        items.truncate(limit);
        let next_marker = more
            .then(|| items.last().map(|v| v.version.to_string()))
            .flatten();
        Ok((record, Page { items, next_marker }))
    }
}

/// AWS KMS rotates no key with imported material, automatically or on demand.
pub(super) fn refuse_external_rotation(
    record: &KeyRecord,
    arns: &super::Arns,
) -> Result<(), KmsError> {
    if record.is_external() {
        return Err(KmsError::UnsupportedOperation(format!(
            "{} has imported key material (origin EXTERNAL): it cannot be rotated",
            arns.key(&record.key_id)
        )));
    }
    Ok(())
}
