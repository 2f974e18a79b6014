//! The Kubernetes objects of a plan, as JSON values (serialised as YAML with sorted
//! keys, as `kubectl get -o yaml` shows them): a ServiceAccount per role, the config's
//! ConfigMap per namespace, and per unit its CronJob and NetworkPolicy.
//!
//! Every pod: non-root 65532, read-only root file system, no capabilities, no privilege
//! escalation, the runtime's seccomp profile, no service-account token but the projected
//! one for web identity, /tmp an emptyDir, secrets only by reference (secretKeyRef,
//! Secret items in a projected volume), nothing of another role's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::options::Options;
use super::plan::{Dir, File, FileSource, Kind, Plan, Unit};
use crate::store::Role;

/// The UID and GID of the image's user (deploy/container/Dockerfile).
pub(super) const UID: u64 = 65532;
pub(super) const CONFIG_MAP: &str = "vault-config";
/// The name the EKS pod identity webhook gives its token volume: with a volume of that
/// name already there, it adds none of its own.
const TOKEN_VOLUME: &str = "aws-iam-token";
/// How long a projected token lives; the kubelet renews it at 80%, and vault reads the
/// file again at each credential refresh.
const TOKEN_SECONDS: u64 = 3600;
/// Finished Jobs (and their pods' logs) are kept this long: a weekend's failure is still
/// there on Monday.
const TTL_AFTER_FINISHED: u64 = 7 * 24 * 3600;

pub(super) fn service_account_name(role: Role) -> String {
    format!("vault-{}", role.as_str())
}

pub(super) fn secret_name(role: Role) -> String {
    format!("vault-{}", role.as_str())
}

fn role_labels(role: Role) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "vault".into()),
        ("app.kubernetes.io/component".into(), role.as_str().into()),
    ])
}

/// The labels of a unit's objects and pods; the NetworkPolicy selects by them.
pub(super) fn unit_labels(unit: &Unit) -> BTreeMap<String, String> {
    let mut labels = role_labels(unit.role);
    labels.insert("app.kubernetes.io/instance".into(), unit.name.clone());
    labels
}

pub(super) fn service_account(role: Role, namespace: &str, role_arn: Option<&str>) -> Value {
    let mut metadata = json!({
        "name": service_account_name(role),
        "namespace": namespace,
        "labels": role_labels(role),
    });
    if let Some(arn) = role_arn {
        metadata["annotations"] = json!({ "eks.amazonaws.com/role-arn": arn });
    }
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata,
        // Only the projected token the pod spec names is mounted.
        "automountServiceAccountToken": false,
    })
}

pub(super) fn config_map(plan: &Plan, namespace: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CONFIG_MAP,
            "namespace": namespace,
            "labels": { "app.kubernetes.io/name": "vault" },
        },
        "data": plan.config_data,
    })
}

/// The volumes and mounts of a unit's pod.
fn volumes(unit: &Unit, options: &Options) -> (Vec<Value>, Vec<Value>) {
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for (n, (root, files)) in file_roots(&unit.files).into_iter().enumerate() {
        let only_token = files.iter().all(|f| f.source == FileSource::Token);
        let name = if only_token {
            TOKEN_VOLUME.to_string()
        } else {
            format!("files-{n}")
        };
        let mut config_items = Vec::new();
        let mut secret_items = Vec::new();
        let mut sources = Vec::new();
        for file in &files {
            let rel = file
                .path
                .strip_prefix(&root)
                .expect("grouped under its root")
                .display()
                .to_string();
            match &file.source {
                FileSource::Config(key) => config_items.push(json!({"key": key, "path": rel})),
                FileSource::Secret(key) => secret_items.push(json!({"key": key, "path": rel})),
                FileSource::Token => sources.push(json!({"serviceAccountToken": {
                    "audience": options.audience,
                    "expirationSeconds": TOKEN_SECONDS,
                    "path": rel,
                }})),
            }
        }
        if !config_items.is_empty() {
            sources.push(json!({"configMap": {"name": CONFIG_MAP, "items": config_items}}));
        }
        if !secret_items.is_empty() {
            sources
                .push(json!({"secret": {"name": secret_name(unit.role), "items": secret_items}}));
        }
        volumes.push(json!({
            "name": name,
            // 0440: readable by the pod's group (fsGroup 65532) only.
            "projected": {"defaultMode": 0o440, "sources": sources},
        }));
        mounts.push(json!({"name": name, "mountPath": path_text(&root), "readOnly": true}));
    }
    for (n, dir) in unit.dirs.iter().enumerate() {
        let name = format!("dir-{n}");
        let (volume, read_only) = match dir {
            Dir::Scratch { size_limit, .. } => {
                let mut empty = json!({});
                if let Some(limit) = size_limit {
                    empty["sizeLimit"] = json!(limit);
                }
                (json!({"name": name, "emptyDir": empty}), false)
            }
            Dir::Claim {
                claim, read_only, ..
            } => (
                json!({"name": name, "persistentVolumeClaim": {
                    "claimName": claim, "readOnly": read_only,
                }}),
                *read_only,
            ),
        };
        volumes.push(volume);
        mounts.push(json!({
            "name": name,
            "mountPath": path_text(dir.path()),
            "readOnly": read_only,
        }));
    }
    (volumes, mounts)
}

/// Files grouped by the directory they are mounted under: each file's directory, unless
/// it lies inside another file's directory (one projected volume can hold subdirectories).
fn file_roots(files: &std::collections::BTreeSet<File>) -> Vec<(PathBuf, Vec<File>)> {
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .map(|f| f.path.parent().unwrap_or(Path::new("/")).to_path_buf())
        .collect();
    dirs.sort();
    dirs.dedup();
    let roots: Vec<PathBuf> = dirs
        .iter()
        .filter(|d| !dirs.iter().any(|o| o != *d && d.starts_with(o)))
        .cloned()
        .collect();
    roots
        .into_iter()
        .map(|root| {
            let inside = files
                .iter()
                .filter(|f| f.path.starts_with(&root))
                .cloned()
                .collect();
            (root, inside)
        })
        .collect()
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

fn memory(mib: u64) -> String {
    format!("{mib}Mi")
}

/// The one container of a unit's pod.
fn container(unit: &Unit, mounts: Vec<Value>) -> Value {
    let env: Vec<Value> = unit
        .secret_env
        .iter()
        .map(|var| {
            json!({"name": var, "valueFrom": {"secretKeyRef": {
                "name": secret_name(unit.role), "key": var,
            }}})
        })
        .collect();
    let r = &unit.resources;
    let mut container = json!({
        "name": "vault",
        "image": unit.image,
        // Tags move; a digest does not, and then Always costs one manifest request.
        "imagePullPolicy": "Always",
        "args": unit.args,
        "resources": {
            "requests": {"memory": memory(r.memory_request_mib), "cpu": r.cpu_request},
            "limits": {"memory": memory(r.memory_limit_mib), "cpu": r.cpu_limit},
        },
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "privileged": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "runAsUser": UID,
            "runAsGroup": UID,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
    });
    if !env.is_empty() {
        container["env"] = json!(env);
    }
    container
}

/// A unit's pod spec.
pub(super) fn pod_spec(unit: &Unit, options: &Options, grace_seconds: u64) -> Value {
    let (volumes, mounts) = volumes(unit, options);
    let mut spec = json!({
        "serviceAccountName": service_account_name(unit.role),
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": grace_seconds,
        "containers": [container(unit, mounts)],
        "volumes": volumes,
    });
    if unit.kind != Kind::Scheduler {
        spec["restartPolicy"] = json!("Never");
    }
    spec
}

/// Annotations that tell checkov why a check does not apply, each with its reason.
pub(super) fn checkov_skips(unit: &Unit) -> BTreeMap<String, String> {
    let mut reasons = Vec::new();
    if !unit.secret_env.is_empty() {
        reasons.push(
            "CKV_K8S_35=vault.toml names these variables (password_env, *_env): the \
             values come from the Secret by reference and reach the tools as PGPASSWORD \
             and the like, never a command line; use password_file to mount files instead",
        );
    }
    reasons
        .into_iter()
        .enumerate()
        .map(|(i, r)| (format!("checkov.io/skip{}", i + 1), r.to_string()))
        .collect()
}

/// A CronJob for a unit with a schedule.
pub(super) fn cron_job(unit: &Unit, namespace: &str, options: &Options) -> Value {
    let timing = unit.timing.as_ref().expect("a CronJob unit has timing");
    let labels = unit_labels(unit);
    let mut metadata = json!({"name": unit.name, "namespace": namespace, "labels": labels});
    let skips = checkov_skips(unit);
    if !skips.is_empty() {
        metadata["annotations"] = json!(skips);
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata,
        "spec": {
            "schedule": timing.cron.schedule,
            "timeZone": timing.cron.time_zone,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": timing.starting_deadline_seconds,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    "backoffLimit": timing.backoff_limit,
                    "activeDeadlineSeconds": timing.active_deadline_seconds,
                    "ttlSecondsAfterFinished": TTL_AFTER_FINISHED,
                    "template": {
                        "metadata": {"labels": labels},
                        // SIGTERM: the backup aborts its upload and writes no manifest
                        // (vault waits up to 10 s for the abort).
                        "spec": pod_spec(unit, options, 45),
                    },
                },
            },
        },
    })
}

/// A unit's NetworkPolicy: no ingress (but the scheduler's metrics port), egress to DNS,
/// to the store and the other HTTPS services, and to its databases.
pub(super) fn network_policy(
    unit: &Unit,
    namespace: &str,
    options: &Options,
    metrics_port: Option<u16>,
) -> Value {
    let tcp = |ports: &std::collections::BTreeSet<u16>| -> Vec<Value> {
        ports
            .iter()
            .map(|p| json!({"port": p, "protocol": "TCP"}))
            .collect()
    };
    let mut egress = vec![
        json!({"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}),
        json!({"ports": tcp(&unit.web_ports)}),
    ];
    if !unit.database_ports.is_empty() {
        let mut rule = json!({"ports": tcp(&unit.database_ports)});
        if !options.database_cidrs.is_empty() {
            let to: Vec<Value> = options
                .database_cidrs
                .iter()
                .map(|c| json!({"ipBlock": {"cidr": c}}))
                .collect();
            rule["to"] = json!(to);
        }
        egress.push(rule);
    }
    let ingress: Vec<Value> = metrics_port
        .map(|p| json!({"ports": [{"port": p, "protocol": "TCP"}]}))
        .into_iter()
        .collect();
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": unit.name, "namespace": namespace, "labels": unit_labels(unit)},
        "spec": {
            "podSelector": {"matchLabels": unit_labels(unit)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    })
}
