//! Time for the whole crate: the [`Timestamp`] that records and the wire carry, its text forms
//! (RFC 3339 for people and audit lines, ISO 8601's basic form for SigV4), and the [`Clock`]
//! every "now" is read from. Calendar arithmetic is the `time` crate's; nothing here does it by
//! hand. It sits in the bottom layer and uses no other module of the crate.
//!
//! [`SystemClock`] is the only reader of the wall clock. Services get a clock injected, so tests
//! can move time by days; the audit trail, alarms, the replication log's stamps (its lag is
//! measured against them) and SigV4's skew check read [`SystemClock`], because they must show
//! and judge real time whatever a test does to the domain's clock.

use ::time::format_description::BorrowedFormatItem;
use ::time::format_description::well_known::Rfc3339;
use ::time::macros::{datetime, format_description};
use ::time::{Date, Month, OffsetDateTime, PrimitiveDateTime};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub const SECONDS_PER_DAY: i64 = 86_400;

/// RFC 3339 in UTC with exactly three fraction digits: the `time` crate's RFC 3339 parser also
/// takes offsets, lower-case `t`/`z` and any number of digits, which a verified audit line must
/// not, and its formatter drops trailing zeros.
const RFC3339_MILLIS: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// ISO 8601's basic form, `YYYYMMDD'T'HHMMSS'Z'`: what SigV4 signs.
const ISO8601_BASIC: &[BorrowedFormatItem<'_>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

/// 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z: the four year digits of RFC 3339.
const MIN_MS: i64 = datetime!(0000-01-01 0:00 UTC).unix_timestamp() * 1000;
const MAX_MS: i64 = datetime!(9999-12-31 23:59:59 UTC).unix_timestamp() * 1000 + 999;

/// Seconds since the Unix epoch, UTC. Serialised as that bare integer, so records written
/// before this type existed read back unchanged.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const EPOCH: Self = Self(0);

    pub const fn from_secs(secs: i64) -> Self {
        Self(secs)
    }

    pub const fn secs(self) -> i64 {
        self.0
    }

    /// Saturates, so a far-off deadline cannot wrap into the past.
    pub const fn add_secs(self, secs: i64) -> Self {
        Self(self.0.saturating_add(secs))
    }

    pub const fn add_days(self, days: i64) -> Self {
        self.add_secs(days.saturating_mul(SECONDS_PER_DAY))
    }

    /// Seconds from `earlier` to `self`, negative when `earlier` is later.
    pub const fn secs_since(self, earlier: Self) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// 00:00 UTC of the same day.
    pub const fn start_of_day(self) -> Self {
        Self(self.0.saturating_sub(self.0.rem_euclid(SECONDS_PER_DAY)))
    }

    /// `None` outside the years the `time` crate represents (±9999).
    pub fn date_time(self) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp(self.0).ok()
    }

    pub const fn from_date_time(date_time: OffsetDateTime) -> Self {
        Self(date_time.unix_timestamp())
    }

    /// `YYYY-MM-DDTHH:MM:SSZ`; `None` outside years 0000-9999, which RFC 3339 cannot write.
    pub fn rfc3339(self) -> Option<String> {
        self.date_time()?.format(&Rfc3339).ok()
    }

    /// `YYYYMMDD'T'HHMMSS'Z'`; `None` outside years 0000-9999.
    pub fn iso8601_basic(self) -> Option<String> {
        let date_time = self.date_time()?;
        if !(0..=9999).contains(&date_time.year()) {
            return None;
        }
        date_time.format(ISO8601_BASIC).ok()
    }

    /// The inverse of [`Timestamp::iso8601_basic`], and nothing else: no second spelling of
    /// an instant (SigV4 signs the header verbatim, so one would gain nothing), no leap second.
    pub fn parse_iso8601_basic(text: &str) -> Option<Self> {
        parse(text, ISO8601_BASIC).map(|at| Self::from_date_time(at.assume_utc()))
    }
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`, clamped to years 0000-9999 so
/// the text is always well-formed.
pub fn rfc3339_ms(epoch_ms: i64) -> String {
    let epoch_ms = epoch_ms.clamp(MIN_MS, MAX_MS);
    let nanos = i128::from(epoch_ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|at| at.format(RFC3339_MILLIS).ok())
        // Unreachable inside the clamp; the epoch keeps the line well-formed all the same.
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".to_owned())
}

/// The inverse of [`rfc3339_ms`]: `None` unless `text` is exactly in that form.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let at = parse(text, RFC3339_MILLIS)?.assume_utc();
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// The `time` crate's parse, minus the leading sign its `[year]` takes: the forms here have
/// exactly four unsigned year digits.
fn parse(text: &str, format: &[BorrowedFormatItem<'_>]) -> Option<PrimitiveDateTime> {
    if !text.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    PrimitiveDateTime::parse(text, format).ok()
}

/// Days since 1970-01-01 of a date.
pub const fn days_since_epoch(date: Date) -> i64 {
    (date.to_julian_day() - UNIX_EPOCH_JULIAN_DAY) as i64
}

/// The date `days` after 1970-01-01; `None` outside the years the `time` crate represents.
pub fn date_of_epoch_day(days: i64) -> Option<Date> {
    let julian_day = days.checked_add(i64::from(UNIX_EPOCH_JULIAN_DAY))?;
    Date::from_julian_day(i32::try_from(julian_day).ok()?).ok()
}

/// Days since 1970-01-01 of a date; `None` for a date that does not exist.
pub fn epoch_day(year: i64, month: i64, day: i64) -> Option<i64> {
    let year = i32::try_from(year).ok()?;
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date = Date::from_calendar_date(year, month, u8::try_from(day).ok()?).ok()?;
    Some(days_since_epoch(date))
}

/// The days in a month of a year; `None` for a month that is not 1-12 or a year `time` lacks.
pub fn days_in_month(year: i64, month: i64) -> Option<i64> {
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    Some(i64::from(month.length(i32::try_from(year).ok()?)))
}

const UNIX_EPOCH_JULIAN_DAY: i32 = OffsetDateTime::UNIX_EPOCH.to_julian_day();

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch, UTC.
    fn now_ms(&self) -> i64;

    fn now(&self) -> Timestamp {
        Timestamp(self.now_ms().div_euclid(1000))
    }
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        // Before 1970 only on a broken host clock: the epoch is as good an answer as any.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told to: for tests of deletion windows.
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// `now`: seconds since the epoch.
    pub fn new(now: i64) -> Self {
        Self(AtomicI64::new(now))
    }

    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst).saturating_mul(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date_of(day: i64) -> (i64, i64, i64) {
        let at = date_of_epoch_day(day).unwrap();
        (
            i64::from(at.year()),
            i64::from(u8::from(at.month())),
            i64::from(at.day()),
        )
    }

    #[test]
    fn epoch_days_round_trip_every_day_1970_to_2199() {
        let last = epoch_day(2199, 12, 31).unwrap();
        let mut previous = (1969, 12, 31);
        for days in 0..=last {
            let date = date_of(days);
            let (year, month, day) = date;
            assert_eq!(epoch_day(year, month, day), Some(days));
            let (py, pm, pd) = previous;
            let next_month = if pm == 12 {
                (py + 1, 1, 1)
            } else {
                (py, pm + 1, 1)
            };
            assert!(
                date == (py, pm, pd + 1) || date == next_month,
                "{previous:?} {date:?}"
            );
            assert!(day <= days_in_month(year, month).unwrap());
            previous = date;
        }
        assert_eq!(previous, (2199, 12, 31));
        assert_eq!(date_of(epoch_day(2000, 2, 29).unwrap()), (2000, 2, 29));
        assert_eq!(date_of(epoch_day(2100, 2, 28).unwrap() + 1), (2100, 3, 1));
        assert_eq!(date_of(-1), (1969, 12, 31));
        assert_eq!(epoch_day(2023, 2, 29), None);
        assert_eq!(epoch_day(2024, 13, 1), None);
        assert_eq!(epoch_day(2024, 1, 0), None);
        assert_eq!(days_in_month(2000, 2), Some(29));
        assert_eq!(days_in_month(2100, 2), Some(28));
        assert_eq!(days_in_month(2024, 0), None);
    }

    #[test]
    fn rfc3339_with_and_without_milliseconds() {
        let rfc3339 = |secs| Timestamp::from_secs(secs).rfc3339().unwrap();
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_083_199), "2026-11-30T23:59:59Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(Timestamp::from_secs(253_402_300_800).rfc3339(), None);
        assert_eq!(Timestamp::from_secs(-62_167_219_201).rfc3339(), None);
        assert_eq!(Timestamp::from_secs(i64::MAX).rfc3339(), None);
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(951_782_400_120), "2000-02-29T00:00:00.120Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(i64::MIN), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn milliseconds_format_and_parse_known_dates() {
        // Epoch seconds from `date -u -d ... +%s`.
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (951_868_799_000, "2000-02-29T23:59:59.000Z"),
            (1_709_208_000_007, "2024-02-29T12:00:00.007Z"),
            (1_796_011_200_123, "2026-11-30T04:00:00.123Z"),
            (4_107_456_000_000, "2100-02-28T00:00:00.000Z"),
            // 2100 is not a leap year: Feb 28 is followed by Mar 1.
            (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),
            (-2_203_891_200_000, "1900-03-01T00:00:00.000Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        ];
        for (ms, text) in cases {
            assert_eq!(rfc3339_ms(ms), text, "{ms}");
            assert_eq!(parse_rfc3339_ms(text), Some(ms), "{text}");
        }
        assert_eq!(rfc3339_ms(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(i64::MIN), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn round_trips_every_day_for_five_centuries() {
        const MS_PER_DAY: i64 = 86_400_000;
        let mut ms = -2_208_988_800_000; // 1900-01-01
        while ms < 13_569_465_600_000 {
            // 2400-01-01
            assert_eq!(parse_rfc3339_ms(&rfc3339_ms(ms)), Some(ms));
            ms += MS_PER_DAY + 1;
        }
    }

    #[test]
    fn milliseconds_parse_refuses_every_other_form() {
        for bad in [
            "2023-02-29T00:00:00.000Z",
            "2024-02-30T00:00:00.000Z",
            "2024-13-01T00:00:00.000Z",
            "2024-00-01T00:00:00.000Z",
            "2024-01-00T00:00:00.000Z",
            "2024-01-01T24:00:00.000Z",
            "2024-01-01T00:00:00.000+00:00",
            "2024-01-01 00:00:00.000Z",
            "2024-01-01T00:00:00.00Z",
            "+024-01-01T00:00:00.000Z",
            "+2024-01-01T00:00:00.000Z",
            "-2024-01-01T00:00:00.000Z",
            "2024-01-01t00:00:00.000Z",
            "2024-01-01T00:00:00.000z",
            "2024-01-01T00:00:60.000Z",
            "2024-01-01T00:60:00.000Z",
            "2024-01-01T00:00:00.0000Z",
            "2024-01-01T00:00:00.000Z ",
            "2024-01-01T00:00:00Z",
            "2024-01-0１T00:00:00.000Z",
            "",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    fn parse_amz_date(text: &str) -> Option<i64> {
        Timestamp::parse_iso8601_basic(text).map(Timestamp::secs)
    }

    fn format_amz_date(secs: i64) -> Option<String> {
        Timestamp::from_secs(secs).iso8601_basic()
    }

    #[test]
    fn iso8601_basic_round_trips_known_instants() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        // 2015-08-30T12:36:00Z, the AWS test-suite instant.
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_amz_date("20000229T235959Z"), Some(951_868_799));
        assert_eq!(parse_amz_date("19691231T235959Z"), Some(-1));
        for t in [
            0,
            1_440_938_160,
            951_868_799,
            -1,
            253_402_300_799,
            -62_167_219_200,
        ] {
            let s = format_amz_date(t).unwrap();
            assert_eq!(parse_amz_date(&s), Some(t), "{s}");
        }
        assert_eq!(format_amz_date(253_402_300_800), None); // year 10000
        assert_eq!(format_amz_date(-62_167_219_201), None); // year -1
        assert_eq!(format_amz_date(i64::MAX), None);
        assert_eq!(format_amz_date(i64::MIN), None);
    }

    #[test]
    fn iso8601_basic_refuses_everything_else() {
        for bad in [
            "",
            "20150830T123600",
            "20150830T123600z",
            "20150830t123600Z",
            "2015-08-30T12:36:00Z",
            "20150830T1236000Z",
            "20151330T123600Z",
            "20150000T123600Z",
            "20150832T123600Z",
            "20150229T123600Z",
            "20150431T123600Z",
            "20150830T243600Z",
            "20150830T126000Z",
            "20150830T123660Z",
            "2015083OT123600Z",
            "+0150830T123600Z",
            "20150830T12360éZ",
            "+20150830T123600Z",
            "-20150830T123600Z",
            "20150830T123600Z ",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn days_and_arithmetic() {
        let t = Timestamp::from_secs(951_868_799); // 2000-02-29T23:59:59Z
        assert_eq!(t.start_of_day(), Timestamp::from_secs(951_782_400));
        assert_eq!(
            Timestamp::from_secs(-1).start_of_day().secs(),
            -SECONDS_PER_DAY
        );
        assert_eq!(t.add_days(1).secs_since(t), SECONDS_PER_DAY);
        assert_eq!(Timestamp::from_secs(i64::MAX).add_days(1).secs(), i64::MAX);
    }

    #[test]
    fn the_stored_form_is_the_bare_integer() {
        let t = Timestamp::from_secs(1_796_083_199);
        assert_eq!(serde_json::to_string(&t).unwrap(), "1796083199");
        assert_eq!(serde_json::from_str::<Timestamp>("-5").unwrap().secs(), -5);
        assert_eq!(
            serde_json::to_string(&Some(t)).unwrap(),
            serde_json::to_string(&Some(1_796_083_199_i64)).unwrap()
        );
    }

    #[test]
    fn manual_clock_moves_when_told() {
        let clock = ManualClock::new(10);
        clock.advance(5);
        assert_eq!(clock.now(), Timestamp::from_secs(15));
        assert_eq!(clock.now_ms(), 15_000);
    }
}
