//! A private scratch directory (mode 0700, removed on drop) for the few files an
//! engine's tool needs: a MySQL defaults file holding the password, or a dump that
//! `pg_restore --jobs` must be able to seek in.
//!
//! It lives under `$TMPDIR` (or `/tmp`). Files are created new with mode 0600. A
//! process killed with SIGKILL cannot clean up: the directory then remains, readable by
//! its owner only; docs/engines.md says so.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn new(purpose: &str) -> anyhow::Result<Scratch> {
        Scratch::new_in(&std::env::temp_dir(), purpose)
    }

    /// A private directory in `parent` instead of `$TMPDIR`.
    pub fn new_in(parent: &Path, purpose: &str) -> anyhow::Result<Scratch> {
        let path = parent.join(format!(
            "vault-{purpose}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("cannot create private directory {}", path.display()))?;
        Ok(Scratch { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory now, saying why when it cannot (dropping it says nothing).
    pub fn remove(self) -> anyhow::Result<()> {
        fs::remove_dir_all(&self.path)
            .with_context(|| format!("cannot remove {}", self.path.display()))
    }

    /// Creates `name` (0600, must not exist) and returns its path.
    pub fn create(&self, name: &str) -> anyhow::Result<(PathBuf, fs::File)> {
        let path = self.path.join(name);
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok((path, file))
    }

    /// Writes a small file holding `contents` (0600) and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> anyhow::Result<PathBuf> {
        let (path, mut file) = self.create(name)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn scratch_files_are_private_and_removed() {
        let s = Scratch::new("test").unwrap();
        let dir = s.path().to_path_buf();
        let f = s.write("a.cnf", "secret").unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(s.write("a.cnf", "again").is_err(), "never overwritten");
        drop(s);
        assert!(!dir.exists());
    }
}
