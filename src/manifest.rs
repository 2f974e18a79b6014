//! The manifest (the commit point of a backup), backup ids and the key scheme.
//!
//! docs/format.md is the specification; this module is its reference implementation.
//! A manifest is written only after its data object is complete, so a backup exists
//! exactly when its manifest does: [`Manifest::new`] takes the pipeline's `Written`,
//! which only a completed stream produces, and no other code can make a manifest
//! (reading one back is [`Manifest::from_bytes`]).
//!
//! Imports the leaves it describes (`digest`, `retention`, `signing`), `pipeline`
//! for `Written` and `Expected`, and `source` for the database properties it records;
//! never `config`, `store` or `commands`.

use chrono::{DateTime, NaiveDateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::Error;
use crate::pipeline::{Expected, Written};
use crate::retention::{Lock, LockSource, Tier};
use crate::signing::{Chain, Signature};
use crate::source::DatabaseProperties;

/// The value of the `format` field of every manifest.
pub const FORMAT: &str = "vault-manifest";
/// The manifest version this build writes and the only one it reads.
pub const VERSION: u32 = 1;

/// Everything needed to find, check and restore one backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub job: String,
    pub backup_id: String,
    pub source: SourceInfo,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The stored object: an age v1 file (the ciphertext).
    pub data: DataObject,
    /// The dump as the source produced it.
    pub plaintext: Digest,
    pub compression: Compression,
    pub encryption: Encryption,
    pub retention: Retention,
    pub tool: Tool,
    /// The link to the job's previous manifest (signed manifests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<Chain>,
    /// The writer's signature of its signed bytes ([`crate::signing::Signed`]), when
    /// it has a signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
    /// Keeps struct literals out of other modules: see [`Manifest::new`].
    #[serde(skip)]
    sealed: Sealed,
}

/// A field no other module can name.
#[derive(Debug, Clone, Default, PartialEq)]
struct Sealed;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// `sqlite`, `files`, `command`, ...
    pub kind: String,
    /// What the plaintext is: `sqlite`, `tar`, `sql`, `pgdump`, `rdb`, `bin`, ...
    pub extension: String,
    /// The databases in the dump (postgres, mysql); empty for the other kinds and for
    /// a MySQL `all_databases` dump.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<String>,
    /// What `restore --create` makes the database like (postgres: encoding and
    /// locale; mysql, one database: character set and collation). Absent in manifests
    /// written before vault recorded it, which keeps their signed bytes unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_properties: Option<DatabaseProperties>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataObject {
    pub key: String,
    /// The store's version id for the object, when the store has versions (S3).
    pub version_id: Option<String>,
    pub size: u64,
    pub blake3: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compression {
    pub algorithm: String,
    pub level: i32,
    /// Size of the zstd stream (the age plaintext).
    pub size: u64,
    /// With adaptive compression: the lowest and highest level its frames were
    /// compressed at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub levels_used: Option<[i32; 2]>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    pub algorithm: String,
    /// The age recipients (public keys) the data object is encrypted to.
    pub recipients: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub tier: Tier,
    #[serde(flatten)]
    pub lock: Lock,
    /// Who set the lock: vault's headers, or the bucket's default retention (then
    /// `retain_until` is what the configured default gives; the store's own clock
    /// decides the exact instant).
    #[serde(default)]
    pub applied_by: LockSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

impl Tool {
    pub fn this() -> Tool {
        Tool {
            name: env!("CARGO_PKG_NAME").to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

impl crate::signing::Signed for Manifest {
    fn signature(&self) -> Option<&Signature> {
        self.signature.as_ref()
    }

    /// The bytes a signature covers: the manifest as stored, without its signature.
    fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.signature = None;
        unsigned.to_bytes()
    }
}

impl Manifest {
    /// The manifest of a completed backup stream, unsigned and unchained; finished now.
    pub fn new(
        job: &str,
        backup_id: &str,
        source: SourceInfo,
        started_at: DateTime<Utc>,
        written: Written,
        retention: Retention,
    ) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            version: VERSION,
            job: job.to_string(),
            backup_id: backup_id.to_string(),
            source,
            started_at,
            finished_at: Utc::now(),
            data: DataObject {
                key: written.key().to_string(),
                version_id: written.version_id().map(str::to_string),
                size: written.ciphertext().size,
                blake3: written.ciphertext().blake3.clone(),
            },
            plaintext: written.plaintext().clone(),
            compression: Compression {
                algorithm: "zstd".into(),
                level: written.compression().level,
                size: written.compressed_size(),
                levels_used: written.compression().adapt.map(|_| {
                    let (lowest, highest) = written.levels_used();
                    [lowest, highest]
                }),
            },
            encryption: Encryption {
                algorithm: "age-v1-x25519".into(),
                recipients: written.recipients().to_vec(),
            },
            retention,
            tool: Tool::this(),
            chain: None,
            signature: None,
            sealed: Sealed,
        }
    }

    /// What the data object must turn out to be when read back.
    pub fn expected(&self) -> Expected {
        Expected {
            key: self.data.key.clone(),
            ciphertext: Digest {
                size: self.data.size,
                blake3: self.data.blake3.clone(),
            },
            plaintext: self.plaintext.clone(),
            recipients: self.encryption.recipients.clone(),
        }
    }

    /// A manifest with made-up hashes, for the unit tests of what reads manifests.
    #[cfg(test)]
    pub(crate) fn sample(at: DateTime<Utc>, size: u64) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            version: VERSION,
            job: "app".into(),
            backup_id: new_backup_id(at),
            source: SourceInfo {
                kind: "command".into(),
                extension: "bin".into(),
                databases: Vec::new(),
                database_properties: None,
            },
            started_at: at,
            finished_at: at + chrono::TimeDelta::minutes(1),
            data: DataObject {
                key: "k".into(),
                version_id: None,
                size,
                blake3: "00".into(),
            },
            plaintext: Digest {
                size,
                blake3: "00".into(),
            },
            compression: Compression {
                algorithm: "zstd".into(),
                level: 3,
                size,
                levels_used: None,
            },
            encryption: Encryption {
                algorithm: "age-v1-x25519".into(),
                recipients: vec![],
            },
            retention: Retention {
                tier: Tier::Daily,
                lock: Lock {
                    mode: crate::retention::LockMode::Compliance,
                    retain_until: at,
                },
                applied_by: LockSource::PerObject,
            },
            tool: Tool::this(),
            chain: None,
            signature: None,
            sealed: Sealed,
        }
    }

    /// Pretty JSON with a trailing newline: the exact bytes stored.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("manifest serialises");
        out.push(b'\n');
        out
    }

    /// Parses and checks a stored manifest; `key` names it in errors.
    pub fn from_bytes(key: &str, bytes: &[u8]) -> Result<Manifest, Error> {
        #[derive(Deserialize)]
        struct Header {
            format: String,
            version: u32,
        }
        let header: Header = serde_json::from_slice(bytes)
            .map_err(|e| Error::integrity(format!("manifest {key} is not valid JSON: {e}")))?;
        if header.format != FORMAT {
            return Err(Error::integrity(format!(
                "manifest {key}: format is `{}`, expected `{FORMAT}`",
                header.format
            )));
        }
        if header.version != VERSION {
            return Err(Error::integrity(format!(
                "manifest {key}: version {} is not supported by this vault (reads version {VERSION})",
                header.version
            )));
        }
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::integrity(format!("manifest {key} is malformed: {e}")))?;
        if manifest.backup_id.is_empty() || parse_backup_id(&manifest.backup_id).is_none() {
            return Err(Error::integrity(format!(
                "manifest {key}: backup id `{}` is malformed",
                manifest.backup_id
            )));
        }
        Ok(manifest)
    }
}

const ID_TIME_FORMAT: &str = "%Y%m%dT%H%M%S%.3fZ";

/// A new backup id for a backup started at `at`: UTC time to the millisecond, then 32
/// random bits, e.g. `20261122T031500.042Z-7f3a9c01`. Ids sort by time as strings.
pub fn new_backup_id(at: DateTime<Utc>) -> String {
    let random: u32 = rand::thread_rng().r#gen();
    format!("{}-{random:08x}", at.format(ID_TIME_FORMAT))
}

/// The time inside a backup id, or `None` when `id` is not one.
pub fn parse_backup_id(id: &str) -> Option<DateTime<Utc>> {
    let (time, random) = id.split_once('-')?;
    if random.len() != 8 || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    NaiveDateTime::parse_from_str(time, ID_TIME_FORMAT)
        .ok()
        .map(|t| t.and_utc())
}

/// Where a vault's objects live: `<prefix>/<job>/data/...` and `<prefix>/<job>/manifests/...`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    /// `prefix` may be empty; slashes around it are ignored.
    pub fn new(prefix: &str) -> Layout {
        Layout {
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    /// `<prefix>/` (empty without a prefix): every key of every job starts with it.
    pub fn root(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }

    /// `<prefix>/<job>/`: every key of the job's backups starts with it.
    pub fn job_root(&self, job: &str) -> String {
        if self.prefix.is_empty() {
            format!("{job}/")
        } else {
            format!("{}/{job}/", self.prefix)
        }
    }

    /// `<prefix>/<job>/data/YYYY/MM/DD/<id>.<ext>.zst.age`, dated by the backup's start.
    pub fn data_key(&self, job: &str, backup_id: &str, at: DateTime<Utc>, ext: &str) -> String {
        format!(
            "{}data/{}/{backup_id}.{ext}.zst.age",
            self.job_root(job),
            at.format("%Y/%m/%d")
        )
    }

    pub fn manifests_prefix(&self, job: &str) -> String {
        format!("{}manifests/", self.job_root(job))
    }

    pub fn manifest_key(&self, job: &str, backup_id: &str) -> String {
        format!("{}{backup_id}.json", self.manifests_prefix(job))
    }

    /// The backup id of a manifest key under `job`, if `key` is one.
    pub fn backup_id_of<'k>(&self, job: &str, key: &'k str) -> Option<&'k str> {
        let prefix = self.manifests_prefix(job);
        let id = key.strip_prefix(prefix.as_str())?.strip_suffix(".json")?;
        parse_backup_id(id).map(|_| id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ids_sort_by_time_and_parse_back() {
        let a = Utc.with_ymd_and_hms(2026, 11, 22, 3, 15, 0).unwrap();
        let b = a + chrono::Duration::milliseconds(1);
        let (ida, idb) = (new_backup_id(a), new_backup_id(b));
        assert!(ida < idb, "{ida} < {idb}");
        assert_eq!(parse_backup_id(&ida), Some(a));
        assert!(ida.starts_with("20261122T031500.000Z-"));
        assert_ne!(new_backup_id(a), new_backup_id(a));
        assert_eq!(parse_backup_id("20261122T031500.000Z-xyz"), None);
        assert_eq!(parse_backup_id("latest"), None);
    }

    #[test]
    fn keys_follow_the_scheme() {
        let at = Utc.with_ymd_and_hms(2026, 3, 7, 1, 2, 3).unwrap();
        let id = new_backup_id(at);
        let layout = Layout::new("/acme/");
        assert_eq!(
            layout.data_key("app", &id, at, "sqlite"),
            format!("acme/app/data/2026/03/07/{id}.sqlite.zst.age")
        );
        let mkey = layout.manifest_key("app", &id);
        assert_eq!(mkey, format!("acme/app/manifests/{id}.json"));
        assert_eq!(layout.backup_id_of("app", &mkey), Some(id.as_str()));
        assert_eq!(layout.backup_id_of("other", &mkey), None);
        assert_eq!(
            Layout::new("").manifest_key("app", &id),
            format!("app/manifests/{id}.json")
        );
        assert_eq!(layout.root(), "acme/");
        assert_eq!(Layout::new("").root(), "");
    }

    #[test]
    fn manifest_round_trips_and_rejects_other_versions() {
        let at = Utc.with_ymd_and_hms(2026, 3, 7, 1, 2, 3).unwrap();
        let mut m = Manifest::sample(at, 1);
        m.source.kind = "sqlite".into();
        m.source.extension = "sqlite".into();
        m.finished_at = at;
        m.plaintext.size = 0;
        m.compression.size = 9;
        m.encryption.recipients = vec!["age1x".into()];
        let bytes = m.to_bytes();
        assert_eq!(Manifest::from_bytes("k", &bytes).unwrap(), m);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.contains("\"retain_until\""),
            "lock is flattened: {text}"
        );
        let newer = text.replace("\"version\": 1", "\"version\": 2");
        let err = Manifest::from_bytes("k", newer.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
        assert!(matches!(
            Manifest::from_bytes("k", b"{}").unwrap_err(),
            Error::Integrity(_)
        ));
    }

    #[test]
    fn database_properties_are_optional_and_leave_older_bytes_alone() {
        use crate::source::{MysqlProperties, PgProperties};
        let at = Utc.with_ymd_and_hms(2026, 3, 7, 1, 2, 3).unwrap();
        // A manifest written before the field existed reads, and serialises to the
        // same bytes: its signature still verifies.
        let old = Manifest::sample(at, 1).to_bytes();
        assert!(!String::from_utf8_lossy(&old).contains("database_properties"));
        let read = Manifest::from_bytes("k", &old).unwrap();
        assert_eq!(read.source.database_properties, None);
        assert_eq!(read.to_bytes(), old);

        for props in [
            DatabaseProperties::Postgres(PgProperties {
                encoding: "LATIN1".into(),
                lc_collate: "C".into(),
                lc_ctype: "C".into(),
                locale_provider: Some(crate::source::LocaleProvider::Libc),
                locale: None,
            }),
            DatabaseProperties::Mysql(MysqlProperties {
                character_set: "utf8mb4".into(),
                collation: "utf8mb4_unicode_ci".into(),
            }),
        ] {
            let mut m = Manifest::sample(at, 1);
            m.source.database_properties = Some(props);
            let bytes = m.to_bytes();
            let read = Manifest::from_bytes("k", &bytes).unwrap();
            assert_eq!(read, m);
            assert_eq!(read.to_bytes(), bytes);
        }
    }
}
