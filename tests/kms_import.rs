//! Key import (BYOK) against a real server on SoftHSM: keys with origin EXTERNAL, wrapped as a
//! user would wrap them (the RustCrypto `rsa` crate, RSAES-OAEP with SHA-1 and SHA-256), through
//! the official AWS SDK and through gRPC.

mod common;

use aws_sdk_kms::primitives::{Blob, DateTime};
use aws_sdk_kms::types::{
    AlgorithmSpec, ExpirationModelType, KeyState, OriginType, WrappingKeySpec,
};
use common::*;
use keyward::api::pb;
use rsa::pkcs8::DecodePublicKey;
use std::time::Duration;
use tonic::Code;

fn sdk(server: &Server) -> aws_sdk_kms::Client {
    sdk_client!(aws_sdk_kms, server)
}

fn code(err: impl aws_sdk_kms::error::ProvideErrorMetadata) -> String {
    err.code().unwrap_or("none").to_owned()
}

fn random_key() -> Vec<u8> {
    let mut key = vec![0u8; 32];
    getrandom::fill(&mut key).unwrap();
    key
}

/// What a user does with GetParametersForImport's public key: RSA-OAEP-wrap the material.
fn wrap(public_key_der: &[u8], algorithm: &str, material: &[u8]) -> Vec<u8> {
    let key = rsa::PublicKey::from_public_key_der(public_key_der).expect("a DER RSA public key");
    match algorithm {
        "RSAES_OAEP_SHA_1" => key.encrypt(
            &mut keyward::crypto::rng::OsRng,
            rsa::Oaep::<sha1::Sha1>::new(),
            material,
        ),
        "RSAES_OAEP_SHA_256" => key.encrypt(
            &mut keyward::crypto::rng::OsRng,
            rsa::Oaep::<sha2::Sha256>::new(),
            material,
        ),
        other => panic!("{other}"),
    }
    .expect("wrap")
}

struct Parameters {
    token: Vec<u8>,
    public_key: Vec<u8>,
}

async fn parameters(
    kms: &aws_sdk_kms::Client,
    key: &str,
    algorithm: &str,
    spec: WrappingKeySpec,
) -> Parameters {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let out = kms
        .get_parameters_for_import()
        .key_id(key)
        .wrapping_algorithm(AlgorithmSpec::from(algorithm))
        .wrapping_key_spec(spec)
        .send()
        .await
        .unwrap();
    assert!(out.key_id().unwrap().ends_with(key), "the key's ARN");
    let valid_to = out.parameters_valid_to().unwrap().secs();
    assert!(
        (started + 86_400..=started + 86_400 + 60).contains(&valid_to),
        "24 hours: {valid_to} from {started}"
    );
    Parameters {
        token: out.import_token().unwrap().as_ref().to_vec(),
        public_key: out.public_key().unwrap().as_ref().to_vec(),
    }
}

async fn import(
    kms: &aws_sdk_kms::Client,
    key: &str,
    token: &[u8],
    wrapped: Vec<u8>,
) -> Result<(), String> {
    kms.import_key_material()
        .key_id(key)
        .import_token(Blob::new(token.to_vec()))
        .encrypted_key_material(Blob::new(wrapped))
        .expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire)
        .send()
        .await
        .map(|_| ())
        .map_err(code)
}

async fn state(kms: &aws_sdk_kms::Client, key: &str) -> KeyState {
    kms.describe_key()
        .key_id(key)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_state()
        .unwrap()
        .clone()
}

async fn external_key(kms: &aws_sdk_kms::Client) -> String {
    let created = kms
        .create_key()
        .origin(OriginType::External)
        .description("byok")
        .send()
        .await
        .unwrap();
    let metadata = created.key_metadata().unwrap();
    assert_eq!(metadata.key_state(), Some(&KeyState::PendingImport));
    assert_eq!(metadata.origin(), Some(&OriginType::External));
    assert!(!metadata.enabled());
    metadata.key_id().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_use_delete_and_reimport_through_the_aws_sdk() {
    // On a TPM run the suite's root cannot import: a_tpm_root_of_trust_refuses_key_import.
    if tpm_mode().is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let kms = sdk(&server);

    // Ordinary keys report their origin too, and take no import.
    let ordinary = kms.create_key().send().await.unwrap();
    let ordinary = ordinary.key_metadata().unwrap().key_id().to_owned();
    let described = kms.describe_key().key_id(&ordinary).send().await.unwrap();
    assert!(described.key_metadata().unwrap().origin().is_some());
    let refused = kms
        .get_parameters_for_import()
        .key_id(&ordinary)
        .wrapping_algorithm(AlgorithmSpec::RsaesOaepSha256)
        .wrapping_key_spec(WrappingKeySpec::Rsa2048)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(refused), "UnsupportedOperationException");

    let key = external_key(&kms).await;
    assert_eq!(state(&kms, &key).await, KeyState::PendingImport);
    let no_material = kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(no_material), "KMSInvalidStateException");
    let no_material = kms
        .generate_data_key()
        .key_id(&key)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(no_material), "KMSInvalidStateException");

    // Unknown wrapping algorithms and specs, in AWS's words.
    for (algorithm, spec) in [
        ("RSAES_PKCS1_V1_5", "RSA_2048"),
        ("RSAES_OAEP_SHA_512", "RSA_2048"),
        ("RSAES_OAEP_SHA_256", "RSA_1024"),
    ] {
        let err = kms
            .get_parameters_for_import()
            .key_id(&key)
            .wrapping_algorithm(AlgorithmSpec::from(algorithm))
            .wrapping_key_spec(WrappingKeySpec::from(spec))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(err), "ValidationException", "{algorithm} {spec}");
    }

    // SHA-256 (decoded in the server after raw RSA inside the token), 3072-bit wrapping key.
    let material = random_key();
    let p = parameters(&kms, &key, "RSAES_OAEP_SHA_256", WrappingKeySpec::Rsa3072).await;
    let mut tampered = wrap(&p.public_key, "RSAES_OAEP_SHA_256", &material);
    tampered[100] ^= 0x01;
    assert_eq!(
        import(&kms, &key, &p.token, tampered).await,
        Err("InvalidCiphertextException".into())
    );
    let short = wrap(&p.public_key, "RSAES_OAEP_SHA_256", &material[..16]);
    assert_eq!(
        import(&kms, &key, &p.token, short).await,
        Err("IncorrectKeyMaterialException".into())
    );
    // Material wrapped with the other hash does not decode either.
    let other_hash = wrap(&p.public_key, "RSAES_OAEP_SHA_1", &material);
    assert_eq!(
        import(&kms, &key, &p.token, other_hash).await,
        Err("InvalidCiphertextException".into())
    );
    let forged = vec![1u8; p.token.len()];
    let wrapped = wrap(&p.public_key, "RSAES_OAEP_SHA_256", &material);
    assert_eq!(
        import(&kms, &key, &forged, wrapped.clone()).await,
        Err("InvalidImportTokenException".into())
    );
    // A token for one key is no token for another.
    let other_key = external_key(&kms).await;
    assert_eq!(
        import(&kms, &other_key, &p.token, wrapped.clone()).await,
        Err("InvalidImportTokenException".into())
    );
    import(&kms, &key, &p.token, wrapped.clone()).await.unwrap();
    assert_eq!(state(&kms, &key).await, KeyState::Enabled);
    // A token is used once.
    assert_eq!(
        import(&kms, &key, &p.token, wrapped).await,
        Err("InvalidImportTokenException".into())
    );

    let blob = kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"imported".to_vec()))
        .encryption_context("app", "byok")
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .clone();
    let decrypt = || {
        kms.decrypt()
            .ciphertext_blob(blob.clone())
            .encryption_context("app", "byok")
            .send()
    };
    assert_eq!(
        decrypt().await.unwrap().plaintext().unwrap().as_ref(),
        b"imported"
    );

    // No rotation for imported material, as in AWS.
    let rotate = kms
        .rotate_key_on_demand()
        .key_id(&key)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(rotate), "UnsupportedOperationException");
    let rotate = kms
        .enable_key_rotation()
        .key_id(&key)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(rotate), "UnsupportedOperationException");

    // Deleted material: PendingImport, and what it encrypted cannot be decrypted.
    kms.delete_imported_key_material()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(state(&kms, &key).await, KeyState::PendingImport);
    assert_eq!(
        code(decrypt().await.unwrap_err()),
        "KMSInvalidStateException"
    );

    // Only the same material comes back (SHA-1 this time: unwrapped inside the token).
    let p = parameters(&kms, &key, "RSAES_OAEP_SHA_1", WrappingKeySpec::Rsa2048).await;
    let different = wrap(&p.public_key, "RSAES_OAEP_SHA_1", &random_key());
    assert_eq!(
        import(&kms, &key, &p.token, different).await,
        Err("IncorrectKeyMaterialException".into())
    );
    assert_eq!(state(&kms, &key).await, KeyState::PendingImport);
    let mut tampered = wrap(&p.public_key, "RSAES_OAEP_SHA_1", &material);
    tampered[7] ^= 0x80;
    assert_eq!(
        import(&kms, &key, &p.token, tampered).await,
        Err("InvalidCiphertextException".into())
    );
    let same = wrap(&p.public_key, "RSAES_OAEP_SHA_1", &material);
    import(&kms, &key, &p.token, same).await.unwrap();
    assert_eq!(state(&kms, &key).await, KeyState::Enabled);
    assert_eq!(
        decrypt().await.unwrap().plaintext().unwrap().as_ref(),
        b"imported"
    );

    // Re-importing the same material while it is present sets a new expiry.
    let p = parameters(&kms, &key, "RSAES_OAEP_SHA_256", WrappingKeySpec::Rsa2048).await;
    let valid_to = DateTime::from_secs(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            + 30 * 86_400,
    );
    kms.import_key_material()
        .key_id(&key)
        .import_token(Blob::new(p.token))
        .encrypted_key_material(Blob::new(wrap(
            &p.public_key,
            "RSAES_OAEP_SHA_256",
            &material,
        )))
        .expiration_model(ExpirationModelType::KeyMaterialExpires)
        .valid_to(valid_to)
        .send()
        .await
        .unwrap();
    let described = kms.describe_key().key_id(&key).send().await.unwrap();
    let metadata = described.key_metadata().unwrap();
    assert_eq!(
        metadata.expiration_model(),
        Some(&ExpirationModelType::KeyMaterialExpires)
    );
    assert_eq!(metadata.valid_to(), Some(&valid_to));
    assert_eq!(
        decrypt().await.unwrap().plaintext().unwrap().as_ref(),
        b"imported"
    );

    // A key waiting for material can be scheduled for deletion; cancelled, it waits again.
    kms.schedule_key_deletion()
        .key_id(&other_key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let refused = kms
        .get_parameters_for_import()
        .key_id(&other_key)
        .wrapping_algorithm(AlgorithmSpec::RsaesOaepSha1)
        .wrapping_key_spec(WrappingKeySpec::Rsa2048)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(refused), "KMSInvalidStateException");
    kms.cancel_key_deletion()
        .key_id(&other_key)
        .send()
        .await
        .unwrap();
    assert_eq!(state(&kms, &other_key).await, KeyState::PendingImport);

    // Every request was audited under its IAM action.
    let data = dir.path().join("data");
    for action in [
        "kms:GetParametersForImport",
        "kms:ImportKeyMaterial",
        "kms:DeleteImportedKeyMaterial",
    ] {
        assert!(!audit_records(&data, action).is_empty(), "{action}");
    }
}

async fn grpc_parameters(kms: &mut Kms, key: &str, algorithm: &str) -> (Vec<u8>, Vec<u8>) {
    let out = kms
        .get_parameters_for_import(pb::GetParametersForImportRequest {
            key_id: key.into(),
            wrapping_algorithm: algorithm.into(),
            wrapping_key_spec: "RSA_2048".into(),
        })
        .await
        .unwrap()
        .into_inner();
    (out.import_token, out.public_key)
}

/// gRPC front door, a token lifetime of 2 seconds and material that expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_and_expiring_material_over_grpc() {
    if tpm_mode().is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::with_config(
        &dir.path().join("data"),
        "[kms]\nimport_token_lifetime_secs = 2\ndeletion_check_interval_secs = 1\n",
    );
    let mut kms = server.kms().await;
    let key = kms
        .create_key(pb::CreateKeyRequest {
            origin: "EXTERNAL".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    assert_eq!(key.key_state, "PendingImport");
    assert_eq!(key.origin, "EXTERNAL");
    let key = key.key_id;
    let material = random_key();

    let (token, public_key) = grpc_parameters(&mut kms, &key, "RSAES_OAEP_SHA_1").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let expired = kms
        .import_key_material(pb::ImportKeyMaterialRequest {
            key_id: key.clone(),
            import_token: token,
            encrypted_key_material: wrap(&public_key, "RSAES_OAEP_SHA_1", &material),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(
        &expired,
        Code::InvalidArgument,
        "ExpiredImportTokenException",
    );

    // With SHA-1 the token unwraps, and measures: anything but 32 bytes is refused, and
    // nothing is left behind (the key is still PendingImport).
    let (token, public_key) = grpc_parameters(&mut kms, &key, "RSAES_OAEP_SHA_1").await;
    for len in [31, 16, 24] {
        let odd = kms
            .import_key_material(pb::ImportKeyMaterialRequest {
                key_id: key.clone(),
                import_token: token.clone(),
                encrypted_key_material: wrap(&public_key, "RSAES_OAEP_SHA_1", &material[..len]),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_error(&odd, Code::InvalidArgument, "IncorrectKeyMaterialException");
    }
    assert_eq!(describe(&mut kms, &key).await.key_state, "PendingImport");

    let (token, public_key) = grpc_parameters(&mut kms, &key, "RSAES_OAEP_SHA_256").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    kms.import_key_material(pb::ImportKeyMaterialRequest {
        key_id: key.clone(),
        import_token: token,
        encrypted_key_material: wrap(&public_key, "RSAES_OAEP_SHA_256", &material),
        expiration_model: "KEY_MATERIAL_EXPIRES".into(),
        valid_to: Some(now + 3),
    })
    .await
    .unwrap();
    let described = describe(&mut kms, &key).await;
    assert_eq!(described.key_state, "Enabled");
    assert_eq!(described.expiration_model, "KEY_MATERIAL_EXPIRES");
    assert_eq!(described.valid_to, Some(now + 3));
    let blob = encrypt(&mut kms, &key, b"short-lived", &[]).await;
    assert_eq!(decrypt(&mut kms, &blob, &[]).await.unwrap(), b"short-lived");

    // Past valid_to the key refuses use at once, and the purge deletes the material.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let refused = decrypt(&mut kms, &blob, &[]).await.unwrap_err();
    assert_error(
        &refused,
        Code::FailedPrecondition,
        "KMSInvalidStateException",
    );
    assert_eq!(describe(&mut kms, &key).await.key_state, "PendingImport");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let described = describe(&mut kms, &key).await;
        if described.current_key_version == 0 {
            assert_eq!(described.key_state, "PendingImport");
            assert_eq!(described.expiration_model, "");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the purge deleted nothing"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The same material brings the old ciphertext back.
    let (token, public_key) = grpc_parameters(&mut kms, &key, "RSAES_OAEP_SHA_1").await;
    kms.import_key_material(pb::ImportKeyMaterialRequest {
        key_id: key.clone(),
        import_token: token,
        encrypted_key_material: wrap(&public_key, "RSAES_OAEP_SHA_1", &material),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(decrypt(&mut kms, &blob, &[]).await.unwrap(), b"short-lived");

    // Without material a key cannot be enabled.
    kms.delete_imported_key_material(pb::DeleteImportedKeyMaterialRequest {
        key_id: key.clone(),
    })
    .await
    .unwrap();
    let refused = kms
        .enable_key(pb::EnableKeyRequest {
            key_id: key.clone(),
        })
        .await
        .unwrap_err();
    assert_error(
        &refused,
        Code::FailedPrecondition,
        "KMSInvalidStateException",
    );
}

/// A TPM cannot hold an RSA wrapping key and unwrap into a master key the way the service
/// needs (see README): it says so, from CreateKey on, and writes nothing.
#[tokio::test]
async fn a_tpm_root_of_trust_refuses_key_import() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tpm = common::swtpm::Swtpm::start(&data.with_extension("swtpm"));
    let config = data.with_extension("toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n{}",
            data.display(),
            tpm_table(&tpm, "resident", "")
        ),
    )
    .unwrap();
    let server = Server::try_spawn(&data, &["--config", config.to_str().unwrap()], &[]).unwrap();
    let mut kms = server.kms().await;
    let count = |kms: &mut Kms| {
        let mut kms = kms.clone();
        async move {
            kms.list_keys(pb::ListKeysRequest::default())
                .await
                .unwrap()
                .into_inner()
                .keys
                .len()
        }
    };
    let before = count(&mut kms).await;

    let refused = kms
        .create_key(pb::CreateKeyRequest {
            origin: "EXTERNAL".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(
        &refused,
        Code::FailedPrecondition,
        "UnsupportedOperationException",
    );
    assert!(refused.message().contains("PKCS#11"), "{refused:?}");
    assert_eq!(count(&mut kms).await, before, "nothing was written");

    let key = create_key(&mut kms, "on the TPM").await;
    let refused = kms
        .get_parameters_for_import(pb::GetParametersForImportRequest {
            key_id: key.key_id,
            wrapping_algorithm: "RSAES_OAEP_SHA_256".into(),
            wrapping_key_spec: "RSA_2048".into(),
        })
        .await
        .unwrap_err();
    assert_error(
        &refused,
        Code::FailedPrecondition,
        "UnsupportedOperationException",
    );
    drop(server);
}

/// `keyward kms` runs the whole import: create, parameters, import, delete.
#[tokio::test]
async fn the_cli_imports_key_material() {
    if tpm_mode().is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let cli = |args: &[&str]| -> serde_json::Value {
        let out = std::process::Command::new(BIN)
            .arg("kms")
            .args(args)
            .env("KEYWARD_ENDPOINT", &server.endpoint)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;

    let created = cli(&["create-key", "--origin", "EXTERNAL"]);
    let key = created["key_metadata"]["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(created["key_metadata"]["key_state"], "PendingImport");
    let params = cli(&["get-parameters-for-import", &key]);
    let public_key = b64.decode(params["public_key"].as_str().unwrap()).unwrap();
    let wrapped = dir.path().join("wrapped.bin");
    std::fs::write(
        &wrapped,
        wrap(&public_key, "RSAES_OAEP_SHA_256", &random_key()),
    )
    .unwrap();
    cli(&[
        "import-key-material",
        &key,
        "--import-token",
        params["import_token"].as_str().unwrap(),
        "--encrypted-key-material-file",
        wrapped.to_str().unwrap(),
    ]);
    let described = cli(&["describe-key", &key]);
    assert_eq!(described["key_metadata"]["key_state"], "Enabled");
    assert_eq!(described["key_metadata"]["origin"], "EXTERNAL");
    cli(&["delete-imported-key-material", &key]);
    let described = cli(&["describe-key", &key]);
    assert_eq!(described["key_metadata"]["key_state"], "PendingImport");
}

#[test]
fn the_readmes_import_walkthrough_runs_as_written() {
    // The walkthrough runs the development default (SoftHSM, sled).
    if tpm_mode().is_some() || common::on_etcd() {
        return;
    }
    let (ok, stdout, stderr) = common::run_readme_section(
        "### Bring your own key",
        120,
        "--data-dir /tmp/keyward-byok/",
    );
    assert!(ok, "{stdout}\n{stderr}");
    let states: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("key_state: "))
        .collect();
    assert_eq!(
        states,
        ["PendingImport", "Enabled", "PendingImport"],
        "{stdout}"
    );
}
