//! One identity's connection to an S3 target: the SDK configuration of its credential
//! source, an S3 client for the target's region, endpoint and path style, and the
//! credentials it resolves to.
//!
//! [`S3Store`](super::S3Store) is built on one. It is public for the requests the
//! [`Store`](crate::store::Store) trait has no room for: `vault doctor` opens one per
//! identity and probes, request by request, what that identity may do. Must not import
//! `config` or anything above the store.

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::ResponseChecksumValidation;

use super::auth::{self, Identity};
use super::errors::{credentials_failure, sources};
use super::target::S3Target;
use crate::error::Error;
use crate::store::Role;

/// One identity's SDK configuration and S3 client for a target.
pub struct Session {
    sdk: SdkConfig,
    client: Client,
    role: Role,
}

impl Session {
    /// Opens `target` as `role`, with `identity` and no other. Fails when the identity
    /// is configured wrongly or no region can be found; credentials are resolved
    /// lazily, on the first request (or by [`Session::credentials`]).
    pub async fn open(
        target: &S3Target,
        identity: &Identity,
        role: Role,
    ) -> Result<Session, Error> {
        let sdk = auth::sdk_config(identity, role, target.region.as_deref()).await?;
        // vault checks the blake3 of everything it reads against the manifest, so the
        // SDK validates a response's checksum only where the API requires it (never on
        // GetObject, which sends no checksum mode). By default it would validate every
        // GetObject and, for a multipart object, whose checksum is one of its parts',
        // print a warning it cannot act on at each read.
        let mut conf = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(target.path_style)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &target.endpoint {
            conf = conf.endpoint_url(endpoint);
        }
        Ok(Session {
            client: Client::from_conf(conf.build()),
            sdk,
            role,
        })
    }

    /// The role this session was opened as.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The S3 client, signing as this identity. The SDK's own retries are off: a
    /// caller that wants retries sends through [`crate::retry::Retry`].
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The identity's SDK configuration (region, credentials provider), for a client
    /// of another AWS service under the same identity (STS, in `vault doctor`).
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.sdk
    }

    /// The credentials the identity resolves to now (an assumed role's session
    /// included), for requests made outside the SDK's clients: `vault doctor` compares
    /// the identities' access keys and signs one IAM request with them. They never
    /// reach a log line.
    pub async fn credentials(&self) -> Result<Credentials, Error> {
        use aws_credential_types::provider::ProvideCredentials;

        let name = self.role.as_str();
        let provider = self.sdk.credentials_provider().ok_or_else(|| {
            Error::config(format!("no credentials source for the {name} identity"))
        })?;
        provider.provide_credentials().await.map_err(|e| {
            let message = format!(
                "no usable credentials for the {name} identity: {}",
                sources(&e)
            );
            credentials_failure(&e, message)
        })
    }
}
