//! `[drill]` and each job's `[job.drill]` with its `[[job.drill.check]]`s: how
//! `vault drill` restores into a scratch target and what it checks there.

use std::path::{Path, PathBuf};

use chrono::TimeDelta;
use serde::Deserialize;

use super::schedule::Schedule;
use crate::notify::Ping;
use crate::units::parse_duration;

/// Where a drill restores to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scratch {
    /// A throwaway server vault starts (PostgreSQL, MariaDB, Redis), or a temp dir.
    Local,
    /// An existing scratch server, as `postgresql://USER@HOST:PORT/` or
    /// `mysql://USER@HOST:PORT/`: vault creates a database of its own there and drops it.
    Url(String),
}

/// What a user check runs against the restored copy.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckTest {
    /// A query whose first column of the first row is a number.
    Sql(String),
    /// A program run with `VAULT_DRILL_URL` (and `VAULT_DRILL_DIR`); passes on exit 0,
    /// and with bounds its stdout's last line is the number compared.
    Command(Vec<String>),
}

/// A `[[job.drill.check]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub test: CheckTest,
    pub min: Option<f64>,
    pub equals: Option<f64>,
    pub max: Option<f64>,
}

impl Check {
    pub fn has_bounds(&self) -> bool {
        self.min.is_some() || self.equals.is_some() || self.max.is_some()
    }

    /// Why `value` fails the bounds, if it does.
    pub fn judge(&self, value: f64) -> Option<String> {
        if let Some(e) = self.equals
            && value != e
        {
            return Some(format!("{value} is not {e}"));
        }
        if let Some(min) = self.min
            && value < min
        {
            return Some(format!("{value} is below the minimum {min}"));
        }
        if let Some(max) = self.max
            && value > max
        {
            return Some(format!("{value} is above the maximum {max}"));
        }
        None
    }
}

/// `[drill]`, validated.
#[derive(Debug, Clone)]
pub struct DrillSettings {
    /// When `vault run` runs `vault drill` (off unless set).
    pub schedule: Option<Schedule>,
    pub scratch: Scratch,
    /// Where the scratch servers' binaries are (initdb, postgres; mariadbd; redis-server).
    pub bin_dir: Option<PathBuf>,
    /// Age identity files that must each open every drilled backup's header.
    pub identities: Vec<PathBuf>,
    /// The recovery time objective: a drill that takes longer is a finding.
    pub rto: Option<TimeDelta>,
    /// A count that fell by more than this share since the previous drill is a finding.
    pub max_shrink: f64,
    /// Evidence files kept per job.
    pub history: usize,
    /// PostgreSQL: `pg_restore --jobs` for local scratch servers (the dump is first
    /// written, verified, to a private temp file); 1 streams it in one transaction.
    pub restore_jobs: u32,
    pub ping: Option<Ping>,
    pub prometheus: Option<PathBuf>,
    pub pushgateway: Option<String>,
}

/// A job's `[job.drill]`: what it overrides of `[drill]`, and its checks.
#[derive(Debug, Clone, Default)]
pub struct JobDrill {
    pub scratch: Option<Scratch>,
    pub bin_dir: Option<PathBuf>,
    pub rto: Option<TimeDelta>,
    pub max_shrink: Option<f64>,
    /// Command jobs: restores into `{to}` (a temp path) instead of `restore_command`.
    pub command: Option<Vec<String>>,
    pub checks: Vec<Check>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DrillSection {
    pub schedule: Option<String>,
    pub scratch: Option<String>,
    pub bin_dir: Option<PathBuf>,
    #[serde(default)]
    pub identities: Vec<PathBuf>,
    pub rto: Option<String>,
    pub max_shrink: Option<f64>,
    pub history: Option<usize>,
    pub restore_jobs: Option<u32>,
    pub ping: Option<Ping>,
    pub prometheus: Option<PathBuf>,
    pub pushgateway: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JobDrillSection {
    pub scratch: Option<String>,
    pub bin_dir: Option<PathBuf>,
    pub rto: Option<String>,
    pub max_shrink: Option<f64>,
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub check: Vec<CheckSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckSection {
    pub name: Option<String>,
    pub sql: Option<String>,
    pub command: Option<Vec<String>>,
    pub min: Option<Number>,
    pub equals: Option<Number>,
    pub max: Option<Number>,
}

/// A TOML integer or float.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
pub(super) enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    fn value(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

fn scratch(text: &str) -> Result<Scratch, String> {
    if text == "local" {
        return Ok(Scratch::Local);
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(format!(
            "scratch `{text}` is neither \"local\" nor a server URL \
             (postgresql://USER@HOST:PORT/ or mysql://USER@HOST:PORT/)"
        ));
    };
    if !matches!(scheme, "postgresql" | "postgres" | "mysql" | "mariadb") {
        return Err(format!(
            "scratch: {scheme}:// is not a scratch server (postgresql:// or mysql://)"
        ));
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority
        .rsplit_once('@')
        .is_some_and(|(user, _)| user.contains(':'))
    {
        return Err(
            "scratch: the URL holds a password; give it in the environment instead \
             (PGPASSWORD or PGPASSFILE, MYSQL_PWD)"
                .into(),
        );
    }
    let path = rest.split_once('/').map_or("", |(_, p)| p);
    if !path.split(['?', '#']).next().unwrap_or("").is_empty() {
        return Err(format!(
            "scratch `{}`: name no database: the drill creates its own (vault_drill_…) \
             on that server and drops it after",
            crate::source::redact_url(text)
        ));
    }
    Ok(Scratch::Url(text.to_string()))
}

fn max_shrink(value: f64) -> Result<f64, String> {
    if !(0.0..=1.0).contains(&value) {
        return Err(format!(
            "max_shrink {value} is outside 0..1 (0.5: a table that lost more than half its \
             rows since the previous drill is a finding; 1 turns the check off)"
        ));
    }
    Ok(value)
}

fn rto(text: &str) -> Result<TimeDelta, String> {
    parse_duration(text).map_err(|e| format!("rto: {e}"))
}

pub(super) fn drill_settings(
    d: DrillSection,
    base: &Path,
    timezone: chrono_tz::Tz,
) -> Result<DrillSettings, String> {
    let schedule = d
        .schedule
        .as_deref()
        .map(|s| Schedule::parse_in(s, timezone).map_err(|e| format!("schedule: {e}")))
        .transpose()?;
    if let Some(p) = &d.ping {
        p.validate("ping").map_err(|e| e.to_string())?;
    }
    if let Some(url) = &d.pushgateway {
        crate::notify::validate_url(url, "pushgateway").map_err(|e| e.to_string())?;
    }
    let history = d.history.unwrap_or(30);
    if history == 0 {
        return Err(
            "history 0: keep at least the last drill (it is what the next one is \
                    compared with)"
                .into(),
        );
    }
    let restore_jobs = d.restore_jobs.unwrap_or(1);
    if !(1..=64).contains(&restore_jobs) {
        return Err(format!(
            "restore_jobs {restore_jobs} is outside 1..=64 (1 streams the dump into \
             pg_restore; more restores a verified temp copy with that many workers)"
        ));
    }
    Ok(DrillSettings {
        schedule,
        restore_jobs,
        scratch: d.scratch.as_deref().map_or(Ok(Scratch::Local), scratch)?,
        bin_dir: d.bin_dir.map(|p| base.join(p)),
        identities: d.identities.iter().map(|p| base.join(p)).collect(),
        rto: d.rto.as_deref().map(rto).transpose()?,
        max_shrink: max_shrink(d.max_shrink.unwrap_or(0.5))?,
        history,
        ping: d.ping,
        prometheus: d.prometheus.map(|p| base.join(p)),
        pushgateway: d.pushgateway,
    })
}

pub(super) fn job_drill(d: JobDrillSection, base: &Path) -> Result<JobDrill, String> {
    let mut checks = Vec::new();
    for (i, c) in d.check.into_iter().enumerate() {
        let n = i + 1;
        let test = match (c.sql, c.command) {
            (Some(sql), None) if !sql.trim().is_empty() => CheckTest::Sql(sql),
            (None, Some(argv)) if !argv.is_empty() => CheckTest::Command(argv),
            (Some(_), Some(_)) => {
                return Err(format!("drill check {n}: give sql or command, not both"));
            }
            _ => {
                return Err(format!(
                    "drill check {n}: give sql = \"…\" or command = […]"
                ));
            }
        };
        let name = c.name.unwrap_or_else(|| {
            let text = match &test {
                CheckTest::Sql(sql) => sql.clone(),
                CheckTest::Command(argv) => argv.join(" "),
            };
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            match text.char_indices().nth(60) {
                Some((at, _)) => format!("{}…", &text[..at]),
                None => text,
            }
        });
        let check = Check {
            name,
            test,
            min: c.min.map(Number::value),
            equals: c.equals.map(Number::value),
            max: c.max.map(Number::value),
        };
        if matches!(check.test, CheckTest::Sql(_)) && !check.has_bounds() {
            return Err(format!(
                "drill check `{}`: an sql check needs min, max or equals (what its number must be)",
                check.name
            ));
        }
        if let (Some(min), Some(max)) = (check.min, check.max)
            && min > max
        {
            return Err(format!(
                "drill check `{}`: min {min} is above max {max}",
                check.name
            ));
        }
        checks.push(check);
    }
    if d.command.as_ref().is_some_and(Vec::is_empty) {
        return Err("drill command is empty".into());
    }
    Ok(JobDrill {
        scratch: d.scratch.as_deref().map(scratch).transpose()?,
        bin_dir: d.bin_dir.map(|p| base.join(p)),
        rto: d.rto.as_deref().map(rto).transpose()?,
        max_shrink: d.max_shrink.map(max_shrink).transpose()?,
        command: d.command,
        checks,
    })
}
