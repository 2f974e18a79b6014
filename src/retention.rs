//! Retention: which tier a backup belongs to and how long it stays locked.
//!
//! The writer cannot read what the vault holds, so the tier is decided by the
//! calendar alone, at write time, in UTC: 1 January is yearly, the 1st of a month is
//! monthly, a Sunday is weekly, any other day daily. Pure date logic, no I/O.
//!
//! A leaf: imports nothing of vault's.

use std::fmt;
use std::str::FromStr;

use chrono::SubsecRound as _;
use chrono::{DateTime, Datelike, Days, Months, NaiveDate, TimeDelta, Utc, Weekday};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Tier {
    /// The tier of a backup taken on `date` (UTC).
    pub fn for_date(date: NaiveDate) -> Tier {
        if date.ordinal() == 1 {
            Tier::Yearly
        } else if date.day() == 1 {
            Tier::Monthly
        } else if date.weekday() == Weekday::Sun {
            Tier::Weekly
        } else {
            Tier::Daily
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Daily => "daily",
            Tier::Weekly => "weekly",
            Tier::Monthly => "monthly",
            Tier::Yearly => "yearly",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Object Lock mode. COMPLIANCE cannot be shortened or removed by anyone, the account
/// root included; GOVERNANCE can be bypassed by a principal holding
/// `s3:BypassGovernanceRetention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum LockMode {
    #[default]
    Compliance,
    Governance,
}

impl LockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Compliance => "COMPLIANCE",
            LockMode::Governance => "GOVERNANCE",
        }
    }
}

/// A retention period as written in vault.toml: `35d`, `13w`, `13mo`, `7y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Days(u32),
    Months(u32),
}

impl Period {
    /// The instant `self` after `from`.
    pub fn after(self, from: DateTime<Utc>) -> DateTime<Utc> {
        let later = match self {
            Period::Days(n) => from.checked_add_days(Days::new(n.into())),
            Period::Months(n) => from.checked_add_months(Months::new(n)),
        };
        later.unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

impl FromStr for Period {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u32 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a period: write e.g. 35d, 13w, 13mo or 7y"))?;
        if n == 0 {
            return Err(format!(
                "`{s}`: a retention period must be longer than zero"
            ));
        }
        let period = match unit.trim() {
            "d" | "day" | "days" => Period::Days(n),
            "w" | "week" | "weeks" => Period::Days(n.saturating_mul(7)),
            "mo" | "month" | "months" => Period::Months(n),
            "y" | "year" | "years" => Period::Months(n.saturating_mul(12)),
            other => {
                return Err(format!("`{s}`: unknown unit `{other}` (use d, w, mo or y)"));
            }
        };
        Ok(period)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Days(n) if n % 7 == 0 => write!(f, "{}w", n / 7),
            Period::Days(n) => write!(f, "{n}d"),
            Period::Months(n) if n % 12 == 0 => write!(f, "{}y", n / 12),
            Period::Months(n) => write!(f, "{n}mo"),
        }
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The lock one object gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub mode: LockMode,
    pub retain_until: DateTime<Utc>,
}

/// Who puts the lock on a new object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LockSource {
    /// vault sends the mode and retain-until with every write, from the backup's tier.
    /// The writer needs `s3:PutObjectRetention` as well as `s3:PutObject`.
    #[default]
    PerObject,
    /// vault sends no lock headers; the bucket's default retention applies, one length
    /// for every backup. The writer needs no retention permission (`s3:PutObject` and
    /// `s3:AbortMultipartUpload` only).
    BucketDefault,
}

impl LockSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LockSource::PerObject => "per-object",
            LockSource::BucketDefault => "bucket-default",
        }
    }
}

/// Validated retention settings: a mode and one period per tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub source: LockSource,
    pub mode: LockMode,
    pub daily: Period,
    pub weekly: Period,
    pub monthly: Period,
    pub yearly: Period,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            source: LockSource::PerObject,
            mode: LockMode::Compliance,
            daily: Period::Days(35),
            weekly: Period::Days(91),
            monthly: Period::Months(13),
            yearly: Period::Months(84),
        }
    }
}

impl Policy {
    pub fn period(&self, tier: Tier) -> Period {
        match tier {
            Tier::Daily => self.daily,
            Tier::Weekly => self.weekly,
            Tier::Monthly => self.monthly,
            Tier::Yearly => self.yearly,
        }
    }

    /// The lock vault sends with a write: `None` when the bucket default applies.
    pub fn lock_to_send(&self, lock: Lock) -> Option<Lock> {
        match self.source {
            LockSource::PerObject => Some(lock),
            LockSource::BucketDefault => None,
        }
    }

    /// Tier and lock for a backup started at `at`. In bucket-default mode every tier
    /// has the one period configured as the bucket's default (kept in `daily`).
    pub fn decide(&self, at: DateTime<Utc>) -> (Tier, Lock) {
        let tier = Tier::for_date(at.date_naive());
        // Whole seconds: the precision S3 keeps for a retain-until date.
        let at = at.trunc_subsecs(0);
        let lock = Lock {
            mode: self.mode,
            retain_until: self.period(tier).after(at),
        };
        (tier, lock)
    }
}

/// What `vault prune` keeps. The lock is the guarantee, pruning the cost control: a
/// backup is pruned only once its lock has ended and `grace` more has passed, and
/// never while it is among its job's newest `keep_last` good backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruning {
    /// The default for jobs that set none; at least 1.
    pub keep_last: u32,
    pub grace: TimeDelta,
}

impl Default for Pruning {
    fn default() -> Self {
        Pruning {
            keep_last: 1,
            grace: TimeDelta::days(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn tiers_follow_the_calendar() {
        assert_eq!(Tier::for_date(day(2027, 1, 1)), Tier::Yearly); // a Friday
        assert_eq!(Tier::for_date(day(2026, 11, 1)), Tier::Monthly); // a Sunday
        assert_eq!(Tier::for_date(day(2026, 11, 22)), Tier::Weekly); // a Sunday
        assert_eq!(Tier::for_date(day(2026, 11, 23)), Tier::Daily); // a Monday
    }

    #[test]
    fn periods_parse_and_print() {
        assert_eq!("35d".parse::<Period>().unwrap(), Period::Days(35));
        assert_eq!("13w".parse::<Period>().unwrap(), Period::Days(91));
        assert_eq!("13mo".parse::<Period>().unwrap(), Period::Months(13));
        assert_eq!("7 years".parse::<Period>().unwrap(), Period::Months(84));
        assert_eq!(Period::Months(84).to_string(), "7y");
        assert_eq!(Period::Days(91).to_string(), "13w");
        assert!("0d".parse::<Period>().is_err());
        assert!(
            "12h"
                .parse::<Period>()
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!("soon".parse::<Period>().is_err());
    }

    #[test]
    fn retain_until_adds_calendar_months() {
        let policy = Policy::default();
        let at = Utc.with_ymd_and_hms(2026, 1, 31, 3, 0, 0).unwrap(); // a Saturday
        let (tier, lock) = policy.decide(at);
        assert_eq!(tier, Tier::Daily);
        assert_eq!(
            lock.retain_until,
            Utc.with_ymd_and_hms(2026, 3, 7, 3, 0, 0).unwrap()
        );
        let (tier, lock) = policy.decide(Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap());
        assert_eq!(tier, Tier::Monthly);
        assert_eq!(
            lock.retain_until,
            Utc.with_ymd_and_hms(2027, 4, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(lock.mode, LockMode::Compliance);
    }
}
