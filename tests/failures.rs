//! Acceptance: failing sources, missing encryption, tampered objects, wrong keys,
//! interrupted backups and failed restores — each fails loudly, with the right exit
//! code, and never leaves a manifest or a partial output behind.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

fn no_partials(w: &World) {
    let partial = w.vault_dir().join(".vault/partial");
    let left: Vec<_> = fs::read_dir(&partial)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "partial files left behind: {left:?}");
}

#[test]
fn a_command_that_fails_after_writing_fails_the_backup_and_leaves_nothing() {
    let w = World::new();
    w.config(
        "[[job]]\nname = \"flaky\"\nsource = { kind = \"command\", command = [\"sh\", \"-c\", \
         \"head -c 3000000 /dev/urandom; echo 'dump: connection lost' >&2; exit 3\"] }\n\
         [[job]]\nname = \"fine\"\nsource = { kind = \"command\", command = [\"echo\", \"ok\"] }\n",
    );
    let out = w.vault(&["backup"]);
    let err = stderr(&out);
    assert_eq!(code(&out), EXIT_FAILURE, "{err}");
    assert!(err.contains("job `flaky`"), "the job is named: {err}");
    assert!(err.contains("exit status: 3"), "the cause is given: {err}");
    assert!(
        err.contains("connection lost"),
        "the command's stderr is shown: {err}"
    );
    assert!(
        w.manifests("flaky").is_empty(),
        "no manifest for a failed backup"
    );
    assert!(
        !w.objects()
            .iter()
            .any(|p| p.to_string_lossy().contains("/flaky/")),
        "no data object for a failed backup: {:?}",
        w.objects()
    );
    // The other job still ran.
    assert_eq!(w.manifests("fine").len(), 1);
    no_partials(&w);
}

#[test]
fn a_missing_sqlite_database_fails_the_backup_naming_the_job() {
    let w = World::new();
    w.config("[[job]]\nname = \"app\"\nsource = { kind = \"sqlite\", path = \"nope.db\" }\n");
    let out = w.vault(&["backup", "app"]);
    let err = stderr(&out);
    assert_ne!(code(&out), 0);
    assert!(
        err.contains("job `app`") && err.contains("nope.db"),
        "{err}"
    );
    assert!(w.manifests("app").is_empty());
    assert!(
        !w.path("nope.db").exists(),
        "vault must not create the database"
    );
    assert!(w.objects().is_empty(), "{:?}", w.objects());
}

#[test]
fn a_job_without_recipients_is_refused_before_anything_is_written() {
    let w = World::new();
    fs::write(w.path("in"), "data").unwrap();
    w.config_raw(
        "[vault]\ntarget = \"vault\"\n[[job]]\nname = \"plain\"\n\
         source = { kind = \"command\", command = [\"cat\", \"in\"] }\n",
    );
    let out = w.vault(&["backup"]);
    let err = stderr(&out);
    assert_eq!(code(&out), EXIT_USAGE, "{err}");
    assert!(
        err.contains("job `plain`") && err.contains("recipients"),
        "{err}"
    );
    assert!(
        !w.vault_dir().exists(),
        "nothing may be written, not even the vault dir"
    );
}

#[test]
fn config_errors_name_the_key_and_exit_with_the_usage_code() {
    let w = World::new();
    w.config("[[job]]\nname = \"a\"\nsource = { kind = \"files\", path = \".\", excludes = [] }\n");
    let out = w.vault(&["list"]);
    assert_eq!(code(&out), EXIT_USAGE);
    assert!(stderr(&out).contains("excludes"), "{}", stderr(&out));
    w.config("[[job]]\nname = \"a\"\nsource = { kind = \"files\", path = \".\" }\n");
    let out = w.vault(&["backup", "no-such-job"]);
    assert_eq!(code(&out), EXIT_USAGE);
    assert!(stderr(&out).contains("no-such-job"));
    // clap's own usage errors use the same code.
    let out = w.vault(&["restore"]);
    assert_eq!(code(&out), EXIT_USAGE);
}

fn backed_up_world(size: u64) -> (World, serde_json::Value) {
    let w = World::new();
    write_mixed(&w.path("input"), size, 9);
    w.config(
        "[[job]]\nname = \"db\"\nsource = { kind = \"command\", command = [\"cat\", \"input\"] }\n",
    );
    w.ok(&["backup"]);
    let m = w.manifests("db").remove(0);
    (w, m)
}

fn flip_byte(path: &std::path::Path, at: u64) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(path).unwrap();
    bytes[at as usize] ^= 0x01;
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_flipped_byte_fails_verify_with_the_integrity_code() {
    let (w, m) = backed_up_world(2 << 20);
    let out = w.vault(&["verify", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["checked"].as_array().unwrap().len(), 1);

    let object = w.data_path(&m);
    flip_byte(&object, m["data"]["size"].as_u64().unwrap() / 2);
    let out = w.vault(&["verify"]);
    assert_eq!(code(&out), EXIT_INTEGRITY, "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAILED") && stdout.contains("blake3"),
        "{stdout}"
    );
    let out = w.vault(&["verify", "--deep", "--identity", w.key().to_str().unwrap()]);
    assert_eq!(code(&out), EXIT_INTEGRITY, "{}", stderr(&out));
}

#[test]
fn verify_deep_with_the_wrong_identity_says_so() {
    let (w, _) = backed_up_world(1000);
    let other = w.path("other-key.txt");
    assert!(
        std::process::Command::new(vault_bin())
            .args(["keygen", "-o", other.to_str().unwrap()])
            .output()
            .unwrap()
            .status
            .success()
    );
    let out = w.vault(&["verify", "--deep", "--identity", other.to_str().unwrap()]);
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert_eq!(code(&out), EXIT_USAGE, "{all}");
    assert!(
        all.contains("none of the keys in") && all.contains("other-key.txt"),
        "{all}"
    );
    assert!(
        all.contains(&w.recipient),
        "names the recipients it needs: {all}"
    );
    // With the right key it passes.
    w.ok(&["verify", "--deep"]);
}

#[test]
fn a_failed_restore_leaves_no_output_file() {
    let (w, m) = backed_up_world(8 << 20);
    // Corrupt the end of the object so plenty of good data is decrypted first.
    let size = m["data"]["size"].as_u64().unwrap();
    flip_byte(&w.data_path(&m), size - 1000);
    let target = w.path("out/restored.bin");
    fs::create_dir_all(target.parent().unwrap()).unwrap();
    let out = w.vault(&["restore", "db", "--output", target.to_str().unwrap()]);
    assert_eq!(code(&out), EXIT_INTEGRITY, "{}", stderr(&out));
    let left: Vec<_> = fs::read_dir(w.path("out")).unwrap().collect();
    assert!(left.is_empty(), "restore left {left:?}");

    // An existing file is not replaced by a failed restore either, even with --force.
    fs::write(&target, "previous").unwrap();
    let out = w.vault(&[
        "restore",
        "db",
        "--force",
        "--output",
        target.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), EXIT_INTEGRITY);
    assert_eq!(fs::read_to_string(&target).unwrap(), "previous");
    // Without --force an existing file is refused up front.
    let out = w.vault(&["restore", "db", "--output", target.to_str().unwrap()]);
    assert_eq!(code(&out), EXIT_USAGE);
    assert!(stderr(&out).contains("--force"));

    // To stdout, a failure exits non-zero and says the output is not to be trusted.
    let out = w
        .command(&["restore", "db", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), EXIT_INTEGRITY);
    assert!(stderr(&out).contains("discard"), "{}", stderr(&out));
}

#[test]
fn restore_without_a_key_or_a_backup_is_explained() {
    let (w, _) = backed_up_world(10);
    w.config_raw(&fs::read_to_string(w.path("vault.toml")).unwrap().replace(
        "[identities.restorer]\nage_identity_file = \"key.txt\"\n",
        "",
    ));
    let out = w.vault(&["restore", "db", "--output", "x"]);
    assert_eq!(code(&out), EXIT_USAGE);
    assert!(stderr(&out).contains("--identity"), "{}", stderr(&out));
    let key = w.key();
    let out = w.vault(&[
        "restore",
        "db",
        "-i",
        key.to_str().unwrap(),
        "--id",
        "20200101T000000.000Z-00000000",
        "--output",
        "x",
    ]);
    assert_eq!(code(&out), EXIT_MISSING, "{}", stderr(&out));
    let out = w.vault(&[
        "restore",
        "db",
        "-i",
        key.to_str().unwrap(),
        "--before",
        "2001-01-01",
        "--output",
        "x",
    ]);
    assert_eq!(code(&out), EXIT_MISSING);
    assert!(!w.path("x").exists());
}

#[test]
fn an_interrupted_backup_leaves_no_manifest_and_no_partial_file() {
    let w = World::new();
    w.config(
        "[[job]]\nname = \"slow\"\nsource = { kind = \"command\", command = [\"sh\", \"-c\", \
         \"head -c 40000000 /dev/urandom; sleep 30; echo never\"] }\n",
    );
    let child = w
        .command(&["backup"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the partial file has data, then stop the backup as systemd would.
    let partial = w.vault_dir().join(".vault/partial");
    let started = Instant::now();
    wait_until("the backup writes", || {
        fs::read_dir(&partial)
            .map(|rd| {
                rd.map(|e| e.unwrap().metadata().unwrap().len())
                    .sum::<u64>()
                    > 0
            })
            .unwrap_or(false)
    });
    let out = sigterm(child);
    let err = stderr(&out);
    assert_eq!(code(&out), EXIT_INTERRUPTED, "{err}");
    assert!(err.contains("SIGTERM") && err.contains("slow"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "stopped promptly"
    );
    assert!(w.manifests("slow").is_empty());
    assert!(w.objects().is_empty(), "{:?}", w.objects());
    no_partials(&w);
}

#[test]
fn read_commands_do_not_create_a_missing_vault() {
    let w = World::new();
    w.config("[[job]]\nname = \"a\"\nsource = { kind = \"files\", path = \".\" }\n");
    for args in [
        &["list"][..],
        &["verify"],
        &["restore", "a", "--output", "x"],
    ] {
        let out = w.vault(args);
        assert_eq!(code(&out), EXIT_MISSING, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    }
    assert!(!w.vault_dir().exists());
}

#[test]
fn an_interrupted_restore_leaves_nothing_behind() {
    let (w, _) = backed_up_world(256 << 20);
    let out_dir = w.path("out");
    fs::create_dir(&out_dir).unwrap();
    let target = out_dir.join("restored.bin");
    let child = w
        .command(&["restore", "db", "--output", target.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the restore writes", || {
        fs::read_dir(&out_dir).unwrap().next().is_some()
    });
    let out = sigterm(child);
    assert_eq!(code(&out), EXIT_INTERRUPTED, "{}", stderr(&out));
    assert!(stderr(&out).contains("SIGTERM"), "{}", stderr(&out));
    let left: Vec<_> = fs::read_dir(&out_dir).unwrap().collect();
    assert!(left.is_empty(), "an interrupted restore left {left:?}");
}

#[test]
fn an_edited_manifest_fails_list_and_verify_with_the_integrity_code() {
    let (w, m) = backed_up_world(100);
    let manifest = w.vault_dir().join(format!(
        "db/manifests/{}.json",
        m["backup_id"].as_str().unwrap()
    ));
    // Edited manifest: an integrity failure.
    fs::set_permissions(&manifest, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&manifest, "{ not json").unwrap();
    let out = w.vault(&["list"]);
    assert_eq!(code(&out), EXIT_INTEGRITY, "{}", stderr(&out));
    let out = w.vault(&["verify"]);
    assert_eq!(code(&out), EXIT_INTEGRITY, "{}", stderr(&out));
}
