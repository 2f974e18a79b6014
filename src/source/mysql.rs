//! `mysql` / `mariadb`: `mariadb-dump` (or `mysqldump`) and restores with the client.
//!
//! - `--single-transaction` dumps InnoDB tables from one consistent snapshot without
//!   locking writers; `--routines --triggers --events` keep the code that lives in the
//!   database; `--hex-blob` keeps binary columns byte-exact.
//! - The password goes into a defaults file (mode 0600, in a private 0700 directory,
//!   removed when the tool exits) passed with `--defaults-extra-file`: never on the
//!   command line.
//! - A dump is complete only if it ends with the tool's `-- Dump completed` comment.
//! - A single-database dump has no `CREATE DATABASE`, so the database's default
//!   character set and collation are read before the dump and recorded in the
//!   manifest: `restore --create` makes the new database with them.
//! - Both tools get `--max-allowed-packet=1G` (the protocol's maximum) unless the user
//!   gives one: the clients' default (16 MiB) fails on any larger row.

use std::path::PathBuf;

use super::child::{self, Spawn};
use super::engines::MysqlSource;
use super::scratch::Scratch;
use super::shape::{Shape, Tail};
use super::{DatabaseProperties, Described, DumpStream, MysqlProperties};

const SQL_DUMP: Shape = Shape {
    what: "mysqldump SQL script",
    head: b"",
    tail: Tail::Contains(b"-- Dump completed"),
};

/// The clients' packet limit unless the user sets one: the protocol's maximum, so a
/// row of any size the server holds can be dumped and loaded.
const MAX_ALLOWED_PACKET: &str = "--max-allowed-packet=1G";

/// Whether `args` set the packet limit (`--max-allowed-packet`, `--max_allowed_packet`).
fn sets_max_allowed_packet(args: &[String]) -> bool {
    args.iter().any(|a| {
        a.to_ascii_lowercase()
            .replace('_', "-")
            .starts_with("--max-allowed-packet")
    })
}

/// The first of `names` found on PATH, else the first name.
fn on_path(names: &[&str]) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from(names[0])
}

/// An option-file value: double-quoted, with `\` and `"` escaped.
fn option_value(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Connection options shared by the dump and the client.
pub struct Conn {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub socket: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl Conn {
    /// A client program with the connection given; the defaults file (if any) comes
    /// first, as the client requires.
    pub fn spawn(&self, name: &str, program: PathBuf) -> anyhow::Result<Spawn> {
        let mut s = Spawn::new(name, program);
        if let Some(password) = &self.password {
            let dir = Scratch::new("mysql")?;
            let file = dir.write(
                "client.cnf",
                &format!("[client]\npassword={}\n", option_value(password)),
            )?;
            s = s.arg(format!("--defaults-extra-file={}", file.display()));
            s.guard = Some(Box::new(dir));
        }
        if let Some(host) = &self.host {
            // "localhost" would mean the Unix socket to the client; TCP was asked for.
            s = s.arg(format!("--host={host}")).arg("--protocol=TCP");
        }
        if let Some(port) = self.port {
            s = s.arg(format!("--port={port}"));
        }
        if let Some(socket) = &self.socket {
            s = s.arg(format!("--socket={}", socket.display()));
        }
        if let Some(user) = &self.user {
            s = s.arg(format!("--user={user}"));
        }
        Ok(s)
    }

    /// Runs SQL with the client; returns its tab-separated output.
    fn sql(&self, text: &str) -> anyhow::Result<String> {
        let s = self
            .spawn("mariadb", client())?
            .args(["--batch", "--skip-column-names"]);
        child::run(&s, text)
    }
}

/// The command-line client.
fn client() -> PathBuf {
    on_path(&["mariadb", "mysql"])
}

/// A SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The default character set and collation of database `db`; None when the server
/// does not list it (the dump then fails on its own) or when the answer does not look
/// like names (see [`DatabaseProperties::vetted`]).
fn read_properties(conn: &Conn, db: &str) -> anyhow::Result<Option<DatabaseProperties>> {
    let out = conn
        .sql(&format!(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME \
             FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {};",
            literal(db)
        ))
        .map_err(|e| e.context(format!("cannot read the character set of database {db}")))?;
    let Some((character_set, collation)) = out.split_once('\t') else {
        return Ok(None);
    };
    let properties = MysqlProperties {
        character_set: character_set.to_string(),
        collation: collation.to_string(),
    };
    Ok(DatabaseProperties::Mysql(properties).vetted(db))
}

pub fn open(m: &MysqlSource) -> anyhow::Result<Box<dyn DumpStream>> {
    let program = match &m.dump_program {
        Some(p) => PathBuf::from(p),
        None => on_path(&["mariadb-dump", "mysqldump"]),
    };
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mysqldump".into());
    let conn = Conn {
        host: m.host.clone(),
        port: m.port,
        socket: m.socket.clone(),
        user: m.user.clone(),
        password: m.password.read()?,
    };
    let properties = match &m.database {
        Some(db) => read_properties(&conn, db)?,
        // The dump's own CREATE DATABASE statements carry the character sets.
        None => None,
    };
    let mut s = conn.spawn(&name, program)?.args([
        "--single-transaction",
        "--routines",
        "--triggers",
        "--events",
        "--hex-blob",
        "--default-character-set=utf8mb4",
    ]);
    if !sets_max_allowed_packet(&m.extra_args) {
        s = s.arg(MAX_ALLOWED_PACKET);
    }
    s = s.args(m.extra_args.iter().cloned());
    if m.all_databases {
        s = s.arg("--all-databases");
    } else if !m.databases.is_empty() {
        s = s.arg("--databases").args(m.databases.iter().cloned());
    } else if let Some(db) = &m.database {
        // One database without CREATE DATABASE/USE: it restores into any name.
        s = s.arg(db.clone());
    }
    // Any comment or compact option (however spelled) may drop the trailer.
    let no_comments = m.extra_args.iter().any(|a| {
        let a = a.to_ascii_lowercase().replace('_', "-");
        a.contains("comments") || a.contains("compact")
    });
    Ok(Box::new(Described {
        dump: child::dump(s, (!no_comments).then_some(SQL_DUMP))?,
        properties,
    }))
}

pub mod restore {
    //! `vault restore JOB --to mysql://USER@HOST:PORT/DBNAME` (or `mariadb://`).

    use std::process::Stdio;

    use super::*;
    use crate::error::Error;
    use crate::source::child::ChildSink;
    use crate::source::{check_no_password_in_url, redact_url};

    pub struct Target {
        conn: Conn,
        /// None: a multi-database dump replays its own CREATE DATABASE/USE.
        pub database: Option<String>,
        pub shown: String,
    }

    /// Parses `--to`; the password comes from `password` (vault's MYSQL_PWD).
    pub fn parse(to: &str, password: Option<String>) -> Result<Target, Error> {
        let bad = |why: &str| {
            Error::config(format!(
                "--to {}: {why} (a MySQL/MariaDB backup restores into \
                 mysql://USER@HOST:PORT/DBNAME)",
                redact_url(to)
            ))
        };
        let (scheme, rest) = to.split_once("://").ok_or_else(|| bad("not a URL"))?;
        if scheme != "mysql" && scheme != "mariadb" {
            return Err(bad(&format!("{scheme}:// is not mysql:// or mariadb://")));
        }
        check_no_password_in_url(rest, to).map_err(|e| {
            Error::config(format!("--to: {e} (set MYSQL_PWD in vault's environment)"))
        })?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                Some(p.parse::<u16>().map_err(|_| bad("bad port"))?),
            ),
            None => (hostport.to_string(), None),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let database = path.split(['?', '#']).next().unwrap_or("").to_string();
        let database = (!database.is_empty()).then_some(database);
        Ok(Target {
            shown: match &database {
                Some(db) => format!("database {db} at {hostport}"),
                None => format!("server {hostport}"),
            },
            database,
            conn: Conn {
                host: Some(host),
                port,
                socket: None,
                user,
                password,
            },
        })
    }

    impl Target {
        /// The server at `host:port` (over TCP), as `user` with `password` (given to the
        /// client in a private defaults file, never on its command line); `database`
        /// None for a dump that creates its own databases: a drill's scratch server.
        pub fn new(
            host: &str,
            port: u16,
            user: &str,
            database: Option<String>,
            password: Option<String>,
        ) -> Target {
            Target {
                shown: match &database {
                    Some(db) => format!("database {db} at {host}:{port}"),
                    None => format!("server {host}:{port}"),
                },
                database,
                conn: Conn {
                    host: Some(host.to_string()),
                    port: Some(port),
                    socket: None,
                    user: Some(user.to_string()),
                    password,
                },
            }
        }
    }

    /// The command-line client connected to the target (in its database, if any), in
    /// batch mode without column names: for scripted queries given on stdin.
    pub fn sql_client(t: &Target) -> anyhow::Result<Spawn> {
        let mut s = t
            .conn
            .spawn("mariadb", client())?
            .args(["--batch", "--skip-column-names"]);
        if let Some(db) = &t.database {
            s = s.arg(format!("--database={db}"));
        }
        Ok(s)
    }

    pub fn identifier(s: &str) -> String {
        format!("`{}`", s.replace('`', "``"))
    }

    /// Tables, views and routines in `databases` of the target: None when none of them
    /// exists yet.
    pub fn objects(t: &Target, databases: &[String]) -> anyhow::Result<Option<u64>> {
        let list = databases
            .iter()
            .map(|d| literal(d))
            .collect::<Vec<_>>()
            .join(", ");
        let out = t
            .conn
            .sql(&format!(
                "SELECT (SELECT COUNT(*) FROM information_schema.schemata \
                 WHERE schema_name IN ({list})), \
                 (SELECT COUNT(*) FROM information_schema.tables WHERE table_schema IN ({list})) \
                 + (SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema IN ({list}));"
            ),
        )
        .map_err(|e| e.context(format!("cannot connect to {}", t.shown)))?;
        let mut parts = out
            .split_whitespace()
            .map(|n| n.parse::<u64>().unwrap_or(u64::MAX));
        let (schemas, objects) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        Ok((schemas > 0).then_some(objects))
    }

    /// Creates database `db` with the dumped database's character set and collation
    /// when they were recorded, else with the server's defaults.
    pub fn create(
        t: &Target,
        db: &str,
        properties: Option<&MysqlProperties>,
    ) -> anyhow::Result<()> {
        let mut sql = format!("CREATE DATABASE IF NOT EXISTS {}", identifier(db));
        if let Some(p) = properties {
            sql = format!("{sql} {}", p.create_clauses()?);
        }
        t.conn
            .sql(&format!("{sql};"))
            .map_err(|e| e.context(format!("cannot create database {db}")))?;
        Ok(())
    }

    /// Drops database `db` (a drill's scratch database, which vault created itself).
    pub fn drop_database(t: &Target, db: &str) -> anyhow::Result<()> {
        t.conn
            .sql(&format!("DROP DATABASE IF EXISTS {};", identifier(db)))
            .map_err(|e| e.context(format!("cannot drop database {db}")))?;
        Ok(())
    }

    /// The client reading the SQL dump on stdin, stopping at the first error.
    pub fn spawn(t: &Target, extra: &[String]) -> anyhow::Result<ChildSink> {
        let mut s = t.conn.spawn("mariadb", client())?.arg("--batch");
        if !sets_max_allowed_packet(extra) {
            s = s.arg(MAX_ALLOWED_PACKET);
        }
        s = s.args(extra.iter().cloned());
        if let Some(db) = &t.database {
            s = s.arg(format!("--database={db}"));
        }
        ChildSink::start(s, Stdio::null())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values_are_quoted() {
        assert_eq!(option_value(r#"a"b\c#d"#), r#""a\"b\\c#d""#);
    }

    #[test]
    fn the_users_packet_limit_wins() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(!sets_max_allowed_packet(&args(&["--no-tablespaces"])));
        for given in [
            "--max-allowed-packet=64M",
            "--max_allowed_packet=2G",
            "--MAX-ALLOWED-PACKET",
        ] {
            assert!(sets_max_allowed_packet(&args(&[given])), "{given}");
        }
    }

    #[test]
    fn restore_targets_are_parsed() {
        let t = restore::parse("mysql://root@127.0.0.1:3307/app", None).unwrap();
        assert_eq!(t.database.as_deref(), Some("app"));
        assert_eq!(t.shown, "database app at 127.0.0.1:3307");
        let t = restore::parse("mariadb://127.0.0.1", None).unwrap();
        assert_eq!(t.database, None);
        assert!(restore::parse("mysql://root:pw@h/app", None).is_err());
        assert!(restore::parse("postgresql://h/app", None).is_err());
        assert_eq!(restore::identifier("a`b"), "`a``b`");
    }
}
