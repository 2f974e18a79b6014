//! The processes on this machine, read from /proc: for tests that check what vault
//! started and that nothing of it is left.

#![allow(dead_code)]

use std::fs;
use std::path::PathBuf;
use std::process::Command;

/// A process, as /proc shows it.
#[derive(Debug)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    /// argv[0]'s base name.
    pub name: String,
    pub cmdline: String,
    pub cwd: Option<PathBuf>,
}

/// Every process on the machine.
pub fn processes() -> Vec<Proc> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid …": comm may hold spaces, so split after ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let raw = fs::read(e.path().join("cmdline")).unwrap_or_default();
        let argv0 = raw.split(|b| *b == 0).next().unwrap_or_default();
        let name = String::from_utf8_lossy(argv0)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_owned();
        out.push(Proc {
            pid,
            ppid,
            name,
            cmdline: String::from_utf8_lossy(&raw).replace('\0', " "),
            cwd: fs::read_link(e.path().join("cwd")).ok(),
        });
    }
    out
}

/// A counter of /proc/PID/io (`rchar`, `wchar`, …) of `pid`; 0 once it is gone. For
/// pg_restore, `rchar` is how much of the archive it took from its stdin (what it
/// sends over the socket, `send(2)`, is not counted in `wchar`).
pub fn io_count(field: &str, pid: u32) -> u64 {
    let prefix = format!("{field}: ");
    fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// `kill -SIG PID`, insisting that it worked.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}
