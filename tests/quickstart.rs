//! Acceptance: README's quick-start command works verbatim on a clean clone.
//!
//! The command is taken from README.md (the block after `<!-- quickstart -->`), run in
//! a fresh `git clone` of this repository, and must complete the demo's round trip.

use std::path::Path;
use std::process::Command;

fn quickstart_command(readme: &str) -> String {
    let after = readme
        .split("<!-- quickstart -->")
        .nth(1)
        .expect("README.md has a <!-- quickstart --> marker");
    let block = after
        .split("```")
        .nth(1)
        .expect("a code block follows the marker");
    let command: Vec<&str> = block
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        command.len(),
        1,
        "the quick start is one command: {command:?}"
    );
    command[0].trim().to_string()
}

#[test]
fn readme_quick_start_works_on_a_clean_clone() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let command = quickstart_command(&readme);
    assert!(command.contains("demo"), "{command}");

    let tmp = tempfile::tempdir().unwrap();
    let clone = tmp.path().join("vault");
    let status = Command::new("git")
        .args(["clone", "--quiet"])
        .arg(root)
        .arg(&clone)
        .status()
        .expect("git is installed (scripts/test installs it)");
    assert!(status.success(), "git clone failed");

    // The clone itself is pristine; its build shares this checkout's target directory,
    // so the dependencies the test build compiled are reused and only the vault crate
    // (at the clone's path) is built again. That build writes target/debug/vault, the
    // binary the other tests run: it is put back afterwards, so they always test this
    // checkout (with its uncommitted changes), not the clone's commit.
    let _restore = RestoreBinary::save(Path::new(env!("CARGO_BIN_EXE_vault")), tmp.path());
    let mut cmd = Command::new("sh");
    // As a newcomer's shell would be: without the variables cargo sets for tests (some
    // are read by dependencies' build scripts and would make the build start over).
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if (key.starts_with("CARGO_") && key != "CARGO_HOME") || key == "LD_LIBRARY_PATH" {
            cmd.env_remove(&*key);
        }
    }
    let out = cmd
        .args(["-c", &command])
        .current_dir(&clone)
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env_remove("VAULT_CONFIG")
        .env_remove("VAULT_AGE_IDENTITY_FILE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "`{command}` failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("byte-identical"), "{stdout}");
    let demo = clone.join("vault-demo");
    for file in ["app.db", "vault.toml", "restore-key.txt", "restored/app.db"] {
        assert!(
            demo.join(file).exists(),
            "{file} missing from the demo directory"
        );
    }
}

/// Puts a binary back as it was when dropped.
struct RestoreBinary {
    path: std::path::PathBuf,
    saved: std::path::PathBuf,
}

impl RestoreBinary {
    fn save(path: &Path, dir: &Path) -> RestoreBinary {
        let saved = dir.join("vault-under-test");
        std::fs::copy(path, &saved).expect("copy the vault binary aside");
        RestoreBinary {
            path: path.to_path_buf(),
            saved,
        }
    }
}

impl Drop for RestoreBinary {
    fn drop(&mut self) {
        // Copied next to it, then renamed over it: never a half-written binary.
        let next = self.path.with_extension("restoring");
        std::fs::copy(&self.saved, &next)
            .and_then(|_| std::fs::rename(&next, &self.path))
            .expect("put the vault binary under test back");
    }
}
