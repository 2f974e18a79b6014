//! The canary the probes aim at: a few bytes under `<prefix>/.vault-doctor/`, put by
//! the writer exactly as it puts a backup (or, without the writer, the newest one an
//! earlier run left), read back by the readers, and its lock held against the lock it
//! must have.
//!
//! Uses `store::s3`'s public API and the `Store` trait only.

use aws_sdk_s3::Client;
use aws_sdk_s3::operation::delete_object::builders::DeleteObjectFluentBuilder;
use aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder;
use aws_sdk_s3::operation::get_object_retention::builders::GetObjectRetentionFluentBuilder;
use aws_sdk_s3::operation::put_object_retention::builders::PutObjectRetentionFluentBuilder;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ObjectLockEnabled, ObjectLockMode, ObjectLockRetention,
    ObjectLockRetentionMode,
};
use chrono::{DateTime, Duration, SubsecRound, Utc};

use super::identities::Ident;
use super::matrix::{self, Expect};
use super::probe::attempt_saying;
use super::{Doctor, LockSeen, RESERVED, at};
use crate::error::{Error, ExitCode};
use crate::retention::{LockMode, LockSource, Period};
use crate::store::Role;
use crate::store::s3::errors::Failure;
use crate::store::s3::{smithy_time, versioned};

/// How long a per-object canary is locked: long enough to finish the probes, short
/// enough that canaries do not pile up locked.
const CANARY_LOCK: Duration = Duration::days(1);

const CANARY_TEXT: &str = "vault doctor canary";

/// The canary the probes aim at.
pub(super) struct Canary {
    /// Its key in the bucket.
    pub(super) key: String,
    pub(super) version_id: String,
    /// The text written (`None` for a canary of an earlier run).
    pub(super) text: Option<String>,
    /// The lock the writer sent (per-object mode).
    pub(super) sent: Option<(LockMode, DateTime<Utc>)>,
    pub(super) put_at: DateTime<Utc>,
    /// The retain-until date as last known (sent, or read back).
    pub(super) until: Option<DateTime<Utc>>,
}

/// The canary as requests name it, in owned copies (a probe borrows them while it
/// records into the doctor). The requests that several probes send to the canary are
/// built here, once.
pub(super) struct Aim {
    pub(super) bucket: String,
    pub(super) key: String,
    pub(super) version: String,
}

impl Aim {
    /// GetObject of the canary's key (its current version).
    pub(super) fn get(&self, s3: &Client) -> GetObjectFluentBuilder {
        s3.get_object().bucket(&self.bucket).key(&self.key)
    }

    /// GetObject of the canary's own version.
    pub(super) fn get_version(&self, s3: &Client) -> GetObjectFluentBuilder {
        self.get(s3).version_id(&self.version)
    }

    pub(super) fn get_retention(&self, s3: &Client) -> GetObjectRetentionFluentBuilder {
        s3.get_object_retention()
            .bucket(&self.bucket)
            .key(&self.key)
            .version_id(&self.version)
    }

    /// Sets the canary version's COMPLIANCE retention to `until`.
    pub(super) fn put_retention(
        &self,
        s3: &Client,
        until: DateTime<Utc>,
    ) -> PutObjectRetentionFluentBuilder {
        s3.put_object_retention()
            .bucket(&self.bucket)
            .key(&self.key)
            .version_id(&self.version)
            .retention(
                ObjectLockRetention::builder()
                    .mode(ObjectLockRetentionMode::Compliance)
                    .retain_until_date(smithy_time(until))
                    .build(),
            )
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
    }

    /// DeleteObject of the canary's key: of `version`, or (without one) a delete
    /// marker.
    pub(super) fn delete(&self, s3: &Client, version: Option<&str>) -> DeleteObjectFluentBuilder {
        s3.delete_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .set_version_id(version.map(str::to_string))
    }
}

impl Doctor<'_> {
    /// The writer puts the canary exactly as it puts a backup. The bucket's refusal,
    /// if it refused it after authorising the writer, is returned to be explained
    /// ([`Doctor::canary_refused`]).
    pub(super) async fn put_canary(&mut self, w: &Ident) -> Option<Failure> {
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
        let (observed, out, failure) = self
            .probe_saying(w, matrix::PUT, Expect::Allowed, || {
                w.s3()
                    .put_object()
                    .bucket(bucket)
                    .key(&key)
                    .body(ByteStream::from(text.clone().into_bytes()))
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .set_if_none_match(conditional.then(|| "*".to_string()))
                    .set_object_lock_mode(sent.map(|_| ObjectLockMode::Compliance))
                    .set_object_lock_retain_until_date(sent.map(|(_, t)| smithy_time(t)))
                    .send()
            })
            .await;
        let Some(out) = out else {
            return failure.filter(|_| observed.is_allowed());
        };
        let Some(version_id) = versioned(out.version_id) else {
            self.problem(
                ExitCode::Integrity,
                "the bucket gave the canary no version id: versioning is off, so the \
                 bucket has no Object Lock and backups can be overwritten or deleted"
                    .into(),
            );
            return None;
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
        None
    }

    /// The bucket refused the canary, as it would refuse a backup. With lock headers
    /// sent, the likely cause is a bucket without Object Lock, where S3 refuses them: a
    /// reader's GetObjectLockConfiguration confirms it, and then that is the finding,
    /// not safe, in S3's words. Otherwise the refusal is reported as it came.
    pub(super) async fn canary_refused(&mut self, refusal: &Failure, readers: &[&Ident]) {
        let refused = refusal.summary();
        let lock_sent = self.settings.retention.source == LockSource::PerObject;
        let reader = readers.iter().find(|r| r.unusable.is_none());
        if lock_sent && let Some(r) = reader {
            let who = r.role().as_str();
            let bucket = &self.target.bucket;
            let what = format!("GetObjectLockConfiguration as the {who}");
            let (observed, out, failure) = attempt_saying(&what, || {
                r.s3().get_object_lock_configuration().bucket(bucket).send()
            })
            .await;
            let enabled = out
                .and_then(|o| o.object_lock_configuration)
                .and_then(|c| c.object_lock_enabled);
            let none = match (&failure, enabled) {
                (Some(f), _)
                    if f.code.as_deref() == Some("ObjectLockConfigurationNotFoundError") =>
                {
                    Some(f.summary())
                }
                (None, e) if observed.is_accepted() && e != Some(ObjectLockEnabled::Enabled) => {
                    Some("a configuration without ObjectLockEnabled".into())
                }
                _ => None,
            };
            if let Some(none) = none {
                self.no_object_lock = Some(format!(
                    "the bucket has no Object Lock, so nothing in it can be locked: S3 refused \
                     the canary's lock headers ({refused}), and GetObjectLockConfiguration as \
                     the {who} answered {none}; put the vault in a bucket created with Object \
                     Lock (iam.md §5)"
                ));
                return;
            }
        }
        self.problem(
            ExitCode::Failure,
            format!(
                "the bucket refused the canary ({refused}): a backup would fail the same way{}",
                if lock_sent {
                    "; does the bucket have Object Lock?"
                } else {
                    ""
                }
            ),
        );
    }

    /// Without the writer: the newest canary of an earlier run, found by a reader.
    pub(super) async fn find_canary(&mut self, readers: &[&Ident]) {
        let Some(reader) = readers.iter().find(|r| r.unusable.is_none()) else {
            return;
        };
        let found = async {
            let store = crate::commands::open_store(self.settings, reader.role()).await?;
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
                    reader.role().as_str()
                ),
            ),
        }
    }

    /// Where the probes aim, while there is a canary.
    pub(super) fn aim(&self) -> Option<Aim> {
        self.canary.as_ref().map(|c| Aim {
            bucket: self.target.bucket.clone(),
            key: c.key.clone(),
            version: c.version_id.clone(),
        })
    }

    /// The canary read back must be what was written.
    pub(super) async fn check_text(&mut self, role: Role, body: ByteStream) {
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
    pub(super) fn check_lock(
        &mut self,
        role: Role,
        mode: Option<String>,
        until: Option<DateTime<Utc>>,
    ) {
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

    /// An earlier run's canary whose lock has ended (or is about to) tests nothing:
    /// the probes after the reads go without it.
    pub(super) fn forget_a_spent_canary(&mut self) {
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
    }
}
