//! Compression as stored: a backup is a run of independent zstd frames that the
//! stock tools read, adaptive compression moves the level and says so in the
//! manifest, and a bad `[compression]` setting is refused naming the key.

mod common;

use std::fs;

use common::*;

/// Text-like rows that compress about 4x, like a database dump.
fn write_rows(path: &std::path::Path, size: usize) {
    let mut out = Vec::with_capacity(size + 200);
    let mut i = 0u64;
    while out.len() < size {
        let h = blake3::hash(&i.to_le_bytes());
        out.extend_from_slice(
            format!(
                "{i}\t{}\t2024-{:02}-{:02}\tcustomer{}@example.com\t{}.{:02}\tpaid\n",
                &h.to_hex()[..12],
                1 + i % 12,
                1 + i % 28,
                i * 7919 % 100_000,
                i % 1000,
                i % 100
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(size);
    fs::write(path, out).unwrap();
}

#[test]
fn adaptive_compression_lowers_the_level_when_the_compressor_holds_the_dump_up() {
    let w = World::new();
    let input = w.path("rows.tsv");
    write_rows(&input, 192 << 20);
    w.config(&format!(
        "[compression]\nlevel = 6\nadapt = \"1..=6\"\n\
         [[job]]\nname = \"rows\"\nsource = {{ kind = \"file\", path = \"{}\", extension = \"tsv\" }}\n",
        input.display()
    ));
    w.ok(&["backup", "rows"]);
    let m = &w.manifests("rows")[0];
    let compression = &m["compression"];
    assert_eq!(compression["level"], 6, "{compression}");
    // Read from the page cache, the dump is far faster than zstd at level 6: the
    // compressor holds it up, so the level goes down, within the range.
    let used = compression["levels_used"].as_array().unwrap();
    let (lowest, highest) = (used[0].as_i64().unwrap(), used[1].as_i64().unwrap());
    assert!(
        (1..6).contains(&lowest) && lowest <= highest && highest <= 6,
        "{compression}"
    );
    let restored = w.path("restored.tsv");
    w.ok(&["restore", "rows", "--to", restored.to_str().unwrap()]);
    assert_eq!(file_hash(&restored), file_hash(&input));

    // Without `adapt` the level is fixed and the manifest says nothing more.
    w.config(&format!(
        "[compression]\nlevel = 6\n\
         [[job]]\nname = \"rows\"\nsource = {{ kind = \"file\", path = \"{}\", extension = \"tsv\" }}\n",
        input.display()
    ));
    w.ok(&["backup", "rows"]);
    let fixed = &w.manifests("rows")[1]["compression"];
    assert!(fixed.get("levels_used").is_none(), "{fixed}");
}

#[test]
fn a_bad_adapt_range_is_refused_naming_the_key() {
    let w = World::new();
    for bad in ["6..=1", "1..6", "0..=3", "1..=30"] {
        w.config(&format!(
            "[compression]\nadapt = \"{bad}\"\n\
             [[job]]\nname = \"a\"\nsource = {{ kind = \"file\", path = \"x\" }}\n"
        ));
        let out = w.vault(&["backup", "a"]);
        assert_eq!(code(&out), 2, "{bad}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("[compression] adapt") && err.contains(bad) && err.contains("MIN..=MAX"),
            "{err}"
        );
    }
}

#[test]
fn a_backup_is_a_run_of_4_mib_frames_that_zstd_lists_and_reads() {
    require_tool("zstd");
    require_tool("age");
    let w = World::new();
    let input = w.path("rows.tsv");
    // Two whole frames and a short one.
    write_rows(&input, (8 << 20) + 12_345);
    w.config(&format!(
        "[[job]]\nname = \"rows\"\nsource = {{ kind = \"file\", path = \"{}\" }}\n",
        input.display()
    ));
    w.ok(&["backup", "rows"]);
    let m = &w.manifests("rows")[0];
    let (obj, key) = (w.data_path(m), w.key());
    let zst = w.path("rows.zst");
    sh(&format!(
        "age -d -i '{}' '{}' > '{}'",
        key.display(),
        obj.display(),
        zst.display()
    ));
    let listing = String::from_utf8(sh(&format!("zstd -lv '{}'", zst.display()))).unwrap();
    assert!(
        listing.contains("# Zstandard Frames: 3"),
        "zstd -lv says:\n{listing}"
    );
    assert!(listing.contains("Check: XXH64"), "{listing}");
    assert_eq!(
        sh(&format!("zstd -dc '{}'", zst.display())),
        fs::read(&input).unwrap()
    );
}
