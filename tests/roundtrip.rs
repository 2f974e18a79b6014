//! Acceptance: byte-identical round trips for every source at 0 B, 1 B, 1 MiB and
//! 256 MiB, and interoperability with the stock age, zstd and b3sum tools.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::*;

const SIZES: [(&str, u64); 4] = [("0b", 0), ("1b", 1), ("1m", 1 << 20), ("256m", 256 << 20)];

fn restore_to_file(w: &World, job: &str) -> PathBuf {
    let out = w.path(&format!("restored-{job}"));
    w.ok(&[
        "restore",
        job,
        "--latest",
        "--output",
        out.to_str().unwrap(),
    ]);
    out
}

#[test]
fn command_source_round_trips_every_size() {
    let w = World::new();
    let mut jobs = String::new();
    for (name, size) in SIZES {
        let input = w.path(&format!("input-{name}"));
        write_mixed(&input, size, size);
        jobs += &format!(
            "[[job]]\nname = \"cmd-{name}\"\nsource = {{ kind = \"command\", command = [\"cat\", \"{}\"], extension = \"dat\" }}\n",
            input.display()
        );
    }
    w.config(&jobs);
    w.ok(&["backup"]);
    for (name, size) in SIZES {
        let job = format!("cmd-{name}");
        let manifests = w.manifests(&job);
        assert_eq!(manifests.len(), 1, "{job}");
        assert_eq!(manifests[0]["plaintext"]["size"], size);
        assert!(
            manifests[0]["data"]["key"]
                .as_str()
                .unwrap()
                .ends_with(".dat.zst.age")
        );
        let restored = restore_to_file(&w, &job);
        assert_eq!(fs::metadata(&restored).unwrap().len(), size, "{job}");
        assert_eq!(
            file_hash(&restored),
            file_hash(&w.path(&format!("input-{name}"))),
            "{job}: restored bytes differ"
        );
    }
    // `list --json` shows every backup with its manifest; the table names them too.
    let listed: serde_json::Value = serde_json::from_str(&w.ok(&["list", "--json"])).unwrap();
    let backups = listed["backups"].as_array().unwrap();
    assert_eq!(backups.len(), SIZES.len());
    assert!(backups.iter().all(|b| b["format"] == "vault-manifest"));
    let table = w.ok(&["list", "cmd-1m"]);
    assert!(
        table.contains("cmd-1m") && !table.contains("cmd-1b"),
        "{table}"
    );
    // Mixed data really was mixed: it compressed, but not to nothing.
    let big = &w.manifests("cmd-256m")[0];
    let (plain, stored) = (
        big["plaintext"]["size"].as_u64().unwrap(),
        big["data"]["size"].as_u64().unwrap(),
    );
    assert!(
        stored < plain * 3 / 4 && stored > plain / 3,
        "stored {stored} of {plain}"
    );
}

#[test]
fn file_source_round_trips_every_size_and_restores_to_a_file() {
    let w = World::new();
    let mut jobs = String::new();
    for (name, size) in SIZES {
        let input = w.path(&format!("input-{name}"));
        write_mixed(&input, size, size + 1);
        jobs += &format!(
            "[[job]]\nname = \"file-{name}\"\nsource = {{ kind = \"file\", path = \"{}\", extension = \"csv\" }}\n",
            input.display()
        );
    }
    w.config(&jobs);
    w.ok(&["backup"]);
    for (name, size) in SIZES {
        let job = format!("file-{name}");
        let m = &w.manifests(&job)[0];
        assert_eq!(m["source"]["kind"], "file");
        assert_eq!(m["plaintext"]["size"], size);
        assert!(m["data"]["key"].as_str().unwrap().ends_with(".csv.zst.age"));
        let to = w.path(&format!("restored-to-{name}"));
        w.ok(&["restore", &job, "--to", to.to_str().unwrap()]);
        assert_eq!(
            file_hash(&to),
            file_hash(&w.path(&format!("input-{name}"))),
            "{job}: restored bytes differ"
        );
    }
    // A directory is not a file: refused naming the job's path, nothing stored.
    w.config(&format!(
        "[[job]]\nname = \"dir\"\nsource = {{ kind = \"file\", path = \"{}\" }}\n",
        w.dir().display()
    ));
    let out = w.vault(&["backup", "dir"]);
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
    assert!(w.manifests("dir").is_empty());
}

/// Builds a tree with nested dirs, several modes, symlinks and old mtimes around a
/// payload file of `size` bytes.
fn make_tree(root: &Path, payload: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::hard_link(payload, root.join("payload")).unwrap();
    let files = [
        ("sub/config.ini", 0o640, "key = value\n"),
        ("sub/deeper/run.sh", 0o755, "#!/bin/sh\necho hi\n"),
        ("secret.txt", 0o600, "s3cr3t\n"),
        ("readonly.txt", 0o444, "frozen\n"),
    ];
    for (rel, mode, text) in files {
        let p = root.join(rel);
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
    fs::create_dir(root.join("empty-dir")).unwrap();
    symlink("sub/config.ini", root.join("link-rel")).unwrap();
    symlink("/nonexistent/target", root.join("link-dangling")).unwrap();
    symlink("sub", root.join("link-dir")).unwrap();
    fs::set_permissions(root.join("sub/deeper"), fs::Permissions::from_mode(0o750)).unwrap();
    // Old mtimes, whole seconds (tar headers keep seconds).
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    for (i, rel) in [
        "sub/config.ini",
        "secret.txt",
        "payload",
        "sub/deeper/run.sh",
    ]
    .iter()
    .enumerate()
    {
        let f = fs::File::options()
            .write(true)
            .open(root.join(rel))
            .or_else(|_| fs::File::open(root.join(rel)))
            .unwrap();
        f.set_modified(base + Duration::from_secs(i as u64 * 3600))
            .unwrap();
    }
    for link in ["link-rel", "link-dangling", "link-dir"] {
        sh(&format!(
            "touch -h -d @1500000000 '{}'",
            root.join(link).display()
        ));
    }
    // Directories last: creating entries changes their mtime.
    for (i, rel) in ["sub/deeper", "sub", "empty-dir"].iter().enumerate() {
        let d = fs::File::open(root.join(rel)).unwrap();
        d.set_modified(base - Duration::from_secs(86_400 * (i as u64 + 1)))
            .unwrap();
    }
}

#[derive(Debug, PartialEq)]
struct EntryInfo {
    rel: PathBuf,
    kind: &'static str,
    mode: u32,
    mtime: i64,
    link: Option<PathBuf>,
    hash: Option<String>,
}

fn describe_tree(root: &Path) -> Vec<EntryInfo> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let path = root.join(&rel);
        let md = fs::symlink_metadata(&path).unwrap();
        let ft = md.file_type();
        let kind = if ft.is_symlink() {
            "symlink"
        } else if ft.is_dir() {
            "dir"
        } else {
            "file"
        };
        out.push(EntryInfo {
            rel: rel.clone(),
            kind,
            mode: if ft.is_symlink() {
                0
            } else {
                md.mode() & 0o7777
            },
            mtime: md.mtime(),
            link: ft.is_symlink().then(|| fs::read_link(&path).unwrap()),
            hash: ft.is_file().then(|| file_hash(&path)),
        });
        if ft.is_dir() {
            for e in fs::read_dir(&path).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    out
}

#[test]
fn files_source_round_trips_tree_modes_symlinks_and_mtimes() {
    let w = World::new();
    let mut jobs = String::new();
    for (name, size) in SIZES {
        let payload = w.path(&format!("payload-{name}"));
        write_mixed(&payload, size, 100 + size);
        make_tree(&w.path(&format!("tree-{name}")), &payload);
        jobs += &format!(
            "[[job]]\nname = \"files-{name}\"\nsource = {{ kind = \"files\", path = \"tree-{name}\" }}\n"
        );
    }
    w.config(&jobs);
    w.ok(&["backup"]);
    for (name, size) in SIZES {
        let job = format!("files-{name}");
        let to = w.path(&format!("restored-{name}"));
        w.ok(&["restore", &job, "--to", to.to_str().unwrap()]);
        let (want, got) = (
            describe_tree(&w.path(&format!("tree-{name}"))),
            describe_tree(&to),
        );
        assert_eq!(got.len(), want.len(), "{job}: entry count");
        for (g, e) in got.iter().zip(&want) {
            assert_eq!(g, e, "{job}: entry differs");
        }
        assert_eq!(fs::metadata(to.join("payload")).unwrap().len(), size);
        assert_eq!(w.manifests(&job)[0]["source"]["extension"], "tar");
    }
    // --to refuses a non-empty directory, and does not touch it.
    let busy = w.path("busy");
    fs::create_dir(&busy).unwrap();
    fs::write(busy.join("keep"), "x").unwrap();
    let out = w.vault(&["restore", "files-1b", "--to", busy.to_str().unwrap()]);
    assert_eq!(code(&out), EXIT_USAGE, "{}", stderr(&out));
    assert!(stderr(&out).contains("not empty"));
    assert_eq!(fs::read_to_string(busy.join("keep")).unwrap(), "x");
}

/// Makes a SQLite database (rollback journal) of about `size` bytes; 0 means an empty file.
fn make_db(path: &Path, size: u64, seed: u64) {
    if size == 0 {
        fs::write(path, b"").unwrap();
        return;
    }
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        .unwrap();
    let tx = conn.transaction().unwrap();
    let chunk = 256 * 1024u64;
    let scratch = path.with_extension("chunk");
    let mut written = 0;
    let mut id = 0;
    while written + 8192 < size {
        let n = chunk.min(size - written - 4096);
        write_mixed(&scratch, n, seed + id);
        let body = fs::read(&scratch).unwrap();
        tx.execute(
            "INSERT INTO blobs VALUES (?1, ?2)",
            rusqlite::params![id, body],
        )
        .unwrap();
        written += n;
        id += 1;
    }
    tx.commit().unwrap();
    let _ = fs::remove_file(scratch);
}

#[test]
fn sqlite_source_round_trips_every_size() {
    let w = World::new();
    let mut jobs = String::new();
    for (name, size) in SIZES {
        make_db(&w.path(&format!("db-{name}.sqlite")), size, size);
        jobs += &format!(
            "[[job]]\nname = \"db-{name}\"\nsource = {{ kind = \"sqlite\", path = \"db-{name}.sqlite\" }}\n"
        );
    }
    w.config(&jobs);
    w.ok(&["backup"]);
    for (name, _) in SIZES {
        let job = format!("db-{name}");
        let original = w.path(&format!("db-{name}.sqlite"));
        let restored = restore_to_file(&w, &job);
        assert_eq!(
            fs::metadata(&restored).unwrap().len(),
            fs::metadata(&original).unwrap().len(),
            "{job}: size"
        );
        assert_eq!(
            file_hash(&restored),
            file_hash(&original),
            "{job}: bytes differ"
        );
        if fs::metadata(&original).unwrap().len() > 0 {
            let conn = rusqlite::Connection::open(&restored).unwrap();
            let ok: String = conn
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(ok, "ok");
        }
    }
    let big = fs::metadata(w.path("db-256m.sqlite")).unwrap().len();
    assert!(big >= 256 << 20, "the big database is {big} bytes");
}

#[test]
fn stock_age_zstd_and_b3sum_read_what_vault_wrote() {
    for tool in ["age", "zstd", "b3sum"] {
        require_tool(tool);
    }
    let w = World::new();
    let input = w.path("input");
    write_mixed(&input, 3 << 20, 42);
    w.config(&format!(
        "[[job]]\nname = \"dump\"\nsource = {{ kind = \"command\", command = [\"cat\", \"{}\"] }}\n",
        input.display()
    ));
    w.ok(&["backup", "dump"]);
    let m = &w.manifests("dump")[0];
    let object = w.data_path(m);
    let key_path = w.key();
    let (obj, key) = (object.display(), key_path.display());

    let plain = sh(&format!("age -d -i '{key}' '{obj}' | zstd -d"));
    assert_eq!(
        plain,
        fs::read(&input).unwrap(),
        "age | zstd -d differs from the input"
    );

    let b3 = |script: String| {
        String::from_utf8(sh(&script))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        b3(format!("b3sum '{obj}'")),
        m["data"]["blake3"].as_str().unwrap()
    );
    assert_eq!(
        b3(format!("age -d -i '{key}' '{obj}' | zstd -d | b3sum")),
        m["plaintext"]["blake3"].as_str().unwrap()
    );
    assert_eq!(
        fs::metadata(&object).unwrap().len(),
        m["data"]["size"].as_u64().unwrap()
    );
    // The zstd layer alone is a stock zstd stream of the recorded compressed size.
    let zlen = sh(&format!("age -d -i '{key}' '{obj}' | wc -c"));
    assert_eq!(
        String::from_utf8(zlen).unwrap().trim(),
        m["compression"]["size"].to_string()
    );
}

#[test]
fn a_file_growing_during_a_files_backup_keeps_the_archive_valid() {
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let w = World::new();
    let tree = w.path("tree");
    fs::create_dir(&tree).unwrap();
    // The log comes first in name order and is large, so reading it (paced by the
    // compressor through bounded pipes) takes long enough for the appender, which
    // adds a line every millisecond, to grow it between `stat` and the end of the read.
    let log = tree.join("a-app.log");
    write_mixed(&log, 48 << 20, 6);
    write_mixed(&tree.join("b-payload"), 8 << 20, 5);
    w.config("[[job]]\nname = \"tree\"\nsource = { kind = \"files\", path = \"tree\" }\n");

    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let (stop, log) = (stop.clone(), log.clone());
        std::thread::spawn(move || {
            let mut f = fs::OpenOptions::new().append(true).open(&log).unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                writeln!(f, "line {n} {}", "x".repeat(200)).unwrap();
                n += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    let out = w.vault(&["backup"]);
    stop.store(true, Ordering::Relaxed);
    appender.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("grew while it was archived"),
        "{}",
        stderr(&out)
    );

    let to = w.path("restored");
    w.ok(&["restore", "tree", "--to", to.to_str().unwrap()]);
    let (kept, full) = (
        fs::read(to.join("a-app.log")).unwrap(),
        fs::read(&log).unwrap(),
    );
    assert!(
        kept.len() >= 48 << 20,
        "the bytes seen at stat are all kept"
    );
    assert!(
        full.len() > kept.len() && full.starts_with(&kept),
        "the restored log is a prefix of the live one"
    );
    assert_eq!(
        file_hash(&to.join("b-payload")),
        file_hash(&tree.join("b-payload"))
    );
}

#[test]
fn a_files_backup_holds_only_directories_files_and_symlinks() {
    // docs/format.md §4.3: sockets, FIFOs and device nodes are skipped with a warning.
    let w = World::new();
    let tree = w.path("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    fs::write(tree.join("sub/a"), "a\n").unwrap();
    symlink("sub/a", tree.join("link")).unwrap();
    sh(&format!("mkfifo '{}'", tree.join("fifo").display()));
    let _socket = std::os::unix::net::UnixListener::bind(tree.join("socket")).unwrap();
    // A device node needs root (as in CI); as anyone else the rest still holds.
    let device = sh(&format!(
        "mknod '{}' c 1 3 2>/dev/null && echo yes || true",
        tree.join("null").display()
    ));
    w.config("[[job]]\nname = \"tree\"\nsource = { kind = \"files\", path = \"tree\" }\n");
    let out = w.vault(&["backup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut skipped = vec!["fifo", "socket"];
    if device == b"yes\n" {
        skipped.push("null");
    }
    for name in &skipped {
        let path = tree.join(name);
        assert!(
            stderr(&out).contains(&format!("skipping {}", path.display())),
            "{name}: {}",
            stderr(&out)
        );
    }

    let out = w.command(&["restore", "tree", "-"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let entries: Vec<(String, tar::EntryType)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            (name, e.header().entry_type())
        })
        .collect();
    use tar::EntryType as T;
    assert_eq!(
        entries,
        [
            (".".to_string(), T::Directory),
            ("link".to_string(), T::Symlink),
            ("sub".to_string(), T::Directory),
            ("sub/a".to_string(), T::Regular),
        ]
    );
}
