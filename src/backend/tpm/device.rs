//! The TPM as its one owner thread sees it: a single ESAPI context (a raw swtpm socket has no
//! resource manager and three object slots), the SRK, an optional salted session for
//! parameter encryption, the last-used `resident` parent kept loaded, and the unsealed keys of
//! `sealed-kek` key versions. A lost connection is dropped and re-opened on the next call; the
//! SRK's Name must then still be the one seen first.

use super::errors::{Failure, classify};
use super::keyref::{Mode, TpmKey};
use super::objects;
use crate::backend::{BackendError, KeyProtection, Result};
use crate::crypto::locked::LockedKey;
use crate::crypto::{SecretBytes, aead, envelope::NONCE_LEN};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;
use tss_esapi::attributes::SessionAttributesBuilder;
use tss_esapi::constants::tss::{
    TPM2_HMAC_SESSION_FIRST, TPM2_POLICY_SESSION_FIRST, TPM2_TRANSIENT_FIRST,
};
use tss_esapi::constants::{CapabilityType, SessionType};
use tss_esapi::handles::{KeyHandle, ObjectHandle, PersistentTpmHandle, SessionHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Auth, CapabilityData, Digest, MaxBuffer, PcrSelectionList, PcrSlot, SensitiveData,
    SymmetricDefinition,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::{Context, Error, WrapperErrorKind};

/// RETRY-class answers are retried this many times, a little later each time.
const RETRIES: u32 = 5;
/// PCR_Read returns at most eight digests per call.
pub const MAX_PCRS: usize = 8;
const DATA_KEY_LEN: usize = 32;

pub struct Options {
    pub tcti: String,
    pub owner_auth: Option<SecretString>,
    pub srk_handle: Option<u32>,
    pub default_mode: Mode,
    pub default_pcrs: Vec<u8>,
    pub parameter_encryption: bool,
}

struct Conn {
    ctx: Context,
    srk: KeyHandle,
    /// Salted HMAC session with parameter encryption, when configured.
    salted: Option<AuthSession>,
    /// The `resident` parent loaded last (its blob, its handle).
    parent: Option<(Vec<u8>, KeyHandle)>,
}

pub struct Device {
    options: Options,
    conn: Option<Conn>,
    /// The SRK's Name at the first connection.
    identity: Option<Vec<u8>>,
    /// Unsealed `sealed-kek` keys by their blob: pinned in RAM, zeroized when dropped.
    keks: HashMap<Vec<u8>, LockedKey>,
}

fn wrapper(kind: WrapperErrorKind) -> Error {
    Error::WrapperError(kind)
}

fn start_session(
    ctx: &mut Context,
    kind: SessionType,
    salt: Option<KeyHandle>,
) -> tss_esapi::Result<AuthSession> {
    ctx.start_auth_session(
        salt,
        None,
        None,
        kind,
        SymmetricDefinition::AES_128_CFB,
        HashingAlgorithm::Sha256,
    )?
    .ok_or_else(|| wrapper(WrapperErrorKind::WrongValueFromTpm))
}

fn flush_session(ctx: &mut Context, session: AuthSession) {
    let _ = ctx.flush_context(ObjectHandle::from(SessionHandle::from(session)));
}

fn selection(pcrs: &[u8]) -> tss_esapi::Result<PcrSelectionList> {
    let slots = pcrs
        .iter()
        .map(|&p| PcrSlot::try_from(1u32 << p))
        .collect::<tss_esapi::Result<Vec<_>>>()?;
    PcrSelectionList::builder()
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
}

/// Handles of one type (transient objects, HMAC or policy sessions) present in the TPM.
fn handles(ctx: &mut Context, first: u32) -> tss_esapi::Result<Vec<TpmHandle>> {
    let (data, _) = ctx.get_capability(CapabilityType::Handles, first, 64)?;
    let CapabilityData::Handles(list) = data else {
        return Err(wrapper(WrapperErrorKind::WrongValueFromTpm));
    };
    Ok(list
        .into_inner()
        .into_iter()
        .filter(|h| u32::from(*h) >> 24 == first >> 24)
        .collect())
}

impl Conn {
    /// Connects, flushes what a crashed process left loaded, and finds or re-creates the SRK.
    /// Returns the connection and the SRK's Name.
    fn open(options: &Options) -> tss_esapi::Result<(Self, Vec<u8>)> {
        let mut ctx = Context::new(TctiNameConf::from_str(&options.tcti)?)?;
        if let Some(auth) = &options.owner_auth {
            let auth = Auth::try_from(auth.expose_secret().as_bytes())?;
            ctx.tr_set_auth(ObjectHandle::Owner, auth)?;
        }
        for first in [
            TPM2_TRANSIENT_FIRST,
            TPM2_HMAC_SESSION_FIRST,
            TPM2_POLICY_SESSION_FIRST,
        ] {
            for handle in handles(&mut ctx, first)? {
                let object = ctx.tr_from_tpm_public(handle)?;
                ctx.flush_context(object)?;
            }
        }
        let srk = match options.srk_handle {
            Some(handle) => {
                let persistent = TpmHandle::Persistent(PersistentTpmHandle::new(handle)?);
                KeyHandle::from(ctx.tr_from_tpm_public(persistent)?)
            }
            None => {
                let template = objects::srk()?;
                ctx.execute_with_session(Some(AuthSession::Password), |c| {
                    c.create_primary(Hierarchy::Owner, template, None, None, None, None)
                })?
                .key_handle
            }
        };
        let name = ctx.tr_get_name(srk.into())?.value().to_vec();
        let salted = if options.parameter_encryption {
            let session = start_session(&mut ctx, SessionType::Hmac, Some(srk))?;
            let (attributes, mask) = SessionAttributesBuilder::new()
                .with_continue_session(true)
                .with_decrypt(true)
                .with_encrypt(true)
                .build();
            ctx.tr_sess_set_attributes(session, attributes, mask)?;
            Some(session)
        } else {
            None
        };
        Ok((
            Self {
                ctx,
                srk,
                salted,
                parent: None,
            },
            name,
        ))
    }

    /// The session that authorizes use of an object with an empty auth value: the salted one
    /// (encrypting the first parameter each way) or a plain password.
    fn auth(&self) -> AuthSession {
        self.salted.unwrap_or(AuthSession::Password)
    }

    fn load(&mut self, parent: KeyHandle, blob: &[u8]) -> tss_esapi::Result<KeyHandle> {
        let (public, private) =
            objects::decode(blob).ok_or_else(|| wrapper(WrapperErrorKind::InvalidParam))?;
        // The private part is encrypted by the parent: a password session is enough.
        self.ctx
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.load(parent, private, public)
            })
    }

    /// The `resident` parent for `blob`, loaded (one is kept loaded; slots are few).
    fn parent(&mut self, blob: &[u8]) -> tss_esapi::Result<KeyHandle> {
        if let Some((loaded, handle)) = &self.parent
            && loaded == blob
        {
            return Ok(*handle);
        }
        self.drop_parent();
        let handle = self.load(self.srk, blob)?;
        self.parent = Some((blob.to_vec(), handle));
        Ok(handle)
    }

    fn drop_parent(&mut self) {
        if let Some((_, handle)) = self.parent.take() {
            let _ = self.ctx.flush_context(handle.into());
        }
    }

    fn create_sealed(
        &mut self,
        parent: KeyHandle,
        secret: &[u8],
        policy: Option<Digest>,
    ) -> tss_esapi::Result<Vec<u8>> {
        let template = objects::sealed(policy)?;
        let data = SensitiveData::try_from(secret)?;
        let auth = self.auth();
        let created = self.ctx.execute_with_session(Some(auth), |c| {
            c.create(parent, template, None, Some(data), None, None)
        })?;
        objects::encode(&created.out_public, &created.out_private)
    }

    /// Load + Unseal (through a PCR policy session when bound) + flush.
    fn unseal(
        &mut self,
        parent: KeyHandle,
        blob: &[u8],
        pcrs: Option<&PcrSelectionList>,
    ) -> tss_esapi::Result<SecretBytes> {
        let object = self.load(parent, blob)?;
        let unsealed = match pcrs {
            None => {
                let auth = self.auth();
                self.ctx
                    .execute_with_session(Some(auth), |c| c.unseal(object.into()))
            }
            Some(selection) => self.unseal_with_policy(object, selection),
        };
        let _ = self.ctx.flush_context(object.into());
        Ok(SecretBytes::new(unsealed?.value().to_vec()))
    }

    fn unseal_with_policy(
        &mut self,
        object: KeyHandle,
        selection: &PcrSelectionList,
    ) -> tss_esapi::Result<SensitiveData> {
        let session = start_session(&mut self.ctx, SessionType::Policy, None)?;
        let salted = self.salted;
        let outcome = PolicySession::try_from(session)
            .and_then(|policy| {
                self.ctx
                    .policy_pcr(policy, Digest::default(), selection.clone())
            })
            .and_then(|()| {
                // The salted session rides along to encrypt the unsealed data.
                self.ctx
                    .execute_with_sessions((Some(session), salted, None), |c| {
                        c.unseal(object.into())
                    })
            });
        flush_session(&mut self.ctx, session);
        outcome
    }

    /// The policy digest of "these PCRs hold their current values", computed by the TPM.
    fn pcr_policy(&mut self, selection: &PcrSelectionList) -> tss_esapi::Result<Digest> {
        let session = start_session(&mut self.ctx, SessionType::Trial, None)?;
        let digest = PolicySession::try_from(session).and_then(|policy| {
            self.ctx
                .policy_pcr(policy, Digest::default(), selection.clone())?;
            self.ctx.policy_get_digest(policy)
        });
        flush_session(&mut self.ctx, session);
        digest
    }

    fn read_pcrs(&mut self, selection: &PcrSelectionList) -> tss_esapi::Result<Vec<u8>> {
        let (_, _, digests) = self.ctx.pcr_read(selection.clone())?;
        Ok(digests
            .value()
            .iter()
            .flat_map(|d| d.value().to_vec())
            .collect())
    }
}

impl Device {
    pub fn new(options: Options) -> Self {
        Self {
            options,
            conn: None,
            identity: None,
            keks: HashMap::new(),
        }
    }

    pub fn identity(&self) -> Option<Vec<u8>> {
        self.identity.clone()
    }

    /// Runs `op` on the connection (opening it if needed). RETRY-class answers are retried;
    /// out of slots, the cached parent is flushed and `op` retried; a lost connection is
    /// dropped so the next call reconnects. `refused` says what any other refusal means: for
    /// a blob from a client, invalid ciphertext; for our own objects, an internal error.
    fn run<T>(
        &mut self,
        refused: fn(&Error) -> BackendError,
        mut op: impl FnMut(&mut Conn) -> tss_esapi::Result<T>,
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            let conn = self.connection()?;
            let error = match op(conn) {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            attempt += 1;
            match classify(&error) {
                Failure::Retry if attempt <= RETRIES => {
                    std::thread::sleep(Duration::from_millis(10 * u64::from(attempt)));
                }
                Failure::OutOfSlots if attempt <= 1 => conn.drop_parent(),
                Failure::Transport => {
                    // The context is unusable after a transport error; its handles are gone.
                    self.conn = None;
                    return Err(BackendError::Unavailable(format!(
                        "TPM connection lost: {error}"
                    )));
                }
                Failure::PolicyFail => {
                    return Err(BackendError::PlatformStateChanged(
                        "the key's PCR policy is no longer satisfied".into(),
                    ));
                }
                Failure::Refused => {
                    return Err(BackendError::Unavailable(format!(
                        "the TPM refused the authorization or is in lockout: {error}"
                    )));
                }
                Failure::Integrity | Failure::Retry | Failure::OutOfSlots | Failure::Other => {
                    return Err(refused(&error));
                }
            }
        }
    }

    fn connection(&mut self) -> Result<&mut Conn> {
        if self.conn.is_none() {
            let (conn, name) = Conn::open(&self.options).map_err(|e| {
                let tcti = &self.options.tcti;
                BackendError::Unavailable(match (classify(&e), self.options.srk_handle) {
                    (Failure::Refused, _) => format!(
                        "the TPM at {tcti} refused the owner hierarchy's authorization: set owner_auth_env or owner_auth_file to the TPM's owner auth ({e})"
                    ),
                    (Failure::Integrity | Failure::Other, Some(handle)) => format!(
                        "cannot use the SRK at persistent handle {handle:#010x} on the TPM at {tcti}: is it provisioned? ({e})"
                    ),
                    _ => format!("cannot open the TPM at {tcti}: {e}"),
                })
            })?;
            match &self.identity {
                Some(expected) if *expected != name => {
                    return Err(BackendError::Unavailable(
                        "the TPM's storage root key changed: the TPM was cleared or replaced"
                            .into(),
                    ));
                }
                Some(_) => {}
                None => self.identity = Some(name),
            }
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| BackendError::Internal("TPM connection missing".into()))
    }

    /// Opens the connection now (at start), so a missing TPM stops the server early.
    pub fn connect(&mut self) -> Result<()> {
        self.connection().map(drop)
    }

    /// A new key version; a `sealed-kek` key seals `kek` when given (escrowed or recovered
    /// material), a fresh random key otherwise.
    pub fn create_key(&mut self, protection: &KeyProtection, kek: Option<&[u8]>) -> Result<TpmKey> {
        let mode = Mode::parse(&protection.mode)
            .ok_or_else(|| BackendError::Unsupported("unknown TPM key mode".into()))?;
        let pcrs = protection.pcrs.clone();
        let (pcr_values, policy) = if pcrs.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            self.run(internal, |c| {
                let selection = selection(&pcrs)?;
                Ok((
                    c.read_pcrs(&selection)?,
                    c.pcr_policy(&selection)?.value().to_vec(),
                ))
            })?
        };
        let blob = match mode {
            Mode::Resident => self.run(internal, |c| {
                let template = objects::storage_parent()?;
                let srk = c.srk;
                let created = c
                    .ctx
                    .execute_with_session(Some(AuthSession::Password), |ctx| {
                        ctx.create(srk, template, None, None, None, None)
                    })?;
                objects::encode(&created.out_public, &created.out_private)
            })?,
            Mode::SealedKek => {
                let kek = match kek {
                    Some(given) if given.len() == DATA_KEY_LEN => SecretBytes::new(given.to_vec()),
                    Some(_) => {
                        return Err(BackendError::IncorrectKeyMaterial(
                            "a sealed-kek key is 32 bytes".into(),
                        ));
                    }
                    None => SecretBytes::random(DATA_KEY_LEN)
                        .map_err(|e| BackendError::Internal(e.to_string()))?,
                };
                let policy = digest(&policy)?;
                self.run(internal, |c| {
                    let srk = c.srk;
                    c.create_sealed(srk, kek.expose(), policy.clone())
                })?
            }
        };
        Ok(TpmKey {
            mode,
            pcrs,
            pcr_values,
            policy,
            blob,
        })
    }

    /// Bound keys check the PCRs before every use: a sealed-kek key's key is already in
    /// memory, and a resident key must not seal what it could not unseal.
    fn check_pcrs(&mut self, key: &TpmKey) -> Result<()> {
        if !key.bound() {
            return Ok(());
        }
        let now = self.run(internal, |c| c.read_pcrs(&selection(&key.pcrs)?))?;
        if now == key.pcr_values {
            Ok(())
        } else {
            self.keks.remove(&key.blob);
            Err(BackendError::PlatformStateChanged(format!(
                "PCR {:?} no longer hold their values from when the key was made",
                key.pcrs
            )))
        }
    }

    /// A sealed-kek key's key: unsealed once, then kept.
    fn kek(&mut self, key: &TpmKey) -> Result<&LockedKey> {
        if !self.keks.contains_key(&key.blob) {
            let bound = key.bound();
            let unsealed = self.run(internal, |c| {
                let srk = c.srk;
                let selection = if bound {
                    Some(selection(&key.pcrs)?)
                } else {
                    None
                };
                c.unseal(srk, &key.blob, selection.as_ref())
            })?;
            let kek = LockedKey::new(unsealed.expose())
                .ok_or_else(|| BackendError::Internal("a sealed key is not 32 bytes".into()))?;
            self.keks.insert(key.blob.clone(), kek);
        }
        self.keks
            .get(&key.blob)
            .ok_or_else(|| BackendError::Internal("sealed key cache".into()))
    }

    pub fn seal(
        &mut self,
        key: &TpmKey,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        self.check_pcrs(key)?;
        let failed = |_| BackendError::Internal("sealing failed".into());
        match key.mode {
            Mode::SealedKek => {
                let kek = self.kek(key)?;
                aead::seal_with_nonce(kek.expose(), nonce, aad, plaintext).map_err(failed)
            }
            Mode::Resident => {
                // The TPM seals a fresh key; the data is sealed under it in software, bound to
                // the header and encryption context by GCM's additional data.
                let data_key = SecretBytes::random(DATA_KEY_LEN)
                    .map_err(|e| BackendError::Internal(e.to_string()))?;
                let policy = digest(&key.policy)?;
                let sealed_key = self.run(internal, |c| {
                    let parent = c.parent(&key.blob)?;
                    c.create_sealed(parent, data_key.expose(), policy.clone())
                })?;
                let body = aead::seal_with_nonce(data_key.expose(), nonce, aad, plaintext)
                    .map_err(failed)?;
                let len = u16::try_from(sealed_key.len())
                    .map_err(|_| BackendError::Internal("sealed object too large".into()))?;
                let mut out = Vec::with_capacity(2 + sealed_key.len() + body.len());
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&sealed_key);
                out.extend_from_slice(&body);
                Ok(out)
            }
        }
    }

    pub fn unseal(
        &mut self,
        key: &TpmKey,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<SecretBytes> {
        let invalid = |_| BackendError::InvalidCiphertext;
        match key.mode {
            Mode::SealedKek => {
                self.check_pcrs(key)?;
                let kek = self.kek(key)?;
                aead::open_with_nonce(kek.expose(), nonce, aad, sealed).map_err(invalid)
            }
            Mode::Resident => {
                let (sealed_key, body) =
                    objects::take(sealed).ok_or(BackendError::InvalidCiphertext)?;
                let bound = key.bound();
                let data_key = self.run(
                    |_| BackendError::InvalidCiphertext,
                    |c| {
                        let parent = c.parent(&key.blob)?;
                        let selection = if bound {
                            Some(selection(&key.pcrs)?)
                        } else {
                            None
                        };
                        c.unseal(parent, sealed_key, selection.as_ref())
                    },
                )?;
                aead::open_with_nonce(data_key.expose(), nonce, aad, body).map_err(invalid)
            }
        }
    }

    pub fn forget(&mut self, key: &TpmKey) {
        self.keks.remove(&key.blob);
        if let Some(conn) = self.conn.as_mut()
            && conn
                .parent
                .as_ref()
                .is_some_and(|(blob, _)| *blob == key.blob)
        {
            conn.drop_parent();
        }
    }

    /// An HMAC key under the SRK, of `material` when given (else the TPM makes the secret);
    /// returns its blobs.
    pub fn create_mac_key(&mut self, material: Option<&[u8]>) -> Result<Vec<u8>> {
        let data = material
            .map(SensitiveData::try_from)
            .transpose()
            .map_err(|e| internal(&e))?;
        self.run(internal, |c| {
            let template = objects::hmac_key(data.is_none())?;
            let srk = c.srk;
            let data = data.clone();
            let created = c
                .ctx
                .execute_with_session(Some(AuthSession::Password), |ctx| {
                    ctx.create(srk, template, None, data, None, None)
                })?;
            objects::encode(&created.out_public, &created.out_private)
        })
    }

    /// A `sealed-kek` key's key, copied out to be wrapped to the escrow key.
    pub fn kek_copy(&mut self, key: &TpmKey) -> Result<SecretBytes> {
        if key.mode != Mode::SealedKek {
            return Err(BackendError::Unsupported(
                crate::backend::RESIDENT_NOT_ESCROWABLE.into(),
            ));
        }
        self.check_pcrs(key)?;
        self.kek(key)
            .map(|kek| SecretBytes::new(kek.expose().to_vec()))
    }

    /// Load + HMAC + flush: checkpoints are rare, so the key does not hold a slot meanwhile.
    pub fn mac(&mut self, blob: &[u8], message: &[u8]) -> Result<Vec<u8>> {
        let buffer = MaxBuffer::try_from(message.to_vec()).map_err(|e| internal(&e))?;
        self.run(internal, |c| {
            let srk = c.srk;
            let key = c.load(srk, blob)?;
            let auth = c.auth();
            let tag = c.ctx.execute_with_session(Some(auth), |ctx| {
                ctx.hmac(key.into(), buffer.clone(), HashingAlgorithm::Sha256)
            });
            let _ = c.ctx.flush_context(key.into());
            Ok(tag?.value().to_vec())
        })
    }

    pub fn random(&mut self, len: usize) -> Result<SecretBytes> {
        let mut out = Vec::with_capacity(len);
        self.run(internal, |c| {
            while out.len() < len {
                let chunk = c.ctx.get_random((len - out.len()).min(32))?;
                out.extend_from_slice(chunk.value());
            }
            Ok(())
        })?;
        Ok(SecretBytes::new(out))
    }

    pub fn check(&mut self) -> Result<()> {
        self.run(internal, |c| c.ctx.get_random(8).map(drop))
    }
}

/// Makes the SRK persistent at `handle` (EvictControl), as an operator's provisioning would;
/// `srk_handle` in the configuration then uses it. The same template as the re-created SRK, so
/// both are the same key and a data directory works with either.
pub fn persist_srk(tcti: &str, owner_auth: Option<&str>, handle: u32) -> tss_esapi::Result<()> {
    use tss_esapi::interface_types::dynamic_handles::Persistent;
    use tss_esapi::interface_types::resource_handles::Provision;
    let mut ctx = Context::new(TctiNameConf::from_str(tcti)?)?;
    if let Some(auth) = owner_auth {
        ctx.tr_set_auth(ObjectHandle::Owner, Auth::try_from(auth.as_bytes())?)?;
    }
    let template = objects::srk()?;
    ctx.execute_with_session(Some(AuthSession::Password), |c| {
        let srk = c
            .create_primary(Hierarchy::Owner, template, None, None, None, None)?
            .key_handle;
        let persistent = Persistent::Persistent(PersistentTpmHandle::new(handle)?);
        c.evict_control(Provision::Owner, srk.into(), persistent)?;
        c.flush_context(srk.into())
    })
}

/// The protection a new key gets: the request's, else the configured defaults; PCRs sorted
/// (PCR_Read answers in index order) and checked.
pub fn resolve_protection(
    default_mode: &Mode,
    default_pcrs: &[u8],
    requested: &KeyProtection,
) -> Result<KeyProtection> {
    let mode = match requested.mode.as_str() {
        "" => *default_mode,
        other => Mode::parse(other).ok_or_else(|| {
            BackendError::Unsupported(format!(
                "tpm_key_mode {other:?}: \"resident\" or \"sealed-kek\""
            ))
        })?,
    };
    let mut pcrs = if requested.pcrs.is_empty() {
        default_pcrs.to_vec()
    } else {
        requested.pcrs.clone()
    };
    pcrs.sort_unstable();
    pcrs.dedup();
    if let Some(pcr) = pcrs.iter().find(|&&p| p > 23) {
        return Err(BackendError::Unsupported(format!(
            "tpm_pcrs: {pcr} is not a PCR (0-23)"
        )));
    }
    if pcrs.len() > MAX_PCRS {
        return Err(BackendError::Unsupported(format!(
            "tpm_pcrs: at most {MAX_PCRS} PCRs"
        )));
    }
    Ok(KeyProtection {
        mode: mode.as_str().into(),
        pcrs,
    })
}

/// The TPM refused our own object or request: a damaged key record, or a bug.
fn internal(error: &Error) -> BackendError {
    BackendError::Internal(format!("TPM: {error}"))
}

fn digest(policy: &[u8]) -> Result<Option<Digest>> {
    if policy.is_empty() {
        return Ok(None);
    }
    Digest::try_from(policy.to_vec())
        .map(Some)
        .map_err(|e| BackendError::Internal(format!("stored policy digest: {e}")))
}
