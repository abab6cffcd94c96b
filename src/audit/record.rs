//! The audit event and the exact bytes of a line. See the module docs of
//! `audit` for the format.

use crate::crypto::hex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Hashed to give the `prev` of a file's first line, so an empty file has a
/// well-defined chain head and a line moved to the top of a file is caught.
pub const GENESIS: &[u8] = b"keyward-audit-v1";

/// Prefix of the checkpoint MAC input; the domain separation keeps the
/// root-of-trust key from being usable as a MAC oracle for other protocols.
pub const CHECKPOINT_DOMAIN: &[u8] = b"keyward-audit-checkpoint-v1\0";

/// SHA-256 of one line's bytes, without its `\n`.
pub type LineHash = [u8; 32];

pub fn line_hash(line: &[u8]) -> LineHash {
    Sha256::digest(line).into()
}

pub fn genesis_prev() -> LineHash {
    line_hash(GENESIS)
}

/// The exact input the root of trust MACs for a checkpoint line.
pub fn checkpoint_message(seq: u64, prev: &LineHash) -> Vec<u8> {
    let mut message = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 8 + 32);
    message.extend_from_slice(CHECKPOINT_DOMAIN);
    message.extend_from_slice(&seq.to_be_bytes());
    message.extend_from_slice(prev);
    message
}

/// Whether `message` has the shape of a checkpoint message: anything else is not one, and is
/// answered without asking the root of trust.
pub fn is_checkpoint_message(message: &[u8]) -> bool {
    message.len() == CHECKPOINT_DOMAIN.len() + 8 + 32 && message.starts_with(CHECKPOINT_DOMAIN)
}

/// The chain head: the last line of a log and the hash of its bytes.
/// Kept by the server outside the file, it is what exposes a cut-off tail or
/// an edit to the last line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    /// Lower-case hex SHA-256 of the line.
    pub hash: String,
}

pub use crate::outcome::{Exception, Outcome};

/// What happened in one request. Only identifiers and outcomes: there is
/// deliberately no field for a payload, a secret value or key material.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditEvent {
    /// Written as the line's `"time"`. 0 means "when it is written", so
    /// callers that don't track request time can leave the default.
    #[serde(skip)]
    pub time_ms: i64,
    pub request_id: String,
    /// "grpc" | "aws-json"
    pub api: &'static str,
    /// "keyward:principal/app" or "anonymous"
    pub principal: String,
    /// Peer address.
    pub source: String,
    /// e.g. "secretsmanager:GetSecretValue"
    pub action: String,
    /// ARN or "*".
    pub resource: String,
    pub version_id: Option<String>,
    pub version_stage: Option<String>,
    pub outcome: Outcome,
    /// Written as the AWS exception name, e.g. "AccessDeniedException".
    pub error: Option<Exception>,
    /// Short non-secret explanation of a deny.
    pub reason: Option<String>,
    pub duration_us: u64,
}

/// The most bytes a request record's text field keeps: more than any valid identifier (secret
/// and key ids are at most 2048 characters), so only input refused as invalid is ever cut, and
/// a line stays small whatever a client sends.
pub const MAX_FIELD_BYTES: usize = 2560;

/// What replaces the end of a field longer than [`MAX_FIELD_BYTES`].
pub const TRUNCATED_MARK: &str = "...[truncated]";

impl AuditEvent {
    /// The event with every text field cut to [`MAX_FIELD_BYTES`] (at a character boundary)
    /// and marked as cut.
    pub fn capped(mut self) -> Self {
        for field in [
            &mut self.request_id,
            &mut self.principal,
            &mut self.source,
            &mut self.action,
            &mut self.resource,
        ] {
            cap(field);
        }
        for field in [
            &mut self.version_id,
            &mut self.version_stage,
            &mut self.reason,
        ]
        .into_iter()
        .flatten()
        {
            cap(field);
        }
        self
    }
}

fn cap(field: &mut String) {
    if field.len() <= MAX_FIELD_BYTES {
        return;
    }
    let mut end = MAX_FIELD_BYTES - TRUNCATED_MARK.len();
    while !field.is_char_boundary(end) {
        end -= 1;
    }
    field.truncate(end);
    field.push_str(TRUNCATED_MARK);
}

/// The kind-specific part of a line.
pub(crate) enum Body<'a> {
    Request(&'a AuditEvent),
    Checkpoint {
        mac: &'a [u8],
        key: &'a str,
        records: u64,
    },
    Start {
        reason: &'a str,
    },
}

// The common fields come first and in this order in every line; the body is
// flattened after them.
#[derive(Serialize)]
struct Line<'a, B> {
    seq: u64,
    time: String,
    /// The cluster node that wrote the line; left out on a single server.
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
    kind: &'static str,
    prev: String,
    #[serde(flatten)]
    body: B,
}

#[derive(Serialize)]
struct CheckpointFields<'a> {
    mac: String,
    key: &'a str,
    records: u64,
}

#[derive(Serialize)]
struct StartFields<'a> {
    reason: &'a str,
}

/// One line without its `\n`. serde_json escapes control characters inside
/// strings, so no field value can break a line in two.
pub(crate) fn encode(
    seq: u64,
    time_ms: i64,
    node: Option<&str>,
    prev: &LineHash,
    body: Body<'_>,
) -> serde_json::Result<Vec<u8>> {
    let time = crate::time::rfc3339_ms(time_ms);
    let prev = hex::encode(prev);
    match body {
        Body::Request(event) => serde_json::to_vec(&Line {
            seq,
            time,
            node,
            kind: "request",
            prev,
            body: event,
        }),
        Body::Checkpoint { mac, key, records } => serde_json::to_vec(&Line {
            seq,
            time,
            node,
            kind: "checkpoint",
            prev,
            body: CheckpointFields {
                mac: hex::encode(mac),
                key,
                records,
            },
        }),
        Body::Start { reason } => serde_json::to_vec(&Line {
            seq,
            time,
            node,
            kind: "start",
            prev,
            body: StartFields { reason },
        }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Request,
    Checkpoint,
    Start,
}

/// The parts of a line the writer and the verifier need.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub seq: u64,
    pub kind: Kind,
    pub prev: LineHash,
    /// (mac, key id) of a checkpoint line.
    pub checkpoint: Option<(Vec<u8>, String)>,
}

// Unknown fields are ignored: the hash covers every byte anyway, so this only
// has to find the fields the chain and the checkpoints are built from.
#[derive(Deserialize)]
struct RawLine {
    seq: u64,
    time: String,
    kind: String,
    prev: String,
    mac: Option<String>,
    key: Option<String>,
    records: Option<u64>,
    reason: Option<String>,
}

pub(crate) fn parse_line(line: &[u8]) -> Result<Parsed, String> {
    let raw: RawLine = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    if raw.seq == 0 {
        return Err("seq 0 (sequence numbers start at 1)".into());
    }
    if crate::time::parse_rfc3339_ms(&raw.time).is_none() {
        return Err(format!(
            "time {:?} is not RFC 3339 UTC with milliseconds",
            raw.time
        ));
    }
    let prev = hex::decode(&raw.prev)
        .and_then(|bytes| LineHash::try_from(bytes).ok())
        .ok_or("prev is not 64 lower-case hex digits")?;
    let (kind, checkpoint) = match raw.kind.as_str() {
        "request" => (Kind::Request, None),
        "start" if raw.reason.is_some() => (Kind::Start, None),
        "checkpoint" => match (raw.mac, raw.key, raw.records) {
            (Some(mac), Some(key), Some(_)) => {
                let mac = hex::decode(&mac).ok_or("mac is not lower-case hex")?;
                (Kind::Checkpoint, Some((mac, key)))
            }
            _ => return Err("checkpoint without mac, key or records".into()),
        },
        "start" => return Err("start without reason".into()),
        other => return Err(format!("unknown kind {other:?}")),
    };
    Ok(Parsed {
        seq: raw.seq,
        kind,
        prev,
        checkpoint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_fields_are_cut_at_a_character_and_marked() {
        let event = AuditEvent {
            resource: "é".repeat(4096),
            reason: Some("r".repeat(MAX_FIELD_BYTES)),
            version_stage: Some("s".repeat(MAX_FIELD_BYTES + 1)),
            action: "kms:Decrypt".into(),
            ..AuditEvent::default()
        }
        .capped();
        assert!(event.resource.len() <= MAX_FIELD_BYTES);
        assert!(event.resource.ends_with(TRUNCATED_MARK));
        assert!(event.resource.starts_with("éé"));
        assert_eq!(
            event.reason.as_deref(),
            Some("r".repeat(MAX_FIELD_BYTES).as_str())
        );
        let stage = event.version_stage.unwrap();
        assert_eq!(stage.len(), MAX_FIELD_BYTES);
        assert!(stage.ends_with(TRUNCATED_MARK));
        assert_eq!(event.action, "kms:Decrypt");
    }

    #[test]
    fn request_line_layout_is_fixed() {
        let event = AuditEvent {
            time_ms: 1_796_011_200_123,
            request_id: "r-1".into(),
            api: "aws-json",
            principal: "keyward:principal/app".into(),
            source: "10.0.0.7:5000".into(),
            action: "secretsmanager:GetSecretValue".into(),
            resource: "*".into(),
            version_stage: Some("AWSCURRENT".into()),
            outcome: Outcome::Denied,
            error: Some(Exception::AccessDenied),
            reason: Some("explicit deny: policy app, statement \"Deny\"\nProd".into()),
            duration_us: 42,
            ..AuditEvent::default()
        };
        let line = encode(
            1,
            event.time_ms,
            None,
            &genesis_prev(),
            Body::Request(&event),
        )
        .unwrap();
        let expected = format!(
            concat!(
                r#"{{"seq":1,"time":"2026-11-30T04:00:00.123Z","kind":"request","prev":"{}","#,
                r#""request_id":"r-1","api":"aws-json","principal":"keyward:principal/app","#,
                r#""source":"10.0.0.7:5000","action":"secretsmanager:GetSecretValue","resource":"*","#,
                r#""version_id":null,"version_stage":"AWSCURRENT","outcome":"denied","#,
                r#""error":"AccessDeniedException","#,
                r#""reason":"explicit deny: policy app, statement \"Deny\"\nProd","duration_us":42}}"#
            ),
            hex::encode(&genesis_prev())
        );
        assert_eq!(String::from_utf8(line.clone()).unwrap(), expected);
        assert!(!line.contains(&b'\n'));
        let parsed = parse_line(&line).unwrap();
        assert_eq!(
            (parsed.seq, parsed.kind, parsed.prev),
            (1, Kind::Request, genesis_prev())
        );
    }

    #[test]
    fn checkpoint_and_start_lines() {
        let prev = line_hash(b"x");
        let cp = encode(
            7,
            0,
            None,
            &prev,
            Body::Checkpoint {
                mac: &[0xab, 0x01],
                key: "tpm:audit-hmac",
                records: 5,
            },
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(cp.clone()).unwrap(),
            format!(
                r#"{{"seq":7,"time":"1970-01-01T00:00:00.000Z","kind":"checkpoint","prev":"{}","mac":"ab01","key":"tpm:audit-hmac","records":5}}"#,
                hex::encode(&prev)
            )
        );
        let parsed = parse_line(&cp).unwrap();
        assert_eq!(
            parsed.checkpoint,
            Some((vec![0xab, 0x01], "tpm:audit-hmac".into()))
        );
        let start = encode(
            8,
            0,
            Some("node-b"),
            &prev,
            Body::Start { reason: "restart" },
        )
        .unwrap();
        let text = String::from_utf8(start.clone()).unwrap();
        assert!(text.ends_with(r#""reason":"restart"}"#), "{text}");
        // A cluster node's lines name it, right after the time.
        assert!(
            text.contains(r#"Z","node":"node-b","kind":"start""#),
            "{text}"
        );
        assert!(!String::from_utf8(cp.clone()).unwrap().contains("node"));
        assert_eq!(parse_line(&start).unwrap().kind, Kind::Start);
    }

    #[test]
    fn checkpoint_message_layout() {
        let prev = [7u8; 32];
        let message = checkpoint_message(0x0102, &prev);
        assert_eq!(&message[..28], b"keyward-audit-checkpoint-v1\0");
        assert_eq!(&message[28..36], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(&message[36..], &prev);
    }

    #[test]
    fn genesis_is_sha256_of_the_tag() {
        // Independently computed: printf 'keyward-audit-v1' | sha256sum
        assert_eq!(hex::encode(&genesis_prev()), GENESIS_HEX);
    }

    const GENESIS_HEX: &str = "245f756f8605aaa11c91c3201db05620ae08920b53e431b4132b2549f9cd2b95";
}
