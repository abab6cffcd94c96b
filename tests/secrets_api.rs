//! The rest of the secrets API: describe, listing filters and pages, tags, batch reads,
//! passwords, binary values, and the KMS key behind a secret.

mod common;

use common::secrets::*;
use common::*;
use keyward::api::pb;
use tonic::Code;

fn filter(key: &str, values: &[&str]) -> pb::Filter {
    pb::Filter {
        key: key.into(),
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

/// Names in listing order.
async fn list_names(sm: &mut Sm, request: pb::ListSecretsRequest) -> Vec<String> {
    sm.list_secrets(request)
        .await
        .unwrap()
        .into_inner()
        .secret_list
        .into_iter()
        .map(|s| s.name)
        .collect()
}

/// Names, sorted: for filter results, whose order is tested separately.
async fn matching(sm: &mut Sm, filters: Vec<pb::Filter>) -> Vec<String> {
    let mut names = list_names(
        sm,
        pb::ListSecretsRequest {
            filters,
            ..Default::default()
        },
    )
    .await;
    names.sort();
    names
}

#[tokio::test]
async fn list_secrets_filters_sorts_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    for (name, description, tag) in [
        ("prod/db", "orders database", ("team", "payments")),
        ("prod/api", "public api key", ("team", "web")),
        ("dev/db", "scratch database", ("owner", "alice")),
    ] {
        sm.create_secret(pb::CreateSecretRequest {
            name: name.into(),
            description: description.into(),
            secret_string: Some("x".into()),
            tags: vec![pb::SecretTag {
                key: tag.0.into(),
                value: tag.1.into(),
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    assert_eq!(
        matching(&mut sm, vec![filter("name", &["prod/"])]).await,
        ["prod/api", "prod/db"]
    );
    assert_eq!(
        matching(&mut sm, vec![filter("name", &["!prod/"])]).await,
        ["dev/db"]
    );
    assert_eq!(
        matching(&mut sm, vec![filter("description", &["scratch", "public"])]).await,
        ["dev/db", "prod/api"]
    );
    assert_eq!(
        matching(&mut sm, vec![filter("tag-key", &["team"])]).await,
        ["prod/api", "prod/db"]
    );
    assert_eq!(
        matching(&mut sm, vec![filter("tag-value", &["ali"])]).await,
        ["dev/db"]
    );
    assert_eq!(
        matching(&mut sm, vec![filter("all", &["orders"])]).await,
        ["prod/db"]
    );
    assert_eq!(
        matching(
            &mut sm,
            vec![filter("name", &["prod/"]), filter("tag-value", &["web"])]
        )
        .await,
        ["prod/api"],
        "filters combine with AND"
    );
    let err = sm
        .list_secrets(pb::ListSecretsRequest {
            filters: vec![filter("owner", &["x"])],
            ..Default::default()
        })
        .await
        .unwrap_err();
    // AWS validates filter keys before the operation: ValidationException.
    assert_error(&err, Code::InvalidArgument, "ValidationException");

    // Ascending by creation date (ties by name); descending is its reverse.
    let asc = sm
        .list_secrets(pb::ListSecretsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .secret_list;
    let keys: Vec<_> = asc
        .iter()
        .map(|s| (s.created_date, s.name.clone()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    let mut desc = list_names(
        &mut sm,
        pb::ListSecretsRequest {
            sort_order: "desc".into(),
            ..Default::default()
        },
    )
    .await;
    desc.reverse();
    assert_eq!(
        desc,
        keys.iter().map(|(_, n)| n.clone()).collect::<Vec<_>>()
    );

    let mut pages = Vec::new();
    let mut next = String::new();
    loop {
        let page = sm
            .list_secrets(pb::ListSecretsRequest {
                max_results: Some(2),
                next_token: next.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages.push(
            page.secret_list
                .into_iter()
                .map(|s| s.name)
                .collect::<Vec<_>>(),
        );
        if page.next_token.is_empty() {
            break;
        }
        next = page.next_token;
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(
        pages.concat(),
        keys.iter().map(|(_, n)| n.clone()).collect::<Vec<_>>()
    );
    let err = sm
        .list_secrets(pb::ListSecretsRequest {
            next_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "InvalidParameterException");
}

#[tokio::test]
async fn describe_tags_and_binary_values() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    let created = sm
        .create_secret(pb::CreateSecretRequest {
            name: "bin".into(),
            description: "a certificate".into(),
            secret_binary: Some(vec![0, 159, 146, 150, 255]),
            tags: vec![pb::SecretTag {
                key: "env".into(),
                value: "prod".into(),
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        created
            .arn
            .starts_with("arn:keyward:secretsmanager:local:000000000000:secret:bin-")
    );
    assert_eq!(
        created.arn.len(),
        "arn:keyward:secretsmanager:local:000000000000:secret:bin-".len() + 6
    );

    let got = get(&mut sm, "bin", "", "").await.unwrap();
    assert_eq!(
        got.secret_binary.as_deref(),
        Some(&[0u8, 159, 146, 150, 255][..])
    );
    assert_eq!(got.secret_string, None);

    sm.tag_resource(pb::TagResourceRequest {
        secret_id: created.arn.clone(),
        tags: vec![
            pb::SecretTag {
                key: "env".into(),
                value: "staging".into(),
            },
            pb::SecretTag {
                key: "team".into(),
                value: "pki".into(),
            },
        ],
    })
    .await
    .unwrap();
    sm.untag_resource(pb::UntagResourceRequest {
        secret_id: "bin".into(),
        tag_keys: vec!["team".into(), "absent".into()],
    })
    .await
    .unwrap();
    let described = sm
        .describe_secret(pb::DescribeSecretRequest {
            secret_id: "bin".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.arn, created.arn);
    assert_eq!(described.description, "a certificate");
    let tags: Vec<_> = described
        .tags
        .iter()
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect();
    assert_eq!(tags, [("env", "staging")]);
    assert!(!described.rotation_enabled);
    // The start of the day (UTC) of the read: the day of creation, or the next if the test
    // straddled midnight.
    let day = described.created_date - described.created_date.rem_euclid(86_400);
    let accessed = described.last_accessed_date.unwrap();
    assert!(accessed == day || accessed == day + 86_400, "{accessed}");
    assert!(described.last_changed_date.unwrap() >= described.created_date);
    assert_eq!(described.deleted_date, None);
    assert_eq!(described.version_ids_to_stages.len(), 1);

    let err = sm
        .describe_secret(pb::DescribeSecretRequest {
            secret_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::NotFound, "ResourceNotFoundException");
}

#[tokio::test]
async fn batch_get_reports_errors_per_secret_and_pages_by_filter() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    for i in 0..3 {
        create(&mut sm, &format!("batch/{i}"), Some(&format!("value {i}"))).await;
    }
    create(&mut sm, "empty", None).await;
    let batch = sm
        .batch_get_secret_value(pb::BatchGetSecretValueRequest {
            secret_id_list: vec![
                "batch/0".into(),
                "missing".into(),
                "empty".into(),
                "batch/2".into(),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let values: Vec<_> = batch
        .secret_values
        .iter()
        .map(|v| v.secret_string.clone().unwrap())
        .collect();
    assert_eq!(values, ["value 0", "value 2"]);
    let errors: Vec<_> = batch
        .errors
        .iter()
        .map(|e| (e.secret_id.as_str(), e.error_code.as_str()))
        .collect();
    assert_eq!(
        errors,
        [
            ("missing", "ResourceNotFoundException"),
            ("empty", "ResourceNotFoundException")
        ]
    );

    let first = sm
        .batch_get_secret_value(pb::BatchGetSecretValueRequest {
            filters: vec![filter("name", &["batch/"])],
            max_results: Some(2),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.secret_values.len(), 2);
    assert!(!first.next_token.is_empty());
    let rest = sm
        .batch_get_secret_value(pb::BatchGetSecretValueRequest {
            filters: vec![filter("name", &["batch/"])],
            max_results: Some(2),
            next_token: first.next_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.secret_values.len(), 1);
    assert_eq!(rest.secret_values[0].name, "batch/2");
    assert!(rest.next_token.is_empty());
}

#[tokio::test]
async fn random_passwords_follow_their_options() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let sm = client(&server).await;
    let password = |request: pb::GetRandomPasswordRequest| {
        let mut sm = sm.clone();
        async move {
            sm.get_random_password(request)
                .await
                .map(|r| r.into_inner().random_password)
        }
    };
    let default = password(pb::GetRandomPasswordRequest::default())
        .await
        .unwrap();
    assert_eq!(default.len(), 32);
    for class in [
        |c: char| c.is_ascii_lowercase(),
        |c: char| c.is_ascii_uppercase(),
        |c: char| c.is_ascii_digit(),
        |c: char| c.is_ascii_punctuation(),
    ] {
        assert!(
            default.chars().any(class),
            "every type by default: {default}"
        );
    }
    assert_ne!(
        default,
        password(pb::GetRandomPasswordRequest::default())
            .await
            .unwrap()
    );

    let digits = password(pb::GetRandomPasswordRequest {
        password_length: Some(64),
        exclude_lowercase: true,
        exclude_uppercase: true,
        exclude_punctuation: true,
        exclude_characters: "0123".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(digits.len(), 64);
    assert!(digits.chars().all(|c| ('4'..='9').contains(&c)), "{digits}");

    let spaced = password(pb::GetRandomPasswordRequest {
        password_length: Some(200),
        include_space: true,
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(spaced.contains(' '));

    let err = password(pb::GetRandomPasswordRequest {
        exclude_lowercase: true,
        exclude_uppercase: true,
        exclude_numbers: true,
        exclude_punctuation: true,
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "InvalidParameterException");
    let err = password(pb::GetRandomPasswordRequest {
        password_length: Some(3),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "InvalidParameterException");
}

#[tokio::test]
async fn the_kms_key_behind_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    let mut kms = server.kms().await;
    let own = create_key(&mut kms, "for secrets").await;
    let other = create_key(&mut kms, "re-key target").await;

    sm.create_secret(pb::CreateSecretRequest {
        name: "keyed".into(),
        kms_key_id: own.key_id.clone(),
        secret_string: Some("v1".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    put(&mut sm, "keyed", "", "v2", &[]).await.unwrap();
    let versions = sm
        .list_secret_version_ids(pb::ListSecretVersionIdsRequest {
            secret_id: "keyed".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert!(versions.iter().all(|v| v.kms_key_ids == [own.arn.clone()]));

    // A disabled key: reads fail with DecryptionFailure (even with the data key cached by the
    // read just before), writes with EncryptionFailure.
    assert_eq!(value(&mut sm, "keyed", "").await, "v2");
    kms.disable_key(pb::DisableKeyRequest {
        key_id: own.key_id.clone(),
    })
    .await
    .unwrap();
    let err = get(&mut sm, "keyed", "", "").await.unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "DecryptionFailure");
    let err = put(&mut sm, "keyed", "", "v3", &[]).await.unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "EncryptionFailure");
    kms.enable_key(pb::EnableKeyRequest {
        key_id: own.key_id.clone(),
    })
    .await
    .unwrap();

    // Re-keying moves the labelled versions to the new key; the old key can then go.
    sm.update_secret(pb::UpdateSecretRequest {
        secret_id: "keyed".into(),
        kms_key_id: Some(other.arn.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    kms.disable_key(pb::DisableKeyRequest {
        key_id: own.key_id.clone(),
    })
    .await
    .unwrap();
    assert_eq!(value(&mut sm, "keyed", "AWSCURRENT").await, "v2");
    assert_eq!(value(&mut sm, "keyed", "AWSPREVIOUS").await, "v1");
    put(&mut sm, "keyed", "", "v3", &[]).await.unwrap();
    let described = sm
        .describe_secret(pb::DescribeSecretRequest {
            secret_id: "keyed".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.kms_key_id, other.arn);

    // Unknown keys are refused at create.
    let err = sm
        .create_secret(pb::CreateSecretRequest {
            name: "nokey".into(),
            kms_key_id: "alias/none".into(),
            secret_string: Some("x".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "EncryptionFailure");

    // Secrets without a key use the default one, created at first start.
    create(&mut sm, "default", Some("d")).await;
    let default_key = kms
        .describe_key(pb::DescribeKeyRequest {
            key_id: "alias/keyward/secretsmanager".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    let listed = sm
        .list_secret_version_ids(pb::ListSecretVersionIdsRequest {
            secret_id: "default".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.versions[0].kms_key_ids, [default_key.arn]);
}
