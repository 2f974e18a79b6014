//! Quantities as people write them in vault.toml and on the command line: points in
//! time (`--before`, `--since`, `unsigned_before`), durations (`interval`, `grace`) and
//! sizes (`part_size`).
//!
//! One parser each, shared by every layer; errors are reasons without the setting's
//! name, which the caller adds (it knows whether it was a flag or a key). A leaf:
//! imports nothing of vault's.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, Utc};

/// A point in time: RFC 3339, or `YYYY-MM-DD[THH:MM[:SS]]` taken as UTC.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    Err(format!(
        "`{s}` is not a time (use RFC 3339 or YYYY-MM-DD[THH:MM[:SS]], UTC)"
    ))
}

/// A duration: `90s`, `15m` (or `15min`), `6h`, `1d`, `2w`; longer than zero.
pub fn parse_duration(s: &str) -> Result<TimeDelta, String> {
    let (n, unit) = number_and_unit::<i64>(s)
        .ok_or_else(|| format!("`{s}` is not a duration: write e.g. 90s, 15m, 6h, 1d or 2w"))?;
    let d = match unit {
        "s" => TimeDelta::try_seconds(n),
        "m" | "min" => TimeDelta::try_minutes(n),
        "h" => TimeDelta::try_hours(n),
        "d" => TimeDelta::try_days(n),
        "w" => TimeDelta::try_weeks(n),
        other => {
            return Err(format!(
                "`{s}`: unknown unit `{other}` (use s, m, h, d or w)"
            ));
        }
    };
    if n == 0 {
        return Err(format!("`{s}`: a duration must be longer than zero"));
    }
    d.ok_or_else(|| format!("`{s}` is too long"))
}

const MIB: u64 = 1 << 20;

/// `16 MiB` -> `(16, "MiB")`: the leading digits, and what follows them trimmed.
fn number_and_unit<N: std::str::FromStr>(s: &str) -> Option<(N, &str)> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    Some((num.parse().ok()?, unit.trim()))
}

/// A size in bytes: `16MiB`, `8 MiB`, `1GiB`, `512KiB`, `16777216`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (n, unit) = number_and_unit::<u64>(s)
        .ok_or_else(|| format!("`{s}` is not a size: write e.g. 16MiB"))?;
    let mult = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => MIB,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "`{s}`: unknown unit `{other}` (use KiB, MiB or GiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn times_parse() {
        let t = Utc.with_ymd_and_hms(2026, 11, 20, 12, 30, 0).unwrap();
        assert_eq!(parse_time("2026-11-20T12:30:00Z").unwrap(), t);
        assert_eq!(parse_time("2026-11-20T13:30:00+01:00").unwrap(), t);
        assert_eq!(parse_time("2026-11-20T12:30").unwrap(), t);
        assert_eq!(
            parse_time("2026-11-20").unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap()
        );
        assert!(parse_time("yesterday").unwrap_err().contains("yesterday"));
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s").unwrap(), TimeDelta::seconds(90));
        assert_eq!(parse_duration("15min").unwrap(), TimeDelta::minutes(15));
        assert_eq!(parse_duration("2w").unwrap(), TimeDelta::weeks(2));
        assert!(parse_duration("1y").unwrap_err().contains("unknown unit"));
        assert!(
            parse_duration("0h")
                .unwrap_err()
                .contains("longer than zero")
        );
        assert!(parse_duration("99999999999999w").is_err());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_size("1 GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert!(parse_size("16MB").is_err());
    }
}
