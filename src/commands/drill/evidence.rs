//! What a drill leaves behind: one JSON report per drill in
//! `<state_dir>/drills/<job>/`, the artefact an auditor asks for and what the next
//! drill of the job compares its facts with.
//!
//! Files are named `<finished, UTC>-<backup id>.json` so that names sort by time; the
//! directory is 0700 and each file 0600 (row counts and table names say something
//! about the data), written to a temporary name and renamed. The newest `history`
//! are kept.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::facts::Facts;

/// One drill, as reported and kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evidence {
    pub vault_version: String,
    pub host: String,
    pub job: String,
    pub backup_id: String,
    /// When the drilled backup was started.
    pub backup_created: DateTime<Utc>,
    pub manifest_key: String,
    /// blake3 of the manifest's stored bytes.
    pub manifest_blake3: Option<String>,
    pub data_key: String,
    pub data_version: Option<String>,
    pub plaintext_bytes: u64,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    /// Start to restored-and-checked: what the RTO is compared with.
    pub duration_seconds: f64,
    pub restore_seconds: Option<f64>,
    /// Plaintext bytes restored per second.
    pub restore_bytes_per_second: Option<f64>,
    /// The recovery time objective in force, when one is set.
    pub rto_seconds: Option<f64>,
    /// Where it was restored: a local server, a database on a scratch server, a dir.
    pub scratch: String,
    pub facts: Option<Facts>,
    /// The backup whose drill the facts were compared with.
    pub compared_with: Option<String>,
    pub checks: Vec<CheckResult>,
    pub outcome: Outcome,
}

/// One named result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckResult {
    pub name: String,
    pub kind: Kind,
    pub ok: bool,
    pub severity: Severity,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Restore,
    Facts,
    Shrink,
    Check,
    Identity,
    Rto,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warn,
    Fail,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warn => "warn",
            Severity::Fail => "fail",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Restored, and every check passed.
    Passed,
    /// Restored, and a check failed.
    Failed,
    /// The backup failed an integrity check.
    Integrity,
    /// The drill could not be carried out (a scratch server, a tool, the store).
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Integrity => "integrity",
            Outcome::Error => "error",
        }
    }
}

impl CheckResult {
    pub fn new(kind: Kind, name: impl Into<String>, severity: Severity, detail: String) -> Self {
        CheckResult {
            name: name.into(),
            kind,
            ok: severity != Severity::Fail,
            severity,
            detail,
        }
    }
}

/// `<state_dir>/drills/<job>`.
pub fn dir(state_dir: &Path, job: &str) -> PathBuf {
    state_dir.join("drills").join(job)
}

/// Writes `evidence` and keeps the newest `keep` of the job; returns its path.
pub fn write(state_dir: &Path, evidence: &Evidence, keep: usize) -> anyhow::Result<PathBuf> {
    let dir = dir(state_dir, &evidence.job);
    let name = format!(
        "{}-{}.json",
        evidence.finished.format("%Y%m%dT%H%M%SZ"),
        evidence.backup_id
    );
    let path = dir.join(&name);
    let mut text = serde_json::to_vec_pretty(evidence)?;
    text.push(b'\n');
    crate::private_file::write(&path, &text)
        .with_context(|| format!("cannot write the drill evidence {}", path.display()))?;
    let files = files(&dir)?;
    for old in files.iter().skip(keep) {
        let _ = fs::remove_file(old);
    }
    Ok(path)
}

/// The job's evidence files, newest first.
fn files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    files.sort();
    files.reverse();
    Ok(files)
}

/// The newest `last` drills of `job`, newest first; a file that cannot be read is
/// named in a warning and left out.
pub fn history(
    state_dir: &Path,
    job: &str,
    last: usize,
) -> anyhow::Result<Vec<(PathBuf, Evidence)>> {
    let mut out = Vec::new();
    for path in files(&dir(state_dir, job))? {
        if out.len() == last {
            break;
        }
        match read(&path) {
            Ok(e) => out.push((path, e)),
            Err(e) => eprintln!("warning: {e:#}"),
        }
    }
    Ok(out)
}

fn read(path: &Path) -> anyhow::Result<Evidence> {
    let text = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a drill report", path.display()))
}

/// What this drill's facts are compared with: the newest earlier drill of the job
/// that gathered facts from a backup no newer than `backup_created` (drilling an
/// older backup on purpose is not compared with a newer one's larger tables).
pub fn previous(state_dir: &Path, job: &str, backup_created: DateTime<Utc>) -> Option<Evidence> {
    let files = files(&dir(state_dir, job)).ok()?;
    files.iter().filter_map(|p| read(p).ok()).find(|e| {
        e.facts.is_some()
            && e.backup_created <= backup_created
            && matches!(e.outcome, Outcome::Passed | Outcome::Failed)
    })
}

/// Compares `now` with the `before` facts of an earlier drill: a count that is gone,
/// or fell by more than `max_shrink`, is a failure naming it.
pub fn shrink(before: &Facts, now: &Facts, max_shrink: f64, against: &str) -> Vec<CheckResult> {
    let mut out = Vec::new();
    for (name, &was) in &before.counts {
        let is = now.counts.get(name).copied();
        let detail = match is {
            None => Some(format!(
                "{name} is gone: it held {was} at the drill of backup {against}"
            )),
            Some(is) if max_shrink < 1.0 && (is as f64) < (was as f64) * (1.0 - max_shrink) => {
                Some(format!(
                    "{name} shrank from {was} to {is} ({:.0}% less) since the drill of backup \
                     {against}; max_shrink is {:.0}%",
                    100.0 * (was - is) as f64 / was as f64,
                    100.0 * max_shrink
                ))
            }
            Some(_) => None,
        };
        if let Some(detail) = detail {
            out.push(CheckResult::new(
                Kind::Shrink,
                name.clone(),
                Severity::Fail,
                detail,
            ));
        }
    }
    if out.is_empty() {
        out.push(CheckResult::new(
            Kind::Shrink,
            "shrink",
            Severity::Ok,
            format!(
                "{} counts compared with the drill of backup {against}: none gone, none \
                 shrank by more than {:.0}%",
                before.counts.len(),
                100.0 * max_shrink
            ),
        ));
    }
    out
}

/// This machine's name, for the report.
pub fn host() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(counts: &[(&str, u64)]) -> Facts {
        Facts {
            counts: counts.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Facts::default()
        }
    }

    #[test]
    fn a_table_gone_or_shrunk_past_the_limit_is_a_failure_naming_it() {
        let before = facts(&[
            ("public.orders", 1000),
            ("public.users", 10),
            ("public.empty", 0),
        ]);
        let now = facts(&[("public.orders", 499), ("public.empty", 0)]);
        let found = shrink(&before, &now, 0.5, "B1");
        let names: Vec<&str> = found.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["public.orders", "public.users"]);
        assert!(found.iter().all(|c| c.severity == Severity::Fail && !c.ok));
        assert!(
            found[0].detail.contains("from 1000 to 499"),
            "{}",
            found[0].detail
        );
        assert!(found[1].detail.contains("gone"), "{}", found[1].detail);
        // Exactly half is within a limit of 50%; growth is fine; 1 turns it off.
        let ok = shrink(
            &before,
            &facts(&[
                ("public.orders", 500),
                ("public.users", 20),
                ("public.empty", 0),
            ]),
            0.5,
            "B1",
        );
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].severity, Severity::Ok);
        let off = shrink(
            &before,
            &facts(&[
                ("public.orders", 0),
                ("public.users", 0),
                ("public.empty", 0),
            ]),
            1.0,
            "B1",
        );
        assert_eq!(off[0].severity, Severity::Ok);
    }

    fn evidence(
        job: &str,
        backup: &str,
        created: &str,
        finished: &str,
        outcome: Outcome,
    ) -> Evidence {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        Evidence {
            vault_version: "test".into(),
            host: host(),
            job: job.into(),
            backup_id: backup.into(),
            backup_created: t(created),
            manifest_key: "m".into(),
            manifest_blake3: None,
            data_key: "d".into(),
            data_version: None,
            plaintext_bytes: 1,
            started: t(finished),
            finished: t(finished),
            duration_seconds: 1.0,
            restore_seconds: Some(1.0),
            restore_bytes_per_second: Some(1.0),
            rto_seconds: None,
            scratch: "dir".into(),
            facts: Some(facts(&[("t", 1)])),
            compared_with: None,
            checks: Vec::new(),
            outcome,
        }
    }

    #[test]
    fn evidence_is_private_kept_to_its_limit_and_compared_with_no_newer_backup() {
        use std::os::unix::fs::PermissionsExt;
        let state = tempfile::tempdir().unwrap();
        let s = state.path();
        let e1 = evidence(
            "app",
            "B1",
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z",
            Outcome::Passed,
        );
        let e2 = evidence(
            "app",
            "B3",
            "2026-01-03T00:00:00Z",
            "2026-01-03T01:00:00Z",
            Outcome::Integrity,
        );
        let e3 = evidence(
            "app",
            "B2",
            "2026-01-02T00:00:00Z",
            "2026-01-04T00:00:00Z",
            Outcome::Failed,
        );
        for e in [&e1, &e2, &e3] {
            let p = write(s, e, 2).unwrap();
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert_eq!(
            fs::metadata(dir(s, "app")).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let kept: Vec<String> = history(s, "app", 10)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e.backup_id)
            .collect();
        assert_eq!(kept, ["B2", "B3"], "newest first, two kept");
        // B3's drill failed its integrity check: not a baseline; B2's is.
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            previous(s, "app", t("2026-01-05T00:00:00Z"))
                .unwrap()
                .backup_id,
            "B2"
        );
        // An older backup is not compared with a newer one's drill.
        assert!(previous(s, "app", t("2026-01-01T12:00:00Z")).is_none());
        assert!(history(s, "other", 10).unwrap().is_empty());
    }
}
