//! `keyward bench` against a real server: a short bounded run per operation, and the report
//! parses and adds up. No timing is asserted.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;

fn bench(server: &Server, args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .arg("bench")
        .args(["--endpoint", &server.endpoint, "--json"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn every_operation_runs_its_requests_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    for op in [
        "generate-data-key",
        "decrypt",
        "encrypt",
        "get-secret-value",
        "put-secret-value",
        "create-secret",
        "mixed",
    ] {
        let report = bench(
            &server,
            &["--op", op, "--requests", "160", "--concurrency", "8"],
        );
        assert_eq!(report["op"], op);
        assert_eq!(report["requests"], 160, "{report}");
        assert_eq!(report["errors"], serde_json::json!({}), "{report}");
        let latency = &report["latency_us"];
        let p50 = latency["p50"].as_u64().unwrap();
        assert!(
            p50 > 0 && p50 <= latency["p99"].as_u64().unwrap(),
            "{report}"
        );
        assert!(latency["p99"].as_u64() <= latency["max"].as_u64());
        assert!(report["ops_per_sec"].as_f64().unwrap() > 0.0);
    }
    // Put rolls over to a new secret before a secret's version limit.
    let report = bench(
        &server,
        &[
            "--op",
            "put-secret-value",
            "--requests",
            "400",
            "--concurrency",
            "1",
        ],
    );
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
}

#[test]
fn failures_are_counted_by_exception_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let first = bench(&server, &["--op", "decrypt", "--requests", "10"]);
    assert_eq!(first["errors"], serde_json::json!({}));
    // Disable the bench key: every request now fails with DisabledException.
    let out = Command::new(BIN)
        .args([
            "kms",
            "--endpoint",
            &server.endpoint,
            "disable-key",
            "alias/keyward/bench",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = Command::new(BIN)
        .args([
            "bench",
            "--endpoint",
            &server.endpoint,
            "--json",
            "--op",
            "encrypt",
            "--requests",
            "20",
        ])
        .output()
        .unwrap();
    // Preparing needs the key for a data key: the bench stops with the reason.
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DisabledException"));
}

#[test]
fn a_duration_run_with_warm_up_stops_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let report = bench(
        &server,
        &[
            "--op",
            "generate-data-key",
            "--duration",
            "300ms",
            "--warmup",
            "100ms",
            "--concurrency",
            "4",
        ],
    );
    assert!(report["requests"].as_u64().unwrap() > 0);
    let seconds = report["seconds"].as_f64().unwrap();
    assert!((0.3..5.0).contains(&seconds), "{report}");
}

#[test]
fn ceilings_are_measured_on_the_servers_own_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    for (op, ceiling) in [
        ("generate-data-key", "root-of-trust seal"),
        ("decrypt", "root-of-trust unseal"),
        ("get-secret-value", "empty RPC"),
    ] {
        let report = bench(
            &server,
            &[
                "--op",
                op,
                "--requests",
                "100",
                "--concurrency",
                "4",
                "--ceiling",
                "--ceiling-duration",
                "200ms",
                "--data-dir",
                dir.path().to_str().unwrap(),
            ],
        );
        assert_eq!(report["ceiling"]["name"], ceiling, "{report}");
        let ceiling_ops = report["ceiling"]["ops_per_sec"].as_f64().unwrap();
        let ratio = report["ceiling"]["ratio"].as_f64().unwrap();
        assert!(ceiling_ops > 0.0 && ratio > 0.0, "{report}");
        let expected = report["ops_per_sec"].as_f64().unwrap() / ceiling_ops;
        assert!((ratio - expected).abs() < 1e-9, "{report}");
    }
}

/// With the server's metrics, the report counts root-of-trust calls per request: one per
/// GenerateDataKey, none for a secret read whose data key is cached.
#[test]
fn the_report_counts_root_of_trust_calls_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn(dir.path(), &["--metrics-listen", "127.0.0.1:0"], &[]);
    let metrics = server.metrics.clone().expect("metrics address");
    let run = |op: &str| {
        bench(
            &server,
            &[
                "--op",
                op,
                "--requests",
                "200",
                "--concurrency",
                "4",
                "--metrics",
                &metrics,
            ],
        )
    };
    let generated = run("generate-data-key");
    assert_eq!(
        generated["server"]["root_of_trust_calls_per_request"], 1.0,
        "{generated}"
    );
    // After a warm-up the hot secret's data key is cached: reads make no call at all.
    let read = bench(
        &server,
        &[
            "--op",
            "get-secret-value",
            "--duration",
            "500ms",
            "--warmup",
            "300ms",
            "--concurrency",
            "4",
            "--metrics",
            &metrics,
        ],
    );
    assert!(read["requests"].as_u64().unwrap() > 0, "{read}");
    assert_eq!(
        read["server"]["root_of_trust_calls_per_request"], 0.0,
        "{read}"
    );
    assert_eq!(read["server"]["data_key_cache_hit_rate"], 1.0, "{read}");

    // The endpoint is plain Prometheus text.
    let body = scrape(&metrics);
    assert!(
        body.contains("# TYPE keyward_root_of_trust_calls_total counter"),
        "{body}"
    );
    assert!(body.contains("process_resident_memory_bytes "), "{body}");
}

/// Scale mode loads its secrets once, lists and reads them, and a second run reuses them.
#[test]
fn scale_mode_loads_once_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn(dir.path(), &["--metrics-listen", "127.0.0.1:0"], &[]);
    let metrics = server.metrics.clone().expect("metrics address");
    let args = [
        "--scale",
        "30",
        "--concurrency",
        "4",
        "--duration",
        "200ms",
        "--metrics",
        &metrics,
    ];
    let first = bench(&server, &args);
    assert!(first["load_seconds"].as_f64().unwrap() > 0.0, "{first}");
    assert_eq!(first["listed"], 30, "{first}");
    assert_eq!(first["list_pages"], 1, "{first}");
    assert!(first["get_spread_ops_per_sec"].as_f64().unwrap() > 0.0);
    assert!(first["store_size_bytes"].as_f64().unwrap() > 0.0);
    assert!(first["resident_bytes"].as_f64().unwrap() > 0.0);
    let second = bench(&server, &args);
    assert!(second["load_seconds"].is_null(), "{second}");
    assert_eq!(second["listed"], 30, "{second}");
    // Three versions each: the first and two more.
    let versions = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut sm = secrets::client(&server).await;
        secrets::stages(&mut sm, "scale/0000007").await
    });
    assert_eq!(versions.len(), 3, "{versions:?}");
}

/// `keyward bench --endpoint LIST ARGS --json`: the report and what went to stderr.
fn bench_at(endpoints: &str, args: &[&str]) -> (Value, String) {
    let out = Command::new(BIN)
        .args(["bench", "--endpoint", endpoints, "--json"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (report, stderr)
}

#[test]
fn several_endpoints_share_the_connections() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let args = [
        "--op",
        "get-secret-value",
        "--requests",
        "80",
        "--concurrency",
        "4",
        "--connections",
        "2",
    ];
    let (report, stderr) = bench_at(&format!("{0},{0}", server.endpoint), &args);
    assert_eq!(report["requests"], 80, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert!(stderr.is_empty(), "{stderr}");

    // The second connection goes to the second address first: a dead one is left, once.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (report, stderr) = bench_at(&format!("{},{dead}", server.endpoint), &args);
    assert_eq!(report["requests"], 80, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert_eq!(
        stderr,
        format!(
            "note: {dead} unavailable (connection refused); using {}\n",
            server.endpoint
        )
    );
}
