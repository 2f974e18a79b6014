//! `[[job]]`: each section validated into one [`Job`], or several for a multi-database
//! PostgreSQL job (`<job>.<db>`, `<job>.globals`); the interval each is expected at.

use std::collections::HashSet;
use std::path::Path;

use chrono::TimeDelta;

use super::file::JobSection;
use chrono_tz::Tz;

use super::drill::{JobDrill, job_drill};
use super::schedule::{Schedule, parse_timezone};
use crate::crypto::{self, Recipient};
use crate::names::validate_job_name;
use crate::notify::Ping;
use crate::source::Spec;
use crate::units::parse_duration;

/// A validated job.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    /// The `[[job]]` name it came from: differs from `name` for the jobs a
    /// multi-database PostgreSQL job expands into (`pg.app`, `pg.globals`).
    pub group: String,
    pub schedule: Option<Schedule>,
    /// How often a backup is expected: `interval`, else what `schedule` implies, else a day.
    pub interval: TimeDelta,
    /// How late a backup may be before `verify` calls the job stale.
    pub grace: TimeDelta,
    /// Where `backup` reports the job's start, success and failure.
    pub ping: Option<Ping>,
    /// Empty when neither the job nor `[encryption]` names one: such a job is refused.
    pub recipients: Vec<Recipient>,
    pub source: Spec,
    /// What `vault drill` does for it beyond `[drill]`.
    pub drill: JobDrill,
}

/// Validates every `[[job]]` in order; `recipients` are `[encryption]`'s, for jobs that
/// name none. The error is the reason; the caller names the file.
pub(super) fn jobs(
    sections: Vec<JobSection>,
    recipients: &[Recipient],
    timezone: Tz,
    base: &Path,
) -> Result<Vec<Job>, String> {
    let mut seen = HashSet::new();
    let mut jobs = Vec::new();
    for job in sections {
        validate_job_name(&job.name).map_err(|e| format!("[[job]] name: {e}"))?;
        if !seen.insert(job.name.clone()) {
            return Err(format!("job `{}` is defined twice", job.name));
        }
        let j = |msg: String| format!("job `{}`: {msg}", job.name);
        let zone = match &job.timezone {
            Some(name) => parse_timezone(name).map_err(|e| j(format!("timezone: {e}")))?,
            None => timezone,
        };
        if job.timezone.is_some() && job.schedule.is_none() {
            return Err(j("timezone is set but schedule is not: it only says how \
                          to read the schedule"
                .into()));
        }
        let schedule = job
            .schedule
            .as_deref()
            .map(|s| Schedule::parse_in(s, zone))
            .transpose()
            .map_err(|e| j(format!("schedule: {e}")))?;
        let interval = match &job.interval {
            Some(text) => parse_duration(text).map_err(|e| j(format!("interval: {e}")))?,
            None => schedule
                .as_ref()
                .map_or(TimeDelta::days(1), Schedule::interval),
        };
        let grace = match &job.grace {
            Some(text) => parse_duration(text).map_err(|e| j(format!("grace: {e}")))?,
            None => interval / 4,
        };
        if let Some(p) = &job.ping {
            p.validate(&format!("job `{}`: ping", job.name))
                .map_err(|e| e.to_string())?;
        }
        let job_recipients = match &job.recipients {
            Some(list) => list
                .iter()
                .map(|r| crypto::parse_recipient(r).map_err(|e| j(format!("recipients: {e}"))))
                .collect::<Result<Vec<_>, _>>()?,
            None => recipients.to_vec(),
        };
        let drill = job_drill(job.drill, base).map_err(|e| j(format!("[job.drill] {e}")))?;
        for (name, source) in job.source.expand(&job.name, base).map_err(j)? {
            if name != job.name && !seen.insert(name.clone()) {
                return Err(format!("job `{name}` is defined twice"));
            }
            jobs.push(Job {
                name,
                group: job.name.clone(),
                schedule: schedule.clone(),
                interval,
                grace,
                ping: job.ping.clone(),
                recipients: job_recipients.clone(),
                source,
                drill: drill.clone(),
            });
        }
    }
    Ok(jobs)
}
