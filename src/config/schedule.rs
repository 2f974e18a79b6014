//! A job's `schedule`: a cron line, checked, and the interval it implies (how often
//! `verify` expects a backup).

use chrono::TimeDelta;

/// A cron expression with five fields, or one of the `@daily`-style shorthands.
pub fn validate_schedule(s: &str) -> Result<(), String> {
    const SHORTHANDS: [&str; 6] = [
        "@hourly",
        "@daily",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
    ];
    let fields: Vec<&str> = s.split_whitespace().collect();
    let valid = if fields.len() == 1 {
        SHORTHANDS.contains(&fields[0])
    } else {
        fields.len() == 5
            && fields
                .iter()
                .all(|f| f.chars().all(|c| c.is_ascii_digit() || ",-*/".contains(c)))
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a cron schedule (five fields like \"15 3 * * *\", or @daily, @hourly, ...)"
        ))
    }
}

/// How often a schedule runs, roughly: enough to tell when a backup is late. `None`
/// when the cron expression is not one of the common shapes (then `interval` says).
pub fn schedule_interval(schedule: &str) -> Option<TimeDelta> {
    let f: Vec<&str> = schedule.split_whitespace().collect();
    match f.as_slice() {
        ["@hourly"] => Some(TimeDelta::hours(1)),
        ["@daily"] => Some(TimeDelta::days(1)),
        ["@weekly"] => Some(TimeDelta::weeks(1)),
        ["@monthly"] => Some(TimeDelta::days(31)),
        ["@yearly" | "@annually"] => Some(TimeDelta::days(366)),
        [minute, hour, dom, month, dow] => {
            let plain = |x: &str| x.chars().all(|c| c.is_ascii_digit() || c == ',');
            let count = |x: &str| x.split(',').count() as i32;
            match (*minute, *hour, *dom, *month, *dow) {
                (m, "*", "*", "*", "*") if plain(m) => Some(TimeDelta::hours(1) / count(m)),
                (m, h, "*", "*", "*") if plain(m) && plain(h) => {
                    Some(TimeDelta::days(1) / count(h))
                }
                (m, h, "*", "*", d) if plain(m) && plain(h) && plain(d) => {
                    Some(TimeDelta::weeks(1) / count(d))
                }
                (m, h, d, "*", "*") if plain(m) && plain(h) && plain(d) => {
                    Some(TimeDelta::days(31) / count(d))
                }
                _ => None,
            }
        }
        _ => None,
    }
}
