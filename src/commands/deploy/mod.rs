//! `vault deploy kubernetes`: Kubernetes manifests rendered from vault.toml, so that
//! the schedules, the identities and the secrets a pod needs live in one place and
//! never drift from the config.
//!
//! - `options`: the flags, checked;
//! - `plan` (pure): the units (a CronJob per `[[job]]`, verify, drill, or the
//!   scheduler's Deployment) and what each pod needs; `units` and `needs` fill it in;
//!   `cron` turns a schedule into a CronJob's, or says why it cannot;
//! - `manifests`: ServiceAccounts, the ConfigMap, CronJobs, NetworkPolicies;
//!   `monitoring`: the Deployment, Service, ServiceMonitor, PrometheusRule;
//! - `render`: YAML, as one stream or a kustomize tree.
//!
//! Nothing here talks to a cluster or the store. docs/kubernetes.md is the user's guide.

mod cron;
mod manifests;
mod monitoring;
mod needs;
mod options;
mod plan;
mod render;
#[cfg(test)]
mod tests;
mod units;

use std::io::Write;

use super::Context;
use crate::cli::{DeployArgs, DeployTarget, KubernetesArgs};
use crate::config::Settings;
use crate::error::Error;

pub fn run(ctx: &Context, args: &DeployArgs) -> anyhow::Result<()> {
    match &args.target {
        DeployTarget::Kubernetes(k) => kubernetes(ctx, k),
    }
}

fn kubernetes(ctx: &Context, args: &KubernetesArgs) -> anyhow::Result<()> {
    // The ConfigMap holds the file's text: read it again with the settings it makes.
    let (settings, text) = Settings::load_with_text(&ctx.settings.path)?;
    let options = options::Options::from_args(args)?;
    let plan = plan::plan(&settings, &text, &options)?;
    for warning in &plan.warnings {
        eprintln!("warning: {warning}");
    }
    match &args.output {
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(render::stream(&plan, &options).as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| Error::config(format!("cannot write the manifests: {e}")))?;
        }
        Some(dir) => {
            for file in render::kustomize(&plan, &options, dir)? {
                eprintln!("wrote {}", dir.join(file).display());
            }
        }
    }
    Ok(())
}
