//! The keyspace: every key the store holds starts with one of the prefixes (or is one of the
//! single keys) defined here, each once, with what lives under it. Keys are built here and
//! nowhere else, so two features cannot claim overlapping ranges unnoticed (the test below
//! fails if one entry is a prefix of another), and a tool that copies or checks a store
//! has one list of what there is.
//!
//! The bytes are those of existing data directories: changing an entry orphans the data
//! written under the old one.

/// Defines each entry as a `&[u8]` constant and lists them all in [`ALL`]. Every entry must
/// have a doc line: the pattern does not match without one.
macro_rules! keyspace {
    ($( $(#[doc = $doc:literal])+ $kind:ident $name:ident = $bytes:literal; )*) => {
        $(
            $(#[doc = $doc])+
            pub const $name: &[u8] = $bytes;
        )*
        /// Every entry of the keyspace.
        pub const ALL: &[Entry] = &[$(
            Entry {
                name: stringify!($name),
                bytes: $name,
                kind: Kind::$kind,
                about: concat!($($doc),+),
            },
        )*];
    };
}

/// Whether an entry is the start of many keys or one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Prefix,
    Key,
}

#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub name: &'static str,
    pub bytes: &'static [u8],
    pub kind: Kind,
    pub about: &'static str,
}

keyspace! {
    /// KMS key records (`KeyRecord`), by key id.
    Prefix KMS_KEYS = b"kms/key/";
    /// KMS alias records (`AliasRecord`), by full alias name (`alias/...`).
    Prefix KMS_ALIASES = b"kms/alias/";

    /// Secret records (`SecretRecord`, metadata of every version), by secret name.
    Prefix SECRETS = b"sm/secret/";
    /// Sealed secret values (`SecretValueRecord`): `<secret id>/<version id>`.
    Prefix SECRET_VALUES = b"sm/value/";
    /// Index by creation time: `<time, 20 digits>/<name>`, empty value.
    Prefix SECRETS_BY_CREATION = b"sm/created/";
    /// Index by scheduled deletion date: `<time, 20 digits>/<name>`, empty value.
    Prefix SECRETS_BY_DELETION = b"sm/deleting/";
    /// Index by next rotation due time: `<time, 20 digits>/<name>`, empty value.
    Prefix SECRETS_BY_ROTATION = b"sm/rotation-due/";
    /// Present once the three secret indexes cover every record.
    Key SECRET_INDEXES_BUILT = b"sm/indexes-v1";

    /// This site's replication log per peer: `<peer>/<seq, 20 digits>`, one change each.
    Prefix REPLICATION_LOG = b"repl/out/";
    /// The last sequence number given per peer (survives the log being trimmed empty). Each
    /// append moves it guarded on its version, so the nodes of a cluster number one log.
    Prefix REPLICATION_SEQ = b"repl/seq/";
    /// Why a peer refused a secret, until it accepts it: `<peer>/<secret name>`.
    Prefix REPLICATION_FAILED = b"repl/failed/";
    /// The id naming this site's replication log, so a peer can tell a restarted sequence.
    Key REPLICATION_LOG_ID = b"repl/log-id";
    /// Per primary site: `<log id> <seq>` of the last entry of its log applied here.
    Prefix REPLICATION_APPLIED = b"repl/in/";
    /// Promotions a former primary has not been told of: `<former primary>/<secret name>`.
    Prefix REPLICATION_PROMOTED = b"repl/promoted/";
    /// Per peer: `1` or `0`, whether the sender's latest call reached it, so that every node
    /// of a cluster reports what the node running the sender sees.
    Prefix REPLICATION_REACHABLE = b"repl/up/";

    /// Principals that have read a secret: `<secret ARN> NUL <principal>`, for first-read
    /// alarms.
    Prefix ALARM_READERS = b"alarm/read/";

    /// The root of trust's reference to the audit checkpoint (HMAC) key.
    Key AUDIT_MAC_KEY = b"audit/mac-key";
    /// The root of trust's reference to the key backups are sealed with (HMAC).
    Key BACKUP_MAC_KEY = b"backup/mac-key";
    /// Escrow public keys (DER SubjectPublicKeyInfo) by id: every backup carries the modulus
    /// recovery needs.
    Prefix ESCROW_KEYS = b"escrow/key/";
    /// MAC keys wrapped to the escrow key (`Escrowed`), by the entry that names the key
    /// (`escrow/mac/audit/mac-key`).
    Prefix ESCROWED_MAC_KEYS = b"escrow/mac/";
    /// Set by `keyward restore` (which backup, made when, restored when); the next server to
    /// start audits it and deletes it.
    Key BACKUP_RESTORED = b"backup/restored";
    /// Set by `keyward escrow add-existing` (which escrow key, which keys it escrowed); the next
    /// server to start audits it and deletes it.
    Key ESCROW_ADDED = b"escrow/added-existing";
    /// The audit log's head as recorded at the last start or clean close: `<seq> <hash>`.
    Key AUDIT_HEAD = b"audit/closed-head";

    /// Per cluster node: its audit log's head, as `AUDIT_HEAD` is for a single server.
    Prefix AUDIT_NODE_HEADS = b"audit/node-head/";
    /// Cluster membership: `<node id>`, a JSON entry bound to the node's etcd lease.
    Prefix CLUSTER_NODES = b"cluster/node/";
    /// Cluster duty elections: `<duty>`, the holder's node id, bound to its lease.
    Prefix CLUSTER_DUTIES = b"cluster/duty/";
    /// The identity of the root of trust this data directory was created with.
    Key ROOT_IDENTITY = b"rot/identity";
}

use crate::time::Timestamp;

fn join(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The audit head of one cluster node, or the single server's when `node` is none.
pub fn audit_head(node: Option<&str>) -> Vec<u8> {
    match node {
        Some(node) => join(&[AUDIT_NODE_HEADS, node.as_bytes()]),
        None => AUDIT_HEAD.to_vec(),
    }
}

pub fn kms_key(key_id: &str) -> Vec<u8> {
    join(&[KMS_KEYS, key_id.as_bytes()])
}

pub fn kms_alias(alias_name: &str) -> Vec<u8> {
    join(&[KMS_ALIASES, alias_name.as_bytes()])
}

pub fn secret(name: &str) -> Vec<u8> {
    join(&[SECRETS, name.as_bytes()])
}

/// The start of every value key of one secret.
pub fn secret_values(secret_id: &str) -> Vec<u8> {
    join(&[SECRET_VALUES, secret_id.as_bytes(), b"/"])
}

pub fn secret_value(secret_id: &str, version_id: &str) -> Vec<u8> {
    join(&[
        SECRET_VALUES,
        secret_id.as_bytes(),
        b"/",
        version_id.as_bytes(),
    ])
}

/// An index entry: the time in seconds, zero-padded so that keys sort by time, then the name.
pub fn time_key(index: &[u8], time: Timestamp, name: &str) -> Vec<u8> {
    join(&[
        index,
        format!("{:020}/", time.secs().max(0)).as_bytes(),
        name.as_bytes(),
    ])
}

pub fn parse_time_key<'a>(index: &[u8], key: &'a [u8]) -> Option<(Timestamp, &'a str)> {
    let rest = std::str::from_utf8(key.strip_prefix(index)?).ok()?;
    let (time, name) = rest.split_once('/')?;
    Some((Timestamp::from_secs(time.parse().ok()?), name))
}

/// The start of every entry of one peer's replication log.
pub fn replication_log(peer: &str) -> Vec<u8> {
    join(&[REPLICATION_LOG, peer.as_bytes(), b"/"])
}

pub fn replication_log_entry(peer: &str, seq: u64) -> Vec<u8> {
    join(&[&replication_log(peer), format!("{seq:020}").as_bytes()])
}

pub fn replication_seq(peer: &str) -> Vec<u8> {
    join(&[REPLICATION_SEQ, peer.as_bytes()])
}

/// The start of every refusal recorded for one peer.
pub fn replication_failures(peer: &str) -> Vec<u8> {
    join(&[REPLICATION_FAILED, peer.as_bytes(), b"/"])
}

pub fn replication_failure(peer: &str, name: &str) -> Vec<u8> {
    join(&[&replication_failures(peer), name.as_bytes()])
}

pub fn replication_applied(primary: &str) -> Vec<u8> {
    join(&[REPLICATION_APPLIED, primary.as_bytes()])
}

/// The start of every promotion notice owed to one former primary.
pub fn replication_promotions(former_primary: &str) -> Vec<u8> {
    join(&[REPLICATION_PROMOTED, former_primary.as_bytes(), b"/"])
}

pub fn replication_promotion(former_primary: &str, name: &str) -> Vec<u8> {
    join(&[&replication_promotions(former_primary), name.as_bytes()])
}

pub fn replication_reachable(peer: &str) -> Vec<u8> {
    join(&[REPLICATION_REACHABLE, peer.as_bytes()])
}

/// NUL cannot occur in an ARN or a principal name, so the key is unambiguous.
pub fn alarm_reader(secret: &str, principal: &str) -> Vec<u8> {
    join(&[
        ALARM_READERS,
        secret.as_bytes(),
        b"\0",
        principal.as_bytes(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_entry_overlaps_another() {
        for a in ALL {
            for b in ALL {
                if a.name != b.name {
                    assert!(
                        !b.bytes.starts_with(a.bytes),
                        "{} ({:?}) is a prefix of {} ({:?})",
                        a.name,
                        String::from_utf8_lossy(a.bytes),
                        b.name,
                        String::from_utf8_lossy(b.bytes),
                    );
                }
            }
        }
    }

    #[test]
    fn prefixes_end_at_a_separator_and_every_entry_is_documented() {
        for entry in ALL {
            let ends_with_slash = entry.bytes.ends_with(b"/");
            assert_eq!(
                ends_with_slash,
                entry.kind == Kind::Prefix,
                "{}: a prefix ends with '/', a single key does not",
                entry.name
            );
            assert!(!entry.about.trim().is_empty(), "{}", entry.name);
        }
    }

    /// The layout of data directories written before the registry existed.
    #[test]
    fn keys_keep_their_bytes() {
        let cases: [(Vec<u8>, &[u8]); 13] = [
            (kms_key("k1"), b"kms/key/k1"),
            (kms_alias("alias/a"), b"kms/alias/alias/a"),
            (secret("db/x"), b"sm/secret/db/x"),
            (secret_values("id"), b"sm/value/id/"),
            (secret_value("id", "v1"), b"sm/value/id/v1"),
            (
                time_key(SECRETS_BY_CREATION, Timestamp::from_secs(99), "b/x"),
                b"sm/created/00000000000000000099/b/x",
            ),
            (
                replication_log_entry("site-b", 7),
                b"repl/out/site-b/00000000000000000007",
            ),
            (replication_seq("site-b"), b"repl/seq/site-b"),
            (replication_failure("site-b", "s"), b"repl/failed/site-b/s"),
            (replication_applied("site-a"), b"repl/in/site-a"),
            (
                replication_promotion("site-a", "s"),
                b"repl/promoted/site-a/s",
            ),
            (replication_reachable("site-b"), b"repl/up/site-b"),
            (alarm_reader("arn", "p"), b"alarm/read/arn\0p"),
        ];
        for (built, expected) in cases {
            assert_eq!(
                String::from_utf8_lossy(&built),
                String::from_utf8_lossy(expected)
            );
        }
    }

    #[test]
    fn time_keys_sort_by_time_and_parse_back() {
        let at = Timestamp::from_secs;
        let early = time_key(SECRETS_BY_CREATION, at(99), "b/x");
        let late = time_key(SECRETS_BY_CREATION, at(1_000), "a");
        assert!(early < late, "keys must sort by time, not name");
        assert_eq!(
            parse_time_key(SECRETS_BY_CREATION, &early),
            Some((at(99), "b/x"))
        );
        assert_eq!(
            parse_time_key(SECRETS_BY_CREATION, b"sm/created/junk"),
            None
        );
        assert_eq!(parse_time_key(SECRETS_BY_DELETION, &early), None);
    }
}
