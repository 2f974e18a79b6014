//! The embedded default: a vault in a local directory.
//!
//! Write-once as far as vault is concerned: an object is written under a temporary
//! name in `.vault/partial/`, synced, made read-only and then *hard-linked* to its
//! final name — `link(2)` fails if the name exists, so an object is never replaced,
//! and a reader never sees a half-written one. The lock an object would get is
//! recorded in `.vault/locks/<key>.json`.
//!
//! A partial file is locked (`flock`) while its backup writes it. A run killed
//! outright (SIGKILL, a power cut) leaves its partial file behind; opening the vault
//! removes partial files older than a day that no live process holds.
//!
//! It is **not** immutable against the directory's owner or root: anyone who can write
//! the directory can delete or change backups. It is for trying vault and for tests;
//! production backups belong in an Object Lock bucket in another account.
//!
//! Must not import `config` or anything above the store.

use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::io::AsyncWriteExt;

use super::{ObjectMeta, ObjectReader, PutOptions, PutReceipt, Role, Store};
use crate::error::Error;
use crate::pipe::PipeReader;
use crate::retention::Lock;

/// Vault's own bookkeeping inside the root; never a valid object key.
const META_DIR: &str = ".vault";

/// Bytes written between background writeback requests.
const WRITEBACK_EVERY: u64 = 64 << 20;

/// How old an unheld partial file must be before it is removed: no backup writes one
/// object for a day, and a day leaves room for clocks and for a slow disk.
const PARTIAL_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Opens a local vault at `root`. The writer creates it if needed; readers need it
    /// to exist (a mistyped target must not look like an empty vault).
    pub fn open(root: &Path, role: Role) -> Result<LocalStore, Error> {
        if role != Role::Writer {
            if !root.is_dir() {
                return Err(Error::not_found(format!(
                    "the vault directory {} does not exist (check [vault] target)",
                    root.display()
                )));
            }
            clean_partials(&root.join(META_DIR).join("partial"), PARTIAL_MAX_AGE);
            return Ok(LocalStore {
                root: root.to_path_buf(),
            });
        }
        for dir in [root.to_path_buf(), root.join(META_DIR).join("partial")] {
            fs::create_dir_all(&dir).map_err(|e| {
                Error::from_io(
                    format!("cannot create vault directory {}", dir.display()),
                    &e,
                )
            })?;
        }
        clean_partials(&root.join(META_DIR).join("partial"), PARTIAL_MAX_AGE);
        Ok(LocalStore {
            root: root.to_path_buf(),
        })
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, Error> {
        if !valid_key(key) {
            return Err(Error::config(format!(
                "`{}` is not a valid object key",
                crate::names::shown(key)
            )));
        }
        Ok(self.root.join(key))
    }

    fn lock_path(&self, key: &str) -> PathBuf {
        self.root
            .join(META_DIR)
            .join("locks")
            .join(format!("{key}.json"))
    }

    fn read_lock(&self, key: &str) -> Option<Lock> {
        let bytes = fs::read(self.lock_path(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn no_versions(key: &str, version_id: Option<&str>) -> Result<(), Error> {
        match version_id {
            None => Ok(()),
            Some(v) => Err(Error::not_found(format!(
                "{key}: version {v} requested, but a local vault keeps no versions"
            ))),
        }
    }

    fn meta(&self, key: &str, path: &Path) -> Result<ObjectMeta, Error> {
        let md = fs::metadata(path).map_err(|e| Error::from_io(key, &e))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: md.len(),
            version_id: None,
            lock: self.read_lock(key),
            modified: md.modified().ok().map(DateTime::<Utc>::from),
        })
    }
}

/// Removes a partial file unless the write completed (also when the put is cancelled).
struct PartialFile {
    path: PathBuf,
    done: bool,
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn write_once(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, bytes)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o444))?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    linked
}

/// Removes the partial files in `dir` older than `max_age` that no live process holds
/// (a run that is writing one holds an exclusive `flock` on it). Best effort: a reader
/// that may not delete, or a file that vanishes meanwhile, is not an error.
fn clean_partials(dir: &Path, max_age: std::time::Duration) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let (mut removed, mut bytes) = (0u64, 0u64);
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(md) = fs::symlink_metadata(&path) else {
            continue;
        };
        let old = md
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > max_age);
        if !md.is_file() || !old {
            continue;
        }
        let Ok(file) = fs::File::open(&path) else {
            continue;
        };
        // Held: a live backup is still writing it, however long it has taken.
        if file.try_lock().is_err() {
            continue;
        }
        if fs::remove_file(&path).is_ok() {
            removed += 1;
            bytes += md.len();
        }
    }
    if removed > 0 {
        tracing::info!(
            "removed {removed} partial file(s) ({} MiB) left by interrupted backups in {}",
            bytes >> 20,
            dir.display()
        );
    }
}

/// How a local vault at `root` is named in messages.
pub fn describe(root: &Path) -> String {
    format!("local directory {}", root.display())
}

/// A key vault may read or write: non-empty `/`-separated parts, none empty, `.` or
/// `..`, not absolute, not under vault's own `.vault/`.
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('/')
        && !key.ends_with('/')
        && key
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && !key.starts_with(META_DIR)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl Store for LocalStore {
    fn describe(&self) -> String {
        describe(&self.root)
    }

    fn warnings(&self) -> Vec<String> {
        vec![format!(
            "the vault {} is a local directory: it is NOT immutable — its owner (or root, \
             or anything running as them) can delete or change every backup in it. Use it \
             to try vault and for tests; keep production backups in an S3 Object Lock \
             bucket in a separate account.",
            self.root.display()
        )]
    }

    async fn put(
        &self,
        key: &str,
        mut body: PipeReader,
        opts: &PutOptions,
    ) -> Result<PutReceipt, Error> {
        let path = self.path_of(key)?;
        if fs::symlink_metadata(&path).is_ok() {
            return Err(Error::AlreadyExists(format!(
                "{key} already exists in the vault; vault never overwrites"
            )));
        }
        let io_err = |what: &str, e: &io::Error| Error::from_io(format!("{what} {key}"), e);
        let partial_path = self
            .root
            .join(META_DIR)
            .join("partial")
            .join(format!("{:016x}", rand::random::<u64>()));
        let mut partial = PartialFile {
            path: partial_path.clone(),
            done: false,
        };
        let std_file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial_path)
            .map_err(|e| io_err("cannot create partial file for", &e))?;
        // Held until the file is closed, so that no other run takes it for a leftover.
        std_file
            .try_lock()
            .map_err(|e| io_err("cannot lock the partial file of", &io::Error::other(e)))?;
        let mut file = tokio::fs::File::from_std(std_file);
        let mut size = 0u64;
        let mut unsynced = 0u64;
        let mut writeback: Option<tokio::task::JoinHandle<io::Result<()>>> = None;
        while let Some(chunk) = body
            .next_chunk()
            .await
            .map_err(|e| io_err("stream failed while writing", &e))?
        {
            file.write_all(&chunk)
                .await
                .map_err(|e| io_err("cannot write", &e))?;
            size += chunk.len() as u64;
            unsynced += chunk.len() as u64;
            // Start writeback as we go, in the background, so that the final sync does
            // not wait for the whole object to reach the disk at once.
            if unsynced >= WRITEBACK_EVERY && writeback.as_ref().is_none_or(|h| h.is_finished()) {
                file.flush().await.map_err(|e| io_err("cannot write", &e))?;
                let handle = file
                    .try_clone()
                    .await
                    .map_err(|e| io_err("cannot sync", &e))?
                    .into_std()
                    .await;
                writeback = Some(tokio::task::spawn_blocking(move || handle.sync_data()));
                unsynced = 0;
            }
        }
        if let Some(pending) = writeback {
            let _ = pending.await;
        }
        file.sync_all()
            .await
            .map_err(|e| io_err("cannot sync", &e))?;
        drop(file);

        let lock_path = self.lock_path(key);
        let root = self.root.clone();
        let key_owned = key.to_string();
        let lock = opts.lock;
        tokio::task::spawn_blocking(move || -> Result<(), Error> {
            let io_err =
                |what: &str, e: &io::Error| Error::from_io(format!("{what} {key_owned}"), e);
            fs::set_permissions(&partial_path, fs::Permissions::from_mode(0o444))
                .map_err(|e| io_err("cannot make read-only", &e))?;
            let parent = path.parent().unwrap_or(&root);
            fs::create_dir_all(parent).map_err(|e| io_err("cannot create directory for", &e))?;
            fs::hard_link(&partial_path, &path).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    Error::AlreadyExists(format!(
                        "{key_owned} already exists in the vault; vault never overwrites"
                    ))
                } else {
                    io_err("cannot publish", &e)
                }
            })?;
            sync_dir(parent).map_err(|e| io_err("cannot sync directory of", &e))?;
            if let Some(lock) = lock {
                let record = serde_json::to_vec(&lock).expect("lock serialises");
                write_once(&lock_path, &record)
                    .map_err(|e| io_err("cannot record the lock of", &e))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::Store {
            message: format!("publishing {key} panicked: {e}"),
            retryable: false,
        })??;
        // The published name holds the data now; the partial name can go.
        let _ = fs::remove_file(&partial.path);
        partial.done = true;
        Ok(PutReceipt {
            version_id: None,
            size,
        })
    }

    async fn get(&self, key: &str, version_id: Option<&str>) -> Result<ObjectReader, Error> {
        Self::no_versions(key, version_id)?;
        let path = self.path_of(key)?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| Error::from_io(format!("cannot open {key}"), &e))?;
        Ok(Box::new(file))
    }

    async fn head(&self, key: &str, version_id: Option<&str>) -> Result<ObjectMeta, Error> {
        Self::no_versions(key, version_id)?;
        let path = self.path_of(key)?;
        self.meta(key, &path)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, Error> {
        // Defence in depth (commands check job names first): a prefix that could name
        // anything outside the vault's keys (`..`, an absolute path, `.vault`) is
        // refused before the walk starts.
        let whole = prefix.trim_end_matches('/');
        if !prefix.is_empty() && !valid_key(whole) {
            return Err(Error::config(format!(
                "`{}` is not a valid key prefix",
                crate::names::shown(prefix)
            )));
        }
        // Walk only the directory the prefix names (or its parent for a partial name).
        let start_dir = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let mut out = Vec::new();
        let mut stack = vec![start_dir.to_string()];
        while let Some(dir) = stack.pop() {
            let path = if dir.is_empty() {
                self.root.clone()
            } else {
                self.root.join(&dir)
            };
            let entries = match fs::read_dir(&path) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(Error::from_io(
                        format!("cannot list {}", path.display()),
                        &e,
                    ));
                }
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::from_io("cannot list the vault", &e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let key = if dir.is_empty() {
                    name.clone()
                } else {
                    format!("{dir}/{name}")
                };
                let ft = entry
                    .file_type()
                    .map_err(|e| Error::from_io(format!("cannot stat {key}"), &e))?;
                // vault writes plain files and directories under valid keys only: a
                // symbolic link (which could point anywhere) or an odd name is never
                // one of its objects, and is neither followed nor listed.
                if ft.is_symlink() || !valid_key(&key) {
                    continue;
                }
                if ft.is_dir() {
                    if prefix.starts_with(&format!("{key}/")) || key.starts_with(prefix) {
                        stack.push(key);
                    }
                } else if key.starts_with(prefix) {
                    out.push(self.meta(&key, &entry.path())?);
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), Role::Writer).unwrap();
        super::super::conformance::run(&store, "conformance")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn objects_are_read_only_and_partials_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), Role::Writer).unwrap();
        store
            .put(
                "a/b",
                PipeReader::from_bytes(&b"x"[..]),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        let mode = fs::metadata(dir.path().join("a/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o222, 0, "published objects are read-only");
        let partials = fs::read_dir(dir.path().join(".vault/partial"))
            .unwrap()
            .count();
        assert_eq!(partials, 0);
        assert!(store.path_of("../etc/passwd").is_err());
        assert!(store.path_of(".vault/locks/x").is_err());
        assert!(!store.warnings()[0].is_empty());
    }

    #[test]
    fn old_partial_files_no_live_process_holds_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let partial = dir.path().join(".vault/partial");
        fs::create_dir_all(&partial).unwrap();
        let two_days_ago = std::time::SystemTime::now() - 2 * PARTIAL_MAX_AGE;
        let make = |name: &str, old: bool| {
            let path = partial.join(name);
            fs::write(&path, vec![0u8; 4096]).unwrap();
            let f = fs::File::options().write(true).open(&path).unwrap();
            if old {
                f.set_modified(two_days_ago).unwrap();
            }
            f
        };
        drop(make("left-by-a-killed-run", true));
        let held = make("still-being-written", true);
        held.try_lock().unwrap();
        drop(make("fresh", false));
        // Opening the vault (for a backup, or to read it) cleans up.
        LocalStore::open(dir.path(), Role::Verifier).unwrap();
        let mut left: Vec<String> = fs::read_dir(&partial)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["fresh", "still-being-written"]);
        drop(held);
        LocalStore::open(dir.path(), Role::Writer).unwrap();
        assert_eq!(
            fs::read_dir(&partial).unwrap().count(),
            1,
            "only the fresh one"
        );
    }

    #[tokio::test]
    async fn listing_refuses_prefixes_outside_the_vault_and_never_follows_links() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("vault");
        let store = LocalStore::open(&root, Role::Writer).unwrap();
        // Something beside the vault that a job name like `../outside` would reach.
        fs::create_dir_all(base.path().join("outside/manifests")).unwrap();
        fs::write(base.path().join("outside/manifests/x.json"), b"{}").unwrap();
        for bad in [
            "../outside/",
            "../outside/manifests/",
            "/etc/",
            ".vault/",
            "a/../../",
        ] {
            let err = store.list(bad).await.unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{bad}: {err}");
            assert!(err.to_string().contains("not a valid key prefix"), "{err}");
        }
        // A link planted in the vault is neither followed nor listed.
        fs::create_dir_all(root.join("app/manifests")).unwrap();
        std::os::unix::fs::symlink(
            base.path().join("outside/manifests"),
            root.join("app/linked"),
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("app/manifests/p.json")).unwrap();
        store
            .put(
                "app/manifests/real.json",
                PipeReader::from_bytes(&b"{}"[..]),
                &PutOptions::default(),
            )
            .await
            .unwrap();
        let keys: Vec<String> = store
            .list("app/")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys, ["app/manifests/real.json"]);
    }
}
