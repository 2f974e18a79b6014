//! One identity's AWS configuration, from its `[identities.<role>]` section.
//!
//! Credential sources, one per identity: a named profile; static keys read from env
//! vars or files; a web identity token (Kubernetes service-account token / IRSA) with
//! a role; or, when none is given, the SDK's default chain. `role_arn` (+ `external_id`,
//! `session_name`) assumes a role on top of the chosen source. Secrets are read here
//! and handed to the SDK; they never reach a log line or an error message. Must not
//! import `config` (it deserialises its sections into [`Identity`]) or anything above
//! the store.

use std::path::{Path, PathBuf};

use aws_config::sts::AssumeRoleProvider;
use aws_config::web_identity_token::{StaticConfiguration, WebIdentityTokenCredentialsProvider};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;

use crate::error::Error;
use crate::store::Role;

/// How one identity authenticates to S3, from its `[identities.<role>]` section.
/// Every secret is referenced, never inline.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// A named profile in the cloud SDK's shared config.
    pub profile: Option<String>,
    /// Env vars holding static keys.
    pub access_key_id_env: Option<String>,
    pub secret_access_key_env: Option<String>,
    pub session_token_env: Option<String>,
    /// Files holding static keys.
    pub access_key_id_file: Option<PathBuf>,
    pub secret_access_key_file: Option<PathBuf>,
    /// A role to assume.
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub session_name: Option<String>,
    /// A web identity token (Kubernetes service-account token, IRSA).
    pub web_identity_token_file: Option<PathBuf>,
}

impl Identity {
    /// Checks that the keys name one credential source, completely, and resolves
    /// relative files against `base` (the config file's directory). The error is the
    /// reason; the caller names the section.
    pub fn validate(&mut self, base: &Path) -> Result<(), String> {
        let env_keys = self.access_key_id_env.is_some() || self.secret_access_key_env.is_some();
        let file_keys = self.access_key_id_file.is_some() || self.secret_access_key_file.is_some();
        let chosen = [
            self.profile.is_some(),
            env_keys,
            file_keys,
            self.web_identity_token_file.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if chosen > 1 {
            return Err(
                "choose one credential source: profile, *_env keys, *_file keys or \
                        web_identity_token_file"
                    .into(),
            );
        }
        if env_keys && (self.access_key_id_env.is_none() || self.secret_access_key_env.is_none()) {
            return Err("access_key_id_env and secret_access_key_env go together".into());
        }
        if file_keys && (self.access_key_id_file.is_none() || self.secret_access_key_file.is_none())
        {
            return Err("access_key_id_file and secret_access_key_file go together".into());
        }
        if self.web_identity_token_file.is_some() && self.role_arn.is_none() {
            return Err("web_identity_token_file needs role_arn".into());
        }
        if (self.external_id.is_some() || self.session_name.is_some()) && self.role_arn.is_none() {
            return Err("external_id and session_name need role_arn".into());
        }
        for path in [
            &mut self.access_key_id_file,
            &mut self.secret_access_key_file,
            &mut self.web_identity_token_file,
        ]
        .into_iter()
        .flatten()
        {
            *path = base.join(&*path);
        }
        Ok(())
    }
}

/// The SDK configuration for `identity`, with the SDK's own retries off (vault retries
/// in one place, see `crate::retry`).
pub async fn sdk_config(
    identity: &Identity,
    role: Role,
    region: Option<&str>,
) -> Result<SdkConfig, Error> {
    let name = role.as_str();
    let region = resolve_region(region, identity).ok_or_else(|| {
        Error::config(format!(
            "no AWS region for the {name} identity: set [vault] region (or AWS_REGION)"
        ))
    })?;
    let session = identity
        .session_name
        .clone()
        .unwrap_or_else(|| format!("vault-{name}"));

    let http = crate::https::aws_http_client();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http.clone())
        .region(Region::new(region.clone()))
        .retry_config(aws_config::retry::RetryConfig::disabled());
    if let Some(profile) = &identity.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(creds) = static_credentials(identity, name)? {
        loader = loader.credentials_provider(creds);
    }
    if let (Some(token_file), Some(role_arn)) =
        (&identity.web_identity_token_file, &identity.role_arn)
    {
        let provider = WebIdentityTokenCredentialsProvider::builder()
            .configure(
                &aws_config::provider_config::ProviderConfig::default()
                    .with_region(Some(Region::new(region.clone())))
                    .with_http_client(http),
            )
            .static_configuration(StaticConfiguration {
                web_identity_token_file: token_file.clone(),
                role_arn: role_arn.clone(),
                session_name: session,
            })
            .build();
        return Ok(loader.credentials_provider(provider).load().await);
    }
    let base = loader.load().await;
    match &identity.role_arn {
        None => Ok(base),
        Some(role_arn) => {
            let mut assume = AssumeRoleProvider::builder(role_arn)
                .session_name(session)
                .configure(&base);
            if let Some(external_id) = &identity.external_id {
                assume = assume.external_id(external_id);
            }
            let provider = assume.build().await;
            Ok(base
                .into_builder()
                .credentials_provider(SharedCredentialsProvider::new(provider))
                .build())
        }
    }
}

/// `[vault] region`, else `AWS_REGION` / `AWS_DEFAULT_REGION`, else the profile's
/// region is left to the SDK (`None` means: not found anywhere we may look without
/// touching the network).
fn resolve_region(configured: Option<&str>, identity: &Identity) -> Option<String> {
    if let Some(r) = configured {
        return Some(r.to_string());
    }
    for var in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
        if let Ok(r) = std::env::var(var)
            && !r.is_empty()
        {
            return Some(r);
        }
    }
    profile_region(identity.profile.as_deref()?)
}

/// The `region` of a profile in the shared config file, read without the network.
fn profile_region(profile: &str) -> Option<String> {
    let path = std::env::var_os("AWS_CONFIG_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".aws/config")))?;
    let text = std::fs::read_to_string(path).ok()?;
    let wanted = if profile == "default" {
        "default".to_string()
    } else {
        format!("profile {profile}")
    };
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section.trim() == wanted;
        } else if inside
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == "region"
        {
            return Some(v.trim().to_string());
        }
    }
    None
}

/// Static keys from env vars or files, if the identity names them.
fn static_credentials(identity: &Identity, name: &str) -> Result<Option<Credentials>, Error> {
    let from_env = |var: &str| -> Result<String, Error> {
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
            _ => Err(Error::config(format!(
                "[identities.{name}]: the environment variable {var} is not set"
            ))),
        }
    };
    let from_file = |path: &Path| -> Result<String, Error> {
        let v = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!(
                "[identities.{name}]: cannot read {}: {e}",
                path.display()
            ))
        })?;
        if v.trim().is_empty() {
            return Err(Error::config(format!(
                "[identities.{name}]: {} is empty",
                path.display()
            )));
        }
        Ok(v.trim().to_string())
    };
    let (id, secret) = match (
        &identity.access_key_id_env,
        &identity.secret_access_key_env,
        &identity.access_key_id_file,
        &identity.secret_access_key_file,
    ) {
        (Some(id), Some(secret), _, _) => (from_env(id)?, from_env(secret)?),
        (_, _, Some(id), Some(secret)) => (from_file(id)?, from_file(secret)?),
        _ => return Ok(None),
    };
    let token = identity
        .session_token_env
        .as_deref()
        .map(from_env)
        .transpose()?;
    Ok(Some(Credentials::new(
        id,
        secret,
        token,
        None,
        "vault-config",
    )))
}
