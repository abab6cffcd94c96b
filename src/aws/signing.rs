//! Who signed an AWS request: the configured access keys (SigV4), each standing for a
//! principal. Secret keys come from environment variables or files and are held zeroized.
//! Without an `[auth]` section, one fixed development key pair stands for the development
//! admin; it is printed in the README because it protects nothing.

use super::sigv4::{self, Credentials, SigError, Verifier};
use crate::access::identity::{self, AuthFailure, DEVELOPMENT_ADMIN};
use crate::config::{Config, ConfigError, read_secret};
use crate::outcome::Exception;
use secrecy::ExposeSecret;
use std::collections::HashMap;
use zeroize::Zeroizing;

pub const DEVELOPMENT_ACCESS_KEY_ID: &str = "AKIAKEYWARDDEVELOPER";
pub const DEVELOPMENT_SECRET_KEY: &str = "keyward-development-secret-key-not-secret";

/// Requests signed more than this far from the server's clock are refused (AWS: 5 minutes).
const MAX_SKEW_SECS: i64 = 300;

pub struct AccessKeys {
    /// Secret key and principal by access key id.
    keys: HashMap<String, (Zeroizing<Vec<u8>>, String)>,
    region: String,
}

impl Credentials for AccessKeys {
    fn lookup(&self, access_key_id: &str) -> Option<(&[u8], &str)> {
        self.keys
            .get(access_key_id)
            .map(|(secret, principal)| (secret.as_slice(), principal.as_str()))
    }
}

impl AccessKeys {
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let mut keys = HashMap::new();
        match &config.auth {
            None => {
                keys.insert(
                    DEVELOPMENT_ACCESS_KEY_ID.to_owned(),
                    (
                        Zeroizing::new(DEVELOPMENT_SECRET_KEY.as_bytes().to_vec()),
                        DEVELOPMENT_ADMIN.to_owned(),
                    ),
                );
            }
            Some(auth) => {
                for key in &auth.access_keys {
                    let secret = read_secret(
                        key.secret_key_env.as_deref(),
                        key.secret_key_file.as_deref(),
                    )?;
                    keys.insert(
                        key.access_key_id.clone(),
                        (
                            Zeroizing::new(secret.expose_secret().as_bytes().to_vec()),
                            identity::principal(&key.principal),
                        ),
                    );
                }
            }
        }
        Ok(Self {
            keys,
            region: config.region.clone(),
        })
    }

    /// The principal that signed the request, or why it is refused.
    pub fn verify(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        service: &str,
    ) -> Result<String, AuthFailure> {
        let verifier = Verifier {
            region: &self.region,
            now_epoch_secs: crate::time::Clock::now(&crate::time::SystemClock).secs(),
            max_skew_secs: MAX_SKEW_SECS,
        };
        if parts.headers.contains_key("x-amz-security-token") {
            // Keyward issues no temporary credentials, so no session token can be valid.
            return Err(AuthFailure::Signature {
                exception: Exception::UnrecognizedClient,
                message: "The security token included in the request is invalid.".into(),
            });
        }
        let verified = verifier
            .verify(
                &parts.method,
                &parts.uri,
                &parts.headers,
                body,
                &[service],
                self,
            )
            .map_err(|e: SigError| AuthFailure::Signature {
                exception: e.exception(),
                message: e.to_string(),
            })?;
        // The operation is chosen by X-Amz-Target: unsigned, a captured request could be
        // replayed as another operation within the time window.
        if !verified.signed_headers.iter().any(|h| h == "x-amz-target") {
            return Err(AuthFailure::Signature {
                exception: Exception::IncompleteSignature,
                message: "'x-amz-target' must be a signed header (listed in SignedHeaders).".into(),
            });
        }
        Ok(verified.principal)
    }
}

/// Signs a request as an AWS client would: for tests and tooling.
pub use sigv4::sign;
