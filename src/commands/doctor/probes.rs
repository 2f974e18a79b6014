//! The per-identity probes: reads, lists, writes, deletes and bucket changes, each
//! sent as one identity and recorded in the matrix against what that identity must be
//! allowed.
//!
//! Every probe is harmless even when the identity is wrongly allowed: it targets the
//! canary, a version or upload that does not exist, or carries a body S3 refuses
//! after authorising it. Sends through the identity's `store::s3::Session` client,
//! never a store's internals; what an answer means is `probe`'s.

use std::future::Future;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object_retention::GetObjectRetentionOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketVersioningStatus, ChecksumAlgorithm, DefaultRetention,
    ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter,
    ObjectLockConfiguration, ObjectLockEnabled, ObjectLockLegalHold, ObjectLockLegalHoldStatus,
    ObjectLockRetentionMode, ObjectLockRule, VersioningConfiguration,
};

use super::Doctor;
use super::canary::Aim;
use super::findings::{LOCK_NOT_CONFIRMED, NO_CANARY, NO_CANARY_TO_KEEP_THE_BUCKET};
use super::identities::Ident;
use super::matrix::{self, Action, Expect};
use super::probe::{Observed, attempt_saying};
use crate::error::ExitCode;
use crate::retention::LockSource;
use crate::store::Role;
use crate::store::s3::chrono_time;
use crate::store::s3::errors::Failure;

impl Doctor<'_> {
    /// Sends one probe as `id` and records it in the matrix: `send` sends the request,
    /// built afresh for every attempt. An identity without usable credentials is not
    /// sent anything; its row says why.
    pub(super) async fn probe<T, E, F, Fut>(
        &mut self,
        id: &Ident,
        action: Action,
        expect: Expect,
        send: F,
    ) -> (Observed, Option<T>)
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        let (observed, out, _) = self.probe_saying(id, action, expect, send).await;
        (observed, out)
    }

    /// [`Doctor::probe`], with the failure read when the request failed (S3's code
    /// and words; see [`attempt_saying`]).
    pub(super) async fn probe_saying<T, E, F, Fut>(
        &mut self,
        id: &Ident,
        action: Action,
        expect: Expect,
        send: F,
    ) -> (Observed, Option<T>, Option<Failure>)
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        match &id.unusable {
            Some(why) => {
                let skipped = Observed::Skipped(why.clone());
                self.record(id.role(), action, expect, skipped.clone());
                (skipped, None, None)
            }
            None => {
                let what = format!("{} as the {}", action.probe, id.role().as_str());
                let (observed, out, failure) = attempt_saying(&what, send).await;
                self.record(id.role(), action, expect, observed.clone());
                (observed, out, failure)
            }
        }
    }

    /// A reader reads the canary back, its lock, and lists.
    pub(super) async fn reads(&mut self, r: &Ident) {
        let role = r.role();
        self.lists(r).await;
        let Some(aim) = self.aim() else {
            self.skip_gets(role);
            return;
        };
        let read = self.gets(r, &aim).await;
        for body in [read.object, read.version].into_iter().flatten() {
            self.check_text(role, body).await;
        }
        let (observed, out) = read.retention;
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

    /// The writer must not read or list anything.
    pub(super) async fn writer_reads(&mut self, w: &Ident) {
        self.lists(w).await;
        let bucket = self.target.bucket.clone();
        self.probe(w, matrix::GET_LOCK_CONFIG, Expect::Denied, || {
            w.s3()
                .get_object_lock_configuration()
                .bucket(&bucket)
                .send()
        })
        .await;
        // Without s3:ListBucket, S3 answers a missing key with 403 too: these need
        // the canary to mean anything.
        let Some(aim) = self.aim() else {
            self.skip_gets(Role::Writer);
            return;
        };
        self.gets(w, &aim).await;
    }

    /// Lists the reserved prefix, its objects and its versions.
    async fn lists(&mut self, id: &Ident) {
        let bucket = self.target.bucket.clone();
        let reserved = self.reserved.clone();
        let e_list = self.expect(id.role(), matrix::LIST);
        self.probe(id, matrix::LIST, e_list, || {
            id.s3()
                .list_objects_v2()
                .bucket(&bucket)
                .prefix(&reserved)
                .max_keys(1)
                .send()
        })
        .await;
        let e_versions = self.expect(id.role(), matrix::LIST_VERSIONS);
        self.probe(id, matrix::LIST_VERSIONS, e_versions, || {
            id.s3()
                .list_object_versions()
                .bucket(&bucket)
                .prefix(&reserved)
                .max_keys(1)
                .send()
        })
        .await;
    }

    /// Gets the canary, its version, and its retention; what came back is a reader's
    /// to check.
    async fn gets(&mut self, id: &Ident, aim: &Aim) -> ReadBack {
        let role = id.role();
        let e_get = self.expect(role, matrix::GET);
        let (_, object) = self
            .probe(id, matrix::GET, e_get, || aim.get(id.s3()).send())
            .await;
        let e_version = self.expect(role, matrix::GET_VERSION);
        let (_, version) = self
            .probe(id, matrix::GET_VERSION, e_version, || {
                aim.get_version(id.s3()).send()
            })
            .await;
        let e_retention = self.expect(role, matrix::GET_RETENTION);
        let retention = self
            .probe(id, matrix::GET_RETENTION, e_retention, || {
                aim.get_retention(id.s3()).send()
            })
            .await;
        ReadBack {
            object: object.map(|o| o.body),
            version: version.map(|o| o.body),
            retention,
        }
    }

    fn skip_gets(&mut self, role: Role) {
        for a in [matrix::GET, matrix::GET_VERSION, matrix::GET_RETENTION] {
            self.skip(role, a, NO_CANARY);
        }
    }

    /// Readers must not write: a put over the canary with If-None-Match (refused with
    /// 412 once authorised, so nothing is written), and every identity's right to
    /// abort uploads, on an upload that does not exist.
    pub(super) async fn writes(&mut self, id: &Ident) {
        let bucket = self.target.bucket.clone();
        let no_upload = format!("{}no-such-upload", self.reserved);
        let e_abort = self.expect(id.role(), matrix::ABORT_UPLOAD);
        self.probe(id, matrix::ABORT_UPLOAD, e_abort, || {
            id.s3()
                .abort_multipart_upload()
                .bucket(&bucket)
                .key(&no_upload)
                .upload_id("vault-doctor-no-such-upload")
                .send()
        })
        .await;
        if id.role() == Role::Writer {
            return; // its put is the canary itself
        }
        let Some(aim) = self.aim() else {
            self.skip(id.role(), matrix::PUT, NO_CANARY);
            return;
        };
        self.probe(id, matrix::PUT, Expect::Denied, || {
            id.s3()
                .put_object()
                .bucket(&aim.bucket)
                .key(&aim.key)
                .body(ByteStream::from_static(
                    b"vault doctor: this must never be stored\n",
                ))
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .if_none_match("*")
                .send()
        })
        .await;
    }

    /// Nobody may delete: a version that does not exist, a delete marker on the
    /// canary (it hides nothing else), a legal hold switched OFF (a no-op). The pruner
    /// alone may add the delete marker: that is how it prunes.
    pub(super) async fn deletes(&mut self, id: &Ident) {
        let Some(aim) = self.aim() else {
            for a in [matrix::LEGAL_HOLD, matrix::DELETE_VERSION, matrix::DELETE] {
                self.skip(id.role(), a, NO_CANARY);
            }
            return;
        };
        let bogus = other_version_id(&aim.version);
        self.probe(id, matrix::LEGAL_HOLD, Expect::Denied, || {
            id.s3()
                .put_object_legal_hold()
                .bucket(&aim.bucket)
                .key(&aim.key)
                .version_id(&aim.version)
                .legal_hold(
                    ObjectLockLegalHold::builder()
                        .status(ObjectLockLegalHoldStatus::Off)
                        .build(),
                )
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .send()
        })
        .await;
        self.probe(id, matrix::DELETE_VERSION, Expect::Denied, || {
            aim.delete(id.s3(), Some(&bogus)).send()
        })
        .await;
        let marker = if id.role() == Role::Pruner {
            Expect::Allowed
        } else {
            Expect::Denied
        };
        self.probe(id, matrix::DELETE, marker, || {
            aim.delete(id.s3(), None).send()
        })
        .await;
    }

    /// Nobody may change or delete the bucket; every request is one S3 refuses after
    /// authorising it.
    pub(super) async fn bucket_changes(&mut self, id: &Ident) {
        let bucket = self.target.bucket.clone();
        self.probe(id, matrix::PUT_POLICY, Expect::Denied, || {
            id.s3()
                .put_bucket_policy()
                .bucket(&bucket)
                .policy("vault doctor: not a policy, refused as malformed once authorised")
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .send()
        })
        .await;
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
        self.probe(id, matrix::PUT_LIFECYCLE, Expect::Denied, || {
            id.s3()
                .put_bucket_lifecycle_configuration()
                .bucket(&bucket)
                .lifecycle_configuration(lifecycle.clone())
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .send()
        })
        .await;
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
        self.probe(id, matrix::PUT_LOCK_CONFIG, Expect::Denied, || {
            id.s3()
                .put_object_lock_configuration()
                .bucket(&bucket)
                .object_lock_configuration(lock.clone())
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .send()
        })
        .await;
        if self.lock_confirmed {
            self.probe(id, matrix::PUT_VERSIONING, Expect::Denied, || {
                id.s3()
                    .put_bucket_versioning()
                    .bucket(&bucket)
                    .versioning_configuration(
                        VersioningConfiguration::builder()
                            .status(BucketVersioningStatus::Suspended)
                            .build(),
                    )
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .send()
            })
            .await;
        } else {
            self.skip(id.role(), matrix::PUT_VERSIONING, LOCK_NOT_CONFIRMED);
        }
        if self.canary.is_some() {
            self.probe(id, matrix::DELETE_BUCKET, Expect::Denied, || {
                id.s3().delete_bucket().bucket(&bucket).send()
            })
            .await;
        } else {
            self.skip(
                id.role(),
                matrix::DELETE_BUCKET,
                NO_CANARY_TO_KEEP_THE_BUCKET,
            );
        }
    }
}

/// What [`Doctor::gets`] brought back: the bodies read, and the retention answer.
struct ReadBack {
    object: Option<ByteStream>,
    version: Option<ByteStream>,
    retention: (Observed, Option<GetObjectRetentionOutput>),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_version_id_differs_only_at_the_end() {
        assert_eq!(other_version_id("abc0"), "abc1");
        assert_eq!(other_version_id("abcd"), "abc0");
        assert_ne!(other_version_id(""), "");
    }
}
