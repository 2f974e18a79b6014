//! Acceptance: `vault restore` treats what it restores as untrusted. A forged tar
//! archive cannot plant device nodes, FIFOs, setuid or world-writable files, or write
//! outside the target; `--output` never replaces anything but a regular file.
//!
//! vault's own files source never writes device or FIFO entries, `..` names or
//! (as a non-root tree) setuid files, so the archives here are forged: a `command` job
//! backs up the forged tar through the real pipeline (age, zstd, hashes), and its
//! manifest is then relabelled as a `files` backup — what anyone who can write to the
//! store, or hand over a foreign archive, can do.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// A tar archive built entry by entry, with names written straight into the header
/// so that the tar crate's own checks (which refuse `..`) do not apply.
struct Forge(tar::Builder<Vec<u8>>);

impl Forge {
    fn new() -> Forge {
        Forge(tar::Builder::new(Vec::new()))
    }

    fn entry(&mut self, name: &str, kind: tar::EntryType, mode: u32, data: &[u8]) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.entry(name, tar::EntryType::Directory, mode, b"")
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.entry(name, tar::EntryType::Regular, mode, data)
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(tar::EntryType::Symlink, name, target)
    }

    fn hard_link(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(tar::EntryType::Link, name, target)
    }

    /// A link whose target is written straight into the header, as `entry` does with
    /// names.
    fn link(&mut self, kind: tar::EntryType, name: &str, target: &str) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.as_gnu_mut().unwrap().linkname[..target.len()].copy_from_slice(target.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_cksum();
        self.0.append(&h, &b""[..]).unwrap();
        self
    }

    fn bytes(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()))
            .into_inner()
            .unwrap()
    }
}

/// A world whose jobs (name, tar archive) each hold one backup recorded as a
/// `files` backup of that archive.
fn forged(archives: &[(&str, Vec<u8>)]) -> World {
    forged_in(World::new(), archives)
}

/// [`forged`] in an existing world.
fn forged_in(w: World, archives: &[(&str, Vec<u8>)]) -> World {
    let mut jobs = String::new();
    for (job, tar) in archives {
        fs::write(w.path(&format!("{job}.tar")), tar).unwrap();
        jobs += &format!(
            "[[job]]\nname = \"{job}\"\nsource = {{ kind = \"command\", command = [\"cat\", \
             \"{job}.tar\"], extension = \"tar\" }}\n"
        );
    }
    w.config(&jobs);
    w.ok(&["backup"]);
    for (job, _) in archives {
        let m = &w.manifests(job)[0];
        let path = w.vault_dir().join(format!(
            "{job}/manifests/{}.json",
            m["backup_id"].as_str().unwrap()
        ));
        let mut m = m.clone();
        m["source"]["kind"] = "files".into();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let mut text = serde_json::to_vec_pretty(&m).unwrap();
        text.push(b'\n');
        fs::write(&path, text).unwrap();
    }
    w
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn assert_modes(root: &Path, want: &[(&str, u32)], stderr: &str) {
    for (rel, mode_wanted) in want {
        let got = mode(&root.join(rel));
        assert_eq!(got, *mode_wanted, "{rel}: {got:o}, {stderr}");
    }
}

/// Restores `job` into `to`, insisting on success; returns stderr.
fn restored(w: &World, job: &str, to: &Path, extra: &[&str]) -> String {
    let out = restore_to(w, job, to, extra);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    err
}

fn restore_to(w: &World, job: &str, to: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["restore", job, "--to", to.to_str().unwrap()];
    args.extend_from_slice(extra);
    w.vault(&args)
}

#[test]
fn restore_skips_fifos_and_device_nodes_naming_each() {
    let tar = Forge::new()
        .dir(".", 0o755)
        .entry("fifo", tar::EntryType::Fifo, 0o666, b"")
        .entry("null", tar::EntryType::Char, 0o666, b"")
        .entry("disk", tar::EntryType::Block, 0o660, b"")
        .file("kept.txt", 0o644, b"kept\n")
        .bytes();
    let w = forged(&[("forged", tar)]);
    let to = w.path("out");
    let err = restored(&w, "forged", &to, &[]);
    for (name, what) in [
        ("fifo", "a FIFO"),
        ("null", "a character device"),
        ("disk", "a block device"),
    ] {
        assert!(
            err.contains(&format!("warning: skipped {name}: {what}")),
            "names {name}: {err}"
        );
        assert!(
            fs::symlink_metadata(to.join(name)).is_err(),
            "{name} was restored"
        );
    }
    assert_eq!(fs::read_to_string(to.join("kept.txt")).unwrap(), "kept\n");
}

fn special_bits_archive() -> Vec<u8> {
    Forge::new()
        .dir(".", 0o777)
        .dir("pub", 0o777)
        .dir("pub/tmp", 0o1777)
        .file("su", 0o4755, b"#!/bin/sh\n")
        .file("sg", 0o2755, b"#!/bin/sh\n")
        .file("open.txt", 0o666, b"anyone\n")
        .file("open.sh", 0o777, b"#!/bin/sh\n")
        .file("normal", 0o640, b"fine\n")
        .symlink("link", "normal")
        .bytes()
}

#[test]
fn restore_strips_world_write_and_special_bits_unless_kept() {
    let w = forged(&[("forged", special_bits_archive())]);
    let to = w.path("out");
    let err = restored(&w, "forged", &to, &[]);
    assert_modes(
        &to,
        &[
            ("", 0o775),
            ("pub", 0o775),
            ("pub/tmp", 0o775),
            ("su", 0o755),
            ("sg", 0o755),
            ("open.txt", 0o664),
            ("open.sh", 0o775),
            ("normal", 0o640),
        ],
        &err,
    );
    let summaries: Vec<&str> = err.lines().filter(|l| l.contains("bits removed")).collect();
    assert_eq!(summaries.len(), 1, "one summary warning: {err}");
    assert!(summaries[0].contains("7 entries"), "{err}");
    assert!(
        summaries[0].contains("pub 0777 -> 0775"),
        "names a few: {err}"
    );
    assert!(err.contains("--keep-special-bits"), "{err}");

    // With the flag, setuid, setgid and sticky stay; world-write still goes.
    let kept = w.path("kept");
    let err = restored(&w, "forged", &kept, &["--keep-special-bits"]);
    assert_modes(
        &kept,
        &[
            ("", 0o775),
            ("pub/tmp", 0o1775),
            ("su", 0o4755),
            ("sg", 0o2755),
            ("open.txt", 0o664),
        ],
        &err,
    );
    assert!(err.contains("5 entries"), "{err}");
}

#[test]
fn keep_special_bits_is_refused_outside_a_files_restore_to_dir() {
    let w = forged(&[("forged", special_bits_archive())]);
    let file = w.path("out.tar");
    for args in [vec!["--output", file.to_str().unwrap()], vec!["-"]] {
        let mut all = vec!["restore", "forged", "--keep-special-bits"];
        all.extend(args);
        let out = w.vault(&all);
        assert_eq!(code(&out), EXIT_USAGE, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("--keep-special-bits applies to"),
            "{}",
            stderr(&out)
        );
    }
    assert!(!file.exists());
}

#[test]
fn directories_the_archive_implies_are_not_world_writable_even_with_umask_0() {
    // No `.` and no entries for `a` or `a/b`: they are made on the way.
    let tar = Forge::new().file("a/b/file", 0o644, b"deep\n").bytes();
    let w = forged(&[("forged", tar)]);
    let to = w.path("out");
    let out = Command::new("sh")
        .args(["-c", "umask 000 && exec \"$@\"", "sh", vault_bin()])
        .arg("--config")
        .arg(w.path("vault.toml"))
        .args(["restore", "forged", "--to", to.to_str().unwrap()])
        .current_dir(w.dir())
        .env_remove("VAULT_AGE_IDENTITY_FILE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for rel in ["", "a", "a/b"] {
        let m = mode(&to.join(rel));
        assert_eq!(m & 0o002, 0, "{rel} is world-writable: {m:o}");
    }
    assert_eq!(mode(&to.join("a/b/file")), 0o644);
}

/// A plain `command` backup to restore with `--output`.
fn plain_world() -> World {
    let w = World::new();
    w.config(
        "[[job]]\nname = \"db\"\nsource = { kind = \"command\", command = [\"echo\", \"dump\"] }\n",
    );
    w.ok(&["backup"]);
    w
}

#[test]
fn restore_output_refuses_a_fifo_or_a_symlink_and_leaves_it_in_place() {
    let w = plain_world();
    let fifo = w.path("fifo");
    sh(&format!("mkfifo '{}'", fifo.display()));
    let to_null = w.path("null-link");
    symlink("/dev/null", &to_null).unwrap();
    let file = w.path("file.txt");
    fs::write(&file, "previous\n").unwrap();
    let to_file = w.path("file-link");
    symlink(&file, &to_file).unwrap();
    let refused = |path: &Path, what: &str| {
        let out = w.vault(&["restore", "db", "--force", "-o", path.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(code(&out), EXIT_USAGE, "{err}");
        assert!(
            err.contains(&format!("--output {} is {what}", path.display())),
            "names the path: {err}"
        );
        assert!(
            err.contains("vault restore db -"),
            "points to stdout: {err}"
        );
    };
    refused(&fifo, "a FIFO");
    refused(&to_null, "a symlink");
    refused(&to_file, "a symlink");
    // The check comes before any download: with the data object gone, the answer is
    // still the usage error, not "missing".
    fs::remove_file(w.data_path(&w.manifests("db")[0])).unwrap();
    refused(&fifo, "a FIFO");

    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert_eq!(fs::read_link(&to_null).unwrap(), Path::new("/dev/null"));
    assert_eq!(fs::read_link(&to_file).unwrap(), file);
    assert_eq!(fs::read_to_string(&file).unwrap(), "previous\n");
    let left: Vec<_> = fs::read_dir(w.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("vault-partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn an_escaping_archive_is_refused_with_the_unpack_error_every_time() {
    // Escape first, then more data than the pipes between the stages hold: the
    // decrypting side is still writing when the unpacker stops.
    let first = Forge::new()
        .dir(".", 0o755)
        .file("../../x", 0o644, b"escaped\n")
        .file("big", 0o644, &vec![0u8; 8 << 20])
        .bytes();
    // Escape last, in a small archive: the two sides race.
    let last = Forge::new()
        .dir(".", 0o755)
        .file("a.txt", 0o644, b"a\n")
        .file("../../x", 0o644, b"escaped\n")
        .bytes();
    let w = forged(&[("first", first), ("last", last)]);
    let parent = w.path("r/s");
    fs::create_dir_all(&parent).unwrap();
    for round in 0..20 {
        for job in ["first", "last"] {
            let to = parent.join("out");
            let out = restore_to(&w, job, &to, &[]);
            let err = stderr(&out);
            assert_eq!(code(&out), EXIT_INTEGRITY, "{job}, round {round}: {err}");
            assert!(
                err.contains("archive entry ../../x points outside the target"),
                "{job}, round {round}: {err}"
            );
            assert!(
                !err.contains("stopped reading"),
                "{job}, round {round}: {err}"
            );
            let left: Vec<_> = fs::read_dir(&parent).unwrap().collect();
            assert!(left.is_empty(), "{job}, round {round}: left {left:?}");
            assert!(!w.path("r/x").exists(), "{job}: the entry escaped");
        }
    }
}

#[test]
fn an_archive_cannot_reach_outside_through_a_symlink_or_a_hard_link() {
    let w = World::new();
    let outside = w.path("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), "untouched\n").unwrap();
    let target = outside.to_str().unwrap();
    let archives = [
        (
            "through-symlink",
            Forge::new()
                .dir(".", 0o755)
                .symlink("evil", target)
                .file("evil/planted", 0o644, b"x")
                .bytes(),
            "archive entry evil/planted points outside",
        ),
        (
            "hard-link-up",
            Forge::new()
                .dir(".", 0o755)
                .hard_link("h", "../outside/victim")
                .bytes(),
            "archive entry h (a hard link to ../outside/victim) points outside",
        ),
        (
            "hard-link-via-symlink",
            Forge::new()
                .dir(".", 0o755)
                .symlink("evil", target)
                .hard_link("h", "evil/victim")
                .bytes(),
            "archive entry h (a hard link to evil/victim) points outside",
        ),
    ];
    let jobs: Vec<(&str, Vec<u8>)> = archives.iter().map(|(j, t, _)| (*j, t.clone())).collect();
    let w = forged_in(w, &jobs);
    for (job, _, message) in &archives {
        let to = w.path(&format!("restored/{job}"));
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        let out = restore_to(&w, job, &to, &[]);
        let err = stderr(&out);
        assert_eq!(code(&out), EXIT_INTEGRITY, "{job}: {err}");
        assert!(err.contains(message), "{job}: {err}");
        let left: Vec<_> = fs::read_dir(to.parent().unwrap()).unwrap().collect();
        assert!(left.is_empty(), "{job}: left {left:?}");
    }
    let mut names: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["victim"]);
    assert_eq!(fs::metadata(outside.join("victim")).unwrap().nlink(), 1);
}
