//! `vault drill [JOB…]`: proves that backups restore. Under the restorer identity, the
//! newest good backup of each job (or `--id`, `--before`, `--sample N`) is restored
//! into a scratch target, its facts gathered and checked, the target torn down, and
//! the evidence kept (see docs/operations.md, "Restore drills").
//!
//! - `target`: the scratch target per engine (local server, scratch database, temp dir);
//! - `local`: the throwaway servers; `facts`: what a restored copy holds;
//! - `job`: one drill, start to evidence; `evidence`: the reports kept and compared;
//! - `output`: table, JSON, metrics, history.

mod evidence;
mod facts;
mod job;
mod local;
mod output;
mod target;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rand::seq::SliceRandom;

use super::{Context, restorer_identities, warn_about};
use crate::catalog::{self, Selection};
use crate::cli::DrillArgs;
use crate::config::{Job, Settings};
use crate::error::{Error, ExitCode, summary, worst};
use crate::notify::{self, Event};
use crate::source::Spec;
use crate::store::Role;
use evidence::Outcome;
use job::{Drilled, ExtraIdentities};

pub async fn run(ctx: &Context, args: &DrillArgs) -> anyhow::Result<()> {
    let settings = &ctx.settings;
    if args.history {
        return history(ctx, args);
    }
    let jobs = jobs(settings, args)?;
    let ping = settings.drill.ping.clone().unwrap_or_default();
    if let Err(e) = notify::ping(&ping, Event::Start, "vault drill started").await {
        eprintln!("warning: drill ping: {e}");
    }
    let outcome = drill_all(ctx, args, &jobs).await;
    let (code, message) = match &outcome {
        Ok(drills) => (
            worst(
                drills
                    .iter()
                    .map(|d| d.code)
                    .filter(|c| *c != ExitCode::Success),
            ),
            output::summary_line(drills),
        ),
        Err(e) => (
            Some(crate::error::exit_code_for(e)),
            format!("vault drill could not run: {e:#}"),
        ),
    };
    let event = if code.is_none() {
        Event::Success
    } else {
        Event::Fail
    };
    if let Err(e) = notify::ping(&ping, event, &message).await {
        eprintln!("warning: drill ping: {e}");
    }
    let drills = outcome?;
    if ctx.json {
        crate::report::print_json(&output::json(&drills));
    } else {
        print!("{}", output::human(&drills));
    }
    report_metrics(settings, args, &drills).await;
    match code {
        None => Ok(()),
        Some(code) => Err(summary(code, message)),
    }
}

/// The jobs to drill: the named ones (each must be configured: its drill settings
/// and checks are there), or every configured job; the globals part of a PostgreSQL
/// job is SQL for roles, not a database, and is left out.
fn jobs<'s>(settings: &'s Settings, args: &DrillArgs) -> Result<Vec<&'s Job>, Error> {
    let is_globals = |j: &&Job| matches!(&j.source, Spec::Postgres(pg) if pg.part == crate::source::PgPart::Globals);
    let mut jobs: Vec<&Job> = Vec::new();
    if args.jobs.is_empty() {
        jobs.extend(settings.jobs.iter().filter(|j| !is_globals(j)));
    } else {
        for name in &args.jobs {
            crate::names::validate_job_arg(name).map_err(Error::config)?;
            let named = settings.jobs_named(name)?;
            let n = named.len();
            let kept: Vec<&Job> = named.into_iter().filter(|j| !is_globals(j)).collect();
            if kept.is_empty() && n > 0 {
                return Err(Error::config(format!(
                    "job `{name}` holds the cluster globals (roles, tablespaces) as SQL: \
                     there is no database to drill"
                )));
            }
            for j in kept {
                if !jobs.iter().any(|k| k.name == j.name) {
                    jobs.push(j);
                }
            }
        }
    }
    if jobs.is_empty() {
        return Err(Error::config(format!(
            "no job to drill in {}",
            settings.path.display()
        )));
    }
    if args.id.is_some() && jobs.len() != 1 {
        return Err(Error::config(
            "--id names one backup: name exactly one JOB with it",
        ));
    }
    if args.sample == Some(0) {
        return Err(Error::config("--sample 0 drills nothing: give N ≥ 1"));
    }
    Ok(jobs)
}

async fn drill_all(ctx: &Context, args: &DrillArgs, jobs: &[&Job]) -> anyhow::Result<Vec<Drilled>> {
    let settings = &ctx.settings;
    let selection = match (&args.id, &args.before) {
        (Some(id), _) => Selection::Id(id.clone()),
        (None, Some(t)) => Selection::Before(
            crate::units::parse_time(t).map_err(|e| Error::config(format!("--before {e}")))?,
        ),
        (None, None) => Selection::Latest,
    };
    // Keys first: a wrong or missing key fails before anything is downloaded.
    let identities = Arc::new(restorer_identities(args.identity.as_deref(), settings)?);
    let extra: ExtraIdentities = settings
        .drill
        .identities
        .iter()
        .map(|path| {
            let ids = crate::crypto::load_identities(path)
                .map(Arc::new)
                .map_err(|e| e.to_string());
            (path.clone(), ids)
        })
        .collect();
    let store = super::open_store(settings, Role::Restorer).await?;
    warn_about(store.as_ref());
    let mut drills = Vec::new();
    for job in jobs {
        let entries = match catalog::entries(store.as_ref(), &settings.layout, &job.name).await {
            Ok(entries) => entries,
            Err(e) => {
                drills.push(Drilled::failed(&job.name, &e.into()));
                continue;
            }
        };
        let chosen = match choose(settings, &entries, &job.name, &selection, args) {
            Ok(chosen) => chosen,
            Err(e) => {
                drills.push(Drilled::failed(&job.name, &e.into()));
                continue;
            }
        };
        for (entry, manifest) in chosen {
            if !ctx.json {
                eprintln!("drilling {} backup {}", job.name, manifest.backup_id);
            }
            drills.push(
                job::drill(
                    settings,
                    store.as_ref(),
                    job,
                    entry,
                    manifest,
                    identities.clone(),
                    &extra,
                )
                .await?,
            );
        }
    }
    Ok(drills)
}

/// The backups to drill: the selected one, or `--sample N` chosen at random among the
/// newest `--among`.
fn choose<'e>(
    settings: &Settings,
    entries: &'e [catalog::Entry],
    job: &str,
    selection: &Selection,
    args: &DrillArgs,
) -> Result<Vec<(&'e catalog::Entry, &'e crate::manifest::Manifest)>, Error> {
    let good = super::restore::trusted(settings, entries, job, selection)?;
    let manifests: Vec<&crate::manifest::Manifest> = good.iter().map(|(_, m)| *m).collect();
    if let Some(n) = args.sample {
        if good.is_empty() {
            catalog::select(job, &manifests, &Selection::Latest)?;
        }
        let newest = &good[good.len().saturating_sub(args.among.max(1))..];
        let mut picked: Vec<_> = newest
            .choose_multiple(&mut rand::thread_rng(), n.min(newest.len()))
            .copied()
            .collect();
        picked.sort_by_key(|(_, m)| m.started_at);
        return Ok(picked);
    }
    let chosen = catalog::select(job, &manifests, selection)?;
    Ok(good
        .into_iter()
        .filter(|(_, m)| m.backup_id == chosen.backup_id)
        .take(1)
        .collect())
}

/// Writes and pushes the metrics; a failure is a warning (the drill's result stands).
async fn report_metrics(settings: &Settings, args: &DrillArgs, drills: &[Drilled]) {
    let file = args
        .prometheus
        .clone()
        .or_else(|| settings.drill.prometheus.clone());
    let push = args
        .pushgateway
        .clone()
        .or_else(|| settings.drill.pushgateway.clone());
    if file.is_none() && push.is_none() {
        return;
    }
    let last_success = last_successes(&settings.signing.state_dir, settings.drill.history, drills);
    let metrics = output::metrics(drills, &last_success);
    if let Some(path) = file
        && let Err(e) = metrics.write_file(&path)
    {
        eprintln!("warning: drill metrics: {e}");
    }
    if let Some(url) = push
        && let Err(e) = notify::push(&url, "vault_drill", metrics.render()).await
    {
        eprintln!("warning: drill metrics push: {e}");
    }
}

/// Each drilled job's newest passed drill on record (this run's included).
fn last_successes(
    state_dir: &Path,
    history: usize,
    drills: &[Drilled],
) -> BTreeMap<String, DateTime<Utc>> {
    let mut last_success = BTreeMap::new();
    for d in drills {
        if last_success.contains_key(&d.job) {
            continue;
        }
        let newest = evidence::history(state_dir, &d.job, history)
            .unwrap_or_default()
            .into_iter()
            .find(|(_, e)| e.outcome == Outcome::Passed);
        if let Some((_, e)) = newest {
            last_success.insert(d.job.clone(), e.finished);
        }
    }
    last_success
}

/// The drill metrics of a `vault --json drill` run's report, for `vault run`'s
/// `/metrics`; None when it is not one.
pub fn metrics_of_report(state_dir: &Path, history: usize, stdout: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Report {
        drills: Vec<One>,
    }
    #[derive(serde::Deserialize)]
    struct One {
        job: String,
        passed: bool,
        evidence: Option<evidence::Evidence>,
    }
    let report: Report = serde_json::from_slice(stdout).ok()?;
    let drills: Vec<Drilled> = report
        .drills
        .into_iter()
        .map(|d| Drilled {
            code: if d.passed {
                ExitCode::Success
            } else {
                ExitCode::DrillFailed
            },
            job: d.job,
            evidence: d.evidence,
            saved: None,
            error: None,
        })
        .collect();
    let last_success = last_successes(state_dir, history, &drills);
    Some(output::metrics(&drills, &last_success).render())
}

fn history(ctx: &Context, args: &DrillArgs) -> anyhow::Result<()> {
    let [job] = args.jobs.as_slice() else {
        return Err(Error::config("--history shows one job's drills: name exactly one JOB").into());
    };
    crate::names::validate_job_arg(job).map_err(Error::config)?;
    let drills = evidence::history(&ctx.settings.signing.state_dir, job, args.last)?;
    print!("{}", output::history(job, &drills, ctx.json));
    Ok(())
}
