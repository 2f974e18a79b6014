//! A vault schedule as a CronJob's `schedule` and `timeZone`, or why it cannot be one.
//!
//! Kubernetes reads cron lines with its own parser (five fields, names, ranges, lists,
//! steps; day of week 0-6; the @yearly … @hourly macros). vault's parser takes more: a
//! seconds field, and 7 for Sunday. A line the CronJob controller would read
//! differently, or refuse, is refused here with the job's name, before anything is
//! applied.

use crate::config::Schedule;

/// A CronJob's timing, as the controller reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CronLine {
    pub schedule: String,
    /// The IANA zone the line is read in: always given, since vault reads a schedule
    /// without a zone in UTC and the controller would read it in its own local time.
    pub time_zone: String,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const MACROS: [&str; 6] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@hourly",
];
const FIELDS: [&str; 5] = ["minute", "hour", "day of month", "month", "day of week"];

/// The CronJob form of `schedule`; the error says what Kubernetes would not take.
pub(super) fn cron_line(schedule: &Schedule) -> Result<CronLine, String> {
    let text = schedule.to_string();
    let fields: Vec<&str> = text.split_whitespace().collect();
    let line = match fields.as_slice() {
        [one] if one.starts_with('@') => {
            let lower = one.to_ascii_lowercase();
            if !MACROS.contains(&lower.as_str()) {
                return Err(format!("schedule `{text}`: Kubernetes has no {one}"));
            }
            lower
        }
        [_, _, _, _, _] => {
            for (i, field) in fields.iter().enumerate() {
                check_field(i, field).map_err(|e| {
                    format!("schedule `{text}`: the {} field `{field}` {e}", FIELDS[i])
                })?;
            }
            fields.join(" ")
        }
        _ => {
            return Err(format!(
                "schedule `{text}` has a seconds field: a CronJob fires at most once a \
                 minute (five fields: minute hour day-of-month month day-of-week)"
            ));
        }
    };
    Ok(CronLine {
        schedule: line,
        time_zone: schedule.timezone().name().to_string(),
    })
}

fn check_field(index: usize, field: &str) -> Result<(), String> {
    if let Some(c) = field
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '*' | ',' | '-' | '/')))
    {
        return Err(format!("uses `{c}`, which Kubernetes does not read"));
    }
    for part in field.split([',', '-', '/']) {
        if part.chars().all(|c| c.is_ascii_digit()) {
            if index == 4 && part == "7" {
                return Err("uses 7 for Sunday; Kubernetes reads day of week 0-6: write 0".into());
            }
            continue;
        }
        let upper = part.to_ascii_uppercase();
        let known = match index {
            3 => MONTHS.contains(&upper.as_str()),
            4 => DAYS.contains(&upper.as_str()),
            _ => false,
        } || part == "*";
        if !known {
            return Err(format!("uses `{part}`, which Kubernetes does not read"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, zone: &str) -> Result<CronLine, String> {
        let tz = crate::config::parse_timezone(zone).unwrap();
        cron_line(&Schedule::parse_in(text, tz).unwrap())
    }

    #[test]
    fn lines_kubernetes_reads_pass_with_their_zone() {
        assert_eq!(
            line("15 3 * * *", "UTC").unwrap(),
            CronLine {
                schedule: "15 3 * * *".into(),
                time_zone: "UTC".into()
            }
        );
        assert_eq!(
            line("0  */6 1-15 JAN,jul mon-FRI", "Europe/Berlin").unwrap(),
            CronLine {
                schedule: "0 */6 1-15 JAN,jul mon-FRI".into(),
                time_zone: "Europe/Berlin".into()
            }
        );
        assert_eq!(line("@Daily", "UTC").unwrap().schedule, "@daily");
    }

    #[test]
    fn lines_kubernetes_would_misread_are_refused_saying_why() {
        let e = line("0 15 3 * * *", "UTC").unwrap_err();
        assert!(e.contains("seconds field"), "{e}");
        let e = line("0 3 * * 7", "UTC").unwrap_err();
        assert!(e.contains("write 0"), "{e}");
        let e = line("0 3 * * 5-7", "UTC").unwrap_err();
        assert!(e.contains("day of week"), "{e}");
    }
}
