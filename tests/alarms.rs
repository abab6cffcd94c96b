//! Alarms on a real server: each rule fires once for the behaviour it watches, and a loopback
//! webhook receiver gets exactly one POST per firing.

mod common;

use common::Server;
use keyward::api::pb::{
    self, key_management_service_client::KeyManagementServiceClient,
    secrets_manager_service_client::SecretsManagerServiceClient,
};
use keyward::cli::client::{Conn, Connect, connect};
use keyward::crypto::{hex, sha256};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// A minimal HTTP/1.1 receiver: sends each request body down the channel, answers 200.
async fn receiver() -> (String, mpsc::UnboundedReceiver<serde_json::Value>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (name, value) = l.split_once(':')?;
                                name.eq_ignore_ascii_case("content-length")
                                    .then(|| value.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + length {
                            break buf[end + 4..end + 4 + length].to_vec();
                        }
                    }
                };
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                if let Ok(json) = serde_json::from_slice(&body) {
                    let _ = tx.send(json);
                }
            });
        }
    });
    (url, rx)
}

fn token(principal: &str) -> String {
    format!(
        "[[auth.tokens]]\nprincipal = \"{principal}\"\nsha256 = \"{}\"\n",
        hex::encode(&sha256(format!("token-{principal}").as_bytes()))
    )
}

async fn client(server: &Server, principal: &str) -> Conn {
    let mut to = Connect::plain(&server.endpoint);
    to.token = Some(format!("token-{principal}"));
    connect(&to).await.unwrap()
}

async fn metric(server: &Server, name: &str) -> f64 {
    let text = keyward::metrics::fetch(server.metrics.as_deref().unwrap())
        .await
        .unwrap();
    keyward::metrics::value_of(&text, name).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rule_fires_once_and_the_webhook_gets_one_post_per_firing() {
    let (url, mut posts) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"metrics_listen = "127.0.0.1:0"
[auth]
{}{}{}
[[auth.policies]]
name = "admin"
principals = ["admin"]
document = '{{"Statement":[{{"Effect":"Allow","Action":"*","Resource":"*"}}]}}'
[[auth.policies]]
name = "app"
principals = ["app"]
document = '{{"Statement":[{{"Effect":"Allow","Action":"secretsmanager:GetSecretValue","Resource":"*"}}]}}'
[alarms]
webhooks = ["{url}"]
[[alarms.rule]]
name = "denied-burst"
kind = "denied_requests"
threshold = 3
window_secs = 300
[[alarms.rule]]
name = "new-reader"
kind = "first_read"
[[alarms.rule]]
name = "bad-ciphertext"
kind = "decrypt_failures"
threshold = 2
window_secs = 300
[[alarms.rule]]
name = "pending-deletion-use"
kind = "pending_deletion_key_use"
"#,
        token("admin"),
        token("app"),
        token("intruder")
    );
    let server = Server::with_config(&dir.path().join("data"), &config);
    let mut admin = SecretsManagerServiceClient::new(client(&server, "admin").await);
    let mut admin_kms = KeyManagementServiceClient::new(client(&server, "admin").await);
    let mut app = SecretsManagerServiceClient::new(client(&server, "app").await);
    let mut intruder = SecretsManagerServiceClient::new(client(&server, "intruder").await);
    admin
        .create_secret(pb::CreateSecretRequest {
            name: "watched".into(),
            secret_string: Some("watched-value".into()),
            ..Default::default()
        })
        .await
        .unwrap();

    // Six denied requests by one principal: over the threshold of 3 once.
    for _ in 0..6 {
        let denied = intruder
            .get_secret_value(pb::GetSecretValueRequest {
                secret_id: "watched".into(),
                ..Default::default()
            })
            .await;
        assert!(denied.is_err());
    }
    // A first read, then a second by the same principal (silent).
    for _ in 0..2 {
        app.get_secret_value(pb::GetSecretValueRequest {
            secret_id: "watched".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    // Four tampered ciphertexts: over the threshold of 2 once.
    let key = admin_kms
        .create_key(pb::CreateKeyRequest::default())
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap()
        .key_id;
    let mut blob = admin_kms
        .encrypt(pb::EncryptRequest {
            key_id: key.clone(),
            plaintext: b"p".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .ciphertext_blob;
    let last = blob.len() - 1;
    blob[last] ^= 1;
    for _ in 0..4 {
        let bad = admin_kms
            .decrypt(pb::DecryptRequest {
                ciphertext_blob: blob.clone(),
                ..Default::default()
            })
            .await;
        assert!(bad.is_err());
    }
    // A key scheduled for deletion, then used.
    admin_kms
        .schedule_key_deletion(pb::ScheduleKeyDeletionRequest {
            key_id: key.clone(),
            pending_window_in_days: Some(7),
        })
        .await
        .unwrap();
    let used = admin_kms
        .encrypt(pb::EncryptRequest {
            key_id: key.clone(),
            plaintext: b"p".to_vec(),
            ..Default::default()
        })
        .await;
    assert!(used.is_err());

    let mut fired = Vec::new();
    for _ in 0..4 {
        let post = tokio::time::timeout(Duration::from_secs(30), posts.recv())
            .await
            .expect("a webhook POST")
            .unwrap();
        fired.push(post);
    }
    // Everything fired is delivered: then no POST can still be on its way.
    common::wait_for("deliveries to settle", Duration::from_secs(30), || async {
        metric(&server, "keyward_alarm_webhooks_delivered_total").await >= 4.0
    })
    .await;
    assert!(posts.try_recv().is_err(), "more than one POST for a firing");
    let mut names: Vec<&str> = fired.iter().map(|f| f["alarm"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "bad-ciphertext",
            "denied-burst",
            "new-reader",
            "pending-deletion-use"
        ],
        "{fired:#?}"
    );
    let by_name = |name: &str| fired.iter().find(|f| f["alarm"] == name).unwrap().clone();
    assert_eq!(
        by_name("denied-burst")["principal"],
        "keyward:principal/intruder"
    );
    assert_eq!(by_name("new-reader")["principal"], "keyward:principal/app");
    assert!(
        by_name("pending-deletion-use")["resource"]
            .as_str()
            .unwrap()
            .ends_with(&key)
    );
    let text = keyward::metrics::fetch(server.metrics.as_deref().unwrap())
        .await
        .unwrap();
    assert!(
        text.contains("keyward_alarms_fired_total{alarm=\"denied-burst\"} 1"),
        "{text}"
    );
    assert!(
        !serde_json::to_string(&fired)
            .unwrap()
            .contains("watched-value")
    );
}
