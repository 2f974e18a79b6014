//! Memory is bounded whatever the dump's size: the peak RSS a 1 GiB incompressible
//! stream adds to `vault backup`, over what a 1 MiB one costs (the binary, the
//! runtime), stays within the bound docs/design.md §7 states. Peak RSS is read by GNU
//! time (`%M`, the process's maximum resident set). Time is not asserted here: the
//! benchmarks measure it.

mod common;

use std::fs;
use std::io::Write;

use common::{World, require_tool, succeeded};

/// What 1 GiB of incompressible input may add to the peak RSS of a backup to a local
/// vault. Measured: 67 MiB (release and debug alike; 120 MiB before zstd's job size
/// was set), so that a release build peaks at 85 MiB, under the 100 MiB goal.
const STREAM_BOUND_MIB: u64 = 80;

/// `vault backup JOB` under GNU time: its peak RSS in KiB.
fn peak_rss_kib(w: &World, job: &str) -> u64 {
    let report = w.path(&format!("time-{job}.txt"));
    let mut cmd = std::process::Command::new("/usr/bin/time");
    cmd.arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(common::vault_bin())
        .arg("--config")
        .arg(w.path("vault.toml"))
        .args(["backup", job])
        .current_dir(w.dir());
    succeeded(&["backup", job], cmd.output().unwrap());
    fs::read_to_string(&report)
        .unwrap()
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("GNU time's report {}: {e}", report.display()))
}

/// Incompressible bytes (a fast keyed stream: blake3's XOF), written to `path`.
fn incompressible(path: &std::path::Path, bytes: u64) {
    let mut out = std::io::BufWriter::new(fs::File::create(path).unwrap());
    let mut reader = blake3::Hasher::new_keyed(&[7; 32]).finalize_xof();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        reader.fill(&mut buf[..n]);
        out.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    out.flush().unwrap();
}

#[test]
fn a_gib_of_incompressible_input_adds_a_bounded_amount_of_memory() {
    require_tool("/usr/bin/time");
    let w = World::new();
    incompressible(&w.path("small.bin"), 1 << 20);
    incompressible(&w.path("big.bin"), 1 << 30);
    w.config(&format!(
        "[[job]]\nname = \"small\"\nsource = {{ kind = \"command\", command = [\"cat\", \"{}\"] }}\n\
         [[job]]\nname = \"big\"\nsource = {{ kind = \"command\", command = [\"cat\", \"{}\"] }}\n",
        w.path("small.bin").display(),
        w.path("big.bin").display()
    ));
    let base = peak_rss_kib(&w, "small");
    let big = peak_rss_kib(&w, "big");
    let added_mib = big.saturating_sub(base) / 1024;
    assert!(
        added_mib <= STREAM_BOUND_MIB,
        "1 GiB of incompressible input added {added_mib} MiB of peak RSS (peak {} MiB, \
         a 1 MiB backup {} MiB); the bound is {STREAM_BOUND_MIB} MiB",
        big / 1024,
        base / 1024
    );
    // The stream really went through: stored about as large as it came.
    let stored = w.manifests("big")[0]["data"]["size"].as_u64().unwrap();
    assert!(stored > 1 << 30, "stored {stored} bytes");
}
