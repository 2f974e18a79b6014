//! The sections besides `[vault]` and `[[job]]`: retention, identities, signing and
//! verify, each validated into the settings the commands use.

use std::path::{Path, PathBuf};

use super::file::{
    IdentitiesSection, IdentitySection, RetentionSection, SigningSection, VerifySection,
};
use super::schedule::Schedule;
use crate::error::Error;
use crate::notify::Ping;
use crate::retention::{LockSource, Policy, Pruning};
use crate::signing::{PublicKey, Signing};
use crate::store::{Identity, Role};
use crate::units::parse_duration;

/// The chain state directory when `[signing] state_dir` is not set.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vault";

/// The four identities.
#[derive(Debug, Clone, Default)]
pub struct Identities {
    pub writer: IdentitySection,
    pub verifier: IdentitySection,
    pub restorer: IdentitySection,
    pub pruner: IdentitySection,
}

impl Identities {
    /// How `role` reaches the store.
    pub fn store(&self, role: Role) -> &Identity {
        match role {
            Role::Writer => &self.writer.store,
            Role::Verifier => &self.verifier.store,
            Role::Restorer => &self.restorer.store,
            Role::Pruner => &self.pruner.store,
        }
    }
}

/// What `verify` checks beyond each backup, and where it reports.
#[derive(Debug, Clone)]
pub struct VerifySettings {
    /// When `vault run` runs verify (off unless set).
    pub schedule: Option<Schedule>,
    /// The newest backup is suspicious when smaller than this share of the median of
    /// the ones before it.
    pub size_drop: f64,
    /// How many earlier backups the median is taken over.
    pub size_window: usize,
    pub ping: Option<Ping>,
    pub prometheus: Option<PathBuf>,
    pub pushgateway: Option<String>,
    /// The directory of the cache `list` and `verify` keep of what cannot change
    /// (`catalog::cache`); `[signing] state_dir` unless set.
    pub cache_dir: PathBuf,
}

pub(super) fn identities(mut ids: IdentitiesSection, base: &Path) -> Result<Identities, Error> {
    for (role, id) in [
        (Role::Writer, &mut ids.writer),
        (Role::Verifier, &mut ids.verifier),
        (Role::Restorer, &mut ids.restorer),
        (Role::Pruner, &mut ids.pruner),
    ] {
        identity(id, role.as_str(), base)
            .map_err(|msg| Error::config(format!("[identities.{}]: {msg}", role.as_str())))?;
    }
    Ok(Identities {
        writer: ids.writer,
        verifier: ids.verifier,
        restorer: ids.restorer,
        pruner: ids.pruner,
    })
}

fn identity(id: &mut IdentitySection, name: &str, base: &Path) -> Result<(), String> {
    id.store.validate(base)?;
    if id.age_identity_file.is_some() && name != "restorer" {
        return Err(
            "age_identity_file belongs to [identities.restorer] only: the writer and \
             verifier and pruner must not hold the decryption key"
                .into(),
        );
    }
    if let Some(path) = &mut id.age_identity_file {
        *path = base.join(&*path);
    }
    Ok(())
}

pub(super) fn retention_policy(r: &RetentionSection) -> Result<Policy, String> {
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

/// `[retention] keep_last` and `prune_grace`: what `vault prune` keeps.
pub(super) fn pruning(r: &RetentionSection) -> Result<Pruning, String> {
    let defaults = Pruning::default();
    let keep_last = keep_last(r.keep_last)?.unwrap_or(defaults.keep_last);
    let grace = match &r.prune_grace {
        Some(text) => parse_duration(text).map_err(|e| format!("prune_grace: {e}"))?,
        None => defaults.grace,
    };
    Ok(Pruning { keep_last, grace })
}

/// A `keep_last` as written: at least 1, so a job never loses its last good backup.
pub(super) fn keep_last(value: Option<u32>) -> Result<Option<u32>, String> {
    match value {
        Some(0) => Err(
            "keep_last = 0 would let a job lose its last good backup: the \
                        minimum is 1"
                .into(),
        ),
        other => Ok(other),
    }
}

pub(super) fn signing_settings(s: SigningSection, base: &Path) -> Result<Signing, String> {
    let public_keys = s
        .public_keys
        .iter()
        .map(|k| PublicKey::parse(k).map_err(|e| format!("public_keys: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let unsigned_before = s
        .unsigned_before
        .as_deref()
        .map(|t| {
            crate::units::parse_time(t).map_err(|_| {
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

/// `[verify]`; the cache lives in `state_dir` unless `cache_dir` says otherwise.
pub(super) fn verify_settings(
    v: VerifySection,
    base: &Path,
    timezone: chrono_tz::Tz,
    state_dir: &Path,
) -> Result<VerifySettings, String> {
    let schedule = v
        .schedule
        .as_deref()
        .map(|s| Schedule::parse_in(s, timezone).map_err(|e| format!("schedule: {e}")))
        .transpose()?;
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
        schedule,
        size_drop,
        size_window,
        ping: v.ping,
        prometheus: v.prometheus.map(|p| base.join(p)),
        pushgateway: v.pushgateway,
        cache_dir: v
            .cache_dir
            .map_or_else(|| state_dir.to_path_buf(), |d| base.join(d)),
    })
}
