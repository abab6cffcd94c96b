//! Software cryptography and wire formats: secret buffers, the canonical encryption context and
//! the ciphertext envelope. Nothing here talks to hardware or storage.

pub mod aead;
pub mod context;
pub mod digest;
pub mod envelope;
pub mod hex;
pub mod locked;
pub mod master;
pub mod oaep;
pub mod rng;
pub mod secret;
pub mod spki;

pub use context::EncryptionContext;
pub use digest::{ct_eq, hmac_sha256, sha256};
pub use secret::SecretBytes;
