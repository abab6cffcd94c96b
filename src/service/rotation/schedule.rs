//! Rotation schedules with AWS Secrets Manager's rules: `automatically_after_days`, `rate(...)`
//! and EventBridge `cron(...)` expressions, plus the rotation window `duration`. Times are
//! seconds since the Unix epoch, all in UTC.
//!
//! Keyward's reading of the rules:
//! - `automatically_after_days N` is `rate(N days)`: the window opens at 00:00 UTC, N days after
//!   the UTC day of the last rotation. `rate(N hours)` (4–23) opens exactly N hours later.
//!   `day`/`days` and `hour`/`hours` are accepted for any N.
//! - A cron window opens at the first match strictly after the last rotation. Day-of-week counts
//!   1 = SUN … 7 = SAT as AWS does; a bare `L` there means Saturday. Ranges must not wrap
//!   (`FRI-MON` is refused); `W` is not supported.
//! - No two windows may open less than four hours apart. For a cron this is checked exactly, over
//!   every matching day from 1970 to 2199, which also refuses crons that never match.
//! - The default window is 24 hours, or the shortest gap between openings if that is less; a
//!   given `duration` must not be longer than that gap, so windows never overlap.

use crate::time::{date_of_epoch_day, days_in_month, days_since_epoch, epoch_day};
use std::fmt;
use time::macros::date;

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;
const MINUTES_PER_DAY: i64 = 24 * 60;
/// The last day a cron can match: its year field stops at 2199.
const LAST_DAY: i64 = days_since_epoch(date!(2199 - 12 - 31));
const TOO_OFTEN: &str =
    "schedule_expression: rotation can't happen more often than every four hours";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError(pub String);

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScheduleError {}

fn fail<T>(message: impl Into<String>) -> Result<T, ScheduleError> {
    Err(ScheduleError(message.into()))
}

/// A rotation window, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    rule: Rule,
    duration: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    Days(i64),
    Hours(i64),
    Cron(Cron),
}

impl Schedule {
    /// Exactly one of `after_days` / `expression` must be given. `duration` is like `"3h"`.
    pub fn parse(
        after_days: Option<i64>,
        expression: Option<&str>,
        duration: Option<&str>,
    ) -> Result<Schedule, ScheduleError> {
        // The longest window that closes before the next opens: the shortest gap between
        // openings, but never more than a day.
        let (rule, longest) = match (after_days, expression) {
            (Some(days), None) if (1..=1000).contains(&days) => (Rule::Days(days), DAY),
            (Some(_), None) => return fail("automatically_after_days: must be between 1 and 1000"),
            (None, Some(expression)) => parse_expression(expression)?,
            (Some(_), Some(_)) => {
                return fail(
                    "automatically_after_days: can't be combined with schedule_expression",
                );
            }
            (None, None) => {
                return fail(
                    "schedule_expression: give schedule_expression or automatically_after_days",
                );
            }
        };
        let duration = match duration {
            None => longest,
            Some(text) => {
                let duration = parse_duration(text)?;
                if duration > longest {
                    return fail("duration: the window must close before the next one opens");
                }
                duration
            }
        };
        Ok(Schedule { rule, duration })
    }

    /// The first window opening strictly after `after`; None when a cron never matches again.
    pub fn next_window(&self, after: i64) -> Option<Window> {
        let start = match &self.rule {
            Rule::Days(days) => after.div_euclid(DAY).checked_add(*days)?.checked_mul(DAY)?,
            Rule::Hours(hours) => after.checked_add(hours * HOUR)?,
            Rule::Cron(cron) => cron.next_match(after)?,
        };
        let end = start.checked_add(self.duration)?;
        Some(Window { start, end })
    }

    pub fn duration_secs(&self) -> i64 {
        self.duration
    }
}

fn parse_expression(expression: &str) -> Result<(Rule, i64), ScheduleError> {
    let expression = expression.trim();
    let inside = |prefix| expression.strip_prefix(prefix)?.strip_suffix(')');
    if let Some(body) = inside("rate(") {
        parse_rate(body)
    } else if let Some(body) = inside("cron(") {
        parse_cron(body)
    } else {
        fail("schedule_expression: expected rate(...) or cron(...)")
    }
}

fn parse_rate(body: &str) -> Result<(Rule, i64), ScheduleError> {
    let parts: Vec<&str> = body.split_whitespace().collect();
    let &[value, unit] = parts.as_slice() else {
        return fail("schedule_expression: rate needs a value and a unit, like rate(10 days)");
    };
    let Some(value) = number(value) else {
        return fail(format!(
            "schedule_expression: rate value '{value}' is not a whole number"
        ));
    };
    match unit {
        "day" | "days" if (1..=1000).contains(&value) => Ok((Rule::Days(value), DAY)),
        "day" | "days" => fail("schedule_expression: rate in days must be between 1 and 1000"),
        "hour" | "hours" if value < 4 => fail(TOO_OFTEN),
        "hour" | "hours" if value < 24 => Ok((Rule::Hours(value), value * HOUR)),
        "hour" | "hours" => {
            fail("schedule_expression: rate in hours must be 4-23; use days beyond")
        }
        _ => fail(format!(
            "schedule_expression: rate unit must be hours or days, not '{unit}'"
        )),
    }
}

fn parse_duration(text: &str) -> Result<i64, ScheduleError> {
    let Some(hours) = text.trim().strip_suffix('h').and_then(number) else {
        return fail(format!(
            "duration: expected whole hours like '3h', not '{text}'"
        ));
    };
    if !(1..=24).contains(&hours) {
        return fail("duration: must be between 1h and 24h");
    }
    Ok(hours * HOUR)
}

/// Plain decimal digits only: `str::parse` alone would also take a sign.
fn number(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cron {
    /// Minutes past midnight, ascending: every day has the same times.
    times: Vec<i64>,
    days: DaySpec,
    months: Set,
    years: Set,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DaySpec {
    OfMonth {
        days: Set,
        last: bool,
    },
    /// AWS weekdays (1 = Sunday); `last` and `nth` hold the `nL` and `n#k` items.
    OfWeek {
        days: Set,
        last: Vec<i64>,
        nth: Vec<(i64, i64)>,
    },
}

fn parse_cron(body: &str) -> Result<(Rule, i64), ScheduleError> {
    let fields: Vec<&str> = body.split_whitespace().collect();
    let &[minutes, hours, day_of_month, month, day_of_week, year] = fields.as_slice() else {
        return fail(
            "schedule_expression: cron needs 6 fields \
             (minutes hours day-of-month month day-of-week year)",
        );
    };
    let (minutes, hours) = (MINUTES.parse(minutes)?, HOURS.parse(hours)?);
    let times = (0..MINUTES_PER_DAY)
        .filter(|t| hours.has(t / 60) && minutes.has(t % 60))
        .collect();
    let days = match (day_of_month == "?", day_of_week == "?") {
        (false, true) => parse_days_of_month(day_of_month)?,
        (true, false) => parse_days_of_week(day_of_week)?,
        _ => {
            return fail(
                "schedule_expression: exactly one of day-of-month and day-of-week must be '?'",
            );
        }
    };
    let cron = Cron {
        times,
        days,
        months: MONTHS.parse(month)?,
        years: YEARS.parse(year)?,
    };
    let gap = cron.shortest_gap()?;
    if gap < 4 * HOUR {
        return fail(TOO_OFTEN);
    }
    Ok((Rule::Cron(cron), gap))
}

fn parse_days_of_month(text: &str) -> Result<DaySpec, ScheduleError> {
    let (mut days, mut last) = (DAYS_OF_MONTH.empty(), false);
    for item in text.split(',') {
        if item.eq_ignore_ascii_case("L") {
            last = true;
        } else {
            DAYS_OF_MONTH.add(&mut days, item)?;
        }
    }
    Ok(DaySpec::OfMonth { days, last })
}

fn parse_days_of_week(text: &str) -> Result<DaySpec, ScheduleError> {
    let (mut days, mut last, mut nth) = (WEEKDAYS.empty(), Vec::new(), Vec::new());
    for item in text.split(',') {
        if item.eq_ignore_ascii_case("L") {
            days.insert(7);
        } else if let Some(day) = item.strip_suffix(['L', 'l']) {
            last.push(WEEKDAYS.value(day)?);
        } else if let Some((day, k)) = item.split_once('#') {
            match number(k) {
                Some(k) if (1..=5).contains(&k) => nth.push((WEEKDAYS.value(day)?, k)),
                _ => return WEEKDAYS.error(format!("'#{k}' must be #1 to #5")),
            }
        } else {
            WEEKDAYS.add(&mut days, item)?;
        }
    }
    Ok(DaySpec::OfWeek { days, last, nth })
}

impl Cron {
    /// The days (since the epoch) the cron matches, from `from` on, in order. Walking month by
    /// month skips excluded years and months and needs no date conversion per day.
    fn matching_days(&self, from: i64) -> impl Iterator<Item = i64> + '_ {
        let from = from.clamp(0, LAST_DAY + 1);
        // Inside the clamp every day has a date; past it, the year after the last ends the walk.
        let (from_year, from_month) = date_of_epoch_day(from).map_or((YEARS.max + 1, 1), |d| {
            (i64::from(d.year()), i64::from(u8::from(d.month())))
        });
        (from_year..=YEARS.max)
            .filter(move |&year| self.years.has(year))
            .flat_map(|year| (1..=12).map(move |month| (year, month)))
            .filter(move |&(year, month)| {
                self.months.has(month) && (year, month) >= (from_year, from_month)
            })
            .filter_map(|(year, month)| {
                Some((epoch_day(year, month, 1)?, days_in_month(year, month)?))
            })
            .flat_map(move |(first, length)| {
                (1..=length)
                    .filter(move |&date| self.days.matches(first + date - 1, date, length))
                    .map(move |date| first + date - 1)
            })
            .skip_while(move |&day| day < from)
    }

    fn next_match(&self, after: i64) -> Option<i64> {
        // Nothing matches before 1970, so an earlier `after` starts the search there.
        let minute = (after.div_euclid(60) + 1).max(0);
        let (first_day, first_time) = (minute / MINUTES_PER_DAY, minute % MINUTES_PER_DAY);
        self.matching_days(first_day).find_map(|day| {
            let earliest = if day == first_day { first_time } else { 0 };
            let time = self.times.iter().find(|&&time| time >= earliest)?;
            Some((day * MINUTES_PER_DAY + time) * 60)
        })
    }

    /// The shortest time between two consecutive matches over 1970–2199, capped at a day. Gaps
    /// up to a day lie within a day or between back-to-back matching days, so one such pair is
    /// all the scan has to find.
    fn shortest_gap(&self) -> Result<i64, ScheduleError> {
        let (mut previous, mut back_to_back) = (None, false);
        for day in self.matching_days(0) {
            if previous == Some(day - 1) {
                back_to_back = true;
                break;
            }
            previous = Some(day);
        }
        if previous.is_none() {
            return fail("schedule_expression: the cron never matches between 1970 and 2199");
        }
        let within_day = self.times.windows(2).map(|pair| pair[1] - pair[0]).min();
        let overnight = (self.times.first().zip(self.times.last()))
            .filter(|_| back_to_back)
            .map(|(first, last)| MINUTES_PER_DAY - last + first);
        let shortest = within_day.into_iter().chain(overnight).min();
        Ok(shortest.map_or(DAY, |minutes| minutes * 60))
    }
}

impl DaySpec {
    fn matches(&self, day: i64, date: i64, month_length: i64) -> bool {
        match self {
            DaySpec::OfMonth { days, last } => days.has(date) || (*last && date == month_length),
            DaySpec::OfWeek { days, last, nth } => {
                let weekday = (day + 4).rem_euclid(7) + 1; // 1970-01-01 was a Thursday (5)
                days.has(weekday)
                    || (last.contains(&weekday) && date + 7 > month_length)
                    || nth.contains(&(weekday, (date - 1) / 7 + 1))
            }
        }
    }
}

/// The values a cron field allows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Set {
    min: i64,
    allowed: Vec<bool>,
}

impl Set {
    fn has(&self, value: i64) -> bool {
        usize::try_from(value - self.min).is_ok_and(|i| self.allowed.get(i) == Some(&true))
    }

    fn insert(&mut self, value: i64) {
        if let Some(slot) = usize::try_from(value - self.min)
            .ok()
            .and_then(|i| self.allowed.get_mut(i))
        {
            *slot = true;
        }
    }
}

struct Field {
    name: &'static str,
    min: i64,
    max: i64,
    names: &'static [&'static str],
}

const MINUTES: Field = Field::new("minutes", 0, 59, &[]);
const HOURS: Field = Field::new("hours", 0, 23, &[]);
const DAYS_OF_MONTH: Field = Field::new("day-of-month", 1, 31, &[]);
const MONTHS: Field = Field::new("month", 1, 12, &MONTH_NAMES);
const WEEKDAYS: Field = Field::new("day-of-week", 1, 7, &WEEKDAY_NAMES);
const YEARS: Field = Field::new("year", 1970, 2199, &[]);
const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Field {
    const fn new(name: &'static str, min: i64, max: i64, names: &'static [&'static str]) -> Field {
        Field {
            name,
            min,
            max,
            names,
        }
    }

    fn error<T>(&self, problem: String) -> Result<T, ScheduleError> {
        fail(format!("schedule_expression: {}: {problem}", self.name))
    }

    fn empty(&self) -> Set {
        Set {
            min: self.min,
            allowed: vec![false; (self.max - self.min + 1) as usize],
        }
    }

    fn parse(&self, text: &str) -> Result<Set, ScheduleError> {
        let mut set = self.empty();
        for item in text.split(',') {
            self.add(&mut set, item)?;
        }
        Ok(set)
    }

    fn value(&self, text: &str) -> Result<i64, ScheduleError> {
        let by_name = self
            .names
            .iter()
            .position(|name| name.eq_ignore_ascii_case(text));
        match number(text).or(by_name.map(|i| self.min + i as i64)) {
            Some(value) if (self.min..=self.max).contains(&value) => Ok(value),
            _ => self.error(format!(
                "'{text}' is not a value in {}-{}",
                self.min, self.max
            )),
        }
    }

    /// Adds one list item: `*`, `a`, `a-b`, each optionally with a `/step`.
    fn add(&self, set: &mut Set, item: &str) -> Result<(), ScheduleError> {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        let (first, last) = match range.split_once('-') {
            _ if range == "*" => (self.min, self.max),
            Some((first, last)) => (self.value(first)?, self.value(last)?),
            // `a/n` means from a to the end, stepping by n.
            None => {
                let first = self.value(range)?;
                (first, if step.is_some() { self.max } else { first })
            }
        };
        if first > last {
            return self.error(format!("range '{range}' runs backwards"));
        }
        let step = match step.map(number) {
            None => 1,
            Some(Some(step)) if step >= 1 => step,
            Some(_) => {
                return self.error(format!("step in '{item}' must be a whole number from 1"));
            }
        };
        (first..=last)
            .step_by(step as usize)
            .for_each(|value| set.insert(value));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(year: i64, month: i64, day: i64, hour: i64, minute: i64) -> i64 {
        epoch_day(year, month, day).unwrap() * DAY + hour * HOUR + minute * 60
    }

    fn expr(expression: &str) -> Schedule {
        Schedule::parse(None, Some(expression), None).unwrap()
    }

    /// The starts of the next `count` windows, each found from the previous one.
    fn opens(schedule: &Schedule, mut after: i64, count: usize) -> Vec<i64> {
        let mut starts = Vec::new();
        for _ in 0..count {
            after = schedule.next_window(after).unwrap().start;
            starts.push(after);
        }
        starts
    }

    fn next(schedule: &Schedule, after: i64) -> Option<i64> {
        schedule.next_window(after).map(|window| window.start)
    }

    fn error(after_days: Option<i64>, expression: Option<&str>, duration: Option<&str>) -> String {
        let result = Schedule::parse(after_days, expression, duration);
        result.unwrap_err().to_string()
    }

    #[test]
    fn leap_years_follow_the_gregorian_rule() {
        for year in 1970..2200 {
            let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
            assert_eq!(
                days_in_month(year, 2),
                Some(if leap { 29 } else { 28 }),
                "{year}"
            );
        }
        let feb_29 = epoch_day(2000, 2, 29).unwrap();
        assert_eq!(date_of_epoch_day(feb_29), Some(date!(2000 - 02 - 29)));
        assert_eq!(days_in_month(2000, 2), Some(29));
        assert_eq!(days_in_month(2100, 2), Some(28));
        let after_2100_02_28 = date_of_epoch_day(epoch_day(2100, 2, 28).unwrap() + 1);
        assert_eq!(after_2100_02_28, Some(date!(2100 - 03 - 01)));
    }

    #[test]
    fn helper_agrees_with_known_timestamps() {
        // From `date -u -d ... +%s`.
        assert_eq!(t(1970, 1, 1, 0, 0), 0);
        assert_eq!(t(2000, 1, 1, 0, 0), 946_684_800);
        assert_eq!(t(2026, 1, 31, 15, 0), 1_769_871_600);
        assert_eq!(t(2028, 2, 29, 0, 0), 1_835_395_200);
    }

    #[test]
    fn rate_one_day_crosses_month_end() {
        let jan_31 = t(2026, 1, 31, 15, 0);
        assert_eq!(
            next(&expr("rate(1 day)"), jan_31),
            Some(t(2026, 2, 1, 0, 0))
        );
        let after_days = Schedule::parse(Some(1), None, None).unwrap();
        assert_eq!(after_days, expr("rate(1 day)"));
        assert_eq!(after_days.duration_secs(), DAY);
    }

    #[test]
    fn cron_last_day_of_month() {
        let last = expr("cron(0 0 L * ? *)");
        let in_2027 = opens(&last, t(2027, 1, 31, 0, 0), 2);
        assert_eq!(in_2027, [t(2027, 2, 28, 0, 0), t(2027, 3, 31, 0, 0)]);
        assert_eq!(
            next(&last, t(2028, 1, 31, 0, 0)),
            Some(t(2028, 2, 29, 0, 0))
        );
        assert_eq!(last.duration_secs(), DAY);
    }

    #[test]
    fn leap_days() {
        let feb_29 = expr("cron(0 12 29 2 ? *)");
        let starts = opens(&feb_29, t(2026, 3, 1, 0, 0), 2);
        assert_eq!(starts, [t(2028, 2, 29, 12, 0), t(2032, 2, 29, 12, 0)]);
        assert_eq!(
            next(&feb_29, t(2096, 3, 1, 0, 0)),
            Some(t(2104, 2, 29, 12, 0))
        );
        // 2027-06-01 plus 365 days is 2028-05-31, because of 2028-02-29.
        let yearly = expr("rate(365 days)");
        assert_eq!(
            next(&yearly, t(2027, 6, 1, 10, 0)),
            Some(t(2028, 5, 31, 0, 0))
        );
        assert_eq!(
            next(&yearly, t(2026, 6, 1, 10, 0)),
            Some(t(2027, 6, 1, 0, 0))
        );
    }

    #[test]
    fn aws_day_of_week_numbering() {
        let saturday = expr("cron(0 16 ? * SAT *)");
        assert_eq!(saturday, expr("cron(0 16 ? * 7 *)"));
        assert_eq!(saturday, expr("cron(0 16 ? * L *)"));
        let wednesday = t(2026, 1, 7, 9, 0);
        assert_eq!(next(&saturday, wednesday), Some(t(2026, 1, 10, 16, 0)));
        let by_name = expr("cron(0 16 ? jan-mar sat *)");
        assert_eq!(by_name, expr("cron(0 16 ? 1-3 7 *)"));
    }

    #[test]
    fn last_and_nth_weekday() {
        let last_friday = expr("cron(0 0 ? * 6L *)");
        let starts = opens(&last_friday, t(2026, 1, 1, 0, 0), 3);
        let expected = [
            t(2026, 1, 30, 0, 0),
            t(2026, 2, 27, 0, 0),
            t(2026, 3, 27, 0, 0),
        ];
        assert_eq!(starts, expected);
        // July 2026 ends on a Friday, so the 24th is not its last.
        let july = t(2026, 7, 1, 0, 0);
        assert_eq!(next(&last_friday, july), Some(t(2026, 7, 31, 0, 0)));

        let first_monday = expr("cron(0 0 ? * 2#1 *)");
        let starts = opens(&first_monday, t(2026, 1, 1, 0, 0), 2);
        assert_eq!(starts, [t(2026, 1, 5, 0, 0), t(2026, 2, 2, 0, 0)]);
        let september = t(2026, 9, 1, 0, 0);
        assert_eq!(next(&first_monday, september), Some(t(2026, 9, 7, 0, 0)));
        assert_eq!(expr("cron(0 0 ? * mon#1 *)"), first_monday);
    }

    #[test]
    fn window_edges() {
        let nightly = Schedule::parse(None, Some("cron(0 2 * * ? *)"), Some("3h")).unwrap();
        let window = nightly.next_window(t(2026, 5, 10, 1, 59) + 59).unwrap();
        assert_eq!(window.start, t(2026, 5, 10, 2, 0));
        assert_eq!(window.end, t(2026, 5, 10, 5, 0));
        let tomorrow = Some(t(2026, 5, 11, 2, 0));
        assert_eq!(next(&nightly, t(2026, 5, 10, 2, 0)), tomorrow);
        assert_eq!(next(&nightly, t(2026, 5, 10, 4, 59)), tomorrow);
        assert_eq!(nightly.duration_secs(), 3 * HOUR);
        assert_eq!(expr("cron(0 2 * * ? *)").duration_secs(), DAY);
    }

    #[test]
    fn rates_in_hours_and_days() {
        let six_hours = expr("rate(6 hours)");
        assert_eq!(six_hours.duration_secs(), 6 * HOUR);
        assert_eq!(next(&six_hours, 1_000), Some(1_000 + 6 * HOUR));
        let new_year = t(2026, 12, 31, 23, 59) + 59;
        assert_eq!(
            next(&expr("rate(2 days)"), new_year),
            Some(t(2027, 1, 2, 0, 0))
        );
        assert_eq!(expr("rate(1 days)"), expr("rate(1 day)"));
        assert_eq!(expr("rate(4 hour)"), expr("rate(4 hours)"));
    }

    #[test]
    fn cron_default_duration_is_the_shortest_gap() {
        assert_eq!(expr("cron(0 0,12 * * ? *)").duration_secs(), 12 * HOUR);
        assert_eq!(expr("cron(0 3,20 * * ? *)").duration_secs(), 7 * HOUR);
        assert_eq!(expr("cron(0 0 1 1 ? 2030)").duration_secs(), DAY);
        // No two Saturdays are back to back, so 20:00 to 00:00 never happens.
        assert_eq!(expr("cron(0 0,20 ? * SAT *)").duration_secs(), 20 * HOUR);
        assert_eq!(expr("cron(0 0,22 1 * ? *)").duration_secs(), 22 * HOUR);
        // Only from a month's last day at 20:00 to the 1st at 00:00 are windows this close.
        assert_eq!(expr("cron(0 0,20 1,L * ? *)").duration_secs(), 4 * HOUR);
        let too_long = error(None, Some("cron(0 3,20 * * ? *)"), Some("8h"));
        assert!(
            too_long.starts_with("duration: the window must close"),
            "{too_long}"
        );
    }

    #[test]
    fn steps_ranges_and_lists() {
        let minutes_into_2026 = |expression| {
            let new_year = t(2026, 1, 1, 0, 0);
            let starts = opens(&expr(expression), new_year, 3);
            starts
                .iter()
                .map(|start| (start - new_year) / 60)
                .collect::<Vec<_>>()
        };
        assert_eq!(minutes_into_2026("cron(0 */6 * * ? *)"), [360, 720, 1080]);
        assert_eq!(minutes_into_2026("cron(30 1/8 * * ? *)"), [90, 570, 1050]);
        assert_eq!(
            minutes_into_2026("cron(0 2-20/9 * * ? *)"),
            [120, 660, 1200]
        );
        let two_days = minutes_into_2026("cron(15 0,5 1,15 * ? *)");
        assert_eq!(two_days, [15, 315, 14 * 1440 + 15]);
    }

    #[test]
    fn whitespace_is_forgiven_but_the_wrapper_is_not() {
        assert_eq!(expr("  cron(0   2 *  * ? *)  "), expr("cron(0 2 * * ? *)"));
        assert_eq!(expr(" rate( 6  hours ) "), expr("rate(6 hours)"));
        for bad in ["rate(6 hours", "6 hours", "Rate(6 hours)", "rate(6 hours))"] {
            let error = error(None, Some(bad), None);
            assert!(error.starts_with("schedule_expression: "), "{bad}: {error}");
        }
    }

    #[test]
    fn invalid_expressions_name_the_field() {
        let cases = [
            (
                "rate(3 hours)",
                "rotation can't happen more often than every four hours",
            ),
            ("rate(0 days)", "rate in days must be between 1 and 1000"),
            ("rate(1001 days)", "rate in days must be between 1 and 1000"),
            ("rate(24 hours)", "rate in hours must be 4-23"),
            ("rate(5 minutes)", "rate unit must be hours or days"),
            ("rate(-5 days)", "rate value '-5' is not a whole number"),
            ("cron(0 * * * ? *)", "rotation can't happen more often"),
            ("cron(0 0,22 * * ? *)", "rotation can't happen more often"),
            ("cron(0 0,21 1,L * ? *)", "rotation can't happen more often"),
            (
                "cron(0 0 1 * 1 *)",
                "exactly one of day-of-month and day-of-week",
            ),
            (
                "cron(0 0 ? * ? *)",
                "exactly one of day-of-month and day-of-week",
            ),
            ("cron(0 0 1 * ?)", "cron needs 6 fields"),
            ("cron(0 0 30 2 ? *)", "the cron never matches"),
            ("cron(60 0 * * ? *)", "minutes: '60' is not a value in 0-59"),
            ("cron(0 24 * * ? *)", "hours: '24'"),
            ("cron(0 */0 * * ? *)", "hours: step"),
            ("cron(0 0 32 * ? *)", "day-of-month: '32'"),
            ("cron(0 0 15W * ? *)", "day-of-month: '15W'"),
            ("cron(0 0 1 FOO ? *)", "month: 'FOO'"),
            (
                "cron(0 0 ? * FRI-MON *)",
                "day-of-week: range 'FRI-MON' runs backwards",
            ),
            ("cron(0 0 ? * 2#6 *)", "day-of-week: '#6'"),
            ("cron(0 0 ? * 8 *)", "day-of-week: '8'"),
            ("cron(0 0 1 1 ? 2200)", "year: '2200'"),
        ];
        for (expression, expected) in cases {
            let error = error(None, Some(expression), None);
            let expected = format!("schedule_expression: {expected}");
            assert!(error.starts_with(&expected), "{expression}: {error}");
        }
    }

    #[test]
    fn invalid_combinations_and_durations_name_the_field() {
        let both = error(Some(7), Some("rate(7 days)"), None);
        assert!(
            both.starts_with("automatically_after_days: can't be combined"),
            "{both}"
        );
        let neither = error(None, None, None);
        assert!(
            neither.starts_with("schedule_expression: give"),
            "{neither}"
        );
        for days in [0, 1001] {
            let error = error(Some(days), None, None);
            assert!(
                error.starts_with("automatically_after_days: must be"),
                "{error}"
            );
        }
        let durations = [
            ("rate(1 day)", "25h", "must be between 1h and 24h"),
            ("rate(1 day)", "0h", "must be between 1h and 24h"),
            ("rate(1 day)", "3", "expected whole hours"),
            (
                "rate(4 hours)",
                "5h",
                "the window must close before the next one opens",
            ),
        ];
        for (expression, duration, expected) in durations {
            let error = error(None, Some(expression), Some(duration));
            assert!(
                error.starts_with(&format!("duration: {expected}")),
                "{error}"
            );
        }
        assert!(Schedule::parse(None, Some("rate(4 hours)"), Some("4h")).is_ok());
        assert!(Schedule::parse(Some(1000), None, Some("24h")).is_ok());
    }

    #[test]
    fn year_field() {
        let past = expr("cron(0 0 1 1 ? 2020)");
        assert_eq!(next(&past, t(2021, 1, 1, 0, 0)), None);
        assert_eq!(next(&past, t(2019, 6, 1, 0, 0)), Some(t(2020, 1, 1, 0, 0)));
        let later = expr("cron(0 0 1 1 ? 2030-2031)");
        let starts = opens(&later, t(2026, 3, 4, 5, 6), 2);
        assert_eq!(starts, [t(2030, 1, 1, 0, 0), t(2031, 1, 1, 0, 0)]);
        assert_eq!(next(&later, t(2031, 1, 1, 0, 0)), None);
        let yearly = expr("cron(0 0 1 1 ? *)");
        assert_eq!(next(&yearly, t(2199, 1, 1, 0, 0)), None);
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        assert_eq!(expr("rate(1 day)").next_window(i64::MAX), None);
        assert_eq!(expr("rate(4 hours)").next_window(i64::MAX), None);
        let daily = expr("cron(0 0 * * ? *)");
        assert_eq!(daily.next_window(i64::MAX), None);
        assert_eq!(next(&daily, i64::MIN), Some(0));
    }
}
