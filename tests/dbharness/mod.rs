//! Throwaway database servers for the integration tests: PostgreSQL, MariaDB and Redis,
//! each in temporary directories of its own, listening on a free port of 127.0.0.1 only,
//! with a password required, and stopped (and its files removed) when dropped, also when
//! the test panics. Use it from a test file with `mod dbharness;`.
//!
//! The servers are children of the test process and are reaped by it, never left to
//! init. When the tests run as root, PostgreSQL and MariaDB run as nobody/nogroup
//! (65534), which owns their temporary directories; Redis runs as the caller.
//!
//! A missing binary is a failure naming the Debian package, never a skipped test:
//! `./scripts/test` installs them.

#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Password of the PostgreSQL superuser `postgres`.
pub const PG_PASSWORD: &str = "pg-s3cret-Zq81";
/// Password of the MariaDB user `root` (over TCP from 127.0.0.1).
pub const MARIADB_PASSWORD: &str = "my-s3cret-Kw27";
/// The Redis `requirepass`.
pub const REDIS_PASSWORD: &str = "rd-s3cret-Jx55";

/// How long a server may take to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// nobody/nogroup on Debian: the servers' user when the tests run as root.
pub const UNPRIVILEGED_ID: u32 = 65534;
/// Starts retried on a new port when another process took the free one meanwhile.
const PORT_ATTEMPTS: usize = 5;
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long one readiness probe (pg_isready, mariadb-admin ping, redis-cli PING) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

// --- common helpers ---------------------------------------------------------------

/// A port of 127.0.0.1 that was free a moment ago (bound to port 0, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("cannot bind a TCP port on 127.0.0.1")
        .port()
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// Whether the tests run as root (effective uid 0), read from /proc/self/status, or
/// from `id -u` where there is no /proc.
pub fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        let from_proc = fs::read_to_string("/proc/self/status").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(str::to_owned))
        });
        let euid = from_proc.or_else(|| {
            let out = Command::new("id").arg("-u").output().ok()?;
            Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        });
        match euid.as_deref() {
            Some(id) => id == "0",
            None => panic!("cannot tell whether the tests run as root (no /proc, no `id`)"),
        }
    })
}

/// Runs `cmd` as nobody/nogroup when the tests run as root; unchanged otherwise.
fn unprivileged(cmd: &mut Command) -> &mut Command {
    if running_as_root() {
        cmd.uid(UNPRIVILEGED_ID).gid(UNPRIVILEGED_ID);
    }
    cmd
}

/// A private temporary directory (0700). With `for_server`, owned by the servers' user
/// when running as root (then in /tmp, which that user can traverse).
fn scratch(prefix: &str, for_server: bool) -> TempDir {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    let dir = if for_server && running_as_root() {
        builder.tempdir_in("/tmp")
    } else {
        builder.tempdir()
    }
    .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
    if for_server {
        give_to_server(dir.path());
    }
    dir
}

/// Hands a path to the servers' user (when running as root).
fn give_to_server(path: &Path) {
    if running_as_root() {
        std::os::unix::fs::chown(path, Some(UNPRIVILEGED_ID), Some(UNPRIVILEGED_ID))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, contents: &str) {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    f.write_all(contents.as_bytes()).unwrap();
}

/// `name` on PATH or in the usual system directories (Debian keeps servers in /usr/sbin,
/// which is not on a normal user's PATH); panics naming the Debian package otherwise.
pub fn require_tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found (PATH, /usr/sbin): install the Debian package `{package}` \
                 (./scripts/test installs it)"
            )
        })
}

/// Runs `cmd` to completion, feeding it `stdin` (from another thread, so large inputs
/// and outputs cannot deadlock), capturing stdout and stderr.
fn run(cmd: &mut Command, stdin: Option<&str>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
    let pipe = child.stdin.take();
    std::thread::scope(|s| {
        if let (Some(mut pipe), Some(input)) = (pipe, stdin) {
            s.spawn(move || {
                // A client that fails early closes its stdin: its stderr says why.
                let _ = pipe.write_all(input.as_bytes());
            });
        }
        child.wait_with_output()
    })
    .unwrap_or_else(|e| panic!("waiting for {:?}: {e}", cmd.get_program()))
}

/// Runs a readiness probe: whether it exits successfully within `timeout` (killed and
/// reaped otherwise: something else may be holding our port and never answer).
/// `check` is given its stdout.
fn probe(cmd: &mut Command, timeout: Duration, check: impl FnOnce(&str) -> bool) -> bool {
    let Ok(mut child) = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                if let Some(mut pipe) = child.stdout.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut out);
                }
                return status.success() && check(out.trim());
            }
            Ok(None) if started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Trimmed stdout on success; stderr (and stdout) on failure.
fn result_of(what: &str, out: Output) -> Result<String, String> {
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        Err(format!(
            "{what} failed ({}): {stderr}{}{stdout}",
            out.status,
            if stdout.is_empty() { "" } else { "\nstdout: " }
        ))
    }
}

/// The last `lines` lines of a log file (for failure messages).
pub fn log_tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// A server process, child of the test process: killed and reaped at the latest on drop.
struct ServerProcess {
    child: Mutex<Option<Child>>,
}

impl ServerProcess {
    fn none() -> ServerProcess {
        ServerProcess {
            child: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spawns `cmd` with stdout and stderr appended to a fresh `log`.
    fn spawn(&self, cmd: &mut Command, log: &Path) {
        let out = File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = out.try_clone().unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
        let old = self.lock().replace(child);
        assert!(old.is_none(), "a server process was already running");
    }

    /// The exit status if the process has exited (and reaps it); None while it runs or
    /// when there is none.
    fn exited(&self) -> Option<ExitStatus> {
        let mut guard = self.lock();
        let status = guard.as_mut()?.try_wait().ok().flatten()?;
        *guard = None;
        Some(status)
    }

    fn running(&self) -> bool {
        self.exited().is_none() && self.lock().is_some()
    }

    /// Waits for the process to exit by itself, up to `timeout`; whether it did.
    fn wait_exit(&self, timeout: Duration) -> bool {
        let started = Instant::now();
        while self.lock().is_some() {
            if self.exited().is_some() {
                return true;
            }
            if started.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// SIGKILL and reap; nothing if there is no process (any more).
    fn kill(&self) {
        if let Some(mut child) = self.lock().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Why a server did not come up.
enum StartError {
    /// The process exited; its log says whether it was the port.
    Exited(ExitStatus),
}

/// Polls `ready` until it holds. Err if the process exits first; panics with the log
/// tail after [`START_TIMEOUT`].
fn wait_ready(
    what: &str,
    process: &ServerProcess,
    log: &Path,
    mut ready: impl FnMut() -> bool,
) -> Result<(), StartError> {
    let started = Instant::now();
    loop {
        if let Some(status) = process.exited() {
            return Err(StartError::Exited(status));
        }
        if ready() {
            return Ok(());
        }
        if started.elapsed() > START_TIMEOUT {
            panic!(
                "{what} did not accept connections within {START_TIMEOUT:?}; last lines of {}:\n{}",
                log.display(),
                log_tail(log, 40)
            );
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// After a failed start: whether to retry on another port (someone took ours); panics
/// with the log tail otherwise.
fn retry_on_port_clash(what: &str, err: StartError, log: &Path, attempt: usize) {
    let StartError::Exited(status) = err;
    let text = fs::read_to_string(log).unwrap_or_default();
    let clash = text.contains("Address already in use") || text.contains("Address in use");
    if clash && attempt + 1 < PORT_ATTEMPTS {
        return;
    }
    panic!(
        "{what} exited during start-up ({status}); last lines of {}:\n{}",
        log.display(),
        log_tail(log, 40)
    );
}

// --- PostgreSQL -------------------------------------------------------------------

/// The PostgreSQL server binaries: the newest /usr/lib/postgresql/<version>/bin (where
/// Debian keeps initdb, postgres, pg_ctl next to psql, pg_dump and pgbench).
pub fn pg_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new("/usr/lib/postgresql");
        let version = |p: &Path| -> Vec<u32> {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.split('.').map(|n| n.parse().unwrap_or(0)).collect()
        };
        fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("bin/initdb").is_file() && p.join("bin/postgres").is_file())
            .max_by_key(|p| version(p))
            .map(|p| p.join("bin"))
            .unwrap_or_else(|| {
                panic!(
                    "no PostgreSQL server in /usr/lib/postgresql/*/bin (initdb, postgres): \
                     install the Debian package `postgresql` (./scripts/test installs it)"
                )
            })
    })
    .clone()
}

/// `pg_bin()/name`, with the inherited PG* environment removed (PGPORT, PGDATA,
/// PGPASSWORD... of the caller must not leak in).
fn pg_command(name: &str) -> Command {
    let path = pg_bin().join(name);
    assert!(
        path.is_file(),
        "{} not found: install the Debian package `postgresql` (./scripts/test installs it)",
        path.display()
    );
    let mut cmd = Command::new(path);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A PostgreSQL server of its own: superuser `postgres` with [`PG_PASSWORD`]
/// (scram-sha-256, also on its private Unix socket), on 127.0.0.1:`port`.
pub struct Postgres {
    pub port: u16,
    /// The data directory (owned by nobody when running as root).
    pub data: PathBuf,
    /// The server's stdout/stderr.
    pub log: PathBuf,
    process: ServerProcess,
    tmp: TempDir,
}

impl Postgres {
    pub fn start() -> Postgres {
        let tmp = scratch("vault-pg-", true);
        let data = tmp.path().join("data");
        let pwfile = tmp.path().join("pwfile");
        write_private(&pwfile, &format!("{PG_PASSWORD}\n"));
        give_to_server(&pwfile);
        let out = run(
            unprivileged(&mut pg_command("initdb"))
                .current_dir(tmp.path())
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=scram-sha-256", "-E", "UTF8"])
                .args(["--no-locale", "--no-sync", "--no-instructions"])
                .arg(format!("--pwfile={}", pwfile.display())),
            None,
        );
        if let Err(e) = result_of("initdb", out) {
            panic!("{e}");
        }
        fs::remove_file(&pwfile).unwrap();
        let conf = format!(
            "\n# tests/dbharness\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             logging_collector = off\n",
            tmp.path().display()
        );
        OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .unwrap();

        let mut pg = Postgres {
            port: 0,
            log: tmp.path().join("postgres.log"),
            data,
            process: ServerProcess::none(),
            tmp,
        };
        for attempt in 0..PORT_ATTEMPTS {
            pg.port = free_port();
            // The postmaster itself (not pg_ctl start, which leaves it to init to reap).
            pg.process.spawn(
                unprivileged(&mut pg_command("postgres"))
                    .current_dir(pg.tmp.path())
                    .arg("-D")
                    .arg(&pg.data)
                    .arg("-p")
                    .arg(pg.port.to_string()),
                &pg.log,
            );
            let port = pg.port.to_string();
            let ready = wait_ready("PostgreSQL", &pg.process, &pg.log, || {
                probe(
                    pg_command("pg_isready").args(["-q", "-h", "127.0.0.1", "-p", &port]),
                    PROBE_TIMEOUT,
                    |_| true,
                )
            });
            match ready {
                Ok(()) => return pg,
                Err(e) => retry_on_port_clash("PostgreSQL", e, &pg.log, attempt),
            }
        }
        unreachable!()
    }

    /// A connection URL without the password (it is in [`Postgres::env`]).
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// PGHOST, PGPORT, PGUSER, PGPASSWORD for psql, pg_dump, pgbench... or `vault`.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("PGHOST", "127.0.0.1".to_owned()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", "postgres".to_owned()),
            ("PGPASSWORD", PG_PASSWORD.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// A client tool of [`pg_bin`] (psql, pg_dump, pgbench...) with [`Postgres::env`]
    /// set and no other PG* variables.
    pub fn command(&self, tool: &str) -> Command {
        let mut cmd = pg_command(tool);
        cmd.envs(self.env());
        cmd
    }

    /// Runs `sql` (any number of statements, psql meta-commands too) in database `db`;
    /// its output unaligned, tuples only, trimmed. Stops at the first error.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = run(
            self.command("psql")
                .args(["-X", "-q", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1"])
                .args(["-d", db, "-f", "-"]),
            Some(sql),
        );
        result_of(&format!("psql -d {db}"), out)
    }

    /// [`Postgres::try_psql`], panicking with psql's stderr on failure.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql)
            .unwrap_or_else(|e| panic!("{e}\nSQL: {sql}"))
    }

    pub fn createdb(&self, name: &str) {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\"")),
        );
    }

    /// Immediate shutdown (`pg_ctl stop -m immediate`, no checkpoint: like a crash for
    /// the clients), waiting for the postmaster to exit. Does nothing the second time.
    pub fn stop_now(&self) {
        if !self.process.running() {
            return;
        }
        let stopped = run(
            unprivileged(&mut pg_command("pg_ctl"))
                .current_dir(self.tmp.path())
                .arg("-D")
                .arg(&self.data)
                .args(["stop", "-m", "immediate", "-w", "-t", "60", "-s"]),
            None,
        )
        .status
        .success();
        if !(stopped && self.process.wait_exit(Duration::from_secs(10))) {
            self.process.kill();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_now();
    }
}

// --- MariaDB ----------------------------------------------------------------------

/// Options for speed (and small files) given to the bootstrap and to the server.
const MARIADB_FAST: &[&str] = &[
    "--skip-log-bin",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
    "--innodb-log-file-size=8M",
    "--innodb-buffer-pool-size=64M",
    "--skip-name-resolve",
];

/// A MariaDB server of its own: `root` with [`MARIADB_PASSWORD`] over TCP on
/// 127.0.0.1:`port` (the clients read it from a 0600 defaults file).
pub struct Mariadb {
    pub port: u16,
    pub datadir: PathBuf,
    /// The server's Unix socket (in the private temporary directory).
    pub socket: PathBuf,
    /// The server's stdout/stderr (its error log).
    pub log: PathBuf,
    defaults: PathBuf,
    process: ServerProcess,
    tmp: TempDir,
}

impl Mariadb {
    pub fn start() -> Mariadb {
        let mariadbd = require_tool("mariadbd", "mariadb-server");
        let install_db = require_tool("mariadb-install-db", "mariadb-server");
        let admin = require_tool("mariadb-admin", "mariadb-client");
        require_tool("mariadb", "mariadb-client");
        let tmp = scratch("vault-mariadb-", true);
        let datadir = tmp.path().join("data");
        // --auth-root-authentication-method=normal: root@localhost without a password
        // on the socket until the set-up below (unix_socket would tie it to OS root).
        let out = run(
            unprivileged(&mut Command::new(&install_db))
                .current_dir(tmp.path())
                .arg("--no-defaults")
                .arg(format!("--datadir={}", datadir.display()))
                .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
                .arg(format!("--tmpdir={}", tmp.path().display()))
                .args(MARIADB_FAST),
            None,
        );
        if let Err(e) = result_of("mariadb-install-db", out) {
            panic!("{e}");
        }

        let mut db = Mariadb {
            port: 0,
            socket: tmp.path().join("sock"),
            log: tmp.path().join("mariadbd.log"),
            defaults: tmp.path().join("client.cnf"),
            datadir,
            process: ServerProcess::none(),
            tmp,
        };
        for attempt in 0..PORT_ATTEMPTS {
            db.port = free_port();
            let port = db.port.to_string();
            db.process.spawn(
                unprivileged(&mut Command::new(&mariadbd))
                    .current_dir(db.tmp.path())
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", db.datadir.display()))
                    .arg(format!("--port={port}"))
                    .arg("--bind-address=127.0.0.1")
                    .arg(format!("--socket={}", db.socket.display()))
                    .arg(format!(
                        "--pid-file={}",
                        db.tmp.path().join("pid").display()
                    ))
                    .arg(format!("--tmpdir={}", db.tmp.path().display()))
                    .args(MARIADB_FAST),
                &db.log,
            );
            // `ping` succeeds once the server answers over TCP, whatever the credentials.
            let ready = wait_ready("MariaDB", &db.process, &db.log, || {
                probe(
                    Command::new(&admin)
                        .args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1"])
                        .args(["-P", &port, "-u", "root", "ping"]),
                    PROBE_TIMEOUT,
                    |_| true,
                )
            });
            match ready {
                Ok(()) => break,
                Err(e) => retry_on_port_clash("MariaDB", e, &db.log, attempt),
            }
        }

        // Passwords for root over TCP (127.0.0.1, with --skip-name-resolve) and on the
        // socket; the other root accounts of the bootstrap (::1, the host name) go.
        let others = db.socket_sql(
            "SELECT CONCAT(QUOTE(User), '@', QUOTE(Host)) FROM mysql.user \
             WHERE Host NOT IN ('localhost', '127.0.0.1') AND User <> 'mariadb.sys'",
        );
        let mut setup = String::new();
        for account in others.lines().filter(|l| !l.is_empty()) {
            setup += &format!("DROP USER {account};\n");
        }
        setup += &format!(
            "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';\n\
             ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '{MARIADB_PASSWORD}';\n\
             GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n\
             ALTER USER 'root'@'localhost' IDENTIFIED BY '{MARIADB_PASSWORD}';\n\
             FLUSH PRIVILEGES;\n"
        );
        db.socket_sql(&setup);
        write_private(
            &db.defaults,
            &format!(
                "[client]\nuser=root\npassword=\"{MARIADB_PASSWORD}\"\nhost=127.0.0.1\n\
                 port={}\nprotocol=TCP\n",
                db.port
            ),
        );
        db.sql(None, "SELECT 1");
        db
    }

    /// Set-up statements as root@localhost on the socket, before root has a password.
    fn socket_sql(&self, sql: &str) -> String {
        let out = run(
            Command::new(require_tool("mariadb", "mariadb-client"))
                .arg("--no-defaults")
                .arg(format!("--socket={}", self.socket.display()))
                .args(["--protocol=SOCKET", "-u", "root", "-N", "-B"]),
            Some(sql),
        );
        result_of("mariadb (set-up on the socket)", out).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The client defaults file (0600: user root, the password, 127.0.0.1, the port),
    /// for `--defaults-file=` (which must come first).
    pub fn defaults_file(&self) -> &Path {
        &self.defaults
    }

    /// A MariaDB client tool (mariadb, mariadb-dump, mariadb-admin...) with
    /// `--defaults-file` as its first argument: connected to this server as root.
    pub fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(require_tool(tool, "mariadb-client"));
        cmd.arg(format!("--defaults-file={}", self.defaults.display()));
        cmd
    }

    /// Runs `sql` (batch mode: tab-separated, no column names) as root over TCP, in
    /// database `db` if given; trimmed output. Stops at the first error.
    pub fn try_sql(&self, db: Option<&str>, sql: &str) -> Result<String, String> {
        let mut cmd = self.command("mariadb");
        cmd.args(["-N", "-B"]);
        if let Some(db) = db {
            cmd.arg(format!("--database={db}"));
        }
        result_of("mariadb", run(&mut cmd, Some(sql)))
    }

    /// [`Mariadb::try_sql`], panicking with the client's stderr on failure.
    pub fn sql(&self, db: Option<&str>, sql: &str) -> String {
        self.try_sql(db, sql)
            .unwrap_or_else(|e| panic!("{e}\nSQL: {sql}"))
    }

    /// SIGKILL to the server (and reaped); does nothing the second time.
    pub fn stop_now(&self) {
        self.process.kill();
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        self.stop_now();
    }
}

// --- Redis ------------------------------------------------------------------------

/// A Redis server of its own with `requirepass` [`REDIS_PASSWORD`], on
/// 127.0.0.1:`port`, persisting nothing by itself (`SAVE` writes `dir/dump.rdb`).
pub struct Redis {
    pub port: u16,
    /// Its `--dir`: `dump.rdb` is here.
    pub dir: PathBuf,
    /// The server's stdout/stderr.
    pub log: PathBuf,
    process: ServerProcess,
    tmp: TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with(None)
    }

    /// A server loading `rdb` (copied into its own directory as `dump.rdb`).
    pub fn start_on_rdb(rdb: &Path) -> Redis {
        Redis::start_with(Some(rdb))
    }

    fn start_with(rdb: Option<&Path>) -> Redis {
        let server = require_tool("redis-server", "redis-server");
        require_tool("redis-cli", "redis-tools");
        let tmp = scratch("vault-redis-", false);
        let dir = tmp.path().join("data");
        fs::create_dir(&dir).unwrap();
        if let Some(rdb) = rdb {
            fs::copy(rdb, dir.join("dump.rdb"))
                .unwrap_or_else(|e| panic!("cannot copy {}: {e}", rdb.display()));
        }
        let mut redis = Redis {
            port: 0,
            log: tmp.path().join("redis.log"),
            dir,
            process: ServerProcess::none(),
            tmp,
        };
        for attempt in 0..PORT_ATTEMPTS {
            redis.port = free_port();
            redis.process.spawn(
                Command::new(&server)
                    .current_dir(&redis.dir)
                    .args(["--port", &redis.port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--requirepass", REDIS_PASSWORD])
                    .arg("--dir")
                    .arg(&redis.dir)
                    .args(["--dbfilename", "dump.rdb", "--save", ""])
                    .args(["--appendonly", "no", "--daemonize", "no"]),
                &redis.log,
            );
            // PONG only once the RDB is loaded (LOADING before).
            let ready = wait_ready("Redis", &redis.process, &redis.log, || {
                probe(redis.command().arg("PING"), PROBE_TIMEOUT, |out| {
                    out == "PONG"
                })
            });
            match ready {
                Ok(()) => return redis,
                Err(e) => retry_on_port_clash("Redis", e, &redis.log, attempt),
            }
        }
        unreachable!()
    }

    /// `redis-cli -h 127.0.0.1 -p port` without the password (for raw use, or to check
    /// it is needed); add `.env("REDISCLI_AUTH", REDIS_PASSWORD)` to authenticate.
    pub fn command_noauth(&self) -> Command {
        let mut cmd = Command::new(require_tool("redis-cli", "redis-tools"));
        cmd.env_remove("REDISCLI_AUTH")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        cmd
    }

    /// `redis-cli -e -h 127.0.0.1 -p port` authenticated through REDISCLI_AUTH
    /// (`-e`: an error reply fails the command).
    pub fn command(&self) -> Command {
        let mut cmd = self.command_noauth();
        cmd.env("REDISCLI_AUTH", REDIS_PASSWORD).arg("-e");
        cmd
    }

    /// One command; its reply (raw, trimmed), or the error reply / client error.
    pub fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let out = run(self.command().args(args), None);
        result_of(&format!("redis-cli {args:?}"), out)
    }

    /// [`Redis::try_cli`], panicking on an error.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// SIGKILL to the server (and reaped); does nothing the second time.
    pub fn stop_now(&self) {
        self.process.kill();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop_now();
    }
}
