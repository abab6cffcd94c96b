//! Automatic key rotation (EnableKeyRotation, DisableKeyRotation, GetKeyRotationStatus): a new
//! key version in the root of trust every `rotation_period_in_days`. The rotation scheduler
//! calls `rotate_due_keys`; older versions stay to decrypt what they protected.

use super::KmsService;
use crate::service::KmsError;
use crate::store::{KeyRecord, KeyRotation, KeyState};
use crate::time::Timestamp;

pub const DEFAULT_ROTATION_PERIOD_DAYS: i32 = 365;
const PERIOD_DAYS: std::ops::RangeInclusive<i32> = 90..=2560;

/// What GetKeyRotationStatus reports.
pub struct RotationStatus {
    pub key_id: String,
    pub enabled: bool,
    pub period_days: Option<i32>,
    pub next_rotation_at: Option<Timestamp>,
}

impl KmsService {
    pub async fn enable_key_rotation(
        &self,
        key_id: &str,
        period_days: Option<i32>,
    ) -> Result<(), KmsError> {
        let period_days = period_days.unwrap_or(DEFAULT_ROTATION_PERIOD_DAYS);
        if !PERIOD_DAYS.contains(&period_days) {
            return Err(KmsError::Validation {
                field: "rotation_period_in_days",
                reason: format!(
                    "must be between {} and {}",
                    PERIOD_DAYS.start(),
                    PERIOD_DAYS.end()
                ),
            });
        }
        let now = self.clock.now();
        self.update_key(key_id, |record| {
            super::keys::refuse_external_rotation(record, &self.arns)?;
            self.require_enabled(record)?;
            // Re-enabling with a new period counts from the last rotation, as AWS does.
            let since = last_rotation(record);
            record.rotation = Some(KeyRotation {
                period_days,
                next_rotation_at: since.add_days(i64::from(period_days)).max(now),
            });
            Ok(())
        })
        .await?;
        Ok(())
    }

    pub async fn disable_key_rotation(&self, key_id: &str) -> Result<(), KmsError> {
        self.update_key(key_id, |record| {
            self.require_enabled(record)?;
            record.rotation = None;
            Ok(())
        })
        .await?;
        Ok(())
    }

    pub async fn key_rotation_status(&self, key_id: &str) -> Result<RotationStatus, KmsError> {
        let (record, _) = self.resolve("key_id", key_id).await?;
        Ok(RotationStatus {
            enabled: record.rotation.is_some(),
            period_days: record.rotation.as_ref().map(|r| r.period_days),
            next_rotation_at: record.rotation.as_ref().map(|r| r.next_rotation_at),
            key_id: record.key_id,
        })
    }

    /// Rotates every enabled key whose rotation date has come; returns how many rotated. A key
    /// that is disabled or pending deletion waits: it rotates once it is enabled again. A
    /// failure is logged and retried on the next pass.
    pub async fn rotate_due_keys(&self) -> Result<usize, KmsError> {
        let now = self.clock.now();
        let mut due = Vec::new();
        for (_, record, _) in self.keys.scan_all().await? {
            if record.state == KeyState::Enabled
                && record
                    .rotation
                    .as_ref()
                    .is_some_and(|r| r.next_rotation_at <= now)
            {
                due.push(record.key_id);
            }
        }
        let mut rotated = 0;
        for key_id in due {
            // The new version and the next date are one commit: a crash cannot rotate twice.
            match self.add_key_version(&key_id, false).await {
                Ok(_) => rotated += 1,
                Err(e) => {
                    tracing::warn!(%key_id, error = %e, "automatic key rotation failed; will retry")
                }
            }
        }
        Ok(rotated)
    }
}

/// After an automatic rotation at `now`: the next one is a period later.
pub(super) fn schedule_next(record: &mut KeyRecord, now: Timestamp) {
    if let Some(rotation) = &mut record.rotation {
        rotation.next_rotation_at = now.add_days(i64::from(rotation.period_days));
    }
}

fn last_rotation(record: &KeyRecord) -> Timestamp {
    record
        .versions
        .last()
        .map_or(record.created_at, |v| v.created_at)
}
