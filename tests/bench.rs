//! The benchmarks' scoring (scripts/bench-lib.sh, which scripts/bench, bench-pg and
//! bench-s3 share): medians of alternated runs, one `GOAL` line per goal with PASS or
//! FAIL, the exit status that follows from them, and a busy machine refused (exit 3)
//! or, when allowed, left unscored; and each script, run small on the debug build,
//! printing every goal it scores. Time is measured on an idle machine by the scripts
//! themselves, never asserted here.

mod common;

use std::process::{Child, Command, Stdio};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// What a bash run printed, and its exit status.
struct Ran {
    code: Option<i32>,
    out: String,
    err: String,
}

impl Ran {
    fn of(cmd: &mut Command) -> Ran {
        let o = cmd.output().expect("bash runs");
        Ran {
            code: o.status.code(),
            out: String::from_utf8_lossy(&o.stdout).into_owned(),
            err: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    fn goals(&self) -> Vec<&str> {
        self.out
            .lines()
            .filter(|l| l.starts_with("GOAL "))
            .collect()
    }

    /// Asserts the exit status and the GOAL lines, in order.
    fn ends(&self, code: i32, goals: &[&str]) {
        assert_eq!(self.code, Some(code), "{}{}", self.out, self.err);
        assert_eq!(self.goals(), goals, "{}", self.out);
    }
}

/// Runs `body` in bash after sourcing bench-lib.sh, with a 1 s idle sample.
fn lib(body: &str, env: &[(&str, &str)]) -> Ran {
    let script = format!(". '{ROOT}/scripts/bench-lib.sh'\nBENCH_IDLE_SECS=1\n{body}");
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &script])
        .env_remove("BENCH_ALLOW_BUSY")
        .env_remove("RUNS")
        .env_remove("BENCH_RUNS")
        .envs(env.iter().copied());
    Ran::of(&mut cmd)
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
    lib(
        "bench_goal 3 backup/zstd 1.20 '<=' 1.05\n\
         bench_goal 1 restore/age 0.79 '<=' 0.85\n\
         bench_goal 2 rss-local 56.9 '<=' 100 MiB\n\
         bench_goal 4 live unsupported '<=' 1.10\n\
         bench_finish",
        &[],
    )
    .ends(
        1,
        &[
            "GOAL 1 restore/age: 0.79 (target <= 0.85): PASS",
            "GOAL 2 rss-local: 56.9 MiB (target <= 100 MiB): PASS",
            "GOAL 3 backup/zstd: 1.20 (target <= 1.05): FAIL",
            "GOAL 4 live: unsupported (target <= 1.10): FAIL",
        ],
    );

    lib(
        "bench_goal 1 a 0.85 '<=' 0.85\nbench_goal 1 b 2.5 '>=' 1.0\nbench_finish",
        &[],
    )
    .ends(
        0,
        &[
            "GOAL 1 a: 0.85 (target <= 0.85): PASS",
            "GOAL 1 b: 2.5 (target >= 1.0): PASS",
        ],
    );

    let check = lib(
        "bench_goal 1 a 0.5 '<=' 0.85\nbench_check_failed 'upload 2 is missing'\nbench_finish",
        &[],
    );
    // A failed check fails the run whatever the goals say.
    check.ends(1, &["GOAL 1 a: 0.5 (target <= 0.85): PASS"]);
    assert!(
        check.out.contains("check FAILED: upload 2 is missing"),
        "{}",
        check.out
    );
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
    let ran = lib(&body, &[]);
    ran.ends(0, &[]);
    let lines: Vec<&str> = ran.out.lines().collect();
    // Median wall, median CPU, the largest RSS, the number of runs.
    assert_eq!(lines[0], "3.00 2.50 41000 3", "{}", ran.out);
    assert_eq!(lines[1], "2.50 2.00 52000 3", "{}", ran.out);
    // 3.00 / 2.50: the best runs (1.00 / 2.00) would say 0.50.
    assert_eq!(lines[2], "1.20", "{}", ran.out);
}

#[test]
fn an_even_number_of_runs_is_made_odd_and_a_bad_one_is_bad_usage() {
    let runs = |env: &[(&str, &str)]| lib("bench_runs 5; echo $RUNS", env);
    assert_eq!(runs(&[("RUNS", "4")]).out.trim(), "5");
    assert_eq!(runs(&[]).out.trim(), "5");
    let bad = runs(&[("RUNS", "many")]);
    bad.ends(2, &[]);
    assert!(bad.err.contains("RUNS must be a positive integer"));
}

#[test]
fn a_median_run_that_other_processes_slowed_is_not_scored() {
    // The median run of `vault` saw other processes use 2 CPU s of its 3 s.
    let mut body = record(
        "vault",
        &["1.00 1 0 1 0.5 0", "3.00 1 0 1 2.0 0", "5.00 1 0 1 0 0"],
    );
    body += "bench_goal 1 restore 0.50 '<=' 0.85\nbench_finish";
    let ran = lib(&body, &[]);
    ran.ends(
        3,
        &["GOAL 1 restore: 0.50 (target <= 0.85): UNSCORED (busy)"],
    );
    assert!(
        ran.out.contains("busy: the median run of vault"),
        "{}",
        ran.out
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
    refused.ends(3, &[]);
    assert!(refused.out.contains("idle check: BUSY"), "{}", refused.out);
    assert!(
        refused.err.contains("the machine is busy"),
        "{}",
        refused.err
    );
    assert!(!refused.out.contains("ran anyway"), "{}", refused.out);

    lib(
        "bench_idle_check\nbench_goal 1 a 0.5 '<=' 0.85\nbench_finish",
        &[("BENCH_ALLOW_BUSY", "1")],
    )
    .ends(3, &["GOAL 1 a: 0.5 (target <= 0.85): UNSCORED (busy)"]);
}

fn script(name: &str) -> Command {
    let mut cmd = Command::new(format!("{ROOT}/scripts/{name}"));
    cmd.stdin(Stdio::null());
    cmd
}

#[test]
fn the_bench_scripts_parse_and_refuse_arguments_as_bad_usage() {
    for name in ["bench", "bench-pg", "bench-s3", "bench-data"] {
        let syntax = Ran::of(Command::new("bash").args(["-n", &format!("{ROOT}/scripts/{name}")]));
        assert_eq!(syntax.code, Some(0), "{name}: {}", syntax.err);
    }
    for name in ["bench", "bench-pg", "bench-s3"] {
        let ran = Ran::of(script(name).arg("extra"));
        ran.ends(2, &[]);
        assert!(
            ran.err.contains(&format!("usage: scripts/{name}")),
            "{}",
            ran.err
        );
    }
}

/// A bench script, its environment, and the GOAL lines it must print (their start).
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

/// Each script, run on the debug build with a few MiB, one run of each contender and
/// BENCH_ALLOW_BUSY=1 (the suite keeps the machine busy), prints one verdict for each
/// of its goals. The verdicts themselves mean nothing here: a debug build, a busy
/// machine.
#[test]
fn each_bench_script_prints_a_verdict_for_every_goal_it_scores() {
    common::require_tool("/usr/bin/time");
    let vault = common::vault_bin();
    let cases: [Case; 3] = [
        (
            "bench",
            &[
                ("BENCH_ORDERS_MIB", "4"),
                ("BENCH_SIZE_MIB", "4"),
                ("BENCH_STREAM_MIB", "8"),
                ("BENCH_VERIFY_BACKUPS", "1"),
            ],
            &[
                "GOAL 1 restore/age|zstd: ",
                "GOAL 1 verify-deep/age|zstd|b3sum: ",
                "GOAL 2 rss-local: ",
                "GOAL 3 backup/zstd: ",
                "GOAL 3 overhead: ",
            ],
        ),
        (
            "bench-pg",
            &[("DATASETS", "mixed"), ("BENCH_PG_ORDERS_MIB", "4")],
            &["GOAL 4 live-backup/pg_dump: "],
        ),
        (
            "bench-s3",
            &[("BENCH_STREAM_MIB", "8")],
            &["GOAL 2 rss-s3: "],
        ),
    ];
    for (name, env, goals) in cases {
        let ran = Ran::of(
            script(name)
                .env("BENCH_VAULT", vault)
                .env("RUNS", "1")
                .env("BENCH_ALLOW_BUSY", "1")
                .env_remove("BENCH_DIR")
                .envs(env.iter().copied()),
        );
        let got = ran.goals();
        assert!(
            matches!(ran.code, Some(0 | 1 | 3)) && got.len() == goals.len(),
            "{name}: exit {:?}\n{}{}",
            ran.code,
            ran.out,
            ran.err
        );
        for (line, want) in got.iter().zip(goals) {
            let verdict = line.rsplit("): ").next().unwrap_or_default();
            assert!(
                line.starts_with(want) && ["PASS", "FAIL", "UNSCORED (busy)"].contains(&verdict),
                "{name}: {line}"
            );
        }
        // Which verdict is the exit status's.
        let expected = if got.iter().any(|l| l.ends_with("UNSCORED (busy)")) {
            3
        } else if got.iter().any(|l| l.ends_with("FAIL")) {
            1
        } else {
            0
        };
        assert_eq!(ran.code, Some(expected), "{name}:\n{}", ran.out);
    }
}
