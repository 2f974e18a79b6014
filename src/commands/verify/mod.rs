//! `vault verify [JOB]`: proves from outside that every backup is there, intact and
//! locked, and that each job is fresh.
//!
//! Under the verifier identity no key is needed. For the bucket: versioning, Object
//! Lock and its default retention, lifecycle rules, the bucket policy. For every
//! backup: the manifest parses (and its signature verifies when signing is on), every
//! version and delete marker under the job is listed once (more than vault wrote is
//! tampering), the data object's recorded version exists, and both objects' locks are
//! read back and must keep the manifest's promise. Ciphertext size and blake3 are
//! checked by a streamed download for the newest backup of each job, or as
//! `--sample`, `--since` and `--all` say. Per job: freshness, gaps, size anomalies and
//! the signed chain. With `--deep` the restorer's key decrypts and decompresses the
//! chosen backups and the plaintext hash is checked too; nothing is written to the
//! vault.
//!
//! Several jobs are listed with one listing of the whole vault. What cannot change
//! (a manifest version, a COMPLIANCE lock that kept its promise) is kept in the
//! verifier's cache (`catalog::cache`) and not asked again; `--no-cache` asks.

mod backup;
mod bucket;
mod job;
mod judge;
mod output;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};

use super::{Context, restorer_identities, warn_about};
use crate::catalog::{Cover, Listing};
use crate::cli::VerifyArgs;
use crate::error::{Error, ExitCode, summary, worst};
use crate::notify::{self, Event};
use crate::progress::Progress;
use crate::store::Role;
pub use backup::Checked;
pub use job::JobReport;
use job::{Run, Scope, verify_job};
use judge::Finding;

/// How many jobs are listed and checked at once.
const JOBS_AT_ONCE: usize = 4;

/// How many backups are downloaded and hashed (or decrypted) at once, over all jobs:
/// one per core, at least two (a download waits on the network as much as on the
/// CPU), at most eight. Each stream holds a bounded buffer, so memory stays bounded.
fn downloads_at_once() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// Everything one run found.
pub struct Report {
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub deep: bool,
    pub store: String,
    pub bucket: Vec<bucket::Check>,
    pub jobs: Vec<JobReport>,
    pub checked: Vec<Checked>,
}

impl Report {
    fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.bucket
            .iter()
            .filter_map(|c| c.finding.as_ref())
            .chain(self.jobs.iter().flat_map(|j| j.findings.iter()))
            .chain(self.checked.iter().flat_map(|c| c.findings.iter()))
    }

    /// The exit code the run ends with: the worst finding decides.
    pub fn code(&self) -> Option<ExitCode> {
        worst(
            self.findings()
                .map(|f| f.code)
                .filter(|c| *c != ExitCode::Success),
        )
    }
}

pub async fn run(ctx: &Context, args: &VerifyArgs) -> anyhow::Result<()> {
    let settings = &ctx.settings;
    let ping = settings.verify.ping.clone().unwrap_or_default();
    if let Err(e) = notify::ping(&ping, Event::Start, "vault verify started").await {
        eprintln!("warning: verify ping: {e}");
    }
    let outcome = verify(ctx, args).await;
    let (code, message) = match &outcome {
        Ok(report) => (report.code(), output::summary_line(report)),
        Err(e) => (
            Some(crate::error::exit_code_for(e)),
            format!("vault verify could not run: {e:#}"),
        ),
    };
    let event = if code.is_none() {
        Event::Success
    } else {
        Event::Fail
    };
    if let Err(e) = notify::ping(&ping, event, &message).await {
        eprintln!("warning: verify ping: {e}");
    }
    outcome?;
    match code {
        None => Ok(()),
        Some(code) => Err(summary(code, message)),
    }
}

async fn verify(ctx: &Context, args: &VerifyArgs) -> anyhow::Result<Report> {
    let settings = &ctx.settings;
    let started = Utc::now();
    let since = args
        .since
        .as_deref()
        .map(crate::units::parse_time)
        .transpose()
        .map_err(|e| Error::config(format!("--since {e}")))?;
    let identities = if args.deep {
        Some(Arc::new(restorer_identities(
            args.identity.as_deref(),
            settings,
        )?))
    } else {
        None
    };
    let jobs = settings.job_names(args.job.as_deref())?;
    let role = if args.deep {
        Role::Restorer
    } else {
        Role::Verifier
    };
    let store = super::open_store(settings, role).await?;
    warn_about(store.as_ref());

    let bucket = bucket::check(store.as_ref(), settings).await;
    let cache = super::open_cache(settings, args.no_cache);
    let listing = Listing::new(
        store.as_ref(),
        &settings.layout,
        &jobs,
        Cover::Everything,
        &cache,
    )
    .await;
    let progress = Progress::start("verifying".into(), None);
    let mut checked = Vec::new();
    let mut reports = Vec::new();
    let at_once = downloads_at_once();
    let run = Run {
        store: store.as_ref(),
        settings,
        listing: &listing,
        cache: &cache,
        scope: Scope {
            all: args.all,
            since,
            sample: args.sample.unwrap_or(0),
            downloads: tokio::sync::Semaphore::new(at_once),
            at_once,
        },
        identities,
    };
    // Jobs are checked side by side (in their order in the report); the downloads of
    // all of them share one limit.
    let mut per_job = stream::iter(&jobs)
        .map(|job| verify_job(&run, job, progress.counter()))
        .buffered(JOBS_AT_ONCE);
    while let Some((report, backups)) = per_job.next().await {
        reports.push(report);
        checked.extend(backups);
    }
    // The stream borrows `progress`, dropped next.
    drop(per_job);
    drop(progress);
    super::save_cache(&cache);

    let report = Report {
        started,
        finished: Utc::now(),
        deep: args.deep,
        store: store.describe(),
        bucket,
        jobs: reports,
        checked,
    };
    if ctx.json {
        crate::report::print_json(&output::json(&report));
    } else {
        print!("{}", output::human(&report));
    }
    let metrics = output::prometheus(&report);
    if let Some(path) = args
        .prometheus
        .as_ref()
        .or(settings.verify.prometheus.as_ref())
    {
        // A missing directory or no permission is the operator's setting, not a
        // missing backup.
        metrics
            .write_file(path)
            .map_err(|e| Error::config(format!("prometheus: {e}")))?;
    }
    if let Some(url) = args
        .pushgateway
        .as_ref()
        .or(settings.verify.pushgateway.as_ref())
        && let Err(e) = notify::push(url, "vault_verify", metrics.render()).await
    {
        eprintln!("warning: {e}");
    }
    Ok(report)
}
