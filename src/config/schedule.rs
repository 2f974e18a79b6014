//! A job's `schedule`: a cron line, parsed and checked by a maintained cron parser
//! (croner), when it fires, and the interval it implies (how often `verify` expects a
//! backup, unless `interval` says otherwise).
//!
//! Five fields (minute, hour, day of month, month, day of week) as in crontab, or six
//! with seconds first (for tests and the rare job that needs them), or one of
//! `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`/`@annually`. Ranges, steps,
//! lists and names (`MON`, `JAN`) as crontab has them; day of month and day of week
//! combine as in crontab (either matches). Times are UTC.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A checked cron schedule.
#[derive(Clone)]
pub struct Schedule {
    text: String,
    cron: Cron,
}

/// The fields of a five-field line, in order.
const FIELDS: [&str; 5] = ["minute", "hour", "day of month", "month", "day of week"];

/// At most this many fire times are looked at to find the interval: enough to see a
/// weekend in an every-five-minutes business-hours schedule.
const MAX_OCCURRENCES: usize = 5000;

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

impl Schedule {
    /// Parses and checks `text`; the error names the field that is wrong.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let shown = crate::names::shown(text);
        let usage = "write five fields like \"15 3 * * *\" (minute hour day-of-month month \
                     day-of-week), six with seconds first, or @hourly, @daily, @weekly, \
                     @monthly, @yearly";
        let fields: Vec<&str> = text.split_whitespace().collect();
        let named: Vec<&str> = match fields.len() {
            1 if fields[0].starts_with('@') => {
                let known = [
                    "@hourly",
                    "@daily",
                    "@weekly",
                    "@monthly",
                    "@yearly",
                    "@annually",
                ];
                if !known.iter().any(|k| k.eq_ignore_ascii_case(fields[0])) {
                    return Err(format!("`{shown}` is not a cron schedule: {usage}"));
                }
                Vec::new()
            }
            5 => FIELDS.to_vec(),
            6 => std::iter::once("second").chain(FIELDS).collect(),
            n => {
                return Err(format!(
                    "`{shown}` is not a cron schedule: it has {n} field{}; {usage}",
                    if n == 1 { "" } else { "s" }
                ));
            }
        };
        let cron = parser().parse(text).map_err(|e| {
            // Name the first field that fails on its own, every other field `*`.
            let bad = (0..named.len()).find(|&i| {
                let alone: Vec<&str> = (0..fields.len())
                    .map(|j| if j == i { fields[j] } else { "*" })
                    .collect();
                parser().parse(&alone.join(" ")).is_err()
            });
            match bad {
                Some(i) => format!(
                    "`{shown}`: the {} field `{}` is not valid ({e})",
                    named[i],
                    crate::names::shown(fields[i])
                ),
                None => format!("`{shown}` is not a cron schedule ({e}); {usage}"),
            }
        })?;
        let schedule = Schedule {
            text: text.to_string(),
            cron,
        };
        if schedule.next_after(Utc::now()).is_none() {
            return Err(format!(
                "`{shown}` never fires (no such date, e.g. 30 February)"
            ));
        }
        Ok(schedule)
    }

    /// The first fire time after `t`, if there is one.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t, false).ok()
    }

    /// How far apart backups may be: the largest gap between consecutive fire times
    /// over the year after `start` (at least two fire times are looked at, however far
    /// apart; at most [`MAX_OCCURRENCES`]).
    pub fn interval_from(&self, start: DateTime<Utc>) -> TimeDelta {
        let horizon = start + TimeDelta::days(366);
        let mut largest = TimeDelta::zero();
        let mut previous: Option<DateTime<Utc>> = None;
        for t in self.cron.iter_after(start).take(MAX_OCCURRENCES) {
            if let Some(p) = previous {
                largest = largest.max(t - p);
                if t > horizon {
                    break;
                }
            }
            previous = Some(t);
        }
        largest
    }

    /// [`Schedule::interval_from`] now.
    pub fn interval(&self) -> TimeDelta {
        self.interval_from(Utc::now())
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.text)
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.text == other.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn bad_schedules_are_refused_naming_the_field() {
        for (bad, needle) in [
            ("61 25 * * *", "the minute field `61`"),
            ("0 25 * * *", "the hour field `25`"),
            ("0 3 32 * *", "the day of month field `32`"),
            ("0 0 0 0 0", "the day of month field `0`"),
            ("0 0 1 13 *", "the month field `13`"),
            ("0 0 * * 8", "the day of week field `8`"),
            ("- * * * *", "the minute field `-`"),
            ("*/0 * * * *", "the minute field `*/0`"),
            ("0 3 * *", "4 fields"),
            ("daily", "1 field"),
            ("@reboot", "not a cron schedule"),
            ("0 0 30 2 *", "never fires"),
            ("61 0 3 * * *", "the second field `61`"),
        ] {
            let err = Schedule::parse(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn crontab_forms_parse() {
        for good in [
            "15 3 * * *",
            "*/15 * * * *",
            "0 9-17/2 * * MON-FRI",
            "0 0 1 JAN,jul *",
            "5,35 */6 1-10 * *",
            "@daily",
            "@Hourly",
            "@annually",
            "*/5 * * * * *",
        ] {
            assert!(Schedule::parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn the_interval_is_the_largest_gap_between_fire_times() {
        let start = at(2026, 12, 7, 12, 0);
        let interval = |s: &str| Schedule::parse(s).unwrap().interval_from(start);
        assert_eq!(interval("15 3 * * *"), TimeDelta::days(1));
        assert_eq!(interval("0 */6 * * *"), TimeDelta::hours(6));
        assert_eq!(interval("0 3,15 * * *"), TimeDelta::hours(12));
        assert_eq!(interval("0 3 * * 1-5"), TimeDelta::days(3));
        assert_eq!(interval("30 1 * * 0"), TimeDelta::weeks(1));
        assert_eq!(interval("@monthly"), TimeDelta::days(31));
        assert_eq!(interval("@yearly"), TimeDelta::days(365));
        assert_eq!(
            interval("*/5 9-17 * * MON-FRI"),
            TimeDelta::hours(63) + TimeDelta::minutes(5)
        );
        assert_eq!(interval("*/10 * * * * *"), TimeDelta::seconds(10));
        assert_eq!(interval("0 0 29 2 *"), TimeDelta::days(4 * 365 + 1));
    }

    #[test]
    fn next_fire_times_are_in_utc() {
        let s = Schedule::parse("15 3 * * *").unwrap();
        assert_eq!(
            s.next_after(at(2026, 12, 7, 12, 0)),
            Some(at(2026, 12, 8, 3, 15))
        );
        assert_eq!(s.to_string(), "15 3 * * *");
    }
}
