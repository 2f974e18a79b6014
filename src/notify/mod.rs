//! Webhook pings and the Prometheus Pushgateway: small HTTP requests out.
//!
//! A backup that nobody hears about is a backup nobody notices stopping. Each job can
//! report its start, success and failure to a dead man's switch (healthchecks.io and
//! compatible services), and `vault verify` can push its metrics to a Pushgateway.
//! Neither may ever fail the work it reports on: every function here returns an
//! error for the caller to print as a warning, and gives up after a few bounded
//! attempts (10 s each, retried through the one [`Retry`] wrapper on connection
//! errors, timeouts and 5xx; never on 4xx).
//!
//! URLs may carry credentials (`https://user:pass@host`, `?token=`): the userinfo is
//! sent as HTTP Basic authorization, and no message or `Debug` output shows either it
//! or the query string.
//!
//! This file owns the sending shared by both: one request, its timeout and retries,
//! and the words of its failures. [`ping`](mod@ping) and [`push`](mod@push) say what
//! goes where; `target` makes a configured URL safe to send to and to show. Requests
//! go through the shared client of [`crate::https`]. A leaf below `config`: must not
//! import `store` or `config`.

mod ping;
mod push;
mod target;

use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, USER_AGENT};

pub use ping::{Event, Ping, ping};
pub use push::push;
pub use target::validate_url;

use crate::error::Error;
use crate::https;
use crate::retry::Retry;
use target::Target;

/// How long one request may take and how often it is tried.
#[derive(Debug, Clone, Copy)]
struct Patience {
    timeout: Duration,
    retry: Retry,
}

impl Patience {
    /// 10 s per attempt; 3 attempts, pausing up to 0.5 s and then up to 1 s.
    const DEFAULT: Patience = Patience {
        timeout: Duration::from_secs(10),
        retry: Retry {
            attempts: 3,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(1),
        },
    };
}

/// One request, retried per `patience`; `what` starts every message ("start ping").
async fn send(
    what: &str,
    method: Method,
    url: &str,
    content_type: &'static str,
    body: Bytes,
    patience: Patience,
) -> Result<(), Error> {
    let target = Target::parse(url).map_err(|why| Error::config(format!("{what}: {why}")))?;
    let what = format!("{what} to {}", target.shown);
    let client = https::client(&target.url).map_err(|why| Error::Store {
        message: format!("{what}: {why}"),
        retryable: false,
    })?;
    patience
        .retry
        .run(|| {
            let mut request = client
                .request(method.clone(), target.url.clone())
                .header(CONTENT_TYPE, content_type)
                .header(USER_AGENT, concat!("vault/", env!("CARGO_PKG_VERSION")))
                .body(body.clone());
            if let Some(c) = &target.credentials {
                request = request.basic_auth(&c.user, Some(&c.password));
            }
            attempt(request, &what, patience.timeout)
        })
        .await
}

/// Sends `request` once: `Ok` for a 2xx answer, else an error that says whether
/// another attempt may help.
async fn attempt(
    request: reqwest::RequestBuilder,
    what: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let exchange = async {
        let mut response = request.send().await.map_err(|e| Error::Store {
            retryable: !https::is_tls_failure(&e),
            message: format!("{what}: {}", https::describe(e)),
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // The start of the answer usually says what is wrong ("invalid UUID").
        let mut start = Vec::new();
        while start.len() < 200
            && let Ok(Some(chunk)) = response.chunk().await
        {
            start.extend_from_slice(&chunk);
        }
        start.truncate(200);
        let text = String::from_utf8_lossy(&start).replace(char::is_control, " ");
        let text = text.trim();
        Err(Error::Store {
            message: if text.is_empty() {
                format!("{what}: HTTP {status}")
            } else {
                format!("{what}: HTTP {status}: {text}")
            },
            retryable: status.is_server_error(),
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(Error::Store {
                message: format!("{what}: no answer within {}s", timeout.as_secs_f64()),
                retryable: true,
            })
        })
}

#[cfg(test)]
#[path = "../../tests/common/receiver.rs"]
mod receiver;

/// What the tests of every part share.
#[cfg(test)]
mod testing {
    use super::*;

    /// Quick retries, so that tests of retrying take milliseconds.
    pub(super) const QUICK: Patience = Patience {
        timeout: Duration::from_secs(5),
        retry: Retry {
            attempts: 3,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
        },
    };

    pub(super) fn base(url: &str) -> Ping {
        Ping {
            url: Some(url.to_owned()),
            ..Ping::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ping::ping_with;
    use super::receiver::Receiver;
    use super::testing::{QUICK, base};
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[tokio::test]
    async fn userinfo_becomes_basic_authorization() {
        let r = Receiver::start();
        let url = r.url.replace("http://", "http://user:pa%40ss@");
        ping_with(&base(&url), Event::Success, "", QUICK)
            .await
            .unwrap();
        let got = r.requests();
        assert_eq!(
            got[0].header("authorization"),
            Some("Basic dXNlcjpwYUBzcw==")
        );
        assert_eq!(got[0].path, "/");
    }

    #[tokio::test]
    async fn server_errors_are_retried_then_reported_without_secrets() {
        let r = Receiver::with_response(500, "database\nis on fire");
        let url = r.url.replace("http://", "http://user:s3cret@") + "/ping/abc?token=t0k";
        let err = ping_with(&base(&url), Event::Fail, "x", QUICK)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(r.requests().len(), 3, "three attempts");
        let shown = format!("{}/ping/abc/fail", r.url);
        assert!(
            err.starts_with(&format!("fail ping to {shown}: HTTP 500")),
            "{err}"
        );
        assert!(err.contains("database is on fire"), "{err}");
        assert!(err.contains("gave up after 3 attempts"), "{err}");
        assert!(!err.contains("s3cret") && !err.contains("t0k"), "{err}");
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let r = Receiver::with_status(404);
        let err = ping_with(&base(&r.url), Event::Start, "x", QUICK)
            .await
            .unwrap_err();
        assert_eq!(r.requests().len(), 1);
        assert!(!err.is_retryable());
        assert!(
            err.to_string().contains("HTTP 404 Not Found: Not Found"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        // Bound but never accepting: the kernel completes the connection and takes
        // the request, and no answer ever comes.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ping/abc", silent.local_addr().unwrap());
        let patience = Patience {
            timeout: Duration::from_millis(200),
            ..QUICK
        };
        let started = Instant::now();
        let err = ping_with(&base(&url), Event::Success, "x", patience)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(err.contains("no answer within 0.2s"), "{err}");
        assert!(err.contains("gave up after 3 attempts"), "{err}");
    }

    #[tokio::test]
    async fn refused_connections_are_retried_then_reported() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/x");
        let err = ping_with(&base(&url), Event::Success, "x", QUICK)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("success ping to {url}: ")),
            "{err}"
        );
        assert!(err.contains("gave up after 3 attempts"), "{err}");
    }

    #[tokio::test]
    async fn tls_failures_are_not_retried() {
        // A server that answers in plain text whatever it is sent: the TLS handshake
        // fails, and no second attempt can fix that.
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}/ping/abc", server.local_addr().unwrap());
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let accepted = std::thread::spawn({
            let done = Arc::clone(&done);
            move || {
                server.set_nonblocking(true).unwrap();
                let mut count = 0;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    if let Ok((mut stream, _)) = server.accept() {
                        count += 1;
                        let _ = std::io::Write::write_all(&mut stream, b"HTTP/1.1 200 OK\r\n\r\n");
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                count
            }
        });
        let err = ping_with(&base(&url), Event::Success, "x", QUICK)
            .await
            .unwrap_err();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(!err.is_retryable(), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("success ping to {url}: ")),
            "{err}"
        );
        assert_eq!(accepted.join().unwrap(), 1, "one attempt only: {err}");
    }

    /// Point 14: a retry's warning is the attempt's error, which names the ping and
    /// its URL, then the pause: the request said once, on one line.
    #[tokio::test]
    async fn a_retry_warning_names_the_ping_once() {
        let r = Receiver::with_response(503, "busy");
        let target = Target::parse(&format!("{}/ping/abc", r.url)).unwrap();
        let what = format!("start ping to {}", target.shown);
        let client = https::client(&target.url).unwrap();
        let request = client.request(Method::POST, target.url.clone());
        let err = attempt(request, &what, QUICK.timeout).await.unwrap_err();
        assert_eq!(
            crate::retry::warning(&err, Duration::from_millis(300), 2, 3),
            format!(
                "{what}: HTTP 503 Service Unavailable: busy; retrying in 0.3s (attempt 2 of 3)"
            )
        );
    }
}
