//! AWS Signature Version 4 verification for requests in the AWS JSON 1.1
//! protocol (the wire format of Secrets Manager and KMS), so that unmodified
//! AWS SDKs and the `aws` CLI can authenticate to Keyward.
//!
//! Only header-based authentication is implemented: an `Authorization:
//! AWS4-HMAC-SHA256 ...` header plus an `X-Amz-Date` header, which is what
//! every SDK sends to JSON-protocol services.
//!
//! # What [`Verifier::verify`] checks, in this order
//!
//! 1. An `Authorization` header is present (else [`SigError::MissingAuthentication`]).
//! 2. It parses: algorithm `AWS4-HMAC-SHA256`; exactly one each of
//!    `Credential`, `SignedHeaders`, `Signature`; credential
//!    `AKID/YYYYMMDD/region/service/aws4_request`; signed headers lower-case,
//!    sorted, unique; signature 64 hex digits.
//! 3. `X-Amz-Date` is present once and well-formed. The `Date` header is
//!    **not** accepted as a substitute (AWS allows it; no SDK relies on it for
//!    these services, and one timestamp source is one less ambiguity).
//! 4. `SignedHeaders` includes `host` and `x-amz-date`, and every header it
//!    lists is present in the request.
//!
//!    Steps 2-4 fail with [`SigError::IncompleteSignature`].
//! 5. The credential-scope date equals the date part of `X-Amz-Date`
//!    ([`SigError::ScopeDateMismatch`]).
//! 6. The scope's region is the server's ([`SigError::WrongRegion`]) and its
//!    service is one the caller allows ([`SigError::WrongService`]).
//! 7. `|now - X-Amz-Date| <= max_skew_secs` ([`SigError::Expired`]).
//! 8. The access key id is known ([`SigError::UnknownAccessKey`]).
//! 9. A client-sent `x-amz-content-sha256` equals the SHA-256 of the body
//!    ([`SigError::SignatureMismatch`]); the canonical request always uses the
//!    hash computed here, never the client's.
//! 10. The recomputed signature equals the sent one, compared in constant
//!     time ([`SigError::SignatureMismatch`]).
//!
//! Why this order: AWS does not document it. The one public hint found is
//! aws-sdk-java#1097, where a client whose credentials had not even loaded
//! was answered "Credential should be scoped to a valid region", which
//! suggests the stateless scope checks run before the key lookup; the clock
//! check is stateless too and sits with them (its place relative to the key
//! lookup on real AWS is unconfirmed). Everything that needs the secret comes
//! last, so requests that could never verify cost no credential lookup and no
//! HMAC. Note that distinguishing [`SigError::UnknownAccessKey`] from
//! [`SigError::SignatureMismatch`] tells a caller whether an access key id
//! exists; AWS does the same, and the SDKs depend on the distinct error names.
//!
//! # Canonicalisation choices (see `canonical.rs`)
//!
//! * Path: normalised (`.`, `..`, empty segments removed) and URI-encoded once
//!   more than it was on the wire — the non-S3 "double encoding". The JSON
//!   protocol always uses `/`.
//! * Query: each key and value percent-decoded then strictly re-encoded,
//!   sorted by key then value; `+` is a literal plus.
//! * Headers: names as listed, values trimmed with inner whitespace collapsed,
//!   repeats joined with `,`. A missing `Host` (HTTP/2) falls back to the URI
//!   authority.
//!
//! # Not supported
//!
//! Presigned (query-string) authentication, S3's `UNSIGNED-PAYLOAD` and
//! `STREAMING-*` payload modes (any `x-amz-content-sha256` other than the body
//! hash is a mismatch), chunked signing, SigV4a, and `X-Amz-Security-Token`
//! (a signed token header is verified like any other header but its value is
//! not interpreted: the integrator must refuse it if Keyward issues no
//! temporary credentials).
//!
//! # Notes for the integrator
//!
//! * The whole body must be buffered before [`Verifier::verify`]; cap its size
//!   first, since hashing is linear in it.
//! * SigV4 has no replay protection beyond the skew window: a captured request
//!   can be replayed for up to `max_skew_secs`.
//! * The SDKs sign `x-amz-target` and `content-type`, but nothing forces a
//!   hand-made client to. If routing depends on `X-Amz-Target`, check
//!   [`Verified::signed_headers`] contains `x-amz-target`, or an attacker
//!   replaying within the window could re-target a captured request.
//! * [`SigError`]'s `Display` text follows AWS's wording and is safe to return:
//!   it never contains secrets, and echoes only scope parts (restricted to
//!   `[a-z0-9-]`, at most 64 characters) and header names from
//!   `SignedHeaders` (restricted to lower-case token characters).

// Repeated from lib.rs so the lints travel with this module when it moves
// into another crate: all input here comes from unauthenticated clients.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

/// The only algorithm accepted. SigV4a (`AWS4-ECDSA-P256-SHA256`) is a different
/// scheme with asymmetric keys and region sets; it is refused.
pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The fixed last element of every SigV4 credential scope.
pub(crate) const TERMINATOR: &str = "aws4_request";

mod canonical;
mod parse;
mod signing;
#[cfg(test)]
mod tests;

use http::header::{AUTHORIZATION, HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri};

use crate::outcome::Exception;
use crate::time::Timestamp;
use canonical::RequestParts;

/// Default clock tolerance; AWS allows five minutes either way.
pub const DEFAULT_MAX_SKEW_SECS: i64 = 300;

const X_AMZ_DATE: &str = "x-amz-date";
const X_AMZ_CONTENT_SHA256: &str = "x-amz-content-sha256";

/// Headers [`sign`] leaves out of the signature, like the AWS SDKs do:
/// proxies and client libraries rewrite them.
const UNSIGNED_HEADERS: [&str; 5] = [
    "authorization",
    "user-agent",
    "x-amzn-trace-id",
    "expect",
    "transfer-encoding",
];

/// What the server knows: its region and the current time. Secret keys come
/// from the [`Credentials`] passed to [`Verifier::verify`].
#[derive(Debug, Clone, Copy)]
pub struct Verifier<'a> {
    pub region: &'a str,
    pub now_epoch_secs: i64,
    /// Normally [`DEFAULT_MAX_SKEW_SECS`].
    pub max_skew_secs: i64,
}

/// A lookup of secret access keys by access key id.
pub trait Credentials {
    /// The secret access key and the principal name for an access key id.
    fn lookup(&self, access_key_id: &str) -> Option<(&[u8], &str)>;
}

/// A request whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key_id: String,
    pub principal: String,
    /// The service from the credential scope, one of the allowed services.
    pub service: String,
    /// The headers the signature covers (lower-case, sorted).
    pub signed_headers: Vec<String>,
    /// The request's `X-Amz-Date`, as seconds since the Unix epoch.
    pub request_epoch_secs: i64,
}

/// Why a request was refused. `Display` gives an AWS-style message;
/// [`SigError::exception`] gives the AWS error code to send with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigError {
    /// No `Authorization` header at all.
    #[error("Request is missing Authentication Token")]
    MissingAuthentication,
    /// Malformed `Authorization`, missing or malformed `X-Amz-Date`, a
    /// required header left unsigned, or a listed header absent.
    #[error("{0}")]
    IncompleteSignature(String),
    #[error("The security token included in the request is invalid.")]
    UnknownAccessKey,
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )]
    SignatureMismatch,
    #[error("Credential should be scoped to a valid region, not '{got}'.")]
    WrongRegion { expected: String, got: String },
    /// The scope's service is not in the allowed set; carries the scope's service.
    #[error("Credential should be scoped to correct service, not '{0}'.")]
    WrongService(String),
    /// `skew_secs` is `now - request time`: positive when the request is too
    /// old, negative when it is from the future.
    #[error("{}", expired_message(*skew_secs))]
    Expired { skew_secs: i64 },
    /// The credential scope names a different day than `X-Amz-Date`.
    #[error(
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{scope_date}' != '{request_date}'."
    )]
    ScopeDateMismatch {
        scope_date: String,
        request_date: String,
    },
}

fn expired_message(skew_secs: i64) -> String {
    if skew_secs >= 0 {
        format!(
            "Signature expired: the request time is {skew_secs} seconds earlier than the server time."
        )
    } else {
        format!(
            "Signature not yet current: the request time is {} seconds later than the server time.",
            skew_secs.unsigned_abs()
        )
    }
}

impl SigError {
    /// The AWS JSON-protocol error (`__type`) for this error.
    pub fn exception(&self) -> Exception {
        match self {
            SigError::MissingAuthentication => Exception::MissingAuthenticationToken,
            SigError::IncompleteSignature(_) => Exception::IncompleteSignature,
            SigError::UnknownAccessKey => Exception::UnrecognizedClient,
            SigError::SignatureMismatch
            | SigError::WrongRegion { .. }
            | SigError::WrongService(_)
            | SigError::Expired { .. }
            | SigError::ScopeDateMismatch { .. } => Exception::InvalidSignature,
        }
    }
}

fn incomplete(msg: impl Into<String>) -> SigError {
    SigError::IncompleteSignature(msg.into())
}

/// The value of a header that must appear exactly once, as visible ASCII.
/// `Ok(None)` when absent.
fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &str,
    display: &str,
) -> Result<Option<&'h str>, SigError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(incomplete(format!(
            "The request must not contain more than one {display} header."
        )));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| incomplete(format!("The {display} header must be visible ASCII.")))
}

impl Verifier<'_> {
    /// `allowed_services`: e.g. `["secretsmanager"]` for a request whose
    /// `X-Amz-Target` is `secretsmanager.*`.
    pub fn verify(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        allowed_services: &[&str],
        credentials: &dyn Credentials,
    ) -> Result<Verified, SigError> {
        let auth = match single_header(headers, AUTHORIZATION.as_str(), "Authorization")? {
            Some(value) if !value.trim().is_empty() => value,
            _ => return Err(SigError::MissingAuthentication),
        };
        let auth = parse::parse_authorization(auth)?;

        let amz_date = single_header(headers, X_AMZ_DATE, "X-Amz-Date")?.ok_or_else(|| {
            incomplete("Authorization header requires existence of a 'X-Amz-Date' header.")
        })?;
        let request_time = Timestamp::parse_iso8601_basic(amz_date)
            .map(Timestamp::secs)
            .ok_or_else(|| incomplete("X-Amz-Date must have the form YYYYMMDD'T'HHMMSS'Z'."))?;

        for required in ["host", X_AMZ_DATE] {
            if !auth.signs(required) {
                return Err(incomplete(format!(
                    "'{required}' must be a signed header (listed in SignedHeaders)."
                )));
            }
        }
        let authority = uri.authority().map(|a| a.as_str());
        for &name in &auth.signed_headers {
            if !canonical::header_present(headers, authority, name) {
                return Err(canonical::absent_signed_header(name));
            }
        }

        let request_date = amz_date.get(..8).unwrap_or_default();
        if auth.date != request_date {
            return Err(SigError::ScopeDateMismatch {
                scope_date: auth.date.to_owned(),
                request_date: request_date.to_owned(),
            });
        }

        if auth.region != self.region {
            return Err(SigError::WrongRegion {
                expected: self.region.to_owned(),
                got: auth.region.to_owned(),
            });
        }
        if !allowed_services.contains(&auth.service) {
            return Err(SigError::WrongService(auth.service.to_owned()));
        }

        let skew_secs = self.now_epoch_secs.saturating_sub(request_time);
        if skew_secs.unsigned_abs() > self.max_skew_secs.max(0).unsigned_abs() {
            return Err(SigError::Expired { skew_secs });
        }

        let (secret, principal) = credentials
            .lookup(auth.access_key_id)
            .ok_or(SigError::UnknownAccessKey)?;

        let payload_hash = canonical::payload_hash(body);
        let claimed = single_header(headers, X_AMZ_CONTENT_SHA256, "X-Amz-Content-Sha256")
            .map_err(|_| SigError::SignatureMismatch)?;
        if let Some(claimed) = claimed
            && !crate::crypto::ct_eq(
                claimed.to_ascii_lowercase().as_bytes(),
                payload_hash.as_bytes(),
            )
        {
            return Err(SigError::SignatureMismatch);
        }

        let parts = RequestParts {
            method: method.as_str(),
            path: uri.path(),
            query: uri.query(),
            headers,
            authority,
        };
        let creq = canonical::canonical_request(&parts, &auth.signed_headers, &payload_hash)?;
        let scope = signing::credential_scope(auth.date, auth.region, auth.service);
        let sts = signing::string_to_sign(amz_date, &scope, &creq);
        let expected = signing::signing_key(secret, auth.date, auth.region, auth.service)
            .and_then(|key| signing::signature(&key, &sts))
            .ok_or(SigError::SignatureMismatch)?;
        if !crate::crypto::ct_eq(&expected, &auth.signature) {
            return Err(SigError::SignatureMismatch);
        }

        Ok(Verified {
            access_key_id: auth.access_key_id.to_owned(),
            principal: principal.to_owned(),
            service: auth.service.to_owned(),
            signed_headers: auth.signed_headers.iter().map(|&s| s.to_owned()).collect(),
            request_epoch_secs: request_time,
        })
    }
}

/// Client side, for tests and tooling: signs a request in place.
///
/// Sets `X-Amz-Date` (replacing any), adds `Host` from the URI authority when
/// absent, replaces any `Authorization`, and signs every header present except
/// those the AWS SDKs also skip (`user-agent`, `x-amzn-trace-id`, `expect`,
/// `transfer-encoding`). `X-Amz-Content-Sha256` is sent only if asked for: if
/// `headers` already contains that header (any value, e.g. empty), its value is
/// replaced with the body's hash and signed.
///
/// Errors ([`SigError::IncompleteSignature`]) when there is neither a `Host`
/// header nor a URI authority, when `epoch_secs` falls outside years
/// 0000-9999, or when a credential part cannot appear in a header.
// The arguments mirror what `verify` takes plus the credentials; bundling them
// into a struct would only add ceremony to a test and tooling helper.
#[allow(clippy::too_many_arguments)]
pub fn sign(
    method: &Method,
    uri: &Uri,
    headers: &mut HeaderMap,
    body: &[u8],
    access_key_id: &str,
    secret: &[u8],
    region: &str,
    service: &str,
    epoch_secs: i64,
) -> Result<(), SigError> {
    let amz_date = Timestamp::from_secs(epoch_secs)
        .iso8601_basic()
        .ok_or_else(|| incomplete("The signing time is outside years 0000-9999."))?;
    let date = amz_date.get(..8).unwrap_or_default();
    let header_value = |v: &str| {
        HeaderValue::from_str(v).map_err(|_| incomplete("Value cannot be sent as a header."))
    };

    headers.remove(AUTHORIZATION);
    headers.insert(
        HeaderName::from_static(X_AMZ_DATE),
        header_value(&amz_date)?,
    );
    if !headers.contains_key(HOST) {
        let authority = uri
            .authority()
            .ok_or_else(|| incomplete("Cannot sign without a Host header or a URI authority."))?;
        headers.insert(HOST, header_value(authority.as_str())?);
    }
    let payload_hash = canonical::payload_hash(body);
    if headers.contains_key(X_AMZ_CONTENT_SHA256) {
        headers.insert(
            HeaderName::from_static(X_AMZ_CONTENT_SHA256),
            header_value(&payload_hash)?,
        );
    }

    // `HeaderName`s are already lower-case; `keys()` yields each name once.
    let mut signed: Vec<String> = headers
        .keys()
        .map(|name| name.as_str().to_owned())
        .filter(|name| !UNSIGNED_HEADERS.contains(&name.as_str()))
        .collect();
    signed.sort_unstable();
    let signed: Vec<&str> = signed.iter().map(String::as_str).collect();

    let parts = RequestParts {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query(),
        headers,
        authority: uri.authority().map(|a| a.as_str()),
    };
    let creq = canonical::canonical_request(&parts, &signed, &payload_hash)?;
    let scope = signing::credential_scope(date, region, service);
    let sts = signing::string_to_sign(&amz_date, &scope, &creq);
    let signature = signing::signing_key(secret, date, region, service)
        .and_then(|key| signing::signature(&key, &sts))
        .ok_or_else(|| incomplete("HMAC-SHA256 could not be computed."))?;

    let authorization = format!(
        "{} Credential={access_key_id}/{scope}, SignedHeaders={}, Signature={}",
        ALGORITHM,
        signed.join(";"),
        crate::crypto::hex::encode(&signature)
    );
    headers.insert(AUTHORIZATION, header_value(&authorization)?);
    Ok(())
}
