//! `files`: a directory tree as a tar stream.
//!
//! Regular files, directories and symlinks (as links, never followed) with their
//! modes, owners and mtimes (to the second, the tar header's resolution), walked in
//! name order so the same tree gives the same archive. A producer thread writes the
//! archive into a pipe; its result is checked at `finish`.
//!
//! A file that changes while it is read must not corrupt the archive: its header
//! carries the size seen at `stat`, and exactly that many bytes follow. A file that
//! grew keeps its first bytes (with a warning); a file that shrank fails the backup,
//! since there is no true content to fill the gap with. Other file types (sockets,
//! FIFOs, devices) are skipped with a warning.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, bail};
use tar::HeaderMode;

use super::{DumpStream, ThreadStream};
use crate::error::Error;
use crate::pipe::PipeWriter;

pub fn open(path: &Path) -> anyhow::Result<Box<dyn DumpStream>> {
    let shown = path.display().to_string();
    match std::fs::metadata(path) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => bail!("files source {shown} is not a directory"),
        Err(e) => bail!("files source {shown}: {e}"),
    }
    let root = path.to_path_buf();
    let stream = ThreadStream::spawn("tar", move |out| {
        archive(&root, out)?.finish()?;
        Ok(())
    })?;
    Ok(Box::new(stream))
}

/// Writes the tree under `root` as a tar stream into `out`; the root itself is `.`.
fn archive(root: &Path, out: PipeWriter) -> anyhow::Result<PipeWriter> {
    let mut tar = tar::Builder::new(out);
    let mut stack = vec![PathBuf::from(".")];
    while let Some(rel) = stack.pop() {
        let path = root.join(&rel);
        let md = fs::symlink_metadata(&path)
            .with_context(|| format!("cannot stat {}", path.display()))?;
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&md, HeaderMode::Complete);
        let kind = md.file_type();
        if kind.is_dir() {
            header.set_size(0);
            tar.append_data(&mut header, &rel, io::empty())?;
            let mut names = fs::read_dir(&path)
                .with_context(|| format!("cannot list {}", path.display()))?
                .map(|entry| entry.map(|e| e.file_name()))
                .collect::<io::Result<Vec<_>>>()
                .with_context(|| format!("cannot list {}", path.display()))?;
            names.sort();
            let child = |name| {
                if rel == Path::new(".") {
                    PathBuf::from(name)
                } else {
                    rel.join(name)
                }
            };
            stack.extend(names.into_iter().rev().map(child));
        } else if kind.is_symlink() {
            let target = fs::read_link(&path)
                .with_context(|| format!("cannot read the link {}", path.display()))?;
            header.set_size(0);
            tar.append_link(&mut header, &rel, &target)?;
        } else if kind.is_file() {
            let file =
                fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
            let mut exact = ExactReader {
                inner: file,
                remaining: md.len(),
                path: &path,
            };
            tar.append_data(&mut header, &rel, &mut exact)
                .with_context(|| format!("cannot archive {}", path.display()))?;
            if exact.inner.read(&mut [0u8; 1]).unwrap_or(0) > 0 {
                tracing::warn!(
                    "{} grew while it was archived; its first {} bytes were kept",
                    path.display(),
                    md.len()
                );
            }
        } else {
            tracing::warn!(
                "skipping {}: not a regular file, directory or symlink",
                path.display()
            );
        }
    }
    tar.into_inner().context("cannot finish the tar stream")
}

/// Yields exactly `remaining` bytes of `inner`, or fails if it ends sooner.
struct ExactReader<'p, R> {
    inner: R,
    remaining: u64,
    path: &'p Path,
}

impl<R: Read> Read for ExactReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} shrank while it was archived ({} bytes missing)",
                    self.path.display(),
                    self.remaining
                ),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
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
        if rel.components().any(|c| c == Component::ParentDir) {
            return Err(outside(&rel));
        }
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
            return Err(outside(&rel));
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

fn outside(rel: &Path) -> anyhow::Error {
    Error::integrity(format!(
        "archive entry {} points outside the target (vault never writes such an entry)",
        rel.display()
    ))
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_reader_fails_on_a_short_file_and_stops_at_the_size() {
        let path = Path::new("f");
        let mut short = ExactReader {
            inner: &b"abc"[..],
            remaining: 5,
            path,
        };
        let err = io::copy(&mut short, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("shrank"), "{err}");
        let mut long = ExactReader {
            inner: &b"abcdef"[..],
            remaining: 4,
            path,
        };
        let mut out = Vec::new();
        long.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abcd");
    }
}
