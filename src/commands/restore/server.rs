//! `vault restore JOB --to TARGET`: what TARGET means for the backup's kind, the
//! checks made before anything is touched, and the stream into the restore tool.
//!
//! - files: TARGET is a directory; sqlite: a file; redis: a file, or a directory that
//!   gets `dump.rdb` (then loaded by the procedure in docs/engines.md);
//! - postgres: `postgresql://USER@HOST:PORT/DB` → `pg_restore`; mysql:
//!   `mysql://USER@HOST:PORT[/DB]` → the `mariadb` client; command jobs: the job's
//!   `restore_command`, with `{to}` replaced by TARGET.
//!
//! A database that already holds tables is refused unless `--force`, before anything
//! is downloaded. The restore tool never sees the last [`HOLD_BACK`] bytes of the dump
//! until both hashes have been checked, so a dump that fails its checks cannot reach
//! its end in the tool: `pg_restore --single-transaction` then rolls everything back.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::Context as _;

use crate::cli::RestoreArgs;
use crate::config::Settings;
use crate::crypto::Identities;
use crate::error::Error;
use crate::manifest::Manifest;
use crate::pipeline;
use crate::source::Spec;
use crate::source::child::ChildSink;
use crate::source::{
    DatabaseProperties, MysqlProperties, PgProperties, Scratch, command, mysql, postgres,
};

/// Bytes of plaintext withheld from a restore tool until the hashes are checked.
pub const HOLD_BACK: usize = 1 << 20;

/// A restore into a server or through a restore command.
pub enum Plan {
    Postgres {
        // Boxed: the connection settings make this variant several times the others.
        target: Box<postgres::restore::Target>,
        clean: bool,
        jobs: Option<u32>,
        extra: Vec<String>,
        force: bool,
        create: bool,
        /// What `--create` makes the database like; None for an older backup.
        properties: Option<PgProperties>,
    },
    Mysql {
        target: mysql::restore::Target,
        databases: Vec<String>,
        extra: Vec<String>,
        force: bool,
        create: bool,
        /// What `--create` makes the database like; None for an older backup, and
        /// for dumps that create their databases themselves.
        properties: Option<MysqlProperties>,
    },
    Command {
        argv: Vec<String>,
        env: std::collections::BTreeMap<String, String>,
        to: String,
    },
}

/// What `--to TARGET` is for this backup.
pub enum Resolved {
    File(PathBuf),
    Dir(PathBuf),
    Into(Box<Plan>),
}

pub fn resolve(
    manifest: &Manifest,
    to: &str,
    args: &RestoreArgs,
    settings: &Settings,
) -> Result<Resolved, Error> {
    let kind = manifest.source.kind.as_str();
    let only_for = |flag: &str, engines: &str| {
        Error::config(format!(
            "{flag} applies to {engines} restores; job `{}` holds a {kind} dump",
            manifest.job
        ))
    };
    if args.clean && kind != "postgres" {
        return Err(only_for("--clean", "PostgreSQL"));
    }
    if args.jobs.is_some() && kind != "postgres" {
        return Err(only_for("--jobs", "PostgreSQL"));
    }
    if args.create && kind != "postgres" && kind != "mysql" {
        return Err(only_for("--create", "PostgreSQL and MySQL"));
    }
    if !args.restore_arg.is_empty() && kind != "postgres" && kind != "mysql" {
        return Err(only_for("--restore-arg", "PostgreSQL and MySQL"));
    }
    match kind {
        "files" => Ok(Resolved::Dir(PathBuf::from(to))),
        "sqlite" | "file" => Ok(Resolved::File(PathBuf::from(to))),
        "redis" => {
            let path = PathBuf::from(to);
            Ok(Resolved::File(if path.is_dir() {
                path.join("dump.rdb")
            } else {
                path
            }))
        }
        "postgres" if manifest.source.extension == "sql" => Err(Error::config(format!(
            "job `{}` holds the cluster globals (roles, tablespaces) as SQL: restore them \
             with --output FILE, review it, and apply it with `psql -f FILE` (existing roles \
             make a blind replay fail)",
            manifest.job
        ))),
        "postgres" => Ok(Resolved::Into(Box::new(Plan::Postgres {
            target: Box::new(postgres::restore::parse(to)?),
            clean: args.clean,
            jobs: args.jobs,
            extra: args.restore_arg.clone(),
            force: args.force,
            create: args.create,
            properties: match &manifest.source.database_properties {
                None => None,
                Some(DatabaseProperties::Postgres(p)) => Some(p.clone()),
                Some(_) => return Err(mismatched_properties(manifest)),
            },
        }))),
        "mysql" => {
            let password = std::env::var("MYSQL_PWD").ok().filter(|p| !p.is_empty());
            let target = mysql::restore::parse(to, password)?;
            let databases = manifest.source.databases.clone();
            match (&target.database, databases.len()) {
                (Some(_), n) if n != 1 => {
                    return Err(Error::config(format!(
                        "backup {} of job `{}` holds {}: it recreates its databases itself, \
                         so restore into the server: --to mysql://USER@HOST:PORT (no /DB)",
                        manifest.backup_id,
                        manifest.job,
                        if n == 0 {
                            "every database".to_string()
                        } else {
                            format!("databases {}", databases.join(", "))
                        }
                    )));
                }
                (None, 1) => {
                    return Err(Error::config(format!(
                        "--to {to} names no database: add /DBNAME (backup {} holds database {})",
                        manifest.backup_id, databases[0]
                    )));
                }
                _ => {}
            }
            Ok(Resolved::Into(Box::new(Plan::Mysql {
                databases: match &target.database {
                    Some(db) => vec![db.clone()],
                    None => databases,
                },
                target,
                extra: args.restore_arg.clone(),
                force: args.force,
                create: args.create,
                properties: match &manifest.source.database_properties {
                    None => None,
                    Some(DatabaseProperties::Mysql(p)) => Some(p.clone()),
                    Some(_) => return Err(mismatched_properties(manifest)),
                },
            })))
        }
        "command" => {
            let job = settings.job(&manifest.job).ok();
            match job.map(|j| &j.source) {
                Some(Spec::Command {
                    restore_command: Some(argv),
                    env,
                    ..
                }) => Ok(Resolved::Into(Box::new(Plan::Command {
                    argv: argv.clone(),
                    env: env.clone(),
                    to: to.to_string(),
                }))),
                _ => Err(Error::config(format!(
                    "job `{}` has no source.restore_command in {}: set one, or restore \
                     with --output FILE (or -) and load the dump by hand",
                    manifest.job,
                    settings.path.display()
                ))),
            }
        }
        other => Err(Error::config(format!(
            "--to is not supported for {other} backups: use --output FILE or -"
        ))),
    }
}

/// A manifest whose recorded database properties are another engine's.
fn mismatched_properties(manifest: &Manifest) -> Error {
    Error::integrity(format!(
        "backup {} of job `{}`: the manifest's source.database_properties are not those \
         of a {} database",
        manifest.backup_id, manifest.job, manifest.source.kind
    ))
}

/// Said when `--create` has no recorded properties to make the database alike.
fn warn_server_defaults(shown: &str, what: &str) {
    eprintln!(
        "warning: this backup records no {what} of its database (it was written by an \
         older vault): {shown} is created with the server's defaults"
    );
}

impl Plan {
    /// Where the restore goes, for messages.
    pub fn shown(&self) -> String {
        match self {
            Plan::Postgres { target, .. } => target.shown.clone(),
            Plan::Mysql { target, .. } => target.shown.clone(),
            Plan::Command { argv, to, .. } => format!("`{}` ({to})", argv[0]),
        }
    }

    /// Checks made before anything is downloaded or changed: the target exists (or is
    /// created with --create) and holds nothing, unless --force.
    pub fn preflight(&self) -> anyhow::Result<()> {
        let refuse = |shown: &str, n: u64, what: &str, hint: &str| {
            Error::config(format!(
                "{shown} already has {n} {what}: restoring into it would mix old and new \
                 data, so nothing was changed. Restore into a new database (--create), or \
                 pass --force{hint}"
            ))
        };
        match self {
            Plan::Postgres {
                target,
                force,
                create,
                properties,
                ..
            } => match postgres::restore::relations(target)? {
                None if *create => {
                    if properties.is_none() {
                        warn_server_defaults(&target.shown, "encoding and locale");
                    }
                    postgres::restore::create(target, properties.as_ref())
                }
                None => Err(Error::config(format!(
                    "{} does not exist: create it, or pass --create",
                    target.shown
                ))
                .into()),
                Some(n) if n > 0 && !force => Err(refuse(
                    &target.shown,
                    n,
                    "tables, views or sequences",
                    " (with --clean to drop the objects in the dump first)",
                )
                .into()),
                Some(_) => Ok(()),
            },
            Plan::Mysql {
                target,
                databases,
                force,
                create,
                properties,
                ..
            } => {
                if databases.is_empty() {
                    // An all-databases dump: every database on the server is at stake.
                    if !force {
                        return Err(Error::config(format!(
                            "this backup holds every database of its server; restoring it \
                             into {} overwrites whatever databases it shares with it: pass \
                             --force to go on",
                            target.shown
                        ))
                        .into());
                    }
                    return Ok(());
                }
                match mysql::restore::objects(target, databases)? {
                    None if target.database.is_none() || *create => {
                        if let Some(db) = &target.database {
                            if properties.is_none() {
                                warn_server_defaults(&target.shown, "character set and collation");
                            }
                            mysql::restore::create(target, db, properties.as_ref())?;
                        }
                        Ok(())
                    }
                    None => Err(Error::config(format!(
                        "{} does not exist: create it, or pass --create",
                        target.shown
                    ))
                    .into()),
                    Some(n) if n > 0 && !force => {
                        Err(refuse(&target.shown, n, "tables, views or routines", "").into())
                    }
                    Some(_) => Ok(()),
                }
            }
            Plan::Command { .. } => Ok(()),
        }
    }

    /// Streams the backup into the tool; returns where it went.
    pub fn restore(
        self,
        object: impl Read + Send,
        identities: &Identities,
        manifest: &Manifest,
    ) -> anyhow::Result<String> {
        let shown = self.shown();
        match self {
            Plan::Postgres {
                target,
                clean,
                jobs: Some(jobs),
                extra,
                ..
            } => {
                // pg_restore --jobs seeks in its input: a verified private file first.
                let scratch = Scratch::new("pg-restore")?;
                let (path, file) = scratch.create("dump.pgdump")?;
                let mut out = io::BufWriter::with_capacity(crate::pipe::CHUNK, file);
                pipeline::restore(object, identities, &manifest.expected(), &mut out)?;
                out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                let tool = postgres::restore::spawn(&target, clean, Some((&path, jobs)), &extra)?;
                tool.finish().context("pg_restore failed")?;
            }
            Plan::Postgres {
                target,
                clean,
                extra,
                ..
            } => {
                let tool = postgres::restore::spawn(&target, clean, None, &extra)?;
                stream_into(tool, object, identities, manifest).context("pg_restore failed")?;
            }
            Plan::Mysql { target, extra, .. } => {
                let tool = mysql::restore::spawn(&target, &extra)?;
                stream_into(tool, object, identities, manifest)
                    .context("the mariadb client failed")?;
            }
            Plan::Command { argv, env, to } => {
                let spawn = command::restore_spawn(&argv, &env, &to);
                let tool = ChildSink::start(spawn, Stdio::inherit())?;
                stream_into(tool, object, identities, manifest)
                    .with_context(|| format!("the restore command `{}` failed", argv[0]))?;
            }
        }
        Ok(shown)
    }
}

/// Decrypts into `tool`'s stdin, withholding the end until the hashes are checked.
fn stream_into(
    tool: ChildSink,
    object: impl Read + Send,
    identities: &Identities,
    manifest: &Manifest,
) -> anyhow::Result<()> {
    let mut held = HoldBack::new(tool, HOLD_BACK);
    let restored = pipeline::restore(object, identities, &manifest.expected(), &mut held);
    let (mut tool, rest) = held.into_parts();
    let released = restored.and_then(|()| {
        tool.write_all(&rest)?;
        tool.flush()?;
        Ok(())
    });
    match released {
        Ok(()) => tool.finish(),
        Err(e) if blames_the_data(&e) => {
            tool.kill();
            Err(e)
        }
        // A failed write means the tool stopped first: its error is the cause.
        Err(e) => Err(tool.failure().unwrap_or(e)),
    }
}

/// True when the backup itself failed (hashes, decryption, decompression, the key),
/// not the writing into the tool.
fn blames_the_data(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<Error>(),
            Some(Error::Integrity(_) | Error::Config(_))
        )
    })
}

/// A writer that passes everything on except the last `keep` bytes.
struct HoldBack<W: Write> {
    inner: W,
    buf: Vec<u8>,
    keep: usize,
}

impl<W: Write> HoldBack<W> {
    fn new(inner: W, keep: usize) -> Self {
        HoldBack {
            inner,
            buf: Vec::with_capacity(2 * keep),
            keep,
        }
    }

    fn into_parts(self) -> (W, Vec<u8>) {
        (self.inner, self.buf)
    }
}

impl<W: Write> Write for HoldBack<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 2 * self.keep {
            let n = self.buf.len() - self.keep;
            self.inner.write_all(&self.buf[..n])?;
            self.buf.drain(..n);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Flushing must not release the held-back end.
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_is_held_back_until_released() {
        let input: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for chunk in [1, 7, 10, 64, 1000] {
            let mut out = Vec::new();
            let mut h = HoldBack::new(&mut out, 100);
            for piece in input.chunks(chunk) {
                h.write_all(piece).unwrap();
                h.flush().unwrap();
            }
            let (_, rest) = h.into_parts();
            assert!(rest.len() >= 100, "at least the last 100 bytes are held");
            assert_eq!(out.len() + rest.len(), input.len());
            out.extend_from_slice(&rest);
            assert_eq!(out, input, "nothing lost or reordered (chunk {chunk})");
        }
    }
}
