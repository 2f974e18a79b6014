//! The processes on this machine, read from /proc: for tests that check what vault
//! started and that nothing of it is left.

#![allow(dead_code)]

use std::fs;
use std::path::PathBuf;

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
