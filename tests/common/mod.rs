//! Shared test harness: a scratch directory with an age key, a config, and a way to
//! run the real `vault` binary against it.

#![allow(dead_code)]

pub mod procs;
pub mod receiver;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand::{RngCore, SeedableRng};

pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_INTEGRITY: i32 = 3;
pub const EXIT_MISSING: i32 = 4;
pub const EXIT_INTERRUPTED: i32 = 130;

pub fn vault_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vault")
}

/// A scratch world: `dir/key.txt` (age identity), `dir/vault/` (local vault),
/// `dir/vault.toml` (written by [`World::config`]).
pub struct World {
    pub tmp: tempfile::TempDir,
    pub recipient: String,
}

impl World {
    pub fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let out = Command::new(vault_bin())
            .args(["keygen", "-o"])
            .arg(tmp.path().join("key.txt"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let recipient = String::from_utf8(out.stdout).unwrap().trim().to_string();
        World { tmp, recipient }
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn vault_dir(&self) -> PathBuf {
        self.path("vault")
    }

    pub fn key(&self) -> PathBuf {
        self.path("key.txt")
    }

    /// Writes vault.toml with the world's recipient, restorer key and `jobs` (TOML).
    pub fn config(&self, jobs: &str) {
        self.config_raw(&format!(
            "[vault]\ntarget = \"vault\"\n[encryption]\nrecipients = [\"{}\"]\n\
             [identities.restorer]\nage_identity_file = \"key.txt\"\n{jobs}",
            self.recipient
        ));
    }

    pub fn config_raw(&self, text: &str) {
        fs::write(self.path("vault.toml"), text).unwrap();
    }

    /// Runs `vault --config dir/vault.toml ARGS...` with VAULT_AGE_IDENTITY_FILE unset.
    pub fn vault(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(vault_bin());
        cmd.arg("--config")
            .arg(self.path("vault.toml"))
            .args(args)
            .env_remove("VAULT_AGE_IDENTITY_FILE")
            .env_remove("VAULT_CONFIG")
            .current_dir(self.dir());
        cmd
    }

    /// Runs vault and insists on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(args, self.vault(args))
    }

    /// The manifests of `job` as parsed JSON, oldest first.
    pub fn manifests(&self, job: &str) -> Vec<serde_json::Value> {
        let dir = self.vault_dir().join(job).join("manifests");
        let mut files: Vec<PathBuf> = match fs::read_dir(&dir) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
            Err(_) => return Vec::new(),
        };
        files.sort();
        files
            .iter()
            .map(|f| serde_json::from_slice(&fs::read(f).unwrap()).unwrap())
            .collect()
    }

    /// Every regular file under the vault (outside `.vault/`).
    pub fn objects(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.vault_dir()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd {
                let p = e.unwrap().path();
                if p.file_name().unwrap() == ".vault" {
                    continue;
                }
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    /// The path of the data object a manifest names.
    pub fn data_path(&self, manifest: &serde_json::Value) -> PathBuf {
        self.vault_dir()
            .join(manifest["data"]["key"].as_str().unwrap())
    }
}

/// Insists that `vault ARGS` succeeded; returns its stdout.
pub fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "vault {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Writes `size` bytes of mixed data: 64 KiB blocks alternating between text-like
/// (compressible) and random (incompressible) content.
pub fn write_mixed(path: &Path, size: u64, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut text = Vec::new();
    let mut i = 0u64;
    while text.len() < 64 * 1024 {
        text.extend_from_slice(
            format!(
                "{i},customer-{},order,{}.{:02}\n",
                i * 7 % 1000,
                i % 500,
                i % 100
            )
            .as_bytes(),
        );
        i += 1;
    }
    text.truncate(64 * 1024);
    let mut random = vec![0u8; 64 * 1024];
    let mut f = std::io::BufWriter::new(fs::File::create(path).unwrap());
    let mut written = 0u64;
    let mut block = 0u64;
    while written < size {
        let n = (size - written).min(64 * 1024) as usize;
        if block.is_multiple_of(2) {
            // Vary the text a little so blocks are not exact repeats.
            text[0] = b'0' + (block % 10) as u8;
            f.write_all(&text[..n]).unwrap();
        } else {
            rng.fill_bytes(&mut random);
            f.write_all(&random[..n]).unwrap();
        }
        written += n as u64;
        block += 1;
    }
    f.flush().unwrap();
}

/// blake3 of a file, streamed.
pub fn file_hash(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap();
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().to_hex().to_string()
}

/// Runs a shell pipeline and returns stdout bytes, insisting on success.
pub fn sh(script: &str) -> Vec<u8> {
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Fails loudly when a tool the test needs is missing (scripts/test installs them).
pub fn require_tool(name: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .unwrap()
        .status
        .success();
    assert!(
        found,
        "`{name}` is not installed: run scripts/test, which installs it"
    );
}

/// Polls `ready` until it holds; fails after 30 s naming `what`.
pub fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "timed out waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Sends SIGTERM to `child` (as systemd or Kubernetes would) and collects its output.
pub fn sigterm(child: std::process::Child) -> Output {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success(), "kill -TERM {pid} failed");
    child.wait_with_output().unwrap()
}

/// A signing config whose key and chain state live in the world.
pub fn signing(w: &World) -> String {
    let out = w
        .command(&["keygen", "--signing", "-o", "signing.key"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let public = String::from_utf8(out.stdout).unwrap().trim().to_string();
    format!(
        "[signing]\nkey_file = \"signing.key\"\nstate_dir = \"state\"\npublic_keys = [\"{public}\"]\n"
    )
}

/// (name, labels, value) of every sample, by prometheus_client's text parser (which
/// raises on anything that is not valid exposition format).
pub fn parse_exposition(
    text: &str,
) -> Vec<(String, std::collections::HashMap<String, String>, f64)> {
    let script = "import sys, json\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = []\n\
        for fam in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in fam.samples:\n\
        \x20       out.append([s.name, s.labels, s.value])\n\
        print(json.dumps(out))\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (./scripts/test installs prometheus-client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not valid exposition format: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
