//! `vault verify [JOB] [--deep]`: every backup checked against its manifest.
//!
//! Without `--deep` no key is needed (the verifier identity): each data object is read
//! back and its size and blake3 compared with the manifest. With `--deep` the
//! restorer's age identity decrypts and decompresses each backup and the plaintext
//! hash is checked too; nothing is written anywhere.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde::Serialize;
use tokio_util::io::SyncIoBridge;

use super::{Context, restorer_identities, warn_about};
use crate::catalog;
use crate::cli::VerifyArgs;
use crate::crypto::Identities;
use crate::error::{Error, ExitCode, exit_code_for, summary, worst};
use crate::manifest::Manifest;
use crate::pipeline;
use crate::progress::{Progress, Tracked};
use crate::report::{Table, human_bytes};
use crate::store::{self, Role, Store};

#[derive(Serialize)]
struct Checked {
    job: String,
    key: String,
    backup_id: Option<String>,
    size: Option<u64>,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip)]
    code: ExitCode,
}

pub async fn run(ctx: &Context, args: &VerifyArgs) -> anyhow::Result<()> {
    let settings = &ctx.settings;
    let identities = if args.deep {
        Some(Arc::new(restorer_identities(
            args.identity.as_deref(),
            settings,
        )?))
    } else {
        None
    };
    let jobs = settings.job_names(args.job.as_deref());
    let role = if args.deep {
        Role::Restorer
    } else {
        Role::Verifier
    };
    let store = store::open(settings, role).await?;
    warn_about(store.as_ref());

    let progress = Progress::start("verifying".into(), None);
    let mut checked = Vec::new();
    let mut empty_jobs = Vec::new();
    for job in &jobs {
        let entries = catalog::entries(store.as_ref(), &settings.layout, job).await?;
        if entries.is_empty() {
            empty_jobs.push(job.clone());
        }
        for entry in entries {
            let (backup_id, size, result) = match entry.manifest {
                Ok(m) => {
                    let hashed =
                        check_one(store.as_ref(), &m, identities.clone(), progress.counter()).await;
                    let untouched = check_versions(store.as_ref(), &entry.key, &m).await;
                    let result = match (hashed, untouched) {
                        (Ok(()), Ok(())) => Ok(()),
                        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
                        (Err(a), Err(b)) => Err(a.context(format!("{b:#}"))),
                    };
                    (Some(m.backup_id), Some(m.data.size), result)
                }
                // A manifest that cannot be read keeps its own kind of failure.
                Err(e) => (None, None, Err(anyhow::Error::new(e))),
            };
            checked.push(Checked {
                job: job.clone(),
                key: entry.key,
                backup_id,
                size,
                ok: result.is_ok(),
                code: result
                    .as_ref()
                    .err()
                    .map_or(ExitCode::Success, exit_code_for),
                error: result.err().map(|e| format!("{e:#}")),
            });
        }
    }

    drop(progress);
    let failed: Vec<&Checked> = checked.iter().filter(|c| !c.ok).collect();
    if ctx.json {
        crate::report::print_json(&serde_json::json!({
            "deep": args.deep,
            "ok": failed.is_empty() && empty_jobs.is_empty(),
            "checked": checked,
            "jobs_without_backups": empty_jobs,
        }));
    } else {
        let mut table = Table::new(&["JOB", "BACKUP ID", "STORED", "RESULT"]);
        for c in &checked {
            table.row(vec![
                c.job.clone(),
                c.backup_id.clone().unwrap_or_else(|| c.key.clone()),
                c.size.map(human_bytes).unwrap_or_default(),
                match &c.error {
                    None if args.deep => "ok (decrypted, plaintext hash matches)".into(),
                    None => "ok (ciphertext hash matches)".into(),
                    Some(e) => format!("FAILED: {e}"),
                },
            ]);
        }
        print!("{}", table.render());
        for job in &empty_jobs {
            println!("{job}: no backups found");
        }
        println!("{} backups checked, {} failed", checked.len(), failed.len());
    }

    // The most serious finding decides the exit code: integrity beats everything.
    match worst(failed.iter().map(|c| c.code)) {
        Some(code) => Err(summary(
            code,
            format!(
                "{} of {} backups failed verification",
                failed.len(),
                checked.len()
            ),
        )),
        None if !empty_jobs.is_empty() => Err(Error::not_found(format!(
            "no backups found for job `{}`",
            empty_jobs.join("`, `")
        ))
        .into()),
        None => Ok(()),
    }
}

/// vault writes every key exactly once: another version or a delete marker on a
/// backup's data or manifest key means someone else wrote or deleted there. Restore
/// still reads the manifest's version; this reports the tampering.
async fn check_versions(
    store: &dyn Store,
    manifest_key: &str,
    manifest: &Manifest,
) -> anyhow::Result<()> {
    let mut findings = Vec::new();
    for (what, key) in [
        ("data", manifest.data.key.as_str()),
        ("manifest", manifest_key),
    ] {
        let versions = store.versions(key).await?;
        let markers = versions.iter().filter(|v| v.delete_marker).count();
        let objects = versions.len() - markers;
        if markers > 0 {
            findings.push(format!(
                "{what} key {key} has {markers} delete marker{}",
                if markers == 1 { "" } else { "s" }
            ));
        }
        if objects > 1 {
            findings.push(format!(
                "{what} key {key} has {objects} versions (vault writes one)"
            ));
        }
        if what == "data"
            && let Some(id) = &manifest.data.version_id
            && !versions.iter().any(|v| v.version_id.as_ref() == Some(id))
        {
            findings.push(format!(
                "the recorded version {id} of {key} is not in the bucket"
            ));
        }
    }
    if findings.is_empty() {
        Ok(())
    } else {
        Err(Error::integrity(format!("tampering: {}", findings.join("; "))).into())
    }
}

async fn check_one(
    store: &dyn Store,
    manifest: &Manifest,
    identities: Option<Arc<Identities>>,
    counter: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let reader = store
        .get(&manifest.data.key, manifest.data.version_id.as_deref())
        .await
        .map_err(|e| match e {
            Error::NotFound(msg) => Error::integrity(format!(
                "the data object of backup {} is missing: {msg}",
                manifest.backup_id
            )),
            other => other,
        })?;
    let object = Tracked {
        inner: SyncIoBridge::new(reader),
        counter,
        cancel: Arc::default(),
    };
    let manifest = manifest.clone();
    tokio::task::spawn_blocking(move || match identities {
        None => pipeline::verify_ciphertext(object, &manifest),
        Some(ids) => pipeline::restore(object, &ids, &manifest, &mut std::io::sink()),
    })
    .await?
}
