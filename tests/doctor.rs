//! `vault doctor` against the local S3 with enforced IAM (moto, patched by
//! tests/moto/server.py): the shipped policies pass, an identity with one permission
//! too many fails naming it, shared credentials are caught, and a backend that lets
//! COMPLIANCE retention be shortened is reported.

mod common;
mod s3harness;

use std::process::Output;

use aws_sdk_s3::error::ProvideErrorMetadata;
use common::{EXIT_FAILURE, EXIT_INTEGRITY, EXIT_USAGE, World, code, stderr};
use s3harness::{LockSetup, Moto, PREFIX, S3World, deploy_policy};
use serde_json::{Value, json};

/// A config with no jobs: doctor needs only the target and the identities.
fn configured(w: &S3World) {
    w.config("", "");
}

/// `vault --json doctor ARGS`: the output, and its JSON report.
fn doctor(w: &S3World, args: &[&str]) -> (Output, Value) {
    let mut all = vec!["--json", "doctor"];
    all.extend_from_slice(args);
    let out = w.vault(&all);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}):\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        )
    });
    (out, report)
}

/// The rows of the matrix whose verdict is not `ok`, as `identity action verdict`.
fn bad_rows(report: &Value) -> Vec<String> {
    report["matrix"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verdict"] != "ok")
        .map(|r| {
            format!(
                "{} {} {} ({})",
                r["identity"].as_str().unwrap(),
                r["action"].as_str().unwrap(),
                r["verdict"].as_str().unwrap(),
                r["detail"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn assert_passes(out: &Output, report: &Value) {
    assert_eq!(
        code(out),
        0,
        "doctor failed:\nbad rows: {:#?}\nproblems: {:#}\nstderr: {}",
        bad_rows(report),
        report["problems"],
        stderr(out)
    );
    assert_eq!(report["ok"], true);
    assert!(bad_rows(report).is_empty(), "{:#?}", bad_rows(report));
}

/// Every identity × action the matrix must hold, for the shipped policies.
fn assert_full_matrix(report: &Value, per_object: bool) {
    let rows = report["matrix"].as_array().unwrap();
    let find = |identity: &str, action: &str| -> Vec<&Value> {
        rows.iter()
            .filter(|r| r["identity"] == identity && r["action"] == action)
            .collect()
    };
    let readers_may = [
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:GetObjectRetention",
        "s3:ListBucket",
        "s3:ListBucketVersions",
    ];
    let nobody_may = [
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:PutObjectLegalHold",
        "s3:PutBucketPolicy",
        "s3:PutLifecycleConfiguration",
        "s3:PutBucketObjectLockConfiguration",
        "s3:PutBucketVersioning",
        "s3:DeleteBucket",
    ];
    for identity in ["writer", "verifier", "restorer"] {
        let reader = identity != "writer";
        for action in readers_may {
            let r = find(identity, action);
            assert_eq!(r.len(), 1, "{identity} {action}: {r:?}");
            let want = if reader { "allowed" } else { "denied" };
            assert_eq!(r[0]["expected"], want, "{identity} {action}");
            assert_eq!(r[0]["observed"], want, "{identity} {action}: {}", r[0]);
        }
        for action in nobody_may {
            let r = find(identity, action);
            assert_eq!(r.len(), 1, "{identity} {action}: {r:?}");
            assert_eq!(r[0]["observed"], "denied", "{identity} {action}: {}", r[0]);
        }
        let put = find(identity, "s3:PutObject");
        assert_eq!(put.len(), 1);
        assert_eq!(
            put[0]["observed"],
            if reader { "denied" } else { "allowed" }
        );
        let retention = find(identity, "s3:PutObjectRetention");
        if reader {
            assert_eq!(retention.len(), 1, "{retention:?}");
            assert_eq!(retention[0]["observed"], "denied");
        } else {
            // Extend (allowed only per object), then shorten (always refused).
            assert_eq!(retention.len(), 2, "{retention:?}");
            let extend = if per_object { "allowed" } else { "denied" };
            assert_eq!(retention[0]["observed"], extend, "{}", retention[0]);
            assert_eq!(retention[1]["observed"], "denied", "{}", retention[1]);
        }
    }
    // The allowed-by-content answers prove the probes were authorised, then refused.
    let abort = find("writer", "s3:AbortMultipartUpload");
    assert_eq!(abort[0]["observed"], "allowed");
    assert_eq!(abort[0]["detail"], "404 NoSuchUpload");
}

/// The canary's versions as the admin sees them: (version id, is a delete marker).
fn canary_versions(w: &S3World, key: &str) -> Vec<(String, bool)> {
    let client = w.moto.admin_client();
    w.moto.block_on(async {
        let out = client
            .list_object_versions()
            .bucket(&w.bucket)
            .prefix(key)
            .send()
            .await
            .unwrap();
        let mut all: Vec<(String, bool)> = out
            .versions()
            .iter()
            .map(|v| (v.version_id().unwrap().to_string(), false))
            .collect();
        all.extend(
            out.delete_markers()
                .iter()
                .map(|m| (m.version_id().unwrap().to_string(), true)),
        );
        all
    })
}

/// Nothing about the bucket changed: no policy, no lifecycle, versioning on, the lock
/// configuration as created.
fn assert_bucket_untouched(w: &S3World, default_days: Option<i32>) {
    let client = w.moto.admin_client();
    w.moto.block_on(async {
        let policy = client.get_bucket_policy().bucket(&w.bucket).send().await;
        assert_eq!(
            policy
                .err()
                .and_then(|e| e.code().map(str::to_string))
                .as_deref(),
            Some("NoSuchBucketPolicy")
        );
        let lifecycle = client
            .get_bucket_lifecycle_configuration()
            .bucket(&w.bucket)
            .send()
            .await;
        assert_eq!(
            lifecycle
                .err()
                .and_then(|e| e.code().map(str::to_string))
                .as_deref(),
            Some("NoSuchLifecycleConfiguration")
        );
        let versioning = client
            .get_bucket_versioning()
            .bucket(&w.bucket)
            .send()
            .await
            .unwrap();
        assert_eq!(versioning.status().map(|s| s.as_str()), Some("Enabled"));
        let lock = client
            .get_object_lock_configuration()
            .bucket(&w.bucket)
            .send()
            .await
            .unwrap();
        let days = lock
            .object_lock_configuration()
            .and_then(|c| c.rule())
            .and_then(|r| r.default_retention())
            .and_then(|d| d.days());
        assert_eq!(days, default_days, "the default retention changed");
    });
}

/// deploy/iam/writer.json for `bucket`, changed by `edit`.
fn writer_variant(bucket: &str, edit: impl FnOnce(&mut Vec<Value>)) -> String {
    let text = std::fs::read_to_string(deploy_policy("writer"))
        .unwrap()
        .replace("${VAULT_BUCKET}", bucket);
    let mut policy: Value = serde_json::from_str(&text).unwrap();
    edit(policy["Statement"].as_array_mut().unwrap());
    policy.to_string()
}

/// Removes `action` from the statement `sid`'s actions.
fn drop_action(statements: &mut [Value], sid: &str, action: &str) {
    let statement = statements
        .iter_mut()
        .find(|s| s["Sid"] == sid)
        .unwrap_or_else(|| panic!("writer.json has no statement {sid}"));
    let actions = statement["Action"].as_array_mut().unwrap();
    let before = actions.len();
    actions.retain(|a| a != action);
    assert_eq!(actions.len() + 1, before, "{sid} does not name {action}");
}

fn allow(bucket: &str, action: &str) -> Value {
    json!({
        "Sid": "TooMuch",
        "Effect": "Allow",
        "Action": action,
        "Resource": format!("arn:aws:s3:::{bucket}/*"),
    })
}

/// Acceptance 4 (per-object mode, writer.json): every identity can do exactly what it
/// needs; the backend enforces COMPLIANCE; the probes change nothing. Then a host with
/// only the verifier's credentials checks the canary left behind, and the test hook
/// ends the canary's lock so that it can be removed.
#[test]
fn shipped_policies_pass_per_object() {
    let w = S3World::new(LockSetup::PerObject);
    configured(&w);
    let human = w.vault(&["doctor"]);
    let text = String::from_utf8_lossy(&human.stdout).into_owned();
    assert_eq!(code(&human), 0, "{text}\n{}", stderr(&human));
    assert!(
        text.contains("IAM ACTION") && text.contains("s3:DeleteObjectVersion"),
        "{text}"
    );
    assert!(text.contains("lock enforcement: enforced"), "{text}");
    assert!(!stderr(&human).contains("warning"), "{}", stderr(&human));

    let (out, report) = doctor(&w, &[]);
    assert_passes(&out, &report);
    assert_full_matrix(&report, true);
    assert_eq!(
        report["lock_enforcement"]["state"], "enforced",
        "{report:#}"
    );
    assert_eq!(
        report["warnings"],
        json!([]),
        "no warning with the shipped policies"
    );
    assert_eq!(report["iam"]["observed"], "denied");
    let principals: Vec<&str> = report["principals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["arn"].as_str().unwrap())
        .collect();
    assert!(
        principals[0].ends_with(":user/vault-writer"),
        "{principals:?}"
    );
    assert!(
        report["principals"][0]["access_key"]
            .as_str()
            .unwrap()
            .starts_with('…'),
        "access keys are shortened"
    );

    // The canary: under the reserved prefix, COMPLIANCE-locked for about a day, one
    // version and no delete marker; the bucket as it was.
    let key = report["canary"]["key"].as_str().unwrap().to_string();
    assert!(
        key.starts_with(&format!("{PREFIX}/.vault-doctor/")),
        "{key}"
    );
    let seen = &report["canary"]["lock_seen"];
    assert_eq!(seen["mode"], "COMPLIANCE");
    assert_eq!(seen["by"], "verifier");
    let version = report["canary"]["version_id"].as_str().unwrap().to_string();
    assert_eq!(canary_versions(&w, &key), vec![(version.clone(), false)]);
    assert_bucket_untouched(&w, None);

    // A host with only the verifier: the newest canary of an earlier run.
    let (out, report) = doctor(&w, &["--only", "verifier"]);
    assert_passes(&out, &report);
    assert_eq!(report["canary"]["from_an_earlier_run"], true);
    assert_eq!(report["canary"]["key"].as_str(), Some(key.as_str()));
    assert!(
        report["matrix"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["identity"] == "verifier")
    );
    assert_eq!(report["lock_enforcement"]["state"], "unproven");

    // A host with only the writer: its own rows, and the lock proven without a reader.
    let (out, report) = doctor(&w, &["--only", "writer"]);
    assert_passes(&out, &report);
    assert!(
        report["matrix"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["identity"] == "writer")
    );
    assert_eq!(
        report["lock_enforcement"]["state"], "enforced",
        "{report:#}"
    );

    // The test hook: the canary's lock ends, the admin may delete it.
    let client = w.moto.admin_client();
    // The admin's DeleteObject of the canary's version: its error code, if any.
    let delete = || {
        w.moto
            .block_on(
                client
                    .delete_object()
                    .bucket(&w.bucket)
                    .key(&key)
                    .version_id(&version)
                    .send(),
            )
            .err()
            .map(|e| e.code().unwrap_or("?").to_string())
    };
    assert_eq!(
        delete().as_deref(),
        Some("AccessDenied"),
        "a locked version"
    );
    w.moto.expire_lock(&w.bucket, &key, &version);
    assert_eq!(delete(), None, "the version whose lock ended");
    assert!(canary_versions(&w, &key).is_empty());
}

/// Acceptance 4 (bucket-default mode, writer-bucket-default.json): the writer may not
/// change retention at all, so enforcement is not proven, only warned about; the
/// canary carries the bucket's default lock.
#[test]
fn shipped_policies_pass_bucket_default() {
    let w = S3World::new(LockSetup::BucketDefault { days: 2 });
    configured(&w);
    let (out, report) = doctor(&w, &[]);
    assert_passes(&out, &report);
    assert_full_matrix(&report, false);
    assert_eq!(report["lock_enforcement"]["state"], "unproven");
    assert!(
        stderr(&out).contains("could not prove that the backend enforces Object Lock"),
        "{}",
        stderr(&out)
    );
    let seen = &report["canary"]["lock_seen"];
    assert_eq!(seen["mode"], "COMPLIANCE");
    let until: chrono::DateTime<chrono::Utc> =
        seen["retain_until"].as_str().unwrap().parse().unwrap();
    let expected = chrono::Utc::now() + chrono::Duration::days(2);
    assert!(
        (until - expected).abs() < chrono::Duration::minutes(5),
        "{until} is not the bucket default"
    );
    assert!(report["canary"]["lock_sent"].is_null());
    assert_bucket_untouched(&w, Some(2));
}

/// Acceptance 4: a writer allowed s3:GetObject (writer.json without the Deny on
/// s3:Get*, plus an Allow) fails, naming the writer and the action.
#[test]
fn writer_allowed_get_object_fails() {
    let mut w = S3World::new(LockSetup::PerObject);
    let policy = writer_variant(&w.bucket, |s| {
        drop_action(s, "DenyReadingOrListingAnything", "s3:Get*");
        s.push(allow(&w.bucket, "s3:GetObject"));
    });
    w.ids.writer = w
        .moto
        .create_user_with_policy_json("greedy-writer", &policy);
    configured(&w);
    let (out, report) = doctor(&w, &[]);
    assert_eq!(code(&out), EXIT_INTEGRITY, "{}", stderr(&out));
    assert_eq!(bad_rows(&report).len(), 1, "{:#?}", bad_rows(&report));
    assert!(
        bad_rows(&report)[0].starts_with("writer s3:GetObject more-than-it-should"),
        "{:#?}",
        bad_rows(&report)
    );
    let err = stderr(&out);
    assert!(
        err.contains("the vault is not safe") && err.contains("the writer is allowed s3:GetObject"),
        "{err}"
    );
}

/// Acceptance 4: a writer allowed s3:DeleteObjectVersion fails, naming it; the lock
/// still holds the canary's real version, which doctor then tries to delete.
#[test]
fn writer_allowed_delete_object_version_fails() {
    let mut w = S3World::new(LockSetup::PerObject);
    let policy = writer_variant(&w.bucket, |s| {
        drop_action(
            s,
            "DenyDeletingObjectsVersionsOrTags",
            "s3:DeleteObjectVersion",
        );
        s.push(allow(&w.bucket, "s3:DeleteObjectVersion"));
    });
    w.ids.writer = w
        .moto
        .create_user_with_policy_json("deleting-writer", &policy);
    configured(&w);
    let (out, report) = doctor(&w, &[]);
    assert_eq!(code(&out), EXIT_INTEGRITY, "{}", stderr(&out));
    let bad = bad_rows(&report);
    assert_eq!(bad.len(), 1, "{bad:#?}");
    assert!(
        bad[0].starts_with("writer s3:DeleteObjectVersion more-than-it-should"),
        "{bad:#?}"
    );
    assert!(
        stderr(&out).contains("the writer is allowed s3:DeleteObjectVersion"),
        "{}",
        stderr(&out)
    );
    // The lock refused the real delete: enforcement holds, the canary survives.
    assert_eq!(
        report["lock_enforcement"]["state"], "enforced",
        "{report:#}"
    );
    let key = report["canary"]["key"].as_str().unwrap();
    let version = report["canary"]["version_id"].as_str().unwrap().to_string();
    assert_eq!(canary_versions(&w, key), vec![(version, false)]);
}

/// Acceptance 4: the verifier configured with the writer's access key is a failure
/// (they are one identity); two keys of one IAM user for the verifier and the
/// restorer are a warning, "same principal".
#[test]
fn shared_keys_fail_and_a_shared_principal_warns() {
    let mut w = S3World::new(LockSetup::PerObject);
    configured(&w);
    let own = w.ids.verifier.clone();
    w.ids.verifier = w.ids.writer.clone();
    let (out, report) = doctor(&w, &[]);
    assert_eq!(code(&out), EXIT_INTEGRITY, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the writer and the verifier use the same access key"),
        "{}",
        stderr(&out)
    );
    assert!(
        report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["message"].as_str().unwrap().contains("same access key")),
        "{report:#}"
    );

    w.ids.verifier = own;
    w.ids.restorer = w.moto.create_access_key("vault-verifier");
    let (out, report) = doctor(&w, &[]);
    assert_passes(&out, &report);
    let err = stderr(&out);
    assert!(
        err.contains("the verifier and the restorer resolve to the same principal")
            && err.contains("user/vault-verifier"),
        "{err}"
    );
}

/// The writer's credentials reaching IAM (here iam:GetAccountSummary) are a warning;
/// with the shipped policies there is none (shipped_policies_pass_per_object).
#[test]
fn writer_reaching_iam_warns() {
    let mut w = S3World::new(LockSetup::PerObject);
    let policy = writer_variant(&w.bucket, |s| {
        s.push(json!({"Effect": "Allow", "Action": "iam:GetAccountSummary", "Resource": "*"}));
    });
    w.ids.writer = w.moto.create_user_with_policy_json("iam-writer", &policy);
    configured(&w);
    let (out, report) = doctor(&w, &[]);
    assert_passes(&out, &report);
    assert_eq!(report["iam"]["observed"], "allowed", "{report:#}");
    assert!(
        stderr(&out).contains("the writer's credentials can reach this account's IAM"),
        "{}",
        stderr(&out)
    );
}

/// Identities as assumed roles (the deployed shape): sessions of one role are one
/// principal (a warning), and the writer's session credentials, token included, sign
/// the IAM request (its role may call iam:GetAccountSummary here: a warning).
#[test]
fn assumed_roles_are_compared_by_role() {
    let w = S3World::new(LockSetup::PerObject);
    let writer_policy = writer_variant(&w.bucket, |s| {
        s.push(json!({"Effect": "Allow", "Action": "iam:GetAccountSummary", "Resource": "*"}));
    });
    let writer_role = w
        .moto
        .create_role_with_policy_json("vault-writer-role", &writer_policy);
    let reader_role = w
        .moto
        .create_role("vault-reader-role", &["verifier"], &w.bucket);
    let host = w.moto.create_user_with_policy_json(
        "prod-host",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"}]}"#,
    );
    let identity = |role: &str, arn: &str| {
        format!(
            "[identities.{role}]\naccess_key_id_env = \"HOST_KEY\"\n\
             secret_access_key_env = \"HOST_SECRET\"\nrole_arn = \"{arn}\"\n"
        )
    };
    w.config_with(
        "",
        &format!(
            "{}{}{}",
            identity("writer", &writer_role),
            identity("verifier", &reader_role),
            identity("restorer", &reader_role)
        ),
        "",
    );
    let out = w
        .command(&["--json", "doctor"])
        // STS (AssumeRole) is the local server too.
        .env("AWS_ENDPOINT_URL", &w.moto.endpoint)
        .env("HOST_KEY", &host.id)
        .env("HOST_SECRET", &host.secret)
        .output()
        .unwrap();
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    assert_passes(&out, &report);
    let arns: Vec<&str> = report["principals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["arn"].as_str().unwrap())
        .collect();
    assert!(
        arns[0].contains(":assumed-role/vault-writer-role/"),
        "{arns:?}"
    );
    let err = stderr(&out);
    assert!(
        err.contains("the verifier and the restorer resolve to the same principal")
            && err.contains(":role/vault-reader-role"),
        "{err}"
    );
    assert_eq!(report["iam"]["observed"], "allowed", "{report:#}");
    assert!(err.contains("can reach this account's IAM"), "{err}");
}

/// Acceptance 5: stock moto lets COMPLIANCE retention be shortened; doctor says the
/// backend does not enforce locks, and fails.
#[test]
fn backend_that_shortens_compliance_retention_fails() {
    let moto = Moto::start_without(&["retention-change-rules"]);
    let w = S3World::with_moto(LockSetup::PerObject, moto);
    configured(&w);
    let (out, report) = doctor(&w, &[]);
    assert_eq!(code(&out), EXIT_INTEGRITY, "{}", stderr(&out));
    assert_eq!(
        report["lock_enforcement"]["state"], "not-enforced",
        "{report:#}"
    );
    assert!(
        stderr(&out).contains("the backend does not enforce Object Lock COMPLIANCE retention"),
        "{}",
        stderr(&out)
    );
    let bad = bad_rows(&report);
    assert_eq!(bad.len(), 1, "{bad:#?}");
    assert!(
        bad[0].starts_with("writer s3:PutObjectRetention more-than-it-should"),
        "{bad:#?}"
    );
}

/// A local directory vault has no identities: a usage error, nothing probed. An S3
/// vault whose identities have no credentials here cannot be checked (exit 1).
#[test]
fn local_targets_and_missing_credentials() {
    let world = World::new();
    world.config("");
    let out = world.vault(&["doctor"]);
    assert_eq!(code(&out), EXIT_USAGE, "{}", stderr(&out));
    assert!(stderr(&out).contains("S3 vault"), "{}", stderr(&out));

    let moto = Moto::start();
    let w = S3World::with_moto(LockSetup::PerObject, moto);
    w.config_with(
        "",
        "[identities.writer]\nprofile = \"nobody\"\n[identities.verifier]\nprofile = \"nobody\"\n",
        "",
    );
    let out = w.vault(&["doctor", "--only", "writer", "--only", "verifier"]);
    assert_eq!(code(&out), EXIT_FAILURE, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot be probed"),
        "{}",
        stderr(&out)
    );
}

/// Point 10: per-object mode on a bucket without Object Lock. S3 refuses the canary's
/// lock headers (`Bucket is missing ObjectLockConfiguration`) and a reader's
/// GetObjectLockConfiguration confirms that the bucket has none: that is reported
/// first, as not safe, in S3's own words, and the checks that could not be made for
/// want of a canary are not listed as problems of their own.
#[test]
fn a_bucket_without_object_lock_is_reported_first_as_not_safe() {
    let w = S3World::unversioned(LockSetup::PerObject);
    configured(&w);
    let (out, report) = doctor(&w, &[]);
    let err = stderr(&out);
    assert_eq!(code(&out), EXIT_INTEGRITY, "{err}\n{report:#}");
    let problems = report["problems"].as_array().unwrap();
    let first = &problems[0];
    assert_eq!(first["kind"], "not-safe", "{problems:#?}");
    let message = first["message"].as_str().unwrap();
    assert!(
        message.contains("no Object Lock")
            && message.contains("Bucket is missing ObjectLockConfiguration")
            && message.contains("GetObjectLockConfiguration"),
        "{message}"
    );
    assert!(
        problems.iter().all(|p| p["kind"] != "cannot-check"),
        "derived problems listed: {problems:#?}"
    );
    assert!(
        err.contains("the vault is not safe")
            && err.contains("Bucket is missing ObjectLockConfiguration"),
        "{err}"
    );
    // The matrix still shows what was and was not probed.
    assert!(
        report["matrix"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["observed"] == "not-probed"),
        "{report:#}"
    );
    let human = w.vault(&["doctor"]);
    let text = String::from_utf8_lossy(&human.stdout).into_owned();
    assert_eq!(code(&human), EXIT_INTEGRITY, "{text}");
    let listed: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("problems"))
        .skip(1)
        .collect();
    assert_eq!(listed.len(), 1, "{text}");
    assert!(listed[0].contains("[not-safe]"), "{text}");
}
