//! The flags of `vault deploy kubernetes`, checked once: names Kubernetes accepts,
//! absolute mount paths, networks that parse, role ARNs that look like roles.

use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use crate::cli::KubernetesArgs;
use crate::error::Error;
use crate::store::Role;

/// A PersistentVolumeClaim mounted at a path of the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Claim {
    pub path: PathBuf,
    pub name: String,
}

/// The validated flags.
#[derive(Debug, Clone)]
pub(super) struct Options {
    pub image: String,
    pub drill_image: String,
    namespace: String,
    writer_namespace: Option<String>,
    verifier_namespace: Option<String>,
    restorer_namespace: Option<String>,
    pub irsa: bool,
    role_arns: [Option<String>; 3],
    pub audience: String,
    pub claims: Vec<Claim>,
    pub database_cidrs: Vec<String>,
    pub egress_ports: Vec<u16>,
    pub scheduler: bool,
    pub prometheus_rule: bool,
}

impl Options {
    pub fn from_args(a: &KubernetesArgs) -> Result<Options, Error> {
        let bad = |msg: String| Error::config(msg);
        for image in std::iter::once(&a.image).chain(a.drill_image.as_ref()) {
            if image.is_empty() || image.chars().any(char::is_whitespace) {
                return Err(bad(format!(
                    "--image `{}` is not an image reference",
                    crate::names::shown(image)
                )));
            }
        }
        for (flag, ns) in [
            ("--namespace", Some(&a.namespace)),
            ("--writer-namespace", a.writer_namespace.as_ref()),
            ("--verifier-namespace", a.verifier_namespace.as_ref()),
            ("--restorer-namespace", a.restorer_namespace.as_ref()),
        ] {
            if let Some(ns) = ns {
                dns_label(ns).map_err(|e| bad(format!("{flag}: {e}")))?;
            }
        }
        for (flag, arn) in [
            ("--role-arn-writer", &a.role_arn_writer),
            ("--role-arn-verifier", &a.role_arn_verifier),
            ("--role-arn-restorer", &a.role_arn_restorer),
        ] {
            if let Some(arn) = arn {
                role_arn(arn).map_err(|e| bad(format!("{flag}: {e}")))?;
            }
        }
        if a.token_audience.is_empty() || a.token_audience.chars().any(char::is_whitespace) {
            return Err(bad("--token-audience must be one word".into()));
        }
        let mut claims = Vec::new();
        for text in &a.claims {
            let claim = claim(text).map_err(|e| bad(format!("--claim {text}: {e}")))?;
            if claims.iter().any(|c: &Claim| c.path == claim.path) {
                return Err(bad(format!(
                    "--claim: two claims for {}",
                    claim.path.display()
                )));
            }
            claims.push(claim);
        }
        let database_cidrs = a
            .database_cidrs
            .iter()
            .map(|c| cidr(c).map_err(|e| bad(format!("--database-cidr {c}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if a.egress_ports.contains(&0) {
            return Err(bad("--egress-port 0 is not a port".into()));
        }
        let mut egress_ports = a.egress_ports.clone();
        egress_ports.sort_unstable();
        egress_ports.dedup();
        Ok(Options {
            image: a.image.clone(),
            drill_image: a.drill_image.clone().unwrap_or_else(|| a.image.clone()),
            namespace: a.namespace.clone(),
            writer_namespace: a.writer_namespace.clone(),
            verifier_namespace: a.verifier_namespace.clone(),
            restorer_namespace: a.restorer_namespace.clone(),
            irsa: a.irsa,
            role_arns: [
                a.role_arn_writer.clone(),
                a.role_arn_verifier.clone(),
                a.role_arn_restorer.clone(),
            ],
            audience: a.token_audience.clone(),
            claims,
            database_cidrs,
            egress_ports,
            scheduler: a.scheduler,
            prometheus_rule: a.prometheus_rule,
        })
    }

    /// The namespace of `role`'s objects.
    pub fn namespace(&self, role: Role) -> &str {
        let own = match role {
            Role::Writer => &self.writer_namespace,
            Role::Verifier => &self.verifier_namespace,
            Role::Restorer => &self.restorer_namespace,
        };
        own.as_deref().unwrap_or(&self.namespace)
    }

    /// The role ARN given on the command line for `role`.
    pub fn role_arn(&self, role: Role) -> Option<&str> {
        self.role_arns[role_index(role)].as_deref()
    }

    /// The claim whose path holds `path`, the deepest one.
    pub fn claim_for(&self, path: &Path) -> Option<&Claim> {
        self.claims
            .iter()
            .filter(|c| path.starts_with(&c.path))
            .max_by_key(|c| c.path.components().count())
    }
}

fn role_index(role: Role) -> usize {
    match role {
        Role::Writer => 0,
        Role::Verifier => 1,
        Role::Restorer => 2,
    }
}

/// An RFC 1123 label: what Kubernetes takes as a namespace or a Service name.
pub(super) fn dns_label(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a Kubernetes name: at most 63 of a-z, 0-9 and -, starting and \
             ending with a letter or digit",
            crate::names::shown(name)
        ))
    }
}

fn role_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() == 6 && parts[0] == "arn" && parts[2] == "iam" && parts[5].starts_with("role/") {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)",
            crate::names::shown(arn)
        ))
    }
}

fn claim(text: &str) -> Result<Claim, String> {
    let (path, name) = text
        .split_once('=')
        .ok_or("give PATH=CLAIM, e.g. /var/lib/app=app-data")?;
    let path = PathBuf::from(path);
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "{} is not an absolute path of the pod",
            path.display()
        ));
    }
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|label| dns_label(label).is_ok() && !label.is_empty());
    if !ok {
        return Err(format!(
            "`{}` is not a PersistentVolumeClaim name",
            crate::names::shown(name)
        ));
    }
    Ok(Claim {
        path: path.components().collect(),
        name: name.to_string(),
    })
}

fn cidr(text: &str) -> Result<String, String> {
    let (addr, prefix) = text.split_once('/').ok_or("give ADDRESS/PREFIX")?;
    let addr: IpAddr = addr.parse().map_err(|_| "not an IP address")?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(p) if p <= max => Ok(text.to_string()),
        _ => Err(format!("the prefix must be 0 to {max}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_paths_networks_and_roles_are_checked() {
        assert!(dns_label("vault-prod").is_ok());
        for bad in ["", "Vault", "-a", "a-", "a_b", &"a".repeat(64)] {
            assert!(dns_label(bad).is_err(), "{bad}");
        }
        assert_eq!(
            claim("/var/lib/app/=app-data").unwrap(),
            Claim {
                path: "/var/lib/app".into(),
                name: "app-data".into()
            }
        );
        assert!(claim("var/lib=x").is_err());
        assert!(claim("/a/../b=x").is_err());
        assert!(claim("/a=X").is_err());
        assert!(cidr("10.0.0.0/8").is_ok());
        assert!(cidr("fd00::/8").is_ok());
        assert!(cidr("10.0.0.0/33").is_err());
        assert!(cidr("db.internal/32").is_err());
        assert!(role_arn("arn:aws:iam::111122223333:role/vault-writer").is_ok());
        assert!(role_arn("arn:aws:iam::111122223333:user/x").is_err());
    }
}
