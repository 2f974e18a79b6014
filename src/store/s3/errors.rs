//! What a failed S3 request says, read in one place for the store and `vault doctor`.
//!
//! [`read`] takes an SDK error apart: how far the request got ([`Stage`]), the HTTP
//! status, the S3 error code and message. [`Code`] says what an error code means,
//! whoever sent the request. The store types the failure for the rest of vault
//! (`classify`: refused, missing, existing, retryable or not); doctor reads the same
//! [`Failure`] as evidence of what an identity may do. Credentials that could not be
//! had are found in an error's source chain and typed alike wherever they surface.
//!
//! No message built here carries a credential. Must not import `config` or anything
//! above the store.

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::error::Error;
use crate::store::Role;

/// How far a failed request got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Not sent: the request could not be built (or failed in a way the SDK does not
    /// name).
    NotSent,
    /// Sent without a usable answer: the connection failed, the request timed out, or
    /// the response could not be read. Worth retrying.
    NoAnswer,
    /// The service answered with an error; its status and code say why.
    Answered,
}

/// A failed S3 request, read.
#[derive(Debug, Clone)]
pub struct Failure {
    /// How far the request got.
    pub stage: Stage,
    /// The HTTP status, when a response came back.
    pub status: Option<u16>,
    /// The S3 error code (`AccessDenied`, `NoSuchKey`, …); `None` for an answer
    /// without a body (a HEAD request's).
    pub code: Option<String>,
    /// The service's own words with the code, if it gave any.
    pub message: Option<String>,
    /// The error with all its sources, each said once (never the SDK's structures or
    /// the raw response), for when no answer says it better.
    pub context: String,
}

impl Failure {
    /// What the error code means; `None` without a code.
    pub fn meaning(&self) -> Option<Code> {
        self.code.as_deref().map(Code::of)
    }

    /// The status says the service is busy or failing (429 or 5xx): worth retrying.
    pub fn busy(&self) -> bool {
        matches!(self.status, Some(429 | 500..=599))
    }

    /// The failure in a few words: the status, the S3 error code and S3's own words
    /// (`503 SlowDown: Please reduce your request rate.`); for an answer without a
    /// body, as HEAD answers are, the status and its HTTP text (`503 Service
    /// Unavailable`); without an answer, what went wrong.
    pub fn summary(&self) -> String {
        let Some(status) = self.status.filter(|_| self.stage == Stage::Answered) else {
            return self.context.clone();
        };
        // The SDK's status type has no reason phrases; reqwest re-exports `http`'s,
        // which has.
        let name = self.code.clone().or_else(|| {
            reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .map(str::to_string)
        });
        let words = self.message.as_deref().filter(|m| !m.trim().is_empty());
        match (name, words) {
            (Some(name), Some(words)) => format!("{status} {name}: {words}"),
            (Some(name), None) => format!("{status} {name}"),
            (None, Some(words)) => format!("{status}: {words}"),
            (None, None) => format!("HTTP {status}"),
        }
    }
}

/// Reads a failed request's error.
pub fn read<E>(err: &SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let stage = match err {
        SdkError::ServiceError(_) => Stage::Answered,
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            Stage::NoAnswer
        }
        _ => Stage::NotSent,
    };
    Failure {
        stage,
        status: err.raw_response().map(|r| r.status().as_u16()),
        code: err.code().map(str::to_string),
        message: err.message().map(str::to_string),
        context: sources(err),
    }
}

/// What an S3 error code says about a request, whoever sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The credentials were not accepted: an unknown access key, a bad signature, an
    /// expired or invalid session token.
    CredentialsRejected,
    /// The bucket does not exist.
    NoBucket,
    /// This host's clock is too far off for the request's signature to count.
    ClockSkewed,
    /// Refused before authorisation for another reason: a bad bucket name, the wrong
    /// region or endpoint, a malformed signature header.
    Unauthorised,
    /// The identity is not allowed to do this.
    Denied,
    /// A conditional write found the key taken.
    Exists,
    /// The key, version or upload does not exist.
    Missing,
    /// The service is busy or failed: worth retrying.
    Busy,
    /// Anything else: an answer about the request's content.
    Other,
}

impl Code {
    /// What `code`, as an S3 error answer carries it, means.
    pub fn of(code: &str) -> Code {
        match code {
            "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "InvalidToken"
            | "TokenRefreshRequired" => Code::CredentialsRejected,
            "NoSuchBucket" => Code::NoBucket,
            "RequestTimeTooSkewed" => Code::ClockSkewed,
            "InvalidBucketName"
            | "PermanentRedirect"
            | "TemporaryRedirect"
            | "AuthorizationHeaderMalformed"
            | "IncompleteSignature"
            | "MissingSecurityHeader"
            | "InvalidSecurity" => Code::Unauthorised,
            "AccessDenied" | "AllAccessDisabled" => Code::Denied,
            "PreconditionFailed" => Code::Exists,
            "NoSuchKey" | "NoSuchVersion" | "NotFound" | "NoSuchUpload" => Code::Missing,
            "SlowDown"
            | "RequestTimeout"
            | "InternalError"
            | "ServiceUnavailable"
            | "Throttling"
            | "ThrottlingException" => Code::Busy,
            _ => Code::Other,
        }
    }

    /// Why an answer with this code says nothing about what the identity may do: S3
    /// gave it before (or instead of) authorising the request. `None` for the codes
    /// S3 answers after authorising.
    pub fn before_authorisation(self) -> Option<&'static str> {
        match self {
            Code::CredentialsRejected => Some("the credentials were not accepted"),
            Code::NoBucket => Some("the bucket does not exist"),
            Code::ClockSkewed => Some("this host's clock is wrong"),
            Code::Unauthorised => Some("the request did not reach authorisation"),
            _ => None,
        }
    }
}

/// Turns an SDK error into a typed [`Error`] that says whether a retry can help, in
/// one line: the request (`what`), the answer's status and S3 code (or the status's
/// HTTP text when S3 sent no code, as for HEAD), S3's words, and the identity. Never
/// includes credentials, the SDK's structures or the raw response.
pub(super) fn classify<E>(what: &str, role: Role, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let who = role.as_str();
    if let Some(c) = credentials_in(&err) {
        let message = format!(
            "{what}: no usable credentials for the {who} identity: {}",
            sources(c)
        );
        return credentials_failure(c, message);
    }
    let failure = read(&err);
    let said = format!("{what}: {}", failure.summary());
    let message = format!("{said} (as the {who} identity)");
    match failure.stage {
        Stage::NoAnswer => {
            return Error::Store {
                message,
                retryable: true,
            };
        }
        Stage::NotSent => {
            return Error::Store {
                message,
                retryable: false,
            };
        }
        Stage::Answered => {}
    }
    // The code first; the status where the code says nothing (HEAD answers have none).
    match (failure.meaning(), failure.status) {
        (Some(Code::CredentialsRejected), _) => Error::AccessDenied(format!(
            "{said} — the {who} identity's credentials were not accepted"
        )),
        (Some(Code::Denied), _) | (_, Some(401 | 403)) => Error::AccessDenied(format!(
            "{said} — the {who} identity is not allowed to do this"
        )),
        (Some(Code::Exists), _) | (_, Some(412)) => Error::AlreadyExists(format!(
            "{message} — the key already exists and vault never replaces an object"
        )),
        (Some(Code::Missing | Code::NoBucket), _) | (_, Some(404)) => Error::NotFound(message),
        (Some(Code::Busy | Code::ClockSkewed), _) => Error::Store {
            message,
            retryable: true,
        },
        _ => Error::Store {
            retryable: failure.busy(),
            message,
        },
    }
}

/// Types a failure to get credentials: a source that refused (or none that gave any)
/// is a denial, a provider that did not answer in time is worth retrying, a source
/// configured wrongly is a configuration error.
pub(super) fn credentials_failure(err: &CredentialsError, message: String) -> Error {
    match err {
        CredentialsError::ProviderTimedOut(_) => Error::Store {
            message,
            retryable: true,
        },
        CredentialsError::InvalidConfiguration(_) => Error::Config(message),
        _ => Error::AccessDenied(message),
    }
}

/// The credentials error in an error's source chain, if credentials are why it failed.
fn credentials_in<'e>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e CredentialsError> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            return Some(c);
        }
        next = e.source();
    }
    None
}

/// An error and its sources, each said once: `a: b: c`. Raw responses are not shown.
pub(super) fn sources(err: &(dyn std::error::Error + 'static)) -> String {
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
    use aws_config::retry::RetryConfig;
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    use aws_smithy_runtime_api::client::http::{
        HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn,
    };
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    /// A connection that answers every request with one recorded S3 answer, so that
    /// the SDK reads it exactly as it reads S3's.
    #[derive(Debug, Clone)]
    struct Recorded {
        status: u16,
        body: &'static str,
    }

    impl HttpConnector for Recorded {
        fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
            let status = StatusCode::try_from(self.status).expect("an HTTP status");
            HttpConnectorFuture::ready(Ok(HttpResponse::new(status, SdkBody::from(self.body))))
        }
    }

    fn answering(status: u16, body: &'static str) -> aws_sdk_s3::Client {
        let answer = Recorded { status, body };
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::new(
                "AKIDEXAMPLE",
                "s3cr3t",
                None,
                None,
                "test",
            ))
            .http_client(http_client_fn(move |_, _| {
                SharedHttpConnector::new(answer.clone())
            }))
            .retry_config(RetryConfig::disabled())
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// HeadObject as the verifier, answered `status` with no body (HEAD answers have
    /// none), classified.
    async fn head(status: u16) -> Error {
        let err = answering(status, "")
            .head_object()
            .bucket("b")
            .key("k")
            .send()
            .await
            .expect_err("an error answer");
        classify("HeadObject s3://b/k", Role::Verifier, err)
    }

    /// One line, no SDK structure, no raw response, no secret.
    fn assert_plain(text: &str) {
        for dump in [
            "Error {",
            "ErrorMetadata",
            "raw",
            "Response",
            "s3cr3t",
            "\n",
        ] {
            assert!(!text.contains(dump), "{dump:?} in {text:?}");
        }
    }

    /// Point 14: an answer without an error code (HEAD) says its status and the
    /// status's HTTP text, never the SDK's structures.
    #[tokio::test]
    async fn answers_without_a_code_say_the_http_status() {
        let busy = head(503).await;
        assert!(busy.is_retryable());
        assert_eq!(
            busy.to_string(),
            "HeadObject s3://b/k: 503 Service Unavailable (as the verifier identity)"
        );
        let denied = head(403).await;
        assert!(matches!(denied, Error::AccessDenied(_)), "{denied:?}");
        assert_eq!(
            denied.to_string(),
            "HeadObject s3://b/k: 403 Forbidden — the verifier identity is not allowed to do this"
        );
        let missing = head(404).await;
        assert!(matches!(missing, Error::NotFound(_)), "{missing:?}");
        // The SDK names a bodiless 404 to HEAD `NotFound` itself.
        assert_eq!(
            missing.to_string(),
            "HeadObject s3://b/k: 404 NotFound (as the verifier identity)"
        );
        for e in [busy, denied, missing] {
            assert_plain(&e.to_string());
        }
    }

    /// Point 14: an answer with a body says its status, S3's code and words, and the
    /// identity, once; the retry's warning then names the request once.
    #[tokio::test]
    async fn a_slow_down_names_the_request_once() {
        // As S3 sends it (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html).
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                    <Message>Please reduce your request rate.</Message>\
                    <RequestId>4442587FB7D0A2F9</RequestId>\
                    <HostId>nnQz0Xg6BzVxhRA8VbEUpIAX2xJq7GcJdplTtzsYQ/Tu9TPXX6KMqhlA==</HostId></Error>";
        let err = answering(503, body)
            .upload_part()
            .bucket("b")
            .key("x")
            .upload_id("u")
            .part_number(2)
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"part"))
            .send()
            .await
            .expect_err("an error answer");
        let what = "UploadPart s3://b/x part 2";
        let e = classify(what, Role::Writer, err);
        assert!(e.is_retryable());
        assert_eq!(
            e.to_string(),
            "UploadPart s3://b/x part 2: 503 SlowDown: Please reduce your request rate. \
             (as the writer identity)"
        );
        assert_plain(&e.to_string());
        let warning = crate::retry::warning(&e, std::time::Duration::from_millis(400), 2, 6);
        assert_eq!(warning.matches(what).count(), 1, "{warning}");
        assert!(
            warning.ends_with("(as the writer identity); retrying in 0.4s (attempt 2 of 6)"),
            "{warning}"
        );
    }
}
