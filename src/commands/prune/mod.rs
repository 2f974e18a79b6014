//! `vault prune [JOB…] [--dry-run]`: backups whose lock has ended leave the vault.
//!
//! Runs under the pruner identity, which lives in the vault account (a scheduled task
//! there, never on a backup host): it may read, list and add delete markers, and
//! nothing else — no version delete, no retention change, no bucket change. For each
//! job it reads every backup and its locks ([`survey`]), decides ([`plan`]: expired by
//! every lock plus `[retention] prune_grace`, and not among the job's newest
//! `keep_last` good backups), and hides each chosen backup with delete markers: the
//! manifest first, then the data, so that no reader ever finds a manifest whose data
//! is hidden (an interrupted prune leaves a hidden manifest over visible data, which
//! the next run finishes). Every version stays, locked as it was, until the bucket's
//! noncurrent-version expiration removes it. One line per backup on stdout;
//! `--dry-run` prints the same lines and changes nothing.

pub mod plan;
mod survey;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Context, warn_about};
use crate::cli::PruneArgs;
use crate::error::Error;
use crate::report::human_bytes;
use crate::retention::Tier;
use crate::store::{Role, Store};
use plan::Decision;
pub use survey::{Surveyed, survey};

/// One backup pruned (or, with `--dry-run`, that would be).
#[derive(Debug, Serialize)]
struct Pruned {
    job: String,
    backup_id: String,
    tier: Option<Tier>,
    /// When its last lock ended.
    lock_ended: Option<DateTime<Utc>>,
    /// Bytes the bucket's lifecycle frees once it removes the hidden versions.
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct Outcome {
    dry_run: bool,
    pruned: Vec<Pruned>,
    bytes: u64,
}

pub async fn run(ctx: &Context, args: &PruneArgs) -> anyhow::Result<()> {
    let settings = &ctx.settings;
    let mut jobs: Vec<String> = Vec::new();
    if args.jobs.is_empty() {
        jobs = settings.job_names(None)?;
    }
    for name in &args.jobs {
        for job in settings.job_names(Some(name))? {
            if !jobs.contains(&job) {
                jobs.push(job);
            }
        }
    }
    let store = super::open_store(settings, Role::Pruner).await?;
    warn_about(store.as_ref());
    ensure_versioned(store.as_ref()).await?;

    let now = Utc::now();
    let mut pruned = Vec::new();
    for job in &jobs {
        let backups = survey(store.as_ref(), &settings.layout, &settings.signing, job)
            .await
            .with_context(|| format!("job `{job}`: cannot read its backups"))?;
        let list: Vec<plan::Backup> = backups.iter().map(|s| s.backup.clone()).collect();
        let decisions = plan::plan(&list, settings.keep_last(job), settings.pruning.grace, now);
        for (s, decision) in backups.iter().zip(decisions) {
            if decision != Decision::Prune {
                continue;
            }
            let error = if args.dry_run {
                None
            } else {
                hide(store.as_ref(), s)
                    .await
                    .err()
                    .map(|e| format!("{e:#}"))
            };
            let row = Pruned {
                job: job.clone(),
                backup_id: s.backup.backup_id.clone(),
                tier: s.tier,
                lock_ended: s.backup.until,
                bytes: s.bytes,
                error,
            };
            if !ctx.json {
                println!("{}", line(&row, args.dry_run));
            }
            pruned.push(row);
        }
    }
    let failed = pruned.iter().filter(|p| p.error.is_some()).count();
    let bytes = pruned
        .iter()
        .filter(|p| p.error.is_none())
        .map(|p| p.bytes)
        .sum();
    let done = pruned.len() - failed;
    if ctx.json {
        crate::report::print_json(&Outcome {
            dry_run: args.dry_run,
            pruned,
            bytes,
        });
    }
    eprintln!(
        "{} {done} backup{} in {} job{}, freeing {} once the bucket's lifecycle removes them",
        if args.dry_run {
            "would prune"
        } else {
            "pruned"
        },
        if done == 1 { "" } else { "s" },
        jobs.len(),
        if jobs.len() == 1 { "" } else { "s" },
        human_bytes(bytes)
    );
    if failed > 0 {
        anyhow::bail!("{failed} backup(s) could not be pruned (see above)");
    }
    Ok(())
}

/// The line a pruned backup is logged with.
fn line(p: &Pruned, dry_run: bool) -> String {
    let verb = if dry_run { "would prune" } else { "pruned" };
    let mut line = format!(
        "{verb} {} {} ({}, lock ended {}, {})",
        p.job,
        p.backup_id,
        p.tier.map_or("?", Tier::as_str),
        p.lock_ended
            .map_or_else(|| "?".to_string(), |t| t.to_rfc3339()),
        human_bytes(p.bytes)
    );
    if let Some(e) = &p.error {
        line = format!("FAILED to prune {} {}: {e}", p.job, p.backup_id);
    }
    line
}

/// Hides one backup: the manifest first, then the data, each only if not hidden yet.
async fn hide(store: &dyn Store, s: &Surveyed) -> anyhow::Result<()> {
    if !s.backup.manifest_hidden {
        store
            .hide(&s.manifest_key)
            .await
            .with_context(|| format!("cannot hide manifest {}", s.manifest_key))?;
    }
    if let Some(data) = &s.data_key
        && !s.backup.data_hidden
    {
        store
            .hide(data)
            .await
            .with_context(|| format!("cannot hide data {data}"))?;
    }
    Ok(())
}

/// A delete marker only hides on a bucket with versioning; on any other bucket a
/// delete removes. Refuse unless the bucket says versioning is on.
async fn ensure_versioned(store: &dyn Store) -> Result<(), Error> {
    let Some(settings) = store.bucket_settings().await? else {
        return Err(Error::config(format!(
            "{} has no versions: vault prune only adds delete markers, on an S3 bucket \
             with versioning and Object Lock",
            store.describe()
        )));
    };
    match settings.versioning {
        Ok(state) if state == "Enabled" => Ok(()),
        Ok(state) => Err(Error::integrity(format!(
            "{}: versioning is `{state}`, not Enabled: a delete would remove backups \
             rather than hide them; nothing was pruned",
            store.describe()
        ))),
        Err(e) => Err(e),
    }
}
