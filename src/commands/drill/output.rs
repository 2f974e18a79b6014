//! How drills are told: a table and the findings for people, JSON for scripts,
//! Prometheus metrics for monitoring, and `--history`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::evidence::{Evidence, Outcome, Severity};
use super::job::Drilled;
use crate::metrics::Metrics;
use crate::report::{Table, human_bytes};

/// Rows per job in `vault_drill_rows`: the largest counts, so the series stay few.
const ROWS_PER_JOB: usize = 20;

/// One line for the end of the output, the ping body and the error.
pub fn summary_line(drills: &[Drilled]) -> String {
    let passed = drills
        .iter()
        .filter(|d| d.code == crate::error::ExitCode::Success)
        .count();
    let mut line = format!("{} drill(s), {passed} passed", drills.len());
    let failed: Vec<String> = drills
        .iter()
        .filter(|d| d.code != crate::error::ExitCode::Success)
        .map(|d| {
            let why = match &d.evidence {
                Some(e) => e.outcome.as_str().to_string(),
                None => "not drilled".to_string(),
            };
            format!("{} ({why})", d.job)
        })
        .collect();
    if !failed.is_empty() {
        line += &format!("; failed: {}", failed.join(", "));
    }
    line
}

fn result(d: &Drilled) -> String {
    match &d.evidence {
        Some(e) => e.outcome.as_str().to_uppercase(),
        None if d.code == crate::error::ExitCode::Missing => "NO BACKUP".into(),
        None => "NOT DRILLED".into(),
    }
}

fn counted(e: &Evidence) -> String {
    match &e.facts {
        Some(f) => {
            let total: u64 = f.counts.values().sum();
            format!("{total} in {}", f.counts.len())
        }
        None => "-".into(),
    }
}

pub fn human(drills: &[Drilled]) -> String {
    let mut table = Table::new(&[
        "JOB", "BACKUP", "RESULT", "RESTORE", "TOTAL", "RTO", "COUNTED",
    ]);
    for d in drills {
        match &d.evidence {
            Some(e) => table.row(vec![
                d.job.clone(),
                e.backup_id.clone(),
                result(d),
                e.restore_seconds.map_or("-".into(), |s| format!("{s:.1}s")),
                format!("{:.1}s", e.duration_seconds),
                e.rto_seconds.map_or("-".into(), |s| format!("{s:.0}s")),
                counted(e),
            ]),
            None => table.row(vec![
                d.job.clone(),
                "-".into(),
                result(d),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]),
        }
    }
    let mut out = table.render();
    for d in drills {
        if let Some(e) = &d.evidence {
            for c in e.checks.iter().filter(|c| c.severity != Severity::Ok) {
                out += &format!(
                    "{}: {} {} `{}`: {}\n",
                    d.job,
                    c.severity.as_str().to_uppercase(),
                    serde_json::to_value(c.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    c.name,
                    c.detail
                );
            }
        }
        if let Some(err) = &d.error
            && d.evidence
                .as_ref()
                .is_none_or(|e| e.outcome != Outcome::Failed)
        {
            out += &format!("{}: {err}\n", d.job);
        }
        if let Some(path) = &d.saved {
            out += &format!("{}: evidence {}\n", d.job, path.display());
        }
    }
    out
}

pub fn json(drills: &[Drilled]) -> serde_json::Value {
    json!({
        "drills": drills.iter().map(|d| json!({
            "job": d.job,
            "passed": d.code == crate::error::ExitCode::Success,
            "exit_code": d.code as i32,
            "error": d.error,
            "evidence_file": d.saved,
            "evidence": d.evidence,
        })).collect::<Vec<_>>(),
    })
}

/// The metrics of these drills; `last_success` is each job's newest passed drill
/// (from its evidence, this run's included).
pub fn metrics(drills: &[Drilled], last_success: &BTreeMap<String, DateTime<Utc>>) -> Metrics {
    let mut m = Metrics::new();
    m.family(
        "vault_drill_last_success_timestamp_seconds",
        "gauge",
        "When the newest drill of the job that passed finished (Unix time).",
    );
    m.family(
        "vault_drill_last_run_timestamp_seconds",
        "gauge",
        "When the newest drill of the job finished (Unix time).",
    );
    m.family(
        "vault_drill_success",
        "gauge",
        "1 when the job's newest drill passed, else 0.",
    );
    m.family(
        "vault_drill_duration_seconds",
        "gauge",
        "Start to restored-and-checked, the newest drill.",
    );
    m.family(
        "vault_drill_restore_bytes_per_second",
        "gauge",
        "Plaintext bytes restored per second, the newest drill.",
    );
    m.family(
        "vault_drill_rto_seconds",
        "gauge",
        "The recovery time objective in force.",
    );
    m.family(
        "vault_drill_rows",
        "gauge",
        "Rows (keys, files) counted in the restored copy, the job's largest tables.",
    );
    m.family(
        "vault_drill_findings",
        "gauge",
        "Check results of the newest drill, by severity.",
    );
    let mut seen = std::collections::BTreeSet::new();
    for d in drills {
        // With --sample a job is drilled more than once: its newest drill speaks.
        if !seen.insert(d.job.as_str()) {
            continue;
        }
        let job = [("vault_job", d.job.as_str())];
        if let Some(t) = last_success.get(&d.job) {
            m.sample(
                "vault_drill_last_success_timestamp_seconds",
                &job,
                t.timestamp() as f64,
            );
        }
        m.sample(
            "vault_drill_success",
            &job,
            f64::from(u8::from(d.code == crate::error::ExitCode::Success)),
        );
        let Some(e) = &d.evidence else { continue };
        m.sample(
            "vault_drill_last_run_timestamp_seconds",
            &job,
            e.finished.timestamp() as f64,
        );
        m.sample("vault_drill_duration_seconds", &job, e.duration_seconds);
        if let Some(r) = e.restore_bytes_per_second {
            m.sample("vault_drill_restore_bytes_per_second", &job, r);
        }
        if let Some(rto) = e.rto_seconds {
            m.sample("vault_drill_rto_seconds", &job, rto);
        }
        if let Some(f) = &e.facts {
            let mut largest: Vec<(&String, &u64)> = f.counts.iter().collect();
            largest.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (table, rows) in largest.into_iter().take(ROWS_PER_JOB) {
                m.sample(
                    "vault_drill_rows",
                    &[("vault_job", d.job.as_str()), ("table", table.as_str())],
                    *rows as f64,
                );
            }
        }
        for severity in [Severity::Ok, Severity::Warn, Severity::Fail] {
            let n = e.checks.iter().filter(|c| c.severity == severity).count();
            m.sample(
                "vault_drill_findings",
                &[
                    ("vault_job", d.job.as_str()),
                    ("severity", severity.as_str()),
                ],
                n as f64,
            );
        }
    }
    m
}

/// `vault drill --history JOB`.
pub fn history(job: &str, drills: &[(PathBuf, Evidence)], json: bool) -> String {
    if json {
        let list: Vec<_> = drills
            .iter()
            .map(|(path, e)| json!({"file": path, "evidence": e}))
            .collect();
        return serde_json::to_string_pretty(&list).unwrap_or_default() + "\n";
    }
    if drills.is_empty() {
        return format!("no drills of job `{job}` are on record on this host\n");
    }
    let mut table = Table::new(&[
        "FINISHED",
        "BACKUP",
        "RESULT",
        "TOTAL",
        "SIZE",
        "COUNTED",
        "FAILED CHECKS",
    ]);
    for (_, e) in drills {
        let failed: Vec<&str> = e
            .checks
            .iter()
            .filter(|c| c.severity == Severity::Fail)
            .map(|c| c.name.as_str())
            .collect();
        table.row(vec![
            e.finished.format("%Y-%m-%d %H:%M:%SZ").to_string(),
            e.backup_id.clone(),
            e.outcome.as_str().to_uppercase(),
            format!("{:.1}s", e.duration_seconds),
            human_bytes(e.plaintext_bytes),
            counted(e),
            if failed.is_empty() {
                "-".into()
            } else {
                failed.join(", ")
            },
        ]);
    }
    table.render()
}
