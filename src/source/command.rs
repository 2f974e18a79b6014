//! `command`: any program's standard output.
//!
//! The program runs without a shell, with stdin closed (see [`super::child`]). After
//! end of file, `finish` waits for the exit status: non-zero, or death by a signal,
//! fails the backup; output on stderr is logged, or fails the backup when
//! `fail_on_stderr` is set. Dropped unfinished (another stage failed), the child is
//! killed.
//!
//! A command job may name a `restore_command`, which `vault restore --to TARGET` runs
//! with the dump on its stdin (`{to}` in its arguments replaced by TARGET), so an engine
//! vault does not know natively is still a two-line config (`mongodump --archive` /
//! `mongorestore --archive`).

use std::collections::BTreeMap;

use super::DumpStream;
use super::child::{self, Spawn};

pub fn open(
    argv: &[String],
    env: &BTreeMap<String, String>,
    fail_on_stderr: bool,
) -> anyhow::Result<Box<dyn DumpStream>> {
    child::dump(spawn(argv, env, fail_on_stderr), None)
}

/// The program `argv` with `env` added.
pub fn spawn(argv: &[String], env: &BTreeMap<String, String>, fail_on_stderr: bool) -> Spawn {
    let mut s = Spawn::new(&argv[0], &argv[0]).args(&argv[1..]);
    s.env = env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    s.fail_on_stderr = fail_on_stderr;
    s
}

/// The restore command with `{to}` replaced by `target` (also given as VAULT_RESTORE_TO).
pub fn restore_spawn(argv: &[String], env: &BTreeMap<String, String>, target: &str) -> Spawn {
    let argv: Vec<String> = argv.iter().map(|a| a.replace("{to}", target)).collect();
    spawn(&argv, env, false).env("VAULT_RESTORE_TO", target)
}
