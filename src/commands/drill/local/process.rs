//! The processes of a scratch server: the server itself (a child of vault, leading a
//! process group of its own, stopped and reaped), its set-up tool, and the clients that
//! probe whether it is ready.

use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};

use super::{KILL_GRACE, PROBE_TIMEOUT, STOP_GRACE, UNPRIVILEGED, last_lines};
use crate::source::child::Spawn;

/// A server process, child of vault and leader of its own process group.
pub(super) struct ServerProcess {
    pub(super) child: Child,
    /// For messages.
    binary: PathBuf,
    /// What asks it to shut down.
    signal: Signal,
    /// Set once reaped.
    status: Option<ExitStatus>,
    /// Set when even SIGKILL did not end it: dropping it does not wait again.
    abandoned: bool,
}

impl ServerProcess {
    pub(super) fn spawn(
        cmd: &mut Command,
        binary: &Path,
        signal: Signal,
        log: &Path,
    ) -> anyhow::Result<ServerProcess> {
        let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| anyhow!("cannot start `{}`: {e}", binary.display()))?;
        Ok(ServerProcess {
            child,
            binary: binary.to_path_buf(),
            signal,
            status: None,
            abandoned: false,
        })
    }

    fn pid(&self) -> Pid {
        Pid::from_child(&self.child)
    }

    /// Whether the process has exited, leaving it unreaped: while it is a zombie its
    /// process id, and so its group's, cannot be reused.
    fn has_exited(&self) -> bool {
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        // An error (ECHILD) means there is nothing left to wait for.
        !matches!(
            rustix::process::waitid(WaitId::Pid(self.pid()), options),
            Ok(None)
        )
    }

    fn exited_within(&self, limit: Duration) -> bool {
        let started = Instant::now();
        loop {
            if self.has_exited() {
                return true;
            }
            if started.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills what is left in its group (a fork still saving) and reaps it; its exit
    /// status.
    fn reap(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        // ESRCH: nothing left in the group.
        let _ = rustix::process::kill_process_group(self.pid(), Signal::KILL);
        let status = self
            .child
            .wait()
            .with_context(|| format!("cannot wait for `{}`", self.binary.display()))?;
        self.status = Some(status);
        Ok(status)
    }

    /// Its exit status if it has exited (then reaped), else None.
    pub(super) fn reap_if_exited(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.status.is_none() && !self.has_exited() {
            return Ok(None);
        }
        self.reap().map(Some)
    }

    /// Its shutdown signal; after [`STOP_GRACE`] SIGKILL to it, its group and its
    /// children; reaped.
    pub(super) fn stop(&mut self) -> anyhow::Result<()> {
        if self.status.is_some() || self.abandoned {
            return Ok(());
        }
        // ESRCH cannot happen for an unreaped child; anything else shows below.
        let _ = rustix::process::kill_process(self.pid(), self.signal);
        if !self.exited_within(STOP_GRACE) {
            tracing::warn!(
                "`{}` (pid {}) did not stop within {} s: killing it",
                self.binary.display(),
                self.child.id(),
                STOP_GRACE.as_secs()
            );
            // PostgreSQL's processes lead sessions of their own: the group does not
            // hold them, the list of the postmaster's children does. (When the
            // postmaster dies otherwise, they notice and exit by themselves.)
            let children = children_of(self.pid());
            let _ = rustix::process::kill_process_group(self.pid(), Signal::KILL);
            for child in children {
                let _ = rustix::process::kill_process(child, Signal::KILL);
            }
            if !self.exited_within(KILL_GRACE) {
                self.abandoned = true;
                bail!(
                    "`{}` (pid {}) did not stop, even after SIGKILL",
                    self.binary.display(),
                    self.child.id()
                );
            }
        }
        self.reap()?;
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!("{e:#}");
        }
    }
}

/// The children of process `pid`, from /proc (none where it cannot be read).
fn children_of(pid: Pid) -> Vec<Pid> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", pid.as_raw_nonzero())) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|n| Pid::from_raw(n.parse().ok()?))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Whether vault runs as root (effective uid 0).
pub(super) fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A server program or its set-up tool: in `dir`, as the servers' user when vault runs
/// as root, in a process group of its own, with an environment of its own.
pub(super) fn server_command(program: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("TMPDIR", dir)
        // English messages: "Address already in use" is looked for in the log.
        .env("LC_ALL", "C")
        .process_group(0);
    if running_as_root() {
        cmd.uid(UNPRIVILEGED).gid(UNPRIVILEGED);
    }
    cmd
}

/// Runs a set-up tool (initdb, mariadb-install-db) to its end.
pub(super) fn run_setup(cmd: &mut Command, binary: &Path) -> anyhow::Result<()> {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| anyhow!("cannot start `{}`: {e}", binary.display()))?;
    if status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    bail!(
        "`{}` failed ({status}); the last lines of its output:\n{}",
        binary.display(),
        last_lines(&text)
    )
}

/// Runs a client probe with a deadline (something else may hold the port and never
/// answer): whether it succeeded and its stdout; None if it could not run in time.
pub(super) fn probe(spawn: &Spawn) -> Option<(bool, String)> {
    let mut child = Command::new(&spawn.program)
        .args(&spawn.args)
        .envs(spawn.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                child.stdout.take()?.read_to_string(&mut out).ok()?;
                return Some((status.success(), out.trim().to_string()));
            }
            Ok(None) if started.elapsed() < PROBE_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}
