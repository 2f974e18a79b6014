//! The S3 Object Lock vault against a local S3 with enforced IAM (moto, patched by
//! tests/moto/server.py). Users get exactly the policies in deploy/iam.

mod common;
mod s3harness;

use std::fs;
use std::process::Stdio;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketVersioningStatus, ExpirationStatus, LifecycleExpiration,
    LifecycleRule, LifecycleRuleFilter, ObjectLockRetention, ObjectLockRetentionMode,
    VersioningConfiguration,
};
use chrono::{DateTime, Utc};
use common::{EXIT_INTEGRITY, code, file_hash, stderr, write_mixed};
use s3harness::{Keys, LockSetup, Moto, S3World};

const EXIT_ACCESS_DENIED: i32 = 5;

/// Polls the server (gently) until `ready` holds; fails after a minute naming `what`.
fn poll(what: &str, ready: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two jobs: `big` (≥ 64 MiB through a command, so several 8 MiB parts) and `small`.
fn two_jobs(w: &S3World) -> (std::path::PathBuf, std::path::PathBuf) {
    let big = w.world.path("big.bin");
    write_mixed(&big, 66 << 20, 11);
    let small = w.world.path("small.txt");
    fs::write(&small, "a small dump\n").unwrap();
    w.config(
        "",
        &format!(
            "[[job]]\nname = \"big\"\nsource = {{ kind = \"command\", command = [\"cat\", \"{}\"] }}\n\
             [[job]]\nname = \"small\"\nsource = {{ kind = \"command\", command = [\"cat\", \"{}\"] }}\n",
            big.display(),
            small.display()
        ),
    );
    (big, small)
}

fn obj_lock(
    w: &S3World,
    key: &str,
    version: Option<&str>,
) -> (Option<String>, Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let client = w.moto.admin_client();
    w.moto.block_on(async {
        let out = client
            .head_object()
            .bucket(&w.bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
            .unwrap_or_else(|e| panic!("admin HeadObject {key}: {e:?}"));
        let t =
            |d: &aws_sdk_s3::primitives::DateTime| DateTime::from_timestamp(d.secs(), 0).unwrap();
        (
            out.object_lock_mode().map(|m| m.as_str().to_string()),
            out.object_lock_retain_until_date().map(t),
            out.last_modified().map(t),
        )
    })
}

fn denied<T, E: ProvideErrorMetadata + std::fmt::Debug>(
    what: &str,
    r: Result<T, aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
) {
    match r {
        Ok(_) => panic!("{what} was allowed; it must be denied"),
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            assert!(
                e.code() == Some("AccessDenied") || status == Some(403),
                "{what}: expected AccessDenied, got {:?} / {status:?}: {e:?}",
                e.code()
            );
        }
    }
}

#[test]
fn moto_patches_self_test() {
    let out = std::process::Command::new("python3")
        .arg("tests/moto/selftest.py")
        .current_dir(s3harness::crate_root())
        .output()
        .expect("python3 runs tests/moto/selftest.py (./scripts/test installs moto)");
    assert!(
        out.status.success(),
        "the moto patches no longer hold:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Acceptance 1, 2, 4, 5: policies from deploy/iam; backups under the writer; version
/// ids in manifests; list/verify as verifier; restore as restorer; locks per tier.
#[test]
fn per_object_locks_backup_list_verify_restore() {
    let w = S3World::new(LockSetup::PerObject);
    let (big, small) = two_jobs(&w);
    w.ok(&["backup"]);

    for (job, input) in [("big", &big), ("small", &small)] {
        let ms = w.manifests(job);
        assert_eq!(ms.len(), 1, "{job}: one manifest");
        let m = &ms[0];
        let version = m["data"]["version_id"]
            .as_str()
            .expect("version id in the manifest");
        assert!(!version.is_empty());
        assert_eq!(m["retention"]["applied_by"], "per-object");
        // Acceptance 5: the data object and the manifest carry the manifest's lock.
        let until: DateTime<Utc> = m["retention"]["retain_until"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(until > Utc::now() + chrono::Duration::days(30));
        let data_key = w.full_key(m["data"]["key"].as_str().unwrap());
        let (mode, retain, _) = obj_lock(&w, &data_key, Some(version));
        assert_eq!(mode.as_deref(), Some("COMPLIANCE"), "{data_key}");
        assert_eq!(retain, Some(until), "{data_key}: retain-until of its tier");
        let manifest_key = w.full_key(&format!(
            "{job}/manifests/{}.json",
            m["backup_id"].as_str().unwrap()
        ));
        let (mode, retain, _) = obj_lock(&w, &manifest_key, None);
        assert_eq!(mode.as_deref(), Some("COMPLIANCE"), "{manifest_key}");
        assert_eq!(retain, Some(until), "{manifest_key}");

        // Acceptance 4: the verifier lists and verifies, the restorer restores.
        let listed = w.ok(&["--json", "list", job]);
        assert!(listed.contains(m["backup_id"].as_str().unwrap()));
        w.ok(&["verify", job]);
        let out = w.world.path(&format!("{job}.restored"));
        w.ok(&[
            "restore",
            job,
            "--latest",
            "--output",
            out.to_str().unwrap(),
        ]);
        assert_eq!(file_hash(&out), file_hash(input), "{job}: restored bytes");
    }
    // The big one really was a multipart upload of several parts: its ETag says so.
    let m = &w.manifests("big")[0];
    let client = w.moto.admin_client();
    let etag = w.moto.block_on(async {
        client
            .head_object()
            .bucket(&w.bucket)
            .key(w.full_key(m["data"]["key"].as_str().unwrap()))
            .send()
            .await
            .unwrap()
            .e_tag()
            .unwrap()
            .to_string()
    });
    let parts: u32 = etag
        .trim_matches('"')
        .rsplit_once('-')
        .expect("a multipart ETag")
        .1
        .parse()
        .unwrap();
    assert!(parts >= 4, "{parts} parts");
}

/// Acceptance 2 and 5 in bucket-default mode: no lock headers, no retention permission.
#[test]
fn bucket_default_retention_backup_with_put_object_alone() {
    let w = S3World::new(LockSetup::BucketDefault { days: 3 });
    let (big, _) = two_jobs(&w);
    w.ok(&["backup"]);
    for job in ["big", "small"] {
        let m = &w.manifests(job)[0];
        assert!(m["data"]["version_id"].as_str().is_some());
        assert_eq!(m["retention"]["applied_by"], "bucket-default");
        for key in [
            w.full_key(m["data"]["key"].as_str().unwrap()),
            w.full_key(&format!(
                "{job}/manifests/{}.json",
                m["backup_id"].as_str().unwrap()
            )),
        ] {
            let (mode, retain, modified) = obj_lock(&w, &key, None);
            assert_eq!(mode.as_deref(), Some("COMPLIANCE"), "{key}");
            let expected = modified.unwrap() + chrono::Duration::days(3);
            let off = (retain.unwrap() - expected).num_seconds().abs();
            assert!(off <= 120, "{key}: retain-until {retain:?} vs {expected}");
        }
    }
    let out = w.world.path("big.restored");
    w.ok(&[
        "restore",
        "big",
        "--latest",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(file_hash(&out), file_hash(&big));
}

/// Deletes and bucket changes, one request each: denied to every vault identity.
fn forbidden_deletes_and_bucket_changes(
    client: &Client,
    moto: &Moto,
    bucket: &str,
    key: &str,
    version: &str,
    who: &str,
) {
    let rule = LifecycleRule::builder()
        .id("expire-everything")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .expiration(LifecycleExpiration::builder().days(1).build())
        .build()
        .unwrap();
    let lifecycle = BucketLifecycleConfiguration::builder()
        .rules(rule)
        .build()
        .unwrap();
    let suspended = VersioningConfiguration::builder()
        .status(BucketVersioningStatus::Suspended)
        .build();
    moto.block_on(async {
        denied(
            &format!("{who} DeleteObject"),
            client.delete_object().bucket(bucket).key(key).send().await,
        );
        denied(
            &format!("{who} DeleteObject(version)"),
            client
                .delete_object()
                .bucket(bucket)
                .key(key)
                .version_id(version)
                .send()
                .await,
        );
        denied(
            &format!("{who} PutBucketVersioning"),
            client
                .put_bucket_versioning()
                .bucket(bucket)
                .versioning_configuration(suspended)
                .send()
                .await,
        );
        denied(
            &format!("{who} PutBucketPolicy"),
            client
                .put_bucket_policy()
                .bucket(bucket)
                .policy(r#"{"Version":"2012-10-17","Statement":[]}"#)
                .send()
                .await,
        );
        denied(
            &format!("{who} PutBucketLifecycleConfiguration"),
            client
                .put_bucket_lifecycle_configuration()
                .bucket(bucket)
                .lifecycle_configuration(lifecycle)
                .send()
                .await,
        );
    });
}

/// PutObjectRetention (COMPLIANCE until `until`) on one version, as `client`.
fn set_retention(
    client: &Client,
    moto: &Moto,
    bucket: &str,
    key: &str,
    version: &str,
    until: DateTime<Utc>,
) -> Result<(), String> {
    moto.block_on(async {
        client
            .put_object_retention()
            .bucket(bucket)
            .key(key)
            .version_id(version)
            .retention(
                ObjectLockRetention::builder()
                    .mode(ObjectLockRetentionMode::Compliance)
                    .retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(
                        until.timestamp(),
                    ))
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "{:?} {:?}",
                    e.code(),
                    e.raw_response().map(|r| r.status().as_u16())
                )
            })
    })
}

fn is_access_denied(e: &str) -> bool {
    e.contains("AccessDenied") || e.contains("403")
}

/// Acceptance 3 (both modes) and the write/delete half of 4.
#[test]
fn each_identity_is_denied_what_it_must_not_do() {
    for setup in [LockSetup::PerObject, LockSetup::BucketDefault { days: 2 }] {
        let w = S3World::new(setup);
        let (_, _) = two_jobs(&w);
        w.ok(&["backup", "small"]);
        let m = &w.manifests("small")[0];
        let key = w.full_key(m["data"]["key"].as_str().unwrap());
        let version = m["data"]["version_id"].as_str().unwrap().to_string();
        let writer = w.moto.client(&w.ids.writer);
        let b = &w.bucket;
        w.moto.block_on(async {
            denied(
                "writer GetObject",
                writer.get_object().bucket(b).key(&key).send().await,
            );
            denied(
                "writer GetObject(version)",
                writer
                    .get_object()
                    .bucket(b)
                    .key(&key)
                    .version_id(&version)
                    .send()
                    .await,
            );
            denied(
                "writer HeadObject",
                writer.head_object().bucket(b).key(&key).send().await,
            );
            denied(
                "writer ListObjectsV2",
                writer.list_objects_v2().bucket(b).send().await,
            );
            denied(
                "writer ListObjectVersions",
                writer.list_object_versions().bucket(b).send().await,
            );
            denied(
                "writer GetObjectRetention",
                writer
                    .get_object_retention()
                    .bucket(b)
                    .key(&key)
                    .send()
                    .await,
            );
        });
        forbidden_deletes_and_bucket_changes(&writer, &w.moto, b, &key, &version, "writer");
        let shortened = set_retention(
            &writer,
            &w.moto,
            b,
            &key,
            &version,
            Utc::now() + chrono::Duration::days(1),
        );
        match setup {
            LockSetup::BucketDefault { .. } => {
                let e = shortened
                    .expect_err("writer PutObjectRetention in bucket-default mode must be denied");
                assert!(is_access_denied(&e), "{e}");
            }
            LockSetup::PerObject => {
                assert!(
                    shortened.is_err(),
                    "the writer shortened a COMPLIANCE retention"
                );
            }
        }
        // Whatever was tried, the lock is as it was written.
        let (mode, retain, _) = obj_lock(&w, &key, Some(&version));
        assert_eq!(mode.as_deref(), Some("COMPLIANCE"));
        assert!(retain.unwrap() > Utc::now() + chrono::Duration::days(1));

        // Verifier and restorer: read, never write or delete.
        w.ok(&["list"]);
        w.ok(&["verify", "small"]);
        for (who, keys) in [("verifier", &w.ids.verifier), ("restorer", &w.ids.restorer)] {
            let client = w.moto.client(keys);
            w.moto.block_on(async {
                denied(
                    &format!("{who} PutObject"),
                    client
                        .put_object()
                        .bucket(b)
                        .key(format!("backups/{who}-probe"))
                        .body(ByteStream::from_static(b"x"))
                        .send()
                        .await,
                );
            });
            let extended = set_retention(
                &client,
                &w.moto,
                b,
                &key,
                &version,
                Utc::now() + chrono::Duration::days(3650),
            );
            let e = extended.expect_err("readers must not change retention");
            assert!(is_access_denied(&e), "{who} PutObjectRetention: {e}");
            forbidden_deletes_and_bucket_changes(&client, &w.moto, b, &key, &version, who);
        }
        // The objects are all still there.
        let (mode, _, _) = obj_lock(&w, &key, Some(&version));
        assert!(mode.is_some());
    }
}

/// Acceptance 6: an admin overwriting a data key or adding a delete marker changes
/// neither what restore returns nor goes unnoticed by verify.
#[test]
fn tampering_by_an_admin_is_reported_and_restore_reads_the_recorded_version() {
    let w = S3World::new(LockSetup::PerObject);
    let (_, small) = two_jobs(&w);
    w.ok(&["backup", "small"]);
    let other = w.world.path("other.txt");
    fs::write(&other, "another day\n").unwrap();
    fs::copy(&other, &small).unwrap();
    w.ok(&["backup", "small"]);
    let ms = w.manifests("small");
    assert_eq!(ms.len(), 2);
    let keys: Vec<String> = ms
        .iter()
        .map(|m| w.full_key(m["data"]["key"].as_str().unwrap()))
        .collect();
    let admin = w.moto.admin_client();
    w.moto.block_on(async {
        // A new version on top of the first backup's data object...
        admin
            .put_object()
            .bucket(&w.bucket)
            .key(&keys[0])
            .body(ByteStream::from_static(b"forged"))
            .send()
            .await
            .unwrap();
        // ...and a delete marker on the second's.
        admin
            .delete_object()
            .bucket(&w.bucket)
            .key(&keys[1])
            .send()
            .await
            .unwrap();
    });
    // The first backup's manifest replaced by one that points at the forged version,
    // the second's hidden behind a delete marker.
    let forged_version = w.moto.block_on(async {
        admin
            .list_object_versions()
            .bucket(&w.bucket)
            .prefix(&keys[0])
            .send()
            .await
            .unwrap()
            .versions()
            .iter()
            .find(|v| v.is_latest() == Some(true))
            .and_then(|v| v.version_id().map(str::to_string))
            .unwrap()
    });
    let manifest_keys: Vec<String> = ms
        .iter()
        .map(|m| {
            w.full_key(&format!(
                "small/manifests/{}.json",
                m["backup_id"].as_str().unwrap()
            ))
        })
        .collect();
    let mut forged = ms[0].clone();
    forged["data"]["version_id"] = serde_json::json!(forged_version);
    forged["data"]["size"] = serde_json::json!(6);
    w.moto.block_on(async {
        admin
            .put_object()
            .bucket(&w.bucket)
            .key(&manifest_keys[0])
            .body(ByteStream::from(serde_json::to_vec(&forged).unwrap()))
            .send()
            .await
            .unwrap();
        admin
            .delete_object()
            .bucket(&w.bucket)
            .key(&manifest_keys[1])
            .send()
            .await
            .unwrap();
    });
    // Both backups are still listed, as written.
    let listed = w.ok(&["--json", "list", "small"]);
    for m in &ms {
        assert!(
            listed.contains(m["backup_id"].as_str().unwrap()),
            "{listed}"
        );
    }
    for (m, expected) in [(&ms[0], "a small dump\n"), (&ms[1], "another day\n")] {
        let id = m["backup_id"].as_str().unwrap();
        let out = w.world.path(&format!("{id}.out"));
        w.ok(&[
            "restore",
            "small",
            "--id",
            id,
            "--output",
            out.to_str().unwrap(),
        ]);
        assert_eq!(fs::read_to_string(&out).unwrap(), expected, "backup {id}");
    }
    let out = w.vault(&["--json", "verify", "small"]);
    assert_eq!(code(&out), EXIT_INTEGRITY, "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checked = report["checked"].as_array().unwrap();
    assert_eq!(checked.len(), 2);
    let errors: Vec<String> = checked
        .iter()
        .map(|c| c["error"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        errors[0].contains("tampering")
            && errors[0].contains("data key")
            && errors[0].contains("manifest key")
            && errors[0].contains("2 versions"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("tampering")
            && errors[1].contains("data key")
            && errors[1].contains("manifest key")
            && errors[1].contains("delete marker"),
        "{errors:?}"
    );
}

/// Acceptance 7: a backup killed between parts leaves no manifest; the next succeeds.
#[test]
fn a_backup_killed_mid_upload_leaves_no_manifest() {
    let w = S3World::new(LockSetup::PerObject);
    let big = w.world.path("big.bin");
    write_mixed(&big, 60 << 20, 3);
    let script = format!("cat '{}'; sleep 60; cat '{}'", big.display(), big.display());
    w.config(
        "",
        &format!("[[job]]\nname = \"slow\"\nsource = {{ kind = \"command\", command = [\"sh\", \"-c\", \"{script}\"] }}\n"),
    );
    let mut child = w
        .command(&["backup"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the upload has parts stored, i.e. the kill lands between parts.
    let has_parts = || w.multipart_uploads().1 > 0;
    poll("a multipart upload with stored parts", has_parts);
    child.kill().unwrap(); // SIGKILL: no cleanup of any kind runs
    child.wait().unwrap();
    assert!(
        w.manifests("slow").is_empty(),
        "a killed backup left a manifest"
    );
    assert!(
        w.keys().iter().all(|k| !k.contains("/data/")),
        "a killed backup left a data object"
    );

    let script = format!("cat '{}'", big.display());
    w.config(
        "",
        &format!("[[job]]\nname = \"slow\"\nsource = {{ kind = \"command\", command = [\"sh\", \"-c\", \"{script}\"] }}\n"),
    );
    w.ok(&["backup"]);
    assert_eq!(w.manifests("slow").len(), 1);
}

/// A failing source aborts its multipart upload; an interrupted backup too.
#[test]
fn failed_and_interrupted_uploads_are_aborted() {
    let w = S3World::new(LockSetup::PerObject);
    let big = w.world.path("big.bin");
    write_mixed(&big, 60 << 20, 4);
    w.config(
        "",
        &format!(
            "[[job]]\nname = \"fails\"\nsource = {{ kind = \"command\", command = [\"sh\", \"-c\", \"cat '{0}'; exit 3\"] }}\n\
             [[job]]\nname = \"slow\"\nsource = {{ kind = \"command\", command = [\"sh\", \"-c\", \"cat '{0}'; sleep 60\"] }}\n",
            big.display()
        ),
    );
    let out = w.vault(&["backup", "fails"]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("fails"), "{}", stderr(&out));
    let uploads = || w.multipart_uploads().0;
    assert_eq!(uploads(), 0, "the failed backup's upload was aborted");

    let child = w
        .command(&["backup", "slow"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    poll("an upload in progress", || uploads() > 0);
    std::thread::sleep(Duration::from_millis(300));
    let out = common::sigterm(child);
    assert_eq!(code(&out), common::EXIT_INTERRUPTED, "{}", stderr(&out));
    assert_eq!(uploads(), 0, "the interrupted backup's upload was aborted");
    assert!(w.manifests("slow").is_empty() && w.manifests("fails").is_empty());
}

/// Credentials never appear in output, and a wrong secret is an access error.
#[test]
fn a_wrong_secret_fails_as_access_denied_without_printing_keys() {
    let mut w = S3World::new(LockSetup::PerObject);
    two_jobs(&w);
    let wrong = Keys {
        id: w.ids.writer.id.clone(),
        secret: "wrongsecretwrongsecretwrongsecret0000000".into(),
    };
    w.ids.writer = wrong;
    let out = w.vault(&["backup", "small"]);
    assert_eq!(code(&out), EXIT_ACCESS_DENIED, "{}", stderr(&out));
    let all = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    for secret in [
        &w.ids.writer.secret,
        &w.ids.verifier.secret,
        &w.ids.restorer.secret,
    ] {
        assert!(
            !all.contains(secret.as_str()),
            "a secret was printed: {all}"
        );
    }
    assert!(
        all.contains("the writer identity's credentials were not accepted"),
        "the identity is named: {all}"
    );
    assert!(w.manifests("small").is_empty());
}

/// The S3 store keeps every promise of the store conformance suite (write-once via
/// If-None-Match, whole-or-nothing multipart uploads, versions, locks, listing).
#[test]
fn the_s3_store_passes_the_conformance_suite() {
    let w = S3World::new(LockSetup::PerObject);
    w.config("", "");
    let settings = vault::config::Settings::load(&w.world.path("vault.toml")).unwrap();
    let vault::store::Target::S3(target) = &settings.target else {
        panic!("an s3 target")
    };
    // The suite reads and writes: it runs as the admin, whose keys come from files.
    fs::write(w.world.path("admin.id"), &w.moto.admin.id).unwrap();
    fs::write(w.world.path("admin.secret"), &w.moto.admin.secret).unwrap();
    let identity = vault::store::Identity {
        access_key_id_file: Some(w.world.path("admin.id")),
        secret_access_key_file: Some(w.world.path("admin.secret")),
        ..Default::default()
    };
    w.moto.block_on(async {
        let store = vault::store::s3::S3Store::open(target, &identity, vault::store::Role::Writer)
            .await
            .unwrap();
        vault::store::conformance::run(&store, "conformance")
            .await
            .unwrap();
    });
}

/// Identities as operators configure them in production: the writer assumes its role
/// (with an external id) from a host credential that can do nothing but assume roles,
/// the verifier uses a web identity token (Kubernetes/IRSA), the restorer assumes its
/// role from keys in files. Each role carries its deploy/iam policy.
#[test]
fn identities_can_be_assumed_roles_and_web_identities() {
    let w = S3World::new(LockSetup::PerObject);
    let roles: Vec<String> = ["writer", "verifier", "restorer"]
        .iter()
        .map(|r| {
            w.moto
                .create_role(&format!("vault-{r}-role"), &[r], &w.bucket)
        })
        .collect();
    let host_policy = w.world.path("assume-only.json");
    fs::write(
        &host_policy,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"}]}"#,
    )
    .unwrap();
    let host = w
        .moto
        .create_user_from("prod-host", &[host_policy], &w.bucket);
    fs::write(w.world.path("host.id"), &host.id).unwrap();
    fs::write(w.world.path("host.secret"), &host.secret).unwrap();
    fs::write(
        w.world.path("k8s-token"),
        "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl",
    )
    .unwrap();

    let small = w.world.path("small.txt");
    fs::write(&small, "assumed\n").unwrap();
    w.config_with(
        "",
        &format!(
            "[identities.writer]\naccess_key_id_env = \"HOST_KEY\"\nsecret_access_key_env = \"HOST_SECRET\"\n\
             role_arn = \"{}\"\nexternal_id = \"acme-prod\"\nsession_name = \"backup-host\"\n\
             [identities.verifier]\nrole_arn = \"{}\"\nweb_identity_token_file = \"k8s-token\"\n\
             [identities.restorer]\naccess_key_id_file = \"host.id\"\nsecret_access_key_file = \"host.secret\"\n\
             role_arn = \"{}\"\nage_identity_file = \"key.txt\"\n",
            roles[0], roles[1], roles[2]
        ),
        &format!(
            "[[job]]\nname = \"small\"\nsource = {{ kind = \"command\", command = [\"cat\", \"{}\"] }}\n",
            small.display()
        ),
    );
    let run = |args: &[&str]| {
        let out = w
            .command(args)
            // Every AWS service, STS included, is the local server.
            .env("AWS_ENDPOINT_URL", &w.moto.endpoint)
            .env("HOST_KEY", &host.id)
            .env("HOST_SECRET", &host.secret)
            .output()
            .unwrap();
        common::succeeded(args, out)
    };
    run(&["backup"]);
    assert!(run(&["list", "small"]).contains("small"));
    run(&["verify", "small"]);
    let out = w.world.path("small.out");
    run(&[
        "restore",
        "small",
        "--latest",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(fs::read_to_string(&out).unwrap(), "assumed\n");

    // The host credential alone can do nothing with the bucket.
    let host_client = w.moto.client(&host);
    w.moto.block_on(async {
        denied(
            "host PutObject",
            host_client
                .put_object()
                .bucket(&w.bucket)
                .key("backups/probe")
                .body(ByteStream::from_static(b"x"))
                .send()
                .await,
        );
    });
}

/// A backup of a few parts for the tests below: job `big`, a 20 MiB input (three 8 MiB
/// parts), backed up once; the input's path.
fn one_multipart_backup(w: &S3World) -> std::path::PathBuf {
    let big = w.world.path("big.bin");
    write_mixed(&big, 20 << 20, 13);
    w.config(
        "",
        &format!(
            "[[job]]\nname = \"big\"\nsource = {{ kind = \"command\", command = [\"cat\", \"{}\"] }}\n",
            big.display()
        ),
    );
    w.ok(&["backup", "big"]);
    big
}

/// Point 13: vault checks the blake3 of what it reads, so the SDK's own response
/// checksum validation is off; it used to print, on every read of a multipart object,
/// `WARN This checksum is a part-level checksum which can't be validated`. Verify
/// (plain and deep) and restore of a multipart backup print vault's lines only.
#[test]
fn reads_of_a_multipart_backup_print_no_sdk_checksum_warning() {
    let w = S3World::new(LockSetup::PerObject);
    let big = one_multipart_backup(&w);
    let restored = w.world.path("big.restored");
    for args in [
        vec!["verify", "big"],
        vec!["verify", "--deep", "big"],
        vec![
            "restore",
            "big",
            "--latest",
            "--output",
            restored.to_str().unwrap(),
        ],
    ] {
        let out = w.vault(&args);
        let err = stderr(&out);
        assert_eq!(code(&out), 0, "{args:?}: {err}");
        assert!(
            !err.contains("WARN") && !err.to_lowercase().contains("checksum"),
            "{args:?} printed the SDK's checksum warning: {err}"
        );
    }
    assert_eq!(file_hash(&restored), file_hash(&big));
}

/// Point 9: in bucket-default mode into a bucket without versioning (and so without
/// Object Lock), S3 accepts the uploads and returns no version id: nothing was
/// locked. The store refuses to count them as written, so no manifest is written and
/// the backup fails with exit 3 saying so, for a single PutObject (`small`) and a
/// multipart upload (`big`) alike.
#[test]
fn a_bucket_default_backup_into_an_unversioned_bucket_fails_without_a_manifest() {
    let w = S3World::unversioned(LockSetup::BucketDefault { days: 3 });
    two_jobs(&w);
    for job in ["small", "big"] {
        let out = w.vault(&["backup", job]);
        let err = stderr(&out);
        assert_eq!(code(&out), EXIT_INTEGRITY, "{job}: {err}");
        assert!(
            err.contains("no version id")
                && err.contains("versioning is off")
                && err.contains("nothing was locked"),
            "{job}: {err}"
        );
        assert!(w.manifests(job).is_empty(), "{job}: a manifest was written");
    }
}
