//! Keyward: an on-premises key management service whose root of trust is hardware.
//!
//! # Architecture
//!
//! Layers point only down: a module uses the layers below its own and never a module above
//! it or beside it (`tests/layers.rs` fails on any `use` that does, and holds the same table).
//!
//! ```text
//!  cli · bench          the `keyward` command and its load generator (one program)
//!  server               composition, listeners, background tasks
//!  aws                  AWS JSON 1.1 front door (SigV4) onto the gRPC handlers
//!  metrics              Prometheus endpoint
//!  replication          per-peer senders and the site-to-site service
//!  api                  tonic handlers, protobuf <-> domain (api::convert), error -> status
//!  access               identity, the Gate (decision + audit record), step credentials
//!  service · backup     KMS and Secrets Manager domain, rotation, the replication outbox · backups of the store
//!  config               typed configuration
//!  audit · alarms · cluster   hash-chained log · rules on the request stream · etcd nodes, duties
//!  escrow               key escrow: the escrow key, escrowed blobs, shares
//!  backend · store      roots of trust (PKCS#11, TPM) · key-value persistence (sled, etcd)
//!  crypto · time · duration · outcome · policy · telemetry      leaves
//! ```
//!
//! # Layout
//!
//! - [`crypto`]: secret buffers (zeroized; mlocked for long-lived keys), the canonical
//!   encryption context, the ciphertext envelope, software AES-GCM, digests, the one
//!   constant-time comparison, the one hex codec, and the names of master keys
//!   ([`crypto::master`]) that roots of trust make and key records keep.
//! - [`time`]: the [`time::Timestamp`] records and the wire carry, its text forms, and the
//!   [`time::Clock`] every "now" is read from.
//! - [`duration`]: durations as the configuration writes them ("30s", or a number in the
//!   unit the key names).
//! - [`outcome`]: a request's [`outcome::Outcome`] and the AWS [`outcome::Exception`] names,
//!   shared by the status table, the AWS front door, audit records, alarms and the gate.
//! - [`policy`]: IAM policy documents: parsing with validation and evaluation. A leaf, so the
//!   services validate policies and the gate evaluates them without depending on each other.
//! - [`telemetry`]: the tracing subscriber and its log format.
//! - [`backend`]: roots of trust (PKCS#11 and TPM 2.0); the only code touching hardware
//!   crates, and [`backend::Hardware`], the single async boundary every hardware call goes
//!   through; at start, the check that the device is the one the data directory was made with.
//! - [`store`]: the key-value interface and its two backends (sled embedded, etcd for a
//!   cluster), the keyspace (every key prefix, defined once), typed tables, and the fence a
//!   cluster duty's commits carry; the only code touching sled and etcd's key-value API.
//! - [`escrow`]: key escrow (opt-in): the escrow public key, each key's material wrapped to
//!   it with a check value, the escrow private key split into Shamir shares and rebuilt from
//!   them for recovery.
//! - [`cluster`]: the nodes of a site on etcd: membership bound to each node's lease, and the
//!   election that gives each background duty (rotation, purge, the replication sender of
//!   each peer) to one node at a time.
//! - [`audit`]: the hash-chained audit log, its checkpoint key in the root of trust, and the
//!   verifier behind `keyward audit verify`.
//! - [`alarms`]: rules evaluated on the request stream, and their webhooks.
//! - [`config`]: the TOML configuration, typed as it is read, and the development default.
//! - [`service`]: domain logic with AWS KMS and Secrets Manager semantics; never sees tonic or
//!   sled. Secrets get their data keys from the KMS service, like any other client; rotation
//!   (schedules, rotators, the scheduler) drives both. The replication outbox lives with the
//!   secrets service, which writes it in the same commit as each change.
//! - [`backup`]: point-in-time backups of the store, sealed by the root of trust, and their
//!   restore.
//! - [`access`]: who the caller is (client certificates, bearer tokens) and the
//!   [`access::Gate`] every request passes: the policy decision before any hardware call, and
//!   its audit record.
//! - [`api`]: tonic handlers, protobuf types, the conversions both front doors and the site
//!   wire share ([`api::convert`]), the error-to-status mapping; `api::guard` says which IAM
//!   action and resource each RPC needs.
//! - [`replication`]: secrets replicated to peer sites (regions): the senders and the
//!   site-to-site service (mutual TLS).
//! - [`metrics`]: the Prometheus text endpoint.
//! - [`aws`]: the AWS JSON 1.1 front door (SigV4), a thin adapter onto the gRPC handlers.
//! - [`server`]: wiring, background tasks, serve-until-shutdown.
//! - [`bench`]: the load generator behind `keyward bench`.
//! - [`cli`]: the `keyward` command: `serve`, the client subcommands and `bench`; the
//!   clients' connection over several server addresses (`cli::failover`).
//!
//! # Request path
//!
//! ```text
//!  client ──gRPC──> api handler ──> guard: bounds, caller, Gate::admit ──> Pass
//!         ──AWS JSON──> aws (SigV4) ──┘            (policy decision, no hardware yet)
//!  Pass ──> api::convert (TryFrom: protobuf -> request struct) ──> service
//!  service ──> store (resolve key/secret) ──> backend::Hardware::run (one call) ──> store commit
//!  reply <── api::status (error -> Status + x-keyward-error) <── Pass::finish (audit record)
//! ```
//!
//! A request runs in its own task (`api::detach`), so a client that hangs up cannot cut its
//! audit record short. The service resolves the key in the store, checks its state, generates
//! data keys from the OS CSPRNG and asks the root of trust, through
//! [`backend::Hardware::run`], to seal or unseal under the master key version (one hardware call
//! per request). A secret's value is sealed in software under a data key obtained that way.
//! Writes are committed atomically and flushed (group commit) before the reply. Errors travel
//! back as [`service::KmsError`] or `SecretsError` and become a `tonic::Status` with the AWS
//! exception name in `x-keyward-error` in one place ([`api::status`]).

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
pub mod backup;
pub mod bench;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod crypto;
pub mod duration;
pub mod escrow;
pub mod metrics;
pub mod outcome;
pub mod policy;
pub mod replication;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod time;
