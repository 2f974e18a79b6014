//! blake3 + byte count, computed as data passes through a stage.
//!
//! Both hashes in a manifest (plaintext and ciphertext) come from these adapters, so
//! the data is hashed on the way and never read twice.
//!
//! A leaf: imports nothing of vault's.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// Size and blake3 of a byte stream; `blake3` is lowercase hex, as `b3sum` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub size: u64,
    pub blake3: String,
}

/// Accumulates a [`Digest`].
#[derive(Default, Clone)]
pub struct Digester {
    hasher: blake3::Hasher,
    size: u64,
}

impl Digester {
    pub fn update(&mut self, data: &[u8]) {
        // Large chunks go through blake3's SIMD paths; this stays on the calling thread.
        self.hasher.update(data);
        self.size += data.len() as u64;
    }

    pub fn finish(&self) -> Digest {
        Digest {
            size: self.size,
            blake3: self.hasher.finalize().to_hex().to_string(),
        }
    }
}

/// A digest that several owners can update and read; used where the hashing adapter
/// ends up buried inside another reader (age, zstd) that does not give it back.
#[derive(Clone, Default)]
pub struct SharedDigester(Arc<Mutex<Digester>>);

impl SharedDigester {
    pub fn finish(&self) -> Digest {
        self.0.lock().expect("digest lock").finish()
    }
}

/// Hashes everything read through it.
pub struct HashingReader<R> {
    inner: R,
    digest: SharedDigester,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            digest: SharedDigester::default(),
        }
    }

    /// A handle that reads the digest after this reader has been moved away.
    pub fn digest(&self) -> SharedDigester {
        self.digest.clone()
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.0.lock().expect("digest lock").update(&buf[..n]);
        Ok(n)
    }
}

/// Hashes everything written through it.
pub struct HashingWriter<W> {
    inner: W,
    digest: Digester,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            digest: Digester::default(),
        }
    }

    pub fn into_parts(self) -> (W, Digest) {
        let digest = self.digest.finish();
        (self.inner, digest)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Counts bytes written through it (the compressed size between zstd and age).
pub struct CountingWriter<W> {
    pub inner: W,
    pub count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Which side of a [`copy_large`] failed. Callers tell them apart: a read error is
/// the data's (or the source's) fault, a write error the destination's.
#[derive(Debug)]
pub enum CopyError {
    Read { after: u64, error: io::Error },
    Write(io::Error),
}

/// Copies `reader` into `writer` with a large buffer; returns the bytes copied.
/// (`std::io::copy` uses 8 KiB for generic readers, too small for GB/s stages.)
pub fn copy_large(
    reader: &mut (impl Read + ?Sized),
    writer: &mut (impl Write + ?Sized),
) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                return Err(CopyError::Read {
                    after: total,
                    error,
                });
            }
        };
        writer.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_b3sum_format_and_counts() {
        let mut r = HashingReader::new(&b"abc"[..]);
        let handle = r.digest();
        let mut sink = HashingWriter::new(Vec::new());
        copy_large(&mut r, &mut sink).unwrap();
        let (out, written) = sink.into_parts();
        let read = handle.finish();
        assert_eq!(out, b"abc");
        assert_eq!(read, written);
        assert_eq!(read.size, 3);
        // b3sum of "abc"
        assert_eq!(
            read.blake3,
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
    }
}
