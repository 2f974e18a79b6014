//! The scheduler's Deployment (`vault run --only backup`, one replica, probes on
//! /healthz and /readyz), its Service and ServiceMonitor, and a PrometheusRule with the
//! alert rules of docs/operations.md.

use serde_json::{Value, json};

use super::manifests::{checkov_skips, pod_spec, unit_labels};
use super::options::Options;
use super::plan::{Plan, Unit};

/// The scheduler's pod gets the drain time of docs/operations.md: `shutdown_grace`,
/// then 15 s for the runs to stop, and a few seconds more.
pub(super) fn deployment(unit: &Unit, namespace: &str, options: &Options, plan: &Plan) -> Value {
    let port = plan.listen_port.expect("checked by the plan");
    let labels = unit_labels(unit);
    let mut spec = pod_spec(unit, options, plan.shutdown_grace_seconds + 20);
    let probe = |path: &str, period: u64| {
        json!({
            "httpGet": {"path": path, "port": "metrics"},
            "periodSeconds": period,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        })
    };
    let container = &mut spec["containers"][0];
    container["ports"] = json!([{"name": "metrics", "containerPort": port, "protocol": "TCP"}]);
    // /healthz fails when the loop has not run for a minute (it wakes every 30 s).
    container["livenessProbe"] = probe("/healthz", 30);
    container["readinessProbe"] = probe("/readyz", 10);
    let mut metadata = json!({"name": unit.name, "namespace": namespace, "labels": labels});
    let skips = checkov_skips(unit);
    if !skips.is_empty() {
        metadata["annotations"] = json!(skips);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            // Never two schedulers: the old pod is gone before the new one starts.
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    })
}

pub(super) fn service(unit: &Unit, namespace: &str, plan: &Plan) -> Value {
    let port = plan.listen_port.expect("checked by the plan");
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": unit.name, "namespace": namespace, "labels": unit_labels(unit)},
        "spec": {
            "selector": unit_labels(unit),
            "ports": [{"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}],
        },
    })
}

pub(super) fn service_monitor(unit: &Unit, namespace: &str) -> Value {
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": unit.name, "namespace": namespace, "labels": unit_labels(unit)},
        "spec": {
            "selector": {"matchLabels": unit_labels(unit)},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "60s"}],
        },
    })
}

/// One alert rule: its name, its expression, and the comment docs/operations.md gives it.
pub(super) struct Alert {
    pub name: &'static str,
    pub expr: &'static str,
    pub about: &'static str,
}

/// `vault verify`'s alerts, as docs/operations.md ("Metrics") lists them; in Kubernetes
/// verify pushes to a Pushgateway, so the textfile's age is replaced by the push's.
pub(super) const VERIFY_ALERTS: &[Alert] = &[
    Alert {
        name: "VaultBackupStale",
        expr: "time() - vault_job_last_success_timestamp_seconds > 1.25 * vault_job_expected_interval_seconds",
        about: "interval + the default grace (interval / 4)",
    },
    Alert {
        name: "VaultVerifyFailed",
        expr: "vault_job_verify_ok == 0 or vault_verify_ok == 0",
        about: "any job stale, missing, failed or unchecked",
    },
    Alert {
        name: "VaultIntegrity",
        expr: "vault_job_verify_status{status=\"integrity\"} == 1 or vault_bucket_check_ok == 0",
        about: "tampering, or an unprotected bucket: page at once",
    },
    Alert {
        name: "VaultBackupSuspiciouslySmall",
        expr: "vault_job_size_anomaly == 1",
        about: "",
    },
    Alert {
        name: "VaultNewChainSegment",
        expr: "delta(vault_job_chain_segments[3h]) > 0",
        about: "the writer lost its chain state, or someone else signs",
    },
    Alert {
        name: "VaultVerifyNotRunning",
        expr: "time() - vault_verify_last_run_timestamp_seconds > 2 * 3600",
        about: "the checker itself stopped (hourly runs)",
    },
    Alert {
        name: "VaultVerifyPushStale",
        expr: "time() - push_time_seconds{job=\"vault_verify\"} > 2 * 3600",
        about: "Pushgateway: no push from verify for two hours",
    },
    Alert {
        name: "VaultMetricsMissing",
        expr: "absent(vault_verify_last_run_timestamp_seconds)",
        about: "no push at all, or the Pushgateway not scraped",
    },
];

/// `vault run`'s alerts, as docs/operations.md ("Metrics, health and alerts") lists
/// them; the scrape job of the ServiceMonitor is the Service's name, `vault-run`.
pub(super) const SCHEDULER_ALERTS: &[Alert] = &[
    Alert {
        name: "VaultScheduledRunFailed",
        expr: "increase(vault_schedule_runs_total{outcome=\"failure\"}[1h]) > 0",
        about: "a run failed after its retries",
    },
    Alert {
        name: "VaultScheduledBackupLate",
        expr: "time() - vault_schedule_last_success_timestamp_seconds{task=\"backup\"} > 26 * 3600\n\
               or (\n  (vault_schedule_running{task=\"backup\"}\n    unless on(instance, vault_job) \
               vault_schedule_last_success_timestamp_seconds)\n  and on(instance) (time() - \
               process_start_time_seconds > 26 * 3600)\n)\n",
        about: "no success for 26 h, or none since a start 26 h ago",
    },
    Alert {
        name: "VaultScheduledRunSkipped",
        expr: "increase(vault_schedule_skipped_total[1d]) > 0",
        about: "a run took longer than its interval, or a hand-started backup collided",
    },
    Alert {
        name: "VaultSchedulerDown",
        expr: "up{job=\"vault-run\"} == 0 or absent(up{job=\"vault-run\"})",
        about: "",
    },
];

pub(super) fn prometheus_rule(namespace: &str, scheduler: bool) -> Value {
    let rules = |alerts: &[Alert]| -> Vec<Value> {
        alerts
            .iter()
            .map(|a| {
                let mut rule = json!({"alert": a.name, "expr": a.expr});
                if !a.about.is_empty() {
                    rule["annotations"] = json!({"summary": a.about});
                }
                rule
            })
            .collect()
    };
    let mut groups = vec![json!({"name": "vault", "rules": rules(VERIFY_ALERTS)})];
    if scheduler {
        groups.push(json!({"name": "vault-run", "rules": rules(SCHEDULER_ALERTS)}));
    }
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "vault",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "vault"},
        },
        "spec": {"groups": groups},
    })
}
