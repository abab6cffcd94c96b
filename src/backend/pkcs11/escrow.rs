//! Key escrow on a PKCS#11 token.
//!
//! - The escrow public key is a token object with CKA_TRUSTED=true, which only the token's
//!   security officer can set: [`install_escrow_key`] logs in as SO once (`keyward escrow
//!   install`). It may only wrap (CKA_WRAP), carries the escrow id as CKA_ID, and is made
//!   CKA_DESTROYABLE=false and CKA_MODIFIABLE=false where the token takes those attributes.
//! - An escrowable key (master or MAC) is made CKA_SENSITIVE=true, CKA_EXTRACTABLE=true and
//!   CKA_WRAP_WITH_TRUSTED=true: the token lets it out only wrapped under a trusted key, and a
//!   user session cannot make any key trusted. It is wrapped once, when made (C_WrapKey with
//!   CKM_RSA_PKCS_OAEP), and the blob is kept in the store beside the key's reference.
//! - The OAEP hash: SHA-256 where the token does it, SHA-1 otherwise (SoftHSM 2.6 implements
//!   OAEP with SHA-1 only); the blob records which. OAEP's proof uses the hash as a random
//!   oracle inside the padding; SHA-1's broken collision resistance does not break it.
//! - Escrow fails closed: a token without the trusted escrow key makes no key at all.
//! - Recovered material becomes a key through C_CreateObject with the attributes a made key
//!   has (escrowable again when the new deployment has escrow on).

use super::errors::{Op, translate};
use super::import::oaep_sha1;
use super::token::{TokenSelector, find_slot};
use super::{Pkcs11Root, context, key_id_bytes, key_spec};
use crate::backend::{BackendError, EscrowTarget, KeyKind, KeyRef, OaepHash, Result, Wrapped};
use crate::crypto::hex;
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use std::path::Path;

const ESCROW_LABEL: &str = "keyward-escrow";

/// What a master key may do (the same whether made, imported or recovered).
pub(super) fn master_usage() -> Vec<Attribute> {
    vec![
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(true),
        Attribute::Unwrap(true),
    ]
}

/// What a MAC key may do.
pub(super) fn mac_usage() -> Vec<Attribute> {
    vec![Attribute::Sign(true), Attribute::Verify(true)]
}

/// The attributes that decide whether a key can leave the token: never, or only wrapped under
/// a trusted key.
pub(super) fn leaving(escrowable: bool) -> Vec<Attribute> {
    if escrowable {
        vec![
            Attribute::Extractable(true),
            Attribute::WrapWithTrusted(true),
        ]
    } else {
        vec![Attribute::Extractable(false)]
    }
}

fn not_installed(escrow: &EscrowTarget) -> BackendError {
    BackendError::Unavailable(format!(
        "escrow is configured, but this token does not hold escrow key {} as a trusted key \
         (run `keyward escrow install` with the token's SO PIN); no key was made",
        hex::encode(&escrow.id)
    ))
}

/// The trusted escrow key's handle, checked to be the configured public key.
fn trusted_key(session: &Session, escrow: &EscrowTarget) -> Result<ObjectHandle> {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Id(escrow.id.to_vec()),
            Attribute::Trusted(true),
        ])
        .map_err(|e| translate(Op::Find, e))?;
    let [handle] = found.as_slice() else {
        return Err(not_installed(escrow));
    };
    let modulus = session
        .get_attributes(*handle, &[AttributeType::Modulus])
        .map_err(|e| translate(Op::Find, e))?;
    match modulus.as_slice() {
        [Attribute::Modulus(m)] if *m == escrow.public.modulus => Ok(*handle),
        _ => Err(BackendError::Internal(format!(
            "the token's trusted key with escrow id {} is not the configured escrow key",
            hex::encode(&escrow.id)
        ))),
    }
}

fn oaep_sha256() -> Mechanism<'static> {
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA256,
        PkcsMgfType::MGF1_SHA256,
        PkcsOaepSource::empty(),
    ))
}

/// Wraps `key` under the `trusted` escrow key: OAEP-SHA-256 if the token does it, else SHA-1.
fn wrap(session: &Session, trusted: ObjectHandle, key: ObjectHandle) -> Result<Wrapped> {
    match session.wrap_key(&oaep_sha256(), trusted, key) {
        Ok(bytes) => Ok(Wrapped {
            hash: OaepHash::Sha256,
            bytes,
        }),
        Err(Error::Pkcs11(
            RvError::ArgumentsBad | RvError::MechanismParamInvalid | RvError::MechanismInvalid,
            _,
        )) => session
            .wrap_key(&oaep_sha1(), trusted, key)
            .map(|bytes| Wrapped {
                hash: OaepHash::Sha1,
                bytes,
            })
            .map_err(wrap_refused),
        Err(e) => Err(wrap_refused(e)),
    }
}

fn wrap_refused(e: Error) -> BackendError {
    match e {
        Error::Pkcs11(RvError::KeyUnextractable | RvError::KeyNotWrappable, _) => {
            BackendError::Unsupported(
                "the key was made non-extractable (before escrow was on): it cannot leave the \
                 token, not even wrapped"
                    .into(),
            )
        }
        other => translate(Op::Create, other),
    }
}

impl Pkcs11Root {
    /// One session: the trusted key is found first (a token without it makes nothing), the
    /// key generated, wrapped, and destroyed again if the wrap fails.
    pub(super) fn create_escrowed_key(
        &self,
        kind: KeyKind,
        label: &str,
        escrow: &EscrowTarget,
    ) -> Result<(KeyRef, Wrapped)> {
        let (key, mechanism, template) = key_spec(kind, label, true)?;
        let wrapped = self.with_session(|session| {
            let trusted = trusted_key(session, escrow)?;
            let handle = session
                .generate_key(&mechanism, &template)
                .map_err(|e| translate(Op::Create, e))?;
            wrap(session, trusted, handle).inspect_err(|_| {
                let _ = session.destroy_object(handle);
            })
        })?;
        Ok((key, wrapped))
    }

    pub(super) fn escrow_key(&self, key: &KeyRef, escrow: &EscrowTarget) -> Result<Wrapped> {
        let id = key_id_bytes(key)?;
        self.with_session(|session| {
            let found = session
                .find_objects(&[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::Token(true),
                    Attribute::Id(id.clone()),
                ])
                .map_err(|e| translate(Op::Find, e))?;
            let [handle] = found.as_slice() else {
                return Err(BackendError::KeyMissing(key.clone()));
            };
            wrap(session, trusted_key(session, escrow)?, *handle)
        })
    }

    pub(super) fn recover_material(
        &self,
        kind: KeyKind,
        material: &[u8],
        label: &str,
        escrow: Option<&EscrowTarget>,
    ) -> Result<KeyRef> {
        // The template a generated key has, with the value instead of its length.
        let (key, _, mut template) = key_spec(kind, label, escrow.is_some())?;
        template.retain(|a| !matches!(a, Attribute::ValueLen(_)));
        template.push(Attribute::Value(material.to_vec()));
        let created = self.with_session(|session| {
            session
                .create_object(&template)
                .map(drop)
                .map_err(|e| translate(Op::Create, e))
        });
        // The template held the material: wipe it whatever happened.
        for attribute in &mut template {
            if let Attribute::Value(value) = attribute {
                zeroize::Zeroize::zeroize(value);
            }
        }
        created?;
        Ok(key)
    }
}

/// What `keyward escrow install` found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// The trusted key was made now.
    Now {
        /// The token took CKA_DESTROYABLE=false: a user session cannot delete it.
        protected_from_deletion: bool,
    },
    /// The token already held it.
    Already,
}

/// Installs the escrow public key in the token as a trusted wrapping key, logged in as the
/// security officer: the one step escrow needs the SO PIN for. Run it in a process that has not
/// opened the token as a user (a token takes one kind of login per application).
pub fn install_escrow_key(
    module: &Path,
    token: &TokenSelector,
    so_pin: &AuthPin,
    escrow: &EscrowTarget,
) -> Result<Installed> {
    let ctx = context(module)?;
    let slot = find_slot(&ctx, token)?;
    let session = ctx
        .open_rw_session(slot)
        .map_err(|e| translate(Op::Connect, e))?;
    session
        .login(UserType::So, Some(so_pin))
        .map_err(|e| match e {
            Error::Pkcs11(RvError::PinIncorrect, _) => {
                BackendError::Unavailable("the token refused the SO PIN".into())
            }
            other => translate(Op::Login, other),
        })?;
    let outcome = install_in(&session, escrow);
    let _ = session.logout();
    outcome
}

fn install_in(session: &Session, escrow: &EscrowTarget) -> Result<Installed> {
    let existing = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Id(escrow.id.to_vec()),
        ])
        .map_err(|e| translate(Op::Find, e))?;
    if !existing.is_empty() {
        return trusted_key(session, escrow).map(|_| Installed::Already);
    }
    let mut template = vec![
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(KeyType::RSA),
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Modulus(escrow.public.modulus.clone()),
        Attribute::PublicExponent(escrow.public.exponent.clone()),
        Attribute::Wrap(true),
        Attribute::Encrypt(false),
        Attribute::Verify(false),
        Attribute::Trusted(true),
        Attribute::Id(escrow.id.to_vec()),
        Attribute::Label(ESCROW_LABEL.as_bytes().to_vec()),
        Attribute::Modifiable(false),
    ];
    let mut protected = true;
    template.push(Attribute::Destroyable(false));
    let created = match session.create_object(&template) {
        Err(Error::Pkcs11(RvError::AttributeTypeInvalid | RvError::TemplateInconsistent, _)) => {
            // A token without CKA_DESTROYABLE: the key is installed all the same, and the
            // server's refusal to make keys without it is what stops a deleted one going unseen.
            protected = false;
            template.pop();
            session.create_object(&template)
        }
        other => other,
    };
    created.map_err(|e| translate(Op::Create, e))?;
    Ok(Installed::Now {
        protected_from_deletion: protected,
    })
}
