//! `command`: any program's standard output.
//!
//! The program runs without a shell, with stdin closed. Its stderr is drained on a
//! thread (so a chatty child cannot block) and its tail kept for error messages. After
//! end of file, `finish` waits for the exit status: non-zero, or death by a signal,
//! fails the backup. Dropped unfinished (another stage failed), the child is killed.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use anyhow::{Context, anyhow};

use super::DumpStream;

/// The last bytes of stderr kept for messages.
const STDERR_TAIL: usize = 16 * 1024;

pub fn open(
    argv: &[String],
    env: &BTreeMap<String, String>,
    fail_on_stderr: bool,
) -> anyhow::Result<Box<dyn DumpStream>> {
    let program = &argv[0];
    let mut child = Command::new(program)
        .args(&argv[1..])
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{program}`"))?;
    let stdout = child.stdout.take().expect("stdout piped");
    let mut stderr = child.stderr.take().expect("stderr piped");
    let stderr_thread = std::thread::Builder::new()
        .name("command-stderr".into())
        .spawn(move || {
            let mut tail = VecDeque::with_capacity(STDERR_TAIL);
            let mut total = 0u64;
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                total += n as u64;
                tail.extend(&buf[..n]);
                let excess = tail.len().saturating_sub(STDERR_TAIL);
                tail.drain(..excess);
            }
            (
                total,
                String::from_utf8_lossy(tail.make_contiguous()).into_owned(),
            )
        })?;
    Ok(Box::new(CommandStream {
        program: program.clone(),
        child: Some(child),
        stdout,
        stderr: Some(stderr_thread),
        fail_on_stderr,
    }))
}

struct CommandStream {
    program: String,
    child: Option<Child>,
    stdout: ChildStdout,
    stderr: Option<JoinHandle<(u64, String)>>,
    fail_on_stderr: bool,
}

impl Read for CommandStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stdout.read(buf)
    }
}

impl DumpStream for CommandStream {
    fn finish(mut self: Box<Self>) -> anyhow::Result<()> {
        let mut child = self.child.take().expect("finish runs once");
        let status = child.wait().context("cannot wait for the command")?;
        let (stderr_len, tail) = self
            .stderr
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        let tail = tail.trim();
        let with_stderr = |msg: String| {
            if tail.is_empty() {
                anyhow!("{msg}")
            } else {
                anyhow!("{msg}; its stderr ends with:\n{tail}")
            }
        };
        if !status.success() {
            return Err(with_stderr(format!("`{}` failed ({status})", self.program)));
        }
        if stderr_len > 0 {
            if self.fail_on_stderr {
                return Err(with_stderr(format!(
                    "`{}` wrote {stderr_len} bytes to stderr (fail_on_stderr is set)",
                    self.program
                )));
            }
            tracing::warn!(program = %self.program, "the command wrote to stderr: {tail}");
        }
        Ok(())
    }
}

impl Drop for CommandStream {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
