//! `list` and `verify` at fleet scale, against the local S3 server: the requests each
//! run makes are counted by the server (tests/moto/server.py's request counter, by
//! access key and operation) over 1,000 backups (100 jobs × 10): a first run reads
//! everything, a repeat run lists and reads only what it has not seen, `--no-cache`
//! and a damaged cache read everything again, and tampering found by a repeat run is
//! found exactly as a run without the cache finds it.

mod common;
mod s3harness;

use std::collections::BTreeMap;
use std::fs;
use std::process::Stdio;
use std::time::Instant;

use common::{EXIT_INTEGRITY, code, stderr};
use s3harness::{LockSetup, S3World};
use serde_json::Value;

const JOBS: usize = 100;
const BACKUPS: usize = 10;
/// `vault backup` processes run side by side to write the fixture.
const WRITERS: usize = 4;
/// What the issue asks of a repeat run over 1,000 backups.
const REPEAT_VERIFY_MAX: u64 = 150;
const REPEAT_LIST_MAX: u64 = 120;
/// The bucket's settings, read once per verify run.
const BUCKET_READS: u64 = 4;

fn job_name(i: usize) -> String {
    format!("j{i:03}")
}

/// A world with JOBS command jobs, each backed up BACKUPS times; the verifier's cache
/// in `verify-cache/` (the harness's `[verify] cache_dir`).
fn fleet() -> S3World {
    let w = S3World::new(LockSetup::PerObject);
    fs::write(w.world.path("dump.txt"), "row\n".repeat(100)).unwrap();
    let jobs: String = (0..JOBS)
        .map(|i| {
            format!(
                "[[job]]\nname = \"{}\"\n\
                 source = {{ kind = \"command\", command = [\"cat\", \"dump.txt\"] }}\n",
                job_name(i)
            )
        })
        .collect();
    w.config(
        "",
        &format!("{jobs}[signing]\nstate_dir = \"state\"\n[compression]\nthreads = 1\n"),
    );
    let started = Instant::now();
    for _ in 0..BACKUPS {
        let writers: Vec<_> = (0..WRITERS)
            .map(|k| {
                let names: Vec<String> = (k..JOBS).step_by(WRITERS).map(job_name).collect();
                let mut args = vec!["backup"];
                args.extend(names.iter().map(String::as_str));
                w.command(&args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for writer in writers {
            let out = writer.wait_with_output().unwrap();
            assert!(out.status.success(), "backup: {}", stderr(&out));
        }
    }
    eprintln!(
        "fixture: {} backups in {:.1} s",
        JOBS * BACKUPS,
        started.elapsed().as_secs_f64()
    );
    w.moto.take_requests();
    w
}

/// One vault run: its exit code, stdout, stderr and the requests the verifier made,
/// by operation.
struct Counted {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
    requests: BTreeMap<String, u64>,
}

impl Counted {
    fn total(&self) -> u64 {
        self.requests.values().sum()
    }

    fn of(&self, op: &str) -> u64 {
        self.requests.get(op).copied().unwrap_or(0)
    }

    fn report(&self) -> Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("no JSON ({e}): {}", self.stderr))
    }
}

fn run(w: &S3World, args: &[&str]) -> Counted {
    let started = Instant::now();
    let out = w.vault(args);
    let mut all = w.moto.take_requests();
    let requests = all.remove(&w.ids.verifier.id).unwrap_or_default();
    assert!(
        all.keys().all(|k| *k == w.moto.admin.id),
        "only the verifier reads: {all:?}"
    );
    let counted = Counted {
        code: code(&out),
        stderr: stderr(&out),
        stdout: out.stdout,
        requests,
    };
    eprintln!(
        "{args:?}: exit {}, {} requests in {:.1} s: {:?}",
        counted.code,
        counted.total(),
        started.elapsed().as_secs_f64(),
        counted.requests
    );
    counted
}

/// A run that must succeed.
fn run_ok(w: &S3World, args: &[&str]) -> Counted {
    let counted = run(w, args);
    assert_eq!(counted.code, 0, "{args:?}: {}", counted.stderr);
    counted
}

/// The verify cache file in the world's cache directory (there is one).
fn cache_file(w: &S3World) -> std::path::PathBuf {
    let found: Vec<_> = fs::read_dir(w.world.path("verify-cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("verify-cache."))
        })
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

/// What verify reports about `job`: its status and findings, and each backup's key,
/// verdict and error.
fn verdict(report: &Value, job: &str) -> Value {
    let jr = report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == job)
        .unwrap_or_else(|| panic!("no job {job}"));
    let rows: Vec<Value> = report["checked"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["job"] == job)
        .map(|c| serde_json::json!([c["key"], c["ok"], c["error"], c["lock"]]))
        .collect();
    serde_json::json!({"status": jr["status"], "findings": jr["findings"], "backups": rows})
}

#[test]
fn repeat_list_and_verify_read_only_what_is_new_and_find_the_same() {
    let w = fleet();
    let backups = (JOBS * BACKUPS) as u64;

    // list: a first run reads every manifest, a repeat run only lists.
    let first = run_ok(&w, &["list"]);
    assert_eq!(first.of("GetObject"), backups, "{:?}", first.requests);
    let pages = first.of("ListObjectVersions");
    assert!(
        pages <= 3,
        "one listing of the vault, 1,000 keys a page: {pages}"
    );
    assert_eq!(first.total(), backups + pages);
    let repeat = run_ok(&w, &["list"]);
    assert!(
        repeat.total() <= REPEAT_LIST_MAX,
        "repeat list: {:?}",
        repeat.requests
    );
    assert_eq!(repeat.of("GetObject"), 0);
    assert_eq!(repeat.stdout, first.stdout, "the same backups listed");
    let full = run_ok(&w, &["list", "--no-cache"]);
    assert_eq!(full.requests, first.requests, "--no-cache reads everything");

    let cache = cache_file(&w);

    // verify: a first run reads every manifest, HEADs every data object and manifest,
    // and downloads the newest backup of each job; a repeat run lists, reads the
    // bucket's settings and downloads the newest backups again.
    fs::remove_file(&cache).unwrap();
    let first = run_ok(&w, &["--json", "verify"]);
    assert_eq!(first.of("HeadObject"), 2 * backups, "{:?}", first.requests);
    assert_eq!(first.of("GetObject"), backups + JOBS as u64);
    assert_eq!(
        first.total(),
        BUCKET_READS + pages + 3 * backups + JOBS as u64
    );
    let repeat = run_ok(&w, &["--json", "verify"]);
    assert!(
        repeat.total() <= REPEAT_VERIFY_MAX,
        "repeat verify: {:?}",
        repeat.requests
    );
    assert_eq!(repeat.of("HeadObject"), 0);
    assert_eq!(
        repeat.of("GetObject"),
        JOBS as u64,
        "the newest, downloaded"
    );
    for i in [0, 57, 99] {
        let job = job_name(i);
        assert_eq!(
            verdict(&repeat.report(), &job),
            verdict(&first.report(), &job)
        );
    }

    // Tampering after the cache was filled, and one more backup.
    tamper(&w);
    w.ok(&["backup", &job_name(4)]);
    w.moto.take_requests();
    let after = run(&w, &["--json", "verify"]);
    assert_eq!(after.code, EXIT_INTEGRITY, "{}", after.stderr);
    assert!(
        after.total() <= REPEAT_VERIFY_MAX,
        "only what is new is read: {:?}",
        after.requests
    );
    let report = after.report();
    for (i, phrase) in TAMPERED {
        let job = job_name(i);
        let seen = verdict(&report, &job);
        assert_eq!(seen["status"], "integrity", "{job}: {seen:#}");
        assert!(
            seen.to_string().contains(phrase),
            "{job}: {phrase}: {seen:#}"
        );
        // Exactly what a run that reads everything finds.
        let full = run(&w, &["--json", "verify", "--no-cache", &job]);
        assert_eq!(full.code, EXIT_INTEGRITY, "{}", full.stderr);
        assert_eq!(seen, verdict(&full.report(), &job), "{job}");
        assert_eq!(
            full.of("HeadObject"),
            full_heads(&full.report(), &job),
            "{job}: --no-cache HEADs every object there is: {:?}",
            full.requests
        );
        let manifests = full.report()["checked"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["job"] == job)
            .count() as u64;
        assert_eq!(
            full.of("GetObject"),
            manifests + 1,
            "{job}: --no-cache reads every manifest: {:?}",
            full.requests
        );
    }
    let newer = verdict(&report, &job_name(4));
    assert_eq!(newer["status"], "ok", "{newer:#}");
    assert_eq!(newer["backups"].as_array().unwrap().len(), BACKUPS + 1);
    let ok = report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["status"] == "ok")
        .count();
    assert_eq!(ok, JOBS - TAMPERED.len(), "{:#}", report["jobs"]);

    // A damaged cache is discarded with a warning, and everything is read again; the
    // next run trusts the cache written in its place.
    let job = job_name(10);
    let mut bytes = fs::read(&cache).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&cache, &bytes).unwrap();
    let damaged = run_ok(&w, &["--json", "verify", &job]);
    assert!(
        damaged.stderr.contains("warning: the verify cache")
            && damaged.stderr.contains("damaged")
            && damaged.stderr.contains("discarded"),
        "{}",
        damaged.stderr
    );
    let per_job = BACKUPS as u64;
    assert_eq!(
        damaged.of("HeadObject"),
        2 * per_job,
        "{:?}",
        damaged.requests
    );
    assert_eq!(damaged.of("GetObject"), per_job + 1);
    assert_eq!(verdict(&damaged.report(), &job), verdict(&report, &job));
    let again = run_ok(&w, &["--json", "verify", &job]);
    assert!(!again.stderr.contains("warning"), "{}", again.stderr);
    assert_eq!(again.of("HeadObject"), 0, "{:?}", again.requests);
    assert_eq!(again.of("GetObject"), 1);
}

/// Jobs tampered with, and a phrase of what verify must say.
const TAMPERED: [(usize, &str); 4] = [
    (1, "has 2 versions"),
    (2, "delete marker"),
    (3, "deleted before its retention ended"),
    (5, "the manifest says 2"),
];

/// What an administrator does behind the verifier's back, on jobs 1, 2, 3 and 5: a
/// new version on a manifest key, a delete marker on a data key, a data version
/// deleted once its lock was made to run out, and a new manifest that claims another
/// size for an existing data object.
fn tamper(w: &S3World) {
    let manifest = |i: usize, n: usize| w.manifests(&job_name(i)).remove(n);
    let data_key = |m: &Value| w.full_key(m["data"]["key"].as_str().unwrap());
    let manifest_key =
        |i: usize, id: &str| w.full_key(&format!("{}/manifests/{id}.json", job_name(i)));
    let put = |key: String, body: Vec<u8>| w.admin_put(&key, body);
    let delete = |key: String, version: Option<String>| w.admin_delete(&key, version.as_deref());

    let mut m = manifest(1, 3);
    let key = manifest_key(1, m["backup_id"].as_str().unwrap());
    m["data"]["size"] = Value::from(1);
    put(key, serde_json::to_vec_pretty(&m).unwrap());

    delete(data_key(&manifest(2, 4)), None);

    let m = manifest(3, 2);
    let version = m["data"]["version_id"].as_str().unwrap().to_string();
    w.moto.expire_lock(&w.bucket, &data_key(&m), &version);
    delete(data_key(&m), Some(version));

    let mut m = manifest(5, 6);
    let forged = "20991231T235959.000Z-0badf00d";
    m["backup_id"] = Value::from(forged);
    m["data"]["size"] = Value::from(2);
    put(
        manifest_key(5, forged),
        serde_json::to_vec_pretty(&m).unwrap(),
    );
}

/// The HEADs a run without the cache makes for `job`: both objects of every backup
/// whose manifest reads, but for data versions that are gone.
fn full_heads(report: &Value, job: &str) -> u64 {
    report["checked"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["job"] == job && c["backup_id"].is_string())
        .map(|c| {
            let gone = c["error"].as_str().is_some_and(|e| e.contains("is gone"));
            if gone { 1 } else { 2 }
        })
        .sum()
}
