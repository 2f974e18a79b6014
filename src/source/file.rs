//! One regular file, read by vault itself (no child process): a dump another tool
//! wrote, an export, a disk image taken elsewhere. The file must stay as it was while
//! it is read: its size and modification time are compared before and after, and the
//! bytes read must be exactly its size, or the backup fails (a file being rewritten
//! would give a torn copy).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::bail;

use super::DumpStream;

pub fn open(path: &Path) -> anyhow::Result<Box<dyn DumpStream>> {
    let shown = path.display();
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) => bail!("file source {shown}: {e}"),
    };
    let md = file.metadata()?;
    if !md.is_file() {
        bail!(
            "file source {shown} is not a regular file (for a pipe or a device, use a \
             command source)"
        );
    }
    Ok(Box::new(FileStream {
        file,
        path: path.to_path_buf(),
        size: md.len(),
        modified: md.modified().ok(),
        read: 0,
    }))
}

struct FileStream {
    file: File,
    path: PathBuf,
    size: u64,
    modified: Option<SystemTime>,
    read: u64,
}

impl Read for FileStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

impl DumpStream for FileStream {
    fn finish(self: Box<Self>) -> anyhow::Result<()> {
        let md = self.file.metadata()?;
        if md.len() != self.size || md.modified().ok() != self.modified || self.read != self.size {
            bail!(
                "file source {} changed while it was read ({} bytes when opened, {} read, \
                 {} now): back it up when nothing writes to it",
                self.path.display(),
                self.size,
                self.read,
                md.len()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_whole_and_a_change_while_reading_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dump.bin");
        std::fs::write(&path, b"0123456789").unwrap();
        let mut stream = open(&path).unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"0123456789");
        stream.finish().unwrap();

        let mut stream = open(&path).unwrap();
        let mut first = [0u8; 4];
        stream.read_exact(&mut first).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| io::Write::write_all(&mut f, b"more"))
            .unwrap();
        let _ = io::copy(&mut stream, &mut io::sink());
        let err = stream.finish().unwrap_err().to_string();
        assert!(err.contains("changed while it was read"), "{err}");
        assert!(err.contains("dump.bin"), "{err}");

        let err = open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        let err = open(&dir.path().join("missing")).err().unwrap().to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
