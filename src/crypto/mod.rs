//! Software cryptography and wire formats: secret buffers, the canonical encryption context and
//! the ciphertext envelope. Nothing here talks to hardware or storage.

pub mod aead;
pub mod context;
pub mod envelope;
pub mod hex;
pub mod locked;
pub mod secret;

pub use context::EncryptionContext;
pub use secret::SecretBytes;
