//! Rules Labels 1-8 (`service::secrets`): the exact labels on every version after each
//! operation, against a real server on SoftHSM.

mod common;

use common::secrets::*;
use common::*;
use keyward::api::pb;
use tonic::Code;

const CUR: &str = "AWSCURRENT";
const PREV: &str = "AWSPREVIOUS";
const PEND: &str = "AWSPENDING";

#[tokio::test]
async fn rule_1_a_label_sits_on_one_version() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    try_create(&mut sm, "r1", Some("v1"), &token("a"))
        .await
        .unwrap();
    put(&mut sm, "r1", &token("b"), "v2", &["blue"])
        .await
        .unwrap();
    put(&mut sm, "r1", &token("c"), "v3", &["blue"])
        .await
        .unwrap();
    assert_eq!(
        stages(&mut sm, "r1").await,
        expect(&[
            (&token("a"), &[CUR]),
            (&token("b"), &[]),
            (&token("c"), &["blue"])
        ])
    );
}

#[tokio::test]
async fn rule_2_create_with_a_value_makes_current_without_makes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut sm = client(&server).await;

    let created = try_create(&mut sm, "with", Some("v1"), &token("a"))
        .await
        .unwrap();
    assert_eq!(created.version_id.as_deref(), Some(token("a").as_str()));
    assert_eq!(
        stages(&mut sm, "with").await,
        expect(&[(&token("a"), &[CUR])])
    );

    let created = create(&mut sm, "without", None).await;
    assert_eq!(created.version_id, None);
    assert!(stages(&mut sm, "without").await.is_empty());
    let err = get(&mut sm, "without", "", "").await.unwrap_err();
    assert_error(&err, Code::NotFound, "ResourceNotFoundException");

    // The first version always gets AWSCURRENT, beside the labels asked for.
    let first = put(&mut sm, "without", &token("p"), "v1", &[PEND])
        .await
        .unwrap();
    let mut labels = first.version_stages.clone();
    labels.sort();
    assert_eq!(labels, [CUR, PEND]);
    assert_eq!(
        stages(&mut sm, "without").await,
        expect(&[(&token("p"), &[CUR, PEND])])
    );
}

#[tokio::test]
async fn rule_3_put_without_labels_moves_current_and_previous() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    try_create(&mut sm, "r3", Some("v1"), &token("a"))
        .await
        .unwrap();
    let second = put(&mut sm, "r3", &token("b"), "v2", &[]).await.unwrap();
    assert_eq!(second.version_stages, [CUR]);
    assert_eq!(
        stages(&mut sm, "r3").await,
        expect(&[(&token("a"), &[PREV]), (&token("b"), &[CUR])])
    );
    put(&mut sm, "r3", &token("c"), "v3", &[]).await.unwrap();
    assert_eq!(
        stages(&mut sm, "r3").await,
        expect(&[
            (&token("a"), &[]),
            (&token("b"), &[PREV]),
            (&token("c"), &[CUR])
        ])
    );
    assert_eq!(value(&mut sm, "r3", "").await, "v3");
    assert_eq!(value(&mut sm, "r3", PREV).await, "v2");
}

#[tokio::test]
async fn rule_4_put_with_labels_moves_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    try_create(&mut sm, "r4", Some("v1"), &token("a"))
        .await
        .unwrap();
    put(&mut sm, "r4", &token("b"), "v2", &[]).await.unwrap();

    // AWSPENDING leaves AWSCURRENT where it was.
    put(&mut sm, "r4", &token("c"), "v3", &[PEND])
        .await
        .unwrap();
    assert_eq!(
        stages(&mut sm, "r4").await,
        expect(&[
            (&token("a"), &[PREV]),
            (&token("b"), &[CUR]),
            (&token("c"), &[PEND])
        ])
    );
    // Listing AWSCURRENT moves it, and AWSPREVIOUS follows to the version it left.
    put(&mut sm, "r4", &token("d"), "v4", &[CUR, "green"])
        .await
        .unwrap();
    assert_eq!(
        stages(&mut sm, "r4").await,
        expect(&[
            (&token("a"), &[]),
            (&token("b"), &[PREV]),
            (&token("c"), &[PEND]),
            (&token("d"), &[CUR, "green"]),
        ])
    );
}

#[tokio::test]
async fn rule_5_update_secret_with_a_value_is_a_put_without_it_no_version() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    try_create(&mut sm, "r5", Some("v1"), &token("a"))
        .await
        .unwrap();

    let updated = sm
        .update_secret(pb::UpdateSecretRequest {
            secret_id: "r5".into(),
            client_request_token: token("b"),
            secret_string: Some("v2".into()),
            description: Some("now described".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.version_id.as_deref(), Some(token("b").as_str()));
    assert_eq!(
        stages(&mut sm, "r5").await,
        expect(&[(&token("a"), &[PREV]), (&token("b"), &[CUR])])
    );

    let updated = sm
        .update_secret(pb::UpdateSecretRequest {
            secret_id: "r5".into(),
            description: Some("described again".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.version_id, None);
    assert_eq!(stages(&mut sm, "r5").await.len(), 2);
    let described = sm
        .describe_secret(pb::DescribeSecretRequest {
            secret_id: "r5".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.description, "described again");
}

#[tokio::test]
async fn rule_6_update_secret_version_stage() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    try_create(&mut sm, "r6", Some("v1"), &token("a"))
        .await
        .unwrap();
    put(&mut sm, "r6", &token("b"), "v2", &[]).await.unwrap();
    put(&mut sm, "r6", &token("c"), "v3", &[PEND])
        .await
        .unwrap();
    let (a, b, c) = (token("a"), token("b"), token("c"));

    // A held label cannot move without naming its holder.
    let err = move_stage(&mut sm, "r6", CUR, &c, "").await.unwrap_err();
    assert_error(&err, Code::InvalidArgument, "InvalidParameterException");
    assert!(
        err.message().starts_with("remove_from_version_id"),
        "{}",
        err.message()
    );
    let err = move_stage(&mut sm, "r6", CUR, &c, &a).await.unwrap_err();
    assert_error(&err, Code::InvalidArgument, "InvalidParameterException");
    assert_eq!(
        stages(&mut sm, "r6").await,
        expect(&[(&a, &[PREV]), (&b, &[CUR]), (&c, &[PEND])])
    );

    // Moving AWSCURRENT onto the AWSPENDING version keeps AWSPENDING there, and AWSPREVIOUS
    // follows to the version AWSCURRENT left.
    move_stage(&mut sm, "r6", CUR, &c, &b).await.unwrap();
    assert_eq!(
        stages(&mut sm, "r6").await,
        expect(&[(&a, &[]), (&b, &[PREV]), (&c, &[CUR, PEND])])
    );

    // Remove only: no move_to_version_id.
    move_stage(&mut sm, "r6", PEND, "", &c).await.unwrap();
    assert_eq!(
        stages(&mut sm, "r6").await,
        expect(&[(&a, &[]), (&b, &[PREV]), (&c, &[CUR])])
    );
    // A custom label onto an old version, then back.
    move_stage(&mut sm, "r6", "blue", &a, "").await.unwrap();
    assert_eq!(stages(&mut sm, "r6").await[&a], ["blue"]);
    let err = move_stage(&mut sm, "r6", CUR, "", &c).await.unwrap_err();
    assert_error(&err, Code::InvalidArgument, "InvalidParameterException");
    let err = move_stage(&mut sm, "r6", "blue", &token("nope"), &a)
        .await
        .unwrap_err();
    assert_error(&err, Code::NotFound, "ResourceNotFoundException");
}

#[tokio::test]
async fn rule_7_unlabelled_versions_are_deprecated_and_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    try_create(&mut sm, "r7", Some("v1"), &token("a"))
        .await
        .unwrap();
    put(&mut sm, "r7", &token("b"), "v2", &[]).await.unwrap();
    put(&mut sm, "r7", &token("c"), "v3", &[]).await.unwrap();

    let listed = sm
        .list_secret_version_ids(pb::ListSecretVersionIdsRequest {
            secret_id: "r7".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = listed
        .versions
        .iter()
        .map(|v| v.version_id.clone())
        .collect();
    assert_eq!(
        ids,
        [token("c"), token("b")],
        "newest first, deprecated left out"
    );
    assert_eq!(
        stages(&mut sm, "r7").await.len(),
        3,
        "include_deprecated shows it"
    );

    let described = sm
        .describe_secret(pb::DescribeSecretRequest {
            secret_id: "r7".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut described_ids: Vec<_> = described.version_ids_to_stages.keys().cloned().collect();
    described_ids.sort();
    assert_eq!(described_ids, [token("b"), token("c")]);
    let listed = sm
        .list_secrets(pb::ListSecretsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let entry = listed.secret_list.iter().find(|s| s.name == "r7").unwrap();
    assert_eq!(entry.secret_versions_to_stages.len(), 2);
    // A deprecated version is still readable by id.
    let old = get(&mut sm, "r7", &token("a"), "").await.unwrap();
    assert_eq!(old.secret_string.as_deref(), Some("v1"));
    assert!(old.version_stages.is_empty());
}

#[tokio::test]
async fn rule_8_which_version_get_secret_value_returns() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    try_create(&mut sm, "r8", Some("v1"), &token("a"))
        .await
        .unwrap();
    put(&mut sm, "r8", &token("b"), "v2", &[]).await.unwrap();

    let current = get(&mut sm, "r8", "", "").await.unwrap();
    assert_eq!(
        (
            current.version_id.as_str(),
            current.secret_string.as_deref()
        ),
        (token("b").as_str(), Some("v2"))
    );
    assert_eq!(current.version_stages, [CUR]);
    let by_both = get(&mut sm, "r8", &token("a"), PREV).await.unwrap();
    assert_eq!(by_both.secret_string.as_deref(), Some("v1"));
    let err = get(&mut sm, "r8", &token("a"), CUR).await.unwrap_err();
    assert_error(&err, Code::NotFound, "ResourceNotFoundException");
    let err = get(&mut sm, "r8", "", PEND).await.unwrap_err();
    assert_error(&err, Code::NotFound, "ResourceNotFoundException");
    let err = get(&mut sm, "r8", &token("zzz"), "").await.unwrap_err();
    assert_error(&err, Code::NotFound, "ResourceNotFoundException");
    // By ARN as well as by name.
    let by_arn = get(&mut sm, &current.arn, "", "").await.unwrap();
    assert_eq!(by_arn.version_id, token("b"));
}
