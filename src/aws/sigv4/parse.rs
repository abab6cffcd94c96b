//! The `Authorization` header and the `X-Amz-Date` timestamp.
//!
//! Both parsers are strict: anything a conforming AWS SDK would not produce is
//! refused as [`SigError::IncompleteSignature`] before any key is looked up or
//! any HMAC is computed, so malformed input costs the server almost nothing.

use super::{ALGORITHM, SigError, TERMINATOR};
use crate::crypto::hex;

/// Credential scope components are echoed back in error messages, so they are
/// kept short and to the character set real regions and services use.
const MAX_SCOPE_PART: usize = 64;

/// AWS access key ids are 16 to 128 upper-case alphanumerics; allowing any
/// alphanumeric keeps on-prem key formats open without admitting separators.
const MAX_ACCESS_KEY_ID: usize = 128;

/// A parsed `Authorization: AWS4-HMAC-SHA256 ...` header. The string slices
/// borrow from the header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthHeader<'a> {
    pub access_key_id: &'a str,
    /// `YYYYMMDD`, already checked to be eight ASCII digits.
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    /// Lower-case, strictly ascending, non-empty header names.
    pub signed_headers: Vec<&'a str>,
    pub signature: [u8; 32],
}

impl AuthHeader<'_> {
    pub(crate) fn signs(&self, name: &str) -> bool {
        self.signed_headers.contains(&name)
    }
}

fn incomplete(msg: impl Into<String>) -> SigError {
    SigError::IncompleteSignature(msg.into())
}

/// Parses `AWS4-HMAC-SHA256 Credential=.../aws4_request, SignedHeaders=a;b, Signature=hex`.
///
/// Whitespace around the commas and after the algorithm is tolerated because
/// SDKs differ (most send `", "`, some send `","`). Parameter names are matched
/// case-sensitively, as every SDK emits them in this exact spelling.
pub(crate) fn parse_authorization(value: &str) -> Result<AuthHeader<'_>, SigError> {
    let value = value.trim_matches(is_ows);
    let (algorithm, params) = match value.split_once(is_ows) {
        Some((algorithm, params)) => (algorithm, params.trim_matches(is_ows)),
        None => (value, ""),
    };
    if algorithm != ALGORITHM {
        return Err(incomplete(format!(
            "Unsupported Authorization algorithm; only {ALGORITHM} is accepted."
        )));
    }

    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    if !params.is_empty() {
        for part in params.split(',') {
            let part = part.trim_matches(is_ows);
            let Some((key, val)) = part.split_once('=') else {
                return Err(incomplete(
                    "Authorization header parameters must be of the form Name=Value, separated by commas.",
                ));
            };
            let slot = match key.trim_matches(is_ows) {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed_headers,
                "Signature" => &mut signature,
                _ => {
                    return Err(incomplete(
                        "Authorization header contains an unknown parameter; only Credential, SignedHeaders and Signature are allowed.",
                    ));
                }
            };
            if slot.is_some() {
                return Err(incomplete(format!(
                    "Authorization header contains the '{}' parameter more than once.",
                    key.trim_matches(is_ows)
                )));
            }
            *slot = Some(val.trim_matches(is_ows));
        }
    }

    // AWS lists every missing parameter in one message; do the same so a
    // hand-rolled client learns everything it got wrong from one response.
    let mut missing = String::new();
    for (name, present) in [
        ("Credential", credential.is_some()),
        ("Signature", signature.is_some()),
        ("SignedHeaders", signed_headers.is_some()),
    ] {
        if !present {
            if !missing.is_empty() {
                missing.push(' ');
            }
            missing.push_str("Authorization header requires '");
            missing.push_str(name);
            missing.push_str("' parameter.");
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(incomplete(missing));
    };

    let (access_key_id, date, region, service) = parse_credential(credential)?;
    let signed_headers = parse_signed_headers(signed_headers)?;
    let signature = hex::decode_any_case::<32>(signature)
        .ok_or_else(|| incomplete("Signature must be 64 hexadecimal characters."))?;

    Ok(AuthHeader {
        access_key_id,
        date,
        region,
        service,
        signed_headers,
        signature,
    })
}

fn parse_credential(credential: &str) -> Result<(&str, &str, &str, &str), SigError> {
    let mut parts = credential.split('/');
    let (Some(akid), Some(date), Some(region), Some(service), Some(terminator), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(incomplete(
            "Credential must have the form <access key id>/<YYYYMMDD>/<region>/<service>/aws4_request.",
        ));
    };
    if akid.is_empty()
        || akid.len() > MAX_ACCESS_KEY_ID
        || !akid.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(incomplete("Credential has a malformed access key id."));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(incomplete("Credential date must be YYYYMMDD."));
    }
    if !is_scope_part(region) {
        return Err(incomplete("Credential has a malformed region."));
    }
    if !is_scope_part(service) {
        return Err(incomplete("Credential has a malformed service name."));
    }
    if terminator != TERMINATOR {
        return Err(incomplete(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}'."
        )));
    }
    Ok((akid, date, region, service))
}

fn is_scope_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SCOPE_PART
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// SDKs always send the list lower-cased, sorted and without duplicates, and
/// the canonical request embeds it verbatim. Accepting any other shape would
/// mean choosing between "canonicalise it" and "use it as sent", and either
/// choice lets two different header lists describe one request; refusing it
/// avoids the question.
fn parse_signed_headers(list: &str) -> Result<Vec<&str>, SigError> {
    let mut names: Vec<&str> = Vec::new();
    for name in list.split(';') {
        if name.is_empty() || !name.bytes().all(is_lower_token_byte) {
            return Err(incomplete(
                "SignedHeaders must be a ';'-separated list of lower-case header names.",
            ));
        }
        if names.last().is_some_and(|prev| *prev >= name) {
            return Err(incomplete(
                "SignedHeaders must be sorted and must not repeat a header.",
            ));
        }
        names.push(name);
    }
    Ok(names)
}

/// RFC 9110 `tchar`, minus upper-case letters.
fn is_lower_token_byte(b: u8) -> bool {
    b.is_ascii_lowercase()
        || b.is_ascii_digit()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

    fn err(value: &str) -> String {
        match parse_authorization(value) {
            Err(SigError::IncompleteSignature(msg)) => msg,
            other => panic!("expected IncompleteSignature for {value:?}, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_suite_header() {
        let h = parse_authorization(GOOD).unwrap();
        assert_eq!(h.access_key_id, "AKIDEXAMPLE");
        assert_eq!(h.date, "20150830");
        assert_eq!(h.region, "us-east-1");
        assert_eq!(h.service, "service");
        assert_eq!(h.signed_headers, ["host", "x-amz-date"]);
        assert_eq!(h.signature[0], 0x5f);
        assert_eq!(h.signature[31], 0x31);
    }

    #[test]
    fn tolerates_missing_and_extra_spaces_after_commas() {
        let tight = GOOD.replace(", ", ",");
        let loose = GOOD.replace(", ", " ,   ");
        let tabbed = GOOD.replacen(' ', " \t ", 1);
        for v in [&tight, &loose, &tabbed] {
            assert_eq!(
                parse_authorization(v).unwrap(),
                parse_authorization(GOOD).unwrap()
            );
        }
    }

    #[test]
    fn refuses_other_algorithms() {
        assert!(err(&GOOD.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1")).contains("algorithm"));
        assert!(err(&GOOD.replace("AWS4-HMAC-SHA256", "aws4-hmac-sha256")).contains("algorithm"));
        assert!(err("Bearer abc").contains("algorithm"));
        assert!(err("AWS AKIDEXAMPLE:c2lnbmF0dXJl").contains("algorithm"));
    }

    #[test]
    fn names_every_missing_parameter() {
        let msg = err("AWS4-HMAC-SHA256");
        assert!(msg.contains("'Credential'"), "{msg}");
        assert!(msg.contains("'Signature'"), "{msg}");
        assert!(msg.contains("'SignedHeaders'"), "{msg}");
        let msg =
            err("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request");
        assert!(!msg.contains("'Credential'"), "{msg}");
        assert!(msg.contains("'Signature'"), "{msg}");
    }

    #[test]
    fn refuses_duplicate_unknown_and_shapeless_parameters() {
        assert!(err(&format!("{GOOD}, Signature=00")).contains("more than once"));
        assert!(err(&format!("{GOOD}, Foo=bar")).contains("unknown"));
        assert!(err(&format!("{GOOD}, Foo")).contains("Name=Value"));
        assert!(err(&format!("{GOOD},")).contains("Name=Value"));
        assert!(err(&GOOD.replace("Credential=", "credential=")).contains("unknown"));
    }

    #[test]
    fn refuses_malformed_credentials() {
        let cases = [
            ("AKIDEXAMPLE/20150830/us-east-1/service", "form"),
            (
                "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request/x",
                "form",
            ),
            ("/20150830/us-east-1/service/aws4_request", "access key"),
            (
                "AKID-EX/20150830/us-east-1/service/aws4_request",
                "access key",
            ),
            ("AKIDEXAMPLE/2015083/us-east-1/service/aws4_request", "date"),
            (
                "AKIDEXAMPLE/2015083O/us-east-1/service/aws4_request",
                "date",
            ),
            ("AKIDEXAMPLE/20150830//service/aws4_request", "region"),
            (
                "AKIDEXAMPLE/20150830/US-EAST-1/service/aws4_request",
                "region",
            ),
            (
                "AKIDEXAMPLE/20150830/us-east-1/se rvice/aws4_request",
                "service",
            ),
            (
                "AKIDEXAMPLE/20150830/us-east-1/service/aws4_requests",
                "terminator",
            ),
            (
                "AKIDEXAMPLE/20150830/us-east-1/service/aws5_request",
                "terminator",
            ),
        ];
        for (cred, needle) in cases {
            let v = GOOD.replace("AKIDEXAMPLE/20150830/us-east-1/service/aws4_request", cred);
            let msg = err(&v);
            assert!(msg.contains(needle), "{cred}: {msg}");
        }
        let long = "a".repeat(MAX_SCOPE_PART + 1);
        let v = GOOD.replace("us-east-1", &long);
        assert!(err(&v).contains("region"));
    }

    #[test]
    fn refuses_malformed_signed_headers() {
        for list in [
            "",
            "host;;x-amz-date",
            "Host;x-amz-date",
            "x-amz-date;host",
            "host;host;x-amz-date",
            "host;x amz",
        ] {
            let v = GOOD.replace("host;x-amz-date", list);
            let msg = err(&v);
            assert!(msg.contains("SignedHeaders"), "{list:?}: {msg}");
        }
    }

    #[test]
    fn refuses_non_hex_or_wrong_length_signatures() {
        let sig = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        for bad in [
            &sig[..63],
            &format!("{sig}0"),
            &sig.replace('f', "g"),
            "",
            &format!("{}é", &sig[..62]),
        ] {
            let msg = err(&GOOD.replace(sig, bad));
            assert!(msg.contains("64 hexadecimal"), "{bad:?}: {msg}");
        }
        // Upper-case hex names the same 32 bytes.
        let upper = GOOD.replace(sig, &sig.to_uppercase());
        let upper = parse_authorization(&upper).unwrap();
        assert_eq!(
            upper.signature,
            parse_authorization(GOOD).unwrap().signature
        );
    }
}
