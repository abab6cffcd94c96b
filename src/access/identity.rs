//! Who is calling: the principal named by a client certificate or a bearer token.
//!
//! A principal is `keyward:principal/<name>`. A certificate names it by its first URI subject
//! alternative name, else its first DNS name, else its subject common name; the TLS layer has
//! already checked the chain against the configured client CA and the validity dates. A bearer
//! token names the principal it was issued for; tokens are stored as SHA-256 hashes and every
//! configured hash is compared in constant time.

use crate::config::{TokenConfig, valid_principal_name};
use crate::crypto::{ct_eq, hex, sha256};
use crate::outcome::Exception;

pub const PRINCIPAL_PREFIX: &str = "keyward:principal/";

/// The development mode's implicit principal, allowed everything.
pub const DEVELOPMENT_ADMIN: &str = "keyward:principal/admin";

/// Why a caller has no principal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("no client certificate or bearer token was presented")]
    NoCredentials,
    #[error("the bearer token is not valid")]
    BadToken,
    #[error("the authorization metadata is not `Bearer <token>`")]
    MalformedAuthorization,
    #[error("the client certificate names no usable principal: {0}")]
    BadCertificate(String),
    /// A SigV4 signature was refused; `exception` is the AWS error name for it.
    #[error("{message}")]
    Signature {
        exception: Exception,
        message: String,
    },
}

impl AuthFailure {
    /// The AWS exception name a client sees.
    pub fn exception(&self) -> Exception {
        match self {
            Self::Signature { exception, .. } => *exception,
            _ => Exception::UnrecognizedClient,
        }
    }
}

/// What the front door saw of the caller's credentials.
#[derive(Debug, Default)]
pub struct Credentials<'a> {
    /// The `authorization` metadata, if any.
    pub authorization: Option<&'a str>,
    /// The leaf client certificate (DER) the TLS layer verified, if any.
    pub certificate: Option<&'a [u8]>,
}

pub fn principal(name: &str) -> String {
    format!("{PRINCIPAL_PREFIX}{name}")
}

/// Configured bearer tokens, by hash.
pub struct Tokens {
    entries: Vec<([u8; 32], String)>,
}

impl Tokens {
    pub fn new(config: &[TokenConfig]) -> Self {
        let entries = config
            .iter()
            .filter_map(|t| {
                let hash: [u8; 32] = hex::decode(&t.sha256)?.try_into().ok()?;
                Some((hash, principal(&t.principal)))
            })
            .collect();
        Self { entries }
    }

    /// The principal a token stands for. Every entry is compared, so the time taken does not
    /// say how close a guess came or which entry matched.
    pub fn principal_for(&self, token: &str) -> Option<&str> {
        let presented = sha256(token.as_bytes());
        let mut found = None;
        for (hash, principal) in &self.entries {
            if ct_eq(hash, &presented) {
                found = Some(principal.as_str());
            }
        }
        found
    }
}

/// The principal `credentials` prove, when authentication is enforced. A token, when
/// presented, decides (tooling may hold one on a host that also has a certificate); a bad
/// token is refused rather than falling back to the certificate.
pub fn authenticate(tokens: &Tokens, credentials: &Credentials) -> Result<String, AuthFailure> {
    if let Some(value) = credentials.authorization {
        let token = value
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthFailure::MalformedAuthorization)?;
        return tokens
            .principal_for(token)
            .map(str::to_owned)
            .ok_or(AuthFailure::BadToken);
    }
    match credentials.certificate {
        Some(der) => certificate_name(der)
            .map(|name| principal(&name))
            .map_err(AuthFailure::BadCertificate),
        None => Err(AuthFailure::NoCredentials),
    }
}

/// The DNS names a certificate carries (its DNS subject alternative names), lower case.
pub fn certificate_dns_names(der: &[u8]) -> Result<Vec<String>, String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("unparsable: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(name) = name {
                names.push(name.to_ascii_lowercase());
            }
        }
    }
    Ok(names)
}

/// The name a client certificate gives its holder: URI SAN, else DNS SAN, else subject CN.
pub fn certificate_name(der: &[u8]) -> Result<String, String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("unparsable: {e}"))?;
    let mut dns = None;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(uri) => return checked(uri),
                GeneralName::DNSName(name) if dns.is_none() => dns = Some(*name),
                _ => {}
            }
        }
    }
    if let Some(name) = dns {
        return checked(name);
    }
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| "no URI or DNS subject alternative name and no common name".to_owned())?;
    checked(cn)
}

fn checked(name: &str) -> Result<String, String> {
    if valid_principal_name(name) {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "{name:?} is not a principal name (printable ASCII, no spaces, at most 256)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(&[
            TokenConfig {
                principal: "ci".into(),
                sha256: hex::encode(&sha256(b"token-for-ci")),
            },
            TokenConfig {
                principal: "ops".into(),
                sha256: hex::encode(&sha256(b"token-for-ops")),
            },
        ])
    }

    #[test]
    fn a_token_names_its_principal_and_nothing_else_does() {
        let tokens = tokens();
        let with = |value| Credentials {
            authorization: Some(value),
            certificate: None,
        };
        assert_eq!(
            authenticate(&tokens, &with("Bearer token-for-ops")),
            Ok("keyward:principal/ops".into())
        );
        assert_eq!(
            authenticate(&tokens, &with("Bearer token-for-nobody")),
            Err(AuthFailure::BadToken)
        );
        assert_eq!(
            authenticate(&tokens, &with("Basic token-for-ci")),
            Err(AuthFailure::MalformedAuthorization)
        );
        assert_eq!(
            authenticate(&tokens, &Credentials::default()),
            Err(AuthFailure::NoCredentials)
        );
    }

    #[test]
    fn certificates_name_by_uri_then_dns_then_common_name() {
        let make = |sans: Vec<rcgen::SanType>, cn: &str| {
            let mut params = rcgen::CertificateParams::default();
            params.subject_alt_names = sans;
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            let key = rcgen::KeyPair::generate().unwrap();
            params.self_signed(&key).unwrap().der().to_vec()
        };
        let dns = rcgen::SanType::DnsName("app.example".try_into().unwrap());
        let uri = rcgen::SanType::URI("spiffe://example/app".try_into().unwrap());
        assert_eq!(
            certificate_name(&make(vec![dns.clone(), uri], "cn")).unwrap(),
            "spiffe://example/app"
        );
        assert_eq!(
            certificate_name(&make(vec![dns], "cn")).unwrap(),
            "app.example"
        );
        assert_eq!(
            certificate_name(&make(vec![], "billing")).unwrap(),
            "billing"
        );
        assert!(certificate_name(&make(vec![], "two words")).is_err());
        assert!(certificate_name(b"not a certificate").is_err());
    }
}
