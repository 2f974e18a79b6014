//! `vault list [JOB]`: the backups in the vault, newest last.

use serde::Serialize;

use super::{Context, warn_about};
use crate::catalog;
use crate::cli::ListArgs;
use crate::error::{ExitCode, summary, worst};
use crate::manifest::Manifest;
use crate::report::{Table, human_bytes};
use crate::store::Role;

#[derive(Serialize)]
struct Broken {
    key: String,
    error: String,
    #[serde(skip)]
    code: ExitCode,
}

pub async fn run(ctx: &Context, args: &ListArgs) -> anyhow::Result<()> {
    let settings = &ctx.settings;
    let jobs = settings.job_names(args.job.as_deref());
    let store = super::open_store(settings, Role::Verifier).await?;
    warn_about(store.as_ref());

    let mut good: Vec<Manifest> = Vec::new();
    let mut broken = Vec::new();
    for job in &jobs {
        for entry in catalog::entries(store.as_ref(), &settings.layout, job).await? {
            match entry.manifest {
                Ok(m) => good.push(m),
                Err(e) => broken.push(Broken {
                    key: entry.key,
                    error: e.to_string(),
                    code: e.exit_code(),
                }),
            }
        }
    }

    if ctx.json {
        crate::report::print_json(&serde_json::json!({ "backups": good, "broken": broken }));
    } else if good.is_empty() && broken.is_empty() {
        println!("no backups yet in {}", store.describe());
    } else {
        let mut table = Table::new(&[
            "JOB",
            "BACKUP ID",
            "TIER",
            "DUMP",
            "STORED",
            "LOCKED UNTIL",
            "SOURCE",
        ]);
        for m in &good {
            table.row(vec![
                m.job.clone(),
                m.backup_id.clone(),
                m.retention.tier.to_string(),
                human_bytes(m.plaintext.size),
                human_bytes(m.data.size),
                m.retention
                    .lock
                    .retain_until
                    .format("%Y-%m-%d %H:%M")
                    .to_string(),
                m.source.kind.clone(),
            ]);
        }
        print!("{}", table.render());
    }
    for b in &broken {
        eprintln!("error: {}", b.error);
    }
    if let Some(code) = worst(broken.iter().map(|b| b.code)) {
        return Err(summary(
            code,
            format!("{} manifest(s) could not be read", broken.len()),
        ));
    }
    Ok(())
}
