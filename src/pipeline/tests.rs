//! The restore pipeline end to end in memory: old backups, damage, an object that
//! cannot be read, data after the end, a key that does not fit.

use std::sync::atomic::AtomicUsize;

use super::*;
use crate::crypto;

fn digest(data: &[u8]) -> Digest {
    let mut d = Digester::default();
    d.update(data);
    d.finish()
}

/// A restorer's key, and `zst` encrypted to it as a backup would be, with what its
/// manifest would expect of it (`data` being the plaintext).
struct Sealed {
    _dir: tempfile::TempDir,
    identities: Identities,
    cipher: Vec<u8>,
    expected: Expected,
}

fn seal(zst: &[u8], data: &[u8]) -> Sealed {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.txt");
    let recipient = crypto::generate_identity_file(&key).unwrap();
    let identities = crypto::load_identities(&key).unwrap();
    let r = crypto::parse_recipient(&recipient).unwrap();
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&r.key as &dyn age::Recipient)).unwrap();
    let mut cipher = Vec::new();
    let mut writer = encryptor.wrap_output(&mut cipher).unwrap();
    writer.write_all(zst).unwrap();
    writer.finish().unwrap();
    let expected = Expected {
        key: "old.bin.zst.age".into(),
        ciphertext: digest(&cipher),
        plaintext: digest(data),
        recipients: vec![recipient],
    };
    Sealed {
        _dir: dir,
        identities,
        cipher,
        expected,
    }
}

fn is_integrity(err: &anyhow::Error) -> bool {
    matches!(err.downcast_ref::<Error>(), Some(Error::Integrity(_)))
}

#[test]
fn a_backup_written_as_one_streamed_frame_restores_and_damage_is_caught() {
    let data: Vec<u8> = (0..(9 << 20) + 17).map(|i| (i % 251) as u8).collect();
    // As vault wrote backups before frames: one streamed frame, no content size.
    let s = seal(&zstd::encode_all(&data[..], 3).unwrap(), &data);
    let mut out = Vec::new();
    restore(&s.cipher[..], &s.identities, &s.expected, &mut out).unwrap();
    assert_eq!(out, data);

    let mut bad = s.cipher.clone();
    let at = bad.len() / 2;
    bad[at] ^= 1;
    let err = restore(&bad[..], &s.identities, &s.expected, &mut io::sink()).unwrap_err();
    assert!(is_integrity(&err), "{err:#}");
    assert!(format!("{err:#}").contains("old.bin.zst.age"), "{err:#}");
}

/// Yields `inner`, then fails, as a connection that drops does.
struct Dropping<'a>(&'a [u8]);

impl Read for Dropping<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "connection reset by peer",
            ));
        }
        self.0.read(buf)
    }
}

#[test]
fn an_object_that_cannot_be_read_is_a_read_error_not_damage() {
    let data = vec![7u8; 3 << 20];
    let s = seal(&zstd::encode_all(&data[..], 3).unwrap(), &data);
    let half = &s.cipher[..s.cipher.len() / 2];
    let err = restore(Dropping(half), &s.identities, &s.expected, &mut io::sink()).unwrap_err();
    assert!(!is_integrity(&err), "{err:#}");
    let text = format!("{err:#}");
    assert!(
        text.contains("cannot read old.bin.zst.age") && text.contains("connection reset"),
        "{text}"
    );
}

#[test]
fn data_after_the_end_of_the_age_stream_is_damage() {
    let data = vec![1u8; 1 << 20];
    let s = seal(&zstd::encode_all(&data[..], 3).unwrap(), &data);
    let mut longer = s.cipher.clone();
    longer.extend_from_slice(&[0u8; 3 << 20]);
    let err = restore(&longer[..], &s.identities, &s.expected, &mut io::sink()).unwrap_err();
    // age finds it (its last chunk is then not the last), or else the ciphertext's
    // hash, which covers every byte read.
    assert!(is_integrity(&err), "{err:#}");
}

/// Counts what was read of it.
struct Counting<'a> {
    inner: &'a [u8],
    read: &'a AtomicUsize,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }
}

#[test]
fn a_failed_restore_stops_reading_the_object() {
    // 64 MiB that do not compress, so the object is as large.
    let data: Vec<u8> = (0u64..8 << 20)
        .flat_map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7).to_le_bytes())
        .collect();
    let s = seal(&zstd::encode_all(&data[..], 1).unwrap(), &data);
    let mut bad = s.cipher.clone();
    bad[200] ^= 1; // in the first chunk of the age payload
    let read = AtomicUsize::new(0);
    let object = Counting {
        inner: &bad,
        read: &read,
    };
    let err = restore(object, &s.identities, &s.expected, &mut io::sink()).unwrap_err();
    assert!(is_integrity(&err), "{err:#}");
    // At most the pipe's chunks in flight, not the object.
    let read = read.load(Ordering::Relaxed);
    assert!(
        read <= (pipe::DEPTH + 3) * AHEAD_CHUNK + (1 << 20),
        "{read} bytes of {} read after the damage",
        bad.len()
    );

    // A key that does not fit is the restorer's configuration, and stops it too.
    let other = seal(b"", b"");
    let read = AtomicUsize::new(0);
    let object = Counting {
        inner: &s.cipher,
        read: &read,
    };
    let err = restore(object, &other.identities, &s.expected, &mut io::sink()).unwrap_err();
    assert!(
        matches!(err.downcast_ref::<Error>(), Some(Error::Config(_))),
        "{err:#}"
    );
    assert!(read.load(Ordering::Relaxed) <= (pipe::DEPTH + 3) * AHEAD_CHUNK + (1 << 20));
}
