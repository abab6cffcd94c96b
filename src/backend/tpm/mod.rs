//! The TPM 2.0 root of trust (tss-esapi 7 over tpm2-tss), for servers with a TPM and no HSM.
//!
//! Two key modes, chosen per key or in the configuration:
//! - `resident`: a key version is a storage key under the SRK whose secret never leaves the
//!   TPM. Each seal creates a sealed-data object under it holding a fresh 256-bit key (TPM2_Create)
//!   and encrypts the data with that key in software; the ciphertext carries the object's
//!   blobs. Each unseal is TPM2_Load + TPM2_Unseal + flush (reads lean on the data-key cache).
//! - `sealed-kek`: a key version is a random 256-bit key sealed to the TPM, unsealed once
//!   into (zeroizing) memory and used in software: fast, but the key is in host memory while
//!   the server runs.
//!
//! Either mode may be bound to PCR values (measured boot): the sealed objects carry a
//! PolicyPCR policy, and bound keys compare the PCRs before each use, so a changed platform
//! state stops the key (`PlatformStateChanged`) while other keys keep working. Only commands
//! every PC-Client TPM has are used (no TPM2_EncryptDecrypt). One owner thread holds the only
//! ESAPI context; calls queue to it.

mod device;
mod errors;
mod keyref;
mod objects;

pub use device::{Options as TpmOptions, persist_srk};
pub use keyref::Mode as TpmKeyMode;

use super::{
    BackendError, EscrowTarget, KeyKind, KeyProtection, KeyRef, MAC_LEN, RESIDENT_NOT_ESCROWABLE,
    Result, RootOfTrust, Wrapped, wrap_in_software,
};
use crate::crypto::{SecretBytes, envelope::NONCE_LEN};
use device::Device;
use keyref::TpmKey;
use std::sync::mpsc;

type Job = Box<dyn FnOnce(&mut Device) + Send>;

/// A MAC key's `KeyRef`: this prefix, then the HMAC object's blobs in hex.
const MAC_KEY_PREFIX: &str = "tpm-hmac|";

pub struct TpmRoot {
    jobs: mpsc::Sender<Job>,
    identity: Vec<u8>,
    defaults: KeyProtectionDefaults,
}

/// What `resolve_protection` needs without a trip to the owner thread.
struct KeyProtectionDefaults {
    mode: TpmKeyMode,
    pcrs: Vec<u8>,
}

impl TpmRoot {
    /// Starts the owner thread and connects: flushes leftovers, finds or makes the SRK.
    pub fn connect(options: TpmOptions) -> Result<Self> {
        let (tcti, encrypted) = (options.tcti.clone(), options.parameter_encryption);
        let defaults = KeyProtectionDefaults {
            mode: options.default_mode,
            pcrs: options.default_pcrs.clone(),
        };
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, connected) = mpsc::channel();
        std::thread::Builder::new()
            .name("keyward-tpm".into())
            .spawn(move || {
                let mut device = Device::new(options);
                let _ = ready.send(device.connect().map(|()| device.identity()));
                // Ends when the TpmRoot (the only sender) is dropped.
                for job in queue {
                    job(&mut device);
                }
            })
            .map_err(|e| BackendError::Internal(format!("cannot start the TPM thread: {e}")))?;
        let identity = connected
            .recv()
            .map_err(|_| BackendError::Internal("the TPM thread stopped".into()))??
            .ok_or_else(|| BackendError::Internal("connected without an SRK name".into()))?;
        tracing::info!(
            %tcti,
            parameter_encryption = encrypted,
            default_mode = defaults.mode.as_str(),
            srk_name = %crate::crypto::hex::encode(&identity),
            "TPM connected"
        );
        Ok(Self {
            jobs,
            identity,
            defaults,
        })
    }

    fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Device) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (answer, answered) = mpsc::channel();
        self.jobs
            .send(Box::new(move |device| {
                let _ = answer.send(work(device));
            }))
            .map_err(|_| BackendError::Unavailable("the TPM thread stopped".into()))?;
        answered
            .recv()
            .map_err(|_| BackendError::Internal("a TPM call ended without an answer".into()))?
    }
}

fn refuse_resident(kind: KeyKind, protection: &KeyProtection) -> Result<()> {
    if kind == KeyKind::Master && TpmKeyMode::parse(&protection.mode) != Some(TpmKeyMode::SealedKek)
    {
        return Err(BackendError::Unsupported(RESIDENT_NOT_ESCROWABLE.into()));
    }
    Ok(())
}

impl TpmRoot {
    /// A master key version with `protection`, or a MAC key; of `material` when given.
    fn make_key(
        &self,
        kind: KeyKind,
        protection: &KeyProtection,
        material: Option<SecretBytes>,
    ) -> Result<KeyRef> {
        match kind {
            KeyKind::Master => {
                let protection = protection.clone();
                self.call(move |device| {
                    let kek = material.as_ref().map(SecretBytes::expose);
                    device.create_key(&protection, kek).map(|key| key.to_ref())
                })
            }
            KeyKind::Mac => {
                let blob = self.call(move |device| {
                    device.create_mac_key(material.as_ref().map(SecretBytes::expose))
                })?;
                Ok(KeyRef(format!(
                    "{MAC_KEY_PREFIX}{}",
                    crate::crypto::hex::encode(&blob)
                )))
            }
        }
    }
}

impl RootOfTrust for TpmRoot {
    fn kind(&self) -> &'static str {
        "TPM"
    }

    fn identity(&self) -> Option<Vec<u8>> {
        Some(self.identity.clone())
    }

    fn resolve_protection(&self, requested: &KeyProtection) -> Result<KeyProtection> {
        device::resolve_protection(&self.defaults.mode, &self.defaults.pcrs, requested)
    }

    fn create_key(&self, _label: &str, protection: &KeyProtection) -> Result<KeyRef> {
        let protection = protection.clone();
        self.call(move |device| device.create_key(&protection, None).map(|key| key.to_ref()))
    }

    fn destroy_key(&self, key: &KeyRef) -> Result<()> {
        // The TPM holds nothing per key: forgetting the blobs (the record) destroys it.
        let key = TpmKey::parse(key)?;
        self.call(move |device| {
            device.forget(&key);
            Ok(())
        })
    }

    fn seal(
        &self,
        key: &KeyRef,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let key = TpmKey::parse(key)?;
        let (nonce, aad, plaintext) = (*nonce, aad.to_vec(), SecretBytes::new(plaintext.to_vec()));
        self.call(move |device| device.seal(&key, &nonce, &aad, plaintext.expose()))
    }

    fn unseal(
        &self,
        key: &KeyRef,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<SecretBytes> {
        let key = TpmKey::parse(key)?;
        let (nonce, aad, sealed) = (*nonce, aad.to_vec(), sealed.to_vec());
        self.call(move |device| device.unseal(&key, &nonce, &aad, &sealed))
    }

    fn create_mac_key(&self, _label: &str) -> Result<KeyRef> {
        self.make_key(KeyKind::Mac, &KeyProtection::default(), None)
    }

    /// The secret is made here, wrapped to the escrow key first (nothing to undo if that
    /// fails), then sealed into the TPM: a TPM cannot hand out what it made itself.
    fn create_escrowed(
        &self,
        kind: KeyKind,
        _label: &str,
        protection: &KeyProtection,
        escrow: &EscrowTarget,
    ) -> Result<(KeyRef, Wrapped)> {
        refuse_resident(kind, protection)?;
        let material =
            SecretBytes::random(32).map_err(|e| BackendError::Internal(e.to_string()))?;
        let wrapped = wrap_in_software(escrow, material.expose())?;
        let key = self.make_key(kind, protection, Some(material))?;
        Ok((key, wrapped))
    }

    fn escrow_existing(
        &self,
        kind: KeyKind,
        key: &KeyRef,
        escrow: &EscrowTarget,
    ) -> Result<Wrapped> {
        if kind == KeyKind::Mac {
            return Err(BackendError::Unsupported(
                "the TPM made this HMAC key's secret itself and never releases it".into(),
            ));
        }
        let key = TpmKey::parse(key)?;
        let kek = self.call(move |device| device.kek_copy(&key))?;
        wrap_in_software(escrow, kek.expose())
    }

    fn recover_key(
        &self,
        kind: KeyKind,
        material: &[u8],
        _label: &str,
        protection: &KeyProtection,
        _escrow: Option<&EscrowTarget>,
    ) -> Result<KeyRef> {
        refuse_resident(kind, protection)?;
        self.make_key(kind, protection, Some(SecretBytes::new(material.to_vec())))
    }

    fn mac(&self, key: &KeyRef, message: &[u8]) -> Result<[u8; MAC_LEN]> {
        let blob = key
            .0
            .strip_prefix(MAC_KEY_PREFIX)
            .and_then(crate::crypto::hex::decode)
            .ok_or_else(|| BackendError::Internal(format!("malformed TPM MAC key {key:?}")))?;
        let message = message.to_vec();
        let tag = self.call(move |device| device.mac(&blob, &message))?;
        <[u8; MAC_LEN]>::try_from(tag.as_slice())
            .map_err(|_| BackendError::Internal(format!("TPM2_HMAC returned {} bytes", tag.len())))
    }

    fn random(&self, len: usize) -> Result<SecretBytes> {
        self.call(move |device| device.random(len))
    }

    fn check(&self) -> Result<()> {
        self.call(Device::check)
    }
}
