//! A site of several Keyward nodes on a 3-member etcd cluster, every node on one SoftHSM token:
//! every node serves every request, one node at a time runs each background duty and hands it
//! over when it dies or stalls, and etcd failures make writes fail UNAVAILABLE without losing
//! anything.

mod common;

use common::cluster::{LEASE_TTL_SECS, Site};
use common::rotation::{self, exec, rotate};
use common::secrets::{self, Sm, token};
use common::*;
use keyward::api::pb;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};
use tonic::Code;

/// Long enough for any handover: a lease TTL, a poll, and a slow machine.
const HANDOVER: Duration = Duration::from_secs(60);

async fn sm(site: &Site, i: usize) -> Sm {
    secrets::client(site.node(i)).await
}

#[tokio::test]
async fn every_node_serves_every_request_and_racing_writers_leave_one_awscurrent() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start(dir.path(), 3, "", &[]);
    let (mut a, mut b, mut c) = (sm(&site, 0).await, sm(&site, 1).await, sm(&site, 2).await);

    // Written on A, read at once on B and C.
    secrets::create(&mut a, "shared", Some("from-a")).await;
    assert_eq!(
        secrets::value(&mut b, "shared", "AWSCURRENT").await,
        "from-a"
    );
    assert_eq!(
        secrets::value(&mut c, "shared", "AWSCURRENT").await,
        "from-a"
    );

    // A key made on A is usable on B and C: one token behind every node.
    let mut kms_a = site.node(0).kms().await;
    let key = create_key(&mut kms_a, "shared key").await.key_id;
    let blob = encrypt(&mut site.node(1).kms().await, &key, b"hello", &[]).await;
    let plain = decrypt(&mut site.node(2).kms().await, &blob, &[])
        .await
        .unwrap();
    assert_eq!(plain, b"hello");

    // 32 writers spread over the nodes race on one secret.
    let mut writers = Vec::new();
    for i in 0..32 {
        let endpoint = site.node(i % 3).endpoint.clone();
        writers.push(tokio::spawn(async move {
            use keyward::cli::client::{Connect, connect};
            let mut client = pb::secrets_manager_service_client::SecretsManagerServiceClient::new(
                connect(&Connect::plain(&endpoint)).await.unwrap(),
            );
            let version = token(&format!("racer-{i}"));
            secrets::put(&mut client, "shared", &version, &format!("v{i}"), &[])
                .await
                .map(|r| (r.version_id, format!("v{i}")))
        }));
    }
    let mut acknowledged = Vec::new();
    for writer in writers {
        match writer.await.unwrap() {
            Ok(done) => acknowledged.push(done),
            // A writer that lost every retry gets an AWS error, as on one node.
            Err(status) => assert_eq!(
                keyward::api::status::exception_name(&status),
                "InternalServiceError",
                "{status:?}"
            ),
        }
    }
    assert!(
        acknowledged.len() >= 16,
        "{} of 32 acknowledged",
        acknowledged.len()
    );
    let stages = secrets::stages(&mut a, "shared").await;
    let current: Vec<_> = stages
        .iter()
        .filter(|(_, labels)| labels.iter().any(|l| l == "AWSCURRENT"))
        .collect();
    assert_eq!(current.len(), 1, "exactly one AWSCURRENT: {stages:?}");
    let present: BTreeSet<String> = secrets::versions(&mut c, "shared")
        .await
        .into_iter()
        .map(|v| v.version_id)
        .collect();
    for (version, value) in &acknowledged {
        assert!(
            present.contains(version),
            "acknowledged {version} is missing"
        );
        let read = secrets::get(&mut b, "shared", version, "").await.unwrap();
        assert_eq!(read.secret_string.as_deref(), Some(value.as_str()));
    }

    // The status command sees three serving nodes, one holder per duty, three members.
    let status = site.status(1);
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{status}");
    assert!(nodes.iter().all(|n| n["health"] == "SERVING"), "{status}");
    for duty in ["rotation", "purge"] {
        let holder = site.holder(duty).expect("a holder");
        assert!(holder.starts_with("node-"), "{holder}");
    }
    let members = status["etcd"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|m| m["healthy"] == true), "{status}");
    assert_eq!(members.iter().filter(|m| m["is_leader"] == true).count(), 1);

    // Each node keeps its own audit log with its id in every line; one command verifies all
    // three, each against the node that writes it.
    let logs: Vec<_> = (0..3)
        .map(|i| site.data_dir(i).join("audit").join("audit.log"))
        .collect();
    for (i, log) in logs.iter().enumerate() {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(
            text.lines()
                .all(|l| l.contains(&format!(r#""node":"node-{i}""#))),
            "node-{i}'s log has a line without its id"
        );
    }
    let out = std::process::Command::new(BIN)
        .args(["audit", "--endpoint", &site.endpoints().join(","), "verify"])
        .args(&logs)
        .arg("--allow-unsealed-tail")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("OK: ").count(), 3, "{text}");
    assert_eq!(
        text.matches("end of log compared with the server's newest record")
            .count(),
        3,
        "each log checked against its own node: {text}"
    );
    let puts = (0..3)
        .map(|i| audit_records(&site.data_dir(i), "secretsmanager:PutSecretValue").len())
        .sum::<usize>();
    assert_eq!(puts, 32, "every racing write left one record on its node");
}

#[tokio::test]
async fn a_key_disabled_on_one_node_is_refused_on_the_others_warm_cache_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::start(dir.path(), 2, "", &[]);
    let mut kms_a = site.node(0).kms().await;
    let key = create_key(&mut kms_a, "to disable").await.key_id;
    let blob = encrypt(&mut kms_a, &key, b"data", &[]).await;
    let (mut a, mut b) = (sm(&site, 0).await, sm(&site, 1).await);
    a.create_secret(pb::CreateSecretRequest {
        name: "under-key".into(),
        client_request_token: token("under-key"),
        secret_string: Some("s3cret".into()),
        kms_key_id: key.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    // B's data-key cache is warm.
    for _ in 0..2 {
        assert_eq!(
            secrets::value(&mut b, "under-key", "AWSCURRENT").await,
            "s3cret"
        );
    }
    let mut kms_b = site.node(1).kms().await;
    assert_eq!(decrypt(&mut kms_b, &blob, &[]).await.unwrap(), b"data");

    let disabled_at = Instant::now();
    kms_a
        .disable_key(pb::DisableKeyRequest {
            key_id: key.clone(),
        })
        .await
        .unwrap();
    // Waits on the condition; B's cache must not keep serving the key.
    let deadline = disabled_at + HANDOVER;
    let delay = loop {
        let decrypt = decrypt(&mut kms_b, &blob, &[]).await;
        let read = secrets::get(&mut b, "under-key", "", "AWSCURRENT").await;
        let refused = |result: &Result<_, tonic::Status>, exception: &str| matches!(result, Err(s) if keyward::api::status::exception_name(s) == exception);
        if refused(&decrypt.map(|_| ()), "DisabledException")
            && refused(&read.map(|_| ()), "DecryptionFailure")
        {
            break disabled_at.elapsed();
        }
        assert!(Instant::now() < deadline, "B still serves the disabled key");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    eprintln!("disable on A refused on B after {:?}", delay);
}

#[tokio::test]
async fn a_node_id_is_held_by_one_live_process_and_a_crashed_one_is_replaced_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut site = Site::start(dir.path(), 1, "", &[]);
    // Another process claiming node-0 from another directory is refused.
    let other = dir.path().join("impostor");
    let text = std::fs::read_to_string(site.config(0)).unwrap().replace(
        &format!("data_dir = \"{}\"", site.data_dir(0).display()),
        &format!("data_dir = \"{}\"", other.display()),
    );
    let config = dir.path().join("impostor.toml");
    std::fs::write(&config, text).unwrap();
    let conf = site.softhsm_conf();
    let refused = match Server::try_spawn(
        &other,
        &["--config", config.to_str().unwrap()],
        &[("SOFTHSM2_CONF", conf.to_str().unwrap())],
    ) {
        Ok(_) => panic!("a second node-0 started"),
        Err(log) => log,
    };
    assert!(refused.contains("is held by a live node"), "{refused}");

    // The same node crashing and starting again on its directory takes its id back without
    // waiting out the lease.
    let mut client = sm(&site, 0).await;
    secrets::create(&mut client, "kept", Some("v")).await;
    site.nodes[0].take().unwrap().kill();
    let started = Instant::now();
    site.restart(0);
    assert!(
        started.elapsed() < Duration::from_secs(LEASE_TTL_SECS * 10),
        "the restart did not come up"
    );
    let mut client = sm(&site, 0).await;
    assert_eq!(secrets::value(&mut client, "kept", "AWSCURRENT").await, "v");
}

/// An exec rotator that logs each step, and in set_secret, once, blocks until `release`
/// exists (recording its pid) when `block-set` exists.
fn blocking_rotator(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("rotator.sh");
    rotation::script(
        &path,
        r#"here=$(dirname "$0")
cat > /dev/null
echo "$KEYWARD_STEP $KEYWARD_VERSION_ID" >> "$here/steps.log"
case "$KEYWARD_STEP" in
  create_secret) echo "value-for-$KEYWARD_VERSION_ID" ;;
  set_secret)
    if [ -e "$here/block-set" ]; then
      rm "$here/block-set"; touch "$here/set-reached"
      while [ ! -e "$here/release" ]; do sleep 0.05; done
    fi ;;
esac"#,
    );
    path
}

fn steps(dir: &Path, step: &str) -> usize {
    std::fs::read_to_string(dir.join("steps.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&format!("{step} ")))
        .count()
}

/// A site of three whose nodes rotate through `blocking_rotator`, with "svc" holding "v0"
/// and a rotation started and blocked in set_secret on the duty holder. Returns the site,
/// the first version, the pending version and the holder.
async fn rotation_blocked_in_set_secret(dir: &Path) -> (Site, String, String, usize) {
    let table = rotation::exec_table("blocking", &blocking_rotator(dir), 120);
    let extra = format!(
        "[rotation]\ncheck_interval_ms = 100\nretry_initial_secs = 1\nretry_max_secs = 2\n{table}"
    );
    let site = Site::start(dir, 3, &extra, &[]);
    let mut client = sm(&site, 0).await;
    let first = secrets::create(&mut client, "svc", Some("v0"))
        .await
        .version_id
        .unwrap();
    std::fs::write(dir.join("block-set"), "").unwrap();
    let pending = token("rotation");
    rotate(&mut client, "svc", &pending, Some(exec("blocking")), None)
        .await
        .unwrap();
    wait_for("set_secret to block", HANDOVER, || {
        let reached = dir.join("set-reached").exists();
        async move { reached }
    })
    .await;
    let holder = site.wait_holder("rotation").await;
    (site, first, pending, holder)
}

/// After the rotation: the pending version is AWSCURRENT, the first AWSPREVIOUS, nothing
/// else exists, and finish_secret ran once.
async fn rotated_exactly_once(site: &Site, reader: usize, dir: &Path, first: &str, pending: &str) {
    let mut client = sm(site, reader).await;
    rotation::wait_rotated(&mut client, "svc", pending).await;
    assert_eq!(
        secrets::stages(&mut client, "svc").await,
        secrets::expect(&[(pending, &["AWSCURRENT"]), (first, &["AWSPREVIOUS"])])
    );
    assert_eq!(secrets::versions(&mut client, "svc").await.len(), 2);
    assert_eq!(
        secrets::value(&mut client, "svc", "AWSCURRENT").await,
        format!("value-for-{pending}")
    );
    assert_eq!(steps(dir, "create_secret"), 1);
    assert_eq!(steps(dir, "finish_secret"), 1);
}

#[tokio::test]
async fn killing_the_duty_holder_mid_rotation_hands_it_to_another_node_which_finishes_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut site, first, pending, holder) = rotation_blocked_in_set_secret(dir.path()).await;
    site.nodes[holder].take().unwrap().kill();
    // The killed node's rotator is an orphan now; let it end.
    std::fs::write(dir.path().join("release"), "").unwrap();
    let killed_at = Instant::now();
    let next = site.wait_holder_other_than("rotation", Some(holder)).await;
    let took_over = killed_at.elapsed();
    let reader = (holder + 1) % 3;
    rotated_exactly_once(&site, reader, dir.path(), &first, &pending).await;
    eprintln!(
        "rotation duty: node-{holder} killed, node-{next} took it after {took_over:?}, rotation finished after {:?}",
        killed_at.elapsed()
    );
}

#[tokio::test]
async fn a_holder_paused_past_its_lease_commits_nothing_when_it_wakes() {
    let dir = tempfile::tempdir().unwrap();
    let (site, first, pending, holder) = rotation_blocked_in_set_secret(dir.path()).await;
    let pid = site.node(holder).pid().to_string();
    let signal = |sig: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        )
    };
    signal("-STOP");
    // Another node takes the duty once the paused one's lease expires, and finishes.
    let next = site.wait_holder_other_than("rotation", Some(holder)).await;
    let reader = (holder + 1) % 3;
    rotated_exactly_once(&site, reader, dir.path(), &first, &pending).await;
    let after = secrets::versions(&mut sm(&site, reader).await, "svc").await;

    // The paused holder wakes with its set_secret step done: it must not record it.
    std::fs::write(dir.path().join("release"), "").unwrap();
    signal("-CONT");
    wait_for(
        "the woken node to notice it lost the duty",
        HANDOVER,
        || {
            let log = site.node(holder).log();
            async move {
                log.contains("lost the duty") || log.contains("no longer holds the rotation duty")
            }
        },
    )
    .await;
    let mut client = sm(&site, reader).await;
    assert_eq!(
        secrets::versions(&mut client, "svc").await.len(),
        after.len()
    );
    assert_eq!(
        secrets::stages(&mut client, "svc").await,
        secrets::expect(&[(&pending, &["AWSCURRENT"]), (&first, &["AWSPREVIOUS"])])
    );
    assert_eq!(
        steps(dir.path(), "test_secret"),
        1,
        "node-{next} tested once, nobody after"
    );
    assert_eq!(steps(dir.path(), "finish_secret"), 1);
    assert_eq!(
        rotation::describe(&mut client, "svc").await.rotation_status,
        None
    );
}

#[tokio::test]
async fn losing_etcds_quorum_stops_writes_until_a_member_returns() {
    let dir = tempfile::tempdir().unwrap();
    let alarms =
        "[[alarms.rule]]\nname = \"etcd-down\"\nkind = \"store_unreachable\"\nwindow_secs = 1\n";
    let mut site = Site::start(dir.path(), 1, alarms, &[]);
    let mut client = sm(&site, 0).await;
    secrets::create(&mut client, "q", Some("before")).await;
    let metrics = site.node(0).metrics.clone().expect("metrics address");
    let gauge = |name: &str| -> String {
        let body = scrape(&metrics);
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_owned))
            .unwrap_or_else(|| panic!("no {name} in {body}"))
    };
    // The watch's first look may precede the duties' first election.
    wait_for("every duty held, etcd reachable", HANDOVER, || {
        let settled = gauge("keyward_cluster_etcd_reachable") == "1"
            && gauge("keyward_cluster_duties_without_holder") == "0";
        async move { settled }
    })
    .await;

    // One member down: a quorum remains, service goes on (after an election, when the member
    // killed was the leader: writes in that second are refused, retryable). The same request
    // token each time, so a write that landed unanswered is not made twice.
    site.etcd.kill(0);
    wait_for("a write with one member down", HANDOVER, || {
        let site = &site;
        async move {
            let mut client = sm(site, 0).await;
            secrets::put(&mut client, "q", &token("one-down"), "one-down", &[])
                .await
                .is_ok()
        }
    })
    .await;

    // Two down: writes fail UNAVAILABLE, with a retryable AWS error.
    site.etcd.kill(1);
    let refused = secrets::put(&mut client, "q", &token("two-down"), "two-down", &[])
        .await
        .unwrap_err();
    assert_error(&refused, Code::Unavailable, "InternalServiceError");
    let mut kms = site.node(0).kms().await;
    let refused = kms
        .create_key(pb::CreateKeyRequest::default())
        .await
        .unwrap_err();
    assert_error(&refused, Code::Unavailable, "DependencyTimeoutException");
    // The node says so: a gauge, and the alarm once the outage passes its window.
    wait_for("the etcd gauge and alarm", HANDOVER, || {
        let fired = gauge("keyward_cluster_etcd_reachable") == "0"
            && scrape(&metrics).contains(r#"keyward_alarms_fired_total{alarm="etcd-down"} 1"#);
        async move { fired }
    })
    .await;

    // One back: writes resume without restarting Keyward, and nothing was lost.
    site.etcd.restart(1);
    let resumed_token = token("resumed");
    let deadline = Instant::now() + HANDOVER;
    while let Err(status) = secrets::put(&mut client, "q", &resumed_token, "resumed", &[]).await {
        assert!(
            Instant::now() < deadline,
            "writes did not resume: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        secrets::value(&mut client, "q", "AWSCURRENT").await,
        "resumed"
    );
    assert_eq!(
        secrets::value(&mut client, "q", "AWSPREVIOUS").await,
        "one-down"
    );
    assert_eq!(secrets::versions(&mut client, "q").await.len(), 3);
    wait_for("the etcd gauge to recover", HANDOVER, || {
        let up = gauge("keyward_cluster_etcd_reachable") == "1";
        async move { up }
    })
    .await;
}

#[tokio::test]
async fn a_full_etcd_refuses_writes_unavailable_and_keeps_serving_reads() {
    let dir = tempfile::tempdir().unwrap();
    // 8 MiB: filled by about a hundred 64 KiB values.
    let site = Site::start(dir.path(), 1, "", &["--quota-backend-bytes", "8388608"]);
    let mut client = sm(&site, 0).await;
    secrets::create(&mut client, "early", Some("still readable")).await;
    let big = "x".repeat(60 * 1024);
    let mut written = 0;
    let refused = loop {
        let name = format!("fill-{written}");
        match secrets::try_create(&mut client, &name, Some(&big), &token(&name)).await {
            Ok(_) => written += 1,
            Err(status) => break status,
        }
        assert!(written < 2000, "etcd never reported its quota");
    };
    assert_error(&refused, Code::Unavailable, "InternalServiceError");
    assert!(written > 10, "only {written} values fit");
    assert_eq!(
        secrets::value(&mut client, "early", "AWSCURRENT").await,
        "still readable"
    );
    assert_eq!(
        secrets::value(&mut client, &format!("fill-{}", written - 1), "AWSCURRENT").await,
        big
    );
    let refused = secrets::put(&mut client, "early", &token("more"), "more", &[])
        .await
        .unwrap_err();
    assert_error(&refused, Code::Unavailable, "InternalServiceError");
}

#[tokio::test]
async fn a_single_servers_store_copied_into_etcd_serves_the_whole_site() {
    let dir = tempfile::tempdir().unwrap();
    let mut site = Site::start(dir.path(), 0, "", &[]);
    let single_dir = dir.path().join("single");
    let single_config = site.single_config(&single_dir);
    let conf = site.softhsm_conf();
    let env = [("SOFTHSM2_CONF", conf.to_str().unwrap())];
    let single = Server::spawn(
        &single_dir,
        &["--config", single_config.to_str().unwrap()],
        &env,
    );
    let mut client = secrets::client(&single).await;
    let first = secrets::create(&mut client, "app/db", Some("one"))
        .await
        .version_id
        .unwrap();
    let second = secrets::put(&mut client, "app/db", &token("two"), "two", &[])
        .await
        .unwrap()
        .version_id;
    for i in 0..40 {
        secrets::create(
            &mut client,
            &format!("bulk/{i}"),
            Some(&format!("value {i}")),
        )
        .await;
    }
    let mut kms = single.kms().await;
    let key = create_key(&mut kms, "copied").await.key_id;
    let blob = encrypt(&mut kms, &key, b"sealed before the move", &[]).await;
    single.stop();

    let copy = |target: &Path| {
        std::process::Command::new(BIN)
            .args(["store", "copy", "--from-data-dir"])
            .arg(&single_dir)
            .arg("--to-config")
            .arg(target)
            .output()
            .unwrap()
    };
    let out = copy(&site.config(0));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verified"]["SECRETS"]["entries"], 41, "{report}");
    assert_eq!(
        report["verified"]["KMS_KEYS"]["entries"], 2,
        "the key and the default key: {report}"
    );
    assert_eq!(
        report["verified"]["SECRET_VALUES"]["entries"], 42,
        "{report}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("comparing"));

    // A second copy onto the now populated prefix is refused and changes nothing.
    let again = copy(&site.config(0));
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already holds data"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    site.add_node();
    site.add_node();
    let mut b = sm(&site, 1).await;
    assert_eq!(secrets::value(&mut b, "app/db", "AWSCURRENT").await, "two");
    assert_eq!(
        secrets::stages(&mut b, "app/db").await,
        secrets::expect(&[(&second, &["AWSCURRENT"]), (&first, &["AWSPREVIOUS"])])
    );
    assert_eq!(
        secrets::value(&mut b, "bulk/39", "AWSCURRENT").await,
        "value 39"
    );
    let mut kms_a = site.node(0).kms().await;
    assert_eq!(
        decrypt(&mut kms_a, &blob, &[]).await.unwrap(),
        b"sealed before the move"
    );
    // And the site goes on writing.
    secrets::put(&mut b, "app/db", &token("three"), "three", &[])
        .await
        .unwrap();
    assert_eq!(
        secrets::value(&mut sm(&site, 0).await, "app/db", "AWSCURRENT").await,
        "three"
    );
}

#[tokio::test]
async fn a_node_killed_under_steady_writes_loses_no_acknowledged_write() {
    use keyward::cli::client::{Connect, connect};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let mut site = Site::start(dir.path(), 3, "", &[]);
    let endpoints = site.endpoints();
    const WRITERS: usize = 6;
    const WRITES: usize = 30;
    let progress = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        // Each writer lists every node, starting at its own: two start on the node killed.
        let mut list = endpoints.clone();
        list.rotate_left(w % 3);
        let progress = Arc::clone(&progress);
        writers.push(tokio::spawn(async move {
            let mut client = pb::secrets_manager_service_client::SecretsManagerServiceClient::new(
                connect(&Connect::plain(&list.join(","))).await.unwrap(),
            );
            let name = format!("steady-{w}");
            secrets::create(&mut client, &name, Some("v0")).await;
            let mut acknowledged = Vec::new();
            let mut longest_error = Duration::ZERO;
            for i in 0..WRITES {
                let version = token(&format!("w{w}-{i}"));
                let value = format!("w{w}-{i}");
                let mut failing_since: Option<Instant> = None;
                // The same token again after an error: the write happens once.
                loop {
                    match secrets::put(&mut client, &name, &version, &value, &[]).await {
                        Ok(_) => break,
                        Err(status) => {
                            let since = *failing_since.get_or_insert_with(Instant::now);
                            assert!(since.elapsed() < HANDOVER, "{name}: {status:?}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                if let Some(since) = failing_since {
                    longest_error = longest_error.max(since.elapsed());
                }
                acknowledged.push((version, value));
                progress.fetch_add(1, Ordering::Relaxed);
            }
            (name, acknowledged, longest_error)
        }));
    }
    // A third of the way in, SIGKILL node 1.
    let deadline = Instant::now() + HANDOVER;
    while progress.load(Ordering::Relaxed) < WRITERS * WRITES / 3 {
        assert!(Instant::now() < deadline, "the writers made no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    site.nodes[1].take().unwrap().kill();
    let mut longest = Duration::ZERO;
    let mut reader = sm(&site, 0).await;
    for writer in writers {
        let (name, acknowledged, longest_error) = writer.await.unwrap();
        longest = longest.max(longest_error);
        let present: BTreeSet<String> = secrets::versions(&mut reader, &name)
            .await
            .into_iter()
            .map(|v| v.version_id)
            .collect();
        assert_eq!(present.len(), WRITES + 1, "{name}: one version per write");
        for (version, value) in &acknowledged {
            assert!(
                present.contains(version),
                "{name}: acknowledged {version} lost"
            );
            let read = secrets::get(&mut reader, &name, version, "").await.unwrap();
            assert_eq!(read.secret_string.as_deref(), Some(value.as_str()));
        }
        let last = &acknowledged.last().unwrap().1;
        assert_eq!(
            &secrets::value(&mut reader, &name, "AWSCURRENT").await,
            last
        );
    }
    eprintln!("node-1 killed under load: longest client-visible error window {longest:?}");
}

#[tokio::test]
async fn nodes_booting_together_on_an_empty_store_agree_on_one_site() {
    let dir = tempfile::tempdir().unwrap();
    let mut site = Site::start(dir.path(), 0, "", &[]);
    site.add_nodes_together(3);
    // Every node came up, on one default key and one audit checkpoint key.
    let mut described = BTreeSet::new();
    for i in 0..3 {
        let mut kms = site.node(i).kms().await;
        described.insert(
            describe(&mut kms, "alias/keyward/secretsmanager")
                .await
                .key_id,
        );
    }
    assert_eq!(
        described.len(),
        1,
        "one default key for the site: {described:?}"
    );
    // And no other: a node whose default key lost the race destroyed it.
    let keys = site
        .node(1)
        .kms()
        .await
        .list_keys(pb::ListKeysRequest::default())
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let mut a = sm(&site, 0).await;
    secrets::create(&mut a, "booted", Some("together")).await;
    let read = secrets::get(&mut sm(&site, 2).await, "booted", "", "AWSCURRENT").await;
    assert!(read.is_ok(), "{read:?}\n{}", site.node(2).log());
    let logs: Vec<_> = (0..3)
        .map(|i| site.data_dir(i).join("audit").join("audit.log"))
        .collect();
    let out = std::process::Command::new(BIN)
        .args(["audit", "--endpoint", &site.endpoints().join(","), "verify"])
        .args(&logs)
        .arg("--allow-unsealed-tail")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The README's "Running a cluster" walkthrough, every `sh` block of it in order, run by bash
/// from the repository root as a reader would paste it (it uses fixed ports: 2379-2580 for
/// etcd, 7413-7433 for the nodes, outside every range the other tests take ports from).
#[test]
fn the_readmes_cluster_walkthrough_runs_as_written() {
    // Past 240 s it hangs; whatever it started is stopped either way.
    let (ok, stdout, stderr) = common::run_readme_section(
        "## Running a cluster",
        240,
        "--data-dir /tmp/keyward-cluster/",
    );
    assert!(ok, "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&"first password"), "{stdout}");
    assert!(lines.contains(&"second password"), "{stdout}");
    assert!(stdout.contains("\"holder\": \"node-"), "{stdout}");
    assert_eq!(stdout.matches("OK: ").count(), 2, "{stdout}");
    assert!(
        stderr.contains("note: http://127.0.0.1:7413 unavailable"),
        "{stderr}"
    );
}
