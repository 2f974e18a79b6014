//! What `verify` concludes about a job from its manifests: freshness, gaps, size
//! anomalies and the signed chain, each said as a `Finding`; and the job's one-word
//! `Status` from the worst of them. Pure functions over what was read.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::error::{Error, ExitCode, exit_code_for};
use crate::manifest::Manifest;
use crate::signing::Segment;

/// How much a finding matters; the exit code follows the worst one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look; the exit code does not change.
    Warning,
    /// A backup is late or missing: exit 4.
    Stale,
    /// Data missing, altered, unlocked or forged: exit 3.
    Integrity,
    /// Something could not be checked (access, configuration, the store failing).
    Unchecked,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub message: String,
    #[serde(skip)]
    pub code: ExitCode,
}

impl Finding {
    pub fn warning(message: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Warning,
            message: message.into(),
            code: ExitCode::Success,
        }
    }

    pub fn stale(message: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Stale,
            message: message.into(),
            code: ExitCode::Missing,
        }
    }

    pub fn integrity(message: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Integrity,
            message: message.into(),
            code: ExitCode::Integrity,
        }
    }

    /// A failure, classified by its typed root: integrity stays integrity, anything
    /// else means the thing could not be checked.
    pub fn from_error(err: &anyhow::Error) -> Finding {
        let code = exit_code_for(err);
        let message = format!("{err:#}");
        match code {
            ExitCode::Integrity => Finding::integrity(message),
            // A backup that is gone is a data problem, not a checking problem.
            ExitCode::Missing => Finding::integrity(message),
            _ => Finding {
                severity: Severity::Unchecked,
                message,
                code,
            },
        }
    }

    pub fn from_store_error(err: Error) -> Finding {
        Finding::from_error(&anyhow::Error::new(err))
    }

    /// Whether this finding makes a backup not good.
    pub fn spoils(&self) -> bool {
        matches!(self.severity, Severity::Integrity | Severity::Unchecked)
    }
}

/// The one-word verdict on a job, from the worst of its findings. Said the same way
/// in the table, in `--json` and as the `status` label of the Prometheus metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Only warnings.
    Warning,
    /// The newest good backup is too old, or there is none.
    Stale,
    /// Stale, and the job has no backups at all.
    Missing,
    Integrity,
    Unchecked,
}

impl Status {
    /// Every status, in the order the metrics list them.
    pub const ALL: [Status; 6] = [
        Status::Ok,
        Status::Warning,
        Status::Stale,
        Status::Missing,
        Status::Integrity,
        Status::Unchecked,
    ];

    /// The status of a job with `backups` backups from all its findings (the job's
    /// and its backups').
    pub fn of<'f>(findings: impl IntoIterator<Item = &'f Finding>, backups: usize) -> Status {
        let worst = findings
            .into_iter()
            .map(|f| f.severity)
            .max_by_key(|s| match s {
                Severity::Warning => 1,
                Severity::Stale => 2,
                Severity::Unchecked => 3,
                Severity::Integrity => 4,
            });
        match worst {
            None => Status::Ok,
            Some(Severity::Warning) => Status::Warning,
            Some(Severity::Stale) if backups == 0 => Status::Missing,
            Some(Severity::Stale) => Status::Stale,
            Some(Severity::Unchecked) => Status::Unchecked,
            Some(Severity::Integrity) => Status::Integrity,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Stale => "stale",
            Status::Missing => "missing",
            Status::Integrity => "integrity",
            Status::Unchecked => "unchecked",
        }
    }

    /// No failure and no staleness (warnings allowed).
    pub fn is_ok(self) -> bool {
        matches!(self, Status::Ok | Status::Warning)
    }

    /// The newest good backup is too old, or there is none.
    pub fn is_stale(self) -> bool {
        matches!(self, Status::Stale | Status::Missing)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The expectations of one job.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    pub interval: TimeDelta,
    pub grace: TimeDelta,
    pub size_drop: f64,
    pub size_window: usize,
}

/// Freshness: the newest good backup must have finished within interval + grace.
pub fn freshness(good: &[&Manifest], expect: &Expect, now: DateTime<Utc>) -> Option<Finding> {
    let allowed = expect.interval + expect.grace;
    match good.last() {
        None => Some(Finding::stale("no good backup")),
        Some(newest) if now - newest.finished_at > allowed => Some(Finding::stale(format!(
            "stale: the newest good backup {} finished {} ago; one is expected every {} \
             (+ {} grace)",
            newest.backup_id,
            human_duration(now - newest.finished_at),
            human_duration(expect.interval),
            human_duration(expect.grace)
        ))),
        Some(_) => None,
    }
}

/// Gaps: two consecutive good backups further apart than interval + grace, among those
/// started at or after `since`.
pub fn gaps(good: &[&Manifest], expect: &Expect, since: DateTime<Utc>) -> Vec<Finding> {
    let allowed = expect.interval + expect.grace;
    good.windows(2)
        .filter(|w| w[1].started_at >= since)
        .filter(|w| w[1].started_at - w[0].started_at > allowed)
        .map(|w| {
            Finding::warning(format!(
                "gap: no backup for {} between {} and {} (expected every {})",
                human_duration(w[1].started_at - w[0].started_at),
                w[0].backup_id,
                w[1].backup_id,
                human_duration(expect.interval)
            ))
        })
        .collect()
}

/// Size anomaly: the newest good backup's dump far smaller than the median of the ones
/// before it (an emptied database looks like this).
pub fn size_anomaly(good: &[&Manifest], expect: &Expect) -> Option<Finding> {
    let (newest, before) = good.split_last()?;
    if expect.size_drop <= 0.0 || before.len() < 3 {
        return None;
    }
    let start = before.len().saturating_sub(expect.size_window);
    let mut sizes: Vec<u64> = before[start..].iter().map(|m| m.plaintext.size).collect();
    sizes.sort_unstable();
    let median = sizes[sizes.len() / 2];
    if (newest.plaintext.size as f64) < expect.size_drop * median as f64 {
        Some(Finding::warning(format!(
            "suspicious size: backup {} holds {} bytes of dump, under {:.0}% of the median \
             {} bytes of the {} before it (an emptied or truncated database looks like this)",
            newest.backup_id,
            newest.plaintext.size,
            expect.size_drop * 100.0,
            median,
            sizes.len()
        )))
    } else {
        None
    }
}

/// One manifest as the chain check sees it.
pub struct Linked<'m> {
    pub manifest: &'m Manifest,
    /// blake3 of its stored bytes.
    pub blake3: &'m str,
}

/// What the signed chain of one job says: holes and forks are tampering; each new
/// segment after the first is reported. A link to a manifest in `pruned` (hidden after
/// its lock ended, or already removed by the bucket's lifecycle) is not a hole: the
/// tiers make pruning leave gaps, a daily gone beside a monthly that stays.
pub fn chain(linked: &[Linked<'_>], pruned: &HashSet<&str>) -> (Vec<Finding>, usize) {
    let mut findings = Vec::new();
    let by_hash: HashMap<&str, &Manifest> = linked.iter().map(|l| (l.blake3, l.manifest)).collect();
    let oldest = linked.iter().map(|l| l.manifest.backup_id.as_str()).min();
    let mut followers: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut segments = 0;
    let mut seen_chain = false;
    for l in linked {
        let Some(link) = &l.manifest.chain else {
            continue;
        };
        let first_link = !seen_chain;
        seen_chain = true;
        match link.segment {
            Segment::New => {
                segments += 1;
                // The first signed manifest starts the chain; a later new segment means
                // the writer lost its state (or someone else holds the key).
                if !first_link {
                    findings.push(Finding::warning(format!(
                        "new chain segment at backup {}: the writer had no chain state (a \
                         fresh host or lost state; or someone else holding the signing key)",
                        l.manifest.backup_id
                    )));
                }
            }
            Segment::Continued => {
                let Some(previous) = link.previous.as_deref() else {
                    findings.push(Finding::integrity(format!(
                        "backup {}: a continued chain link without the previous manifest's hash",
                        l.manifest.backup_id
                    )));
                    continue;
                };
                followers
                    .entry(previous)
                    .or_default()
                    .push(&l.manifest.backup_id);
                let expired = match (&link.previous_backup_id, oldest) {
                    (Some(prev), Some(oldest)) => {
                        prev.as_str() < oldest || pruned.contains(prev.as_str())
                    }
                    _ => false,
                };
                match by_hash.get(previous) {
                    Some(p) if p.started_at <= l.manifest.started_at => {}
                    Some(p) => findings.push(Finding::integrity(format!(
                        "chain: backup {} names {} as its previous, which is newer",
                        l.manifest.backup_id, p.backup_id
                    ))),
                    None if expired => {}
                    None => findings.push(Finding::integrity(format!(
                        "chain hole: backup {} follows manifest {} (blake3 {previous}), which \
                         is not in the vault",
                        l.manifest.backup_id,
                        link.previous_backup_id.as_deref().unwrap_or("?")
                    ))),
                }
            }
        }
    }
    if segments == 0 && linked.iter().any(|l| l.manifest.chain.is_some()) {
        segments = 1; // the segment's start has expired
    }
    for (previous, next) in followers {
        if next.len() > 1 {
            findings.push(Finding::integrity(format!(
                "chain fork: backups {} all follow the manifest with blake3 {previous}",
                next.join(", ")
            )));
        }
    }
    (findings, segments)
}

/// `3d 4h`-style durations for people.
pub fn human_duration(d: TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    let (days, hours, minutes) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::manifest::*;
    use crate::signing::Chain;
    use chrono::TimeZone;

    pub(in crate::commands::verify) fn manifest(at: DateTime<Utc>, size: u64) -> Manifest {
        Manifest::sample(at, size)
    }

    fn daily() -> Expect {
        Expect {
            interval: TimeDelta::days(1),
            grace: TimeDelta::hours(6),
            size_drop: 0.5,
            size_window: 10,
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 3, 0, 0).unwrap()
    }

    #[test]
    fn status_follows_the_worst_finding_and_reads_as_before() {
        let (w, s, i) = (
            Finding::warning("w"),
            Finding::stale("s"),
            Finding::integrity("i"),
        );
        let u = Finding::from_store_error(Error::config("u"));
        assert_eq!(Status::of([], 1), Status::Ok);
        assert_eq!(Status::of([&w], 1), Status::Warning);
        assert_eq!(Status::of([&w, &s], 1), Status::Stale);
        assert_eq!(Status::of([&s], 0), Status::Missing);
        assert_eq!(Status::of([&s, &u, &w], 1), Status::Unchecked);
        assert_eq!(Status::of([&u, &i, &s], 0), Status::Integrity);
        for status in Status::ALL {
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::Value::from(status.as_str())
            );
            assert_eq!(status.to_string(), status.as_str());
        }
    }

    #[test]
    fn freshness_allows_interval_plus_grace() {
        let m = manifest(t0(), 100);
        let good = [&m];
        assert!(freshness(&good, &daily(), t0() + TimeDelta::hours(30)).is_none());
        let f = freshness(&good, &daily(), t0() + TimeDelta::hours(31)).unwrap();
        assert_eq!(f.severity, Severity::Stale);
        assert!(f.message.contains("1d 6h ago"), "{}", f.message);
        assert_eq!(
            freshness(&[], &daily(), t0()).unwrap().code,
            ExitCode::Missing
        );
    }

    #[test]
    fn gaps_and_size_drops_are_found() {
        let ms: Vec<Manifest> = [0, 1, 2, 5, 6]
            .iter()
            .map(|d| manifest(t0() + TimeDelta::days(*d), if *d == 6 { 40 } else { 100 }))
            .collect();
        let good: Vec<&Manifest> = ms.iter().collect();
        let found = gaps(&good, &daily(), t0());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].message.contains("3d"), "{:?}", found[0]);
        assert!(gaps(&good, &daily(), t0() + TimeDelta::days(6)).is_empty());
        let anomaly = size_anomaly(&good, &daily()).unwrap();
        assert!(anomaly.message.contains("suspicious"), "{anomaly:?}");
        assert!(size_anomaly(&good[..4], &daily()).is_none());
        // Too little history: no judgement.
        assert!(size_anomaly(&good[2..], &daily()).is_none());
    }

    #[test]
    fn chain_holes_forks_and_segments() {
        let mut ms: Vec<Manifest> = (0..4)
            .map(|d| manifest(t0() + TimeDelta::days(d), 1))
            .collect();
        let hashes = ["h0", "h1", "h2", "h3"];
        for i in 0..4 {
            ms[i].chain = Some(if i == 0 {
                Chain {
                    segment: Segment::New,
                    sequence: 1,
                    previous: None,
                    previous_backup_id: None,
                }
            } else {
                Chain {
                    segment: Segment::Continued,
                    sequence: i as u64 + 1,
                    previous: Some(hashes[i - 1].into()),
                    previous_backup_id: Some(ms[i - 1].backup_id.clone()),
                }
            });
        }
        fn linked<'m>(ms: &'m [Manifest], skip: Option<usize>) -> Vec<Linked<'m>> {
            ms.iter()
                .zip(["h0", "h1", "h2", "h3"])
                .enumerate()
                .filter(|(i, _)| Some(*i) != skip)
                .map(|(_, (m, h))| Linked {
                    manifest: m,
                    blake3: h,
                })
                .collect()
        }
        let (f, segments) = chain(&linked(&ms, None), &HashSet::new());
        assert!(f.is_empty(), "{f:?}");
        assert_eq!(segments, 1);
        // The oldest gone (expired): fine. One in the middle gone: a hole.
        assert!(chain(&linked(&ms, Some(0)), &HashSet::new()).0.is_empty());
        let (f, _) = chain(&linked(&ms, Some(2)), &HashSet::new());
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("chain hole"), "{f:?}");
        // Unless it was pruned (a daily between two backups of longer tiers).
        let pruned: HashSet<&str> = [ms[2].backup_id.as_str()].into();
        assert!(chain(&linked(&ms, Some(2)), &pruned).0.is_empty());
        // Two manifests continuing the same one: a fork.
        ms[3].chain.as_mut().unwrap().previous = Some("h1".into());
        let (f, _) = chain(&linked(&ms, None), &HashSet::new());
        assert!(f.iter().any(|f| f.message.contains("fork")), "{f:?}");
        // A new segment later on is reported, not a failure.
        ms[3].chain = Some(Chain {
            segment: Segment::New,
            sequence: 1,
            previous: None,
            previous_backup_id: None,
        });
        let (f, segments) = chain(&linked(&ms, None), &HashSet::new());
        assert_eq!(segments, 2);
        assert!(f.iter().all(|f| f.severity == Severity::Warning), "{f:?}");
    }
}
