//! IAM-style policy documents: parsing with validation, wildcard matching, and the AWS
//! same-account evaluation used to authorise KMS and Secrets Manager calls.
//!
//! Anything this module cannot enforce faithfully (other principal types, other condition
//! operators, policy variables) is rejected at parse time, so a stored policy never contains a
//! clause that someone believes is enforced but is not.

// Policy JSON comes from clients: nothing reachable from input may abort the server.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

mod document;
mod evaluate;
mod json;
mod matching;

pub use document::{
    ACCOUNT_ROOT_PREFIX, Policy, PolicyKind, SYNTAX_CHECK, ValidationError, account_root,
};
pub use evaluate::{Decision, DenyReason, Request, decide, decide_key};
pub use matching::{Case, PARTITIONS, canonical_arn, wildcard_match};
