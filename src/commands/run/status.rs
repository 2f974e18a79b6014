//! What the scheduler knows about each unit, for `/metrics` and the logs: the last
//! success and failure, the last run's duration and size, runs by outcome, skips, the
//! next fire time, whether it is running. Shared between the loop, the runs and the
//! HTTP endpoint behind one mutex (updated a few times per run, read per scrape).
//!
//! The metric names follow `vault verify --prometheus`: `vault_` prefix, per-job
//! series labelled `vault_job`; `task` says `backup` or `verify`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::metrics::Metrics;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Success,
    Failure,
    /// Stopped at shutdown (SIGTERM to the scheduler, the grace time over).
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Interrupted => "interrupted",
        }
    }

    const ALL: [Outcome; 3] = [Outcome::Success, Outcome::Failure, Outcome::Interrupted];
}

/// One unit's record.
#[derive(Debug, Clone, Default)]
pub struct UnitStatus {
    /// `backup` or `verify`.
    pub task: &'static str,
    /// The job of a backup.
    pub job: Option<String>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_failure: Option<DateTime<Utc>>,
    pub last_duration: Option<f64>,
    /// Stored bytes of the last backup.
    pub last_size: Option<u64>,
    pub runs: BTreeMap<Outcome, u64>,
    pub skipped_overlap: u64,
    pub next_run: Option<DateTime<Utc>>,
    pub running: bool,
}

/// Every unit's record, by unit key, and the loop's heartbeat.
pub struct Status {
    units: Mutex<BTreeMap<String, UnitStatus>>,
    /// The metrics of the last `vault drill` run, rendered (`vault_drill_*`).
    drill: Mutex<String>,
    heartbeat: Mutex<Instant>,
    started: DateTime<Utc>,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            units: Mutex::default(),
            drill: Mutex::default(),
            heartbeat: Mutex::new(Instant::now()),
            started: Utc::now(),
        }
    }
}

impl Status {
    /// Changes the record of `key` (made if new).
    pub fn update(&self, key: &str, change: impl FnOnce(&mut UnitStatus)) {
        let mut units = self.units.lock().unwrap_or_else(|e| e.into_inner());
        change(units.entry(key.to_string()).or_default());
    }

    /// Forgets the units not in `keep` (after a reload removed them), unless running.
    pub fn retain(&self, keep: &[String]) {
        let mut units = self.units.lock().unwrap_or_else(|e| e.into_inner());
        units.retain(|k, u| u.running || keep.contains(k));
    }

    /// Keeps the metrics of the last drill run, shown with the scheduler's own.
    pub fn set_drill(&self, rendered: String) {
        *self.drill.lock().unwrap_or_else(|e| e.into_inner()) = rendered;
    }

    /// The loop is alive.
    pub fn beat(&self) {
        *self.heartbeat.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Seconds since the loop last said it was alive.
    pub fn since_heartbeat(&self) -> f64 {
        self.heartbeat
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
            .as_secs_f64()
    }

    /// The Prometheus exposition of every unit, plus the process.
    pub fn render(&self) -> String {
        let units = self.units.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut m = Metrics::new();
        type Pick = fn(&UnitStatus) -> Option<f64>;
        let gauges: [(&str, &str, Pick); 6] = [
            (
                "vault_schedule_last_success_timestamp_seconds",
                "When the unit's last successful run finished (Unix time).",
                |u| u.last_success.map(unix),
            ),
            (
                "vault_schedule_last_failure_timestamp_seconds",
                "When the unit's last failed run finished (Unix time).",
                |u| u.last_failure.map(unix),
            ),
            (
                "vault_schedule_last_duration_seconds",
                "How long the unit's last run took, retries included.",
                |u| u.last_duration,
            ),
            (
                "vault_schedule_last_backup_size_bytes",
                "Stored (encrypted) size of the job's last backup.",
                |u| u.last_size.map(|s| s as f64),
            ),
            (
                "vault_schedule_next_run_timestamp_seconds",
                "When the unit runs next (Unix time, before jitter).",
                |u| u.next_run.map(unix),
            ),
            (
                "vault_schedule_running",
                "1 while the unit runs (or waits for a slot).",
                |u| Some(if u.running { 1.0 } else { 0.0 }),
            ),
        ];
        for (name, help, pick) in gauges {
            m.family(name, "gauge", help);
            for u in units.values() {
                if let Some(v) = pick(u) {
                    m.sample(name, &labels(u, &[]), v);
                }
            }
        }
        m.family(
            "vault_schedule_runs_total",
            "counter",
            "Runs of the unit since the scheduler started, by outcome.",
        );
        for u in units.values() {
            for outcome in Outcome::ALL {
                let n = u.runs.get(&outcome).copied().unwrap_or(0);
                let extra = [("outcome", outcome.as_str())];
                m.sample("vault_schedule_runs_total", &labels(u, &extra), n as f64);
            }
        }
        m.family(
            "vault_schedule_skipped_total",
            "counter",
            "Fire times not run because the unit was still running.",
        );
        for u in units.values() {
            let extra = [("reason", "overlap")];
            let value = u.skipped_overlap as f64;
            m.sample("vault_schedule_skipped_total", &labels(u, &extra), value);
        }
        process_metrics(&mut m, self.started);
        // Families of their own (vault_drill_*): appending keeps the exposition valid.
        m.render() + &*self.drill.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn unix(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// `task`, and `vault_job` for a backup, then `extra`.
fn labels<'a>(u: &'a UnitStatus, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut out = vec![("task", u.task)];
    if let Some(job) = &u.job {
        out.push(("vault_job", job.as_str()));
    }
    out.extend_from_slice(extra);
    out
}

/// The standard process metrics (as client libraries name them), from /proc.
fn process_metrics(m: &mut Metrics, started: DateTime<Utc>) {
    m.family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch in seconds.",
    );
    m.sample("process_start_time_seconds", &[], unix(started));
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = 100.0; // sysconf(_SC_CLK_TCK) on Linux
    let page = 4096.0;
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of stat (1-based), 12 and 13 after ')'.
    if let (Some(user), Some(system)) = (field(11), field(12)) {
        m.family(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        );
        m.sample("process_cpu_seconds_total", &[], (user + system) / ticks);
    }
    // rss is field 24, 22 after ')'.
    if let Some(rss) = field(21) {
        m.family(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        m.sample("process_resident_memory_bytes", &[], rss * page);
    }
}
