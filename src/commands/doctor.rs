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

mod matrix;
mod principal;
mod probe;

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketVersioningStatus, ChecksumAlgorithm, DefaultRetention,
    ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
    ObjectLockConfiguration, ObjectLockEnabled, ObjectLockLegalHold, ObjectLockLegalHoldStatus,
    ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode, ObjectLockRule,
    VersioningConfiguration,
};
use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde::Serialize;

use self::matrix::{Action, Expect, Row};
use self::principal::{Principal, short_key};
use self::probe::{Observed, attempt};
use super::Context;
use crate::cli::DoctorArgs;
use crate::config::Settings;
use crate::error::{Error, ExitCode, summary, worst};
use crate::retention::{LockMode, LockSource, Period};
use crate::store::s3::{S3Target, Session, chrono_time, smithy_time};
use crate::store::{Role, Target};

/// The reserved key component the canaries live under. Job names and prefixes cannot
/// start with `.` or `.vault` (config.rs), so no backup ever shares it.
pub const RESERVED: &str = ".vault-doctor";

/// How long a per-object canary is locked: long enough to finish the probes, short
/// enough that canaries do not pile up locked.
const CANARY_LOCK: Duration = Duration::days(1);

const CANARY_TEXT: &str = "vault doctor canary";

/// One identity as doctor uses it.
struct Ident {
    role: Role,
    sdk: SdkConfig,
    s3: Client,
    /// Why its credentials could not be had, if they could not.
    unusable: Option<String>,
    creds: Option<Credentials>,
}

/// The canary the probes aim at.
struct Canary {
    /// Its key in the bucket.
    key: String,
    version_id: String,
    /// The text written (`None` for a canary of an earlier run).
    text: Option<String>,
    /// The lock the writer sent (per-object mode).
    sent: Option<(LockMode, DateTime<Utc>)>,
    put_at: DateTime<Utc>,
    /// The retain-until date as last known (sent, or read back).
    until: Option<DateTime<Utc>>,
}

/// Whether the backend was seen to enforce COMPLIANCE retention.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "kebab-case")]
enum Enforcement {
    Enforced(String),
    NotEnforced(String),
    Unproven(String),
    Unknown(String),
}

/// A finding that fails doctor; its exit code says how badly.
#[derive(Debug, Clone, Serialize)]
struct Problem {
    #[serde(skip)]
    code: ExitCode,
    kind: &'static str,
    message: String,
}

impl Problem {
    fn new(code: ExitCode, message: String) -> Problem {
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
struct LockSeen {
    by: &'static str,
    mode: String,
    retain_until: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
struct CanaryReport {
    key: String,
    version_id: String,
    from_an_earlier_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    lock_sent: Option<LockSeen>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lock_seen: Option<LockSeen>,
}

#[derive(Debug, Clone, Serialize)]
struct IamReach {
    identity: &'static str,
    action: &'static str,
    #[serde(flatten)]
    observed: Observed,
}

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
    enforcement: Enforcement,
}

/// Sends one probe as `$id` and records it in the matrix: `$build` is the request
/// without `.send()`, rebuilt for every attempt. Evaluates to `(Observed, Option<out>)`.
macro_rules! probe {
    ($doctor:expr, $id:expr, $action:expr, $expect:expr, $build:expr) => {{
        let id: &Ident = $id;
        let action: Action = $action;
        match &id.unusable {
            Some(why) => {
                let skipped = Observed::Skipped(why.clone());
                $doctor.record(id.role, action, $expect, skipped.clone());
                (skipped, None)
            }
            None => {
                let what = format!("{} as the {}", action.probe, id.role.as_str());
                let (observed, out) = attempt(&what, || $build.send()).await;
                $doctor.record(id.role, action, $expect, observed.clone());
                (observed, out)
            }
        }
    }};
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
    let mut idents = Vec::new();
    for role in selected(&args.only) {
        let identity = settings.identities.store(role);
        let session = Session::open(target, identity, role)
            .await
            .map_err(|e| match e {
                Error::Config(message) => Error::config(format!(
                    "{message}\nhint: on a host that holds only some identities' \
                     credentials, name those with --only"
                )),
                other => other,
            })?;
        let (creds, unusable) = match session.credentials().await {
            Ok(c) => (Some(c), None),
            Err(e) => (None, Some(e.to_string())),
        };
        idents.push(Ident {
            role,
            s3: session.client().clone(),
            sdk: session.sdk_config().clone(),
            unusable,
            creds,
        });
    }

    let mut doctor = Doctor {
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
        enforcement: Enforcement::Unproven("not checked".into()),
    };
    for id in &idents {
        if let Some(why) = &id.unusable {
            doctor.problem(
                ExitCode::Failure,
                format!("the {} identity cannot be probed: {why}", id.role.as_str()),
            );
        }
    }
    doctor.principals(&idents).await;
    doctor.probe_all(&idents).await;
    doctor.report(ctx.json)
}

/// The roles `--only` names, in the fixed order writer, verifier, restorer; all three
/// when none is named.
fn selected(only: &[String]) -> Vec<Role> {
    [Role::Writer, Role::Verifier, Role::Restorer]
        .into_iter()
        .filter(|r| only.is_empty() || only.iter().any(|o| o == r.as_str()))
        .collect()
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
        _ => false,
    };
    if allowed {
        Expect::Allowed
    } else {
        Expect::Denied
    }
}

impl Doctor<'_> {
    fn record(&mut self, role: Role, action: Action, expect: Expect, observed: Observed) {
        self.rows.push(Row::new(role, action, expect, observed));
    }

    fn skip(&mut self, role: Role, action: Action, why: &str) {
        let expect = expected(role, action, self.settings.retention.source);
        self.record(role, action, expect, Observed::Skipped(why.to_string()));
    }

    fn problem(&mut self, code: ExitCode, message: String) {
        self.problems.push(Problem::new(code, message));
    }

    fn expect(&self, role: Role, action: Action) -> Expect {
        expected(role, action, self.settings.retention.source)
    }

    // ------------------------------------------------------------------ principals

    /// Who each identity is; two identities on one access key fail, two on one
    /// principal warn. Then whether the writer reaches IAM.
    async fn principals(&mut self, idents: &[Ident]) {
        for id in idents {
            let Some(creds) = &id.creds else { continue };
            let p = principal::whoami(id.role.as_str(), &id.sdk, self.target, creds).await;
            if let Some(e) = &p.error {
                self.warnings.push(format!(
                    "could not ask STS who the {} is (GetCallerIdentity: {e}); the \
                     principals were not compared",
                    id.role.as_str()
                ));
            }
            self.principals.push(p);
        }
        let found = self.principals.clone();
        for (i, a) in found.iter().enumerate() {
            for b in &found[i + 1..] {
                if a.access_key_id == b.access_key_id {
                    self.problem(
                        ExitCode::Integrity,
                        format!(
                            "the {} and the {} use the same access key ({}): they are one \
                             identity, so neither is limited to its own rights",
                            a.identity,
                            b.identity,
                            short_key(&a.access_key_id)
                        ),
                    );
                } else if let (Some(pa), Some(pb)) = (a.principal(), b.principal())
                    && pa == pb
                {
                    self.warnings.push(format!(
                        "the {} and the {} resolve to the same principal {pa} (different \
                         access keys): both hold that principal's rights, so the two \
                         identities are not separated; give each its own user or role",
                        a.identity, b.identity
                    ));
                }
            }
        }

        let Some(writer) = idents.iter().find(|i| i.role == Role::Writer) else {
            return;
        };
        let Some(creds) = &writer.creds else { return };
        let region = writer
            .sdk
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into());
        let observed = principal::iam_reach(self.target, &region, creds).await;
        match &observed {
            Observed::Allowed(_) => self.warnings.push(
                "the writer's credentials can reach this account's IAM \
                 (iam:GetAccountSummary is allowed): whoever steals them may read or \
                 change the vault's roles and policies. The writer needs no IAM \
                 permission; deny iam:* in its policy"
                    .into(),
            ),
            Observed::Unknown(e) => self.warnings.push(format!(
                "could not check whether the writer's credentials reach IAM: {e}"
            )),
            _ => {}
        }
        self.iam = Some(IamReach {
            identity: "writer",
            action: "iam:GetAccountSummary",
            observed,
        });
    }

    // ------------------------------------------------------------------ probes

    async fn probe_all(&mut self, idents: &[Ident]) {
        let writer = idents.iter().find(|i| i.role == Role::Writer);
        let readers: Vec<&Ident> = idents.iter().filter(|i| i.role != Role::Writer).collect();

        match writer {
            Some(w) => self.put_canary(w).await,
            None => self.find_canary(&readers).await,
        }
        for r in &readers {
            self.reads(r).await;
        }
        if self.from_earlier_run
            && let Some(until) = self.canary.as_ref().and_then(|c| c.until)
            && until < Utc::now() + Duration::minutes(5)
        {
            self.warnings.push(format!(
                "the newest canary's lock ended at {}: it no longer tests anything; run \
                 vault doctor with the writer to put a new one",
                at(until)
            ));
            self.canary = None;
        }
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

    /// The writer puts the canary exactly as it puts a backup.
    async fn put_canary(&mut self, w: &Ident) {
        let now = Utc::now();
        let key = format!(
            "{}{}-{:08x}.canary",
            self.reserved,
            now.format("%Y%m%dT%H%M%S%.3fZ"),
            rand::random::<u32>()
        );
        let sent = match self.settings.retention.source {
            LockSource::PerObject => {
                Some((LockMode::Compliance, (now + CANARY_LOCK).trunc_subsecs(0)))
            }
            LockSource::BucketDefault => None,
        };
        let text = format!(
            "{CANARY_TEXT}, written {} by the writer identity to test what each identity \
             may do; it stays until its lock ends (docs/doctor.md)\n",
            now.to_rfc3339()
        );
        let target = self.target;
        let bucket = &target.bucket;
        let conditional = target.conditional_writes;
        let (observed, out) = probe!(
            self,
            w,
            matrix::PUT,
            Expect::Allowed,
            w.s3.put_object()
                .bucket(bucket)
                .key(&key)
                .body(ByteStream::from(text.clone().into_bytes()))
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .set_if_none_match(conditional.then(|| "*".to_string()))
                .set_object_lock_mode(sent.map(|_| ObjectLockMode::Compliance))
                .set_object_lock_retain_until_date(sent.map(|(_, t)| smithy_time(t)))
        );
        let Some(out) = out else {
            if observed.is_allowed() {
                self.problem(
                    ExitCode::Failure,
                    format!(
                        "the bucket refused the canary ({}): a backup would fail the same \
                         way{}",
                        observed.detail(),
                        if sent.is_some() {
                            "; does the bucket have Object Lock?"
                        } else {
                            ""
                        }
                    ),
                );
            }
            return;
        };
        let Some(version_id) = out.version_id else {
            self.problem(
                ExitCode::Integrity,
                "the bucket gave the canary no version id: versioning is off, so the \
                 bucket has no Object Lock and backups can be overwritten or deleted"
                    .into(),
            );
            return;
        };
        // AWS refuses lock headers on a bucket without Object Lock.
        self.lock_confirmed = sent.is_some();
        self.canary = Some(Canary {
            key,
            version_id,
            text: Some(text),
            until: sent.map(|(_, t)| t),
            sent,
            put_at: now,
        });
    }

    /// Without the writer: the newest canary of an earlier run, found by a reader.
    async fn find_canary(&mut self, readers: &[&Ident]) {
        let Some(reader) = readers.iter().find(|r| r.unusable.is_none()) else {
            return;
        };
        let found = async {
            let store = super::open_store(self.settings, reader.role).await?;
            let rel = self.settings.layout.job_root(RESERVED);
            let listed = store.list_originals(&rel).await?;
            // The newest: keys start with the time to the millisecond.
            Ok::<_, Error>(
                listed
                    .into_iter()
                    .filter(|m| m.key.ends_with(".canary") && m.version_id.is_some())
                    .max_by(|a, b| (a.modified, &a.key).cmp(&(b.modified, &b.key))),
            )
        }
        .await;
        match found {
            Ok(Some(meta)) => {
                self.from_earlier_run = true;
                self.canary = Some(Canary {
                    key: self.target.key_in_bucket(&meta.key),
                    version_id: meta.version_id.unwrap_or_default(),
                    text: None,
                    sent: None,
                    put_at: meta.modified.unwrap_or_else(Utc::now),
                    until: None,
                });
            }
            Ok(None) => self.warnings.push(format!(
                "no canary under {} yet: run vault doctor once with the writer; the \
                 probes that need one were not sent",
                self.reserved
            )),
            Err(e) => self.problem(
                ExitCode::Failure,
                format!(
                    "could not look for a canary as the {}: {e}",
                    reader.role.as_str()
                ),
            ),
        }
    }

    /// A reader reads the canary back, its lock, and lists.
    async fn reads(&mut self, r: &Ident) {
        let bucket = self.target.bucket.clone();
        let reserved = self.reserved.clone();
        let role = r.role;
        let source = self.settings.retention.source;
        let expect = |a| expected(role, a, source);
        let (e_list, e_versions) = (expect(matrix::LIST), expect(matrix::LIST_VERSIONS));
        probe!(
            self,
            r,
            matrix::LIST,
            e_list,
            r.s3.list_objects_v2()
                .bucket(&bucket)
                .prefix(&reserved)
                .max_keys(1)
        );
        probe!(
            self,
            r,
            matrix::LIST_VERSIONS,
            e_versions,
            r.s3.list_object_versions()
                .bucket(&bucket)
                .prefix(&reserved)
                .max_keys(1)
        );
        let Some((key, version)) = self.canary_ref() else {
            for a in [matrix::GET, matrix::GET_VERSION, matrix::GET_RETENTION] {
                self.skip(role, a, "no canary");
            }
            return;
        };
        let (e_get, e_version, e_retention) = (
            expect(matrix::GET),
            expect(matrix::GET_VERSION),
            expect(matrix::GET_RETENTION),
        );
        let (_, out) = probe!(
            self,
            r,
            matrix::GET,
            e_get,
            r.s3.get_object().bucket(&bucket).key(&key)
        );
        if let Some(out) = out {
            self.check_text(role, out.body).await;
        }
        let (_, out) = probe!(
            self,
            r,
            matrix::GET_VERSION,
            e_version,
            r.s3.get_object()
                .bucket(&bucket)
                .key(&key)
                .version_id(&version)
        );
        if let Some(out) = out {
            self.check_text(role, out.body).await;
        }
        let (observed, out) = probe!(
            self,
            r,
            matrix::GET_RETENTION,
            e_retention,
            r.s3.get_object_retention()
                .bucket(&bucket)
                .key(&key)
                .version_id(&version)
        );
        match out.and_then(|o| o.retention) {
            Some(retention) => {
                let mode = retention.mode.map(|m| m.as_str().to_string());
                let until = retention.retain_until_date.map(chrono_time);
                self.check_lock(role, mode, until);
            }
            None if observed.is_allowed() => self.problem(
                ExitCode::Integrity,
                format!(
                    "the canary carries no Object Lock retention, as the {} reads it ({}): \
                     {}",
                    role.as_str(),
                    observed.detail(),
                    match self.settings.retention.source {
                        LockSource::PerObject => "the bucket ignored the lock headers",
                        LockSource::BucketDefault => "the bucket has no default retention",
                    }
                ),
            ),
            None => {}
        }
    }

    fn canary_ref(&self) -> Option<(String, String)> {
        self.canary
            .as_ref()
            .map(|c| (c.key.clone(), c.version_id.clone()))
    }

    /// The canary read back must be what was written.
    async fn check_text(&mut self, role: Role, body: ByteStream) {
        let Some(canary) = &self.canary else { return };
        let read = match body.collect().await {
            Ok(b) => b.into_bytes(),
            Err(e) => {
                self.problem(
                    ExitCode::Failure,
                    format!(
                        "reading the canary back as the {} failed: {e}",
                        role.as_str()
                    ),
                );
                return;
            }
        };
        let good = match &canary.text {
            Some(text) => read == text.as_bytes(),
            None => read.starts_with(CANARY_TEXT.as_bytes()),
        };
        if !good {
            self.problem(
                ExitCode::Integrity,
                format!(
                    "the canary read back by the {} is not what the writer wrote ({} bytes)",
                    role.as_str(),
                    read.len()
                ),
            );
        }
    }

    /// The lock a reader sees on the canary against the lock it must have.
    fn check_lock(&mut self, role: Role, mode: Option<String>, until: Option<DateTime<Utc>>) {
        let (Some(mode), Some(until)) = (mode, until) else {
            self.problem(
                ExitCode::Integrity,
                format!(
                    "the canary's retention as the {} reads it has no mode or date",
                    role.as_str()
                ),
            );
            return;
        };
        self.lock_confirmed = true;
        let Some(canary) = self.canary.as_mut() else {
            return;
        };
        if self.lock_seen.is_none() {
            self.lock_seen = Some(LockSeen {
                by: role.as_str(),
                mode: mode.clone(),
                retain_until: until,
            });
        }
        canary.until.get_or_insert(until);
        let policy = &self.settings.retention;
        let (want_mode, want_until, slack) = match (canary.sent, self.from_earlier_run) {
            (Some((m, t)), _) => (m, Some(t), Duration::zero()),
            // An earlier run's canary: its date is not known, only that it must hold.
            (None, true) => match policy.source {
                LockSource::PerObject => (LockMode::Compliance, None, Duration::zero()),
                LockSource::BucketDefault => (policy.mode, None, Duration::zero()),
            },
            (None, false) => {
                let slack = match policy.daily {
                    Period::Days(_) => Duration::hours(1),
                    Period::Months(_) => Duration::days(2),
                };
                (policy.mode, Some(policy.daily.after(canary.put_at)), slack)
            }
        };
        if mode == LockMode::Governance.as_str() && want_mode == LockMode::Governance {
            self.warnings.push(
                "the canary's lock is GOVERNANCE, as configured: any principal allowed \
                 s3:BypassGovernanceRetention can remove it early; COMPLIANCE cannot be"
                    .into(),
            );
        }
        let mut wrong = Vec::new();
        if mode != want_mode.as_str() {
            wrong.push(format!("mode {mode}, expected {}", want_mode.as_str()));
        }
        if let Some(want) = want_until
            && (until - want).abs() > slack
        {
            let why = if canary.sent.is_some() {
                "the date the writer sent".to_string()
            } else {
                format!(
                    "the put time + [retention] bucket_default {}: does the bucket's default \
                     retention match it?",
                    policy.daily
                )
            };
            wrong.push(format!(
                "retain-until {}, expected {} ({why})",
                at(until),
                at(want)
            ));
        }
        if !wrong.is_empty() {
            self.problem(
                ExitCode::Integrity,
                format!(
                    "the canary's lock as the {} reads it is wrong: {}",
                    role.as_str(),
                    wrong.join("; ")
                ),
            );
        }
    }

    /// The writer must not read or list anything.
    async fn writer_reads(&mut self, w: &Ident) {
        let bucket = self.target.bucket.clone();
        let reserved = self.reserved.clone();
        probe!(
            self,
            w,
            matrix::LIST,
            Expect::Denied,
            w.s3.list_objects_v2()
                .bucket(&bucket)
                .prefix(&reserved)
                .max_keys(1)
        );
        probe!(
            self,
            w,
            matrix::LIST_VERSIONS,
            Expect::Denied,
            w.s3.list_object_versions()
                .bucket(&bucket)
                .prefix(&reserved)
                .max_keys(1)
        );
        probe!(
            self,
            w,
            matrix::GET_LOCK_CONFIG,
            Expect::Denied,
            w.s3.get_object_lock_configuration().bucket(&bucket)
        );
        // Without s3:ListBucket, S3 answers a missing key with 403 too: these need
        // the canary to mean anything.
        let Some((key, version)) = self.canary_ref() else {
            for a in [matrix::GET, matrix::GET_VERSION, matrix::GET_RETENTION] {
                self.skip(Role::Writer, a, "no canary");
            }
            return;
        };
        probe!(
            self,
            w,
            matrix::GET,
            Expect::Denied,
            w.s3.get_object().bucket(&bucket).key(&key)
        );
        probe!(
            self,
            w,
            matrix::GET_VERSION,
            Expect::Denied,
            w.s3.get_object()
                .bucket(&bucket)
                .key(&key)
                .version_id(&version)
        );
        probe!(
            self,
            w,
            matrix::GET_RETENTION,
            Expect::Denied,
            w.s3.get_object_retention()
                .bucket(&bucket)
                .key(&key)
                .version_id(&version)
        );
    }

    /// Readers must not write: a put over the canary with If-None-Match (refused with
    /// 412 once authorised, so nothing is written), and every identity's right to
    /// abort uploads, on an upload that does not exist.
    async fn writes(&mut self, id: &Ident) {
        let bucket = self.target.bucket.clone();
        let no_upload = format!("{}no-such-upload", self.reserved);
        let e_abort = self.expect(id.role, matrix::ABORT_UPLOAD);
        probe!(
            self,
            id,
            matrix::ABORT_UPLOAD,
            e_abort,
            id.s3
                .abort_multipart_upload()
                .bucket(&bucket)
                .key(&no_upload)
                .upload_id("vault-doctor-no-such-upload")
        );
        if id.role == Role::Writer {
            return; // its put is the canary itself
        }
        let Some((key, _)) = self.canary_ref() else {
            self.skip(id.role, matrix::PUT, "no canary");
            return;
        };
        probe!(
            self,
            id,
            matrix::PUT,
            Expect::Denied,
            id.s3
                .put_object()
                .bucket(&bucket)
                .key(&key)
                .body(ByteStream::from_static(
                    b"vault doctor: this must never be stored\n"
                ))
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .if_none_match("*")
        );
    }

    /// Nobody may delete: a version that does not exist, a delete marker on the
    /// canary (it hides nothing else), a legal hold switched OFF (a no-op).
    async fn deletes(&mut self, id: &Ident) {
        let bucket = self.target.bucket.clone();
        let Some((key, version)) = self.canary_ref() else {
            for a in [matrix::LEGAL_HOLD, matrix::DELETE_VERSION, matrix::DELETE] {
                self.skip(id.role, a, "no canary");
            }
            return;
        };
        let bogus = other_version_id(&version);
        probe!(
            self,
            id,
            matrix::LEGAL_HOLD,
            Expect::Denied,
            id.s3
                .put_object_legal_hold()
                .bucket(&bucket)
                .key(&key)
                .version_id(&version)
                .legal_hold(
                    ObjectLockLegalHold::builder()
                        .status(ObjectLockLegalHoldStatus::Off)
                        .build()
                )
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
        );
        probe!(
            self,
            id,
            matrix::DELETE_VERSION,
            Expect::Denied,
            id.s3
                .delete_object()
                .bucket(&bucket)
                .key(&key)
                .version_id(&bogus)
        );
        probe!(
            self,
            id,
            matrix::DELETE,
            Expect::Denied,
            id.s3.delete_object().bucket(&bucket).key(&key)
        );
    }

    /// Nobody may change or delete the bucket; every request is one S3 refuses after
    /// authorising it.
    async fn bucket_changes(&mut self, id: &Ident) {
        let bucket = self.target.bucket.clone();
        probe!(
            self,
            id,
            matrix::PUT_POLICY,
            Expect::Denied,
            id.s3
                .put_bucket_policy()
                .bucket(&bucket)
                .policy("vault doctor: not a policy, refused as malformed once authorised")
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
        );
        let rule = LifecycleRule::builder()
            .id("vault-doctor-invalid-rule")
            .status(ExpirationStatus::Enabled)
            .filter(
                LifecycleRuleFilter::builder()
                    .prefix(&self.reserved)
                    .build(),
            )
            .expiration(LifecycleExpiration::builder().days(0).build())
            .build()
            .expect("a lifecycle rule with id and status");
        let lifecycle = BucketLifecycleConfiguration::builder()
            .rules(rule)
            .build()
            .expect("a lifecycle configuration with rules");
        probe!(
            self,
            id,
            matrix::PUT_LIFECYCLE,
            Expect::Denied,
            id.s3
                .put_bucket_lifecycle_configuration()
                .bucket(&bucket)
                .lifecycle_configuration(lifecycle.clone())
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
        );
        let lock = ObjectLockConfiguration::builder()
            .object_lock_enabled(ObjectLockEnabled::Enabled)
            .rule(
                ObjectLockRule::builder()
                    .default_retention(
                        DefaultRetention::builder()
                            .mode(ObjectLockRetentionMode::Compliance)
                            .build(),
                    )
                    .build(),
            )
            .build();
        probe!(
            self,
            id,
            matrix::PUT_LOCK_CONFIG,
            Expect::Denied,
            id.s3
                .put_object_lock_configuration()
                .bucket(&bucket)
                .object_lock_configuration(lock.clone())
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
        );
        if self.lock_confirmed {
            probe!(
                self,
                id,
                matrix::PUT_VERSIONING,
                Expect::Denied,
                id.s3
                    .put_bucket_versioning()
                    .bucket(&bucket)
                    .versioning_configuration(
                        VersioningConfiguration::builder()
                            .status(BucketVersioningStatus::Suspended)
                            .build()
                    )
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
            );
        } else {
            self.skip(
                id.role,
                matrix::PUT_VERSIONING,
                "the bucket's Object Lock is not confirmed, and without it the probe would \
                 suspend versioning",
            );
        }
        if self.canary.is_some() {
            probe!(
                self,
                id,
                matrix::DELETE_BUCKET,
                Expect::Denied,
                id.s3.delete_bucket().bucket(&bucket)
            );
        } else {
            self.skip(
                id.role,
                matrix::DELETE_BUCKET,
                "no canary, so the bucket may be empty and the probe could delete it",
            );
        }
    }

    /// Retention: readers must not change it; the per-object writer may extend it but
    /// nobody may shorten it. An extension granted and a shortening refused on the
    /// same COMPLIANCE canary proves the backend enforces the lock.
    async fn retention(&mut self, writer: Option<&Ident>, readers: &[&Ident]) {
        let bucket = self.target.bucket.clone();
        let per_object = self.settings.retention.source == LockSource::PerObject;
        let Some((key, version)) = self.canary_ref() else {
            for id in writer.into_iter().chain(readers.iter().copied()) {
                self.skip(id.role, matrix::EXTEND_RETENTION, "no canary");
                if id.role == Role::Writer {
                    self.skip(id.role, matrix::SHORTEN_RETENTION, "no canary");
                }
            }
            self.enforcement = Enforcement::Unknown("no canary".into());
            return;
        };
        let Some(mut until) = self.canary.as_ref().and_then(|c| c.until) else {
            for id in writer.into_iter().chain(readers.iter().copied()) {
                self.skip(
                    id.role,
                    matrix::EXTEND_RETENTION,
                    "the canary's retain-until date is not known",
                );
            }
            self.enforcement = Enforcement::Unproven(
                "the canary's retain-until date could not be read, so no retention change \
                 was tried"
                    .into(),
            );
            return;
        };
        let retention = |t: DateTime<Utc>| {
            ObjectLockRetention::builder()
                .mode(ObjectLockRetentionMode::Compliance)
                .retain_until_date(smithy_time(t))
                .build()
        };

        // Who could extend it, and so can try to shorten it.
        let mut extender: Option<&Ident> = None;
        for id in readers.iter().copied().chain(writer) {
            let longer = until + Duration::seconds(1);
            let expect = self.expect(id.role, matrix::EXTEND_RETENTION);
            let (_, out) = probe!(
                self,
                id,
                matrix::EXTEND_RETENTION,
                expect,
                id.s3
                    .put_object_retention()
                    .bucket(&bucket)
                    .key(&key)
                    .version_id(&version)
                    .retention(retention(longer))
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
            );
            if out.is_some() {
                until = longer;
                if extender.is_none() || id.role == Role::Writer {
                    extender = Some(id);
                }
            }
        }
        if let Some(c) = self.canary.as_mut() {
            c.until = Some(until);
        }

        let shorter = until - Duration::hours(1);
        let mut shortened: Option<(Role, Observed)> = None;
        if let Some(w) = writer {
            let (observed, out) = probe!(
                self,
                w,
                matrix::SHORTEN_RETENTION,
                Expect::Denied,
                w.s3.put_object_retention()
                    .bucket(&bucket)
                    .key(&key)
                    .version_id(&version)
                    .retention(retention(shorter))
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
            );
            if out.is_some() || extender.is_some_and(|e| e.role == Role::Writer) {
                shortened = Some((Role::Writer, observed));
            }
        }
        if shortened.is_none()
            && let Some(e) = extender
        {
            // A reader wrongly allowed to extend: it tries shortening too (no row of
            // its own: its extension already fails the matrix).
            let what = format!(
                "shortening the canary's retention as the {}",
                e.role.as_str()
            );
            let (observed, _) = attempt(&what, || {
                e.s3.put_object_retention()
                    .bucket(&bucket)
                    .key(&key)
                    .version_id(&version)
                    .retention(retention(shorter))
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .send()
            })
            .await;
            shortened = Some((e.role, observed));
        }

        self.enforcement = match (&shortened, extender) {
            (Some((who, observed)), _) if observed.is_accepted() => {
                Enforcement::NotEnforced(format!(
                    "the {} shortened the canary's COMPLIANCE retention from {} to {}",
                    who.as_str(),
                    at(until),
                    at(shorter)
                ))
            }
            // Whoever shortens is the identity that extended: a refusal is the lock's.
            (Some((who, Observed::Denied(_))), Some(_)) => Enforcement::Enforced(format!(
                "the {} extended the canary's COMPLIANCE retention by 1s but could not \
                 shorten it",
                who.as_str()
            )),
            (Some((who, other)), Some(_)) => Enforcement::Unknown(format!(
                "shortening the canary's retention as the {} answered {}: {}",
                who.as_str(),
                other.word(),
                other.detail()
            )),
            _ if !per_object => Enforcement::Unproven(format!(
                "lock = \"bucket-default\": no identity may change retention, so no \
                 retention change can show that the backend enforces COMPLIANCE; {}",
                match &self.lock_seen {
                    Some(l) => format!(
                        "the canary does carry a {} lock until {} (read by the {})",
                        l.mode,
                        at(l.retain_until),
                        l.by
                    ),
                    None => "and no reader read the canary's lock back".into(),
                }
            )),
            _ if writer.is_none() => Enforcement::Unproven(
                "the writer was not probed (--only): it is the identity that may extend \
                 retention, so enforcement was not tried"
                    .into(),
            ),
            _ => Enforcement::Unknown(
                "the writer could not extend the canary's retention, so shortening it \
                 proves nothing"
                    .into(),
            ),
        };

        // Read the lock back: a refusal that shortened it anyway is no refusal.
        let Some(r) = readers.iter().find(|r| r.unusable.is_none()) else {
            return;
        };
        let (_, out) = attempt("reading the canary's retention back", || {
            r.s3.get_object_retention()
                .bucket(&bucket)
                .key(&key)
                .version_id(&version)
                .send()
        })
        .await;
        if let Some(seen) = out
            .and_then(|o| o.retention)
            .and_then(|r| r.retain_until_date)
            .map(chrono_time)
            && seen < until
            && !matches!(self.enforcement, Enforcement::NotEnforced(_))
        {
            self.enforcement = Enforcement::NotEnforced(format!(
                "the canary's retain-until date went back from {} to {} (read by the {})",
                at(until),
                at(seen),
                r.role.as_str()
            ));
        }
    }

    /// If any identity may delete versions, it tries the canary's real one: the lock
    /// must refuse it.
    async fn delete_the_canary(&mut self, idents: &[Ident]) {
        let Some((key, version)) = self.canary_ref() else {
            return;
        };
        let deleters: Vec<&str> = self
            .rows
            .iter()
            .filter(|r| r.action == matrix::DELETE_VERSION.action && r.observed.is_allowed())
            .map(|r| r.identity)
            .collect();
        let Some(id) = idents.iter().find(|i| deleters.contains(&i.role.as_str())) else {
            return;
        };
        let bucket = self.target.bucket.clone();
        let what = format!(
            "deleting the canary's locked version as the {}",
            id.role.as_str()
        );
        let (observed, out) = attempt(&what, || {
            id.s3
                .delete_object()
                .bucket(&bucket)
                .key(&key)
                .version_id(&version)
                .send()
        })
        .await;
        match observed {
            _ if out.is_some() => {
                self.enforcement = Enforcement::NotEnforced(format!(
                    "the {} deleted the canary's COMPLIANCE-locked version {version}",
                    id.role.as_str()
                ));
            }
            Observed::Denied(_) if !matches!(self.enforcement, Enforcement::NotEnforced(_)) => {
                self.enforcement = Enforcement::Enforced(format!(
                    "the {} may delete versions, yet the canary's locked version could not \
                     be deleted",
                    id.role.as_str()
                ));
            }
            _ => {}
        }
    }

    // ------------------------------------------------------------------ report

    fn report(mut self, json: bool) -> anyhow::Result<()> {
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

        let canary = self.canary.as_ref().map(|c| CanaryReport {
            key: c.key.clone(),
            version_id: c.version_id.clone(),
            from_an_earlier_run: self.from_earlier_run,
            lock_sent: c.sent.map(|(m, t)| LockSeen {
                by: "writer",
                mode: m.as_str().to_string(),
                retain_until: t,
            }),
            lock_seen: self.lock_seen.clone(),
        });
        for w in &self.warnings {
            eprintln!("warning: {w}");
        }
        if json {
            crate::report::print_json(&serde_json::json!({
                "target": self.describe(),
                "lock": self.settings.retention.source.as_str(),
                "canary": canary,
                "principals": self.principals,
                "iam": self.iam,
                "matrix": self.rows,
                "lock_enforcement": self.enforcement,
                "problems": problems,
                "warnings": self.warnings,
                "ok": code.is_none(),
                "exit_code": code.unwrap_or(ExitCode::Success) as i32,
            }));
        } else {
            self.print(canary.as_ref(), &problems, code);
        }
        match code {
            None => Ok(()),
            Some(code) => Err(summary(
                code,
                format!(
                    "vault doctor: {}: {}",
                    match code {
                        ExitCode::Integrity => "the vault is not safe",
                        ExitCode::AccessDenied => "an identity lacks a permission vault needs",
                        _ => "some checks could not be made",
                    },
                    problems
                        .iter()
                        .filter(|p| p.code == code)
                        .map(|p| p.message.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            )),
        }
    }

    fn describe(&self) -> String {
        let mut s = format!("s3://{}", self.target.bucket);
        if !self.target.prefix.is_empty() {
            s.push('/');
            s.push_str(&self.target.prefix);
        }
        if let Some(e) = &self.target.endpoint {
            s.push_str(&format!(" at {e}"));
        }
        s
    }

    fn print(&self, canary: Option<&CanaryReport>, problems: &[Problem], code: Option<ExitCode>) {
        println!(
            "vault doctor: {}, lock {}",
            self.describe(),
            self.settings.retention.source.as_str()
        );
        match canary {
            Some(c) => {
                let lock = match (&c.lock_seen, &c.lock_sent) {
                    (Some(l), _) => {
                        format!(
                            "{} until {} (read by the {})",
                            l.mode,
                            at(l.retain_until),
                            l.by
                        )
                    }
                    (None, Some(l)) => format!(
                        "{} until {} (as sent; no reader read it)",
                        l.mode,
                        at(l.retain_until)
                    ),
                    (None, None) => "lock not read".into(),
                };
                println!(
                    "canary: {} version {}{}: {lock}",
                    c.key,
                    c.version_id,
                    if c.from_an_earlier_run {
                        " (from an earlier run)"
                    } else {
                        ""
                    }
                );
            }
            None => println!("canary: none"),
        }
        println!();
        print!("{}", matrix::render(&self.rows));
        println!();
        let (state, detail) = match &self.enforcement {
            Enforcement::Enforced(d) => ("enforced", d),
            Enforcement::NotEnforced(d) => ("NOT ENFORCED", d),
            Enforcement::Unproven(d) => ("not proven", d),
            Enforcement::Unknown(d) => ("could not check", d),
        };
        println!("lock enforcement: {state}: {detail}");
        if !self.principals.is_empty() {
            println!("principals:");
            for p in &self.principals {
                println!(
                    "  {:<9} {} (access key {})",
                    p.identity,
                    p.arn.as_deref().unwrap_or("unknown"),
                    short_key(&p.access_key_id)
                );
            }
        }
        if let Some(iam) = &self.iam {
            println!(
                "IAM: the writer's {} is {} ({})",
                iam.action,
                iam.observed.word(),
                iam.observed.detail()
            );
        }
        if problems.is_empty() {
            println!(
                "\nok: every identity can do what vault needs and nothing more{}",
                if matches!(self.enforcement, Enforcement::Enforced(_)) {
                    ", and the backend enforces COMPLIANCE retention"
                } else {
                    ""
                }
            );
        } else {
            println!(
                "\nproblems (exit {}):",
                code.unwrap_or(ExitCode::Success) as i32
            );
            for p in problems {
                println!("  - [{}] {}", p.kind, p.message);
            }
        }
    }
}

/// Another version id of the same shape: the last character changed.
fn other_version_id(version: &str) -> String {
    let mut chars: Vec<char> = version.chars().collect();
    match chars.last_mut() {
        Some(last) => *last = if *last == '0' { '1' } else { '0' },
        None => return "vault-doctor-no-such-version".into(),
    }
    chars.into_iter().collect()
}

/// A date as shown to people: RFC 3339, whole seconds, `Z`.
fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_expectations() {
        assert_eq!(
            selected(&[]),
            [Role::Writer, Role::Verifier, Role::Restorer]
        );
        assert_eq!(
            selected(&["restorer".into(), "writer".into()]),
            [Role::Writer, Role::Restorer]
        );
        let per_object = LockSource::PerObject;
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

    #[test]
    fn another_version_id_differs_only_at_the_end() {
        assert_eq!(other_version_id("abc0"), "abc1");
        assert_eq!(other_version_id("abcd"), "abc0");
        assert_ne!(other_version_id(""), "");
    }
}
