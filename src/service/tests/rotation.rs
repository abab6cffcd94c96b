//! Rules Rotation 1-6 (`service::secrets`): the rotation record's step machine
//! (`service::secrets::rotation`) driven by hand and by the scheduler (`service::rotation`),
//! with time moved by the clock.

use super::*;
use crate::service::rotation::{RotationSettings, Rotators, Scheduler};
use crate::service::secrets::{Next, RotateRequest, RotationRules};
use crate::store::{InFlight, PasswordPolicy, RotationStep, RotatorSpec};
use std::time::Duration;

const TEMPLATE: &str = r#"{"username":"app","password":"{{generate}}"}"#;

fn generated() -> RotatorSpec {
    RotatorSpec::Generated {
        password: PasswordPolicy::default(),
        template: Some(TEMPLATE.into()),
    }
}

/// An exec rotator the secrets service accepts but the scheduler has no program for: every
/// step it runs fails, which is how a failing target system looks from here.
fn failing() -> RotatorSpec {
    RotatorSpec::Exec {
        name: UNCONFIGURED_EXEC.into(),
    }
}

fn rate(expression: &str) -> Option<RotationRules> {
    Some(RotationRules {
        schedule_expression: Some(expression.into()),
        ..Default::default()
    })
}

fn rotate(
    secret: &str,
    token: &str,
    rotator: Option<RotatorSpec>,
    rules: Option<RotationRules>,
) -> RotateRequest {
    RotateRequest {
        secret_id: secret.into(),
        client_request_token: token.into(),
        rules,
        rotator,
        rotate_immediately: true,
    }
}

/// Secret "s" with one version (token "a", value "v1") and a rotation under token "t" begun
/// with `rotator`, no schedule.
async fn rotating(rotator: RotatorSpec) -> (Fixture, String, String) {
    let f = services().await;
    let a = token("a");
    f.create("s", &a, "v1").await;
    let t = token("t");
    f.secrets
        .rotate_secret(rotate("s", &t, Some(rotator), None))
        .await
        .unwrap();
    (f, a, t)
}

fn scheduler(f: &Fixture) -> Scheduler {
    Scheduler {
        secrets: Arc::clone(&f.secrets),
        kms: Arc::clone(&f.kms),
        rotators: Rotators::default(),
        settings: RotationSettings {
            check_interval: Duration::from_secs(60),
            retry_initial_secs: 30,
            retry_max_secs: 3600,
            step_timeout: Duration::from_secs(10),
        },
        clock: f.clock.clone(),
    }
}

async fn in_flight(f: &Fixture, name: &str) -> Option<InFlight> {
    let record = f.secrets.describe_secret(name).await.unwrap();
    record.rotation.and_then(|r| r.in_flight)
}

/// The step `next_rotation_step` hands the scheduler now, if any.
async fn due_step(f: &Fixture, name: &str) -> Option<(String, RotationStep)> {
    match f.secrets.next_rotation_step(name).await.unwrap() {
        Next::Step { flight, .. } => Some((flight.token, flight.step)),
        Next::Nothing => None,
    }
}

#[tokio::test]
async fn rule_rotation_1_rotate_makes_a_pending_version_without_a_value() {
    let f = services().await;
    let a = token("a");
    f.create("s", &a, "v1").await;
    let t = token("t");
    let answer = f
        .secrets
        .rotate_secret(rotate("s", &t, Some(generated()), rate("rate(30 days)")))
        .await
        .unwrap();
    assert_eq!(
        (answer.secret.name.as_str(), answer.version_id),
        ("s", Some(t.clone()))
    );
    assert_eq!(
        answer.secret.arn,
        f.secrets.describe_secret("s").await.unwrap().arn
    );
    assert_eq!(f.stages("s").await, expect(&[(&a, &[CUR]), (&t, &[PEND])]));
    assert_eq!(
        in_flight(&f, "s").await,
        Some(InFlight {
            token: t.clone(),
            step: RotationStep::CreateSecret,
            started_at: at(START),
            failed_attempts: 0,
            last_error: None,
            retry_at: at(START),
        })
    );
    let err = f
        .secrets
        .get_secret_value(GetValue::by_stage("s", PEND))
        .await
        .err();
    assert!(
        matches!(&err, Some(SecretsError::NotFound(m)) if *m == format!("Secrets Manager can't find the specified secret value for VersionId: {t}")),
        "{err:?}"
    );
    assert_eq!(f.value("s", "").await, "v1");
    // Due now: the scheduler finds it.
    assert_eq!(
        f.secrets.rotations_due(at(START), 10).await.unwrap(),
        ["s".to_owned()]
    );
}

#[tokio::test]
async fn rule_rotation_2_the_scheduler_runs_four_steps_and_moves_the_labels() {
    let f = services().await;
    let a = token("a");
    f.create("s", &a, r#"{"username":"app","password":"old"}"#)
        .await;
    let t = token("t");
    f.secrets
        .rotate_secret(rotate("s", &t, Some(generated()), rate("rate(30 days)")))
        .await
        .unwrap();
    f.clock.advance(90);
    assert!(
        !scheduler(&f).pass().await,
        "one secret is not a full batch"
    );

    assert_eq!(f.stages("s").await, expect(&[(&a, &[PREV]), (&t, &[CUR])]));
    let value: serde_json::Value = serde_json::from_str(&f.value("s", "").await).unwrap();
    assert_eq!(value["username"], "app");
    let password = value["password"].as_str().unwrap();
    assert_eq!(password.len(), 32);
    assert_ne!(password, "old");

    let rotation = f
        .secrets
        .describe_secret("s")
        .await
        .unwrap()
        .rotation
        .unwrap();
    assert_eq!(rotation.in_flight, None);
    assert!(rotation.enabled);
    assert_eq!(rotation.last_rotated_at, Some(at(START + 90)));
    assert_eq!(rotation.next_rotation_at, Some(at(START + 30 * DAY)));
    assert!(
        f.secrets
            .rotations_due(at(START + 90), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A second rotation keeps rules and rotator; the first version loses its label.
    let t2 = token("t2");
    f.secrets
        .rotate_secret(rotate("s", &t2, None, None))
        .await
        .unwrap();
    scheduler(&f).pass().await;
    assert_eq!(
        f.stages("s").await,
        expect(&[(&a, &[]), (&t, &[PREV]), (&t2, &[CUR])])
    );
    let rotation = f
        .secrets
        .describe_secret("s")
        .await
        .unwrap()
        .rotation
        .unwrap();
    assert_eq!(
        rotation.schedule_expression.as_deref(),
        Some("rate(30 days)")
    );
    assert_eq!(rotation.rotator, generated());
}

#[tokio::test]
async fn rule_rotation_2_the_step_machine_advances_one_step_at_a_time() {
    let (f, a, t) = rotating(generated()).await;

    assert_eq!(
        due_step(&f, "s").await,
        Some((t.clone(), RotationStep::CreateSecret))
    );
    f.secrets
        .store_pending_value("s", &t, text("v2"))
        .await
        .unwrap();
    // Repeated create_secret keeps the first value (each step is idempotent).
    f.secrets
        .store_pending_value("s", &t, text("other"))
        .await
        .unwrap();
    assert_eq!(f.value("s", PEND).await, "v2");

    // A report for a step other than the one in flight, or another token, changes nothing.
    let secrets = &f.secrets;
    secrets
        .rotation_step_done("s", &t, RotationStep::SetSecret)
        .await
        .unwrap();
    secrets
        .rotation_step_done("s", &token("other"), RotationStep::CreateSecret)
        .await
        .unwrap();
    assert_eq!(
        in_flight(&f, "s").await.unwrap().step,
        RotationStep::CreateSecret
    );

    for (done, next) in [
        (RotationStep::CreateSecret, RotationStep::SetSecret),
        (RotationStep::SetSecret, RotationStep::TestSecret),
        (RotationStep::TestSecret, RotationStep::FinishSecret),
    ] {
        f.clock.advance(1);
        secrets.rotation_step_done("s", &t, done).await.unwrap();
        assert_eq!(due_step(&f, "s").await, Some((t.clone(), next)));
        // Rule Rotation 4: until finish_secret, clients read the old value.
        assert_eq!(f.value("s", "").await, "v1");
        assert_eq!(f.stages("s").await, expect(&[(&a, &[CUR]), (&t, &[PEND])]));
    }
    secrets
        .rotation_step_done("s", &t, RotationStep::FinishSecret)
        .await
        .unwrap();
    assert_eq!(f.stages("s").await, expect(&[(&a, &[PREV]), (&t, &[CUR])]));
    assert_eq!(f.value("s", "").await, "v2");
    let rotation = f
        .secrets
        .describe_secret("s")
        .await
        .unwrap()
        .rotation
        .unwrap();
    assert_eq!(rotation.in_flight, None);
    assert_eq!(rotation.last_rotated_at, Some(at(START + 3)));
    // Without rules rotation ran once and is not scheduled again.
    assert!(!rotation.enabled);
    assert_eq!(rotation.next_rotation_at, None);
    assert_eq!(due_step(&f, "s").await, None);
}

#[tokio::test]
async fn rule_rotation_2_finish_refuses_a_pending_version_without_a_value() {
    let f = services().await;
    f.create("s", &token("a"), "v1").await;
    let t = token("t");
    f.secrets
        .rotate_secret(rotate("s", &t, Some(generated()), None))
        .await
        .unwrap();
    // Skipping create_secret is a bug in a rotator, never a half-made AWSCURRENT.
    for step in [
        RotationStep::CreateSecret,
        RotationStep::SetSecret,
        RotationStep::TestSecret,
    ] {
        f.secrets.rotation_step_done("s", &t, step).await.unwrap();
    }
    let err = f
        .secrets
        .rotation_step_done("s", &t, RotationStep::FinishSecret)
        .await
        .err();
    assert!(
        matches!(&err, Some(SecretsError::InvalidRequest(m)) if *m == format!("version {t} of s has no value to make current")),
        "{err:?}"
    );
    assert_eq!(f.value("s", "").await, "v1");
}

#[tokio::test]
async fn rule_rotation_4_a_failing_step_backs_off_and_leaves_awscurrent_alone() {
    let (f, a, t) = rotating(failing()).await;
    let scheduler = scheduler(&f);
    let why = format!("no exec rotator named {UNCONFIGURED_EXEC:?} in the server's configuration");

    scheduler.pass().await;
    let flight = in_flight(&f, "s").await.unwrap();
    assert_eq!(
        (
            flight.step,
            flight.failed_attempts,
            flight.last_error.as_deref(),
            flight.retry_at
        ),
        (
            RotationStep::CreateSecret,
            1,
            Some(why.as_str()),
            at(START + 30)
        )
    );
    assert_eq!(f.stages("s").await, expect(&[(&a, &[CUR]), (&t, &[PEND])]));
    assert_eq!(f.value("s", "").await, "v1");

    // Not due again before its backoff: a pass now runs nothing.
    f.clock.advance(29);
    scheduler.pass().await;
    assert_eq!(in_flight(&f, "s").await.unwrap().failed_attempts, 1);
    assert_eq!(due_step(&f, "s").await, None);

    // The backoff doubles.
    f.clock.advance(1);
    scheduler.pass().await;
    let flight = in_flight(&f, "s").await.unwrap();
    assert_eq!(
        (flight.failed_attempts, flight.retry_at),
        (2, at(START + 30 + 60))
    );
    assert_eq!(f.value("s", "").await, "v1");
}

#[tokio::test]
async fn rule_rotation_3_an_unfinished_rotation_refuses_the_next_and_is_taken_up_again() {
    let (f, a, t) = rotating(generated()).await;

    // The same request again is a retry: same answer, nothing new.
    let answer = f
        .secrets
        .rotate_secret(rotate("s", &t, None, None))
        .await
        .unwrap();
    assert_eq!(answer.version_id, Some(t.clone()));
    let err = f
        .secrets
        .rotate_secret(rotate("s", &token("u"), None, None))
        .await
        .err();
    assert!(
        matches!(&err, Some(SecretsError::InvalidRequest(m)) if *m == format!("a previous rotation of s isn't complete (version {t} is at create_secret); it will be reattempted")),
        "{err:?}"
    );

    // AWSPENDING left on another version with no rotation in flight (cancelled): refused,
    // and that rotation is put back in flight for the scheduler.
    f.secrets.cancel_rotate_secret("s").await.unwrap();
    assert_eq!(in_flight(&f, "s").await, None);
    f.clock.advance(5);
    let err = f
        .secrets
        .rotate_secret(rotate("s", &token("u"), None, None))
        .await
        .err();
    assert!(
        matches!(&err, Some(SecretsError::InvalidRequest(m)) if *m == format!("a previous rotation of s isn't complete (version {t} still has AWSPENDING); that rotation will be reattempted")),
        "{err:?}"
    );
    let flight = in_flight(&f, "s").await.unwrap();
    assert_eq!(
        (flight.token.as_str(), flight.step, flight.started_at),
        (t.as_str(), RotationStep::CreateSecret, at(START + 5))
    );
    scheduler(&f).pass().await;
    assert_eq!(f.stages("s").await, expect(&[(&a, &[PREV]), (&t, &[CUR])]));
}

#[tokio::test]
async fn rule_rotation_5_cancel_stops_the_rotation_and_leaves_the_labels() {
    let f = services().await;
    let a = token("a");
    f.create("s", &a, "v1").await;
    let err = f.secrets.cancel_rotate_secret("s").await.err();
    assert!(
        matches!(&err, Some(SecretsError::InvalidRequest(m)) if m == "s has no rotation configured"),
        "{err:?}"
    );
    let t = token("t");
    f.secrets
        .rotate_secret(rotate("s", &t, Some(failing()), rate("rate(10 days)")))
        .await
        .unwrap();
    scheduler(&f).pass().await;
    assert_eq!(in_flight(&f, "s").await.unwrap().failed_attempts, 1);

    let stopped = f
        .secrets
        .cancel_rotate_secret("s")
        .await
        .unwrap()
        .version_id;
    assert_eq!(stopped, Some(t.clone()));
    let rotation = f
        .secrets
        .describe_secret("s")
        .await
        .unwrap()
        .rotation
        .unwrap();
    assert_eq!(
        (
            rotation.enabled,
            rotation.next_rotation_at,
            rotation.in_flight
        ),
        (false, None, None)
    );
    assert_eq!(f.stages("s").await, expect(&[(&a, &[CUR]), (&t, &[PEND])]));
    // Nothing is due any more, however far the clock goes.
    f.clock.advance(100 * DAY);
    assert!(
        f.secrets
            .rotations_due(at(START + 100 * DAY), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(due_step(&f, "s").await, None);
}

#[tokio::test]
async fn rule_rotation_6_a_schedule_opens_a_rotation_when_the_clock_reaches_it() {
    let f = services().await;
    let a = token("a");
    f.create("s", &a, "v1").await;
    let mut request = rotate(
        "s",
        &token("t"),
        Some(generated()),
        Some(RotationRules {
            automatically_after_days: Some(2),
            ..Default::default()
        }),
    );
    request.rotate_immediately = false;
    let pending = f.secrets.rotate_secret(request).await.unwrap().version_id;
    assert_eq!(pending, None);
    let rotation = f
        .secrets
        .describe_secret("s")
        .await
        .unwrap()
        .rotation
        .unwrap();
    assert_eq!(rotation.next_rotation_at, Some(at(START + 2 * DAY)));
    assert_eq!(f.stages("s").await, expect(&[(&a, &[CUR])]));

    f.clock.advance(2 * DAY - 1);
    scheduler(&f).pass().await;
    assert_eq!(f.stages("s").await.len(), 1, "not before the window opens");

    f.clock.advance(1);
    scheduler(&f).pass().await;
    let stages = f.stages("s").await;
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[&a], [PREV]);
    let rotation = f
        .secrets
        .describe_secret("s")
        .await
        .unwrap()
        .rotation
        .unwrap();
    assert_eq!(rotation.last_rotated_at, Some(at(START + 2 * DAY)));
    assert_eq!(rotation.next_rotation_at, Some(at(START + 4 * DAY)));
}

#[tokio::test]
async fn rule_rotation_6_bad_schedules_and_rotators_are_refused() {
    let f = services().await;
    f.create("s", &token("a"), "v1").await;
    for expression in ["rate(1 hours)", "cron(0 0 1 * 2 *)", "every day"] {
        let err = f
            .secrets
            .rotate_secret(rotate(
                "s",
                &token("x"),
                Some(generated()),
                rate(expression),
            ))
            .await
            .err();
        assert!(
            matches!(
                err,
                Some(SecretsError::InvalidParameter {
                    field: "rotation_rules",
                    ..
                })
            ),
            "{expression}: {err:?}"
        );
    }
    let unknown = RotatorSpec::Exec {
        name: "nope".into(),
    };
    let err = f
        .secrets
        .rotate_secret(rotate("s", &token("x"), Some(unknown), None))
        .await
        .err();
    assert!(
        matches!(&err, Some(e @ SecretsError::InvalidParameter { field: "rotator", .. })
            if e.to_string() == "rotator: no exec rotator named \"nope\" in the server's configuration"),
        "{err:?}"
    );
    // No rotator named and none stored.
    let err = f
        .secrets
        .rotate_secret(rotate("s", &token("x"), None, None))
        .await
        .err();
    assert!(
        matches!(
            err,
            Some(SecretsError::InvalidParameter {
                field: "rotator",
                ..
            })
        ),
        "{err:?}"
    );
    // A token already used as a version id.
    let err = f
        .secrets
        .rotate_secret(rotate("s", &token("a"), Some(generated()), None))
        .await
        .err();
    assert!(matches!(err, Some(SecretsError::Exists(_))), "{err:?}");
    // Nothing was made by the refused requests.
    assert_eq!(f.stages("s").await.len(), 1);
    assert_eq!(f.secrets.describe_secret("s").await.unwrap().rotation, None);

    // Rule Deletion 2: a secret marked for deletion does not rotate.
    f.secrets
        .delete_secret(Deletion::scheduled("s", None))
        .await
        .unwrap();
    let err = f
        .secrets
        .rotate_secret(rotate("s", &token("x"), Some(generated()), None))
        .await
        .err();
    assert!(
        matches!(&err, Some(SecretsError::InvalidRequest(m)) if m == "secret s is marked for deletion"),
        "{err:?}"
    );
}
