//! What the pruner reads of one job: one listing of every version under it, each
//! manifest at the version vault wrote, and both objects' locks as the store reports
//! them (HEAD). Everything [`super::plan`] decides on, and what hiding needs.

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};

use super::plan::Backup;
use crate::catalog::{self, Cache, Entry};
use crate::error::Error;
use crate::manifest::{Layout, Manifest};
use crate::retention::Tier;
use crate::signing::Signing;
use crate::store::{self, Store, VersionInfo};

/// How many backups have their locks read at once.
const HEADS_AT_ONCE: usize = 16;

/// One backup of a job, with what pruning it would hide and free.
#[derive(Debug, Clone)]
pub struct Surveyed {
    pub backup: Backup,
    pub manifest_key: String,
    /// `None` when the manifest could not be read: such a backup is never pruned.
    pub data_key: Option<String>,
    pub tier: Option<Tier>,
    /// Every stored version of the data and manifest keys, in bytes: what the bucket's
    /// lifecycle frees once they are hidden.
    pub bytes: u64,
}

/// Every backup of `job`, oldest first.
pub async fn survey(
    store: &dyn Store,
    layout: &Layout,
    signing: &Signing,
    job: &str,
) -> Result<Vec<Surveyed>, Error> {
    let listing = store.all_versions(&layout.job_root(job)).await?;
    let manifests_prefix = layout.manifests_prefix(job);
    let manifest_versions: Vec<VersionInfo> = listing
        .iter()
        .filter(|v| v.key.starts_with(&manifests_prefix))
        .cloned()
        .collect();
    // Read afresh, never from the verifier's cache: the pruner decides on what the
    // store says now.
    let originals = store::originals(&manifest_versions);
    let entries = catalog::read_entries(store, layout, job, originals, &Cache::none()).await;
    Ok(stream::iter(entries)
        .map(|entry| observe(store, signing, &listing, entry))
        .buffered(HEADS_AT_ONCE)
        .collect()
        .await)
}

/// The versions and delete markers of `key` in a listing (newest first).
fn versions_of<'l>(listing: &'l [VersionInfo], key: &str) -> Vec<&'l VersionInfo> {
    listing.iter().filter(|v| v.key == key).collect()
}

/// Hidden: the newest entry of the key (the store lists them newest first) is a
/// delete marker.
fn hidden(versions: &[&VersionInfo]) -> bool {
    versions.first().is_some_and(|v| v.delete_marker)
}

fn stored_bytes(versions: &[&VersionInfo]) -> u64 {
    versions
        .iter()
        .filter(|v| !v.delete_marker)
        .map(|v| v.size)
        .sum()
}

async fn observe(
    store: &dyn Store,
    signing: &Signing,
    listing: &[VersionInfo],
    entry: Entry,
) -> Surveyed {
    let manifest_versions = versions_of(listing, &entry.key);
    let manifest_hidden = hidden(&manifest_versions);
    let manifest_bytes = stored_bytes(&manifest_versions);
    let id = entry
        .key
        .rsplit('/')
        .next()
        .and_then(|name| name.strip_suffix(".json"))
        .unwrap_or(&entry.key)
        .to_string();
    let m: &Manifest = match &entry.manifest {
        Ok(m) => m,
        Err(_) => {
            return Surveyed {
                backup: Backup {
                    backup_id: id,
                    until: None,
                    good: false,
                    manifest_hidden,
                    data_hidden: false,
                },
                manifest_key: entry.key,
                data_key: None,
                tier: None,
                bytes: manifest_bytes,
            };
        }
    };
    let data_versions = versions_of(listing, &m.data.key);
    let data_present = data_versions.iter().any(|v| {
        !v.delete_marker && (m.data.version_id.is_none() || v.version_id == m.data.version_id)
    });
    // The latest of every lock: the manifest's promise and what the store enforces on
    // both objects. A lock that cannot be read leaves the backup undecided.
    let data_lock = if data_present {
        lock_until(store, &m.data.key, m.data.version_id.as_deref()).await
    } else {
        Some(None)
    };
    let manifest_lock = lock_until(store, &entry.key, entry.version_id.as_deref()).await;
    let until = match (data_lock, manifest_lock) {
        (Some(d), Some(mf)) => Some(
            [Some(m.retention.lock.retain_until), d, mf]
                .into_iter()
                .flatten()
                .max()
                .unwrap_or(m.retention.lock.retain_until),
        ),
        _ => None,
    };
    let trusted = signing.distrust(m, entry.stored_at).is_none();
    Surveyed {
        backup: Backup {
            backup_id: m.backup_id.clone(),
            until,
            good: data_present && trusted,
            manifest_hidden,
            data_hidden: hidden(&data_versions),
        },
        data_key: Some(m.data.key.clone()),
        tier: Some(m.retention.tier),
        bytes: manifest_bytes + stored_bytes(&data_versions),
        manifest_key: entry.key,
    }
}

/// The retain-until the store reports on one version: `Some(None)` for an object
/// without a lock, `None` when it could not be read.
async fn lock_until(
    store: &dyn Store,
    key: &str,
    version: Option<&str>,
) -> Option<Option<DateTime<Utc>>> {
    match store.head(key, version).await {
        Ok(meta) => Some(meta.lock.map(|l| l.retain_until)),
        Err(e) => {
            tracing::warn!(key, error = %e, "cannot read the lock; the backup is kept");
            None
        }
    }
}
