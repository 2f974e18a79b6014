//! The one HTTPS set-up: rustls with ring, trusting the platform's root certificates,
//! with a clear reason when none can be loaded.
//!
//! Owns the TLS decisions for every request vault makes: the library and crypto
//! provider (rustls with ring; never aws-lc, OpenSSL or a second TLS stack), the trust
//! anchors (the platform's root certificates, read once by rustls-native-certs, which
//! honours `SSL_CERT_FILE` and `SSL_CERT_DIR`) and the protocol versions (rustls' safe
//! defaults: TLS 1.2 and 1.3). A leaf: it imports nothing of vault's.
//!
//! Its three users:
//! - `notify` (pings, Pushgateway pushes) and `vault doctor`'s signed IAM request send
//!   through [`client`]: one reqwest client on the [`rustls::ClientConfig`] built here.
//!   HTTP/1, no proxy and no redirects (a 3xx is an answer, as for the SDK), and no
//!   idle connections: requests are minutes apart, and a pooled connection would
//!   belong to the runtime that opened it, which may be gone by the next request.
//! - The AWS SDK (S3, STS, credential providers) uses [`aws_http_client`]. The SDK's
//!   client (aws-smithy-http-client) builds its own `ClientConfig` from a crypto mode
//!   and a trust store, and takes neither a ready config nor an outside connector (a
//!   custom crypto provider sits behind the `aws_sdk_unstable` cfg); so it is given the
//!   same *decisions*, not the same object: ring, and the platform's roots, which it
//!   reads itself with the same loader (once per process, as [`client`] does). It
//!   keeps its own narrower list of cipher suites, and its own diagnostic when no root
//!   certificate loads: a warning "no native root CA certificates found", then a
//!   certificate error from every handshake.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use rustls::RootCertStore;
use url::Url;

/// Why HTTPS cannot be used: no root certificate could be loaded. Plain http still
/// works; an https request fails at once with this instead of an opaque "unknown
/// issuer" from the handshake.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot verify TLS certificates: {0}")]
pub struct NoRoots(String);

/// The client for the requests vault makes itself, for `url`: an error when `url` is
/// https and no root certificate could be loaded.
pub fn client(url: &Url) -> Result<&'static reqwest::Client, NoRoots> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if url.scheme() == "https"
        && let Err(why) = roots()
    {
        return Err(why.clone());
    }
    Ok(CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config())
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .build()
            .expect("a client with fixed settings and a built TLS config builds")
    }))
}

/// The HTTP client of every AWS SDK call: rustls with ring and the platform's roots.
pub fn aws_http_client() -> SharedHttpClient {
    // The platform's roots, which the SDK reads with the same loader as [`roots`].
    let trust = TrustStore::empty().with_native_roots(true);
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("a trust store alone makes a valid TLS context");
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(context)
        .build_https()
}

/// An error of [`client`] on one line, its causes included and its URL left out (a
/// URL may carry a token): "tcp connect error: Connection refused (os error 111)".
pub fn describe(err: reqwest::Error) -> String {
    let err = err.without_url();
    // Plain `source()`: an `io::Error` already shows what it wraps.
    let mut parts: Vec<String> =
        std::iter::successors(Some(&err as &(dyn StdError + 'static)), |&e| e.source())
            .map(ToString::to_string)
            .collect();
    parts.dedup();
    // reqwest's own summary ("error sending request") and hyper-util's below it
    // ("client error (Connect)") say less than the causes they wrap.
    let summaries = parts.len().saturating_sub(1).min(2);
    parts.drain(..summaries);
    parts.join(": ")
}

/// True when a TLS failure (a bad or unknown certificate, say) is somewhere in the
/// chain: trying again will not fix it.
pub fn is_tls_failure(err: &reqwest::Error) -> bool {
    chain(err).any(|e| e.is::<rustls::Error>())
}

/// `err` and its causes. rustls errors travel inside (nested) `io::Error`s, whose
/// `source()` skips what they wrap, so those are opened by hand.
fn chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |&e: &&'a (dyn StdError + 'static)| {
        match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(wrapped) => Some(wrapped as &(dyn StdError + 'static)),
            None => e.source(),
        }
    })
}

/// The TLS configuration of [`client`]; with no roots, an empty store (https is then
/// refused by [`client`] before any handshake).
fn tls_config() -> rustls::ClientConfig {
    let roots = match roots() {
        Ok(roots) => Arc::clone(roots),
        Err(_) => Arc::new(RootCertStore::empty()),
    };
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// The platform's root certificates, read once.
fn roots() -> Result<&'static Arc<RootCertStore>, &'static NoRoots> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, NoRoots>> = OnceLock::new();
    ROOTS.get_or_init(load_roots).as_ref()
}

fn load_roots() -> Result<Arc<RootCertStore>, NoRoots> {
    let found = rustls_native_certs::load_native_certs();
    let mut errors = String::new();
    for (i, error) in found.errors.iter().enumerate() {
        let _ = write!(errors, "{}{error}", if i == 0 { " (" } else { "; " });
    }
    if !errors.is_empty() {
        errors.push(')');
    }
    if found.certs.is_empty() {
        return Err(NoRoots(format!(
            "no native root CA certificates found{errors}"
        )));
    }
    let mut roots = RootCertStore::empty();
    let (_, invalid) = roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(NoRoots(format!(
            "no valid native root CA certificates found ({invalid} invalid)"
        )));
    }
    Ok(Arc::new(roots))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_are_described_by_their_causes_without_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = Url::parse(&format!("http://127.0.0.1:{port}/x?token=t0k")).unwrap();
        let err = client(&url).unwrap().get(url).send().await.unwrap_err();
        assert!(!is_tls_failure(&err), "{err}");
        let shown = describe(err);
        assert!(shown.starts_with("tcp connect error: "), "{shown}");
        assert!(!shown.contains("t0k"), "{shown}");
    }
}
