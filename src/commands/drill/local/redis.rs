//! A scratch Redis server: `redis-server redis.conf`, the file (0600) holding the
//! password, the port and the directory, which holds the restored dump as
//! `dump.rdb`: the server loads it at start. It saves nothing by itself (`save ""`,
//! `appendonly no`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;

use anyhow::Context;
use rustix::process::Signal;

use super::process::{probe, running_as_root, server_command};
use super::{LocalServer, Ready, find_binary, give_away, write_private};
use crate::source::child;

pub(super) fn start(
    server: &mut LocalServer,
    bin_dir: Option<&Path>,
    rdb: Option<&Path>,
) -> anyhow::Result<()> {
    let redis_server = find_binary(&["redis-server"], bin_dir, &["/usr/bin", "/usr/local/bin"])?;
    let dir = server.dir().to_path_buf();
    let data = dir.join("data");
    std::fs::create_dir(&data).with_context(|| format!("cannot create {}", data.display()))?;
    if running_as_root() {
        give_away(&data)?;
    }
    if let Some(rdb) = rdb {
        // A copy: the caller's file stays as it was (on one file system, a cheap one).
        let to = data.join("dump.rdb");
        let mut from = File::open(rdb).with_context(|| format!("cannot open {}", rdb.display()))?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&to)
            .with_context(|| format!("cannot create {}", to.display()))?;
        io::copy(&mut from, &mut file)
            .with_context(|| format!("cannot copy {} to {}", rdb.display(), to.display()))?;
        if running_as_root() {
            give_away(&to)?;
        }
    }
    let password = server.password.clone();
    let command = |port: u16| -> anyhow::Result<Command> {
        // Written again for each attempt: the port is in it.
        let conf = dir.join("redis.conf");
        write_private(&conf, &config(port, &password, &data))?;
        let mut cmd = server_command(&redis_server, &dir);
        cmd.arg(&conf);
        Ok(cmd)
    };
    server.serve(&redis_server, Signal::TERM, command, ready)?;
    let info = child::run(
        &server.endpoint(None).client()?.args(["INFO", "server"]),
        "",
    )
    .context("Redis version")?;
    server.version = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("redis_version:"))
        .unwrap_or("")
        .to_string();
    Ok(())
}

/// PONG: ready; LOADING: it is loading the dump, however long that takes.
fn ready(server: &LocalServer) -> Ready {
    let Ok(cli) = server.endpoint(None).client() else {
        return Ready::No;
    };
    match probe(&cli.arg("PING")) {
        Some((true, out)) if out == "PONG" => Ready::Yes,
        Some((_, out)) if out.contains("LOADING") => Ready::Loading,
        _ => Ready::No,
    }
}

/// The configuration: loopback only, the password, nothing saved by the server itself.
fn config(port: u16, password: &str, data: &Path) -> String {
    format!(
        "# vault drill: a throwaway copy\n\
         bind 127.0.0.1\n\
         port {port}\n\
         protected-mode yes\n\
         requirepass {}\n\
         dir {}\n\
         dbfilename dump.rdb\n\
         appendonly no\n\
         save \"\"\n\
         daemonize no\n\
         logfile \"\"\n",
        quoted(password),
        quoted(&data.display().to_string())
    )
}

/// A double-quoted configuration value.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' | '"' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_values_are_quoted() {
        let conf = config(6390, "pw", Path::new("/tmp/a \"b\\c"));
        assert!(conf.contains("requirepass \"pw\"\n"), "{conf}");
        assert!(conf.contains("dir \"/tmp/a \\\"b\\\\c\"\n"), "{conf}");
        assert!(conf.contains("port 6390\nprotected-mode yes\n"), "{conf}");
    }
}
