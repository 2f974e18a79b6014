//! `vault prune` against the local S3 server with IAM on (moto, patched by
//! tests/moto/server.py), the pruner a user with deploy/iam/pruner.json (issue 18).
//!
//! Backups whose lock has ended cannot be made by waiting, so they are made from real
//! ones: the admin copies a backup's data and manifest under a new backup id dated
//! `days` ago, with the manifest's dates and retain-until moved back to match, locks
//! both copies, and ends their locks with the server's expire-lock hook. Such a backup
//! is exactly what a writer would have left `days` ago, with the same ciphertext, so
//! verify and restore read it like any other.

mod common;
mod s3harness;

use std::collections::BTreeSet;

use aws_sdk_s3::error::ProvideErrorMetadata as _;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectLockMode};
use chrono::{DateTime, TimeDelta, Utc};
use common::{EXIT_INTEGRITY, code, stderr};
use s3harness::{Keys, LockSetup, S3World, job_report};
use serde_json::Value;

/// The expire-lock hook ends a lock one second ago: a grace of one second has passed
/// by the time vault looks (the default day would keep every such backup).
const GRACE: &str = "prune_grace = \"1s\"\n";

/// A command job that dumps input.txt, with extra lines.
fn job(name: &str, extra: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\n{extra}\nsource = {{ kind = \"command\", command = [\"cat\", \"input.txt\"] }}\n"
    )
}

/// A vault with four identities, the pruner's keys in `VAULT_TEST_PRUNER_*`.
struct Vault {
    w: S3World,
    pruner: Keys,
}

impl Vault {
    fn new(retention: String, jobs: &str) -> Vault {
        let w = S3World::new(LockSetup::PerObject);
        let pruner = w.moto.create_user("vault-pruner", &["pruner"], &w.bucket);
        let identities = s3harness::identities_toml(&["writer", "verifier", "pruner", "restorer"]);
        w.config_with(&retention, &identities, jobs);
        std::fs::write(w.world.path("input.txt"), "the database\n").unwrap();
        Vault { w, pruner }
    }

    fn vault(&self, args: &[&str]) -> std::process::Output {
        self.w
            .command(args)
            .env("VAULT_TEST_PRUNER_KEY", &self.pruner.id)
            .env("VAULT_TEST_PRUNER_SECRET", &self.pruner.secret)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        common::succeeded(args, self.vault(args))
    }

    /// `vault --json prune ARGS`: the backup ids it names, in order.
    fn prune(&self, args: &[&str]) -> (Vec<String>, Value) {
        let args = [&["--json", "prune"], args].concat();
        let out = self.ok(&args);
        let v: Value = serde_json::from_str(&out).unwrap();
        let ids = v["pruned"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["backup_id"].as_str().unwrap().to_string())
            .collect();
        (ids, v)
    }

    /// `vault --json verify`: exit code and report.
    fn verify(&self, args: &[&str]) -> (i32, Value) {
        let out = self.vault(&[&["--json", "verify"], args].concat());
        let report = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("verify printed no JSON ({e}): {}", stderr(&out)));
        (code(&out), report)
    }

    /// Every version and delete marker under the bucket: (key, version id, is marker).
    fn versions(&self) -> BTreeSet<(String, String, bool)> {
        let client = self.w.moto.admin_client();
        self.w.moto.block_on(async {
            let out = client
                .list_object_versions()
                .bucket(&self.w.bucket)
                .send()
                .await
                .unwrap();
            let mut all = BTreeSet::new();
            for v in out.versions() {
                all.insert((
                    v.key().unwrap().to_string(),
                    v.version_id().unwrap().to_string(),
                    false,
                ));
            }
            for m in out.delete_markers() {
                all.insert((
                    m.key().unwrap().to_string(),
                    m.version_id().unwrap().to_string(),
                    true,
                ));
            }
            all
        })
    }

    /// Keys hidden by a delete marker (their newest entry is one).
    fn hidden(&self) -> BTreeSet<String> {
        let client = self.w.moto.admin_client();
        self.w.moto.block_on(async {
            let out = client
                .list_object_versions()
                .bucket(&self.w.bucket)
                .send()
                .await
                .unwrap();
            out.delete_markers()
                .iter()
                .filter(|m| m.is_latest() == Some(true))
                .map(|m| m.key().unwrap().to_string())
                .collect()
        })
    }

    /// A copy of `job`'s newest backup as if written `days` ago in `tier` with a lock
    /// of `lock_days`; with `expire`, both copies' locks are ended. Its backup id.
    fn aged(&self, job: &str, days: i64, tier: &str, lock_days: i64, expire: bool) -> String {
        self.aged_from(job, job, days, tier, lock_days, expire)
    }

    /// Like [`Vault::aged`], copying `from`'s newest backup into job `job`.
    fn aged_from(
        &self,
        from: &str,
        job: &str,
        days: i64,
        tier: &str,
        lock_days: i64,
        expire: bool,
    ) -> String {
        let w = &self.w;
        let mut m = w.manifests(from).pop().expect("a backup to copy");
        let at: DateTime<Utc> = Utc::now() - TimeDelta::days(days);
        let id = format!(
            "{}-{:08x}",
            at.format("%Y%m%dT%H%M%S%.3fZ"),
            rand_suffix(job, days)
        );
        let ext = m["source"]["extension"].as_str().unwrap().to_string();
        let data_key = format!("{job}/data/{}/{id}.{ext}.zst.age", at.format("%Y/%m/%d"));
        let body = self.read(&w.full_key(m["data"]["key"].as_str().unwrap()));
        let data_version = self.put_locked(&w.full_key(&data_key), body, expire);
        let until = at + TimeDelta::days(lock_days);
        m["job"] = Value::from(job);
        m["backup_id"] = Value::from(id.clone());
        m["started_at"] = Value::from(at.to_rfc3339());
        m["finished_at"] = Value::from((at + TimeDelta::seconds(5)).to_rfc3339());
        m["data"]["key"] = Value::from(data_key);
        m["data"]["version_id"] = Value::from(data_version);
        m["retention"]["tier"] = Value::from(tier);
        m["retention"]["retain_until"] = Value::from(until.to_rfc3339());
        let manifest_key = w.full_key(&format!("{job}/manifests/{id}.json"));
        self.put_locked(
            &manifest_key,
            serde_json::to_vec_pretty(&m).unwrap(),
            expire,
        );
        id
    }

    fn read(&self, key: &str) -> Vec<u8> {
        let client = self.w.moto.admin_client();
        self.w.moto.block_on(async {
            let out = client
                .get_object()
                .bucket(&self.w.bucket)
                .key(key)
                .send()
                .await
                .unwrap();
            out.body.collect().await.unwrap().into_bytes().to_vec()
        })
    }

    /// Puts `body` at `key` locked (COMPLIANCE, a day); with `expire` the lock is then
    /// ended by the test hook. The version id.
    fn put_locked(&self, key: &str, body: Vec<u8>, expire: bool) -> String {
        let client = self.w.moto.admin_client();
        let until = Utc::now() + TimeDelta::days(1);
        let version = self.w.moto.block_on(async {
            client
                .put_object()
                .bucket(&self.w.bucket)
                .key(key)
                .body(ByteStream::from(body))
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .object_lock_mode(ObjectLockMode::Compliance)
                .object_lock_retain_until_date(aws_smithy_types::DateTime::from_secs(
                    until.timestamp(),
                ))
                .send()
                .await
                .unwrap()
                .version_id()
                .unwrap()
                .to_string()
        });
        if expire {
            self.w.moto.expire_lock(&self.w.bucket, key, &version);
        }
        version
    }

    /// The manifest and data keys of backup `id` of `job` (bucket keys).
    fn keys_of(&self, job: &str, id: &str) -> (String, String) {
        let manifest_key = self.w.full_key(&format!("{job}/manifests/{id}.json"));
        let m: Value = serde_json::from_slice(&self.read_any_version(&manifest_key)).unwrap();
        (
            manifest_key,
            self.w.full_key(m["data"]["key"].as_str().unwrap()),
        )
    }

    /// The first version of `key`, hidden or not.
    fn read_any_version(&self, key: &str) -> Vec<u8> {
        let version = self
            .versions()
            .into_iter()
            .find(|(k, _, marker)| k == key && !marker)
            .map(|(_, v, _)| v)
            .expect("a version");
        let client = self.w.moto.admin_client();
        self.w.moto.block_on(async {
            let out = client
                .get_object()
                .bucket(&self.w.bucket)
                .key(key)
                .version_id(version)
                .send()
                .await
                .unwrap();
            out.body.collect().await.unwrap().into_bytes().to_vec()
        })
    }
}

/// A deterministic suffix, distinct per (job, age).
fn rand_suffix(job: &str, days: i64) -> u32 {
    job.bytes()
        .fold((days as u32).wrapping_mul(2_654_435_761), |h, b| {
            h.rotate_left(5) ^ b as u32
        })
}

/// Acceptance 1 and 5: expired backups are pruned, data and manifest; the newest
/// `keep_last` stay even when expired; locked ones are untouched; verify passes and
/// reports the pruning as expected. `--dry-run` changes nothing and names exactly what
/// the real run then prunes.
#[test]
fn expired_backups_are_pruned_and_the_newest_and_locked_ones_kept() {
    let v = Vault::new(GRACE.to_string() + "keep_last = 2\n", &job("db", ""));
    v.ok(&["backup", "db"]);
    let fresh = v.w.manifests("db")[0]["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Four expired backups (40..37 days ago, daily locks of 35 days) and one whose
    // lock the store still holds although its manifest says it ended.
    let expired: Vec<String> = (37..=40)
        .rev()
        .map(|d| v.aged("db", d, "daily", 35, true))
        .collect();
    let still_locked = v.aged("db", 50, "daily", 35, false);
    let before = v.versions();

    let (dry, report) = v.prune(&["--dry-run"]);
    assert_eq!(report["dry_run"], true);
    assert_eq!(v.versions(), before, "--dry-run changed the bucket");
    // keep_last = 2 among the good ones: the fresh backup and the newest expired one.
    assert_eq!(dry, expired[..3].to_vec(), "{report:#}");
    assert!(report["bytes"].as_u64().unwrap() > 0, "{report:#}");
    let out = v.vault(&["prune", "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.lines().all(|l| l.starts_with("would prune db ")),
        "{text}"
    );
    assert!(
        stderr(&out).contains("would prune 3 backups"),
        "{}",
        stderr(&out)
    );

    let (pruned, _) = v.prune(&[]);
    assert_eq!(pruned, dry, "the real run prunes what --dry-run said");
    let after = v.versions();
    assert!(
        before.is_subset(&after),
        "a version was removed: {:?}",
        before.difference(&after).collect::<Vec<_>>()
    );
    let mut hidden = BTreeSet::new();
    for id in &expired[..3] {
        let (manifest, data) = v.keys_of("db", id);
        hidden.insert(manifest);
        hidden.insert(data);
    }
    assert_eq!(
        v.hidden(),
        hidden,
        "data and manifest of each pruned backup"
    );
    assert_eq!(after.len(), before.len() + 6, "one marker per key");
    // Nothing left to prune: a second run is a no-op.
    assert!(v.prune(&[]).0.is_empty());
    // The backup whose manifest says its lock ended but whose store lock holds stays.
    assert!(!dry.contains(&still_locked));
    let (m, d) = v.keys_of("db", &still_locked);
    assert!(!v.hidden().contains(&m) && !v.hidden().contains(&d));

    // Until the lifecycle removes it, a pruned backup still restores by its id.
    let out = v.w.world.path("pruned.restored");
    v.ok(&[
        "restore",
        "db",
        "--id",
        &expired[0],
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "the database\n");

    // verify passes; the pruned backups are reported as pruning, not tampering.
    let (code, report) = v.verify(&[]);
    assert_eq!(code, 0, "{report:#}");
    let db = job_report(&report, "db");
    assert_eq!(db["pruned"], 3, "{db:#}");
    assert_eq!(db["newest"], fresh.as_str(), "{db:#}");
    assert!(db["storage"]["bytes"].as_u64().unwrap() > 0, "{db:#}");
    for row in report["checked"].as_array().unwrap() {
        assert_eq!(row["ok"], true, "{row:#}");
        let pruned = expired[..3].contains(&row["backup_id"].as_str().unwrap().to_string());
        assert_eq!(row["pruned"], pruned, "{row:#}");
    }
}

/// Acceptance 4: a job with no backup for longer than every tier's lock keeps its last
/// good backup, which still restores.
#[test]
fn a_job_that_stopped_keeps_its_last_good_backup() {
    let v = Vault::new(GRACE.to_string(), &(job("seed", "") + &job("gone", "")));
    v.ok(&["backup", "seed"]);
    // Older than every default tier's lock (35d, 13w, 13mo, 7y), newest last; the job
    // has no other backup.
    let aged = [
        v.aged_from("seed", "gone", 3000, "yearly", 2557, true),
        v.aged_from("seed", "gone", 900, "monthly", 395, true),
        v.aged_from("seed", "gone", 800, "weekly", 91, true),
        v.aged_from("seed", "gone", 700, "daily", 35, true),
    ];
    let (pruned, _) = v.prune(&["gone"]);
    assert_eq!(pruned, aged[..3].to_vec(), "keep_last defaults to 1");
    assert!(v.prune(&[]).0.is_empty(), "the last one is never pruned");
    let out = v.w.world.path("gone.restored");
    v.ok(&[
        "restore",
        "gone",
        "--latest",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "the database\n");
    // verify: stale (no new backup for 700 days), not tampering; its newest is the kept one.
    let (code, report) = v.verify(&["gone"]);
    assert_eq!(code, common::EXIT_MISSING, "{report:#}");
    let gone = job_report(&report, "gone");
    assert_eq!(gone["status"], "stale", "{gone:#}");
    assert_eq!(gone["newest"], aged[3].as_str(), "{gone:#}");
    assert_eq!(gone["pruned"], 3, "{gone:#}");
}

/// The S3 error code of a request, or `None` when it succeeded.
async fn refused<T, E: aws_sdk_s3::error::ProvideErrorMetadata>(
    result: Result<T, aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
) -> Option<String> {
    result.err().map(|e| e.code().unwrap_or("?").to_string())
}

/// Acceptance 2 and 3: the pruner cannot remove or hide a backup whose lock holds —
/// vault refuses, and the one thing S3 lets it do anyway (a delete marker over a locked
/// object) leaves every version in place and is flagged by verify as tampering; it
/// cannot delete a version, change a lock or change the bucket. The writer, verifier
/// and restorer cannot delete or hide anything.
#[test]
fn locked_backups_cannot_be_pruned_and_a_forced_marker_is_tampering() {
    let v = Vault::new(GRACE.to_string(), &job("db", ""));
    v.ok(&["backup", "db"]);
    v.ok(&["backup", "db"]);
    let ids: Vec<String> =
        v.w.manifests("db")
            .iter()
            .map(|m| m["backup_id"].as_str().unwrap().to_string())
            .collect();
    let before = v.versions();
    // Both locked (the older is not among keep_last = 1): vault refuses.
    assert!(v.prune(&[]).0.is_empty());
    assert_eq!(v.versions(), before);

    let (manifest_key, data_key) = v.keys_of("db", &ids[0]);
    let data_version = before
        .iter()
        .find(|(k, _, _)| *k == data_key)
        .map(|(_, id, _)| id.clone())
        .unwrap();
    let bucket = v.w.bucket.clone();
    let pruner = v.w.moto.client(&v.pruner);
    v.w.moto.block_on(async {
        // No version delete, no retention change, no bucket change, no write.
        let version_delete = pruner
            .delete_object()
            .bucket(&bucket)
            .key(&data_key)
            .version_id(&data_version)
            .send()
            .await;
        assert_eq!(
            refused(version_delete).await.as_deref(),
            Some("AccessDenied")
        );
        let shorten = pruner
            .put_object_retention()
            .bucket(&bucket)
            .key(&data_key)
            .version_id(&data_version)
            .retention(
                aws_sdk_s3::types::ObjectLockRetention::builder()
                    .mode(aws_sdk_s3::types::ObjectLockRetentionMode::Governance)
                    .retain_until_date(aws_smithy_types::DateTime::from_secs(
                        Utc::now().timestamp() + 60,
                    ))
                    .build(),
            )
            .send()
            .await;
        assert_eq!(refused(shorten).await.as_deref(), Some("AccessDenied"));
        let suspend = pruner
            .put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Suspended)
                    .build(),
            )
            .send()
            .await;
        assert_eq!(refused(suspend).await.as_deref(), Some("AccessDenied"));
        let write = pruner
            .put_object()
            .bucket(&bucket)
            .key(&data_key)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await;
        assert_eq!(refused(write).await.as_deref(), Some("AccessDenied"));
        // The writer, verifier and restorer may not even add a delete marker.
        for keys in [&v.w.ids.writer, &v.w.ids.verifier, &v.w.ids.restorer] {
            let client = v.w.moto.client(keys);
            let hide = client
                .delete_object()
                .bucket(&bucket)
                .key(&manifest_key)
                .send()
                .await;
            assert_eq!(refused(hide).await.as_deref(), Some("AccessDenied"));
        }
    });
    assert_eq!(v.versions(), before, "nothing changed");

    // The pruner's raw call: S3 lets a delete marker over a locked object through.
    v.w.moto.block_on(async {
        for key in [&manifest_key, &data_key] {
            let hide = pruner.delete_object().bucket(&bucket).key(key).send().await;
            assert_eq!(refused(hide).await, None, "{key}");
        }
    });
    let after = v.versions();
    assert!(before.is_subset(&after), "every version stays");
    let (code, report) = v.verify(&[]);
    assert_eq!(code, EXIT_INTEGRITY, "{report:#}");
    let row = report["checked"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["backup_id"] == ids[0].as_str())
        .unwrap();
    assert_eq!(row["pruned"], false, "{row:#}");
    assert!(
        row["error"]
            .as_str()
            .unwrap()
            .contains("tampering: data key"),
        "{row:#}"
    );
    // And vault prune still will not touch it (its lock holds).
    assert!(v.prune(&["--dry-run"]).0.is_empty());
}

/// Acceptance 3: doctor's matrix holds the pruner when it is configured — allowed to
/// read, list and add a delete marker; denied version deletes, retention changes,
/// writes and bucket changes — and the three others as before.
#[test]
fn doctor_proves_what_the_pruner_may_do() {
    let v = Vault::new(String::new(), "");
    let out = v.vault(&["--json", "doctor"]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor printed no JSON ({e}): {}", stderr(&out)));
    let rows = report["matrix"].as_array().unwrap();
    let bad: Vec<&Value> = rows.iter().filter(|r| r["verdict"] != "ok").collect();
    assert_eq!(code(&out), 0, "{bad:#?}\n{}", stderr(&out));
    let pruner = |action: &str| -> Vec<&Value> {
        rows.iter()
            .filter(|r| r["identity"] == "pruner" && r["action"] == action)
            .collect()
    };
    for (action, expected) in [
        ("s3:DeleteObject", "allowed"),
        ("s3:GetObject", "allowed"),
        ("s3:ListBucketVersions", "allowed"),
        ("s3:GetObjectRetention", "allowed"),
        ("s3:DeleteObjectVersion", "denied"),
        ("s3:PutObjectRetention", "denied"),
        ("s3:PutObjectLegalHold", "denied"),
        ("s3:PutObject", "denied"),
        ("s3:PutBucketVersioning", "denied"),
        ("s3:PutLifecycleConfiguration", "denied"),
        ("s3:PutBucketPolicy", "denied"),
    ] {
        let found = pruner(action);
        assert!(!found.is_empty(), "no pruner row for {action}: {rows:#?}");
        for r in found {
            assert_eq!(r["expected"], expected, "{r:#}");
            assert_eq!(r["verdict"], "ok", "{r:#}");
        }
    }
    for identity in ["writer", "verifier", "restorer"] {
        let delete = rows
            .iter()
            .find(|r| r["identity"] == identity && r["action"] == "s3:DeleteObject")
            .unwrap();
        assert_eq!(delete["expected"], "denied", "{delete:#}");
    }
}
