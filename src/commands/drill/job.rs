//! One drill of one backup: the decryption keys tried on its header, the scratch
//! target readied, the restore, the facts of the restored copy, the user checks, the
//! comparison with the previous drill and the RTO; then the scratch is torn down and
//! the evidence written.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use chrono::Utc;
use tokio_util::io::SyncIoBridge;

use super::evidence::{self, CheckResult, Evidence, Kind, Outcome, Severity};
use super::facts::{self, Facts};
use super::local::Endpoint;
use super::target::Prepared;
use crate::catalog::Entry;
use crate::config::{Check, CheckTest, Job, Settings};
use crate::crypto::Identities;
use crate::error::{Error, ExitCode, exit_code_for};
use crate::manifest::Manifest;
use crate::progress::Tracked;
use crate::report::human_bytes;
use crate::signal::interrupted;
use crate::source::Spec;
use crate::store::Store;

/// A drill's outcome: its evidence, the exit code it asks for, and what went wrong.
pub struct Drilled {
    pub job: String,
    /// None when there was nothing to drill (no backup, a bad selection).
    pub evidence: Option<Evidence>,
    /// Where the evidence was written.
    pub saved: Option<PathBuf>,
    pub code: ExitCode,
    pub error: Option<String>,
}

impl Drilled {
    /// A job that could not be drilled at all.
    pub fn failed(job: &str, err: &anyhow::Error) -> Drilled {
        Drilled {
            job: job.to_string(),
            evidence: None,
            saved: None,
            code: exit_code_for(err),
            error: Some(format!("{err:#}")),
        }
    }
}

/// The `[drill] identities`: each file, and its keys (or why they could not be read).
pub type ExtraIdentities = Vec<(PathBuf, Result<Arc<Identities>, String>)>;

/// Drills `manifest` (stored at `entry`) of `job`. Interrupted, the scratch is torn
/// down and the error returned; every other failure is reported in the result.
pub async fn drill(
    settings: &Settings,
    store: &dyn Store,
    job: &Job,
    entry: &Entry,
    manifest: &Manifest,
    identities: Arc<Identities>,
    extra: &ExtraIdentities,
) -> anyhow::Result<Drilled> {
    let started = Utc::now();
    let clock = Instant::now();
    let d = &settings.drill;
    let scratch = job
        .drill
        .scratch
        .clone()
        .unwrap_or_else(|| d.scratch.clone());
    let bin_dir = job.drill.bin_dir.clone().or_else(|| d.bin_dir.clone());
    let rto = job.drill.rto.or(d.rto);
    let max_shrink = job.drill.max_shrink.unwrap_or(d.max_shrink);
    let restore_jobs = d.restore_jobs;

    let mut checks = Vec::new();
    for (path, ids) in extra {
        checks.push(identity_check(store, manifest, path, ids).await);
    }

    let object = store
        .get(&manifest.data.key, manifest.data.version_id.as_deref())
        .await
        .map_err(|e| {
            anyhow::Error::from(e).context(format!(
                "cannot read the data object of backup {}",
                manifest.backup_id
            ))
        });
    let cancel = Arc::new(AtomicBool::new(false));
    let inside = match object {
        Err(e) => Err(Failed::before(e)),
        Ok(reader) => {
            let object = Tracked {
                inner: SyncIoBridge::new(reader),
                counter: Arc::new(AtomicU64::new(0)),
                cancel: cancel.clone(),
            };
            let (m, j) = (manifest.clone(), job.clone());
            let base = settings
                .path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let mut task = tokio::task::spawn_blocking(move || {
                let into = Into {
                    scratch,
                    bin_dir,
                    restore_jobs,
                };
                restore_and_check(&j, &m, into, object, &identities, &base)
            });
            tokio::select! {
                done = &mut task => done?,
                signal = interrupted() => {
                    // The restore fails at its next read; waiting for the task lets the
                    // scratch server and dir go before we exit.
                    cancel.store(true, Ordering::Relaxed);
                    let _ = task.await;
                    return Err(Error::Interrupted(format!(
                        "{signal} received: the drill of job `{}` was abandoned and its \
                         scratch target removed", job.name
                    ))
                    .into());
                }
            }
        }
    };

    let mut evidence = Evidence {
        vault_version: env!("CARGO_PKG_VERSION").to_string(),
        host: evidence::host(),
        job: job.name.clone(),
        backup_id: manifest.backup_id.clone(),
        backup_created: manifest.started_at,
        manifest_key: entry.key.clone(),
        manifest_blake3: entry.blake3.clone(),
        data_key: manifest.data.key.clone(),
        data_version: manifest.data.version_id.clone(),
        plaintext_bytes: manifest.plaintext.size,
        started,
        finished: started,
        duration_seconds: 0.0,
        restore_seconds: None,
        restore_bytes_per_second: None,
        rto_seconds: rto.map(|r| r.as_seconds_f64()),
        scratch: String::new(),
        facts: None,
        compared_with: None,
        checks: Vec::new(),
        outcome: Outcome::Error,
    };
    let state_dir = &settings.signing.state_dir;
    let mut error = None;
    let mut code = ExitCode::Success;
    match inside {
        Ok(inside) => {
            evidence.scratch = inside.shown;
            evidence.restore_seconds = Some(inside.restore_seconds);
            evidence.restore_bytes_per_second =
                Some(manifest.plaintext.size as f64 / inside.restore_seconds.max(1e-3));
            checks.extend(inside.results);
            if let Some(now) = &inside.facts
                && let Some(before) = evidence::previous(state_dir, &job.name, manifest.started_at)
                && let Some(was) = &before.facts
            {
                checks.extend(evidence::shrink(was, now, max_shrink, &before.backup_id));
                evidence.compared_with = Some(before.backup_id);
            }
            evidence.facts = inside.facts;
            let took = clock.elapsed().as_secs_f64();
            if let Some(rto) = rto {
                let target = rto.as_seconds_f64();
                let (severity, verdict) = if took > target {
                    (Severity::Fail, "over")
                } else {
                    (Severity::Ok, "within")
                };
                checks.push(CheckResult::new(
                    Kind::Rto,
                    "rto",
                    severity,
                    format!(
                        "restored and checked in {took:.1} s, {verdict} the RTO of {target:.0} s \
                         ({}/s restored)",
                        human_bytes(evidence.restore_bytes_per_second.unwrap_or(0.0) as u64)
                    ),
                ));
            }
            let failed = checks.iter().any(|c| c.severity == Severity::Fail);
            evidence.outcome = if failed {
                Outcome::Failed
            } else {
                Outcome::Passed
            };
            if failed {
                code = ExitCode::DrillFailed;
            }
        }
        Err(Failed {
            shown,
            error: e,
            restoring,
        }) => {
            evidence.scratch = shown;
            code = exit_code_for(&e);
            if code == ExitCode::Interrupted {
                return Err(e);
            }
            // The data passed its checks, and the restore tool still failed: the
            // backup does not restore as it is, which is what a drill is for.
            if restoring && code == ExitCode::Failure {
                code = ExitCode::DrillFailed;
            }
            evidence.outcome = match code {
                ExitCode::Integrity => Outcome::Integrity,
                ExitCode::DrillFailed => Outcome::Failed,
                _ => Outcome::Error,
            };
            checks.push(CheckResult::new(
                Kind::Restore,
                "restore",
                Severity::Fail,
                format!("{e:#}"),
            ));
            error = Some(format!("{e:#}"));
        }
    }
    evidence.checks = checks;
    evidence.finished = Utc::now();
    evidence.duration_seconds = clock.elapsed().as_secs_f64();
    let saved = match evidence::write(state_dir, &evidence, d.history) {
        Ok(path) => Some(path),
        Err(e) => {
            if code == ExitCode::Success {
                code = ExitCode::Failure;
            }
            error.get_or_insert_with(|| format!("the drill's evidence was not kept: {e:#}"));
            None
        }
    };
    Ok(Drilled {
        job: job.name.clone(),
        evidence: Some(evidence),
        saved,
        code,
        error,
    })
}

/// A drill that did not get to its checks: where it was restoring to, why, and
/// whether the restore itself had begun (else the scratch target could not be made).
struct Failed {
    shown: String,
    error: anyhow::Error,
    restoring: bool,
}

impl Failed {
    fn before(error: anyhow::Error) -> Failed {
        Failed {
            shown: String::new(),
            error,
            restoring: false,
        }
    }
}

/// What happened inside the scratch target.
struct Inside {
    shown: String,
    restore_seconds: f64,
    facts: Option<Facts>,
    results: Vec<CheckResult>,
}

/// Where a drill restores: the scratch kind, the server binaries, pg_restore's workers.
struct Into {
    scratch: crate::config::Scratch,
    bin_dir: Option<PathBuf>,
    restore_jobs: u32,
}

fn restore_and_check(
    job: &Job,
    manifest: &Manifest,
    into: Into,
    object: impl std::io::Read + Send + 'static,
    identities: &Identities,
    base: &Path,
) -> Result<Inside, Failed> {
    let restore_command = match &job.source {
        Spec::Command {
            restore_command: Some(argv),
            env,
            ..
        } => Some((argv.as_slice(), env)),
        _ => None,
    };
    let mut prepared = Prepared::new(
        manifest,
        &into.scratch,
        into.bin_dir,
        into.restore_jobs,
        job.drill.command.as_deref(),
        restore_command,
    )
    .map_err(Failed::before)?;
    let clock = Instant::now();
    if let Err(e) = prepared.restore(object, identities, manifest) {
        return Err(Failed {
            shown: prepared.shown.clone(),
            error: e,
            restoring: true,
        });
    }
    let restore_seconds = clock.elapsed().as_secs_f64();
    let mut results = std::mem::take(&mut prepared.notes);
    results.push(CheckResult::new(
        Kind::Restore,
        "restore",
        Severity::Ok,
        format!(
            "{} restored into {} in {restore_seconds:.1} s: ciphertext and plaintext blake3 \
             verified, the restore tool succeeded",
            human_bytes(manifest.plaintext.size),
            prepared.shown
        ),
    ));
    let Some(endpoint) = prepared.endpoint() else {
        return Err(Failed {
            shown: prepared.shown.clone(),
            error: anyhow::anyhow!("the restored copy cannot be reached"),
            restoring: true,
        });
    };
    let facts = match gather(endpoint) {
        Ok(facts) => {
            let total: u64 = facts.counts.values().sum();
            let mut severity = Severity::Ok;
            let mut detail = format!("{} counted, {total} in all", facts.counts.len());
            if let Some(answer) = &facts.integrity
                && answer != "ok"
            {
                severity = Severity::Fail;
                detail = format!("PRAGMA integrity_check: {answer}");
            }
            results.push(CheckResult::new(Kind::Facts, "facts", severity, detail));
            Some(facts)
        }
        Err(e) => {
            results.push(CheckResult::new(
                Kind::Facts,
                "facts",
                Severity::Fail,
                format!("cannot gather facts from the restored copy: {e:#}"),
            ));
            None
        }
    };
    for check in &job.drill.checks {
        results.push(user_check(check, endpoint, base));
    }
    let shown = prepared.shown.clone();
    if let Err(e) = prepared.finish() {
        results.push(CheckResult::new(
            Kind::Restore,
            "teardown",
            Severity::Warn,
            format!("the scratch target was not torn down cleanly: {e:#}"),
        ));
    }
    Ok(Inside {
        shown,
        restore_seconds,
        facts,
        results,
    })
}

/// Facts of the restored copy; a command job's restore may be a single file.
fn gather(endpoint: &Endpoint) -> anyhow::Result<Facts> {
    if let Endpoint::Dir { path } = endpoint
        && let Ok(md) = std::fs::symlink_metadata(path)
        && md.is_file()
    {
        let mut facts = Facts::default();
        facts.counts.insert("files".into(), 1);
        facts.counts.insert("bytes".into(), md.len());
        return Ok(facts);
    }
    facts::gather(endpoint)
}

fn user_check(check: &Check, endpoint: &Endpoint, base: &Path) -> CheckResult {
    let result =
        |severity, detail| CheckResult::new(Kind::Check, check.name.clone(), severity, detail);
    let value = match &check.test {
        CheckTest::Sql(sql) => match endpoint {
            Endpoint::Redis { .. } | Endpoint::Dir { .. } => {
                return result(
                    Severity::Fail,
                    "an sql check needs a database: this job restores to something else; \
                     use command = […]"
                        .into(),
                );
            }
            _ => match facts::sql_number(endpoint, sql) {
                Ok(v) => Some(v),
                Err(e) => return result(Severity::Fail, format!("the query failed: {e:#}")),
            },
        },
        CheckTest::Command(argv) => match run_command(argv, endpoint, base) {
            Err(e) => return result(Severity::Fail, e),
            Ok(out) if !check.has_bounds() => return result(Severity::Ok, out),
            Ok(out) => match out.lines().last().map(str::trim).map(str::parse::<f64>) {
                Some(Ok(v)) => Some(v),
                _ => {
                    return result(
                        Severity::Fail,
                        format!("its output's last line is not a number: {out:?}"),
                    );
                }
            },
        },
    };
    match value {
        None => result(Severity::Ok, "passed".into()),
        Some(v) => match check.judge(v) {
            Some(why) => result(Severity::Fail, why),
            None => result(Severity::Ok, format!("{v}")),
        },
    }
}

/// Runs a check command against the restored copy: VAULT_DRILL_URL names it (never
/// with a password), and the client variables reach it (PGHOST, PGPORT, PGUSER,
/// PGDATABASE, PGPASSWORD; MYSQL_HOST, MYSQL_TCP_PORT, MYSQL_PWD; REDISCLI_AUTH), so
/// `psql` or `mariadb` with no arguments connects; VAULT_DRILL_DIR is the restored
/// file or directory. Its stdout on success; on
/// failure why, with the end of its stderr.
fn run_command(argv: &[String], endpoint: &Endpoint, base: &Path) -> Result<String, String> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(base)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("VAULT_DRILL_URL", endpoint.url());
    cmd.envs(endpoint.client_env());
    if let Endpoint::Sqlite { path } | Endpoint::Dir { path } = endpoint {
        cmd.env("VAULT_DRILL_DIR", path);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", argv[0]))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!(
        "`{}` failed ({}){}",
        argv[0],
        out.status,
        if tail.is_empty() {
            String::new()
        } else {
            format!(": {}", tail.join(" / "))
        }
    ))
}

/// Whether `ids` open the backup's age header (the header only: its file key is
/// unwrapped, nothing is decrypted).
async fn identity_check(
    store: &dyn Store,
    manifest: &Manifest,
    path: &Path,
    ids: &Result<Arc<Identities>, String>,
) -> CheckResult {
    let name = path.display().to_string();
    let fail =
        |detail: String| CheckResult::new(Kind::Identity, name.clone(), Severity::Fail, detail);
    let ids = match ids {
        Ok(ids) => ids.clone(),
        Err(why) => return fail(why.clone()),
    };
    let reader = match store
        .get(&manifest.data.key, manifest.data.version_id.as_deref())
        .await
    {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot read the data object: {e}")),
    };
    let bridge = SyncIoBridge::new(reader);
    let opened = tokio::task::spawn_blocking(move || {
        let decryptor = age::Decryptor::new(bridge).map_err(|e| e.to_string())?;
        decryptor
            .decrypt(ids.as_dyn())
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .await;
    match opened {
        Ok(Ok(())) => CheckResult::new(
            Kind::Identity,
            name.clone(),
            Severity::Ok,
            "opens the backup's age header".into(),
        ),
        Ok(Err(e)) => fail(format!(
            "cannot open the backup's age header ({e}): this key is not a recipient of \
             backup {}; a restore with it would fail",
            manifest.backup_id
        )),
        Err(e) => fail(format!("the check did not finish: {e}")),
    }
}
