//! Acceptance: `vault restore` treats what it restores as untrusted: `--output` never
//! replaces anything but a regular file.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, symlink};
use std::path::Path;

use common::*;

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
