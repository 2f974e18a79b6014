//! Prometheus Pushgateway pushes: exposition text PUT to one job's group.
//!
//! Owns where a push goes (a full push URL, or a base URL plus `/metrics/job/<job>`)
//! and how it is sent (PUT, replacing the group's metrics). The text itself is
//! `metrics`'. Must not import `store` or `config`.

use bytes::Bytes;
use reqwest::Method;

use super::target::with_segments;
use super::{Patience, send};
use crate::error::Error;

/// PUTs exposition text to a Pushgateway, replacing the group's metrics.
///
/// `url` is either a full push URL (containing "/metrics/job/"), used as is, or a
/// base URL to which "/metrics/job/<job>" is appended.
pub async fn push(url: &str, job: &str, body: String) -> Result<(), Error> {
    push_with(url, job, body, Patience::DEFAULT).await
}

pub(super) async fn push_with(
    url: &str,
    job: &str,
    body: String,
    patience: Patience,
) -> Result<(), Error> {
    let url = if url.contains("/metrics/job/") {
        url.to_owned()
    } else {
        with_segments(url, &["metrics", "job", job])
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::receiver::Receiver;
    use crate::notify::testing::QUICK;

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
