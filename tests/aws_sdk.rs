//! The official AWS SDK for Rust (`aws-sdk-kms`, `aws-sdk-secretsmanager`) against a real
//! server's AWS endpoint, with only `endpoint_url` and static credentials set: every operation
//! the gRPC services have, and what one front door writes the other reads.

mod common;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use aws_sdk_secretsmanager::types::Tag;
use common::Server;
use common::secrets::{self, Sm};
use keyward::api::pb;

/// The AWS error code of a failed SDK call.
fn code(err: impl aws_sdk_kms::error::ProvideErrorMetadata) -> String {
    err.code().unwrap_or("none").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kms_operation_through_the_aws_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let kms = sdk_client!(aws_sdk_kms, server);

    // CreateKey, DescribeKey, ListKeys
    let created = kms
        .create_key()
        .description("sdk key")
        .send()
        .await
        .unwrap();
    let key = created.key_metadata().unwrap().key_id().to_owned();
    let described = kms.describe_key().key_id(&key).send().await.unwrap();
    let metadata = described.key_metadata().unwrap();
    assert_eq!(metadata.description(), Some("sdk key"));
    assert!(metadata.enabled());
    assert!(metadata.arn().unwrap().ends_with(&key));
    let listed = kms.list_keys().send().await.unwrap();
    assert!(
        listed
            .keys()
            .iter()
            .any(|k| k.key_id() == Some(key.as_str()))
    );

    // CreateAlias, ListAliases
    kms.create_alias()
        .alias_name("alias/sdk")
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    let aliases = kms.list_aliases().send().await.unwrap();
    assert!(aliases.aliases().iter().any(|a| a.alias_name() == Some("alias/sdk")
        && a.target_key_id() == Some(key.as_str())));

    // Encrypt, Decrypt (through the alias), ReEncrypt
    let blob = kms
        .encrypt()
        .key_id("alias/sdk")
        .plaintext(Blob::new(b"sdk plaintext".to_vec()))
        .encryption_context("purpose", "sdk")
        .send()
        .await
        .unwrap()
        .ciphertext_blob()
        .unwrap()
        .clone();
    let decrypted = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("purpose", "sdk")
        .send()
        .await
        .unwrap();
    assert_eq!(decrypted.plaintext().unwrap().as_ref(), b"sdk plaintext");
    assert_eq!(
        code(
            kms.decrypt()
                .ciphertext_blob(blob.clone())
                .encryption_context("purpose", "other")
                .send()
                .await
                .unwrap_err()
        ),
        "InvalidCiphertextException"
    );
    let second = kms.create_key().send().await.unwrap();
    let second = second.key_metadata().unwrap().key_id().to_owned();
    let re = kms
        .re_encrypt()
        .ciphertext_blob(blob)
        .source_encryption_context("purpose", "sdk")
        .destination_key_id(&second)
        .send()
        .await
        .unwrap();
    assert!(re.key_id().unwrap().ends_with(&second));

    // GenerateDataKey, GenerateDataKeyWithoutPlaintext; the gRPC API decrypts the SDK's blob.
    let data_key = kms
        .generate_data_key()
        .key_id(&key)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();
    assert_eq!(data_key.plaintext().unwrap().as_ref().len(), 32);
    let mut grpc = server.kms().await;
    let unwrapped = common::decrypt(&mut grpc, data_key.ciphertext_blob().unwrap().as_ref(), &[])
        .await
        .unwrap();
    assert_eq!(unwrapped, data_key.plaintext().unwrap().as_ref());
    let without = kms
        .generate_data_key_without_plaintext()
        .key_id(&key)
        .number_of_bytes(16)
        .send()
        .await
        .unwrap();
    assert!(without.ciphertext_blob().is_some());

    // GenerateRandom
    let random = kms
        .generate_random()
        .number_of_bytes(24)
        .send()
        .await
        .unwrap();
    assert_eq!(random.plaintext().unwrap().as_ref().len(), 24);

    // EnableKeyRotation, GetKeyRotationStatus, DisableKeyRotation, RotateKeyOnDemand,
    // ListKeyRotations
    kms.enable_key_rotation()
        .key_id(&key)
        .rotation_period_in_days(90)
        .send()
        .await
        .unwrap();
    let status = kms
        .get_key_rotation_status()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert!(status.key_rotation_enabled());
    assert_eq!(status.rotation_period_in_days(), Some(90));
    kms.disable_key_rotation()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert!(
        !kms.get_key_rotation_status()
            .key_id(&key)
            .send()
            .await
            .unwrap()
            .key_rotation_enabled()
    );
    kms.rotate_key_on_demand()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let rotations = kms.list_key_rotations().key_id(&key).send().await.unwrap();
    assert_eq!(rotations.rotations().len(), 1);

    // PutKeyPolicy, GetKeyPolicy
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"keyward:principal/admin"},"Action":"kms:*","Resource":"*"}]}"#;
    kms.put_key_policy()
        .key_id(&key)
        .policy_name("default")
        .policy(policy)
        .send()
        .await
        .unwrap();
    let stored = kms
        .get_key_policy()
        .key_id(&key)
        .policy_name("default")
        .send()
        .await
        .unwrap();
    assert_eq!(stored.policy(), Some(policy));

    // DisableKey, EnableKey
    kms.disable_key().key_id(&key).send().await.unwrap();
    assert_eq!(
        code(
            kms.encrypt()
                .key_id(&key)
                .plaintext(Blob::new(b"x".to_vec()))
                .send()
                .await
                .unwrap_err()
        ),
        "DisabledException"
    );
    kms.enable_key().key_id(&key).send().await.unwrap();

    // DeleteAlias, ScheduleKeyDeletion, CancelKeyDeletion
    kms.delete_alias()
        .alias_name("alias/sdk")
        .send()
        .await
        .unwrap();
    let scheduled = kms
        .schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert!(scheduled.deletion_date().is_some());
    assert_eq!(
        scheduled.key_state(),
        Some(&aws_sdk_kms::types::KeyState::PendingDeletion)
    );
    kms.cancel_key_deletion().key_id(&key).send().await.unwrap();
    assert_eq!(
        code(
            kms.describe_key()
                .key_id("alias/none")
                .send()
                .await
                .unwrap_err()
        ),
        "NotFoundException"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_secrets_manager_operation_through_the_aws_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let aws = sdk_client!(aws_sdk_secretsmanager, server);
    let mut grpc: Sm = secrets::client(&server).await;

    // CreateSecret (SDK) read by gRPC; gRPC's secret read by GetSecretValue (SDK).
    let created = aws
        .create_secret()
        .name("sdk/db")
        .secret_string("from-sdk")
        .tags(Tag::builder().key("team").value("billing").build())
        .send()
        .await
        .unwrap();
    let first = created.version_id().unwrap().to_owned();
    let read = grpc
        .get_secret_value(pb::GetSecretValueRequest {
            secret_id: "sdk/db".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.secret_string.as_deref(), Some("from-sdk"));
    secrets::create(&mut grpc, "grpc/db", Some("from-grpc")).await;
    let value = aws
        .get_secret_value()
        .secret_id("grpc/db")
        .send()
        .await
        .unwrap();
    assert_eq!(value.secret_string(), Some("from-grpc"));
    assert_eq!(value.version_stages(), ["AWSCURRENT"]);

    // PutSecretValue, ListSecretVersionIds, UpdateSecretVersionStage
    let second = aws
        .put_secret_value()
        .secret_id("sdk/db")
        .secret_string("second")
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned();
    let versions = aws
        .list_secret_version_ids()
        .secret_id("sdk/db")
        .send()
        .await
        .unwrap();
    assert_eq!(versions.versions().len(), 2);
    aws.update_secret_version_stage()
        .secret_id("sdk/db")
        .version_stage("AWSCURRENT")
        .move_to_version_id(&first)
        .remove_from_version_id(&second)
        .send()
        .await
        .unwrap();
    let current = aws
        .get_secret_value()
        .secret_id("sdk/db")
        .send()
        .await
        .unwrap();
    assert_eq!(current.secret_string(), Some("from-sdk"));

    // UpdateSecret, DescribeSecret (tags, stages), TagResource, UntagResource
    aws.update_secret()
        .secret_id("sdk/db")
        .description("described")
        .send()
        .await
        .unwrap();
    aws.tag_resource()
        .secret_id("sdk/db")
        .tags(Tag::builder().key("env").value("test").build())
        .send()
        .await
        .unwrap();
    aws.untag_resource()
        .secret_id("sdk/db")
        .tag_keys("team")
        .send()
        .await
        .unwrap();
    let described = aws
        .describe_secret()
        .secret_id("sdk/db")
        .send()
        .await
        .unwrap();
    assert_eq!(described.description(), Some("described"));
    let tags: Vec<_> = described
        .tags()
        .iter()
        .map(|t| t.key().unwrap_or(""))
        .collect();
    assert_eq!(tags, ["env"]);
    let stages = described.version_ids_to_stages().unwrap();
    assert_eq!(stages[&first], ["AWSCURRENT"]);
    assert_eq!(stages[&second], ["AWSPREVIOUS"]);

    // ListSecrets, BatchGetSecretValue
    let listed = aws.list_secrets().send().await.unwrap();
    let mut names: Vec<_> = listed
        .secret_list()
        .iter()
        .filter_map(|s| s.name())
        .collect();
    names.sort();
    assert_eq!(names, ["grpc/db", "sdk/db"]);
    let batch = aws
        .batch_get_secret_value()
        .secret_id_list("sdk/db")
        .secret_id_list("grpc/db")
        .send()
        .await
        .unwrap();
    assert_eq!(batch.secret_values().len(), 2);

    // GetRandomPassword
    let password = aws
        .get_random_password()
        .password_length(24)
        .exclude_punctuation(true)
        .send()
        .await
        .unwrap();
    let password = password.random_password().unwrap();
    assert_eq!(password.len(), 24);
    assert!(
        password.chars().all(|c| c.is_ascii_alphanumeric()),
        "{password}"
    );

    // Resource policies
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"keyward:principal/admin"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;
    let validated = aws
        .validate_resource_policy()
        .resource_policy(policy)
        .send()
        .await
        .unwrap();
    assert!(validated.policy_validation_passed());
    aws.put_resource_policy()
        .secret_id("sdk/db")
        .resource_policy(policy)
        .send()
        .await
        .unwrap();
    let stored = aws
        .get_resource_policy()
        .secret_id("sdk/db")
        .send()
        .await
        .unwrap();
    assert_eq!(stored.resource_policy(), Some(policy));
    aws.delete_resource_policy()
        .secret_id("sdk/db")
        .send()
        .await
        .unwrap();
    let stored = aws
        .get_resource_policy()
        .secret_id("sdk/db")
        .send()
        .await
        .unwrap();
    assert_eq!(stored.resource_policy(), None);

    // RotateSecret, CancelRotateSecret: the rotator is set through gRPC (AWS names a Lambda).
    common::rotation::rotate(
        &mut grpc,
        "grpc/db",
        &secrets::token("first-rotation"),
        Some(common::rotation::generated("")),
        None,
    )
    .await
    .unwrap();
    common::rotation::wait_rotated(&mut grpc, "grpc/db", &secrets::token("first-rotation")).await;
    let rotated = aws
        .rotate_secret()
        .secret_id("grpc/db")
        .send()
        .await
        .unwrap();
    let pending = rotated.version_id().unwrap().to_owned();
    common::rotation::wait_rotated(&mut grpc, "grpc/db", &pending).await;
    aws.cancel_rotate_secret()
        .secret_id("grpc/db")
        .send()
        .await
        .unwrap();
    let described = aws
        .describe_secret()
        .secret_id("grpc/db")
        .send()
        .await
        .unwrap();
    assert_eq!(described.rotation_enabled(), Some(false));

    // DeleteSecret, RestoreSecret, and an error by its AWS name.
    let deleted = aws
        .delete_secret()
        .secret_id("sdk/db")
        .recovery_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert!(deleted.deletion_date().is_some());
    aws.restore_secret()
        .secret_id("sdk/db")
        .send()
        .await
        .unwrap();
    let missing = aws
        .get_secret_value()
        .secret_id("sdk/none")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(missing.is_resource_not_found_exception(), "{missing:?}");
}
