//! Hostile input at the edges, on real servers: an AWS endpoint that would make the published
//! development key an administrator on the network is refused at start, and so is a setting the
//! server cannot use, naming its key; policy condition keys
//! Keyward does not supply are refused when a policy is put or loaded; over-long identifiers are
//! refused before any lookup, policy or audit work, and their audit records stay bounded;
//! oversized gRPC messages never reach a handler.

mod common;

use common::audit_records;
use common::auth::token_entry;

use common::secrets::{self, Sm};
use common::{Server, assert_error};
use keyward::api::pb;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use tonic::Code;

/// Runs `keyward serve ARGS` and returns its stderr once it exits; panics if it starts serving.
fn refused_start(args: &[&str]) -> String {
    let mut child = Command::new(common::BIN)
        .arg("serve")
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("KEYWARD_CONFIG")
        .env_remove("KEYWARD_LISTEN")
        .env_remove("KEYWARD_AWS_LISTEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keyward serve");
    let stdout = child.stdout.take().expect("stdout");
    // Ends at EOF (the process exited) or at the line saying it serves.
    let started = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.starts_with("keyward listening on"));
    if started {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server started with {args:?}");
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "{stderr}");
    stderr
}

#[test]
fn a_network_aws_endpoint_without_auth_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("open.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\nallow_plaintext_on_network = true\naws_listen = \"0.0.0.0:0\"\n\
             [root_of_trust]\ntype = \"development\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    // From the file, and from the command line over a loopback file setting.
    for args in [
        &["--config", config, "--listen", "127.0.0.1:0"][..],
        &[
            "--config",
            config,
            "--listen",
            "127.0.0.1:0",
            "--aws-listen",
            "[::]:0",
        ][..],
    ] {
        let stderr = refused_start(args);
        assert!(stderr.contains("aws_listen"), "{stderr}");
        assert!(stderr.contains("[auth]"), "{stderr}");
    }
}

const DENY_BY_PRINCIPAL_ARN: &str = r#"{"Version":"2012-10-17","Statement":[
    {"Effect":"Allow","Principal":{"AWS":"keyward:principal/app"},"Action":"secretsmanager:GetSecretValue","Resource":"*"},
    {"Effect":"Deny","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*",
     "Condition":{"StringEquals":{"aws:PrincipalArn":"keyward:principal/app"}}}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn condition_keys_keyward_does_not_supply_are_refused_when_a_policy_is_put() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut sm: Sm = secrets::client(&server).await;
    secrets::create(&mut sm, "guarded/db", Some("v")).await;

    let put = sm
        .put_resource_policy(pb::PutResourcePolicyRequest {
            secret_id: "guarded/db".into(),
            resource_policy: DENY_BY_PRINCIPAL_ARN.into(),
            block_public_policy: None,
        })
        .await
        .unwrap_err();
    assert_error(
        &put,
        Code::InvalidArgument,
        "MalformedPolicyDocumentException",
    );
    assert!(put.message().contains("aws:PrincipalArn"), "{put:?}");
    let stored = sm
        .get_resource_policy(pb::GetResourcePolicyRequest {
            secret_id: "guarded/db".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.resource_policy, None, "nothing stored");

    let validated = sm
        .validate_resource_policy(pb::ValidateResourcePolicyRequest {
            secret_id: None,
            resource_policy: DENY_BY_PRINCIPAL_ARN
                .replace("aws:PrincipalArn", "secretsmanager:ResourceTag/team"),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!validated.policy_validation_passed);
    assert!(
        validated
            .validation_errors
            .iter()
            .any(|e| e.error_message.contains("secretsmanager:ResourceTag/team")),
        "{validated:?}"
    );

    // The keys Keyward supplies, in any case, are accepted.
    let supported =
        DENY_BY_PRINCIPAL_ARN.replace("aws:PrincipalArn", "SecretsManager:versionStage");
    sm.put_resource_policy(pb::PutResourcePolicyRequest {
        secret_id: "guarded/db".into(),
        resource_policy: supported,
        block_public_policy: None,
    })
    .await
    .expect("a policy on secretsmanager:VersionStage");

    let mut kms = server.kms().await;
    let key = common::create_key(&mut kms, "guarded").await.key_id;
    let key_policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"kms:CallerAccount":"000000000000"}}}]}"#;
    let put = kms
        .put_key_policy(pb::PutKeyPolicyRequest {
            key_id: key.clone(),
            policy_name: String::new(),
            policy: key_policy.into(),
            bypass_policy_lockout_safety_check: false,
        })
        .await
        .unwrap_err();
    assert_error(
        &put,
        Code::InvalidArgument,
        "MalformedPolicyDocumentException",
    );
    let policy = kms
        .get_key_policy(pb::GetKeyPolicyRequest {
            key_id: key,
            policy_name: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .policy;
    assert!(!policy.contains("CallerAccount"), "{policy}");
}

#[test]
fn an_identity_policy_with_an_unsupplied_condition_key_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("policy.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[root_of_trust]\ntype = \"development\"\n[auth]\n\
             [[auth.policies]]\nname = \"ops\"\nprincipals = [\"ops\"]\n\
             document = '''{{\"Statement\":[{{\"Effect\":\"Deny\",\"Action\":\"*\",\"Resource\":\"*\",\
             \"Condition\":{{\"StringNotEquals\":{{\"aws:SourceIp\":\"10.0.0.1\"}}}}}}]}}'''\n",
            data.display()
        ),
    )
    .unwrap();
    let log = match Server::try_spawn(&data, &["--config", config.to_str().unwrap()], &[]) {
        Ok(_) => panic!("the server started with a policy on aws:SourceIp"),
        Err(log) => log,
    };
    assert!(log.contains("auth.policies \"ops\""), "{log}");
    assert!(log.contains("aws:SourceIp"), "{log}");
}

async fn as_principal(server: &Server, principal: &str) -> common::secrets::Sm {
    common::auth::clients(server, principal).await.0
}

/// A signed AWS JSON 1.1 POST: (HTTP status, body).
fn aws_post(
    server: &Server,
    target: &str,
    body: &[u8],
    key: (&str, &str),
) -> (u16, serde_json::Value) {
    use common::aws::{now, post, signed};
    post(
        server,
        &signed(server, target, body, key, "local", now()),
        body,
    )
}

/// Asserts the one record is the refusal of `long_id`, with its resource cut and marked.
fn assert_bounded_refusal(record: &serde_json::Value, long_id: &str) {
    assert_eq!(record["error"], "InvalidParameterException", "{record}");
    assert_eq!(record["principal"], "keyward:principal/nobody", "{record}");
    let resource = record["resource"].as_str().expect("resource");
    assert!(
        resource.len() < long_id.len(),
        "resource not capped: {} bytes",
        resource.len()
    );
    assert!(resource.contains("truncated"), "{resource}");
    assert!(resource.starts_with(&long_id[..64]), "{resource}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_long_identifiers_are_refused_before_lookup_and_audited_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key_file = dir.path().join("nobody.secret");
    std::fs::write(&key_file, "nobody-secret-access-key\n").unwrap();
    let config = format!(
        "[auth]\n{}{}[[auth.policies]]\nname = \"auditor\"\nprincipals = [\"auditor\"]\n\
         document = '{{\"Statement\":[{{\"Effect\":\"Allow\",\"Action\":\"keyward:*\",\"Resource\":\"*\"}}]}}'\n\
         [[auth.access_keys]]\nprincipal = \"nobody\"\naccess_key_id = \"AKIANOBODY0000000001\"\nsecret_key_file = \"{}\"\n",
        token_entry("nobody"),
        token_entry("auditor"),
        key_file.display()
    );
    let server = Server::with_config(&data, &config);
    let long_id = "a".repeat(4096);

    // gRPC, from a principal no policy names.
    let mut sm = as_principal(&server, "nobody").await;
    let refused = sm
        .get_secret_value(pb::GetSecretValueRequest {
            secret_id: long_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&refused, Code::InvalidArgument, "InvalidParameterException");
    let records = audit_records(&data, "secretsmanager:GetSecretValue");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_bounded_refusal(&records[0], &long_id);
    // An over-long version stage too, on a secret id of a valid length.
    let refused = sm
        .get_secret_value(pb::GetSecretValueRequest {
            secret_id: "app/db".into(),
            version_stage: "S".repeat(300),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&refused, Code::InvalidArgument, "InvalidParameterException");
    // Handlers that keep their admission (to decide more per item) are bounded alike.
    let refused = sm
        .describe_secret(pb::DescribeSecretRequest {
            secret_id: long_id.clone(),
        })
        .await
        .unwrap_err();
    assert_error(&refused, Code::InvalidArgument, "InvalidParameterException");
    let refused = sm
        .rotate_secret(pb::RotateSecretRequest {
            secret_id: long_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&refused, Code::InvalidArgument, "InvalidParameterException");

    // The AWS front door, the same principal by its access key.
    let body = serde_json::json!({ "SecretId": long_id }).to_string();
    let (status, reply) = aws_post(
        &server,
        "secretsmanager.DescribeSecret",
        body.as_bytes(),
        ("AKIANOBODY0000000001", "nobody-secret-access-key"),
    );
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["__type"], "InvalidParameterException", "{reply}");
    let records: Vec<_> = audit_records(&data, "secretsmanager:DescribeSecret")
        .into_iter()
        .filter(|r| r["api"] == "aws-json")
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_bounded_refusal(&records[0], &long_id);

    // A message larger than any valid request is refused by the decoder, before any handler:
    // no audit record.
    let huge = sm
        .create_secret(pb::CreateSecretRequest {
            name: "huge".into(),
            secret_string: Some("x".repeat(1024 * 1024)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(huge.code(), Code::OutOfRange, "{huge:?}");
    assert!(audit_records(&data, "secretsmanager:CreateSecret").is_empty());

    // A crash after such traffic: the server restarts on the same data and the log verifies.
    let config_path = data.with_extension("toml");
    let mut server = server;
    let tpm = server.swtpm.take();
    server.kill();
    let mut server = Server::try_spawn(&data, &["--config", config_path.to_str().unwrap()], &[])
        .expect("restart after a crash");
    server.swtpm = tpm;
    let (ok, text) = common::audit_verify(
        &server,
        &data.join("audit").join("audit.log"),
        &["--token", "token-auditor", "--allow-unsealed-tail"],
    );
    assert!(ok, "{text}");
}

/// Typed configuration: a value the server cannot use stops the start, and the error names the
/// key and what it accepts, rather than the server running on a clamped or guessed value.
#[test]
fn unusable_settings_are_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    let data = dir.path().join("data");
    for (extra, named, accepted) in [
        (
            "[health]\ncheck_interval_ms = 50",
            "health.check_interval_ms",
            "at least 100ms",
        ),
        (
            "[rotation]\nstep_timeout_secs = 0",
            "rotation.step_timeout_secs",
            "at least 1s",
        ),
        (
            "[kms]\ndeletion_check_interval_secs = \"2 days\"",
            "deletion_check_interval_secs",
            "\"30s\"",
        ),
        (
            "[[alarms.rule]]\nname = \"r\"\nkind = \"first_read\"\nthreshold = 1",
            "first_read",
            "takes no threshold",
        ),
    ] {
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\n[root_of_trust]\ntype = \"development\"\n{extra}\n",
                data.display()
            ),
        )
        .unwrap();
        let stderr = refused_start(&[
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ]);
        assert!(stderr.contains(named), "{extra}: {stderr}");
        assert!(stderr.contains(accepted), "{extra}: {stderr}");
    }
    // Nothing was made for the development token of a configuration that was refused.
    assert!(!data.join("softhsm").exists());
    let stderr = refused_start(&["--data-dir", data.to_str().unwrap(), "--aws-listen", "on"]);
    assert!(stderr.contains("--aws-listen"), "{stderr}");
    assert!(stderr.contains("\"off\""), "{stderr}");
}
