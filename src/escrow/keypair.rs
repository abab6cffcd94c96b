//! The escrow key pair on the operator's side: made once by `keyward escrow init`, never kept
//! anywhere whole, rebuilt by `keyward recover` from shares of one of its primes, then used to
//! unwrap escrowed key material.
//!
//! What is shared is the prime `p` (1536 bits for RSA-3072), not the whole private key: with the
//! public modulus `n` from the store (and so from every backup) it is the private key
//! (`q = n / p`), its shares are short enough to write down, and a wrong or foreign set of
//! shares is caught exactly: its `p` does not divide `n`.
//!
//! Unwrapping is RSAES-OAEP in software (the rsa crate, constant-time bignum arithmetic with
//! blinding), in the recovery process only; the recovered material goes straight into the new
//! root of trust.

use super::{EscrowError, EscrowKey, Escrowed};
use crate::backend::OaepHash;
use crate::crypto::SecretBytes;
use crate::crypto::rng::OsRng;
use crypto_bigint::NonZero;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BoxedUint, Oaep, PrivateKey};
use zeroize::Zeroizing;

/// Bits of the escrow modulus.
pub const BITS: usize = 3072;

/// The escrow private key, in memory only while `escrow init` or `recover` runs. No `Debug`.
pub struct EscrowPrivateKey(PrivateKey);

fn precision(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(8) * 64).unwrap_or(u32::MAX)
}

impl EscrowPrivateKey {
    pub fn generate() -> Result<Self, EscrowError> {
        PrivateKey::new(&mut OsRng, BITS)
            .map(Self)
            .map_err(|e| EscrowError::Key(format!("generating the escrow key: {e}")))
    }

    /// The public half, as the configuration and the store hold it.
    pub fn public(&self) -> Result<EscrowKey, EscrowError> {
        let n = self.0.n().to_be_bytes_trimmed_vartime();
        let e = self.0.e().to_be_bytes_trimmed_vartime();
        EscrowKey::from_der(&crate::crypto::spki::rsa_public_key(&n, &e))
    }

    /// The secret that is split into shares: the first prime, big-endian, BITS/16 bytes.
    pub fn shared_prime(&self) -> Result<Zeroizing<Vec<u8>>, EscrowError> {
        let p = self
            .0
            .primes()
            .first()
            .ok_or_else(|| EscrowError::Key("the key has no primes".into()))?;
        let bytes = Zeroizing::new(p.to_be_bytes().into_vec());
        let len = BITS / 16;
        let start = bytes
            .len()
            .checked_sub(len)
            .ok_or_else(|| EscrowError::Key("a prime is shorter than half the modulus".into()))?;
        if bytes[..start].iter().any(|&b| b != 0) {
            return Err(EscrowError::Key(
                "a prime is longer than half the modulus".into(),
            ));
        }
        Ok(Zeroizing::new(bytes[start..].to_vec()))
    }

    /// Rebuilds the private key of `public` from its prime `p`; refused when `p` is not a
    /// factor of its modulus (a wrong share, or shares of another escrow key).
    pub fn rebuild(public: &EscrowKey, p: &[u8]) -> Result<Self, EscrowError> {
        let wrong = || {
            EscrowError::WrongShares(format!(
                "the shares do not rebuild escrow key {}: one of them is wrong, or they belong \
                 to another escrow key",
                public.id()
            ))
        };
        let modulus = &public.target().public.modulus;
        let n = BoxedUint::from_be_slice(modulus, precision(modulus.len())).map_err(|_| wrong())?;
        let p_wide = BoxedUint::from_be_slice(p, precision(modulus.len())).map_err(|_| wrong())?;
        let one = BoxedUint::one_with_precision(p_wide.bits_precision());
        if p_wide <= one || p_wide >= n {
            return Err(wrong());
        }
        let divisor = NonZero::new(p_wide).into_option().ok_or_else(wrong)?;
        let (q, rest) = n.div_rem(&divisor);
        if !bool::from(rest.is_zero()) {
            return Err(wrong());
        }
        let half = precision(p.len());
        let p = BoxedUint::from_be_slice(p, half).map_err(|_| wrong())?;
        let q_bytes = Zeroizing::new(q.to_be_bytes().into_vec());
        let q = BoxedUint::from_be_slice_truncated(&q_bytes, half);
        let e = BoxedUint::from_be_slice_vartime(&public.target().public.exponent);
        let key = PrivateKey::from_p_q(p, q, e).map_err(|_| wrong())?;
        if key.n().to_be_bytes_trimmed_vartime().as_ref() != trimmed(modulus) {
            return Err(wrong());
        }
        Ok(Self(key))
    }

    /// Unwraps escrowed material (32 bytes) into a zeroizing buffer.
    pub fn unwrap(&self, escrowed: &Escrowed) -> Result<SecretBytes, EscrowError> {
        let decrypted = match escrowed.oaep_hash {
            OaepHash::Sha1 => {
                self.0
                    .decrypt_blinded(&mut OsRng, Oaep::<sha1::Sha1>::new(), &escrowed.wrapped)
            }
            OaepHash::Sha256 => {
                self.0
                    .decrypt_blinded(&mut OsRng, Oaep::<sha2::Sha256>::new(), &escrowed.wrapped)
            }
        };
        let material = SecretBytes::new(decrypted.map_err(|_| {
            EscrowError::WrongShares(
                "an escrowed key does not decrypt with the rebuilt escrow key".into(),
            )
        })?);
        if material.len() != 32 {
            return Err(EscrowError::Key(format!(
                "escrowed material is {} bytes, not 32",
                material.len()
            )));
        }
        Ok(material)
    }
}

fn trimmed(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escrowed(public: &EscrowKey, material: &[u8]) -> Escrowed {
        let target = public.target();
        Escrowed {
            escrow_key: public.id(),
            oaep_hash: OaepHash::Sha256,
            wrapped: crate::crypto::oaep::encrypt_sha256(
                &target.public.modulus,
                &target.public.exponent,
                material,
            )
            .unwrap(),
            check: Vec::new(),
        }
    }

    #[test]
    fn the_shared_prime_rebuilds_the_key_and_nothing_else_does() {
        let key = EscrowPrivateKey::generate().unwrap();
        let public = key.public().unwrap();
        let prime = key.shared_prime().unwrap();
        assert_eq!(prime.len(), BITS / 16);
        let blob = escrowed(&public, &[5; 32]);

        let rebuilt = EscrowPrivateKey::rebuild(&public, &prime).unwrap();
        assert_eq!(rebuilt.unwrap(&blob).unwrap().expose(), &[5; 32]);

        // One bit off, zero, one, the modulus itself: refused, never a key.
        let mut off = prime.to_vec();
        off[10] ^= 1;
        let n = public.target().public.modulus.clone();
        for wrong in [off, vec![0; 192], vec![1], n] {
            assert!(matches!(
                EscrowPrivateKey::rebuild(&public, &wrong),
                Err(EscrowError::WrongShares(_))
            ));
        }
        // Another key's prime does not divide this modulus.
        let other = EscrowPrivateKey::generate().unwrap();
        assert!(EscrowPrivateKey::rebuild(&public, &other.shared_prime().unwrap()).is_err());
        // A blob for another escrow key does not unwrap.
        let foreign = escrowed(&other.public().unwrap(), &[5; 32]);
        assert!(rebuilt.unwrap(&foreign).is_err());
        // Material that is not a 32-byte key is refused.
        assert!(rebuilt.unwrap(&escrowed(&public, &[5; 16])).is_err());
    }

    #[test]
    fn the_public_key_round_trips_through_pem_and_weak_keys_are_refused() {
        let key = EscrowPrivateKey::generate().unwrap();
        let public = key.public().unwrap();
        let again = EscrowKey::from_pem(&public.pem()).unwrap();
        assert_eq!(again, public);
        assert_eq!(public.id().len(), 32);
        let small = PrivateKey::new(&mut OsRng, 2048).unwrap();
        let der = crate::crypto::spki::rsa_public_key(
            &small.n().to_be_bytes_trimmed_vartime(),
            &small.e().to_be_bytes_trimmed_vartime(),
        );
        assert!(matches!(
            EscrowKey::from_der(&der),
            Err(EscrowError::PublicKey(m)) if m.contains("3072")
        ));
        assert!(EscrowKey::from_pem("no key here").is_err());
    }
}
