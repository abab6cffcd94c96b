//! Rotation through a real server on 127.0.0.1 (rules Rotation 1-6 in `service::secrets`): the
//! generated and exec rotators, failures that leave AWSCURRENT alone, the incomplete-rotation
//! check, cancellation, a crash in the middle of a rotation, and the KMS key-rotation API.

mod common;

use common::rotation::{
    self, describe, exec, generated, rotate, schedule, wait_failed, wait_rotated,
};
use common::secrets::{self, expect, stages, token};
use common::*;
use keyward::api::pb;
use std::path::Path;
use tonic::Code;

/// An exec rotator that logs "<step> <token>" to steps.log beside itself, prints
/// "value-for-<token>" at create_secret, checks that set_secret receives that value on stdin,
/// blocks once in set_secret while `block-set` exists, and fails test_secret while `fail-test`
/// exists.
fn recorder(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("recorder.sh");
    rotation::script(
        &path,
        r#"here=$(dirname "$0")
input=$(cat)
echo "$KEYWARD_STEP $KEYWARD_VERSION_ID" >> "$here/steps.log"
case "$KEYWARD_STEP" in
  create_secret) echo "value-for-$KEYWARD_VERSION_ID" ;;
  set_secret)
    if [ -e "$here/block-set" ]; then
      rm "$here/block-set"; echo $$ > "$here/set.pid"; touch "$here/set-reached"; sleep 60
    fi
    case "$input" in
      *"\"pending\":{\"secret_string\":\"value-for-$KEYWARD_VERSION_ID\"}"*) ;;
      *) echo "set_secret did not receive the pending value" >&2; exit 3 ;;
    esac ;;
  test_secret)
    if [ -e "$here/fail-test" ]; then echo "the target refused the new value" >&2; exit 1; fi ;;
esac"#,
    );
    path
}

/// A server with the recorder as exec rotator "recorder" (time limit `timeout_secs`) and a
/// secret "svc" holding "v0". Returns the server, a client, the first version and the
/// configuration's exec table (to restart with).
async fn with_recorder(dir: &Path, timeout_secs: u64) -> (Server, secrets::Sm, String, String) {
    let table = rotation::exec_table("recorder", &recorder(dir), timeout_secs);
    let server = rotation::server(dir, &table);
    let mut sm = secrets::client(&server).await;
    let first = secrets::create(&mut sm, "svc", Some("v0"))
        .await
        .version_id
        .unwrap();
    (server, sm, first, table)
}

fn steps(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("steps.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn expected_steps(token: &str, steps: &[&str]) -> Vec<String> {
    steps.iter().map(|s| format!("{s} {token}")).collect()
}

#[tokio::test]
async fn generated_rotation_moves_the_labels_and_reports_the_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let server = rotation::server(dir.path(), "");
    let mut sm = secrets::client(&server).await;
    let first = secrets::create(
        &mut sm,
        "app/db",
        Some(r#"{"username":"app","password":"old"}"#),
    )
    .await
    .version_id
    .unwrap();

    let t = token("gen");
    let template = r#"{"username":"app","password":"{{generate}}"}"#;
    let reply = rotate(
        &mut sm,
        "app/db",
        &t,
        Some(generated(template)),
        Some(schedule("rate(30 days)")),
    )
    .await
    .unwrap();
    assert_eq!(reply.version_id, t);
    wait_rotated(&mut sm, "app/db", &t).await;

    // Rule Rotation 2-3: AWSCURRENT on the new version, AWSPREVIOUS on the old, no AWSPENDING.
    assert_eq!(
        stages(&mut sm, "app/db").await,
        expect(&[(&first, &["AWSPREVIOUS"]), (&t, &["AWSCURRENT"])])
    );
    let value: serde_json::Value =
        serde_json::from_str(&secrets::value(&mut sm, "app/db", "AWSCURRENT").await).unwrap();
    assert_eq!(value["username"], "app");
    let password = value["password"].as_str().unwrap();
    assert_eq!(password.len(), 32);
    assert_ne!(password, "old");

    let d = describe(&mut sm, "app/db").await;
    assert!(d.rotation_enabled);
    assert_eq!(
        d.rotation_rules.unwrap().schedule_expression,
        "rate(30 days)"
    );
    let last = d.last_rotated_date.expect("last_rotated_date");
    let day = 86_400;
    assert_eq!(d.next_rotation_date, Some(last - last % day + 30 * day));
    assert!(matches!(
        d.rotator.and_then(|r| r.kind),
        Some(pb::rotator_config::Kind::Generated(_))
    ));

    // A second rotation keeps the rules and rotator; the first value's version is now unlabelled.
    let t2 = token("gen2");
    rotate(&mut sm, "app/db", &t2, None, None).await.unwrap();
    wait_rotated(&mut sm, "app/db", &t2).await;
    assert_eq!(
        stages(&mut sm, "app/db").await,
        expect(&[
            (&first, &[]),
            (&t, &["AWSPREVIOUS"]),
            (&t2, &["AWSCURRENT"])
        ])
    );
}

#[tokio::test]
async fn bad_rotation_requests_are_refused_with_the_aws_exceptions() {
    let dir = tempfile::tempdir().unwrap();
    let server = rotation::server(dir.path(), "");
    let mut sm = secrets::client(&server).await;
    secrets::create(&mut sm, "s", Some("v")).await;
    let g = || Some(generated(""));

    for (rules, what) in [
        (
            schedule("rate(1 hours)"),
            "more often than every four hours",
        ),
        (
            schedule("cron(0 0 1 * 2 *)"),
            "day-of-month and day-of-week",
        ),
        (schedule("every day"), "not a schedule"),
    ] {
        let err = rotate(&mut sm, "s", &token("bad"), g(), Some(rules))
            .await
            .unwrap_err();
        assert_error(&err, Code::InvalidArgument, "InvalidParameterException");
        assert!(
            err.message().starts_with("rotation_rules"),
            "{what}: {}",
            err.message()
        );
    }
    let err = rotate(&mut sm, "s", &token("x"), Some(exec("nope")), None)
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "InvalidParameterException");
    assert!(
        err.message().contains("no exec rotator named \"nope\""),
        "{}",
        err.message()
    );
    let err = rotate(&mut sm, "s", &token("x"), None, None)
        .await
        .unwrap_err();
    assert_error(&err, Code::InvalidArgument, "InvalidParameterException");
    let err = sm
        .cancel_rotate_secret(pb::CancelRotateSecretRequest {
            secret_id: "s".into(),
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "InvalidRequestException");
    let err = rotate(&mut sm, "missing", &token("x"), g(), None)
        .await
        .unwrap_err();
    assert_error(&err, Code::NotFound, "ResourceNotFoundException");

    // Nothing was created by the refused requests.
    assert_eq!(stages(&mut sm, "s").await.len(), 1);

    // Rule Deletion 2: a secret marked for deletion does not rotate.
    sm.delete_secret(pb::DeleteSecretRequest {
        secret_id: "s".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let err = rotate(&mut sm, "s", &token("x"), g(), None)
        .await
        .unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "InvalidRequestException");
}

#[tokio::test]
async fn exec_steps_arrive_in_order_and_a_failure_leaves_awscurrent_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut sm, first, _) = with_recorder(dir.path(), 10).await;

    std::fs::write(dir.path().join("fail-test"), "").unwrap();
    let t = token("exec");
    rotate(&mut sm, "svc", &t, Some(exec("recorder")), None)
        .await
        .unwrap();
    let status = wait_failed(&mut sm, "svc", "test_secret").await;
    assert_eq!(status.version_id, t);
    assert!(
        status
            .last_error
            .contains("the target refused the new value"),
        "{status:?}"
    );

    // Rule Rotation 4: clients still read the old value; AWSPENDING holds the new one.
    assert_eq!(secrets::value(&mut sm, "svc", "AWSCURRENT").await, "v0");
    assert_eq!(
        secrets::value(&mut sm, "svc", "AWSPENDING").await,
        format!("value-for-{t}")
    );
    assert_eq!(
        stages(&mut sm, "svc").await,
        expect(&[(&first, &["AWSCURRENT"]), (&t, &["AWSPENDING"])])
    );

    // Rule Rotation 3: another rotation is refused while this one is unfinished.
    let err = rotate(&mut sm, "svc", &token("other"), None, None)
        .await
        .unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "InvalidRequestException");
    assert!(
        err.message().contains("isn't complete"),
        "{}",
        err.message()
    );
    // The same token again is the same rotation: accepted, nothing new.
    assert_eq!(
        rotate(&mut sm, "svc", &t, None, None)
            .await
            .unwrap()
            .version_id,
        t
    );

    // The target recovers; the scheduler's retry finishes the rotation.
    std::fs::remove_file(dir.path().join("fail-test")).unwrap();
    wait_rotated(&mut sm, "svc", &t).await;
    assert_eq!(
        secrets::value(&mut sm, "svc", "AWSCURRENT").await,
        format!("value-for-{t}")
    );
    assert_eq!(
        stages(&mut sm, "svc").await,
        expect(&[(&first, &["AWSPREVIOUS"]), (&t, &["AWSCURRENT"])])
    );
    let log = steps(dir.path());
    let failures = log.iter().filter(|l| l.starts_with("test_secret")).count();
    assert!(failures >= 2, "{log:?}");
    let mut expected = expected_steps(&t, &["create_secret", "set_secret"]);
    expected.extend(expected_steps(&t, &vec!["test_secret"; failures]));
    expected.extend(expected_steps(&t, &["finish_secret"]));
    assert_eq!(log, expected);
}

#[tokio::test]
async fn a_hanging_exec_rotator_is_stopped_at_its_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let hang = dir.path().join("hang.sh");
    // The program leaves a child behind: the whole process group must go.
    rotation::script(
        &hang,
        r#"sleep 300 & echo $! > "$(dirname "$0")/sleep.pid"; wait"#,
    );
    let server = rotation::server(dir.path(), &rotation::exec_table("hang", &hang, 1));
    let mut sm = secrets::client(&server).await;
    secrets::create(&mut sm, "svc", Some("v0")).await;

    rotate(&mut sm, "svc", &token("hang"), Some(exec("hang")), None)
        .await
        .unwrap();
    let status = wait_failed(&mut sm, "svc", "create_secret").await;
    assert!(
        status.last_error.contains("still running after 1s"),
        "{status:?}"
    );
    assert_eq!(secrets::value(&mut sm, "svc", "AWSCURRENT").await, "v0");

    let pid = std::fs::read_to_string(dir.path().join("sleep.pid")).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    wait_for(
        "the program's child to be killed",
        std::time::Duration::from_secs(10),
        || {
            // Gone, or a zombie waiting for init to reap it.
            let state = std::fs::read_to_string(&stat).unwrap_or_default();
            let dead = state.is_empty()
                || state
                    .rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'));
            async move { dead }
        },
    )
    .await;
}

#[tokio::test]
async fn a_crash_mid_rotation_resumes_after_restart_and_rotates_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut sm, first, table) = with_recorder(dir.path(), 30).await;

    std::fs::write(dir.path().join("block-set"), "").unwrap();
    let t = token("crash");
    rotate(&mut sm, "svc", &t, Some(exec("recorder")), None)
        .await
        .unwrap();
    wait_for("set_secret to start", ROTATION_WAIT, || {
        let reached = dir.path().join("set-reached").exists();
        async move { reached }
    })
    .await;
    server.kill();
    // The killed server's program would sleep on: end it as a crash would.
    let pid = std::fs::read_to_string(dir.path().join("set.pid")).unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", pid.trim())])
        .status();

    let server = rotation::server(dir.path(), &table);
    let mut sm = secrets::client(&server).await;
    wait_rotated(&mut sm, "svc", &t).await;
    assert_eq!(
        stages(&mut sm, "svc").await,
        expect(&[(&first, &["AWSPREVIOUS"]), (&t, &["AWSCURRENT"])])
    );
    assert_eq!(
        secrets::value(&mut sm, "svc", "AWSCURRENT").await,
        format!("value-for-{t}")
    );
    // create_secret's success was recorded before the crash: it did not run again.
    assert_eq!(
        steps(dir.path()),
        expected_steps(
            &t,
            &[
                "create_secret",
                "set_secret",
                "set_secret",
                "test_secret",
                "finish_secret"
            ]
        )
    );
}

#[tokio::test]
async fn cancel_stops_the_rotation_and_leaves_the_labels() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, mut sm, first, _) = with_recorder(dir.path(), 10).await;
    std::fs::write(dir.path().join("fail-test"), "").unwrap();
    let t = token("cancel");
    rotate(
        &mut sm,
        "svc",
        &t,
        Some(exec("recorder")),
        Some(schedule("rate(10 days)")),
    )
    .await
    .unwrap();
    wait_failed(&mut sm, "svc", "test_secret").await;

    let reply = sm
        .cancel_rotate_secret(pb::CancelRotateSecretRequest {
            secret_id: "svc".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.version_id, t);
    let d = describe(&mut sm, "svc").await;
    assert!(!d.rotation_enabled);
    assert!(d.rotation_status.is_none());
    assert_eq!(d.next_rotation_date, None);
    // Rule Rotation 5: labels stay; the next RotateSecret reports the unfinished rotation.
    assert_eq!(
        stages(&mut sm, "svc").await,
        expect(&[(&first, &["AWSCURRENT"]), (&t, &["AWSPENDING"])])
    );
    let err = rotate(&mut sm, "svc", &token("again"), None, None)
        .await
        .unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "InvalidRequestException");
}

#[tokio::test]
async fn key_rotation_settings_follow_aws_kms() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut kms = server.kms().await;
    let key = create_key(&mut kms, "rotating").await;
    let status = |kms: &mut Kms| {
        let key_id = key.key_id.clone();
        let mut kms = kms.clone();
        async move {
            kms.get_key_rotation_status(pb::GetKeyRotationStatusRequest { key_id })
                .await
                .unwrap()
                .into_inner()
        }
    };
    assert!(!status(&mut kms).await.key_rotation_enabled);

    for days in [89, 2561] {
        let err = kms
            .enable_key_rotation(pb::EnableKeyRotationRequest {
                key_id: key.key_id.clone(),
                rotation_period_in_days: Some(days),
            })
            .await
            .unwrap_err();
        assert_error(&err, Code::InvalidArgument, "ValidationException");
    }
    kms.enable_key_rotation(pb::EnableKeyRotationRequest {
        key_id: key.key_id.clone(),
        rotation_period_in_days: None,
    })
    .await
    .unwrap();
    let s = status(&mut kms).await;
    assert!(s.key_rotation_enabled);
    assert_eq!(s.rotation_period_in_days, Some(365));
    assert_eq!(s.next_rotation_date, Some(key.creation_date + 365 * 86_400));

    kms.disable_key(pb::DisableKeyRequest {
        key_id: key.key_id.clone(),
    })
    .await
    .unwrap();
    let err = kms
        .disable_key_rotation(pb::DisableKeyRotationRequest {
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
    kms.disable_key_rotation(pb::DisableKeyRotationRequest {
        key_id: key.key_id.clone(),
    })
    .await
    .unwrap();
    let s = status(&mut kms).await;
    assert!(!s.key_rotation_enabled);
    assert_eq!(s.next_rotation_date, None);
}

const ROTATION_WAIT: std::time::Duration = rotation::ROTATION_TIMEOUT;

/// Security findings 2 and 7, exec rotators: a program may be attached only to the secrets its
/// configuration names; it starts with an empty environment plus the allowlist (never the
/// server's PIN or access keys); `KEYWARD_VERSION_ID` is the pending version and
/// `KEYWARD_TOKEN` a credential for its step only — that secret, that step's actions, revoked
/// when the step ends; and why it failed is shown only to callers who may read the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_rotators_reach_only_their_secret_with_a_bare_environment() {
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path();
    let probe = here.join("probe.sh");
    rotation::script(
        &probe,
        &format!(
            r#"here={here}
env > "$here/env-$KEYWARD_STEP"
if [ "$KEYWARD_STEP" = create_secret ]; then
  echo -n "$KEYWARD_TOKEN" > "$here/token"
  {bin} secrets get "$KEYWARD_SECRET_ID" > /dev/null 2> "$here/own-err" && echo own-read-ok >> "$here/results"
  {bin} secrets get ops/other > /dev/null 2> "$here/other-err" || echo other-read-refused >> "$here/results"
  echo "rotated-value"
fi
if [ "$KEYWARD_STEP" = test_secret ] && [ -e "$here/fail-test" ]; then
  echo "db said: password rejected" >&2; exit 1
fi"#,
            here = here.display(),
            bin = common::BIN,
        ),
    );
    use common::auth::token_entry;
    let config = format!(
        "[rotation]\ncheck_interval_ms = 100\nretry_initial_secs = 1\nretry_max_secs = 2\n\
         [rotation.exec.probe]\ncommand = \"{}\"\ntimeout_secs = 30\nsecrets = [\"app/*\"]\nenv = [\"PATH\"]\n\
         [rotation.exec.unscoped]\ncommand = \"{}\"\n\
         [auth]\n{}{}\
         [[auth.policies]]\nname = \"ops\"\nprincipals = [\"ops\"]\n\
         document = '''{{\"Version\":\"2012-10-17\",\"Statement\":[{{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"}}]}}'''\n\
         [[auth.policies]]\nname = \"lister\"\nprincipals = [\"lister\"]\n\
         document = '''{{\"Version\":\"2012-10-17\",\"Statement\":[{{\"Effect\":\"Allow\",\"Action\":[\"secretsmanager:ListSecrets\",\"secretsmanager:DescribeSecret\"],\"Resource\":\"*\"}}]}}'''\n",
        probe.display(),
        probe.display(),
        token_entry("ops"),
        token_entry("lister"),
    );
    let server = Server::with_config_via(
        &[
            "env",
            "KEYWARD_PKCS11_PIN=server-pin-1234",
            "KEYWARD_AWS_SECRET=server-aws-secret",
        ],
        &here.join("data"),
        &config,
    );
    let mut ops = secrets::client_with_token(&server, "token-ops").await;
    let mut lister = secrets::client_with_token(&server, "token-lister").await;
    secrets::create(&mut ops, "app/x", Some("v0")).await;
    secrets::create(&mut ops, "ops/other", Some("not for the rotator")).await;

    // Attached only where the configuration says, and nowhere without `secrets`.
    for (secret, rotator) in [("ops/other", "probe"), ("app/x", "unscoped")] {
        let refused = rotate(&mut ops, secret, &token("nope"), Some(exec(rotator)), None)
            .await
            .unwrap_err();
        assert_error(&refused, Code::InvalidArgument, "InvalidParameterException");
        assert!(
            refused.message().contains("may not be attached"),
            "{refused:?}"
        );
    }

    let t = token("probe");
    rotate(&mut ops, "app/x", &t, Some(exec("probe")), None)
        .await
        .unwrap();
    wait_rotated(&mut ops, "app/x", &t).await;
    assert_eq!(
        secrets::value(&mut ops, "app/x", "AWSCURRENT").await,
        "rotated-value"
    );

    let env = std::fs::read_to_string(here.join("env-create_secret")).unwrap();
    let vars: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    assert!(env.contains(&format!("KEYWARD_VERSION_ID={t}")), "{env}");
    assert!(
        !env.contains("server-pin-1234") && !env.contains("server-aws-secret"),
        "{env}"
    );
    for var in &vars {
        assert!(
            var.starts_with("KEYWARD_") || ["PATH", "PWD", "SHLVL", "_"].contains(var),
            "{var} leaked into the rotator's environment:\n{env}"
        );
    }
    for var in ["KEYWARD_PKCS11_PIN", "KEYWARD_AWS_SECRET"] {
        assert!(!vars.contains(&var), "{var} leaked:\n{env}");
    }
    // The step's credential reads its own secret and nothing else.
    let results = std::fs::read_to_string(here.join("results")).unwrap_or_default();
    assert!(
        results.contains("own-read-ok"),
        "{results}: {}",
        std::fs::read_to_string(here.join("own-err")).unwrap_or_default()
    );
    assert!(results.contains("other-read-refused"), "{results}");
    let other_err = std::fs::read_to_string(here.join("other-err")).unwrap();
    assert!(other_err.contains("AccessDeniedException"), "{other_err}");
    // Revoked with its step.
    let step_token = std::fs::read_to_string(here.join("token")).unwrap();
    assert_eq!(step_token.len(), 64, "a 256-bit credential");
    let mut replay = secrets::client_with_token(&server, &step_token).await;
    let after = replay
        .get_secret_value(pb::GetSecretValueRequest {
            secret_id: "app/x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(after.code(), Code::Unauthenticated, "{after:?}");

    // A failed step's stderr: shown to a caller who may read the secret, not to a lister.
    std::fs::write(here.join("fail-test"), "").unwrap();
    rotate(&mut ops, "app/x", &token("fails"), None, None)
        .await
        .unwrap();
    let status = rotation::wait_failed(&mut ops, "app/x", "test_secret").await;
    assert!(
        status.last_error.contains("password rejected"),
        "{status:?}"
    );
    let seen = rotation::describe(&mut lister, "app/x")
        .await
        .rotation_status
        .expect("in flight");
    assert!(!seen.last_error.contains("password rejected"), "{seen:?}");
    assert_eq!(seen.step, "test_secret");
    let listed = lister
        .list_secrets(pb::ListSecretsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .secret_list;
    let entry = listed.iter().find(|e| e.name == "app/x").expect("listed");
    let shown = entry.rotation_status.as_ref().expect("in flight");
    assert!(!shown.last_error.contains("password rejected"), "{shown:?}");
}
