//! Throwaway database servers for restore drills: PostgreSQL, MariaDB and Redis, each
//! started by vault in a private directory, on a free port of 127.0.0.1, with a random
//! password, and always stopped and removed again.
//!
//! - The directory (0700) is under `$TMPDIR`. When vault runs as root the server and its
//!   set-up tool run as nobody/nogroup (65534), which then owns the directory, so it
//!   must be able to reach it: when `$TMPDIR` is not searchable by others, `/tmp` is
//!   used instead. nobody is shared with whatever else drops to it; a scratch URL
//!   (`[drill] scratch = "postgresql://…"`) is the choice for stricter isolation.
//! - The password never appears on a command line: the servers read it from a 0600 file
//!   (initdb's `--pwfile`, mariadbd's `--init-file`, `redis.conf`), the clients from
//!   their environment or a private defaults file (see [`Endpoint`]). The servers get an
//!   environment of their own: nothing of vault's (store credentials, PGPASSWORD)
//!   reaches a process of another user.
//! - A server leads a process group of its own: a Ctrl-C at the terminal reaches vault
//!   only, which stops the server in order. The stop is its shutdown signal first, then
//!   after [`STOP_GRACE`] SIGKILL to it, its group and its children, then the server is
//!   reaped. Drop does the same, so a failed or interrupted drill that unwinds leaves no
//!   process, port or directory behind. Only a SIGKILL of vault itself can; the
//!   directory then remains, readable by its owner.
//! - The settings are for a throwaway copy (no fsync, no doublewrite buffer, no binary
//!   log): a crash can only lose data that is deleted after the drill anyway.

mod endpoint;
mod mariadb;
mod postgres;
mod process;
mod redis;

use std::fmt;
use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use rand::Rng;
use rustix::process::Signal;

use crate::source::Scratch;
pub use endpoint::Endpoint;
use process::{ServerProcess, running_as_root};

/// How long a server may take to accept connections (not counting a Redis server that
/// already answers while it loads its dump: that takes as long as the dump is large).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to stop after its shutdown signal, before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a SIGKILLed server may take to be gone.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// Starts retried on another port when something took the free one meanwhile.
const PORT_ATTEMPTS: usize = 5;
const POLL: Duration = Duration::from_millis(50);
/// How long one readiness probe (a client asking `SELECT 1` or `PING`) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// nobody/nogroup: the servers' user and group when vault runs as root.
const UNPRIVILEGED: u32 = 65534;
/// Lines of a server's log quoted when it fails to start.
const LOG_LINES: usize = 30;

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalKind {
    Postgres,
    Mariadb,
    Redis,
}

impl LocalKind {
    pub fn name(self) -> &'static str {
        match self {
            LocalKind::Postgres => "postgres",
            LocalKind::Mariadb => "mariadb",
            LocalKind::Redis => "redis",
        }
    }
}

impl fmt::Display for LocalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A database server vault started for a drill: private dir (0700) under $TMPDIR,
/// listening on 127.0.0.1:<free port> only, a random password (never on a command
/// line: files 0600 in the private dir / env of the client), run as uid/gid 65534
/// (nobody/nogroup) when vault runs as root (it then owns the dir). Stopped (its
/// shutdown signal, then SIGKILL after 10 s) and its dir removed on drop, on failure,
/// and when the drill is interrupted (Drop runs: the caller keeps it on the stack / in
/// the task).
pub struct LocalServer {
    kind: LocalKind,
    port: u16,
    /// Never printed (no `Debug` shows it).
    password: String,
    /// As the server reports it (`SHOW server_version`, `VERSION()`, `redis_version`).
    version: String,
    /// PostgreSQL: the client tools (psql, pg_restore) next to the server binaries.
    client_bin: Option<PathBuf>,
    /// None before the first start and after a stop.
    process: Option<ServerProcess>,
    /// None after a stop.
    scratch: Option<Scratch>,
    dir: PathBuf,
}

impl LocalServer {
    /// Starts one; `bin_dir` holds the server binaries (else PATH; for PostgreSQL also
    /// `pg_config --bindir`, and /usr/lib/postgresql/<newest>/bin). `redis_rdb`: for
    /// Redis, the restored dump file, copied in as its dbfilename before start (the
    /// server loads it at start; appendonly no). Waits until it accepts connections
    /// (60 s), else an error naming the binary and the server's log tail.
    pub fn start(
        kind: LocalKind,
        bin_dir: Option<&Path>,
        redis_rdb: Option<&Path>,
    ) -> anyhow::Result<LocalServer> {
        if redis_rdb.is_some() && kind != LocalKind::Redis {
            bail!("a dump file to load at start is for a Redis server, not {kind}");
        }
        let scratch = Scratch::new_in(&parent_dir(), &format!("drill-{kind}"))?;
        let dir = scratch.path().to_path_buf();
        if running_as_root() {
            give_away(&dir)?;
        }
        let mut server = LocalServer {
            kind,
            port: 0,
            password: random_password(),
            version: String::new(),
            client_bin: None,
            process: None,
            scratch: Some(scratch),
            dir,
        };
        // On an error, dropping `server` stops whatever was started and removes the dir.
        match kind {
            LocalKind::Postgres => postgres::start(&mut server, bin_dir)?,
            LocalKind::Mariadb => mariadb::start(&mut server, bin_dir)?,
            LocalKind::Redis => redis::start(&mut server, bin_dir, redis_rdb)?,
        }
        tracing::debug!(
            kind = %kind,
            port = server.port,
            pid = server.pid(),
            dir = %server.dir.display(),
            "scratch server started"
        );
        Ok(server)
    }

    /// How to reach it: as `postgres` in `database` (default `postgres`), as MariaDB's
    /// `root` in `database` (none: the server), or Redis (`database` is ignored).
    pub fn endpoint(&self, database: Option<&str>) -> Endpoint {
        let host = Ipv4Addr::LOCALHOST.to_string();
        let password = Some(self.password.clone());
        match self.kind {
            LocalKind::Postgres => Endpoint::Postgres {
                host,
                port: self.port,
                user: "postgres".into(),
                password,
                database: database.unwrap_or("postgres").into(),
                bin_dir: self.client_bin.clone(),
            },
            LocalKind::Mariadb => Endpoint::Mysql {
                host,
                port: self.port,
                user: "root".into(),
                password,
                database: database.map(str::to_string),
            },
            LocalKind::Redis => Endpoint::Redis {
                host,
                port: self.port,
                password,
            },
        }
    }

    /// The server's process id (PostgreSQL: the postmaster); 0 once stopped.
    pub fn pid(&self) -> u32 {
        self.process.as_ref().map_or(0, |p| p.child.id())
    }

    /// The private directory (data, log, configuration).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// For reports: `local postgres 15.18 on 127.0.0.1:PORT`.
    pub fn description(&self) -> String {
        let version = self.version.split_whitespace().next().unwrap_or("");
        format!("local {} {version} on 127.0.0.1:{}", self.kind, self.port)
    }

    /// Stops it now and removes the dir; an error if it would not stop.
    pub fn stop(mut self) -> anyhow::Result<()> {
        if let Some(mut process) = self.process.take() {
            process.stop()?;
        }
        match self.scratch.take() {
            Some(scratch) => scratch.remove(),
            None => Ok(()),
        }
    }

    /// The server's stdout and stderr.
    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// Writes `name` in the private dir (0600), owned by the server's user.
    fn private_file(&self, name: &str, contents: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(name);
        write_private(&path, contents)?;
        Ok(path)
    }

    /// Runs the server `command(port)` on a free port until `ready`, trying another
    /// port when another process took it between the choice and the server's bind.
    fn serve(
        &mut self,
        binary: &Path,
        signal: Signal,
        mut command: impl FnMut(u16) -> anyhow::Result<Command>,
        ready: impl Fn(&LocalServer) -> Ready,
    ) -> anyhow::Result<()> {
        for attempt in 1..=PORT_ATTEMPTS {
            self.port = free_port()?;
            let mut cmd = command(self.port)?;
            self.process = Some(ServerProcess::spawn(&mut cmd, binary, signal, &self.log())?);
            let log = match self.wait_ready(&ready)? {
                Started::Ready => return Ok(()),
                Started::TimedOut => {
                    bail!(
                        "`{}` did not accept connections within {} s; the last lines of its \
                         log:\n{}",
                        binary.display(),
                        START_TIMEOUT.as_secs(),
                        log_tail(&self.log())
                    )
                }
                Started::Exited(status) => {
                    let log = fs::read_to_string(self.log()).unwrap_or_default();
                    let clash = log.contains("Address already in use");
                    if !(clash && attempt < PORT_ATTEMPTS) {
                        bail!(
                            "`{}` exited during start-up ({status}); the last lines of its \
                             log:\n{}",
                            binary.display(),
                            last_lines(&log)
                        );
                    }
                    log
                }
            };
            tracing::debug!(
                port = self.port,
                "port taken meanwhile, trying another: {}",
                last_lines(&log)
            );
        }
        unreachable!("the last attempt returns")
    }

    /// Polls `ready` until it holds, the process exits, or [`START_TIMEOUT`] passes.
    fn wait_ready(&mut self, ready: &impl Fn(&LocalServer) -> Ready) -> anyhow::Result<Started> {
        let started = Instant::now();
        let mut answered = false;
        loop {
            let process = self.process.as_mut().expect("spawned");
            if let Some(status) = process.reap_if_exited()? {
                self.process = None;
                return Ok(Started::Exited(status));
            }
            if port_open(self.port) {
                match ready(self) {
                    Ready::Yes => return Ok(Started::Ready),
                    Ready::Loading => answered = true,
                    Ready::No => {}
                }
            }
            if !answered && started.elapsed() > START_TIMEOUT {
                return Ok(Started::TimedOut);
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take()
            && let Err(e) = process.stop()
        {
            tracing::warn!("scratch {} server: {e:#}", self.kind);
        }
        if let Some(scratch) = self.scratch.take()
            && let Err(e) = scratch.remove()
        {
            tracing::warn!("scratch {} server: {e:#}", self.kind);
        }
    }
}

impl fmt::Debug for LocalServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalServer")
            .field("kind", &self.kind)
            .field("port", &self.port)
            .field("pid", &self.pid())
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// What a readiness probe found.
enum Ready {
    No,
    /// It answers but is not ready yet (Redis loading its dump): no deadline.
    Loading,
    Yes,
}

/// How a start attempt ended.
enum Started {
    Ready,
    TimedOut,
    Exited(ExitStatus),
}

/// Where the private dirs go: `$TMPDIR`, unless vault runs as root and the servers'
/// user could not reach a directory in it.
fn parent_dir() -> PathBuf {
    let tmp = std::env::temp_dir();
    if !running_as_root() {
        return tmp;
    }
    let searchable = |dir: &Path| {
        fs::metadata(dir).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o001 != 0)
    };
    if tmp.ancestors().all(searchable) {
        tmp
    } else {
        tracing::debug!(
            "{} is not searchable by nobody: scratch servers go to /tmp",
            tmp.display()
        );
        PathBuf::from("/tmp")
    }
}

/// Hands a path to the servers' user.
fn give_away(path: &Path) -> anyhow::Result<()> {
    std::os::unix::fs::chown(path, Some(UNPRIVILEGED), Some(UNPRIVILEGED))
        .with_context(|| format!("cannot hand {} to uid {UNPRIVILEGED}", path.display()))
}

/// Writes a file (0600, replacing any) owned by the servers' user.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let _ = fs::remove_file(path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    if running_as_root() {
        give_away(path)?;
    }
    Ok(())
}

/// 32 random letters and digits: no quoting trouble in any configuration file.
fn random_password() -> String {
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// A port of 127.0.0.1 that was free a moment ago (bound to port 0, read, released).
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("cannot find a free TCP port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// The first of `names` in `bin_dir` when one is given (it picks the version: nowhere
/// else then), else on PATH or in `also` (Debian keeps servers in /usr/sbin, which is
/// not on every PATH).
fn find_binary(names: &[&str], bin_dir: Option<&Path>, also: &[&str]) -> anyhow::Result<PathBuf> {
    let dirs: Vec<PathBuf> = match bin_dir {
        Some(dir) => vec![dir.to_path_buf()],
        None => std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .chain(also.iter().map(PathBuf::from))
            .collect(),
    };
    names
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
        .ok_or_else(|| match bin_dir {
            Some(dir) => anyhow!("no `{}` in bin_dir {}", names.join("` or `"), dir.display()),
            None => anyhow!(
                "`{}` not found on PATH{}: install it, or set [drill] bin_dir",
                names.join("` or `"),
                if also.is_empty() {
                    String::new()
                } else {
                    format!(" or in {}", also.join(", "))
                }
            ),
        })
}

/// The last [`LOG_LINES`] lines of `text`.
fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(LOG_LINES)..].join("\n")
}

/// The last lines of a log file.
fn log_tail(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => last_lines(&String::from_utf8_lossy(&bytes)),
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests;
