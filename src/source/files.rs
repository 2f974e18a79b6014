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
//!
//! [`unpack`] reads an archive back as untrusted input, which it may be (a store
//! written by someone else, a foreign archive): it makes only files, directories and
//! links, inside the target, and never a world-writable or (unless asked) a setuid,
//! setgid or sticky one. docs/format.md §4.3 lists what each side accepts.

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

/// Mode bits never restored from an archive: a world-writable file or directory lets
/// any local user change what was restored.
const WORLD_WRITE: u32 = 0o002;
/// setuid, setgid and sticky: restored only when asked for. Owners are not restored, so
/// a kept setuid bit would make the file run as whoever ran the restore (often root).
const SPECIAL_BITS: u32 = 0o7000;
/// The mode of a directory the archive implies (a parent of an entry, or the root when
/// there is no `.` entry) without listing it.
const IMPLIED_DIR_MODE: u32 = 0o755;

/// How [`unpack`] treats what an archive asks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnpackOptions {
    /// Keep setuid, setgid and sticky bits (world-write is removed regardless).
    pub keep_special_bits: bool,
}

/// What [`unpack`] left out or changed, for the caller to report.
#[derive(Debug)]
pub struct Unpacked {
    /// Entries not restored: device nodes, FIFOs, types vault does not know.
    pub skipped: Tally<Skipped>,
    /// Entries restored with fewer mode bits than the archive asked for.
    pub stripped: Tally<Stripped>,
    /// True when setuid, setgid or sticky were among the bits removed.
    pub lost_special_bits: bool,
}

/// The first few items of a kind and how many there were in all: a forged archive
/// may hold millions, and the report must stay small.
#[derive(Debug)]
pub struct Tally<T> {
    pub first: Vec<T>,
    pub total: usize,
    keep: usize,
}

impl<T> Tally<T> {
    fn new(keep: usize) -> Self {
        Tally {
            first: Vec::new(),
            total: 0,
            keep,
        }
    }

    fn push(&mut self, item: T) {
        if self.first.len() < self.keep {
            self.first.push(item);
        }
        self.total += 1;
    }
}

/// An entry left out, and what it was (`a FIFO`, `a character device`, ...).
#[derive(Debug)]
pub struct Skipped {
    pub path: PathBuf,
    pub what: String,
}

/// An entry whose mode lost bits.
#[derive(Debug)]
pub struct Stripped {
    pub path: PathBuf,
    pub asked: u32,
    pub given: u32,
}

/// What an entry type becomes on restore.
enum Class {
    /// A file, directory or link: restored.
    Restored,
    /// Extension headers that describe the next entry; nothing of their own.
    Metadata,
    /// Left out, with what it was.
    Skipped(String),
}

fn classify(kind: tar::EntryType) -> Class {
    use tar::EntryType as T;
    match kind {
        T::Regular | T::Continuous | T::GNUSparse | T::Directory | T::Symlink | T::Link => {
            Class::Restored
        }
        T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => Class::Metadata,
        // A device node would give whoever can open it the device; a FIFO can block
        // whatever later reads the restored tree. vault's own backups never hold them.
        T::Char => Class::Skipped("a character device".into()),
        T::Block => Class::Skipped("a block device".into()),
        T::Fifo => Class::Skipped("a FIFO".into()),
        // POSIX reads an unknown type as a regular file; vault never writes one, so it
        // is left out rather than guessed at.
        other => Class::Skipped(format!(
            "an entry of unknown type `{}`",
            other.as_byte().escape_ascii()
        )),
    }
}

/// Unpacks a tar stream into `dir`, restoring files, directories, symlinks and hard
/// links with their modes and mtimes, the root directory's own mode and mtime
/// included; device nodes, FIFOs and unknown types are skipped. No entry may escape
/// `dir`, and the archive is untrusted: world-write is always removed, and setuid,
/// setgid and sticky unless `options` keeps them.
pub fn unpack(
    reader: impl std::io::Read,
    dir: &Path,
    options: UnpackOptions,
) -> anyhow::Result<Unpacked> {
    let removed = if options.keep_special_bits {
        WORLD_WRITE
    } else {
        WORLD_WRITE | SPECIAL_BITS
    };
    let mut report = Unpacked {
        skipped: Tally::new(100),
        stripped: Tally::new(3),
        lost_special_bits: false,
    };
    let root = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    let mut archive = tar::Archive::new(reader);
    // Directory modes and mtimes are applied at the end: a read-only directory must not
    // stop its children from being written, and writing children changes its mtime.
    // The root comes first with the implied mode, so that a `.` entry overrides it.
    let mut dirs: Vec<(PathBuf, u32, Option<u64>)> =
        vec![(dir.to_path_buf(), IMPLIED_DIR_MODE, None)];
    for entry in archive.entries()? {
        let mut entry = entry?;
        let header = entry.header();
        let kind = header.entry_type();
        let (asked, mtime) = (header.mode()? & 0o7777, header.mtime()?);
        let rel = entry.path()?.into_owned();
        if rel.components().any(|c| c == Component::ParentDir) {
            return Err(outside(&rel, None));
        }
        match classify(kind) {
            Class::Restored => {}
            Class::Metadata => continue,
            Class::Skipped(what) => {
                report.skipped.push(Skipped { path: rel, what });
                continue;
            }
        }
        let is_root = rel.components().all(|c| c == Component::CurDir);
        if is_root && !kind.is_dir() {
            // The root is the target directory itself: it cannot become anything else.
            let what = "the archive's root, but not a directory".into();
            report.skipped.push(Skipped { path: rel, what });
            continue;
        }
        // A link's own mode means nothing (a hard link shares its target's).
        let mode = if kind.is_symlink() || kind.is_hard_link() {
            asked
        } else {
            let given = asked & !removed;
            if given != asked {
                report.lost_special_bits |= asked & SPECIAL_BITS != given & SPECIAL_BITS;
                report.stripped.push(Stripped {
                    path: rel.clone(),
                    asked,
                    given,
                });
            }
            given
        };
        if is_root {
            dirs.push((dir.to_path_buf(), mode, Some(mtime)));
            continue;
        }
        // The tar crate refuses these too, but as a plain I/O error: an archive that
        // reaches out of the target is tampering, whichever way it tries.
        let inside = |path: &Path| {
            path.canonicalize()
                .map(|p| p.starts_with(&root))
                .with_context(|| format!("cannot unpack {}", rel.display()))
        };
        let (reached, implied) = parents(dir, &rel);
        if !inside(&reached)? {
            return Err(outside(&rel, None));
        }
        if kind.is_hard_link() {
            let target = entry.link_name()?.unwrap_or_default().into_owned();
            let escapes = target.has_root()
                || target.components().any(|c| c == Component::ParentDir)
                || !inside(&parents(dir, &target).0)?;
            if escapes {
                return Err(outside(&rel, Some(&target)));
            }
        }
        entry.set_mask(removed);
        entry.set_preserve_permissions(true);
        entry.set_preserve_mtime(true);
        entry.set_unpack_xattrs(false);
        let unpacked = entry
            .unpack_in(dir)
            .with_context(|| format!("cannot unpack {}", rel.display()))?;
        if !unpacked {
            return Err(outside(&rel, None));
        }
        // The tar crate made them under the umask, which may let anyone write.
        dirs.extend(implied.into_iter().map(|p| (p, IMPLIED_DIR_MODE, None)));
        if kind.is_dir() {
            let path = dir.join(&rel);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o700))?;
            dirs.push((path, mode, Some(mtime)));
        }
    }
    // Deepest first, so setting a child never disturbs a parent already done; the sort
    // is stable, so of two settings for one directory the later entry's wins.
    dirs.sort_by(|a, b| b.0.cmp(&a.0));
    for (path, mode, mtime) in dirs {
        if let Some(mtime) = mtime {
            let when = UNIX_EPOCH + Duration::from_secs(mtime);
            fs::File::open(&path)
                .and_then(|d| d.set_modified(when))
                .with_context(|| format!("cannot set the mtime of {}", path.display()))?;
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    }
    Ok(report)
}

fn outside(rel: &Path, link: Option<&Path>) -> anyhow::Error {
    let link = link
        .map(|to| format!(" (a hard link to {})", to.display()))
        .unwrap_or_default();
    Error::integrity(format!(
        "archive entry {}{link} points outside the target (vault never writes such an entry)",
        rel.display()
    ))
    .into()
}

/// The way to `rel`'s directory under `dir`: the deepest part of it that exists, and
/// the parts after it that do not yet (shallowest first).
fn parents(dir: &Path, rel: &Path) -> (PathBuf, Vec<PathBuf>) {
    let mut reached = dir.to_path_buf();
    let mut missing: Vec<PathBuf> = Vec::new();
    for part in rel.parent().into_iter().flat_map(Path::components) {
        if let Component::Normal(name) = part {
            let next = missing.last().unwrap_or(&reached).join(name);
            if missing.is_empty() && fs::symlink_metadata(&next).is_ok() {
                reached = next;
            } else {
                missing.push(next);
            }
        }
    }
    (reached, missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

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

    /// Appends an entry; a file holds `data`, a hard link points to `f`.
    fn entry(tar: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, mode: u32) {
        let mut header = tar::Header::new_gnu();
        header.set_path(name).unwrap();
        header.set_entry_type(kind);
        header.set_mode(mode);
        if kind.is_hard_link() {
            header.set_link_name("f").unwrap();
        }
        let data: &[u8] = if kind.is_file() { b"data" } else { b"" };
        header.set_size(data.len() as u64);
        header.set_cksum();
        tar.append(&header, data).unwrap();
    }

    #[test]
    fn unpack_makes_files_and_links_only_and_reports_what_it_changed() {
        use tar::EntryType as T;
        let mut tar = tar::Builder::new(Vec::new());
        entry(&mut tar, ".", T::Directory, 0o755);
        entry(&mut tar, "./", T::Symlink, 0o777);
        entry(&mut tar, "f", T::Regular, 0o6777);
        entry(&mut tar, "h", T::Link, 0o777);
        entry(&mut tar, "label", T::new(b'V'), 0o644);
        for i in 0..150 {
            entry(&mut tar, &format!("fifo{i}"), T::Fifo, 0o666);
        }
        let archive = tar.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let report = unpack(&archive[..], dir.path(), UnpackOptions::default()).unwrap();

        let md = |name: &str| fs::metadata(dir.path().join(name)).unwrap();
        assert_eq!(md("f").mode() & 0o7777, 0o775);
        assert_eq!(md("h").ino(), md("f").ino());
        assert!(!dir.path().join("label").exists());
        assert!(!dir.path().join("fifo0").exists());
        // The hard link's own mode is not its to change, nor to report.
        assert_eq!(report.stripped.total, 1);
        assert!(report.lost_special_bits);
        assert_eq!(
            md("").mode() & 0o7777,
            0o755,
            "a root that is a link is left out"
        );
        assert_eq!(report.skipped.total, 152);
        assert_eq!(report.skipped.first.len(), 100, "a bounded report");
        let what: Vec<&str> = report.skipped.first[..3]
            .iter()
            .map(|s| s.what.as_str())
            .collect();
        assert_eq!(
            what,
            [
                "the archive's root, but not a directory",
                "an entry of unknown type `V`",
                "a FIFO"
            ]
        );
    }
}
