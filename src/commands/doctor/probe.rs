//! One probe: a request sent as one identity, and what its answer says about that
//! identity's rights.
//!
//! The answer alone decides, never the request's purpose: S3 authorises a request
//! before it looks at its content, so any answer but 403 means the identity was
//! allowed, even when the request then failed for its content (a malformed policy, a
//! non-empty bucket, an upload that does not exist). The probes are built to fail that
//! way, so that an identity wrongly allowed changes nothing.
//!
//! An answer is read by `store::s3::errors`, which every S3 request shares; this file
//! only says what the reading means for an identity's rights. Must not reach into the
//! store's internals.

use std::future::Future;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use serde::Serialize;

use crate::error::Error;
use crate::retry::Retry;
use crate::store::s3::errors::{self, Code, Failure, Stage};

/// What an identity was seen to be able to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "observed", content = "detail", rename_all = "kebab-case")]
pub enum Observed {
    /// Authorised: a 2xx answer, or an error about the request's content (`detail`
    /// then names it, e.g. `409 BucketNotEmpty`).
    Allowed(String),
    /// 403 AccessDenied.
    Denied(String),
    /// The answer says nothing about the identity's rights: a 5xx, a network error,
    /// credentials that were not accepted, a missing bucket.
    #[serde(rename = "error")]
    Unknown(String),
    /// Not sent; the reason.
    #[serde(rename = "not-probed")]
    Skipped(String),
}

impl Observed {
    pub fn word(&self) -> &'static str {
        match self {
            Observed::Allowed(_) => "allowed",
            Observed::Denied(_) => "denied",
            Observed::Unknown(_) => "error",
            Observed::Skipped(_) => "not probed",
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            Observed::Allowed(d)
            | Observed::Denied(d)
            | Observed::Unknown(d)
            | Observed::Skipped(d) => d,
        }
    }

    /// Allowed, and done: a 2xx answer.
    pub fn is_accepted(&self) -> bool {
        matches!(self, Observed::Allowed(d) if d == ACCEPTED)
    }

    pub fn is_allowed(&self) -> bool {
        matches!(self, Observed::Allowed(_))
    }

    #[cfg(test)]
    pub fn is_denied(&self) -> bool {
        matches!(self, Observed::Denied(_))
    }
}

/// The detail of an [`Observed::Allowed`] that was a 2xx answer: the request did
/// what it asked.
pub const ACCEPTED: &str = "accepted";

/// Reads an answer: the observation, the response when there was one, and whether a
/// retry can help. Which error codes come before authorisation (and so say nothing
/// about rights) is `store::s3::errors`' to say, as for every other S3 request.
pub fn observe<T, E>(result: Result<T, SdkError<E, HttpResponse>>) -> (Observed, Option<T>, bool)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let err = match result {
        Ok(out) => return (Observed::Allowed(ACCEPTED.into()), Some(out), false),
        Err(err) => err,
    };
    let failure = errors::read(&err);
    match failure.stage {
        Stage::Answered => {}
        Stage::NoAnswer => return (Observed::Unknown(failure.context), None, true),
        Stage::NotSent => return (Observed::Unknown(failure.context), None, false),
    }
    let status = failure.status;
    let code = failure.meaning();
    let detail = match (status, &failure.code) {
        (Some(s), Some(c)) => format!("{s} {c}"),
        (Some(s), None) => format!("HTTP {s}"),
        (None, Some(c)) => c.clone(),
        (None, None) => failure.context.clone(),
    };
    if let Some(why) = code.and_then(Code::before_authorisation) {
        return (Observed::Unknown(format!("{detail}: {why}")), None, false);
    }
    let observed = match (status, code) {
        (Some(403), Some(Code::Denied) | None) => Observed::Denied(detail),
        (Some(400 | 404 | 405 | 409 | 412 | 416), Some(_)) => Observed::Allowed(detail),
        (Some(_), _) => return (Observed::Unknown(detail), None, failure.busy()),
        (None, _) => Observed::Unknown(detail),
    };
    (observed, None, false)
}

/// Sends a probe (`send` builds it afresh for every attempt) and reads its answer. A
/// transient failure (5xx, throttling, network) is retried through the one retry
/// wrapper, a few times only: a probe that keeps failing is reported as such.
pub async fn attempt<T, E, F, Fut>(what: &str, send: F) -> (Observed, Option<T>)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
{
    let (observed, out, _) = attempt_saying(what, send).await;
    (observed, out)
}

/// [`attempt`], with the failure read when the request failed: S3's code and own
/// words, which the observation leaves out to keep the matrix short.
pub async fn attempt_saying<T, E, F, Fut>(
    what: &str,
    mut send: F,
) -> (Observed, Option<T>, Option<Failure>)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
{
    let retry = Retry {
        attempts: 3,
        ..Retry::default()
    };
    let mut tries = 0;
    let answered = retry
        .run(|| {
            tries += 1;
            let last = tries == retry.attempts;
            let sent = send();
            async move {
                let result = sent.await;
                let failure = result.as_ref().err().map(errors::read);
                match observe(result) {
                    // The retry's warning names the probe; the row keeps the answer alone.
                    (Observed::Unknown(detail), _, true) if !last => Err(Error::Store {
                        message: format!("{what}: {detail}"),
                        retryable: true,
                    }),
                    (Observed::Unknown(detail), _, true) => Ok((
                        Observed::Unknown(format!("{detail} (gave up after {tries} attempts)")),
                        None,
                        failure,
                    )),
                    (observed, out, _) => Ok((observed, out, failure)),
                }
            }
        })
        .await;
    answered.unwrap_or_else(|e| (Observed::Unknown(e.to_string()), None, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::operation::delete_bucket::DeleteBucketError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn answer(status: u16, code: Option<&str>) -> Observed {
        let mut meta = ErrorMetadata::builder();
        if let Some(c) = code {
            meta = meta.code(c);
        }
        let err = DeleteBucketError::generic(meta.build());
        let raw = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        observe::<(), _>(Err(SdkError::service_error(err, raw))).0
    }

    #[test]
    fn answers_are_read_as_rights() {
        assert!(answer(403, Some("AccessDenied")).is_denied());
        assert!(answer(403, None).is_denied()); // HEAD: no body, no code
        assert!(answer(409, Some("BucketNotEmpty")).is_allowed());
        assert!(answer(400, Some("MalformedPolicy")).is_allowed());
        assert!(answer(404, Some("NoSuchUpload")).is_allowed());
        assert!(answer(412, Some("PreconditionFailed")).is_allowed());
        for (status, code) in [
            (403, Some("InvalidAccessKeyId")),
            (403, Some("SignatureDoesNotMatch")),
            (400, Some("ExpiredToken")),
            (404, Some("NoSuchBucket")),
            (301, Some("PermanentRedirect")),
            (503, Some("SlowDown")),
            (500, None),
            (404, None),
        ] {
            assert!(
                matches!(answer(status, code), Observed::Unknown(_)),
                "{status} {code:?}"
            );
        }
        assert_eq!(
            answer(409, Some("BucketNotEmpty")).detail(),
            "409 BucketNotEmpty"
        );
    }
}
