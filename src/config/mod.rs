//! `vault.toml` -> validated [`Settings`].
//!
//! Parsed and checked once; everything downstream takes `Settings`. Unknown keys are
//! errors that name the key. Relative paths are resolved against the config file's
//! directory. Secrets are never inline: the file names env vars or files that hold
//! them. Every key is documented in docs/config.md.
//!
//! The config sits above the layers it configures: it deserialises into the types
//! they own (the store's target, options and identities, a job's source spec, the
//! pipeline's compression, the signing settings) and none of them imports it.
//!
//! - `file`: the shape of the file, section by section;
//! - `jobs`: `[[job]]` into [`Job`]s, with their expansion;
//! - `schedule`: cron lines and the interval they imply;
//! - `sections`: retention, identities, signing and verify;
//! - `scheduler`: how `vault run` runs the schedules;
//! - `drill`: `[drill]` and each job's `[job.drill]`.

mod drill;
mod file;
mod jobs;
mod schedule;
mod scheduler;
mod sections;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use crate::crypto;
use crate::error::Error;
use crate::manifest::Layout;
use crate::pipeline::{Compression, Levels};
use crate::retention::{Policy, Pruning};
use crate::signing::Signing;
use crate::store::Target;

pub use drill::{Check, CheckTest, DrillSettings, JobDrill, Scratch};
pub use file::IdentitySection;
pub use jobs::Job;
pub use schedule::{Schedule, parse_timezone};
pub use scheduler::SchedulerSettings;
pub use sections::{DEFAULT_STATE_DIR, Identities, VerifySettings};

/// Everything vault needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub path: PathBuf,
    pub target: Target,
    pub layout: Layout,
    pub compression: Compression,
    pub retention: Policy,
    /// What `vault prune` keeps; each job's `keep_last` is on the job.
    pub pruning: Pruning,
    pub identities: Identities,
    pub signing: Signing,
    pub verify: VerifySettings,
    pub scheduler: SchedulerSettings,
    pub drill: DrillSettings,
    pub jobs: Vec<Job>,
}

impl Settings {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Settings, Error> {
        Settings::load_with_text(path).map(|(settings, _)| settings)
    }

    /// Like [`Settings::load`], with the text it was read from.
    pub fn load_with_text(path: &Path) -> Result<(Settings, String), Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!(
                "cannot read config file {}: {e} (set --config or VAULT_CONFIG)",
                path.display()
            ))
        })?;
        Ok((Settings::parse(&text, path)?, text))
    }

    /// Validates config text; `path` names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Settings, Error> {
        let shown = path.display();
        let file: file::File =
            toml::from_str(text).map_err(|e| Error::config(format!("{shown}: {e}")))?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        let bad = |msg: String| Error::config(format!("{shown}: {msg}"));

        let target = Target::parse(&file.vault.target, &base)
            .map_err(|e| bad(format!("[vault] target: {e}")))?
            .configure(&file.vault.s3)
            .map_err(|e| bad(format!("[vault] {e}")))?;
        crate::names::validate_prefix(&file.vault.prefix)
            .map_err(|e| bad(format!("[vault] prefix: {e}")))?;

        let mut recipients = file
            .encryption
            .recipients
            .iter()
            .map(|r| {
                crypto::parse_recipient(r).map_err(|e| bad(format!("[encryption] recipients: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(f) = &file.encryption.recipients_file {
            recipients.extend(crypto::read_recipients_file(&base.join(f))?);
        }

        let c = &file.compression;
        if !(1..=22).contains(&c.level) {
            return Err(bad(format!(
                "[compression] level {} is outside 1..=22",
                c.level
            )));
        }
        let adapt = c
            .adapt
            .as_deref()
            .map(Levels::parse)
            .transpose()
            .map_err(|e| bad(format!("[compression] adapt: {e}")))?;

        let retention = sections::retention_policy(&file.retention)
            .map_err(|e| bad(format!("[retention] {e}")))?;
        let pruning =
            sections::pruning(&file.retention).map_err(|e| bad(format!("[retention] {e}")))?;
        let identities = sections::identities(file.identities, &base)?;
        let signing = sections::signing_settings(file.signing, &base)
            .map_err(|e| bad(format!("[signing] {e}")))?;
        let scheduler = scheduler::scheduler_settings(file.scheduler)
            .map_err(|e| bad(format!("[scheduler] {e}")))?;
        let verify =
            sections::verify_settings(file.verify, &base, scheduler.timezone, &signing.state_dir)
                .map_err(|e| bad(format!("[verify] {e}")))?;
        let drill = drill::drill_settings(file.drill, &base, scheduler.timezone)
            .map_err(|e| bad(format!("[drill] {e}")))?;
        let jobs = jobs::jobs(
            file.jobs,
            &recipients,
            pruning.keep_last,
            scheduler.timezone,
            &base,
        )
        .map_err(bad)?;

        Ok(Settings {
            path: path.to_path_buf(),
            target,
            layout: Layout::new(&file.vault.prefix),
            compression: Compression {
                level: c.level,
                threads: c.threads,
                adapt,
            },
            retention,
            pruning,
            identities,
            signing,
            verify,
            scheduler,
            drill,
            jobs,
        })
    }

    /// The jobs a reading command looks at: `only` (a job, or the jobs a `[[job]]`
    /// expanded into), or every configured job. A named job need not be configured:
    /// one removed from the config may still have backups; but it must be a valid job
    /// name, checked before any store is touched.
    pub fn job_names(&self, only: Option<&str>) -> Result<Vec<String>, Error> {
        Ok(match only {
            Some(name) => {
                crate::names::validate_job_arg(name).map_err(Error::config)?;
                match self.jobs_named(name) {
                    Ok(jobs) => jobs.iter().map(|j| j.name.clone()).collect(),
                    Err(_) => vec![name.to_string()],
                }
            }
            None => self.jobs.iter().map(|j| j.name.clone()).collect(),
        })
    }

    /// The job called `name`, or every job the `[[job]]` called `name` expanded into.
    pub fn jobs_named(&self, name: &str) -> Result<Vec<&Job>, Error> {
        let group: Vec<&Job> = self
            .jobs
            .iter()
            .filter(|j| j.name == name || j.group == name)
            .collect();
        if group.is_empty() {
            return Err(self.job(name).unwrap_err());
        }
        Ok(group)
    }

    /// How many of `job`'s newest good backups `vault prune` keeps: the job's
    /// `keep_last`, else `[retention] keep_last` (also for a job no longer configured).
    pub fn keep_last(&self, job: &str) -> u32 {
        self.job(job)
            .map_or(self.pruning.keep_last, |j| j.keep_last)
    }

    /// The named job, or an error listing the jobs that exist.
    pub fn job(&self, name: &str) -> Result<&Job, Error> {
        self.jobs.iter().find(|j| j.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.jobs.iter().map(|j| j.name.as_str()).collect();
            Error::config(format!(
                "no job named `{}` in {} (jobs: {})",
                crate::names::shown(name),
                self.path.display(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
        })
    }
}
