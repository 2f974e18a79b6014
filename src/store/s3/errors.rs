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
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

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
    /// The error with all its sources, for when no code says it better.
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
        context: format!("{}", DisplayErrorContext(err)),
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

/// Turns an SDK error into a typed [`Error`] that names the request and the identity
/// and says whether a retry can help. Never includes credentials.
pub(super) fn classify<E>(what: &str, role: Role, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(c) = credentials_in(&err) {
        let message = format!(
            "{what}: no usable credentials for the {} identity: {}",
            role.as_str(),
            sources(c)
        );
        return credentials_failure(c, message);
    }
    let failure = read(&err);
    let detail = match (&failure.code, &failure.message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.clone(),
        _ => failure.context.clone(),
    };
    let detail = match failure.status {
        Some(s) => format!("{detail} (HTTP {s})"),
        None => detail,
    };
    let message = format!("{what}: {detail}");
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
            "{message} — the {} identity's credentials were not accepted",
            role.as_str()
        )),
        (Some(Code::Denied), _) | (_, Some(401 | 403)) => Error::AccessDenied(format!(
            "{message} — the {} identity is not allowed to do this",
            role.as_str()
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
fn sources(err: &(dyn std::error::Error + 'static)) -> String {
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
