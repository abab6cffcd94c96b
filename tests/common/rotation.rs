//! Helpers for rotation tests: a server whose configuration sets the scheduler's pace and
//! names exec rotators, and calls that wait for a rotation to end.
#![allow(dead_code)]

use super::Server;
use super::secrets::Sm;
use keyward::api::pb::{self, rotator_config::Kind};
use std::path::Path;
use std::time::Duration;
use tonic::Status;

/// How long a rotation may take in a test before it counts as stuck.
pub const ROTATION_TIMEOUT: Duration = Duration::from_secs(60);

/// A server on the suite's root of trust, with a fast scheduler (checks every 100 ms, retries
/// after 1 s) and `extra` appended to its configuration (e.g. `[rotation.exec.NAME]` tables).
pub fn server(dir: &Path, extra: &str) -> Server {
    Server::with_config(
        &dir.join("data"),
        &format!(
            "[rotation]\ncheck_interval_ms = 100\nretry_initial_secs = 1\nretry_max_secs = 2\n{extra}"
        ),
    )
}

/// An `[rotation.exec.NAME]` table that lets the program rotate any secret.
pub fn exec_table(name: &str, command: &Path, timeout_secs: u64) -> String {
    format!(
        "[rotation.exec.{name}]\ncommand = \"{}\"\ntimeout_secs = {timeout_secs}\nsecrets = [\"*\"]\n",
        command.display()
    )
}

/// Writes an executable script.
pub fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/bash\nset -eu\n{body}\n")).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

pub fn exec(name: &str) -> pb::RotatorConfig {
    pb::RotatorConfig {
        kind: Some(Kind::Exec(pb::ExecRotator { name: name.into() })),
    }
}

pub fn generated(template: &str) -> pb::RotatorConfig {
    pb::RotatorConfig {
        kind: Some(Kind::Generated(pb::GeneratedRotator {
            password: None,
            template: template.into(),
        })),
    }
}

pub fn postgresql(strategy: &str, admin_secret_id: &str) -> pb::RotatorConfig {
    pb::RotatorConfig {
        kind: Some(Kind::Postgresql(pb::PostgresqlRotator {
            strategy: strategy.into(),
            admin_secret_id: admin_secret_id.into(),
            password: None,
        })),
    }
}

pub fn schedule(expression: &str) -> pb::RotationRulesType {
    pb::RotationRulesType {
        automatically_after_days: None,
        schedule_expression: expression.into(),
        duration: String::new(),
    }
}

/// RotateSecret now, with this token and rotator (and no schedule unless given).
pub async fn rotate(
    sm: &mut Sm,
    secret: &str,
    token: &str,
    rotator: Option<pb::RotatorConfig>,
    rules: Option<pb::RotationRulesType>,
) -> Result<pb::RotateSecretResponse, Status> {
    sm.rotate_secret(pb::RotateSecretRequest {
        secret_id: secret.into(),
        client_request_token: token.into(),
        rotation_rules: rules,
        rotator,
        rotate_immediately: None,
    })
    .await
    .map(|r| r.into_inner())
}

pub async fn describe(sm: &mut Sm, secret: &str) -> pb::DescribeSecretResponse {
    sm.describe_secret(pb::DescribeSecretRequest {
        secret_id: secret.into(),
    })
    .await
    .expect("describe secret")
    .into_inner()
}

/// Waits until the rotation whose pending version is `version` has finished: nothing in
/// flight and AWSCURRENT on that version.
pub async fn wait_rotated(sm: &mut Sm, secret: &str, version: &str) {
    let deadline = std::time::Instant::now() + ROTATION_TIMEOUT;
    loop {
        let d = describe(sm, secret).await;
        let current = d
            .version_ids_to_stages
            .get(version)
            .is_some_and(|s| s.stages.iter().any(|s| s == "AWSCURRENT"));
        if current && d.rotation_status.is_none() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rotation to {version} did not finish: {:?}",
            d.rotation_status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the rotation in flight has failed at `step` at least once; returns its status.
pub async fn wait_failed(sm: &mut Sm, secret: &str, step: &str) -> pb::RotationStatus {
    let deadline = std::time::Instant::now() + ROTATION_TIMEOUT;
    loop {
        let d = describe(sm, secret).await;
        if let Some(status) = d.rotation_status
            && status.failed_attempts > 0
        {
            assert_eq!(status.step, step, "{status:?}");
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failure at {step} was recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
