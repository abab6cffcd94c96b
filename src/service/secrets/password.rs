//! GetRandomPassword with AWS's options, from the root of trust's random generator.
//!
//! The work per password is bounded whatever the options: with `require_each_included_type`
//! one character of each class is placed first and the rest drawn from the whole alphabet,
//! then all are shuffled — never "draw until every class happens to appear", which options
//! like "one allowed digit in a four-character password" would turn into millions of hardware
//! calls. Random bytes come in at most [`MAX_ROUNDS`] rounds of `4 × length + 64` bytes.

use super::{SecretsError, SecretsService};
use crate::crypto::SecretBytes;
use zeroize::Zeroizing;

const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &str = "0123456789";
/// AWS's punctuation set.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

pub use crate::store::PasswordPolicy as PasswordOptions;

/// The character classes in use, each without the excluded characters.
fn classes(options: &PasswordOptions) -> Vec<Vec<char>> {
    let mut sets = Vec::new();
    for (set, excluded) in [
        (LOWER, options.exclude_lowercase),
        (UPPER, options.exclude_uppercase),
        (DIGITS, options.exclude_numbers),
        (PUNCTUATION, options.exclude_punctuation),
        (" ", !options.include_space),
    ] {
        if excluded {
            continue;
        }
        let chars: Vec<char> = set
            .chars()
            .filter(|c| !options.exclude_characters.contains(*c))
            .collect();
        if !chars.is_empty() {
            sets.push(chars);
        }
    }
    sets
}

/// Rounds of random bytes one password may take: running out of bytes after rejection
/// sampling once is already unlikely.
const MAX_ROUNDS: usize = 4;

/// Draws uniformly from `0..n` (n ≤ 65536) using bytes from `random`, by rejection: one
/// byte per draw for n ≤ 256, two above.
struct Draw<'a> {
    random: &'a [u8],
    at: usize,
}

impl Draw<'_> {
    fn below(&mut self, n: usize) -> Option<usize> {
        let width = if n <= 256 { 1 } else { 2 };
        let range = 1usize << (8 * width);
        let limit = range - (range % n);
        while let Some(bytes) = self.random.get(self.at..self.at + width) {
            self.at += width;
            let value = bytes.iter().fold(0usize, |v, b| (v << 8) | usize::from(*b));
            if value < limit {
                return Some(value % n);
            }
        }
        None
    }
}

impl SecretsService {
    pub async fn get_random_password(
        &self,
        options: PasswordOptions,
    ) -> Result<SecretBytes, SecretsError> {
        let length = options.password_length.unwrap_or(32);
        if !(1..=4096).contains(&length) {
            return Err(SecretsError::invalid(
                "password_length",
                "must be between 1 and 4096",
            ));
        }
        let length = length as usize;
        let sets = classes(&options);
        if sets.is_empty() {
            return Err(SecretsError::invalid(
                "exclude_characters",
                "every character is excluded",
            ));
        }
        let require_each = options.require_each_included_type.unwrap_or(true);
        if require_each && length < sets.len() {
            return Err(SecretsError::invalid(
                "password_length",
                format!(
                    "must be at least {} to include every character type",
                    sets.len()
                ),
            ));
        }
        // Every class is ASCII, so a password is its bytes.
        let sets: Vec<Vec<u8>> = sets
            .iter()
            .map(|set| set.iter().filter_map(|c| u8::try_from(*c).ok()).collect())
            .collect();
        let alphabet: Vec<u8> = sets.iter().flatten().copied().collect();
        let required: &[Vec<u8>] = if require_each { &sets } else { &[] };
        for _ in 0..MAX_ROUNDS {
            // A character and a shuffle step each take one or two bytes, more with rejection:
            // four per character is ample.
            let random = self.random(4 * length + 64).await?;
            if let Some(mut password) = assemble(random.expose(), &alphabet, required, length) {
                return Ok(SecretBytes::new(std::mem::take(&mut *password)));
            }
        }
        Err(SecretsError::Internal(
            "the random generator's bytes were rejected too often".into(),
        ))
    }

    async fn random(&self, len: usize) -> Result<SecretBytes, SecretsError> {
        // Sized once, so no reallocation leaves a copy of the random bytes behind.
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        while out.len() < len {
            let chunk = (len - out.len()).min(1024) as i32;
            let bytes = self
                .kms
                .generate_random(chunk)
                .await
                .map_err(SecretsError::from_kms_write)?;
            out.extend_from_slice(bytes.expose());
        }
        Ok(SecretBytes::new(std::mem::take(&mut *out)))
    }
}

/// `length` characters drawn with `random`: one from each of `required` (at most `length`
/// classes), the rest from `alphabet`, then shuffled (Fisher-Yates). None if `random` runs
/// out. The buffer is sized once and zeroized when dropped, a rejected draw too.
fn assemble(
    random: &[u8],
    alphabet: &[u8],
    required: &[Vec<u8>],
    length: usize,
) -> Option<Zeroizing<Vec<u8>>> {
    let mut draw = Draw { random, at: 0 };
    let mut password = Zeroizing::new(Vec::with_capacity(length));
    for class in required {
        password.push(class[draw.below(class.len())?]);
    }
    while password.len() < length {
        password.push(alphabet[draw.below(alphabet.len())?]);
    }
    for i in (1..password.len()).rev() {
        let j = draw.below(i + 1)?;
        password.swap(i, j);
    }
    Some(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusions_shape_the_classes() {
        let all = classes(&PasswordOptions::default());
        assert_eq!(all.len(), 4);
        assert_eq!(all.iter().map(Vec::len).sum::<usize>(), 26 + 26 + 10 + 32);
        let only_digits = classes(&PasswordOptions {
            exclude_lowercase: true,
            exclude_uppercase: true,
            exclude_punctuation: true,
            exclude_characters: "01".into(),
            ..Default::default()
        });
        assert_eq!(only_digits, vec!["23456789".chars().collect::<Vec<_>>()]);
        let with_space = classes(&PasswordOptions {
            include_space: true,
            ..Default::default()
        });
        assert_eq!(with_space.len(), 5);
    }

    #[test]
    fn a_password_is_assembled_in_a_zeroizing_buffer_of_its_size() {
        let alphabet = b"abc";
        // 255 is rejected for n = 3 (limit 255); then the shuffle: swap(3, 0 % 4), swap(2,
        // 0 % 3), swap(1, 0 % 2).
        let password: Zeroizing<Vec<u8>> =
            assemble(&[0, 255, 1, 2, 3, 0, 0, 0], alphabet, &[], 4).unwrap();
        assert_eq!(password.as_slice(), b"bcaa");
        assert_eq!(password.capacity(), 4, "no reallocation");
        assert!(
            assemble(&[0, 1], alphabet, &[], 3).is_none(),
            "ran out of random bytes"
        );
    }

    #[test]
    fn draws_are_uniform_by_rejection() {
        // 250..=255 are rejected for n = 10 (limit 250).
        let mut draw = Draw {
            random: &[255, 250, 9, 249],
            at: 0,
        };
        assert_eq!(draw.below(10), Some(9));
        assert_eq!(draw.below(10), Some(9));
        assert_eq!(draw.below(10), None);
    }

    #[test]
    fn every_required_class_appears_in_one_round_whatever_the_odds() {
        // One allowed character in each of three classes, four characters: drawing until
        // every class happened to appear would take ~10^5 rounds on average.
        let required = vec![b"a".to_vec(), b"B".to_vec(), b"7".to_vec()];
        let alphabet: Vec<u8> = (b'!'..=b'~').collect();
        let random: Vec<u8> = (0..=255u8).cycle().skip(11).take(4 * 4 + 64).collect();
        let password = assemble(&random, &alphabet, &required, 4).expect("enough bytes");
        assert_eq!(password.len(), 4);
        for class in &required {
            assert!(password.contains(&class[0]), "{:?}", password.as_slice());
        }
    }

    #[test]
    fn two_byte_draws_cover_ranges_above_256() {
        // 65536 - 65536 % 1000 = 65000: 0xFDE8 (65000) is rejected, 0x03E7 (999) is not.
        let mut draw = Draw {
            random: &[0xFD, 0xE8, 0x03, 0xE7],
            at: 0,
        };
        assert_eq!(draw.below(1000), Some(999));
        assert_eq!(draw.below(1000), None);
    }
}
