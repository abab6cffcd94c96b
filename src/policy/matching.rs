//! Wildcard matching for actions, resources, principals and `StringLike`.
//!
//! One iterative pass that remembers only the most recent `*`: a later `*` can absorb anything an
//! earlier one could, so older stars never need revisiting. That bounds the work by
//! pattern length × text length, where regex translation or naive recursion goes exponential on
//! patterns such as `*a*a*a*a*b`.

/// How literal characters compare in [`wildcard_match`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Sensitive,
    /// ASCII letters only: action names are ASCII, and full Unicode folding would need allocation.
    InsensitiveAscii,
}

/// `*` matches any sequence (including empty, `:` and `/`), `?` exactly one character.
/// No escape syntax exists, as in IAM.
pub fn wildcard_match(pattern: &str, text: &str, case: Case) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let mut pi = 0;
    let mut ti = 0;
    // (pattern index just after the last `*`, text index where that star's share currently ends)
    let mut star: Option<(usize, usize)> = None;

    while let Some(&tc) = t.get(ti) {
        match p.get(pi) {
            Some(b'*') => {
                pi += 1;
                star = Some((pi, ti));
                continue;
            }
            // Whole characters, not bytes, so `?` means one character of a non-ASCII ARN too.
            Some(b'?') => {
                pi += 1;
                ti += utf8_len(tc);
                continue;
            }
            Some(&pc) if bytes_equal(pc, tc, case) => {
                pi += 1;
                ti += 1;
                continue;
            }
            _ => {}
        }
        let Some((star_pi, star_ti)) = star else {
            return false;
        };
        let grown = star_ti + t.get(star_ti).map_or(1, |&b| utf8_len(b));
        star = Some((star_pi, grown));
        pi = star_pi;
        ti = grown;
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&b| b == b'*'))
}

/// Action matching is case-insensitive, as in IAM (`KMS:decrypt` grants `kms:Decrypt`).
pub(crate) fn action_matches(pattern: &str, action: &str) -> bool {
    wildcard_match(pattern, action, Case::InsensitiveAscii)
}

/// The ARN partitions Keyward answers to: its own, and AWS's (for tools that check ARNs
/// against AWS's pattern; `arn_partition` in the configuration picks the one it writes). An ARN
/// of either names the same resource, in requests and in policies.
pub const PARTITIONS: &[&str] = &["keyward", "aws"];

/// `arn` with its partition written as Keyward's, when it is one of [`PARTITIONS`]; anything
/// else as it is.
pub fn canonical_arn(arn: &str) -> std::borrow::Cow<'_, str> {
    match arn.strip_prefix("arn:aws:") {
        Some(rest) => std::borrow::Cow::Owned(format!("arn:keyward:{rest}")),
        None => std::borrow::Cow::Borrowed(arn),
    }
}

/// Resource ARNs are case-sensitive, as in IAM; either partition matches.
pub(crate) fn resource_matches(pattern: &str, resource: &str) -> bool {
    wildcard_match(
        &canonical_arn(pattern),
        &canonical_arn(resource),
        Case::Sensitive,
    )
}

/// Principals are compared as given (the server canonicalises the caller's name before
/// asking), an account's ARN in either partition.
pub(crate) fn principal_matches(pattern: &str, principal: &str) -> bool {
    wildcard_match(
        &canonical_arn(pattern),
        &canonical_arn(principal),
        Case::Sensitive,
    )
}

pub(crate) const PRINCIPAL_PREFIX: &str = "keyward:principal/";

/// Whether a principal pattern admits every principal. Names are never empty, so a name pattern of
/// stars with at most one `?` (`*`, `**`, `?*`) matches them all.
pub(crate) fn matches_every_principal(pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let Some(name) = pattern.strip_prefix(PRINCIPAL_PREFIX) else {
        return false;
    };
    let stars = name.bytes().filter(|&b| b == b'*').count();
    let questions = name.bytes().filter(|&b| b == b'?').count();
    stars > 0 && questions <= 1 && stars + questions == name.len()
}

/// Unicode-aware case-insensitive equality without allocating; ASCII takes the fast path.
pub(crate) fn eq_ignore_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

fn bytes_equal(a: u8, b: u8, case: Case) -> bool {
    match case {
        Case::Sensitive => a == b,
        Case::InsensitiveAscii => a.eq_ignore_ascii_case(&b),
    }
}

fn utf8_len(lead: u8) -> usize {
    match lead {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn m(p: &str, t: &str) -> bool {
        wildcard_match(p, t, Case::Sensitive)
    }

    #[test]
    fn literal_patterns_need_exact_text() {
        assert!(m("abc", "abc"));
        assert!(!m("abc", "abcd"));
        assert!(!m("abcd", "abc"));
        assert!(!m("abc", "abd"));
        assert!(m("", ""));
        assert!(!m("", "a"));
    }

    #[test]
    fn star_matches_any_sequence_including_empty() {
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("a*", "a"));
        assert!(m("a*c", "abbbc"));
        assert!(m("a*c", "ac"));
        assert!(!m("a*c", "abcd"));
        assert!(m("*c", "abcabc"));
        assert!(m("a**b", "ab"));
    }

    #[test]
    fn star_crosses_colons_and_slashes() {
        let arn = "arn:aws:secretsmanager:us-east-1:000000000000:secret:prod/db/main-AbCdEf";
        assert!(m("arn:aws:secretsmanager:*:secret:prod/*", arn));
        assert!(m("arn:*", arn));
        assert!(m("*main-*", arn));
        assert!(!m("arn:aws:secretsmanager:*:secret:dev/*", arn));
    }

    #[test]
    fn question_mark_is_exactly_one_character() {
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(!m("a?c", "abbc"));
        assert!(m("secret:prod-??????", "secret:prod-AbCdEf"));
        assert!(!m("secret:prod-??????", "secret:prod-AbCdE"));
        // One character even when it takes several bytes.
        assert!(m("a?c", "aéc"));
        assert!(m("a?c", "a😀c"));
        assert!(!m("a??c", "aéc"));
        assert!(m("*?", "é"));
    }

    #[test]
    fn non_ascii_literals_match_bytewise() {
        assert!(m("prod/é*", "prod/éclair"));
        assert!(!m("prod/é*", "prod/èclair"));
        assert!(m("*ü", "grün/ü"));
    }

    #[test]
    fn actions_are_case_insensitive() {
        assert!(action_matches("kms:Decrypt", "kms:decrypt"));
        assert!(action_matches("KMS:DECRYPT", "kms:Decrypt"));
        assert!(action_matches(
            "secretsmanager:get*",
            "secretsmanager:GetSecretValue"
        ));
        assert!(!action_matches("kms:Decrypt", "kms:Encrypt"));
    }

    #[test]
    fn resources_are_case_sensitive() {
        // Either partition names the same resource.
        assert!(resource_matches(
            "arn:aws:secretsmanager:r:a:secret:prod/*",
            "arn:keyward:secretsmanager:r:a:secret:prod/x"
        ));
        assert!(resource_matches(
            "arn:keyward:kms:r:a:key/*",
            "arn:aws:kms:r:a:key/k"
        ));
        assert!(!resource_matches(
            "arn:aws-cn:kms:r:a:key/*",
            "arn:keyward:kms:r:a:key/k"
        ));
        assert!(resource_matches(
            "arn:aws:kms:*:key/ABC",
            "arn:aws:kms:x:key/ABC"
        ));
        assert!(!resource_matches(
            "arn:aws:kms:*:key/abc",
            "arn:aws:kms:x:key/ABC"
        ));
        assert!(!resource_matches(
            "arn:aws:secretsmanager:*:secret:Prod/*",
            "arn:aws:secretsmanager:r:secret:prod/x"
        ));
    }

    #[test]
    fn pathological_pattern_finishes_fast() {
        let text = "a".repeat(100_000);
        let started = Instant::now();
        assert!(!m("*a*a*a*a*a*a*b", &text));
        assert!(!m("a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", &text));
        assert!(m("*a*a*a*a*a*a*a", &text));
        // Exponential backtracking would not finish at all; quadratic would take far longer.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn every_principal_patterns() {
        assert!(matches_every_principal("*"));
        assert!(matches_every_principal("keyward:principal/*"));
        assert!(matches_every_principal("keyward:principal/**"));
        assert!(matches_every_principal("keyward:principal/?*"));
        assert!(!matches_every_principal("keyward:principal/??*"));
        assert!(!matches_every_principal("keyward:principal/?"));
        assert!(!matches_every_principal("keyward:principal/app*"));
        assert!(!matches_every_principal("keyward:principal/"));
        assert!(!matches_every_principal("keyward:*"));
    }

    #[test]
    fn ignore_case_equality_handles_unicode() {
        assert!(eq_ignore_case("Billing", "bILLING"));
        assert!(eq_ignore_case("ÄPFEL", "äpfel"));
        assert!(!eq_ignore_case("äpfel", "apfel"));
        assert!(!eq_ignore_case("abc", "abcd"));
    }
}
