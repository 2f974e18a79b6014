//! The cache file: what is kept and what never is, the round trip, and every kind of
//! file that must be discarded rather than trusted.

use std::os::unix::fs::PermissionsExt;

use chrono::TimeZone;

use super::*;

const VAULT: &str = "S3 bucket s3://b/p\np/";

fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, 3, 0, 0).unwrap()
}

fn meta(size: u64, lock: Option<Lock>) -> ObjectMeta {
    ObjectMeta {
        key: "ignored".into(),
        size,
        version_id: None,
        lock,
        modified: None,
    }
}

fn compliance(day: u32) -> Option<Lock> {
    Some(Lock {
        mode: LockMode::Compliance,
        retain_until: at(day),
    })
}

fn version(key: &str, id: &str) -> VersionInfo {
    VersionInfo {
        key: key.into(),
        version_id: Some(id.into()),
        delete_marker: false,
        size: 1,
        modified: None,
    }
}

/// A cache in a fresh directory, and that directory.
fn fresh(trusted: bool) -> (tempfile::TempDir, Cache) {
    let dir = tempfile::tempdir().unwrap();
    let (cache, warning) = Cache::load(Cache::path(dir.path(), VAULT), VAULT, trusted);
    assert_eq!(warning, None, "a missing file is an empty cache, silently");
    (dir, cache)
}

fn reload(cache: &Cache) -> (Cache, Option<String>) {
    Cache::load(cache.file().unwrap().to_path_buf(), VAULT, true)
}

#[test]
fn manifests_and_compliance_locks_round_trip_through_a_private_file() {
    let (dir, cache) = fresh(true);
    cache.remember_manifest("p/m/1.json", Some("v1"), b"{\"a\": 1}\n");
    cache.remember_head("p/d/1", Some("v2"), &meta(42, compliance(20)));
    cache.remember_head("p/m/1.json", Some("v1"), &meta(9, compliance(21)));
    assert_eq!(
        cache.manifest("p/m/1.json", Some("v1")).unwrap(),
        b"{\"a\": 1}\n"
    );
    cache.save().unwrap();

    let path = cache.file().unwrap();
    assert_eq!(
        path.parent().unwrap(),
        dir.path(),
        "one file in the cache directory"
    );
    let mode = fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    let text = fs::read_to_string(path).unwrap();
    assert!(text.starts_with("vault-verify-cache 1 "), "{text}");

    let (again, warning) = reload(&cache);
    assert_eq!(warning, None);
    assert_eq!(
        again.manifest("p/m/1.json", Some("v1")).unwrap(),
        b"{\"a\": 1}\n"
    );
    let head = again.head("p/d/1", Some("v2")).unwrap();
    assert_eq!((head.size, head.lock), (42, compliance(20)));
    assert_eq!(head.version_id.as_deref(), Some("v2"));
    assert!(again.head("p/d/1", Some("v3")).is_none(), "another version");
    assert!(again.manifest("p/m/2.json", Some("v1")).is_none());
}

#[test]
fn only_versions_under_a_compliance_lock_are_kept() {
    let (_dir, cache) = fresh(true);
    // No version id (a local directory) or `null` (versioning off): not immutable.
    cache.remember_manifest("m", None, b"{}");
    cache.remember_manifest("m", Some("null"), b"{}");
    cache.remember_head("d", None, &meta(1, compliance(20)));
    cache.remember_head("d", Some(""), &meta(1, compliance(20)));
    // GOVERNANCE can be shortened; no lock is no promise.
    let governance = Some(Lock {
        mode: LockMode::Governance,
        retain_until: at(20),
    });
    cache.remember_head("g", Some("v"), &meta(1, governance));
    cache.remember_head("n", Some("v"), &meta(1, None));
    assert!(cache.manifest("m", None).is_none());
    assert!(cache.manifest("m", Some("null")).is_none());
    assert!(cache.head("d", None).is_none());
    assert!(cache.head("g", Some("v")).is_none());
    assert!(cache.head("n", Some("v")).is_none());
    cache.save().unwrap();
    assert!(
        !cache.file().unwrap().exists(),
        "nothing to keep, nothing written"
    );
}

#[test]
fn a_damaged_foreign_or_other_version_file_is_discarded_with_a_warning() {
    let (_dir, cache) = fresh(true);
    cache.remember_manifest("m", Some("v"), b"{}");
    cache.remember_head("d", Some("v"), &meta(1, compliance(20)));
    cache.save().unwrap();
    let path = cache.file().unwrap().to_path_buf();
    let good = fs::read(&path).unwrap();
    let newline = good.iter().position(|b| *b == b'\n').unwrap();
    let json = good[newline + 1..].to_vec();
    let header = |format: &str, version: &str, body: &[u8]| {
        let mut out = format!("{format} {version} {}\n", blake3::hash(body).to_hex()).into_bytes();
        out.extend_from_slice(body);
        out
    };
    let mut flipped = good.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x20;
    let other_vault = String::from_utf8(json.clone())
        .unwrap()
        .replace("S3 bucket s3://b/p", "S3 bucket s3://other/p");
    let governance = String::from_utf8(json.clone())
        .unwrap()
        .replace("COMPLIANCE", "GOVERNANCE");
    let unknown = String::from_utf8(json.clone())
        .unwrap()
        .replacen("{", "{\"extra\":1,", 1);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("a flipped bit", flipped, "checksum"),
        ("cut short", good[..good.len() - 10].to_vec(), "checksum"),
        ("no body", good[..newline].to_vec(), "no header line"),
        ("empty", Vec::new(), "no header line"),
        (
            "not ours",
            b"hello world\n{}".to_vec(),
            "not a verify cache",
        ),
        (
            "another format",
            header("vault-other-cache", "1", &json),
            "not a verify cache",
        ),
        (
            "another version",
            header("vault-verify-cache", "2", &json),
            "format version 2",
        ),
        (
            "valid JSON of something else",
            header("vault-verify-cache", "1", b"[1, 2]"),
            "unreadable",
        ),
        (
            "unknown fields",
            header("vault-verify-cache", "1", unknown.as_bytes()),
            "unreadable",
        ),
        (
            "another vault",
            header("vault-verify-cache", "1", other_vault.as_bytes()),
            "another vault",
        ),
        (
            "a GOVERNANCE lock",
            header("vault-verify-cache", "1", governance.as_bytes()),
            "only COMPLIANCE",
        ),
    ];
    for (what, bytes, phrase) in cases {
        fs::write(&path, &bytes).unwrap();
        let (loaded, warning) = reload(&cache);
        let warning = warning.unwrap_or_else(|| panic!("{what}: no warning"));
        assert!(
            warning.contains(phrase) && warning.contains("discarded"),
            "{what}: {warning}"
        );
        assert!(loaded.manifest("m", Some("v")).is_none(), "{what}");
        assert!(loaded.head("d", Some("v")).is_none(), "{what}");
        // The next save replaces the bad file, even with nothing new to keep.
        loaded.save().unwrap();
        let (_, warning) = reload(&cache);
        assert_eq!(warning, None, "{what}: rewritten");
    }
    // Restored, the good file is trusted again.
    fs::write(&path, &good).unwrap();
    let (loaded, warning) = reload(&cache);
    assert_eq!(warning, None);
    assert!(loaded.manifest("m", Some("v")).is_some());
}

#[test]
fn without_trust_nothing_is_used_and_disagreements_are_counted() {
    let (_dir, cache) = fresh(true);
    cache.remember_manifest("m", Some("v"), b"{\"size\": 1}");
    cache.remember_head("d", Some("v"), &meta(5, compliance(20)));
    cache.remember_head("e", Some("v"), &meta(5, compliance(20)));
    cache.save().unwrap();

    let path = cache.file().unwrap().to_path_buf();
    let (full, warning) = Cache::load(path.clone(), VAULT, false);
    assert_eq!(warning, None);
    assert!(full.manifest("m", Some("v")).is_none(), "--no-cache reads");
    assert!(full.head("d", Some("v")).is_none());
    // The store's answers: the same manifest, a lock extended (not a disagreement), a
    // size that differs from what was kept (the cache was wrong).
    full.remember_manifest("m", Some("v"), b"{\"size\": 1}");
    full.remember_head("d", Some("v"), &meta(5, compliance(25)));
    full.remember_head("e", Some("v"), &meta(6, compliance(20)));
    assert_eq!(full.disagreements(), 1);
    full.remember_manifest("m", Some("v"), b"{\"size\": 2}");
    assert_eq!(full.disagreements(), 2);
    full.save().unwrap();

    let (again, _) = Cache::load(path, VAULT, true);
    assert_eq!(again.manifest("m", Some("v")).unwrap(), b"{\"size\": 2}");
    let d = again.head("d", Some("v")).unwrap();
    assert_eq!(d.lock, compliance(25), "the later retain-until is kept");
    assert_eq!(again.head("e", Some("v")).unwrap().size, 6);
}

#[test]
fn what_a_listing_no_longer_shows_is_forgotten_under_its_prefix_only() {
    let (_dir, cache) = fresh(true);
    for key in ["p/a/m/1", "p/a/m/2", "p/b/m/1"] {
        cache.remember_manifest(key, Some("v"), b"{}");
        cache.remember_head(key, Some("v"), &meta(1, compliance(20)));
    }
    cache.save().unwrap();

    let (next, _) = reload(&cache);
    // `p/a/` listed: its first key is there, the second is gone (pruned) and has a
    // delete marker; `p/b/` was not listed this time.
    let mut marker = version("p/a/m/2", "marker");
    marker.delete_marker = true;
    next.listed("p/a/", &[version("p/a/m/1", "v"), marker]);
    next.save().unwrap();

    let (last, _) = reload(&cache);
    assert!(last.manifest("p/a/m/1", Some("v")).is_some());
    assert!(last.head("p/a/m/1", Some("v")).is_some());
    assert!(last.manifest("p/a/m/2", Some("v")).is_none(), "forgotten");
    assert!(last.head("p/a/m/2", Some("v")).is_none(), "forgotten");
    assert!(
        last.manifest("p/b/m/1", Some("v")).is_some(),
        "not listed: kept"
    );
}

#[test]
fn the_same_cache_is_the_same_file_and_an_unchanged_one_is_not_rewritten() {
    let (_dir, cache) = fresh(true);
    for n in [3, 1, 2] {
        cache.remember_manifest(&format!("m/{n}"), Some("v"), b"{}");
        cache.remember_head(&format!("d/{n}"), Some("v"), &meta(n, compliance(20)));
    }
    cache.save().unwrap();
    let path = cache.file().unwrap().to_path_buf();
    let first = fs::read(&path).unwrap();

    let (again, _) = reload(&cache);
    fs::remove_file(&path).unwrap();
    again.save().unwrap();
    assert!(!path.exists(), "nothing new: not written");
    for n in [1, 2, 3] {
        again.remember_manifest(&format!("m/{n}"), Some("v"), b"{}");
    }
    again.remember_manifest("m/4", Some("v"), b"{}");
    again.save().unwrap();
    let (last, _) = reload(&cache);
    assert!(last.manifest("m/4", Some("v")).is_some());
    assert!(first.len() < fs::read(&path).unwrap().len());

    assert_ne!(
        Cache::path(Path::new("/x"), VAULT),
        Cache::path(Path::new("/x"), "other")
    );
    assert_eq!(
        Cache::path(Path::new("/x"), VAULT),
        Cache::path(Path::new("/x"), VAULT)
    );
}

#[test]
fn no_cache_keeps_nothing() {
    let cache = Cache::none();
    cache.remember_manifest("m", Some("v"), b"{}");
    cache.remember_head("d", Some("v"), &meta(1, compliance(20)));
    assert!(cache.manifest("m", Some("v")).is_none());
    assert!(cache.head("d", Some("v")).is_none());
    assert!(cache.file().is_none());
    cache.save().unwrap();
}
