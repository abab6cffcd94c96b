//! What survives a restart, and what happens when the token goes away under a running server.

mod common;

use common::*;
use keyward::api::pb;
use std::time::Duration;
use tonic::Code;

#[tokio::test]
async fn keys_aliases_and_blobs_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut kms = server.kms().await;
    let key = create_key(&mut kms, "durable").await;
    kms.create_alias(pb::CreateAliasRequest {
        alias_name: "alias/durable".into(),
        target_key_id: key.key_id.clone(),
    })
    .await
    .unwrap();
    let before_rotation = encrypt(&mut kms, "alias/durable", b"first", &[("k", "v")]).await;
    kms.rotate_key_on_demand(pb::RotateKeyOnDemandRequest {
        key_id: key.key_id.clone(),
    })
    .await
    .unwrap();
    let after_rotation = encrypt(&mut kms, "alias/durable", b"second", &[("k", "v")]).await;
    let doomed = create_key(&mut kms, "doomed").await.key_id;
    kms.schedule_key_deletion(pb::ScheduleKeyDeletionRequest {
        key_id: doomed,
        pending_window_in_days: Some(7),
    })
    .await
    .unwrap();
    drop(kms);
    server.stop();

    let server = Server::start(dir.path());
    let mut kms = server.kms().await;
    assert_eq!(
        decrypt(&mut kms, &before_rotation, &[("k", "v")])
            .await
            .unwrap(),
        b"first"
    );
    assert_eq!(
        decrypt(&mut kms, &after_rotation, &[("k", "v")])
            .await
            .unwrap(),
        b"second"
    );
    let described = describe(&mut kms, "alias/durable").await;
    assert_eq!(described.key_id, key.key_id);
    assert_eq!(described.current_key_version, 2);
    let keys = kms
        .list_keys(pb::ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .keys;
    // Ours and the secrets service's default key.
    assert_eq!(keys.len(), 3);
    let mut states = Vec::new();
    for k in keys {
        let m = describe(&mut kms, &k.key_id).await;
        states.push(m.key_state);
    }
    states.sort();
    assert_eq!(states, ["Enabled", "Enabled", "PendingDeletion"]);
}

#[tokio::test]
async fn losing_the_token_gives_unavailable_and_the_server_recovers_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut kms = server.kms().await;
    let key = create_key(&mut kms, "k").await;
    let blob = encrypt(&mut kms, &key.key_id, b"kept", &[]).await;
    assert_eq!(server.health().await, SERVING);

    let tokens = dir.path().join("softhsm/tokens");
    let moved = dir.path().join("softhsm/tokens.unplugged");
    std::fs::rename(&tokens, &moved).unwrap();

    for _ in 0..3 {
        let err = kms
            .generate_data_key(pb::GenerateDataKeyRequest {
                key_id: key.key_id.clone(),
                key_spec: "AES_256".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_error(&err, Code::Unavailable, "KeyUnavailableException");
        let err = decrypt(&mut kms, &blob, &[]).await.unwrap_err();
        assert_error(&err, Code::Unavailable, "KeyUnavailableException");
    }
    wait_for("health NOT_SERVING", Duration::from_secs(30), || async {
        server.health().await == NOT_SERVING
    })
    .await;
    // Metadata does not need the token.
    kms.describe_key(pb::DescribeKeyRequest {
        key_id: key.key_id.clone(),
    })
    .await
    .unwrap();

    std::fs::rename(&moved, &tokens).unwrap();
    wait_for("health SERVING", Duration::from_secs(30), || async {
        server.health().await == SERVING
    })
    .await;
    assert_eq!(decrypt(&mut kms, &blob, &[]).await.unwrap(), b"kept");
    let log = server.log();
    assert!(log.contains("re-initialised the PKCS#11 module"), "{log}");
}

#[tokio::test]
async fn a_wrong_pin_stops_the_server_at_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    // First start creates the token and its PIN files.
    Server::start(dir.path()).stop();
    std::fs::write(dir.path().join("softhsm/user.pin"), "0000-not-the-pin").unwrap();
    let err = Server::try_spawn(dir.path(), &[], &[])
        .err()
        .expect("must not start");
    assert!(err.contains("PIN") || err.contains("Pin"), "{err}");
    assert!(
        !err.contains("0000-not-the-pin"),
        "the PIN must not be printed: {err}"
    );
}
