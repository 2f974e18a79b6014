//! What a job backs up, as the config gives it: [`Spec`], one variant per kind, and the
//! validation of each. The config deserialises `source = { kind = ... }` into it and
//! calls [`Spec::expand`]; this layer owns the type and never reads the config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::engines::{MysqlSource, PgPart, PostgresSource, RedisSource};

/// What a job backs up; `kind` selects the engine.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Spec {
    /// A consistent snapshot of a live SQLite database file.
    Sqlite { path: PathBuf },
    /// A directory tree as a tar stream.
    Files { path: PathBuf },
    /// One regular file, read as it is (a dump another tool wrote).
    File {
        path: PathBuf,
        #[serde(default)]
        extension: Option<String>,
    },
    /// Any program's standard output.
    Command {
        command: Vec<String>,
        #[serde(default)]
        extension: Option<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
        #[serde(default)]
        fail_on_stderr: bool,
        /// The program that reads the dump on stdin at `vault restore --to TARGET`;
        /// `{to}` in an argument is replaced by TARGET.
        #[serde(default)]
        restore_command: Option<Vec<String>>,
    },
    /// A PostgreSQL database (`pg_dump -Fc`), or the cluster globals.
    Postgres(PostgresSource),
    /// MySQL or MariaDB databases (`mariadb-dump --single-transaction`).
    #[serde(alias = "mariadb")]
    Mysql(MysqlSource),
    /// A Redis RDB snapshot (`redis-cli --rdb -`).
    Redis(RedisSource),
}

impl Spec {
    pub fn kind(&self) -> &'static str {
        match self {
            Spec::Sqlite { .. } => "sqlite",
            Spec::Files { .. } => "files",
            Spec::File { .. } => "file",
            Spec::Command { .. } => "command",
            Spec::Postgres(_) => "postgres",
            Spec::Mysql(_) => "mysql",
            Spec::Redis(_) => "redis",
        }
    }

    /// What the plaintext is, used in the data key: `<id>.<extension>.zst.age`.
    pub fn extension(&self) -> String {
        match self {
            Spec::Sqlite { .. } => "sqlite".into(),
            Spec::Files { .. } => "tar".into(),
            Spec::File { extension, .. } => extension.clone().unwrap_or_else(|| "bin".into()),
            Spec::Command { extension, .. } => extension.clone().unwrap_or_else(|| "bin".into()),
            Spec::Postgres(pg) if pg.part == PgPart::Globals => "sql".into(),
            Spec::Postgres(_) => "pgdump".into(),
            Spec::Mysql(_) => "sql".into(),
            Spec::Redis(_) => "rdb".into(),
        }
    }

    /// The databases a dump holds, as recorded in its manifest.
    pub fn databases(&self) -> Vec<String> {
        match self {
            Spec::Postgres(pg) => pg.database.iter().cloned().collect(),
            Spec::Mysql(m) => m.names(),
            _ => Vec::new(),
        }
    }

    /// Validates the source of job `job`, resolves its relative paths against `base`
    /// (the config file's directory), and gives the `(job name, source)` pairs it
    /// stands for: one, except for a multi-database PostgreSQL job. The error is the
    /// reason, naming the key; the caller names the job.
    pub fn expand(self, job: &str, base: &Path) -> Result<Vec<(String, Spec)>, String> {
        let one = |source| Ok(vec![(job.to_string(), source)]);
        match self {
            Spec::Sqlite { path } => one(Spec::Sqlite {
                path: base.join(path),
            }),
            Spec::Files { path } => one(Spec::Files {
                path: base.join(path),
            }),
            Spec::File { path, extension } => {
                check_extension(extension.as_deref())?;
                one(Spec::File {
                    path: base.join(path),
                    extension,
                })
            }
            Spec::Command {
                command,
                extension,
                env,
                fail_on_stderr,
                restore_command,
            } => {
                if command.is_empty() || command[0].is_empty() {
                    return Err("source.command is empty: give the program and its \
                                arguments as a list"
                        .into());
                }
                if restore_command
                    .as_ref()
                    .is_some_and(|c| c.is_empty() || c[0].is_empty())
                {
                    return Err("source.restore_command is empty: give the program \
                                and its arguments as a list, or leave it out"
                        .into());
                }
                check_extension(extension.as_deref())?;
                one(Spec::Command {
                    command,
                    extension,
                    env,
                    fail_on_stderr,
                    restore_command,
                })
            }
            Spec::Postgres(pg) => Ok(pg
                .expand(job, base)
                .map_err(|e| format!("source: {e}"))?
                .into_iter()
                .map(|(name, source)| (name, Spec::Postgres(source)))
                .collect()),
            Spec::Mysql(m) => one(Spec::Mysql(
                m.validate(base).map_err(|e| format!("source: {e}"))?,
            )),
            Spec::Redis(r) => one(Spec::Redis(
                r.validate(base).map_err(|e| format!("source: {e}"))?,
            )),
        }
    }
}

/// `source.extension` becomes part of the data key.
fn check_extension(extension: Option<&str>) -> Result<(), String> {
    match extension {
        Some(ext)
            if ext.is_empty() || !ext.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') =>
        {
            Err(format!(
                "source.extension `{ext}` may hold only letters, digits and dots"
            ))
        }
        _ => Ok(()),
    }
}
