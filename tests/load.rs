//! A short load run: single-client latency and 64-client throughput of GenerateDataKey and
//! Decrypt against a real server on SoftHSM. Prints numbers; asserts only correctness.
//! Bounded in count and time. Run it with:
//!
//!     cargo test --release --test load -- --ignored --nocapture

mod common;

use common::*;
use keyward::api::pb;
use std::time::{Duration, Instant};

const SEQUENTIAL: usize = 2000;
const CLIENTS: usize = 64;
const CONNECTIONS: usize = 8;
const RUN: Duration = Duration::from_secs(5);

fn gdk(key_id: &str) -> pb::GenerateDataKeyRequest {
    pb::GenerateDataKeyRequest {
        key_id: key_id.into(),
        key_spec: "AES_256".into(),
        ..Default::default()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn report(name: &str, mut latencies: Vec<Duration>) {
    latencies.sort();
    println!(
        "{name:<16} 1 client: {:>7.0} ops/s  p50 {:>6.0} µs  p99 {:>6.0} µs",
        latencies.len() as f64 / latencies.iter().sum::<Duration>().as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e6,
        percentile(&latencies, 0.99).as_secs_f64() * 1e6,
    );
}

async fn throughput(server: &Server, key_id: &str, blob: &[u8], decrypt_op: bool) -> f64 {
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(server.kms().await);
    }
    let deadline = Instant::now() + RUN;
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let mut kms = channels[i % CONNECTIONS].clone();
        let key_id = key_id.to_owned();
        let blob = blob.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                if decrypt_op {
                    decrypt(&mut kms, &blob, &[]).await.unwrap();
                } else {
                    kms.generate_data_key(gdk(&key_id)).await.unwrap();
                }
                done += 1;
            }
            done
        }));
    }
    let started = Instant::now();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load run: cargo test --release --test load -- --ignored --nocapture"]
async fn generate_data_key_and_decrypt_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut kms = server.kms().await;
    let key = create_key(&mut kms, "load").await;
    let generated = kms
        .generate_data_key(gdk(&key.key_id))
        .await
        .unwrap()
        .into_inner();
    let blob = generated.ciphertext_blob;

    let mut latencies = Vec::with_capacity(SEQUENTIAL);
    for _ in 0..SEQUENTIAL {
        let t = Instant::now();
        kms.generate_data_key(gdk(&key.key_id)).await.unwrap();
        latencies.push(t.elapsed());
    }
    report("GenerateDataKey", latencies);
    let mut latencies = Vec::with_capacity(SEQUENTIAL);
    for _ in 0..SEQUENTIAL {
        let t = Instant::now();
        assert_eq!(
            decrypt(&mut kms, &blob, &[]).await.unwrap(),
            generated.plaintext
        );
        latencies.push(t.elapsed());
    }
    report("Decrypt", latencies);

    let gdk_rate = throughput(&server, &key.key_id, &blob, false).await;
    println!("GenerateDataKey  {CLIENTS} clients: {gdk_rate:>7.0} ops/s");
    let decrypt_rate = throughput(&server, &key.key_id, &blob, true).await;
    println!("Decrypt          {CLIENTS} clients: {decrypt_rate:>7.0} ops/s");
    assert_eq!(server.health().await, SERVING);
}

/// Runs `op` from `clients` tasks over 8 connections for RUN; returns ops/s.
async fn secrets_rate<F, Fut>(server: &Server, clients: usize, op: F) -> f64
where
    F: Fn(common::secrets::Sm, usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS.min(clients) {
        channels.push(common::secrets::client(server).await);
    }
    let deadline = Instant::now() + RUN;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let sm = channels[c % channels.len()].clone();
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                op(sm.clone(), c, done).await;
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load run: cargo test --release --test load -- --ignored --nocapture"]
async fn get_and_put_secret_value_under_load() {
    use common::secrets::*;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut sm = client(&server).await;
    create(&mut sm, "hot", Some(&"v".repeat(1024))).await;
    for clients in [1, CLIENTS] {
        let get_rate = secrets_rate(&server, clients, |mut sm, _, _| async move {
            let v = value(&mut sm, "hot", "").await;
            assert_eq!(v.len(), 1024);
        })
        .await;
        println!("GetSecretValue   {clients:>2} clients: {get_rate:>7.0} ops/s (1 KiB value)");
        // Each client writes its own secrets, a new one every 150 versions (a secret holds at
        // most 200 versions younger than a day).
        let put_rate = secrets_rate(&server, clients, move |mut sm, c, i| async move {
            let name = format!("own/{clients}/{c}/{}", i / 150);
            if i % 150 == 0 {
                create(&mut sm, &name, Some("initial")).await;
            } else {
                let tok = format!("{c:0>8}-{i:0>24}");
                put(&mut sm, &name, &tok, "new value", &[]).await.unwrap();
            }
        })
        .await;
        println!(
            "PutSecretValue   {clients:>2} clients: {put_rate:>7.0} ops/s (durable, one secret per client)"
        );
    }
    assert_eq!(server.health().await, SERVING);
}
