//! PKCS#11 root of trust (SoftHSM2 in development and CI, any vendor's module in production).
//!
//! Master key versions are AES-256 token objects generated inside the token with
//! CKA_SENSITIVE=true and CKA_EXTRACTABLE=false; nothing can read their value. With escrow on,
//! they are made able to leave only wrapped under the SO-installed escrow key ([`escrow`]).
//! Data keys and
//! KMS plaintexts are sealed with CKM_AES_GCM inside the token: one call per operation.
//! Imported key material (BYOK) is unwrapped inside the token into the same kind of object
//! ([`import`]).

mod errors;
mod escrow;
mod import;
mod pool;
mod token;

pub use escrow::{Installed, install_escrow_key};
pub use token::{TokenSelector, ensure_token};

use crate::backend::{
    BackendError, EscrowTarget, KeyKind, KeyProtection, KeyRef, MAC_LEN, OaepHash, Result,
    RootOfTrust, RsaPublicKey, Wrapped,
};
use crate::crypto::{SecretBytes, envelope::NONCE_LEN};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::AuthPin;
use errors::{Op, is_stale_handle, translate};
use pool::SessionPool;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant};

/// After the token refuses our PIN, do not try again for this long: retrying on every request
/// would exhaust a real HSM's PIN retry counter and lock the token.
const LOGIN_BACKOFF: Duration = Duration::from_secs(5);

/// Least time between two re-initialisations of the module.
const REINIT_BACKOFF: Duration = Duration::from_secs(1);

fn init_args() -> CInitializeArgs {
    CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)
}

pub struct Pkcs11Options {
    pub module: PathBuf,
    pub token: TokenSelector,
    pub pin: AuthPin,
}

impl std::fmt::Debug for Pkcs11Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Options")
            .field("module", &self.module)
            .field("token", &self.token)
            .field("pin", &"[REDACTED]")
            .finish()
    }
}

/// Attempts to open the token at start, and the pause after the first failure (doubled after
/// each): about 1.5 s in all.
const CONNECT_ATTEMPTS: u32 = 5;
const CONNECT_FIRST_PAUSE: Duration = Duration::from_millis(100);

/// One initialised context per module per process: C_Initialize/C_Finalize cycles crash some
/// modules, and SoftHSM reads its configuration only at C_Initialize.
static CONTEXTS: LazyLock<Mutex<HashMap<PathBuf, Pkcs11>>> = LazyLock::new(Default::default);

pub fn context(module: &Path) -> Result<Pkcs11> {
    let mut contexts = CONTEXTS
        .lock()
        .map_err(|_| BackendError::Internal("PKCS#11 context registry poisoned".into()))?;
    if let Some(ctx) = contexts.get(module) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(module).map_err(|e| translate(Op::Connect, e))?;
    match ctx.initialize(init_args()) {
        Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(translate(Op::Connect, e)),
    }
    contexts.insert(module.to_owned(), ctx.clone());
    Ok(ctx)
}

pub struct Pkcs11Root {
    ctx: Pkcs11,
    token: TokenSelector,
    pin: AuthPin,
    pool: SessionPool,
    /// Object handles by key: finding an object costs three module calls per operation.
    handles: Mutex<HashMap<KeyRef, ObjectHandle>>,
    login_refused_at: Mutex<Option<Instant>>,
    /// Calls hold it shared; re-initialising the module holds it exclusively, because
    /// C_Finalize invalidates every session.
    gate: RwLock<()>,
    last_reinit: Mutex<Option<Instant>>,
}

impl Pkcs11Root {
    /// Loads the module, finds the token and logs in once, so a wrong module path, token or
    /// PIN stops the server at start with a clear message.
    pub fn connect(options: Pkcs11Options) -> Result<Self> {
        // Processes starting on one token directory at once have seen SoftHSM fail with a
        // transient CKR_GENERAL_ERROR, or not list the token at all (it reads the token's files
        // at C_Initialize while another process writes them): a few retries, spaced out, each
        // on a freshly initialised module, cover it. A refused PIN is final: retrying it could
        // lock the token.
        let mut pause = CONNECT_FIRST_PAUSE;
        let mut attempts = 1;
        loop {
            let (error, refused) = match context(&options.module) {
                Ok(ctx) => {
                    let root = Self {
                        ctx,
                        token: options.token.clone(),
                        pin: options.pin.clone(),
                        pool: SessionPool::default(),
                        handles: Mutex::new(HashMap::new()),
                        login_refused_at: Mutex::new(None),
                        gate: RwLock::new(()),
                        last_reinit: Mutex::new(None),
                    };
                    match root.open_session() {
                        Ok(session) => {
                            root.pool.give_back(session);
                            return Ok(root);
                        }
                        Err(e) => {
                            let refused = root.login_was_refused();
                            // The module may have read the token directory mid-write (another
                            // process creating objects): only a fresh C_Initialize reads it again.
                            if !refused {
                                root.reinitialize_after_miss();
                            }
                            (e, refused)
                        }
                    }
                }
                Err(e) => (e, false),
            };
            if refused || attempts >= CONNECT_ATTEMPTS {
                return Err(error);
            }
            tracing::warn!(%error, attempts, "the token did not open; trying again");
            attempts += 1;
            std::thread::sleep(pause);
            pause *= 2;
        }
    }

    fn login_was_refused(&self) -> bool {
        self.login_refused_at
            .lock()
            .map(|refused| refused.is_some())
            .unwrap_or(true)
    }

    fn open_session(&self) -> Result<Session> {
        if let Ok(refused) = self.login_refused_at.lock()
            && let Some(at) = *refused
            && at.elapsed() < LOGIN_BACKOFF
        {
            return Err(BackendError::Unavailable(
                "the token refused the PIN; waiting before the next login attempt".into(),
            ));
        }
        let slot = token::find_slot(&self.ctx, &self.token)?;
        let session = self
            .ctx
            .open_rw_session(slot)
            .map_err(|e| translate(Op::Connect, e))?;
        match token::login(&session, &self.pin) {
            Ok(()) => Ok(session),
            Err(e) => {
                if let Ok(mut refused) = self.login_refused_at.lock() {
                    *refused = Some(Instant::now());
                }
                Err(e)
            }
        }
    }

    fn with_session<T>(&self, call: impl FnOnce(&Session) -> Result<T>) -> Result<T> {
        let outcome = {
            let _shared = self
                .gate
                .read()
                .map_err(|_| BackendError::Internal("PKCS#11 gate poisoned".into()))?;
            self.pool.with(|| self.open_session(), call)
        };
        if matches!(outcome, Err(BackendError::Unavailable(_))) {
            self.forget_handles();
            self.reinitialize_if_token_lost();
        }
        outcome
    }

    /// A module loses a token for good once its storage or device went away (SoftHSM after
    /// its token directory vanished; network HSMs after a link loss): only C_Finalize and
    /// C_Initialize make it look again. Done here, under the exclusive gate and at most once
    /// per REINIT_BACKOFF, so the server recovers without a restart once the token is back.
    fn reinitialize_if_token_lost(&self) {
        let Ok(_exclusive) = self.gate.write() else {
            return;
        };
        if token::find_slot(&self.ctx, &self.token).is_ok() {
            return;
        }
        self.reinitialize();
    }

    /// A key another process created may stay invisible to this one: SoftHSM indexes a token's
    /// objects at C_Initialize and afterwards only when the token's generation changes, and an
    /// object being written while this process indexed the token (cluster nodes starting
    /// together) stays hidden. A key the store names but the token does not show therefore
    /// gets one look from a freshly initialised module (at most once per REINIT_BACKOFF)
    /// before it counts as missing. True when that happened.
    fn reinitialize_after_miss(&self) -> bool {
        let Ok(_exclusive) = self.gate.write() else {
            return false;
        };
        self.reinitialize()
    }

    /// C_Finalize and C_Initialize, with every session and handle dropped; at most once per
    /// REINIT_BACKOFF. Call with the gate held exclusively. True when it ran.
    fn reinitialize(&self) -> bool {
        let Ok(mut last) = self.last_reinit.lock() else {
            return false;
        };
        if last.is_some_and(|at| at.elapsed() < REINIT_BACKOFF) {
            return false;
        }
        *last = Some(Instant::now());
        self.pool.clear();
        self.forget_handles();
        // Failures are expected while the token is still missing; the next call retries.
        let _ = self.ctx.clone().finalize();
        match self.ctx.initialize(init_args()) {
            Ok(()) => tracing::info!(token = %self.token, "re-initialised the PKCS#11 module"),
            Err(e) => tracing::warn!(error = %e, "re-initialising the PKCS#11 module failed"),
        }
        true
    }

    fn forget_handles(&self) {
        if let Ok(mut handles) = self.handles.lock() {
            handles.clear();
        }
    }

    /// The key's object handle and whether it came from the cache.
    fn object(&self, session: &Session, key: &KeyRef) -> Result<(ObjectHandle, bool)> {
        if let Some(handle) = self.handles.lock().ok().and_then(|h| h.get(key).copied()) {
            return Ok((handle, true));
        }
        let id = key_id_bytes(key)?;
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Token(true),
            Attribute::Id(id),
        ];
        let found = session
            .find_objects(&template)
            .map_err(|e| translate(Op::Find, e))?;
        match found.as_slice() {
            [handle] => {
                if let Ok(mut handles) = self.handles.lock() {
                    handles.insert(key.clone(), *handle);
                }
                Ok((*handle, false))
            }
            [] => Err(BackendError::KeyMissing(key.clone())),
            _ => Err(BackendError::Internal(format!(
                "{} objects share the id of {key:?}",
                found.len()
            ))),
        }
    }

    /// Runs `call` with the key's object handle, looking the object up again once if a cached
    /// handle has gone stale.
    fn with_key<T>(
        &self,
        key: &KeyRef,
        op: Op,
        call: impl Fn(&Session, ObjectHandle) -> cryptoki::error::Result<T>,
    ) -> Result<T> {
        let attempt = || {
            self.with_session(|session| {
                let (handle, cached) = self.object(session, key)?;
                match call(session, handle) {
                    Err(e) if cached && is_stale_handle(&e) => {
                        if let Ok(mut handles) = self.handles.lock() {
                            handles.remove(key);
                        }
                        let (handle, _) = self.object(session, key)?;
                        call(session, handle).map_err(|e| translate(op, e))
                    }
                    other => other.map_err(|e| translate(op, e)),
                }
            })
        };
        match attempt() {
            Err(BackendError::KeyMissing(_)) if self.reinitialize_after_miss() => attempt(),
            other => other,
        }
    }

    /// Attributes of a key's object, for tests and operators checking the key is locked in.
    pub fn key_attributes(&self, key: &KeyRef) -> Result<KeyAttributes> {
        self.with_key(key, Op::Find, read_key_attributes)
    }
}

fn read_key_attributes(
    session: &Session,
    handle: ObjectHandle,
) -> cryptoki::error::Result<KeyAttributes> {
    let attrs = session.get_attributes(
        handle,
        &[
            cryptoki::object::AttributeType::Sensitive,
            cryptoki::object::AttributeType::Extractable,
            cryptoki::object::AttributeType::Token,
            cryptoki::object::AttributeType::Value,
        ],
    )?;
    let mut out = KeyAttributes::default();
    for attr in attrs {
        match attr {
            Attribute::Sensitive(v) => out.sensitive = Some(v),
            Attribute::Extractable(v) => out.extractable = Some(v),
            Attribute::Token(v) => out.token = Some(v),
            Attribute::Value(_) => out.value_readable = true,
            _ => {}
        }
    }
    Ok(out)
}

/// What the token reports about a master key object (or an import wrapping key's private half). `None`: the token did not say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeyAttributes {
    pub sensitive: Option<bool>,
    pub extractable: Option<bool>,
    pub token: Option<bool>,
    pub value_readable: bool,
}

impl Pkcs11Root {
    /// Generates a key of `kind` that never leaves the token.
    fn generate(&self, kind: KeyKind, label: &str) -> Result<KeyRef> {
        let (key, mechanism, template) = key_spec(kind, label, false)?;
        self.with_session(|session| {
            session
                .generate_key(&mechanism, &template)
                .map_err(|e| translate(Op::Create, e))
        })?;
        Ok(key)
    }
}

/// A new 256-bit secret token object of `kind`: its reference, and the mechanism and template
/// that generate it. Usable only for what its kind needs; it never leaves the token, or
/// (`escrowable`) leaves it only wrapped under a trusted key.
fn key_spec(
    kind: KeyKind,
    label: &str,
    escrowable: bool,
) -> Result<(KeyRef, Mechanism<'static>, Vec<Attribute>)> {
    let (mechanism, key_type, usage) = match kind {
        KeyKind::Master => (Mechanism::AesKeyGen, KeyType::AES, escrow::master_usage()),
        KeyKind::Mac => (
            Mechanism::GenericSecretKeyGen,
            KeyType::GENERIC_SECRET,
            escrow::mac_usage(),
        ),
    };
    let id = SecretBytes::random(16).map_err(|e| BackendError::Internal(e.to_string()))?;
    let key = KeyRef(crate::crypto::hex::encode(id.expose()));
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(key_type),
        Attribute::ValueLen(32.into()),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Id(id.expose().to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    template.extend(escrow::leaving(escrowable));
    template.extend(usage);
    Ok((key, mechanism, template))
}

fn key_id_bytes(key: &KeyRef) -> Result<Vec<u8>> {
    crate::crypto::hex::decode(&key.0)
        .ok_or_else(|| BackendError::Internal(format!("malformed key ref {key:?}")))
}

fn gcm<'a>(iv: &'a mut [u8; NONCE_LEN], aad: &'a [u8]) -> cryptoki::error::Result<Mechanism<'a>> {
    Ok(Mechanism::AesGcm(GcmParams::new(iv, aad, 128.into())?))
}

impl RootOfTrust for Pkcs11Root {
    fn kind(&self) -> &'static str {
        "PKCS11"
    }

    fn create_key(&self, label: &str, _: &KeyProtection) -> Result<KeyRef> {
        self.generate(KeyKind::Master, label)
    }

    fn create_mac_key(&self, label: &str) -> Result<KeyRef> {
        self.generate(KeyKind::Mac, label)
    }

    fn mac(&self, key: &KeyRef, message: &[u8]) -> Result<[u8; MAC_LEN]> {
        let tag = self.with_key(key, Op::Mac, |session, handle| {
            session.sign(&Mechanism::Sha256Hmac, handle, message)
        })?;
        <[u8; MAC_LEN]>::try_from(tag.as_slice()).map_err(|_| {
            BackendError::Internal(format!("CKM_SHA256_HMAC returned {} bytes", tag.len()))
        })
    }

    fn destroy_key(&self, key: &KeyRef) -> Result<()> {
        let outcome = self.with_key(key, Op::Destroy, |session, handle| {
            session.destroy_object(handle)
        });
        if let Ok(mut handles) = self.handles.lock() {
            handles.remove(key);
        }
        match outcome {
            Ok(()) | Err(BackendError::KeyMissing(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn seal(
        &self,
        key: &KeyRef,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        pt: &[u8],
    ) -> Result<Vec<u8>> {
        self.with_key(key, Op::Seal, |session, handle| {
            let mut iv = *nonce;
            session.encrypt(&gcm(&mut iv, aad)?, handle, pt)
        })
    }

    fn unseal(
        &self,
        key: &KeyRef,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<SecretBytes> {
        self.with_key(key, Op::Unseal, |session, handle| {
            let mut iv = *nonce;
            session
                .decrypt(&gcm(&mut iv, aad)?, handle, sealed)
                .map(SecretBytes::new)
        })
    }

    fn check_import(&self) -> Result<()> {
        Ok(())
    }

    fn create_wrapping_key(
        &self,
        label: &str,
        bits: u32,
        hash: OaepHash,
    ) -> Result<(KeyRef, RsaPublicKey)> {
        self.generate_wrapping_key(label, bits, hash)
    }

    fn destroy_wrapping_key(&self, key: &KeyRef) -> Result<()> {
        self.destroy_wrapping_objects(key)
    }

    fn import_key(
        &self,
        wrapping: &KeyRef,
        hash: OaepHash,
        wrapped: &[u8],
        label: &str,
    ) -> Result<KeyRef> {
        self.unwrap_imported(wrapping, hash, wrapped, label)
    }

    fn create_escrowed(
        &self,
        kind: KeyKind,
        label: &str,
        _: &KeyProtection,
        escrow: &EscrowTarget,
    ) -> Result<(KeyRef, Wrapped)> {
        self.create_escrowed_key(kind, label, escrow)
    }

    fn escrow_existing(&self, _: KeyKind, key: &KeyRef, escrow: &EscrowTarget) -> Result<Wrapped> {
        self.escrow_key(key, escrow)
    }

    fn recover_key(
        &self,
        kind: KeyKind,
        material: &[u8],
        label: &str,
        _: &KeyProtection,
        escrow: Option<&EscrowTarget>,
    ) -> Result<KeyRef> {
        self.recover_material(kind, material, label, escrow)
    }

    fn random(&self, len: usize) -> Result<SecretBytes> {
        let len = u32::try_from(len).map_err(|e| BackendError::Internal(e.to_string()))?;
        self.with_session(|session| {
            session
                .generate_random_vec(len)
                .map(SecretBytes::new)
                .map_err(|e| translate(Op::Random, e))
        })
    }

    fn check(&self) -> Result<()> {
        self.with_session(|session| {
            // Token info and a private-object search both touch the token's storage, so a
            // removed token or a lost login shows up here.
            let slot = token::find_slot(&self.ctx, &self.token)?;
            self.ctx
                .get_token_info(slot)
                .map_err(|e| translate(Op::Check, e))?;
            session
                .find_objects(&[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::Token(true),
                    Attribute::Private(true),
                ])
                .map_err(|e| translate(Op::Check, e))?;
            Ok(())
        })
    }
}
