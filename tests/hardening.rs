//! Acceptance of the hardening found by outside testing: names from the command line
//! and the config that could reach outside the vault or forge output lines, one
//! backup of a job at a time, partial files of killed runs, forged manifests in
//! `list`. (The restore, engine and S3 points have their tests beside the others of
//! their kind.)

mod common;

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// A world with one backup of job `db`, and a copy of the job's directory beside the
/// vault (`outside/`), where a job name of `../outside` would lead.
fn world_with_a_copy_beside_the_vault() -> World {
    let w = World::new();
    fs::write(w.path("input"), b"some data").unwrap();
    w.config(
        "[[job]]\nname = \"db\"\nsource = { kind = \"command\", command = [\"cat\", \"input\"] }\n",
    );
    w.ok(&["backup"]);
    let copy = sh(&format!(
        "cp -r '{}' '{}' && echo copied",
        w.vault_dir().join("db").display(),
        w.path("outside").display()
    ));
    assert_eq!(String::from_utf8_lossy(&copy).trim(), "copied");
    w
}

#[test]
fn job_arguments_outside_the_name_rule_are_refused_before_the_store_is_touched() {
    let w = world_with_a_copy_beside_the_vault();
    for args in [
        &["list", "../outside"][..],
        &["list", "--json", "../outside"],
        &["verify", "../outside"],
        &["verify", "/usr/share/doc"],
        &["restore", "../outside", "--output", "-"],
        &["restore", "/usr/share/doc", "--output", "-"],
        &["backup", "../outside"],
    ] {
        let out = w.vault(args);
        let err = stderr(&out);
        assert_eq!(code(&out), EXIT_USAGE, "{args:?}: {err}");
        let name = args.iter().find(|a| a.contains('/')).unwrap();
        assert!(
            err.contains(&format!("JOB argument `{name}` is not a valid job name")),
            "{args:?} names the argument: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?} printed nothing");
    }
}

#[test]
fn rejected_names_are_shown_with_control_characters_escaped() {
    let w = World::new();
    // A name with a newline and an escape sequence: the error must stay one line and
    // must not carry the raw terminal control.
    w.config(
        "[[job]]\nname = \"a\\nerror: forged\\u001b[2K\"\nsource = { kind = \"files\", path = \".\" }\n",
    );
    let out = w.vault(&["list"]);
    let err = stderr(&out);
    assert_eq!(code(&out), EXIT_USAGE, "{err}");
    assert!(err.contains("`a\\nerror: forged\\u{1b}[2K`"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(!err.contains('\u{1b}'), "{err:?}");

    w.config("[[job]]\nname = \"db\"\nsource = { kind = \"files\", path = \".\" }\n");
    let out = w.vault(&["list", "a\nerror: forged"]);
    let err = stderr(&out);
    assert_eq!(code(&out), EXIT_USAGE, "{err}");
    assert!(err.contains("`a\\nerror: forged`"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
}

#[test]
fn bad_cron_schedules_are_refused_naming_the_job_and_the_field() {
    let w = World::new();
    for (schedule, field) in [
        ("61 25 * * *", "minute field `61`"),
        ("0 3 32 * *", "day of month field `32`"),
        ("0 0 0 0 0", "day of month field `0`"),
        ("- * * * *", "minute field `-`"),
        ("*/0 * * * *", "minute field `*/0`"),
    ] {
        w.config(&format!(
            "[[job]]\nname = \"app\"\nschedule = \"{schedule}\"\nsource = {{ kind = \"files\", path = \".\" }}\n"
        ));
        let out = w.vault(&["list"]);
        let err = stderr(&out);
        assert_eq!(code(&out), EXIT_USAGE, "{schedule}: {err}");
        assert!(
            err.contains("job `app`: schedule:") && err.contains(field),
            "{schedule}: {err}"
        );
    }
}

#[test]
fn one_backup_of_a_job_at_a_time_so_the_signed_chain_never_forks() {
    let w = World::new();
    let jobs = "[[job]]\nname = \"slow\"\nsource = { kind = \"command\", command = [\"sh\", \"-c\", \
                \"sleep 2; echo data\"] }\n";
    w.config(&format!("{}{jobs}", signing(&w)));

    // A second run while the first holds the job is refused, naming the first's pid.
    let first = w
        .command(&["backup", "slow"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let locks = w.path("state/locks");
    while fs::read_dir(&locks).map_or(true, |mut d| d.next().is_none()) {
        assert!(
            Instant::now() < deadline,
            "the first run never took its lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let second = w.vault(&["backup", "slow"]);
    let err = stderr(&second);
    assert_eq!(code(&second), EXIT_USAGE, "{err}");
    assert!(
        err.contains(&format!(
            "job `slow` is already being backed up (pid {})",
            first.id()
        )),
        "{err}"
    );
    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(
        w.manifests("slow").len(),
        1,
        "the refused run wrote nothing"
    );

    // With --wait, the second run waits for the first and then runs.
    let a = w
        .command(&["backup", "slow"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let b = w.vault(&["backup", "--wait", "slow"]);
    assert!(b.status.success(), "{}", stderr(&b));
    assert!(a.wait_with_output().unwrap().status.success());
    assert_eq!(w.manifests("slow").len(), 3);

    // Three backups, one unbroken chain: verify finds no fork.
    let out = w.vault(&["verify", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["jobs"][0]["chain_segments"], 1, "{report}");
}

#[test]
fn partial_files_of_killed_backups_are_removed_by_a_later_run() {
    let w = World::new();
    w.config(
        "[[job]]\nname = \"big\"\nsource = { kind = \"command\", command = [\"sh\", \"-c\", \
         \"head -c 20000000 /dev/urandom; sleep 20\"] }\n\
         [[job]]\nname = \"small\"\nsource = { kind = \"command\", command = [\"echo\", \"x\"] }\n",
    );
    let partial = w.vault_dir().join(".vault/partial");
    let partials = || -> Vec<std::path::PathBuf> {
        fs::read_dir(&partial)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    };
    let mut child = w
        .command(&["backup", "big"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !partials()
        .iter()
        .any(|p| fs::metadata(p).is_ok_and(|m| m.len() > (1 << 20)))
    {
        assert!(
            Instant::now() < deadline,
            "the backup never wrote its partial file"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Killed outright: nothing runs to remove its partial file.
    child.kill().unwrap();
    child.wait().unwrap();
    let left = partials();
    assert_eq!(left.len(), 1, "{left:?}");

    // A run the next day removes it; a younger one would have been left alone.
    w.ok(&["backup", "small"]);
    assert_eq!(
        partials(),
        left,
        "a partial file younger than a day is kept"
    );
    let day_and_a_bit = Duration::from_secs(25 * 3600);
    fs::File::options()
        .write(true)
        .open(&left[0])
        .unwrap()
        .set_modified(std::time::SystemTime::now() - day_and_a_bit)
        .unwrap();
    w.ok(&["backup", "small"]);
    assert!(partials().is_empty(), "{:?}", partials());
}

#[test]
fn list_marks_backups_that_are_not_validly_signed() {
    let w = World::new();
    fs::write(w.path("input"), b"data").unwrap();
    let jobs =
        "[[job]]\nname = \"db\"\nsource = { kind = \"command\", command = [\"cat\", \"input\"] }\n";
    w.config(&format!("{}{jobs}", signing(&w)));
    w.ok(&["backup"]);
    let good = w.manifests("db").remove(0);
    let id = good["backup_id"].as_str().unwrap().to_string();
    let dir = w.vault_dir().join("db/manifests");
    // Forgeries an attacker with write access to the store could add: one unsigned,
    // one whose signed contents were changed.
    let forge = |suffix: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let forged_id = format!("{}{suffix}", &id[..id.len() - suffix.len()]);
        let mut m = good.clone();
        m["backup_id"] = forged_id.clone().into();
        edit(&mut m);
        fs::write(
            dir.join(format!("{forged_id}.json")),
            serde_json::to_vec_pretty(&m).unwrap(),
        )
        .unwrap();
        forged_id
    };
    let unsigned = forge("aaaa", &|m| {
        m.as_object_mut().unwrap().remove("signature");
    });
    let edited = forge("bbbb", &|_| {});

    let out = w.vault(&["list"]);
    let (table, err) = (String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert_eq!(code(&out), EXIT_INTEGRITY, "{table}\n{err}");
    let line = |id: &str| table.lines().find(|l| l.contains(id)).unwrap().to_string();
    assert!(
        table.lines().next().unwrap().contains("SIGNATURE"),
        "{table}"
    );
    assert!(line(&id).trim_end().ends_with("valid"), "{table}");
    assert!(line(&unsigned).contains("MISSING"), "{table}");
    assert!(line(&edited).contains("INVALID"), "{table}");
    assert!(
        err.contains(&format!(
            "backup {unsigned} of job `db` is not validly signed"
        )),
        "{err}"
    );

    let out = w.vault(&["list", "--json"]);
    assert_eq!(code(&out), EXIT_INTEGRITY);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let verdict = |id: &str| {
        listed["backups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["backup_id"] == id)
            .unwrap()["signature"]
            .clone()
    };
    assert_eq!(verdict(&id), "valid");
    assert_eq!(verdict(&unsigned), "missing");
    assert_eq!(verdict(&edited), "invalid");
}
