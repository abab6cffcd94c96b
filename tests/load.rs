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
