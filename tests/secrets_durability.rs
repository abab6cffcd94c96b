//! Secrets survive restarts and crashes, stay consistent under concurrent writers, and damage
//! on disk is reported for the damaged secret only.

mod common;

use common::secrets::*;
use common::*;
use keyward::api::pb;
use keyward::store::{Expect, Op, SecretValueRecord, Store};
use std::collections::BTreeMap;
use tonic::Code;

#[tokio::test]
async fn everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    sm.create_secret(pb::CreateSecretRequest {
        name: "app/db".into(),
        client_request_token: token("a"),
        secret_string: Some("v1".into()),
        description: "database".into(),
        tags: vec![pb::SecretTag {
            key: "env".into(),
            value: "prod".into(),
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    put(&mut sm, "app/db", &token("b"), "v2", &[])
        .await
        .unwrap();
    put(&mut sm, "app/db", &token("c"), "v3", &["AWSPENDING"])
        .await
        .unwrap();
    create(&mut sm, "doomed", Some("x")).await;
    let deleted = sm
        .delete_secret(pb::DeleteSecretRequest {
            secret_id: "doomed".into(),
            recovery_window_in_days: Some(7),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let before = stages(&mut sm, "app/db").await;
    let described_before = sm
        .describe_secret(pb::DescribeSecretRequest {
            secret_id: "app/db".into(),
        })
        .await
        .unwrap()
        .into_inner();
    drop(sm);
    server.stop();

    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    assert_eq!(stages(&mut sm, "app/db").await, before);
    assert_eq!(value(&mut sm, "app/db", "AWSCURRENT").await, "v2");
    assert_eq!(value(&mut sm, "app/db", "AWSPREVIOUS").await, "v1");
    assert_eq!(value(&mut sm, "app/db", "AWSPENDING").await, "v3");
    let described = sm
        .describe_secret(pb::DescribeSecretRequest {
            secret_id: "app/db".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.arn, described_before.arn);
    assert_eq!(described.tags, described_before.tags);
    assert_eq!(described.description, "database");
    let doomed = sm
        .describe_secret(pb::DescribeSecretRequest {
            secret_id: "doomed".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(doomed.deleted_date, Some(deleted.deletion_date));
    let err = get(&mut sm, "doomed", "", "").await.unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "InvalidRequestException");
}

#[tokio::test]
async fn acknowledged_writes_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    create(&mut sm, "crash", Some("initial")).await;

    // Four writers in a loop; the server is killed with SIGKILL while they run.
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut sm = sm.clone();
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0.. {
                let tok = token(&format!("w{w}-{i}"));
                match put(&mut sm, "crash", &tok, &format!("value {w}-{i}"), &[]).await {
                    Ok(_) => acknowledged.push((tok, format!("value {w}-{i}"))),
                    Err(_) => return acknowledged,
                }
            }
            acknowledged
        }));
    }
    let log = server.log();
    wait_for("some writes", std::time::Duration::from_secs(30), || {
        let mut sm = sm.clone();
        async move {
            sm.list_secret_version_ids(pb::ListSecretVersionIdsRequest {
                secret_id: "crash".into(),
                include_deprecated: true,
                ..Default::default()
            })
            .await
            // Up to four writes may commit without their reply arriving before the kill.
            .map(|r| r.into_inner().versions.len() > 48)
            .unwrap_or(false)
        }
    })
    .await;
    server.kill();
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    assert!(
        acknowledged.len() >= 40,
        "{} writes before the crash; {log}",
        acknowledged.len()
    );

    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    for (tok, expected) in &acknowledged {
        let got = get(&mut sm, "crash", tok, "")
            .await
            .unwrap_or_else(|e| panic!("{tok}: {e:?}"));
        assert_eq!(got.secret_string.as_deref(), Some(expected.as_str()));
    }
    let all = stages(&mut sm, "crash").await;
    let holders = |label: &str| {
        all.values()
            .filter(|s| s.iter().any(|x| x == label))
            .count()
    };
    assert_eq!(holders("AWSCURRENT"), 1);
    assert_eq!(holders("AWSPREVIOUS"), 1);
}

#[tokio::test]
async fn thirty_two_writers_leave_one_current_and_one_previous() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    create(&mut sm, "busy", Some("initial")).await;
    let mut writers = Vec::new();
    for w in 0..32 {
        let mut sm = client(&server).await;
        writers.push(tokio::spawn(async move {
            let mut written = Vec::new();
            for i in 0..4 {
                let tok = token(&format!("w{w}-{i}"));
                let value = format!("value {w}-{i}");
                put(&mut sm, "busy", &tok, &value, &[]).await.unwrap();
                written.push((tok, value));
            }
            written
        }));
    }
    let mut written = BTreeMap::new();
    for writer in writers {
        written.extend(writer.await.unwrap());
    }
    let all = stages(&mut sm, "busy").await;
    assert_eq!(all.len(), 1 + 32 * 4);
    let holder = |label: &str| {
        let found: Vec<_> = all
            .iter()
            .filter(|(_, s)| s.iter().any(|x| x == label))
            .map(|(v, _)| v.clone())
            .collect();
        assert_eq!(found.len(), 1, "{label}: {found:?}");
        found[0].clone()
    };
    let current = holder("AWSCURRENT");
    let previous = holder("AWSPREVIOUS");
    assert_ne!(current, previous);
    assert_eq!(
        value(&mut sm, "busy", "AWSCURRENT").await,
        written[&current]
    );
    for (tok, expected) in &written {
        let got = get(&mut sm, "busy", tok, "").await.unwrap();
        assert_eq!(got.secret_string.as_deref(), Some(expected.as_str()));
    }
}

async fn edit_value(store: &Store, prefix: &[u8], edit: impl Fn(&mut SecretValueRecord)) {
    let rows = store.scan(prefix, None, 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    let (key, stored) = &rows[0];
    let mut record: SecretValueRecord = keyward::store::decode(key, &stored.value).unwrap();
    edit(&mut record);
    overwrite(store, key.clone(), keyward::store::encode(&record)).await;
}

async fn overwrite(store: &Store, key: Vec<u8>, value: Vec<u8>) {
    store
        .commit(vec![Op::Put {
            key,
            value,
            expect: Expect::Any,
        }])
        .await
        .unwrap();
}

fn flip_base64(text: &mut String) {
    use base64::{Engine, engine::general_purpose::STANDARD};
    let mut bytes = STANDARD.decode(&*text).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    *text = STANDARD.encode(bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_on_disk_is_reported_for_that_secret_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    let mut ids = BTreeMap::new();
    for name in ["sealed", "wrapped", "metadata", "healthy"] {
        let arn = create(&mut sm, name, Some("the value")).await.arn;
        ids.insert(name, arn);
    }
    drop(sm);
    server.stop();

    {
        let store = Store::open(&dir.path().join("store")).unwrap();
        async fn id_of(store: &Store, name: &str) -> String {
            let key = format!("sm/secret/{name}");
            let record: keyward::store::SecretRecord = keyward::store::decode(
                key.as_bytes(),
                &store.get(key.as_bytes()).await.unwrap().unwrap().value,
            )
            .unwrap();
            record.id
        }
        edit_value(
            &store,
            format!("sm/value/{}/", id_of(&store, "sealed").await).as_bytes(),
            |r| flip_base64(&mut r.sealed),
        )
        .await;
        edit_value(
            &store,
            format!("sm/value/{}/", id_of(&store, "wrapped").await).as_bytes(),
            |r| flip_base64(&mut r.wrapped_key),
        )
        .await;
        let key = b"sm/secret/metadata".to_vec();
        let mut raw = store.get(&key).await.unwrap().unwrap().value;
        let middle = raw.len() / 2;
        raw[middle] = b'{';
        overwrite(&store, key, raw).await;
    }

    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    for name in ["sealed", "wrapped", "metadata"] {
        let err = get(&mut sm, name, "", "").await.unwrap_err();
        assert_error(&err, Code::FailedPrecondition, "DecryptionFailure");
        assert!(err.message().starts_with(name), "{name}: {}", err.message());
    }
    assert_eq!(value(&mut sm, "healthy", "").await, "the value");
    let listed = sm
        .list_secrets(pb::ListSecretsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = listed.secret_list.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names.len(),
        3,
        "the damaged record is skipped, the others listed: {names:?}"
    );
    assert!(!names.contains(&"metadata"));
    assert_eq!(server.health().await, SERVING);
}

#[tokio::test]
async fn sixty_four_writers_on_their_own_secrets_all_complete() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut writers = Vec::new();
    for w in 0..64 {
        let mut sm = client(&server).await;
        writers.push(tokio::spawn(async move {
            let name = format!("own/{w}");
            create(&mut sm, &name, Some("initial")).await;
            for i in 0..5 {
                put(
                    &mut sm,
                    &name,
                    &token(&format!("w{w}-{i}")),
                    &format!("{w}-{i}"),
                    &[],
                )
                .await
                .unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let mut sm = client(&server).await;
    for w in 0..64 {
        assert_eq!(
            value(&mut sm, &format!("own/{w}"), "").await,
            format!("{w}-4")
        );
    }
}
