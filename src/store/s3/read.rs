//! The read side of the S3 store: get and head one object (a version of it), list a
//! prefix's objects and all its versions, page by page.
//!
//! Keys are turned from vault keys into bucket keys and back here; a listed key
//! outside the target's prefix is skipped. Must not import `config` or anything
//! above the store.

use aws_sdk_s3::types::ObjectLockMode;

use super::{S3Store, chrono_time};
use crate::error::Error;
use crate::retention::{Lock, LockMode};
use crate::store::{ObjectMeta, ObjectReader, VersionInfo};

/// `$op` on one version of vault key `$key` (the newest when `$version` is `None`).
macro_rules! send_version {
    ($store:expr, $op:literal, $method:ident, $key:expr, $version:expr) => {
        send_for!(
            $store,
            $op,
            $method,
            key = &$store.target.key_in_bucket($key),
            .set_version_id($version.map(str::to_string)),
        )
    };
}

impl S3Store {
    /// [`Store::get`](crate::store::Store::get): one `GetObject`, the body streamed.
    pub(super) async fn get_object(
        &self,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectReader, Error> {
        let out = send_version!(self, "GetObject", get_object, key, version_id)?;
        Ok(Box::new(out.body.into_async_read()))
    }

    /// [`Store::head`](crate::store::Store::head): one `HeadObject`, with the lock it
    /// reports (none when the identity may not read retention).
    pub(super) async fn head_object(
        &self,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectMeta, Error> {
        let out = send_version!(self, "HeadObject", head_object, key, version_id)?;
        let lock = match (out.object_lock_mode, out.object_lock_retain_until_date) {
            (Some(mode), Some(until)) => Some(Lock {
                mode: match mode {
                    ObjectLockMode::Governance => LockMode::Governance,
                    _ => LockMode::Compliance,
                },
                retain_until: chrono_time(until),
            }),
            _ => None,
        };
        Ok(ObjectMeta {
            key: key.to_string(),
            size: out.content_length.unwrap_or(0).max(0) as u64,
            version_id: out.version_id,
            lock,
            modified: out.last_modified.map(chrono_time),
        })
    }

    /// [`Store::list`](crate::store::Store::list): `ListObjectsV2`, every page.
    pub(super) async fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectMeta>, Error> {
        let full = self.target.key_in_bucket(prefix);
        let mut token: Option<String> = None;
        let mut out = Vec::new();
        loop {
            let page = send_for!(
                self,
                "ListObjectsV2",
                list_objects_v2,
                prefix = &full,
                .set_continuation_token(token.clone()),
            )?;
            for obj in page.contents.unwrap_or_default() {
                let Some(key) = obj.key.as_deref().and_then(|k| self.target.key_in_vault(k)) else {
                    continue;
                };
                out.push(ObjectMeta {
                    key: key.to_string(),
                    size: obj.size.unwrap_or(0).max(0) as u64,
                    version_id: None,
                    lock: None,
                    modified: obj.last_modified.map(chrono_time),
                });
            }
            token = page.next_continuation_token;
            if token.is_none() || page.is_truncated != Some(true) {
                break;
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// [`Store::all_versions`](crate::store::Store::all_versions): `ListObjectVersions`,
    /// every page, versions and delete markers merged.
    pub(super) async fn list_versions(&self, prefix: &str) -> Result<Vec<VersionInfo>, Error> {
        let full = self.target.key_in_bucket(prefix);
        let mut markers: (Option<String>, Option<String>) = (None, None);
        let mut out = Vec::new();
        loop {
            let page = send_for!(
                self,
                "ListObjectVersions",
                list_object_versions,
                prefix = &full,
                .set_key_marker(markers.0.clone()),
                .set_version_id_marker(markers.1.clone()),
            )?;
            let entry = |key: Option<String>,
                         version_id,
                         delete_marker,
                         size: Option<i64>,
                         modified: Option<aws_smithy_types::DateTime>| {
                let key = self.target.key_in_vault(key.as_deref()?)?.to_string();
                Some(VersionInfo {
                    key,
                    version_id,
                    delete_marker,
                    size: size.unwrap_or(0).max(0) as u64,
                    modified: modified.map(chrono_time),
                })
            };
            let versions = page.versions.unwrap_or_default().into_iter();
            let deleted = page.delete_markers.unwrap_or_default().into_iter();
            let mut found: Vec<VersionInfo> = versions
                .filter_map(|v| entry(v.key, v.version_id, false, v.size, v.last_modified))
                .chain(
                    deleted.filter_map(|m| entry(m.key, m.version_id, true, None, m.last_modified)),
                )
                .collect();
            // Versions and markers come in two lists: merge them back into key order,
            // newest first within a key.
            found.sort_by(newest_first);
            out.extend(found);
            if page.is_truncated != Some(true) {
                break;
            }
            markers = (page.next_key_marker, page.next_version_id_marker);
        }
        out.sort_by(newest_first);
        Ok(out)
    }
}

/// Key order, newest first within a key. Times have whole-second precision, so a
/// delete marker added in the second its version was written ties with it: the marker
/// goes first, as it can only have come after (vault writes each key once).
fn newest_first(a: &VersionInfo, b: &VersionInfo) -> std::cmp::Ordering {
    a.key
        .cmp(&b.key)
        .then(b.modified.cmp(&a.modified))
        .then(b.delete_marker.cmp(&a.delete_marker))
}
