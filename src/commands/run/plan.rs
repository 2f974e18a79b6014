//! What `vault run` runs and when: one unit per scheduled job (its backup) and one for
//! `[verify] schedule`, each with its schedule; the jitter of a run; whether a fire
//! time was missed while the scheduler was down. Pure: no I/O, unit-tested.

use std::hash::{Hash, Hasher};

use chrono::{DateTime, TimeDelta, Utc};

use crate::cli::RunOnly;
use crate::config::{Schedule, Settings};
use crate::notify::Ping;

/// What a unit runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// `vault backup JOB`.
    Backup(String),
    /// `vault verify` (every job).
    Verify,
    /// `vault drill` (every job).
    Drill,
}

/// One scheduled thing.
#[derive(Debug, Clone)]
pub struct Unit {
    pub task: Task,
    pub schedule: Schedule,
    /// How often it is expected to run: the window for catching up a missed run.
    pub interval: TimeDelta,
    /// Where a skipped run is reported (the job's ping; verify's ping).
    pub ping: Option<Ping>,
}

impl Unit {
    /// `backup:app` or `verify`: the unit's name in the state file and the logs.
    pub fn key(&self) -> String {
        match &self.task {
            Task::Backup(job) => format!("backup:{job}"),
            Task::Verify => "verify".into(),
            Task::Drill => "drill".into(),
        }
    }

    /// `backup` or `verify`: the `task` label of its metrics.
    pub fn kind(&self) -> &'static str {
        match self.task {
            Task::Backup(_) => "backup",
            Task::Verify => "verify",
            Task::Drill => "drill",
        }
    }

    /// The job, for a backup: the `vault_job` label of its metrics.
    pub fn job(&self) -> Option<&str> {
        match &self.task {
            Task::Backup(job) => Some(job),
            Task::Verify | Task::Drill => None,
        }
    }

    /// The subcommand and arguments of the `vault` process that runs it.
    pub fn args(&self) -> Vec<String> {
        match &self.task {
            Task::Backup(job) => vec!["backup".into(), job.clone()],
            Task::Verify => vec!["verify".into()],
            Task::Drill => vec!["drill".into()],
        }
    }
}

/// The units `settings` schedule, restricted by `--only`; and the jobs left out because
/// they have no schedule.
pub fn units(settings: &Settings, only: Option<RunOnly>) -> (Vec<Unit>, Vec<String>) {
    let mut units = Vec::new();
    let mut unscheduled = Vec::new();
    if only.is_none() || only == Some(RunOnly::Backup) {
        for job in &settings.jobs {
            match &job.schedule {
                Some(schedule) => units.push(Unit {
                    task: Task::Backup(job.name.clone()),
                    schedule: schedule.clone(),
                    interval: job.interval,
                    ping: job.ping.clone(),
                }),
                None => unscheduled.push(job.name.clone()),
            }
        }
    }
    if (only.is_none() || only == Some(RunOnly::Verify))
        && let Some(schedule) = &settings.verify.schedule
    {
        units.push(Unit {
            task: Task::Verify,
            interval: schedule.interval(),
            schedule: schedule.clone(),
            ping: settings.verify.ping.clone(),
        });
    }
    if (only.is_none() || only == Some(RunOnly::Drill))
        && let Some(schedule) = &settings.drill.schedule
    {
        units.push(Unit {
            task: Task::Drill,
            interval: schedule.interval(),
            schedule: schedule.clone(),
            ping: settings.drill.ping.clone(),
        });
    }
    (units, unscheduled)
}

/// How much later than `fire` a run of `key` starts: nothing without jitter; with a
/// seed, the same for a unit all day (reproducible); else random.
pub fn jitter(max: TimeDelta, seed: Option<u64>, key: &str, fire: DateTime<Utc>) -> TimeDelta {
    let span = max.num_milliseconds();
    if span <= 0 {
        return TimeDelta::zero();
    }
    let pick = match seed {
        Some(seed) => {
            // std's SipHash with fixed keys: stable across runs of the same build.
            let mut h = std::hash::DefaultHasher::new();
            (seed, key, fire.date_naive()).hash(&mut h);
            h.finish()
        }
        None => rand::random::<u64>(),
    };
    TimeDelta::milliseconds((pick % span as u64) as i64)
}

/// Whether a fire time of `schedule` passed while the scheduler was down: after the
/// last fire time it recorded (`last`), within the `window` before `now`. Several
/// missed fire times are one missed run.
pub fn missed(
    schedule: &Schedule,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    window: TimeDelta,
) -> Option<DateTime<Utc>> {
    // Never recorded: a first start catches nothing up.
    let last = last?;
    let from = last.max(now - window);
    let first = schedule.next_after(from)?;
    if first > now {
        return None;
    }
    // The latest missed fire time: what the run stands for.
    let mut latest = first;
    while let Some(next) = schedule.next_after(latest) {
        if next > now {
            break;
        }
        latest = next;
    }
    Some(latest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, h, m, s).unwrap()
    }

    #[test]
    fn a_run_missed_while_down_is_caught_up_once_within_the_window() {
        let every_10s = Schedule::parse("*/10 * * * * *").unwrap();
        let window = TimeDelta::seconds(10);
        // Last fire two intervals ago: the slots at :10 and :20 were missed; one run,
        // standing for the latest.
        assert_eq!(
            missed(&every_10s, Some(at(3, 0, 0)), at(3, 0, 25), window),
            Some(at(3, 0, 20))
        );
        // Down longer than the window: the missed slot is too old.
        assert_eq!(
            missed(
                &every_10s,
                Some(at(3, 0, 0)),
                at(3, 0, 45),
                TimeDelta::seconds(4)
            ),
            None
        );
        // Nothing missed, and a first start with no record.
        assert_eq!(
            missed(&every_10s, Some(at(3, 0, 20)), at(3, 0, 25), window),
            None
        );
        assert_eq!(missed(&every_10s, None, at(3, 0, 25), window), None);
        // A daily job down over its fire time, within its interval.
        let daily = Schedule::parse("15 3 * * *").unwrap();
        let day = TimeDelta::days(1);
        assert_eq!(
            missed(&daily, Some(at(3, 15, 0) - day), at(9, 0, 0), day),
            Some(at(3, 15, 0))
        );
    }

    #[test]
    fn jitter_is_bounded_and_fixed_per_unit_and_day_with_a_seed() {
        let max = TimeDelta::minutes(10);
        let fire = at(3, 15, 0);
        let a = jitter(max, Some(7), "backup:app", fire);
        assert!(a >= TimeDelta::zero() && a < max);
        assert_eq!(
            a,
            jitter(max, Some(7), "backup:app", fire + TimeDelta::hours(1))
        );
        let others: Vec<TimeDelta> = (0..20)
            .map(|i| jitter(max, Some(7), &format!("backup:job{i}"), fire))
            .collect();
        assert!(others.iter().any(|o| *o != a), "jobs are spread");
        assert_eq!(
            jitter(TimeDelta::zero(), Some(7), "backup:app", fire),
            TimeDelta::zero()
        );
        for _ in 0..100 {
            let r = jitter(max, None, "backup:app", fire);
            assert!(r >= TimeDelta::zero() && r < max);
        }
    }
}
