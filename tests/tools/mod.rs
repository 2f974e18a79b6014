//! The pinned Python checkers of the container and Kubernetes tests: checkov and
//! kubernetes-validate, in the virtual environment ./scripts/test makes under
//! target/test-tools/venv (apart from moto's packages: checkov pins an old boto3). A
//! missing tool fails the test, never skips it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

const INSTALL_HINT: &str = "./scripts/test installs checkov==3.3.30 and \
     kubernetes-validate==1.37.0 into target/test-tools/venv (or: python3 -m venv \
     target/test-tools/venv && target/test-tools/venv/bin/pip install checkov==3.3.30 \
     kubernetes-validate==1.37.0)";

pub fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tool(name: &str) -> PathBuf {
    let path = crate_root().join("target/test-tools/venv/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: {INSTALL_HINT}",
        path.display()
    );
    path
}

/// One failed checkov check: its id, the resource and the file it was found in.
#[derive(Debug)]
pub struct Failed {
    pub check: String,
    pub resource: String,
    pub file: String,
}

/// What checkov found in `files` with `framework`.
pub struct Checkov {
    pub passed: u64,
    pub failed: Vec<Failed>,
    pub skipped: Vec<String>,
    pub parsing_errors: u64,
    pub output: String,
}

/// Runs the pinned checkov on `files` offline (`--skip-download`: no guideline links
/// fetched) and returns its findings.
pub fn checkov(files: &[PathBuf], framework: &str) -> Checkov {
    let mut cmd = Command::new(tool("checkov"));
    cmd.args([
        "--quiet",
        "--compact",
        "--skip-download",
        "--output",
        "json",
    ])
    .args(["--framework", framework]);
    for file in files {
        cmd.arg("-f").arg(file);
    }
    let out = cmd
        .env("BC_SKIP_MAPPING", "TRUE")
        .output()
        .unwrap_or_else(|e| panic!("cannot run checkov: {e}\n{INSTALL_HINT}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "checkov printed no JSON ({e}; {}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // One report per framework, or the report itself.
    let reports: Vec<serde_json::Value> = match json {
        serde_json::Value::Array(list) => list,
        one => vec![one],
    };
    let mut result = Checkov {
        passed: 0,
        failed: Vec::new(),
        skipped: Vec::new(),
        parsing_errors: 0,
        output: stdout.clone(),
    };
    for report in reports {
        let summary = &report["summary"];
        result.passed += summary["passed"].as_u64().unwrap_or(0);
        result.parsing_errors += summary["parsing_errors"].as_u64().unwrap_or(0);
        let results = &report["results"];
        for f in results["failed_checks"].as_array().into_iter().flatten() {
            result.failed.push(Failed {
                check: f["check_id"].as_str().unwrap_or("?").to_string(),
                resource: f["resource"].as_str().unwrap_or("?").to_string(),
                file: f["file_path"].as_str().unwrap_or("?").to_string(),
            });
        }
        for s in results["skipped_checks"].as_array().into_iter().flatten() {
            result.skipped.push(format!(
                "{} on {}",
                s["check_id"].as_str().unwrap_or("?"),
                s["resource"].as_str().unwrap_or("?")
            ));
        }
    }
    result
}

/// Runs kubernetes-validate (strict: unknown fields are errors) for Kubernetes
/// `version` on `files`; panics with its output unless it passed, and returns it (one
/// line per document; kinds it has no schema for are `WARN` lines).
pub fn kubernetes_validate(version: &str, files: &[PathBuf]) -> String {
    let out = Command::new(tool("kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", version])
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kubernetes-validate: {e}\n{INSTALL_HINT}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubernetes-validate {version} failed ({}):\n{text}",
        out.status
    );
    assert!(
        !text.contains("ERROR"),
        "kubernetes-validate {version}:\n{text}"
    );
    text
}
