//! What an S3 bucket says about its own protection, for `vault verify`: versioning,
//! the Object Lock configuration and default retention, lifecycle rules that expire
//! current versions, and whether a policy is set.
//!
//! Each part is read on its own, so that an identity lacking one permission still
//! learns the rest; "not configured" answers are facts, not failures. Must not import
//! `config` or anything above the store.

use aws_sdk_s3::types::{ExpirationStatus, ObjectLockEnabled, ObjectLockRetentionMode};

use super::{S3Store, chrono_time};
use crate::error::Error;
use crate::retention::{LockMode, Period};
use crate::store::{BucketSettings, ExpiryRule, ObjectLockSettings};

impl S3Store {
    /// [`Store::bucket_settings`](crate::store::Store::bucket_settings) for S3.
    pub(super) async fn read_bucket_settings(&self) -> Result<Option<BucketSettings>, Error> {
        let bucket = &self.target.bucket;
        let what = |op: &str| format!("{op} s3://{bucket}");
        // "Not configured" answers are facts, not failures.
        let absent = |e: Error| match e {
            Error::NotFound(_) => Ok(None),
            other => Err(other),
        };
        let versioning = send!(
            self.retry,
            self.role,
            &what("GetBucketVersioning"),
            self.client.get_bucket_versioning().bucket(bucket)
        )
        .await
        .map(|out| {
            out.status
                .map(|s| s.as_str().to_string())
                .unwrap_or_default()
        });
        let object_lock = send!(
            self.retry,
            self.role,
            &what("GetObjectLockConfiguration"),
            self.client.get_object_lock_configuration().bucket(bucket)
        )
        .await
        .map(|out| {
            out.object_lock_configuration.map(|c| {
                let default = c.rule.and_then(|r| r.default_retention).and_then(|d| {
                    let mode = match d.mode? {
                        ObjectLockRetentionMode::Governance => LockMode::Governance,
                        _ => LockMode::Compliance,
                    };
                    let period = match (d.days, d.years) {
                        (Some(days), _) if days > 0 => Period::Days(days as u32),
                        (_, Some(years)) if years > 0 => Period::Months(years as u32 * 12),
                        _ => return None,
                    };
                    Some((mode, period))
                });
                ObjectLockSettings {
                    enabled: c.object_lock_enabled == Some(ObjectLockEnabled::Enabled),
                    default,
                }
            })
        })
        .or_else(|e| match e {
            // AWS answers a bucket without a lock configuration with this code and 404.
            Error::Store { ref message, .. }
                if message.contains("ObjectLockConfigurationNotFound") =>
            {
                Ok(None)
            }
            other => absent(other),
        });
        let expiry_rules = send!(
            self.retry,
            self.role,
            &what("GetBucketLifecycleConfiguration"),
            self.client
                .get_bucket_lifecycle_configuration()
                .bucket(bucket)
        )
        .await
        .map(|out| {
            out.rules
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r.status == ExpirationStatus::Enabled)
                .filter_map(|r| {
                    let exp = r.expiration?;
                    if exp.days.is_none() && exp.date.is_none() {
                        return None; // only expired-object delete marker clean-up
                    }
                    #[allow(deprecated)]
                    let prefix = r
                        .filter
                        .and_then(|f| f.prefix)
                        .or(r.prefix)
                        .unwrap_or_default();
                    Some(ExpiryRule {
                        id: r.id.unwrap_or_default(),
                        prefix,
                        days: exp.days,
                        date: exp.date.map(chrono_time),
                    })
                })
                .collect()
        })
        .or_else(|e| absent(e).map(|_| Vec::new()));
        let policy = send!(
            self.retry,
            self.role,
            &what("GetBucketPolicy"),
            self.client.get_bucket_policy().bucket(bucket)
        )
        .await
        .map(|out| out.policy.is_some_and(|p| !p.trim().is_empty()))
        .or_else(|e| absent(e).map(|_| false));
        Ok(Some(BucketSettings {
            versioning,
            object_lock,
            expiry_rules,
            policy,
        }))
    }
}
