//! KMS keys over the in-memory root of trust: key states and what each refuses, deletion
//! windows and the purge, rotation, and the encrypt/decrypt round trip with every kind of
//! tampering refused alike.

use super::*;
use crate::crypto::EncryptionContext;
use crate::crypto::envelope::Ciphertext;
use crate::service::KmsError;
use crate::service::kms::{self, DataKeySpec, KmsService};
use crate::store::{KeyRecord, KeyState};
use std::collections::HashMap;

async fn key(f: &Fixture) -> KeyRecord {
    f.new_key().await
}

fn context(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The service calls with a request's members as the front doors see them, checked by the
/// same functions the protobuf conversions use.
fn checked(pairs: HashMap<String, String>) -> Result<EncryptionContext, KmsError> {
    kms::context("encryption_context", pairs)
}

async fn encrypt_with(
    kms: &KmsService,
    key_id: &str,
    plaintext: SecretBytes,
    pairs: HashMap<String, String>,
    algorithm: &str,
) -> Result<(Vec<u8>, String), KmsError> {
    kms::check_algorithm(algorithm)?;
    let request = kms::Encrypt {
        key_id: key_id.to_owned(),
        plaintext,
        context: checked(pairs)?,
    };
    let sealed = kms.encrypt(request).await?;
    Ok((sealed.ciphertext_blob, sealed.key_arn))
}

async fn decrypt_with(
    kms: &KmsService,
    blob: &[u8],
    pairs: HashMap<String, String>,
    key_id: &str,
    algorithm: &str,
) -> Result<(SecretBytes, String), KmsError> {
    kms::check_algorithm(algorithm)?;
    let request = kms::Decrypt {
        ciphertext_blob: blob.to_vec(),
        context: checked(pairs)?,
        key_id: (!key_id.is_empty()).then(|| key_id.to_owned()),
    };
    let opened = kms.decrypt(request).await?;
    Ok((opened.plaintext, opened.key_arn))
}

async fn re_encrypt_with(
    kms: &KmsService,
    blob: &[u8],
    source_pairs: HashMap<String, String>,
    source_key_id: &str,
    destination_key_id: &str,
    destination_pairs: HashMap<String, String>,
) -> Result<(Vec<u8>, String, String), KmsError> {
    let request = kms::ReEncrypt {
        ciphertext_blob: blob.to_vec(),
        source_context: checked(source_pairs)?,
        source_key_id: (!source_key_id.is_empty()).then(|| source_key_id.to_owned()),
        destination_key_id: destination_key_id.to_owned(),
        destination_context: checked(destination_pairs)?,
    };
    let resealed = kms.re_encrypt(request).await?;
    Ok((
        resealed.ciphertext_blob,
        resealed.source_key_arn,
        resealed.key_arn,
    ))
}

async fn generate_data_key_with(
    kms: &KmsService,
    key_id: &str,
    spec: DataKeySpec,
    pairs: HashMap<String, String>,
) -> Result<kms::GeneratedDataKey, KmsError> {
    let request = kms::GenerateDataKey {
        key_id: key_id.to_owned(),
        spec,
        context: checked(pairs)?,
    };
    kms.generate_data_key(request).await
}

fn bytes(s: &str) -> SecretBytes {
    SecretBytes::new(s.as_bytes().to_vec())
}

async fn encrypt(f: &Fixture, key_id: &str, plaintext: &str) -> Result<Vec<u8>, KmsError> {
    let (blob, _) = encrypt_with(
        &f.kms,
        key_id,
        bytes(plaintext),
        context(&[("app", "billing")]),
        "",
    )
    .await?;
    Ok(blob)
}

async fn decrypt(f: &Fixture, blob: &[u8]) -> Result<String, KmsError> {
    let (plaintext, _) = decrypt_with(&f.kms, blob, context(&[("app", "billing")]), "", "").await?;
    Ok(String::from_utf8(plaintext.expose().to_vec()).unwrap())
}

/// The key ARN a Disabled refusal names.
fn disabled<T>(result: Result<T, KmsError>) -> String {
    match result {
        Err(KmsError::Disabled(which)) => which,
        Err(other) => panic!("expected Disabled, got {other:?}"),
        Ok(_) => panic!("expected Disabled, got success"),
    }
}

fn invalid_state<T>(result: Result<T, KmsError>) -> String {
    match result {
        Err(KmsError::InvalidState(m)) => m,
        Err(other) => panic!("expected InvalidState, got {other:?}"),
        Ok(_) => panic!("expected InvalidState, got success"),
    }
}

fn version_of(blob: &[u8]) -> u32 {
    Ciphertext::parse(blob).unwrap().header.key_version
}

#[tokio::test]
async fn encrypt_decrypt_round_trip_names_the_key() {
    let f = services().await;
    let k = key(&f).await;
    assert_eq!(
        (k.state, k.origin.as_str(), k.versions.len(), k.created_at),
        (KeyState::Enabled, "MEMORY", 1, at(START))
    );
    let arn = f.kms.arns().key(&k.key_id);
    let (blob, used) = encrypt_with(
        &f.kms,
        &k.key_id,
        bytes("hello"),
        context(&[("app", "billing")]),
        "",
    )
    .await
    .unwrap();
    assert_eq!(used, arn);
    let (plaintext, by) = decrypt_with(
        &f.kms,
        &blob,
        context(&[("app", "billing")]),
        &arn,
        "SYMMETRIC_DEFAULT",
    )
    .await
    .unwrap();
    assert_eq!(
        (plaintext.expose(), by.as_str()),
        (&b"hello"[..], arn.as_str())
    );

    // By alias as well as by id.
    f.kms.create_alias("alias/app", &k.key_id).await.unwrap();
    let blob = encrypt(&f, "alias/app", "by alias").await.unwrap();
    assert_eq!(decrypt(&f, &blob).await.unwrap(), "by alias");

    // A data key decrypts to the plaintext handed out with it.
    let data_key = generate_data_key_with(
        &f.kms,
        &k.key_id,
        DataKeySpec {
            key_spec: "AES_256".into(),
            number_of_bytes: None,
        },
        context(&[("app", "billing")]),
    )
    .await
    .unwrap();
    assert_eq!(data_key.plaintext.len(), 32);
    let (opened, _) = decrypt_with(
        &f.kms,
        &data_key.ciphertext_blob,
        context(&[("app", "billing")]),
        "",
        "",
    )
    .await
    .unwrap();
    assert_eq!(opened.expose(), data_key.plaintext.expose());
}

#[tokio::test]
async fn tampered_ciphertext_and_a_wrong_context_are_refused_alike() {
    let f = services().await;
    let k = key(&f).await;
    let other = key(&f).await;
    let blob = encrypt(&f, &k.key_id, "secret").await.unwrap();

    let invalid = |result: Result<String, KmsError>, what: &str| match result {
        Err(KmsError::InvalidCiphertext) => {}
        other => panic!("{what}: expected InvalidCiphertext, got {other:?}"),
    };
    // One flipped bit anywhere: the format byte, the key id, the version, the nonce, the
    // sealed bytes or the tag.
    for at in 0..blob.len() {
        let mut flipped = blob.clone();
        flipped[at] ^= 0x01;
        invalid(decrypt(&f, &flipped).await, &format!("bit 0 of byte {at}"));
    }
    invalid(decrypt(&f, &blob[..blob.len() - 1]).await, "truncated");
    let mut longer = blob.clone();
    longer.push(0);
    invalid(decrypt(&f, &longer).await, "extended");

    for ctx in [
        context(&[("app", "payroll")]),
        context(&[("App", "billing")]),
        context(&[]),
        context(&[("app", "billing"), ("extra", "x")]),
    ] {
        let result = decrypt_with(&f.kms, &blob, ctx.clone(), "", "").await;
        assert!(
            matches!(result, Err(KmsError::InvalidCiphertext)),
            "{ctx:?}: {:?}",
            result.err()
        );
    }
    // Naming another key than the one that encrypted it.
    let result = decrypt_with(
        &f.kms,
        &blob,
        context(&[("app", "billing")]),
        &other.key_id,
        "",
    )
    .await;
    assert!(
        matches!(result, Err(KmsError::IncorrectKey)),
        "{:?}",
        result.err()
    );
    // The untouched blob still opens.
    assert_eq!(decrypt(&f, &blob).await.unwrap(), "secret");
}

#[tokio::test]
async fn re_encrypt_moves_a_blob_to_another_key_and_context() {
    let f = services().await;
    let (a, b) = (key(&f).await, key(&f).await);
    let blob = encrypt(&f, &a.key_id, "moving").await.unwrap();
    let (moved, source, destination) = re_encrypt_with(
        &f.kms,
        &blob,
        context(&[("app", "billing")]),
        &a.key_id,
        &b.key_id,
        context(&[("app", "hr")]),
    )
    .await
    .unwrap();
    assert_eq!(
        (source, destination),
        (f.kms.arns().key(&a.key_id), f.kms.arns().key(&b.key_id))
    );
    let (plaintext, by) = decrypt_with(&f.kms, &moved, context(&[("app", "hr")]), "", "")
        .await
        .unwrap();
    assert_eq!(
        (plaintext.expose(), by),
        (&b"moving"[..], f.kms.arns().key(&b.key_id))
    );
    assert!(matches!(
        decrypt(&f, &moved).await,
        Err(KmsError::InvalidCiphertext)
    ));
}

#[tokio::test]
async fn a_disabled_key_refuses_use_until_enabled() {
    let f = services().await;
    let k = key(&f).await;
    let arn = f.kms.arns().key(&k.key_id);
    let blob = encrypt(&f, &k.key_id, "before").await.unwrap();

    f.kms.disable_key(&k.key_id).await.unwrap();
    assert_eq!(
        f.kms.describe_key(&k.key_id).await.unwrap().state,
        KeyState::Disabled
    );
    assert_eq!(disabled(encrypt(&f, &k.key_id, "during").await), arn);
    assert_eq!(disabled(decrypt(&f, &blob).await), arn);
    assert_eq!(disabled(f.kms.rotate_key_on_demand(&k.key_id).await), arn);

    f.kms.enable_key(&k.key_id).await.unwrap();
    assert_eq!(decrypt(&f, &blob).await.unwrap(), "before");
    encrypt(&f, &k.key_id, "after").await.unwrap();
}

#[tokio::test]
async fn scheduled_key_deletion_refuses_use_and_cancel_brings_it_back_disabled() {
    let f = services().await;
    let k = key(&f).await;
    let arn = f.kms.arns().key(&k.key_id);
    let blob = encrypt(&f, &k.key_id, "kept").await.unwrap();

    for days in [6, 31] {
        let err = f
            .kms
            .schedule_key_deletion(&k.key_id, Some(days))
            .await
            .err();
        assert!(
            matches!(
                err,
                Some(KmsError::Validation {
                    field: "pending_window_in_days",
                    ..
                })
            ),
            "{days}: {err:?}"
        );
    }
    let scheduled = f.kms.schedule_key_deletion(&k.key_id, None).await.unwrap();
    assert_eq!(
        (
            scheduled.state,
            scheduled.deletion_date,
            scheduled.pending_window_days
        ),
        (
            KeyState::PendingDeletion,
            Some(at(START + 30 * DAY)),
            Some(30)
        )
    );
    let pending = format!("{arn} is pending deletion");
    assert_eq!(invalid_state(encrypt(&f, &k.key_id, "x").await), pending);
    assert_eq!(invalid_state(decrypt(&f, &blob).await), pending);
    assert_eq!(invalid_state(f.kms.enable_key(&k.key_id).await), pending);
    assert_eq!(
        invalid_state(f.kms.schedule_key_deletion(&k.key_id, Some(7)).await),
        format!("{arn} is already pending deletion")
    );

    let cancelled = f.kms.cancel_key_deletion(&k.key_id).await.unwrap();
    assert_eq!(
        (
            cancelled.state,
            cancelled.deletion_date,
            cancelled.pending_window_days
        ),
        (KeyState::Disabled, None, None)
    );
    assert_eq!(
        invalid_state(f.kms.cancel_key_deletion(&k.key_id).await),
        format!("{arn} is not pending deletion")
    );
    f.kms.enable_key(&k.key_id).await.unwrap();
    assert_eq!(decrypt(&f, &blob).await.unwrap(), "kept");
}

#[tokio::test]
async fn a_key_is_destroyed_once_the_clock_passes_its_deletion_date() {
    let f = services().await;
    let k = key(&f).await;
    let survivor = key(&f).await;
    let arn = f.kms.arns().key(&k.key_id);
    f.kms.create_alias("alias/doomed", &k.key_id).await.unwrap();
    let blob = encrypt(&f, &k.key_id, "gone").await.unwrap();
    f.kms
        .schedule_key_deletion(&k.key_id, Some(7))
        .await
        .unwrap();

    f.clock.advance(7 * DAY - 1);
    assert_eq!(f.kms.purge_expired_keys().await.unwrap(), 0);
    f.clock.advance(1);
    // Past the date it is too late to cancel, even before the purge ran.
    let err = f.kms.cancel_key_deletion(&k.key_id).await.err();
    assert!(
        matches!(&err, Some(KmsError::InvalidState(m)) if *m == format!("{arn} is being deleted")),
        "{err:?}"
    );
    assert_eq!(f.kms.purge_expired_keys().await.unwrap(), 1);
    assert_eq!(f.kms.purge_expired_keys().await.unwrap(), 0);

    let err = f.kms.describe_key(&k.key_id).await.err();
    assert!(
        matches!(&err, Some(KmsError::NotFound(m)) if *m == format!("key {arn} does not exist")),
        "{err:?}"
    );
    let err = f.kms.describe_key("alias/doomed").await.err();
    assert!(matches!(err, Some(KmsError::NotFound(_))), "{err:?}");
    assert!(matches!(
        decrypt(&f, &blob).await,
        Err(KmsError::InvalidCiphertext)
    ));
    assert_eq!(
        f.kms.describe_key(&survivor.key_id).await.unwrap().state,
        KeyState::Enabled
    );
}

#[tokio::test]
async fn rotation_keeps_old_blobs_and_new_blobs_use_the_new_version() {
    let f = services().await;
    let k = key(&f).await;
    let old = encrypt(&f, &k.key_id, "v1 data").await.unwrap();
    assert_eq!(version_of(&old), 1);

    let (record, version) = f.kms.rotate_key_on_demand(&k.key_id).await.unwrap();
    assert_eq!((version, record.versions.len()), (2, 2));
    let new = encrypt(&f, &k.key_id, "v2 data").await.unwrap();
    assert_eq!(version_of(&new), 2);
    assert_eq!(decrypt(&f, &old).await.unwrap(), "v1 data");
    assert_eq!(decrypt(&f, &new).await.unwrap(), "v2 data");
}

#[tokio::test]
async fn automatic_key_rotation_follows_the_clock() {
    let f = services().await;
    let k = key(&f).await;
    for days in [89, 2561] {
        let err = f.kms.enable_key_rotation(&k.key_id, Some(days)).await.err();
        assert!(
            matches!(
                err,
                Some(KmsError::Validation {
                    field: "rotation_period_in_days",
                    ..
                })
            ),
            "{days}: {err:?}"
        );
    }
    f.kms
        .enable_key_rotation(&k.key_id, Some(90))
        .await
        .unwrap();
    let status = f.kms.key_rotation_status(&k.key_id).await.unwrap();
    assert_eq!(
        (status.enabled, status.period_days, status.next_rotation_at),
        (true, Some(90), Some(at(START + 90 * DAY)))
    );

    f.clock.advance(90 * DAY - 1);
    assert_eq!(f.kms.rotate_due_keys().await.unwrap(), 0);
    f.clock.advance(1);
    assert_eq!(f.kms.rotate_due_keys().await.unwrap(), 1);
    assert_eq!(f.kms.rotate_due_keys().await.unwrap(), 0, "once per period");
    let record = f.kms.describe_key(&k.key_id).await.unwrap();
    let last = record.versions.last().unwrap();
    assert_eq!(
        (last.version, last.created_at, last.on_demand),
        (2, at(START + 90 * DAY), false)
    );
    assert_eq!(
        f.kms
            .key_rotation_status(&k.key_id)
            .await
            .unwrap()
            .next_rotation_at,
        Some(at(START + 180 * DAY))
    );

    // A disabled key waits, and rotates once enabled again.
    f.clock.advance(90 * DAY);
    f.kms.disable_key(&k.key_id).await.unwrap();
    assert_eq!(f.kms.rotate_due_keys().await.unwrap(), 0);
    f.kms.enable_key(&k.key_id).await.unwrap();
    assert_eq!(f.kms.rotate_due_keys().await.unwrap(), 1);
    assert_eq!(
        f.kms.describe_key(&k.key_id).await.unwrap().versions.len(),
        3
    );
}

/// A root of trust without key import (the in-memory one, like a TPM) refuses keys with origin
/// EXTERNAL as AWS refuses unsupported operations, and import calls on ordinary keys are
/// refused the same way; unknown origins are a validation error.
#[tokio::test]
async fn imports_are_refused_where_the_root_of_trust_or_the_key_cannot_take_them() {
    let f = services().await;
    let new = |origin: &str| kms::NewKey {
        description: String::new(),
        key_usage: String::new(),
        key_spec: String::new(),
        tags: Vec::new(),
        protection: Default::default(),
        origin: origin.into(),
    };
    match f.kms.create_key(new("EXTERNAL")).await {
        Err(KmsError::UnsupportedOperation(m)) => assert!(m.contains("PKCS#11"), "{m}"),
        other => panic!("expected UnsupportedOperation, got {other:?}"),
    }
    assert!(matches!(
        f.kms.create_key(new("AWS_CLOUDHSM")).await,
        Err(KmsError::UnsupportedOperation(_))
    ));
    assert!(matches!(
        f.kms.create_key(new("SOMEWHERE")).await,
        Err(KmsError::Validation {
            field: "origin",
            ..
        })
    ));
    let ordinary = f.kms.create_key(new("AWS_KMS")).await.unwrap();
    assert!(!ordinary.is_external());
    for refused in [
        f.kms
            .get_parameters_for_import(&ordinary.key_id, "RSAES_OAEP_SHA_256", "RSA_2048")
            .await
            .map(|_| ()),
        f.kms
            .delete_imported_key_material(&ordinary.key_id)
            .await
            .map(|_| ()),
    ] {
        assert!(
            matches!(refused, Err(KmsError::UnsupportedOperation(_))),
            "{refused:?}"
        );
    }
}
