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

use std::error::Error as StdError;
use std::fmt::{self, Write as _};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, USER_AGENT};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::error::Error;
use crate::retry::Retry;

/// Where one run reports itself, healthchecks.io style.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ping {
    /// Base URL: start = URL/start, success = URL, fail = URL/fail (healthchecks.io).
    pub url: Option<String>,
    /// Explicit URLs override the ones derived from `url`.
    pub start: Option<String>,
    pub success: Option<String>,
    pub fail: Option<String>,
}

/// What a ping reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Start,
    Success,
    Fail,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Event::Start => "start",
            Event::Success => "success",
            Event::Fail => "fail",
        })
    }
}

impl Ping {
    /// Checks that something is set and that every URL is a usable http(s) URL; the
    /// error names `what` (e.g. "job `app`: ping") and the key, with the URL redacted.
    pub fn validate(&self, what: &str) -> Result<(), Error> {
        let urls = [
            ("url", &self.url),
            ("start", &self.start),
            ("success", &self.success),
            ("fail", &self.fail),
        ];
        if urls.iter().all(|(_, url)| url.is_none()) {
            return Err(Error::config(format!(
                "{what}: set `url` (or `start`, `success`, `fail`)"
            )));
        }
        for (key, url) in urls {
            if let Some(url) = url {
                validate_url(url, &format!("{what}: `{key}`"))?;
            }
        }
        Ok(())
    }

    /// The URL for `event`: the explicit one if set, else derived from `url` the way
    /// healthchecks.io does (`/start`, nothing, `/fail`), else none.
    pub fn url_for(&self, event: Event) -> Option<String> {
        let explicit = match event {
            Event::Start => &self.start,
            Event::Success => &self.success,
            Event::Fail => &self.fail,
        };
        if let Some(url) = explicit {
            return Some(url.clone());
        }
        let base = self.url.as_deref()?;
        Some(match event {
            Event::Start => append_path(base, "/start"),
            Event::Success => base.to_owned(),
            Event::Fail => append_path(base, "/fail"),
        })
    }
}

/// Written by hand so that credentials in the URLs never reach a log.
impl fmt::Debug for Ping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |url: &Option<String>| url.as_deref().map(redact);
        f.debug_struct("Ping")
            .field("url", &shown(&self.url))
            .field("start", &shown(&self.start))
            .field("success", &shown(&self.success))
            .field("fail", &shown(&self.fail))
            .finish()
    }
}

/// Checks that `url` is an http:// or https:// URL this module can send to (for
/// settings such as `--pushgateway`); the error names `what` and the redacted URL.
pub fn validate_url(url: &str, what: &str) -> Result<(), Error> {
    Target::parse(url)
        .map(drop)
        .map_err(|why| Error::config(format!("{what}: {why}")))
}

/// The largest ping body; healthchecks.io keeps the first 10 KB by default anyway.
const MAX_PING_BODY: usize = 10 * 1024;

/// How long one request may take and how often it is tried.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Patience {
    pub(crate) timeout: Duration,
    pub(crate) retry: Retry,
}

impl Patience {
    /// 10 s per attempt; 3 attempts, pausing up to 0.5 s and then up to 1 s.
    pub(crate) const DEFAULT: Patience = Patience {
        timeout: Duration::from_secs(10),
        retry: Retry {
            attempts: 3,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(1),
        },
    };
}

/// Sends one ping: POST with `body` (a short plain-text summary, truncated to 10 KB)
/// to the event's URL, if any.
///
/// Returns `Ok(())` when there is no URL for the event; on failure, the error is for
/// the caller to print as a warning, never a reason to fail the job.
pub async fn ping(ping: &Ping, event: Event, body: &str) -> Result<(), Error> {
    ping_with(ping, event, body, Patience::DEFAULT).await
}

pub(crate) async fn ping_with(
    ping: &Ping,
    event: Event,
    body: &str,
    patience: Patience,
) -> Result<(), Error> {
    let Some(url) = ping.url_for(event) else {
        return Ok(());
    };
    let body = &body[..body.floor_char_boundary(MAX_PING_BODY)];
    send(
        &format!("{event} ping"),
        Method::POST,
        &url,
        "text/plain; charset=utf-8",
        Bytes::copy_from_slice(body.as_bytes()),
        patience,
    )
    .await
}

/// PUTs exposition text to a Pushgateway, replacing the group's metrics.
///
/// `url` is either a full push URL (containing "/metrics/job/"), used as is, or a
/// base URL to which "/metrics/job/<job>" is appended.
pub async fn push(url: &str, job: &str, body: String) -> Result<(), Error> {
    push_with(url, job, body, Patience::DEFAULT).await
}

pub(crate) async fn push_with(
    url: &str,
    job: &str,
    body: String,
    patience: Patience,
) -> Result<(), Error> {
    let url = if url.contains("/metrics/job/") {
        url.to_owned()
    } else {
        append_path(url, &format!("/metrics/job/{}", percent_encode(job)))
    };
    send(
        "Pushgateway push",
        Method::PUT,
        &url,
        "text/plain; version=0.0.4",
        Bytes::from(body),
        patience,
    )
    .await
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
    let http = http();
    if target.uri.scheme() == Some(&http::uri::Scheme::HTTPS)
        && let Err(why) = &http.roots
    {
        return Err(Error::Store {
            message: format!("{what}: cannot verify TLS certificates: {why}"),
            retryable: false,
        });
    }
    patience
        .retry
        .run("notify", || {
            attempt(
                &http.client,
                &what,
                method.clone(),
                &target,
                content_type,
                body.clone(),
                patience.timeout,
            )
        })
        .await
}

async fn attempt(
    client: &HttpClient,
    what: &str,
    method: Method,
    target: &Target,
    content_type: &'static str,
    body: Bytes,
    timeout: Duration,
) -> Result<(), Error> {
    let mut request = Request::builder()
        .method(method)
        .uri(target.uri.clone())
        .header(CONTENT_TYPE, content_type)
        .header(USER_AGENT, concat!("vault/", env!("CARGO_PKG_VERSION")));
    if let Some(authorization) = &target.authorization {
        request = request.header(AUTHORIZATION, authorization.clone());
    }
    let request = request
        .body(Full::new(body))
        .expect("a parsed URI and fixed headers make a valid request");

    let exchange = async {
        let response = client.request(request).await.map_err(|e| Error::Store {
            message: format!("{what}: {}", describe(&e)),
            retryable: !is_tls_error(&e),
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // The start of the answer usually says what is wrong ("invalid UUID").
        let mut body = response.into_body();
        let mut start = Vec::new();
        while start.len() < 200
            && let Some(Ok(frame)) = body.frame().await
        {
            if let Ok(data) = frame.into_data() {
                start.extend_from_slice(&data);
            }
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

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The one client, built on first use.
struct Http {
    client: HttpClient,
    /// Why no CA certificates could be loaded, if so: plain http still works, https
    /// fails at once with this reason instead of an opaque "unknown issuer".
    roots: Result<(), String>,
}

fn http() -> &'static Http {
    static HTTP: OnceLock<Http> = OnceLock::new();
    HTTP.get_or_init(|| {
        // ring, like the AWS client: the same TLS stack, compiled once.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (builder, roots) =
            match HttpsConnectorBuilder::new().with_provider_and_native_roots(provider.clone()) {
                Ok(builder) => (builder, Ok(())),
                Err(e) => {
                    let config = rustls::ClientConfig::builder_with_provider(provider)
                        .with_safe_default_protocol_versions()
                        .expect("ring supports TLS 1.2 and 1.3")
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth();
                    (
                        HttpsConnectorBuilder::new().with_tls_config(config),
                        Err(e.to_string()),
                    )
                }
            };
        let connector = builder.https_or_http().enable_http1().build();
        // No idle connections: requests are minutes apart, and a pooled connection
        // would belong to the runtime that opened it, which may be gone by the next.
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Http { client, roots }
    })
}

/// A URL ready to send to: credentials moved out of the URI into a header, and a
/// redacted form for messages. No `Debug`: the header holds a password.
struct Target {
    uri: Uri,
    authorization: Option<HeaderValue>,
    shown: String,
}

impl Target {
    /// Parses `url`; the error (a reason, without `url`'s secrets) names the URL
    /// redacted.
    fn parse(url: &str) -> Result<Target, String> {
        let shown = redact(url);
        let rest = ["http://", "https://"]
            .iter()
            .find_map(|scheme| {
                url.get(..scheme.len())
                    .filter(|s| s.eq_ignore_ascii_case(scheme))
                    .map(|_| &url[scheme.len()..])
            })
            .ok_or_else(|| format!("{shown} is not an http:// or https:// URL"))?;
        let scheme = &url[..url.len() - rest.len()];
        // The authority ends at the first '/', '?' or '#' (RFC 3986); the userinfo,
        // if any, is what precedes its last '@'.
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let (userinfo, host) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => (Some(userinfo), host),
            None => (None, authority),
        };
        if host.is_empty() {
            return Err(format!("{shown} has no host"));
        }
        // A fragment is never sent.
        let path = path.split('#').next().unwrap_or_default();
        let uri: Uri = format!("{scheme}{host}{path}")
            .parse()
            .map_err(|e| format!("{shown} is not a valid URL ({e})"))?;
        // `Uri` leaves the port unchecked until asked.
        let authority = uri.authority().map_or("", |a| a.as_str());
        let after_ipv6 = authority.rsplit(']').next().unwrap_or_default();
        if after_ipv6.contains(':') && uri.port_u16().is_none() {
            return Err(format!("{shown} has an invalid port"));
        }
        let authorization = userinfo.map(|userinfo| {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let mut credentials = percent_decode(user);
            credentials.push(b':');
            credentials.extend(percent_decode(password));
            let mut value = HeaderValue::try_from(format!("Basic {}", base64(&credentials)))
                .expect("base64 is a valid header value");
            value.set_sensitive(true);
            value
        });
        Ok(Target {
            uri,
            authorization,
            shown,
        })
    }
}

/// `url` without what may be secret: the userinfo, the query string and fragment.
///
/// Deliberately cruder than [`Target::parse`]: everything up to the *last* '@' is
/// dropped, so that a password holding a raw '/', '?' or '#' (a base64 token, say)
/// is hidden too. The price: a URL with an '@' only in its path or query is shown
/// from that '@' on.
fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
    let kept = rest.split(['?', '#']).next().unwrap_or_default();
    match scheme {
        Some(scheme) => format!("{scheme}://{kept}"),
        None => kept.to_owned(),
    }
}

/// `url` with `suffix` added to its path, before any query string or fragment, and
/// without doubling a trailing slash.
fn append_path(url: &str, suffix: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let path_end = url[after_scheme..]
        .find(['?', '#'])
        .map_or(url.len(), |i| after_scheme + i);
    let (base, tail) = url.split_at(path_end);
    format!("{}{suffix}{tail}", base.trim_end_matches('/'))
}

/// One path segment: everything but RFC 3986's unreserved characters %-encoded.
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        match (bytes[i], hex) {
            (b'%', Some(hex)) => {
                let hex = std::str::from_utf8(hex).expect("hex digits are ASCII");
                out.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Standard base64 with padding (RFC 4648), for Basic authorization.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An error and its causes on one line ("tcp connect error: Connection refused").
fn describe(err: &(dyn StdError + 'static)) -> String {
    let mut parts = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        parts.push(e.to_string());
        next = e.source();
    }
    // hyper-util's own "client error (Connect)" says less than its causes.
    if parts.len() > 1 {
        parts.remove(0);
    }
    parts.join(": ")
}

/// True when a TLS failure (a bad or unknown certificate, say) is somewhere in the
/// chain: trying again will not fix it. rustls errors travel inside (nested)
/// `io::Error`s, whose `source()` skips what they wrap, so those are opened by hand.
fn is_tls_error(err: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<rustls::Error>() {
            return true;
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(wrapped) => Some(wrapped as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    false
}

#[cfg(test)]
#[path = "../tests/common/receiver.rs"]
mod receiver;

#[cfg(test)]
mod tests {
    use super::receiver::Receiver;
    use super::*;
    use std::time::Instant;

    /// Quick retries, so that tests of retrying take milliseconds.
    const QUICK: Patience = Patience {
        timeout: Duration::from_secs(5),
        retry: Retry {
            attempts: 3,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
        },
    };

    fn base(url: &str) -> Ping {
        Ping {
            url: Some(url.to_owned()),
            ..Ping::default()
        }
    }

    #[test]
    fn urls_are_derived_as_healthchecks_does() {
        let p = base("https://hc-ping.com/0f3e");
        assert_eq!(
            p.url_for(Event::Start).unwrap(),
            "https://hc-ping.com/0f3e/start"
        );
        assert_eq!(
            p.url_for(Event::Success).unwrap(),
            "https://hc-ping.com/0f3e"
        );
        assert_eq!(
            p.url_for(Event::Fail).unwrap(),
            "https://hc-ping.com/0f3e/fail"
        );

        let slug = base("https://hc-ping.com/key/db-backup/?create=1");
        assert_eq!(
            slug.url_for(Event::Start).unwrap(),
            "https://hc-ping.com/key/db-backup/start?create=1"
        );

        let explicit = Ping {
            fail: Some("https://alerts.example/x".into()),
            ..base("https://hc-ping.com/0f3e")
        };
        assert_eq!(
            explicit.url_for(Event::Fail).unwrap(),
            "https://alerts.example/x"
        );
        assert_eq!(
            explicit.url_for(Event::Start).unwrap(),
            "https://hc-ping.com/0f3e/start"
        );

        let only_fail = Ping {
            fail: Some("https://alerts.example/x".into()),
            ..Ping::default()
        };
        assert_eq!(only_fail.url_for(Event::Start), None);
        assert_eq!(only_fail.url_for(Event::Success), None);
    }

    #[test]
    fn validation_names_the_setting_and_hides_credentials() {
        assert!(base("https://hc-ping.com/0f3e").validate("ping").is_ok());
        assert!(
            base("HTTP://127.0.0.1:8000/ping/x")
                .validate("ping")
                .is_ok()
        );

        let err = Ping::default().validate("job `app`: ping").unwrap_err();
        assert!(matches!(err, Error::Config(_)));
        assert!(
            err.to_string().starts_with("job `app`: ping: set `url`"),
            "{err}"
        );

        let bad = Ping {
            success: Some("ftp://alice:s3cret@files.example/up?token=t0k".into()),
            ..base("https://hc-ping.com/0f3e")
        };
        let err = bad.validate("job `app`: ping").unwrap_err().to_string();
        assert_eq!(
            err,
            "job `app`: ping: `success`: ftp://files.example/up is not an http:// or https:// URL"
        );

        for url in [
            "https://alice:s3cret@/x?token=t0k",
            "https://alice:s3cret@exa mple.com/x?token=t0k",
            "https://alice:s3?cret@host/x",
            "https://alice:s3/cr+et==@push.example/",
        ] {
            let err = base(url).validate("ping").unwrap_err().to_string();
            assert!(!err.contains("s3") && !err.contains("t0k"), "{err}");
        }
    }

    #[test]
    fn redaction_drops_userinfo_query_and_fragment() {
        assert_eq!(
            redact("https://u:p@push.example:9091/metrics/job/a?token=x#f"),
            "https://push.example:9091/metrics/job/a"
        );
        assert_eq!(redact("https://u:p?w@host/x"), "https://host/x");
        assert_eq!(redact("https://u:ab/c+d==@host/x"), "https://host/x");
        assert_eq!(redact("https://u:12/34@host/x"), "https://host/x");
        assert_eq!(redact("https://host/x?mail=a@b"), "https://b");
        assert_eq!(redact("http://host"), "http://host");
        let p = Ping {
            start: Some("https://u:secret@h/x?k=secret".into()),
            ..Ping::default()
        };
        assert!(!format!("{p:?}").contains("secret"), "{p:?}");
    }

    #[test]
    fn base64_and_percent_coding() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("user:pa@ss", "dXNlcjpwYUBzcw=="),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(percent_decode("pa%40ss%2"), b"pa@ss%2");
        assert_eq!(percent_decode("%zz%41"), b"%zzA");
        assert_eq!(percent_encode("app-1.db_x"), "app-1.db_x");
        assert_eq!(percent_encode("a/b c"), "a%2Fb%20c");
    }

    #[tokio::test]
    async fn pings_post_their_body_to_the_derived_urls() {
        let r = Receiver::start();
        let p = base(&format!("{}/ping/abc", r.url));
        for (event, body) in [
            (Event::Start, "started"),
            (Event::Success, "backup 2024 ok"),
            (Event::Fail, "source failed"),
        ] {
            ping_with(&p, event, body, QUICK).await.unwrap();
        }
        let got = r.requests();
        let seen: Vec<(&str, &str, String)> = got
            .iter()
            .map(|q| (q.method.as_str(), q.path.as_str(), q.text()))
            .collect();
        assert_eq!(
            seen,
            [
                ("POST", "/ping/abc/start", "started".to_owned()),
                ("POST", "/ping/abc", "backup 2024 ok".to_owned()),
                ("POST", "/ping/abc/fail", "source failed".to_owned()),
            ]
        );
        assert_eq!(
            got[0].header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert!(got[0].header("user-agent").unwrap().starts_with("vault/"));
        assert_eq!(got[0].header("authorization"), None);
    }

    #[tokio::test]
    async fn no_url_for_the_event_sends_nothing() {
        let r = Receiver::start();
        let p = Ping {
            fail: Some(format!("{}/fail", r.url)),
            ..Ping::default()
        };
        ping_with(&p, Event::Start, "x", QUICK).await.unwrap();
        assert!(r.requests().is_empty());
    }

    #[tokio::test]
    async fn long_bodies_are_cut_at_10_kib_on_a_char_boundary() {
        let r = Receiver::start();
        let body = "é".repeat(6000); // 12,000 bytes
        ping_with(&base(&r.url), Event::Success, &body, QUICK)
            .await
            .unwrap();
        let got = r.requests()[0].text();
        assert_eq!(got.len(), MAX_PING_BODY);
        assert!(body.starts_with(&got));
    }

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

    #[tokio::test]
    async fn pushes_put_exposition_text_to_the_job_group() {
        let r = Receiver::start();
        let text = "# TYPE vault_up gauge\nvault_up 1\n".to_owned();
        push_with(&format!("{}/", r.url), "app", text.clone(), QUICK)
            .await
            .unwrap();
        let full = format!("{}/metrics/job/vault/instance/db1", r.url);
        push_with(&full, "ignored", text.clone(), QUICK)
            .await
            .unwrap();

        let got = r.requests();
        assert_eq!(got[0].method, "PUT");
        assert_eq!(got[0].path, "/metrics/job/app");
        assert_eq!(
            got[0].header("content-type"),
            Some("text/plain; version=0.0.4")
        );
        assert_eq!(got[0].text(), text);
        assert_eq!(got[1].path, "/metrics/job/vault/instance/db1");
    }

    #[tokio::test]
    async fn push_errors_name_the_url() {
        let r = Receiver::with_response(400, "text format parsing error in line 2");
        let err = push_with(&r.url, "app", "bad".into(), QUICK)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "Pushgateway push to {}/metrics/job/app: HTTP 400 Bad Request: \
                 text format parsing error in line 2",
                r.url
            )
        );
        let err = push_with("pushgw:9091", "app", String::new(), QUICK)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
    }
}
