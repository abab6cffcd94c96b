//! Records as stored: serde structs behind a one-byte format version, JSON body. JSON keeps
//! records readable with standard tools; the version byte lets a later format coexist.

use super::{Result, StoreError};
use crate::crypto::master::{KeyProtection, KeyRef};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

const FORMAT_V1: u8 = 1;

pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_V1];
    // Serialising plain structs of strings and numbers cannot fail.
    serde_json::to_writer(&mut out, record).unwrap_or_default();
    out
}

pub fn decode<T: DeserializeOwned>(key: &[u8], raw: &[u8]) -> Result<T> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    match raw.split_first() {
        Some((&FORMAT_V1, body)) => {
            serde_json::from_slice(body).map_err(|e| corrupt(e.to_string()))
        }
        Some((other, _)) => Err(corrupt(format!("unknown record format {other}"))),
        None => Err(corrupt("empty record".into())),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
    /// An EXTERNAL key without key material: created so, or its material deleted or expired.
    PendingImport,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "Enabled",
            Self::Disabled => "Disabled",
            Self::PendingDeletion => "PendingDeletion",
            Self::PendingImport => "PendingImport",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVersionRecord {
    /// 1 for the key's first material, +1 per rotation.
    pub version: u32,
    pub created_at: Timestamp,
    /// Where the material lives in the root of trust.
    pub material: KeyRef,
    pub on_demand: bool,
    /// The material wrapped to the escrow key, when escrow was on as it was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escrow: Option<crate::crypto::master::Escrowed>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key_id: String,
    pub description: String,
    pub created_at: Timestamp,
    pub state: KeyState,
    pub deletion_date: Option<Timestamp>,
    pub pending_window_days: Option<i32>,
    pub origin: String,
    pub tags: Vec<Tag>,
    /// Oldest first; the last is the one new encryptions use.
    pub versions: Vec<KeyVersionRecord>,
    /// Automatic rotation, when enabled.
    #[serde(default)]
    pub rotation: Option<KeyRotation>,
    /// How the root of trust protects every version of this key.
    #[serde(default)]
    pub protection: KeyProtection,
    /// The key policy (IAM JSON, validated when put); none: identity policies alone decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The policy is evaluated as written: identity policies reach the key only through its
    /// delegation statement. Absent (false) in records written before key policies could
    /// restrict use: those policies read as if they held the delegation statement, so an
    /// upgrade changes no decision. PutKeyPolicy sets it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub policy_as_written: bool,
    /// Keys with origin EXTERNAL: what their imported material is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<ImportRecord>,
}

/// Origin of keys whose material the user imports.
pub const ORIGIN_EXTERNAL: &str = "EXTERNAL";

/// The import side of an EXTERNAL key. While it has material, the key has one version (1),
/// made by the import; deleting the material removes the version, a re-import brings it back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRecord {
    /// The parameters of the last GetParametersForImport, until used, replaced or expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<ImportParameters>,
    /// Hex of a block sealed under the first imported material with a fixed nonce and AAD
    /// (computed inside the root of trust): a later import must produce the same block, so it
    /// is the same material. Reveals nothing of the key, as any ciphertext does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// "KEY_MATERIAL_EXPIRES" or "KEY_MATERIAL_DOES_NOT_EXPIRE" while material is present.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub expiration_model: String,
    /// When the material expires (KEY_MATERIAL_EXPIRES).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<Timestamp>,
}

/// What an import token stands for. The token itself is 32 random bytes handed to the client;
/// only its SHA-256 is kept, so reading the store does not give a usable token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportParameters {
    /// Hex SHA-256 of the import token.
    pub token_digest: String,
    /// "RSAES_OAEP_SHA_1" or "RSAES_OAEP_SHA_256".
    pub wrapping_algorithm: String,
    /// "RSA_2048", "RSA_3072" or "RSA_4096".
    pub wrapping_key_spec: String,
    /// The RSA key pair in the root of trust; destroyed when used, replaced or expired.
    pub wrapping_key: KeyRef,
    pub valid_to: Timestamp,
    /// Set by the purge once the expired wrapping key is destroyed. The parameters stay until
    /// replaced, so their token is still told apart as expired rather than unknown.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wrapping_key_destroyed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRotation {
    pub period_days: i32,
    pub next_rotation_at: Timestamp,
}

impl KeyRecord {
    pub fn current(&self) -> Option<&KeyVersionRecord> {
        self.versions.last()
    }

    pub fn version(&self, version: u32) -> Option<&KeyVersionRecord> {
        self.versions.iter().find(|v| v.version == version)
    }

    /// Its material is imported by the user (origin EXTERNAL).
    pub fn is_external(&self) -> bool {
        self.origin == ORIGIN_EXTERNAL
    }

    /// Imported material whose expiry has come: the key is as good as PendingImport, whether
    /// or not the purge has deleted the material yet.
    pub fn material_expired(&self, now: Timestamp) -> bool {
        self.import
            .as_ref()
            .and_then(|i| i.valid_to)
            .is_some_and(|to| to <= now)
            && !self.versions.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasRecord {
    pub alias_name: String,
    pub target_key_id: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_unknown_formats_are_refused() {
        let alias = AliasRecord {
            alias_name: "alias/a".into(),
            target_key_id: "k".into(),
            created_at: Timestamp::from_secs(1),
            updated_at: Timestamp::from_secs(2),
        };
        let raw = encode(&alias);
        assert_eq!(raw[0], FORMAT_V1);
        assert_eq!(decode::<AliasRecord>(b"x", &raw).unwrap(), alias);
        let mut future = raw.clone();
        future[0] = 9;
        assert!(matches!(
            decode::<AliasRecord>(b"x", &future),
            Err(StoreError::Corrupt { .. })
        ));
    }

    /// Records written before times were typed read back, and write out, byte for byte.
    #[test]
    fn stored_times_keep_their_bytes() {
        let secret = concat!(
            r#"{"id":"i","name":"n","arn":"a","description":"","kms_key_id":"","#,
            r#""created_at":1796083199,"last_changed_at":1796083200,"#,
            r#""last_accessed_day":1796083200,"deletion_date":-1,"tags":[],"#,
            r#""versions":[{"version_id":"v","created_at":1796083199,"stages":["AWSCURRENT"],"#,
            r#""last_accessed_day":null,"kms_key_arn":"k","has_value":true}],"#,
            r#""rotation":{"enabled":true,"automatically_after_days":null,"#,
            r#""schedule_expression":"rate(4 hours)","duration":null,"#,
            r#""rotator":{"type":"exec","name":"x"},"last_rotated_at":0,"#,
            r#""next_rotation_at":1796097600,"in_flight":{"token":"t","step":"set_secret","#,
            r#""started_at":1796083199,"failed_attempts":1,"last_error":null,"#,
            r#""retry_at":9223372036854775807}}}"#
        );
        let alias = r#"{"alias_name":"alias/a","target_key_id":"k","created_at":1,"updated_at":2}"#;
        for (json, stored) in [
            (
                secret,
                encode(
                    &decode::<SecretRecord>(b"x", &[&[FORMAT_V1], secret.as_bytes()].concat())
                        .unwrap(),
                ),
            ),
            (
                alias,
                encode(
                    &decode::<AliasRecord>(b"x", &[&[FORMAT_V1], alias.as_bytes()].concat())
                        .unwrap(),
                ),
            ),
        ] {
            assert_eq!(&stored[1..], json.as_bytes());
        }
        let record: SecretRecord =
            decode(b"x", &[&[FORMAT_V1], secret.as_bytes()].concat()).unwrap();
        assert_eq!(record.deletion_date, Some(Timestamp::from_secs(-1)));
        let flight = record.rotation.and_then(|r| r.in_flight).unwrap();
        assert_eq!(flight.retry_at, Timestamp::from_secs(i64::MAX));
    }
}

/// A secret and the metadata of all its versions: one record, so label moves across versions
/// are one guarded write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    /// Internal id, fixed for the life of this secret (a re-created name gets a new one).
    pub id: String,
    pub name: String,
    pub arn: String,
    pub description: String,
    /// As the client gave it; empty for the default key.
    pub kms_key_id: String,
    pub created_at: Timestamp,
    pub last_changed_at: Timestamp,
    /// Start of the day (UTC) of the last read.
    pub last_accessed_day: Option<Timestamp>,
    /// Set while deletion is scheduled.
    pub deletion_date: Option<Timestamp>,
    pub tags: Vec<Tag>,
    /// Oldest first.
    pub versions: Vec<SecretVersionMeta>,
    /// Absent until RotateSecret is first called.
    #[serde(default)]
    pub rotation: Option<RotationRecord>,
    /// The resource policy (IAM JSON, validated when put).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_policy: Option<String>,
    /// Set on a replica: the region of its primary, the only site whose changes it accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_region: Option<String>,
    /// On a primary: the sites it replicates to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaRecord>,
    /// Set on a promoted replica: its former primary, which is told to stop sending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub former_primary: Option<String>,
}

/// A site a primary secret is replicated to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    pub region: String,
    /// The KMS key in that site, as the client named it; empty: that site's default key.
    pub kms_key_id: String,
    /// Replace a same-named secret there that is not this secret's replica
    /// (force_overwrite_replica_secret). Harmless once the replica exists: a site never holds
    /// a second secret of one name.
    #[serde(default)]
    pub force_overwrite: bool,
}

/// A secret's rotation: its schedule, its rotator, and the rotation in flight if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationRecord {
    /// False after CancelRotateSecret, or when rotation was only ever run once without rules.
    pub enabled: bool,
    pub automatically_after_days: Option<i64>,
    pub schedule_expression: Option<String>,
    pub duration: Option<String>,
    pub rotator: RotatorSpec,
    pub last_rotated_at: Option<Timestamp>,
    /// Start of the next window while enabled.
    pub next_rotation_at: Option<Timestamp>,
    pub in_flight: Option<InFlight>,
}

impl RotationRecord {
    /// When the scheduler next has something to do for this secret.
    pub fn due_at(&self) -> Option<Timestamp> {
        match &self.in_flight {
            Some(flight) => Some(flight.retry_at),
            None if self.enabled => self.next_rotation_at,
            None => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationStep {
    CreateSecret,
    SetSecret,
    TestSecret,
    FinishSecret,
}

impl RotationStep {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateSecret => "create_secret",
            Self::SetSecret => "set_secret",
            Self::TestSecret => "test_secret",
            Self::FinishSecret => "finish_secret",
        }
    }

    pub fn next(self) -> Option<Self> {
        match self {
            Self::CreateSecret => Some(Self::SetSecret),
            Self::SetSecret => Some(Self::TestSecret),
            Self::TestSecret => Some(Self::FinishSecret),
            Self::FinishSecret => None,
        }
    }
}

/// A rotation started and not finished: persisted after every step, so a restart resumes it at
/// the step that has not yet succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// The pending version's id.
    pub token: String,
    pub step: RotationStep,
    pub started_at: Timestamp,
    pub failed_attempts: u32,
    pub last_error: Option<String>,
    /// Not before this time (now, or after a failure's backoff).
    pub retry_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RotatorSpec {
    Generated {
        password: PasswordPolicy,
        template: Option<String>,
    },
    Postgresql {
        strategy: PostgresStrategy,
        admin_secret_id: Option<String>,
        password: PasswordPolicy,
    },
    Exec {
        name: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PostgresStrategy {
    SingleUser,
    AlternatingUsers,
}

/// GetRandomPassword's options, also kept for rotators that generate passwords.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordPolicy {
    pub password_length: Option<i64>,
    pub exclude_characters: String,
    pub exclude_numbers: bool,
    pub exclude_punctuation: bool,
    pub exclude_uppercase: bool,
    pub exclude_lowercase: bool,
    pub include_space: bool,
    pub require_each_included_type: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretVersionMeta {
    pub version_id: String,
    pub created_at: Timestamp,
    pub stages: Vec<String>,
    pub last_accessed_day: Option<Timestamp>,
    /// ARN of the KMS key that wraps this version's data key; empty while it has no value.
    pub kms_key_arn: String,
    pub has_value: bool,
}

impl SecretVersionMeta {
    /// A version that has no value yet (a rotation's pending version, before create_secret).
    pub fn empty(version_id: &str, created_at: Timestamp) -> Self {
        Self {
            version_id: version_id.to_owned(),
            created_at,
            stages: Vec::new(),
            last_accessed_day: None,
            kms_key_arn: String::new(),
            has_value: false,
        }
    }
}

/// A version's value as stored: the data key wrapped by KMS and the value sealed under it.
/// Nothing here is plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretValueRecord {
    /// "string" or "binary".
    pub kind: String,
    /// KMS ciphertext blob of the data key, base64.
    pub wrapped_key: String,
    /// GCM nonce followed by ciphertext and tag, base64.
    pub sealed: String,
}
