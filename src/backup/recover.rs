//! Recovery onto new hardware: a backup, k of the escrow key's n shares, and a new root of
//! trust (a new token, a new TPM) become a working store again.
//!
//! Order, so that a refusal leaves nothing behind (no store entry, no key in the new root;
//! [`prepare`] needs neither, [`apply`] does the rest):
//! 1. The shares rebuild the escrow key's prime; the backup must hold that escrow key's public
//!    half (`escrow/key/<id>`), and the prime must divide its modulus.
//! 2. Every key the store names is planned: each master key version and the two MAC keys (the
//!    backup key, the audit checkpoint key) with their escrowed blobs. Versions without a blob
//!    under this escrow key (made before escrow, imported, `resident`) stop the recovery unless
//!    the operator accepts losing them (`skip_unescrowed`); a backup key without one means the
//!    backup cannot be authenticated, and stops it unless told (`without_mac_check`).
//! 3. Every blob is unwrapped in memory; one that does not decrypt stops it.
//! 4. The target store must be empty (or `force`).
//! 5. Each key goes into the new root of trust and must reproduce its check value; the rebuilt
//!    backup key must reproduce the backup's MAC. Any failure destroys what was made.
//! 6. The entries are written with the new references (the root identity left out: the next
//!    start records the new device's), through [`super::restore`].

use super::format::{self, Backup};
use super::{BackupError, restore};
use crate::audit::{RootMac, escrowed_mac_entry};
use crate::backend::{BackendError, Hardware, KeyKind, KeyProtection, KeyRef};
use crate::crypto::{SecretBytes, ct_eq};
use crate::escrow::keypair::EscrowPrivateKey;
use crate::escrow::{EscrowError, EscrowKey, Escrowed, shares};
use crate::store::{KeyRecord, Store, keyspace};
use crate::time::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(transparent)]
    Escrow(#[from] EscrowError),
    #[error(
        "the backup holds no escrow key {0}: it was made by a deployment escrowed to another key \
         (or before escrow was on)"
    )]
    OtherEscrow(String),
    #[error(
        "{} key versions are not escrowed to this escrow key and cannot be recovered: {}; \
         give --skip-unescrowed to recover the rest (those keys then cannot decrypt)",
        .0.len(), .0.join(", ")
    )]
    Unescrowed(Vec<String>),
    #[error(
        "the backup's MAC key is not escrowed, so nothing can prove this backup is the \
         deployment's; give --without-mac-check to recover from it unauthenticated"
    )]
    MacKeyNotEscrowed,
    #[error("the rebuilt key {0} does not match its check value: not the key that was escrowed")]
    CheckFailed(String),
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error("the backup holds a record that does not parse: {0}")]
    Record(String),
}

impl From<BackendError> for RecoverError {
    fn from(e: BackendError) -> Self {
        Self::Backup(BackupError::RootOfTrust(e))
    }
}

impl From<crate::store::StoreError> for RecoverError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Backup(BackupError::Store(e))
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub force: bool,
    pub skip_unescrowed: bool,
    pub without_mac_check: bool,
}

/// What a recovery did.
#[derive(Debug, Default)]
pub struct Recovered {
    pub escrow_id: String,
    pub keys: usize,
    pub key_versions: usize,
    pub mac_keys: usize,
    pub skipped: Vec<String>,
    pub mac_checked: bool,
    pub entries: usize,
}

/// One key to rebuild, and where its reference goes.
struct Planned {
    name: String,
    kind: KeyKind,
    protection: KeyProtection,
    escrowed: Escrowed,
    /// The entry naming the key, and for a master key the version's index.
    entry: usize,
    version: Option<usize>,
}

/// The MAC keys recovery rebuilds, by the entry that names them.
const MAC_ENTRIES: [&[u8]; 2] = [keyspace::BACKUP_MAC_KEY, keyspace::AUDIT_MAC_KEY];

/// A recovery checked and unwrapped, before anything is written: the escrow key rebuilt from
/// the shares, every key planned and its material in memory (zeroized on drop).
pub struct Prepared {
    escrow_id: String,
    plan: Vec<Planned>,
    materials: Vec<SecretBytes>,
    skipped: Vec<String>,
    records: Records,
    mac_checked: bool,
}

/// Steps 1 to 3: everything that needs neither the new root of trust nor the target store, so
/// that wrong shares or an unrecoverable backup are refused before either is touched.
pub fn prepare(
    backup: &Backup,
    share_texts: &[&str],
    options: Options,
) -> Result<Prepared, RecoverError> {
    let (escrow_id, prime) = shares::combine(share_texts).map_err(EscrowError::from)?;
    let Some(der) = backup.value(&[keyspace::ESCROW_KEYS, escrow_id.as_bytes()].concat()) else {
        return Err(RecoverError::OtherEscrow(escrow_id));
    };
    let public = EscrowKey::from_der(der)?;
    if public.id() != escrow_id {
        return Err(RecoverError::OtherEscrow(escrow_id));
    }
    let private = EscrowPrivateKey::rebuild(&public, &prime)?;
    drop(prime);

    let (plan, skipped, records) = plan(backup, &escrow_id)?;
    if !skipped.is_empty() && !options.skip_unescrowed {
        return Err(RecoverError::Unescrowed(skipped));
    }
    let mac_checked = plan
        .iter()
        .any(|p| p.name == name(keyspace::BACKUP_MAC_KEY));
    if !mac_checked && !options.without_mac_check {
        return Err(RecoverError::MacKeyNotEscrowed);
    }
    let materials = plan
        .iter()
        .map(|p| private.unwrap(&p.escrowed))
        .collect::<Result<Vec<SecretBytes>, _>>()?;
    Ok(Prepared {
        escrow_id,
        plan,
        materials,
        skipped,
        records,
        mac_checked,
    })
}

/// Steps 4 to 6: the keys into the new root of trust (`hw`), proven, and the entries into the
/// empty `target`. Keys made before a failure are destroyed; the store is written last.
pub async fn apply(
    prepared: Prepared,
    backup: &Backup,
    hw: &Hardware,
    target: &Store,
    new_escrow: Option<&EscrowKey>,
    options: Options,
    now: Timestamp,
) -> Result<Recovered, RecoverError> {
    let Prepared {
        escrow_id,
        plan,
        materials,
        skipped,
        records,
        mac_checked,
    } = prepared;
    let existing = target.snapshot().await?.len();
    if existing > 0 && !options.force {
        return Err(BackupError::NotEmpty(existing).into());
    }
    let mut made: Vec<KeyRef> = Vec::with_capacity(plan.len());
    if let Err(e) = rebuild(backup, hw, &plan, materials, new_escrow, &mut made).await {
        for key in made {
            let _ = hw.run(move |root| root.destroy_key(&key)).await;
        }
        return Err(e);
    }
    let rewritten = Backup {
        header: backup.header.clone(),
        entries: rewrite(backup, &plan, &made, records),
        digest: backup.digest,
        mac: backup.mac,
    };
    let entries = restore(&rewritten, target, options.force, now).await?;
    let masters: Vec<&Planned> = plan.iter().filter(|p| p.kind == KeyKind::Master).collect();
    Ok(Recovered {
        escrow_id,
        keys: masters
            .iter()
            .map(|p| p.entry)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        key_versions: masters.len(),
        mac_keys: plan.len() - masters.len(),
        skipped,
        mac_checked,
        entries,
    })
}

fn name(entry: &[u8]) -> String {
    String::from_utf8_lossy(entry).into_owned()
}

/// Key records by the index of their entry in the backup.
type Records = std::collections::BTreeMap<usize, KeyRecord>;

/// The keys to rebuild, the versions that cannot be, and the parsed key records.
fn plan(
    backup: &Backup,
    escrow_id: &str,
) -> Result<(Vec<Planned>, Vec<String>, Records), RecoverError> {
    let (mut plan, mut skipped) = (Vec::new(), Vec::new());
    let mut records = Records::new();
    for (at, (key, value)) in backup.entries.iter().enumerate() {
        if key.starts_with(keyspace::KMS_KEYS) {
            let record: KeyRecord = crate::store::decode(key, value)
                .map_err(|e| RecoverError::Record(e.to_string()))?;
            for (index, version) in record.versions.iter().enumerate() {
                let label = format!("{} v{}", record.key_id, version.version);
                match &version.escrow {
                    Some(escrowed) if escrowed.escrow_key == escrow_id => plan.push(Planned {
                        name: label,
                        kind: KeyKind::Master,
                        protection: record.protection.clone(),
                        escrowed: escrowed.clone(),
                        entry: at,
                        version: Some(index),
                    }),
                    _ => skipped.push(label),
                }
            }
            records.insert(at, record);
        } else if MAC_ENTRIES.contains(&key.as_slice()) {
            let blob = backup
                .value(&escrowed_mac_entry(key))
                .map(serde_json::from_slice::<Escrowed>)
                .transpose()
                .map_err(|e| RecoverError::Record(e.to_string()))?;
            match blob {
                Some(escrowed) if escrowed.escrow_key == escrow_id => plan.push(Planned {
                    name: name(key),
                    kind: KeyKind::Mac,
                    protection: KeyProtection::default(),
                    escrowed,
                    entry: at,
                    version: None,
                }),
                // The audit key guards only logs the disaster took; its loss is reported, not
                // fatal. The backup key's is decided by the caller.
                _ => {}
            }
        }
    }
    Ok((plan, skipped, records))
}

/// Puts each key into the new root of trust and proves it; then checks the backup's MAC with
/// the rebuilt backup key. Every key made is pushed to `made` as soon as it exists.
async fn rebuild(
    backup: &Backup,
    hw: &Hardware,
    plan: &[Planned],
    materials: Vec<SecretBytes>,
    new_escrow: Option<&EscrowKey>,
    made: &mut Vec<KeyRef>,
) -> Result<(), RecoverError> {
    let target = new_escrow.map(|e| e.target().clone());
    for (planned, material) in plan.iter().zip(materials) {
        let (kind, protection, target) = (planned.kind, planned.protection.clone(), target.clone());
        let label = format!("keyward {} recovered", planned.name);
        let key = hw
            .run(move |root| {
                root.recover_key(
                    kind,
                    material.expose(),
                    &label,
                    &protection,
                    target.as_ref(),
                )
            })
            .await?;
        made.push(key.clone());
        if !crate::escrow::verify(hw, kind, &key, &planned.escrowed.check).await? {
            return Err(RecoverError::CheckFailed(planned.name.clone()));
        }
        if kind == KeyKind::Mac && planned.name == name(keyspace::BACKUP_MAC_KEY) {
            let tag = RootMac::with_key(hw.clone(), key.clone())
                .compute(format::mac_message(&backup.digest))
                .await?;
            if !ct_eq(&tag, &backup.mac) {
                return Err(BackupError::Forged.into());
            }
        }
    }
    Ok(())
}

/// The backup's entries with every rebuilt key's new reference, without the old device's
/// identity.
fn rewrite(
    backup: &Backup,
    plan: &[Planned],
    rebuilt: &[KeyRef],
    mut records: Records,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut entries = backup.entries.clone();
    for (planned, key) in plan.iter().zip(rebuilt) {
        match planned.version {
            Some(index) => {
                if let Some(record) = records.get_mut(&planned.entry)
                    && let Some(version) = record.versions.get_mut(index)
                {
                    version.material = key.clone();
                }
            }
            None => entries[planned.entry].1 = key.0.clone().into_bytes(),
        }
    }
    for (at, record) in records {
        entries[at].1 = crate::store::encode(&record);
    }
    entries.retain(|(key, _)| key != keyspace::ROOT_IDENTITY);
    entries
}
