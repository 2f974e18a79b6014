//! The identities doctor probes: each one's [`Session`] and credentials, who each is
//! (its principal), and whether two of them are in truth one.
//!
//! Opens sessions through `store::s3`'s public API only; the STS and IAM requests
//! themselves are `principal`'s.

use aws_credential_types::Credentials;
use aws_sdk_s3::Client;

use super::Doctor;
use super::findings::IamReach;
use super::principal::{self, short_key};
use super::probe::Observed;
use crate::config::Settings;
use crate::error::{Error, ExitCode};
use crate::store::Role;
use crate::store::s3::{S3Target, Session};

/// One identity as doctor uses it.
pub(super) struct Ident {
    pub(super) session: Session,
    /// Why its credentials could not be had, if they could not.
    pub(super) unusable: Option<String>,
    pub(super) creds: Option<Credentials>,
}

impl Ident {
    pub(super) fn role(&self) -> Role {
        self.session.role()
    }

    /// Its S3 client: every probe is sent with it.
    pub(super) fn s3(&self) -> &Client {
        self.session.client()
    }
}

/// A session for each role `--only` names (all configured ones when none is), with its
/// credentials resolved now: an identity without usable ones is kept, to be reported
/// and skipped, but one configured wrongly stops doctor.
pub(super) async fn open(
    settings: &Settings,
    target: &S3Target,
    only: &[String],
) -> Result<Vec<Ident>, Error> {
    let mut idents = Vec::new();
    let pruner = settings.identities.pruner != crate::config::IdentitySection::default();
    for role in selected(only, pruner) {
        let identity = settings.identities.store(role);
        let session = Session::open(target, identity, role)
            .await
            .map_err(|e| match e {
                Error::Config(message) => Error::config(format!(
                    "{message}\nhint: on a host that holds only some identities' \
                     credentials, name those with --only"
                )),
                other => other,
            })?;
        let (creds, unusable) = match session.credentials().await {
            Ok(c) => (Some(c), None),
            Err(e) => (None, Some(e.to_string())),
        };
        idents.push(Ident {
            session,
            unusable,
            creds,
        });
    }
    Ok(idents)
}

/// The roles `--only` names, in the fixed order writer, verifier, restorer, pruner;
/// when none is named, the first three, and the pruner when `[identities.pruner]` is
/// configured (a vault that never prunes has no pruner).
pub(super) fn selected(only: &[String], pruner: bool) -> Vec<Role> {
    [Role::Writer, Role::Verifier, Role::Restorer, Role::Pruner]
        .into_iter()
        .filter(|r| match only {
            [] => *r != Role::Pruner || pruner,
            named => named.iter().any(|o| o == r.as_str()),
        })
        .collect()
}

impl Doctor<'_> {
    /// An identity whose credentials could not be had fails doctor; its probes are
    /// skipped.
    pub(super) fn unusable(&mut self, idents: &[Ident]) {
        for id in idents {
            if let Some(why) = &id.unusable {
                self.problem(
                    ExitCode::Failure,
                    format!(
                        "the {} identity cannot be probed: {why}",
                        id.role().as_str()
                    ),
                );
            }
        }
    }

    /// Who each identity is; two identities on one access key fail, two on one
    /// principal warn. Then whether the writer reaches IAM.
    pub(super) async fn principals(&mut self, idents: &[Ident]) {
        for id in idents {
            let Some(creds) = &id.creds else { continue };
            let p = principal::whoami(
                id.role().as_str(),
                id.session.sdk_config(),
                self.target,
                creds,
            )
            .await;
            if let Some(e) = &p.error {
                self.warnings.push(format!(
                    "could not ask STS who the {} is (GetCallerIdentity: {e}); the \
                     principals were not compared",
                    id.role().as_str()
                ));
            }
            self.principals.push(p);
        }
        let found = self.principals.clone();
        for (i, a) in found.iter().enumerate() {
            for b in &found[i + 1..] {
                if a.access_key_id == b.access_key_id {
                    self.problem(
                        ExitCode::Integrity,
                        format!(
                            "the {} and the {} use the same access key ({}): they are one \
                             identity, so neither is limited to its own rights",
                            a.identity,
                            b.identity,
                            short_key(&a.access_key_id)
                        ),
                    );
                } else if let (Some(pa), Some(pb)) = (a.principal(), b.principal())
                    && pa == pb
                {
                    self.warnings.push(format!(
                        "the {} and the {} resolve to the same principal {pa} (different \
                         access keys): both hold that principal's rights, so the two \
                         identities are not separated; give each its own user or role",
                        a.identity, b.identity
                    ));
                }
            }
        }

        let Some(writer) = idents.iter().find(|i| i.role() == Role::Writer) else {
            return;
        };
        let Some(creds) = &writer.creds else { return };
        let region = writer
            .session
            .sdk_config()
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into());
        let observed = principal::iam_reach(self.target, &region, creds).await;
        match &observed {
            Observed::Allowed(_) => self.warnings.push(
                "the writer's credentials can reach this account's IAM \
                 (iam:GetAccountSummary is allowed): whoever steals them may read or \
                 change the vault's roles and policies. The writer needs no IAM \
                 permission; deny iam:* in its policy"
                    .into(),
            ),
            Observed::Unknown(e) => self.warnings.push(format!(
                "could not check whether the writer's credentials reach IAM: {e}"
            )),
            _ => {}
        }
        self.iam = Some(IamReach {
            identity: "writer",
            action: "iam:GetAccountSummary",
            observed,
        });
    }
}
