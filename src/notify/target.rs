//! A configured URL made ready to send to, and safe to show.
//!
//! Owns the checks on a ping or Pushgateway URL (http or https, a host, a valid port),
//! the move of its userinfo into Basic credentials, the paths built onto it, and the
//! redacted form every message shows. Parsing, percent-decoding and path building are
//! the `url` and `percent-encoding` crates' work. Must not import `store` or `config`.

use percent_encoding::percent_decode_str;
use url::{ParseError, Url};

use crate::error::Error;

/// Checks that `url` is an http:// or https:// URL this module can send to (for
/// settings such as `--pushgateway`); the error names `what` and the redacted URL.
pub fn validate_url(url: &str, what: &str) -> Result<(), Error> {
    Target::parse(url)
        .map(drop)
        .map_err(|why| Error::config(format!("{what}: {why}")))
}

/// A URL ready to send to: its credentials moved out, and a redacted form for
/// messages. No `Debug`: it holds a password.
pub(super) struct Target {
    /// Without userinfo and fragment (a fragment is never sent).
    pub(super) url: Url,
    /// The userinfo, percent-decoded, for Basic authorization.
    pub(super) credentials: Option<Credentials>,
    /// The URL as configured, redacted.
    pub(super) shown: String,
}

/// A user and password from a URL's userinfo (`user@` alone: an empty password).
pub(super) struct Credentials {
    pub(super) user: String,
    pub(super) password: String,
}

impl Target {
    /// Parses `url`; the error (a reason, without `url`'s secrets) names the URL
    /// redacted.
    pub(super) fn parse(url: &str) -> Result<Target, String> {
        let shown = redact(url);
        let mut parsed = Url::parse(url).map_err(|e| match e {
            ParseError::RelativeUrlWithoutBase => {
                format!("{shown} is not an http:// or https:// URL")
            }
            ParseError::EmptyHost => format!("{shown} has no host"),
            ParseError::InvalidPort => format!("{shown} has an invalid port"),
            e => format!("{shown} is not a valid URL ({e})"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("{shown} is not an http:// or https:// URL"));
        }
        let decode = |part: &str| percent_decode_str(part).decode_utf8_lossy().into_owned();
        let credentials =
            (!parsed.username().is_empty() || parsed.password().is_some()).then(|| Credentials {
                user: decode(parsed.username()),
                password: parsed.password().map(decode).unwrap_or_default(),
            });
        // An http(s) URL has a host, so neither can fail.
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        parsed.set_fragment(None);
        Ok(Target {
            url: parsed,
            credentials,
            shown,
        })
    }
}

/// `url` with `segments` added to its path (each percent-encoded, before any query
/// string, without doubling a trailing slash). A URL that does not parse, or has no
/// path to add to, is returned as is: sending to it then fails with the reason.
pub(super) fn with_segments(url: &str, segments: &[&str]) -> String {
    let Ok(mut parsed) = Url::parse(url) else {
        return url.to_owned();
    };
    match parsed.path_segments_mut() {
        Ok(mut path) => {
            path.pop_if_empty().extend(segments);
        }
        Err(()) => return url.to_owned(),
    }
    parsed.into()
}

/// `url` without what may be secret: the userinfo, the query string and fragment.
///
/// Deliberately cruder than a URL parser, and working on text that does not parse:
/// everything up to the *last* '@' is dropped, so that a password holding a raw '/',
/// '?' or '#' (a base64 token, say) is hidden too. The price: a URL with an '@' only
/// in its path or query is shown from that '@' on.
pub(super) fn redact(url: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::testing::base;
    use crate::notify::{Error, Ping};

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

    /// What the hand-written base64 and percent coding did, now the crates' work: the
    /// userinfo is percent-decoded (leniently), a path segment percent-encoded.
    #[test]
    fn credentials_are_decoded_and_segments_encoded() {
        let credentials = |url: &str| {
            let c = Target::parse(url).unwrap().credentials.unwrap();
            (c.user, c.password)
        };
        assert_eq!(
            credentials("http://user:pa%40ss%2@host/"),
            ("user".to_owned(), "pa@ss%2".to_owned())
        );
        assert_eq!(
            credentials("http://%zz%41@host/"),
            ("%zzA".to_owned(), String::new())
        );
        let target = Target::parse("http://user:pw@host/x#frag").unwrap();
        assert_eq!(target.url.as_str(), "http://host/x");
        assert!(Target::parse("http://host/").unwrap().credentials.is_none());

        assert_eq!(
            with_segments("http://h", &["metrics", "job", "app-1.db_x"]),
            "http://h/metrics/job/app-1.db_x"
        );
        assert_eq!(
            with_segments("http://h/", &["metrics", "job", "a/b c"]),
            "http://h/metrics/job/a%2Fb%20c"
        );
        assert_eq!(with_segments("pushgw:9091", &["x"]), "pushgw:9091");
    }
}
