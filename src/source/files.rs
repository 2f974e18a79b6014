//! `files`: a directory tree as a tar stream.
//!
//! Regular files, directories and symlinks (as links, never followed) with their
//! modes, owners and mtimes (to the second, the tar header's resolution). A producer
//! thread writes the archive into a pipe; its result is checked at `finish`.

use std::path::Path;

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
/// and symlinks. Entries may not escape `dir`.
pub fn unpack(reader: impl std::io::Read, dir: &Path) -> anyhow::Result<()> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(false);
    archive.set_unpack_xattrs(false);
    archive
        .unpack(dir)
        .with_context(|| format!("cannot unpack into {}", dir.display()))
}
