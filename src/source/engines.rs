//! Settings of the database engines (`postgres`, `mysql`/`mariadb`, `redis`) as the
//! config gives them: parsing, validation, and the expansion of a multi-database
//! PostgreSQL job into one job per database (plus one for the cluster globals).
//!
//! Passwords are never config values: a config names an environment variable or a
//! file that holds one, and a URL that carries a password is refused, because the URL
//! would end up on a child's command line (visible in `ps`) and in shell history.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `kind = "postgres"`: `pg_dump` in custom format, one database per job.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSource {
    /// `postgresql://user@host:port/dbname?sslmode=...`, without a password.
    pub url: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub database: Option<String>,
    /// Several databases: the job becomes one job per database, `<job>.<database>`.
    #[serde(default)]
    pub databases: Vec<String>,
    /// The environment variable holding the password.
    pub password_env: Option<String>,
    /// A libpq password file (`host:port:db:user:password` lines, mode 0600).
    pub passfile: Option<PathBuf>,
    /// Also back up roles and tablespaces (`pg_dumpall --globals-only`) as job
    /// `<job>.globals`.
    #[serde(default)]
    pub globals: bool,
    /// Only these schemas (`pg_dump --schema`).
    #[serde(default)]
    pub schemas: Vec<String>,
    /// Leave these tables out (`pg_dump --exclude-table`).
    #[serde(default)]
    pub exclude_tables: Vec<String>,
    /// More `pg_dump` arguments, appended as given.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// The directory holding `pg_dump`, `pg_dumpall` and `psql` [default: PATH].
    pub bin_dir: Option<PathBuf>,
    /// Set by the expansion: a database dump, or the cluster globals.
    #[serde(skip)]
    pub part: PgPart,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PgPart {
    #[default]
    Database,
    Globals,
}

/// `kind = "mysql"` (or `"mariadb"`): `mariadb-dump`/`mysqldump` with one consistent
/// InnoDB snapshot (`--single-transaction`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSource {
    pub host: Option<String>,
    pub port: Option<u16>,
    /// A Unix socket instead of host and port.
    pub socket: Option<PathBuf>,
    pub user: Option<String>,
    pub database: Option<String>,
    /// Several databases in one consistent dump (`--databases`).
    #[serde(default)]
    pub databases: Vec<String>,
    /// Every database (`--all-databases`).
    #[serde(default)]
    pub all_databases: bool,
    pub password_env: Option<String>,
    /// A file whose first line is the password.
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// The dump program [default: `mariadb-dump` if on PATH, else `mysqldump`].
    pub dump_program: Option<String>,
    #[serde(skip)]
    pub password: PasswordFrom,
}

/// `kind = "redis"`: an RDB snapshot streamed from the server (`redis-cli --rdb -`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSource {
    pub host: Option<String>,
    pub port: Option<u16>,
    /// An ACL user (Redis 6+); without it, AUTH uses the password alone.
    pub user: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub tls: bool,
    #[serde(default)]
    pub extra_args: Vec<String>,
    #[serde(skip)]
    pub password: PasswordFrom,
}

/// A password source: the variable named, or the first line of the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PasswordFrom {
    #[default]
    None,
    Env(String),
    File(PathBuf),
}

impl PasswordFrom {
    fn new(env: &Option<String>, file: &Option<PathBuf>, base: &Path) -> Result<Self, String> {
        match (env, file) {
            (Some(_), Some(_)) => Err("set password_env or password_file, not both".into()),
            (Some(var), None) if var.is_empty() => Err("password_env is empty".into()),
            (Some(var), None) => Ok(PasswordFrom::Env(var.clone())),
            (None, Some(f)) => Ok(PasswordFrom::File(base.join(f))),
            (None, None) => Ok(PasswordFrom::None),
        }
    }

    /// Reads the password now (the caller's context names the job). Never printed.
    pub fn read(&self) -> anyhow::Result<Option<String>> {
        use crate::error::Error;
        match self {
            PasswordFrom::None => Ok(None),
            PasswordFrom::Env(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Some(v)),
                _ => Err(Error::config(format!(
                    "source: password_env names {var}, which is not set in vault's environment"
                ))
                .into()),
            },
            PasswordFrom::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::config(format!("source: password_file {}: {e}", path.display()))
                })?;
                let line = text.lines().next().unwrap_or("").to_string();
                if line.is_empty() {
                    return Err(Error::config(format!(
                        "source: password_file {} is empty",
                        path.display()
                    ))
                    .into());
                }
                Ok(Some(line))
            }
        }
    }
}

impl MysqlSource {
    pub fn validate(mut self, base: &Path) -> Result<Self, String> {
        self.password = PasswordFrom::new(&self.password_env, &self.password_file, base)?;
        self.socket = self.socket.map(|f| base.join(f));
        let picked = usize::from(self.database.is_some())
            + usize::from(!self.databases.is_empty())
            + usize::from(self.all_databases);
        if picked != 1 {
            return Err(
                "name what to dump with exactly one of database, databases or all_databases".into(),
            );
        }
        if self.socket.is_some() && (self.host.is_some() || self.port.is_some()) {
            return Err("set socket, or host and port, not both".into());
        }
        no_password_args(&self.extra_args, &["-p"])?;
        Ok(self)
    }

    /// The databases named in the dump (empty for `all_databases`).
    pub fn names(&self) -> Vec<String> {
        self.database
            .iter()
            .chain(&self.databases)
            .cloned()
            .collect()
    }
}

impl RedisSource {
    pub fn validate(mut self, base: &Path) -> Result<Self, String> {
        self.password = PasswordFrom::new(&self.password_env, &self.password_file, base)?;
        no_password_args(&self.extra_args, &["-a", "--pass"])?;
        Ok(self)
    }
}

impl PostgresSource {
    pub fn password(&self) -> PasswordFrom {
        match &self.password_env {
            Some(var) => PasswordFrom::Env(var.clone()),
            None => PasswordFrom::None,
        }
    }

    /// The database this (expanded) job dumps.
    pub fn dbname(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// Validates and splits a postgres job into `(job name, source)` pairs.
    pub fn expand(mut self, job: &str, base: &Path) -> Result<Vec<(String, Self)>, String> {
        if let Some(url) = &self.url {
            check_pg_url(url)?;
            if self.host.is_some() || self.port.is_some() || self.user.is_some() {
                return Err("set url, or host/port/user, not both".into());
            }
        }
        if self.password_env.as_deref() == Some("") {
            return Err("password_env is empty".into());
        }
        if self.password_env.is_some() && self.passfile.is_some() {
            return Err("set password_env or passfile, not both".into());
        }
        no_password_args(&self.extra_args, &[])?;
        self.passfile = self.passfile.map(|f| base.join(f));
        self.bin_dir = self.bin_dir.map(|f| base.join(f));

        let url_db = self.url.as_deref().and_then(url_database);
        if self.database.is_some() && !self.databases.is_empty() {
            return Err("set database or databases, not both".into());
        }
        if let Some(db) = &url_db
            && (self.database.is_some() || !self.databases.is_empty())
        {
            return Err(format!(
                "url names database `{db}` and database(s) is set too: name the databases \
                 in one place"
            ));
        }
        let mut names: Vec<String> = std::mem::take(&mut self.databases);
        let several = !names.is_empty();
        if let Some(db) = self.database.take().or(url_db) {
            names.push(db);
        }
        if names.is_empty() && !self.globals {
            return Err("names no database: set database, databases, or a database in url".into());
        }
        let mut jobs = Vec::new();
        for db in &names {
            let name = if several {
                let name = format!("{job}.{db}");
                crate::names::validate_job_name(&name).map_err(|_| {
                    format!(
                        "database `{db}` cannot be part of a job name (`{name}`): give it \
                         its own [[job]] with database = \"{db}\""
                    )
                })?;
                name
            } else {
                job.to_string()
            };
            let mut one = self.clone();
            one.database = Some(db.clone());
            one.globals = false;
            jobs.push((name, one));
        }
        if self.globals {
            let mut globals = self.clone();
            globals.part = PgPart::Globals;
            globals.globals = false;
            globals.schemas.clear();
            globals.exclude_tables.clear();
            globals.extra_args.clear();
            jobs.push((format!("{job}.globals"), globals));
        }
        Ok(jobs)
    }
}

/// The database in a `postgresql://…/dbname?…` URL, if any.
fn url_database(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let path = rest.split_once('/')?.1;
    let db = path.split(['?', '#']).next().unwrap_or("");
    (!db.is_empty()).then(|| db.to_string())
}

/// Splits a URL into `(scheme://authority, query)` around its database path.
pub fn url_without_database(url: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgresql", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let query = rest
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    (format!("{scheme}://{authority}"), query)
}

/// A URL given to vault must not carry a password (it would be on a command line).
pub fn check_pg_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "url `{}` is not a postgresql:// URL (key=value connection strings: use host, \
             port, user, database)",
            redact_url(url)
        ));
    };
    if scheme != "postgresql" && scheme != "postgres" {
        return Err(format!("url scheme `{scheme}` is not postgresql://"));
    }
    check_no_password_in_url(rest, url)
}

/// Refuses `user:password@` in the authority and `password=` in the query.
pub fn check_no_password_in_url(rest: &str, shown_scheme_only: &str) -> Result<(), String> {
    let scheme = shown_scheme_only.split("://").next().unwrap_or("");
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let in_userinfo = authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'));
    let in_query = rest
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(is_password_param));
    if in_userinfo || in_query {
        return Err(format!(
            "the {scheme}:// URL carries a password: remove it (it would be visible in \
             `ps` and shell history) and give it through the environment or a file instead"
        ));
    }
    Ok(())
}

fn is_password_param(kv: &str) -> bool {
    let key = kv.split('=').next().unwrap_or("").to_ascii_lowercase();
    kv.contains('=') && key.ends_with("password")
}

/// `url` with any password replaced by `***`, for messages: the userinfo's, and the
/// value of every `…password=` parameter (query, or key=value connection string).
pub fn redact_url(url: &str) -> String {
    let hide_params = |text: &str, sep: char| -> String {
        text.split(sep)
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if is_password_param(kv) => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect::<Vec<_>>()
            .join(&sep.to_string())
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return hide_params(url, ' ');
    };
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match main.split_once('/') {
        Some((a, p)) => (a, format!("/{p}")),
        None => (main, String::new()),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let query = query
        .map(|q| format!("?{}", hide_params(q, '&')))
        .unwrap_or_default();
    format!("{scheme}://{authority}{path}{query}")
}

/// Extra arguments must not carry a password either: `--password…`, `…password=…`,
/// and the tool's own short password flags (`short`, also when glued to a value).
fn no_password_args(args: &[String], short: &[&str]) -> Result<(), String> {
    for a in args {
        let lower = a.to_ascii_lowercase();
        if lower.starts_with("--password")
            || lower.contains("password=")
            || short.iter().any(|s| a.starts_with(s))
        {
            return Err(
                "extra_args must not carry a password (child command lines are visible \
                 in `ps`): use password_env or password_file"
                    .into(),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(text: &str) -> PostgresSource {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_postgres_job_with_several_databases_becomes_one_job_each() {
        let src = pg("databases = [\"app\", \"billing\"]\nglobals = true\nhost = \"db\"\n");
        let jobs = src.expand("pg", Path::new("/etc/vault")).unwrap();
        let names: Vec<&str> = jobs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["pg.app", "pg.billing", "pg.globals"]);
        assert_eq!(jobs[1].1.database.as_deref(), Some("billing"));
        assert_eq!(jobs[2].1.part, PgPart::Globals);
        let one = pg("url = \"postgresql://backup@db:5432/app?sslmode=require\"\n")
            .expand("pg", Path::new("/"))
            .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].0, "pg");
        assert_eq!(one[0].1.database.as_deref(), Some("app"));
        assert_eq!(
            url_without_database("postgresql://backup@db:5432/app?sslmode=require"),
            (
                "postgresql://backup@db:5432".to_string(),
                "?sslmode=require".to_string()
            )
        );
    }

    #[test]
    fn passwords_in_urls_and_arguments_are_refused() {
        for bad in [
            "url = \"postgresql://u:hunter2@db/app\"\n",
            "url = \"postgres://u@db/app?password=hunter2\"\n",
            "database = \"a\"\nextra_args = [\"--password=x\"]\n",
        ] {
            let err = pg(bad).expand("pg", Path::new("/")).unwrap_err();
            assert!(err.contains("password"), "{bad}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        let err = pg("host = \"db\"\n")
            .expand("pg", Path::new("/"))
            .unwrap_err();
        assert!(err.contains("names no database"), "{err}");
        let err = pg("databases = [\"App DB\"]\n")
            .expand("pg", Path::new("/"))
            .unwrap_err();
        assert!(err.contains("App DB"), "{err}");
    }

    #[test]
    fn urls_in_messages_hide_passwords() {
        assert_eq!(
            redact_url("postgresql://u:hunter2@db:5432/app?sslmode=require&sslpassword=x"),
            "postgresql://u:***@db:5432/app?sslmode=require&sslpassword=***"
        );
        assert_eq!(
            redact_url("host=db password=hunter2 dbname=app"),
            "host=db password=*** dbname=app"
        );
        assert_eq!(redact_url("mysql://root@h:3306/x"), "mysql://root@h:3306/x");
        let err = check_pg_url("host=db password=hunter2").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(check_pg_url("postgresql://u@h/app?sslpassword=x").is_err());
        let both = pg("url = \"postgresql://u@h/app\"\ndatabases = [\"b\"]\n");
        assert!(
            both.expand("pg", Path::new("/"))
                .unwrap_err()
                .contains("one place")
        );
    }

    #[test]
    fn mysql_needs_exactly_one_selection() {
        let m: MysqlSource = toml::from_str("database = \"a\"\nall_databases = true\n").unwrap();
        assert!(m.validate(Path::new("/")).is_err());
        let m: MysqlSource = toml::from_str("databases = [\"a\", \"b\"]\n").unwrap();
        assert_eq!(m.validate(Path::new("/")).unwrap().names(), ["a", "b"]);
        let m: MysqlSource =
            toml::from_str("database = \"a\"\npassword_env = \"X\"\npassword_file = \"f\"\n")
                .unwrap();
        assert!(m.validate(Path::new("/")).unwrap_err().contains("not both"));
    }
}
