//! The scratch target of one drill, made ready for one backup and torn down when
//! dropped: a throwaway local server ([`super::local`]), a database vault creates on
//! an existing scratch server (and drops), or a private temp dir for files, SQLite
//! and command jobs.
//!
//! A drill never restores into anything it did not create: on a scratch server the
//! database `vault_drill_<job>_<backup id>` must not exist yet (a killed drill's
//! leftover is named and left for the operator), and a dump that recreates several
//! databases under their own names is drilled on a local server only.

use std::path::PathBuf;

use anyhow::Context as _;

use super::evidence::{CheckResult, Kind, Severity};
use super::local::{Endpoint, LocalKind, LocalServer};
use crate::commands::restore::server::Plan;
use crate::commands::restore::{FileTarget, to_dir, to_file};
use crate::config::Scratch;
use crate::crypto::Identities;
use crate::error::Error;
use crate::manifest::Manifest;
use crate::source::{self, DatabaseProperties, UnpackOptions, mysql, postgres};

/// Arguments every drill restore into PostgreSQL gets: the scratch server has none of
/// the production roles, so ownership and grants are not replayed (the data is).
const PG_DRILL_ARGS: [&str; 2] = ["--no-owner", "--no-privileges"];

/// What a drill restores into, and how it is reached once restored.
pub struct Prepared {
    how: How,
    endpoint: Option<Endpoint>,
    /// Where it went, for the report (never a password).
    pub shown: String,
    /// Said along the way (e.g. a database created with the server's defaults).
    pub notes: Vec<CheckResult>,
    // Dropped in this order: the scratch database, then the server, then the dir.
    drop_db: Option<DropDb>,
    server: Option<LocalServer>,
    bin_dir: Option<PathBuf>,
    dir: source::Scratch,
}

enum How {
    Plan(Box<Plan>),
    File(PathBuf),
    Dir(PathBuf),
    /// Restored to a file, then loaded by a local redis-server started on it.
    Redis(PathBuf),
    /// A restore command writing to `{to}`, a path in the temp dir.
    Command(Box<Plan>, PathBuf),
}

/// A database on an existing scratch server, dropped when this is.
enum DropDb {
    Postgres(Box<postgres::restore::Target>),
    Mysql(mysql::restore::Target, String),
}

impl Drop for DropDb {
    fn drop(&mut self) {
        let dropped = match self {
            DropDb::Postgres(t) => postgres::restore::drop_database(t),
            DropDb::Mysql(t, db) => mysql::restore::drop_database(t, db),
        };
        if let Err(e) = dropped {
            eprintln!("warning: the drill's scratch database was not dropped: {e:#}");
        }
    }
}

/// The database name a drill uses on an existing scratch server:
/// `vault_drill_<job>_<backup id>`, lowercase, `[a-z0-9_]` only, at most 63 bytes
/// (PostgreSQL's limit; MySQL's is 64).
pub fn drill_database(job: &str, backup_id: &str) -> String {
    let name: String = format!("vault_drill_{job}_{backup_id}")
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    name.chars().take(63).collect()
}

impl Prepared {
    /// Readies the scratch target for `manifest` (a local server is started; a
    /// database on a scratch server is created), before anything is downloaded.
    pub fn new(
        manifest: &Manifest,
        scratch: &Scratch,
        bin_dir: Option<PathBuf>,
        restore_jobs: u32,
        drill_command: Option<&[String]>,
        restore_command: Option<(&[String], &std::collections::BTreeMap<String, String>)>,
    ) -> anyhow::Result<Prepared> {
        let dir = source::Scratch::new("drill")?;
        let job = &manifest.job;
        let kind = manifest.source.kind.as_str();
        let mut p = Prepared {
            how: How::Dir(PathBuf::new()),
            endpoint: None,
            shown: String::new(),
            notes: Vec::new(),
            drop_db: None,
            server: None,
            bin_dir,
            dir,
        };
        let local_only = |what: &str| {
            Error::config(format!(
                "job `{job}`: a {what} backup is drilled with scratch = \"local\" only \
                 (vault starts the server or uses a temp dir); set scratch in [job.drill]"
            ))
        };
        let url = match scratch {
            Scratch::Local => None,
            Scratch::Url(url) => Some(url.as_str()),
        };
        match kind {
            "postgres" => p.postgres(manifest, url, restore_jobs)?,
            "mysql" => p.mysql(manifest, url)?,
            "redis" if url.is_none() => {
                let file = p.dir.path().join("dump.rdb");
                p.shown = "a local redis-server".into();
                p.how = How::Redis(file);
            }
            "sqlite" if url.is_none() => {
                let file = p.dir.path().join("restored.sqlite");
                p.shown = format!("{} (a temp file)", file.display());
                p.endpoint = Some(Endpoint::Sqlite { path: file.clone() });
                p.how = How::File(file);
            }
            "files" if url.is_none() => {
                let to = p.dir.path().join("restored");
                p.shown = format!("{} (a temp dir)", to.display());
                p.endpoint = Some(Endpoint::Dir { path: to.clone() });
                p.how = How::Dir(to);
            }
            "command" if url.is_none() => {
                let to = p.dir.path().join("restored");
                let (argv, env) = match (drill_command, restore_command) {
                    (Some(argv), _) => (argv.to_vec(), Default::default()),
                    (None, Some((argv, env))) => (argv.to_vec(), env.clone()),
                    (None, None) => {
                        return Err(Error::config(format!(
                            "job `{job}` has neither [job.drill] command nor \
                             source.restore_command: a drill needs one of them to restore \
                             its dump (with {{to}} the path to restore to)"
                        ))
                        .into());
                    }
                };
                p.shown = format!("`{}` into {}", argv[0], to.display());
                p.how = How::Command(
                    Box::new(Plan::Command {
                        argv,
                        env,
                        to: to.display().to_string(),
                    }),
                    to,
                );
            }
            "redis" | "sqlite" | "files" | "command" => return Err(local_only(kind).into()),
            other => {
                return Err(Error::config(format!(
                    "job `{job}`: vault cannot drill {other} backups"
                ))
                .into());
            }
        }
        Ok(p)
    }

    fn postgres(
        &mut self,
        manifest: &Manifest,
        url: Option<&str>,
        restore_jobs: u32,
    ) -> anyhow::Result<()> {
        let properties = match &manifest.source.database_properties {
            Some(DatabaseProperties::Postgres(p)) => Some(p.clone()),
            _ => None,
        };
        let (target, endpoint) = match url {
            None => {
                let server =
                    LocalServer::start(LocalKind::Postgres, self.bin_dir.as_deref(), None)?;
                let db = manifest
                    .source
                    .databases
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "vault_drill".into());
                let endpoint = server.endpoint(Some(&db));
                self.shown = server.description();
                self.server = Some(server);
                (endpoint.postgres_target()?, endpoint)
            }
            Some(url) => {
                let db = drill_database(&manifest.job, &manifest.backup_id);
                let endpoint = url_endpoint(url, &db)?;
                let target = postgres::restore::parse(&with_database(url, &db))?;
                if postgres::restore::relations(&target)?.is_some() {
                    return Err(exists(&target.shown).into());
                }
                self.shown = target.shown.clone();
                (target, endpoint)
            }
        };
        self.create_postgres(&target, properties.as_ref())?;
        if let Some(url) = url {
            let db = database_of(&endpoint);
            self.drop_db = Some(DropDb::Postgres(Box::new(postgres::restore::parse(
                &with_database(url, &db),
            )?)));
        }
        self.endpoint = Some(endpoint);
        self.how = How::Plan(Box::new(Plan::Postgres {
            target: Box::new(target),
            clean: false,
            jobs: (restore_jobs > 1).then_some(restore_jobs),
            extra: PG_DRILL_ARGS.iter().map(|a| a.to_string()).collect(),
            force: true,
            create: false,
            properties: None,
        }));
        Ok(())
    }

    /// Creates the database like the dumped one; when this server cannot (a locale it
    /// lacks), with its defaults and a warning.
    fn create_postgres(
        &mut self,
        target: &postgres::restore::Target,
        properties: Option<&source::PgProperties>,
    ) -> anyhow::Result<()> {
        match (postgres::restore::create(target, properties), properties) {
            (Ok(()), _) => Ok(()),
            (Err(e), Some(_)) => {
                postgres::restore::create(target, None)?;
                self.notes.push(CheckResult::new(
                    Kind::Restore,
                    "database properties",
                    Severity::Warn,
                    format!(
                        "{} was created with the server's defaults: the dumped encoding and \
                         locale could not be used ({e:#})",
                        target.shown
                    ),
                ));
                Ok(())
            }
            (Err(e), None) => Err(e),
        }
    }

    fn mysql(&mut self, manifest: &Manifest, url: Option<&str>) -> anyhow::Result<()> {
        let properties = match &manifest.source.database_properties {
            Some(DatabaseProperties::Mysql(p)) => Some(p.clone()),
            _ => None,
        };
        let databases = manifest.source.databases.clone();
        let single = databases.len() == 1;
        let (db, endpoint) = match url {
            None => {
                let server = LocalServer::start(LocalKind::Mariadb, self.bin_dir.as_deref(), None)?;
                self.shown = server.description();
                let db = single.then(|| databases[0].clone());
                let endpoint = server.endpoint(db.as_deref());
                self.server = Some(server);
                (db, endpoint)
            }
            Some(_) if !single => {
                return Err(Error::config(format!(
                    "job `{}`: its dump recreates {} under their own names, which a shared \
                     scratch server may hold: drill it with scratch = \"local\"",
                    manifest.job,
                    if databases.is_empty() {
                        "every database".to_string()
                    } else {
                        format!("databases {}", databases.join(", "))
                    }
                ))
                .into());
            }
            Some(url) => {
                let db = drill_database(&manifest.job, &manifest.backup_id);
                (Some(db.clone()), url_endpoint(url, &db)?)
            }
        };
        let target = endpoint.mysql_target()?;
        if let Some(db) = &db {
            if url.is_some() {
                if mysql::restore::objects(&target, std::slice::from_ref(db))?.is_some() {
                    return Err(exists(&target.shown).into());
                }
                self.shown = target.shown.clone();
            }
            match (
                mysql::restore::create(&target, db, properties.as_ref()),
                &properties,
            ) {
                (Ok(()), _) => {}
                (Err(e), Some(_)) => {
                    mysql::restore::create(&target, db, None)?;
                    self.notes.push(CheckResult::new(
                        Kind::Restore,
                        "database properties",
                        Severity::Warn,
                        format!(
                            "database {db} was created with the server's defaults: the \
                             dumped character set and collation could not be used ({e:#})"
                        ),
                    ));
                }
                (Err(e), None) => return Err(e),
            }
            if url.is_some() {
                self.drop_db = Some(DropDb::Mysql(endpoint.mysql_target()?, db.clone()));
            }
        }
        self.endpoint = Some(endpoint);
        self.how = How::Plan(Box::new(Plan::Mysql {
            target,
            databases: match db {
                Some(db) => vec![db],
                None => databases,
            },
            extra: Vec::new(),
            force: true,
            create: false,
            properties: None,
        }));
        Ok(())
    }

    /// Restores the backup into the target; for Redis, then starts the server on it.
    pub fn restore(
        &mut self,
        object: impl std::io::Read + Send + 'static,
        identities: &Identities,
        manifest: &Manifest,
    ) -> anyhow::Result<()> {
        match std::mem::replace(&mut self.how, How::Dir(PathBuf::new())) {
            How::Plan(plan) => {
                plan.restore(object, identities, manifest)?;
            }
            How::File(path) => {
                to_file(object, identities, manifest, &file_target(path))?;
            }
            How::Dir(dir) => {
                to_dir(object, identities, manifest, &dir, UnpackOptions::default())?;
            }
            How::Redis(path) => {
                to_file(object, identities, manifest, &file_target(path.clone()))?;
                let server =
                    LocalServer::start(LocalKind::Redis, self.bin_dir.as_deref(), Some(&path))
                        .context("the restored dump did not load into a local redis-server")?;
                self.shown = server.description();
                self.endpoint = Some(server.endpoint(None));
                self.server = Some(server);
            }
            How::Command(plan, to) => {
                plan.restore(object, identities, manifest)?;
                self.endpoint = Some(Endpoint::Dir { path: to });
            }
        }
        Ok(())
    }

    /// Tears it down now: the scratch database dropped, the server stopped (an error
    /// if it would not stop), the temp dir removed.
    pub fn finish(mut self) -> anyhow::Result<()> {
        drop(self.drop_db.take());
        if let Some(server) = self.server.take() {
            server.stop()?;
        }
        Ok(())
    }

    /// How the restored copy is reached (after [`Prepared::restore`]).
    pub fn endpoint(&self) -> Option<&Endpoint> {
        self.endpoint.as_ref()
    }
}

fn file_target(path: PathBuf) -> FileTarget {
    FileTarget {
        path,
        force: false,
        flag: "drill",
    }
}

fn exists(shown: &str) -> Error {
    Error::config(format!(
        "{shown} already exists on the scratch server: a drill only restores into a \
         database it creates itself. If an interrupted drill left it, drop it by hand"
    ))
}

/// The scratch server's URL with `db` as its database (the URL names none).
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let base = base.trim_end_matches('/');
    format!("{base}/{db}{query}")
}

fn database_of(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Postgres { database, .. } => database.clone(),
        Endpoint::Mysql { database, .. } => database.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

/// How a database on a scratch server is reached; the password stays in the
/// environment (PGPASSWORD/PGPASSFILE, MYSQL_PWD).
fn url_endpoint(url: &str, db: &str) -> Result<Endpoint, Error> {
    let parsed = url::Url::parse(url)
        .map_err(|e| Error::config(format!("[drill] scratch {}: {e}", source::redact_url(url))))?;
    let host = parsed.host_str().unwrap_or("localhost").to_string();
    let user = percent_encoding::percent_decode_str(parsed.username())
        .decode_utf8_lossy()
        .to_string();
    Ok(match parsed.scheme() {
        "postgresql" | "postgres" => Endpoint::Postgres {
            host,
            port: parsed.port().unwrap_or(5432),
            user: if user.is_empty() {
                "postgres".into()
            } else {
                user
            },
            password: None,
            database: db.to_string(),
            bin_dir: None,
        },
        _ => Endpoint::Mysql {
            host,
            port: parsed.port().unwrap_or(3306),
            user: if user.is_empty() { "root".into() } else { user },
            password: std::env::var("MYSQL_PWD").ok().filter(|p| !p.is_empty()),
            database: Some(db.to_string()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drill_database_names_are_safe_identifiers() {
        assert_eq!(
            drill_database("pg.App-1", "20261207T041500Z-ab12"),
            "vault_drill_pg_app_1_20261207t041500z_ab12"
        );
        assert_eq!(drill_database(&"j".repeat(80), "x").len(), 63);
        assert_eq!(
            with_database("postgresql://drill@h:5432/", "d"),
            "postgresql://drill@h:5432/d"
        );
        assert_eq!(
            with_database("postgresql://drill@h:5432?sslmode=require", "d"),
            "postgresql://drill@h:5432/d?sslmode=require"
        );
    }
}
