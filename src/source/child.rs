//! Child processes of the engines: a dump tool's stdout as a [`DumpStream`], a restore
//! tool's stdin as a [`ChildSink`], and short queries ([`run`]).
//!
//! All three run the program without a shell and with stdin closed (or piped), drain
//! stderr on a thread so a chatty child cannot block, keep its tail for messages, and
//! fail on a non-zero exit or death by a signal. Secrets reach a child only through its
//! environment or a private file, never its command line; [`Spawn`] has no `Debug` so
//! an environment value cannot be logged by accident. A child left behind by a failure
//! elsewhere is killed on drop.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

use anyhow::{Context, anyhow};

use super::DumpStream;

/// The last bytes of stderr kept for messages.
const STDERR_TAIL: usize = 16 * 1024;
/// The bytes of one stderr line kept for messages. A client that echoes a failing
/// statement (an 80 MiB hex INSERT) would otherwise fill the tail with it and push out
/// the line that says what went wrong.
const LINE_KEPT: usize = 300;

/// A program to run.
pub struct Spawn {
    /// What messages call it (`pg_dump`).
    pub name: String,
    pub program: std::path::PathBuf,
    pub args: Vec<String>,
    /// Added to vault's own environment (passwords go here).
    pub env: Vec<(String, String)>,
    /// Fail when the program writes anything to stderr.
    pub fail_on_stderr: bool,
    /// The program reports progress on stderr: log it at debug level, not as a warning.
    pub chatty: bool,
    /// Kept alive until the child has exited (a private temp dir with a defaults file).
    pub guard: Option<Box<dyn Send>>,
}

impl Spawn {
    pub fn new(name: &str, program: impl Into<std::path::PathBuf>) -> Spawn {
        Spawn {
            name: name.to_string(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            fail_on_stderr: false,
            chatty: false,
            guard: None,
        }
    }

    pub fn arg(mut self, a: impl Into<String>) -> Spawn {
        self.args.push(a.into());
        self
    }

    pub fn args(mut self, a: impl IntoIterator<Item = impl Into<String>>) -> Spawn {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: &str, v: impl Into<String>) -> Spawn {
        self.env.push((k.to_string(), v.into()));
        self
    }

    fn command(&self, stdin: Stdio, stdout: Stdio) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped());
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn start(&self, stdin: Stdio, stdout: Stdio) -> anyhow::Result<(Child, StderrTail)> {
        let mut child = self.command(stdin, stdout).spawn().map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::NotFound {
                " (is it installed and on PATH?)"
            } else {
                ""
            };
            anyhow!(
                "cannot start `{}` ({}): {e}{hint}",
                self.name,
                self.program.display()
            )
        })?;
        let stderr = StderrTail::drain(child.stderr.take().expect("stderr piped"))?;
        Ok((child, stderr))
    }
}

/// A thread that reads a child's stderr to the end, keeping the tail.
struct StderrTail(Option<JoinHandle<(u64, String)>>);

impl StderrTail {
    fn drain(mut stderr: impl Read + Send + 'static) -> io::Result<StderrTail> {
        let handle = std::thread::Builder::new()
            .name("child-stderr".into())
            .spawn(move || {
                let mut tail = Lines::default();
                let mut total = 0u64;
                let mut buf = [0u8; 8192];
                while let Ok(n) = stderr.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                    tail.push(&buf[..n]);
                }
                (total, tail.finish())
            })?;
        Ok(StderrTail(Some(handle)))
    }

    /// Bytes written and the tail, once the child has closed stderr.
    fn collect(&mut self) -> (u64, String) {
        self.0
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

/// The last [`STDERR_TAIL`] bytes of a stream of lines, each line cut after
/// [`LINE_KEPT`] bytes with a note saying how much was cut.
#[derive(Default)]
struct Lines {
    kept: VecDeque<u8>,
    /// The first bytes of the line being read.
    line: Vec<u8>,
    /// Bytes of that line dropped so far.
    cut: u64,
}

impl Lines {
    fn push(&mut self, mut data: &[u8]) {
        while let Some(at) = data.iter().position(|&b| b == b'\n') {
            self.extend_line(&data[..at]);
            self.end_line(true);
            data = &data[at + 1..];
        }
        self.extend_line(data);
    }

    fn extend_line(&mut self, part: &[u8]) {
        let take = LINE_KEPT.saturating_sub(self.line.len()).min(part.len());
        self.line.extend_from_slice(&part[..take]);
        self.cut += (part.len() - take) as u64;
    }

    fn end_line(&mut self, newline: bool) {
        let mut line = std::mem::take(&mut self.line);
        let mut cut = std::mem::take(&mut self.cut);
        if cut > 0 {
            // Cut between characters, not inside one.
            if let Err(e) = std::str::from_utf8(&line)
                && e.error_len().is_none()
            {
                cut += (line.len() - e.valid_up_to()) as u64;
                line.truncate(e.valid_up_to());
            }
            line.extend_from_slice(format!("… [{cut} more bytes of this line cut]").as_bytes());
        }
        self.kept.extend(line);
        if newline {
            self.kept.push_back(b'\n');
        }
        let excess = self.kept.len().saturating_sub(STDERR_TAIL);
        self.kept.drain(..excess);
    }

    fn finish(mut self) -> String {
        if !self.line.is_empty() || self.cut > 0 {
            self.end_line(false);
        }
        String::from_utf8_lossy(self.kept.make_contiguous()).into_owned()
    }
}

/// Waits for `child` and turns its exit status and stderr into a result.
fn judge(
    name: &str,
    status: ExitStatus,
    stderr: &mut StderrTail,
    fail_on_stderr: bool,
) -> anyhow::Result<String> {
    let (stderr_len, tail) = stderr.collect();
    let tail = tail.trim().to_string();
    let with_stderr = |msg: String| {
        if tail.is_empty() {
            anyhow!("{msg}")
        } else {
            anyhow!("{msg}; its stderr ends with:\n{tail}")
        }
    };
    if !status.success() {
        return Err(with_stderr(format!("`{name}` failed ({status})")));
    }
    if stderr_len > 0 && fail_on_stderr {
        return Err(with_stderr(format!(
            "`{name}` wrote {stderr_len} bytes to stderr (fail_on_stderr is set)"
        )));
    }
    Ok(tail)
}

/// Waits for the child (once) and judges its exit status and stderr.
fn wait_and_judge(
    child: &mut Option<Child>,
    spawn: &Spawn,
    stderr: &mut StderrTail,
) -> anyhow::Result<String> {
    let mut child = child.take().expect("a child is waited for once");
    let status = child
        .wait()
        .with_context(|| format!("cannot wait for `{}`", spawn.name))?;
    judge(&spawn.name, status, stderr, spawn.fail_on_stderr)
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Starts `spawn` and returns its stdout as a dump; `check` vets the stream's shape.
pub fn dump(
    spawn: Spawn,
    check: Option<super::shape::Shape>,
) -> anyhow::Result<Box<dyn DumpStream>> {
    let (mut child, stderr) = spawn.start(Stdio::null(), Stdio::piped())?;
    let stdout = child.stdout.take().expect("stdout piped");
    Ok(Box::new(ChildStream {
        child: Some(child),
        stdout: super::shape::Checked::new(stdout, check),
        stderr,
        spawn,
    }))
}

struct ChildStream {
    child: Option<Child>,
    stdout: super::shape::Checked<ChildStdout>,
    stderr: StderrTail,
    spawn: Spawn,
}

impl Read for ChildStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stdout.read(buf)
    }
}

impl DumpStream for ChildStream {
    fn finish(mut self: Box<Self>) -> anyhow::Result<()> {
        let tail = wait_and_judge(&mut self.child, &self.spawn, &mut self.stderr)?;
        self.stdout.verify(&self.spawn.name)?;
        if self.spawn.chatty {
            tracing::debug!(program = %self.spawn.name, "stderr: {tail}");
        } else if !tail.is_empty() {
            tracing::warn!(program = %self.spawn.name, "the command wrote to stderr: {tail}");
        }
        Ok(())
    }
}

impl Drop for ChildStream {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A restore tool reading the dump on its stdin.
pub struct ChildSink {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stderr: StderrTail,
    spawn: Spawn,
}

impl ChildSink {
    /// Starts `spawn` with stdin piped; its stdout goes to `stdout`.
    pub fn start(spawn: Spawn, stdout: Stdio) -> anyhow::Result<ChildSink> {
        let (mut child, stderr) = spawn.start(Stdio::piped(), stdout)?;
        let stdin = child.stdin.take();
        Ok(ChildSink {
            child: Some(child),
            stdin,
            stderr,
            spawn,
        })
    }

    /// Closes stdin and waits: the tool's exit status says whether it loaded the dump.
    pub fn finish(mut self) -> anyhow::Result<()> {
        drop(self.stdin.take());
        self.wait()
    }

    /// The dump failed its checks: kills the tool before it can see the end of its
    /// input, so it cannot commit what it has read.
    pub fn kill(mut self) {
        kill(&mut self.child);
        drop(self.stdin.take());
    }

    /// Writing to the tool failed: it stopped reading, so its own error is the root
    /// cause, not the broken pipe. Closes stdin, waits, and returns that error.
    pub fn failure(mut self) -> Option<anyhow::Error> {
        drop(self.stdin.take());
        wait_and_judge(&mut self.child, &self.spawn, &mut self.stderr).err()
    }

    fn wait(&mut self) -> anyhow::Result<()> {
        let tail = wait_and_judge(&mut self.child, &self.spawn, &mut self.stderr)?;
        if !tail.is_empty() {
            eprintln!("{}: {tail}", self.spawn.name);
        }
        Ok(())
    }
}

impl Write for ChildSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stdin
            .as_mut()
            .ok_or_else(|| io::Error::other("stdin closed"))?
            .write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.stdin.as_mut() {
            Some(s) => s.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for ChildSink {
    fn drop(&mut self) {
        // Kill first: closing stdin first would let the tool see an end of input and
        // commit what it has read.
        kill(&mut self.child);
        drop(self.stdin.take());
    }
}

/// Runs `spawn` to the end with `input` on stdin; returns stdout (trimmed).
pub fn run(spawn: &Spawn, input: &str) -> anyhow::Result<String> {
    let (mut child, mut stderr) = spawn.start(Stdio::piped(), Stdio::piped())?;
    let mut stdin = child.stdin.take().expect("stdin piped");
    let input = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout piped")
        .read_to_string(&mut out)?;
    let status = child.wait()?;
    let _ = writer.join();
    judge(&spawn.name, status, &mut stderr, false)?;
    Ok(out.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_stderr_line_is_cut_in_the_error() {
        // The useful line first, then a client echoing a huge statement: uncut, the
        // statement alone would fill the tail and the useful line would be lost.
        let script = "echo 'ERROR 2006 (HY000) at line 42: Server has gone away' >&2; \
                      printf 'INSERT INTO t VALUES (0x' >&2; \
                      head -c 100000 /dev/zero | tr '\\0' 'A' >&2; echo ')' >&2; \
                      echo 'last words' >&2; exit 3";
        let err = run(&Spawn::new("client", "sh").args(["-c", script]), "")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`client` failed"), "{err}");
        assert!(
            err.contains("ERROR 2006 (HY000) at line 42: Server has gone away\n"),
            "{err}"
        );
        assert!(
            err.contains("INSERT INTO t VALUES (0xAAAA")
                && err.contains("… [99725 more bytes of this line cut]\nlast words"),
            "{err}"
        );
        assert!(err.len() < 600, "{} bytes: {err}", err.len());
    }

    #[test]
    fn lines_are_cut_between_characters() {
        let mut lines = Lines::default();
        let long = "é".repeat(400); // 800 bytes; byte 300 starts a character
        lines.push(format!("x{long}\nshort\n").as_bytes());
        lines.push(b"no newline at the end");
        let text = lines.finish();
        let first = text.lines().next().unwrap();
        assert!(
            first.starts_with(&format!("x{}", "é".repeat(149))),
            "{first}"
        );
        assert!(
            first.ends_with("é… [502 more bytes of this line cut]"),
            "{first}"
        );
        assert!(text.ends_with("\nshort\nno newline at the end"), "{text}");
    }
}
