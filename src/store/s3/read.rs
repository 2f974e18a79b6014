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

impl S3Store {
    /// [`Store::get`](crate::store::Store::get): one `GetObject`, the body streamed.
    pub(super) async fn get_object(
        &self,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectReader, Error> {
        let full = self.target.key_in_bucket(key);
        let what = format!("GetObject {}", self.url(&full));
        let out = send!(
            self.retry,
            self.role,
            &what,
            self.client
                .get_object()
                .bucket(&self.target.bucket)
                .key(&full)
                .set_version_id(version_id.map(str::to_string))
        )
        .await?;
        Ok(Box::new(out.body.into_async_read()))
    }

    /// [`Store::head`](crate::store::Store::head): one `HeadObject`, with the lock it
    /// reports (none when the identity may not read retention).
    pub(super) async fn head_object(
        &self,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectMeta, Error> {
        let full = self.target.key_in_bucket(key);
        let what = format!("HeadObject {}", self.url(&full));
        let out = send!(
            self.retry,
            self.role,
            &what,
            self.client
                .head_object()
                .bucket(&self.target.bucket)
                .key(&full)
                .set_version_id(version_id.map(str::to_string))
        )
        .await?;
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
        let what = format!("ListObjectsV2 {}", self.url(&full));
        let mut token: Option<String> = None;
        let mut out = Vec::new();
        loop {
            let page = send!(
                self.retry,
                self.role,
                &what,
                self.client
                    .list_objects_v2()
                    .bucket(&self.target.bucket)
                    .prefix(&full)
                    .set_continuation_token(token.clone())
            )
            .await?;
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
        let what = format!("ListObjectVersions {}", self.url(&full));
        let mut markers: (Option<String>, Option<String>) = (None, None);
        let mut out = Vec::new();
        loop {
            let page = send!(
                self.retry,
                self.role,
                &what,
                self.client
                    .list_object_versions()
                    .bucket(&self.target.bucket)
                    .prefix(&full)
                    .set_key_marker(markers.0.clone())
                    .set_version_id_marker(markers.1.clone())
            )
            .await?;
            let mut found = Vec::new();
            for v in page.versions.unwrap_or_default() {
                let Some(key) = v.key.as_deref().and_then(|k| self.target.key_in_vault(k)) else {
                    continue;
                };
                found.push(VersionInfo {
                    key: key.to_string(),
                    version_id: v.version_id,
                    delete_marker: false,
                    size: v.size.unwrap_or(0).max(0) as u64,
                    modified: v.last_modified.map(chrono_time),
                });
            }
            for m in page.delete_markers.unwrap_or_default() {
                let Some(key) = m.key.as_deref().and_then(|k| self.target.key_in_vault(k)) else {
                    continue;
                };
                found.push(VersionInfo {
                    key: key.to_string(),
                    version_id: m.version_id,
                    delete_marker: true,
                    size: 0,
                    modified: m.last_modified.map(chrono_time),
                });
            }
            // Versions and markers come in two lists: merge them back into key order,
            // newest first within a key.
            found.sort_by(|a, b| a.key.cmp(&b.key).then(b.modified.cmp(&a.modified)));
            out.extend(found);
            if page.is_truncated != Some(true) {
                break;
            }
            markers = (page.next_key_marker, page.next_version_id_marker);
        }
        out.sort_by(|a, b| a.key.cmp(&b.key).then(b.modified.cmp(&a.modified)));
        Ok(out)
    }
}
