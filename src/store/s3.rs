//! The S3 store: a bucket with Object Lock, written by an identity that cannot read.
//!
//! - Writes stream: the first part is buffered; a stream that ends within it is one
//!   `PutObject`, a longer one a multipart upload with at most `upload_concurrency`
//!   parts in flight (memory ≈ part size × (concurrency + 1)). Part sizes grow every
//!   1,000 parts so that a stream of unknown length can reach S3's 5 TiB object limit
//!   within its 10,000 parts.
//! - Every `PutObject` and `UploadPart` carries a CRC32 checksum (S3 refuses
//!   lock-governed uploads without one), and every create carries `If-None-Match: *`
//!   (unless `conditional_writes = false`) so that a key is never replaced.
//! - Lock headers (mode + retain-until) are sent when [`PutOptions::lock`] is set; in
//!   bucket-default mode none are sent and the bucket's default retention applies.
//! - A failed or abandoned multipart upload is aborted (best effort; the bucket's
//!   `AbortIncompleteMultipartUpload` lifecycle rule is the backstop). The backup
//!   path calls no read API: no Get, Head or List.
//! - Requests are retried only through [`Retry`], never by the SDK.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ExpirationStatus,
    ObjectLockEnabled, ObjectLockMode, ObjectLockRetentionMode,
};
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use tokio::task::JoinSet;

use super::{
    BucketSettings, ExpiryRule, ObjectLockSettings, ObjectMeta, ObjectReader, PutOptions,
    PutReceipt, Role, Store, VersionInfo,
};
use crate::error::Error;
use crate::pipe::PipeReader;
use crate::retention::{Lock, LockMode, Period};
use crate::retry::Retry;
use crate::units::parse_size;

pub mod auth;

pub use auth::Identity;

/// One S3 request through the retry wrapper: `$build` makes the request afresh for
/// every attempt, and a failure is classified for `$role`. Evaluates to the future.
macro_rules! send {
    ($retry:expr, $role:expr, $what:expr, $build:expr) => {
        $retry.run($what, || {
            let req = $build;
            async { req.send().await.map_err(|e| classify($what, $role, e)) }
        })
    };
}

const MIB: u64 = 1 << 20;
/// S3's limits.
const MAX_PARTS: u32 = 10_000;
const MIN_PART: u64 = 5 * MIB;
const MAX_PART: u64 = 5 * 1024 * MIB;
/// The smallest configurable first part: with doubling every 1,000 parts it still
/// reaches 5 TiB within 10,000 parts.
pub const MIN_FIRST_PART: u64 = 8 * MIB;
const DEFAULT_PART: u64 = 16 * MIB;
const DEFAULT_CONCURRENCY: usize = 4;

/// The S3 keys of `[vault]`, as written; [`S3Target::apply`] validates them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub path_style: Option<bool>,
    pub part_size: Option<String>,
    pub upload_concurrency: Option<usize>,
    pub conditional_writes: Option<bool>,
}

impl Options {
    /// The keys that are set, by name.
    pub fn given(&self) -> Vec<&'static str> {
        [
            ("region", self.region.is_some()),
            ("endpoint", self.endpoint.is_some()),
            ("path_style", self.path_style.is_some()),
            ("part_size", self.part_size.is_some()),
            ("upload_concurrency", self.upload_concurrency.is_some()),
            ("conditional_writes", self.conditional_writes.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(k, _)| k)
        .collect()
    }
}

/// A validated `s3://bucket/prefix` target with its `[vault]` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Target {
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/`.
    pub prefix: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub path_style: bool,
    pub part_size: u64,
    pub upload_concurrency: usize,
    pub conditional_writes: bool,
}

impl S3Target {
    /// Parses `s3://bucket[/prefix]`.
    pub fn parse(value: &str) -> Result<S3Target, String> {
        let rest = value
            .strip_prefix("s3://")
            .ok_or_else(|| format!("`{value}` is not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !valid {
            return Err(format!(
                "`{value}`: `{bucket}` is not a valid bucket name (3-63 lowercase letters, \
                 digits, dots and hyphens)"
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
            return Err(format!("`{value}`: the key prefix `{prefix}` is not clean"));
        }
        Ok(S3Target {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            region: None,
            endpoint: None,
            path_style: false,
            part_size: DEFAULT_PART,
            upload_concurrency: DEFAULT_CONCURRENCY,
            conditional_writes: true,
        })
    }

    /// Applies the S3 keys of `[vault]`.
    pub fn apply(&mut self, options: &Options) -> Result<(), String> {
        let Options {
            region,
            endpoint,
            path_style,
            part_size,
            upload_concurrency,
            conditional_writes,
        } = options;
        if let Some(e) = endpoint
            && !(e.starts_with("https://") || e.starts_with("http://"))
        {
            return Err(format!(
                "endpoint `{e}` must start with https:// or http://"
            ));
        }
        // S3-compatible services behind a custom endpoint mostly want path-style.
        self.path_style = path_style.unwrap_or(endpoint.is_some());
        self.region = region.clone();
        self.endpoint = endpoint.clone();
        if let Some(size) = part_size {
            let bytes = parse_size(size).map_err(|e| format!("part_size: {e}"))?;
            if !(MIN_FIRST_PART..=MAX_PART).contains(&bytes) {
                return Err(format!(
                    "part_size `{size}` must be between 8MiB and 5GiB (S3 allows at most \
                     10,000 parts; vault doubles the part size every 1,000 parts)"
                ));
            }
            self.part_size = bytes;
        }
        if let Some(n) = *upload_concurrency {
            if !(1..=64).contains(&n) {
                return Err(format!("upload_concurrency {n} must be between 1 and 64"));
            }
            self.upload_concurrency = n;
        }
        if let Some(c) = *conditional_writes {
            self.conditional_writes = c;
        }
        Ok(())
    }

    /// The key in the bucket of a vault key: the target's prefix, then `key`.
    pub(crate) fn key_in_bucket(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// The size of part `number` (1-based): the configured size, doubled every 1,000
    /// parts, at most 5 GiB.
    pub fn part_size_of(&self, number: u32) -> u64 {
        let doublings = (number.saturating_sub(1) / 1000).min(20);
        (self.part_size << doublings).clamp(MIN_PART, MAX_PART)
    }
}

pub struct S3Store {
    client: Client,
    target: S3Target,
    role: Role,
    retry: Retry,
}

impl S3Store {
    /// Builds a client with `role`'s identity. Credentials are resolved lazily, on the
    /// first request.
    pub async fn open(
        target: &S3Target,
        identity: &Identity,
        role: Role,
    ) -> Result<S3Store, Error> {
        let sdk = auth::sdk_config(identity, role, target.region.as_deref()).await?;
        let mut conf = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(target.path_style);
        if let Some(endpoint) = &target.endpoint {
            conf = conf.endpoint_url(endpoint);
        }
        Ok(S3Store {
            client: Client::from_conf(conf.build()),
            target: target.clone(),
            role,
            retry: Retry::default(),
        })
    }

    fn full_key(&self, key: &str) -> String {
        if self.target.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.target.prefix)
        }
    }

    fn relative<'k>(&self, full: &'k str) -> Option<&'k str> {
        if self.target.prefix.is_empty() {
            Some(full)
        } else {
            full.strip_prefix(&self.target.prefix)?.strip_prefix('/')
        }
    }

    fn url(&self, full: &str) -> String {
        format!("s3://{}/{full}", self.target.bucket)
    }

    async fn put_single(
        &self,
        full: &str,
        data: Bytes,
        lock: Option<Lock>,
    ) -> Result<PutReceipt, Error> {
        let size = data.len() as u64;
        let what = format!("PutObject {}", self.url(full));
        let out = send!(
            self.retry,
            self.role,
            &what,
            self.client
                .put_object()
                .bucket(&self.target.bucket)
                .key(full)
                .body(ByteStream::from(data.clone()))
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .set_if_none_match(self.target.conditional_writes.then(|| "*".to_string()))
                .set_object_lock_mode(lock.map(|l| lock_mode(l.mode)))
                .set_object_lock_retain_until_date(lock.map(|l| smithy_time(l.retain_until)))
        )
        .await?;
        Ok(PutReceipt {
            version_id: out.version_id,
            size,
        })
    }

    async fn put_multipart(
        &self,
        full: &str,
        first: Bytes,
        parts: &mut PartReader,
        lock: Option<Lock>,
    ) -> Result<PutReceipt, Error> {
        let bucket = &self.target.bucket;
        let what = format!("CreateMultipartUpload {}", self.url(full));
        let created = send!(
            self.retry,
            self.role,
            &what,
            self.client
                .create_multipart_upload()
                .bucket(bucket)
                .key(full)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .set_object_lock_mode(lock.map(|l| lock_mode(l.mode)))
                .set_object_lock_retain_until_date(lock.map(|l| smithy_time(l.retain_until)))
        )
        .await?;
        let upload_id = created.upload_id.ok_or_else(|| Error::Store {
            message: format!("{what}: the response carried no upload id"),
            retryable: false,
        })?;
        // From here on, leaving early (error or a dropped future) aborts the upload.
        let mut guard = AbortGuard {
            client: self.client.clone(),
            bucket: bucket.clone(),
            key: full.to_string(),
            upload_id: upload_id.clone(),
            role: self.role,
            retry: self.retry,
            armed: true,
        };
        let shared = Arc::new(PartContext {
            client: self.client.clone(),
            bucket: bucket.clone(),
            key: full.to_string(),
            upload_id: upload_id.clone(),
            role: self.role,
            retry: self.retry,
            url: self.url(full),
        });

        let mut inflight: JoinSet<Result<CompletedPart, Error>> = JoinSet::new();
        let mut done = Vec::new();
        let mut size = 0u64;
        let mut number = 1u32;
        let mut data = first;
        loop {
            size += data.len() as u64;
            while inflight.len() >= self.target.upload_concurrency {
                done.push(joined(inflight.join_next().await)?);
            }
            while let Some(finished) = inflight.try_join_next() {
                done.push(joined(Some(finished))?);
            }
            let ctx = shared.clone();
            inflight.spawn(async move { ctx.upload(number, data).await });
            if parts.ended() {
                break;
            }
            if number == MAX_PARTS {
                return Err(Error::Store {
                    message: format!(
                        "{}: the stream is larger than S3's 10,000 parts allow",
                        self.url(full)
                    ),
                    retryable: false,
                });
            }
            number += 1;
            data = parts
                .next(self.target.part_size_of(number))
                .await
                .map_err(|e| body_error(&self.url(full), e))?;
        }
        while let Some(finished) = inflight.join_next().await {
            done.push(joined(Some(finished))?);
        }
        done.sort_by_key(|p| p.part_number);

        let what = format!("CompleteMultipartUpload {}", self.url(full));
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(done))
            .build();
        let out = send!(
            self.retry,
            self.role,
            &what,
            self.client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(full)
                .upload_id(&upload_id)
                .multipart_upload(completed.clone())
                .set_if_none_match(self.target.conditional_writes.then(|| "*".to_string()))
        )
        .await?;
        guard.armed = false;
        Ok(PutReceipt {
            version_id: out.version_id,
            size,
        })
    }
}

/// An S3 client for `target` with the identity of `sdk`, built as [`S3Store::open`]
/// builds its own: for requests the [`Store`] trait has no room for (`vault doctor`
/// probes what an identity may do, request by request).
pub(crate) fn client_for(target: &S3Target, sdk: &aws_config::SdkConfig) -> Client {
    let mut conf = aws_sdk_s3::config::Builder::from(sdk).force_path_style(target.path_style);
    if let Some(endpoint) = &target.endpoint {
        conf = conf.endpoint_url(endpoint);
    }
    Client::from_conf(conf.build())
}

/// What every part upload of one multipart upload shares.
struct PartContext {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    role: Role,
    retry: Retry,
    url: String,
}

impl PartContext {
    async fn upload(&self, number: u32, data: Bytes) -> Result<CompletedPart, Error> {
        let what = format!("UploadPart {} part {number}", self.url);
        let out = send!(
            self.retry,
            self.role,
            &what,
            self.client
                .upload_part()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(&self.upload_id)
                .part_number(number as i32)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .body(ByteStream::from(data.clone()))
        )
        .await?;
        Ok(CompletedPart::builder()
            .part_number(number as i32)
            .set_e_tag(out.e_tag)
            .set_checksum_crc32(out.checksum_crc32)
            .build())
    }
}

fn joined(
    r: Option<Result<Result<CompletedPart, Error>, tokio::task::JoinError>>,
) -> Result<CompletedPart, Error> {
    match r {
        Some(Ok(part)) => part,
        Some(Err(e)) => Err(Error::Store {
            message: format!("a part upload task failed: {e}"),
            retryable: false,
        }),
        None => unreachable!("joined only while parts are in flight"),
    }
}

fn body_error(url: &str, e: std::io::Error) -> Error {
    // The pipeline closed the stream early: its own error is the root cause, reported
    // by the pipeline; this one only says the upload was abandoned.
    Error::Store {
        message: format!("{url}: upload abandoned, the backup stream failed: {e}"),
        retryable: false,
    }
}

/// Aborts a multipart upload unless disarmed; runs when the upload future is dropped
/// (error or interruption).
struct AbortGuard {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    role: Role,
    retry: Retry,
    armed: bool,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (client, bucket, key, upload_id, role, retry) = (
            self.client.clone(),
            self.bucket.clone(),
            self.key.clone(),
            self.upload_id.clone(),
            self.role,
            Retry {
                attempts: 3,
                ..self.retry
            },
        );
        super::cleanup::spawn(async move {
            let url = format!("s3://{bucket}/{key}");
            let what = format!("AbortMultipartUpload {url}");
            let result = send!(
                retry,
                role,
                &what,
                client
                    .abort_multipart_upload()
                    .bucket(&bucket)
                    .key(&key)
                    .upload_id(&upload_id)
            )
            .await;
            match result {
                Ok(_) => tracing::info!("aborted the incomplete upload of {url}"),
                Err(e) => tracing::warn!(
                    "could not abort the incomplete upload of {url} ({e}); the bucket's \
                     AbortIncompleteMultipartUpload lifecycle rule removes it"
                ),
            }
        });
    }
}

/// Cuts a chunked stream into parts of given sizes, reading one chunk ahead so that
/// [`PartReader::ended`] is known as soon as a part is complete.
struct PartReader {
    body: PipeReader,
    ahead: Option<Bytes>,
    ended: bool,
}

impl PartReader {
    fn new(body: PipeReader) -> Self {
        PartReader {
            body,
            ahead: None,
            ended: false,
        }
    }

    /// True when the stream ended cleanly and every byte has been handed out.
    fn ended(&self) -> bool {
        self.ended && self.ahead.is_none()
    }

    /// The next part: `size` bytes, fewer only at the end of the stream.
    async fn next(&mut self, size: u64) -> std::io::Result<Bytes> {
        let size = size as usize;
        let mut part = BytesMut::with_capacity(size);
        while part.len() < size {
            let mut chunk = match self.ahead.take() {
                Some(c) => c,
                None if self.ended => break,
                None => match self.body.next_chunk().await? {
                    Some(c) => c,
                    None => {
                        self.ended = true;
                        break;
                    }
                },
            };
            let want = size - part.len();
            if chunk.len() > want {
                self.ahead = Some(chunk.split_off(want));
            }
            part.extend_from_slice(&chunk);
        }
        if self.ahead.is_none() && !self.ended {
            match self.body.next_chunk().await? {
                Some(c) => self.ahead = Some(c),
                None => self.ended = true,
            }
        }
        Ok(part.freeze())
    }
}

#[async_trait]
impl Store for S3Store {
    fn describe(&self) -> String {
        let mut s = format!("S3 bucket s3://{}", self.target.bucket);
        if !self.target.prefix.is_empty() {
            s.push('/');
            s.push_str(&self.target.prefix);
        }
        if let Some(e) = &self.target.endpoint {
            s.push_str(&format!(" at {e}"));
        }
        s
    }

    fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.target.conditional_writes {
            out.push(format!(
                "conditional_writes = false: uploads to {} are sent without If-None-Match, \
                 so the service will not refuse to put a new version over an existing key",
                self.describe()
            ));
        }
        out
    }

    async fn put(
        &self,
        key: &str,
        body: PipeReader,
        opts: &PutOptions,
    ) -> Result<PutReceipt, Error> {
        let full = self.full_key(key);
        let mut parts = PartReader::new(body);
        let first = parts
            .next(self.target.part_size_of(1))
            .await
            .map_err(|e| body_error(&self.url(&full), e))?;
        if parts.ended() {
            self.put_single(&full, first, opts.lock).await
        } else {
            self.put_multipart(&full, first, &mut parts, opts.lock)
                .await
        }
    }

    async fn get(&self, key: &str, version_id: Option<&str>) -> Result<ObjectReader, Error> {
        let full = self.full_key(key);
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

    async fn head(&self, key: &str, version_id: Option<&str>) -> Result<ObjectMeta, Error> {
        let full = self.full_key(key);
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

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, Error> {
        let full = self.full_key(prefix);
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
                let Some(key) = obj.key.as_deref().and_then(|k| self.relative(k)) else {
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

    async fn all_versions(&self, prefix: &str) -> Result<Vec<VersionInfo>, Error> {
        let full = self.full_key(prefix);
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
                let Some(key) = v.key.as_deref().and_then(|k| self.relative(k)) else {
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
                let Some(key) = m.key.as_deref().and_then(|k| self.relative(k)) else {
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

    async fn bucket_settings(&self) -> Result<Option<BucketSettings>, Error> {
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

fn lock_mode(mode: LockMode) -> ObjectLockMode {
    match mode {
        LockMode::Compliance => ObjectLockMode::Compliance,
        LockMode::Governance => ObjectLockMode::Governance,
    }
}

pub(crate) fn smithy_time(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_secs(t.timestamp())
}

pub(crate) fn chrono_time(t: aws_smithy_types::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos()).unwrap_or_default()
}

/// Turns an SDK error into a typed [`Error`] that names the request and the identity
/// and says whether a retry can help. Never includes credentials.
pub(crate) fn classify<E>(
    what: &str,
    role: Role,
    err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(e) = credentials_error(&err) {
        return e.typed(what, role);
    }
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_string);
    let detail = match (&code, err.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.clone(),
        _ => format!("{}", DisplayErrorContext(&err)),
    };
    let detail = match status {
        Some(s) => format!("{detail} (HTTP {s})"),
        None => detail,
    };
    let message = format!("{what}: {detail}");
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            return Error::Store {
                message,
                retryable: true,
            };
        }
        SdkError::ConstructionFailure(_) => {
            return Error::Store {
                message,
                retryable: false,
            };
        }
        _ => {}
    }
    match (code.as_deref(), status) {
        (
            Some(
                "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken"
                | "InvalidToken"
                | "TokenRefreshRequired",
            ),
            _,
        ) => Error::AccessDenied(format!(
            "{message} — the {} identity's credentials were not accepted",
            role.as_str()
        )),
        (Some("AccessDenied" | "AllAccessDisabled"), _) | (_, Some(401 | 403)) => {
            Error::AccessDenied(format!(
                "{message} — the {} identity is not allowed to do this",
                role.as_str()
            ))
        }
        (Some("PreconditionFailed"), _) | (_, Some(412)) => Error::AlreadyExists(format!(
            "{message} — the key already exists and vault never replaces an object"
        )),
        (Some("NoSuchKey" | "NoSuchVersion" | "NotFound" | "NoSuchBucket" | "NoSuchUpload"), _)
        | (_, Some(404)) => Error::NotFound(message),
        (
            Some(
                "SlowDown"
                | "RequestTimeout"
                | "RequestTimeTooSkewed"
                | "InternalError"
                | "ServiceUnavailable"
                | "Throttling"
                | "ThrottlingException",
            ),
            _,
        )
        | (_, Some(429 | 500..=599)) => Error::Store {
            message,
            retryable: true,
        },
        _ => Error::Store {
            message,
            retryable: false,
        },
    }
}

/// Why an identity's credentials could not be had, found in an error's source chain.
struct CredentialsProblem {
    kind: CredentialsKind,
    detail: String,
}

enum CredentialsKind {
    /// No source gave credentials, or the source refused (STS denied, bad token).
    Refused,
    /// The provider did not answer in time: worth retrying.
    TimedOut,
    /// The configuration of the source is wrong.
    Invalid,
}

impl CredentialsProblem {
    fn typed(self, what: &str, role: Role) -> Error {
        let message = format!(
            "{what}: no usable credentials for the {} identity: {}",
            role.as_str(),
            self.detail
        );
        match self.kind {
            CredentialsKind::Refused => Error::AccessDenied(message),
            CredentialsKind::TimedOut => Error::Store {
                message,
                retryable: true,
            },
            CredentialsKind::Invalid => Error::Config(message),
        }
    }
}

fn credentials_error(err: &(dyn std::error::Error + 'static)) -> Option<CredentialsProblem> {
    use aws_credential_types::provider::error::CredentialsError;
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            let kind = match c {
                CredentialsError::ProviderTimedOut(_) => CredentialsKind::TimedOut,
                CredentialsError::InvalidConfiguration(_) => CredentialsKind::Invalid,
                _ => CredentialsKind::Refused,
            };
            return Some(CredentialsProblem {
                kind,
                detail: chain(c),
            });
        }
        next = e.source();
    }
    None
}

/// An error and its sources, each said once: `a: b: c`. Raw responses are not shown.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = S3Target::parse("s3://my-vault/prod/db").unwrap();
        assert_eq!(
            (t.bucket.as_str(), t.prefix.as_str()),
            ("my-vault", "prod/db")
        );
        let t = S3Target::parse("s3://my-vault").unwrap();
        assert_eq!(t.prefix, "");
        assert!(S3Target::parse("s3://My_Bucket/x").is_err());
        assert!(S3Target::parse("s3://ab").is_err());
        assert!(S3Target::parse("s3://bucket/a/../b").is_err());
    }

    #[test]
    fn growing_parts_reach_five_tib_within_ten_thousand_parts() {
        let mut t = S3Target::parse("s3://bucket").unwrap();
        let size = |s: &str| Options {
            part_size: Some(s.into()),
            ..Options::default()
        };
        t.apply(&size("8MiB")).unwrap();
        let total: u64 = (1..=MAX_PARTS).map(|n| t.part_size_of(n)).sum();
        assert!(total >= 5 << 40, "only {} GiB", total >> 30);
        assert!((1..=MAX_PARTS).all(|n| (MIN_PART..=MAX_PART).contains(&t.part_size_of(n))));
        assert_eq!(t.part_size_of(1000), 8 << 20);
        assert_eq!(t.part_size_of(1001), 16 << 20);
        assert!(t.apply(&size("4MiB")).is_err());
    }

    #[tokio::test]
    async fn parts_are_cut_exactly_and_the_end_is_seen_early() {
        let data: Vec<u8> = (0..(5 << 20) + 123).map(|i| (i % 251) as u8).collect();
        let mut parts = PartReader::new(PipeReader::from_bytes(data.clone()));
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        while !parts.ended() {
            let p = parts.next(2 << 20).await.unwrap();
            sizes.push(p.len());
            got.extend_from_slice(&p);
        }
        assert_eq!(got, data);
        assert_eq!(sizes, vec![2 << 20, 2 << 20, (1 << 20) + 123]);

        // A stream of exactly one part is known to have ended after that part.
        let mut parts = PartReader::new(PipeReader::from_bytes(vec![7u8; 2 << 20]));
        assert_eq!(parts.next(2 << 20).await.unwrap().len(), 2 << 20);
        assert!(parts.ended());
    }
}
