//! `vault doctor`: what each identity can and cannot do, probed on a canary key.
//!
//! The writer puts a canary (a few bytes under `<prefix>/.vault-doctor/`, locked like a
//! backup), then every configured identity sends requests whose answers show what it
//! may do: reads, lists, writes, deletes, retention and bucket changes. Each probe is
//! harmless even when the identity is wrongly allowed: it targets the canary, a version
//! or upload that does not exist, or carries a body S3 refuses after authorising it (a
//! malformed policy, a lifecycle rule of zero days). The answers fill a matrix,
//! identity × IAM action, expected against observed. The backend's lock is checked on
//! the canary itself: the writer extends its COMPLIANCE retention and must then fail to
//! shorten it. The principals behind the identities are compared, and the writer's
//! reach into IAM tested. docs/doctor.md has the matrix, the reasons and exit codes.
//!
//! [`run`] is the procedure, top to bottom. The parts: `identities` (each identity's
//! session, who it is, and the comparison of the principals), `canary` (put or found,
//! read back, its lock checked), `probes` (the per-identity probes and how one is sent
//! and recorded), `enforcement` (the COMPLIANCE proof: extend, then try to shorten),
//! `findings` (problems, warnings and what the report shows), `output` (the human
//! table and the JSON), `matrix` (identity × action), `principal` (STS and IAM),
//! `probe` (what one answer says about an identity's rights).
//!
//! Talks to S3 through the public API of `store::s3` only: a [`Session`] per identity,
//! the [`S3Target`], `store::s3::errors` to read an answer, and its time conversions;
//! reads listings through the `Store` trait. Never a store's internals.
//!
//! [`Session`]: crate::store::s3::Session

mod canary;
mod enforcement;
mod findings;
mod identities;
mod matrix;
mod output;
mod principal;
mod probe;
mod probes;

use chrono::{DateTime, Utc};

use self::canary::Canary;
use self::enforcement::Enforcement;
use self::findings::{IamReach, LockSeen, Problem};
use self::identities::Ident;
use self::matrix::{Action, Expect, Row};
use self::principal::Principal;
use super::Context;
use crate::cli::DoctorArgs;
use crate::config::Settings;
use crate::error::Error;
use crate::retention::LockSource;
use crate::store::s3::S3Target;
use crate::store::{Role, Target};

/// The reserved key component the canaries live under. Job names and prefixes cannot
/// start with `.` or `.vault` (`crate::names`), so no backup ever shares it.
pub const RESERVED: &str = ".vault-doctor";

/// Everything doctor found, in the order it found it.
struct Doctor<'a> {
    settings: &'a Settings,
    target: &'a S3Target,
    /// `<prefix>/.vault-doctor/` in the bucket.
    reserved: String,
    rows: Vec<Row>,
    problems: Vec<Problem>,
    warnings: Vec<String>,
    principals: Vec<Principal>,
    iam: Option<IamReach>,
    canary: Option<Canary>,
    from_earlier_run: bool,
    lock_seen: Option<LockSeen>,
    /// Set once the bucket is known to have Object Lock (so that suspending
    /// versioning must fail with 409 whoever asks).
    lock_confirmed: bool,
    /// Set, to what shows it, once the bucket is known to have no Object Lock: the
    /// vault's first problem, the cause of every check the canary's absence stopped.
    no_object_lock: Option<String>,
    enforcement: Enforcement,
}

pub async fn run(ctx: &Context, args: &DoctorArgs) -> anyhow::Result<()> {
    let settings = &ctx.settings;
    let target = match &settings.target {
        Target::S3(t) => t,
        Target::Local(dir) => {
            return Err(Error::config(format!(
                "vault doctor probes the identities of an S3 vault; {} is a local \
                 directory, where access is that of the Unix user running vault and \
                 there are no identities to probe",
                dir.display()
            ))
            .into());
        }
    };
    let idents = identities::open(settings, target, &args.only).await?;
    let mut doctor = Doctor::new(settings, target);
    doctor.unusable(&idents);
    doctor.principals(&idents).await;
    doctor.probe_all(&idents).await;
    doctor.report(ctx.json)
}

/// What each identity must be allowed, everything else it must be denied.
fn expected(role: Role, action: Action, source: LockSource) -> Expect {
    use matrix::*;
    let reader = role != Role::Writer;
    let allowed = match action {
        a if a == PUT || a == ABORT_UPLOAD => !reader,
        a if a == GET
            || a == GET_VERSION
            || a == GET_RETENTION
            || a == LIST
            || a == LIST_VERSIONS =>
        {
            reader
        }
        a if a == EXTEND_RETENTION => !reader && source == LockSource::PerObject,
        // A delete marker, which hides and removes nothing; S3 cannot tell an expired
        // object from a locked one here, so `vault prune` refuses locked backups and
        // `verify` calls a marker on one tampering.
        a if a == DELETE => role == Role::Pruner,
        _ => false,
    };
    if allowed {
        Expect::Allowed
    } else {
        Expect::Denied
    }
}

impl<'a> Doctor<'a> {
    fn new(settings: &'a Settings, target: &'a S3Target) -> Doctor<'a> {
        Doctor {
            settings,
            target,
            reserved: target.key_in_bucket(&settings.layout.job_root(RESERVED)),
            rows: Vec::new(),
            problems: Vec::new(),
            warnings: Vec::new(),
            principals: Vec::new(),
            iam: None,
            canary: None,
            from_earlier_run: false,
            lock_seen: None,
            lock_confirmed: false,
            no_object_lock: None,
            enforcement: Enforcement::Unproven("not checked".into()),
        }
    }

    /// The probes in their order: each needs what the ones before found (the canary,
    /// its lock, whether Object Lock is confirmed, who may delete).
    async fn probe_all(&mut self, idents: &[Ident]) {
        let writer = idents.iter().find(|i| i.role() == Role::Writer);
        let readers: Vec<&Ident> = idents.iter().filter(|i| i.role() != Role::Writer).collect();

        match writer {
            Some(w) => {
                if let Some(refusal) = self.put_canary(w).await {
                    self.canary_refused(&refusal, &readers).await;
                }
            }
            None => self.find_canary(&readers).await,
        }
        for r in &readers {
            self.reads(r).await;
        }
        self.forget_a_spent_canary();
        if let Some(w) = writer {
            self.writer_reads(w).await;
        }
        for id in idents {
            self.writes(id).await;
        }
        for id in idents {
            self.deletes(id).await;
        }
        for id in idents {
            self.bucket_changes(id).await;
        }
        self.retention(writer, &readers).await;
        self.delete_the_canary(idents).await;
    }
}

/// A date as shown to people: RFC 3339, whole seconds, `Z`.
fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::identities::selected;
    use super::*;

    #[test]
    fn roles_and_expectations() {
        let per_object = LockSource::PerObject;
        assert_eq!(
            selected(&[], false),
            [Role::Writer, Role::Verifier, Role::Restorer]
        );
        assert_eq!(
            selected(&[], true),
            [Role::Writer, Role::Verifier, Role::Restorer, Role::Pruner]
        );
        assert_eq!(
            selected(&["pruner".into(), "writer".into()], false),
            [Role::Writer, Role::Pruner]
        );
        assert_eq!(
            expected(Role::Pruner, matrix::DELETE, per_object),
            Expect::Allowed
        );
        for denied in [
            matrix::DELETE_VERSION,
            matrix::SHORTEN_RETENTION,
            matrix::PUT_VERSIONING,
            matrix::PUT,
        ] {
            assert_eq!(expected(Role::Pruner, denied, per_object), Expect::Denied);
        }
        assert_eq!(
            expected(Role::Writer, matrix::PUT, per_object),
            Expect::Allowed
        );
        assert_eq!(
            expected(Role::Writer, matrix::GET, per_object),
            Expect::Denied
        );
        assert_eq!(
            expected(Role::Writer, matrix::EXTEND_RETENTION, per_object),
            Expect::Allowed
        );
        assert_eq!(
            expected(
                Role::Writer,
                matrix::EXTEND_RETENTION,
                LockSource::BucketDefault
            ),
            Expect::Denied
        );
        assert_eq!(
            expected(Role::Verifier, matrix::GET_VERSION, per_object),
            Expect::Allowed
        );
        assert_eq!(
            expected(Role::Restorer, matrix::PUT, per_object),
            Expect::Denied
        );
        assert_eq!(
            expected(Role::Restorer, matrix::DELETE_BUCKET, per_object),
            Expect::Denied
        );
    }
}
