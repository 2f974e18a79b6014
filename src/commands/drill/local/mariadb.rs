//! A scratch MariaDB server: `mariadb-install-db` makes the system tables, then
//! `mariadbd` runs an init file (0600, removed once the server is up) that gives `root`
//! the random password for 127.0.0.1 and for the socket, before it accepts a single
//! connection.
//!
//! The bootstrap also makes root accounts for ::1 and the host name. They can never
//! match: the server listens on 127.0.0.1 only and resolves no names, and its socket is
//! in the private dir.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::Context;
use rustix::process::Signal;

use super::process::{probe, run_setup, server_command};
use super::{LocalServer, Ready, find_binary};
use crate::source::child;

/// Where distributions keep the server, often not on PATH.
const SERVER_DIRS: &[&str] = &["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/libexec"];

/// Given to the bootstrap and the server: the copy is deleted after the drill, so
/// durability and the binary log would only slow the restore down.
const THROWAWAY: &[&str] = &[
    "--skip-log-bin",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
    "--skip-name-resolve",
];

pub(super) fn start(server: &mut LocalServer, bin_dir: Option<&Path>) -> anyhow::Result<()> {
    let mariadbd = find_binary(&["mariadbd", "mysqld"], bin_dir, SERVER_DIRS)?;
    let install_db = match bin_dir {
        // A binary tarball keeps the bootstrap script in scripts/, next to bin/.
        Some(dir) => find_binary(&["mariadb-install-db", "mysql_install_db"], Some(dir), &[])
            .or_else(|e| {
                let scripts = dir.join("../scripts");
                find_binary(&["mariadb-install-db"], Some(&scripts), &[]).map_err(|_| e)
            })?,
        None => find_binary(
            &["mariadb-install-db", "mysql_install_db"],
            None,
            SERVER_DIRS,
        )?,
    };
    // With a bin_dir the installation it belongs to, for the share files and plugins.
    let basedir = bin_dir
        .and_then(Path::parent)
        .map(|d| format!("--basedir={}", d.display()));
    let dir = server.dir().to_path_buf();
    let datadir = format!("--datadir={}", dir.join("data").display());
    let tmpdir = format!("--tmpdir={}", dir.display());

    // `normal`: root authenticates with a password, not as the OS user root.
    run_setup(
        server_command(&install_db, &dir)
            .arg("--no-defaults")
            .arg(&datadir)
            .args(&basedir)
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .arg(&tmpdir)
            .args(THROWAWAY),
        &install_db,
    )?;

    let password = quoted(&server.password);
    let init = server.private_file(
        "init.sql",
        &format!(
            "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';\n\
             ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY {password};\n\
             GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n\
             ALTER USER 'root'@'localhost' IDENTIFIED BY {password};\n\
             FLUSH PRIVILEGES;\n"
        ),
    )?;
    let command = |port: u16| -> anyhow::Result<Command> {
        let mut cmd = server_command(&mariadbd, &dir);
        // --no-defaults must come first.
        cmd.arg("--no-defaults")
            .arg(&datadir)
            .args(&basedir)
            .args(["--skip-networking=0", "--bind-address=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--socket={}", dir.join("mariadbd.sock").display()))
            .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
            .arg(&tmpdir)
            .arg(format!("--init-file={}", init.display()))
            .args(THROWAWAY)
            // No flushing at shutdown either.
            .arg("--innodb-fast-shutdown=2")
            // The restore client sends rows of up to 1 GiB (source/mysql.rs).
            .arg("--max-allowed-packet=1G");
        Ok(cmd)
    };
    server.serve(&mariadbd, Signal::TERM, command, ready)?;
    fs::remove_file(&init).with_context(|| format!("cannot remove {}", init.display()))?;
    let client = server.endpoint(None).client()?;
    server.version = child::run(&client, "SELECT VERSION()").context("MariaDB version")?;
    Ok(())
}

/// Ready once root logs in with the password over TCP: the init file has run.
fn ready(server: &LocalServer) -> Ready {
    let Ok(client) = server.endpoint(None).client() else {
        return Ready::No;
    };
    match probe(&client.args(["--execute", "SELECT 1"])) {
        Some((true, out)) if out == "1" => Ready::Yes,
        _ => Ready::No,
    }
}

/// A SQL string literal.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}
