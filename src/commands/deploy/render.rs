//! The plan as YAML: one stream of documents for `kubectl apply -f -`, or a kustomize
//! tree (base/, overlays/eks/, overlays/web-identity/). Each document starts with a
//! comment saying what it is and what it needs; the output depends on nothing but the
//! config and the flags, so rendering twice gives the same bytes.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};

use super::manifests::{
    config_map, cron_job, network_policy, secret_name, service_account, service_account_name,
};
use super::monitoring::{deployment, prometheus_rule, service, service_monitor};
use super::options::Options;
use super::plan::{Kind, Plan, Unit};
use crate::error::Error;
use crate::store::Role;

/// One YAML document, the base file it goes in, and the comment above it.
pub(super) struct Doc {
    pub file: &'static str,
    pub comment: String,
    pub value: Value,
}

/// The audience the EKS pod identity webhook and IAM's EKS OIDC providers use.
pub(super) const EKS_AUDIENCE: &str = "sts.amazonaws.com";

const HEADER: &str = "# Rendered by `vault deploy kubernetes` from vault.toml: change vault.toml (or \
                      the flags)\n# and render again rather than editing this. docs/kubernetes.md \
                      explains every object.\n";

fn role_file(role: Role) -> &'static str {
    match role {
        Role::Writer => "writer.yaml",
        Role::Verifier => "verifier.yaml",
        Role::Restorer => "restorer.yaml",
    }
}

/// Every object, in a fixed order: the ConfigMaps, then per role its ServiceAccount and
/// its units' NetworkPolicies and workloads, then monitoring.
pub(super) fn documents(plan: &Plan, options: &Options, irsa: bool) -> Vec<Doc> {
    let mut docs = Vec::new();
    let namespaces: BTreeSet<&str> = plan
        .roles
        .iter()
        .map(|(role, _)| options.namespace(*role))
        .collect();
    for ns in &namespaces {
        docs.push(Doc {
            file: "config.yaml",
            comment: format!(
                "The config every pod in {ns} reads as {}/{}; it names secrets, never holds them.",
                super::plan::CONFIG_DIR,
                super::plan::CONFIG_KEY
            ),
            value: config_map(plan, ns),
        });
    }
    for (role, arn) in &plan.roles {
        let ns = options.namespace(*role);
        let keys = plan.secret_keys(*role);
        let needs = if keys.is_empty() {
            "It needs no Secret.".to_string()
        } else {
            format!(
                "Its pods read Secret {} (create it in {ns}) with the keys: {}.",
                secret_name(*role),
                keys.into_iter().collect::<Vec<_>>().join(", ")
            )
        };
        let annotation = if irsa { arn.as_deref() } else { None };
        docs.push(Doc {
            file: role_file(*role),
            comment: format!(
                "The {} identity: every {} pod runs under this account and no other. {needs}",
                role.as_str(),
                match role {
                    Role::Writer => "backup",
                    Role::Verifier => "verify",
                    Role::Restorer => "drill and restore",
                }
            ),
            value: service_account(*role, ns, annotation),
        });
        for unit in plan.units.iter().filter(|u| u.role == *role) {
            docs.extend(unit_docs(unit, ns, options, plan));
        }
    }
    if options.prometheus_rule {
        let ns = plan
            .roles
            .iter()
            .find(|(r, _)| *r == Role::Verifier)
            .map_or(options.namespace(Role::Writer), |(r, _)| {
                options.namespace(*r)
            });
        docs.push(Doc {
            file: "monitoring.yaml",
            comment: "Alert rules of docs/operations.md for the Prometheus Operator; verify's \
                      metrics come from its Pushgateway ([verify] pushgateway)."
                .into(),
            value: prometheus_rule(ns, options.scheduler),
        });
    }
    docs
}

fn unit_docs(unit: &Unit, ns: &str, options: &Options, plan: &Plan) -> Vec<Doc> {
    let file = role_file(unit.role);
    let what = match &unit.kind {
        Kind::Backup { group } => format!("`vault backup {group}`"),
        Kind::Verify => "`vault verify` (every job)".into(),
        Kind::Drill => "`vault drill` (every job)".into(),
        Kind::Scheduler => "`vault run --only backup`: every job on its schedule".into(),
    };
    let metrics = (unit.kind == Kind::Scheduler)
        .then_some(plan.listen_port)
        .flatten();
    let mut docs = vec![Doc {
        file,
        comment: format!(
            "{}: egress to DNS, to TCP {} (the store, STS, pings){}; no ingress{}.",
            unit.name,
            join(&unit.web_ports),
            if unit.database_ports.is_empty() {
                String::new()
            } else {
                format!(
                    " and to the databases on TCP {}",
                    join(&unit.database_ports)
                )
            },
            if metrics.is_some() {
                " but the metrics port"
            } else {
                ""
            }
        ),
        value: network_policy(unit, ns, options, metrics),
    }];
    match &unit.timing {
        Some(t) => docs.push(Doc {
            file,
            comment: format!(
                "{what} at `{}` ({}), as {} (ServiceAccount {}).",
                t.cron.schedule,
                t.cron.time_zone,
                unit.role.as_str(),
                service_account_name(unit.role)
            ),
            value: cron_job(unit, ns, options),
        }),
        None => {
            docs.push(Doc {
                file,
                comment: format!(
                    "{what}, as {}: one replica, never two (Recreate).",
                    unit.role.as_str()
                ),
                value: deployment(unit, ns, options, plan),
            });
            docs.push(Doc {
                file,
                comment: "Where Prometheus scrapes vault run's /metrics.".into(),
                value: service(unit, ns, plan),
            });
            docs.push(Doc {
                file: "monitoring.yaml",
                comment: "For the Prometheus Operator: scrape vault run every minute.".into(),
                value: service_monitor(unit, ns),
            });
        }
    }
    docs
}

fn join(ports: &BTreeSet<u16>) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn yaml(value: &Value) -> String {
    serde_saphyr::to_string(value).expect("JSON values serialise as YAML")
}

fn comment(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + word.len() + 1 > 88 && line != "#" {
            out += &line;
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out + &line + "\n"
}

fn join_docs<'a>(docs: impl Iterator<Item = &'a Doc>) -> String {
    let mut out = String::from(HEADER);
    for doc in docs {
        out += "---\n";
        out += &comment(&doc.comment);
        out += &yaml(&doc.value);
    }
    out
}

/// One stream, for `kubectl apply -f -`.
pub(super) fn stream(plan: &Plan, options: &Options) -> String {
    join_docs(documents(plan, options, options.irsa).iter())
}

/// The kustomize tree: `base/` (no IRSA annotation), `overlays/eks/` (the annotations)
/// and `overlays/web-identity/` (the token's audience); returns the files written.
pub(super) fn kustomize(plan: &Plan, options: &Options, dir: &Path) -> Result<Vec<String>, Error> {
    // The base keeps the audience EKS needs; overlays/web-identity sets --token-audience.
    let mut base_options = options.clone();
    base_options.audience = EKS_AUDIENCE.to_string();
    let docs = documents(plan, &base_options, false);
    let mut files: Vec<(String, String)> = Vec::new();
    let mut names: Vec<&str> = docs.iter().map(|d| d.file).collect();
    names.dedup();
    let mut seen = BTreeSet::new();
    names.retain(|n| seen.insert(*n));
    for name in &names {
        files.push((
            format!("base/{name}"),
            join_docs(docs.iter().filter(|d| d.file == *name)),
        ));
    }
    files.push((
        "base/kustomization.yaml".into(),
        kustomization(
            "The objects of vault.toml, for any cluster whose service-account tokens an \
             IAM OIDC provider trusts (audience sts.amazonaws.com).",
            json!({"resources": names}),
        ),
    ));

    let sa_patches: Vec<Value> = plan
        .roles
        .iter()
        .filter_map(|(role, arn)| {
            let arn = arn.as_ref()?;
            Some(json!({
                "target": {"kind": "ServiceAccount", "name": service_account_name(*role)},
                "patch": yaml(&json!([{
                    "op": "add",
                    "path": "/metadata/annotations",
                    "value": {"eks.amazonaws.com/role-arn": arn},
                }])),
            }))
        })
        .collect();
    files.push((
        "overlays/eks/kustomization.yaml".into(),
        kustomization(
            "EKS with IAM roles for service accounts: each ServiceAccount names its role, \
             so the pod identity webhook and the role's trust policy agree on it.",
            json!({"resources": ["../../base"], "patches": sa_patches}),
        ),
    ));

    let token_patches: Vec<Value> = plan
        .units
        .iter()
        .filter(|u| u.files.iter().any(|f| f.source == super::plan::FileSource::Token))
        .map(|unit| {
            let (kind, pod) = match unit.timing {
                Some(_) => ("CronJob", "/spec/jobTemplate/spec/template/spec"),
                None => ("Deployment", "/spec/template/spec"),
            };
            let volume = token_volume_index(unit, &base_options);
            json!({
                "target": {"kind": kind, "name": unit.name},
                "patch": yaml(&json!([{
                    "op": "replace",
                    "path": format!("{pod}/volumes/{volume}/projected/sources/0/serviceAccountToken/audience"),
                    "value": options.audience,
                }])),
            })
        })
        .collect();
    files.push((
        "overlays/web-identity/kustomization.yaml".into(),
        kustomization(
            &format!(
                "Any cluster whose service-account issuer is an IAM OIDC provider: the \
                 projected token's audience is the client id that provider lists (here \
                 {}, from --token-audience).",
                options.audience
            ),
            json!({"resources": ["../../base"], "patches": token_patches}),
        ),
    ));

    for (rel, text) in &files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::config(format!("cannot create {}: {e}", parent.display())))?;
        }
        std::fs::write(&path, text)
            .map_err(|e| Error::config(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(files.into_iter().map(|(rel, _)| rel).collect())
}

/// Where the token volume is in the unit's pod spec (the volumes are rendered in the
/// same order: projected volumes by directory first).
fn token_volume_index(unit: &Unit, options: &Options) -> usize {
    let spec = super::manifests::pod_spec(unit, options, 0);
    spec["volumes"]
        .as_array()
        .and_then(|v| {
            v.iter().position(|vol| {
                vol["projected"]["sources"][0]
                    .get("serviceAccountToken")
                    .is_some()
            })
        })
        .unwrap_or(0)
}

fn kustomization(about: &str, mut body: Value) -> String {
    body["apiVersion"] = json!("kustomize.config.k8s.io/v1beta1");
    body["kind"] = json!("Kustomization");
    format!("{HEADER}{}{}", comment(about), yaml(&body))
}
