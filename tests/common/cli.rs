//! The `keyward` command as an operator runs it (no endpoint from the environment).
#![allow(dead_code)]

use std::process::Command;

/// `keyward ARGS`: (success, stdout, stderr).
pub fn keyward(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(super::BIN)
        .args(args)
        .env_remove("KEYWARD_ENDPOINT")
        .output()
        .expect("run keyward");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A success, and the JSON it printed.
pub fn ok(args: &[&str]) -> serde_json::Value {
    let (ok, out, err) = keyward(args);
    assert!(ok, "keyward {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// A refusal, and its message.
pub fn refused(args: &[&str]) -> String {
    let (ok, out, err) = keyward(args);
    assert!(!ok, "keyward {args:?} succeeded: {out}");
    err
}
