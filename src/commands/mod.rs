//! One module per subcommand, each with a `run`. Shared here: the context every
//! command gets and the choice of the age identity.
//!
//! The top layer: commands may import every module below them, and reach stores only
//! through the `Store` trait and `store`'s public API.

pub mod backup;
pub mod demo;
pub mod deploy;
pub mod doctor;
pub mod drill;
pub mod keygen;
pub mod list;
pub mod prune;
pub mod restore;
pub mod run;
pub mod verify;

use std::path::{Path, PathBuf};

use crate::catalog::Cache;
use crate::config::Settings;
use crate::crypto::{self, Identities};
use crate::error::Error;
use crate::store::{self, Role, Store};

/// What every command that reads the config gets.
pub struct Context {
    pub settings: Settings,
    pub json: bool,
    /// `-v` given this many times.
    pub verbose: u8,
    pub log_format: crate::cli::LogFormat,
}

/// Which vault this is, as text: its store and key prefix. Job locks and the
/// scheduler's state are kept per vault, so the same job name in two vaults on one
/// host is two jobs.
pub fn vault_id(settings: &Settings) -> String {
    format!(
        "{}\n{}",
        settings.target.describe(),
        settings.layout.job_root("")
    )
}

/// The cache `list` and `verify` keep of what cannot change in this vault, from
/// `[verify] cache_dir`; with `no_cache` nothing in it is used, and what the run reads
/// brings it up to date. A cache that cannot be read, or is discarded, is a warning.
pub fn open_cache(settings: &Settings, no_cache: bool) -> Cache {
    let vault = vault_id(settings);
    let path = Cache::path(&settings.verify.cache_dir, &vault);
    let (cache, warning) = Cache::load(path, &vault, !no_cache);
    if let Some(warning) = warning {
        eprintln!("warning: {warning}");
    }
    cache
}

/// Saves the cache after a run. A cache that cannot be written only costs the next
/// run its requests, and one the store contradicted was wrong: warnings both.
pub fn save_cache(cache: &Cache) {
    let file = cache
        .file()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let wrong = cache.disagreements();
    if wrong > 0 {
        eprintln!(
            "warning: {wrong} entr{} of the verify cache {file} differed from what the store \
             answered: the cache was wrong (damaged, or altered by someone who can write \
             there) and has been corrected",
            if wrong == 1 { "y" } else { "ies" }
        );
    }
    if let Err(e) = cache.save() {
        eprintln!(
            "warning: cannot write the verify cache {file}: {e}; the next run reads \
             everything from the store again\n\
             hint: set [verify] cache_dir to a directory of the verifier's that this user \
             can write"
        );
    }
}

/// The env var naming the restorer's age identity file.
pub const IDENTITY_ENV: &str = "VAULT_AGE_IDENTITY_FILE";

/// The age identity for restore and deep verify: `--identity`, then
/// `VAULT_AGE_IDENTITY_FILE`, then `[identities.restorer] age_identity_file`.
pub fn restorer_identities(flag: Option<&Path>, settings: &Settings) -> Result<Identities, Error> {
    let path: PathBuf = match (flag, std::env::var_os(IDENTITY_ENV)) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(p)) if !p.is_empty() => PathBuf::from(p),
        _ => settings
            .identities
            .restorer
            .age_identity_file
            .clone()
            .ok_or_else(|| {
                Error::config(
                    "this needs the restorer's age identity (private key): pass --identity FILE, \
                     set VAULT_AGE_IDENTITY_FILE, or set [identities.restorer] age_identity_file",
                )
            })?,
    };
    crypto::load_identities(&path)
}

/// Opens the configured store as `role`, with that role's identity and no other.
pub async fn open_store(settings: &Settings, role: Role) -> Result<Box<dyn Store>, Error> {
    store::open(&settings.target, settings.identities.store(role), role).await
}

/// Says on stderr how the store falls short of an Object Lock bucket (once per run).
pub fn warn_about(store: &dyn Store) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        for warning in store.warnings() {
            eprintln!("warning: {warning}");
        }
    });
}
