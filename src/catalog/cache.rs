//! The verifier's memory of what cannot change, so that a repeat `list` or `verify`
//! reads only what it has not seen.
//!
//! In a versioned bucket a version never changes: a manifest version's bytes, an
//! object version's size, and a COMPLIANCE lock, which can be extended but never
//! shortened or removed. Each is kept under its (key, version id). Everything that
//! can change is still asked every run: the version listing (which shows a new
//! version, a delete marker or a deleted version), GOVERNANCE locks (which can be
//! shortened), and the downloads that hash data. A local directory has no version ids
//! and nothing of it is kept.
//!
//! The file is the verifier's, not the vault's: `<cache_dir>/verify-cache.<vault>`,
//! written atomically (a 0600 temporary file renamed over it), one per vault. Its
//! first line names the format, its version and the blake3 of the rest, a JSON
//! document that names the vault. A file that is damaged, of another format or
//! version, or of another vault is discarded with a warning, never trusted in part.
//! The checksum finds damage, not an attacker: what keeps the writer out is where
//! the file lives (docs/operations.md).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::retention::{Lock, LockMode};
use crate::store::{ObjectMeta, VersionInfo};

/// The first word of the file.
const FORMAT: &str = "vault-verify-cache";
/// The version of the file's layout; another one is discarded, not read.
const VERSION: u32 = 1;

/// One version of one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Version {
    key: String,
    id: String,
}

impl Version {
    /// Only a real version id names something immutable: none (a local directory) or
    /// `null` (written while versioning was off) names whatever is there now.
    fn of(key: &str, id: Option<&str>) -> Option<Version> {
        let id = id.filter(|v| !v.is_empty() && *v != "null")?;
        Some(Version {
            key: key.to_string(),
            id: id.to_string(),
        })
    }
}

/// What a HEAD said about an object version under a COMPLIANCE lock.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Locked {
    size: u64,
    retain_until: DateTime<Utc>,
}

/// The file's JSON document (after the first line).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    vault: String,
    manifests: Vec<ManifestRecord>,
    objects: Vec<ObjectRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestRecord {
    key: String,
    version_id: String,
    /// The manifest's stored bytes (a manifest is JSON, so UTF-8).
    text: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectRecord {
    key: String,
    version_id: String,
    size: u64,
    /// Always COMPLIANCE: written down so that a file claiming another mode is refused.
    mode: LockMode,
    retain_until: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct State {
    manifests: HashMap<Version, String>,
    objects: HashMap<Version, Locked>,
    /// Prefixes listed in this run, and every version the listings showed: what is
    /// under a listed prefix and was not shown is gone, and is forgotten on save.
    listed: Vec<String>,
    seen: HashSet<Version>,
    /// Something to write: a new entry, or a file that was discarded.
    changed: bool,
    /// Entries that differed from what the store answered (only `--no-cache` asks
    /// the store about what is cached).
    disagreed: usize,
}

/// The cache of one vault, as loaded, and where it is saved.
#[derive(Debug)]
pub struct Cache {
    /// `None`: nothing is kept (a run without a cache).
    path: Option<PathBuf>,
    vault: String,
    /// Whether what was loaded is used; `--no-cache` reads everything again, and the
    /// file is brought up to date with what it read.
    trusted: bool,
    state: Mutex<State>,
}

impl Cache {
    /// No cache: every lookup misses and nothing is saved.
    pub fn none() -> Cache {
        Cache {
            path: None,
            vault: String::new(),
            trusted: false,
            state: Mutex::default(),
        }
    }

    /// `<dir>/verify-cache.<vault>`, where `<vault>` is the short hash of the store and
    /// prefix that the job locks and the scheduler's state use.
    pub fn path(dir: &Path, vault: &str) -> PathBuf {
        let hash = blake3::hash(vault.as_bytes()).to_hex();
        dir.join(format!("verify-cache.{}", &hash[..12]))
    }

    /// Loads the cache of `vault` from `path`; with `trusted` false (`--no-cache`) its
    /// entries are kept but never used. A missing file is an empty cache; a file that
    /// cannot be read or is discarded is an empty cache and a warning, returned to be
    /// said.
    pub fn load(path: PathBuf, vault: &str, trusted: bool) -> (Cache, Option<String>) {
        let mut state = State::default();
        let warning = match fs::read(&path) {
            Ok(bytes) => match parse(&bytes, vault) {
                Ok(body) => {
                    state = State::from_body(body);
                    None
                }
                Err(why) => {
                    state.changed = true;
                    Some(format!(
                        "the verify cache {} is {why}: discarded, everything is read from \
                         the store (and the cache written anew)",
                        path.display()
                    ))
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(format!(
                "cannot read the verify cache {}: {e}; everything is read from the store",
                path.display()
            )),
        };
        let cache = Cache {
            path: Some(path),
            vault: vault.to_string(),
            trusted,
            state: Mutex::new(state),
        };
        (cache, warning)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while the lock was held leaves whole entries behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored bytes of manifest `key` at `version_id`, if kept.
    pub fn manifest(&self, key: &str, version_id: Option<&str>) -> Option<Vec<u8>> {
        let version = Version::of(key, version_id).filter(|_| self.trusted)?;
        let state = self.state();
        state.manifests.get(&version).map(|t| t.as_bytes().to_vec())
    }

    /// Keeps the bytes read of manifest `key` at `version_id` (the caller keeps only a
    /// manifest that read and parsed).
    pub fn remember_manifest(&self, key: &str, version_id: Option<&str>, bytes: &[u8]) {
        let (Some(version), Ok(text)) = (Version::of(key, version_id), std::str::from_utf8(bytes))
        else {
            return;
        };
        if self.path.is_none() {
            return;
        }
        let mut state = self.state();
        let old = state.manifests.insert(version, text.to_string());
        let differs = old.as_deref() != Some(text);
        state.note(differs, differs && old.is_some());
    }

    /// What a HEAD of `key` at `version_id` said, if kept: always a COMPLIANCE lock,
    /// whose retain-until is now at least the one given.
    pub fn head(&self, key: &str, version_id: Option<&str>) -> Option<ObjectMeta> {
        let version = Version::of(key, version_id).filter(|_| self.trusted)?;
        let state = self.state();
        let locked = state.objects.get(&version)?;
        Some(ObjectMeta {
            key: key.to_string(),
            size: locked.size,
            version_id: Some(version.id),
            lock: Some(Lock {
                mode: LockMode::Compliance,
                retain_until: locked.retain_until,
            }),
            modified: None,
        })
    }

    /// Keeps what a HEAD of `key` at `version_id` said, if the object is under a
    /// COMPLIANCE lock (the caller keeps only an answer it found nothing wrong with). A
    /// GOVERNANCE lock can be shortened or removed, and no lock can be added later: both
    /// are asked again every run.
    pub fn remember_head(&self, key: &str, version_id: Option<&str>, meta: &ObjectMeta) {
        let (Some(version), Some(lock)) = (Version::of(key, version_id), meta.lock) else {
            return;
        };
        if lock.mode != LockMode::Compliance || self.path.is_none() {
            return;
        }
        let locked = Locked {
            size: meta.size,
            retain_until: lock.retain_until,
        };
        let mut state = self.state();
        let old = state.objects.insert(version, locked.clone());
        // A retain-until that grew is the lock extended, not a cache that was wrong.
        let agrees = old
            .as_ref()
            .is_some_and(|o| o.size == locked.size && o.retain_until <= locked.retain_until);
        state.note(old.as_ref() != Some(&locked), old.is_some() && !agrees);
    }

    /// Records a listing of `prefix`: what the cache holds under it and the listing
    /// does not show is gone, and is left out when the cache is saved.
    pub fn listed(&self, prefix: &str, versions: &[VersionInfo]) {
        let mut state = self.state();
        state.listed.push(prefix.to_string());
        let seen = versions
            .iter()
            .filter(|v| !v.delete_marker)
            .filter_map(|v| Version::of(&v.key, v.version_id.as_deref()));
        state.seen.extend(seen);
    }

    /// How many kept entries differed from what the store answered in this run: the
    /// cache was wrong (damaged or altered) and has been corrected.
    pub fn disagreements(&self) -> usize {
        self.state().disagreed
    }

    /// Where the cache is kept, if anywhere.
    pub fn file(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Writes the cache if anything changed: atomically (a 0600 temporary file in the
    /// same directory, synced, renamed over the old one), the directory made 0700 if
    /// missing. What the listings showed to be gone is left out.
    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut state = self.state();
        let forgotten = state.forget_gone();
        if !state.changed && forgotten == 0 {
            return Ok(());
        }
        let bytes = render(&state.to_body(&self.vault));
        crate::private_file::write(path, &bytes)?;
        state.changed = false;
        Ok(())
    }
}

impl State {
    fn from_body(body: Body) -> State {
        let mut state = State::default();
        for m in body.manifests {
            let version = Version {
                key: m.key,
                id: m.version_id,
            };
            state.manifests.insert(version, m.text);
        }
        for o in body.objects {
            let version = Version {
                key: o.key,
                id: o.version_id,
            };
            let locked = Locked {
                size: o.size,
                retain_until: o.retain_until,
            };
            state.objects.insert(version, locked);
        }
        state
    }

    /// An entry was stored: `new` when it was not there as it is now, `wrong` when a
    /// different one was replaced.
    fn note(&mut self, new: bool, wrong: bool) {
        self.changed |= new;
        if wrong {
            self.disagreed += 1;
        }
    }

    /// Drops the entries under a listed prefix that no listing showed; how many.
    fn forget_gone(&mut self) -> usize {
        let (listed, seen) = (&self.listed, &self.seen);
        let keep = |v: &Version| seen.contains(v) || !listed.iter().any(|p| v.key.starts_with(p));
        let before = self.manifests.len() + self.objects.len();
        self.manifests.retain(|v, _| keep(v));
        self.objects.retain(|v, _| keep(v));
        before - self.manifests.len() - self.objects.len()
    }

    /// The document to save, sorted so that the same cache is the same file.
    fn to_body(&self, vault: &str) -> Body {
        let mut manifests: Vec<ManifestRecord> = self
            .manifests
            .iter()
            .map(|(v, text)| ManifestRecord {
                key: v.key.clone(),
                version_id: v.id.clone(),
                text: text.clone(),
            })
            .collect();
        manifests.sort_by(|a, b| (&a.key, &a.version_id).cmp(&(&b.key, &b.version_id)));
        let mut objects: Vec<ObjectRecord> = self
            .objects
            .iter()
            .map(|(v, l)| ObjectRecord {
                key: v.key.clone(),
                version_id: v.id.clone(),
                size: l.size,
                mode: LockMode::Compliance,
                retain_until: l.retain_until,
            })
            .collect();
        objects.sort_by(|a, b| (&a.key, &a.version_id).cmp(&(&b.key, &b.version_id)));
        Body {
            vault: vault.to_string(),
            manifests,
            objects,
        }
    }
}

/// The file's bytes: `vault-verify-cache 1 <blake3 of the rest>` and the document.
fn render(body: &Body) -> Vec<u8> {
    let json = serde_json::to_vec(body).expect("the cache serialises");
    let mut out = format!("{FORMAT} {VERSION} {}\n", blake3::hash(&json).to_hex()).into_bytes();
    out.extend_from_slice(&json);
    out
}

/// The document of a cache file of `vault`, or why it cannot be trusted.
fn parse(bytes: &[u8], vault: &str) -> Result<Body, String> {
    let newline = bytes.iter().position(|b| *b == b'\n');
    let (head, json) = match newline {
        Some(at) => (&bytes[..at], &bytes[at + 1..]),
        None => return Err("not a verify cache (no header line)".into()),
    };
    let head = std::str::from_utf8(head).map_err(|_| "not a verify cache (header)")?;
    let words: Vec<&str> = head.split(' ').collect();
    let [format, version, checksum] = words[..] else {
        return Err("not a verify cache (header)".into());
    };
    if format != FORMAT {
        return Err("not a verify cache".into());
    }
    if version != VERSION.to_string() {
        return Err(format!(
            "of format version {version}, this vault reads {VERSION} (written by another \
             version of vault)"
        ));
    }
    if blake3::hash(json).to_hex().as_str() != checksum {
        return Err("damaged (its checksum does not match)".into());
    }
    let body: Body =
        serde_json::from_slice(json).map_err(|e| format!("damaged (unreadable: {e})"))?;
    if body.vault != vault {
        return Err(format!(
            "of another vault ({:?}, this is {vault:?})",
            body.vault
        ));
    }
    if let Some(o) = body.objects.iter().find(|o| o.mode != LockMode::Compliance) {
        return Err(format!(
            "damaged (it keeps a {} lock of {}: only COMPLIANCE locks are kept)",
            o.mode.as_str(),
            o.key
        ));
    }
    Ok(body)
}

#[cfg(test)]
mod tests;
