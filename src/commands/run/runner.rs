//! One run of a unit: `vault backup JOB` or `vault verify` as a child process of the
//! scheduler, exactly as cron or a systemd timer would run it.
//!
//! A child per run keeps the scheduler small and steady between runs (a backup's
//! buffers go back to the system with its process), lets a run fail or crash without
//! taking the scheduler with it, and gives every run the same locks, pings, manifests
//! and exit codes as a hand-started one. The child is in its own process group, so a
//! Ctrl-C meant for the scheduler does not cut its runs short; at shutdown the
//! scheduler gives them their grace time, then sends SIGTERM, which a backup answers
//! the way it always does (no manifest, the upload aborted, a fail ping).
//!
//! A run reads the configuration the scheduler has in force (loaded at start or at the
//! last SIGHUP that found it valid) on its standard input, not the file as it is now:
//! a file edited into something invalid, and so refused at SIGHUP, must not stop the
//! runs the scheduler goes on scheduling from the configuration it kept.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::watch;

use super::plan::Unit;
use crate::cli::LogFormat;

/// Where the scheduler is in its life; runs watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running,
    /// SIGTERM or SIGINT: nothing new starts; running children finish.
    Draining,
    /// The grace time is over: running children are sent SIGTERM.
    Terminating,
}

/// How long a child may take to stop after SIGTERM before it is killed: a backup
/// aborts its upload within 10 s.
const STOP_WAIT: Duration = Duration::from_secs(15);

/// Lines of a child's stderr kept for the failure message.
const TAIL_LINES: usize = 8;

/// How the scheduler starts its children.
#[derive(Debug)]
pub struct Launcher {
    pub exe: PathBuf,
    /// The config file: it names the configuration and anchors its relative paths.
    pub config: PathBuf,
    /// The text of the configuration in force, which each run reads.
    pub config_text: Mutex<Arc<str>>,
    pub verbose: u8,
    pub log_format: LogFormat,
}

/// What one child did.
#[derive(Debug)]
pub struct Ran {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// Its stdout (`--json`).
    pub stdout: Vec<u8>,
    /// The last lines of its stderr.
    pub tail: Vec<String>,
    pub took: Duration,
    /// It was sent SIGTERM at shutdown.
    pub stopped: bool,
}

impl Launcher {
    /// Puts the configuration read from `text` in force for the runs started from now.
    pub fn set_config_text(&self, text: String) {
        *self.config_text.lock().unwrap_or_else(|e| e.into_inner()) = text.into();
    }

    /// Runs `unit` once and waits for it; at [`Phase::Terminating`] sends it SIGTERM.
    pub async fn run(
        &self,
        unit: &Unit,
        phase: &mut watch::Receiver<Phase>,
    ) -> std::io::Result<Ran> {
        let started = Instant::now();
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--config-stdin")
            .arg("--json");
        if self.verbose > 0 {
            cmd.arg(format!("-{}", "v".repeat(self.verbose as usize)));
        }
        if self.log_format == LogFormat::Json {
            cmd.args(["--log-format", "json"]);
        }
        cmd.args(unit.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let pid = child.id();
        // The configuration, then end of file. A child that exits without reading it
        // all only makes this write fail.
        let text = self
            .config_text
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut stdin = child.stdin.take().expect("piped");
        tokio::spawn(async move {
            let _ = stdin.write_all(text.as_bytes()).await;
        });
        let mut stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let key = unit.key();
        // The child's stderr goes to the scheduler's log, a line at a time, naming the
        // unit; the last lines are kept for the failure message.
        let lines = tokio::spawn(async move {
            let mut tail: Vec<String> = Vec::new();
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(unit = %key, "{line}");
                if tail.len() == TAIL_LINES {
                    tail.remove(0);
                }
                tail.push(line);
            }
            tail
        });
        let out = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = stdout.read_to_end(&mut buf).await;
            buf
        });
        let mut stopped = false;
        let status = tokio::select! {
            status = child.wait() => status?,
            _ = until(phase, |p| *p == Phase::Terminating) => {
                stopped = true;
                if let Some(pid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                }
                match tokio::time::timeout(STOP_WAIT, child.wait()).await {
                    Ok(status) => status?,
                    Err(_) => {
                        tracing::warn!(unit = %unit.key(), "did not stop within {}s of SIGTERM: killed", STOP_WAIT.as_secs());
                        child.kill().await?;
                        child.wait().await?
                    }
                }
            }
        };
        Ok(Ran {
            code: status.code(),
            stdout: out.await.unwrap_or_default(),
            tail: lines.await.unwrap_or_default(),
            took: started.elapsed(),
            stopped,
        })
    }
}

/// Resolves when `phase` satisfies `reached` (or its sender is gone). A plain future,
/// not the borrow `watch::Receiver::wait_for` returns, so that it can sit in a
/// `select!` of a task that moves between threads.
pub async fn until(phase: &mut watch::Receiver<Phase>, reached: impl Fn(&Phase) -> bool) {
    let _ = phase.wait_for(reached).await;
}

/// The stored size of the backup a `vault --json backup` run reports.
pub fn backup_size(stdout: &[u8]) -> Option<u64> {
    let report: serde_json::Value = serde_json::from_slice(stdout).ok()?;
    report["jobs"]
        .as_array()?
        .iter()
        .filter_map(|j| j["manifest"]["data"]["size"].as_u64())
        .reduce(|a, b| a + b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backup_size_comes_from_the_json_report() {
        let out = br#"{"jobs":[{"job":"app","ok":true,"manifest":{"data":{"size":1234}}}]}"#;
        assert_eq!(backup_size(out), Some(1234));
        assert_eq!(backup_size(br#"{"jobs":[{"job":"app","ok":false}]}"#), None);
        assert_eq!(backup_size(b"not json"), None);
    }
}
