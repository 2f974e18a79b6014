//! `vault verify` against the local S3 server with IAM on (moto, patched by
//! tests/moto/server.py): a healthy vault, every kind of tampering, stale jobs and their
//! Prometheus metrics, and the webhook pings of backup and verify.

mod common;
mod s3harness;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::receiver::Receiver;
use common::{EXIT_INTEGRITY, EXIT_MISSING, code, parse_exposition, stderr, vault_bin};
use s3harness::{LockSetup, PREFIX, S3World, job_report};
use serde_json::Value;

/// A command job that dumps `file`.
fn job(name: &str, file: &str, extra: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\n{extra}\nsource = {{ kind = \"command\", command = [\"cat\", \"{file}\"] }}\n"
    )
}

/// Makes a signing key in the world; returns the `[signing]` section for both sides.
fn signing(w: &S3World) -> String {
    let key = w.world.path("signing.key");
    let out = Command::new(vault_bin())
        .args(["keygen", "--signing", "-o", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let public = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(public.starts_with("vault-ed25519:"), "{public}");
    format!(
        "[signing]\nkey_file = \"signing.key\"\nstate_dir = \"state\"\npublic_keys = [\"{public}\"]\n"
    )
}

/// `vault --json verify ARGS`: exit code and the report.
fn verify(w: &S3World, args: &[&str]) -> (i32, Value) {
    report_of(args, w.vault(&verify_args(args)))
}

/// `vault --json verify ARGS` in a local world: exit code and the report.
fn verify_local(w: &common::World, args: &[&str]) -> (i32, Value) {
    report_of(args, w.vault(&verify_args(args)))
}

/// `--json verify ARGS`.
fn verify_args<'a>(args: &[&'a str]) -> Vec<&'a str> {
    [&["--json", "verify"], args].concat()
}

/// The exit code and JSON report of a `verify` run.
fn report_of(args: &[&str], out: std::process::Output) -> (i32, Value) {
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("verify {args:?} printed no JSON ({e}): {}", stderr(&out)));
    (code(&out), report)
}

/// The `checked` entries of a report for `job`.
fn checked<'r>(report: &'r Value, job: &str) -> Vec<&'r Value> {
    report["checked"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["job"] == job)
        .collect()
}

/// Acceptance 1: a healthy vault verifies with exit 0 and a JSON report listing every
/// backup checked; the bucket checks pass; signed manifests chain from run to run.
#[test]
fn a_healthy_vault_verifies_with_a_report_of_every_backup() {
    let w = S3World::new(LockSetup::PerObject);
    fs::write(w.world.path("a.txt"), "alpha\n".repeat(1000)).unwrap();
    fs::write(w.world.path("b.txt"), "bravo\n".repeat(1000)).unwrap();
    let sections = signing(&w);
    w.config(
        "",
        &format!(
            "{}{}{sections}",
            job("a", "a.txt", ""),
            job("b", "b.txt", "")
        ),
    );
    for _ in 0..2 {
        w.ok(&["backup"]);
    }

    let (rc, report) = verify(&w, &["--all"]);
    assert_eq!(rc, 0, "{report:#}");
    assert_eq!(report["ok"], true);
    for j in ["a", "b"] {
        let backups = checked(&report, j);
        assert_eq!(backups.len(), 2, "{report:#}");
        for b in &backups {
            assert_eq!(b["ok"], true, "{b}");
            assert_eq!(b["hashed"], true, "{b}");
            assert_eq!(b["lock"]["mode"], "COMPLIANCE", "{b}");
        }
        let jr = job_report(&report, j);
        assert_eq!(jr["status"], "ok", "{jr}");
        assert_eq!(jr["good"], 2);
        assert_eq!(jr["chain_segments"], 1, "{jr}");
    }
    let bucket: Vec<(&str, Value)> = report["bucket"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["check"].as_str().unwrap(), c["finding"].clone()))
        .collect();
    let names: Vec<&str> = bucket.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        ["versioning", "object lock", "lifecycle", "bucket policy"]
    );
    for (name, finding) in &bucket {
        assert!(
            finding.is_null() || finding["severity"] == "warning",
            "{name}: {finding}"
        );
    }

    // The second manifest of a job continues the chain from the first one's bytes.
    let ms = w.manifests("a");
    assert_eq!(ms[0]["chain"]["segment"], "new");
    assert_eq!(ms[1]["chain"]["segment"], "continued");
    assert_eq!(ms[1]["chain"]["previous_backup_id"], ms[0]["backup_id"]);
    assert!(ms[1]["signature"]["value"].as_str().unwrap().len() == 128);

    // By default only the newest backup of each job is downloaded; --sample adds more.
    let (rc, report) = verify(&w, &[]);
    assert_eq!(rc, 0, "{report:#}");
    let hashed = |r: &Value| {
        r["checked"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["hashed"] == true)
            .count()
    };
    assert_eq!(hashed(&report), 2);
    assert_eq!(report["checked"].as_array().unwrap().len(), 4);
    let (rc, report) = verify(&w, &["--sample", "1", "a"]);
    assert_eq!(rc, 0, "{report:#}");
    assert_eq!(hashed(&report), 2);

    // --deep runs as the restorer and checks the plaintext too.
    let (rc, report) = verify(&w, &["--deep", "a"]);
    assert_eq!(rc, 0, "{report:#}");
    assert_eq!(report["deep"], true);

    // Lost chain state: the next manifest starts a new segment, reported as a warning.
    fs::remove_dir_all(w.world.path("state")).unwrap();
    w.ok(&["backup", "a"]);
    let (rc, report) = verify(&w, &["a"]);
    assert_eq!(rc, 0, "{report:#}");
    let jr = job_report(&report, "a");
    assert_eq!(jr["chain_segments"], 2, "{jr}");
    assert_eq!(jr["status"], "warning", "{jr}");
    assert!(
        jr["findings"].to_string().contains("new chain segment"),
        "{jr}"
    );
}

/// Acceptance 2: each kind of tampering gives the integrity exit code and a message
/// naming the object.
#[test]
fn each_tampering_is_an_integrity_failure_naming_the_object() {
    let w = S3World::new(LockSetup::PerObject);
    let jobs = [
        "replaced", "edited", "forged", "deleted", "marked", "unlocked",
    ];
    let mut text = String::new();
    for j in jobs {
        fs::write(
            w.world.path(&format!("{j}.txt")),
            format!("{j}\n").repeat(500),
        )
        .unwrap();
        text.push_str(&job(j, &format!("{j}.txt"), ""));
    }
    let sections = signing(&w);
    w.config("", &format!("{text}{sections}"));
    w.ok(&[
        "backup", "replaced", "edited", "forged", "deleted", "marked",
    ]);
    // `unlocked`: a writer whose config leaves the lock to the bucket default, on a
    // bucket that has none, stores its backup without any lock.
    let good_config = fs::read_to_string(w.world.path("vault.toml")).unwrap();
    fs::write(
        w.world.path("vault.toml"),
        good_config.replace(
            "[retention]\n",
            "[retention]\nlock = \"bucket-default\"\nbucket_default = \"35d\"\n",
        ),
    )
    .unwrap();
    w.ok(&["backup", "unlocked"]);
    fs::write(w.world.path("vault.toml"), &good_config).unwrap();

    // Before any tampering, only the backup stored without a lock fails.
    let (_, report) = verify(&w, &[]);
    for j in jobs {
        let expected = if j == "unlocked" { "integrity" } else { "ok" };
        assert_eq!(
            job_report(&report, j)["status"],
            expected,
            "{j}: {report:#}"
        );
    }

    let manifest = |job: &str| w.manifests(job).remove(0);
    let data_key = |m: &Value| w.full_key(m["data"]["key"].as_str().unwrap());
    let manifest_key = |job: &str, m: &Value| {
        w.full_key(&format!(
            "{job}/manifests/{}.json",
            m["backup_id"].as_str().unwrap()
        ))
    };
    let put = |key: String, body: Vec<u8>| w.admin_put(&key, body);

    // Data bytes replaced: a new version on the data key.
    let m = manifest("replaced");
    put(data_key(&m), b"forged bytes".to_vec());
    // Manifest edited: a new version of the manifest key with another size.
    let mut m = manifest("edited");
    let edited_key = manifest_key("edited", &m);
    m["data"]["size"] = Value::from(1);
    put(edited_key.clone(), serde_json::to_vec_pretty(&m).unwrap());
    // Signature invalid: a new backup's manifest, copied from a real one with the
    // size changed, keeping the old signature.
    let mut m = manifest("forged");
    let forged_id = "20991231T235959.000Z-0badf00d";
    m["backup_id"] = Value::from(forged_id);
    m["data"]["size"] = Value::from(2);
    put(
        w.full_key(&format!("forged/manifests/{forged_id}.json")),
        serde_json::to_vec_pretty(&m).unwrap(),
    );
    // Data version deleted, once its lock has (here: been made to) run out.
    let m = manifest("deleted");
    let deleted_key = data_key(&m);
    let version = m["data"]["version_id"].as_str().unwrap().to_string();
    w.moto.expire_lock(&w.bucket, &deleted_key, &version);
    w.admin_delete(&deleted_key, Some(&version));
    // A delete marker on the data key.
    let m = manifest("marked");
    let marked_key = data_key(&m);
    w.admin_delete(&marked_key, None);
    let unlocked_key = data_key(&manifest("unlocked"));

    let expect = [
        ("replaced", data_key(&manifest("replaced")), "2 versions"),
        ("edited", edited_key, "2 versions"),
        (
            "forged",
            w.full_key(&format!("forged/manifests/{forged_id}.json")),
            "does not match the manifest's contents",
        ),
        ("deleted", deleted_key, "deleted before its retention ended"),
        ("marked", marked_key, "delete marker"),
        ("unlocked", unlocked_key, "stored without a lock"),
    ];
    for (job, key, phrase) in &expect {
        let (rc, report) = verify(&w, &[job]);
        assert_eq!(rc, EXIT_INTEGRITY, "{job}: {report:#}");
        let relative = key.strip_prefix(&format!("{PREFIX}/")).unwrap();
        let errors: Vec<String> = checked(&report, job)
            .iter()
            .filter_map(|c| c["error"].as_str().map(str::to_string))
            .collect();
        assert!(
            errors
                .iter()
                .any(|e| e.contains(phrase) && e.contains(relative)),
            "{job}: expected `{phrase}` naming {relative} in {errors:#?}"
        );
        assert_eq!(job_report(&report, job)["status"], "integrity");
    }
    // Restore trusts only validly signed manifests: --latest skips the forged one (it
    // is newer) and restores the real backup; asking for the forged one is refused.
    let out_file = w.world.path("forged.out");
    let out = w.vault(&["restore", "forged", "--output", out_file.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("skipping backup"), "{}", stderr(&out));
    assert_eq!(
        fs::read_to_string(&out_file).unwrap(),
        "forged\n".repeat(500)
    );
    let out = w.vault(&["restore", "forged", "--id", forged_id, "--output", "x.out"]);
    assert_eq!(code(&out), EXIT_INTEGRITY, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot be trusted"),
        "{}",
        stderr(&out)
    );

    // The human output says it too, and the whole vault fails with the integrity code.
    let out = w.vault(&["verify"]);
    assert_eq!(code(&out), EXIT_INTEGRITY, "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAILED") && stdout.contains("tampering"),
        "{stdout}"
    );
}

/// A GOVERNANCE lock can be shortened by a principal allowed to bypass it, so the
/// verifier's cache never keeps one: the run after a verify that found it good asks
/// again, and finds it shortened. (A COMPLIANCE lock, which only grows, is kept.)
#[test]
fn a_governance_lock_shortened_after_a_verify_is_found_by_the_next() {
    use aws_sdk_s3::types::{ObjectLockRetention, ObjectLockRetentionMode};

    let w = S3World::new(LockSetup::PerObject);
    fs::write(w.world.path("g.txt"), "governed\n".repeat(100)).unwrap();
    w.config(
        "mode = \"GOVERNANCE\"\n",
        &format!(
            "{}[verify]\ncache_dir = \"verifier\"\n",
            job("gov", "g.txt", "")
        ),
    );
    w.ok(&["backup"]);
    let (rc, report) = verify(&w, &[]);
    assert_eq!(rc, 0, "{report:#}");
    let rows = checked(&report, "gov");
    assert_eq!(rows[0]["lock"]["mode"], "GOVERNANCE", "{report:#}");
    let (rc, _) = verify(&w, &[]);
    assert_eq!(rc, 0);
    assert!(
        w.world.path("verifier").read_dir().unwrap().count() == 1,
        "the cache is kept in [verify] cache_dir"
    );

    let m = &w.manifests("gov")[0];
    let key = w.full_key(m["data"]["key"].as_str().unwrap());
    let version = m["data"]["version_id"].as_str().unwrap();
    let sooner = chrono::Utc::now() + chrono::TimeDelta::days(1);
    let admin = w.moto.admin_client();
    w.moto.block_on(async {
        admin
            .put_object_retention()
            .bucket(&w.bucket)
            .key(&key)
            .version_id(version)
            .bypass_governance_retention(true)
            .retention(
                ObjectLockRetention::builder()
                    .mode(ObjectLockRetentionMode::Governance)
                    .retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(
                        sooner.timestamp(),
                    ))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
    let (rc, report) = verify(&w, &[]);
    assert_eq!(rc, EXIT_INTEGRITY, "{report:#}");
    let relative = key.strip_prefix(&format!("{PREFIX}/")).unwrap();
    let error = checked(&report, "gov")[0]["error"].to_string();
    assert!(
        error.contains("earlier than") && error.contains(relative),
        "{error}"
    );
}

/// Acceptance 3: a job whose newest backup is older than interval + grace is stale
/// (exit 4), and the Prometheus output is valid exposition format with per-job
/// last-success timestamp, size and status (parsed by prometheus_client).
#[test]
fn a_late_job_is_stale_and_metrics_say_so() {
    let w = S3World::new(LockSetup::PerObject);
    fs::write(w.world.path("fast.txt"), "fast\n".repeat(100)).unwrap();
    fs::write(w.world.path("slow.txt"), "slow\n".repeat(100)).unwrap();
    w.config(
        "",
        &format!(
            "{}{}",
            job("fast", "fast.txt", "interval = \"4s\"\ngrace = \"2s\""),
            job("slow", "slow.txt", "schedule = \"@daily\"")
        ),
    );
    w.ok(&["backup"]);
    let (rc, report) = verify(&w, &[]);
    assert_eq!(rc, 0, "{report:#}");
    std::thread::sleep(Duration::from_secs(7));

    let gateway = Receiver::start();
    let prom = w.world.path("vault.prom");
    let (rc, report) = verify(
        &w,
        &[
            "--prometheus",
            prom.to_str().unwrap(),
            "--pushgateway",
            &gateway.url,
        ],
    );
    assert_eq!(rc, EXIT_MISSING, "stale has its own code: {report:#}");
    let fast = job_report(&report, "fast");
    assert_eq!(fast["status"], "stale", "{fast}");
    assert!(fast["findings"].to_string().contains("stale"), "{fast}");
    assert_eq!(job_report(&report, "slow")["status"], "ok");

    // Parsed by the reference parser; the samples are the ones expected.
    let text = fs::read_to_string(&prom).unwrap();
    let parsed = parse_exposition(&text);
    let value = |name: &str, job: &str| -> f64 {
        parsed
            .iter()
            .find(|(n, labels, _)| {
                n == name && labels.get("vault_job").map(String::as_str) == Some(job)
            })
            .unwrap_or_else(|| panic!("no {name}{{job={job}}} in\n{text}"))
            .2
    };
    // Prometheus and the Pushgateway own `job`: vault's job is `vault_job`.
    assert!(
        parsed
            .iter()
            .all(|(_, labels, _)| !labels.contains_key("job")),
        "{text}"
    );
    let newest = &w.manifests("fast")[0];
    let finished = chrono::DateTime::parse_from_rfc3339(newest["finished_at"].as_str().unwrap())
        .unwrap()
        .timestamp() as f64;
    assert_eq!(
        value("vault_job_last_success_timestamp_seconds", "fast"),
        finished
    );
    assert_eq!(
        value("vault_job_last_backup_size_bytes", "fast"),
        newest["data"]["size"].as_f64().unwrap()
    );
    assert_eq!(value("vault_job_stale", "fast"), 1.0);
    assert_eq!(value("vault_job_stale", "slow"), 0.0);
    assert_eq!(value("vault_job_verify_ok", "fast"), 0.0);
    assert_eq!(value("vault_job_verify_ok", "slow"), 1.0);
    let status = parsed
        .iter()
        .filter(|(n, labels, v)| {
            n == "vault_job_verify_status" && labels["vault_job"] == "fast" && *v == 1.0
        })
        .map(|(_, labels, _)| labels["status"].clone())
        .collect::<Vec<_>>();
    assert_eq!(status, ["stale"]);
    let exit = parsed
        .iter()
        .find(|(n, _, _)| n == "vault_verify_exit_code")
        .unwrap()
        .2;
    assert_eq!(exit, f64::from(EXIT_MISSING));

    // The same text went to the Pushgateway.
    let pushed = gateway.wait_for(1, Duration::from_secs(10));
    assert_eq!(pushed[0].method, "PUT");
    assert_eq!(pushed[0].path, "/metrics/job/vault_verify");
    assert_eq!(pushed[0].text(), text);
}

/// Acceptance 6: a webhook receiver gets start and success pings for a good run and a
/// fail ping for a failing one, from backup (per job) and from verify.
#[test]
fn webhook_pings_for_good_and_failing_runs() {
    let w = S3World::new(LockSetup::PerObject);
    let hooks = Receiver::start();
    fs::write(w.world.path("ok.txt"), "fine\n").unwrap();
    let url = &hooks.url;
    w.config(
        "",
        &format!(
            "{}{}[verify]\nping = {{ url = \"{url}/verify\" }}\ncache_dir = \"verify-cache\"\n",
            job("good", "ok.txt", &format!("ping = {{ url = \"{url}/good\" }}")),
            job(
                "bad",
                "missing-file.txt",
                &format!(
                    "ping = {{ start = \"{url}/bad-start\", success = \"{url}/bad-ok\", fail = \"{url}/bad-fail\" }}"
                )
            ),
        ),
    );
    w.ok(&["backup", "good"]);
    let got = hooks.wait_for(2, Duration::from_secs(10));
    let paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/good/start", "/good"]);
    assert!(got[1].text().contains("backup"), "{}", got[1].text());

    let out = w.vault(&["backup", "bad"]);
    assert_ne!(code(&out), 0);
    let got = hooks.wait_for(4, Duration::from_secs(10));
    let paths: Vec<&str> = got[2..].iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/bad-start", "/bad-fail"]);
    assert!(
        got[3].text().contains("bad"),
        "the fail ping says why: {}",
        got[3].text()
    );

    // verify: good (only `good` checked) then failing (`bad` has no backups).
    w.ok(&["verify", "good"]);
    let got = hooks.wait_for(6, Duration::from_secs(10));
    let paths: Vec<&str> = got[4..].iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/verify/start", "/verify"]);
    let out = w.vault(&["verify"]);
    assert_eq!(code(&out), EXIT_MISSING, "{}", stderr(&out));
    let got = hooks.wait_for(8, Duration::from_secs(10));
    let paths: Vec<&str> = got[6..].iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/verify/start", "/verify/fail"]);
    assert!(got[7].text().contains("bad"), "{}", got[7].text());

    // A receiver that is down or failing never fails the run; it is a warning.
    drop(hooks);
    let out = w.vault(&["backup", "good"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("warning"), "{}", stderr(&out));
}

/// A dump far smaller than the recent median (an emptied database looks like this) is
/// reported as suspicious, in the report and in the metrics; it stays a warning.
#[test]
fn an_emptied_database_is_flagged_as_suspicious() {
    let w = common::World::new();
    w.config(&job("db", "dump.sql", ""));
    for rows in [1000, 1100, 1050, 1000, 10] {
        fs::write(
            w.path("dump.sql"),
            "INSERT INTO t VALUES (42);\n".repeat(rows),
        )
        .unwrap();
        w.ok(&["backup"]);
    }
    let prom = w.path("vault.prom");
    let (rc, report) = verify_local(&w, &["--prometheus", prom.to_str().unwrap()]);
    assert_eq!(rc, 0, "a warning, not a failure: {report:#}");
    let db = job_report(&report, "db");
    assert_eq!(db["status"], "warning", "{db}");
    assert!(
        db["findings"].to_string().contains("suspicious size"),
        "{db}"
    );
    let parsed = parse_exposition(&fs::read_to_string(&prom).unwrap());
    let anomaly = parsed
        .iter()
        .find(|(n, labels, _)| n == "vault_job_size_anomaly" && labels["vault_job"] == "db")
        .unwrap()
        .2;
    assert_eq!(anomaly, 1.0);
}

/// Turning signing on: manifests written before `unsigned_before` may stay unsigned
/// (the store's own write time decides, not the manifest's claim); without it, the old
/// unsigned manifests are reported as tampering.
#[test]
fn signing_can_be_turned_on_for_an_existing_vault() {
    let w = common::World::new();
    let jobs = job("db", "dump.sql", "");
    fs::write(w.path("dump.sql"), "INSERT INTO t VALUES (1);\n").unwrap();
    w.config(&jobs);
    w.ok(&["backup"]);
    std::thread::sleep(Duration::from_millis(1100));
    let cutoff = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    std::thread::sleep(Duration::from_millis(1100));

    let out = Command::new(vault_bin())
        .args(["keygen", "--signing", "-o"])
        .arg(w.path("signing.key"))
        .output()
        .unwrap();
    let public = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let signing = format!(
        "[signing]\nkey_file = \"signing.key\"\nstate_dir = \"state\"\npublic_keys = [\"{public}\"]\n"
    );
    w.config(&format!("{jobs}{signing}"));
    w.ok(&["backup"]);
    let out = w.vault(&["verify"]);
    assert_eq!(code(&out), EXIT_INTEGRITY, "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not signed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    w.config(&format!("{jobs}{signing}unsigned_before = \"{cutoff}\"\n"));
    let out = w.vault(&["--json", "verify", "--all"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["checked"].as_array().unwrap().len(), 2);
    // Both backups can be restored: the older one predates signing.
    let first = w.manifests("db")[0]["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    w.ok(&["restore", "db", "--id", &first, "--output", "first.sql"]);
}

/// A series with a hole longer than interval + grace is reported as a gap (a warning:
/// the job is fresh again, but a restore point is missing); a regular series is not.
#[test]
fn a_hole_in_the_series_is_reported_as_a_gap() {
    let w = common::World::new();
    fs::write(w.path("dump.sql"), "INSERT INTO t VALUES (1);\n".repeat(50)).unwrap();
    w.config(&job("db", "dump.sql", "interval = \"3s\"\ngrace = \"3s\""));
    w.ok(&["backup"]);
    w.ok(&["backup"]);
    let (rc, report) = verify_local(&w, &[]);
    assert_eq!(rc, 0, "{report:#}");
    let db = job_report(&report, "db");
    assert_eq!(db["status"], "ok", "two backups in a row are no gap: {db}");

    std::thread::sleep(Duration::from_secs(8));
    w.ok(&["backup"]);
    let (rc, report) = verify_local(&w, &[]);
    assert_eq!(rc, 0, "a gap is a warning: {report:#}");
    let db = job_report(&report, "db");
    assert_eq!(db["status"], "warning", "{db}");
    let findings = db["findings"].to_string();
    assert!(findings.contains("gap: no backup for"), "{db}");
    assert_eq!(
        findings.matches("gap:").count(),
        1,
        "one hole, one gap: {db}"
    );
}
