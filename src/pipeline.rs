//! The one-pass pipelines.
//!
//! Backup: `source -> blake3(plaintext) -> zstd (multi-threaded) -> age -> blake3(ciphertext)
//! -> store.put`, in one pass, with bounded memory:
//!
//! ```text
//!  [blocking thread]            [blocking thread]           [async task]
//!  source.read                  age encrypt                 store.put(key, body)
//!  hash + count plaintext ──▶   hash + count ciphertext ──▶ (local file / S3 upload)
//!  zstd workers (N threads)     pipe (DEPTH x CHUNK)
//!          pipe (DEPTH x CHUNK)
//! ```
//!
//! Every stage finishes its layer explicitly (an unfinished zstd or age writer
//! truncates), and the source's `finish` (exit status) is checked *before* the stream
//! to the store is ended: a failing source cuts the stream short and the store never
//! completes the object. Only a fully successful pipeline returns [`Written`], and only
//! with a `Written` can a manifest be made.
//!
//! Restore: `store.get -> blake3(ciphertext) -> age decrypt -> zstd -> blake3(plaintext)
//! -> sink`, both hashes checked against the manifest at the end.

use std::io::{self, BufReader, Read, Write};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::{Context, anyhow};

use crate::config::{Compression, SourceConfig};
use crate::crypto::{Identities, Recipient};
use crate::digest::{CopyError, CountingWriter, Digest, HashingReader, HashingWriter, copy_large};
use crate::error::Error;
use crate::manifest::Manifest;
use crate::pipe::{self, PipeReader, PipeWriter};
use crate::progress::Tracked;
use crate::source;
use crate::store::{PutOptions, Store};

/// What a completed backup stream produced: everything its manifest needs.
#[derive(Debug, Clone)]
pub struct Written {
    pub plaintext: Digest,
    pub compressed_size: u64,
    pub ciphertext: Digest,
    pub version_id: Option<String>,
}

/// Streams one dump from `source` into `store` under `key`.
pub async fn backup(
    store: &dyn Store,
    key: &str,
    opts: &PutOptions,
    source: SourceConfig,
    recipients: Vec<Recipient>,
    compression: Compression,
    progress: Arc<AtomicU64>,
) -> anyhow::Result<Written> {
    if recipients.is_empty() {
        // Checked by the command too; this is the last line of defence: no plaintext
        // ever reaches a store.
        return Err(Error::config("no encryption recipients: refusing to write").into());
    }
    let (compressed_tx, compressed_rx) = pipe::pipe(pipe::CHUNK, pipe::DEPTH);
    let (cipher_tx, cipher_rx) = pipe::pipe(pipe::CHUNK, pipe::DEPTH);

    let compress = tokio::task::spawn_blocking(move || {
        compress_stage(&source, compressed_tx, compression, progress)
    });
    let encrypt =
        tokio::task::spawn_blocking(move || encrypt_stage(compressed_rx, cipher_tx, &recipients));
    let upload = store.put(key, cipher_rx, opts);

    let (compressed, encrypted, uploaded) = tokio::join!(compress, encrypt, upload);
    let compressed = compressed
        .map_err(|e| anyhow!("the compression stage panicked: {e}"))
        .and_then(|r| r);
    let encrypted = encrypted
        .map_err(|e| anyhow!("the encryption stage panicked: {e}"))
        .and_then(|r| r);
    let uploaded = uploaded.map_err(anyhow::Error::from);

    match (compressed, encrypted, uploaded) {
        (Ok((plaintext, compressed_size)), Ok(ciphertext), Ok(receipt)) => {
            if receipt.size != ciphertext.size {
                return Err(Error::integrity(format!(
                    "{key}: the store took {} bytes of {}",
                    receipt.size, ciphertext.size
                ))
                .into());
            }
            Ok(Written {
                plaintext,
                compressed_size,
                ciphertext,
                version_id: receipt.version_id,
            })
        }
        (c, e, u) => Err(root_cause(vec![c.err(), e.err(), u.err()])),
    }
}

/// Of several stage failures, the one that is not merely a consequence of another.
fn root_cause(errors: Vec<Option<anyhow::Error>>) -> anyhow::Error {
    let mut errors: Vec<anyhow::Error> = errors.into_iter().flatten().collect();
    let root = errors
        .iter()
        .position(|e| !pipe::is_knock_on(e))
        .unwrap_or(0);
    errors.swap_remove(root)
}

fn compress_stage(
    source: &SourceConfig,
    out: PipeWriter,
    compression: Compression,
    progress: Arc<AtomicU64>,
) -> anyhow::Result<(Digest, u64)> {
    let dump = source::open(source).context("the source failed to start")?;
    let mut input = HashingReader::new(Tracked {
        inner: dump,
        counter: progress,
        cancel: Arc::default(),
    });
    let plaintext = input.digest();
    let mut encoder = zstd::stream::write::Encoder::new(
        CountingWriter {
            inner: out,
            count: 0,
        },
        compression.level,
    )?;
    let threads = match compression.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        n => n,
    };
    encoder.multithread(threads)?;
    encoder.include_checksum(true)?;

    copy_large(&mut input, &mut encoder).map_err(|e| match e {
        CopyError::Read { error, .. } => {
            anyhow::Error::new(error).context("the source failed while reading")
        }
        CopyError::Write(error) => anyhow::Error::new(error).context("zstd failed"),
    })?;
    // End of file is not success: the source must say it completed before the stream
    // to the store may end.
    input
        .into_inner()
        .inner
        .finish()
        .context("the source failed")?;
    let counted = encoder.finish().context("zstd could not finish")?;
    let compressed = counted.count;
    counted.inner.finish()?;
    Ok((plaintext.finish(), compressed))
}

fn encrypt_stage(
    mut input: PipeReader,
    out: PipeWriter,
    recipients: &[Recipient],
) -> anyhow::Result<Digest> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| &r.key as &dyn age::Recipient))
            .map_err(|e| anyhow!("cannot set up age encryption: {e}"))?;
    let mut writer = encryptor.wrap_output(HashingWriter::new(out))?;
    input.copy_into(&mut writer)?;
    let (out, ciphertext) = writer
        .finish()
        .context("age could not finish")?
        .into_parts();
    out.finish()?;
    Ok(ciphertext)
}

/// Decrypts and decompresses a data object into `sink`, checking both hashes against
/// `manifest`. Errors in the data are [`Error::Integrity`]; a key that does not fit is
/// [`Error::Config`]; failures of `sink` are plain I/O errors. On error, whatever
/// reached `sink` must be thrown away.
pub fn restore(
    object: impl Read,
    identities: &Identities,
    manifest: &Manifest,
    sink: &mut dyn Write,
) -> anyhow::Result<()> {
    let key = &manifest.data.key;
    let cipher = HashingReader::new(object);
    let ciphertext = cipher.digest();
    let decryptor = age::Decryptor::new_buffered(BufReader::with_capacity(pipe::CHUNK, cipher))
        .map_err(|e| Error::integrity(format!("{key} is not a readable age file: {e}")))?;
    let plain = decryptor
        .decrypt(identities.as_dyn())
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => Error::config(format!(
                "none of the keys in {} can decrypt {key}: it is encrypted to {} \
             (use the restorer's identity file for one of these recipients)",
                identities.path,
                manifest.encryption.recipients.join(", ")
            )),
            other => Error::integrity(format!("cannot decrypt {key}: {other}")),
        })?;
    let decoder = zstd::stream::read::Decoder::new(plain)
        .map_err(|e| Error::integrity(format!("cannot decompress {key}: {e}")))?;
    let mut plaintext = HashingReader::new(decoder);
    let plain_digest = plaintext.digest();

    copy_large(&mut plaintext, sink).map_err(|e| match e {
        CopyError::Read { after, error } => Error::integrity(format!(
            "{key}: decryption or decompression failed after {after} bytes: {error}"
        ))
        .into(),
        CopyError::Write(error) => {
            anyhow::Error::new(error).context("cannot write the restored data")
        }
    })?;
    check(
        key,
        "ciphertext",
        &ciphertext.finish(),
        &Digest {
            size: manifest.data.size,
            blake3: manifest.data.blake3.clone(),
        },
    )?;
    check(
        key,
        "plaintext",
        &plain_digest.finish(),
        &manifest.plaintext,
    )?;
    Ok(())
}

/// Hashes a data object as stored (no key needed) and compares it with its manifest.
pub fn verify_ciphertext(object: impl Read, manifest: &Manifest) -> anyhow::Result<()> {
    let mut reader = HashingReader::new(object);
    let digest = reader.digest();
    if let Err(CopyError::Read { error, .. } | CopyError::Write(error)) =
        copy_large(&mut reader, &mut io::sink())
    {
        return Err(anyhow::Error::new(error).context(format!("cannot read {}", manifest.data.key)));
    }
    check(
        &manifest.data.key,
        "ciphertext",
        &digest.finish(),
        &Digest {
            size: manifest.data.size,
            blake3: manifest.data.blake3.clone(),
        },
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
