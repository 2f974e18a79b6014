//! `files`: a directory tree as a tar stream.
//!
//! Regular files, directories and symlinks (as links, never followed) with their
//! modes, owners and mtimes (to the second, the tar header's resolution). A producer
//! thread writes the archive into a pipe; its result is checked at `finish`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, bail};

use super::{DumpStream, ThreadStream};

pub fn open(path: &Path) -> anyhow::Result<Box<dyn DumpStream>> {
    let shown = path.display().to_string();
    match std::fs::metadata(path) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => bail!("files source {shown} is not a directory"),
        Err(e) => bail!("files source {shown}: {e}"),
    }
    let root = path.to_path_buf();
    let stream = ThreadStream::spawn("tar", move |out| {
        let mut tar = tar::Builder::new(out);
        tar.follow_symlinks(false);
        tar.mode(tar::HeaderMode::Complete);
        tar.append_dir_all(".", &root)
            .with_context(|| format!("cannot archive {}", root.display()))?;
        let out = tar.into_inner().context("cannot finish the tar stream")?;
        out.finish()?;
        Ok(())
    })?;
    Ok(Box::new(stream))
}

/// Unpacks a tar stream (as written by [`open`]) into `dir`, restoring modes, mtimes
/// and symlinks, the root directory's own mode and mtime included. Entries may not
/// escape `dir`.
pub fn unpack(reader: impl std::io::Read, dir: &Path) -> anyhow::Result<()> {
    let mut archive = tar::Archive::new(reader);
    // Directory modes and mtimes are applied at the end: a read-only directory must not
    // stop its children from being written, and writing children changes its mtime.
    let mut dirs: Vec<(PathBuf, u32, u64)> = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let header = entry.header();
        let (mode, mtime) = (header.mode()?, header.mtime()?);
        let is_dir = header.entry_type().is_dir();
        let rel = entry.path()?.into_owned();
        if rel.components().all(|c| c == Component::CurDir) {
            dirs.push((dir.to_path_buf(), mode, mtime));
            continue;
        }
        entry.set_preserve_permissions(true);
        entry.set_preserve_mtime(true);
        entry.set_unpack_xattrs(false);
        let unpacked = entry
            .unpack_in(dir)
            .with_context(|| format!("cannot unpack {}", rel.display()))?;
        if !unpacked {
            bail!("archive entry {} points outside the target", rel.display());
        }
        if is_dir {
            let path = dir.join(&rel);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o700))?;
            dirs.push((path, mode, mtime));
        }
    }
    // Deepest first, so setting a child never disturbs a parent already done.
    dirs.sort_by(|a, b| b.0.cmp(&a.0));
    for (path, mode, mtime) in dirs {
        let when = UNIX_EPOCH + Duration::from_secs(mtime);
        fs::File::open(&path)
            .and_then(|d| d.set_modified(when))
            .with_context(|| format!("cannot set the mtime of {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    }
    Ok(())
}
