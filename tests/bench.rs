//! The benchmarks' scoring (scripts/bench-lib.sh, which scripts/bench, bench-pg and
//! bench-s3 share): medians of alternated runs, one `GOAL` line per goal with PASS or
//! FAIL, the exit status that follows from them, and a busy machine refused (exit 3)
//! or, when allowed, left unscored. The benchmarks themselves are not run here: time
//! is measured on an idle machine, never in a test.

use std::process::{Child, Command, Output, Stdio};

const LIB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench-lib.sh");

/// Runs `body` in bash after sourcing bench-lib.sh, with a 1 s idle sample.
fn lib(body: &str, env: &[(&str, &str)]) -> Output {
    let script = format!(". '{LIB}'\nBENCH_IDLE_SECS=1\n{body}");
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &script])
        .env_remove("BENCH_ALLOW_BUSY")
        .env_remove("RUNS")
        .env_remove("BENCH_RUNS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("bash runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn goal_lines(stdout: &str) -> Vec<&str> {
    stdout.lines().filter(|l| l.starts_with("GOAL ")).collect()
}

/// A run recorded as bench_timed records it: "wall user sys rss_kib other server".
fn record(contender: &str, runs: &[&str]) -> String {
    runs.iter()
        .map(|r| {
            format!(
                "[[ -n ${{BENCH_RUNLOG[{contender}]+set}} ]] || BENCH_CONTENDERS+=({contender}); \
                 BENCH_RUNLOG[{contender}]+=\"{r}\"$'\\n'\n"
            )
        })
        .collect()
}

#[test]
fn each_goal_is_printed_with_pass_or_fail_in_number_order_and_the_exit_status_follows() {
    let failing = lib(
        "bench_goal 3 backup/zstd 1.20 '<=' 1.05\n\
         bench_goal 1 restore/age 0.79 '<=' 0.85\n\
         bench_goal 2 rss-local 56.9 '<=' 100 MiB\n\
         bench_goal 4 live unsupported '<=' 1.10\n\
         bench_finish",
        &[],
    );
    let (out, err) = text(&failing);
    assert_eq!(failing.status.code(), Some(1), "{out}{err}");
    assert_eq!(
        goal_lines(&out),
        [
            "GOAL 1 restore/age: 0.79 (target <= 0.85): PASS",
            "GOAL 2 rss-local: 56.9 MiB (target <= 100 MiB): PASS",
            "GOAL 3 backup/zstd: 1.20 (target <= 1.05): FAIL",
            "GOAL 4 live: unsupported (target <= 1.10): FAIL",
        ],
        "{out}"
    );

    let passing = lib(
        "bench_goal 1 a 0.85 '<=' 0.85\nbench_goal 1 b 2.5 '>=' 1.0\nbench_finish",
        &[],
    );
    let (out, err) = text(&passing);
    assert_eq!(passing.status.code(), Some(0), "{out}{err}");
    assert_eq!(
        goal_lines(&out),
        [
            "GOAL 1 a: 0.85 (target <= 0.85): PASS",
            "GOAL 1 b: 2.5 (target >= 1.0): PASS"
        ]
    );

    let check = lib(
        "bench_goal 1 a 0.5 '<=' 0.85\nbench_check_failed 'upload 2 is missing'\nbench_finish",
        &[],
    );
    let (out, err) = text(&check);
    assert_eq!(
        check.status.code(),
        Some(1),
        "a failed check fails the run: {out}{err}"
    );
    assert!(out.contains("check FAILED: upload 2 is missing"), "{out}");
}

#[test]
fn contenders_are_compared_by_their_medians_not_their_best_runs() {
    let mut body = record(
        "vault",
        &[
            "1.00 0.9 0.1 40000 0 0",
            "9.00 8 1 41000 0 0",
            "3.00 2 0.5 39000 0 0",
        ],
    );
    body += &record(
        "zstd",
        &[
            "2.00 1.5 0.5 50000 0 0",
            "4.00 3 1 52000 0 0",
            "2.50 2 0 51000 0 0",
        ],
    );
    body += "bench_stats vault\nbench_stats zstd\nbench_ratio vault zstd\nbench_finish";
    let o = lib(&body, &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    // Median wall, median CPU, the largest RSS, the number of runs.
    assert_eq!(lines[0], "3.00 2.50 41000 3", "{out}");
    assert_eq!(lines[1], "2.50 2.00 52000 3", "{out}");
    // 3.00 / 2.50: the best runs (1.00 / 2.00) would say 0.50.
    assert_eq!(lines[2], "1.20", "{out}");
}

#[test]
fn an_even_number_of_runs_is_made_odd_and_a_bad_one_is_bad_usage() {
    let o = lib("bench_runs 5; echo $RUNS", &[("RUNS", "4")]);
    assert_eq!(text(&o).0.trim(), "5");
    let o = lib("bench_runs 5; echo $RUNS", &[]);
    assert_eq!(text(&o).0.trim(), "5");
    let o = lib("bench_runs 5; echo $RUNS", &[("RUNS", "many")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("RUNS must be a positive integer"));
}

#[test]
fn a_median_run_that_other_processes_slowed_is_not_scored() {
    // The median run of `vault` saw other processes use 2 CPU s of its 3 s.
    let mut body = record(
        "vault",
        &["1.00 1 0 1 0.5 0", "3.00 1 0 1 2.0 0", "5.00 1 0 1 0 0"],
    );
    body += "bench_goal 1 restore 0.50 '<=' 0.85\nbench_finish";
    let o = lib(&body, &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}{err}");
    assert!(out.contains("busy: the median run of vault"), "{out}");
    assert_eq!(
        goal_lines(&out),
        ["GOAL 1 restore: 0.50 (target <= 0.85): UNSCORED (busy)"]
    );
}

/// Burns a CPU outside the benchmark's process tree until dropped.
struct Burner(Child);

impl Burner {
    fn start() -> Burner {
        let child = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .stdout(Stdio::null())
            .spawn()
            .expect("sh runs");
        // Let it be scheduled before the sample starts.
        std::thread::sleep(std::time::Duration::from_millis(200));
        Burner(child)
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_busy_machine_is_refused_before_the_first_run_or_left_unscored_when_allowed() {
    let _burner = Burner::start();
    let refused = lib(
        "bench_idle_check\necho 'ran anyway'\nbench_goal 1 a 0.5 '<=' 0.85\nbench_finish",
        &[],
    );
    let (out, err) = text(&refused);
    assert_eq!(refused.status.code(), Some(3), "{out}{err}");
    assert!(out.contains("idle check: BUSY"), "{out}");
    assert!(err.contains("the machine is busy"), "{err}");
    assert!(!out.contains("ran anyway"), "{out}");

    let allowed = lib(
        "bench_idle_check\nbench_goal 1 a 0.5 '<=' 0.85\nbench_finish",
        &[("BENCH_ALLOW_BUSY", "1")],
    );
    let (out, err) = text(&allowed);
    assert_eq!(allowed.status.code(), Some(3), "{out}{err}");
    assert_eq!(
        goal_lines(&out),
        ["GOAL 1 a: 0.5 (target <= 0.85): UNSCORED (busy)"]
    );
}

#[test]
fn the_bench_scripts_parse_and_refuse_arguments_as_bad_usage() {
    let root = env!("CARGO_MANIFEST_DIR");
    for script in ["bench", "bench-pg", "bench-s3", "bench-data"] {
        let path = format!("{root}/scripts/{script}");
        let syntax = Command::new("bash").args(["-n", &path]).output().unwrap();
        assert!(syntax.status.success(), "{script}: {}", text(&syntax).1);
    }
    for script in ["bench", "bench-pg", "bench-s3"] {
        let o = Command::new(format!("{root}/scripts/{script}"))
            .arg("extra")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{script}: {out}{err}");
        assert!(err.contains(&format!("usage: scripts/{script}")), "{err}");
    }
}
