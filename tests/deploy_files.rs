//! The deploy files: the vault account's (`deploy/iam/*.json` and
//! `deploy/cloudformation/vault-account.yaml`) and the systemd units
//! (`deploy/systemd/`).
//!
//! The checks live in `tests/deploy/check_deploy.py` (Python, because cfn-lint is a
//! Python tool and its template loader understands the `!Sub`/`!Ref` tags; the unit
//! checks in `tests/deploy/systemd_units.py` beside it); each test
//! here runs one of its checks from the crate root and fails with the script's output.
//! A missing python3, cfn-lint or PyYAML is a failure, never a skip: `./scripts/test`
//! installs them.

use std::path::Path;
use std::process::Command;

const INSTALL_HINT: &str = "./scripts/test installs python3, cfn-lint 1.58.0 and PyYAML \
     (or: python3 -m pip install cfn-lint==1.58.0 pyyaml)";

/// Runs `python3 tests/deploy/check_deploy.py <check>` and asserts it passed.
fn run_check(check: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));

    let probe = Command::new("python3")
        .args(["-c", "import cfnlint.decode, cfnlint.runner, yaml"])
        .current_dir(root)
        .output()
        .unwrap_or_else(|err| panic!("cannot run python3: {err}\n{INSTALL_HINT}"));
    assert!(
        probe.status.success(),
        "python3 cannot import cfn-lint and PyYAML:\n{}\n{INSTALL_HINT}",
        String::from_utf8_lossy(&probe.stderr).trim()
    );

    let output = Command::new("python3")
        .args(["tests/deploy/check_deploy.py", check])
        .current_dir(root)
        .output()
        .unwrap_or_else(|err| panic!("cannot run python3: {err}\n{INSTALL_HINT}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tests/deploy/check_deploy.py {check} failed ({}); the lines marked FAIL say what:\n\
         --- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    // Shown with --nocapture: what was checked.
    print!("{stdout}");
}

#[test]
fn cloudformation_template_passes_cfn_lint() {
    run_check("cfn-lint");
}

#[test]
fn cloudformation_template_matches_deploy_iam_policies_and_locks_the_bucket() {
    run_check("template");
}

#[test]
fn bucket_policy_denies_insecure_transport_version_deletes_bypass_and_long_retention() {
    run_check("bucket-policy");
}

#[test]
fn identity_policies_are_least_privilege_with_explicit_denies_and_no_conditions() {
    run_check("identity-policies");
}

/// Every service hardened like vault-backup.service; vault.service (`vault run`) with
/// Type=notify, a SIGHUP reload, KillMode=mixed and a TimeoutStopSec longer than the
/// scheduler's drain as the sources define it; every unit named in deploy/README.md.
#[test]
fn systemd_units_are_hardened_and_the_scheduler_unit_drains_within_its_stop_timeout() {
    run_check("systemd");
}

/// The writer's permissions of each lock mode, as the documents name them, are the
/// actions its policy file allows: docs/iam.md's "Writer policy" row and the `lock` key
/// of docs/config.md (`s3:AbortMultipartUpload` in both modes: a failed upload is
/// aborted).
#[test]
fn docs_name_each_lock_modes_writer_permissions_as_its_policy_allows_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |rel: &str| {
        std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    };
    // The `s3:Action` names in a piece of text, sorted and deduplicated.
    let actions_in = |text: &str| {
        let mut found: Vec<String> = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == ':'))
            .filter(|w| w.starts_with("s3:") && w.len() > 3)
            .map(str::to_string)
            .collect();
        found.sort();
        found.dedup();
        found
    };
    let allowed = |file: &str| {
        let policy: serde_json::Value =
            serde_json::from_str(&read(&format!("deploy/iam/{file}"))).unwrap();
        let mut found: Vec<String> = Vec::new();
        for s in policy["Statement"].as_array().unwrap() {
            if s["Effect"] == "Allow" {
                match &s["Action"] {
                    serde_json::Value::String(a) => found.push(a.clone()),
                    other => found.extend(
                        other
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|a| a.as_str().unwrap().to_string()),
                    ),
                }
            }
        }
        found.sort();
        found.dedup();
        found
    };
    let (per_object, bucket_default) = (
        allowed("writer.json"),
        allowed("writer-bucket-default.json"),
    );

    let config = read("docs/config.md");
    let lock = config
        .lines()
        .find(|l| l.starts_with("| `lock` |"))
        .expect("docs/config.md has a `lock` row");
    let (before, after) = lock
        .split_once("`\"bucket-default\"`:")
        .expect("the `lock` row explains \"bucket-default\"");
    assert_eq!(
        actions_in(before),
        per_object,
        "docs/config.md, lock = \"per-object\": {before}"
    );
    assert_eq!(
        actions_in(after),
        bucket_default,
        "docs/config.md, lock = \"bucket-default\": {after}"
    );

    let iam = read("docs/iam.md");
    let row: Vec<&str> = iam
        .lines()
        .find(|l| l.starts_with("| Writer policy |"))
        .expect("docs/iam.md has a Writer policy row")
        .split(" | ")
        .collect();
    assert_eq!(
        actions_in(row[1]),
        per_object,
        "docs/iam.md, per-object: {}",
        row[1]
    );
    assert_eq!(
        actions_in(row[2]),
        bucket_default,
        "docs/iam.md, bucket-default: {}",
        row[2]
    );
}
