//! `vault backup [JOB...]`: dump, compress, encrypt and store, then write the manifest.
//!
//! Runs under the writer identity and never reads from the store. Jobs run one after
//! another (each already uses every core); a failed job does not stop the others, but
//! the command fails and names it. The manifest is written only after the data object
//! is complete: a failed or interrupted backup leaves no manifest.

use std::time::Instant;

use anyhow::Context as _;
use chrono::Utc;
use serde::Serialize;
use tracing::Instrument;

use super::{Context, warn_about};
use crate::cli::BackupArgs;
use crate::config::{Job, Settings};
use crate::error::{Error, ExitCode, exit_code_for, summary};
use crate::joblock::{Busy, JobLock, holder};
use crate::manifest::{self, Manifest};
use crate::notify::{self, Event};
use crate::pipe::PipeReader;
use crate::pipeline;
use crate::progress::Progress;
use crate::report::human_bytes;
use crate::signal::interrupted;
use crate::signing::{ChainState, Signature, Signed as _, SigningKey};
use crate::store::{PutOptions, Role, Store};

#[derive(Serialize)]
struct JobResult {
    job: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    manifest: Option<Manifest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub async fn run(ctx: &Context, args: &BackupArgs) -> anyhow::Result<()> {
    let settings = &ctx.settings;
    let jobs: Vec<&Job> = if args.jobs.is_empty() {
        if settings.jobs.is_empty() {
            return Err(Error::config(format!(
                "{} defines no [[job]]: nothing to back up",
                settings.path.display()
            ))
            .into());
        }
        settings.jobs.iter().collect()
    } else {
        let mut jobs = Vec::new();
        for name in &args.jobs {
            crate::names::validate_job_arg(name).map_err(Error::config)?;
            for job in settings.jobs_named(name)? {
                if !jobs.iter().any(|j: &&Job| j.name == job.name) {
                    jobs.push(job);
                }
            }
        }
        jobs
    };
    // Refuse before anything is written: vault never stores unencrypted data.
    let unencrypted: Vec<&str> = jobs
        .iter()
        .filter(|j| j.recipients.is_empty())
        .map(|j| j.name.as_str())
        .collect();
    if !unencrypted.is_empty() {
        return Err(Error::config(format!(
            "job `{}` has no encryption recipients: set [encryption] recipients (age1...) \
             in {} — vault never writes unencrypted backups",
            unencrypted.join("`, `"),
            settings.path.display()
        ))
        .into());
    }

    let signer = match &settings.signing.key_file {
        Some(path) => Some(SigningKey::load(path)?),
        None => None,
    };
    let store = super::open_store(settings, Role::Writer).await?;
    warn_about(store.as_ref());

    // Which vault the job locks belong to: the same job name in another vault is
    // another job.
    let vault = super::vault_id(settings);
    let mut results = Vec::new();
    let mut first_error = None;
    for job in &jobs {
        let started = Instant::now();
        let lock = tokio::select! {
            lock = lock_job(settings, &vault, signer.is_some(), job, args.wait) => lock,
            signal = interrupted() => Err(Error::Interrupted(format!(
                "{signal} received while waiting for job `{}`; it was not started",
                job.name
            )).into()),
        };
        let outcome = match lock {
            Err(e) => Err(e),
            Ok(lock) => {
                ping(job, Event::Start, "started").await;
                let outcome = tokio::select! {
                    r = backup_job(store.as_ref(), settings, signer.as_ref(), job) => r,
                    signal = interrupted() => Err(Error::Interrupted(format!(
                        "{signal} received: the backup of job `{}` was abandoned; no manifest was written",
                        job.name
                    )).into()),
                };
                drop(lock);
                outcome
            }
        };
        match outcome {
            Ok(m) => {
                if !ctx.json {
                    print_done(&m, started.elapsed());
                }
                ping(
                    job,
                    Event::Success,
                    &format!(
                        "backup {} of job {}: {} stored",
                        m.backup_id,
                        m.job,
                        human_bytes(m.data.size)
                    ),
                )
                .await;
                results.push(JobResult {
                    job: job.name.clone(),
                    ok: true,
                    manifest: Some(m),
                    error: None,
                });
            }
            Err(e) => {
                let e = e.context(format!("job `{}`", job.name));
                eprintln!("error: {e:#}");
                let code = exit_code_for(&e);
                ping(job, Event::Fail, &format!("{e:#}")).await;
                results.push(JobResult {
                    job: job.name.clone(),
                    ok: false,
                    manifest: None,
                    error: Some(format!("{e:#}")),
                });
                first_error.get_or_insert(code);
                if code == ExitCode::Interrupted {
                    break;
                }
            }
        }
    }
    if ctx.json {
        crate::report::print_json(&serde_json::json!({ "jobs": results }));
    }
    match first_error {
        None => Ok(()),
        Some(code) => {
            let failed: Vec<&str> = results
                .iter()
                .filter(|r| !r.ok)
                .map(|r| r.job.as_str())
                .collect();
            Err(summary(
                code,
                format!(
                    "{} of {} jobs failed: {} (no manifest was written for {})",
                    failed.len(),
                    jobs.len(),
                    failed.join(", "),
                    if failed.len() == 1 { "it" } else { "them" }
                ),
            ))
        }
    }
}

/// One backup of a job at a time, across processes ([`JobLock`]): refused while another
/// run holds the job's lock, or waited for with `--wait`. With signing on the lock is
/// required (an overlap would fork the chain); without, it is best effort: a state
/// directory that cannot be used only loses the protection against overlapping runs.
async fn lock_job(
    settings: &Settings,
    vault: &str,
    signed: bool,
    job: &Job,
    wait: bool,
) -> anyhow::Result<Option<JobLock>> {
    match JobLock::acquire(&settings.signing.state_dir, vault, &job.name, wait).await {
        Ok(lock) => Ok(Some(lock)),
        Err(Busy::Held(pid)) => Err(Error::config(format!(
            "job `{}` is already being backed up ({}): not started again (pass --wait to wait \
             for it)",
            job.name,
            holder(pid)
        ))
        .into()),
        Err(Busy::Unusable(e)) if signed => Err(anyhow::Error::new(e).context(
            "signed backups keep their job lock and chain head in [signing] state_dir, \
             which must be writable",
        )),
        Err(Busy::Unusable(e)) => {
            tracing::info!("job `{}`: {e}; running without the job lock", job.name);
            Ok(None)
        }
    }
}

/// Reports a job's progress to its ping URLs; a ping that fails is a warning only.
async fn ping(job: &Job, event: Event, body: &str) {
    if let Some(p) = &job.ping
        && let Err(e) = notify::ping(p, event, body).await
    {
        eprintln!("warning: job `{}`: {e}", job.name);
    }
}

/// Backs up one job: data object first, manifest last (signed and chained when the
/// writer has a signing key).
pub async fn backup_job(
    store: &dyn Store,
    settings: &Settings,
    signer: Option<&SigningKey>,
    job: &Job,
) -> anyhow::Result<Manifest> {
    let started_at = Utc::now();
    let backup_id = manifest::new_backup_id(started_at);
    let (tier, lock) = settings.retention.decide(started_at);
    let extension = job.source.extension();
    let key = settings
        .layout
        .data_key(&job.name, &backup_id, started_at, &extension);
    let span = tracing::info_span!("backup", job = %job.name, id = %backup_id);
    tracing::info!(parent: &span, %key, %tier, "starting");

    let opts = PutOptions {
        lock: settings.retention.lock_to_send(lock),
    };
    let progress = Progress::start(format!("backing up {}", job.name), None);
    let written = pipeline::backup(
        store,
        &key,
        &opts,
        job.source.clone(),
        job.recipients.clone(),
        settings.compression,
        progress.counter(),
    )
    .instrument(span.clone())
    .await?;
    drop(progress);

    let mut manifest = Manifest::new(
        &job.name,
        &backup_id,
        manifest::SourceInfo {
            kind: job.source.kind().into(),
            extension,
            databases: job.source.databases(),
            database_properties: written.database_properties().cloned(),
        },
        started_at,
        written,
        manifest::Retention {
            tier,
            lock,
            applied_by: settings.retention.source,
        },
    );
    let state_dir = &settings.signing.state_dir;
    let head = signer.and_then(|_| ChainState::load(state_dir, &job.name));
    if let Some(key) = signer {
        if head.is_none() {
            tracing::info!(parent: &span, "no chain state in {}: this manifest starts a new chain segment", state_dir.display());
        }
        manifest.chain = Some(ChainState::next_link(head.as_ref()));
        manifest.signature = Some(Signature::make(key, &manifest.signed_bytes()));
    }
    let bytes = manifest.to_bytes();
    let manifest_hash = blake3::hash(&bytes).to_hex().to_string();
    let manifest_key = settings.layout.manifest_key(&job.name, &backup_id);
    store
        .put(&manifest_key, PipeReader::from_bytes(bytes), &opts)
        .await
        .with_context(|| {
            format!("the data object {key} is stored but its manifest could not be written")
        })?;
    tracing::info!(parent: &span, %manifest_key, "committed");
    if let Some(chain) = &manifest.chain {
        let state = ChainState {
            job: job.name.clone(),
            backup_id: backup_id.clone(),
            manifest_blake3: manifest_hash,
            sequence: chain.sequence,
        };
        if let Err(e) = state.save(state_dir) {
            eprintln!(
                "warning: job `{}`: {e}; the next manifest will start a new chain segment",
                job.name
            );
        }
    }
    Ok(manifest)
}

fn print_done(m: &Manifest, took: std::time::Duration) {
    println!(
        "backed up {}  {}  {} -> {} stored  {} until {} ({})  in {:.1}s",
        m.job,
        m.backup_id,
        human_bytes(m.plaintext.size),
        human_bytes(m.data.size),
        m.retention.tier,
        m.retention.lock.retain_until.format("%Y-%m-%d"),
        m.retention.lock.mode.as_str(),
        took.as_secs_f64()
    );
}
