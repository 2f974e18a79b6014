//! Acceptance of `vault run`, the scheduler, driving the real binary: backups on
//! second-level schedules, no overlap, `max_concurrent`, shutdown with its grace time
//! (against the S3 test server), SIGHUP reloads, catch-up after downtime, `/metrics`
//! and the health endpoints, the job lock shared with hand-started backups, and
//! `--dry-run`.
//!
//! Every daemon logs to a file in its world and is killed, with all it started, when
//! its guard drops, so a failing test leaves nothing running. Waits poll with generous
//! deadlines (a loaded two-core CI machine); the only fixed sleeps are the ones a
//! point is about (a daemon that runs for a while, a run that does not come).

mod common;
mod s3harness;

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use common::*;
use rustix::process::Signal;
use s3harness::{LockSetup, S3World};

/// How long a poll waits before it fails the test.
const DEADLINE: Duration = Duration::from_secs(60);

/// A running `vault run`, its log (stderr) in a file. Dropped, it is killed together
/// with every process it started.
struct Daemon {
    child: Child,
    log: PathBuf,
    /// When it logged that it is ready (its schedules are set, its signals handled).
    ready_at: DateTime<Utc>,
}

impl Daemon {
    /// Starts `cmd` (a `vault run`), logging to `log`, and waits until it is ready.
    fn start(mut cmd: Command, log: PathBuf) -> Daemon {
        let file = fs::File::create(&log).unwrap();
        let child = cmd.stdout(Stdio::null()).stderr(file).spawn().unwrap();
        let mut daemon = Daemon {
            child,
            log,
            ready_at: Utc::now(),
        };
        let line = daemon.wait_log(" at a time");
        daemon.ready_at = log_time(&line);
        daemon
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `ready` until it holds; fails naming `what`, with the log, when the
    /// deadline passes or the daemon has exited.
    fn wait(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let started = Instant::now();
        while !ready() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("vault run exited ({status}) before {what}:\n{}", self.log());
            }
            assert!(
                started.elapsed() < DEADLINE,
                "timed out waiting until {what}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the log has a line containing `needle`; returns the first.
    fn wait_log(&mut self, needle: &str) -> String {
        let log = self.log.clone();
        let find = || {
            fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .find(|l| l.contains(needle))
                .map(str::to_string)
        };
        self.wait(&format!("the log says `{needle}`"), || find().is_some());
        find().unwrap()
    }

    fn signal(&self, signal: Signal) {
        send(self.pid(), signal);
    }

    /// SIGTERM, as systemd or Kubernetes stop it: its exit status, how long it took
    /// to exit after the signal, and its log.
    fn stop(&mut self) -> (ExitStatus, Duration, String) {
        self.signal(Signal::TERM);
        self.exit(Instant::now())
    }

    /// Waits for it to exit after a signal `sent`: as [`Daemon::stop`].
    fn exit(&mut self, sent: Instant) -> (ExitStatus, Duration, String) {
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, sent.elapsed(), self.log());
            }
            assert!(
                sent.elapsed() < DEADLINE,
                "vault run did not stop after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it and insists on a clean exit (0); returns the log.
    fn stop_ok(&mut self) -> String {
        let (status, _, log) = self.stop();
        assert_eq!(status.code(), Some(0), "vault run's exit: {log}");
        log
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // Its runs are in process groups of their own: find them before they are
            // orphaned.
            let runs = descendants(self.pid());
            send(self.pid(), Signal::KILL);
            for pid in runs {
                send(pid, Signal::KILL);
            }
            let _ = self.child.wait();
        }
    }
}

fn send(pid: u32, signal: Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// The parent of process `pid`, from /proc.
fn parent(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name (in parentheses, may hold spaces): state, then ppid.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Every process below `pid`.
fn descendants(pid: u32) -> Vec<u32> {
    let table: Vec<(u32, u32)> = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let p: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            Some((p, parent(p)?))
        })
        .collect();
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for &(child, ppid) in &table {
            if ppid == p {
                out.push(child);
                todo.push(child);
            }
        }
    }
    out
}

/// The time stamp a text log line starts with.
fn log_time(line: &str) -> DateTime<Utc> {
    let stamp = line.split_whitespace().next().unwrap_or_default();
    DateTime::parse_from_rfc3339(stamp)
        .unwrap_or_else(|e| panic!("no time stamp in {line:?}: {e}"))
        .to_utc()
}

/// A world whose vault signs its manifests (so `verify` would find two runs of a job
/// at once: a fork of its chain) and keeps the job locks and the scheduler's state in
/// `state/`.
struct Scene {
    w: World,
    signing: String,
}

impl Scene {
    fn new() -> Scene {
        let w = World::new();
        let signing = signing(&w);
        Scene { w, signing }
    }

    /// vault.toml with these `[scheduler]` lines and jobs (TOML).
    fn config(&self, scheduler: &str, jobs: &str) {
        self.w
            .config(&format!("{}[scheduler]\n{scheduler}\n{jobs}", self.signing));
    }

    /// Like [`Scene::config`], with the HTTP endpoint on a free port; its address.
    fn config_listening(&self, scheduler: &str, jobs: &str) -> SocketAddr {
        let addr = free_addr();
        self.config(&format!("listen = \"{addr}\"\n{scheduler}"), jobs);
        addr
    }

    /// `vault run`, logging to `log` in the world.
    fn start(&self, log: &str) -> Daemon {
        Daemon::start(self.w.command(&["run"]), self.w.path(log))
    }

    fn manifests(&self, job: &str) -> usize {
        self.w.manifests(job).len()
    }

    /// `vault verify` passes, and finds every job's signed chain unbroken.
    fn verifies(&self) {
        let out = self.w.vault(&["--json", "verify"]);
        let report = succeeded(&["--json", "verify"], out);
        let report: serde_json::Value = serde_json::from_str(&report).unwrap();
        for job in report["jobs"].as_array().unwrap() {
            assert_eq!(job["chain_segments"], 1, "{report:#}");
        }
    }

    /// The file `vault run` keeps its state in: `<state_dir>/scheduler.<hash>.json`.
    fn state_file(&self) -> PathBuf {
        self.w
            .path("state")
            .join(format!("scheduler.{}.json", vault_hash(&self.w)))
    }

    /// The lock file of `job`: `<state_dir>/locks/<job>.<hash>.lock`.
    fn lock_file(&self, job: &str) -> PathBuf {
        self.w
            .path("state/locks")
            .join(format!("{job}.{}.lock", vault_hash(&self.w)))
    }
}

/// The short hash that names a vault in the state directory: the first 12 hex digits
/// of the blake3 hash of its store as the store calls itself, a newline, and the job
/// root of its prefix (`/` with none).
fn vault_hash(w: &World) -> String {
    let id = format!("local directory {}\n/", w.vault_dir().display());
    blake3::hash(id.as_bytes()).to_hex()[..12].to_string()
}

/// A job backing up the output of `script` (`sh -c`) on `schedule`, expected daily (so
/// that no verify in these short tests calls it stale).
fn job(name: &str, schedule: &str, script: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\nschedule = \"{schedule}\"\ninterval = \"1d\"\n\
         source = {{ kind = \"command\", command = [\"sh\", \"-c\", \"{script}\"] }}\n"
    )
}

/// A dump that takes `secs` and appends `start NAME <ns>` and `end NAME <ns>` to
/// `dumps` in the world.
fn timed(name: &str, secs: &str) -> String {
    format!(
        "echo start {name} $(date +%s%N) >> dumps; sleep {secs}; \
         echo end {name} $(date +%s%N) >> dumps; echo data"
    )
}

/// The complete lines of the world's file `name` (none while it does not exist): a
/// line still being written is left for the next look.
fn lines(w: &World, name: &str) -> Vec<String> {
    let text = fs::read_to_string(w.path(name)).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete.lines().map(str::to_string).collect()
}

/// The dumps `timed` sources recorded: (job, start ns, end ns), by start.
fn dumps(w: &World) -> Vec<(String, u128, u128)> {
    let text = lines(w, "dumps");
    let mut open: HashMap<String, u128> = HashMap::new();
    let mut out = Vec::new();
    for line in &text {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [what, job, ns] = fields[..] else {
            panic!("bad line {line:?} in dumps:\n{text:#?}");
        };
        let ns: u128 = ns.parse().unwrap();
        match what {
            "start" => assert!(
                open.insert(job.into(), ns).is_none(),
                "{job} started again before it ended:\n{text:#?}"
            ),
            _ => out.push((job.to_string(), open.remove(job).unwrap(), ns)),
        }
    }
    out.sort_by_key(|d| d.1);
    out
}

/// Insists that no two dumps ran at the same time.
fn never_at_once(dumps: &[(String, u128, u128)]) {
    for pair in dumps.windows(2) {
        assert!(
            pair[1].1 >= pair[0].2,
            "two dumps at once: {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
}

/// A source that writes its shell's pid to `started.NAME` and then waits until the
/// file `go.<its pid>` or `go.all` exists (at most a minute).
fn gated(name: &str) -> String {
    format!(
        "echo $$ >> started.{name}; i=0; \
         while [ ! -e go.$$ ] && [ ! -e go.all ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; \
         echo data"
    )
}

/// The pids `gated(name)` sources wrote, in order.
fn started(w: &World, name: &str) -> Vec<String> {
    lines(w, &format!("started.{name}"))
}

/// A loopback address with a free port.
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `GET path` from `addr`: the status, the head and the body.
fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {answer:?}"));
    (status, head.to_string(), body.to_string())
}

type Samples = Vec<(String, HashMap<String, String>, f64)>;

/// `/metrics`, parsed by prometheus_client (which fails on anything invalid).
fn scrape(addr: SocketAddr) -> Samples {
    let (status, head, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{head}\n{body}");
    parse_exposition(&body)
}

/// The value of the sample `name` whose labels include `labels`.
fn sample(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.2)
}

/// `vault_schedule_runs_total` of a backup of `job` with `outcome`.
fn runs(samples: &Samples, job: &str, outcome: &str) -> f64 {
    let labels = [("task", "backup"), ("vault_job", job), ("outcome", outcome)];
    sample(samples, "vault_schedule_runs_total", &labels).unwrap_or(0.0)
}

/// `vault_schedule_skipped_total{reason="overlap"}` of the backup of `job`.
fn skipped(samples: &Samples, job: &str) -> f64 {
    let labels = [
        ("task", "backup"),
        ("vault_job", job),
        ("reason", "overlap"),
    ];
    sample(samples, "vault_schedule_skipped_total", &labels).unwrap_or(0.0)
}

/// Point 1: three jobs on second-level schedules for 15 s: each has a backup per fire
/// time (give or take the one at either end), and all of them verify.
#[test]
fn three_jobs_run_on_their_schedules_and_every_backup_verifies() {
    let s = Scene::new();
    let periods = [("every2", 2), ("every3", 3), ("every5", 5)];
    let jobs: String = periods
        .iter()
        .map(|(name, p)| job(name, &format!("*/{p} * * * * *"), "echo data"))
        .collect();
    s.config("max_concurrent = 3", &jobs);
    let mut d = s.start("run.log");
    std::thread::sleep(Duration::from_secs(15));
    let stopped_at = Utc::now();
    let log = d.stop_ok();

    let (from, to) = (d.ready_at.timestamp(), stopped_at.timestamp());
    for (name, p) in periods {
        // Fire times in (from, to]: the seconds divisible by the period.
        let fires = to.div_euclid(p) - from.div_euclid(p);
        let backups = s.manifests(name) as i64;
        assert!(
            (backups - fires).abs() <= 1,
            "{name}: {backups} backups for {fires} fire times:\n{log}"
        );
        let finished = log
            .lines()
            .filter(|l| l.contains("finished in") && l.contains(&format!("unit=backup:{name}")))
            .count() as i64;
        assert_eq!(finished, backups, "{name}: every run made a backup:\n{log}");
    }
    assert!(!log.contains("failed"), "{log}");
    s.verifies();
}

/// Point 2: a job slower than its schedule is never started while it runs; the fire
/// times it misses are skipped, logged and counted in `/metrics`.
#[test]
fn a_job_slower_than_its_schedule_never_overlaps_and_its_skips_are_counted() {
    let s = Scene::new();
    let addr = s.config_listening("", &job("slow", "* * * * * *", &timed("slow", "1.5")));
    let mut d = s.start("run.log");
    d.wait("two runs and a skip in /metrics", || {
        let m = scrape(addr);
        runs(&m, "slow", "success") >= 2.0 && skipped(&m, "slow") >= 1.0
    });
    let log = d.stop_ok();

    let dumps = dumps(&s.w);
    never_at_once(&dumps);
    // The run under way at SIGTERM finished within the grace time: every dump is a
    // backup.
    assert_eq!(dumps.len(), s.manifests("slow"), "{dumps:?}");
    assert!(
        log.contains("skipped the run at") && log.contains("its previous run is still going"),
        "{log}"
    );
    s.verifies();
}

/// Point 3: with `max_concurrent = 1`, two jobs due at the same moments take turns:
/// their dumps never run at the same time.
#[test]
fn max_concurrent_one_runs_jobs_due_together_one_after_the_other() {
    let s = Scene::new();
    let jobs = format!(
        "{}{}",
        job("a", "*/2 * * * * *", &timed("a", "0.5")),
        job("b", "*/2 * * * * *", &timed("b", "0.5"))
    );
    s.config("max_concurrent = 1", &jobs);
    let mut d = s.start("run.log");
    d.wait("two dumps of each job", || {
        let dumps = dumps(&s.w);
        ["a", "b"]
            .iter()
            .all(|j| dumps.iter().filter(|d| d.0 == *j).count() >= 2)
    });
    let log = d.stop_ok();

    never_at_once(&dumps(&s.w));
    assert!(
        log.contains("waiting for a run slot (max_concurrent)"),
        "{log}"
    );
    s.verifies();
}

/// Point 4: SIGTERM while two backups run, against S3: the one that finishes within
/// `shutdown_grace` is committed; the other, a multipart upload still going when the
/// grace time is over, is stopped: no manifest, no multipart upload left. The
/// scheduler exits 0 within the grace time and 5 s.
#[test]
fn sigterm_commits_what_finishes_within_the_grace_and_aborts_the_rest() {
    let w = S3World::new(LockSetup::PerObject);
    let grace = 5;
    // 24 MiB of random data at once: 8 MiB parts uploaded within seconds; then half a
    // minute of zeros, 16 MiB/s, so that zstd (whose output comes in 8 MiB jobs of
    // input) writes often and the backup notices its SIGTERM within a second.
    let long = "head -c 25165824 /dev/urandom; \
                for i in $(seq 120); do head -c 4194304 /dev/zero; sleep 0.25; done";
    w.config(
        "",
        &format!(
            "[signing]\nstate_dir = \"state\"\n\
             [scheduler]\nmax_concurrent = 2\nshutdown_grace = \"{grace}s\"\n{}{}",
            job("long", "* * * * * *", long),
            job("short", "* * * * * *", &gated("short"))
        ),
    );
    let mut d = Daemon::start(w.command(&["run"]), w.world.path("run.log"));
    d.wait("a stored part of the long backup", || {
        w.multipart_uploads().1 > 0
    });
    d.wait("the short backup running", || {
        !started(&w.world, "short").is_empty()
    });

    d.signal(Signal::TERM);
    let sent = Instant::now();
    // The short backup's dump ends a second into the grace time.
    std::thread::sleep(Duration::from_secs(1));
    fs::write(w.world.path("go.all"), "").unwrap();
    let (status, took, log) = d.exit(sent);
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        took < Duration::from_secs(grace + 5),
        "stopped after {took:?}:\n{log}"
    );
    let said = |what: &str, unit: &str| {
        log.lines()
            .any(|l| l.contains(what) && l.ends_with(&format!("unit=backup:{unit}")))
    };
    assert!(said("interrupted at shutdown", "long"), "{log}");
    assert!(said("finished in", "short"), "{log}");
    assert_eq!(w.manifests("short").len(), 1, "{log}");
    assert!(w.manifests("long").is_empty(), "{log}");
    assert_eq!(
        w.multipart_uploads(),
        (0, 0),
        "no multipart upload is left:\n{log}"
    );
}

/// Point 5: SIGHUP with a broken configuration keeps the schedules running and logs
/// why (and the runs go on with the configuration in force, not the broken file);
/// with a valid one, a job it adds starts running.
#[test]
fn sighup_reloads_a_valid_configuration_and_keeps_the_old_one_otherwise() {
    let s = Scene::new();
    let a = job("a", "* * * * * *", "echo data");
    s.config("", &a);
    let mut d = s.start("run.log");
    d.wait("a backup of a", || s.manifests("a") >= 1);

    s.config("", &format!("{a}{}", job("b", "61 * * * *", "echo data")));
    d.signal(Signal::HUP);
    let line = d.wait_log("still running the previous configuration");
    assert!(
        line.contains("SIGHUP") && line.contains("job `b`") && line.contains("minute field `61`"),
        "{line}"
    );
    let before = s.manifests("a");
    d.wait("two more backups of a", || s.manifests("a") >= before + 2);
    assert_eq!(s.manifests("b"), 0);

    s.config("", &format!("{a}{}", job("b", "* * * * * *", "echo data")));
    d.signal(Signal::HUP);
    d.wait_log("configuration reloaded");
    d.wait("a backup of the new job b", || s.manifests("b") >= 1);
    let log = d.stop_ok();
    // The runs read the configuration in force, not the broken file.
    assert!(!log.contains("failed"), "{log}");
    s.verifies();
}

/// Point 6: the state file says the last fire time acted on was two intervals before
/// the latest one: at start the job runs once (not once per missed fire time), and a
/// restart does not run it again.
#[test]
fn a_run_missed_while_down_is_caught_up_once() {
    let s = Scene::new();
    // Hourly, half an hour away from now: no fire time comes during the test.
    let now = Utc::now();
    let minute = (now.minute() + 30) % 60;
    let mut latest = now
        .with_minute(minute)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap();
    if latest > now {
        latest -= TimeDelta::hours(1);
    }
    let last = latest - TimeDelta::hours(2);
    s.config(
        "catch_up = \"3h\"",
        &job("app", &format!("{minute} * * * *"), "echo data"),
    );
    fs::create_dir_all(s.w.path("state")).unwrap();
    let state = s.state_file();
    let record = |at: DateTime<Utc>| serde_json::json!({ "last_fire": { "backup:app": at } });
    fs::write(&state, record(last).to_string()).unwrap();

    let mut d = s.start("run.log");
    d.wait("the caught-up backup", || s.manifests("app") == 1);
    // Time for a second run, which must not come.
    std::thread::sleep(Duration::from_secs(2));
    let log = d.stop_ok();
    assert_eq!(s.manifests("app"), 1, "{log}");
    let missed = format!("missed its run at {}", latest.to_rfc3339());
    assert_eq!(log.matches(&missed).count(), 1, "{log}");
    assert_eq!(log.matches("missed its run").count(), 1, "{log}");
    let saved: serde_json::Value = serde_json::from_slice(&fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved, record(latest), "the caught-up fire time is recorded");

    // Started again: nothing is missed any more.
    let mut d = s.start("run2.log");
    std::thread::sleep(Duration::from_secs(2));
    let log = d.stop_ok();
    assert_eq!(s.manifests("app"), 1, "{log}");
    assert!(!log.contains("missed its run"), "{log}");
}

/// Point 7: `/metrics` is valid exposition format (prometheus_client's parser) with
/// every unit's series; `/healthz` and `/readyz` answer 200.
#[test]
fn metrics_and_health_endpoints_answer() {
    let s = Scene::new();
    let addr = s.config_listening(
        "",
        &format!(
            "{}[verify]\nschedule = \"*/2 * * * * *\"\n",
            job("app", "* * * * * *", "echo data")
        ),
    );
    let mut d = s.start("run.log");
    let verify_ok = [("task", "verify"), ("outcome", "success")];
    d.wait("a backup and a verify in /metrics", || {
        let m = scrape(addr);
        runs(&m, "app", "success") >= 1.0
            && sample(&m, "vault_schedule_runs_total", &verify_ok).unwrap_or(0.0) >= 1.0
    });

    let (status, head, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        head.to_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let m = parse_exposition(&body);
    let app = [("task", "backup"), ("vault_job", "app")];
    let verify = [("task", "verify")];
    let now = Utc::now().timestamp() as f64;
    let started = d.ready_at.timestamp() as f64 - 1.0;
    for labels in [&app[..], &verify[..]] {
        let last = sample(&m, "vault_schedule_last_success_timestamp_seconds", labels);
        assert!(
            last.is_some_and(|t| t >= started && t <= now + 1.0),
            "{labels:?}: {last:?}\n{body}"
        );
        let next = sample(&m, "vault_schedule_next_run_timestamp_seconds", labels);
        assert!(next.is_some_and(|t| t >= started), "{body}");
        assert!(
            sample(&m, "vault_schedule_last_duration_seconds", labels).is_some(),
            "{body}"
        );
        assert!(
            sample(&m, "vault_schedule_running", labels).is_some(),
            "{body}"
        );
        assert!(
            sample(&m, "vault_schedule_skipped_total", labels).is_some(),
            "{body}"
        );
    }
    assert!(
        sample(&m, "vault_schedule_last_backup_size_bytes", &app).is_some_and(|b| b > 0.0),
        "{body}"
    );
    let verify_labelled = m.iter().filter(|(n, l, _)| {
        n.starts_with("vault_schedule_") && l.get("task").is_some_and(|t| t == "verify")
    });
    assert!(verify_labelled.clone().count() > 0, "{body}");
    assert!(
        verify_labelled
            .clone()
            .all(|(_, l, _)| !l.contains_key("vault_job")),
        "{body}"
    );
    for name in [
        "process_start_time_seconds",
        "process_resident_memory_bytes",
    ] {
        assert!(sample(&m, name, &[]).is_some(), "{name}\n{body}");
    }

    for path in ["/healthz", "/readyz"] {
        let (status, head, body) = http_get(addr, path);
        assert_eq!(status, 200, "{path}: {head}\n{body}");
    }
    assert_eq!(http_get(addr, "/nothing").0, 404);
    d.stop_ok();
}

/// Point 9: a hand-started backup of a job the scheduler runs is refused while the
/// scheduler's run holds the job (exit 2, naming the run's pid); and the scheduler
/// skips its run while a hand-started backup holds the job (logged and counted).
#[test]
fn hand_started_backups_and_the_scheduler_share_the_job_lock() {
    let s = Scene::new();
    let addr = s.config_listening(
        "shutdown_grace = \"2s\"",
        &job("app", "* * * * * *", &gated("app")),
    );

    // A backup by hand holds the job: the scheduler skips its runs.
    let by_hand =
        s.w.command(&["backup", "app"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let hand_pid = by_hand.id();
    let until = Instant::now() + DEADLINE;
    while started(&s.w, "app").is_empty() {
        assert!(Instant::now() < until, "the backup by hand never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut d = s.start("run.log");
    let line = d.wait_log("skipped the run at");
    assert!(
        line.contains(&format!(
            "job `app` is being backed up by pid {hand_pid} (not this scheduler)"
        )),
        "{line}"
    );
    d.wait("the skip in /metrics", || {
        skipped(&scrape(addr), "app") >= 1.0
    });
    fs::write(s.w.path(&format!("go.{}", started(&s.w, "app")[0])), "").unwrap();
    let out = by_hand.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(s.manifests("app"), 1);

    // The scheduler's run holds the job: a backup by hand is refused, naming the run.
    d.wait("the scheduler's run", || started(&s.w, "app").len() == 2);
    let out = s.w.vault(&["backup", "app"]);
    let err = stderr(&out);
    assert_eq!(code(&out), EXIT_USAGE, "{err}");
    let (_, rest) = err
        .split_once("job `app` is already being backed up (pid ")
        .unwrap_or_else(|| panic!("{err}"));
    let pid: u32 = rest.split(')').next().unwrap().parse().unwrap();
    assert_eq!(
        parent(pid),
        Some(d.pid()),
        "pid {pid} is the scheduler's run"
    );
    let lock = fs::read_to_string(s.lock_file("app")).unwrap();
    assert_eq!(
        lock.trim(),
        pid.to_string(),
        "the lock file names its holder"
    );
    assert_eq!(
        started(&s.w, "app").len(),
        2,
        "the refused backup ran nothing"
    );

    fs::write(s.w.path("go.all"), "").unwrap();
    d.wait("the scheduler's backup", || s.manifests("app") >= 2);
    d.stop_ok();
    s.verifies();
}

/// `--dry-run` prints each schedule's next five fire times, in UTC and in its zone.
#[test]
fn a_dry_run_prints_the_next_five_fire_times_in_utc_and_the_zone() {
    let s = Scene::new();
    s.config(
        "timezone = \"Europe/Berlin\"",
        &job("app", "30 2 * * *", "echo data"),
    );
    let before = Utc::now();
    let out = s.w.ok(&["run", "--dry-run"]);
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("backup:app  \"30 2 * * *\"  (Europe/Berlin)"),
        "{out}"
    );
    let times: Vec<&str> = lines.collect();
    assert_eq!(times.len(), 5, "{out}");
    let mut previous = before;
    for line in times {
        // `  2027-03-28 01:00:00 UTC   2027-03-28 03:00:00 CEST (+02:00)`
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!((f.len(), f[2]), (7, "UTC"), "{line}");
        let utc = format!("{}T{}Z", f[0], f[1]);
        let utc = DateTime::parse_from_rfc3339(&utc).unwrap().to_utc();
        let offset = f[6].trim_matches(|c| c == '(' || c == ')');
        let local = DateTime::parse_from_rfc3339(&format!("{}T{}{offset}", f[3], f[4]))
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(local.to_utc(), utc, "{line}");
        assert!(["CET", "CEST"].contains(&f[5]), "{line}");
        // 02:30 in Berlin; 03:00 on the day 02:30 does not exist.
        assert!(["02:30:00", "03:00:00"].contains(&f[4]), "{line}");
        assert!(utc > previous, "{out}");
        previous = utc;
    }
    assert!(
        previous - before <= TimeDelta::days(5) + TimeDelta::hours(1),
        "{out}"
    );
}

/// `vault run` with nothing scheduled exits 2 and says so.
#[test]
fn nothing_scheduled_is_a_usage_error() {
    let s = Scene::new();
    s.w.config(&format!(
        "{}[[job]]\nname = \"app\"\nsource = {{ kind = \"command\", command = [\"echo\", \"x\"] }}\n",
        s.signing
    ));
    let out = s.w.vault(&["run"]);
    let err = stderr(&out);
    assert_eq!(code(&out), EXIT_USAGE, "{err}");
    assert!(
        err.contains("nothing to run") && err.contains("jobs without one: app"),
        "{err}"
    );
    // A verifier host's `--only verify` names what it lacks, not the jobs.
    let out = s.w.vault(&["run", "--only", "verify"]);
    let err = stderr(&out);
    assert_eq!(code(&out), EXIT_USAGE, "{err}");
    assert!(
        err.contains("--only verify") && err.contains("no [verify] schedule"),
        "{err}"
    );
    assert!(!err.contains("jobs without one"), "{err}");
}

/// `[drill] schedule` is a unit of its own, and each `--only` role runs only its part.
#[test]
fn a_drill_schedule_runs_as_its_own_unit_and_only_picks_the_role() {
    let s = Scene::new();
    s.config(
        "",
        &format!(
            "{}[verify]\nschedule = \"0 */6 * * *\"\n[drill]\nschedule = \"0 5 * * 0\"\n",
            job("app", "30 2 * * *", "echo data")
        ),
    );
    let units = |args: &[&str]| -> Vec<String> {
        s.w.ok(args)
            .lines()
            .filter(|l| !l.starts_with(' '))
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        units(&["run", "--dry-run"]),
        ["backup:app", "verify", "drill"]
    );
    assert_eq!(units(&["run", "--dry-run", "--only", "drill"]), ["drill"]);
    assert_eq!(
        units(&["run", "--dry-run", "--only", "backup"]),
        ["backup:app"]
    );
    // Without a [drill] schedule, --only drill says what is missing.
    s.config("", &job("app", "30 2 * * *", "echo data"));
    let out = s.w.vault(&["run", "--only", "drill"]);
    let err = stderr(&out);
    assert_eq!(code(&out), EXIT_USAGE, "{err}");
    assert!(err.contains("no [drill] schedule"), "{err}");
}

/// A `[drill] schedule` runs `vault drill`, and its `vault_drill_*` metrics are on
/// `/metrics` next to the scheduler's own.
#[test]
fn scheduled_drills_report_their_metrics_on_the_endpoint() {
    let s = Scene::new();
    let addr = s.config_listening(
        "",
        "[drill]\nschedule = \"*/2 * * * * *\"\n\
         [[job]]\nname = \"app\"\ninterval = \"1d\"\n\
         source = { kind = \"command\", command = [\"sh\", \"-c\", \"echo data\"], \
         restore_command = [\"sh\", \"-c\", \"cat > {to}\"] }\n",
    );
    s.w.ok(&["backup", "app"]);
    let mut d = s.start("run.log");
    let app = [("vault_job", "app")];
    d.wait("a passed drill in /metrics", || {
        let (status, _, body) = http_get(addr, "/metrics");
        status == 200 && body.contains("vault_drill_success{vault_job=\"app\"} 1")
    });
    let (_, _, body) = http_get(addr, "/metrics");
    let m = parse_exposition(&body);
    let drill_ok = [("task", "drill"), ("outcome", "success")];
    assert!(
        sample(&m, "vault_schedule_runs_total", &drill_ok).unwrap_or(0.0) >= 1.0,
        "{body}"
    );
    let last = sample(&m, "vault_drill_last_success_timestamp_seconds", &app);
    assert!(
        last.is_some_and(|t| t >= d.ready_at.timestamp() as f64 - 1.0),
        "{body}"
    );
    // The restored file: one file of five bytes ("data\n").
    let bytes = [("vault_job", "app"), ("table", "bytes")];
    assert_eq!(sample(&m, "vault_drill_rows", &bytes), Some(5.0), "{body}");
    d.stop_ok();
}
