//! Healthchecks.io-style pings: a run reports its start, success and failure, and
//! `vault run` logs a run it skipped (healthchecks.io's `/log`, which changes no state).
//!
//! Owns the `ping` settings ([`Ping`], which config deserialises), how each event's
//! URL derives from a base URL, and the ping body and its limit. Sending is
//! [`super::send`]'s. Must not import `store` or `config`.

use std::fmt;

use bytes::Bytes;
use reqwest::Method;

use super::target::{redact, validate_url, with_segments};
use super::{Patience, send};
use crate::error::Error;

/// Where one run reports itself, healthchecks.io style.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ping {
    /// Base URL: start = URL/start, success = URL, fail = URL/fail, log = URL/log
    /// (healthchecks.io).
    pub url: Option<String>,
    /// Explicit URLs override the ones derived from `url`.
    pub start: Option<String>,
    pub success: Option<String>,
    pub fail: Option<String>,
    pub log: Option<String>,
}

/// What a ping reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Start,
    Success,
    Fail,
    /// Something worth noting that is neither: a scheduled run skipped.
    Log,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Event::Start => "start",
            Event::Success => "success",
            Event::Fail => "fail",
            Event::Log => "log",
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
            ("log", &self.log),
        ];
        if urls.iter().all(|(_, url)| url.is_none()) {
            return Err(Error::config(format!(
                "{what}: set `url` (or `start`, `success`, `fail`, `log`)"
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
    /// healthchecks.io does (`/start`, nothing, `/fail`, `/log`), else none.
    pub fn url_for(&self, event: Event) -> Option<String> {
        let explicit = match event {
            Event::Start => &self.start,
            Event::Success => &self.success,
            Event::Fail => &self.fail,
            Event::Log => &self.log,
        };
        if let Some(url) = explicit {
            return Some(url.clone());
        }
        let base = self.url.as_deref()?;
        Some(match event {
            Event::Start => with_segments(base, &["start"]),
            Event::Success => base.to_owned(),
            Event::Fail => with_segments(base, &["fail"]),
            Event::Log => with_segments(base, &["log"]),
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
            .field("log", &shown(&self.log))
            .finish()
    }
}

/// The largest ping body; healthchecks.io keeps the first 10 KB by default anyway.
const MAX_PING_BODY: usize = 10 * 1024;

/// Sends one ping: POST with `body` (a short plain-text summary, truncated to 10 KB)
/// to the event's URL, if any.
///
/// Returns `Ok(())` when there is no URL for the event; on failure, the error is for
/// the caller to print as a warning, never a reason to fail the job.
pub async fn ping(ping: &Ping, event: Event, body: &str) -> Result<(), Error> {
    ping_with(ping, event, body, Patience::DEFAULT).await
}

pub(super) async fn ping_with(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::receiver::Receiver;
    use crate::notify::testing::{QUICK, base};

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
}
