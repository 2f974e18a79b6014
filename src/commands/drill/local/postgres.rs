//! A scratch PostgreSQL cluster: `initdb` with the superuser `postgres` and a random
//! password (scram-sha-256, from a 0600 file removed right after), then the postmaster
//! itself (not `pg_ctl start`, which would leave it to init to reap) on 127.0.0.1 with
//! its socket in the private dir.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use rustix::process::Signal;

use super::process::{probe, run_setup, server_command};
use super::{LocalServer, Ready, find_binary};
use crate::source::child;

/// Where Debian and Ubuntu keep each installed version's binaries.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

pub(super) fn start(server: &mut LocalServer, bin_dir: Option<&Path>) -> anyhow::Result<()> {
    let bin = server_bin(bin_dir)?;
    let initdb = bin.join("initdb");
    let postgres = bin.join("postgres");
    // The clients of the server's own version: a pg_restore older than the dump
    // cannot read it.
    server.client_bin = bin.join("psql").is_file().then(|| bin.clone());
    let dir = server.dir().to_path_buf();
    let data = dir.join("data");

    let pwfile = server.private_file("pwfile", &format!("{}\n", server.password))?;
    let initialised = run_setup(
        server_command(&initdb, &dir)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=scram-sha-256"])
            .args(["--encoding=UTF8", "--locale=C"])
            // A throwaway cluster: nothing to sync.
            .arg("--no-sync")
            .arg(format!("--pwfile={}", pwfile.display())),
        &initdb,
    );
    // From here on the password is only a SCRAM verifier in the cluster.
    fs::remove_file(&pwfile).with_context(|| format!("cannot remove {}", pwfile.display()))?;
    initialised?;

    let command = |port: u16| -> anyhow::Result<Command> {
        let mut cmd = server_command(&postgres, &dir);
        cmd.arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&dir)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            // The copy is deleted after the drill: durability would only slow the
            // restore down. With wal_level=minimal, the tables pg_restore
            // --single-transaction creates are loaded without WAL; index builds get
            // memory, and no checkpoint interrupts the load.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .args(["-c", "wal_level=minimal", "-c", "max_wal_senders=0"])
            .args(["-c", "maintenance_work_mem=256MB"])
            .args(["-c", "max_wal_size=4GB", "-c", "checkpoint_timeout=1h"])
            .args(["-c", "logging_collector=off"]);
        Ok(cmd)
    };
    // SIGQUIT, an immediate shutdown: no checkpoint is worth writing for data that is
    // deleted next (SIGTERM, a smart shutdown, would even wait for clients to leave).
    server.serve(&postgres, Signal::QUIT, command, ready)?;
    let client = server.endpoint(None).client()?;
    server.version = child::run(&client, "SHOW server_version").context("PostgreSQL version")?;
    Ok(())
}

/// Ready once `psql` logs in with the password.
fn ready(server: &LocalServer) -> Ready {
    let Ok(psql) = server.endpoint(None).client() else {
        return Ready::No;
    };
    match probe(&psql.args(["-c", "SELECT 1"])) {
        Some((true, out)) if out == "1" => Ready::Yes,
        _ => Ready::No,
    }
}

/// The directory of `initdb` and `postgres`: `bin_dir`, else PATH, else
/// `pg_config --bindir`, else the newest /usr/lib/postgresql/<version>/bin. A symbolic
/// link (/usr/local/bin/postgres) is followed to the directory that also holds the
/// client tools of that version.
fn server_bin(bin_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = match bin_dir {
        Some(dir) => {
            // Names the first binary that is missing.
            find_binary(&["initdb"], Some(dir), &[])?;
            find_binary(&["postgres"], Some(dir), &[])?;
            dir.to_path_buf()
        }
        None => {
            let path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .collect::<Vec<_>>();
            match path
                .into_iter()
                .chain(pg_config_bindir())
                .chain(newest_debian_bin())
                .find(|d| has_server(d))
            {
                Some(dir) => dir,
                None => bail!(
                    "`initdb` and `postgres` not found on PATH, in `pg_config --bindir` or in \
                     {DEBIAN_ROOT}/*/bin: install the PostgreSQL server (Debian: postgresql), \
                     or set [drill] bin_dir"
                ),
            }
        }
    };
    let real = fs::canonicalize(dir.join("postgres"))
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .filter(|d| has_server(d));
    Ok(real.unwrap_or(dir))
}

fn has_server(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

/// `pg_config --bindir`, if pg_config is on PATH.
fn pg_config_bindir() -> Option<PathBuf> {
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !dir.trim().is_empty()).then(|| PathBuf::from(dir.trim()))
}

/// /usr/lib/postgresql/<the highest version>/bin.
fn newest_debian_bin() -> Option<PathBuf> {
    let version = |p: &Path| -> Vec<u32> {
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        name.split('.').map(|n| n.parse().unwrap_or(0)).collect()
    };
    fs::read_dir(DEBIAN_ROOT)
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| has_server(bin))
        .max_by_key(|bin| version(bin.parent().unwrap_or(bin)))
}
