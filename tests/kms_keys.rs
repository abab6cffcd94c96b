//! Key lifecycle over gRPC against a real server on SoftHSM: create, describe, list, enable,
//! disable, scheduled deletion, aliases, rotation, and bad input.

mod common;

use common::*;
use keyward::api::pb;
use tonic::Code;

#[tokio::test]
async fn create_describe_and_list_with_pagination() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut kms = server.kms().await;

    let created = kms
        .create_key(pb::CreateKeyRequest {
            description: "orders database".into(),
            tags: vec![pb::Tag {
                tag_key: "team".into(),
                tag_value: "payments".into(),
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    assert_eq!(created.key_state, "Enabled");
    assert!(created.enabled);
    match tpm_mode() {
        None => assert_eq!(created.origin, "PKCS11"),
        Some(mode) => {
            assert_eq!(created.origin, "TPM");
            assert_eq!(created.tpm_key_mode, mode);
            assert!(created.tpm_pcrs.is_empty());
        }
    }
    assert_eq!(created.current_key_version, 1);
    assert_eq!(
        created.arn,
        format!("arn:keyward:kms:local:000000000000:key/{}", created.key_id)
    );
    assert_eq!(created.tags.len(), 1);

    // Every form of key reference names the same key.
    kms.create_alias(pb::CreateAliasRequest {
        alias_name: "alias/orders".into(),
        target_key_id: created.key_id.clone(),
    })
    .await
    .unwrap();
    for name in [
        created.key_id.clone(),
        created.arn.clone(),
        "alias/orders".to_string(),
        "arn:keyward:kms:local:000000000000:alias/orders".to_string(),
    ] {
        let described = describe(&mut kms, &name).await;
        assert_eq!(described.key_id, created.key_id, "{name}");
        assert_eq!(described.description, "orders database");
    }

    create_key(&mut kms, "second").await;
    create_key(&mut kms, "third").await;
    let mut seen = Vec::new();
    let mut marker = String::new();
    let mut pages = 0;
    loop {
        let page = kms
            .list_keys(pb::ListKeysRequest {
                limit: Some(2),
                marker: marker.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.keys.len() <= 2);
        seen.extend(page.keys.into_iter().map(|k| k.key_id));
        if !page.truncated {
            assert!(page.next_marker.is_empty());
            break;
        }
        marker = page.next_marker;
    }
    // Three keys of ours and the secrets service's default key.
    assert_eq!(pages, 2);
    assert_eq!(seen.len(), 4);
    assert!(seen.contains(&created.key_id));
}

#[tokio::test]
async fn disabled_keys_refuse_use_until_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut kms = server.kms().await;
    let key = create_key(&mut kms, "k").await;
    let blob = encrypt(&mut kms, &key.key_id, b"payload", &[]).await;

    kms.disable_key(pb::DisableKeyRequest {
        key_id: key.key_id.clone(),
    })
    .await
    .unwrap();
    let described = describe(&mut kms, &key.key_id).await;
    assert_eq!(
        (described.key_state.as_str(), described.enabled),
        ("Disabled", false)
    );

    let err = kms
        .generate_data_key(pb::GenerateDataKeyRequest {
            key_id: key.key_id.clone(),
            key_spec: "AES_256".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "DisabledException");
    let err = decrypt(&mut kms, &blob, &[]).await.unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "DisabledException");
    let err = kms
        .rotate_key_on_demand(pb::RotateKeyOnDemandRequest {
            key_id: key.key_id.clone(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "DisabledException");

    kms.enable_key(pb::EnableKeyRequest {
        key_id: key.key_id.clone(),
    })
    .await
    .unwrap();
    assert_eq!(decrypt(&mut kms, &blob, &[]).await.unwrap(), b"payload");
}

#[tokio::test]
async fn scheduled_deletion_refuses_use_and_cancel_restores_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut kms = server.kms().await;
    let key = create_key(&mut kms, "k").await;
    let blob = encrypt(&mut kms, &key.key_id, b"payload", &[]).await;

    for bad in [6, 31] {
        let err = kms
            .schedule_key_deletion(pb::ScheduleKeyDeletionRequest {
                key_id: key.key_id.clone(),
                pending_window_in_days: Some(bad),
            })
            .await
            .unwrap_err();
        assert_error(&err, Code::InvalidArgument, "ValidationException");
        assert!(
            err.message().contains("pending_window_in_days"),
            "{}",
            err.message()
        );
    }

    let scheduled = kms
        .schedule_key_deletion(pb::ScheduleKeyDeletionRequest {
            key_id: key.key_id.clone(),
            pending_window_in_days: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scheduled.key_state, "PendingDeletion");
    assert_eq!(scheduled.pending_window_in_days, 30);
    let described = describe(&mut kms, &key.key_id).await;
    assert_eq!(described.deletion_date, Some(scheduled.deletion_date));
    // Thirty days after scheduling, which happened within seconds of creation.
    let window = scheduled.deletion_date - described.creation_date - 30 * 86_400;
    assert!((0..=5).contains(&window), "{window}");

    let err = decrypt(&mut kms, &blob, &[]).await.unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "KMSInvalidStateException");
    let err = kms
        .encrypt(pb::EncryptRequest {
            key_id: key.key_id.clone(),
            plaintext: b"x".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "KMSInvalidStateException");
    let err = kms
        .enable_key(pb::EnableKeyRequest {
            key_id: key.key_id.clone(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "KMSInvalidStateException");
    let err = kms
        .schedule_key_deletion(pb::ScheduleKeyDeletionRequest {
            key_id: key.key_id.clone(),
            pending_window_in_days: Some(7),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "KMSInvalidStateException");

    kms.cancel_key_deletion(pb::CancelKeyDeletionRequest {
        key_id: key.key_id.clone(),
    })
    .await
    .unwrap();
    let described = describe(&mut kms, &key.key_id).await;
    assert_eq!(described.key_state, "Disabled");
    assert_eq!(described.deletion_date, None);
    let err = kms
        .cancel_key_deletion(pb::CancelKeyDeletionRequest {
            key_id: key.key_id.clone(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "KMSInvalidStateException");

    kms.enable_key(pb::EnableKeyRequest {
        key_id: key.key_id.clone(),
    })
    .await
    .unwrap();
    assert_eq!(decrypt(&mut kms, &blob, &[]).await.unwrap(), b"payload");
}

#[tokio::test]
async fn aliases_are_created_listed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut kms = server.kms().await;
    let a = create_key(&mut kms, "a").await;
    let b = create_key(&mut kms, "b").await;

    for (alias, target) in [
        ("alias/app/one", &a),
        ("alias/app/two", &a),
        ("alias/other", &b),
    ] {
        kms.create_alias(pb::CreateAliasRequest {
            alias_name: alias.into(),
            target_key_id: target.arn.clone(),
        })
        .await
        .unwrap();
    }

    let err = kms
        .create_alias(pb::CreateAliasRequest {
            alias_name: "alias/other".into(),
            target_key_id: a.key_id.clone(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::AlreadyExists, "AlreadyExistsException");
    for bad in ["other", "alias/", "alias/white space", "alias/aws/reserved"] {
        let err = kms
            .create_alias(pb::CreateAliasRequest {
                alias_name: bad.into(),
                target_key_id: a.key_id.clone(),
            })
            .await
            .unwrap_err();
        assert_error(&err, Code::InvalidArgument, "InvalidAliasNameException");
    }
    let err = kms
        .create_alias(pb::CreateAliasRequest {
            alias_name: "alias/chained".into(),
            target_key_id: "alias/other".into(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "ValidationException");

    let all = kms
        .list_aliases(pb::ListAliasesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = all.aliases.iter().map(|a| a.alias_name.as_str()).collect();
    // The secrets service's default key has the third.
    assert_eq!(
        names,
        [
            "alias/app/one",
            "alias/app/two",
            "alias/keyward/secretsmanager",
            "alias/other"
        ]
    );
    assert_eq!(all.aliases[3].target_key_id, b.key_id);
    assert_eq!(
        all.aliases[3].alias_arn,
        "arn:keyward:kms:local:000000000000:alias/other"
    );

    let of_a = kms
        .list_aliases(pb::ListAliasesRequest {
            key_id: a.key_id.clone(),
            limit: Some(1),
            marker: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(of_a.aliases.len(), 1);
    assert!(of_a.truncated);
    let rest = kms
        .list_aliases(pb::ListAliasesRequest {
            key_id: a.key_id.clone(),
            limit: Some(1),
            marker: of_a.next_marker,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.aliases[0].alias_name, "alias/app/two");
    assert!(!rest.truncated);

    kms.delete_alias(pb::DeleteAliasRequest {
        alias_name: "alias/app/one".into(),
    })
    .await
    .unwrap();
    let err = kms
        .describe_key(pb::DescribeKeyRequest {
            key_id: "alias/app/one".into(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::NotFound, "NotFoundException");
    let err = kms
        .delete_alias(pb::DeleteAliasRequest {
            alias_name: "alias/app/one".into(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::NotFound, "NotFoundException");
}

#[tokio::test]
async fn rotation_keeps_old_blobs_and_new_blobs_use_the_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut kms = server.kms().await;
    let key = create_key(&mut kms, "rotating").await;

    let mut blobs = vec![encrypt(&mut kms, &key.key_id, b"v1", &[("n", "1")]).await];
    for expected_version in [2u32, 3] {
        let rotated = kms
            .rotate_key_on_demand(pb::RotateKeyOnDemandRequest {
                key_id: key.arn.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(rotated.key_version, expected_version);
        let blob = encrypt(&mut kms, &key.key_id, b"later", &[("n", "1")]).await;
        // Bytes 17..21 of the envelope hold the key version.
        assert_eq!(&blob[17..21], &expected_version.to_be_bytes());
        blobs.push(blob);
    }
    assert_eq!(&blobs[0][17..21], &1u32.to_be_bytes());
    for (i, blob) in blobs.iter().enumerate() {
        let expected: &[u8] = if i == 0 { b"v1" } else { b"later" };
        assert_eq!(
            decrypt(&mut kms, blob, &[("n", "1")]).await.unwrap(),
            expected
        );
    }

    let rotations = kms
        .list_key_rotations(pb::ListKeyRotationsRequest {
            key_id: key.key_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let versions: Vec<_> = rotations
        .rotations
        .iter()
        .map(|r| (r.key_version, r.rotation_type.as_str()))
        .collect();
    assert_eq!(versions, [(2, "ON_DEMAND"), (3, "ON_DEMAND")]);
    let first_page = kms
        .list_key_rotations(pb::ListKeyRotationsRequest {
            key_id: key.key_id.clone(),
            limit: Some(1),
            marker: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(first_page.truncated);
    assert_eq!(first_page.rotations[0].key_version, 2);

    let described = describe(&mut kms, &key.key_id).await;
    assert_eq!(described.current_key_version, 3);
    assert!(described.last_rotation_date.is_some());
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut kms = server.kms().await;
    let key = create_key(&mut kms, "k").await;

    let err = kms
        .describe_key(pb::DescribeKeyRequest {
            key_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "ValidationException");
    assert!(err.message().starts_with("key_id:"), "{}", err.message());

    let err = kms
        .describe_key(pb::DescribeKeyRequest {
            key_id: "no such key".into(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "ValidationException");

    let unknown = "7c1c9a2e-3f2a-4f5e-9b7d-0e7b6a1d2c3b";
    let err = kms
        .describe_key(pb::DescribeKeyRequest {
            key_id: unknown.into(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::NotFound, "NotFoundException");
    assert!(err.message().contains(unknown));

    let err = kms
        .describe_key(pb::DescribeKeyRequest {
            key_id: "alias/bad name".into(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "InvalidAliasNameException");

    for (spec, bytes, field) in [
        ("", None, "key_spec"),
        ("", Some(0), "number_of_bytes"),
        ("", Some(1025), "number_of_bytes"),
        ("AES_512", None, "key_spec"),
        ("AES_256", Some(32), "key_spec"),
    ] {
        let err = kms
            .generate_data_key(pb::GenerateDataKeyRequest {
                key_id: key.key_id.clone(),
                key_spec: spec.into(),
                number_of_bytes: bytes,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_error(&err, Code::InvalidArgument, "ValidationException");
        assert!(
            err.message().starts_with(field),
            "{field}: {}",
            err.message()
        );
    }

    for size in [0, 4097] {
        let err = kms
            .encrypt(pb::EncryptRequest {
                key_id: key.key_id.clone(),
                plaintext: vec![1; size],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_error(&err, Code::InvalidArgument, "ValidationException");
        assert!(err.message().starts_with("plaintext"), "{}", err.message());
    }

    let err = kms
        .encrypt(pb::EncryptRequest {
            key_id: key.key_id.clone(),
            plaintext: b"x".to_vec(),
            encryption_context: context(&[("", "empty key")]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "ValidationException");
    assert!(
        err.message().starts_with("encryption_context"),
        "{}",
        err.message()
    );

    for n in [0, 1025] {
        let err = kms
            .generate_random(pb::GenerateRandomRequest { number_of_bytes: n })
            .await
            .unwrap_err();
        assert_error(&err, Code::InvalidArgument, "ValidationException");
    }

    let err = kms
        .list_keys(pb::ListKeysRequest {
            limit: Some(0),
            marker: String::new(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "ValidationException");
    let err = kms
        .list_keys(pb::ListKeysRequest {
            limit: None,
            marker: "not-a-marker".into(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "InvalidMarkerException");

    let err = kms
        .create_key(pb::CreateKeyRequest {
            key_spec: "RSA_2048".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "ValidationException");
}
