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
    /// here.
    pub(super) fn conclude(&mut self) -> (Vec<Problem>, Option<ExitCode>) {
        match &self.enforcement {
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
        let mut problems: Vec<Problem> = self
            .rows
            .iter()
            .filter_map(|row| Some(Problem::new(row.verdict.exit_code(), row.problem()?)))
            .collect();
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
