//! A job's `schedule`: a cron line, parsed and checked by a maintained cron parser
//! (croner), when it fires, and the interval it implies (how often `verify` expects a
//! backup, unless `interval` says otherwise).
//!
//! Five fields (minute, hour, day of month, month, day of week) as in crontab, or six
//! with seconds first (for tests and the rare job that needs them), or one of
//! `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`/`@annually`. Ranges, steps,
//! lists and names (`MON`, `JAN`) as crontab has them; day of month and day of week
//! combine as in crontab (either matches).
//!
//! A schedule is read in a time zone (an IANA name, default UTC), with the daylight
//! saving rules of cron daemons: a time that does not exist on the day the clocks go
//! forward (02:30 in Europe/Berlin) fires once, when the gap ends (03:00); a time that
//! happens twice on the day they go back fires once, the first time — except for
//! schedules that fire every hour (hour field `*`), which follow the wall clock through
//! both passes.

use std::fmt;

use chrono::offset::LocalResult;
use chrono::{DateTime, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A checked cron schedule, in its time zone.
#[derive(Clone)]
pub struct Schedule {
    text: String,
    cron: Cron,
    tz: Tz,
    /// Fires in every hour: in a repeated hour, fires in both passes.
    every_hour: bool,
}

/// Daylight saving shifts are at most this long (2 h historically; 30 min or 1 h now).
const LONGEST_SHIFT: TimeDelta = TimeDelta::hours(3);

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
    /// Parses and checks `text` (read in UTC); the error names the field that is wrong.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        Schedule::parse_in(text, Tz::UTC)
    }

    /// Parses and checks `text`, read in the time zone `tz`.
    pub fn parse_in(text: &str, tz: Tz) -> Result<Schedule, String> {
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
        let hour = match fields.len() {
            5 => Some(fields[1]),
            6 => Some(fields[2]),
            _ => None,
        };
        let every_hour = match hour {
            Some(h) => h == "*" || h == "*/1",
            None => text.trim().eq_ignore_ascii_case("@hourly"),
        };
        let schedule = Schedule {
            text: text.to_string(),
            cron,
            tz,
            every_hour,
        };
        if schedule.next_after(Utc::now()).is_none() {
            return Err(format!(
                "`{shown}` never fires (no such date, e.g. 30 February)"
            ));
        }
        Ok(schedule)
    }

    /// The time zone the schedule is read in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first fire time after `t`, if there is one.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Fire times are whole seconds: search from the whole second at or before `t`.
        let local = t.with_timezone(&self.tz).naive_local().with_nanosecond(0)?;
        let offset = |at: DateTime<Utc>| self.tz.offset_from_utc_datetime(&at.naive_utc()).fix();
        if offset(t - LONGEST_SHIFT) == offset(t + LONGEST_SHIFT) {
            // No clock change near: the wall clock runs like UTC.
            let mut naive = local;
            loop {
                let found = self.next_naive(naive)?;
                if let Some(at) = self.instants(found).into_iter().find(|at| *at > t) {
                    return Some(at);
                }
                naive = found;
            }
        }
        // Near a clock change the wall clock jumps or repeats: look at every wall time
        // around `t` and take the first instant after it.
        let mut naive = local - LONGEST_SHIFT;
        let mut best: Option<DateTime<Utc>> = None;
        while let Some(found) = self.next_naive(naive) {
            if found > local + LONGEST_SHIFT && best.is_some() {
                break;
            }
            for at in self.instants(found) {
                if at > t && best.is_none_or(|b| at < b) {
                    best = Some(at);
                }
            }
            if found > local + LONGEST_SHIFT * 2 {
                break;
            }
            naive = found;
        }
        best
    }

    /// The next wall-clock time after `naive` that the cron line matches.
    fn next_naive(&self, naive: NaiveDateTime) -> Option<NaiveDateTime> {
        self.cron
            .find_next_occurrence(&Utc.from_utc_datetime(&naive), false)
            .ok()
            .map(|t| t.naive_utc())
    }

    /// The instants a matching wall-clock time stands for: itself; when it is skipped
    /// (clocks forward), the end of the gap; when it happens twice (clocks back), the
    /// first, and the second too for schedules that fire every hour.
    fn instants(&self, naive: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match self.tz.from_local_datetime(&naive) {
            LocalResult::Single(at) => vec![at.with_timezone(&Utc)],
            LocalResult::Ambiguous(first, second) if self.every_hour => {
                vec![first.with_timezone(&Utc), second.with_timezone(&Utc)]
            }
            LocalResult::Ambiguous(first, _) => vec![first.with_timezone(&Utc)],
            LocalResult::None => {
                // The first wall-clock minute after the gap.
                let mut after = naive;
                for _ in 0..(LONGEST_SHIFT.num_minutes()) {
                    after = (after + TimeDelta::minutes(1))
                        .with_second(0)
                        .unwrap_or(after);
                    if let Some(at) = self.tz.from_local_datetime(&after).earliest() {
                        return vec![at.with_timezone(&Utc)];
                    }
                }
                Vec::new()
            }
        }
    }

    /// How far apart backups may be: the largest gap between consecutive fire times
    /// over the year after `start` (at least two fire times are looked at, however far
    /// apart; at most [`MAX_OCCURRENCES`]).
    pub fn interval_from(&self, start: DateTime<Utc>) -> TimeDelta {
        let horizon = start + TimeDelta::days(366);
        let mut largest = TimeDelta::zero();
        let mut previous: Option<DateTime<Utc>> = None;
        let mut at = start;
        for _ in 0..MAX_OCCURRENCES {
            let Some(t) = self.next_after(at) else { break };
            if let Some(p) = previous {
                largest = largest.max(t - p);
                if t > horizon {
                    break;
                }
            }
            previous = Some(t);
            at = t;
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
        self.text == other.text && self.tz == other.tz
    }
}

/// Parses an IANA time zone name (`Europe/Berlin`, `UTC`); the error says what it takes.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!(
            "`{}` is not an IANA time zone name (e.g. \"Europe/Berlin\", \"America/New_York\", \"UTC\")",
            crate::names::shown(name)
        )
    })
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

    /// The next `n` fire times after `from`, as UTC wall times `HH:MM` on `YYYY-MM-DD`.
    fn fires(s: &Schedule, from: DateTime<Utc>, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut at = from;
        for _ in 0..n {
            at = s.next_after(at).unwrap();
            out.push(at.format("%m-%d %H:%M").to_string());
        }
        out
    }

    #[test]
    fn a_daily_job_runs_once_on_both_daylight_saving_days_in_berlin() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let s = Schedule::parse_in("30 2 * * *", tz).unwrap();
        // 28 March 2027: 02:00 CET becomes 03:00 CEST; 02:30 does not exist and the job
        // runs when the gap ends, 03:00 CEST = 01:00 UTC, once.
        assert_eq!(
            fires(&s, at(2027, 3, 26, 12, 0), 4),
            ["03-27 01:30", "03-28 01:00", "03-29 00:30", "03-30 00:30"]
        );
        // 31 October 2027: 03:00 CEST becomes 02:00 CET; 02:30 happens twice and the
        // job runs the first time, 02:30 CEST = 00:30 UTC, once.
        assert_eq!(
            fires(&s, at(2027, 10, 29, 12, 0), 4),
            ["10-30 00:30", "10-31 00:30", "11-01 01:30", "11-02 01:30"]
        );
        // Asked from inside the repeated hour, it does not run again that day.
        assert_eq!(fires(&s, at(2027, 10, 31, 1, 10), 1), ["11-01 01:30"]);
    }

    #[test]
    fn an_every_half_hour_job_follows_the_wall_clock_through_the_changes() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let s = Schedule::parse_in("*/30 * * * *", tz).unwrap();
        // Forward: 01:30 CET, then 02:00 and 02:30 (which do not exist) once at 03:00
        // CEST, then 03:30 CEST.
        assert_eq!(
            fires(&s, at(2027, 3, 28, 0, 15), 3),
            ["03-28 00:30", "03-28 01:00", "03-28 01:30"]
        );
        // Back: 02:00 and 02:30 in both passes (CEST 00:00, 00:30 UTC; CET 01:00, 01:30).
        assert_eq!(
            fires(&s, at(2027, 10, 30, 23, 45), 5),
            [
                "10-31 00:00",
                "10-31 00:30",
                "10-31 01:00",
                "10-31 01:30",
                "10-31 02:00"
            ]
        );
    }

    #[test]
    fn new_york_changes_at_two_and_repeats_one_oclock() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let s = Schedule::parse_in("30 2 * * *", tz).unwrap();
        // 14 March 2027: 02:00 EST becomes 03:00 EDT: runs at 03:00 EDT = 07:00 UTC.
        assert_eq!(
            fires(&s, at(2027, 3, 13, 12, 0), 2),
            ["03-14 07:00", "03-15 06:30"]
        );
        let s = Schedule::parse_in("30 1 * * *", tz).unwrap();
        // 7 November 2027: 02:00 EDT becomes 01:00 EST: 01:30 happens twice, runs once
        // (01:30 EDT = 05:30 UTC).
        assert_eq!(
            fires(&s, at(2027, 11, 6, 12, 0), 2),
            ["11-07 05:30", "11-08 06:30"]
        );
        assert!(parse_timezone("Mars/Olympus").unwrap_err().contains("IANA"));
        // A daily job's interval across a change is the longer day.
        assert_eq!(
            Schedule::parse_in("30 1 * * *", tz)
                .unwrap()
                .interval_from(at(2027, 11, 1, 0, 0)),
            TimeDelta::hours(25)
        );
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
