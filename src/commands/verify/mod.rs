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
//! chosen backups and the plaintext hash is checked too; nothing is written anywhere.

mod bucket;
mod judge;
mod output;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, TimeDelta, Utc};
use futures::stream::{self, StreamExt};
use rand::seq::SliceRandom;
use serde::Serialize;
use tokio_util::io::SyncIoBridge;

use super::{Context, restorer_identities, warn_about};
use crate::catalog::{self, Entry};
use crate::cli::VerifyArgs;
use crate::config::Settings;
use crate::crypto::Identities;
use crate::error::{Error, ExitCode, summary, worst};
use crate::manifest::Manifest;
use crate::notify::{self, Event};
use crate::pipeline;
use crate::progress::{Progress, Tracked};
use crate::retention::{Lock, LockSource};
use crate::store::{self, Role, Store, VersionInfo};
use judge::{Expect, Finding, Linked, Status};

/// How many HEAD requests run at once (per job).
const HEADS_AT_ONCE: usize = 16;

/// How many jobs are listed and checked at once.
const JOBS_AT_ONCE: usize = 4;

/// How many backups are downloaded and hashed (or decrypted) at once, over all jobs:
/// one per core, at least two (a download waits on the network as much as on the
/// CPU), at most eight. Each stream holds a bounded buffer, so memory stays bounded.
fn downloads_at_once() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// One backup as checked.
#[derive(Debug, Serialize)]
pub struct Checked {
    pub job: String,
    /// The manifest key.
    pub key: String,
    pub backup_id: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    /// Stored (ciphertext) size.
    pub size: Option<u64>,
    /// Whether the ciphertext was downloaded and hashed (and with --deep, decrypted).
    pub hashed: bool,
    /// The data object's lock as the store reports it.
    pub lock: Option<Lock>,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
}

/// One job's verdict.
#[derive(Debug, Serialize)]
pub struct JobReport {
    pub job: String,
    pub status: Status,
    pub backups: usize,
    pub good: usize,
    pub hashed: usize,
    pub newest: Option<String>,
    /// When the newest good backup finished.
    pub last_success: Option<DateTime<Utc>>,
    pub age_seconds: Option<i64>,
    pub interval_seconds: i64,
    pub grace_seconds: i64,
    pub newest_size: Option<u64>,
    pub newest_plaintext_size: Option<u64>,
    pub chain_segments: usize,
    pub findings: Vec<Finding>,
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
    let jobs = settings.job_names(args.job.as_deref());
    let role = if args.deep {
        Role::Restorer
    } else {
        Role::Verifier
    };
    let store = super::open_store(settings, role).await?;
    warn_about(store.as_ref());

    let bucket = bucket::check(store.as_ref(), settings).await;
    let progress = Progress::start("verifying".into(), None);
    let mut checked = Vec::new();
    let mut reports = Vec::new();
    let scope = Scope {
        all: args.all,
        since,
        sample: args.sample.unwrap_or(0),
        downloads: tokio::sync::Semaphore::new(downloads_at_once()),
    };
    // Jobs are checked side by side (in their order in the report); the downloads of
    // all of them share one limit.
    let mut per_job = stream::iter(&jobs)
        .map(|job| {
            verify_job(
                store.as_ref(),
                settings,
                job,
                &scope,
                identities.clone(),
                progress.counter(),
            )
        })
        .buffered(JOBS_AT_ONCE);
    while let Some((report, backups)) = per_job.next().await {
        reports.push(report);
        checked.extend(backups);
    }
    // The stream borrows `progress`, dropped next.
    drop(per_job);
    drop(progress);

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

/// Which backups get their ciphertext downloaded and hashed.
struct Scope {
    all: bool,
    since: Option<DateTime<Utc>>,
    sample: usize,
    /// Permits for the downloads running at once.
    downloads: tokio::sync::Semaphore,
}

impl Scope {
    /// Indexes into `manifests` (oldest first): the newest, then what the flags add.
    fn choose(&self, manifests: &[Option<&Manifest>]) -> HashSet<usize> {
        let readable: Vec<usize> = (0..manifests.len())
            .filter(|i| manifests[*i].is_some())
            .collect();
        let mut chosen: HashSet<usize> = readable.last().copied().into_iter().collect();
        for &i in &readable {
            let m = manifests[i].expect("readable");
            if self.all || self.since.is_some_and(|t| m.started_at >= t) {
                chosen.insert(i);
            }
        }
        let mut rest: Vec<usize> = readable
            .into_iter()
            .filter(|i| !chosen.contains(i))
            .collect();
        rest.shuffle(&mut rand::thread_rng());
        chosen.extend(rest.into_iter().take(self.sample));
        chosen
    }
}

async fn verify_job(
    store: &dyn Store,
    settings: &Settings,
    job: &str,
    scope: &Scope,
    identities: Option<Arc<Identities>>,
    counter: Arc<AtomicU64>,
) -> (JobReport, Vec<Checked>) {
    let now = Utc::now();
    let configured = settings.job(job).ok();
    let expect = Expect {
        interval: configured.map_or(TimeDelta::days(1), |j| j.interval),
        grace: configured.map_or(TimeDelta::hours(6), |j| j.grace),
        size_drop: settings.verify.size_drop,
        size_window: settings.verify.size_window,
    };
    let mut report = JobReport {
        job: job.to_string(),
        status: Status::Ok,
        backups: 0,
        good: 0,
        hashed: 0,
        newest: None,
        last_success: None,
        age_seconds: None,
        interval_seconds: expect.interval.num_seconds(),
        grace_seconds: expect.grace.num_seconds(),
        newest_size: None,
        newest_plaintext_size: None,
        chain_segments: 0,
        findings: Vec::new(),
    };

    // One listing of every version under the job: data and manifests.
    let listing = match store.all_versions(&settings.layout.job_root(job)).await {
        Ok(l) => l,
        Err(e) => {
            report.findings.push(Finding::from_store_error(e));
            report.status = Status::of(&report.findings, 0);
            return (report, Vec::new());
        }
    };
    let mut versions: BTreeMap<&str, Vec<&VersionInfo>> = BTreeMap::new();
    for v in &listing {
        versions.entry(v.key.as_str()).or_default().push(v);
    }
    let manifests_prefix = settings.layout.manifests_prefix(job);
    let originals = store::originals(
        &listing
            .iter()
            .filter(|v| v.key.starts_with(&manifests_prefix))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let entries = catalog::read_entries(store, &settings.layout, job, originals).await;
    report.backups = entries.len();

    // Per backup, the cheap checks for all: versions, locks, signature.
    let trusted = &settings.signing.public_keys;
    let observed: Vec<Observed> = stream::iter(&entries)
        .map(|entry| observe(store, entry, &versions, &settings.signing, now))
        .buffered(HEADS_AT_ONCE)
        .collect()
        .await;
    let gone: Vec<bool> = observed.iter().map(|o| o.data_gone).collect();
    let (mut findings, locks): (Vec<Vec<Finding>>, Vec<Option<Lock>>) =
        observed.into_iter().map(|o| (o.findings, o.lock)).unzip();

    // The downloads: the newest by default, more as the flags say.
    let parsed: Vec<Option<&Manifest>> = entries.iter().map(|e| e.manifest.as_ref().ok()).collect();
    let chosen = scope.choose(&parsed);
    let mut hashed = vec![false; entries.len()];
    let mut chosen_sorted: Vec<usize> = chosen.into_iter().collect();
    chosen_sorted.sort_unstable();
    // No point downloading a version that is known to be gone.
    let to_hash: Vec<(usize, &Manifest)> = chosen_sorted
        .into_iter()
        .filter(|i| !gone[*i])
        .filter_map(|i| parsed[i].map(|m| (i, m)))
        .collect();
    let mut downloads = stream::iter(to_hash)
        .map(|(i, m)| {
            let (identities, counter) = (identities.clone(), counter.clone());
            async move {
                let _permit = scope.downloads.acquire().await.expect("never closed");
                (i, check_data(store, m, identities, counter).await)
            }
        })
        .buffer_unordered(downloads_at_once());
    while let Some((i, result)) = downloads.next().await {
        hashed[i] = true;
        if let Err(e) = result {
            findings[i].push(Finding::from_error(&e));
        }
    }
    // The stream borrows `entries`, moved into the report below.
    drop(downloads);

    // Per job: freshness, gaps, size, chain, over the good backups.
    let good: Vec<usize> = (0..entries.len())
        .filter(|i| parsed[*i].is_some() && !gone[*i] && !findings[*i].iter().any(Finding::spoils))
        .collect();
    let good_manifests: Vec<&Manifest> = good.iter().filter_map(|i| parsed[*i]).collect();
    report.good = good_manifests.len();
    report.hashed = hashed.iter().filter(|h| **h).count();
    if entries.is_empty() {
        report
            .findings
            .push(Finding::stale(format!("no backups found for job `{job}`")));
    } else {
        report
            .findings
            .extend(judge::freshness(&good_manifests, &expect, now));
    }
    let gap_window = scope
        .since
        .unwrap_or(now - (expect.interval * 10).max(TimeDelta::days(30)));
    report
        .findings
        .extend(judge::gaps(&good_manifests, &expect, gap_window));
    report
        .findings
        .extend(judge::size_anomaly(&good_manifests, &expect));
    if !trusted.is_empty() {
        let linked: Vec<Linked<'_>> = good
            .iter()
            .filter_map(|i| {
                Some(Linked {
                    manifest: parsed[*i]?,
                    blake3: entries[*i].blake3.as_deref()?,
                })
            })
            .collect();
        let (chain_findings, segments) = judge::chain(&linked);
        report.findings.extend(chain_findings);
        report.chain_segments = segments;
    }
    if let Some(newest) = good_manifests.last() {
        report.newest = Some(newest.backup_id.clone());
        report.last_success = Some(newest.finished_at);
        report.age_seconds = Some((now - newest.finished_at).num_seconds());
        report.newest_size = Some(newest.data.size);
        report.newest_plaintext_size = Some(newest.plaintext.size);
    }

    let checked: Vec<Checked> = entries
        .into_iter()
        .zip(findings)
        .zip(hashed)
        .zip(locks)
        .map(|(((entry, findings), hashed), lock)| {
            let failed: Vec<&Finding> = findings.iter().filter(|f| f.spoils()).collect();
            let error = (!failed.is_empty()).then(|| {
                failed
                    .iter()
                    .map(|f| f.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            });
            let manifest = entry.manifest.as_ref().ok();
            Checked {
                job: job.to_string(),
                key: entry.key,
                backup_id: manifest.map(|m| m.backup_id.clone()),
                started_at: manifest.map(|m| m.started_at),
                size: manifest.map(|m| m.data.size),
                hashed,
                lock,
                ok: error.is_none(),
                error,
                findings,
            }
        })
        .collect();
    report.status = Status::of(
        report
            .findings
            .iter()
            .chain(checked.iter().flat_map(|c| c.findings.iter())),
        report.backups,
    );
    (report, checked)
}

/// What the checks without a download found for one backup.
struct Observed {
    findings: Vec<Finding>,
    /// The data object's lock as the store reports it.
    lock: Option<Lock>,
    /// The data version the manifest records is not in the listing.
    data_gone: bool,
}

/// The checks made for every backup, without downloading it.
async fn observe(
    store: &dyn Store,
    entry: &Entry,
    versions: &BTreeMap<&str, Vec<&VersionInfo>>,
    signing: &crate::signing::Signing,
    now: DateTime<Utc>,
) -> Observed {
    let m = match &entry.manifest {
        Ok(m) => m,
        Err(e) => {
            return Observed {
                findings: vec![Finding::from_store_error(e.clone())],
                lock: None,
                data_gone: false,
            };
        }
    };
    let (mut out, data_gone) = version_findings(m, &entry.key, versions, now);
    let mut data_lock = None;
    if !data_gone {
        match lock_findings(store, "data", &m.data.key, m.data.version_id.as_deref(), m).await {
            Ok((findings, lock)) => {
                out.extend(findings);
                data_lock = lock;
            }
            Err(f) => out.push(f),
        }
    }
    match lock_findings(
        store,
        "manifest",
        &entry.key,
        entry.version_id.as_deref(),
        m,
    )
    .await
    {
        Ok((findings, _)) => out.extend(findings),
        Err(f) => out.push(f),
    }
    if let Some(why) = signing.distrust(m, entry.stored_at) {
        out.push(Finding::integrity(format!(
            "tampering: manifest {}: {why}",
            entry.key
        )));
    }
    Observed {
        findings: out,
        lock: data_lock,
        data_gone,
    }
}

/// vault writes every key exactly once: another version or a delete marker on a
/// backup's data or manifest key means someone else wrote or deleted there; the data
/// version the manifest records must still exist while its retention runs. Also says
/// whether that version is gone.
fn version_findings(
    m: &Manifest,
    manifest_key: &str,
    versions: &BTreeMap<&str, Vec<&VersionInfo>>,
    now: DateTime<Utc>,
) -> (Vec<Finding>, bool) {
    let mut out = Vec::new();
    let mut gone = false;
    // Once a backup's retention has ended, pruning it (a lifecycle rule, or an
    // administrator) is expected: delete markers and removed versions are reported,
    // not treated as tampering.
    let expired = m.retention.lock.retain_until <= now;
    let finding = |message: String| {
        if expired {
            Finding::warning(format!("expired backup {}: {message}", m.backup_id))
        } else {
            Finding::integrity(format!("tampering: {message}"))
        }
    };
    let none = Vec::new();
    for (what, key) in [("data", m.data.key.as_str()), ("manifest", manifest_key)] {
        let vs = versions.get(key).unwrap_or(&none);
        let markers = vs.iter().filter(|v| v.delete_marker).count();
        let objects = vs.len() - markers;
        if markers > 0 {
            out.push(finding(format!(
                "{what} key {key} has {markers} delete marker{}",
                if markers == 1 { "" } else { "s" }
            )));
        }
        if objects > 1 {
            out.push(Finding::integrity(format!(
                "tampering: {what} key {key} has {objects} versions (vault writes one)"
            )));
        }
        if what != "data" {
            continue;
        }
        let present = match &m.data.version_id {
            Some(id) => vs
                .iter()
                .any(|v| !v.delete_marker && v.version_id.as_ref() == Some(id)),
            None => objects > 0,
        };
        if !present {
            gone = true;
            let version = m.data.version_id.as_deref().unwrap_or("object");
            let until = m.retention.lock.retain_until;
            out.push(if until > now {
                Finding::integrity(format!(
                    "tampering: the data {version} of {key} (backup {}) is gone, deleted before \
                     its retention ended (the manifest promises {})",
                    m.backup_id,
                    until.to_rfc3339()
                ))
            } else {
                Finding::warning(format!(
                    "expired backup {}: the data {version} of {key} is gone; its retention \
                     ended {} (pruned: the manifest remains until it is pruned too)",
                    m.backup_id,
                    until.to_rfc3339()
                ))
            });
        }
    }
    (out, gone)
}

/// Reads an object's lock back and compares it with the manifest's promise.
async fn lock_findings(
    store: &dyn Store,
    what: &str,
    key: &str,
    version: Option<&str>,
    m: &Manifest,
) -> Result<(Vec<Finding>, Option<Lock>), Finding> {
    let meta = match store.head(key, version).await {
        Ok(meta) => meta,
        Err(Error::NotFound(msg)) => {
            return Err(Finding::integrity(format!(
                "the {what} object {key} of backup {} is missing: {msg}",
                m.backup_id
            )));
        }
        Err(e) => return Err(Finding::from_store_error(e)),
    };
    let mut out = Vec::new();
    if what == "data" && meta.size != m.data.size {
        out.push(Finding::integrity(format!(
            "{key}: the stored object is {} bytes, the manifest says {}",
            meta.size, m.data.size
        )));
    }
    let promised = m.retention.lock;
    // The bucket default is applied by the store's clock when the upload completes:
    // later than the writer's start, never earlier by more than clock skew.
    let slack = match m.retention.applied_by {
        LockSource::PerObject => TimeDelta::seconds(1),
        LockSource::BucketDefault => TimeDelta::minutes(10),
    };
    match meta.lock {
        None => out.push(Finding::integrity(format!(
            "{what} object {key} (backup {}) is stored without a lock: the store reports no \
             Object Lock mode and retain-until date",
            m.backup_id
        ))),
        Some(lock) => {
            if lock.mode != promised.mode {
                out.push(Finding::integrity(format!(
                    "{what} object {key} is locked in {} mode, the manifest says {}",
                    lock.mode.as_str(),
                    promised.mode.as_str()
                )));
            }
            if lock.retain_until + slack < promised.retain_until {
                out.push(Finding::integrity(format!(
                    "{what} object {key} is locked until {}, earlier than the {} its manifest \
                     promises",
                    lock.retain_until.to_rfc3339(),
                    promised.retain_until.to_rfc3339()
                )));
            }
        }
    }
    Ok((out, meta.lock))
}

async fn check_data(
    store: &dyn Store,
    manifest: &Manifest,
    identities: Option<Arc<Identities>>,
    counter: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let reader = store
        .get(&manifest.data.key, manifest.data.version_id.as_deref())
        .await
        .map_err(|e| match e {
            Error::NotFound(msg) => Error::integrity(format!(
                "the data object of backup {} is missing: {msg}",
                manifest.backup_id
            )),
            other => other,
        })?;
    let object = Tracked {
        inner: SyncIoBridge::new(reader),
        counter,
        cancel: Arc::default(),
    };
    let manifest = manifest.clone();
    tokio::task::spawn_blocking(move || match identities {
        None => pipeline::verify_ciphertext(object, &manifest.expected()),
        Some(ids) => pipeline::restore(object, &ids, &manifest.expected(), &mut std::io::sink()),
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use judge::Severity;

    fn version(key: &str, id: &str, marker: bool) -> VersionInfo {
        VersionInfo {
            key: key.into(),
            version_id: Some(id.into()),
            delete_marker: marker,
            size: 1,
            modified: None,
        }
    }

    #[test]
    fn delete_markers_are_tampering_while_locked_and_pruning_after() {
        let at = Utc.with_ymd_and_hms(2026, 11, 1, 3, 0, 0).unwrap();
        let mut m = judge::tests::manifest(at, 1);
        m.data.version_id = Some("v1".into());
        m.retention.lock.retain_until = at + TimeDelta::days(35);
        let listing = [version("k", "m1", true), version("k", "v1", false)];
        let mut versions: BTreeMap<&str, Vec<&VersionInfo>> = BTreeMap::new();
        for v in &listing {
            versions.entry(v.key.as_str()).or_default().push(v);
        }
        let (locked, gone) = version_findings(&m, "mk", &versions, at + TimeDelta::days(1));
        assert!(!gone);
        assert!(
            locked.iter().any(|f| f.severity == Severity::Integrity
                && f.message
                    .contains("tampering: data key k has 1 delete marker")),
            "{locked:?}"
        );
        let (pruned, _) = version_findings(&m, "mk", &versions, at + TimeDelta::days(36));
        assert!(
            pruned.iter().all(|f| f.severity == Severity::Warning)
                && pruned[0].message.contains("expired backup"),
            "{pruned:?}"
        );
        // The version itself deleted: tampering before the promise, pruning after.
        let versions: BTreeMap<&str, Vec<&VersionInfo>> = BTreeMap::new();
        let (early, gone) = version_findings(&m, "mk", &versions, at + TimeDelta::days(1));
        assert!(
            gone && early
                .iter()
                .any(|f| f.message.contains("deleted before its retention ended"))
        );
        let (late, gone) = version_findings(&m, "mk", &versions, at + TimeDelta::days(36));
        assert!(
            gone && late.iter().all(|f| f.severity == Severity::Warning),
            "{late:?}"
        );
    }
}
