//! The audit trail on a real server: one record per request with no secret in it, verified by
//! `keyward audit verify` against the server's root of trust; every kind of tampering found and
//! located; and requests failing closed when the log cannot be written.

mod common;

use base64::Engine;
use common::secrets::{self, Sm};
use common::{Server, assert_error, audit_verify as verify};
use keyward::api::pb;
use std::path::{Path, PathBuf};
use tonic::Code;

fn audit_log(server: &Server) -> PathBuf {
    server.data_dir.join("audit").join("audit.log")
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

/// The line number (1-based) of the first request record for `action`.
fn line_of(lines: &[String], action: &str) -> usize {
    lines
        .iter()
        .position(|l| l.contains(&format!("\"action\":\"{action}\"")))
        .unwrap_or_else(|| panic!("no {action} record"))
        + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trail_verifies_holds_no_secrets_and_every_tampering_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let mut server =
        Server::with_config(&dir.path().join("data"), "[audit]\ncheckpoint_every = 4\n");
    let mut sm: Sm = secrets::client(&server).await;
    let mut kms = server.kms().await;
    let mut written = Vec::new();
    for i in 0..3 {
        let value = format!("s3cret-value-{i}-{}", uuid::Uuid::new_v4());
        secrets::create(&mut sm, &format!("audited/{i}"), Some(&value)).await;
        written.push(value);
    }
    for (i, value) in written.iter().enumerate() {
        let read = sm
            .get_secret_value(pb::GetSecretValueRequest {
                secret_id: format!("audited/{i}"),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(read.secret_string.as_deref(), Some(value.as_str()));
    }
    let key = common::create_key(&mut kms, "audited").await.key_id;
    let plaintext = format!("kms-plaintext-{}", uuid::Uuid::new_v4());
    let blob = common::encrypt(
        &mut kms,
        &key,
        plaintext.as_bytes(),
        &[("purpose", "audit")],
    )
    .await;
    common::decrypt(&mut kms, &blob, &[("purpose", "audit")])
        .await
        .unwrap();
    let data_key = kms
        .generate_data_key(pb::GenerateDataKeyRequest {
            key_id: key.clone(),
            key_spec: "AES_256".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .plaintext;
    // A failed request is recorded too, with its exception name.
    let missing = sm
        .get_secret_value(pb::GetSecretValueRequest {
            secret_id: "audited/missing".into(),
            ..Default::default()
        })
        .await;
    assert_error(
        &missing.unwrap_err(),
        Code::NotFound,
        "ResourceNotFoundException",
    );

    let log = audit_log(&server);
    // A live log's newest records wait for the next checkpoint.
    let (ok, output) = verify(&server, &log, &["--allow-unsealed-tail"]);
    assert!(ok, "{output}");
    assert!(
        output.contains("checkpoint MAC(s) checked by the server's root of trust"),
        "{output}"
    );
    assert!(
        output.contains("compared with the server's newest record"),
        "{output}"
    );

    // One record per request, the outcome and exception named; no secret anywhere.
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("\"action\":\"secretsmanager:GetSecretValue\"")
            .count(),
        4,
        "{text}"
    );
    assert!(
        text.contains("\"error\":\"ResourceNotFoundException\""),
        "{text}"
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut forbidden: Vec<String> = written.clone();
    forbidden.push(plaintext.clone());
    forbidden.push(b64.encode(&plaintext));
    forbidden.push(b64.encode(&data_key));
    forbidden.push(keyward::crypto::hex::encode(&data_key));
    forbidden.push(b64.encode(&blob));
    for value in &forbidden {
        assert!(
            !text.contains(value.as_str()),
            "the audit log holds {value}"
        );
    }

    // Checkpoints made before a restart verify after it: the MAC key persists in the root of
    // trust, and the shutdown sealed the tail.
    let data = server.data_dir.clone();
    let tpm = server.swtpm.take();
    server.stop();
    let config = data.with_extension("toml");
    let mut server =
        Server::try_spawn(&data, &["--config", config.to_str().unwrap()], &[]).expect("restart");
    server.swtpm = tpm;
    let (ok, output) = verify(&server, &log, &["--allow-unsealed-tail"]);
    assert!(ok, "after a restart: {output}");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("\"reason\":\"restart\""),
        "no start record for the restart"
    );

    // Tampered copies, each found and located by line. The server's own log stays intact.
    let original = lines(&log);
    let copy = dir.path().join("copy.log");
    let get_line = line_of(&original, "secretsmanager:GetSecretValue");
    let cases: Vec<(&str, Vec<String>, String)> = vec![
        (
            "one byte edited",
            {
                let mut l = original.clone();
                l[get_line - 1] = l[get_line - 1].replace("audited/0", "audited/9");
                l
            },
            format!("line {get_line} "),
        ),
        (
            "a record deleted",
            {
                let mut l = original.clone();
                l.remove(get_line - 1);
                l
            },
            format!("line {get_line} "),
        ),
        (
            "two records swapped",
            {
                let mut l = original.clone();
                l.swap(get_line - 1, get_line);
                l
            },
            format!("line {get_line} "),
        ),
    ];
    for (what, tampered, location) in cases {
        write_lines(&copy, &tampered);
        let (ok, output) = verify(&server, &copy, &[]);
        assert!(!ok, "{what}: passed\n{output}");
        assert!(
            output.contains(&location),
            "{what}: not located at {location}\n{output}"
        );
    }

    // A log rewritten with every hash recomputed passes the chain check; only the checkpoint
    // MACs, which need the root of trust, expose it.
    let mut forged = original.clone();
    forged[get_line - 1] = forged[get_line - 1].replace("audited/0", "audited/9");
    let mut prev: Option<String> = None;
    for line in forged.iter_mut() {
        if let Some(hash) = &prev {
            *line = rechain(line, hash);
        }
        prev = Some(keyward::crypto::hex::encode(&keyward::crypto::sha256(
            line.as_bytes(),
        )));
    }
    write_lines(&copy, &forged);
    let (ok, output) = verify(&server, &copy, &["--offline", "--allow-unsealed-tail"]);
    assert!(
        ok,
        "the chain of a fully rewritten log is consistent: {output}"
    );
    let (ok, output) = verify(&server, &copy, &["--allow-unsealed-tail"]);
    assert!(!ok, "a forged log passed: {output}");
    assert!(output.to_lowercase().contains("mac"), "{output}");

    // The server's own log with its tail cut: the server's newest record is missing.
    let keep = original.len() - 2;
    write_lines(&log, &original[..keep]);
    let (ok, output) = verify(&server, &log, &["--allow-unsealed-tail"]);
    assert!(!ok, "truncation passed: {output}");
    assert!(output.contains("truncat"), "{output}");
}

/// `line` with its `prev` field replaced by `hash` (the field's position is fixed).
fn rechain(line: &str, hash: &str) -> String {
    let start = line.find("\"prev\":\"").expect("prev") + "\"prev\":\"".len();
    format!("{}{hash}{}", &line[..start], &line[start + 64..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_fail_closed_when_the_audit_log_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = "[audit]\ncheckpoint_every = 100000\ncheckpoint_interval_secs = 3600\n";
    {
        let server = Server::with_config(&data, config);
        let mut sm = secrets::client(&server).await;
        secrets::create(&mut sm, "guarded", Some("guarded-value")).await;
        server.stop();
    }
    // The file size limit lets the log grow by a few records only: then writes fail with
    // EFBIG, as on a full disk. The log is padded so the limit is far above the store's files.
    let log = data.join("audit").join("audit.log");
    let tail = std::fs::read(&log).unwrap();
    let mut padded = vec![b'\n'; 32 << 20];
    padded.extend_from_slice(&tail);
    std::fs::write(&log, &padded).unwrap();
    let limit = (padded.len() + 1500).to_string();
    let wrapper = [
        "sh",
        "-c",
        "trap '' XFSZ; exec prlimit --fsize=\"$0\" \"$@\"",
        limit.as_str(),
    ];
    let server = Server::with_config_via(&wrapper, &data, config);
    let mut sm = secrets::client(&server).await;
    let mut refused = None;
    for _ in 0..20 {
        match sm
            .get_secret_value(pb::GetSecretValueRequest {
                secret_id: "guarded".into(),
                ..Default::default()
            })
            .await
        {
            Ok(read) => assert_eq!(
                read.into_inner().secret_string.as_deref(),
                Some("guarded-value")
            ),
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let status = refused.expect("the log filled up, yet every read succeeded");
    assert_error(&status, Code::Unavailable, "InternalServiceError");
    // While the log cannot be written, nothing is done: a write is refused too.
    let put = sm
        .put_secret_value(pb::PutSecretValueRequest {
            secret_id: "guarded".into(),
            secret_string: Some("unaudited".into()),
            ..Default::default()
        })
        .await;
    assert_error(&put.unwrap_err(), Code::Unavailable, "InternalServiceError");
    // No torn record is left behind.
    let bytes = std::fs::read(&log).unwrap();
    assert_eq!(bytes.last(), Some(&b'\n'));
    let last = bytes[..bytes.len() - 1]
        .rsplit(|b| *b == b'\n')
        .next()
        .unwrap();
    serde_json::from_slice::<serde_json::Value>(last).expect("the last line is a whole record");
    drop(server);
    let server = Server::with_config(&data, config);
    let mut sm = secrets::client(&server).await;
    let value = sm
        .get_secret_value(pb::GetSecretValueRequest {
            secret_id: "guarded".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .secret_string;
    assert_eq!(
        value.as_deref(),
        Some("guarded-value"),
        "the refused write changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_cut_while_the_server_was_stopped_stops_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::with_config(&data, "");
    // On a TPM run the same TPM must outlive each server.
    let _tpm = server.swtpm.take();
    let mut sm = secrets::client(&server).await;
    secrets::create(&mut sm, "before-the-cut", Some("v")).await;
    let log = audit_log(&server);
    server.stop();
    let whole = lines(&log);
    write_lines(&log, &whole[..whole.len() - 1]);
    let config = data.with_extension("toml");
    let args = ["--config", config.to_str().unwrap()];
    let refused = Server::try_spawn(&data, &args, &[])
        .err()
        .expect("started on a cut log");
    assert!(refused.contains("cut short or replaced"), "{refused}");
    // Moved aside as the message says: a new log starts and records the gap.
    std::fs::rename(&log, dir.path().join("evidence.log")).unwrap();
    let server = Server::try_spawn(&data, &args, &[]).unwrap();
    let first = lines(&log).remove(0);
    assert!(first.contains("is gone"), "{first}");
    // A crash is not a cut: the log only grew since the start was recorded.
    server.kill();
    Server::try_spawn(&data, &args, &[]).expect("restart after a crash");
}

/// A data directory from an older version, whose store holds the audit head as the text
/// `<seq> <hash>`: it still opens, the text head still catches a cut log, and the trail
/// continues from it and verifies whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_audit_head_from_an_older_version_still_opens_and_guards() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::with_config(&data, "");
    // On a TPM run the same TPM must outlive each server.
    let _tpm = server.swtpm.take();
    let mut sm = secrets::client(&server).await;
    secrets::create(&mut sm, "before-the-upgrade", Some("v")).await;
    let log = audit_log(&server);
    server.stop();
    let whole = lines(&log);
    let last = whole.last().unwrap();
    let seq = serde_json::from_str::<serde_json::Value>(last).unwrap()["seq"]
        .as_u64()
        .unwrap();
    let hash = keyward::crypto::hex::encode(&keyward::crypto::sha256(last.as_bytes()));
    {
        use keyward::store::{Expect, Op, Store};
        let store = Store::open(&data.join("store")).unwrap();
        store
            .commit(vec![Op::Put {
                key: b"audit/closed-head".to_vec(),
                value: format!("{seq} {hash}").into_bytes(),
                expect: Expect::Any,
            }])
            .await
            .unwrap();
        store.flush().unwrap();
    }
    let config = data.with_extension("toml");
    let args = ["--config", config.to_str().unwrap()];
    write_lines(&log, &whole[..whole.len() - 1]);
    let refused = Server::try_spawn(&data, &args, &[])
        .err()
        .expect("started on a cut log");
    assert!(refused.contains("cut short or replaced"), "{refused}");
    write_lines(&log, &whole);
    let server = Server::try_spawn(&data, &args, &[]).expect("the intact log opens");
    let mut sm = secrets::client(&server).await;
    secrets::create(&mut sm, "after-the-upgrade", Some("v")).await;
    let continued = lines(&log);
    assert_eq!(continued[..whole.len()], whole[..]);
    let (ok, output) = verify(&server, &log, &["--allow-unsealed-tail"]);
    assert!(ok, "{output}");
    assert!(
        common::audit_records(&data, "secretsmanager:CreateSecret")
            .iter()
            .any(|r| r["resource"]
                .as_str()
                .is_some_and(|arn| arn.contains("after-the-upgrade"))),
        "{continued:?}"
    );
}

/// Whether the log of the server on `data_dir` has a successful `action` on `resource`.
fn success_record(data_dir: &Path, action: &str, resource: &str) -> bool {
    common::audit_records(data_dir, action)
        .iter()
        .any(|record| record["resource"] == resource && record["outcome"] == "success")
}

/// Security finding 3: a state change whose caller gave up mid-request (a gRPC deadline that
/// expired, an AWS connection that closed) still has its audit record. The server holds each
/// request between its work and its record (a test-only delay) far longer than the clients
/// wait, so every client leaves after the commit and before the record, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_whose_callers_vanish_are_still_audited() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::with_config_via(
        &["env", "KEYWARD_TEST_AUDIT_DELAY_MS=1500"],
        &dir.path().join("data"),
        "",
    );
    let mut sm: Sm = secrets::client(&server).await;
    let mut kms = server.kms().await;
    let deleted = secrets::create(&mut sm, "vanish/deleted", Some("v1"))
        .await
        .arn;
    let with_policy = secrets::create(&mut sm, "vanish/policy", Some("v2"))
        .await
        .arn;
    let over_aws = secrets::create(&mut sm, "vanish/aws", Some("v3")).await.arn;
    let key = common::create_key(&mut kms, "vanish").await;
    let log = audit_log(&server);

    fn impatient<T>(message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(std::time::Duration::from_millis(200));
        request
    }
    let gone = sm
        .delete_secret(impatient(pb::DeleteSecretRequest {
            secret_id: "vanish/deleted".into(),
            force_delete_without_recovery: true,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::Cancelled, "{gone:?}");
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;
    let gone = sm
        .put_resource_policy(impatient(pb::PutResourcePolicyRequest {
            secret_id: "vanish/policy".into(),
            resource_policy: policy.into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::Cancelled, "{gone:?}");
    let gone = kms
        .schedule_key_deletion(impatient(pb::ScheduleKeyDeletionRequest {
            key_id: key.key_id.clone(),
            pending_window_in_days: Some(7),
        }))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::Cancelled, "{gone:?}");

    // The AWS endpoint: the SDK gives up and closes its connection.
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version_latest()
        .endpoint_url(server.aws.as_deref().expect("AWS endpoint"))
        .region(aws_sdk_secretsmanager::config::Region::new("local"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            keyward::aws::signing::DEVELOPMENT_ACCESS_KEY_ID,
            keyward::aws::signing::DEVELOPMENT_SECRET_KEY,
            None,
            None,
            "test",
        ))
        .retry_config(aws_sdk_secretsmanager::config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_sdk_secretsmanager::config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_millis(200))
                .build(),
        )
        .build();
    let aws = aws_sdk_secretsmanager::Client::from_conf(config);
    let gone = aws
        .delete_secret()
        .secret_id("vanish/aws")
        .force_delete_without_recovery(true)
        .send()
        .await;
    assert!(gone.is_err(), "the SDK should have given up: {gone:?}");

    // Every change happened, and each has its record.
    let key_arn = key.arn.clone();
    common::wait_for(
        "the vanished callers' records",
        Duration::from_secs(20),
        || {
            let data = server.data_dir.clone();
            let (deleted, with_policy, over_aws, key_arn) = (
                deleted.clone(),
                with_policy.clone(),
                over_aws.clone(),
                key_arn.clone(),
            );
            async move {
                success_record(&data, "secretsmanager:DeleteSecret", &deleted)
                    && success_record(&data, "secretsmanager:PutResourcePolicy", &with_policy)
                    && success_record(&data, "kms:ScheduleKeyDeletion", &key_arn)
                    && success_record(&data, "secretsmanager:DeleteSecret", &over_aws)
            }
        },
    )
    .await;
    for name in ["vanish/deleted", "vanish/aws"] {
        let read = sm
            .describe_secret(pb::DescribeSecretRequest {
                secret_id: name.into(),
            })
            .await;
        assert_error(
            &read.unwrap_err(),
            Code::NotFound,
            "ResourceNotFoundException",
        );
    }
    let stored = sm
        .get_resource_policy(pb::GetResourcePolicyRequest {
            secret_id: "vanish/policy".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stored.resource_policy.is_some_and(|p| p.contains("Deny")));
    assert_eq!(
        common::describe(&mut kms, &key.key_id).await.key_state,
        "PendingDeletion"
    );
    let (ok, output) = verify(&server, &log, &["--allow-unsealed-tail"]);
    assert!(ok, "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsealed_tail_fails_verification_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = "[audit]\ncheckpoint_every = 100000\ncheckpoint_interval_secs = 3600\n";
    let mut server = Server::with_config(&data, config);
    let _tpm = server.swtpm.take();
    let mut sm = secrets::client(&server).await;
    secrets::create(&mut sm, "unsealed", Some("v")).await;
    let log = audit_log(&server);

    // No checkpoint yet: nothing in the log is covered by a MAC.
    let (ok, output) = verify(&server, &log, &[]);
    assert!(!ok, "an unsealed log passed: {output}");
    assert!(output.contains("unsealed tail"), "{output}");
    assert!(output.contains("no checkpoint seals the log"), "{output}");
    assert!(output.contains("--allow-unsealed-tail"), "{output}");
    let (ok, output) = verify(&server, &log, &["--allow-unsealed-tail"]);
    assert!(ok, "{output}");
    assert!(output.contains("unsealed tail"), "{output}");
    assert!(output.contains("warning: "), "{output}");

    // A clean stop seals the tail: then the log verifies without the flag.
    server.stop();
    let out = std::process::Command::new(common::BIN)
        .args(["audit", "verify", "--offline"])
        .arg(&log)
        .output()
        .expect("run keyward audit verify");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("unsealed"), "{text}");

    // Records after the last checkpoint: the same refusal.
    let config = data.with_extension("toml");
    let server =
        Server::try_spawn(&data, &["--config", config.to_str().unwrap()], &[]).expect("restart");
    let mut sm = secrets::client(&server).await;
    secrets::create(&mut sm, "after-the-seal", Some("v")).await;
    let (ok, output) = verify(&server, &log, &[]);
    assert!(!ok, "an unsealed tail passed: {output}");
    assert!(
        output.contains("records after the last checkpoint are not sealed"),
        "{output}"
    );
    let (ok, output) = verify(&server, &log, &["--allow-unsealed-tail"]);
    assert!(ok, "{output}");
}

/// Security finding 12: VerifyAuditCheckpoints is bounded per request — at most 1000
/// checkpoints, and a message that is not a checkpoint's is answered without the hardware.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_audit_checkpoints_is_bounded_per_request() {
    use keyward::api::pb::audit_service_client::AuditServiceClient;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::with_config(
        &dir.path().join("data"),
        "metrics_listen = \"127.0.0.1:0\"\n[audit]\ncheckpoint_every = 1\n",
    );
    let mut audit = AuditServiceClient::connect(server.endpoint.clone())
        .await
        .unwrap();
    audit
        .get_audit_head(pb::GetAuditHeadRequest::default())
        .await
        .unwrap();
    // The checkpoint key's id, from a checkpoint line: the real key, so only the message's
    // shape can spare the hardware.
    let log = audit_log(&server);
    let key_of = |line: &String| {
        let record: serde_json::Value = serde_json::from_str(line).ok()?;
        record["key"].as_str().map(str::to_owned)
    };
    common::wait_for("a checkpoint", std::time::Duration::from_secs(20), || {
        let found = lines(&log).iter().any(|l| key_of(l).is_some());
        async move { found }
    })
    .await;
    let key_id = lines(&log).iter().find_map(key_of).unwrap();
    let checkpoint = |message: Vec<u8>| pb::AuditCheckpoint {
        key_id: key_id.clone(),
        message,
        mac: vec![0; 32],
    };
    let too_many = audit
        .verify_audit_checkpoints(pb::VerifyAuditCheckpointsRequest {
            checkpoints: (0..1001).map(|_| checkpoint(vec![1])).collect(),
        })
        .await
        .unwrap_err();
    assert_error(&too_many, Code::InvalidArgument, "ValidationException");
    let calls = || async {
        let text = keyward::metrics::fetch(server.metrics.as_deref().unwrap())
            .await
            .unwrap();
        keyward::metrics::value_of(&text, "keyward_root_of_trust_calls_total").unwrap()
    };
    let before = calls().await;
    let answer = audit
        .verify_audit_checkpoints(pb::VerifyAuditCheckpointsRequest {
            checkpoints: (0..1000).map(|_| checkpoint(vec![7; 4096])).collect(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.valid, vec![false; 1000]);
    // What remains are the checkpoints after these requests' own audit records
    // (checkpoint_every = 1), written in the background, a few calls each on a TPM; a MAC per
    // claimed checkpoint would be 1000 more.
    let made = calls().await - before;
    assert!(
        made < 100.0,
        "{made} hardware calls for messages that are not checkpoints"
    );
}
