//! Who each identity is (STS GetCallerIdentity), and whether the writer reaches IAM.
//!
//! GetCallerIdentity needs no permission (AWS answers it even under an explicit
//! Deny), so it shows which principal each credential belongs to. The IAM check is
//! one read-only request, `iam:GetAccountSummary`, signed here with the writer's
//! credentials: the IAM SDK is too large to build for one call. It goes through the
//! shared HTTPS set-up (`crate::https`), like every other AWS request.

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde::Serialize;

use super::probe::{Observed, attempt};
use crate::https;
use crate::store::s3::S3Target;

/// Who one identity's credentials belong to.
#[derive(Debug, Clone, Serialize)]
pub struct Principal {
    pub identity: &'static str,
    /// The access key id, shortened to its last four characters when shown.
    #[serde(rename = "access_key", serialize_with = "shown_key")]
    pub access_key_id: String,
    pub arn: Option<String>,
    pub account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Principal {
    /// The principal behind the ARN: a role for its sessions (`assumed-role/R/S` is
    /// role R whatever the session name), else the ARN itself.
    pub fn principal(&self) -> Option<String> {
        let arn = self.arn.as_deref()?;
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        if let [_, partition, "sts", _, account, resource] = parts[..]
            && let Some(rest) = resource.strip_prefix("assumed-role/")
        {
            let role = rest.split('/').next().unwrap_or(rest);
            return Some(format!("arn:{partition}:iam::{account}:role/{role}"));
        }
        Some(arn.to_string())
    }
}

/// `…WXYZ`: enough to tell keys apart in a report, not the whole id.
pub fn short_key(id: &str) -> String {
    let tail: String = id
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

fn shown_key<S: serde::Serializer>(id: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&short_key(id))
}

/// Asks STS who `sdk`'s credentials belong to.
pub async fn whoami(
    identity: &'static str,
    sdk: &SdkConfig,
    target: &S3Target,
    creds: &Credentials,
) -> Principal {
    let mut conf = aws_sdk_sts::config::Builder::from(sdk);
    if let Some(endpoint) = &target.endpoint {
        conf = conf.endpoint_url(endpoint);
    }
    let sts = aws_sdk_sts::Client::from_conf(conf.build());
    let what = format!("GetCallerIdentity as the {identity}");
    let (observed, out) = attempt(&what, || sts.get_caller_identity().send()).await;
    let mut principal = Principal {
        identity,
        access_key_id: creds.access_key_id().to_string(),
        arn: None,
        account: None,
        error: None,
    };
    match out {
        Some(out) => {
            principal.arn = out.arn;
            principal.account = out.account;
        }
        None => principal.error = Some(format!("{}: {}", observed.word(), observed.detail())),
    }
    principal
}

/// Sends `iam:GetAccountSummary` signed with `creds`: allowed means these credentials
/// reach the account's IAM. With a custom `[vault] endpoint` the request goes there
/// (S3-compatible test servers serve IAM on the same port); else to the partition's
/// IAM endpoint.
pub async fn iam_reach(target: &S3Target, region: &str, creds: &Credentials) -> Observed {
    let (url, signing_region) = match &target.endpoint {
        Some(endpoint) => (
            format!("{}/", endpoint.trim_end_matches('/')),
            region.to_string(),
        ),
        None => iam_endpoint(region),
    };
    match send_iam(&url, &signing_region, creds).await {
        Ok((status, body)) => read_iam_answer(status, &body),
        Err(e) => Observed::Unknown(e),
    }
}

/// IAM is global per partition: one endpoint and signing region each.
fn iam_endpoint(region: &str) -> (String, String) {
    let (host, signing) = if region.starts_with("cn-") {
        ("iam.cn-north-1.amazonaws.com.cn", "cn-north-1")
    } else if region.starts_with("us-gov-") {
        ("iam.us-gov.amazonaws.com", "us-gov-west-1")
    } else {
        ("iam.amazonaws.com", "us-east-1")
    };
    (format!("https://{host}/"), signing.to_string())
}

const IAM_BODY: &str = "Action=GetAccountSummary&Version=2010-05-08";
const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

async fn send_iam(url: &str, region: &str, creds: &Credentials) -> Result<(u16, String), String> {
    let identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("iam")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("cannot sign the IAM request: {e}"))?
        .into();
    // Signed as it is sent: the URL as parsed.
    let endpoint = url::Url::parse(url).map_err(|e| format!("bad IAM endpoint {url}: {e}"))?;
    let headers = [("content-type", FORM)];
    let signable = SignableRequest::new(
        "POST",
        endpoint.as_str(),
        headers.iter().copied(),
        SignableBody::Bytes(IAM_BODY.as_bytes()),
    )
    .map_err(|e| format!("cannot sign the IAM request: {e}"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| format!("cannot sign the IAM request: {e}"))?
        .into_parts();

    let client = https::client(&endpoint).map_err(|e| format!("IAM at {url}: {e}"))?;
    let mut request = client
        .post(endpoint)
        .header("content-type", FORM)
        .body(IAM_BODY);
    let (signed, _) = instructions.into_parts();
    for header in signed {
        request = request.header(header.name(), header.value());
    }

    let answer = tokio::time::timeout(Duration::from_secs(30), async {
        let failed = |e: reqwest::Error| format!("IAM at {url}: {}", https::describe(e));
        let response = request.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(failed)?;
        Ok::<_, String>((status, body))
    })
    .await
    .map_err(|_| format!("IAM at {url} did not answer within 30s"))??;
    Ok(answer)
}

/// IAM answers in XML: `<Code>` of an `<Error>` says why it refused.
fn read_iam_answer(status: u16, body: &str) -> Observed {
    let code = body
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.trim().to_string());
    let detail = match &code {
        Some(c) => format!("{status} {c}"),
        None => format!("HTTP {status}"),
    };
    match (status, code.as_deref()) {
        (200..=299, _) => Observed::Allowed(format!("{status}: GetAccountSummary answered")),
        (403, Some("AccessDenied" | "AccessDeniedException") | None) => Observed::Denied(detail),
        (403, Some(c)) if c.contains("Token") || c.contains("Signature") => {
            Observed::Unknown(format!("{detail}: the credentials were not accepted"))
        }
        _ => Observed::Unknown(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_of_a_role_are_the_role() {
        let p = |arn: &str| Principal {
            identity: "writer",
            access_key_id: "AKIAEXAMPLEWXYZ".into(),
            arn: Some(arn.into()),
            account: None,
            error: None,
        };
        assert_eq!(
            p("arn:aws:sts::111122223333:assumed-role/vault-writer/vault-writer")
                .principal()
                .as_deref(),
            Some("arn:aws:iam::111122223333:role/vault-writer")
        );
        assert_eq!(
            p("arn:aws:iam::111122223333:user/ops")
                .principal()
                .as_deref(),
            Some("arn:aws:iam::111122223333:user/ops")
        );
        assert_eq!(short_key("AKIAEXAMPLEWXYZ"), "…WXYZ");
    }

    #[test]
    fn iam_answers_are_read_as_rights() {
        assert!(read_iam_answer(200, "<GetAccountSummaryResponse/>").is_allowed());
        let denied = "<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>";
        assert!(read_iam_answer(403, denied).is_denied());
        let bad = "<ErrorResponse><Error><Code>InvalidClientTokenId</Code></Error></ErrorResponse>";
        assert!(matches!(read_iam_answer(403, bad), Observed::Unknown(_)));
        assert!(matches!(read_iam_answer(503, ""), Observed::Unknown(_)));
        assert_eq!(iam_endpoint("eu-west-1").1, "us-east-1");
        assert_eq!(iam_endpoint("cn-northwest-1").1, "cn-north-1");
    }
}
