//! The AWS-compatible front door: the AWS JSON 1.1 protocol (`X-Amz-Target:
//! secretsmanager.*` and `TrentService.*`) on its own listener, so AWS SDKs, the Secrets
//! Manager caching clients and the `aws` CLI work against Keyward with only an endpoint URL
//! changed.
//!
//! A thin adapter: [`shapes`] turns AWS documents into the gRPC request messages and back,
//! [`operations`] hands each to the gRPC service's own handler, so the access gate, audit,
//! limits and every business rule are one and the same on both front doors. [`signing`]
//! checks SigV4 ([`sigv4`]) against the configured access keys before anything is parsed.

pub mod errors;
pub mod operations;
pub mod server;
pub mod shapes;
pub mod signing;
pub mod sigv4;
pub mod wipe;

pub use server::{FrontDoor, MAX_BODY, serve};
