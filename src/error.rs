//! Error kinds, and the exit codes they map to.
//!
//! Rules, in the spirit of rustic's error module:
//! - library code returns `anyhow::Result` and adds context that names the job, the
//!   object key or the file;
//! - the *root* of every failure that a script must be able to tell apart is a typed
//!   [`Error`]; `main` walks the chain, finds it and turns it into an [`ExitCode`];
//! - store errors say whether a retry can help ([`Error::is_retryable`]); only the retry
//!   wrapper around a store acts on that.
//!
//! A leaf: imports nothing of vault's; every layer imports it.

use std::fmt;

/// Exit codes are an API for cron, systemd and Kubernetes: documented in
/// docs/operations.md and never renumbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Everything asked for was done.
    Success = 0,
    /// The operation failed (source failed, store unreachable, I/O error, ...).
    Failure = 1,
    /// Bad command line or configuration; nothing was attempted.
    Usage = 2,
    /// Data does not match its manifest: size, hash, decryption or decompression.
    Integrity = 3,
    /// An expected backup is missing (nothing matches the selection), or in `verify`,
    /// a job is stale: its newest good backup is older than its interval + grace.
    Missing = 4,
    /// The configured identity was denied access.
    AccessDenied = 5,
    /// `vault drill`: the backup restored, but a drill check failed (a user check, a
    /// table that shrank, a decryption key that cannot open it, the RTO).
    DrillFailed = 6,
    /// Stopped by SIGINT or SIGTERM.
    Interrupted = 130,
}

/// The typed root of a failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Configuration or usage problem: a missing key, a bad value, a wrong identity file.
    #[error("{0}")]
    Config(String),
    /// Stored data does not match what its manifest promises.
    #[error("{0}")]
    Integrity(String),
    /// The requested object or backup does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The store refused the request for lack of permission.
    #[error("{0}")]
    AccessDenied(String),
    /// A write-once key already holds an object; vault never overwrites.
    #[error("{0}")]
    AlreadyExists(String),
    /// The user or the service manager asked us to stop.
    #[error("{0}")]
    Interrupted(String),
    /// A restore drill's check failed (the data itself passed its integrity checks).
    #[error("{0}")]
    DrillFailed(String),
    /// A store operation failed; `retryable` tells whether the same call may succeed later.
    #[error("{message}")]
    Store { message: String, retryable: bool },
}

impl Error {
    /// True when repeating the same request may succeed (5xx, throttling, resets).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Store {
                retryable: true,
                ..
            }
        )
    }

    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Config(_) => ExitCode::Usage,
            Error::Integrity(_) => ExitCode::Integrity,
            Error::NotFound(_) => ExitCode::Missing,
            Error::AccessDenied(_) => ExitCode::AccessDenied,
            Error::Interrupted(_) => ExitCode::Interrupted,
            Error::DrillFailed(_) => ExitCode::DrillFailed,
            Error::AlreadyExists(_) | Error::Store { .. } => ExitCode::Failure,
        }
    }

    pub fn config(msg: impl fmt::Display) -> Self {
        Error::Config(msg.to_string())
    }

    pub fn integrity(msg: impl fmt::Display) -> Self {
        Error::Integrity(msg.to_string())
    }

    pub fn not_found(msg: impl fmt::Display) -> Self {
        Error::NotFound(msg.to_string())
    }

    /// Classifies a local I/O error the way a store error is classified.
    pub fn from_io(context: impl fmt::Display, err: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let message = format!("{context}: {err}");
        match err.kind() {
            K::NotFound => Error::NotFound(message),
            K::PermissionDenied => Error::AccessDenied(message),
            K::AlreadyExists => Error::AlreadyExists(message),
            K::Interrupted | K::TimedOut | K::WouldBlock => Error::Store {
                message,
                retryable: true,
            },
            _ => Error::Store {
                message,
                retryable: false,
            },
        }
    }
}

/// A summary error that exits with `code` (used where several failures are reported
/// one by one and the command ends with one line).
pub fn summary(code: ExitCode, message: String) -> anyhow::Error {
    match code {
        ExitCode::Usage => Error::Config(message).into(),
        ExitCode::Integrity => Error::Integrity(message).into(),
        ExitCode::Missing => Error::NotFound(message).into(),
        ExitCode::AccessDenied => Error::AccessDenied(message).into(),
        ExitCode::Interrupted => Error::Interrupted(message).into(),
        ExitCode::DrillFailed => Error::DrillFailed(message).into(),
        ExitCode::Success | ExitCode::Failure => anyhow::anyhow!(message),
    }
}

/// Of several failures, the code that matters most: integrity problems first, then
/// failed drill checks, configuration, access, plain failures, and missing backups last.
pub fn worst(codes: impl IntoIterator<Item = ExitCode>) -> Option<ExitCode> {
    let codes: Vec<ExitCode> = codes.into_iter().collect();
    [
        ExitCode::Integrity,
        ExitCode::DrillFailed,
        ExitCode::Usage,
        ExitCode::AccessDenied,
        ExitCode::Failure,
        ExitCode::Missing,
    ]
    .into_iter()
    .find(|c| codes.contains(c))
}

/// The exit code for any error: the first typed [`Error`] in its chain decides,
/// everything else is a plain failure.
pub fn exit_code_for(err: &anyhow::Error) -> ExitCode {
    err.chain()
        .find_map(|cause| {
            cause
                .downcast_ref::<Error>()
                .map(Error::exit_code)
                .or_else(|| {
                    // An io::Error may carry one of ours (pipeline stages speak io::Error).
                    cause
                        .downcast_ref::<std::io::Error>()
                        .and_then(|io| io.get_ref())
                        .and_then(|inner| inner.downcast_ref::<Error>())
                        .map(Error::exit_code)
                })
        })
        .unwrap_or(ExitCode::Failure)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn exit_code_comes_from_the_typed_root() {
        let err = Err::<(), _>(Error::integrity("hash mismatch"))
            .context("job app")
            .unwrap_err();
        assert_eq!(exit_code_for(&err), ExitCode::Integrity);
        let plain = anyhow::anyhow!("boom");
        assert_eq!(exit_code_for(&plain), ExitCode::Failure);
    }

    #[test]
    fn typed_error_inside_io_error_is_found() {
        let io = std::io::Error::other(Error::config("no key"));
        let err = anyhow::Error::new(io).context("stage");
        assert_eq!(exit_code_for(&err), ExitCode::Usage);
    }

    #[test]
    fn only_store_errors_marked_retryable_are_retryable() {
        let transient = Error::from_io("put", &std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(transient.is_retryable());
        assert!(!Error::AccessDenied("no".into()).is_retryable());
    }
}
