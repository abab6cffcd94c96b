//! Durations as the configuration file writes them; a leaf, so that the alarms' rules (a
//! layer below `config`) read theirs the same way. A key keeps the name it always had (`*_ms`, `*_secs`)
//! and the bare number it always took, in the unit its name ends with; it also takes a string
//! with a unit ("500ms", "30s", "10m", "1h"), so a reader never has to count zeros. Renaming
//! the keys would have broken every existing file for no gain: the suffix says what a bare
//! number means, and a string says it itself.
//!
//! Used with `#[serde(deserialize_with = "duration::millis")]` (or `secs`); an `Option` field
//! takes the `optional_*` form.

use serde::{Deserializer, de};
use std::fmt;
use std::time::Duration;

/// What the error messages list as accepted.
pub const ACCEPTED: &str = "a duration such as \"500ms\", \"30s\", \"10m\" or \"1h\"";

/// Parses `<digits><unit>` with unit `ms`, `s`, `m` or `h`. One unit only: "1h30m" is
/// "90m", which nobody misreads.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit: expected {ACCEPTED}"))?;
    let (number, unit) = text.split_at(split);
    let bad = || format!("{text:?} is not {ACCEPTED}");
    let number: u64 = number.parse().map_err(|_| bad())?;
    let per_unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    number
        .checked_mul(per_unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// Shows a duration the way the file would write it: the largest unit that divides it.
pub fn display(duration: Duration) -> String {
    let ms = duration.as_millis();
    match ms {
        0 => "0s".into(),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        _ => format!("{ms}ms"),
    }
}

#[derive(Clone, Copy)]
enum Unit {
    Millis,
    Secs,
}

impl Unit {
    fn of(self, number: u64) -> Duration {
        match self {
            Self::Millis => Duration::from_millis(number),
            Self::Secs => Duration::from_secs(number),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Millis => "milliseconds",
            Self::Secs => "seconds",
        }
    }
}

struct Visitor(Unit);

impl de::Visitor<'_> for Visitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a whole number of {} or {ACCEPTED}", self.0.name())
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<Duration, E> {
        Ok(self.0.of(number))
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<Duration, E> {
        u64::try_from(number)
            .map(|n| self.0.of(n))
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(number), &self))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        parse(text).map_err(E::custom)
    }
}

/// A bare number is milliseconds.
pub fn millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(Visitor(Unit::Millis))
}

/// A bare number is seconds.
pub fn secs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(Visitor(Unit::Secs))
}

/// [`secs`], for a key that may be left out (`#[serde(default)]` beside it).
pub fn optional_secs<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    secs(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Keys {
        #[serde(default, deserialize_with = "optional_ms")]
        timeout_ms: Option<Duration>,
        #[serde(default, deserialize_with = "optional_secs")]
        window_secs: Option<Duration>,
    }

    fn optional_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        millis(d).map(Some)
    }

    fn keys(text: &str) -> Result<Keys, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn units_are_read() {
        for (text, expected) in [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("10m", Duration::from_secs(600)),
            ("1h", Duration::from_secs(3600)),
            ("0s", Duration::ZERO),
            (" 2s ", Duration::from_secs(2)),
        ] {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn text_without_a_known_unit_is_refused_with_the_accepted_forms() {
        for bad in [
            "", "30", "s", "1.5s", "-1s", "10 m", "1h30m", "5d", "10sec", "1S",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("\"30s\""), "{bad}: {err}");
        }
        assert!(
            parse("99999999999999999h")
                .unwrap_err()
                .contains("too long")
        );
    }

    #[test]
    fn a_bare_number_is_in_the_unit_the_key_names() {
        let k = keys("timeout_ms = 1500\nwindow_secs = 60").unwrap();
        assert_eq!(k.timeout_ms, Some(Duration::from_millis(1500)));
        assert_eq!(k.window_secs, Some(Duration::from_secs(60)));
        let k = keys("timeout_ms = \"2s\"\nwindow_secs = \"1m\"").unwrap();
        assert_eq!(k.timeout_ms, Some(Duration::from_secs(2)));
        assert_eq!(k.window_secs, Some(Duration::from_secs(60)));
        assert!(keys("").unwrap().window_secs.is_none());
    }

    #[test]
    fn bad_values_name_the_key_and_the_accepted_forms() {
        for (text, key) in [
            ("timeout_ms = -1", "timeout_ms"),
            ("timeout_ms = 1.5", "timeout_ms"),
            ("window_secs = \"soon\"", "window_secs"),
            ("window_secs = true", "window_secs"),
        ] {
            let err = keys(text).unwrap_err();
            assert!(err.contains(key), "{text}: {err}");
            assert!(err.contains("\"30s\""), "{text}: {err}");
        }
        let err = keys("timeout_ms = -1").unwrap_err();
        assert!(err.contains("whole number of milliseconds"), "{err}");
    }

    #[test]
    fn durations_display_in_their_largest_exact_unit() {
        for (ms, text) in [
            (0, "0s"),
            (250, "250ms"),
            (1_500, "1500ms"),
            (30_000, "30s"),
            (600_000, "10m"),
            (7_200_000, "2h"),
        ] {
            assert_eq!(display(Duration::from_millis(ms)), text);
            assert_eq!(parse(text), Ok(Duration::from_millis(ms)));
        }
    }
}
