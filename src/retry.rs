//! The one retry wrapper.
//!
//! Every store request that may be repeated goes through [`Retry::run`]: bounded
//! attempts, exponential backoff with full jitter, and only for errors that say they
//! are retryable (5xx, throttling, timeouts, connection resets). A refusal
//! (AccessDenied), a missing object or an existing key is answered at once. The SDK's
//! own retries are off, so that no request is retried twice over.
//!
//! The errors an operation returns name their request (every error in vault does), so
//! a retry's warning is the error as it is, then the pause and the attempt: one line
//! that says the request once.
//!
//! A leaf: imports only `error`; used by `store/s3` (per request) and `notify`.

use std::future::Future;
use std::time::Duration;

use rand::Rng as _;

use crate::error::Error;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The first backoff ceiling; doubled after every failure.
    pub base: Duration,
    /// The largest backoff ceiling.
    pub cap: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 6,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(10),
        }
    }
}

impl Retry {
    /// The pause before attempt `failed + 1`: uniform in `[0, min(cap, base * 2^failed)]`.
    pub fn backoff(&self, failed: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << failed.min(20))
            .min(self.cap);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::thread_rng().gen_range(0..=nanos))
    }

    /// Runs `op` until it succeeds, fails with a non-retryable error, or the attempts
    /// are used up (then the last error is returned, saying how many were made). The
    /// errors of `op` name its request; each retry is a warning ([`warning`]).
    pub async fn run<T, F, Fut>(&self, mut op: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut failed = 0;
        loop {
            match op().await {
                Ok(value) => return Ok(value),
                Err(e) if e.is_retryable() && failed + 1 < self.attempts => {
                    let pause = self.backoff(failed);
                    failed += 1;
                    tracing::warn!("{}", warning(&e, pause, failed + 1, self.attempts));
                    tokio::time::sleep(pause).await;
                }
                Err(Error::Store { message, retryable }) if retryable => {
                    return Err(Error::Store {
                        message: format!("{message} (gave up after {} attempts)", failed + 1),
                        retryable,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The warning before attempt `next` of `attempts`, `pause` from now: the error as it
/// is, since it names its request, then when the next attempt comes.
pub fn warning(err: &Error, pause: Duration, next: u32, attempts: u32) -> String {
    format!(
        "{err}; retrying in {:.1}s (attempt {next} of {attempts})",
        pause.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn quick() -> Retry {
        Retry {
            attempts: 4,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn retryable_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let out = quick()
            .run(|| async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(Error::Store {
                        message: "503 SlowDown".into(),
                        retryable: true,
                    })
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(out.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn attempts_are_bounded() {
        let calls = AtomicU32::new(0);
        let out: Result<(), _> = quick()
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Error::Store {
                    message: "connection reset".into(),
                    retryable: true,
                })
            })
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert!(out.unwrap_err().to_string().contains("after 4 attempts"));
    }

    #[tokio::test]
    async fn refusals_are_never_retried() {
        for err in [
            Error::AccessDenied("AccessDenied".into()),
            Error::NotFound("NoSuchKey".into()),
            Error::AlreadyExists("PreconditionFailed".into()),
            Error::Store {
                message: "InvalidArgument".into(),
                retryable: false,
            },
        ] {
            let calls = AtomicU32::new(0);
            let mut err = Some(err);
            let out: Result<(), _> = quick()
                .run(|| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let e = err.take().expect("called once");
                    async move { Err(e) }
                })
                .await;
            assert!(out.is_err());
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = Retry::default();
        for failed in 0..30 {
            let ceiling = r.base.saturating_mul(1 << failed.min(20)).min(r.cap);
            assert!(r.backoff(failed) <= ceiling);
        }
    }

    /// Point 14: the warning says the request once (its error names it), then the
    /// pause and the attempt, on one line.
    #[test]
    fn a_retry_warning_says_the_request_once() {
        let err = Error::Store {
            message: "UploadPart s3://b/x part 2: 503 SlowDown: Please reduce your request \
                      rate. (as the writer identity)"
                .into(),
            retryable: true,
        };
        let text = warning(&err, Duration::from_millis(1234), 2, 6);
        assert_eq!(
            text,
            "UploadPart s3://b/x part 2: 503 SlowDown: Please reduce your request rate. \
             (as the writer identity); retrying in 1.2s (attempt 2 of 6)"
        );
        assert_eq!(text.matches("UploadPart").count(), 1, "{text}");
        assert!(!text.contains('\n'), "{text}");
    }
}
