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
//! - Requests are retried only through [`Retry`], one request at a time, never by the
//!   SDK (see the `store` module for why not around the whole store).
//!
//! The parts: `target` (the validated `s3://` target and its options), `session`
//! (one identity's SDK configuration and client), `upload` (single put, multipart
//! upload), `read` (get, head, list, versions), `bucket` (the bucket's protection
//! settings), [`errors`] (SDK errors read and typed), [`auth`] (credential sources).
//!
//! Public beyond the [`Store`] trait, for `vault doctor`, which probes what each
//! identity may do request by request: [`S3Target`], [`Session`], [`errors`], the
//! time conversions [`smithy_time`] and [`chrono_time`], and [`versioned`], which reads
//! a new object's version id. Everything else stays inside.
//! Must not import `config` (it builds an [`S3Target`] and an [`Identity`] from its
//! own sections) or anything above the store.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use chrono::{DateTime, Utc};

use super::{
    BucketSettings, ObjectMeta, ObjectReader, PutOptions, PutReceipt, Role, Store, VersionInfo,
};
use crate::error::Error;
use crate::pipe::PipeReader;
use crate::retry::Retry;

/// One S3 request through the retry wrapper: `$build` makes the request afresh for
/// every attempt, and a failure is classified for `$role`. Evaluates to the future.
/// Defined before the modules that send requests, so that they see it.
macro_rules! send {
    ($retry:expr, $role:expr, $what:expr, $build:expr) => {
        $retry.run(|| {
            let req = $build;
            async {
                req.send()
                    .await
                    .map_err(|e| $crate::store::s3::errors::classify($what, $role, e))
            }
        })
    };
}

/// `$op` on one key (`key = …`) or prefix (`prefix = …`) of the bucket: `$method` on the
/// client with the bucket and that bucket key set, then the further setters given,
/// sent through [`send!`] with the request and its `s3://` URL named in any error.
/// Evaluates to the result.
macro_rules! send_for {
    ($store:expr, $op:literal, $method:ident, $place:ident = $full:expr $(, .$setter:ident($($arg:expr),*))* $(,)?) => {{
        let what = format!(concat!($op, " {}"), $store.url($full));
        send!(
            $store.retry,
            $store.role,
            &what,
            $store
                .client
                .$method()
                .bucket(&$store.target.bucket)
                .$place($full)
                $(.$setter($($arg),*))*
        )
        .await
    }};
}

pub mod auth;
mod bucket;
pub mod errors;
mod read;
mod session;
mod target;
mod upload;

pub use auth::Identity;
pub use session::Session;
pub use target::{Options, S3Target};

pub struct S3Store {
    client: Client,
    target: S3Target,
    role: Role,
    retry: Retry,
}

impl S3Store {
    /// Opens `target` as `role` with `identity` (see [`Session::open`]). Credentials
    /// are resolved lazily, on the first request.
    pub async fn open(
        target: &S3Target,
        identity: &Identity,
        role: Role,
    ) -> Result<S3Store, Error> {
        let session = Session::open(target, identity, role).await?;
        Ok(S3Store {
            client: session.client().clone(),
            target: target.clone(),
            role,
            retry: Retry::default(),
        })
    }

    /// A key in the bucket as requests name it.
    fn url(&self, full: &str) -> String {
        format!("s3://{}/{full}", self.target.bucket)
    }
}

#[async_trait]
impl Store for S3Store {
    fn describe(&self) -> String {
        super::Target::S3(self.target.clone()).describe()
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
        self.upload(key, body, opts).await
    }

    async fn get(&self, key: &str, version_id: Option<&str>) -> Result<ObjectReader, Error> {
        self.get_object(key, version_id).await
    }

    async fn head(&self, key: &str, version_id: Option<&str>) -> Result<ObjectMeta, Error> {
        self.head_object(key, version_id).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, Error> {
        self.list_objects(prefix).await
    }

    async fn all_versions(&self, prefix: &str) -> Result<Vec<VersionInfo>, Error> {
        self.list_versions(prefix).await
    }

    async fn bucket_settings(&self) -> Result<Option<BucketSettings>, Error> {
        self.read_bucket_settings().await
    }

    async fn hide(&self, key: &str) -> Result<(), Error> {
        // DeleteObject without a version id: on a versioned bucket, a delete marker.
        send_for!(
            self,
            "DeleteObject",
            delete_object,
            key = &self.target.key_in_bucket(key),
        )
        .map(|_| ())
    }
}

/// The version id S3 gave a new object, if it versioned it. None, or `null` (the id S3
/// gives an object written while versioning is off), means it did not; Object Lock
/// needs versioning, so such a bucket locks nothing.
pub fn versioned(version_id: Option<String>) -> Option<String> {
    version_id.filter(|v| !v.is_empty() && v != "null")
}

/// The SDK's timestamp of a vault time, in whole seconds (S3 keeps retain-until dates
/// to the second), for requests sent through a [`Session`]'s client.
pub fn smithy_time(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_secs(t.timestamp())
}

/// A vault time of the SDK's timestamp, as an answer carries it; the epoch for a
/// timestamp out of range.
pub fn chrono_time(t: aws_smithy_types::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos()).unwrap_or_default()
}
