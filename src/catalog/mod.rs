//! What a vault holds: the manifests of a job, read back and checked, and the choice
//! of one backup (`--latest`, `--id`, `--before`).
//!
//! `list` and `verify` read through a [`Cache`] of what cannot change (manifest
//! versions, COMPLIANCE locks) and a [`Listing`] that lists the whole vault once for
//! many jobs; `restore` and `drill` read everything afresh.
//!
//! Reads through the `Store` trait only; imports `manifest`, `store`, `retention`,
//! `error`, never `config` (callers pass the layout, job names and the cache's place).

pub mod cache;
pub mod listing;

pub use cache::Cache;
pub use listing::{Cover, Listing};

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use tokio::io::AsyncReadExt;

use crate::error::Error;
use crate::manifest::{Layout, Manifest};
use crate::store::{ObjectMeta, Store};

/// Manifests are small; anything larger than this is not one of ours.
const MAX_MANIFEST: u64 = 1 << 20;

/// One manifest found in the vault: parsed, or the reason it could not be.
#[derive(Debug)]
pub struct Entry {
    pub key: String,
    /// The version read (the first one written there).
    pub version_id: Option<String>,
    /// blake3 of the manifest's stored bytes, when they could be read: what the next
    /// manifest's chain link names.
    pub blake3: Option<String>,
    /// When the store says the manifest was written (not the writer's clock).
    pub stored_at: Option<DateTime<Utc>>,
    pub manifest: Result<Manifest, Error>,
}

/// How many manifests are read at once.
const READ_AHEAD: usize = 16;

/// Reads every manifest of `job`, oldest first (keys come sorted, and ids sort by
/// time), each at the version vault wrote: a manifest replaced or hidden by a delete
/// marker is still found and read as written (`verify` reports the tampering). A
/// manifest that cannot be read or does not belong where it lies is returned as an
/// error entry, not skipped.
pub async fn entries(store: &dyn Store, layout: &Layout, job: &str) -> Result<Vec<Entry>, Error> {
    let originals = store.list_originals(&layout.manifests_prefix(job)).await?;
    Ok(read_entries(store, layout, job, originals, &Cache::none()).await)
}

/// Reads the manifests among `originals` (objects as [`crate::store::originals`]
/// describes them), in their order: from `cache` when it holds that version, else
/// from the store (and a manifest that reads and belongs where it lies is kept in
/// `cache`).
pub async fn read_entries(
    store: &dyn Store,
    layout: &Layout,
    job: &str,
    originals: Vec<ObjectMeta>,
    cache: &Cache,
) -> Vec<Entry> {
    stream::iter(originals)
        .filter(|object| std::future::ready(layout.backup_id_of(job, &object.key).is_some()))
        .map(|object| async move {
            let id = layout.backup_id_of(job, &object.key).unwrap_or_default();
            let version = object.version_id.as_deref();
            let (bytes, cached) = match cache.manifest(&object.key, version) {
                Some(bytes) => (Ok(bytes), true),
                None => (read_bytes(store, &object.key, version).await, false),
            };
            let blake3 = bytes
                .as_ref()
                .ok()
                .map(|b| blake3::hash(b).to_hex().to_string());
            let manifest = bytes
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|b| Manifest::from_bytes(&object.key, b))
                .and_then(|m| {
                    if m.job != job || m.backup_id != id {
                        Err(Error::integrity(format!(
                            "manifest {} claims job `{}` backup {}: it was moved or edited",
                            object.key, m.job, m.backup_id
                        )))
                    } else {
                        Ok(m)
                    }
                });
            if let (Ok(bytes), Ok(_), false) = (&bytes, &manifest, cached) {
                cache.remember_manifest(&object.key, version, bytes);
            }
            Entry {
                key: object.key,
                version_id: object.version_id,
                blake3,
                stored_at: object.modified,
                manifest,
            }
        })
        .buffered(READ_AHEAD)
        .collect()
        .await
}

async fn read_bytes(store: &dyn Store, key: &str, version: Option<&str>) -> Result<Vec<u8>, Error> {
    let reader = store.get(key, version).await?;
    let mut bytes = Vec::new();
    reader
        .take(MAX_MANIFEST)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| Error::from_io(format!("cannot read {key}"), &e))?;
    Ok(bytes)
}

/// Which backup to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Latest,
    Id(String),
    Before(DateTime<Utc>),
}

/// Picks one backup among good manifests (sorted oldest first).
pub fn select<'m>(
    job: &str,
    good: &[&'m Manifest],
    which: &Selection,
) -> Result<&'m Manifest, Error> {
    let found = match which {
        Selection::Latest => good.last(),
        Selection::Id(id) => good.iter().find(|m| &m.backup_id == id),
        Selection::Before(t) => good.iter().rev().find(|m| m.started_at < *t),
    };
    found.copied().ok_or_else(|| {
        let what = match which {
            Selection::Latest => "no backups".to_string(),
            Selection::Id(id) => format!("no backup with id {id}"),
            Selection::Before(t) => format!("no backup started before {}", t.to_rfc3339()),
        };
        Error::not_found(format!("job `{job}` has {what} (see `vault list {job}`)"))
    })
}
