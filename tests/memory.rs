//! Memory is bounded whatever the dump's size: the peak RSS a 1 GiB incompressible
//! stream adds to `vault backup` and to `vault restore`, over what a 1 MiB one costs
//! (the binary, the runtime), stays within the bounds docs/design.md §7 states. Peak
//! RSS is read by GNU time (`%M`, the process's maximum resident set). Time is not
//! asserted here: the benchmarks measure it.

mod common;

use std::fs;
use std::io::Write;

use common::{World, require_tool, succeeded};

/// What 1 GiB of incompressible input may add to the peak RSS of a backup to a local
/// vault, or of its restore: the frames in flight, `cores + 2` of 4 MiB in and out
/// (docs/design.md §7), and 24 MiB for zstd's contexts, the pipe to the store and the
/// allocator. Measured on 2 CPUs (debug build): the backup adds 40 MiB (67 MiB with
/// zstd's own multi-threaded encoder and 4 MiB jobs, 120 MiB with its default jobs),
/// the restore 31 MiB; the bound there is 56 MiB.
fn bound_mib() -> u64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    24 + 8 * (cores + 2)
}

/// `vault ARGS...` under GNU time, stdout discarded: its peak RSS in KiB.
fn peak_rss_kib(w: &World, args: &[&str]) -> u64 {
    let report = w.path(&format!("time-{}.txt", args.join("-")));
    let mut cmd = std::process::Command::new("/usr/bin/time");
    cmd.arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(common::vault_bin())
        .arg("--config")
        .arg(w.path("vault.toml"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .current_dir(w.dir());
    succeeded(args, cmd.output().unwrap());
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
fn a_gib_of_incompressible_input_adds_a_bounded_amount_of_memory_to_backup_and_restore() {
    require_tool("/usr/bin/time");
    let w = World::new();
    incompressible(&w.path("small.bin"), 1 << 20);
    incompressible(&w.path("big.bin"), 1 << 30);
    w.config(&format!(
        "[[job]]\nname = \"small\"\nsource = {{ kind = \"file\", path = \"{}\" }}\n\
         [[job]]\nname = \"big\"\nsource = {{ kind = \"file\", path = \"{}\" }}\n",
        w.path("small.bin").display(),
        w.path("big.bin").display()
    ));
    assert_bounded(&w, "backup");
    // The stream really went through: stored about as large as it came.
    let stored = w.manifests("big")[0]["data"]["size"].as_u64().unwrap();
    assert!(stored > 1 << 30, "stored {stored} bytes");
    assert_bounded(&w, "restore");
}

/// `vault COMMAND big` peaks at most [`bound_mib`] above `vault COMMAND small`.
fn assert_bounded(w: &World, command: &str) {
    let args = |job| match command {
        "restore" => vec![command, job, "-"],
        _ => vec![command, job],
    };
    let base = peak_rss_kib(w, &args("small"));
    let big = peak_rss_kib(w, &args("big"));
    let added_mib = big.saturating_sub(base) / 1024;
    let (big, base, bound) = (big / 1024, base / 1024, bound_mib());
    eprintln!("{command}: 1 GiB peaks at {big} MiB, 1 MiB at {base} MiB");
    assert!(
        added_mib <= bound,
        "{command} of 1 GiB of incompressible data added {added_mib} MiB of peak RSS \
         (peak {big} MiB, 1 MiB: {base} MiB); the bound is {bound} MiB"
    );
}
