//! Append-only, tamper-evident audit trail.
//!
//! Every request is recorded before it is answered ([`AuditLog::append`]
//! fails closed), one JSON object per line, chained by hashes and sealed
//! from time to time by a MAC from the root of trust (an HMAC key held in
//! the HSM/TPM). [`verify::scan`] checks a file and says where it was
//! changed.
//!
//! # Format (`keyward-audit-v1`)
//!
//! UTF-8, one JSON object per line, each line terminated by `\n`. The fields
//! always appear in this order, with no whitespace:
//!
//! | field  | value |
//! |--------|-------|
//! | `seq`  | u64: 1, 2, 3, … consecutive over the whole file, every kind of line included |
//! | `time` | RFC 3339 UTC with milliseconds, `"2026-11-30T04:00:00.123Z"` |
//! | `kind` | `"request"`, `"checkpoint"` or `"start"` |
//! | `prev` | lower-case hex SHA-256 of the previous line's exact bytes (without its `\n`); for the first line of a file, of the bytes `keyward-audit-v1` |
//!
//! followed by the fields of the kind:
//!
//! * `request` — `request_id`, `api` (`"grpc"` / `"aws-json"`), `principal`,
//!   `source`, `action`, `resource`, `version_id`, `version_stage`,
//!   `outcome` (`"success"` / `"denied"` / `"failed"`), `error`, `reason`,
//!   `duration_us`. Optional fields are written as `null`. `time` is the
//!   event's time. No field carries a secret, a payload or key material. A
//!   text field longer than 2560 bytes (only ever invalid input) is cut there
//!   and ends with `...[truncated]`.
//! * `checkpoint` — `mac`: lower-case hex of the root of trust's MAC over
//!   `b"keyward-audit-checkpoint-v1\0" || seq (u64 big-endian) || prev (the 32
//!   raw bytes)`, with `seq` and `prev` those of this very line; `key`: the MAC
//!   key's identifier; `records`: request lines since the previous checkpoint
//!   or `start` line (a writer that restarts does not count lines an earlier
//!   run left unsealed).
//! * `start` — `reason`: `"new file"` or `"restart"`. Written each time a
//!   writer opens the file, so restarts show in the trail.
//!
//! A checkpoint is written after every `checkpoint_every` request lines
//! (a batch is never split, so it may cover a few more), when the oldest
//! unsealed line is `checkpoint_interval` old, and on close.
//!
//! # What is detected
//!
//! The hash chain catches any change to a line that has a successor, a
//! deleted, inserted or reordered line, and a torn last line. Two things the
//! chain alone cannot see, and what covers them:
//!
//! * someone who rewrites the file and recomputes every hash — the
//!   checkpoint MACs, which only the root of trust can produce, no longer
//!   match ([`verify::Scan::mark_bad_mac`]);
//! * a cut-off tail or an edited last line — the server's [`Head`]
//!   ([`AuditLog::head`], [`verify::Scan::check_head`]). Without it, lines
//!   after the last checkpoint are reported as an unsealed tail, a warning.

pub mod head;
mod key;
mod record;
pub mod verify;
mod writer;

pub use key::{KeyError, RootMac, escrowed_mac_entry};
pub use record::{
    AuditEvent, CHECKPOINT_DOMAIN, GENESIS, Head, LineHash, MAX_FIELD_BYTES, Outcome,
    TRUNCATED_MARK, checkpoint_message, genesis_prev, is_checkpoint_message, line_hash,
};
pub use verify::{CheckpointClaim, Evidence, Finding, Problem, Scan, scan};
pub use writer::{
    AuditCounters, AuditError, AuditLog, AuditSettings, AuditTask, CheckpointMac, MacFuture,
    SyncMode,
};

#[cfg(test)]
pub(crate) mod test_support {
    use super::{CheckpointMac, MacFuture};
    use sha2::{Digest, Sha256};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    pub const KEY_ID: &str = "test-hmac";

    /// Stands in for the HSM: SHA-256(key id || message). Anyone can compute
    /// it, which is fine for tests and is what lets a test check a MAC.
    pub fn fake_mac(key_id: &str, message: &[u8]) -> Vec<u8> {
        Sha256::new()
            .chain_update(key_id.as_bytes())
            .chain_update(message)
            .finalize()
            .to_vec()
    }

    #[derive(Default)]
    pub struct FakeMac {
        pub failing: AtomicBool,
        pub calls: AtomicU64,
    }

    impl CheckpointMac for FakeMac {
        fn key_id(&self) -> String {
            KEY_ID.into()
        }

        fn mac(&self, message: Vec<u8>) -> MacFuture {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let result = if self.failing.load(Ordering::Relaxed) {
                Err("hsm unreachable".to_string())
            } else {
                Ok(fake_mac(KEY_ID, &message))
            };
            Box::pin(async move { result })
        }
    }
}
