//! The embedded default: a vault in a local directory.
//!
//! Write-once as far as vault is concerned: an object is written under a temporary
//! name in `.vault/partial/`, synced, made read-only and then *hard-linked* to its
//! final name — `link(2)` fails if the name exists, so an object is never replaced,
//! and a reader never sees a half-written one. The lock an object would get is
//! recorded in `.vault/locks/<key>.json`.
//!
//! It is **not** immutable against the directory's owner or root: anyone who can write
//! the directory can delete or change backups. It is for trying vault and for tests;
//! production backups belong in an Object Lock bucket in another account.
//!
//! Must not import `config` or anything above the store.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
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
        Ok(LocalStore {
            root: root.to_path_buf(),
        })
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, Error> {
        let valid = !key.is_empty()
            && !key.starts_with('/')
            && !key.ends_with('/')
            && key
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..")
            && !key.starts_with(META_DIR);
        if !valid {
            return Err(Error::config(format!("`{key}` is not a valid object key")));
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

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl Store for LocalStore {
    fn describe(&self) -> String {
        format!("local directory {}", self.root.display())
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
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial_path)
            .await
            .map_err(|e| io_err("cannot create partial file for", &e))?;
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
                if key == META_DIR {
                    continue;
                }
                let ft = entry
                    .file_type()
                    .map_err(|e| Error::from_io(format!("cannot stat {key}"), &e))?;
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
}
