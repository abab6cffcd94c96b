//! Rules Labels 1-8 (`service::secrets`): the exact labels on every version after each write.

use super::*;
use crate::service::secrets::SecretUpdate;

#[tokio::test]
async fn rule_labels_1_a_label_sits_on_one_version() {
    let f = services().await;
    let (a, b, c) = (token("a"), token("b"), token("c"));
    f.create("s", &a, "v1").await;
    f.put("s", &b, "v2", &["blue"]).await.unwrap();
    f.put("s", &c, "v3", &["blue"]).await.unwrap();
    assert_eq!(
        f.stages("s").await,
        expect(&[(&a, &[CUR]), (&b, &[]), (&c, &["blue"])])
    );
}

#[tokio::test]
async fn rule_labels_2_create_with_a_value_makes_current_without_makes_nothing() {
    let f = services().await;
    let a = token("a");
    let created = f
        .secrets
        .create_secret(new_secret("with", &a, Some("v1")))
        .await
        .unwrap();
    assert_eq!(created.version_id.as_deref(), Some(a.as_str()));
    assert_eq!(created.version_stages, [CUR]);
    assert_eq!(f.stages("with").await, expect(&[(&a, &[CUR])]));

    let created = f
        .secrets
        .create_secret(new_secret("without", &token("x"), None))
        .await
        .unwrap();
    assert_eq!(created.version_id, None);
    assert!(f.stages("without").await.is_empty());
    let err = f
        .secrets
        .get_secret_value(GetValue::current("without"))
        .await
        .err();
    assert!(
        matches!(&err, Some(SecretsError::NotFound(m)) if m == "Secrets Manager can't find the specified secret value for staging label: AWSCURRENT"),
        "{err:?}"
    );

    // The first version always gets AWSCURRENT, beside the labels asked for.
    let p = token("p");
    let first = f.put("without", &p, "v1", &[PEND]).await.unwrap();
    let mut labels = first.stages;
    labels.sort();
    assert_eq!(labels, [CUR, PEND]);
    assert_eq!(f.stages("without").await, expect(&[(&p, &[CUR, PEND])]));
}

#[tokio::test]
async fn rule_labels_3_put_without_labels_moves_current_and_previous() {
    let f = services().await;
    let (a, b, c) = (token("a"), token("b"), token("c"));
    f.create("s", &a, "v1").await;
    let second = f.put("s", &b, "v2", &[]).await.unwrap();
    assert_eq!(
        second,
        Put {
            version_id: Some(b.clone()),
            stages: vec![CUR.into()]
        }
    );
    assert_eq!(f.stages("s").await, expect(&[(&a, &[PREV]), (&b, &[CUR])]));
    f.put("s", &c, "v3", &[]).await.unwrap();
    assert_eq!(
        f.stages("s").await,
        expect(&[(&a, &[]), (&b, &[PREV]), (&c, &[CUR])])
    );
    assert_eq!(f.value("s", "").await, "v3");
    assert_eq!(f.value("s", PREV).await, "v2");
}

#[tokio::test]
async fn rule_labels_4_put_with_labels_moves_only_those() {
    let f = services().await;
    let (a, b, c, d) = (token("a"), token("b"), token("c"), token("d"));
    f.create("s", &a, "v1").await;
    f.put("s", &b, "v2", &[]).await.unwrap();

    // AWSPENDING leaves AWSCURRENT where it was.
    let pending = f.put("s", &c, "v3", &[PEND]).await.unwrap();
    assert_eq!(pending.stages, [PEND]);
    assert_eq!(
        f.stages("s").await,
        expect(&[(&a, &[PREV]), (&b, &[CUR]), (&c, &[PEND])])
    );
    assert_eq!(f.value("s", "").await, "v2");

    // Naming AWSCURRENT moves it, and AWSPREVIOUS follows to the version it left.
    f.put("s", &d, "v4", &[CUR, "green"]).await.unwrap();
    assert_eq!(
        f.stages("s").await,
        expect(&[
            (&a, &[]),
            (&b, &[PREV]),
            (&c, &[PEND]),
            (&d, &[CUR, "green"])
        ])
    );
}

#[tokio::test]
async fn rule_labels_5_update_secret_with_a_value_is_a_put_without_it_no_version() {
    let f = services().await;
    let (a, b) = (token("a"), token("b"));
    f.create("s", &a, "v1").await;
    let updated = f
        .secrets
        .update_secret(SecretUpdate {
            secret_id: "s".into(),
            client_request_token: b.clone(),
            description: Some("now described".into()),
            kms_key_id: None,
            value: Some(text("v2")),
        })
        .await
        .unwrap();
    assert_eq!(updated.version_id.as_deref(), Some(b.as_str()));
    assert_eq!(updated.version_stages, [CUR]);
    assert_eq!(f.stages("s").await, expect(&[(&a, &[PREV]), (&b, &[CUR])]));

    f.clock.advance(60);
    let updated = f
        .secrets
        .update_secret(SecretUpdate {
            secret_id: "s".into(),
            client_request_token: String::new(),
            description: Some("described again".into()),
            kms_key_id: None,
            value: None,
        })
        .await
        .unwrap();
    assert_eq!(updated.version_id, None);
    assert!(updated.version_stages.is_empty());
    assert_eq!(f.stages("s").await, expect(&[(&a, &[PREV]), (&b, &[CUR])]));
    let record = f.secrets.describe_secret("s").await.unwrap();
    assert_eq!(record.description, "described again");
    assert_eq!(record.last_changed_at, at(START + 60));
}

#[tokio::test]
async fn rule_labels_6_update_secret_version_stage_moves_and_refusals() {
    let f = services().await;
    let (a, b, c) = (token("a"), token("b"), token("c"));
    f.create("s", &a, "v1").await;
    f.put("s", &b, "v2", &[]).await.unwrap();
    f.put("s", &c, "v3", &[PEND]).await.unwrap();
    // Empty: not given.
    let stage = |label: &'static str, to: String, from: String| {
        let secrets = Arc::clone(&f.secrets);
        async move {
            secrets
                .update_secret_version_stage(StageMove {
                    secret_id: "s".into(),
                    version_stage: label.into(),
                    remove_from: (!from.is_empty()).then_some(from),
                    move_to: (!to.is_empty()).then_some(to),
                })
                .await
        }
    };

    // A held label cannot move without naming its holder, nor naming the wrong one.
    let err = stage(CUR, c.clone(), String::new()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "remove_from_version_id: the label AWSCURRENT is attached to version {b}; name it in remove_from_version_id to move the label"
        )
    );
    let err = stage(CUR, c.clone(), a.clone()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "remove_from_version_id: the label AWSCURRENT is not attached to that version"
    );
    assert_eq!(
        f.stages("s").await,
        expect(&[(&a, &[PREV]), (&b, &[CUR]), (&c, &[PEND])])
    );

    // Moving AWSCURRENT onto AWSPENDING's version keeps AWSPENDING there; AWSPREVIOUS follows
    // to the version AWSCURRENT left.
    let moved = stage(CUR, c.clone(), b.clone()).await.unwrap();
    assert_eq!(moved.name, "s");
    assert_eq!(moved.arn, f.secrets.describe_secret("s").await.unwrap().arn);
    assert_eq!(
        f.stages("s").await,
        expect(&[(&a, &[]), (&b, &[PREV]), (&c, &[CUR, PEND])])
    );
    assert_eq!(f.value("s", "").await, "v3");

    // Without move_to the label is only removed.
    stage(PEND, String::new(), c.clone()).await.unwrap();
    assert_eq!(
        f.stages("s").await,
        expect(&[(&a, &[]), (&b, &[PREV]), (&c, &[CUR])])
    );
    // A new custom label needs no remove_from.
    stage("blue", a.clone(), String::new()).await.unwrap();
    assert_eq!(f.stages("s").await[&a], ["blue"]);

    let err = stage(CUR, String::new(), c.clone()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "version_stage: AWSCURRENT can be moved to another version but not removed"
    );
    let err = stage(PEND, String::new(), String::new()).await.unwrap_err();
    assert!(
        matches!(
            err,
            SecretsError::InvalidParameter {
                field: "move_to_version_id",
                ..
            }
        ),
        "{err:?}"
    );
    let nope = token("nope");
    let err = stage("blue", nope.clone(), a.clone()).await.unwrap_err();
    assert!(
        matches!(&err, SecretsError::NotFound(m) if *m == format!("version {nope} does not exist")),
        "{err:?}"
    );
    // None of the refusals moved anything.
    assert_eq!(
        f.stages("s").await,
        expect(&[(&a, &["blue"]), (&b, &[PREV]), (&c, &[CUR])])
    );
}

#[tokio::test]
async fn rule_labels_7_unlabelled_versions_are_deprecated_and_hidden() {
    let f = services().await;
    let (a, b, c) = (token("a"), token("b"), token("c"));
    f.create("s", &a, "v1").await;
    f.put("s", &b, "v2", &[]).await.unwrap();
    f.put("s", &c, "v3", &[]).await.unwrap();

    let ids = async |include_deprecated| {
        let (_, versions, next) = f
            .secrets
            .list_secret_version_ids("s", None, "", include_deprecated)
            .await
            .unwrap();
        assert_eq!(next, None);
        versions
            .into_iter()
            .map(|v| v.version_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(false).await,
        [c.clone(), b.clone()],
        "newest first, a left out"
    );
    assert_eq!(ids(true).await, [c.clone(), b.clone(), a.clone()]);

    // A deprecated version is still readable by id, and has no labels.
    let old = f
        .secrets
        .get_secret_value(GetValue::by_id("s", &a))
        .await
        .unwrap();
    assert_eq!(string_of(&old.value), "v1");
    assert!(old.version_stages.is_empty());
}

#[tokio::test]
async fn rule_labels_7_deprecated_versions_beyond_a_hundred_go_once_a_day_old() {
    let f = services().await;
    f.create("s", &token("v000"), "0").await;
    for i in 1..=100 {
        f.put("s", &token(&format!("v{i:03}")), &i.to_string(), &[])
            .await
            .unwrap();
    }
    // 101 versions, all younger than a day: none may go.
    assert_eq!(f.stages("s").await.len(), 101);

    f.clock.advance(DAY);
    f.put("s", &token("v101"), "101", &[]).await.unwrap();
    let stages = f.stages("s").await;
    // 102 versions: the two oldest beyond the newest hundred are deprecated and a day old.
    assert_eq!(stages.len(), 100);
    assert!(!stages.contains_key(&token("v000")));
    assert!(!stages.contains_key(&token("v001")));
    assert_eq!(stages[&token("v100")], [PREV]);
    assert_eq!(stages[&token("v101")], [CUR]);
    let err = f
        .secrets
        .get_secret_value(GetValue::by_id("s", token("v000")))
        .await
        .err();
    assert!(matches!(err, Some(SecretsError::NotFound(_))), "{err:?}");
}

#[tokio::test]
async fn rule_labels_8_which_version_get_secret_value_returns() {
    let f = services().await;
    let (a, b) = (token("a"), token("b"));
    f.create("s", &a, "v1").await;
    f.put("s", &b, "v2", &[]).await.unwrap();

    let current = f
        .secrets
        .get_secret_value(GetValue::current("s"))
        .await
        .unwrap();
    assert_eq!(
        (current.version_id.as_str(), string_of(&current.value)),
        (b.as_str(), "v2".to_owned())
    );
    assert_eq!(current.version_stages, [CUR]);
    assert_eq!(current.created_date, at(START));

    let by_both = f
        .secrets
        .get_secret_value(GetValue {
            version_id: Some(a.clone()),
            version_stage: Some(PREV.into()),
            ..GetValue::current("s")
        })
        .await
        .unwrap();
    assert_eq!(string_of(&by_both.value), "v1");
    let not_found = |result: Result<_, SecretsError>| match result {
        Err(SecretsError::NotFound(m)) => m,
        Err(other) => panic!("expected NotFound, got {other:?}"),
        Ok(_) => panic!("expected NotFound, got a value"),
    };
    assert_eq!(
        not_found(
            f.secrets
                .get_secret_value(GetValue {
                    version_id: Some(a.clone()),
                    version_stage: Some(CUR.into()),
                    ..GetValue::current("s")
                })
                .await
        ),
        format!(
            "Secrets Manager can't find the specified secret value for VersionId: {a} and staging label: AWSCURRENT"
        )
    );
    assert_eq!(
        not_found(
            f.secrets
                .get_secret_value(GetValue::by_stage("s", PEND))
                .await
        ),
        "Secrets Manager can't find the specified secret value for staging label: AWSPENDING"
    );
    let z = token("zzz");
    assert_eq!(
        not_found(f.secrets.get_secret_value(GetValue::by_id("s", &z)).await),
        format!("Secrets Manager can't find the specified secret value for VersionId: {z}")
    );
    // By ARN as well as by name; an ARN with another suffix is another secret.
    let by_arn = f
        .secrets
        .get_secret_value(GetValue::current(&current.arn))
        .await
        .unwrap();
    assert_eq!(by_arn.version_id, b);
    let other = format!("{}-XyZ123", &current.arn[..current.arn.len() - 7]);
    assert_eq!(
        not_found(f.secrets.get_secret_value(GetValue::current(&other)).await),
        "Secrets Manager can't find the specified secret."
    );
}
