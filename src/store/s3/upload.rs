//! Writing one object: a stream that fits in its first part is one `PutObject`, a
//! longer one a multipart upload with at most `upload_concurrency` parts in flight.
//!
//! Owns the part reader (cuts the stream into parts, reading one chunk ahead so the
//! end is known as soon as a part is complete) and the [`AbortGuard`] that aborts an
//! upload left early. Every request carries a CRC32 checksum and, on create,
//! `If-None-Match: *` (see `store::s3`). Must not import `config` or anything
//! above the store.

use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::operation::create_multipart_upload::builders::CreateMultipartUploadFluentBuilder;
use aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ObjectLockMode,
};
use bytes::{Bytes, BytesMut};
use tokio::task::JoinSet;

use super::target::MAX_PARTS;
use super::{S3Store, smithy_time, versioned};
use crate::error::Error;
use crate::pipe::PipeReader;
use crate::retention::{Lock, LockMode};
use crate::retry::Retry;
use crate::store::{PutOptions, PutReceipt, Role};

impl S3Store {
    /// `If-None-Match: *` on every create, unless `conditional_writes = false`.
    fn if_none_match(&self) -> Option<String> {
        self.target.conditional_writes.then(|| "*".to_string())
    }

    /// [`crate::store::Store::put`] for S3: the first part decides between one
    /// `PutObject` and a multipart upload.
    pub(super) async fn upload(
        &self,
        key: &str,
        body: PipeReader,
        opts: &PutOptions,
    ) -> Result<PutReceipt, Error> {
        let full = self.target.key_in_bucket(key);
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

    async fn put_single(
        &self,
        full: &str,
        data: Bytes,
        lock: Option<Lock>,
    ) -> Result<PutReceipt, Error> {
        let size = data.len() as u64;
        let out = send_for!(
            self,
            "PutObject",
            put_object,
            key = full,
            .body(ByteStream::from(data.clone())),
            .set_if_none_match(self.if_none_match()),
            .locked(lock),
        )?;
        self.receipt(
            &format!("PutObject {}", self.url(full)),
            out.version_id,
            size,
        )
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
                .locked(lock)
        )
        .await?;
        let upload_id = created.upload_id.ok_or_else(|| Error::Store {
            message: format!("{what}: the response carried no upload id"),
            retryable: false,
        })?;
        let shared = Arc::new(PartContext {
            client: self.client.clone(),
            bucket: bucket.clone(),
            key: full.to_string(),
            upload_id: upload_id.clone(),
            role: self.role,
            retry: self.retry,
            url: self.url(full),
        });
        // From here on, leaving early (error or a dropped future) aborts the upload.
        let mut guard = AbortGuard {
            upload: shared.clone(),
            armed: true,
        };

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
                .set_if_none_match(self.if_none_match())
        )
        .await?;
        guard.armed = false;
        self.receipt(&what, out.version_id, size)
    }

    /// The receipt of a completed create (`what`), only for an object S3 versioned: a
    /// bucket that does not version objects cannot lock them (see [`versioned`]),
    /// whatever vault asked for. The object stays, unprotected; the error keeps it from
    /// counting as stored, so no manifest ever points to it.
    fn receipt(
        &self,
        what: &str,
        version_id: Option<String>,
        size: u64,
    ) -> Result<PutReceipt, Error> {
        let version_id = versioned(version_id).ok_or_else(|| {
            Error::Integrity(format!(
                "{what}: S3 returned no version id, so versioning is off on bucket {}: it has \
                 no Object Lock and nothing was locked (as the {} identity); the object stays \
                 there unprotected and is not counted as stored",
                self.target.bucket,
                self.role.as_str()
            ))
        })?;
        Ok(PutReceipt {
            version_id: Some(version_id),
            size,
        })
    }
}

/// One multipart upload in progress: what every part upload shares, and what its
/// abort needs.
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
    upload: Arc<PartContext>,
    armed: bool,
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let upload = self.upload.clone();
        crate::store::cleanup::spawn(async move {
            let url = &upload.url;
            let what = format!("AbortMultipartUpload {url}");
            let retry = Retry {
                attempts: 3,
                ..upload.retry
            };
            let result = send!(
                retry,
                upload.role,
                &what,
                upload
                    .client
                    .abort_multipart_upload()
                    .bucket(&upload.bucket)
                    .key(&upload.key)
                    .upload_id(&upload.upload_id)
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

/// The headers of every create: a CRC32 checksum (S3 refuses an upload that Object Lock
/// governs without one) and, when given, the lock.
trait Locked: Sized {
    fn locked(self, lock: Option<Lock>) -> Self;
}

macro_rules! locked {
    ($($builder:ty),*) => {$(
        impl Locked for $builder {
            fn locked(self, lock: Option<Lock>) -> Self {
                self.checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .set_object_lock_mode(lock.map(|l| lock_mode(l.mode)))
                    .set_object_lock_retain_until_date(lock.map(|l| smithy_time(l.retain_until)))
            }
        }
    )*};
}

locked!(PutObjectFluentBuilder, CreateMultipartUploadFluentBuilder);

fn lock_mode(mode: LockMode) -> ObjectLockMode {
    match mode {
        LockMode::Compliance => ObjectLockMode::Compliance,
        LockMode::Governance => ObjectLockMode::Governance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
