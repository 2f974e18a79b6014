//! How to reach a restored copy: a local scratch server, a database on an existing
//! scratch server, or a restored file or directory. Clients get the password in their
//! environment or a private defaults file, never on their command line.

use std::fmt;
use std::path::PathBuf;

use anyhow::bail;
use url::Url;

use crate::source::child::Spawn;
use crate::source::{mysql, postgres};

/// How to reach a restored copy (local or an existing scratch server).
#[derive(Clone)]
pub enum Endpoint {
    Postgres {
        host: String,
        port: u16,
        user: String,
        /// None: libpq finds it in vault's environment (PGPASSWORD, PGPASSFILE).
        password: Option<String>,
        database: String,
        /// The client tools (psql, pg_restore); None: PATH.
        bin_dir: Option<PathBuf>,
    },
    Mysql {
        host: String,
        port: u16,
        user: String,
        password: Option<String>,
        /// None: the whole server (a dump of several or all databases).
        database: Option<String>,
    },
    Redis {
        host: String,
        port: u16,
        password: Option<String>,
    },
    Sqlite {
        path: PathBuf,
    },
    Dir {
        path: PathBuf,
    },
}

impl Endpoint {
    /// `postgresql://user@127.0.0.1:port/db`, never with the password: for
    /// VAULT_DRILL_URL and messages. Files and directories give a `file://` URL.
    pub fn url(&self) -> String {
        match self {
            Endpoint::Postgres {
                host,
                port,
                user,
                database,
                ..
            } => server_url("postgresql", Some(user), host, *port, Some(database)),
            Endpoint::Mysql {
                host,
                port,
                user,
                database,
                ..
            } => server_url("mysql", Some(user), host, *port, database.as_deref()),
            Endpoint::Redis { host, port, .. } => server_url("redis", None, host, *port, None),
            Endpoint::Sqlite { path } | Endpoint::Dir { path } => Url::from_file_path(path)
                .map(String::from)
                .unwrap_or_else(|()| path.display().to_string()),
        }
    }

    /// What is reached: `postgres`, `mysql`, `redis`, `sqlite`, `dir`.
    pub fn engine(&self) -> &'static str {
        match self {
            Endpoint::Postgres { .. } => "postgres",
            Endpoint::Mysql { .. } => "mysql",
            Endpoint::Redis { .. } => "redis",
            Endpoint::Sqlite { .. } => "sqlite",
            Endpoint::Dir { .. } => "dir",
        }
    }

    /// The restore target of `commands::restore::server::Plan::Postgres`.
    pub fn postgres_target(&self) -> anyhow::Result<postgres::restore::Target> {
        match self {
            Endpoint::Postgres {
                host,
                port,
                user,
                password,
                database,
                bin_dir,
            } => Ok(postgres::restore::Target::new(
                host,
                *port,
                user,
                database,
                password.clone(),
                bin_dir.clone(),
            )),
            other => bail!("{} is not a PostgreSQL database", other.url()),
        }
    }

    /// The restore target of `commands::restore::server::Plan::Mysql`.
    pub fn mysql_target(&self) -> anyhow::Result<mysql::restore::Target> {
        match self {
            Endpoint::Mysql {
                host,
                port,
                user,
                password,
                database,
            } => Ok(mysql::restore::Target::new(
                host,
                *port,
                user,
                database.clone(),
                password.clone(),
            )),
            other => bail!("{} is not a MySQL/MariaDB server", other.url()),
        }
    }

    /// The command-line client connected to it, for scripted use with the input on
    /// stdin: `psql` (unaligned, tuples only, stopping at the first error), `mariadb`
    /// (batch, no column names) or `redis-cli` (an error reply fails it).
    pub fn client(&self) -> anyhow::Result<Spawn> {
        match self {
            Endpoint::Postgres { .. } => postgres::restore::sql_client(&self.postgres_target()?),
            Endpoint::Mysql { .. } => mysql::restore::sql_client(&self.mysql_target()?),
            Endpoint::Redis {
                host,
                port,
                password,
            } => {
                let mut s = Spawn::new("redis-cli", "redis-cli");
                if let Some(password) = password {
                    s = s.env("REDISCLI_AUTH", password.clone());
                }
                Ok(s.arg("-h")
                    .arg(host.clone())
                    .arg("-p")
                    .arg(port.to_string())
                    .arg("-e"))
            }
            Endpoint::Sqlite { .. } | Endpoint::Dir { .. } => {
                bail!("{} is a file, not a server: it has no client", self.url())
            }
        }
    }

    /// The client environment for a user check's command (with [`Endpoint::url`] in
    /// VAULT_DRILL_URL): libpq's PG* variables, the MySQL client's MYSQL_HOST,
    /// MYSQL_TCP_PORT and MYSQL_PWD, or redis-cli's REDISCLI_AUTH. Holds the password:
    /// for a child's environment only.
    pub fn client_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(&str, String)> = Vec::new();
        match self {
            Endpoint::Postgres {
                host,
                port,
                user,
                password,
                database,
                ..
            } => {
                env.extend([
                    ("PGHOST", host.clone()),
                    ("PGPORT", port.to_string()),
                    ("PGUSER", user.clone()),
                    ("PGDATABASE", database.clone()),
                ]);
                env.extend(password.iter().map(|p| ("PGPASSWORD", p.clone())));
            }
            Endpoint::Mysql {
                host,
                port,
                password,
                ..
            } => {
                env.extend([
                    ("MYSQL_HOST", host.clone()),
                    ("MYSQL_TCP_PORT", port.to_string()),
                ]);
                env.extend(password.iter().map(|p| ("MYSQL_PWD", p.clone())));
            }
            Endpoint::Redis { password, .. } => {
                env.extend(password.iter().map(|p| ("REDISCLI_AUTH", p.clone())));
            }
            Endpoint::Sqlite { .. } | Endpoint::Dir { .. } => {}
        }
        env.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

/// `scheme://user@host:port/database`, each part encoded as URLs need it.
fn server_url(
    scheme: &str,
    user: Option<&str>,
    host: &str,
    port: u16,
    database: Option<&str>,
) -> String {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let Ok(mut url) = Url::parse(&format!("{scheme}://{host}:{port}")) else {
        // Not a host a URL can hold: shown as given.
        let user = user.map(|u| format!("{u}@")).unwrap_or_default();
        let database = database.map(|d| format!("/{d}")).unwrap_or_default();
        return format!("{scheme}://{user}{host}:{port}{database}");
    };
    if let Some(user) = user {
        let _ = url.set_username(user);
    }
    if let Some(database) = database
        && let Ok(mut path) = url.path_segments_mut()
    {
        path.clear().push(database);
    }
    url.into()
}

impl fmt::Debug for Endpoint {
    /// The URL: never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endpoint({})", self.url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_never_hold_the_password_and_encode_names() {
        let pg = Endpoint::Postgres {
            host: "127.0.0.1".into(),
            port: 5433,
            user: "postgres".into(),
            password: Some("hunter2".into()),
            database: "vault_drill_app/x y".into(),
            bin_dir: None,
        };
        assert_eq!(
            pg.url(),
            "postgresql://postgres@127.0.0.1:5433/vault_drill_app%2Fx%20y"
        );
        assert!(!format!("{pg:?}").contains("hunter2"));
        let my = Endpoint::Mysql {
            host: "::1".into(),
            port: 3306,
            user: "root".into(),
            password: Some("hunter2".into()),
            database: None,
        };
        assert_eq!(my.url(), "mysql://root@[::1]:3306");
        let redis = Endpoint::Redis {
            host: "127.0.0.1".into(),
            port: 6380,
            password: Some("hunter2".into()),
        };
        assert_eq!(redis.url(), "redis://127.0.0.1:6380");
        assert_eq!(
            redis.client_env(),
            [("REDISCLI_AUTH".to_string(), "hunter2".to_string())]
        );
        let dir = Endpoint::Dir {
            path: "/tmp/a b".into(),
        };
        assert_eq!(dir.url(), "file:///tmp/a%20b");
        assert!(dir.client().is_err());
        assert!(redis.postgres_target().is_err() && pg.mysql_target().is_err());
    }

    #[test]
    fn clients_get_the_password_in_their_environment_only() {
        let pg = Endpoint::Postgres {
            host: "127.0.0.1".into(),
            port: 5433,
            user: "postgres".into(),
            password: Some("hunter2".into()),
            database: "app".into(),
            bin_dir: Some("/opt/pg/bin".into()),
        };
        let psql = pg.client().unwrap();
        assert_eq!(psql.program, PathBuf::from("/opt/pg/bin/psql"));
        assert!(psql.args.iter().all(|a| !a.contains("hunter2")));
        assert!(psql.env.contains(&("PGPASSWORD".into(), "hunter2".into())));
        let redis = Endpoint::Redis {
            host: "127.0.0.1".into(),
            port: 6380,
            password: Some("hunter2".into()),
        };
        let cli = redis.client().unwrap();
        assert!(cli.args.iter().all(|a| !a.contains("hunter2")));
        assert!(
            cli.env
                .contains(&("REDISCLI_AUTH".into(), "hunter2".into()))
        );
    }
}
