//! GetRandomPassword with AWS's options, from the root of trust's random generator.

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

/// Draws uniformly from `0..n` using bytes from `random`, by rejection.
struct Draw<'a> {
    random: &'a [u8],
    at: usize,
}

impl Draw<'_> {
    fn below(&mut self, n: usize) -> Option<usize> {
        // n <= 256 for every alphabet here.
        let limit = 256 - (256 % n);
        while let Some(&b) = self.random.get(self.at) {
            self.at += 1;
            if (b as usize) < limit {
                return Some(b as usize % n);
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
        let alphabet: Vec<u8> = sets
            .iter()
            .flatten()
            .filter_map(|c| u8::try_from(*c).ok())
            .collect();
        loop {
            // Rejection sampling may need more bytes than characters; twice is ample, and the
            // loop draws again in the unlikely case it is not.
            let random = self.random(2 * length + 64).await?;
            let Some(mut password) = assemble(random.expose(), &alphabet, length) else {
                continue;
            };
            if require_each
                && !sets
                    .iter()
                    .all(|set| set.iter().any(|c| password.contains(&(*c as u8))))
            {
                continue;
            }
            return Ok(SecretBytes::new(std::mem::take(&mut *password)));
        }
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

/// `length` characters of `alphabet` drawn with `random`, or None
/// if it runs out. The buffer is sized once and zeroized when dropped, a rejected draw too.
fn assemble(random: &[u8], alphabet: &[u8], length: usize) -> Option<Zeroizing<Vec<u8>>> {
    let mut draw = Draw { random, at: 0 };
    let mut password = Zeroizing::new(Vec::with_capacity(length));
    while password.len() < length {
        password.push(alphabet[draw.below(alphabet.len())?]);
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
        // 255 is rejected for n = 3 (limit 255).
        let password: Zeroizing<Vec<u8>> = assemble(&[0, 255, 1, 2, 3], alphabet, 4).unwrap();
        assert_eq!(password.as_slice(), b"abca");
        assert_eq!(password.capacity(), 4, "no reallocation");
        assert!(
            assemble(&[0, 1], alphabet, 3).is_none(),
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
}
