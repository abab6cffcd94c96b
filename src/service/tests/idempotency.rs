//! Rules Idempotency 1-4 (`service::secrets`): what a retried or reused client request token
//! does.

use super::*;

#[tokio::test]
async fn rule_idempotency_1_the_token_becomes_the_version_id_or_one_is_generated() {
    let f = services().await;
    f.create("s", &token("a"), "v1").await;
    let with_token = f.put("s", &token("t"), "v2", &[]).await.unwrap();
    assert_eq!(with_token.version_id, Some(token("t")));
    let generated = f.put("s", "", "v3", &[]).await.unwrap();
    let id = generated.version_id.unwrap();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert_eq!(f.stages("s").await[&id], [CUR]);
}

#[tokio::test]
async fn rule_idempotency_2_and_3_a_reused_token_succeeds_only_with_the_same_value() {
    let f = services().await;
    let (a, b) = (token("a"), token("b"));
    f.create("s", &a, "v1").await;
    f.put("s", &b, "v2", &[]).await.unwrap();
    let before = f.stages("s").await;

    // Rule Idempotency 2: same token, same value: success, no new version, no label moved.
    let again = f.put("s", &b, "v2", &[]).await.unwrap();
    assert_eq!(
        again,
        Put {
            version_id: Some(b.clone()),
            stages: vec![CUR.into()]
        }
    );
    assert_eq!(f.stages("s").await, before);
    // Also when the retry names labels: the first answer stands.
    f.put("s", &b, "v2", &[PEND]).await.unwrap();
    assert_eq!(f.stages("s").await, before);

    // Rule Idempotency 3: same token, another value.
    let refused =
        "You can't modify an existing version, you can only create a new version.".to_owned();
    let err = f.put("s", &b, "different", &[]).await.unwrap_err();
    assert!(
        matches!(&err, SecretsError::Exists(m) if *m == refused),
        "{err:?}"
    );
    // The same bytes as binary are another value.
    let err = f
        .secrets
        .put_secret_value(PutValue {
            secret_id: "s".into(),
            client_request_token: b.clone(),
            value: Some(binary(b"v2")),
            version_stages: None,
        })
        .await
        .err();
    assert!(
        matches!(&err, Some(SecretsError::Exists(m)) if *m == refused),
        "{err:?}"
    );
    // An old version's token with its value: still no new version, and nothing moves back.
    f.put("s", &a, "v1", &[]).await.unwrap();
    assert_eq!(f.stages("s").await, before);
    assert_eq!(f.value("s", "").await, "v2");
}

#[tokio::test]
async fn rule_idempotency_4_a_retried_create_succeeds_and_changes_nothing() {
    let f = services().await;
    let a = token("a");
    let first = f
        .secrets
        .create_secret(new_secret("s", &a, Some("v1")))
        .await
        .unwrap();
    f.clock.advance(60);
    let retried = f
        .secrets
        .create_secret(new_secret("s", &a, Some("v1")))
        .await
        .unwrap();
    assert_eq!(
        (&retried.arn, &retried.version_id, &retried.version_stages),
        (&first.arn, &Some(a.clone()), &vec![CUR.to_owned()])
    );
    assert_eq!(f.stages("s").await, expect(&[(&a, &[CUR])]));
    assert_eq!(
        f.secrets
            .describe_secret("s")
            .await
            .unwrap()
            .last_changed_at,
        at(START)
    );

    for (value, tok) in [
        (Some("other"), a.clone()),
        (Some("v1"), token("b")),
        (None, String::new()),
    ] {
        let err = f
            .secrets
            .create_secret(new_secret("s", &tok, value))
            .await
            .err();
        assert!(
            matches!(&err, Some(SecretsError::Exists(m)) if m == "The operation failed because the secret s already exists."),
            "{value:?}: {err:?}"
        );
    }
    assert_eq!(f.stages("s").await, expect(&[(&a, &[CUR])]));
}
