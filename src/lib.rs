//! Keyward: an on-premises key management service whose root of trust is hardware.
//!
//! # Layout
//!
//! - [`config`]: the TOML configuration, typed as it is read, and the development default.
//! - [`duration`]: durations as the configuration writes them ("30s", or a number in the
//!   unit the key names).
//! - [`crypto`]: secret buffers (zeroized; mlocked for long-lived keys), the canonical
//!   encryption context, the ciphertext envelope, software AES-GCM, digests, the one
//!   constant-time comparison and the one hex codec.
//! - [`time`]: the [`time::Timestamp`] records and the wire carry, its text forms, and the
//!   [`time::Clock`] every "now" is read from.
//! - [`backend`]: roots of trust (PKCS#11 and TPM 2.0); the only code touching hardware
//!   crates, and [`backend::Hardware`], the single async boundary every hardware call goes
//!   through; at start, the check that the device is the one the data directory was made with.
//! - [`store`]: sled behind a narrow key-value interface; the only code touching sled.
//! - [`service`]: domain logic with AWS KMS and Secrets Manager semantics; never sees tonic or
//!   sled. Secrets get their data keys from the KMS service, like any other client; rotation
//!   (schedules, rotators, the scheduler) drives both.
//! - [`access`]: who the caller is (client certificates, bearer tokens), IAM policy
//!   evaluation, and the [`access::Gate`] every request passes: the decision before any
//!   hardware call, and its audit record.
//! - [`audit`]: the hash-chained audit log, its checkpoint key in the root of trust, and the
//!   verifier behind `keyward audit verify`.
//! - [`alarms`]: rules evaluated on the request stream, and their webhooks.
//! - [`replication`]: secrets replicated to peer sites (regions): the per-peer log, its
//!   senders and the site-to-site service (mutual TLS).
//! - [`aws`]: the AWS JSON 1.1 front door (SigV4), a thin adapter onto the gRPC handlers.
//! - [`api`]: tonic handlers, protobuf types, the error-to-status mapping; `api::guard` says
//!   which IAM action and resource each RPC needs.
//! - [`server`]: wiring, background tasks, serve-until-shutdown.
//! - [`metrics`]: the Prometheus text endpoint.
//! - [`bench`]: the load generator behind `keyward bench`.
//! - [`cli`]: the `keyward` command: `serve`, the client subcommands and `bench`.
//!
//! # Request flow
//!
//! A gRPC request reaches a handler in `api/`, which hands it to the access gate: the caller's
//! principal, the policy decision (store reads only) and, once answered, the audit record. The
//! handler converts the request into a call on [`service::KmsService`]. The service resolves the key in the store, checks its state,
//! generates data keys from the OS CSPRNG and asks the root of trust, through
//! [`backend::Hardware::run`], to seal or unseal under the master key version (one hardware call
//! per request). A secret's value is sealed in software under a data key obtained that way.
//! Writes are committed atomically and flushed (group commit) before the reply. Errors travel
//! back as [`service::KmsError`] and become a `tonic::Status` with the AWS exception name in
//! `x-keyward-error` in one place ([`api::status`]).

// The only unsafe code: mlock/munlock of key pages (crypto::locked), and the environment set
// before any thread starts (main.rs).
#![deny(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod access;
pub mod alarms;
pub mod api;
pub mod audit;
pub mod aws;
pub mod backend;
pub mod bench;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod duration;
pub mod metrics;
pub mod outcome;
pub mod policy;
pub mod replication;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod time;
