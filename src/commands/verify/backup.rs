//! One backup as `verify` checks it, carried from the catalog to its row in the
//! report: the checks made for every backup without a download (its versions, both
//! objects' locks, the manifest's signature), the download that hashes (or decrypts)
//! the chosen ones, and the verdict on it. A lock the cache remembers (COMPLIANCE, and
//! it kept the promise) is not asked again.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use tokio_util::io::SyncIoBridge;

use super::judge::Finding;
use crate::catalog::{Cache, Entry};
use crate::crypto::Identities;
use crate::error::Error;
use crate::manifest::Manifest;
use crate::pipeline;
use crate::progress::Tracked;
use crate::retention::{Lock, LockSource};
use crate::signing::Signing;
use crate::store::{ObjectMeta, Store, VersionInfo};

/// Every version and delete marker under a job, by key.
pub type Versions<'l> = BTreeMap<&'l str, Vec<&'l VersionInfo>>;

/// One backup going through the checks: the manifest as the catalog read it, and
/// what each check added.
pub struct BackupCheck {
    pub entry: Entry,
    /// What the checks found, in the order they ran.
    pub findings: Vec<Finding>,
    /// The data object's lock as the store reports it.
    pub lock: Option<Lock>,
    /// The data version the manifest records is not in the listing.
    pub data_gone: bool,
    /// Pruned: its lock ended and a delete marker hides its manifest (`vault prune`
    /// hides the manifest first, then the data). Expected, not a finding; it no longer
    /// counts as a good backup.
    pub pruned: bool,
    /// Whether the ciphertext was downloaded and hashed (and with --deep, decrypted).
    pub hashed: bool,
}

/// One backup as checked: its row in the report.
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
    /// Pruned after its lock ended (hidden by delete markers, awaiting removal).
    pub pruned: bool,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
}

/// The two objects of a backup, as the messages name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Object {
    Data,
    Manifest,
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Object::Data => "data",
            Object::Manifest => "manifest",
        })
    }
}

impl BackupCheck {
    /// A backup as the catalog read it, before any check.
    pub fn new(entry: Entry) -> BackupCheck {
        BackupCheck {
            entry,
            findings: Vec::new(),
            lock: None,
            data_gone: false,
            pruned: false,
            hashed: false,
        }
    }

    /// The manifest, when it could be read.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.entry.manifest.as_ref().ok()
    }

    /// Readable, its data present, and nothing found that spoils it: it counts for
    /// freshness, gaps, size and the chain.
    pub fn is_good(&self) -> bool {
        self.manifest().is_some()
            && !self.data_gone
            && !self.pruned
            && !self.findings.iter().any(Finding::spoils)
    }

    /// The checks made for every backup, without downloading it; the locks as
    /// `cache` remembers them where it can.
    pub async fn observe(
        entry: Entry,
        store: &dyn Store,
        cache: &Cache,
        versions: &Versions<'_>,
        signing: &Signing,
        now: DateTime<Utc>,
    ) -> BackupCheck {
        let mut check = BackupCheck::new(entry);
        let entry = &check.entry;
        let m = match &entry.manifest {
            Ok(m) => m,
            Err(e) => {
                check.findings.push(Finding::from_store_error(e.clone()));
                return check;
            }
        };
        let out = &mut check.findings;
        let seen = version_findings(m, &entry.key, versions, now);
        out.extend(seen.findings);
        check.data_gone = seen.data_gone;
        check.pruned = seen.pruned;
        let data_gone = seen.data_gone;
        let read = |what, key, version| ReadLock {
            store,
            cache,
            what,
            key,
            version,
            manifest: m,
        };
        if !data_gone {
            let version = m.data.version_id.as_deref();
            check.lock = read(Object::Data, &m.data.key, version).run(out).await;
        }
        let version = entry.version_id.as_deref();
        let manifest_lock = read(Object::Manifest, &entry.key, version).run(out).await;
        // Pruned by the manifest's promise, but the store still holds a lock: hidden
        // early, whoever did it.
        if check.pruned
            && let Some(until) = [check.lock, manifest_lock]
                .into_iter()
                .flatten()
                .map(|l| l.retain_until)
                .max()
                .filter(|until| *until > now)
        {
            out.push(Finding::integrity(format!(
                "tampering: backup {} is hidden by delete markers while the store still \
                 locks it until {}",
                m.backup_id,
                until.to_rfc3339()
            )));
        }
        if let Some(why) = signing.distrust(m, entry.stored_at) {
            out.push(Finding::integrity(format!(
                "tampering: manifest {}: {why}",
                entry.key
            )));
        }
        check
    }

    /// Downloads the data object and checks its size and blake3; with `identities`
    /// it is decrypted and decompressed too and the plaintext hash checked. Nothing is
    /// written anywhere.
    pub async fn download(
        &mut self,
        store: &dyn Store,
        identities: Option<Arc<Identities>>,
        counter: Arc<AtomicU64>,
    ) {
        let Ok(manifest) = &self.entry.manifest else {
            return;
        };
        let result = check_data(store, manifest, identities, counter).await;
        self.hashed = true;
        if let Err(e) = result {
            self.findings.push(Finding::from_error(&e));
        }
    }

    /// The row this backup ends as in the report of `job`.
    pub fn into_checked(self, job: &str) -> Checked {
        let failed: Vec<&str> = self
            .findings
            .iter()
            .filter(|f| f.spoils())
            .map(|f| f.message.as_str())
            .collect();
        let error = (!failed.is_empty()).then(|| failed.join("; "));
        let manifest = self.entry.manifest.as_ref().ok();
        Checked {
            job: job.to_string(),
            backup_id: manifest.map(|m| m.backup_id.clone()),
            started_at: manifest.map(|m| m.started_at),
            size: manifest.map(|m| m.data.size),
            key: self.entry.key,
            hashed: self.hashed,
            lock: self.lock,
            pruned: self.pruned,
            ok: error.is_none(),
            error,
            findings: self.findings,
        }
    }
}

/// What the versions of a backup's two keys say.
pub(super) struct Seen {
    pub findings: Vec<Finding>,
    /// The data version the manifest records is not in the listing.
    pub data_gone: bool,
    /// Its lock ended and a delete marker hides its manifest: pruned.
    pub pruned: bool,
}

/// vault writes every key exactly once: another version or a delete marker on a
/// backup's data or manifest key means someone else wrote or deleted there; the data
/// version the manifest records must still exist while its retention runs. Once the
/// retention has ended, a delete marker over the manifest is pruning (`vault prune`
/// hides the manifest, then the data): expected, and said by [`Seen::pruned`] rather
/// than a finding. A delete marker on a backup whose lock holds is tampering however
/// it got there: Object Lock lets anyone allowed `s3:DeleteObject` add one.
pub(super) fn version_findings(
    m: &Manifest,
    manifest_key: &str,
    versions: &Versions<'_>,
    now: DateTime<Utc>,
) -> Seen {
    let none = Vec::new();
    let data = versions.get(m.data.key.as_str()).unwrap_or(&none);
    let manifest = versions.get(manifest_key).unwrap_or(&none);
    let expired = m.retention.lock.retain_until <= now;
    // Newest first within a key: a hidden key's first entry is a delete marker.
    let pruned = expired && manifest.first().is_some_and(|v| v.delete_marker);
    let mut out = other_writes(m, Object::Data, &m.data.key, data, now, pruned);
    let gone = match &m.data.version_id {
        Some(id) => !data
            .iter()
            .any(|v| !v.delete_marker && v.version_id.as_ref() == Some(id)),
        None => data.iter().all(|v| v.delete_marker),
    };
    if gone && !pruned {
        let key = &m.data.key;
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
    out.extend(other_writes(
        m,
        Object::Manifest,
        manifest_key,
        manifest,
        now,
        pruned,
    ));
    Seen {
        findings: out,
        data_gone: gone,
        pruned,
    }
}

/// Delete markers and versions beyond the one vault wrote on one of a backup's keys.
fn other_writes(
    m: &Manifest,
    what: Object,
    key: &str,
    versions: &[&VersionInfo],
    now: DateTime<Utc>,
    pruned: bool,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let markers = versions.iter().filter(|v| v.delete_marker).count();
    let objects = versions.len() - markers;
    if markers > 0 && !pruned {
        let message = format!(
            "{what} key {key} has {markers} delete marker{}",
            if markers == 1 { "" } else { "s" }
        );
        // Once a backup's retention has ended, pruning it (a lifecycle rule, or an
        // administrator) is expected: delete markers are reported, not treated as
        // tampering.
        out.push(if m.retention.lock.retain_until <= now {
            Finding::warning(format!("expired backup {}: {message}", m.backup_id))
        } else {
            Finding::integrity(format!("tampering: {message}"))
        });
    }
    if objects > 1 {
        out.push(Finding::integrity(format!(
            "tampering: {what} key {key} has {objects} versions (vault writes one)"
        )));
    }
    out
}

/// One object's lock to read back and compare with its manifest's promise.
struct ReadLock<'a> {
    store: &'a dyn Store,
    cache: &'a Cache,
    what: Object,
    key: &'a str,
    version: Option<&'a str>,
    manifest: &'a Manifest,
}

impl ReadLock<'_> {
    /// Reads the lock (and the data object's size) back, from the cache when it holds
    /// an answer that keeps the manifest's promise (a COMPLIANCE lock only grows, so it
    /// still does), else with a HEAD, whose answer is kept when it is COMPLIANCE and
    /// nothing is wrong with it. Adds what is wrong to `out`; returns the lock.
    async fn run(self, out: &mut Vec<Finding>) -> Option<Lock> {
        let ReadLock {
            store,
            cache,
            what,
            key,
            version,
            manifest: m,
        } = self;
        if let Some(meta) = cache.head(key, version)
            && judge_lock(what, key, &meta, m).is_empty()
        {
            return meta.lock;
        }
        let meta = match store.head(key, version).await {
            Ok(meta) => meta,
            Err(Error::NotFound(msg)) => {
                out.push(Finding::integrity(format!(
                    "the {what} object {key} of backup {} is missing: {msg}",
                    m.backup_id
                )));
                return None;
            }
            Err(e) => {
                out.push(Finding::from_store_error(e));
                return None;
            }
        };
        let found = judge_lock(what, key, &meta, m);
        if found.is_empty() {
            cache.remember_head(key, version, &meta);
        }
        out.extend(found);
        meta.lock
    }
}

/// What is wrong with an object's lock (and the data object's size) as the store
/// reports it, against its manifest's promise.
fn judge_lock(what: Object, key: &str, meta: &ObjectMeta, m: &Manifest) -> Vec<Finding> {
    let mut out = Vec::new();
    if what == Object::Data && meta.size != m.data.size {
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
    out
}

/// Streams the data object through the ciphertext check (or, with identities, the
/// whole restore pipeline into a sink).
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
    use crate::commands::verify::judge::{self, Severity};
    use chrono::TimeZone;

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
        let seen = version_findings(&m, "mk", &versions, at + TimeDelta::days(1));
        let locked = seen.findings;
        assert!(!seen.data_gone && !seen.pruned);
        assert!(
            locked.iter().any(|f| f.severity == Severity::Integrity
                && f.message
                    .contains("tampering: data key k has 1 delete marker")),
            "{locked:?}"
        );
        // Only the data hidden after the lock: a manifest without its data, a warning.
        let seen = version_findings(&m, "mk", &versions, at + TimeDelta::days(36));
        let expired = seen.findings;
        assert!(!seen.pruned);
        assert!(
            expired.iter().all(|f| f.severity == Severity::Warning)
                && expired[0].message.contains("expired backup"),
            "{expired:?}"
        );
        // The manifest hidden too, as `vault prune` does: pruned, nothing to say; the
        // same markers while the lock holds are tampering.
        let both = [
            version("k", "m1", true),
            version("k", "v1", false),
            version("mk", "m2", true),
            version("mk", "mv", false),
        ];
        let mut versions: BTreeMap<&str, Vec<&VersionInfo>> = BTreeMap::new();
        for v in &both {
            versions.entry(v.key.as_str()).or_default().push(v);
        }
        let seen = version_findings(&m, "mk", &versions, at + TimeDelta::days(36));
        assert!(
            seen.pruned && seen.findings.is_empty(),
            "{:?}",
            seen.findings
        );
        let seen = version_findings(&m, "mk", &versions, at + TimeDelta::days(34));
        assert!(!seen.pruned);
        assert_eq!(
            seen.findings
                .iter()
                .filter(|f| f.severity == Severity::Integrity)
                .count(),
            2,
            "{:?}",
            seen.findings
        );
        // The version itself deleted: tampering before the promise, pruning after.
        let versions: BTreeMap<&str, Vec<&VersionInfo>> = BTreeMap::new();
        let seen = version_findings(&m, "mk", &versions, at + TimeDelta::days(1));
        let (early, gone) = (seen.findings, seen.data_gone);
        assert!(
            gone && early
                .iter()
                .any(|f| f.message.contains("deleted before its retention ended"))
        );
        let seen = version_findings(&m, "mk", &versions, at + TimeDelta::days(36));
        let (late, gone) = (seen.findings, seen.data_gone);
        assert!(
            gone && late.iter().all(|f| f.severity == Severity::Warning),
            "{late:?}"
        );
    }
}
