//! One job through `verify`: one listing of everything under it, the cheap checks on
//! every backup, the downloads the scope chooses, and the verdict on the job
//! (freshness, gaps, size, chain) over its good backups.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, TimeDelta, Utc};
use futures::stream::{self, StreamExt};
use rand::seq::SliceRandom;
use serde::Serialize;

use super::backup::{BackupCheck, Checked, Versions};
use super::judge::{self, Expect, Finding, Linked, Status};
use crate::catalog::{self, Cache, Listing};
use crate::commands::prune::plan;
use crate::config::Settings;
use crate::crypto::Identities;
use crate::manifest::Manifest;
use crate::store::{self, Store, VersionInfo};

/// How many backups have their versions, locks and signature checked at once (per
/// job): HEAD requests, mostly.
const HEADS_AT_ONCE: usize = 16;

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
    /// Backups pruned after their lock ended, awaiting removal by the bucket's lifecycle.
    pub pruned: usize,
    /// What the job holds in the bucket and what leaves it soon.
    pub storage: Storage,
    pub findings: Vec<Finding>,
    /// Gaps longer than interval + grace in the recent series (each also a finding).
    #[serde(skip)]
    pub gaps: usize,
    /// The newest good backup is far smaller than the recent median (also a finding).
    #[serde(skip)]
    pub size_anomaly: bool,
}

impl JobReport {
    /// Nothing checked yet, nothing found.
    fn new(job: &str, expect: &Expect) -> JobReport {
        JobReport {
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
            pruned: 0,
            storage: Storage::default(),
            findings: Vec::new(),
            gaps: 0,
            size_anomaly: false,
        }
    }
}

/// What a job holds: every stored version under it, pruned or not.
#[derive(Debug, Default, Serialize)]
pub struct Storage {
    /// Every object version under the job (data and manifests, hidden ones included):
    /// what the job is billed for.
    pub bytes: u64,
    /// Of those, the versions hidden by delete markers, which the bucket's
    /// noncurrent-version expiration removes.
    pub pruned_bytes: u64,
    /// Backups `vault prune` may prune within the next [`EXPIRING_DAYS`] days (their
    /// lock and the grace over, beyond `keep_last`), and their stored bytes.
    pub expiring_backups: usize,
    pub expiring_bytes: u64,
}

/// How far ahead `verify` looks for backups whose lock ends.
pub const EXPIRING_DAYS: i64 = 30;

/// Which backups get their ciphertext downloaded and hashed.
pub struct Scope {
    pub all: bool,
    pub since: Option<DateTime<Utc>>,
    pub sample: usize,
    /// Permits for the downloads running at once, over all jobs.
    pub downloads: tokio::sync::Semaphore,
    /// How many downloads one job keeps going.
    pub at_once: usize,
}

impl Scope {
    /// Among `backups` (oldest first), the readable ones to download: the newest,
    /// then what the flags add.
    fn choose<'b>(&self, backups: &'b mut [BackupCheck]) -> Vec<&'b mut BackupCheck> {
        let mut readable: Vec<&mut BackupCheck> = backups
            .iter_mut()
            .filter(|b| b.manifest().is_some())
            .collect();
        let Some(newest) = readable.pop() else {
            return Vec::new();
        };
        let flagged = |b: &&mut BackupCheck| {
            self.all
                || self
                    .since
                    .zip(b.manifest())
                    .is_some_and(|(t, m)| m.started_at >= t)
        };
        let (mut chosen, mut rest): (Vec<_>, Vec<_>) = readable.into_iter().partition(flagged);
        rest.shuffle(&mut rand::thread_rng());
        chosen.extend(rest.into_iter().take(self.sample));
        chosen.push(newest);
        chosen
    }
}

/// What the checks of every job in one run share.
pub struct Run<'r> {
    pub store: &'r dyn Store,
    pub settings: &'r Settings,
    /// The versions under each job (one listing of the whole vault for several jobs).
    pub listing: &'r Listing<'r>,
    /// What earlier runs read that cannot have changed.
    pub cache: &'r Cache,
    pub scope: Scope,
    /// The restorer's key, with `--deep`.
    pub identities: Option<Arc<Identities>>,
}

/// Checks one job and every backup under it; the verdict on the job and a row per
/// backup (oldest first).
pub async fn verify_job(
    run: &Run<'_>,
    job: &str,
    counter: Arc<AtomicU64>,
) -> (JobReport, Vec<Checked>) {
    let Run {
        store,
        settings,
        listing,
        cache,
        scope,
        identities,
    } = run;
    let store = *store;
    let now = Utc::now();
    let configured = settings.job(job).ok();
    let expect = Expect {
        interval: configured.map_or(TimeDelta::days(1), |j| j.interval),
        grace: configured.map_or(TimeDelta::hours(6), |j| j.grace),
        size_drop: settings.verify.size_drop,
        size_window: settings.verify.size_window,
    };
    let mut report = JobReport::new(job, &expect);

    // Every version under the job, data and manifests: its part of the vault's one
    // listing, or a listing of its own.
    let listing = match listing.job(job).await {
        Ok(l) => l,
        Err(e) => {
            report.findings.push(Finding::from_store_error(e));
            report.status = Status::of(&report.findings, 0);
            return (report, Vec::new());
        }
    };
    let mut versions = Versions::new();
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
    let entries = catalog::read_entries(store, &settings.layout, job, originals, cache).await;
    report.backups = entries.len();

    // Per backup, the cheap checks for all: versions, locks, signature.
    let mut backups: Vec<BackupCheck> = stream::iter(entries)
        .map(|entry| BackupCheck::observe(entry, store, cache, &versions, &settings.signing, now))
        .buffered(HEADS_AT_ONCE)
        .collect()
        .await;

    // The downloads: the newest by default, more as the flags say. No point
    // downloading a version that is known to be gone.
    let chosen = scope.choose(&mut backups);
    stream::iter(chosen.into_iter().filter(|b| !b.data_gone))
        .map(|b| {
            let (identities, counter) = (identities.clone(), counter.clone());
            async move {
                let _permit = scope.downloads.acquire().await.expect("never closed");
                b.download(store, identities, counter).await;
            }
        })
        .buffer_unordered(scope.at_once)
        .collect::<()>()
        .await;
    report.hashed = backups.iter().filter(|b| b.hashed).count();
    report.pruned = backups.iter().filter(|b| b.pruned).count();
    report.storage = storage(&listing, &versions, &backups, settings, job, now);

    let good: Vec<&BackupCheck> = backups.iter().filter(|b| b.is_good()).collect();
    let signed = !settings.signing.public_keys.is_empty();
    // Manifests pruned (hidden, or their versions already removed by the lifecycle):
    // a chain link to one of them is not a hole.
    let pruned: HashSet<&str> = backups
        .iter()
        .filter(|b| b.pruned)
        .filter_map(|b| b.manifest().map(|m| m.backup_id.as_str()))
        .chain(
            versions
                .iter()
                .filter(|(_, v)| v.iter().all(|v| v.delete_marker))
                .filter_map(|(key, _)| settings.layout.backup_id_of(job, key)),
        )
        .collect();
    judge_job(
        &mut report,
        &good,
        &expect,
        scope.since,
        signed,
        &pruned,
        now,
    );

    let checked: Vec<Checked> = backups.into_iter().map(|b| b.into_checked(job)).collect();
    report.status = Status::of(
        report
            .findings
            .iter()
            .chain(checked.iter().flat_map(|c| c.findings.iter())),
        report.backups,
    );
    (report, checked)
}

/// The job's storage: every version's bytes, the hidden ones', and what `vault prune`
/// may prune in the next [`EXPIRING_DAYS`] days as things stand.
fn storage(
    listing: &[VersionInfo],
    versions: &Versions<'_>,
    backups: &[BackupCheck],
    settings: &Settings,
    job: &str,
    now: DateTime<Utc>,
) -> Storage {
    let hidden = |key: &str| {
        versions
            .get(key)
            .and_then(|v| v.first())
            .is_some_and(|v| v.delete_marker)
    };
    let stored = listing.iter().filter(|v| !v.delete_marker);
    let bytes = stored.clone().map(|v| v.size).sum();
    let pruned_bytes = stored.filter(|v| hidden(&v.key)).map(|v| v.size).sum();
    let candidates: Vec<(&BackupCheck, plan::Backup)> = backups
        .iter()
        .filter_map(|b| {
            let m = b.manifest()?;
            let until = [Some(m.retention.lock), b.lock]
                .into_iter()
                .flatten()
                .map(|l| l.retain_until)
                .max();
            Some((
                b,
                plan::Backup {
                    backup_id: m.backup_id.clone(),
                    until,
                    good: b.is_good(),
                    manifest_hidden: b.pruned || hidden(&b.entry.key),
                    data_hidden: hidden(&m.data.key),
                },
            ))
        })
        .collect();
    let list: Vec<plan::Backup> = candidates.iter().map(|(_, p)| p.clone()).collect();
    let later = now + TimeDelta::days(EXPIRING_DAYS);
    let decisions = plan::plan(
        &list,
        settings.keep_last(job),
        settings.pruning.grace,
        later,
    );
    let expiring: Vec<&BackupCheck> = candidates
        .iter()
        .zip(decisions)
        .filter(|(_, d)| *d == plan::Decision::Prune)
        .map(|((b, _), _)| *b)
        .collect();
    Storage {
        bytes,
        pruned_bytes,
        expiring_backups: expiring.len(),
        expiring_bytes: expiring
            .iter()
            .filter_map(|b| b.manifest())
            .map(|m| m.data.size)
            .sum(),
    }
}

/// Per job: freshness, gaps, size and (when signing is on) the chain, over the good
/// backups; and which one is the newest.
fn judge_job(
    report: &mut JobReport,
    good: &[&BackupCheck],
    expect: &Expect,
    since: Option<DateTime<Utc>>,
    signed: bool,
    pruned: &HashSet<&str>,
    now: DateTime<Utc>,
) {
    let good_manifests: Vec<&Manifest> = good.iter().filter_map(|b| b.manifest()).collect();
    report.good = good_manifests.len();
    if report.backups == 0 {
        report.findings.push(Finding::stale(format!(
            "no backups found for job `{}`",
            report.job
        )));
    } else {
        report
            .findings
            .extend(judge::freshness(&good_manifests, expect, now));
    }
    let gap_window = since.unwrap_or(now - (expect.interval * 10).max(TimeDelta::days(30)));
    let gaps = judge::gaps(&good_manifests, expect, gap_window);
    report.gaps = gaps.len();
    report.findings.extend(gaps);
    let size_anomaly = judge::size_anomaly(&good_manifests, expect);
    report.size_anomaly = size_anomaly.is_some();
    report.findings.extend(size_anomaly);
    if signed {
        let linked: Vec<Linked<'_>> = good
            .iter()
            .filter_map(|b| {
                Some(Linked {
                    manifest: b.manifest()?,
                    blake3: b.entry.blake3.as_deref()?,
                })
            })
            .collect();
        let (chain_findings, segments) = judge::chain(&linked, pruned);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Entry;
    use crate::commands::verify::judge::tests::manifest;
    use crate::error::Error;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 3, 0, 0).unwrap()
    }

    /// Four readable backups a day apart, then one whose manifest cannot be read.
    fn backups() -> Vec<BackupCheck> {
        (0..5)
            .map(|day| {
                BackupCheck::new(Entry {
                    key: format!("m{day}"),
                    version_id: None,
                    blake3: None,
                    stored_at: None,
                    manifest: if day < 4 {
                        Ok(manifest(t0() + TimeDelta::days(day), 1))
                    } else {
                        Err(Error::config("unreadable"))
                    },
                })
            })
            .collect()
    }

    fn chosen(scope: &Scope, backups: &mut [BackupCheck]) -> Vec<String> {
        let mut keys: Vec<String> = scope
            .choose(backups)
            .into_iter()
            .map(|b| b.entry.key.clone())
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn the_newest_readable_backup_and_what_the_flags_add_are_chosen() {
        let scope = |all, since, sample| Scope {
            all,
            since,
            sample,
            downloads: tokio::sync::Semaphore::new(1),
            at_once: 1,
        };
        let mut b = backups();
        assert_eq!(chosen(&scope(false, None, 0), &mut b), ["m3"]);
        assert_eq!(
            chosen(&scope(true, None, 0), &mut b),
            ["m0", "m1", "m2", "m3"]
        );
        let since = Some(t0() + TimeDelta::days(2));
        assert_eq!(chosen(&scope(false, since, 0), &mut b), ["m2", "m3"]);
        let sampled = chosen(&scope(false, None, 2), &mut b);
        assert_eq!(sampled.len(), 3, "{sampled:?}");
        assert!(sampled.contains(&"m3".to_string()) && !sampled.contains(&"m4".to_string()));
        assert!(chosen(&scope(true, None, 9), &mut b[4..]).is_empty());
    }
}
