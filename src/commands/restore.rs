//! `vault restore JOB [--id ID | --latest | --before TIME] (--to TARGET | --output FILE | -)`.
//!
//! Runs under the restorer identity with the age private key. The data object is read
//! by (key, version id) from its manifest, decrypted and decompressed in one stream,
//! and both hashes are checked before the result is put in place:
//! - `--output FILE`: written to a private temporary file beside FILE and renamed onto
//!   FILE only after every check passed — a failed restore never leaves a FILE; an
//!   existing FILE must be a regular file (a rename would replace anything else);
//! - `--to DIR` (files jobs): unpacked into a private temporary sibling directory,
//!   renamed to DIR at the end; the archive is untrusted (see [`source::unpack_tar`]);
//! - `--to` a database or a restore command: see [`server`];
//! - `-`: streamed to stdout; on failure the exit code says the output is not to be
//!   trusted (a pipe cannot be taken back).

pub(super) mod server;

use std::fs;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context as _, bail};
use tokio_util::io::SyncIoBridge;

use super::{Context, restorer_identities, warn_about};
use crate::catalog::{self, Selection};
use crate::cli::RestoreArgs;
use crate::crypto::Identities;
use crate::error::Error;
use crate::manifest::Manifest;
use crate::pipe;
use crate::pipeline;
use crate::progress::{Progress, Tracked};
use crate::report::human_bytes;
use crate::signal::interrupted;
use crate::source::{self, UnpackOptions, Unpacked};
use crate::store::Role;

enum Destination {
    File(FileTarget),
    Dir(PathBuf),
    Stdout,
    Into(Box<server::Plan>),
}

/// A file to restore into, and the flag that named it (for messages).
pub(super) struct FileTarget {
    pub path: PathBuf,
    pub force: bool,
    pub flag: &'static str,
}

pub async fn run(ctx: &Context, args: &RestoreArgs) -> anyhow::Result<()> {
    let settings = &ctx.settings;
    crate::names::validate_job_arg(&args.job).map_err(Error::config)?;
    let early = match &args.output {
        Some(path) if path.as_os_str() == "-" => Some(Destination::Stdout),
        Some(path) => Some(Destination::File(FileTarget {
            path: path.clone(),
            force: args.force,
            flag: "--output",
        })),
        // What --to means depends on the backup's kind: resolved below.
        None if args.to.is_some() => None,
        None => Some(Destination::Stdout),
    };
    if let Some(d) = &early {
        check_destination(d, &args.job)?;
        if args.keep_special_bits {
            return Err(keep_special_bits_refused("--output or stdout").into());
        }
        if args.create || args.clean || args.jobs.is_some() || !args.restore_arg.is_empty() {
            return Err(Error::config(
                "--create, --clean, --jobs and --restore-arg apply to restores into a \
                 database (--to URL)",
            )
            .into());
        }
    }
    // Load the key first: a wrong or missing key fails before any download.
    let identities = restorer_identities(args.identity.as_deref(), settings)?;
    let selection = match (&args.id, &args.before) {
        (Some(id), _) => Selection::Id(id.clone()),
        (None, Some(t)) => Selection::Before(
            crate::units::parse_time(t).map_err(|e| Error::config(format!("--before {e}")))?,
        ),
        (None, None) => Selection::Latest,
    };

    let store = super::open_store(settings, Role::Restorer).await?;
    warn_about(store.as_ref());
    let entries = catalog::entries(store.as_ref(), &settings.layout, &args.job).await?;
    let good: Vec<&Manifest> = trusted(settings, &entries, &args.job, &selection)?
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    let manifest = catalog::select(&args.job, &good, &selection)?.clone();
    let destination = match (early, &args.to) {
        (Some(d), _) => d,
        (None, Some(to)) => {
            let d = match server::resolve(&manifest, to, args, settings)? {
                server::Resolved::File(path) => Destination::File(FileTarget {
                    path,
                    force: args.force,
                    flag: "--to",
                }),
                server::Resolved::Dir(dir) => Destination::Dir(dir),
                server::Resolved::Into(plan) => {
                    // Before any download: the target exists and is empty (or --force).
                    let plan = tokio::task::spawn_blocking(move || plan.preflight().map(|()| plan))
                        .await??;
                    Destination::Into(plan)
                }
            };
            check_destination(&d, &args.job)?;
            if args.keep_special_bits && !matches!(d, Destination::Dir(_)) {
                return Err(keep_special_bits_refused(&format!(
                    "job `{}`, which holds a {} backup",
                    args.job, manifest.source.kind
                ))
                .into());
            }
            d
        }
        (None, None) => unreachable!("a destination is always chosen"),
    };

    let started = Instant::now();
    let reader = store
        .get(&manifest.data.key, manifest.data.version_id.as_deref())
        .await
        .with_context(|| {
            format!(
                "cannot read the data object of backup {}",
                manifest.backup_id
            )
        })?;
    let progress = Progress::start(
        format!("restoring {}", manifest.job),
        Some(manifest.data.size),
    );
    let cancel = Arc::new(AtomicBool::new(false));
    let object = Tracked {
        inner: SyncIoBridge::new(reader),
        counter: progress.counter(),
        cancel: cancel.clone(),
    };
    let m = manifest.clone();
    let unpack = UnpackOptions {
        keep_special_bits: args.keep_special_bits,
    };
    let mut task = tokio::task::spawn_blocking(move || match destination {
        Destination::File(target) => to_file(object, &identities, &m, &target),
        Destination::Dir(dir) => to_dir(object, &identities, &m, &dir, unpack),
        Destination::Stdout => to_stdout(object, &identities, &m),
        Destination::Into(plan) => plan.restore(object, &identities, &m),
    });
    let where_to = tokio::select! {
        done = &mut task => done??,
        signal = interrupted() => {
            // Make the restore fail at its next read, and wait for it so that its
            // temporary file or directory is removed before we exit.
            cancel.store(true, Ordering::Relaxed);
            let _ = task.await;
            return Err(Error::Interrupted(format!(
                "{signal} received: the restore was abandoned and nothing was put in place"
            ))
            .into());
        }
    };
    drop(progress);
    if manifest.source.kind == "redis" && where_to != "stdout" {
        eprintln!(
            "hint: load it into a stopped redis-server as its dbfilename in its dir (with \
             appendonly no), then start it: see docs/engines.md"
        );
    }

    let line = format!(
        "restored {} backup {} ({}) to {where_to}: ciphertext and plaintext blake3 verified, {:.1}s",
        manifest.job,
        manifest.backup_id,
        human_bytes(manifest.plaintext.size),
        started.elapsed().as_secs_f64()
    );
    if ctx.json && where_to != "stdout" {
        crate::report::print_json(&serde_json::json!({
            "restored": manifest, "to": where_to,
        }));
    } else if where_to == "stdout" {
        // When the data went to stdout, the summary must not.
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    Ok(())
}

/// The backups of `job` that can be trusted, oldest first, with their entries: with
/// signing on, a manifest that is not validly signed is not a backup (a warning names
/// each one skipped, and an `--id` naming one is an integrity error).
pub(super) fn trusted<'e>(
    settings: &crate::config::Settings,
    entries: &'e [catalog::Entry],
    job: &str,
    selection: &Selection,
) -> Result<Vec<(&'e catalog::Entry, &'e Manifest)>, Error> {
    for bad in entries.iter().filter_map(|e| e.manifest.as_ref().err()) {
        eprintln!("warning: skipping a broken manifest: {bad}");
    }
    let mut good = Vec::new();
    for (entry, m) in entries
        .iter()
        .filter_map(|e| e.manifest.as_ref().ok().map(|m| (e, m)))
    {
        let key = &entry.key;
        match settings.signing.distrust(m, entry.stored_at) {
            Some(why) => {
                if *selection == Selection::Id(m.backup_id.clone()) {
                    return Err(Error::integrity(format!(
                        "backup {} of job `{job}` cannot be trusted: manifest {key}: {why}",
                        m.backup_id
                    )));
                }
                eprintln!(
                    "warning: skipping backup {}: manifest {key}: {why}",
                    m.backup_id
                );
            }
            _ => good.push((entry, m)),
        }
    }
    Ok(good)
}

fn keep_special_bits_refused(not_to: &str) -> Error {
    Error::config(format!(
        "--keep-special-bits applies to restoring a files backup with --to DIR, not to {not_to}"
    ))
}

fn check_destination(destination: &Destination, job: &str) -> anyhow::Result<()> {
    match destination {
        Destination::File(target) => check_file(target, job)?,
        Destination::Dir(dir) => {
            if dir.exists() {
                let empty = fs::read_dir(dir)
                    .with_context(|| format!("--to {}", dir.display()))?
                    .next()
                    .is_none();
                if !empty {
                    bail!(Error::config(format!(
                        "--to {} is not empty; restore into a new or empty directory",
                        dir.display()
                    )));
                }
            }
        }
        Destination::Into(_) => {}
        Destination::Stdout => {
            if io::stdout().is_terminal() {
                bail!(Error::config(
                    "refusing to write a binary dump to a terminal: pipe it, or use --output FILE"
                ));
            }
        }
    }
    Ok(())
}

/// Refuses an existing FILE that is not a regular file, and (without `--force`) one
/// that is. FILE is put in place by renaming a new file onto it, which replaces
/// whatever is there: for a device, a FIFO or a socket that would swap the node itself
/// for a regular file (`--output /dev/null --force` as root would replace /dev/null).
/// A symlink is refused even when it points to a regular file: the rename would replace
/// the link and leave its target untouched, and following it instead would write
/// wherever the link's owner points it, decided after this check.
fn check_file(target: &FileTarget, job: &str) -> anyhow::Result<()> {
    let FileTarget { path, force, flag } = target;
    let shown = path.display();
    let kind = match fs::symlink_metadata(path) {
        Ok(md) => md.file_type(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => bail!(Error::config(format!("{flag} {shown}: {e}"))),
    };
    if kind.is_file() {
        if !force {
            bail!(Error::config(format!(
                "{flag} {shown} exists; pass --force to replace it"
            )));
        }
        return Ok(());
    }
    if kind.is_dir() {
        bail!(Error::config(format!(
            "{flag} {shown} is a directory: give the path of the file to create"
        )));
    }
    let what = if kind.is_symlink() {
        "a symlink"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    };
    let hint = if kind.is_symlink() {
        "give the path of a regular file (vault would replace the link, not what it points to)"
    } else {
        "vault only replaces regular files"
    };
    bail!(Error::config(format!(
        "{flag} {shown} is {what}: {hint}; to write the dump into a pipe, a device or \
         another program, stream it: `vault restore {job} - > {shown}`"
    )))
}

/// A temporary path that is removed unless kept.
struct Partial {
    path: PathBuf,
    keep: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path).or_else(|_| fs::remove_dir_all(&self.path));
        }
    }
}

fn partial_beside(path: &Path) -> anyhow::Result<Partial> {
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?
        .to_string_lossy();
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(Partial {
        path: parent.join(format!(
            ".{name}.vault-partial-{:08x}",
            rand::random::<u32>()
        )),
        keep: false,
    })
}

pub(super) fn to_file(
    object: impl Read + Send,
    identities: &Identities,
    manifest: &Manifest,
    target: &FileTarget,
) -> anyhow::Result<String> {
    let path = &target.path;
    let mut partial = partial_beside(path)?;
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial.path)
        .with_context(|| format!("cannot create {}", partial.path.display()))?;
    let mut out = BufWriter::with_capacity(pipe::CHUNK, file);
    pipeline::restore(object, identities, &manifest.expected(), &mut out)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    // Checked again: something may have appeared at FILE during the restore.
    if !target.force && fs::symlink_metadata(path).is_ok() {
        bail!(Error::config(format!(
            "{} appeared during the restore; pass --force to replace it",
            path.display()
        )));
    }
    check_file(target, &manifest.job)?;
    fs::rename(&partial.path, path)
        .with_context(|| format!("cannot move the restored file to {}", path.display()))?;
    partial.keep = true;
    Ok(path.display().to_string())
}

pub(super) fn to_dir(
    object: impl Read + Send + 'static,
    identities: &Identities,
    manifest: &Manifest,
    dir: &Path,
    options: UnpackOptions,
) -> anyhow::Result<String> {
    let mut partial = partial_beside(dir)?;
    // Private while it fills: nobody else may use a file before its mode is final.
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&partial.path)
        .with_context(|| format!("cannot create {}", partial.path.display()))?;
    let (mut tar_in, mut tar_out) = pipe::pipe(pipe::CHUNK, pipe::DEPTH);
    let unpack_dir = partial.path.clone();
    let unpacker = std::thread::spawn(move || -> anyhow::Result<Unpacked> {
        let report = source::unpack_tar(&mut tar_out, &unpack_dir, options)?;
        // Drain the zero padding after the end-of-archive blocks.
        io::copy(&mut tar_out, &mut io::sink())?;
        Ok(report)
    });
    let restored = pipeline::restore(object, identities, &manifest.expected(), &mut tar_in)
        .and_then(|()| tar_in.finish().map_err(Into::into));
    let unpacked = unpacker
        .join()
        .map_err(|_| anyhow::anyhow!("the unpacking thread panicked"))?;
    let report = match (restored, unpacked) {
        (Ok(()), Ok(report)) => report,
        // The side that failed on its own is the cause; the other only saw the pipe
        // between them close, and which of the two gets there first is down to timing.
        // A data error comes first, so it wins over an unpacking error it led to.
        (restored, unpacked) => {
            return Err(pipeline::root_cause(vec![restored.err(), unpacked.err()]));
        }
    };
    if dir.exists() {
        fs::remove_dir(dir)
            .with_context(|| format!("cannot replace the empty {}", dir.display()))?;
    }
    fs::rename(&partial.path, dir)
        .with_context(|| format!("cannot move the restored tree to {}", dir.display()))?;
    partial.keep = true;
    warn_about_unpacked(&report);
    Ok(dir.display().to_string())
}

/// One line per entry left out (up to the report's limit), one for all modes changed.
fn warn_about_unpacked(report: &Unpacked) {
    let skipped = &report.skipped;
    for entry in &skipped.first {
        eprintln!(
            "warning: skipped {}: {} (vault restores files, directories and links only)",
            entry.path.display(),
            entry.what
        );
    }
    if skipped.total > skipped.first.len() {
        eprintln!(
            "warning: skipped {} more device, FIFO or unknown entries",
            skipped.total - skipped.first.len()
        );
    }
    let stripped = &report.stripped;
    if stripped.total == 0 {
        return;
    }
    let mut named: Vec<String> = stripped
        .first
        .iter()
        .map(|e| format!("{} {:04o} -> {:04o}", e.path.display(), e.asked, e.given))
        .collect();
    if stripped.total > named.len() {
        named.push(format!("and {} more", stripped.total - named.len()));
    }
    let (not_restored, hint) = if report.lost_special_bits {
        (
            "world-write, setuid, setgid and sticky are",
            "; pass --keep-special-bits to keep setuid, setgid and sticky",
        )
    } else {
        ("world-write is", "")
    };
    let entries = if stripped.total == 1 {
        "entry"
    } else {
        "entries"
    };
    eprintln!(
        "warning: mode bits removed from {} {entries} ({not_restored} not restored): {}{hint}",
        stripped.total,
        named.join(", ")
    );
}

fn to_stdout(
    object: impl Read + Send,
    identities: &Identities,
    manifest: &Manifest,
) -> anyhow::Result<String> {
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(pipe::CHUNK, stdout.lock());
    pipeline::restore(object, identities, &manifest.expected(), &mut out)
        .context("the data already written to stdout is incomplete or corrupt: discard it")?;
    out.flush()?;
    Ok("stdout".into())
}
