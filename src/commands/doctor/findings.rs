//! What doctor found, and how the findings add up: the matrix rows, the problems
//! (each with the exit code it earns), the warnings, and the types the report shows.
//!
//! Pure bookkeeping: nothing here talks to S3, so it imports neither the SDK nor
//! `store::s3`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::enforcement::Enforcement;
use super::matrix::{Action, Expect, Row};
use super::probe::Observed;
use super::{Doctor, expected};
use crate::error::{ExitCode, worst};
use crate::store::Role;

/// Why a probe that needs the canary was not sent.
pub(super) const NO_CANARY: &str = "no canary";
/// Why DeleteBucket was not sent: only the locked canary keeps it harmless.
pub(super) const NO_CANARY_TO_KEEP_THE_BUCKET: &str =
    "no canary, so the bucket may be empty and the probe could delete it";
/// Why PutBucketVersioning was not sent: only Object Lock keeps it harmless.
pub(super) const LOCK_NOT_CONFIRMED: &str =
    "the bucket's Object Lock is not confirmed, and without it the probe would suspend versioning";

/// A probe not sent for want of a canary or of a confirmed Object Lock: on a bucket
/// known to have no Object Lock, a consequence of that, not a finding of its own.
fn follows_from_no_lock(observed: &Observed) -> bool {
    matches!(observed, Observed::Skipped(why)
        if [NO_CANARY, NO_CANARY_TO_KEEP_THE_BUCKET, LOCK_NOT_CONFIRMED].contains(&why.as_str()))
}

/// A finding that fails doctor; its exit code says how badly.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Problem {
    #[serde(skip)]
    pub(super) code: ExitCode,
    pub(super) kind: &'static str,
    pub(super) message: String,
}

impl Problem {
    pub(super) fn new(code: ExitCode, message: String) -> Problem {
        let kind = match code {
            ExitCode::Integrity => "not-safe",
            ExitCode::AccessDenied => "denied",
            _ => "cannot-check",
        };
        Problem {
            code,
            kind,
            message,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct LockSeen {
    pub(super) by: &'static str,
    pub(super) mode: String,
    pub(super) retain_until: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct CanaryReport {
    pub(super) key: String,
    pub(super) version_id: String,
    pub(super) from_an_earlier_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) lock_sent: Option<LockSeen>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) lock_seen: Option<LockSeen>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct IamReach {
    pub(super) identity: &'static str,
    pub(super) action: &'static str,
    #[serde(flatten)]
    pub(super) observed: Observed,
}

impl Doctor<'_> {
    pub(super) fn record(
        &mut self,
        role: Role,
        action: Action,
        expect: Expect,
        observed: Observed,
    ) {
        self.rows.push(Row::new(role, action, expect, observed));
    }

    pub(super) fn skip(&mut self, role: Role, action: Action, why: &str) {
        let expect = expected(role, action, self.settings.retention.source);
        self.record(role, action, expect, Observed::Skipped(why.to_string()));
    }

    pub(super) fn problem(&mut self, code: ExitCode, message: String) {
        self.problems.push(Problem::new(code, message));
    }

    pub(super) fn expect(&self, role: Role, action: Action) -> Expect {
        expected(role, action, self.settings.retention.source)
    }

    /// The problems as the report lists them, the most serious first, and the exit code
    /// they earn. The verdict on the lock's enforcement becomes a problem or a warning
    /// here. A bucket without Object Lock comes first, and what follows from it (the
    /// probes not sent, the enforcement) is not listed again.
    pub(super) fn conclude(&mut self) -> (Vec<Problem>, Option<ExitCode>) {
        let no_lock = self.no_object_lock.clone();
        match &self.enforcement {
            Enforcement::NotEnforced(_) if no_lock.is_some() => {}
            Enforcement::NotEnforced(d) => self.problem(
                ExitCode::Integrity,
                format!("the backend does not enforce Object Lock COMPLIANCE retention: {d}"),
            ),
            Enforcement::Unproven(d) => self.warnings.push(format!(
                "could not prove that the backend enforces Object Lock: {d}"
            )),
            Enforcement::Unknown(d) => self.problem(
                ExitCode::Failure,
                format!("could not check whether the backend enforces Object Lock: {d}"),
            ),
            Enforcement::Enforced(_) => {}
        }
        let mut problems: Vec<Problem> = no_lock
            .into_iter()
            .map(|cause| Problem::new(ExitCode::Integrity, cause))
            .collect();
        problems.extend(
            self.rows
                .iter()
                .filter(|row| {
                    !(self.no_object_lock.is_some() && follows_from_no_lock(&row.observed))
                })
                .filter_map(|row| Some(Problem::new(row.verdict.exit_code(), row.problem()?))),
        );
        problems.append(&mut self.problems);
        // The most serious first, as the exit code says.
        let rank = |c: ExitCode| match c {
            ExitCode::Integrity => 0,
            ExitCode::AccessDenied => 1,
            _ => 2,
        };
        problems.sort_by_key(|p| rank(p.code));
        let code = worst(problems.iter().map(|p| p.code));
        (problems, code)
    }

    /// The canary as the report shows it.
    pub(super) fn canary_report(&self) -> Option<CanaryReport> {
        self.canary.as_ref().map(|c| CanaryReport {
            key: c.key.clone(),
            version_id: c.version_id.clone(),
            from_an_earlier_run: self.from_earlier_run,
            lock_sent: c.sent.map(|(m, t)| LockSeen {
                by: "writer",
                mode: m.as_str().to_string(),
                retain_until: t,
            }),
            lock_seen: self.lock_seen.clone(),
        })
    }
}
