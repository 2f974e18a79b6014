//! The shape of vault.toml: one struct per section, as written, unknown keys refused
//! with their names. Nothing here is validated; `config::Settings::parse` does that.
//! Sections that belong to a lower layer deserialise into that layer's own types (the
//! S3 keys of `[vault]`, each identity's credentials, a job's source).

use std::path::PathBuf;

use serde::Deserialize;

use crate::notify::Ping;
use crate::retention::{LockMode, LockSource, Period};
use crate::source::Spec;
use crate::store::{Identity, s3};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    pub vault: VaultSection,
    #[serde(default)]
    pub encryption: EncryptionSection,
    #[serde(default)]
    pub compression: CompressionSection,
    #[serde(default)]
    pub retention: RetentionSection,
    #[serde(default)]
    pub identities: IdentitiesSection,
    #[serde(default)]
    pub signing: SigningSection,
    #[serde(default)]
    pub verify: VerifySection,
    #[serde(default)]
    pub scheduler: SchedulerSection,
    #[serde(default)]
    pub drill: super::drill::DrillSection,
    #[serde(default, rename = "job")]
    pub jobs: Vec<JobSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VaultSection {
    pub target: String,
    #[serde(default)]
    pub prefix: String,
    /// S3 targets only.
    #[serde(flatten)]
    pub s3: s3::Options,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EncryptionSection {
    #[serde(default)]
    pub recipients: Vec<String>,
    pub recipients_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CompressionSection {
    #[serde(default = "default_level")]
    pub level: i32,
    #[serde(default)]
    pub threads: u32,
    /// `"MIN..=MAX"`: adaptive compression between these levels.
    #[serde(default)]
    pub adapt: Option<String>,
}

fn default_level() -> i32 {
    3
}

impl Default for CompressionSection {
    fn default() -> Self {
        CompressionSection {
            level: default_level(),
            threads: 0,
            adapt: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetentionSection {
    #[serde(default)]
    pub lock: LockSource,
    pub bucket_default: Option<Period>,
    #[serde(default)]
    pub mode: LockMode,
    pub daily: Option<Period>,
    pub weekly: Option<Period>,
    pub monthly: Option<Period>,
    pub yearly: Option<Period>,
    /// `vault prune`: how many of each job's newest good backups are never pruned.
    pub keep_last: Option<u32>,
    /// `vault prune`: how long after a lock ends a backup may be pruned.
    pub prune_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SigningSection {
    pub key_file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    #[serde(default)]
    pub public_keys: Vec<String>,
    pub unsigned_before: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VerifySection {
    /// When `vault run` runs verify.
    pub schedule: Option<String>,
    pub size_drop: Option<f64>,
    pub size_window: Option<usize>,
    pub ping: Option<Ping>,
    pub prometheus: Option<PathBuf>,
    pub pushgateway: Option<String>,
    /// Where `list` and `verify` keep their cache.
    pub cache_dir: Option<PathBuf>,
}

/// `[scheduler]`: how `vault run` runs the schedules.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SchedulerSection {
    pub timezone: Option<String>,
    pub max_concurrent: Option<usize>,
    pub jitter: Option<String>,
    pub jitter_seed: Option<u64>,
    pub catch_up: Option<String>,
    pub retries: Option<u32>,
    pub retry_delay: Option<String>,
    pub shutdown_grace: Option<String>,
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IdentitiesSection {
    #[serde(default)]
    pub writer: IdentitySection,
    #[serde(default)]
    pub verifier: IdentitySection,
    #[serde(default)]
    pub restorer: IdentitySection,
    #[serde(default)]
    pub pruner: IdentitySection,
}

/// One `[identities.<role>]`: how it reaches the store, and (restorer only) its age key.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    /// The store's credentials: profile, static keys, role, web identity.
    #[serde(flatten)]
    pub store: Identity,
    /// The age identity file (private key). Only the restorer may hold one.
    pub age_identity_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JobSection {
    pub name: String,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub interval: Option<String>,
    pub grace: Option<String>,
    pub ping: Option<Ping>,
    pub recipients: Option<Vec<String>>,
    /// `vault prune` keeps this many of the job's newest good backups.
    pub keep_last: Option<u32>,
    pub source: Spec,
    #[serde(default)]
    pub drill: super::drill::JobDrillSection,
}
