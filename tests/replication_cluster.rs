//! Multi-site replication from a cluster: site-a is two Keyward nodes on a 3-member etcd
//! cluster, site-b a single server, replicating over mutual TLS. Entries appended on either
//! node share one numbering in the store; every node reports what the site's sender saw; one
//! node at a time sends (the duty `replication-site-b`), and when it dies the other takes over
//! and site-b ends with every acknowledged write, none applied twice.

mod common;

use common::cluster::Site;
use common::pki::{Ca, Pair};
use common::secrets::{self, Sm, token};
use common::{Server, free_port, wait_for, wait_for_lock};
use keyward::api::pb;
use keyward::store::{EtcdOptions, Store, keyspace};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const A: &str = "site-a";
const B: &str = "site-b";
const DUTY: &str = "replication-site-b";
const SECRET: &str = "app/db";
/// Generous: convergence includes a lease TTL for a handover and the sender's backoff.
const CONVERGE: Duration = Duration::from_secs(60);

/// The `[replication]` table of a site listening on `port`, with `peer` at `peer_port`.
fn replication_table(
    region: &str,
    port: u16,
    pair: &Pair,
    ca: &Path,
    peer: &str,
    peer_port: u16,
) -> String {
    format!(
        "region = \"{region}\"\n\
         [replication]\nlisten = \"127.0.0.1:{port}\"\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n\
         ca_file = \"{ca}\"\nretry_initial_ms = 100\nretry_max_ms = 1000\n\
         [[replication.peers]]\nregion = \"{peer}\"\nendpoint = \"https://127.0.0.1:{peer_port}\"\n\
         identity = \"{peer}.keyward.test\"\n",
        cert = pair.cert.display(),
        key = pair.key.display(),
        ca = ca.display(),
    )
}

async fn sm(server: &Server) -> Sm {
    secrets::client(server).await
}

/// site-b's replica status and lag entries as `sm` (a site-a node) describes the secret.
async fn replica_status(sm: &Sm) -> (String, u64) {
    let described = sm
        .clone()
        .describe_secret(pb::DescribeSecretRequest {
            secret_id: SECRET.into(),
        })
        .await
        .expect("describe secret")
        .into_inner();
    let status = described
        .replication_status
        .iter()
        .find(|s| s.region == B)
        .expect("site-b listed");
    (status.status.clone(), status.lag_entries)
}

async fn wait_status(sm: &Sm, what: &str, status: &str, lag: u64) {
    wait_for(what, CONVERGE, || async {
        replica_status(sm).await == (status.to_owned(), lag)
    })
    .await;
}

async fn wait_current(sm: &Sm, what: &str, value: &str) {
    wait_for(what, CONVERGE, || async {
        let read = secrets::get(&mut sm.clone(), SECRET, "", "AWSCURRENT").await;
        read.ok().and_then(|r| r.secret_string).as_deref() == Some(value)
    })
    .await;
}

/// A metric as the node whose metrics listener is `addr` renders it.
async fn metric(addr: &str, name: &str) -> Option<f64> {
    let text = keyward::metrics::fetch(addr).await.ok()?;
    keyward::metrics::value_of(&text, name)
}

/// site-a's store, read beside its nodes.
async fn store_of(site: &Site) -> Store {
    etcd_store(site.etcd.endpoints()).await
}

async fn etcd_store(endpoints: Vec<String>) -> Store {
    Store::connect_etcd(EtcdOptions {
        endpoints,
        prefix: b"/keyward/test/".to_vec(),
        tls: None,
        user: None,
        timeout: Duration::from_secs(5),
        max_txn_ops: 1024,
    })
    .await
    .expect("connect to a site's etcd")
}

async fn text_at(store: &Store, key: &[u8]) -> String {
    let found = store.get(key).await.unwrap().expect("key present");
    String::from_utf8(found.value).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_replicates_from_every_node_and_hands_the_sender_over_when_its_node_dies() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let ca = Ca::new(&pki, "sites-ca");
    let (pair_a, pair_b) = (ca.site(&pki, A), ca.site(&pki, B));
    let a_ports = [free_port(), free_port()];
    let b_port = free_port();

    let b_dir = dir.path().join(B);
    let b_config = replication_table(B, b_port, &pair_b, &ca.cert, A, a_ports[0]);
    let mut b = Server::with_config(&b_dir, &b_config);
    let ca_cert = ca.cert.clone();
    let mut site = Site::start_with(
        &dir.path().join(A),
        2,
        move |i| replication_table(A, a_ports[i], &pair_a, &ca_cert, B, b_port),
        &[],
    );
    // The sender is a duty: one node holds it.
    let holder = site.wait_holder(DUTY).await;
    let other = 1 - holder;
    let (a0, a1) = (sm(site.node(0)).await, sm(site.node(1)).await);
    let mut on_b = sm(&b).await;

    // Created on node 0, put on node 1: both reach site-b, numbered 1 and 2 in one log.
    a0.clone()
        .create_secret(pb::CreateSecretRequest {
            name: SECRET.into(),
            client_request_token: token("v0"),
            secret_string: Some("v0".into()),
            add_replica_regions: vec![pb::ReplicaRegionType {
                region: B.into(),
                kms_key_id: String::new(),
            }],
            ..Default::default()
        })
        .await
        .expect("create on node 0");
    wait_current(&on_b, "the secret created on node 0 in site-b", "v0").await;
    secrets::put(&mut a1.clone(), SECRET, &token("v1"), "v1", &[])
        .await
        .expect("put on node 1");
    wait_current(&on_b, "the value put on node 1 in site-b", "v1").await;
    wait_status(&a0, "node 0 to report InSync", "InSync", 0).await;
    wait_status(&a1, "node 1 to report InSync", "InSync", 0).await;
    let store = store_of(&site).await;
    assert_eq!(text_at(&store, &keyspace::replication_seq(B)).await, "2");
    let log = keyspace::replication_log(B);
    assert!(store.scan_all(&log).await.unwrap().is_empty());

    // site-b down: a change made through the sender's node shows on the other node too.
    b.kill();
    let (writer, reader) = (sm(site.node(holder)).await, sm(site.node(other)).await);
    let reader_metrics = site.node(other).metrics.clone().expect("metrics listener");
    let reader_metrics = reader_metrics.as_str();
    secrets::put(&mut writer.clone(), SECRET, &token("v2"), "v2", &[])
        .await
        .expect("put while site-b is down");
    wait_status(
        &reader,
        "the other node to see the change pending",
        "InProgress",
        1,
    )
    .await;
    let peer_up = format!("keyward_replication_peer_up{{peer=\"{B}\"}}");
    let lag_entries = format!("keyward_replication_lag_entries{{peer=\"{B}\"}}");
    wait_for("the other node to report site-b down", CONVERGE, || async {
        (
            metric(reader_metrics, &peer_up).await,
            metric(reader_metrics, &lag_entries).await,
        ) == (Some(0.0), Some(1.0))
    })
    .await;
    b = Server::with_config(&b_dir, &b_config);
    on_b = sm(&b).await;
    wait_current(&on_b, "site-b to catch up", "v2").await;
    for node in [&a0, &a1] {
        wait_status(node, "every node to report InSync again", "InSync", 0).await;
    }
    wait_for("the other node to report site-b up", CONVERGE, || async {
        (
            metric(reader_metrics, &peer_up).await,
            metric(reader_metrics, &lag_entries).await,
        ) == (Some(1.0), Some(0.0))
    })
    .await;

    // Writes go on through the other node while the sender's node is killed.
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let (acknowledged, stop) = (Arc::clone(&acknowledged), Arc::clone(&stop));
        let mut client = reader.clone();
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let version = token(&format!("w{i}"));
                if secrets::put(&mut client, SECRET, &version, &format!("w{i}"), &[])
                    .await
                    .is_ok()
                {
                    acknowledged.lock().unwrap().push(version);
                }
                i += 1;
            }
        })
    };
    let written = || acknowledged.lock().unwrap().len();
    wait_for("writes before the kill", CONVERGE, || async {
        written() >= 3
    })
    .await;
    site.nodes[holder].take().expect("holder running").kill();
    wait_for(
        "the other node to take the sender over",
        CONVERGE,
        || async { site.holder(DUTY) == Some(format!("node-{other}")) },
    )
    .await;
    let at_takeover = written();
    wait_for("writes after the takeover", CONVERGE, || async {
        written() >= at_takeover + 5
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    writing.await.unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();
    // A write's value is its version's tag: the token without its padding.
    let value_of = |version: &str| version.trim_end_matches('-').to_owned();
    let last = value_of(acknowledged.last().expect("writes"));
    let survivor = reader;
    wait_current(&on_b, "site-b to have the last write", &last).await;
    wait_status(&survivor, "the survivor to report InSync", "InSync", 0).await;

    // site-b holds every acknowledged write, with site-a's versions and labels exactly.
    let (a_stages, b_stages) = (
        secrets::stages(&mut survivor.clone(), SECRET).await,
        secrets::stages(&mut on_b, SECRET).await,
    );
    assert_eq!(b_stages, a_stages);
    let on_b_ids: BTreeSet<&String> = b_stages.keys().collect();
    for version in acknowledged
        .iter()
        .chain([&token("v0"), &token("v1"), &token("v2")])
    {
        assert!(
            on_b_ids.contains(version),
            "acknowledged {version} is missing in site-b"
        );
    }
    for version in &acknowledged {
        let read = secrets::get(&mut on_b, SECRET, version, "").await.unwrap();
        assert_eq!(read.secret_string, Some(value_of(version)));
    }

    // One entry per committed change, numbered without a gap or a repeat, and site-b applied
    // exactly that far: each entry once.
    let seq = text_at(&store, &keyspace::replication_seq(B)).await;
    assert_eq!(
        seq,
        a_stages.len().to_string(),
        "one entry per version written"
    );
    assert!(store.scan_all(&log).await.unwrap().is_empty());
    let log_id = text_at(&store, keyspace::REPLICATION_LOG_ID).await;
    let applied = match b.etcd.as_ref().map(|etcd| etcd.endpoints()) {
        // The suite on etcd: site-b has its own.
        Some(endpoints) => {
            let b_store = etcd_store(endpoints).await;
            text_at(&b_store, &keyspace::replication_applied(A)).await
        }
        None => {
            b.stop();
            let b_store = wait_for_lock(|| async { Store::open(&b_dir.join("store")) }).await;
            text_at(&b_store, &keyspace::replication_applied(A)).await
        }
    };
    assert_eq!(applied, format!("{log_id} {seq}"));
}
