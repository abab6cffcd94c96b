//! Key import on a PKCS#11 token: RSA wrapping key pairs and the unwrapping of key material a
//! user wrapped with one.
//!
//! - Wrapping keys: CKM_RSA_PKCS_KEY_PAIR_GEN, exponent 65537. The private key is a token
//!   object (it must outlive sessions and be found by every hardware thread and cluster node),
//!   CKA_SENSITIVE=true, CKA_EXTRACTABLE=false, CKA_ALLOWED_MECHANISMS the one mechanism its
//!   wrapping algorithm needs. The public
//!   key is a session object, read once for its modulus and exponent and destroyed at once.
//! - RSAES_OAEP_SHA_1: C_UnwrapKey with CKM_RSA_PKCS_OAEP (SHA-1, MGF1-SHA-1, empty label)
//!   straight into a sensitive, non-extractable AES token key: the material never leaves the
//!   token.
//! - RSAES_OAEP_SHA_256: SoftHSM 2.6 implements CKM_RSA_PKCS_OAEP with SHA-1 only, so the
//!   wrapped block is decrypted with raw RSA (CKM_RSA_X_509) into a locked, zeroized buffer,
//!   decoded in constant time by [`crate::crypto::oaep`], and the 32 bytes become the AES
//!   token key through C_CreateObject (sensitive, non-extractable). The material is in this
//!   process's memory for the length of those calls; cryptoki's own output buffer is wiped as
//!   soon as it is copied. Such a key reports CKA_LOCAL=false, as any imported key does.
//! - Every failure to decrypt or decode is `InvalidCiphertext` (one error, whatever went
//!   wrong); material that is not 32 bytes is destroyed and reported as `IncorrectKeyMaterial`.
//!   With SHA-256 the length is checked in software. With SHA-1 only the token knows it, and
//!   SoftHSM does not report CKA_VALUE_LEN for unwrapped keys: the material is unwrapped once
//!   more into an extractable session object and wrapped under a random session AES key with
//!   CKM_AES_KEY_WRAP, whose output length tells 32 bytes from any other (both objects are
//!   destroyed at once; the material stays in the token).

use super::errors::{Op, translate};
use super::{Pkcs11Root, key_id_bytes};
use crate::backend::{BackendError, IMPORTED_KEY_LEN, KeyRef, OaepHash, Result, RsaPublicKey};
use crate::crypto::locked::LockedBuf;
use crate::crypto::{SecretBytes, hex, oaep};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use zeroize::Zeroize;

/// A fresh random CKA_ID and its reference.
fn new_id() -> Result<(Vec<u8>, KeyRef)> {
    let id = SecretBytes::random(16).map_err(|e| BackendError::Internal(e.to_string()))?;
    Ok((id.expose().to_vec(), KeyRef(hex::encode(id.expose()))))
}

/// The template of an imported master key: the same rights as a generated one.
fn aes_template(id: Vec<u8>, label: &str) -> Vec<Attribute> {
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Id(id),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    template.extend(super::escrow::master_usage());
    template
}

impl Pkcs11Root {
    pub(super) fn generate_wrapping_key(
        &self,
        label: &str,
        bits: u32,
        hash: OaepHash,
    ) -> Result<(KeyRef, RsaPublicKey)> {
        let (id, key) = new_id()?;
        // Each wrapping key does the one thing its import needs: raw RSA is a decryption
        // oracle, so only a SHA-256 wrapping key may do it.
        let allowed = match hash {
            OaepHash::Sha1 => MechanismType::RSA_PKCS_OAEP,
            OaepHash::Sha256 => MechanismType::RSA_X_509,
        };
        let public_template = [
            Attribute::Token(false),
            Attribute::Encrypt(true),
            Attribute::Wrap(true),
            Attribute::ModulusBits(u64::from(bits).into()),
            Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
            Attribute::Id(id.clone()),
        ];
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Decrypt(true),
            Attribute::Unwrap(true),
            Attribute::Sign(false),
            Attribute::AllowedMechanisms(vec![allowed]),
            Attribute::Id(id),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        self.with_session(|session| {
            let (public, private) = session
                .generate_key_pair(
                    &Mechanism::RsaPkcsKeyPairGen,
                    &public_template,
                    &private_template,
                )
                .map_err(|e| translate(Op::Create, e))?;
            let read = read_public(session, public);
            let _ = session.destroy_object(public);
            if read.is_err() {
                let _ = session.destroy_object(private);
            }
            Ok((key, read?))
        })
    }

    pub(super) fn destroy_wrapping_objects(&self, key: &KeyRef) -> Result<()> {
        let id = key_id_bytes(key)?;
        self.with_session(|session| {
            let found = session
                .find_objects(&[Attribute::Id(id.clone())])
                .map_err(|e| translate(Op::Find, e))?;
            for handle in found {
                session
                    .destroy_object(handle)
                    .map_err(|e| translate(Op::Destroy, e))?;
            }
            Ok(())
        })
    }

    pub(super) fn unwrap_imported(
        &self,
        wrapping: &KeyRef,
        hash: OaepHash,
        wrapped: &[u8],
        label: &str,
    ) -> Result<KeyRef> {
        let (id, key) = new_id()?;
        let template = aes_template(id, label);
        self.with_private_key(wrapping, |session, private| {
            let handle = match hash {
                OaepHash::Sha1 => unwrap_sha1(session, private, wrapped, &template)?,
                OaepHash::Sha256 => unwrap_sha256(session, private, wrapped, &template)?,
            };
            match check_unwrapped(session, handle) {
                Ok(()) => Ok(key.clone()),
                Err(e) => {
                    let _ = session.destroy_object(handle);
                    Err(e)
                }
            }
        })
    }

    /// Attributes of a wrapping key's private half, for tests and operators checking it is
    /// locked in, or gone. Looks once: a miss is `KeyMissing` without re-initialising the
    /// module (which would cost this process's other sessions their next call).
    pub fn wrapping_key_attributes(&self, key: &KeyRef) -> Result<super::KeyAttributes> {
        let id = key_id_bytes(key)?;
        self.with_session(|session| {
            let found = session
                .find_objects(&[
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::Token(true),
                    Attribute::Id(id),
                ])
                .map_err(|e| translate(Op::Find, e))?;
            match found.as_slice() {
                [handle] => {
                    super::read_key_attributes(session, *handle).map_err(|e| translate(Op::Find, e))
                }
                [] => Err(BackendError::KeyMissing(key.clone())),
                _ => Err(BackendError::Internal(format!(
                    "{} objects share the id of {key:?}",
                    found.len()
                ))),
            }
        })
    }

    /// Runs `call` with the wrapping key's private object, looked up by id (wrapping keys are
    /// used once: no handle cache). A key another process made may need a fresh look from a
    /// re-initialised module, as master keys do.
    fn with_private_key<T>(
        &self,
        key: &KeyRef,
        call: impl Fn(&Session, ObjectHandle) -> Result<T>,
    ) -> Result<T> {
        let id = key_id_bytes(key)?;
        let attempt = || {
            self.with_session(|session| {
                let found = session
                    .find_objects(&[
                        Attribute::Class(ObjectClass::PRIVATE_KEY),
                        Attribute::Token(true),
                        Attribute::Id(id.clone()),
                    ])
                    .map_err(|e| translate(Op::Find, e))?;
                match found.as_slice() {
                    [handle] => call(session, *handle),
                    [] => Err(BackendError::KeyMissing(key.clone())),
                    _ => Err(BackendError::Internal(format!(
                        "{} objects share the id of {key:?}",
                        found.len()
                    ))),
                }
            })
        };
        match attempt() {
            Err(BackendError::KeyMissing(_)) if self.reinitialize_after_miss() => attempt(),
            other => other,
        }
    }
}

fn read_public(session: &Session, public: ObjectHandle) -> Result<RsaPublicKey> {
    let attributes = session
        .get_attributes(
            public,
            &[AttributeType::Modulus, AttributeType::PublicExponent],
        )
        .map_err(|e| translate(Op::Find, e))?;
    let (mut modulus, mut exponent) = (None, None);
    for attribute in attributes {
        match attribute {
            Attribute::Modulus(n) => modulus = Some(n),
            Attribute::PublicExponent(e) => exponent = Some(e),
            _ => {}
        }
    }
    match (modulus, exponent) {
        (Some(modulus), Some(exponent)) => Ok(RsaPublicKey { modulus, exponent }),
        _ => Err(BackendError::Internal(
            "the token did not report the wrapping key's modulus and exponent".into(),
        )),
    }
}

/// What the token can tell about an unwrapped key without revealing it: its length where it
/// reports one (SoftHSM leaves CKA_VALUE_LEN at 0 for unwrapped and created keys), and that it
/// works as an AES key (one GCM encryption of a zero block).
fn check_unwrapped(session: &Session, handle: ObjectHandle) -> Result<()> {
    let attributes = session
        .get_attributes(handle, &[AttributeType::ValueLen])
        .map_err(|e| translate(Op::Find, e))?;
    let reported = attributes.into_iter().find_map(|a| match a {
        Attribute::ValueLen(len) => usize::try_from(u64::from(len)).ok(),
        _ => None,
    });
    if let Some(len) = reported.filter(|&len| len != 0 && len != IMPORTED_KEY_LEN) {
        return Err(BackendError::IncorrectKeyMaterial(format!(
            "the key material is {len} bytes; it must be {IMPORTED_KEY_LEN}"
        )));
    }
    // Not the zero nonce of the service's same-material check block: one nonce, one message.
    // The probe's output is dropped here.
    let mut iv = [0xFFu8; crate::crypto::envelope::NONCE_LEN];
    let params = GcmParams::new(&mut iv, &[], 128.into())
        .map_err(|e| BackendError::Internal(e.to_string()))?;
    session
        .encrypt(&Mechanism::AesGcm(params), handle, &[0u8; 16])
        .map(|_| ())
        .map_err(|_| {
            BackendError::IncorrectKeyMaterial("the key material is not an AES-256 key".into())
        })
}

pub(super) fn oaep_sha1() -> Mechanism<'static> {
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA1,
        PkcsMgfType::MGF1_SHA1,
        PkcsOaepSource::empty(),
    ))
}

fn unwrap_sha1(
    session: &Session,
    private: ObjectHandle,
    wrapped: &[u8],
    template: &[Attribute],
) -> Result<ObjectHandle> {
    if !sha1_material_is_32_bytes(session, private, wrapped)? {
        return Err(BackendError::IncorrectKeyMaterial(format!(
            "the key material must be {IMPORTED_KEY_LEN} bytes"
        )));
    }
    session
        .unwrap_key(&oaep_sha1(), private, wrapped, template)
        .map_err(|e| translate(Op::Unwrap, e))
}

/// The material's length, measured without it leaving the token (which does not report
/// CKA_VALUE_LEN for unwrapped keys): unwrapped once more into an extractable session object,
/// wrapped under a random session AES key with CKM_AES_KEY_WRAP (RFC 3394 takes multiples of 8
/// bytes only, and makes 40 bytes of 32 and of nothing else), both objects destroyed at once.
fn sha1_material_is_32_bytes(
    session: &Session,
    private: ObjectHandle,
    wrapped: &[u8],
) -> Result<bool> {
    let probe = session
        .unwrap_key(
            &oaep_sha1(),
            private,
            wrapped,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::Token(false),
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
            ],
        )
        .map_err(|e| translate(Op::Unwrap, e))?;
    let kek = session.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(32.into()),
            Attribute::Token(false),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Wrap(true),
        ],
    );
    let measured = kek.as_ref().map_err(|_| ()).and_then(|&kek| {
        session
            .wrap_key(&Mechanism::AesKeyWrap, kek, probe)
            .map(|w| w.len())
            .map_err(|_| ())
    });
    let _ = session.destroy_object(probe);
    let kek = kek.map_err(|e| translate(Op::Create, e))?;
    let _ = session.destroy_object(kek);
    Ok(measured == Ok(IMPORTED_KEY_LEN + 8))
}

fn unwrap_sha256(
    session: &Session,
    private: ObjectHandle,
    wrapped: &[u8],
    template: &[Attribute],
) -> Result<ObjectHandle> {
    // The modulus length: raw RSA takes and gives exactly that many bytes.
    let k = wrapped.len();
    let mut em = LockedBuf::zeroed(k).ok_or(BackendError::InvalidCiphertext)?;
    let mut raw = session
        .decrypt(&Mechanism::RsaX509, private, wrapped)
        .map_err(|e| translate(Op::Unwrap, e))?;
    let fits = raw.len() <= k;
    if fits {
        // Raw RSA may drop leading zero bytes: right-align.
        em.expose_mut()[k - raw.len()..].copy_from_slice(&raw);
    }
    raw.zeroize();
    if !fits {
        return Err(BackendError::InvalidCiphertext);
    }
    let message = oaep::decode::<sha2::Sha256>(em.expose_mut())
        .map_err(|_| BackendError::InvalidCiphertext)?;
    let material = &em.expose()[message];
    if material.len() != IMPORTED_KEY_LEN {
        return Err(BackendError::IncorrectKeyMaterial(format!(
            "the key material is {} bytes; it must be {IMPORTED_KEY_LEN}",
            material.len()
        )));
    }
    let mut template = template.to_vec();
    template.push(Attribute::Value(material.to_vec()));
    let created = session.create_object(&template);
    for attribute in &mut template {
        if let Attribute::Value(value) = attribute {
            value.zeroize();
        }
    }
    created.map_err(|e| translate(Op::Create, e))
}
