//! Key import (BYOK) with AWS KMS semantics: GetParametersForImport, ImportKeyMaterial and
//! DeleteImportedKeyMaterial for symmetric keys created with origin EXTERNAL.
//!
//! Design, and the rules it keeps:
//! - **Wrapping key.** Each GetParametersForImport makes a fresh RSA key pair inside the root of
//!   trust (a sensitive, non-extractable token object, so it outlives sessions and hardware
//!   threads and is visible to every node of a cluster). Its reference is kept in the key record
//!   with the other parameters; it is destroyed when the token is used, when a newer
//!   GetParametersForImport replaces it (one set of parameters per key at a time), when the key
//!   is deleted, or by the purge duty once it has expired.
//! - **Import token.** A format byte and 32 random bytes. The store keeps only its SHA-256, in
//!   the key record, beside what the token stands for: the key (the record it is in), the
//!   wrapping algorithm, the wrapping key and the expiry. A token is valid for one key only
//!   because only that key's record holds its digest; it cannot be forged without guessing 256
//!   random bits, and digests are compared in constant time. No MAC key is needed: the binding
//!   lives in the store, which every node shares, rather than in the token.
//! - **Unwrapping.** Inside the root of trust, into a non-extractable AES-256 master key (see
//!   `backend::pkcs11::import`). Every decryption failure is one `InvalidCiphertextException`;
//!   material of the wrong length is `IncorrectKeyMaterialException`.
//! - **Same material on re-import.** At the first import the root of trust seals a fixed block
//!   under the new key with a fixed nonce and AAD ([`CHECK_NONCE`], [`CHECK_AAD`]); the result
//!   is kept. A later import must reproduce it, or it is refused with
//!   `IncorrectKeyMaterialException` and its key object destroyed. The block is one more
//!   ciphertext under the key and reveals nothing about it; the zero nonce cannot collide with
//!   the random nonces of real ciphertexts except with probability 2^-96 per ciphertext.
//! - **Expiring material** (KEY_MATERIAL_EXPIRES): checked at use time (`require_enabled`, and
//!   DescribeKey reports PendingImport), so a key stops working at `valid_to` exactly; the purge
//!   duty then deletes the material as DeleteImportedKeyMaterial would.
//! - **Order of writes.** Hardware objects are made before the commit that names them and
//!   destroyed after the commit that forgets them: a crash can leave an unnamed object behind,
//!   never a record naming a missing one.
//! - Roots of trust without import (a TPM) answer UnsupportedOperationException, from CreateKey
//!   with origin EXTERNAL on.

use super::KmsService;
use crate::backend::{BackendError, KeyRef, OaepHash};
use crate::crypto::{ct_eq, hex, sha256, spki};
use crate::service::KmsError;
use crate::store::{ImportParameters, ImportRecord, KeyRecord, KeyState, KeyVersionRecord};
use crate::time::Timestamp;

/// How long GetParametersForImport's token and public key are valid: AWS's 24 hours.
pub const DEFAULT_TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(86_400);

/// AWS KMS's bound on EncryptedKeyMaterial; an RSA-4096 block is 512 bytes.
const MAX_ENCRYPTED_KEY_MATERIAL: usize = 6144;

/// The furthest ahead ImportKeyMaterial's ValidTo may be, as in AWS KMS.
const MAX_VALID_TO_DAYS: i64 = 365;

const TOKEN_FORMAT: u8 = 1;
const TOKEN_RANDOM_LEN: usize = 32;

/// The fixed input of the same-material check.
pub const CHECK_NONCE: [u8; crate::crypto::envelope::NONCE_LEN] = [0; 12];
pub const CHECK_AAD: &[u8] = b"keyward import check v1";
const CHECK_PLAINTEXT: [u8; 32] = [0; 32];

const WRAPPING_ALGORITHMS: &str = "[RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256]";
const WRAPPING_KEY_SPECS: &str = "[RSA_2048, RSA_3072, RSA_4096]";
pub const EXPIRES: &str = "KEY_MATERIAL_EXPIRES";
pub const DOES_NOT_EXPIRE: &str = "KEY_MATERIAL_DOES_NOT_EXPIRE";

/// What GetParametersForImport returns.
pub struct ImportParametersOut {
    pub key_arn: String,
    pub import_token: Vec<u8>,
    /// DER SubjectPublicKeyInfo of the wrapping key.
    pub public_key: Vec<u8>,
    pub valid_to: Timestamp,
}

/// ImportKeyMaterial's request.
pub struct ImportMaterial {
    pub key_id: String,
    pub import_token: Vec<u8>,
    pub encrypted_key_material: Vec<u8>,
    /// Empty: KEY_MATERIAL_DOES_NOT_EXPIRE.
    pub expiration_model: String,
    pub valid_to: Option<Timestamp>,
}

/// AWS's wording for a value outside an enumeration.
fn not_in(field: &'static str, value: &str, set: &str) -> KmsError {
    KmsError::validation(
        field,
        format!(
            "value '{value}' failed to satisfy constraint: Member must satisfy enum value set: {set}"
        ),
    )
}

fn wrapping_hash(algorithm: &str) -> Result<OaepHash, KmsError> {
    match algorithm {
        "RSAES_OAEP_SHA_1" => Ok(OaepHash::Sha1),
        "RSAES_OAEP_SHA_256" => Ok(OaepHash::Sha256),
        "RSAES_PKCS1_V1_5" | "RSA_AES_KEY_WRAP_SHA_1" | "RSA_AES_KEY_WRAP_SHA_256" | "SM2PKE" => {
            Err(KmsError::validation(
                "wrapping_algorithm",
                format!("{algorithm} is not supported; use one of {WRAPPING_ALGORITHMS}"),
            ))
        }
        other => Err(not_in("wrapping_algorithm", other, WRAPPING_ALGORITHMS)),
    }
}

fn wrapping_bits(spec: &str) -> Result<u32, KmsError> {
    match spec {
        "RSA_2048" => Ok(2048),
        "RSA_3072" => Ok(3072),
        "RSA_4096" => Ok(4096),
        other => Err(not_in("wrapping_key_spec", other, WRAPPING_KEY_SPECS)),
    }
}

/// A root of trust that cannot import says so as AWS does for unsupported operations.
fn import_error(err: BackendError) -> KmsError {
    match err {
        BackendError::Unsupported(reason) => KmsError::UnsupportedOperation(reason),
        other => other.into(),
    }
}

/// What the import commit did with the key object the request made.
enum Installed {
    /// It is the key's material now.
    New,
    /// The key already had this material (only the expiry changed): the new object goes.
    AlreadyPresent,
}

impl KmsService {
    /// The check CreateKey with origin EXTERNAL makes before writing anything.
    pub(super) async fn check_import_supported(&self) -> Result<(), KmsError> {
        self.hw
            .run(|root| root.check_import())
            .await
            .map_err(import_error)
    }

    /// Import operations need an EXTERNAL key that is not being deleted.
    fn require_importable(&self, record: &KeyRecord) -> Result<(), KmsError> {
        let arn = self.arns.key(&record.key_id);
        if !record.is_external() {
            return Err(KmsError::UnsupportedOperation(format!(
                "{arn} has origin {}; key material can be imported only into keys with origin EXTERNAL",
                record.origin
            )));
        }
        if record.state == KeyState::PendingDeletion {
            return Err(KmsError::InvalidState(format!("{arn} is pending deletion")));
        }
        Ok(())
    }

    pub async fn get_parameters_for_import(
        &self,
        key_id: &str,
        wrapping_algorithm: &str,
        wrapping_key_spec: &str,
    ) -> Result<ImportParametersOut, KmsError> {
        let hash = wrapping_hash(wrapping_algorithm)?;
        let bits = wrapping_bits(wrapping_key_spec)?;
        let (record, _) = self.resolve("key_id", key_id).await?;
        self.require_importable(&record)?;
        let label = format!("keyward {} import wrapping key", record.key_id);
        let (wrapping_key, public) = self
            .hw
            .run(move |root| root.create_wrapping_key(&label, bits, hash))
            .await
            .map_err(import_error)?;
        let mut token = vec![TOKEN_FORMAT; 1 + TOKEN_RANDOM_LEN];
        getrandom::fill(&mut token[1..])?;
        let lifetime = i64::try_from(self.import_token_lifetime.as_secs()).unwrap_or(i64::MAX);
        let valid_to = self.clock.now().add_secs(lifetime);
        let parameters = ImportParameters {
            token_digest: hex::encode(&sha256(&token)),
            wrapping_algorithm: wrapping_algorithm.to_owned(),
            wrapping_key_spec: wrapping_key_spec.to_owned(),
            wrapping_key: wrapping_key.clone(),
            valid_to,
            wrapping_key_destroyed: false,
        };
        let outcome = self
            .update_key(&record.key_id, |record| {
                self.require_importable(record)?;
                let import = record.import.get_or_insert_with(ImportRecord::default);
                Ok(import.parameters.replace(parameters.clone()))
            })
            .await;
        let replaced = match outcome {
            Ok((_, replaced)) => replaced,
            Err(e) => {
                self.destroy_wrapping_key(wrapping_key).await;
                return Err(e);
            }
        };
        if let Some(old) = replaced {
            self.destroy_wrapping_key(old.wrapping_key).await;
        }
        tracing::info!(key_id = %record.key_id, bits, "made import parameters");
        Ok(ImportParametersOut {
            key_arn: self.arns.key(&record.key_id),
            import_token: token,
            public_key: spki::rsa_public_key(&public.modulus, &public.exponent),
            valid_to,
        })
    }

    pub async fn import_key_material(&self, request: ImportMaterial) -> Result<(), KmsError> {
        let now = self.clock.now();
        let (expiration_model, valid_to) =
            expiration(&request.expiration_model, request.valid_to, now)?;
        if !(1..=MAX_ENCRYPTED_KEY_MATERIAL).contains(&request.encrypted_key_material.len()) {
            return Err(KmsError::validation(
                "encrypted_key_material",
                format!("must be 1 to {MAX_ENCRYPTED_KEY_MATERIAL} bytes"),
            ));
        }
        let (record, _) = self.resolve("key_id", &request.key_id).await?;
        self.require_importable(&record)?;
        let digest = hex::encode(&sha256(&request.import_token));
        let parameters = record
            .import
            .as_ref()
            .and_then(|i| i.parameters.clone())
            .filter(|p| ct_eq(p.token_digest.as_bytes(), digest.as_bytes()))
            .ok_or(KmsError::InvalidImportToken)?;
        if parameters.valid_to <= now {
            return Err(KmsError::ExpiredImportToken);
        }
        let hash = wrapping_hash(&parameters.wrapping_algorithm)?;
        let wrapping = parameters.wrapping_key.clone();
        let wrapped = request.encrypted_key_material;
        let label = format!("keyward {} v1 imported", record.key_id);
        let (material, check) = self
            .hw
            .run(move |root| {
                let key = root.import_key(&wrapping, hash, &wrapped, &label)?;
                match root.seal(&key, &CHECK_NONCE, CHECK_AAD, &CHECK_PLAINTEXT) {
                    Ok(check) => Ok((key, hex::encode(&check))),
                    Err(e) => {
                        let _ = root.destroy_key(&key);
                        Err(e)
                    }
                }
            })
            .await
            .map_err(|e| match e {
                // Replaced (and destroyed) by a newer GetParametersForImport meanwhile.
                BackendError::KeyMissing(_) => KmsError::InvalidImportToken,
                other => import_error(other),
            })?;
        let arns = self.arns.clone();
        let outcome = self
            .update_key(&record.key_id, |record| {
                self.require_importable(record)?;
                let import = record.import.get_or_insert_with(ImportRecord::default);
                // Replaced or used by a concurrent request since it was checked.
                if import.parameters.as_ref().map(|p| &p.token_digest) != Some(&digest) {
                    return Err(KmsError::InvalidImportToken);
                }
                if let Some(previous) = &import.check
                    && !ct_eq(previous.as_bytes(), check.as_bytes())
                {
                    return Err(KmsError::IncorrectKeyMaterial(format!(
                        "the key material is not the material previously imported into {}",
                        arns.key(&record.key_id)
                    )));
                }
                import.check = Some(check.clone());
                import.parameters = None;
                import.expiration_model = expiration_model.to_owned();
                import.valid_to = valid_to;
                if record.state == KeyState::PendingImport {
                    record.state = KeyState::Enabled;
                }
                if record.versions.is_empty() {
                    record.versions.push(KeyVersionRecord {
                        version: 1,
                        created_at: now,
                        material: material.clone(),
                        on_demand: false,
                        // The user holds imported material; recovery asks for it again.
                        escrow: None,
                    });
                    Ok(Installed::New)
                } else {
                    Ok(Installed::AlreadyPresent)
                }
            })
            .await;
        match outcome {
            Ok((_, Installed::New)) => {}
            Ok((_, Installed::AlreadyPresent)) | Err(_) => self.destroy_material(material).await,
        }
        outcome?;
        self.destroy_wrapping_key(parameters.wrapping_key).await;
        tracing::info!(key_id = %record.key_id, expiration_model, "imported key material");
        Ok(())
    }

    /// Destroys the key's material; it waits in PendingImport for the same material again.
    pub async fn delete_imported_key_material(&self, key_id: &str) -> Result<KeyRecord, KmsError> {
        let (record, removed) = self
            .update_key(key_id, |record| {
                self.require_importable(record)?;
                Ok(forget_material(record))
            })
            .await?;
        for version in removed {
            self.destroy_material(version.material).await;
        }
        tracing::info!(key_id = %record.key_id, "deleted imported key material");
        Ok(record)
    }

    /// For the purge duty: deletes material past its `valid_to` and destroys wrapping keys of
    /// expired parameters (the parameters stay, marked, so their token reads as expired).
    /// Returns how many keys changed.
    pub(super) async fn purge_expired_imports(&self) -> Result<usize, KmsError> {
        let now = self.clock.now();
        let mut due = Vec::new();
        for (_, record, _) in self.keys.scan_all().await? {
            let stale_parameters = record
                .import
                .as_ref()
                .and_then(|i| i.parameters.as_ref())
                .is_some_and(|p| p.valid_to <= now && !p.wrapping_key_destroyed);
            let stale_material =
                record.material_expired(now) && record.state != KeyState::PendingDeletion;
            if stale_parameters || stale_material {
                due.push(record.key_id);
            }
        }
        let mut changed = 0;
        for key_id in due {
            let outcome = self
                .update_key(&key_id, |record| {
                    let mut material = Vec::new();
                    if record.material_expired(now) && record.state != KeyState::PendingDeletion {
                        material = forget_material(record);
                    }
                    let mut wrapping = None;
                    if let Some(parameters) = record
                        .import
                        .as_mut()
                        .and_then(|i| i.parameters.as_mut())
                        .filter(|p| p.valid_to <= now && !p.wrapping_key_destroyed)
                    {
                        parameters.wrapping_key_destroyed = true;
                        wrapping = Some(parameters.wrapping_key.clone());
                    }
                    Ok((material, wrapping))
                })
                .await;
            match outcome {
                Ok((_, (material, wrapping))) => {
                    for version in material {
                        self.destroy_material(version.material).await;
                    }
                    if let Some(key) = wrapping {
                        self.destroy_wrapping_key(key).await;
                    }
                    changed += 1;
                }
                Err(e) => {
                    tracing::warn!(%key_id, error = %e, "expiring import state failed; will retry")
                }
            }
        }
        Ok(changed)
    }

    /// Best effort, after the commit that forgot it: a failure leaves an unnamed object.
    pub(super) async fn destroy_wrapping_key(&self, key: KeyRef) {
        let shown = key.clone();
        if let Err(e) = self
            .hw
            .run(move |root| root.destroy_wrapping_key(&key))
            .await
        {
            tracing::warn!(key = ?shown, error = %e, "could not destroy an import wrapping key");
        }
    }

    async fn destroy_material(&self, key: KeyRef) {
        let shown = key.clone();
        if let Err(e) = self.hw.run(move |root| root.destroy_key(&key)).await {
            tracing::warn!(key = ?shown, error = %e, "could not destroy imported key material");
        }
    }
}

/// Takes the material out of the record (the caller destroys it after the commit) and puts the
/// key in PendingImport; a key pending deletion stays so.
fn forget_material(record: &mut KeyRecord) -> Vec<KeyVersionRecord> {
    if let Some(import) = &mut record.import {
        import.expiration_model.clear();
        import.valid_to = None;
    }
    if record.state != KeyState::PendingDeletion {
        record.state = KeyState::PendingImport;
    }
    std::mem::take(&mut record.versions)
}

/// ImportKeyMaterial's expiration model and ValidTo, checked as AWS does.
fn expiration(
    model: &str,
    valid_to: Option<Timestamp>,
    now: Timestamp,
) -> Result<(&'static str, Option<Timestamp>), KmsError> {
    match (model, valid_to) {
        ("" | DOES_NOT_EXPIRE, None) => Ok((DOES_NOT_EXPIRE, None)),
        ("" | DOES_NOT_EXPIRE, Some(_)) => Err(KmsError::validation(
            "valid_to",
            "must be omitted when expiration_model is KEY_MATERIAL_DOES_NOT_EXPIRE",
        )),
        (EXPIRES, None) => Err(KmsError::validation(
            "valid_to",
            "is required when expiration_model is KEY_MATERIAL_EXPIRES",
        )),
        (EXPIRES, Some(to)) if to <= now || to > now.add_days(MAX_VALID_TO_DAYS) => {
            Err(KmsError::validation(
                "valid_to",
                format!("must be in the future and at most {MAX_VALID_TO_DAYS} days away"),
            ))
        }
        (EXPIRES, Some(to)) => Ok((EXPIRES, Some(to))),
        (other, _) => Err(not_in(
            "expiration_model",
            other,
            "[KEY_MATERIAL_EXPIRES, KEY_MATERIAL_DOES_NOT_EXPIRE]",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(err: KmsError) -> &'static str {
        match err {
            KmsError::Validation { field, .. } => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn algorithms_and_specs_are_aws_enumerations() {
        assert_eq!(wrapping_hash("RSAES_OAEP_SHA_1").unwrap(), OaepHash::Sha1);
        assert_eq!(
            wrapping_hash("RSAES_OAEP_SHA_256").unwrap(),
            OaepHash::Sha256
        );
        assert_eq!(wrapping_bits("RSA_3072").unwrap(), 3072);
        for bad in ["", "RSAES_PKCS1_V1_5", "rsaes_oaep_sha_1"] {
            assert_eq!(field(wrapping_hash(bad).unwrap_err()), "wrapping_algorithm");
        }
        let err = wrapping_bits("RSA_1024").unwrap_err().to_string();
        assert!(err.contains("Member must satisfy enum value set"), "{err}");
    }

    #[test]
    fn expiration_rules() {
        let now = Timestamp::from_secs(1_000_000);
        let later = Some(now.add_days(30));
        assert_eq!(expiration("", None, now).unwrap(), (DOES_NOT_EXPIRE, None));
        assert_eq!(expiration(EXPIRES, later, now).unwrap(), (EXPIRES, later));
        for (model, to) in [
            (DOES_NOT_EXPIRE, later),
            (EXPIRES, None),
            (EXPIRES, Some(now)),
            (EXPIRES, Some(now.add_days(366))),
            ("SOMETIMES", None),
        ] {
            assert!(expiration(model, to, now).is_err(), "{model} {to:?}");
        }
    }
}
