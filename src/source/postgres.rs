//! `postgres`: one database with `pg_dump` in custom format, or the cluster's roles and
//! tablespaces with `pg_dumpall --globals-only`; and restores with `pg_restore`.
//!
//! - `pg_dump --format=custom --compress=0`: vault compresses, so pg_dump must not. The
//!   dump is one REPEATABLE READ snapshot, consistent while writers go on.
//! - The password reaches libpq through `PGPASSWORD` or `PGPASSFILE` in the child's
//!   environment, never its command line. `--no-password` makes a missing password an
//!   error instead of a prompt.
//! - Before dumping, `psql` asks the server its version: a pg_dump older than the
//!   server cannot dump it, and saying so before anything is stored beats pg_dump's
//!   own late error. The same query proves the connection and the password.
//! - Restore streams into `pg_restore --single-transaction --exit-on-error`: either the
//!   whole dump loads or nothing does. `--jobs N` needs a seekable file, so the dump is
//!   first written to a private 0600 temporary file (removed afterwards).

use std::path::PathBuf;

use anyhow::{Context, anyhow};

use super::child::{self, Spawn};
use super::engines::{PgPart, PostgresSource, url_without_database};
use super::properties::not_recorded;
use super::shape::{Shape, Tail};
use super::{DatabaseProperties, Described, DumpStream, LocaleProvider, PgProperties};
use crate::error::Error;

const ARCHIVE: Shape = Shape {
    what: "PostgreSQL custom-format archive",
    head: b"PGDMP",
    tail: Tail::None,
};

const GLOBALS: Shape = Shape {
    what: "pg_dumpall globals script",
    head: b"",
    tail: Tail::Contains(b"PostgreSQL database cluster dump complete"),
};

/// Where the client programs are.
fn tool(pg: &PostgresSource, name: &str) -> PathBuf {
    match &pg.bin_dir {
        Some(dir) => dir.join(name),
        None => PathBuf::from(name),
    }
}

/// A libpq client program with the connection settings in its environment.
fn client(pg: &PostgresSource, name: &str) -> anyhow::Result<Spawn> {
    let mut s = Spawn::new(name, tool(pg, name))
        .env("PGAPPNAME", "vault")
        .arg("--no-password");
    if std::env::var_os("PGCONNECT_TIMEOUT").is_none() {
        s = s.env("PGCONNECT_TIMEOUT", "30");
    }
    if let Some(password) = pg.password().read()? {
        s = s.env("PGPASSWORD", password);
    }
    if let Some(passfile) = &pg.passfile {
        s = s.env("PGPASSFILE", passfile.display().to_string());
    }
    if let Some(host) = &pg.host {
        s = s.env("PGHOST", host);
    }
    if let Some(port) = pg.port {
        s = s.env("PGPORT", port.to_string());
    }
    if let Some(user) = &pg.user {
        s = s.env("PGUSER", user);
    }
    Ok(s)
}

/// The `--dbname` value for database `db`: a URL with its path replaced, or the name.
fn dbname_arg(pg: &PostgresSource, db: &str) -> String {
    match &pg.url {
        Some(url) => {
            let (base, query) = url_without_database(url);
            format!("{base}/{db}{query}")
        }
        None => db.to_string(),
    }
}

pub fn open(pg: &PostgresSource) -> anyhow::Result<Box<dyn DumpStream>> {
    let maintenance = pg.database.clone().unwrap_or_else(|| "postgres".into());
    let server = check_versions(pg, &maintenance)?;
    match pg.part {
        PgPart::Database => {
            let db = pg.dbname().context("no database to dump")?;
            let properties = read_properties(pg, db, server)?;
            let mut s = client(pg, "pg_dump")?.args(["--format=custom", "--compress=0"]);
            s = s.args(pg.schemas.iter().map(|x| format!("--schema={x}")));
            s = s.args(
                pg.exclude_tables
                    .iter()
                    .map(|t| format!("--exclude-table={t}")),
            );
            s = s
                .args(pg.extra_args.iter().cloned())
                .arg(format!("--dbname={}", dbname_arg(pg, db)));
            Ok(Box::new(Described {
                dump: child::dump(s, Some(ARCHIVE))?,
                properties,
            }))
        }
        PgPart::Globals => {
            let mut s = client(pg, "pg_dumpall")?.arg("--globals-only");
            s = match &pg.url {
                // pg_dumpall takes a connection string, and the database to start from.
                Some(_) => s.arg(format!("--dbname={}", dbname_arg(pg, &maintenance))),
                None => s.arg(format!("--database={maintenance}")),
            };
            child::dump(s, Some(GLOBALS))
        }
    }
}

/// The major version in `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`.
fn client_major(version_line: &str) -> Option<u32> {
    let after = version_line.split(')').nth(1)?.trim();
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Checks that the dump tool can dump the server; returns `server_version_num`.
fn check_versions(pg: &PostgresSource, db: &str) -> anyhow::Result<u32> {
    let dump_tool = match pg.part {
        PgPart::Database => "pg_dump",
        PgPart::Globals => "pg_dumpall",
    };
    let version = Spawn::new(dump_tool, tool(pg, dump_tool)).arg("--version");
    let line = child::run(&version, "")?;
    let client = client_major(&line)
        .ok_or_else(|| anyhow!("cannot read the version of `{dump_tool}` from `{line}`"))?;
    let server = query(pg, db, "SHOW server_version_num")
        .context("cannot connect to the PostgreSQL server")?;
    let server: u32 = server
        .parse()
        .map_err(|_| anyhow!("unexpected server_version_num `{server}`"))?;
    let server_major = server / 10_000;
    if client < server_major {
        return Err(Error::config(format!(
            "{dump_tool} {client} is older than the server (PostgreSQL {server_major}) and \
             cannot dump it: install the PostgreSQL {server_major} client tools \
             (Debian: postgresql-client-{server_major}) or set source.bin_dir"
        ))
        .into());
    }
    Ok(server)
}

/// The encoding and locale of database `db` on a server of version `server`
/// (`server_version_num`); None when they do not look like names (see
/// [`DatabaseProperties::vetted`]).
fn read_properties(
    pg: &PostgresSource,
    db: &str,
    server: u32,
) -> anyhow::Result<Option<DatabaseProperties>> {
    // The provider and its locale came with PostgreSQL 15; 17 renamed the locale.
    let provider = match server {
        ..150_000 => "NULL, NULL",
        150_000..170_000 => "datlocprovider, daticulocale",
        _ => "datlocprovider, datlocale",
    };
    let row = query_fields(
        pg,
        db,
        &format!(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype, {provider} \
             FROM pg_database WHERE datname = current_database()"
        ),
    )
    .with_context(|| format!("cannot read the encoding and locale of database {db}"))?;
    let [encoding, lc_collate, lc_ctype, provider, locale] = row.as_slice() else {
        return Err(anyhow!(
            "unexpected answer to the encoding and locale of database {db}: {row:?}"
        ));
    };
    let locale_provider = match provider.as_str() {
        "" => None,
        code => match LocaleProvider::from_catalog(code) {
            Some(known) => Some(known),
            None => {
                not_recorded(
                    db,
                    &format!("locale provider `{code}` is not one vault knows"),
                );
                return Ok(None);
            }
        },
    };
    let properties = PgProperties {
        encoding: encoding.clone(),
        lc_collate: lc_collate.clone(),
        lc_ctype: lc_ctype.clone(),
        locale_provider,
        locale: Some(locale.clone()).filter(|l| !l.is_empty()),
    };
    Ok(DatabaseProperties::Postgres(properties).vetted(db))
}

/// Runs one SQL query returning one row; its fields (NULL is empty).
fn query_fields(pg: &PostgresSource, db: &str, sql: &str) -> anyhow::Result<Vec<String>> {
    let s = psql(pg, db)?.arg("--field-separator-zero");
    Ok(child::run(&s, sql)?
        .split('\0')
        .map(str::to_string)
        .collect())
}

/// psql for scripted queries: unaligned, tuples only, stopping at the first error.
fn psql(pg: &PostgresSource, db: &str) -> anyhow::Result<Spawn> {
    Ok(client(pg, "psql")?
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
        .arg(format!("--dbname={}", dbname_arg(pg, db))))
}

/// Runs one SQL statement with psql in database `db`; returns the unaligned result.
fn query(pg: &PostgresSource, db: &str, sql: &str) -> anyhow::Result<String> {
    child::run(&psql(pg, db)?, sql)
}

pub mod restore {
    //! `vault restore JOB --to postgresql://user@host:port/dbname`.

    use std::process::Stdio;

    use super::*;
    use crate::source::child::ChildSink;
    use crate::source::{check_no_password_in_url, redact_url};

    /// A parsed `--to` for a PostgreSQL restore, or a drill's scratch database.
    pub struct Target {
        source: PostgresSource,
        pub database: String,
        pub shown: String,
        /// Given to the tools in `PGPASSWORD` (never on a command line); None: libpq
        /// finds it in vault's environment (PGPASSWORD, PGPASSFILE).
        password: Option<String>,
    }

    impl Target {
        /// Database `database` on the server at `host:port`, as `user`, with `password`
        /// and the client tools of `bin_dir` (else `VAULT_PG_BIN_DIR`, else PATH): a
        /// drill's scratch server.
        pub fn new(
            host: &str,
            port: u16,
            user: &str,
            database: &str,
            password: Option<String>,
            bin_dir: Option<PathBuf>,
        ) -> Target {
            Target {
                source: PostgresSource {
                    url: None,
                    host: Some(host.to_string()),
                    port: Some(port),
                    user: Some(user.to_string()),
                    database: Some(database.to_string()),
                    databases: Vec::new(),
                    password_env: None,
                    passfile: None,
                    globals: false,
                    schemas: Vec::new(),
                    exclude_tables: Vec::new(),
                    extra_args: Vec::new(),
                    bin_dir: bin_dir
                        .or_else(|| std::env::var_os("VAULT_PG_BIN_DIR").map(PathBuf::from)),
                    part: PgPart::Database,
                },
                database: database.to_string(),
                shown: format!("database {database} at {user}@{host}:{port}"),
                password,
            }
        }

        /// A client program of the target's server, with the password if one was given.
        fn client(&self, name: &str) -> anyhow::Result<Spawn> {
            let s = client(&self.source, name)?;
            Ok(match &self.password {
                Some(password) => s.env("PGPASSWORD", password.clone()),
                None => s,
            })
        }

        /// Runs one SQL statement in database `db` of the target's server.
        fn query(&self, db: &str, sql: &str) -> anyhow::Result<String> {
            child::run(&self.psql(db)?, sql)
        }

        fn psql(&self, db: &str) -> anyhow::Result<Spawn> {
            Ok(self
                .client("psql")?
                .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
                .arg(format!("--dbname={}", dbname_arg(&self.source, db))))
        }
    }

    /// `psql` in the target database, unaligned, tuples only, stopping at the first
    /// error: for scripted queries (add output options, give the SQL on stdin).
    pub fn sql_client(t: &Target) -> anyhow::Result<Spawn> {
        t.psql(&t.database)
    }

    pub fn parse(to: &str) -> Result<Target, Error> {
        let Some((scheme, rest)) = to.split_once("://") else {
            return Err(Error::config(format!(
                "--to {}: a PostgreSQL backup restores into a database given as \
                 postgresql://USER@HOST:PORT/DBNAME",
                redact_url(to)
            )));
        };
        if scheme != "postgresql" && scheme != "postgres" {
            return Err(Error::config(format!(
                "--to: a PostgreSQL backup restores into postgresql://…, not {scheme}://"
            )));
        }
        check_no_password_in_url(rest, to)
            .map_err(|e| Error::config(format!("--to: {e} (PGPASSWORD or PGPASSFILE)")))?;
        let database = rest
            .split_once('/')
            .map(|(_, p)| p.split(['?', '#']).next().unwrap_or("").to_string())
            .filter(|d| !d.is_empty())
            .ok_or_else(|| {
                Error::config(format!(
                    "--to {} names no database: add /DBNAME (the database to restore into)",
                    redact_url(to)
                ))
            })?;
        let source = PostgresSource {
            url: Some(to.to_string()),
            host: None,
            port: None,
            user: None,
            database: Some(database.clone()),
            databases: Vec::new(),
            password_env: None,
            passfile: None,
            globals: false,
            schemas: Vec::new(),
            exclude_tables: Vec::new(),
            extra_args: Vec::new(),
            bin_dir: std::env::var_os("VAULT_PG_BIN_DIR").map(PathBuf::from),
            part: PgPart::Database,
        };
        let (base, _) = url_without_database(to);
        Ok(Target {
            source,
            shown: format!(
                "database {database} at {}",
                base.split("://").nth(1).unwrap_or("")
            ),
            database,
            password: None,
        })
    }

    /// How many user relations (tables, views, sequences, ...) the target holds; None
    /// when the database does not exist.
    pub fn relations(t: &Target) -> anyhow::Result<Option<u64>> {
        let exists = t
            .query(
                "postgres",
                &format!(
                    "SELECT count(*) FROM pg_database WHERE datname = {}",
                    literal(&t.database)
                ),
            )
            .with_context(|| format!("cannot connect to the server of {}", t.shown))?;
        if exists == "0" {
            return Ok(None);
        }
        let n = t.query(
            &t.database,
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' \
             AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')",
        )?;
        Ok(Some(n.parse().unwrap_or(u64::MAX)))
    }

    /// Creates the target database: like the dumped one when its `properties` were
    /// recorded, else with the server's defaults.
    pub fn create(t: &Target, properties: Option<&PgProperties>) -> anyhow::Result<()> {
        let mut sql = format!("CREATE DATABASE {}", identifier(&t.database));
        if let Some(p) = properties {
            sql = format!("{sql} {}", p.create_clauses()?);
        }
        t.query("postgres", &sql)
            .with_context(|| format!("cannot create {}", t.shown))?;
        Ok(())
    }

    /// `pg_restore` into the target, reading the archive from stdin in one transaction,
    /// or, given `(file, jobs)`, from that file with `jobs` workers.
    pub fn spawn(
        t: &Target,
        clean: bool,
        parallel: Option<(&std::path::Path, u32)>,
        extra: &[String],
    ) -> anyhow::Result<ChildSink> {
        let mut s = t.client("pg_restore")?.arg("--exit-on-error");
        if clean {
            s = s.args(["--clean", "--if-exists"]);
        }
        s = match parallel {
            Some((_, jobs)) => s.arg(format!("--jobs={jobs}")),
            None => s.arg("--single-transaction"),
        };
        s = s
            .args(extra.iter().cloned())
            .arg(format!("--dbname={}", dbname_arg(&t.source, &t.database)));
        if let Some((file, _)) = parallel {
            s = s.arg(file.display().to_string());
        }
        ChildSink::start(s, Stdio::null())
    }

    /// Drops the target database, disconnecting whoever is still in it (a drill's
    /// scratch database, which vault created itself).
    pub fn drop_database(t: &Target) -> anyhow::Result<()> {
        query(
            &t.source,
            "postgres",
            &format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                identifier(&t.database)
            ),
        )
        .with_context(|| format!("cannot drop {}", t.shown))?;
        Ok(())
    }

    /// A SQL string literal.
    fn literal(s: &str) -> String {
        format!("'{}'", s.replace('\'', "''"))
    }

    /// A SQL identifier.
    fn identifier(s: &str) -> String {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_versions_are_read() {
        assert_eq!(
            client_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(client_major("pg_dump (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(client_major("pg_dump (PostgreSQL) 17beta1"), Some(17));
        assert_eq!(client_major("pg_dump something else"), None);
    }

    #[test]
    fn restore_targets_need_a_database_and_no_password() {
        let t = restore::parse("postgresql://u@127.0.0.1:5432/app").unwrap();
        assert_eq!(t.database, "app");
        assert_eq!(t.shown, "database app at u@127.0.0.1:5432");
        for bad in [
            "postgresql://u@h:5432",
            "postgresql://u:pw@h/app",
            "mysql://u@h/app",
            "/tmp/x",
        ] {
            let err = restore::parse(bad).err().expect(bad).to_string();
            assert!(err.contains("--to"), "{err}");
            assert!(!err.contains(":pw"), "{err}");
        }
    }
}
