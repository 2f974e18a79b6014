//! The one-pass pipelines.
//!
//! Backup: `source -> blake3(plaintext) -> zstd frames (N workers) -> age ->
//! blake3(ciphertext) -> store.put`, in one pass, with bounded memory:
//!
//! ```text
//!  [blocking thread]        [N worker threads]   [writer thread]          [async task]
//!  source.read          ──▶ zstd, one frame  ──▶ frames in order,     ──▶ store.put
//!  hash + count plaintext    each               age encrypt, hash +      (local file /
//!  cut into 4 MiB frames                        count ciphertext         S3 upload)
//!         (N + 2 frames in flight)                    pipe (DEPTH x CHUNK)
//! ```
//!
//! Every stage finishes its layer explicitly (an unfinished age writer truncates),
//! and the source's `finish` (exit status) is checked *before* the stream to the store
//! is ended: a failing source cuts the stream short and the store never completes the
//! object. Only a fully successful pipeline returns [`Written`] (no other code can make
//! one), and `Manifest::new` takes a `Written`: the type system keeps the rule that a
//! manifest exists only for a completed data object.
//!
//! Restore: `store.get -> blake3(ciphertext)` on a reading thread, then through a pipe
//! `age decrypt -> split into frames` on the splitting thread, `zstd` on N workers,
//! `frames in order -> blake3(plaintext) -> sink` on the calling thread; both hashes
//! checked against what the manifest promised ([`Expected`]) at the end.
//!
//! Must not import `config` or `manifest`: it takes what it needs.

mod adapt;
mod compress;
mod decompress;
mod frames;

pub use adapt::Levels;
pub use frames::FRAME;

use std::io::{self, BufRead, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context, anyhow};
use bytes::BytesMut;

use crate::crypto::{Identities, Recipient};
use crate::digest::{CopyError, Digest, Digester, HashingReader, HashingWriter, copy_large};
use crate::error::Error;
use crate::pipe::{self, PipeWriter};
use crate::progress::Tracked;
use crate::source::{self, DatabaseProperties, Spec};
use crate::store::{PutOptions, Store};

/// zstd settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    pub level: i32,
    /// Worker threads; 0 means one per core.
    pub threads: u32,
    /// Adaptive compression: the levels the level may move between.
    pub adapt: Option<Levels>,
}

impl Compression {
    /// The worker threads to use.
    pub fn workers(&self) -> usize {
        match self.threads {
            0 => cores(),
            n => n as usize,
        }
    }
}

/// The CPUs this process may use (affinity and cgroup quotas count).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What a completed backup stream produced: everything its manifest needs. Its
/// fields are private and only [`backup`] makes one.
#[derive(Debug, Clone)]
pub struct Written {
    key: String,
    plaintext: Digest,
    compression: Compression,
    compressed_size: u64,
    levels_used: (i32, i32),
    ciphertext: Digest,
    version_id: Option<String>,
    recipients: Vec<String>,
    database_properties: Option<DatabaseProperties>,
}

impl Written {
    /// The data object's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The dump as the source produced it.
    pub fn plaintext(&self) -> &Digest {
        &self.plaintext
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Size of the zstd stream (the age plaintext).
    pub fn compressed_size(&self) -> u64 {
        self.compressed_size
    }

    /// The lowest and highest level a frame was compressed at (the configured level
    /// both, unless compression adapts).
    pub fn levels_used(&self) -> (i32, i32) {
        self.levels_used
    }

    /// The stored object (the ciphertext).
    pub fn ciphertext(&self) -> &Digest {
        &self.ciphertext
    }

    /// The store's version id of the data object, when it has versions.
    pub fn version_id(&self) -> Option<&str> {
        self.version_id.as_deref()
    }

    /// The age recipients the object is encrypted to, as written in the config.
    pub fn recipients(&self) -> &[String] {
        &self.recipients
    }

    /// What the source read about the dumped database, for `restore --create`.
    pub fn database_properties(&self) -> Option<&DatabaseProperties> {
        self.database_properties.as_ref()
    }
}

/// What a stored object must turn out to be when read back: its manifest's promise.
#[derive(Debug, Clone)]
pub struct Expected {
    /// The data object's key, for messages.
    pub key: String,
    pub ciphertext: Digest,
    pub plaintext: Digest,
    /// The recipients it was encrypted to, named when no key fits.
    pub recipients: Vec<String>,
}

/// Streams one dump from `source` into `store` under `key`.
pub async fn backup(
    store: &dyn Store,
    key: &str,
    opts: &PutOptions,
    source: Spec,
    recipients: Vec<Recipient>,
    compression: Compression,
    progress: Arc<AtomicU64>,
) -> anyhow::Result<Written> {
    if recipients.is_empty() {
        // Checked by the command too; this is the last line of defence: no plaintext
        // ever reaches a store.
        return Err(Error::config("no encryption recipients: refusing to write").into());
    }
    let (cipher_tx, cipher_rx) = pipe::pipe(pipe::CHUNK, pipe::DEPTH);

    // Set when this future is dropped (an interrupted backup) or ends: the reading
    // thread then fails at its next read of the source (which is then killed), instead
    // of reading on until its next output finds the pipe closed — for a slow or very
    // compressible dump, not before the process's exit stops waiting for it.
    let cancel = CancelOnDrop::default();
    let stop = cancel.0.clone();
    let recipient_texts: Vec<String> = recipients.iter().map(|r| r.text.clone()).collect();
    let compress = tokio::task::spawn_blocking(move || {
        compress_stage(&source, cipher_tx, &recipients, compression, progress, stop)
    });
    let upload = store.put(key, cipher_rx, opts);

    let (compressed, uploaded) = tokio::join!(compress, upload);
    let compressed = compressed
        .map_err(|e| anyhow!("the compression stage panicked: {e}"))
        .and_then(|r| r);
    let uploaded = uploaded.map_err(anyhow::Error::from);

    match (compressed, uploaded) {
        (Ok(stage), Ok(receipt)) => {
            if receipt.size != stage.ciphertext.size {
                return Err(Error::integrity(format!(
                    "{key}: the store took {} bytes of {}",
                    receipt.size, stage.ciphertext.size
                ))
                .into());
            }
            Ok(Written {
                key: key.to_string(),
                plaintext: stage.plaintext,
                compression,
                compressed_size: stage.compressed.size,
                levels_used: stage.compressed.levels,
                ciphertext: stage.ciphertext,
                version_id: receipt.version_id,
                recipients: recipient_texts,
                database_properties: stage.properties,
            })
        }
        (c, u) => Err(root_cause(vec![c.err(), u.err()])),
    }
}

/// Of several stage failures, the one that is not merely a consequence of another
/// (a [`pipe::PipeClosed`]); when several are, the first.
pub fn root_cause(errors: Vec<Option<anyhow::Error>>) -> anyhow::Error {
    let mut errors: Vec<anyhow::Error> = errors.into_iter().flatten().collect();
    let root = errors
        .iter()
        .position(|e| !pipe::is_knock_on(e))
        .unwrap_or(0);
    errors.swap_remove(root)
}

/// Sets its flag when dropped.
#[derive(Default)]
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What the stages before the store produced.
struct Staged {
    plaintext: Digest,
    compressed: compress::Compressed,
    ciphertext: Digest,
    properties: Option<DatabaseProperties>,
}

fn compress_stage(
    source: &Spec,
    out: PipeWriter,
    recipients: &[Recipient],
    compression: Compression,
    progress: Arc<AtomicU64>,
    cancel: Arc<AtomicBool>,
) -> anyhow::Result<Staged> {
    let dump = source::open(source).context("the source failed to start")?;
    let mut input = HashingReader::new(Tracked {
        inner: dump,
        counter: progress,
        cancel,
    });
    let plaintext = input.digest();
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| &r.key as &dyn age::Recipient))
            .map_err(|e| anyhow!("cannot set up age encryption: {e}"))?;
    let encrypted = encryptor.wrap_output(HashingWriter::new(out))?;
    let settings = compress::Settings {
        level: compression.level,
        adapt: compression.adapt,
        threads: compression.workers(),
    };
    let (encrypted, compressed) =
        compress::compress(&mut input, encrypted, settings).map_err(|e| match e {
            compress::Failure::Read(error) => {
                anyhow::Error::new(error).context("the source failed while reading")
            }
            compress::Failure::Compress(error) => error,
            compress::Failure::Write(error) => {
                anyhow::Error::new(error).context("cannot encrypt and store the backup")
            }
        })?;
    // End of file is not success: the source must say it completed before the stream
    // to the store may end.
    let dump = input.into_inner().inner;
    let properties = dump.properties();
    dump.finish().context("the source failed")?;
    let (out, ciphertext) = encrypted
        .finish()
        .context("age could not finish")?
        .into_parts();
    out.finish()?;
    tracing::debug!(
        frames = compressed.frames,
        levels = ?compressed.levels,
        "compressed {} bytes into {}",
        plaintext.finish().size,
        compressed.size
    );
    Ok(Staged {
        plaintext: plaintext.finish(),
        compressed,
        ciphertext,
        properties,
    })
}

/// Decrypts and decompresses a data object into `sink`, checking both hashes against
/// `expected`. Errors in the data are [`Error::Integrity`]; a key that does not fit is
/// [`Error::Config`]; failures to read `object` or of `sink` are plain I/O errors. On
/// error, whatever reached `sink` must be thrown away.
pub fn restore(
    object: impl Read + Send,
    identities: &Identities,
    expected: &Expected,
    sink: &mut dyn Write,
) -> anyhow::Result<()> {
    let key = &expected.key;
    // The stored object is read and its ciphertext hashed on a thread of its own, a
    // pipe ahead of decryption: the splitting thread that decrypts would otherwise hash
    // too, and on incompressible data it is the restore's bottleneck.
    let (ahead, mut cipher) = pipe::pipe(AHEAD_CHUNK, pipe::DEPTH);
    let (restored, fetched) = std::thread::scope(|scope| {
        let fetch = scope.spawn(move || read_ahead(object, ahead));
        let restored = decrypt_and_decompress(&mut cipher, identities, expected, sink);
        if restored.is_ok() {
            // Whatever follows the end of the age stream is read too (and hashed, so
            // the ciphertext check fails on it); on an error the pipe is dropped, and
            // the reading thread stops at once.
            let _ = io::copy(&mut cipher, &mut io::sink());
        }
        drop(cipher);
        (
            restored,
            fetch.join().expect("the reading thread does not panic"),
        )
    });
    let (ciphertext, plaintext) = match (restored, fetched) {
        // The object could not be read: that is the failure, not what it did to
        // decryption.
        (_, Err(ReadAhead::Object(error))) => {
            return Err(anyhow::Error::new(error).context(format!("cannot read {key}")));
        }
        (Err(e), _) => return Err(e),
        (Ok(_), Err(ReadAhead::Closed)) => {
            return Err(anyhow!("{key}: the restore stopped reading before the end"));
        }
        (Ok(plaintext), Ok(ciphertext)) => (ciphertext, plaintext),
    };
    check(key, "ciphertext", &ciphertext, &expected.ciphertext)?;
    check(key, "plaintext", &plaintext, &expected.plaintext)
}

/// The pieces a restore's reading thread hands on: small enough that the few in flight
/// cost little memory (verify runs several restores at once), large enough for blake3's
/// SIMD paths and few hand-offs.
const AHEAD_CHUNK: usize = 512 << 10;

/// Why the reading thread of a restore stopped early.
enum ReadAhead {
    /// Reading the stored object failed.
    Object(io::Error),
    /// Decryption stopped taking the data: it failed.
    Closed,
}

/// Reads `object` to its end into `ahead`, hashing it: the ciphertext's digest.
fn read_ahead(mut object: impl Read, mut ahead: PipeWriter) -> Result<Digest, ReadAhead> {
    let mut digest = Digester::default();
    loop {
        let mut chunk = BytesMut::zeroed(AHEAD_CHUNK);
        let n = frames::fill(&mut object, &mut chunk).map_err(ReadAhead::Object)?;
        if n == 0 {
            break;
        }
        chunk.truncate(n);
        digest.update(&chunk);
        ahead
            .write_chunk(chunk.freeze())
            .map_err(|_| ReadAhead::Closed)?;
    }
    ahead.finish().map_err(|_| ReadAhead::Closed)?;
    Ok(digest.finish())
}

/// Decrypts and decompresses `cipher` into `sink`: the plaintext's digest. Returns
/// (dropping `cipher`, so that the reading thread stops) on the first error.
fn decrypt_and_decompress(
    cipher: impl BufRead + Send,
    identities: &Identities,
    expected: &Expected,
    sink: &mut dyn Write,
) -> anyhow::Result<Digest> {
    let key = &expected.key;
    let decryptor = age::Decryptor::new_buffered(cipher)
        .map_err(|e| Error::integrity(format!("{key} is not a readable age file: {e}")))?;
    let plain = decryptor
        .decrypt(identities.as_dyn())
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => Error::config(format!(
                "none of the keys in {} can decrypt {key}: it is encrypted to {} \
             (use the restorer's identity file for one of these recipients)",
                identities.path,
                expected.recipients.join(", ")
            )),
            other => Error::integrity(format!("cannot decrypt {key}: {other}")),
        })?;
    let mut plaintext = Digester::default();
    decompress::decompress(plain, cores(), |data| {
        plaintext.update(data);
        sink.write_all(data)
    })
    .map_err(|e| match e {
        decompress::Failure::Data { after, error } => Error::integrity(format!(
            "{key}: decryption or decompression failed after {after} bytes: {error}"
        ))
        .into(),
        decompress::Failure::Sink(error) => {
            anyhow::Error::new(error).context("cannot write the restored data")
        }
    })?;
    Ok(plaintext.finish())
}

/// Hashes a data object as stored (no key needed) and compares it with its manifest.
pub fn verify_ciphertext(object: impl Read, expected: &Expected) -> anyhow::Result<()> {
    let mut reader = HashingReader::new(object);
    let digest = reader.digest();
    if let Err(CopyError::Read { error, .. } | CopyError::Write(error)) =
        copy_large(&mut reader, &mut io::sink())
    {
        return Err(anyhow::Error::new(error).context(format!("cannot read {}", expected.key)));
    }
    check(
        &expected.key,
        "ciphertext",
        &digest.finish(),
        &expected.ciphertext,
    )
}

fn check(key: &str, what: &str, got: &Digest, want: &Digest) -> anyhow::Result<()> {
    if got.size != want.size {
        return Err(Error::integrity(format!(
            "{key}: {what} is {} bytes, the manifest says {}",
            got.size, want.size
        ))
        .into());
    }
    if got.blake3 != want.blake3 {
        return Err(Error::integrity(format!(
            "{key}: {what} blake3 is {}, the manifest says {}",
            got.blake3, want.blake3
        ))
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
