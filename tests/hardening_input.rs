//! Hostile input at the edges, on real servers: an AWS endpoint that would make the published
//! development key an administrator on the network is refused at start; policy condition keys
//! Keyward does not supply are refused when a policy is put or loaded; over-long identifiers are
//! refused before any lookup, policy or audit work, and their audit records stay bounded;
//! oversized gRPC messages never reach a handler.

mod common;

use common::secrets::{self, Sm};
use common::{Server, assert_error};
use keyward::api::pb;
use keyward::aws::signing::sign;
use keyward::crypto::{hex, sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use tonic::Code;

/// Runs `keyward serve ARGS` and returns its stderr once it exits; panics if it starts serving.
fn refused_start(args: &[&str]) -> String {
    let mut child = Command::new(common::BIN)
        .arg("serve")
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("KEYWARD_CONFIG")
        .env_remove("KEYWARD_LISTEN")
        .env_remove("KEYWARD_AWS_LISTEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keyward serve");
    let stdout = child.stdout.take().expect("stdout");
    // Ends at EOF (the process exited) or at the line saying it serves.
    let started = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.starts_with("keyward listening on"));
    if started {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server started with {args:?}");
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "{stderr}");
    stderr
}

#[test]
fn a_network_aws_endpoint_without_auth_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("open.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\nallow_plaintext_on_network = true\naws_listen = \"0.0.0.0:0\"\n\
             [root_of_trust]\ntype = \"development\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    // From the file, and from the command line over a loopback file setting.
    for args in [
        &["--config", config, "--listen", "127.0.0.1:0"][..],
        &[
            "--config",
            config,
            "--listen",
            "127.0.0.1:0",
            "--aws-listen",
            "[::]:0",
        ][..],
    ] {
        let stderr = refused_start(args);
        assert!(stderr.contains("aws_listen"), "{stderr}");
        assert!(stderr.contains("[auth]"), "{stderr}");
    }
}

