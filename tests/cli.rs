//! The README's first session, through the `keyward` client against a real server.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;

fn keyward(server: &Server, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("kms")
        .args(args)
        .env("KEYWARD_ENDPOINT", &server.endpoint)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn json(server: &Server, args: &[&str]) -> Value {
    let (ok, stdout, stderr) = keyward(server, args);
    assert!(ok, "keyward kms {args:?} failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn first_session_create_key_generate_data_key_decrypt() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());

    let created = json(&server, &["create-key", "--description", "my first key"]);
    let key_id = created["key_metadata"]["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    json(&server, &["create-alias", "alias/first", &key_id]);

    let generated = json(
        &server,
        &[
            "generate-data-key",
            "alias/first",
            "--encryption-context",
            "app=demo",
        ],
    );
    let blob = generated["ciphertext_blob"].as_str().unwrap();
    let plaintext = generated["plaintext"].as_str().unwrap();
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD
        .decode(plaintext)
        .unwrap();
    assert_eq!(key.len(), 32);

    let decrypted = json(
        &server,
        &[
            "decrypt",
            "--ciphertext-blob",
            blob,
            "--encryption-context",
            "app=demo",
        ],
    );
    assert_eq!(decrypted["plaintext"].as_str(), Some(plaintext));
    assert!(decrypted["key_id"].as_str().unwrap().ends_with(&key_id));

    let encrypted = json(&server, &["encrypt", "alias/first", "--plaintext", "hello"]);
    let decrypted = json(
        &server,
        &[
            "decrypt",
            "--ciphertext-blob",
            encrypted["ciphertext_blob"].as_str().unwrap(),
        ],
    );
    assert_eq!(decrypted["plaintext"].as_str(), Some("aGVsbG8="));

    let (ok, text, _) = keyward(
        &server,
        &["--output", "text", "describe-key", "alias/first"],
    );
    assert!(ok);
    assert!(text.contains(&format!("key_id: {key_id}")), "{text}");
    assert!(text.contains("key_state: Enabled"), "{text}");
    assert!(
        text.contains("creation_date: 20"),
        "dates are RFC 3339 in text: {text}"
    );

    // A wrong context: a clear error on stderr and a failing exit code.
    let (ok, stdout, stderr) = keyward(&server, &["decrypt", "--ciphertext-blob", blob]);
    assert!(!ok);
    assert!(stdout.is_empty());
    assert!(
        stderr.starts_with("error: InvalidCiphertextException:"),
        "{stderr}"
    );

    let (ok, _, stderr) = keyward(&server, &["describe-key", "alias/missing"]);
    assert!(!ok);
    assert!(stderr.starts_with("error: NotFoundException:"), "{stderr}");
}

#[test]
fn an_unreachable_endpoint_is_reported_not_panicked() {
    let out = Command::new(BIN)
        .args(["kms", "--endpoint", "http://127.0.0.1:1", "list-keys"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("error: cannot connect to http://127.0.0.1:1"),
        "{stderr}"
    );
}

#[tokio::test]
async fn reflection_lists_the_services() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let channel = tonic::transport::Channel::from_shared(server.endpoint.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reply {reply:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"keyward.v1.KeyManagementService".to_string()),
        "{names:?}"
    );
    assert_eq!(server.health().await, SERVING);
}

fn secrets(server: &Server, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .arg("secrets")
        .args(args)
        .env("KEYWARD_ENDPOINT", &server.endpoint)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn secrets_json(server: &Server, args: &[&str]) -> Value {
    let (ok, stdout, stderr) = secrets(server, args, None);
    assert!(ok, "keyward secrets {args:?} failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn secrets_session_from_the_readme() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());

    let created = secrets_json(
        &server,
        &[
            "create-secret",
            "--name",
            "prod/db",
            "--secret-string",
            "first",
        ],
    );
    let first = created["version_id"].as_str().unwrap().to_owned();
    // The value from standard input: never on the command line or in shell history.
    let (ok, stdout, stderr) = secrets(
        &server,
        &["put", "prod/db", "--value", "-"],
        Some("second\n"),
    );
    assert!(ok, "{stderr}");
    let second: Value = serde_json::from_str(&stdout).unwrap();
    let second = second["version_id"].as_str().unwrap().to_owned();

    let (ok, stdout, _) = secrets(&server, &["get", "prod/db"], None);
    assert!(ok);
    assert_eq!(stdout, "second\n");
    let (ok, stdout, _) = secrets(
        &server,
        &["get", "prod/db", "--version-stage", "AWSPREVIOUS"],
        None,
    );
    assert!(ok);
    assert_eq!(stdout, "first\n");

    // Roll back by hand: AWSCURRENT back to the first version; AWSPREVIOUS follows.
    secrets_json(
        &server,
        &[
            "update-secret-version-stage",
            "--secret-id",
            "prod/db",
            "--version-stage",
            "AWSCURRENT",
            "--move-to-version-id",
            &first,
            "--remove-from-version-id",
            &second,
        ],
    );
    let described = secrets_json(&server, &["describe-secret", "--secret-id", "prod/db"]);
    assert_eq!(
        described["version_ids_to_stages"][&first]["stages"],
        serde_json::json!(["AWSCURRENT"])
    );
    assert_eq!(
        described["version_ids_to_stages"][&second]["stages"],
        serde_json::json!(["AWSPREVIOUS"])
    );
    let got = secrets_json(
        &server,
        &[
            "get-secret-value",
            "--secret-id",
            "prod/db",
            "--version-stage",
            "AWSPREVIOUS",
        ],
    );
    assert_eq!(got["secret_string"], "second");

    let deleted = secrets_json(
        &server,
        &[
            "delete-secret",
            "--secret-id",
            "prod/db",
            "--recovery-window-in-days",
            "7",
        ],
    );
    assert!(deleted["deletion_date"].as_i64().unwrap() > 0);
    let (ok, _, stderr) = secrets(&server, &["get", "prod/db"], None);
    assert!(!ok);
    assert!(
        stderr.starts_with("error: InvalidRequestException:"),
        "{stderr}"
    );
    secrets_json(&server, &["restore-secret", "--secret-id", "prod/db"]);
    let (ok, stdout, _) = secrets(&server, &["get", "prod/db"], None);
    assert!(ok);
    assert_eq!(stdout, "first\n");

    let listed = secrets_json(&server, &["list-secrets", "--filter", "name=prod/"]);
    assert_eq!(listed["secret_list"][0]["name"], "prod/db");
    let password = secrets_json(&server, &["get-random-password", "--password-length", "20"]);
    assert_eq!(password["random_password"].as_str().unwrap().len(), 20);
    let (ok, text, _) = secrets(
        &server,
        &[
            "--output",
            "text",
            "describe-secret",
            "--secret-id",
            "prod/db",
        ],
        None,
    );
    assert!(ok);
    assert!(text.contains("name: prod/db"), "{text}");
}

#[test]
fn rotation_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    secrets_json(
        &server,
        &[
            "create-secret",
            "--name",
            "app/token",
            "--secret-string",
            "t0",
        ],
    );
    let rotated = secrets_json(
        &server,
        &[
            "rotate",
            "app/token",
            "--rotator",
            "generated",
            "--password-length",
            "20",
            "--schedule",
            "rate(7 days)",
        ],
    );
    let version = rotated["version_id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let d = secrets_json(&server, &["describe-secret", "--secret-id", "app/token"]);
        if d["rotation_status"].is_null()
            && d["version_ids_to_stages"][&version]["stages"] == serde_json::json!(["AWSCURRENT"])
        {
            assert_eq!(d["rotation_enabled"], true);
            assert_eq!(d["rotation_rules"]["schedule_expression"], "rate(7 days)");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no rotation: {d}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (ok, value, _) = secrets(&server, &["get", "app/token"], None);
    assert!(ok);
    assert_eq!(value.trim_end().len(), 20);

    let (ok, _, stderr) = secrets(
        &server,
        &["rotate", "app/token", "--rotator", "magic"],
        None,
    );
    assert!(!ok);
    assert!(stderr.contains("unknown rotator \"magic\""), "{stderr}");

    let cancelled = secrets_json(
        &server,
        &["cancel-rotate-secret", "--secret-id", "app/token"],
    );
    assert_eq!(cancelled["name"], "app/token");
    let d = secrets_json(&server, &["describe-secret", "--secret-id", "app/token"]);
    assert_eq!(d["rotation_enabled"], false);

    let key = json(&server, &["create-key"])["key_metadata"]["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    json(
        &server,
        &[
            "enable-key-rotation",
            &key,
            "--rotation-period-in-days",
            "180",
        ],
    );
    let status = json(&server, &["get-key-rotation-status", &key]);
    assert_eq!(status["key_rotation_enabled"], true);
    assert_eq!(status["rotation_period_in_days"], 180);
}

/// `keyward secrets ARGS` with `--endpoint LIST`: (success, stdout, stderr).
fn secrets_at(endpoints: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("secrets")
        .args(["--endpoint", endpoints])
        .args(args)
        .env_remove("KEYWARD_ENDPOINT")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn a_dead_first_endpoint_is_passed_over_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    secrets_json(
        &server,
        &[
            "create-secret",
            "--name",
            "app/db",
            "--secret-string",
            "s3cret-value",
        ],
    );
    let dead = format!("http://127.0.0.1:{}", free_port());
    let list = format!("{dead}, {}", server.endpoint);

    let (ok, stdout, stderr) = secrets_at(&list, &["get-secret-value", "--secret-id", "app/db"]);
    assert!(ok, "{stderr}");
    let got: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(got["secret_string"], "s3cret-value");
    assert_eq!(
        stderr,
        format!(
            "note: {dead} unavailable (connection refused); using {}\n",
            server.endpoint
        )
    );

    // Nothing reached the dead address, so a write that is not repeated moves on too.
    let (ok, stdout, stderr) = secrets_at(
        &list,
        &[
            "delete-secret",
            "--secret-id",
            "app/db",
            "--recovery-window-in-days",
            "7",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("deletion_date"), "{stdout}");
    assert!(
        stderr.starts_with(&format!("note: {dead} unavailable")),
        "{stderr}"
    );
    let described = secrets_json(&server, &["describe-secret", "--secret-id", "app/db"]);
    assert!(
        described["deleted_date"].as_i64().unwrap() > 0,
        "{described}"
    );
}

#[test]
fn with_every_endpoint_dead_the_error_names_each() {
    let (first, second) = (
        format!("http://127.0.0.1:{}", free_port()),
        format!("http://127.0.0.1:{}", free_port()),
    );
    let (ok, stdout, stderr) = secrets_at(&format!("{first},{second}"), &["list-secrets"]);
    assert!(!ok);
    assert!(stdout.is_empty());
    assert!(
        stderr.starts_with(&format!("error: cannot connect to {first}: ")),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("; nor to {second}: ")), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn bad_endpoint_lists_are_refused() {
    for (list, reason) in [
        (
            "http://127.0.0.1:1,,http://127.0.0.1:2",
            "has an empty address",
        ),
        (
            "http://127.0.0.1:1,https://127.0.0.1:2",
            "mixes http:// and https://",
        ),
    ] {
        let (ok, _, stderr) = secrets_at(list, &["list-secrets"]);
        assert!(!ok);
        assert!(stderr.starts_with("error: --endpoint "), "{stderr}");
        assert!(stderr.contains(reason), "{stderr}");
    }
}
