//! Templates and blobs: the SRK, storage parents (`resident` key versions) and sealed-data
//! objects, and the byte form their public and private parts are stored in.

use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::structures::{
    Digest, EccPoint, KeyedHashScheme, Private, Public, PublicBuilder, PublicEccParametersBuilder,
    PublicKeyedHashParameters, SymmetricCipherParameters, SymmetricDefinitionObject,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::{Error, Result, WrapperErrorKind};

/// The TCG storage root key template (ECC P-256, restricted decrypt, AES-128-CFB, empty
/// unique). Deterministic: the same TPM always gives the same key and Name. Never change it,
/// or every data directory's recorded SRK Name stops matching.
pub fn srk() -> Result<Public> {
    let attributes = storage_attributes()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_restricted_decryption_key(
                SymmetricDefinitionObject::AES_128_CFB,
                EccCurve::NistP256,
            )
            .build()?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

/// noDA everywhere: a busy server must never count towards dictionary-attack lockout.
fn storage_attributes() -> Result<tss_esapi::attributes::ObjectAttributes> {
    ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()
}

/// A `resident` key version: a symmetric storage key (fastest to create and load) whose
/// secret the TPM generates and never releases.
pub fn storage_parent() -> Result<Public> {
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::SymCipher)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(storage_attributes()?)
        .with_symmetric_cipher_parameters(SymmetricCipherParameters::new(
            SymmetricDefinitionObject::AES_128_CFB,
        ))
        .with_symmetric_cipher_unique_identifier(Digest::default())
        .build()
}

/// A sealed-data object. With a policy, only the policy authorizes Unseal (userWithAuth off,
/// or a password would bypass the PCR binding).
pub fn sealed(policy: Option<Digest>) -> Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_no_da(true)
        .with_user_with_auth(policy.is_none())
        .build()?;
    let mut builder = PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default());
    if let Some(policy) = policy {
        builder = builder.with_auth_policy(policy);
    }
    builder.build()
}

/// An HMAC-SHA256 signing key (the audit log's checkpoint key, the backup key) that the TPM
/// never releases. Its secret is generated inside (`generated`), or given: an escrowed key's,
/// made outside so that it can be wrapped to the escrow key, or a recovered one.
pub fn hmac_key(generated: bool) -> Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(generated)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_sign_encrypt(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(
            KeyedHashScheme::HMAC_SHA_256,
        ))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
}

/// `u16 len | TPMT_PUBLIC | u16 len | TPM2B_PRIVATE contents`.
pub fn encode(public: &Public, private: &Private) -> Result<Vec<u8>> {
    let public = public.marshall()?;
    let private = private.value();
    let mut out = Vec::with_capacity(4 + public.len() + private.len());
    for part in [public.as_slice(), private] {
        let len = u16::try_from(part.len())
            .map_err(|_| Error::WrapperError(WrapperErrorKind::WrongParamSize))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part);
    }
    Ok(out)
}

/// Splits `u16 len | bytes` off the front.
pub fn take(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = bytes.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    (rest.len() >= len).then(|| rest.split_at(len))
}

pub fn decode(blob: &[u8]) -> Option<(Public, Private)> {
    let (public, rest) = take(blob)?;
    let (private, rest) = take(rest)?;
    if !rest.is_empty() {
        return None;
    }
    Some((
        Public::unmarshall(public).ok()?,
        Private::try_from(private).ok()?,
    ))
}
