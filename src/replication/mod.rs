//! Replication of secrets between sites (regions), each with its own root of trust and store.
//!
//! - [`sender`]: one task per peer shipping the log in order, with backoff while the peer
//!   is unreachable; values are opened here and sealed again there.
//! - [`site`]: the site-to-site gRPC service, mutual TLS only, that applies a peer's entries
//!   after checking, by certificate, that the peer is the secret's primary.
//!
//! The secrets service owns the rules (read-only replicas, promotion, name conflicts) and the
//! primary's durable, ordered log per peer, written in the same commit as each change: see
//! `service::secrets::replica` and its `outbox`.

pub mod sender;
pub mod site;
