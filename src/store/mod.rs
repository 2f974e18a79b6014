//! Where backups go: the small [`Store`] trait and its implementations.
//!
//! The trait is what every later backend must fit (S3 with Object Lock, other clouds):
//! write a new object once, read an object (by version where the store has versions),
//! describe one, list a prefix. Nothing here deletes or overwrites: vault has no code
//! path that removes a backup. The one way to make a backup leave is [`Store::hide`]:
//! a delete marker on a versioned bucket, used only by `vault prune` under the pruner
//! identity once a backup's lock has ended; the version stays until the bucket's
//! lifecycle rule removes it. [`conformance`] is the suite every store passes.
//!
//! Retries are not a wrapper around a store: [`crate::retry::Retry`] wraps each
//! request inside the S3 store (each `PutObject`, `UploadPart`, `GetObject`, list
//! page). A `put` consumes a stream that cannot be rewound, so a wrapper could not
//! repeat a failed put without buffering the whole backup; one request can be
//! repeated, because its body (at most one part) is in memory. The local store makes
//! no requests and has nothing to retry. Rate limits and logging, should they come,
//! would be wrappers around a store.
//!
//! Must not import `config` (config builds the targets and identities here from its
//! own sections), `commands` or anything else above the store.

pub mod cleanup;
pub mod conformance;
pub mod local;
pub mod s3;

pub use s3::Identity;

use std::path::PathBuf;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::io::AsyncRead;

use crate::error::Error;
use crate::pipe::PipeReader;
use crate::retention::Lock;

/// A byte stream read back from a store.
pub type ObjectReader = Box<dyn AsyncRead + Send + Unpin>;

/// How a new object is written.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// The lock the object gets; `None` leaves it to the store's default.
    pub lock: Option<Lock>,
}

/// What a completed write returns: all a manifest needs, so a writer never reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutReceipt {
    pub version_id: Option<String>,
    pub size: u64,
}

/// An object as a store describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    pub version_id: Option<String>,
    /// The lock as the store reports it; `None` when the object has none.
    pub lock: Option<Lock>,
    pub modified: Option<DateTime<Utc>>,
}

/// One stored version of a key, or a delete marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub key: String,
    pub version_id: Option<String>,
    pub delete_marker: bool,
    pub size: u64,
    pub modified: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// A short human description, e.g. `local directory /var/lib/vault`.
    fn describe(&self) -> String;

    /// Ways in which this store is weaker than an Object Lock bucket, said to the user.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// Writes a new object from `body`. The object becomes visible only if `body`
    /// ends cleanly; a stream cut short leaves nothing under `key`. Fails with
    /// [`Error::AlreadyExists`] rather than replace an existing object.
    async fn put(
        &self,
        key: &str,
        body: PipeReader,
        opts: &PutOptions,
    ) -> Result<PutReceipt, Error>;

    /// Reads an object, a given version of it when `version_id` is set.
    async fn get(&self, key: &str, version_id: Option<&str>) -> Result<ObjectReader, Error>;

    /// Describes an object, with its lock.
    async fn head(&self, key: &str, version_id: Option<&str>) -> Result<ObjectMeta, Error>;

    /// Every object whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, Error>;

    /// Every version and delete marker of every key under `prefix`, sorted by key,
    /// newest first within a key. vault writes each key once, so more than one entry
    /// for a key means someone else wrote or deleted there. A store without versions
    /// answers with the objects [`Store::list`] gives.
    async fn all_versions(&self, prefix: &str) -> Result<Vec<VersionInfo>, Error> {
        Ok(self
            .list(prefix)
            .await?
            .into_iter()
            .map(|m| VersionInfo {
                key: m.key,
                version_id: m.version_id,
                delete_marker: false,
                size: m.size,
                modified: m.modified,
            })
            .collect())
    }

    /// Every key under `prefix` that ever held an object, described at the version
    /// first written there, sorted by key. vault writes each key once, so that version
    /// is vault's: a later version or a delete marker (someone else's) neither replaces
    /// nor hides it.
    async fn list_originals(&self, prefix: &str) -> Result<Vec<ObjectMeta>, Error> {
        Ok(originals(&self.all_versions(prefix).await?))
    }

    /// The bucket's protection settings, for `verify`; `None` for a store without any
    /// (a local directory).
    async fn bucket_settings(&self) -> Result<Option<BucketSettings>, Error> {
        Ok(None)
    }

    /// Hides `key` behind a delete marker: on a versioned bucket every version stays
    /// (and stays locked); readers of the current version no longer see it, and the
    /// bucket's noncurrent-version expiration removes the version once its lock allows.
    /// Never removes a version. Only `vault prune` calls it, as [`Role::Pruner`]; a
    /// store without versions cannot hide without deleting, and refuses.
    async fn hide(&self, key: &str) -> Result<(), Error> {
        Err(Error::config(format!(
            "cannot prune {key} in {}: pruning adds delete markers, which needs an S3 \
             bucket with versioning (a local directory is pruned by its owner)",
            self.describe()
        )))
    }
}

/// The first-written object version of each key in a listing (sorted by key, newest
/// first within a key); keys with nothing but delete markers are left out.
pub fn originals(versions: &[VersionInfo]) -> Vec<ObjectMeta> {
    let mut out: Vec<ObjectMeta> = Vec::new();
    for v in versions.iter().filter(|v| !v.delete_marker) {
        let meta = ObjectMeta {
            key: v.key.clone(),
            size: v.size,
            version_id: v.version_id.clone(),
            lock: None,
            modified: v.modified,
        };
        match out.last_mut() {
            Some(last) if last.key == meta.key => {
                if meta.modified <= last.modified {
                    *last = meta;
                }
            }
            _ => out.push(meta),
        }
    }
    out
}

/// What a bucket says about its own protection; each part may be unreadable on its own
/// (the identity lacks that one permission).
#[derive(Debug)]
pub struct BucketSettings {
    /// `Enabled`, `Suspended`, or empty when versioning was never turned on.
    pub versioning: Result<String, Error>,
    /// `None` when the bucket has no Object Lock configuration.
    pub object_lock: Result<Option<ObjectLockSettings>, Error>,
    /// Enabled lifecycle rules that expire current versions.
    pub expiry_rules: Result<Vec<ExpiryRule>, Error>,
    /// Whether a bucket policy is set.
    pub policy: Result<bool, Error>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLockSettings {
    pub enabled: bool,
    /// The default retention: mode and period.
    pub default: Option<(crate::retention::LockMode, crate::retention::Period)>,
}

/// A lifecycle rule that expires current versions (adds delete markers on a versioned
/// bucket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryRule {
    pub id: String,
    /// The key prefix it applies to; empty for the whole bucket.
    pub prefix: String,
    pub days: Option<i32>,
    pub date: Option<DateTime<Utc>>,
}

/// Who is asking: each command opens the store as exactly one of the four
/// identities, and gets only that identity's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `backup`: may write new objects, nothing else.
    Writer,
    /// `list`, `verify`: may read and list, never write.
    Verifier,
    /// `restore`, `verify --deep`: may read and list, never write.
    Restorer,
    /// `prune`: may read and list, and add delete markers; never write, delete a
    /// version, or change a lock. Lives in the vault account, never on backup hosts.
    Pruner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Writer => "writer",
            Role::Verifier => "verifier",
            Role::Restorer => "restorer",
            Role::Pruner => "pruner",
        }
    }
}

/// Opens `target` as `role`, with that role's `identity` and no other (a local
/// directory has no identities: the Unix user running vault is the identity).
pub async fn open(
    target: &Target,
    identity: &Identity,
    role: Role,
) -> Result<Box<dyn Store>, Error> {
    match target {
        Target::Local(root) => Ok(Box::new(local::LocalStore::open(root, role)?)),
        Target::S3(target) => Ok(Box::new(s3::S3Store::open(target, identity, role).await?)),
    }
}

/// A validated vault target from `[vault] target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A directory: `file:///srv/vault` or a plain path.
    Local(PathBuf),
    /// An S3 bucket (with Object Lock): `s3://bucket/prefix`.
    S3(s3::S3Target),
}

impl Target {
    /// Parses a target; relative paths are resolved against `base` (the config file's
    /// directory).
    pub fn parse(value: &str, base: &std::path::Path) -> Result<Target, String> {
        if let Some(path) = value.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "`{value}`: a file:// target needs an absolute path (file:///srv/vault)"
                ));
            }
            return Ok(Target::Local(PathBuf::from(path)));
        }
        if value.starts_with("s3://") {
            return s3::S3Target::parse(value).map(Target::S3);
        }
        if let Some((scheme, _)) = value.split_once("://") {
            return Err(format!(
                "`{value}`: the `{scheme}://` scheme is not supported by this build \
                 (use s3://bucket/prefix, file:///path or a directory path)"
            ));
        }
        if value.is_empty() {
            return Err("the target is empty".into());
        }
        Ok(Target::Local(base.join(value)))
    }

    /// What the store opened on this target calls itself ([`Store::describe`]).
    pub fn describe(&self) -> String {
        match self {
            Target::Local(root) => local::describe(root),
            Target::S3(s3) => format!("S3 bucket {}", s3.describe()),
        }
    }

    /// Applies the S3 keys of `[vault]`; refuses them for other targets.
    pub fn configure(self, options: &s3::Options) -> Result<Target, String> {
        match self {
            Target::S3(mut s3) => {
                s3.apply(options)?;
                Ok(Target::S3(s3))
            }
            other if options.given().is_empty() => Ok(other),
            _ => Err(format!(
                "{} only apply to s3:// targets",
                options.given().join(", ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn targets_parse() {
        let base = Path::new("/etc/vault");
        assert_eq!(
            Target::parse("file:///srv/v", base).unwrap(),
            Target::Local("/srv/v".into())
        );
        assert_eq!(
            Target::parse("vault-data", base).unwrap(),
            Target::Local("/etc/vault/vault-data".into())
        );
        assert!(Target::parse("file://rel", base).is_err());
        assert!(
            Target::parse("gopher://x", base)
                .unwrap_err()
                .contains("gopher")
        );
    }
}
