//! The root of trust's identity (a TPM's SRK Name) and the rule that a data directory serves
//! one device only: keys made by a cleared or swapped TPM's predecessor cannot work, and
//! failing every request later would look like corrupt data, so a changed identity refuses the
//! start instead. Where the identity is recorded is the caller's business (the server keeps it
//! in the store, a layer this one does not see).

use super::RootOfTrust;
use crate::crypto::hex;

/// Both identities in their recorded form, `<kind>:<hex>`.
#[derive(Debug, thiserror::Error)]
#[error(
    "the root of trust is not the one this data directory was created with: recorded {recorded}, found {found}. \
     The TPM was cleared or replaced, so the keys in this data directory cannot be used. \
     Restore the original TPM (or its state), or start with a new data directory"
)]
pub struct IdentityChanged {
    pub recorded: String,
    pub found: String,
}

/// Checks `root` against the identity `recorded` for this data directory. `Ok(Some(record))`
/// when nothing is recorded yet: the caller records it. Roots of trust without an identity
/// pass with nothing to record.
pub fn check_identity(
    root: &dyn RootOfTrust,
    recorded: Option<&[u8]>,
) -> Result<Option<Vec<u8>>, IdentityChanged> {
    match root.identity() {
        Some(identity) => check(root.kind(), &identity, recorded),
        None => Ok(None),
    }
}

fn check(
    kind: &str,
    identity: &[u8],
    recorded: Option<&[u8]>,
) -> Result<Option<Vec<u8>>, IdentityChanged> {
    // The kind is part of the record, so a data directory cannot pass from one kind of root
    // of trust to another whose identity happens to have the same bytes.
    let current = format!("{kind}:{}", hex::encode(identity));
    match recorded {
        Some(recorded) if recorded == current.as_bytes() => Ok(None),
        Some(recorded) => Err(IdentityChanged {
            recorded: String::from_utf8_lossy(recorded).into_owned(),
            found: current,
        }),
        None => {
            tracing::info!(identity = %current, "recording the root of trust's identity");
            Ok(Some(current.into_bytes()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_identity_is_recorded_and_any_other_refused() {
        let first = check("TPM", &[0x00, 0x0b, 0xaa], None).unwrap();
        assert_eq!(first.as_deref(), Some(&b"TPM:000baa"[..]));
        // The same device again, however often.
        for _ in 0..2 {
            assert!(
                check("TPM", &[0x00, 0x0b, 0xaa], first.as_deref())
                    .unwrap()
                    .is_none()
            );
        }
        for (kind, identity) in [
            ("TPM", &[0x00, 0x0b, 0xab][..]),
            ("PKCS11", &[0x00, 0x0b, 0xaa]),
        ] {
            let err = check(kind, identity, first.as_deref()).unwrap_err();
            assert_eq!(err.recorded, "TPM:000baa");
            assert_eq!(err.found, format!("{kind}:{}", hex::encode(identity)));
            let message = err.to_string();
            assert!(
                message.contains("not the one this data directory was created with")
                    && message.contains("cleared or replaced"),
                "{message}"
            );
        }
    }
}
