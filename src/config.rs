//! `vault.toml` -> validated [`Settings`].
//!
//! Parsed and checked once; everything downstream takes `Settings`. Unknown keys are
//! errors that name the key. Relative paths are resolved against the config file's
//! directory. Secrets are never inline: the file names env vars or files that hold
//! them. Every key is documented in docs/config.md.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;

use crate::crypto::{self, Recipient};
use crate::error::Error;
use crate::manifest::{Layout, Manifest};
use crate::notify::Ping;
use crate::retention::{LockMode, LockSource, Period, Policy};
use crate::signing::PublicKey;

mod engines;

use crate::store::Target;
pub use engines::{
    MysqlSource, PasswordFrom, PgPart, PostgresSource, RedisSource, check_no_password_in_url,
    redact_url, url_without_database,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    vault: VaultSection,
    #[serde(default)]
    encryption: EncryptionSection,
    #[serde(default)]
    compression: CompressionSection,
    #[serde(default)]
    retention: RetentionSection,
    #[serde(default)]
    identities: IdentitiesSection,
    #[serde(default)]
    signing: SigningSection,
    #[serde(default)]
    verify: VerifySection,
    #[serde(default, rename = "job")]
    jobs: Vec<JobSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VaultSection {
    target: String,
    #[serde(default)]
    prefix: String,
    // S3 targets only.
    region: Option<String>,
    endpoint: Option<String>,
    path_style: Option<bool>,
    part_size: Option<String>,
    upload_concurrency: Option<usize>,
    conditional_writes: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EncryptionSection {
    #[serde(default)]
    recipients: Vec<String>,
    recipients_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompressionSection {
    #[serde(default = "default_level")]
    level: i32,
    #[serde(default)]
    threads: u32,
}

fn default_level() -> i32 {
    3
}

impl Default for CompressionSection {
    fn default() -> Self {
        CompressionSection {
            level: default_level(),
            threads: 0,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionSection {
    #[serde(default)]
    lock: LockSource,
    bucket_default: Option<Period>,
    #[serde(default)]
    mode: LockMode,
    daily: Option<Period>,
    weekly: Option<Period>,
    monthly: Option<Period>,
    yearly: Option<Period>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SigningSection {
    key_file: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    #[serde(default)]
    public_keys: Vec<String>,
    unsigned_before: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifySection {
    size_drop: Option<f64>,
    size_window: Option<usize>,
    ping: Option<Ping>,
    prometheus: Option<PathBuf>,
    pushgateway: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentitiesSection {
    #[serde(default)]
    writer: Identity,
    #[serde(default)]
    verifier: Identity,
    #[serde(default)]
    restorer: Identity,
}

/// How one identity authenticates to the store, plus (restorer only) its age key.
/// Every secret is referenced, never inline.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// A named profile in the cloud SDK's shared config.
    pub profile: Option<String>,
    /// Env vars holding static keys.
    pub access_key_id_env: Option<String>,
    pub secret_access_key_env: Option<String>,
    pub session_token_env: Option<String>,
    /// Files holding static keys.
    pub access_key_id_file: Option<PathBuf>,
    pub secret_access_key_file: Option<PathBuf>,
    /// A role to assume.
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub session_name: Option<String>,
    /// A web identity token (Kubernetes service-account token, IRSA).
    pub web_identity_token_file: Option<PathBuf>,
    /// The age identity file (private key). Only the restorer may hold one.
    pub age_identity_file: Option<PathBuf>,
}

impl Identity {
    fn validate(&mut self, name: &str, base: &Path) -> Result<(), Error> {
        let e = |msg: String| Error::config(format!("[identities.{name}]: {msg}"));
        let env_keys = self.access_key_id_env.is_some() || self.secret_access_key_env.is_some();
        let file_keys = self.access_key_id_file.is_some() || self.secret_access_key_file.is_some();
        let chosen = [
            self.profile.is_some(),
            env_keys,
            file_keys,
            self.web_identity_token_file.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if chosen > 1 {
            return Err(e(
                "choose one credential source: profile, *_env keys, *_file keys or \
                 web_identity_token_file"
                    .into(),
            ));
        }
        if env_keys && (self.access_key_id_env.is_none() || self.secret_access_key_env.is_none()) {
            return Err(e(
                "access_key_id_env and secret_access_key_env go together".into()
            ));
        }
        if file_keys && (self.access_key_id_file.is_none() || self.secret_access_key_file.is_none())
        {
            return Err(e(
                "access_key_id_file and secret_access_key_file go together".into(),
            ));
        }
        if self.web_identity_token_file.is_some() && self.role_arn.is_none() {
            return Err(e("web_identity_token_file needs role_arn".into()));
        }
        if (self.external_id.is_some() || self.session_name.is_some()) && self.role_arn.is_none() {
            return Err(e("external_id and session_name need role_arn".into()));
        }
        if self.age_identity_file.is_some() && name != "restorer" {
            return Err(e(
                "age_identity_file belongs to [identities.restorer] only: the writer and \
                 verifier must not hold the decryption key"
                    .into(),
            ));
        }
        for path in [
            &mut self.access_key_id_file,
            &mut self.secret_access_key_file,
            &mut self.web_identity_token_file,
            &mut self.age_identity_file,
        ]
        .into_iter()
        .flatten()
        {
            *path = base.join(&*path);
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobSection {
    name: String,
    schedule: Option<String>,
    interval: Option<String>,
    grace: Option<String>,
    ping: Option<Ping>,
    recipients: Option<Vec<String>>,
    source: SourceConfig,
}

/// What a job backs up; `kind` selects the engine.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// A consistent snapshot of a live SQLite database file.
    Sqlite { path: PathBuf },
    /// A directory tree as a tar stream.
    Files { path: PathBuf },
    /// Any program's standard output.
    Command {
        command: Vec<String>,
        #[serde(default)]
        extension: Option<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
        #[serde(default)]
        fail_on_stderr: bool,
        /// The program that reads the dump on stdin at `vault restore --to TARGET`;
        /// `{to}` in an argument is replaced by TARGET.
        #[serde(default)]
        restore_command: Option<Vec<String>>,
    },
    /// A PostgreSQL database (`pg_dump -Fc`), or the cluster globals.
    Postgres(PostgresSource),
    /// MySQL or MariaDB databases (`mariadb-dump --single-transaction`).
    #[serde(alias = "mariadb")]
    Mysql(MysqlSource),
    /// A Redis RDB snapshot (`redis-cli --rdb -`).
    Redis(RedisSource),
}

impl SourceConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Sqlite { .. } => "sqlite",
            SourceConfig::Files { .. } => "files",
            SourceConfig::Command { .. } => "command",
            SourceConfig::Postgres(_) => "postgres",
            SourceConfig::Mysql(_) => "mysql",
            SourceConfig::Redis(_) => "redis",
        }
    }

    /// What the plaintext is, used in the data key: `<id>.<extension>.zst.age`.
    pub fn extension(&self) -> String {
        match self {
            SourceConfig::Sqlite { .. } => "sqlite".into(),
            SourceConfig::Files { .. } => "tar".into(),
            SourceConfig::Command { extension, .. } => {
                extension.clone().unwrap_or_else(|| "bin".into())
            }
            SourceConfig::Postgres(pg) if pg.part == PgPart::Globals => "sql".into(),
            SourceConfig::Postgres(_) => "pgdump".into(),
            SourceConfig::Mysql(_) => "sql".into(),
            SourceConfig::Redis(_) => "rdb".into(),
        }
    }

    /// The databases a dump holds, as recorded in its manifest.
    pub fn databases(&self) -> Vec<String> {
        match self {
            SourceConfig::Postgres(pg) => pg.database.iter().cloned().collect(),
            SourceConfig::Mysql(m) => m.names(),
            _ => Vec::new(),
        }
    }
}

/// A validated job.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    /// The `[[job]]` name it came from: differs from `name` for the jobs a
    /// multi-database PostgreSQL job expands into (`pg.app`, `pg.globals`).
    pub group: String,
    pub schedule: Option<String>,
    /// How often a backup is expected: `interval`, else what `schedule` implies, else a day.
    pub interval: TimeDelta,
    /// How late a backup may be before `verify` calls the job stale.
    pub grace: TimeDelta,
    /// Where `backup` reports the job's start, success and failure.
    pub ping: Option<Ping>,
    /// Empty when neither the job nor `[encryption]` names one: such a job is refused.
    pub recipients: Vec<Recipient>,
    pub source: SourceConfig,
}

/// Manifest signing: the writer's key and chain state, the verifier's trusted keys.
#[derive(Debug, Clone, Default)]
pub struct Signing {
    /// The writer's ed25519 key file (`vault keygen --signing`); manifests are signed
    /// when it is set.
    pub key_file: Option<PathBuf>,
    /// Where the writer keeps each job's chain head.
    pub state_dir: PathBuf,
    /// The keys `verify` accepts; signing is required when there is one.
    pub public_keys: Vec<PublicKey>,
    /// Manifests the store received before this instant may be unsigned: they predate
    /// signing.
    pub unsigned_before: Option<DateTime<Utc>>,
}

impl Signing {
    /// Why a manifest that the store received at `stored_at` cannot be trusted, when
    /// signing is on and it cannot.
    pub fn distrust(&self, m: &Manifest, stored_at: Option<DateTime<Utc>>) -> Option<String> {
        if self.public_keys.is_empty() {
            return None;
        }
        let predates = match (self.unsigned_before, stored_at) {
            (Some(cut), Some(at)) => at < cut,
            _ => false,
        };
        if m.signature.is_none() && predates {
            return None;
        }
        m.check_signature(&self.public_keys).err()
    }
}

/// What `verify` checks beyond each backup, and where it reports.
#[derive(Debug, Clone)]
pub struct VerifySettings {
    /// The newest backup is suspicious when smaller than this share of the median of
    /// the ones before it.
    pub size_drop: f64,
    /// How many earlier backups the median is taken over.
    pub size_window: usize,
    pub ping: Option<Ping>,
    pub prometheus: Option<PathBuf>,
    pub pushgateway: Option<String>,
}

/// The chain state directory when `[signing] state_dir` is not set.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vault";

/// zstd settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    pub level: i32,
    /// Worker threads; 0 means one per core.
    pub threads: u32,
}

/// The three identities.
#[derive(Debug, Clone, Default)]
pub struct Identities {
    pub writer: Identity,
    pub verifier: Identity,
    pub restorer: Identity,
}

/// Everything vault needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub path: PathBuf,
    pub target: Target,
    pub layout: Layout,
    pub compression: Compression,
    pub retention: Policy,
    pub identities: Identities,
    pub signing: Signing,
    pub verify: VerifySettings,
    pub jobs: Vec<Job>,
}

impl Settings {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Settings, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!(
                "cannot read config file {}: {e} (set --config or VAULT_CONFIG)",
                path.display()
            ))
        })?;
        Settings::parse(&text, path)
    }

    /// Validates config text; `path` names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Settings, Error> {
        let shown = path.display();
        let file: File =
            toml::from_str(text).map_err(|e| Error::config(format!("{shown}: {e}")))?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        let bad = |msg: String| Error::config(format!("{shown}: {msg}"));

        let target = Target::parse(&file.vault.target, &base)
            .map_err(|e| bad(format!("[vault] target: {e}")))?;
        let target = s3_options(target, &file.vault).map_err(|e| bad(format!("[vault] {e}")))?;
        validate_prefix(&file.vault.prefix).map_err(|e| bad(format!("[vault] prefix: {e}")))?;

        let mut recipients = file
            .encryption
            .recipients
            .iter()
            .map(|r| {
                crypto::parse_recipient(r).map_err(|e| bad(format!("[encryption] recipients: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(f) = &file.encryption.recipients_file {
            recipients.extend(crypto::read_recipients_file(&base.join(f))?);
        }

        let c = &file.compression;
        if !(1..=22).contains(&c.level) {
            return Err(bad(format!(
                "[compression] level {} is outside 1..=22",
                c.level
            )));
        }

        let retention =
            retention_policy(&file.retention).map_err(|e| bad(format!("[retention] {e}")))?;

        let mut ids = file.identities;
        ids.writer.validate("writer", &base)?;
        ids.verifier.validate("verifier", &base)?;
        ids.restorer.validate("restorer", &base)?;

        let signing =
            signing_settings(file.signing, &base).map_err(|e| bad(format!("[signing] {e}")))?;
        let verify =
            verify_settings(file.verify, &base).map_err(|e| bad(format!("[verify] {e}")))?;

        let mut seen = HashSet::new();
        let mut jobs = Vec::new();
        for job in file.jobs {
            validate_job_name(&job.name).map_err(|e| bad(format!("[[job]] name: {e}")))?;
            if !seen.insert(job.name.clone()) {
                return Err(bad(format!("job `{}` is defined twice", job.name)));
            }
            let j = |msg: String| bad(format!("job `{}`: {msg}", job.name));
            if let Some(s) = &job.schedule {
                validate_schedule(s).map_err(|e| j(format!("schedule: {e}")))?;
            }
            let interval = match &job.interval {
                Some(text) => parse_duration(text).map_err(|e| j(format!("interval: {e}")))?,
                None => job
                    .schedule
                    .as_deref()
                    .and_then(schedule_interval)
                    .unwrap_or(TimeDelta::days(1)),
            };
            let grace = match &job.grace {
                Some(text) => parse_duration(text).map_err(|e| j(format!("grace: {e}")))?,
                None => interval / 4,
            };
            if let Some(p) = &job.ping {
                p.validate(&format!("job `{}`: ping", job.name))
                    .map_err(|e| bad(e.to_string()))?;
            }
            let job_recipients = match &job.recipients {
                Some(list) => list
                    .iter()
                    .map(|r| crypto::parse_recipient(r).map_err(|e| j(format!("recipients: {e}"))))
                    .collect::<Result<Vec<_>, _>>()?,
                None => recipients.clone(),
            };
            // Each `[[job]]` gives one job, except a multi-database postgres one.
            let one = |source| vec![(job.name.clone(), source)];
            let parts = match job.source {
                SourceConfig::Sqlite { path } => one(SourceConfig::Sqlite {
                    path: base.join(path),
                }),
                SourceConfig::Files { path } => one(SourceConfig::Files {
                    path: base.join(path),
                }),
                SourceConfig::Command {
                    command,
                    extension,
                    env,
                    fail_on_stderr,
                    restore_command,
                } => {
                    if command.is_empty() || command[0].is_empty() {
                        return Err(j("source.command is empty: give the program and its \
                                       arguments as a list"
                            .into()));
                    }
                    if restore_command
                        .as_ref()
                        .is_some_and(|c| c.is_empty() || c[0].is_empty())
                    {
                        return Err(j("source.restore_command is empty: give the program \
                                       and its arguments as a list, or leave it out"
                            .into()));
                    }
                    if let Some(ext) = &extension
                        && (ext.is_empty()
                            || !ext.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'))
                    {
                        return Err(j(format!(
                            "source.extension `{ext}` may hold only letters, digits and dots"
                        )));
                    }
                    one(SourceConfig::Command {
                        command,
                        extension,
                        env,
                        fail_on_stderr,
                        restore_command,
                    })
                }
                SourceConfig::Postgres(pg) => pg
                    .expand(&job.name, &base)
                    .map_err(|e| j(format!("source: {e}")))?
                    .into_iter()
                    .map(|(name, source)| (name, SourceConfig::Postgres(source)))
                    .collect(),
                SourceConfig::Mysql(m) => one(SourceConfig::Mysql(
                    m.validate(&base).map_err(|e| j(format!("source: {e}")))?,
                )),
                SourceConfig::Redis(r) => one(SourceConfig::Redis(
                    r.validate(&base).map_err(|e| j(format!("source: {e}")))?,
                )),
            };
            for (name, source) in parts {
                if name != job.name && !seen.insert(name.clone()) {
                    return Err(bad(format!("job `{name}` is defined twice")));
                }
                jobs.push(Job {
                    name,
                    group: job.name.clone(),
                    schedule: job.schedule.clone(),
                    interval,
                    grace,
                    ping: job.ping.clone(),
                    recipients: job_recipients.clone(),
                    source,
                });
            }
        }

        Ok(Settings {
            path: path.to_path_buf(),
            target,
            layout: Layout::new(&file.vault.prefix),
            compression: Compression {
                level: c.level,
                threads: c.threads,
            },
            retention,
            identities: Identities {
                writer: ids.writer,
                verifier: ids.verifier,
                restorer: ids.restorer,
            },
            signing,
            verify,
            jobs,
        })
    }

    /// The jobs a reading command looks at: `only` (a job, or the jobs a `[[job]]`
    /// expanded into), or every configured job. A named job need not be configured:
    /// one removed from the config may still have backups.
    pub fn job_names(&self, only: Option<&str>) -> Vec<String> {
        match only {
            Some(name) => match self.jobs_named(name) {
                Ok(jobs) => jobs.iter().map(|j| j.name.clone()).collect(),
                Err(_) => vec![name.to_string()],
            },
            None => self.jobs.iter().map(|j| j.name.clone()).collect(),
        }
    }

    /// The job called `name`, or every job the `[[job]]` called `name` expanded into.
    pub fn jobs_named(&self, name: &str) -> Result<Vec<&Job>, Error> {
        let group: Vec<&Job> = self
            .jobs
            .iter()
            .filter(|j| j.name == name || j.group == name)
            .collect();
        if group.is_empty() {
            return Err(self.job(name).unwrap_err());
        }
        Ok(group)
    }

    /// The named job, or an error listing the jobs that exist.
    pub fn job(&self, name: &str) -> Result<&Job, Error> {
        self.jobs.iter().find(|j| j.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.jobs.iter().map(|j| j.name.as_str()).collect();
            Error::config(format!(
                "no job named `{name}` in {} (jobs: {})",
                self.path.display(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
        })
    }
}

fn retention_policy(r: &RetentionSection) -> Result<Policy, String> {
    let defaults = Policy::default();
    match r.lock {
        LockSource::PerObject => {
            if r.bucket_default.is_some() {
                return Err("bucket_default is only read with lock = \"bucket-default\"".into());
            }
            Ok(Policy {
                source: r.lock,
                mode: r.mode,
                daily: r.daily.unwrap_or(defaults.daily),
                weekly: r.weekly.unwrap_or(defaults.weekly),
                monthly: r.monthly.unwrap_or(defaults.monthly),
                yearly: r.yearly.unwrap_or(defaults.yearly),
            })
        }
        LockSource::BucketDefault => {
            if r.daily.is_some() || r.weekly.is_some() || r.monthly.is_some() || r.yearly.is_some()
            {
                return Err(
                    "with lock = \"bucket-default\" every backup gets the bucket's \
                            default retention: remove daily/weekly/monthly/yearly and set \
                            bucket_default to the bucket's default retention period"
                        .into(),
                );
            }
            let period = r.bucket_default.ok_or(
                "lock = \"bucket-default\" needs bucket_default: the bucket's default \
                 retention period (e.g. \"35d\"), recorded in every manifest",
            )?;
            Ok(Policy {
                source: r.lock,
                mode: r.mode,
                daily: period,
                weekly: period,
                monthly: period,
                yearly: period,
            })
        }
    }
}

fn signing_settings(s: SigningSection, base: &Path) -> Result<Signing, String> {
    let public_keys = s
        .public_keys
        .iter()
        .map(|k| PublicKey::parse(k).map_err(|e| format!("public_keys: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let unsigned_before = s
        .unsigned_before
        .as_deref()
        .map(|t| {
            crate::catalog::parse_time(t).map_err(|_| {
                format!(
                    "unsigned_before `{t}` is not a time (RFC 3339 or YYYY-MM-DD[THH:MM[:SS]], UTC)"
                )
            })
        })
        .transpose()?;
    Ok(Signing {
        unsigned_before,
        key_file: s.key_file.map(|f| base.join(f)),
        state_dir: s
            .state_dir
            .map_or_else(|| PathBuf::from(DEFAULT_STATE_DIR), |d| base.join(d)),
        public_keys,
    })
}

fn verify_settings(v: VerifySection, base: &Path) -> Result<VerifySettings, String> {
    let size_drop = v.size_drop.unwrap_or(0.5);
    if !(0.0..1.0).contains(&size_drop) {
        return Err(format!(
            "size_drop {size_drop} is outside 0..1 (0.5: a backup under half the recent median is suspicious; 0 turns the check off)"
        ));
    }
    let size_window = v.size_window.unwrap_or(10);
    if size_window < 3 {
        return Err(format!(
            "size_window {size_window}: the median needs at least 3 earlier backups"
        ));
    }
    if let Some(p) = &v.ping {
        p.validate("ping").map_err(|e| e.to_string())?;
    }
    if let Some(url) = &v.pushgateway {
        crate::notify::validate_url(url, "pushgateway").map_err(|e| e.to_string())?;
    }
    Ok(VerifySettings {
        size_drop,
        size_window,
        ping: v.ping,
        prometheus: v.prometheus.map(|p| base.join(p)),
        pushgateway: v.pushgateway,
    })
}

/// A duration as written in vault.toml: `90s`, `15m`, `6h`, `1d`, `2w`.
pub fn parse_duration(s: &str) -> Result<TimeDelta, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: write e.g. 90s, 15m, 6h, 1d or 2w"))?;
    let d = match unit.trim() {
        "s" => TimeDelta::seconds(n),
        "m" | "min" => TimeDelta::minutes(n),
        "h" => TimeDelta::hours(n),
        "d" => TimeDelta::days(n),
        "w" => TimeDelta::weeks(n),
        other => {
            return Err(format!(
                "`{s}`: unknown unit `{other}` (use s, m, h, d or w)"
            ));
        }
    };
    if n == 0 {
        return Err(format!("`{s}`: a duration must be longer than zero"));
    }
    Ok(d)
}

/// How often a schedule runs, roughly: enough to tell when a backup is late. `None`
/// when the cron expression is not one of the common shapes (then `interval` says).
fn schedule_interval(schedule: &str) -> Option<TimeDelta> {
    let f: Vec<&str> = schedule.split_whitespace().collect();
    match f.as_slice() {
        ["@hourly"] => Some(TimeDelta::hours(1)),
        ["@daily"] => Some(TimeDelta::days(1)),
        ["@weekly"] => Some(TimeDelta::weeks(1)),
        ["@monthly"] => Some(TimeDelta::days(31)),
        ["@yearly" | "@annually"] => Some(TimeDelta::days(366)),
        [minute, hour, dom, month, dow] => {
            let plain = |x: &str| x.chars().all(|c| c.is_ascii_digit() || c == ',');
            let count = |x: &str| x.split(',').count() as i32;
            match (*minute, *hour, *dom, *month, *dow) {
                (m, "*", "*", "*", "*") if plain(m) => Some(TimeDelta::hours(1) / count(m)),
                (m, h, "*", "*", "*") if plain(m) && plain(h) => {
                    Some(TimeDelta::days(1) / count(h))
                }
                (m, h, "*", "*", d) if plain(m) && plain(h) && plain(d) => {
                    Some(TimeDelta::weeks(1) / count(d))
                }
                (m, h, d, "*", "*") if plain(m) && plain(h) && plain(d) => {
                    Some(TimeDelta::days(31) / count(d))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Applies the S3-only `[vault]` keys to an S3 target; refuses them for other targets.
fn s3_options(target: Target, v: &VaultSection) -> Result<Target, String> {
    let given: Vec<&str> = [
        ("region", v.region.is_some()),
        ("endpoint", v.endpoint.is_some()),
        ("path_style", v.path_style.is_some()),
        ("part_size", v.part_size.is_some()),
        ("upload_concurrency", v.upload_concurrency.is_some()),
        ("conditional_writes", v.conditional_writes.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(k, _)| k)
    .collect();
    match target {
        Target::S3(mut s3) => {
            s3.apply(
                v.region.clone(),
                v.endpoint.clone(),
                v.path_style,
                v.part_size.as_deref(),
                v.upload_concurrency,
                v.conditional_writes,
            )?;
            Ok(Target::S3(s3))
        }
        other if given.is_empty() => Ok(other),
        _ => Err(format!("{} only apply to s3:// targets", given.join(", "))),
    }
}

/// The prefix is the first key components: `a/b`, no empty, `.` or `..` parts.
fn validate_prefix(prefix: &str) -> Result<(), String> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(());
    }
    let ok = trimmed.split('/').all(|part| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && !part.starts_with(".vault")
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{prefix}` is not a valid prefix (path parts of a-z A-Z 0-9 - _ ., no empty, . or .. parts)"
        ))
    }
}

/// Job names become key components: lowercase letters, digits, `-`, `_`, `.`.
fn validate_job_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid job name (1-64 of a-z 0-9 - _ ., starting with a \
             letter or digit)"
        ))
    }
}

/// A cron expression with five fields, or one of the `@daily`-style shorthands.
fn validate_schedule(s: &str) -> Result<(), String> {
    const SHORTHANDS: [&str; 6] = [
        "@hourly",
        "@daily",
        "@weekly",
        "@monthly",
        "@yearly",
        "@annually",
    ];
    let fields: Vec<&str> = s.split_whitespace().collect();
    let valid = if fields.len() == 1 {
        SHORTHANDS.contains(&fields[0])
    } else {
        fields.len() == 5
            && fields
                .iter()
                .all(|f| f.chars().all(|c| c.is_ascii_digit() || ",-*/".contains(c)))
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a cron schedule (five fields like \"15 3 * * *\", or @daily, @hourly, ...)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    fn parse(text: &str) -> Result<Settings, Error> {
        Settings::parse(text, Path::new("/etc/vault/vault.toml"))
    }

    fn minimal(extra: &str) -> String {
        format!(
            "[vault]\ntarget = \"file:///srv/vault\"\n[encryption]\nrecipients = [\"{RECIPIENT}\"]\n{extra}"
        )
    }

    #[test]
    fn a_full_config_validates() {
        let s = parse(&minimal(
            r#"
[compression]
level = 6
[retention]
daily = "14d"
yearly = "10y"
[identities.restorer]
age_identity_file = "keys/restore.txt"
[[job]]
name = "app-db"
schedule = "15 3 * * *"
source = { kind = "sqlite", path = "data/app.db" }
[[job]]
name = "dump"
source = { kind = "command", command = ["pg_dump", "-Fc"], extension = "pgdump" }
"#,
        ))
        .unwrap();
        assert_eq!(s.jobs.len(), 2);
        assert_eq!(s.compression.level, 6);
        assert_eq!(s.retention.daily, Period::Days(14));
        assert_eq!(s.retention.weekly, Policy::default().weekly);
        assert_eq!(
            s.identities.restorer.age_identity_file,
            Some(PathBuf::from("/etc/vault/keys/restore.txt"))
        );
        assert_eq!(
            s.jobs[0].source,
            SourceConfig::Sqlite {
                path: "/etc/vault/data/app.db".into()
            }
        );
        assert_eq!(s.jobs[1].source.extension(), "pgdump");
        assert_eq!(s.jobs[0].recipients.len(), 1);
    }

    #[test]
    fn monitoring_and_signing_settings() {
        let key = format!("vault-ed25519:{}", "ab".repeat(32));
        let s = parse(&minimal(&format!(
            "[signing]\nkey_file = \"sign.key\"\npublic_keys = [\"{key}\"]\n\
             [verify]\nsize_drop = 0.3\nping = {{ url = \"https://hc.example/abc\" }}\n\
             [[job]]\nname = \"a\"\nschedule = \"0 */6 * * *\"\n\
             source = {{ kind = \"files\", path = \"x\" }}\n\
             [[job]]\nname = \"b\"\nschedule = \"15 3 * * *\"\ninterval = \"2d\"\ngrace = \"90m\"\n\
             ping = {{ url = \"https://hc.example/b\" }}\n\
             source = {{ kind = \"files\", path = \"x\" }}\n\
             [[job]]\nname = \"c\"\nschedule = \"30 1 * * 0\"\n\
             source = {{ kind = \"files\", path = \"x\" }}\n"
        )))
        .unwrap();
        assert_eq!(
            s.signing.key_file,
            Some(PathBuf::from("/etc/vault/sign.key"))
        );
        assert_eq!(s.signing.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(s.signing.public_keys[0].to_string(), key);
        assert_eq!(s.verify.size_drop, 0.3);
        // "0 */6 * * *" is not a shape vault reads: a day, a quarter of it as grace.
        assert_eq!(s.jobs[0].interval, TimeDelta::days(1));
        assert_eq!(s.jobs[0].grace, TimeDelta::hours(6));
        assert_eq!(s.jobs[1].interval, TimeDelta::days(2));
        assert_eq!(s.jobs[1].grace, TimeDelta::minutes(90));
        assert!(s.jobs[1].ping.is_some());
        assert_eq!(s.jobs[2].interval, TimeDelta::weeks(1));
        assert_eq!(
            schedule_interval("0 3,15 * * *"),
            Some(TimeDelta::hours(12))
        );
        assert_eq!(schedule_interval("@hourly"), Some(TimeDelta::hours(1)));
        for (bad, named) in [
            ("[signing]\npublic_keys = [\"age1abc\"]\n", "public_keys"),
            ("[verify]\nsize_drop = 2.0\n", "size_drop"),
            ("[verify]\nsize_window = 1\n", "size_window"),
            ("[verify]\npushgateway = \"gw:9091\"\n", "pushgateway"),
            (
                "[[job]]\nname = \"a\"\ninterval = \"soon\"\nsource = { kind = \"files\", path = \"x\" }\n",
                "interval",
            ),
            (
                "[[job]]\nname = \"a\"\ngrace = \"0h\"\nsource = { kind = \"files\", path = \"x\" }\n",
                "grace",
            ),
            (
                "[[job]]\nname = \"a\"\nping = { url = \"ftp://x\" }\nsource = { kind = \"files\", path = \"x\" }\n",
                "ping",
            ),
        ] {
            let err = parse(&minimal(bad)).unwrap_err().to_string();
            assert!(err.contains(named), "{bad:?}: {err}");
        }
        assert_eq!(parse_duration("90s").unwrap(), TimeDelta::seconds(90));
        assert!(parse_duration("1y").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn unknown_keys_are_named() {
        for (extra, key) in [
            ("[vault2]\n", "vault2"),
            ("[compression]\nlevle = 3\n", "levle"),
            (
                "[[job]]\nname = \"a\"\nsource = { kind = \"sqlite\", path = \"x\", pth = 1 }\n",
                "pth",
            ),
            (
                "[[job]]\nname = \"a\"\nsorce = 1\nsource = { kind = \"files\", path = \"x\" }\n",
                "sorce",
            ),
            ("[identities.writer]\nsecret = \"hunter2\"\n", "secret"),
        ] {
            let err = parse(&minimal(extra)).unwrap_err().to_string();
            assert!(
                err.contains(key),
                "error for {key:?} does not name it: {err}"
            );
        }
    }

    #[test]
    fn bad_values_are_explained() {
        let cases = [
            (
                "[[job]]\nname = \"Bad Name\"\nsource = { kind = \"files\", path = \"x\" }\n",
                "Bad Name",
            ),
            (
                "[[job]]\nname = \"a\"\nsource = { kind = \"mongo\" }\n",
                "mongo",
            ),
            (
                "[[job]]\nname = \"a\"\nschedule = \"daily\"\nsource = { kind = \"files\", path = \"x\" }\n",
                "daily",
            ),
            (
                "[[job]]\nname = \"a\"\nsource = { kind = \"command\", command = [] }\n",
                "empty",
            ),
            ("[retention]\ndaily = \"3h\"\n", "unknown unit"),
            ("[compression]\nlevel = 40\n", "level 40"),
            (
                "[identities.writer]\nage_identity_file = \"k\"\n",
                "[identities.restorer] only",
            ),
            (
                "[identities.writer]\nprofile = \"a\"\naccess_key_id_env = \"A\"\nsecret_access_key_env = \"B\"\n",
                "one credential",
            ),
        ];
        for (extra, needle) in cases {
            let err = parse(&minimal(extra)).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle:?} not in: {err}");
        }
        let twice = "[[job]]\nname = \"a\"\nsource = { kind = \"files\", path = \"x\" }\n";
        let err = parse(&minimal(&format!("{twice}{twice}")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("twice"), "{err}");
        for prefix in ["a/../b", "a//b", ".vault"] {
            let text = format!("[vault]\ntarget = \"/v\"\nprefix = \"{prefix}\"\n");
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains("prefix"), "{prefix}: {err}");
        }
        assert!(parse("[vault]\ntarget = \"/v\"\nprefix = \"/acme/prod/\"\n").is_ok());
        let err =
            parse("[vault]\ntarget = \"file:///v\"\n[encryption]\nrecipients = [\"age1bogus\"]\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("age1bogus"), "{err}");
    }

    #[test]
    fn engine_jobs_parse_and_expand() {
        let s = parse(&minimal(
            r#"
[[job]]
name = "pg"
source = { kind = "postgres", host = "db", databases = ["app", "billing"], globals = true, passfile = "pgpass" }
[[job]]
name = "shop"
source = { kind = "mariadb", database = "shop", password_file = "shop.pw" }
[[job]]
name = "cache"
source = { kind = "redis", password_env = "REDIS_PW" }
"#,
        ))
        .unwrap();
        let names: Vec<&str> = s.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(
            names,
            ["pg.app", "pg.billing", "pg.globals", "shop", "cache"]
        );
        assert_eq!(
            s.job_names(Some("pg")),
            ["pg.app", "pg.billing", "pg.globals"]
        );
        assert_eq!(s.jobs_named("pg.billing").unwrap().len(), 1);
        assert!(s.jobs_named("nope").is_err());
        assert_eq!(s.jobs[2].source.extension(), "sql");
        assert_eq!(s.jobs[0].source.extension(), "pgdump");
        assert_eq!(s.jobs[0].source.databases(), ["app"]);
        match &s.jobs[0].source {
            SourceConfig::Postgres(pg) => {
                assert_eq!(pg.passfile, Some(PathBuf::from("/etc/vault/pgpass")))
            }
            other => panic!("{other:?}"),
        }
        match &s.jobs[3].source {
            SourceConfig::Mysql(m) => assert_eq!(
                m.password,
                PasswordFrom::File(PathBuf::from("/etc/vault/shop.pw"))
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.jobs[4].source.kind(), "redis");

        for (job, needle) in [
            (
                "source = { kind = \"postgres\", url = \"postgresql://u:pw@h/app\" }",
                "carries a password",
            ),
            (
                "source = { kind = \"mysql\", database = \"a\", databases = [\"b\"] }",
                "exactly one of",
            ),
            (
                "source = { kind = \"redis\", extra_args = [\"-a\", \"pw\"] }",
                "must not carry a password",
            ),
            (
                "source = { kind = \"postgres\", host = \"h\", dbname = \"x\" }",
                "dbname",
            ),
        ] {
            let err = parse(&minimal(&format!("[[job]]\nname = \"j\"\n{job}\n")))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{needle:?} not in: {err}");
        }
        let clash = "[[job]]\nname = \"pg\"\nsource = { kind = \"postgres\", databases = [\"a\"] }\n\
                     [[job]]\nname = \"pg.a\"\nsource = { kind = \"files\", path = \"x\" }\n";
        let err = parse(&minimal(clash)).unwrap_err().to_string();
        assert!(err.contains("`pg.a` is defined twice"), "{err}");
    }

    #[test]
    fn jobs_without_recipients_parse_but_carry_none() {
        let s = parse(
            "[vault]\ntarget = \"/v\"\n[[job]]\nname = \"a\"\nsource = { kind = \"files\", path = \"x\" }\n",
        )
        .unwrap();
        assert!(s.jobs[0].recipients.is_empty());
        assert!(s.job("zzz").unwrap_err().to_string().contains("jobs: a"));
    }
}
