//! `vault list [JOB]`: the backups in the vault, newest last.
//!
//! With signing on (`[signing] public_keys`), each backup's signature is judged by the
//! readers' one trust rule (`Signing::verdict`) and shown beside it: during an incident
//! a forged manifest must stand out at once, not look like a good backup. Any backup
//! that is not validly signed makes `list` end with the integrity code (3).
//!
//! All jobs are listed with one listing of the whole vault, and a manifest version
//! read before comes from the cache (`catalog::cache`; `--no-cache` reads them all).

use serde::Serialize;

use super::{Context, warn_about};
use crate::catalog::{self, Cover, Listing};
use crate::cli::ListArgs;
use crate::error::{ExitCode, summary, worst};
use crate::manifest::Manifest;
use crate::report::{Table, human_bytes};
use crate::signing::Verdict;
use crate::store::{self, Role};

/// One backup as listed: its manifest, and with signing on, what its signature says.
#[derive(Serialize)]
struct Listed {
    #[serde(flatten)]
    manifest: Manifest,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<Verdict>,
}

#[derive(Serialize)]
struct Broken {
    key: String,
    error: String,
    #[serde(skip)]
    code: ExitCode,
}

pub async fn run(ctx: &Context, args: &ListArgs) -> anyhow::Result<()> {
    let settings = &ctx.settings;
    let jobs = settings.job_names(args.job.as_deref())?;
    let store = super::open_store(settings, Role::Verifier).await?;
    warn_about(store.as_ref());

    let cache = super::open_cache(settings, args.no_cache);
    let listing = Listing::new(
        store.as_ref(),
        &settings.layout,
        &jobs,
        Cover::Manifests,
        &cache,
    )
    .await;
    let mut good: Vec<Listed> = Vec::new();
    let mut broken = Vec::new();
    let mut untrusted = 0;
    for job in &jobs {
        let originals = store::originals(&listing.job(job).await?);
        let entries =
            catalog::read_entries(store.as_ref(), &settings.layout, job, originals, &cache).await;
        for entry in entries {
            match entry.manifest {
                Ok(m) => {
                    let verdict = settings.signing.verdict(&m, entry.stored_at);
                    if let Some((v, why)) = &verdict
                        && !v.trusted()
                    {
                        untrusted += 1;
                        eprintln!(
                            "warning: backup {} of job `{}` is not validly signed (manifest {}): \
                             {why}",
                            m.backup_id, m.job, entry.key
                        );
                    }
                    good.push(Listed {
                        manifest: m,
                        signature: verdict.map(|(v, _)| v),
                    });
                }
                Err(e) => broken.push(Broken {
                    key: entry.key,
                    error: e.to_string(),
                    code: e.exit_code(),
                }),
            }
        }
    }
    super::save_cache(&cache);

    if ctx.json {
        crate::report::print_json(&serde_json::json!({ "backups": good, "broken": broken }));
    } else if good.is_empty() && broken.is_empty() {
        println!("no backups yet in {}", store.describe());
    } else {
        let signed = !settings.signing.public_keys.is_empty();
        let mut header = vec![
            "JOB",
            "BACKUP ID",
            "TIER",
            "DUMP",
            "STORED",
            "LOCKED UNTIL",
            "SOURCE",
        ];
        if signed {
            header.push("SIGNATURE");
        }
        let mut table = Table::new(&header);
        for Listed {
            manifest: m,
            signature,
        } in &good
        {
            let mut row = vec![
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
            ];
            if let Some(v) = signature {
                row.push(v.as_str().to_string());
            }
            table.row(row);
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
    if untrusted > 0 {
        return Err(summary(
            ExitCode::Integrity,
            format!(
                "{untrusted} backup(s) are not validly signed: do not restore them (vault \
                 restore and verify refuse them)"
            ),
        ));
    }
    Ok(())
}
