//! How a verify run is told: a table for people, JSON for scripts, Prometheus metrics
//! for monitoring.

use serde_json::json;

use super::judge::{Severity, Status, human_duration};
use super::{JobReport, Report};
use crate::metrics::Metrics;
use crate::report::{Table, human_bytes};

/// One line for the end of the output, the ping body and the error.
pub fn summary_line(report: &Report) -> String {
    let failed = report.checked.iter().filter(|c| !c.ok).count();
    let hashed = report.checked.iter().filter(|c| c.hashed).count();
    let mut parts = vec![format!(
        "{} backups checked ({hashed} hashed{}), {failed} failed",
        report.checked.len(),
        if report.deep { " and decrypted" } else { "" }
    )];
    for (status, what) in [
        (Status::Stale, "stale"),
        (Status::Missing, "without backups"),
        (Status::Integrity, "with integrity failures"),
        (Status::Unchecked, "not fully checked"),
    ] {
        let jobs: Vec<&str> = report
            .jobs
            .iter()
            .filter(|j| j.status == status)
            .map(|j| j.job.as_str())
            .collect();
        if !jobs.is_empty() {
            parts.push(format!("jobs {what}: {}", jobs.join(", ")));
        }
    }
    let bucket = report
        .bucket
        .iter()
        .filter(|c| {
            c.finding
                .as_ref()
                .is_some_and(|f| f.severity != Severity::Warning)
        })
        .count();
    if bucket > 0 {
        parts.push(format!("{bucket} bucket check(s) failed"));
    }
    parts.join("; ")
}

pub fn human(report: &Report) -> String {
    let mut out = String::new();
    if !report.bucket.is_empty() {
        out.push_str(&format!("bucket: {}\n", report.store));
        let mut table = Table::new(&["CHECK", "OBSERVED", "RESULT"]);
        for c in &report.bucket {
            table.row(vec![
                c.check.to_string(),
                c.observed.clone(),
                match &c.finding {
                    None => "ok".into(),
                    Some(f) => format!("{}: {}", label(f.severity), f.message),
                },
            ]);
        }
        out.push_str(&table.render());
        out.push('\n');
    }

    // Backups worth a line: the downloaded ones and every one with a finding.
    let mut table = Table::new(&["JOB", "BACKUP ID", "STORED", "RESULT"]);
    let mut rows = 0;
    for c in &report.checked {
        if !c.hashed && c.findings.is_empty() {
            continue;
        }
        rows += 1;
        let result = match &c.error {
            Some(e) => format!("FAILED: {e}"),
            None if c.hashed && report.deep => "ok (decrypted, plaintext hash matches)".into(),
            None if c.hashed => "ok (ciphertext hash matches)".into(),
            None => "ok".into(),
        };
        let warnings: Vec<&str> = c
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .map(|f| f.message.as_str())
            .collect();
        table.row(vec![
            c.job.clone(),
            c.backup_id.clone().unwrap_or_else(|| c.key.clone()),
            c.size.map(human_bytes).unwrap_or_default(),
            if warnings.is_empty() {
                result
            } else {
                format!("{result}; warning: {}", warnings.join("; "))
            },
        ]);
    }
    if rows > 0 {
        out.push_str(&table.render());
        out.push('\n');
    }

    let mut table = Table::new(&[
        "JOB",
        "STATUS",
        "BACKUPS",
        "NEWEST GOOD",
        "AGE",
        "STORED",
        "EXPECTED",
        "HELD",
        "EXPIRING 30D",
    ]);
    for j in &report.jobs {
        table.row(vec![
            j.job.clone(),
            j.status.to_string(),
            format!("{} ({} good)", j.backups, j.good),
            j.newest.clone().unwrap_or_else(|| "-".into()),
            j.age_seconds
                .map(|s| human_duration(chrono::TimeDelta::seconds(s)))
                .unwrap_or_else(|| "-".into()),
            j.newest_size.map(human_bytes).unwrap_or_else(|| "-".into()),
            format!(
                "every {} + {}",
                human_duration(chrono::TimeDelta::seconds(j.interval_seconds)),
                human_duration(chrono::TimeDelta::seconds(j.grace_seconds))
            ),
            if j.pruned > 0 {
                format!("{} ({} pruned)", human_bytes(j.storage.bytes), j.pruned)
            } else {
                human_bytes(j.storage.bytes)
            },
            format!(
                "{} ({})",
                j.storage.expiring_backups,
                human_bytes(j.storage.expiring_bytes)
            ),
        ]);
    }
    out.push_str(&table.render());
    for j in &report.jobs {
        for f in &j.findings {
            out.push_str(&format!(
                "{}: {}: {}\n",
                j.job,
                label(f.severity),
                f.message
            ));
        }
    }
    out.push_str(&summary_line(report));
    out.push('\n');
    out
}

fn label(s: Severity) -> &'static str {
    match s {
        Severity::Warning => "warning",
        Severity::Stale => "STALE",
        Severity::Integrity => "FAILED",
        Severity::Unchecked => "NOT CHECKED",
    }
}

pub fn json(report: &Report) -> serde_json::Value {
    let code = report.code().map_or(0, |c| c as i32);
    json!({
        "ok": code == 0,
        "exit_code": code,
        "deep": report.deep,
        "started_at": report.started,
        "finished_at": report.finished,
        "store": report.store,
        "bucket": report.bucket,
        "jobs": report.jobs,
        "checked": report.checked,
        "jobs_without_backups": report
            .jobs
            .iter()
            .filter(|j| j.backups == 0)
            .map(|j| j.job.as_str())
            .collect::<Vec<_>>(),
        "summary": summary_line(report),
    })
}

/// A per-job metric: name, help, and its value for a job (none: no sample). Per-job
/// samples are labelled `vault_job`: Prometheus and the Pushgateway own the `job`
/// label.
type JobFamily = (&'static str, &'static str, fn(&JobReport) -> Option<f64>);

pub fn prometheus(report: &Report) -> Metrics {
    let mut m = Metrics::new();
    let code = report.code().map_or(0, |c| c as i32);
    m.family(
        "vault_verify_last_run_timestamp_seconds",
        "gauge",
        "When this verify run finished (Unix time).",
    );
    m.sample(
        "vault_verify_last_run_timestamp_seconds",
        &[],
        report.finished.timestamp() as f64,
    );
    m.family(
        "vault_verify_duration_seconds",
        "gauge",
        "How long this verify run took.",
    );
    m.sample(
        "vault_verify_duration_seconds",
        &[],
        (report.finished - report.started).num_milliseconds() as f64 / 1000.0,
    );
    m.family(
        "vault_verify_ok",
        "gauge",
        "1 when everything verified (exit code 0), else 0.",
    );
    m.sample("vault_verify_ok", &[], f64::from(u8::from(code == 0)));
    m.family(
        "vault_verify_exit_code",
        "gauge",
        "The exit code of this verify run: 0 ok, 3 integrity or tampering, 4 stale or missing, 5 access denied, 2 config, 1 failure.",
    );
    m.sample("vault_verify_exit_code", &[], f64::from(code));
    m.family(
        "vault_bucket_check_ok",
        "gauge",
        "1 when a bucket check passed, 0 when it failed or could not be read.",
    );
    for c in &report.bucket {
        let ok = c
            .finding
            .as_ref()
            .is_none_or(|f| f.severity == Severity::Warning);
        m.sample(
            "vault_bucket_check_ok",
            &[("check", c.check)],
            f64::from(u8::from(ok)),
        );
    }

    let families: [JobFamily; 15] = [
        (
            "vault_job_last_success_timestamp_seconds",
            "When the job's newest good backup finished (Unix time); 0 when it has none.",
            |j| Some(j.last_success.map_or(0.0, |t| t.timestamp() as f64)),
        ),
        (
            "vault_job_last_backup_size_bytes",
            "Stored (encrypted) size of the job's newest good backup.",
            |j| j.newest_size.map(|s| s as f64),
        ),
        (
            "vault_job_last_backup_plaintext_bytes",
            "Dump size of the job's newest good backup.",
            |j| j.newest_plaintext_size.map(|s| s as f64),
        ),
        (
            "vault_job_verify_ok",
            "1 when the job verified without a failure or staleness (warnings allowed), else 0.",
            |j| Some(f64::from(u8::from(j.status.is_ok()))),
        ),
        (
            "vault_job_backups",
            "Backups (manifests) found for the job.",
            |j| Some(j.backups as f64),
        ),
        (
            "vault_job_good_backups",
            "Backups of the job that passed every check.",
            |j| Some(j.good as f64),
        ),
        (
            "vault_job_stale",
            "1 when the job's newest good backup is older than interval + grace (or there is none).",
            |j| Some(f64::from(u8::from(j.status.is_stale()))),
        ),
        (
            "vault_job_size_anomaly",
            "1 when the newest backup is far smaller than the recent median.",
            |j| Some(f64::from(u8::from(j.size_anomaly))),
        ),
        (
            "vault_job_gaps",
            "Gaps longer than interval + grace in the recent series.",
            |j| Some(j.gaps as f64),
        ),
        (
            "vault_job_expected_interval_seconds",
            "How often the job is expected to back up.",
            |j| Some(j.interval_seconds as f64),
        ),
        (
            "vault_job_stored_bytes",
            "Every object version the job holds in the bucket (pruned ones included until the lifecycle removes them).",
            |j| Some(j.storage.bytes as f64),
        ),
        (
            "vault_job_pruned_backups",
            "Backups of the job pruned after their lock ended, awaiting removal by the bucket's lifecycle.",
            |j| Some(j.pruned as f64),
        ),
        (
            "vault_job_expiring_backups",
            "Backups of the job vault prune may prune in the next 30 days (lock and grace over, beyond keep_last).",
            |j| Some(j.storage.expiring_backups as f64),
        ),
        (
            "vault_job_expiring_bytes",
            "Stored bytes of the backups vault prune may prune in the next 30 days.",
            |j| Some(j.storage.expiring_bytes as f64),
        ),
        (
            "vault_job_chain_segments",
            "Signed chain segments among the job's manifests (0 when signing is off).",
            |j| Some(j.chain_segments as f64),
        ),
    ];
    for (name, help, value) in families {
        m.family(name, "gauge", help);
        for j in &report.jobs {
            if let Some(v) = value(j) {
                m.sample(name, &[("vault_job", &j.job)], v);
            }
        }
    }
    m.family(
        "vault_job_verify_status",
        "gauge",
        "The job's verify status: 1 for the current one (ok, warning, stale, missing, integrity, unchecked).",
    );
    // Every status a job can have, in the enum-as-labels style.
    for j in &report.jobs {
        for s in Status::ALL {
            m.sample(
                "vault_job_verify_status",
                &[("vault_job", &j.job), ("status", s.as_str())],
                f64::from(u8::from(j.status == s)),
            );
        }
    }
    m.family(
        "vault_job_failed_backups",
        "gauge",
        "Backups of the job with an integrity failure or that could not be checked.",
    );
    for j in &report.jobs {
        let failed = report
            .checked
            .iter()
            .filter(|c| c.job == j.job && !c.ok)
            .count();
        m.sample(
            "vault_job_failed_backups",
            &[("vault_job", &j.job)],
            failed as f64,
        );
    }
    m
}
