//! One backup of a job at a time, across processes: an exclusive lock on
//! `<state_dir>/locks/<job>.<vault>.lock`, held for the run, where `<vault>` tells
//! vaults apart (a short hash of the store and its key prefix): the same job name in
//! two vaults on one host is two jobs.
//!
//! Two overlapping backups of one job with signing on would both extend the chain from
//! the same head: the next `verify` reports a fork, and an accidental overlap (a slow
//! dump and the next cron run, a hand-started backup beside the scheduler) pages as
//! tampering. The lock is `flock(2)` on an open file (the standard library's
//! `File::try_lock`): the kernel releases it when the process ends, however it ends, so
//! a killed run never leaves a stale lock. The holder writes its pid into the file for
//! the message the next one prints.
//!
//! A leaf: imports only `error`; never `config` (callers pass the directory and name the
//! vault).

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Error;

/// How often a waiting run tries again.
const POLL: Duration = Duration::from_millis(200);

/// A held job lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct JobLock {
    _file: File,
    path: PathBuf,
}

/// Why a lock is not held.
#[derive(Debug)]
pub enum Busy {
    /// Another process holds it; its pid, when it wrote one.
    Held(Option<u32>),
    /// The lock file cannot be used (the directory is not writable, ...).
    Unusable(Error),
}

impl JobLock {
    /// The lock file of `job` in the vault described by `vault` (its store and key
    /// prefix, as text), under `state_dir`.
    pub fn path(state_dir: &Path, vault: &str, job: &str) -> PathBuf {
        let hash = blake3::hash(vault.as_bytes()).to_hex();
        state_dir
            .join("locks")
            .join(format!("{job}.{}.lock", &hash[..12]))
    }

    /// Takes the lock of `job` in `vault` if no other process holds it.
    pub fn try_acquire(state_dir: &Path, vault: &str, job: &str) -> Result<JobLock, Busy> {
        let path = Self::path(state_dir, vault, job);
        let unusable = |what: &str, e: std::io::Error| {
            Busy::Unusable(Error::from_io(
                format!("cannot {what} the lock file {}", path.display()),
                &e,
            ))
        };
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| unusable("create the directory of", e))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| unusable("open", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(Busy::Held(text.trim().parse().ok()));
            }
            Err(TryLockError::Error(e)) => return Err(unusable("lock", e)),
        }
        // Ours now: say who holds it.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        Ok(JobLock { _file: file, path })
    }

    /// Takes the lock of `job`, waiting (polling) while another process holds it when
    /// `wait` is set. `Busy::Held` is only returned without `wait`.
    pub async fn acquire(
        state_dir: &Path,
        vault: &str,
        job: &str,
        wait: bool,
    ) -> Result<JobLock, Busy> {
        let mut said = false;
        loop {
            match Self::try_acquire(state_dir, vault, job) {
                Err(Busy::Held(pid)) if wait => {
                    if !said {
                        tracing::info!(
                            "job `{job}` is being backed up by {}: waiting for it to finish",
                            holder(pid)
                        );
                        said = true;
                    }
                    tokio::time::sleep(POLL).await;
                }
                other => return other,
            }
        }
    }

    /// The file the lock is held on.
    pub fn file(&self) -> &Path {
        &self.path
    }
}

/// `pid 1234`, or `another process` when it wrote none.
pub fn holder(pid: Option<u32>) -> String {
    pid.map_or_else(|| "another process".to_string(), |p| format!("pid {p}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VAULT: &str = "local directory /srv/vault";

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = JobLock::try_acquire(dir.path(), VAULT, "app").unwrap();
        assert_eq!(
            fs::read_to_string(first.file()).unwrap().trim(),
            std::process::id().to_string()
        );
        // flock(2) locks belong to the open file: a second open, even in this process,
        // is a second holder.
        match JobLock::try_acquire(dir.path(), VAULT, "app") {
            Err(Busy::Held(Some(pid))) => assert_eq!(pid, std::process::id()),
            other => panic!("{other:?}"),
        }
        // Another job is another lock, and so is the same job in another vault.
        let _other = JobLock::try_acquire(dir.path(), VAULT, "db").unwrap();
        let _elsewhere = JobLock::try_acquire(dir.path(), "s3://other", "app").unwrap();
        drop(first);
        assert!(JobLock::try_acquire(dir.path(), VAULT, "app").is_ok());
    }

    #[test]
    fn an_unwritable_directory_is_unusable_not_busy() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs::write(&file, b"").unwrap();
        assert!(matches!(
            JobLock::try_acquire(&file, VAULT, "app"),
            Err(Busy::Unusable(_))
        ));
    }
}
