//! Sources: where a dump comes from, and for the database engines, how it goes back.
//!
//! A source yields a byte stream ([`std::io::Read`]) plus [`DumpStream::finish`], which
//! says whether the dump really succeeded — a child's exit status, a producer thread's
//! result. End of file alone never means success: the pipeline calls `finish` before it
//! lets the data object complete.
//!
//! Owns [`Spec`], what a job backs up (the config deserialises into it); imports
//! `pipe`, `names` and `error`, never `config`, `store` or `pipeline`.

pub mod child;
pub mod command;
mod engines;
mod file;
mod files;
pub mod mysql;
pub mod postgres;
mod properties;
mod redis;
mod scratch;
mod shape;
mod spec;
mod sqlite;

pub use engines::{
    MysqlSource, PasswordFrom, PgPart, PostgresSource, RedisSource, check_no_password_in_url,
    redact_url, url_without_database,
};
pub use files::{UnpackOptions, Unpacked, unpack as unpack_tar};
pub use properties::{DatabaseProperties, LocaleProvider, MysqlProperties, PgProperties};
pub use scratch::Scratch;
pub use spec::Spec;

use std::io::Read;
use std::thread::JoinHandle;

use anyhow::anyhow;

use crate::pipe::PipeReader;

/// A dump in progress.
pub trait DumpStream: Read + Send {
    /// Called after end of file: fails if the dump did not complete.
    fn finish(self: Box<Self>) -> anyhow::Result<()>;

    /// What the source read from its server about the dumped database, for the
    /// manifest (`restore --create` makes the database alike).
    fn properties(&self) -> Option<DatabaseProperties> {
        None
    }
}

/// A dump with the properties of its database, read before the dump started.
struct Described {
    dump: Box<dyn DumpStream>,
    properties: Option<DatabaseProperties>,
}

impl Read for Described {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.dump.read(buf)
    }
}

impl DumpStream for Described {
    fn finish(self: Box<Self>) -> anyhow::Result<()> {
        self.dump.finish()
    }

    fn properties(&self) -> Option<DatabaseProperties> {
        self.properties.clone()
    }
}

/// Starts a dump for `config`.
pub fn open(config: &Spec) -> anyhow::Result<Box<dyn DumpStream>> {
    match config {
        Spec::Sqlite { path } => sqlite::open(path),
        Spec::Files { path } => files::open(path),
        Spec::File { path, .. } => file::open(path),
        Spec::Command {
            command,
            env,
            fail_on_stderr,
            ..
        } => command::open(command, env, *fail_on_stderr),
        Spec::Postgres(pg) => postgres::open(pg),
        Spec::Mysql(m) => mysql::open(m),
        Spec::Redis(r) => redis::open(r),
    }
}

/// A dump produced by a thread of ours into a pipe (tar writer, SQLite page reader).
struct ThreadStream {
    reader: PipeReader,
    producer: Option<JoinHandle<anyhow::Result<()>>>,
}

impl ThreadStream {
    fn spawn(
        name: &str,
        produce: impl FnOnce(crate::pipe::PipeWriter) -> anyhow::Result<()> + Send + 'static,
    ) -> anyhow::Result<ThreadStream> {
        let (writer, reader) = crate::pipe::pipe(crate::pipe::CHUNK, crate::pipe::DEPTH);
        let producer = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || produce(writer))?;
        Ok(ThreadStream {
            reader,
            producer: Some(producer),
        })
    }
}

impl Read for ThreadStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.reader.read(buf) {
            Ok(n) => Ok(n),
            Err(e) => {
                // The producer stopped early: its own error says why, not the pipe's.
                if let Some(Ok(Err(cause))) = self.producer.take().map(JoinHandle::join) {
                    return Err(std::io::Error::other(format!("{cause:#}")));
                }
                Err(e)
            }
        }
    }
}

impl DumpStream for ThreadStream {
    fn finish(mut self: Box<Self>) -> anyhow::Result<()> {
        match self.producer.take() {
            Some(handle) => handle
                .join()
                .map_err(|_| anyhow!("the dump thread panicked"))?,
            None => Err(anyhow!("the dump thread failed")),
        }
    }
}
