//! The AWS JSON 1.1 endpoint on a real server: the real `aws` CLI (PyPI awscli, installed by
//! softhsm/run-tests) reads what gRPC wrote and the other way round; SigV4 refusals carry the
//! AWS error names and are audited; bad input gets a clear 400 and changes nothing; policies
//! apply exactly as on gRPC.

mod common;

use common::aws::{aws_addr, now, post, signed};

use base64::Engine;
use common::Server;
use common::secrets::{self, Sm};
use keyward::api::pb;
use keyward::aws::signing::{DEVELOPMENT_ACCESS_KEY_ID, DEVELOPMENT_SECRET_KEY, sign};

/// The aws CLI softhsm/run-tests installs (KEYWARD_AWS_CLI), else `aws` on the PATH.
fn aws_cli() -> String {
    std::env::var("KEYWARD_AWS_CLI").unwrap_or_else(|_| "aws".into())
}

/// Runs `aws --endpoint-url <server> ARGS` with a key pair: (success, stdout, stderr).
fn aws(server: &Server, key: (&str, &str), args: &[&str]) -> (bool, String, String) {
    let out = common::aws::tool(&aws_cli(), key)
        .arg("--endpoint-url")
        .arg(server.aws.as_deref().expect("AWS endpoint"))
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): run the suite with softhsm/run-tests, which installs the aws CLI, or set KEYWARD_AWS_CLI",
                aws_cli()
            )
        });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const DEV: (&str, &str) = (DEVELOPMENT_ACCESS_KEY_ID, DEVELOPMENT_SECRET_KEY);

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cli_and_grpc_see_each_others_writes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let mut sm: Sm = secrets::client(&server).await;
    secrets::create(&mut sm, "shared/db", Some("written-by-grpc")).await;

    let (ok, out, err) = aws(
        &server,
        DEV,
        &[
            "secretsmanager",
            "get-secret-value",
            "--secret-id",
            "shared/db",
        ],
    );
    assert!(ok, "{err}");
    let read = json(&out);
    assert_eq!(read["SecretString"], "written-by-grpc");
    assert_eq!(read["VersionStages"], serde_json::json!(["AWSCURRENT"]));
    assert!(read["ARN"].as_str().unwrap().contains(":secret:shared/db-"));

    let (ok, _, err) = aws(
        &server,
        DEV,
        &[
            "secretsmanager",
            "put-secret-value",
            "--secret-id",
            "shared/db",
            "--secret-string",
            "written-by-aws",
        ],
    );
    assert!(ok, "{err}");
    let value = sm
        .get_secret_value(pb::GetSecretValueRequest {
            secret_id: "shared/db".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(value.secret_string.as_deref(), Some("written-by-aws"));
    let (ok, out, _) = aws(
        &server,
        DEV,
        &[
            "secretsmanager",
            "describe-secret",
            "--secret-id",
            "shared/db",
        ],
    );
    assert!(ok);
    let stages = json(&out)["VersionIdsToStages"].clone();
    let mut labels: Vec<String> = stages
        .as_object()
        .unwrap()
        .values()
        .flat_map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
        })
        .collect();
    labels.sort();
    assert_eq!(labels, ["AWSCURRENT", "AWSPREVIOUS"]);

    // KMS: a key made and used through the aws CLI decrypts through gRPC.
    let (ok, out, err) = aws(
        &server,
        DEV,
        &["kms", "create-key", "--description", "from aws"],
    );
    assert!(ok, "{err}");
    let key = json(&out)["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, out, err) = aws(
        &server,
        DEV,
        &[
            "kms",
            "encrypt",
            "--key-id",
            &key,
            "--plaintext",
            "aws-plaintext",
            "--encryption-context",
            "purpose=interop",
        ],
    );
    assert!(ok, "{err}");
    let blob = base64::engine::general_purpose::STANDARD
        .decode(json(&out)["CiphertextBlob"].as_str().unwrap())
        .unwrap();
    let mut kms = server.kms().await;
    let plaintext = common::decrypt(&mut kms, &blob, &[("purpose", "interop")])
        .await
        .unwrap();
    assert_eq!(plaintext, b"aws-plaintext");

    // The README's commands, as written there.
    for args in [
        &[
            "secretsmanager",
            "create-secret",
            "--name",
            "app/db",
            "--secret-string",
            "hunter2",
        ][..],
        &[
            "secretsmanager",
            "get-secret-value",
            "--secret-id",
            "app/db",
        ][..],
        &["kms", "create-key", "--description", "app"][..],
    ] {
        let (ok, out, err) = aws(&server, DEV, args);
        assert!(ok, "{args:?}: {err}");
        assert!(
            out.contains("\"ARN\"") || out.contains("\"KeyMetadata\""),
            "{out}"
        );
    }

    // Errors arrive as the AWS exception the CLI names.
    let (ok, _, err) = aws(
        &server,
        DEV,
        &[
            "secretsmanager",
            "get-secret-value",
            "--secret-id",
            "shared/nope",
        ],
    );
    assert!(!ok);
    assert!(err.contains("(ResourceNotFoundException)"), "{err}");
    let (ok, _, err) = aws(
        &server,
        DEV,
        &["kms", "describe-key", "--key-id", "alias/missing"],
    );
    assert!(!ok);
    assert!(err.contains("(NotFoundException)"), "{err}");
}

#[test]
fn signature_failures_carry_the_aws_names_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let list = b"{}";
    let target = "secretsmanager.ListSecrets";
    let (status, _) = post(
        &server,
        &signed(&server, target, list, DEV, "local", now()),
        list,
    );
    assert_eq!(status, 200, "a correctly signed request works");

    let mut unsigned = signed(&server, target, list, DEV, "local", now());
    unsigned.remove("authorization");
    let mut retargeted = signed(&server, target, list, DEV, "local", now());
    retargeted.insert(
        "x-amz-target",
        "secretsmanager.GetRandomPassword".parse().unwrap(),
    );
    let mut session = signed(&server, target, list, DEV, "local", now());
    session.insert("x-amz-security-token", "forged".parse().unwrap());
    // Signed without X-Amz-Target, which is then added: the operation is not covered.
    let mut target_unsigned = signed(&server, target, list, DEV, "local", now());
    target_unsigned.remove("x-amz-target");
    let authority = server.aws.as_deref().unwrap().trim_start_matches("http://");
    let uri: http::Uri = format!("http://{authority}/").parse().unwrap();
    target_unsigned.remove("authorization");
    target_unsigned.remove("x-amz-date");
    sign(
        &http::Method::POST,
        &uri,
        &mut target_unsigned,
        list,
        DEV.0,
        DEV.1.as_bytes(),
        "local",
        "secretsmanager",
        now(),
    )
    .unwrap();
    target_unsigned.insert("x-amz-target", target.parse().unwrap());
    let tampered_body = br#"{"MaxResults": 1}"#;
    let cases: Vec<(&str, http::HeaderMap, &[u8], &str)> = vec![
        (
            "unsigned",
            unsigned,
            list,
            "MissingAuthenticationTokenException",
        ),
        (
            "wrong secret key",
            signed(
                &server,
                target,
                list,
                (DEVELOPMENT_ACCESS_KEY_ID, "not-the-secret"),
                "local",
                now(),
            ),
            list,
            "InvalidSignatureException",
        ),
        (
            "unknown access key",
            signed(
                &server,
                target,
                list,
                ("AKIANOBODYKNOWSTHIS0", "x"),
                "local",
                now(),
            ),
            list,
            "UnrecognizedClientException",
        ),
        (
            "stale timestamp",
            signed(&server, target, list, DEV, "local", now() - 600),
            list,
            "InvalidSignatureException",
        ),
        (
            "wrong region",
            signed(&server, target, list, DEV, "us-east-1", now()),
            list,
            "InvalidSignatureException",
        ),
        (
            "another target",
            retargeted,
            list,
            "InvalidSignatureException",
        ),
        (
            "session token",
            session,
            list,
            "UnrecognizedClientException",
        ),
        (
            "target not signed",
            target_unsigned,
            list,
            "IncompleteSignatureException",
        ),
        (
            "tampered body",
            signed(&server, target, list, DEV, "local", now()),
            tampered_body,
            "InvalidSignatureException",
        ),
    ];
    let count = cases.len();
    for (what, headers, body, exception) in cases {
        let (status, reply) = post(&server, &headers, body);
        assert_eq!(status, 400, "{what}: {reply}");
        assert_eq!(reply["__type"], exception, "{what}: {reply}");
    }
    let log = std::fs::read_to_string(server.data_dir.join("audit/audit.log")).unwrap();
    let refused = log
        .lines()
        .filter(|l| l.contains("\"api\":\"aws-json\"") && l.contains("\"outcome\":\"denied\""))
        .count();
    assert_eq!(refused, count, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_400_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let create = "secretsmanager.CreateSecret";
    let huge = format!(
        r#"{{"Name":"big","SecretString":"{}"}}"#,
        "x".repeat(300 * 1024)
    );
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "malformed JSON",
            create,
            br#"{"Name": "a""#.to_vec(),
            "SerializationException",
        ),
        (
            "not an object",
            create,
            b"[1, 2]".to_vec(),
            "SerializationException",
        ),
        (
            "wrong type",
            create,
            br#"{"Name": 5, "SecretString": "v"}"#.to_vec(),
            "SerializationException",
        ),
        (
            "a value in a member of the wrong type",
            create,
            br#"{"Name": "d", "Description": ["misplaced-secret-value"]}"#.to_vec(),
            "SerializationException",
        ),
        (
            "a value where a number goes",
            "secretsmanager.GetRandomPassword",
            br#"{"PasswordLength": "misplaced-secret-value"}"#.to_vec(),
            "SerializationException",
        ),
        (
            "bad base64",
            create,
            br#"{"Name": "b", "SecretBinary": "%%%"}"#.to_vec(),
            "SerializationException",
        ),
        (
            "oversized body",
            create,
            huge.into_bytes(),
            "ValidationException",
        ),
        (
            "unknown target",
            "secretsmanager.CreateSecrets",
            br#"{"Name": "c"}"#.to_vec(),
            "UnknownOperationException",
        ),
        (
            "unknown service",
            "s3.PutObject",
            b"{}".to_vec(),
            "UnknownOperationException",
        ),
    ];
    for (what, target, body, exception) in cases {
        let (status, reply) = post(
            &server,
            &signed(&server, target, &body, DEV, "local", now()),
            &body,
        );
        assert_eq!(status, 400, "{what}: {reply}");
        assert_eq!(reply["__type"], exception, "{what}: {reply}");
        assert!(
            reply["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {reply}"
        );
    }
    let mut sm: Sm = secrets::client(&server).await;
    let listed = sm
        .list_secrets(pb::ListSecretsRequest {
            include_planned_deletion: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.secret_list.is_empty(), "{listed:?}");
    // Refused input is audited without quoting it.
    let log = std::fs::read_to_string(server.data_dir.join("audit/audit.log")).unwrap();
    assert!(
        log.contains("\"error\":\"SerializationException\""),
        "{log}"
    );
    assert!(!log.contains("misplaced-secret-value"), "{log}");
}

#[test]
fn policies_and_access_keys_apply_to_the_aws_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("app.secret");
    std::fs::write(&secret_file, "app-secret-access-key\n").unwrap();
    let admin_file = dir.path().join("admin.secret");
    std::fs::write(&admin_file, "admin-secret-access-key\n").unwrap();
    let config = format!(
        r#"[auth]
[[auth.access_keys]]
principal = "app"
access_key_id = "AKIAAPPLICATION00001"
secret_key_file = "{}"
[[auth.access_keys]]
principal = "admin"
access_key_id = "AKIAADMINISTRATOR001"
secret_key_file = "{}"
[[auth.policies]]
name = "admin"
principals = ["admin"]
document = '{{"Statement":[{{"Effect":"Allow","Action":"*","Resource":"*"}}]}}'
[[auth.policies]]
name = "app"
principals = ["app"]
document = '{{"Statement":[{{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"arn:keyward:secretsmanager:*:*:secret:app/*"}}]}}'
"#,
        secret_file.display(),
        admin_file.display()
    );
    let server = Server::with_config(&dir.path().join("data"), &config);
    let admin = ("AKIAADMINISTRATOR001", "admin-secret-access-key");
    let app = ("AKIAAPPLICATION00001", "app-secret-access-key");
    for name in ["app/db", "prod/db"] {
        let (ok, _, err) = aws(
            &server,
            admin,
            &[
                "secretsmanager",
                "create-secret",
                "--name",
                name,
                "--secret-string",
                "v",
            ],
        );
        assert!(ok, "{err}");
    }
    let (ok, out, err) = aws(
        &server,
        app,
        &[
            "secretsmanager",
            "get-secret-value",
            "--secret-id",
            "app/db",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(json(&out)["SecretString"], "v");
    for args in [
        &[
            "secretsmanager",
            "get-secret-value",
            "--secret-id",
            "prod/db",
        ][..],
        &[
            "secretsmanager",
            "create-secret",
            "--name",
            "app/new",
            "--secret-string",
            "v",
        ][..],
    ] {
        let (ok, _, err) = aws(&server, app, args);
        assert!(
            !ok && err.contains("(AccessDeniedException)"),
            "{args:?}: {err}"
        );
    }
    // The development key pair means nothing once [auth] is configured.
    let (ok, _, err) = aws(&server, DEV, &["secretsmanager", "list-secrets"]);
    assert!(
        !ok && err.contains("(UnrecognizedClientException)"),
        "{err}"
    );
}

/// Everything the server sends on `stream` until it closes it; panics if it does not close
/// within a minute (the server's bounds are far shorter).
async fn until_closed(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the server kept the connection open")
    .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Security finding 12: a client that sends its headers or body slowly, or never, is cut off
/// at the read timeout, and connections beyond `max_connections` wait until one closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_surplus_clients_are_bounded() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::with_config(
        &dir.path().join("slow"),
        "[aws_endpoint]\nread_timeout_ms = 300\n",
    );
    let addr = aws_addr(&server);
    // Headers that never end.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    until_closed(&mut slow).await;
    // A body that never arrives.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: secretsmanager.ListSecrets\r\n\
          Content-Type: application/x-amz-json-1.1\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let answer = until_closed(&mut slow).await;
    assert!(answer.contains("RequestTimeoutException"), "{answer}");

    // One connection at a time: the second is served once the first closes.
    let server = Server::with_config(
        &dir.path().join("capped"),
        "[aws_endpoint]\nmax_connections = 1\n",
    );
    let addr = aws_addr(&server);
    let holder = TcpStream::connect(&addr).await.unwrap();
    let mut waiting = TcpStream::connect(&addr).await.unwrap();
    waiting
        .write_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: secretsmanager.ListSecrets\r\n\
              Content-Length: 2\r\nConnection: close\r\n\r\n{}",
        )
        .await
        .unwrap();
    // Not answered while the first connection is open. (This window can only let a broken
    // cap pass on a very slow machine, never fail a working one.)
    let mut early = [0u8; 1];
    let answered = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        tokio::io::AsyncReadExt::read(&mut waiting, &mut early),
    )
    .await;
    assert!(answered.is_err(), "served beyond max_connections");
    drop(holder);
    let answer = until_closed(&mut waiting).await;
    assert!(
        answer.contains("MissingAuthenticationTokenException"),
        "{answer}"
    );
}
