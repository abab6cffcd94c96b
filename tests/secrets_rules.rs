//! Rules Idempotency 1-4 and Deletion 1-3 (`service::secrets`), and the size and character
//! limits (`service::secrets::limits`) at each boundary and one past it.

mod common;

use common::secrets::*;
use common::*;
use keyward::api::pb;
use tonic::Code;

#[tokio::test]
async fn idempotency_1_the_token_becomes_the_version_id_or_one_is_generated() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    create(&mut sm, "i1", Some("v1")).await;
    let with_token = put(&mut sm, "i1", &token("t"), "v2", &[]).await.unwrap();
    assert_eq!(with_token.version_id, token("t"));
    let generated = put(&mut sm, "i1", "", "v3", &[]).await.unwrap();
    assert!(
        uuid::Uuid::parse_str(&generated.version_id).is_ok(),
        "{}",
        generated.version_id
    );
}

#[tokio::test]
async fn idempotency_2_and_3_a_reused_token_succeeds_only_with_the_same_value() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    try_create(&mut sm, "i2", Some("v1"), &token("a"))
        .await
        .unwrap();
    put(&mut sm, "i2", &token("b"), "v2", &[]).await.unwrap();
    let before = stages(&mut sm, "i2").await;

    let again = put(&mut sm, "i2", &token("b"), "v2", &[]).await.unwrap();
    assert_eq!(again.version_id, token("b"));
    assert_eq!(
        stages(&mut sm, "i2").await,
        before,
        "no new version, no label moved"
    );

    let err = put(&mut sm, "i2", &token("b"), "different", &[])
        .await
        .unwrap_err();
    assert_error(&err, Code::AlreadyExists, "ResourceExistsException");
    // The same bytes as binary are a different value.
    let err = sm
        .put_secret_value(pb::PutSecretValueRequest {
            secret_id: "i2".into(),
            client_request_token: token("b"),
            secret_binary: Some(b"v2".to_vec()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::AlreadyExists, "ResourceExistsException");
    assert_eq!(stages(&mut sm, "i2").await, before);
    assert_eq!(value(&mut sm, "i2", "").await, "v2");
}

#[tokio::test]
async fn idempotency_4_a_retried_create_succeeds_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    let first = try_create(&mut sm, "i4", Some("v1"), &token("a"))
        .await
        .unwrap();
    let retried = try_create(&mut sm, "i4", Some("v1"), &token("a"))
        .await
        .unwrap();
    assert_eq!(retried.arn, first.arn);
    assert_eq!(retried.version_id, first.version_id);
    assert_eq!(
        stages(&mut sm, "i4").await,
        expect(&[(&token("a"), &["AWSCURRENT"])])
    );

    for (value, tok) in [
        (Some("other"), token("a")),
        (Some("v1"), token("b")),
        (None, String::new()),
    ] {
        let err = try_create(&mut sm, "i4", value, &tok).await.unwrap_err();
        assert_error(&err, Code::AlreadyExists, "ResourceExistsException");
    }
}

#[tokio::test]
async fn deletion_1_to_3_schedule_refuse_hide_and_restore() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    create(&mut sm, "doomed", Some("v1")).await;
    create(&mut sm, "kept", Some("k")).await;

    let err = sm
        .delete_secret(pb::DeleteSecretRequest {
            secret_id: "doomed".into(),
            recovery_window_in_days: Some(7),
            force_delete_without_recovery: true,
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "InvalidParameterException");
    for days in [6, 31] {
        let err = sm
            .delete_secret(pb::DeleteSecretRequest {
                secret_id: "doomed".into(),
                recovery_window_in_days: Some(days),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_error(&err, Code::InvalidArgument, "InvalidParameterException");
    }

    let deleted = sm
        .delete_secret(pb::DeleteSecretRequest {
            secret_id: "doomed".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let described = sm
        .describe_secret(pb::DescribeSecretRequest {
            secret_id: "doomed".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.deleted_date, Some(deleted.deletion_date));
    // Thirty days after the request, which came within seconds of creation.
    let window = deleted.deletion_date - described.created_date - 30 * 86_400;
    assert!((0..=5).contains(&window), "{window}");

    // Deletion 2: reads, writes refused; hidden from listings; the name is taken.
    let err = get(&mut sm, "doomed", "", "").await.unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "InvalidRequestException");
    assert!(
        err.message().contains("marked for deletion"),
        "{}",
        err.message()
    );
    let err = put(&mut sm, "doomed", "", "v2", &[]).await.unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "InvalidRequestException");
    let err = move_stage(
        &mut sm,
        "doomed",
        "blue",
        &described
            .version_ids_to_stages
            .keys()
            .next()
            .unwrap()
            .clone(),
        "",
    )
    .await
    .unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "InvalidRequestException");
    let err = try_create(&mut sm, "doomed", Some("new"), "")
        .await
        .unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "InvalidRequestException");
    let names = |list: pb::ListSecretsResponse| {
        list.secret_list
            .into_iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
    };
    let visible = sm
        .list_secrets(pb::ListSecretsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(visible), ["kept"]);
    let all = sm
        .list_secrets(pb::ListSecretsRequest {
            include_planned_deletion: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(all), ["doomed", "kept"]);

    // Deletion 3: restore.
    sm.restore_secret(pb::RestoreSecretRequest {
        secret_id: "doomed".into(),
    })
    .await
    .unwrap();
    assert_eq!(value(&mut sm, "doomed", "").await, "v1");
    let err = sm
        .restore_secret(pb::RestoreSecretRequest {
            secret_id: "doomed".into(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "InvalidRequestException");

    // Forced: gone at once, and the name can be used again under a new ARN.
    let old_arn = described.arn;
    sm.delete_secret(pb::DeleteSecretRequest {
        secret_id: "doomed".into(),
        force_delete_without_recovery: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let err = get(&mut sm, "doomed", "", "").await.unwrap_err();
    assert_error(&err, Code::NotFound, "ResourceNotFoundException");
    let recreated = create(&mut sm, "doomed", Some("reborn")).await;
    assert_ne!(recreated.arn, old_arn);
    let err = get(&mut sm, &old_arn, "", "").await.unwrap_err();
    assert_error(&err, Code::NotFound, "ResourceNotFoundException");
}

#[tokio::test]
async fn limits_at_their_boundary_and_one_past() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    let invalid = |err: &tonic::Status, field: &str| {
        assert_error(err, Code::InvalidArgument, "InvalidParameterException");
        assert!(
            err.message().starts_with(field),
            "{field}: {}",
            err.message()
        );
    };

    // Names: 512 characters, allowed characters, no ARN-like suffix.
    create(&mut sm, &"n".repeat(512), Some("x")).await;
    invalid(
        &try_create(&mut sm, &"n".repeat(513), Some("x"), "")
            .await
            .unwrap_err(),
        "name",
    );
    invalid(
        &try_create(&mut sm, "", Some("x"), "").await.unwrap_err(),
        "name",
    );
    invalid(
        &try_create(&mut sm, "bad name", Some("x"), "")
            .await
            .unwrap_err(),
        "name",
    );
    // A hyphen and six characters at the end: AWS allows it (it only advises against it).
    create(&mut sm, "app-abcdef", Some("x")).await;
    create(&mut sm, "all/_+=.@-chars", Some("x")).await;

    // Values: 1 to 65,536 bytes, exactly one of string and binary.
    create(&mut sm, "v", Some(&"x".repeat(65_536))).await;
    assert_eq!(value(&mut sm, "v", "").await.len(), 65_536);
    invalid(
        &put(&mut sm, "v", "", &"x".repeat(65_537), &[])
            .await
            .unwrap_err(),
        "secret_string",
    );
    // An empty value (neither value, or both: InvalidRequestException, tests/aws_conformance).
    invalid(
        &put(&mut sm, "v", "", "", &[]).await.unwrap_err(),
        "secret_string",
    );
    let err = sm
        .put_secret_value(pb::PutSecretValueRequest {
            secret_id: "v".into(),
            secret_binary: Some(vec![0; 65_537]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    invalid(&err, "secret_binary");
    let err = sm
        .put_secret_value(pb::PutSecretValueRequest {
            secret_id: "v".into(),
            secret_string: Some("s".into()),
            secret_binary: Some(vec![1]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "InvalidRequestException");

    // Tokens: 32 to 64 characters.
    put(&mut sm, "v", &"t".repeat(64), "a", &[]).await.unwrap();
    invalid(
        &put(&mut sm, "v", &"t".repeat(65), "a", &[])
            .await
            .unwrap_err(),
        "client_request_token",
    );
    invalid(
        &put(&mut sm, "v", &"t".repeat(31), "a", &[])
            .await
            .unwrap_err(),
        "client_request_token",
    );

    // Labels: 1 to 256 characters, at most 20 per version.
    put(&mut sm, "v", "", "b", &[&"l".repeat(256)])
        .await
        .unwrap();
    invalid(
        &put(&mut sm, "v", "", "b", &[&"l".repeat(257)])
            .await
            .unwrap_err(),
        "version_stages",
    );
    let twenty: Vec<String> = (0..20).map(|i| format!("l{i}")).collect();
    let twenty: Vec<&str> = twenty.iter().map(String::as_str).collect();
    put(&mut sm, "v", "", "c", &twenty).await.unwrap();
    let mut twenty_one = twenty.clone();
    twenty_one.push("l20");
    invalid(
        &put(&mut sm, "v", "", "c", &twenty_one).await.unwrap_err(),
        "version_stages",
    );

    // Description: 2,048 characters.
    for (len, ok) in [(2048, true), (2049, false)] {
        let result = sm
            .update_secret(pb::UpdateSecretRequest {
                secret_id: "v".into(),
                description: Some("d".repeat(len)),
                ..Default::default()
            })
            .await;
        match ok {
            true => assert!(result.is_ok()),
            false => invalid(&result.unwrap_err(), "description"),
        }
    }

    // Tags: key 1-128, value 0-256, at most 50.
    let tag = |k: usize, v: usize, n: usize| pb::TagResourceRequest {
        secret_id: "v".into(),
        tags: (0..n)
            .map(|i| pb::SecretTag {
                key: format!("{i:0>width$}", width = k),
                value: "v".repeat(v),
            })
            .collect(),
    };
    sm.tag_resource(tag(128, 256, 1)).await.unwrap();
    invalid(
        &sm.tag_resource(tag(129, 0, 1)).await.unwrap_err(),
        "tags.key",
    );
    invalid(
        &sm.tag_resource(tag(1, 257, 1)).await.unwrap_err(),
        "tags.value",
    );
    sm.tag_resource(tag(2, 0, 49)).await.unwrap();
    // 49 two-digit keys plus the 128-character one make 50; one more is refused.
    invalid(&sm.tag_resource(tag(3, 0, 1)).await.unwrap_err(), "tags");

    // Page sizes: 1 to 100.
    for (n, ok) in [(1, true), (100, true), (0, false), (101, false)] {
        let result = sm
            .list_secrets(pb::ListSecretsRequest {
                max_results: Some(n),
                ..Default::default()
            })
            .await;
        match ok {
            true => assert!(result.is_ok()),
            false => invalid(&result.unwrap_err(), "max_results"),
        }
    }

    // Random password length: 1 to 4,096.
    for (n, ok) in [(1, true), (4096, false), (4097, false), (0, false)] {
        let result = sm
            .get_random_password(pb::GetRandomPasswordRequest {
                password_length: Some(n),
                require_each_included_type: Some(n != 1 && n != 4096),
                ..Default::default()
            })
            .await;
        if n == 4096 {
            assert_eq!(result.unwrap().into_inner().random_password.len(), 4096);
            continue;
        }
        match ok {
            true => assert_eq!(result.unwrap().into_inner().random_password.len(), 1),
            false => invalid(&result.unwrap_err(), "password_length"),
        }
    }

    // BatchGetSecretValue: 1 to 20 ids, or filters, not both.
    let ids = |n: usize| (0..n).map(|_| "v".to_string()).collect::<Vec<_>>();
    let batch = sm
        .batch_get_secret_value(pb::BatchGetSecretValueRequest {
            secret_id_list: ids(20),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.secret_values.len(), 20);
    let err = sm
        .batch_get_secret_value(pb::BatchGetSecretValueRequest {
            secret_id_list: ids(21),
            ..Default::default()
        })
        .await
        .unwrap_err();
    invalid(&err, "secret_id_list");
    let err = sm
        .batch_get_secret_value(pb::BatchGetSecretValueRequest {
            secret_id_list: ids(1),
            filters: vec![pb::Filter {
                key: "name".into(),
                values: vec!["v".into()],
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    invalid(&err, "secret_id_list");
}
