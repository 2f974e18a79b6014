//! The matrix: identity × action, expected against observed, and what a mismatch means.
//!
//! Pure judgement: sends nothing, so it imports neither the SDK nor `store::s3`.

use serde::Serialize;

use super::probe::Observed;
use crate::error::ExitCode;
use crate::store::Role;

/// What is probed: the IAM action a policy names, and the request that tests it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    pub action: &'static str,
    pub probe: &'static str,
}

pub const PUT: Action = Action {
    action: "s3:PutObject",
    probe: "PutObject under .vault-doctor/",
};
pub const ABORT_UPLOAD: Action = Action {
    action: "s3:AbortMultipartUpload",
    probe: "AbortMultipartUpload of no upload",
};
pub const GET: Action = Action {
    action: "s3:GetObject",
    probe: "GetObject of the canary",
};
pub const GET_VERSION: Action = Action {
    action: "s3:GetObjectVersion",
    probe: "GetObject of the canary's version",
};
pub const GET_RETENTION: Action = Action {
    action: "s3:GetObjectRetention",
    probe: "GetObjectRetention of the canary",
};
pub const LIST: Action = Action {
    action: "s3:ListBucket",
    probe: "ListObjectsV2 of .vault-doctor/",
};
pub const LIST_VERSIONS: Action = Action {
    action: "s3:ListBucketVersions",
    probe: "ListObjectVersions of .vault-doctor/",
};
pub const GET_LOCK_CONFIG: Action = Action {
    action: "s3:GetBucketObjectLockConfiguration",
    probe: "GetObjectLockConfiguration",
};
pub const DELETE: Action = Action {
    action: "s3:DeleteObject",
    probe: "DeleteObject of the canary, no version id",
};
pub const DELETE_VERSION: Action = Action {
    action: "s3:DeleteObjectVersion",
    probe: "DeleteObject of a version that does not exist",
};
pub const LEGAL_HOLD: Action = Action {
    action: "s3:PutObjectLegalHold",
    probe: "PutObjectLegalHold OFF on the canary",
};
pub const EXTEND_RETENTION: Action = Action {
    action: "s3:PutObjectRetention",
    probe: "PutObjectRetention: extend the canary's by 1s",
};
pub const SHORTEN_RETENTION: Action = Action {
    action: "s3:PutObjectRetention",
    probe: "PutObjectRetention: shorten the canary's by 1h",
};
pub const PUT_POLICY: Action = Action {
    action: "s3:PutBucketPolicy",
    probe: "PutBucketPolicy with a malformed policy",
};
pub const PUT_LIFECYCLE: Action = Action {
    action: "s3:PutLifecycleConfiguration",
    probe: "PutBucketLifecycleConfiguration, invalid rule",
};
pub const PUT_LOCK_CONFIG: Action = Action {
    action: "s3:PutBucketObjectLockConfiguration",
    probe: "PutObjectLockConfiguration without a period",
};
pub const PUT_VERSIONING: Action = Action {
    action: "s3:PutBucketVersioning",
    probe: "PutBucketVersioning Suspended",
};
pub const DELETE_BUCKET: Action = Action {
    action: "s3:DeleteBucket",
    probe: "DeleteBucket (the bucket is not empty)",
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    Allowed,
    Denied,
}

impl Expect {
    fn word(self) -> &'static str {
        match self {
            Expect::Allowed => "allowed",
            Expect::Denied => "denied",
        }
    }
}

/// How an observation compares with the expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Ok,
    /// Allowed where it must be denied: the vault is not safe.
    MoreThanItShould,
    /// Denied where vault needs it: a command of this identity will fail.
    LessThanItNeeds,
    /// Not known: the probe failed or was not sent.
    CannotCheck,
}

impl Verdict {
    fn of(expected: Expect, observed: &Observed) -> Verdict {
        match (expected, observed) {
            (Expect::Allowed, Observed::Allowed(_)) | (Expect::Denied, Observed::Denied(_)) => {
                Verdict::Ok
            }
            (Expect::Denied, Observed::Allowed(_)) => Verdict::MoreThanItShould,
            (Expect::Allowed, Observed::Denied(_)) => Verdict::LessThanItNeeds,
            (_, Observed::Unknown(_) | Observed::Skipped(_)) => Verdict::CannotCheck,
        }
    }

    pub fn exit_code(self) -> ExitCode {
        match self {
            Verdict::Ok => ExitCode::Success,
            Verdict::MoreThanItShould => ExitCode::Integrity,
            Verdict::LessThanItNeeds => ExitCode::AccessDenied,
            Verdict::CannotCheck => ExitCode::Failure,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::MoreThanItShould => "FAIL: more than it should",
            Verdict::LessThanItNeeds => "FAIL: less than it needs",
            Verdict::CannotCheck => "CANNOT CHECK",
        }
    }
}

/// One cell of the matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub identity: &'static str,
    pub action: &'static str,
    pub probe: &'static str,
    pub expected: Expect,
    #[serde(flatten)]
    pub observed: Observed,
    pub verdict: Verdict,
}

impl Row {
    pub fn new(role: Role, action: Action, expected: Expect, observed: Observed) -> Row {
        Row {
            identity: role.as_str(),
            action: action.action,
            probe: action.probe,
            expected,
            verdict: Verdict::of(expected, &observed),
            observed,
        }
    }

    /// The row as a sentence, for the list of problems.
    pub fn problem(&self) -> Option<String> {
        let (identity, action, probe) = (self.identity, self.action, self.probe);
        let detail = self.observed.detail();
        match self.verdict {
            Verdict::Ok => None,
            Verdict::MoreThanItShould if probe == SHORTEN_RETENTION.probe => Some(format!(
                "the {identity} shortened the canary's COMPLIANCE retention: neither its \
                 policy nor the bucket's lock stopped it ({action}: {detail})"
            )),
            Verdict::MoreThanItShould => Some(format!(
                "the {identity} is allowed {action} and must be denied it ({probe}: {detail})"
            )),
            Verdict::LessThanItNeeds => Some(format!(
                "the {identity} is denied {action}, which vault needs ({probe}: {detail})"
            )),
            Verdict::CannotCheck => Some(format!(
                "could not check whether the {identity} is allowed {action} ({probe}: {detail})"
            )),
        }
    }
}

/// The matrix as a table: one row per identity and action.
pub fn render(rows: &[Row]) -> String {
    let mut table = crate::report::Table::new(&[
        "IDENTITY",
        "IAM ACTION",
        "PROBE",
        "EXPECTED",
        "OBSERVED",
        "RESULT",
    ]);
    for row in rows {
        let observed = match &row.observed {
            observed if observed.is_accepted() => "allowed".to_string(),
            Observed::Denied(_) => "denied".to_string(),
            other => format!("{} ({})", other.word(), other.detail()),
        };
        table.row(vec![
            row.identity.to_string(),
            row.action.to_string(),
            row.probe.to_string(),
            row.expected.word().to_string(),
            observed,
            row.verdict.text().to_string(),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_expectation_and_observation() {
        let allowed = Observed::Allowed("409 BucketNotEmpty".into());
        let denied = Observed::Denied("403 AccessDenied".into());
        let row = Row::new(Role::Writer, DELETE_BUCKET, Expect::Denied, allowed.clone());
        assert_eq!(row.verdict, Verdict::MoreThanItShould);
        assert_eq!(row.verdict.exit_code(), ExitCode::Integrity);
        let problem = row.problem().unwrap();
        assert!(
            problem.contains("writer") && problem.contains("s3:DeleteBucket"),
            "{problem}"
        );
        let row = Row::new(Role::Verifier, GET, Expect::Allowed, denied.clone());
        assert_eq!(row.verdict.exit_code(), ExitCode::AccessDenied);
        assert_eq!(
            Row::new(Role::Restorer, PUT, Expect::Denied, denied).verdict,
            Verdict::Ok
        );
        let skipped = Observed::Skipped("no canary".into());
        let row = Row::new(Role::Restorer, GET, Expect::Allowed, skipped);
        assert_eq!(row.verdict.exit_code(), ExitCode::Failure);
        let table = render(&[row]);
        assert!(table.contains("not probed (no canary)"), "{table}");
    }
}
