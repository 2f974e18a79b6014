//! Bucket checks: the settings that make the vault's objects immutable.

use serde::Serialize;

use super::judge::Finding;
use crate::config::Settings;
use crate::retention::{LockMode, LockSource, Period};
use crate::store::{BucketSettings, Store, Target};

/// One line of the bucket report.
#[derive(Debug, Serialize)]
pub struct Check {
    pub check: &'static str,
    /// What the bucket says.
    pub observed: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finding: Option<Finding>,
}

/// Reads the bucket's settings and judges them against the config; empty for a store
/// that has none (a local directory: its weakness is said as a warning elsewhere).
pub async fn check(store: &dyn Store, settings: &Settings) -> Vec<Check> {
    match store.bucket_settings().await {
        Ok(None) => Vec::new(),
        Ok(Some(b)) => judge(&b, settings),
        Err(e) => vec![Check {
            check: "bucket",
            observed: "unreadable".into(),
            finding: Some(Finding::from_store_error(e)),
        }],
    }
}

fn judge(b: &BucketSettings, settings: &Settings) -> Vec<Check> {
    let mut out = Vec::new();
    let unreadable = |check, e: &crate::error::Error| Check {
        check,
        observed: "unreadable".into(),
        finding: Some(Finding::from_store_error(e.clone())),
    };

    out.push(match &b.versioning {
        Err(e) => unreadable("versioning", e),
        Ok(status) if status == "Enabled" => Check {
            check: "versioning",
            observed: status.clone(),
            finding: None,
        },
        Ok(status) => Check {
            check: "versioning",
            observed: if status.is_empty() {
                "off".into()
            } else {
                status.clone()
            },
            finding: Some(Finding::integrity(
                "bucket versioning is not enabled: objects can be overwritten or deleted",
            )),
        },
    });

    let policy = &settings.retention;
    out.push(match &b.object_lock {
        Err(e) => unreadable("object lock", e),
        Ok(None) | Ok(Some(crate::store::ObjectLockSettings { enabled: false, .. })) => Check {
            check: "object lock",
            observed: "not enabled".into(),
            finding: Some(Finding::integrity(
                "Object Lock is not enabled on the bucket: backups are not immutable",
            )),
        },
        Ok(Some(lock)) => {
            let observed = match lock.default {
                Some((mode, period)) => format!("enabled, default {} {period}", mode.as_str()),
                None => "enabled, no default retention".into(),
            };
            let finding = match (policy.source, lock.default) {
                (LockSource::BucketDefault, None) => Some(Finding::integrity(
                    "lock = \"bucket-default\" but the bucket has no default retention: new \
                     backups are stored unlocked",
                )),
                (LockSource::BucketDefault, Some((mode, period)))
                    if mode != policy.mode || period != policy.daily =>
                {
                    Some(Finding::integrity(format!(
                        "the bucket's default retention is {} {period}, the config says {} {} \
                         ([retention] mode, bucket_default)",
                        mode.as_str(),
                        policy.mode.as_str(),
                        policy.daily
                    )))
                }
                (_, Some((LockMode::Governance, _))) => Some(Finding::warning(
                    "the bucket's default retention mode is GOVERNANCE: a principal with \
                     s3:BypassGovernanceRetention can delete locked versions",
                )),
                (LockSource::PerObject, None) => Some(Finding::warning(
                    "the bucket has no default retention: an object written without lock \
                     headers (not by vault) is unlocked",
                )),
                _ => None,
            };
            Check {
                check: "object lock",
                observed,
                finding,
            }
        }
    });

    out.push(match &b.expiry_rules {
        Err(e) => unreadable("lifecycle", e),
        Ok(rules) => {
            let prefix = vault_prefix(settings);
            let longest = [policy.daily, policy.weekly, policy.monthly, policy.yearly]
                .into_iter()
                .map(period_days)
                .max()
                .unwrap_or(0);
            let early: Vec<String> = rules
                .iter()
                .filter(|r| prefix.starts_with(&r.prefix) || r.prefix.starts_with(&prefix))
                .filter(|r| r.date.is_some() || r.days.is_some_and(|d| i64::from(d) < longest))
                .map(|r| match (r.days, r.date) {
                    (Some(d), _) => {
                        format!("rule `{}` (prefix `{}`) after {d} days", r.id, r.prefix)
                    }
                    (_, Some(t)) => format!(
                        "rule `{}` (prefix `{}`) on {}",
                        r.id,
                        r.prefix,
                        t.date_naive()
                    ),
                    _ => format!("rule `{}`", r.id),
                })
                .collect();
            Check {
                check: "lifecycle",
                observed: if rules.is_empty() {
                    "no rule expires current versions".into()
                } else {
                    format!("{} rule(s) expire current versions", rules.len())
                },
                finding: (!early.is_empty()).then(|| {
                    Finding::integrity(format!(
                        "lifecycle would expire current vault objects before their retention \
                         ends (longest {longest} days), hiding backups behind delete markers: {}",
                        early.join("; ")
                    ))
                }),
            }
        }
    });

    out.push(match &b.policy {
        Err(e) => unreadable("bucket policy", e),
        Ok(true) => Check {
            check: "bucket policy",
            observed: "present".into(),
            finding: None,
        },
        Ok(false) => Check {
            check: "bucket policy",
            observed: "none".into(),
            finding: Some(Finding::warning(
                "the bucket has no policy: the guard rails of deploy/iam/bucket-policy.json \
                 (deny version deletes, deny the vault roles bucket changes) are missing",
            )),
        },
    });
    out
}

/// The key prefix every vault object starts with, as lifecycle rules see it.
fn vault_prefix(settings: &Settings) -> String {
    let target = match &settings.target {
        Target::S3(t) => t.prefix.clone(),
        Target::Local(_) => String::new(),
    };
    let layout = settings.layout.job_root("");
    let layout = layout.trim_end_matches('/');
    [target.as_str(), layout]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

fn period_days(p: Period) -> i64 {
    match p {
        Period::Days(d) => i64::from(d),
        Period::Months(m) => i64::from(m) * 31,
    }
}
