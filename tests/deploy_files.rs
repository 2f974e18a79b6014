//! The vault account's deploy files: `deploy/iam/*.json` and
//! `deploy/cloudformation/vault-account.yaml`.
//!
//! The checks live in `tests/deploy/check_deploy.py` (Python, because cfn-lint is a
//! Python tool and its template loader understands the `!Sub`/`!Ref` tags); each test
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
