//! Multi-site replication of secrets, on real servers: sites site-a, site-b and site-c on
//! 127.0.0.1, each with its own data directory, root of trust and region, talking to each
//! other over mutual TLS. Replicas converge to the primary's exact versions and labels, sealed
//! under their own site's keys; they survive outages of either side; the rules on replicas are
//! enforced; and only the primary's site can change a replica.

mod common;

use base64::{Engine, engine::general_purpose::STANDARD};
use common::secrets::*;
use common::sites::Sites;
use common::{assert_error, audit_records, wait_for};
use keyward::api::pb::{self, entry_outcome::Kind, replication_entry::Change};
use keyward::store::{SecretValueRecord, Store};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::{Code, Status};

const A: &str = "site-a";
const B: &str = "site-b";
const C: &str = "site-c";
const CUR: &str = "AWSCURRENT";
const PREV: &str = "AWSPREVIOUS";
const PEND: &str = "AWSPENDING";
/// Generous: convergence includes a peer's backoff (at most 1 s here) and, on TPM runs,
/// a slower root of trust.
const CONVERGE: Duration = Duration::from_secs(60);

fn replicas(regions: &[&str]) -> Vec<pb::ReplicaRegionType> {
    regions
        .iter()
        .map(|r| pb::ReplicaRegionType {
            region: r.to_string(),
            kms_key_id: String::new(),
        })
        .collect()
}

fn tag(key: &str, value: &str) -> pb::SecretTag {
    pb::SecretTag {
        key: key.into(),
        value: value.into(),
    }
}

async fn describe(sm: &mut Sm, secret: &str) -> pb::DescribeSecretResponse {
    sm.describe_secret(pb::DescribeSecretRequest {
        secret_id: secret.into(),
    })
    .await
    .expect("describe secret")
    .into_inner()
}

fn status_of<'a>(
    status: &'a [pb::ReplicationStatusType],
    region: &str,
) -> Option<&'a pb::ReplicationStatusType> {
    status.iter().find(|s| s.region == region)
}

fn regions_listed(status: &[pb::ReplicationStatusType]) -> Vec<String> {
    let mut regions: Vec<_> = status.iter().map(|s| s.region.clone()).collect();
    regions.sort();
    regions
}

/// Waits until the primary reports every one of `regions` InSync; returns that status.
async fn wait_in_sync(
    primary: &mut Sm,
    secret: &str,
    regions: &[&str],
) -> Vec<pb::ReplicationStatusType> {
    let in_sync = |status: &[pb::ReplicationStatusType]| {
        regions
            .iter()
            .all(|r| status_of(status, r).is_some_and(|s| s.status == "InSync"))
    };
    wait_for(
        &format!("{secret} InSync in {regions:?}"),
        CONVERGE,
        || async {
            in_sync(
                &describe(&mut primary.clone(), secret)
                    .await
                    .replication_status,
            )
        },
    )
    .await;
    describe(primary, secret).await.replication_status
}

fn ids(versions: &[pb::SecretVersionsListEntry]) -> Vec<String> {
    versions.iter().map(|v| v.version_id.clone()).collect()
}

async fn value_of_version(sm: &mut Sm, secret: &str, version_id: &str) -> String {
    get(sm, secret, version_id, "")
        .await
        .unwrap_or_else(|e| panic!("{secret} version {version_id}: {e:?}"))
        .secret_string
        .expect("a string value")
}

fn sorted_tags(tags: &[pb::SecretTag]) -> Vec<(String, String)> {
    let mut tags: Vec<_> = tags
        .iter()
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect();
    tags.sort();
    tags
}

/// The ARN a replica in `region` has: the primary's with the region replaced.
fn arn_in(primary_arn: &str, region: &str) -> String {
    primary_arn.replacen(&format!(":{A}:"), &format!(":{region}:"), 1)
}

#[track_caller]
fn assert_replica_refuses<T: std::fmt::Debug>(what: &str, result: Result<T, Status>) {
    let err = result.expect_err(what);
    assert_error(&err, Code::FailedPrecondition, "InvalidRequestException");
    assert!(err.message().contains(A), "{what}: {err:?}");
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_converge_with_identical_values_and_labels_sealed_under_each_sites_key() {
    const NAME: &str = "app/db";
    // Distinctive, so finding one in a file cannot be chance.
    const VALUES: [&str; 4] = [
        "plaintext-one-5d2c81e0",
        "plaintext-two-9a77f3b4",
        "plaintext-three-0be14c6d",
        "plaintext-four-e3f9a02a",
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut sites = Sites::start_all(dir.path(), &[A, B, C]);
    let mut a = sites.sm(A).await;
    let created = a
        .create_secret(pb::CreateSecretRequest {
            name: NAME.into(),
            client_request_token: token("v1"),
            secret_string: Some(VALUES[0].into()),
            description: "database".into(),
            tags: vec![tag("env", "prod")],
            add_replica_regions: replicas(&[B, C]),
            ..Default::default()
        })
        .await
        .expect("create with replicas")
        .into_inner();
    assert_eq!(regions_listed(&created.replication_status), [B, C]);
    assert!(
        created
            .arn
            .starts_with("arn:keyward:secretsmanager:site-a:000000000000:secret:app/db-"),
        "{}",
        created.arn
    );

    put(&mut a, NAME, &token("v2"), VALUES[1], &[])
        .await
        .unwrap();
    put(&mut a, NAME, &token("v3"), VALUES[2], &["blue"])
        .await
        .unwrap();
    move_stage(&mut a, NAME, "blue", &token("v1"), &token("v3"))
        .await
        .unwrap();
    put(&mut a, NAME, &token("v4"), VALUES[3], &[PEND])
        .await
        .unwrap();
    a.tag_resource(pb::TagResourceRequest {
        secret_id: NAME.into(),
        tags: vec![tag("owner", "payments")],
    })
    .await
    .unwrap();
    a.update_secret(pb::UpdateSecretRequest {
        secret_id: NAME.into(),
        description: Some("orders database".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let expected = expect(&[
        (&token("v1"), &[PREV, "blue"]),
        (&token("v2"), &[CUR]),
        (&token("v3"), &[]),
        (&token("v4"), &[PEND]),
    ]);
    assert_eq!(stages(&mut a, NAME).await, expected);

    for status in wait_in_sync(&mut a, NAME, &[B, C]).await {
        assert_eq!(status.lag_entries, 0, "{status:?}");
    }
    let primary = describe(&mut a, NAME).await;
    assert_eq!(primary.primary_region, A);
    assert_eq!(regions_listed(&primary.replication_status), [B, C]);
    let primary_versions = versions(&mut a, NAME).await;

    for site in [B, C] {
        let mut r = sites.sm(site).await;
        assert_eq!(stages(&mut r, NAME).await, expected, "{site}");
        let replica_versions = versions(&mut r, NAME).await;
        assert_eq!(
            ids(&replica_versions),
            ids(&primary_versions),
            "{site}: order"
        );
        for (i, plaintext) in VALUES.iter().enumerate() {
            let id = token(&format!("v{}", i + 1));
            assert_eq!(
                value_of_version(&mut r, NAME, &id).await,
                *plaintext,
                "{site}"
            );
        }
        for (stage, index) in [(CUR, 1), (PREV, 0), (PEND, 3), ("blue", 0)] {
            assert_eq!(value(&mut r, NAME, stage).await, VALUES[index], "{site}");
        }
        // Each site seals under its own KMS key, so no key ARN is shared with the primary.
        for (mine, theirs) in replica_versions.iter().zip(&primary_versions) {
            let shared: Vec<_> = mine
                .kms_key_ids
                .iter()
                .filter(|k| theirs.kms_key_ids.contains(k))
                .collect();
            assert!(shared.is_empty(), "{site}: {shared:?}");
        }

        let replica = describe(&mut r, NAME).await;
        assert_eq!(replica.arn, arn_in(&primary.arn, site));
        assert_eq!(replica.name, NAME);
        assert_eq!(replica.description, "orders database");
        assert_eq!(
            sorted_tags(&replica.tags),
            [
                ("env".to_owned(), "prod".to_owned()),
                ("owner".to_owned(), "payments".to_owned())
            ]
        );
        assert_eq!(sorted_tags(&replica.tags), sorted_tags(&primary.tags));
        assert_eq!(replica.primary_region, A, "{site}");
        assert!(replica.replication_status.is_empty(), "{replica:?}");
        let got = get(&mut r, NAME, "", "").await.unwrap();
        assert_eq!(got.arn, replica.arn);

        let listed = r
            .list_secrets(pb::ListSecretsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .secret_list;
        assert_eq!(listed.len(), 1, "{site}");
        assert_eq!(
            (listed[0].name.as_str(), listed[0].primary_region.as_str()),
            (NAME, A)
        );
    }

    // Site-b's stored data keys are site-b's KMS ciphertexts: site-a cannot open them, with
    // no context nor with either ARN as the secret's binding.
    let b_arn = arn_in(&primary.arn, B);
    sites.stop(B);
    let b_dir = sites.site(B).data_dir.clone();
    let mut wrapped = Vec::new();
    {
        let store_dir = b_dir.join("store");
        let store = common::wait_for_lock(|| async { Store::open(&store_dir) }).await;
        for (key, stored) in store.scan_all(b"sm/value/").await.unwrap() {
            let record: SecretValueRecord = keyward::store::decode(&key, &stored.value).unwrap();
            let version = String::from_utf8_lossy(&key)
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned();
            wrapped.push((version, STANDARD.decode(&record.wrapped_key).unwrap()));
        }
    }
    let mut stored_versions: Vec<_> = wrapped.iter().map(|(v, _)| v.clone()).collect();
    stored_versions.sort();
    assert_eq!(
        stored_versions,
        expected.keys().cloned().collect::<Vec<_>>(),
        "one sealed value per version"
    );
    let mut kms_a = sites.kms(A).await;
    for (version, blob) in &wrapped {
        for arn in ["", primary.arn.as_str(), b_arn.as_str()] {
            let context: Vec<(&str, &str)> = match arn {
                "" => vec![],
                arn => vec![("SecretARN", arn), ("SecretVersionId", version)],
            };
            let opened = common::decrypt(&mut kms_a, blob, &context).await;
            let err = opened.expect_err("site-a's KMS opened a data key sealed in site-b");
            assert!(
                matches!(err.code(), Code::NotFound | Code::InvalidArgument),
                "{version} {context:?}: {err:?}"
            );
        }
    }
    for file in files_under(&b_dir) {
        let bytes = std::fs::read(&file).unwrap();
        for plaintext in VALUES {
            assert!(
                !contains(&bytes, plaintext.as_bytes()),
                "{plaintext} in clear in {}",
                file.display()
            );
        }
    }

    // And they are genuine: site-b's own KMS opens every one of them under the binding of
    // one of the two ARNs (which one is the implementation's choice).
    sites.start(B);
    let mut kms_b = sites.kms(B).await;
    for (version, blob) in &wrapped {
        let mut opened = false;
        for arn in [primary.arn.as_str(), b_arn.as_str()] {
            let context = [("SecretARN", arn), ("SecretVersionId", version.as_str())];
            opened |= common::decrypt(&mut kms_b, blob, &context).await.is_ok();
        }
        assert!(opened, "site-b cannot open its own data key of {version}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_down_for_100_writes_converges_in_order_without_duplicates() {
    const NAME: &str = "busy";
    let dir = tempfile::tempdir().unwrap();
    let mut sites = Sites::start_all(dir.path(), &[A, B]);
    let mut a = sites.sm(A).await;
    a.create_secret(pb::CreateSecretRequest {
        name: NAME.into(),
        client_request_token: token("v000"),
        secret_string: Some("value 000".into()),
        add_replica_regions: replicas(&[B]),
        ..Default::default()
    })
    .await
    .unwrap();
    wait_in_sync(&mut a, NAME, &[B]).await;

    sites.kill(B);
    let mut blue = String::new();
    for i in 1..=100 {
        let version = token(&format!("v{i:03}"));
        put(&mut a, NAME, &version, &format!("value {i:03}"), &[])
            .await
            .unwrap();
        if i % 10 == 0 {
            move_stage(&mut a, NAME, "blue", &version, &blue)
                .await
                .unwrap();
            blue = version;
        }
    }
    let peer_up = format!("keyward_replication_peer_up{{peer=\"{B}\"}}");
    let lag_entries = format!("keyward_replication_lag_entries{{peer=\"{B}\"}}");
    let lag_seconds = format!("keyward_replication_lag_seconds{{peer=\"{B}\"}}");
    wait_for("site-a to see site-b down", CONVERGE, || async {
        sites.metric(A, &peer_up).await == Some(0.0)
    })
    .await;
    assert!(sites.metric(A, &lag_entries).await >= Some(1.0));
    let behind = describe(&mut a, NAME).await;
    let status = status_of(&behind.replication_status, B).expect("site-b listed");
    assert_eq!(status.status, "InProgress", "{status:?}");
    assert!(status.lag_entries >= 1, "{status:?}");

    let restarted = Instant::now();
    sites.start(B);
    let started_in = restarted.elapsed();
    wait_in_sync(&mut a, NAME, &[B]).await;
    eprintln!(
        "converged after replica outage of 100 writes in {} ms ({} ms of it starting site-b)",
        restarted.elapsed().as_millis(),
        started_in.as_millis()
    );

    let expected_ids: Vec<String> = (0..=100)
        .rev()
        .map(|i| token(&format!("v{i:03}")))
        .collect();
    let expected_stages = expect(&[(&token("v100"), &[CUR, "blue"]), (&token("v099"), &[PREV])]);
    let full = |stages: BTreeMap<String, Vec<String>>| {
        stages
            .into_iter()
            .filter(|(_, labels)| !labels.is_empty())
            .collect::<BTreeMap<_, _>>()
    };
    let mut b = sites.sm(B).await;
    let (on_a, on_b) = (versions(&mut a, NAME).await, versions(&mut b, NAME).await);
    assert_eq!(ids(&on_a), expected_ids, "site-a, newest first");
    assert_eq!(ids(&on_b), ids(&on_a), "site-b");
    assert_eq!(ids(&on_b).into_iter().collect::<HashSet<_>>().len(), 101);
    let (a_stages, b_stages) = (stages(&mut a, NAME).await, stages(&mut b, NAME).await);
    assert_eq!(a_stages.len(), 101);
    assert_eq!(full(a_stages.clone()), expected_stages);
    assert_eq!(b_stages, a_stages);
    for (i, version) in expected_ids.iter().rev().enumerate() {
        let on_b = value_of_version(&mut b, NAME, version).await;
        assert_eq!(on_b, format!("value {i:03}"));
        assert_eq!(on_b, value_of_version(&mut a, NAME, version).await);
    }

    wait_for(
        "site-a's replication gauges to settle",
        CONVERGE,
        || async {
            (
                sites.metric(A, &peer_up).await,
                sites.metric(A, &lag_entries).await,
                sites.metric(A, &lag_seconds).await,
            ) == (Some(1.0), Some(0.0), Some(0.0))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_keep_serving_when_the_primary_is_lost_and_a_promoted_replica_takes_writes() {
    const NAME: &str = "orders";
    let dir = tempfile::tempdir().unwrap();
    let mut sites = Sites::start_all(dir.path(), &[A, B, C]);
    let mut a = sites.sm(A).await;
    // Every value site-a was asked to store, acknowledged or not, by version id.
    let written = Arc::new(Mutex::new(BTreeMap::new()));
    let write = |version: String, value: String| {
        written.lock().unwrap().insert(version, value);
    };
    a.create_secret(pb::CreateSecretRequest {
        name: NAME.into(),
        client_request_token: token("s0"),
        secret_string: Some("start 0".into()),
        add_replica_regions: replicas(&[B, C]),
        ..Default::default()
    })
    .await
    .unwrap();
    write(token("s0"), "start 0".into());
    for i in 1..=3 {
        put(
            &mut a,
            NAME,
            &token(&format!("s{i}")),
            &format!("start {i}"),
            &[],
        )
        .await
        .unwrap();
        write(token(&format!("s{i}")), format!("start {i}"));
    }
    wait_in_sync(&mut a, NAME, &[B, C]).await;

    let acknowledged = Arc::new(Mutex::new(0usize));
    let writer = {
        let (mut a, written, acknowledged) = (a.clone(), written.clone(), acknowledged.clone());
        tokio::spawn(async move {
            // Far below the 200-version limit; the kill comes long before.
            for i in 0..150 {
                let (version, value) = (token(&format!("w{i:03}")), format!("streamed {i}"));
                written
                    .lock()
                    .unwrap()
                    .insert(version.clone(), value.clone());
                if put(&mut a, NAME, &version, &value, &[]).await.is_err() {
                    return true;
                }
                *acknowledged.lock().unwrap() += 1;
            }
            false
        })
    };
    wait_for("writes acknowledged mid-stream", CONVERGE, || async {
        *acknowledged.lock().unwrap() >= 5
    })
    .await;
    sites.kill(A);
    let stopped_by_the_loss = tokio::time::timeout(CONVERGE, writer)
        .await
        .expect("the writer stops once site-a is gone")
        .unwrap();
    assert!(stopped_by_the_loss, "the writer finished before the kill");

    // Both replicas still serve some version site-a wrote, with the value it wrote.
    let written = written.lock().unwrap().clone();
    for site in [B, C] {
        let mut r = sites.sm(site).await;
        let current = get(&mut r, NAME, "", "").await.expect("a replica serves");
        assert_eq!(
            current.secret_string.as_ref(),
            written.get(&current.version_id),
            "{site}"
        );
    }

    let mut b = sites.sm(B).await;
    assert_replica_refuses(
        "a write on a replica",
        put(&mut b, NAME, &token("early"), "too early", &[]).await,
    );
    let b_arn = describe(&mut b, NAME).await.arn;
    let promoted = b
        .stop_replication_to_replica(pb::StopReplicationToReplicaRequest {
            secret_id: NAME.into(),
        })
        .await
        .expect("promote site-b's replica")
        .into_inner();
    assert_eq!(promoted.arn, b_arn);
    assert_eq!(describe(&mut b, NAME).await.primary_region, "");
    put(&mut b, NAME, &token("on-b"), "written on site-b", &[])
        .await
        .expect("a promoted replica takes writes");
    assert_eq!(value(&mut b, NAME, CUR).await, "written on site-b");
    let mut c = sites.sm(C).await;
    assert_eq!(describe(&mut c, NAME).await.primary_region, A);

    // Site-a returns and learns of the promotion from site-b without writing anything: its
    // first call (queued changes, or a heartbeat) is answered with the notice.
    sites.start(A);
    let mut a = sites.sm(A).await;
    wait_for("site-a to learn of the promotion", CONVERGE, || async {
        let status = describe(&mut a.clone(), NAME).await.replication_status;
        regions_listed(&status) == [C]
    })
    .await;
    put(&mut a, NAME, &token("after"), "after the return", &[])
        .await
        .unwrap();
    wait_in_sync(&mut a, NAME, &[C]).await;
    assert_eq!(value(&mut c, NAME, CUR).await, "after the return");
    assert_eq!(value(&mut b, NAME, CUR).await, "written on site-b");
    assert!(!stages(&mut b, NAME).await.contains_key(&token("after")));
    assert_eq!(describe(&mut b, NAME).await.primary_region, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_rules_are_enforced() {
    const NAME: &str = "taken";
    const CONFLICT: &str = "a secret with this name already exists in this region";
    let dir = tempfile::tempdir().unwrap();
    let mut sites = Sites::new(dir.path(), &[A, B, C]);
    sites.allow_overwrite_local(B, A);
    sites.start(A);
    sites.start(B);
    let (mut a, mut b) = (sites.sm(A).await, sites.sm(B).await);

    // (a) A name already used in the target site: Failed, the local secret untouched, until
    // the primary forces the overwrite (site-b lets site-a do that).
    try_create(&mut b, NAME, Some("local-b"), &token("local"))
        .await
        .unwrap();
    a.create_secret(pb::CreateSecretRequest {
        name: NAME.into(),
        client_request_token: token("p1"),
        secret_string: Some("from-a".into()),
        add_replica_regions: replicas(&[B]),
        ..Default::default()
    })
    .await
    .unwrap();
    wait_for("site-b's replica to fail on the name", CONVERGE, || async {
        let status = describe(&mut a.clone(), NAME).await.replication_status;
        status_of(&status, B)
            .is_some_and(|s| s.status == "Failed" && s.status_message.contains(CONFLICT))
    })
    .await;
    assert_eq!(value(&mut b, NAME, CUR).await, "local-b");
    assert_eq!(describe(&mut b, NAME).await.primary_region, "");

    a.replicate_secret_to_regions(pb::ReplicateSecretToRegionsRequest {
        secret_id: NAME.into(),
        add_replica_regions: replicas(&[B]),
        force_overwrite_replica_secret: true,
    })
    .await
    .expect("replicate with force_overwrite");
    wait_in_sync(&mut a, NAME, &[B]).await;
    assert_eq!(value(&mut b, NAME, CUR).await, "from-a");
    assert_eq!(describe(&mut b, NAME).await.primary_region, A);
    let replica_stages = expect(&[(&token("p1"), &[CUR])]);
    assert_eq!(stages(&mut b, NAME).await, replica_stages);

    // (b) A replica refuses every write, naming its primary's region.
    assert_replica_refuses(
        "PutSecretValue",
        put(&mut b, NAME, &token("b1"), "written on b", &[]).await,
    );
    assert_replica_refuses(
        "UpdateSecretVersionStage",
        move_stage(&mut b, NAME, "blue", &token("p1"), "").await,
    );
    assert_replica_refuses(
        "UpdateSecret",
        b.update_secret(pb::UpdateSecretRequest {
            secret_id: NAME.into(),
            description: Some("changed on b".into()),
            ..Default::default()
        })
        .await,
    );
    assert_replica_refuses(
        "TagResource",
        b.tag_resource(pb::TagResourceRequest {
            secret_id: NAME.into(),
            tags: vec![tag("k", "v")],
        })
        .await,
    );
    assert_replica_refuses(
        "DeleteSecret",
        b.delete_secret(pb::DeleteSecretRequest {
            secret_id: NAME.into(),
            force_delete_without_recovery: true,
            ..Default::default()
        })
        .await,
    );
    assert_eq!(stages(&mut b, NAME).await, replica_stages);
    let untouched = describe(&mut b, NAME).await;
    assert_eq!(
        (untouched.description.as_str(), untouched.tags.len()),
        ("", 0)
    );
    assert_eq!(untouched.deleted_date, None);

    // (c) The primary cannot be deleted while it has replicas.
    let err = a
        .delete_secret(pb::DeleteSecretRequest {
            secret_id: NAME.into(),
            force_delete_without_recovery: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_error(&err, Code::FailedPrecondition, "InvalidRequestException");
    assert_eq!(describe(&mut a, NAME).await.deleted_date, None);

    // (d) Only configured regions other than the primary's own.
    for region in ["site-z", A] {
        let err = a
            .replicate_secret_to_regions(pb::ReplicateSecretToRegionsRequest {
                secret_id: NAME.into(),
                add_replica_regions: replicas(&[region]),
                force_overwrite_replica_secret: false,
            })
            .await
            .unwrap_err();
        assert_error(&err, Code::InvalidArgument, "InvalidParameterException");
        let err = a
            .create_secret(pb::CreateSecretRequest {
                name: format!("new-{region}"),
                secret_string: Some("x".into()),
                add_replica_regions: replicas(&[region]),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_error(&err, Code::InvalidArgument, "InvalidParameterException");
    }
    let status = describe(&mut a, NAME).await.replication_status;
    assert_eq!(regions_listed(&status), [B]);

    // (e) Removing a region deletes its replica there; then the primary can go.
    let removed = a
        .remove_regions_from_replication(pb::RemoveRegionsFromReplicationRequest {
            secret_id: NAME.into(),
            remove_replica_regions: vec![B.into()],
        })
        .await
        .expect("remove site-b")
        .into_inner();
    assert!(status_of(&removed.replication_status, B).is_none());
    assert!(
        describe(&mut a, NAME).await.replication_status.is_empty(),
        "site-b still listed"
    );
    wait_for("site-b's replica to be deleted", CONVERGE, || async {
        get(&mut b.clone(), NAME, "", "")
            .await
            .is_err_and(|e| e.code() == Code::NotFound)
    })
    .await;
    let err = get(&mut b, NAME, "", "").await.unwrap_err();
    assert_error(&err, Code::NotFound, "ResourceNotFoundException");
    a.delete_secret(pb::DeleteSecretRequest {
        secret_id: NAME.into(),
        force_delete_without_recovery: true,
        ..Default::default()
    })
    .await
    .expect("delete once no replica is left");
    let err = get(&mut a, NAME, "", "").await.unwrap_err();
    assert_error(&err, Code::NotFound, "ResourceNotFoundException");
}

/// A request from a log the replica has never seen, so its entries cannot be taken for
/// repeats of ones already applied.
fn forged(entries: Vec<pb::ReplicationEntry>) -> pb::ApplyRequest {
    pb::ApplyRequest {
        entries,
        log_id: format!("forged-{}", uuid::Uuid::new_v4()),
    }
}

/// An upsert that would make `forged` the current version of "guarded".
fn forged_upsert(seq: u64, primary_arn: &str, existing: &str) -> pb::ReplicationEntry {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let version = |id: &str, stages: &[&str], value: &str| pb::ReplicaVersion {
        version_id: id.into(),
        created_date: now,
        stages: stages.iter().map(|s| s.to_string()).collect(),
        has_value: true,
        secret_binary: None,
        secret_string: Some(value.into()),
    };
    pb::ReplicationEntry {
        seq,
        changed_at: now,
        name: "guarded".into(),
        change: Some(Change::Upsert(pb::ReplicaState {
            primary_arn: primary_arn.into(),
            created_date: now,
            // Self-contained (every value sent), so nothing but the sender's standing can
            // make a site refuse it.
            versions: vec![
                version(existing, &[PREV], "forged old value"),
                version(&token("forged"), &[CUR], "forged value"),
            ],
            ..Default::default()
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_sites_cannot_inject_versions() {
    const NAME: &str = "guarded";
    let dir = tempfile::tempdir().unwrap();
    // Site-c is configured, so site-b knows its certificate, but need not run.
    let mut sites = Sites::new(dir.path(), &[A, B, C]);
    sites.start(A);
    sites.start(B);
    let mut a = sites.sm(A).await;
    let arn = a
        .create_secret(pb::CreateSecretRequest {
            name: NAME.into(),
            client_request_token: token("g1"),
            secret_string: Some("genuine".into()),
            add_replica_regions: replicas(&[B]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .arn;
    wait_in_sync(&mut a, NAME, &[B]).await;
    let mut b = sites.sm(B).await;
    let before = stages(&mut b, NAME).await;
    assert_eq!(before, expect(&[(&token("g1"), &[CUR])]));
    let unchanged = |what: &'static str| {
        let mut b = b.clone();
        let before = before.clone();
        async move {
            assert_eq!(stages(&mut b, NAME).await, before, "{what}");
            assert_eq!(value(&mut b, NAME, CUR).await, "genuine", "{what}");
            assert_eq!(describe(&mut b, NAME).await.primary_region, A, "{what}");
        }
    };

    // (a) A certificate from another CA, claiming to be the primary's site.
    let rogue = common::pki::Ca::new(&dir.path().join("rogue"), "rogue-ca");
    let impostor = rogue.site(&dir.path().join("rogue"), A);
    let result = sites
        .apply_as(
            B,
            &impostor,
            forged(vec![forged_upsert(1, &arn, &token("g1"))]),
        )
        .await;
    assert!(
        result.is_err(),
        "another CA's certificate served: {result:?}"
    );
    unchanged("after another CA's certificate").await;

    // (b) A genuine peer that is not the secret's primary: refused, whether it claims the
    // primary's ARN, one of its own, or removes the replica.
    let c_pair = &sites.site(C).pair;
    let forgeries = [
        forged_upsert(1, &arn, &token("g1")),
        forged_upsert(2, &arn_in(&arn, C), &token("g1")),
        pb::ReplicationEntry {
            seq: 3,
            changed_at: 0,
            name: NAME.into(),
            change: Some(Change::Remove(true)),
        },
    ];
    for entry in forgeries {
        let seq = entry.seq;
        // Site-c is a peer of site-b: the call is served, and the entry refused.
        let response = sites
            .apply_as(B, c_pair, forged(vec![entry]))
            .await
            .expect("site-c is a configured peer");
        let outcomes: Vec<_> = response
            .outcomes
            .iter()
            .map(|o| (o.seq, o.kind()))
            .collect();
        assert_eq!(outcomes, [(seq, Kind::Refused)], "{response:?}");
        unchanged("after site-c's forgery").await;
    }

    // (c) The right CA, but an identity no site lists as a peer.
    let stranger = sites.ca.site(&dir.path().join("pki"), "site-x");
    let err = sites
        .apply_as(
            B,
            &stranger,
            forged(vec![forged_upsert(1, &arn, &token("g1"))]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::Unauthenticated | Code::PermissionDenied),
        "{err:?}"
    );
    unchanged("after an unknown site's certificate").await;

    // The genuine primary still replicates to site-b.
    put(&mut a, NAME, &token("g2"), "genuine 2", &[])
        .await
        .unwrap();
    wait_in_sync(&mut a, NAME, &[B]).await;
    assert_eq!(
        stages(&mut b, NAME).await,
        expect(&[(&token("g1"), &[PREV]), (&token("g2"), &[CUR])])
    );
    assert_eq!(value(&mut b, NAME, CUR).await, "genuine 2");

    // Site-b's audit log names every attempt that reached it, refused or applied, by the
    // certificate that made it (another CA's never got past the handshake).
    let log = std::fs::read_to_string(sites.site(B).data_dir.join("audit/audit.log")).unwrap();
    let site_records: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .filter(|r: &serde_json::Value| r["action"] == "keyward:ApplyReplicatedChange")
        .collect();
    let count = |site: &str, outcome: &str| {
        let principal = format!("keyward:principal/{}", Sites::identity(site));
        site_records
            .iter()
            .filter(|r| r["principal"] == principal.as_str() && r["outcome"] == outcome)
            .count()
    };
    assert_eq!(count(C, "denied"), 3, "{site_records:#?}");
    assert_eq!(count("site-x", "denied"), 1, "{site_records:#?}");
    assert_eq!(count(A, "denied"), 0, "{site_records:#?}");
    assert!(count(A, "success") >= 2, "{site_records:#?}");
}

/// An entry of the genuine primary's log for "dup" holding `versions` (id, labels, value).
fn entry(seq: u64, primary_arn: &str, versions: &[(&str, &[&str], &str)]) -> pb::ReplicationEntry {
    pb::ReplicationEntry {
        seq,
        changed_at: 0,
        name: "dup".into(),
        change: Some(Change::Upsert(pb::ReplicaState {
            primary_arn: primary_arn.into(),
            versions: versions
                .iter()
                .map(|(id, stages, value)| pb::ReplicaVersion {
                    version_id: token(id),
                    stages: stages.iter().map(|s| s.to_string()).collect(),
                    has_value: true,
                    secret_string: Some(value.to_string()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_entries_are_applied_once_and_never_roll_a_replica_back() {
    let dir = tempfile::tempdir().unwrap();
    // Site-a's certificate speaks for site-a; its server need not run.
    let mut sites = Sites::new(dir.path(), &[A, B]);
    sites.start(B);
    let a_pair = &sites.site(A).pair;
    let arn = "arn:keyward:secretsmanager:site-a:000000000000:secret:dup-AbCdEf";
    let log_id = uuid::Uuid::new_v4().to_string();
    let sites = &sites;
    let log_id = log_id.as_str();
    let apply = |entries: Vec<pb::ReplicationEntry>| async move {
        let request = pb::ApplyRequest {
            entries,
            log_id: log_id.to_owned(),
        };
        let response = sites.apply_as(B, a_pair, request).await.expect("apply");
        response
            .outcomes
            .iter()
            .map(|o| (o.seq, o.kind()))
            .collect::<Vec<_>>()
    };
    let first = entry(1, arn, &[("d1", &[CUR], "one")]);
    let second = entry(2, arn, &[("d1", &[PREV], "one"), ("d2", &[CUR], "two")]);
    let third = entry(
        3,
        arn,
        &[("d1", &[PREV], "one"), ("d2", &[CUR, "blue"], "two")],
    );
    assert_eq!(apply(vec![first.clone()]).await, [(1, Kind::Applied)]);
    assert_eq!(apply(vec![second.clone()]).await, [(2, Kind::Applied)]);
    let mut b = sites.sm(B).await;
    let after_second = expect(&[(&token("d1"), &[PREV]), (&token("d2"), &[CUR])]);
    assert_eq!(stages(&mut b, "dup").await, after_second);

    // The first entry again (a lost acknowledgement): it would move AWSCURRENT back.
    assert_eq!(apply(vec![first]).await, [(1, Kind::Duplicate)]);
    assert_eq!(stages(&mut b, "dup").await, after_second);
    assert_eq!(value(&mut b, "dup", CUR).await, "two");

    // A batch that overlaps what was applied: the old part is skipped, the new part applied.
    assert_eq!(
        apply(vec![second, third]).await,
        [(2, Kind::Duplicate), (3, Kind::Applied)]
    );
    assert_eq!(
        stages(&mut b, "dup").await,
        expect(&[(&token("d1"), &[PREV]), (&token("d2"), &[CUR, "blue"])])
    );
    let listed = versions(&mut b, "dup").await;
    assert_eq!(
        ids(&listed),
        [token("d2"), token("d1")],
        "no duplicate versions"
    );
    assert_eq!(describe(&mut b, "dup").await.primary_region, A);

    // One batch that removes the replica and creates it again: each entry sees the one
    // before it, and nothing of the removed copy is left.
    let removed = pb::ReplicationEntry {
        seq: 4,
        changed_at: 0,
        name: "dup".into(),
        change: Some(Change::Remove(true)),
    };
    let recreated = entry(5, arn, &[("d3", &[CUR], "three")]);
    assert_eq!(
        apply(vec![removed, recreated]).await,
        [(4, Kind::Applied), (5, Kind::Applied)]
    );
    assert_eq!(
        stages(&mut b, "dup").await,
        expect(&[(&token("d3"), &[CUR])])
    );
    assert_eq!(value(&mut b, "dup", CUR).await, "three");
    let err = get(&mut b, "dup", &token("d2"), "").await.unwrap_err();
    assert_error(&err, Code::NotFound, "ResourceNotFoundException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_sends_only_to_the_site_whose_certificate_it_expects() {
    const NAME: &str = "misrouted";
    let dir = tempfile::tempdir().unwrap();
    // Site-a's endpoint for site-b leads to site-c: a wrong DNS entry, a moved address. Site-c
    // is a genuine site and would accept site-a's changes, so only the server certificate
    // (site-c's, not site-b's) can stop site-b's values from going there.
    let mut sites = Sites::new(dir.path(), &[A, B, C]);
    sites.misroute(A, B, C);
    for site in [A, B, C] {
        sites.start(site);
    }
    let mut a = sites.sm(A).await;
    a.create_secret(pb::CreateSecretRequest {
        name: NAME.into(),
        client_request_token: token("m1"),
        secret_string: Some("for site-b only".into()),
        add_replica_regions: replicas(&[B, C]),
        ..Default::default()
    })
    .await
    .unwrap();
    // Site-c gets its own copy over the right route...
    wait_in_sync(&mut a, NAME, &[C]).await;
    let peer_up = format!("keyward_replication_peer_up{{peer=\"{B}\"}}");
    wait_for("site-a to refuse site-c as site-b", CONVERGE, || async {
        sites.metric(A, &peer_up).await == Some(0.0)
    })
    .await;
    let status = describe(&mut a, NAME).await.replication_status;
    assert_eq!(status_of(&status, B).unwrap().status, "InProgress");
    assert!(
        sites
            .server(A)
            .log()
            .contains("replication peer unreachable")
    );
    // ...and nothing more: site-a's log for site-b never reached it, and site-b has nothing.
    let mut c = sites.sm(C).await;
    assert_eq!(describe(&mut c, NAME).await.primary_region, A);
    let c_log = std::fs::read_to_string(sites.site(C).data_dir.join("audit/audit.log")).unwrap();
    let deliveries = c_log
        .lines()
        .filter(|l| l.contains("keyward:ApplyReplicatedChange"))
        .count();
    assert_eq!(deliveries, 1, "only site-c's own entry: {c_log}");
    let mut b = sites.sm(B).await;
    let err = get(&mut b, NAME, "", "").await.unwrap_err();
    assert_error(&err, Code::NotFound, "ResourceNotFoundException");
}

/// Security finding 1: whether a peer may replace a secret of this site's own is this site's
/// decision (`allow_overwrite_local` for that peer), not the sender's
/// `force_overwrite_replica_secret`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_site_cannot_overwrite_this_sites_own_secrets() {
    const NAME: &str = "prod/db";
    let dir = tempfile::tempdir().unwrap();
    let mut sites = Sites::start_all(dir.path(), &[A, B, C]);
    let (mut a, mut b) = (sites.sm(A).await, sites.sm(B).await);

    // Site-b's own prod/db, with a resource policy and rotation settings.
    try_create(&mut b, NAME, Some("b's own value"), &token("local"))
        .await
        .unwrap();
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"secretsmanager:DeleteSecret","Resource":"*"}]}"#;
    b.put_resource_policy(pb::PutResourcePolicyRequest {
        secret_id: NAME.into(),
        resource_policy: policy.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    b.rotate_secret(pb::RotateSecretRequest {
        secret_id: NAME.into(),
        rotation_rules: Some(pb::RotationRulesType {
            automatically_after_days: Some(30),
            ..Default::default()
        }),
        rotator: Some(pb::RotatorConfig {
            kind: Some(pb::rotator_config::Kind::Generated(
                pb::GeneratedRotator::default(),
            )),
        }),
        rotate_immediately: Some(false),
        ..Default::default()
    })
    .await
    .unwrap();
    let before = describe(&mut b, NAME).await;

    // Site-a forces its replica onto site-b: refused there, Failed here with the reason.
    a.create_secret(pb::CreateSecretRequest {
        name: NAME.into(),
        client_request_token: token("p1"),
        secret_string: Some("a's value".into()),
        add_replica_regions: replicas(&[B]),
        force_overwrite_replica_secret: true,
        ..Default::default()
    })
    .await
    .unwrap();
    const REFUSAL: &str = "does not let site-a overwrite its own secrets";
    wait_for("site-b to refuse the overwrite", CONVERGE, || async {
        let status = describe(&mut a.clone(), NAME).await.replication_status;
        status_of(&status, B)
            .is_some_and(|s| s.status == "Failed" && s.status_message.contains(REFUSAL))
    })
    .await;
    assert_eq!(value(&mut b, NAME, CUR).await, "b's own value");
    let after = describe(&mut b, NAME).await;
    assert_eq!(after.primary_region, "");
    assert_eq!(after.arn, before.arn);
    assert_eq!(after.rotation_enabled, before.rotation_enabled);
    assert!(after.rotation_enabled);
    assert_eq!(after.rotation_rules, before.rotation_rules);
    assert_eq!(after.rotator, before.rotator);
    assert_eq!(after.version_ids_to_stages, before.version_ids_to_stages);
    let stored = b
        .get_resource_policy(pb::GetResourcePolicyRequest {
            secret_id: NAME.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.resource_policy.as_deref(), Some(policy));

    // Audited on both sides: site-b's refusal of site-a's change, and site-a's record that
    // site-b refused it.
    let refused_at_b: Vec<_> =
        audit_records(&sites.site(B).data_dir, "keyward:ApplyReplicatedChange")
            .into_iter()
            .filter(|r| r["outcome"] == "denied")
            .collect();
    assert_eq!(refused_at_b.len(), 1, "{refused_at_b:?}");
    assert!(
        refused_at_b[0]["reason"]
            .as_str()
            .unwrap()
            .contains(REFUSAL)
    );
    assert_eq!(
        refused_at_b[0]["principal"],
        format!("keyward:principal/{}", Sites::identity(A))
    );
    let refused_at_a = audit_records(&sites.site(A).data_dir, "keyward:ReplicateChange");
    assert_eq!(refused_at_a.len(), 1, "{refused_at_a:?}");
    assert_eq!(refused_at_a[0]["outcome"], "denied");
    assert!(
        refused_at_a[0]["reason"]
            .as_str()
            .unwrap()
            .contains(REFUSAL)
    );
    assert!(refused_at_a[0]["resource"].as_str().unwrap().contains(NAME));

    // Once site-b's own configuration lets site-a overwrite, the same request converges.
    sites.stop(B);
    sites.allow_overwrite_local(B, A);
    sites.start(B);
    let mut b = sites.sm(B).await;
    a.replicate_secret_to_regions(pb::ReplicateSecretToRegionsRequest {
        secret_id: NAME.into(),
        add_replica_regions: replicas(&[B]),
        force_overwrite_replica_secret: true,
    })
    .await
    .unwrap();
    wait_in_sync(&mut a, NAME, &[B]).await;
    assert_eq!(value(&mut b, NAME, CUR).await, "a's value");
    assert_eq!(describe(&mut b, NAME).await.primary_region, A);
}
