//! Rules Deletion 1-4 (`service::secrets`): recovery windows, what a scheduled secret
//! refuses, restore, forced deletion, and the purge once the clock passes the deletion date.

use super::*;
use crate::service::secrets::ListOptions;

fn invalid_request(result: Result<impl Sized, SecretsError>) -> String {
    match result {
        Err(SecretsError::InvalidRequest(m)) => m,
        Err(other) => panic!("expected InvalidRequest, got {other:?}"),
        Ok(_) => panic!("expected InvalidRequest, got success"),
    }
}

async fn names(f: &Fixture, include_planned_deletion: bool) -> Vec<String> {
    let (records, _) = f
        .secrets
        .list_records(ListOptions {
            include_planned_deletion,
            ..Default::default()
        })
        .await
        .unwrap();
    records.into_iter().map(|r| r.name).collect()
}

#[tokio::test]
async fn rule_deletion_1_the_recovery_window_is_7_to_30_days_default_30() {
    let f = services().await;
    for name in ["d7", "d30", "default", "bad"] {
        f.create(name, &token(name), "v").await;
    }
    for (days, force) in [(Some(6), false), (Some(31), false), (Some(7), true)] {
        let err = f
            .secrets
            .delete_secret(Deletion {
                secret_id: "bad".into(),
                recovery_window_in_days: days,
                force_delete_without_recovery: force,
            })
            .await
            .err();
        let field = match err {
            Some(SecretsError::InvalidParameter { field, .. }) => field,
            other => panic!("{days:?} {force}: expected InvalidParameter, got {other:?}"),
        };
        assert_eq!(field, "recovery_window_in_days");
    }
    assert_eq!(
        f.secrets
            .describe_secret("bad")
            .await
            .unwrap()
            .deletion_date,
        None
    );

    for (name, days, expected) in [
        ("d7", Some(7), at(START + 7 * DAY)),
        ("d30", Some(30), at(START + 30 * DAY)),
        ("default", None, at(START + 30 * DAY)),
    ] {
        let deleted = f
            .secrets
            .delete_secret(Deletion {
                secret_id: name.into(),
                recovery_window_in_days: days,
                force_delete_without_recovery: false,
            })
            .await
            .unwrap();
        assert_eq!(
            (deleted.secret.name.as_str(), deleted.deletion_date),
            (name, expected)
        );
        let record = f
            .secrets
            .describe_secret(&deleted.secret.arn)
            .await
            .unwrap();
        assert_eq!(record.deletion_date, Some(expected));
    }
    // Scheduling twice is refused; the first date stands.
    assert_eq!(
        invalid_request(
            f.secrets
                .delete_secret(Deletion::scheduled("d7", Some(30)))
                .await
        ),
        "secret d7 is already marked for deletion"
    );
    assert_eq!(
        f.secrets.describe_secret("d7").await.unwrap().deletion_date,
        Some(at(START + 7 * DAY))
    );
}

#[tokio::test]
async fn rule_deletion_2_a_scheduled_secret_refuses_reads_writes_and_its_name() {
    let f = services().await;
    let a = token("a");
    f.create("doomed", &a, "v1").await;
    f.create("kept", &token("k"), "k").await;
    f.secrets
        .delete_secret(Deletion::scheduled("doomed", None))
        .await
        .unwrap();

    let marked = "secret doomed is marked for deletion";
    assert_eq!(
        invalid_request(
            f.secrets
                .get_secret_value(GetValue::current("doomed"))
                .await
        ),
        marked
    );
    assert_eq!(
        invalid_request(f.put("doomed", "", "v2", &[]).await),
        marked
    );
    assert_eq!(
        invalid_request(
            f.secrets
                .update_secret_version_stage(StageMove {
                    secret_id: "doomed".into(),
                    version_stage: "blue".into(),
                    remove_from: None,
                    move_to: Some(a.clone()),
                })
                .await
        ),
        marked
    );
    assert_eq!(
        invalid_request(
            f.secrets
                .list_secret_version_ids("doomed", None, "", false)
                .await
        ),
        marked
    );
    assert_eq!(
        invalid_request(
            f.secrets
                .create_secret(new_secret("doomed", "", Some("new")))
                .await
        ),
        "a secret named doomed is scheduled for deletion; restore it or choose another name"
    );
    // DescribeSecret still answers, with the date.
    assert_eq!(
        f.secrets
            .describe_secret("doomed")
            .await
            .unwrap()
            .deletion_date,
        Some(at(START + 30 * DAY))
    );
    assert_eq!(names(&f, false).await, ["kept"]);
    assert_eq!(names(&f, true).await, ["doomed", "kept"]);
}

#[tokio::test]
async fn rule_deletion_3_restore_cancels_the_deletion() {
    let f = services().await;
    f.create("s", &token("a"), "v1").await;
    assert_eq!(
        invalid_request(f.secrets.restore_secret("s").await),
        "secret s is not marked for deletion"
    );
    f.secrets
        .delete_secret(Deletion::scheduled("s", Some(7)))
        .await
        .unwrap();
    let restored = f.secrets.restore_secret("s").await.unwrap();
    assert_eq!(restored.name, "s");
    assert_eq!(
        f.secrets.describe_secret("s").await.unwrap().deletion_date,
        None
    );
    assert_eq!(f.value("s", "").await, "v1");
    f.put("s", &token("b"), "v2", &[]).await.unwrap();

    // A restored secret is not purged when its old date passes.
    f.clock.advance(8 * DAY);
    assert_eq!(f.secrets.purge_deleted().await.unwrap(), 0);
    assert_eq!(f.value("s", "").await, "v2");
}

#[tokio::test]
async fn rule_deletion_4_the_purge_runs_once_the_clock_passes_the_date() {
    let f = services().await;
    f.create("s", &token("a"), "v1").await;
    let old_arn = f.secrets.describe_secret("s").await.unwrap().arn;
    let date = f
        .secrets
        .delete_secret(Deletion::scheduled("s", Some(7)))
        .await
        .unwrap()
        .deletion_date;
    assert_eq!(date, at(START + 7 * DAY));

    f.clock.advance(7 * DAY - 1);
    assert_eq!(f.secrets.purge_deleted().await.unwrap(), 0);
    assert_eq!(
        f.secrets.describe_secret("s").await.unwrap().deletion_date,
        Some(date)
    );

    f.clock.advance(1);
    assert_eq!(f.secrets.purge_deleted().await.unwrap(), 1);
    let err = f.secrets.describe_secret("s").await.err();
    assert!(matches!(err, Some(SecretsError::NotFound(_))), "{err:?}");
    assert_eq!(names(&f, true).await, Vec::<String>::new());
    assert_eq!(f.secrets.purge_deleted().await.unwrap(), 0);

    // The name is free again, under a new ARN; the old ARN names nothing.
    f.create("s", &token("b"), "reborn").await;
    assert_ne!(f.secrets.describe_secret("s").await.unwrap().arn, old_arn);
    let err = f
        .secrets
        .get_secret_value(GetValue::current(&old_arn))
        .await
        .err();
    assert!(matches!(err, Some(SecretsError::NotFound(_))), "{err:?}");
}

#[tokio::test]
async fn rule_deletion_1_forced_deletion_is_immediate() {
    let f = services().await;
    f.create("s", &token("a"), "v1").await;
    let date = f
        .secrets
        .delete_secret(Deletion::forced("s"))
        .await
        .unwrap()
        .deletion_date;
    assert_eq!(date, at(START), "the answer's date is now");
    let err = f
        .secrets
        .get_secret_value(GetValue::current("s"))
        .await
        .err();
    assert!(
        matches!(&err, Some(SecretsError::NotFound(m)) if m == "Secrets Manager can't find the specified secret."),
        "{err:?}"
    );
    // Forcing also ends a scheduled deletion early.
    f.create("t", &token("b"), "v1").await;
    f.secrets
        .delete_secret(Deletion::scheduled("t", Some(30)))
        .await
        .unwrap();
    f.secrets
        .delete_secret(Deletion::forced("t"))
        .await
        .unwrap();
    assert!(f.secrets.describe_secret("t").await.is_err());
    assert_eq!(f.secrets.purge_deleted().await.unwrap(), 0);
}
