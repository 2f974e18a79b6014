//! Signed manifests: an ed25519 key for the writer, public keys for the verifier, and
//! the hash chain that links each job's manifests.
//!
//! The writer signs each manifest's canonical bytes (the manifest without its
//! `signature`), and records the blake3 of the job's previous manifest. The writer
//! cannot read the vault, so the chain head lives in a small local state file; without
//! one the manifest starts a new chain segment and says so. docs/threat-model.md says
//! what this stops and what it does not.
//!
//! Imports `crypto` (key files) and `error`; not `manifest`: what is signed comes in
//! through the [`Signed`] trait, so the two do not import each other.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// How a public key is written in vault.toml and in manifests.
const PUBLIC_PREFIX: &str = "vault-ed25519:";
/// The line of a signing key file that holds the key (PKCS#8, hex).
const SECRET_PREFIX: &str = "VAULT-ED25519-SECRET-KEY:";
/// The only signature algorithm.
pub const ALGORITHM: &str = "ed25519";

/// Manifest signing as configured: the writer's key and chain state, the readers'
/// trusted keys.
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

/// Something signed: its signature, and the bytes the signature covers.
pub trait Signed {
    fn signature(&self) -> Option<&Signature>;
    fn signed_bytes(&self) -> Vec<u8>;
}

impl Signing {
    /// The trust rule of every reader (verify, restore): why `item`, which the store
    /// received at `stored_at`, cannot be trusted, when signing is on and it cannot.
    /// The store's time decides whether an unsigned item predates signing, never the
    /// item's own claim.
    pub fn distrust(&self, item: &impl Signed, stored_at: Option<DateTime<Utc>>) -> Option<String> {
        match self.verdict(item, stored_at)? {
            (Verdict::Valid | Verdict::PredatesSigning, _) => None,
            (_, why) => Some(why),
        }
    }

    /// What the trust rule says of `item`, and why in words; `None` when signing is off
    /// (no public keys configured).
    pub fn verdict(
        &self,
        item: &impl Signed,
        stored_at: Option<DateTime<Utc>>,
    ) -> Option<(Verdict, String)> {
        if self.public_keys.is_empty() {
            return None;
        }
        let predates = match (self.unsigned_before, stored_at) {
            (Some(cut), Some(at)) => at < cut,
            _ => false,
        };
        Some(match item.signature() {
            None if predates => (
                Verdict::PredatesSigning,
                "unsigned, stored before [signing] unsigned_before".into(),
            ),
            None => (
                Verdict::Missing,
                "it is not signed, and [signing] public_keys requires signed manifests".into(),
            ),
            Some(sig) => match sig.check(&item.signed_bytes(), &self.public_keys) {
                Ok(()) => (Verdict::Valid, "validly signed".into()),
                Err(e) => (e.verdict(), e.to_string()),
            },
        })
    }
}

/// What a reader makes of one item's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Signed by a trusted key, and the signature matches.
    Valid,
    /// Unsigned, but stored before signing was required (`unsigned_before`).
    PredatesSigning,
    /// Not signed although signing is required.
    Missing,
    /// Signed by a key that is not among the trusted ones.
    UnknownKey,
    /// The signature does not match the contents, or is malformed.
    Invalid,
}

impl Verdict {
    /// Whether a reader may use the item.
    pub fn trusted(self) -> bool {
        matches!(self, Verdict::Valid | Verdict::PredatesSigning)
    }

    /// A short word for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::PredatesSigning => "predates-signing",
            Verdict::Missing => "MISSING",
            Verdict::UnknownKey => "UNKNOWN KEY",
            Verdict::Invalid => "INVALID",
        }
    }
}

/// Why a signature does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature algorithm `{0}` is not {ALGORITHM}")]
    Algorithm(String),
    #[error("signed with a malformed key: {0}")]
    MalformedKey(String),
    #[error("signed by {0}, which is not in [signing] public_keys")]
    UnknownKey(PublicKey),
    #[error("the signature is not hex")]
    NotHex,
    #[error("the signature by {0} does not match the manifest's contents")]
    Mismatch(PublicKey),
}

impl SignatureError {
    pub fn verdict(&self) -> Verdict {
        match self {
            SignatureError::UnknownKey(_) => Verdict::UnknownKey,
            _ => Verdict::Invalid,
        }
    }
}

/// An ed25519 public key: `vault-ed25519:<64 hex digits>`.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let hex = text.trim().strip_prefix(PUBLIC_PREFIX).ok_or_else(|| {
            format!("`{text}` is not a vault signing public key ({PUBLIC_PREFIX}<64 hex digits>)")
        })?;
        let bytes = from_hex(hex)
            .filter(|b| b.len() == 32)
            .ok_or_else(|| format!("`{text}`: the key must be 64 hex digits"))?;
        let mut key = [0; 32];
        key.copy_from_slice(&bytes);
        Ok(PublicKey(key))
    }

    /// Whether `signature` is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", to_hex(&self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The writer's signing key. Never printed.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// Reads a key file written by `vault keygen --signing`.
    pub fn load(path: &Path) -> Result<SigningKey, Error> {
        let shown = path.display();
        let text = fs::read_to_string(path)
            .map_err(|e| Error::config(format!("cannot read signing key file {shown}: {e}")))?;
        if let Ok(md) = fs::metadata(path)
            && md.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                "signing key file {shown} is readable by group or others (mode {:o}); chmod 600 it",
                md.permissions().mode() & 0o777
            );
        }
        // Never echo a line: it may be the key.
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(SECRET_PREFIX))
            .ok_or_else(|| {
                Error::config(format!(
                    "{shown} holds no vault signing key ({SECRET_PREFIX}...); make one with \
                     `vault keygen --signing`"
                ))
            })?;
        let pair = from_hex(&line[SECRET_PREFIX.len()..])
            .and_then(|der| Ed25519KeyPair::from_pkcs8(&der).ok())
            .ok_or_else(|| Error::config(format!("{shown}: the signing key is damaged")))?;
        Ok(SigningKey { pair })
    }

    pub fn public_key(&self) -> PublicKey {
        let mut key = [0; 32];
        key.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(key)
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

/// Creates a new signing key file at `path` (mode 0600, never overwriting) and returns
/// its public key.
pub fn generate_key_file(path: &Path) -> Result<PublicKey, Error> {
    let rng = ring::rand::SystemRandom::new();
    let der = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| Error::config("cannot generate an ed25519 key: no system randomness"))?;
    let pair = Ed25519KeyPair::from_pkcs8(der.as_ref()).expect("a key ring just made");
    let key = SigningKey { pair };
    let public = key.public_key();
    let contents = format!(
        "# vault manifest signing key (ed25519), created {}\n# public key: {public}\n\
         {SECRET_PREFIX}{}\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        to_hex(der.as_ref())
    );
    crate::crypto::write_new_key_file(path, &contents)?;
    Ok(public)
}

/// A manifest's signature, stored in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub algorithm: String,
    /// The signer's public key (`vault-ed25519:...`): which configured key to check with.
    pub public_key: String,
    /// The ed25519 signature of the manifest's canonical bytes, hex.
    pub value: String,
}

impl Signature {
    pub fn make(key: &SigningKey, message: &[u8]) -> Signature {
        Signature {
            algorithm: ALGORITHM.into(),
            public_key: key.public_key().to_string(),
            value: to_hex(&key.sign(message)),
        }
    }

    /// Checks the signature of `message` against the trusted keys; the error says why not.
    pub fn check(&self, message: &[u8], trusted: &[PublicKey]) -> Result<(), SignatureError> {
        if self.algorithm != ALGORITHM {
            return Err(SignatureError::Algorithm(self.algorithm.clone()));
        }
        let key = PublicKey::parse(&self.public_key).map_err(SignatureError::MalformedKey)?;
        if !trusted.contains(&key) {
            return Err(SignatureError::UnknownKey(key));
        }
        let value = from_hex(&self.value).ok_or(SignatureError::NotHex)?;
        if key.verifies(message, &value) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch(key))
        }
    }
}

/// The link of a manifest to the job's previous one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    pub segment: Segment,
    /// 1 for the first manifest of a segment.
    pub sequence: u64,
    /// blake3 of the previous manifest's stored bytes (`continued` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_backup_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Segment {
    /// The writer knew no previous manifest (no state file): a new segment starts.
    New,
    /// `previous` is the job's manifest before this one.
    Continued,
}

/// The chain head of one job, kept by the writer between runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainState {
    pub job: String,
    pub backup_id: String,
    pub manifest_blake3: String,
    pub sequence: u64,
}

impl ChainState {
    fn path(dir: &Path, job: &str) -> PathBuf {
        dir.join(format!("chain-{job}.json"))
    }

    /// The job's chain head, or `None` when there is no usable state (said as a warning).
    pub fn load(dir: &Path, job: &str) -> Option<ChainState> {
        let path = ChainState::path(dir, job);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("cannot read chain state {}: {e}", path.display());
                return None;
            }
        };
        match serde_json::from_slice::<ChainState>(&bytes) {
            Ok(s) if s.job == job => Some(s),
            _ => {
                tracing::warn!(
                    "chain state {} is damaged; starting a new chain segment",
                    path.display()
                );
                None
            }
        }
    }

    /// The link for the next manifest of the job.
    pub fn next_link(state: Option<&ChainState>) -> Chain {
        match state {
            None => Chain {
                segment: Segment::New,
                sequence: 1,
                previous: None,
                previous_backup_id: None,
            },
            Some(s) => Chain {
                segment: Segment::Continued,
                sequence: s.sequence + 1,
                previous: Some(s.manifest_blake3.clone()),
                previous_backup_id: Some(s.backup_id.clone()),
            },
        }
    }

    /// Saves the head atomically (temp file, fsync, rename).
    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        let path = ChainState::path(dir, &self.job);
        let tmp = dir.join(format!(
            ".chain-{}.json.tmp.{}",
            self.job,
            std::process::id()
        ));
        let write = || -> std::io::Result<()> {
            fs::create_dir_all(dir)?;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(self).expect("state serialises"))?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            // An older head left in place would make the next manifest continue from
            // it: a fork. Without it, the next manifest starts a new segment.
            let _ = fs::remove_file(&path);
            Error::from_io(format!("cannot write chain state {}", path.display()), &e)
        })
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sign_verify_and_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sign.key");
        let public = generate_key_file(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(generate_key_file(&path).is_err(), "never overwrites");
        let key = SigningKey::load(&path).unwrap();
        assert_eq!(key.public_key(), public);
        assert_eq!(PublicKey::parse(&public.to_string()).unwrap(), public);

        let sig = Signature::make(&key, b"manifest");
        sig.check(b"manifest", std::slice::from_ref(&public))
            .unwrap();
        let err = sig
            .check(b"manifesT", std::slice::from_ref(&public))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not match"), "{err}");
        let other = generate_key_file(&dir.path().join("other.key")).unwrap();
        let err = sig.check(b"manifest", &[other]).unwrap_err().to_string();
        assert!(err.contains("not in [signing] public_keys"), "{err}");
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(&public.to_string()));
    }

    #[test]
    fn public_keys_parse_strictly() {
        assert!(PublicKey::parse("vault-ed25519:00").is_err());
        assert!(PublicKey::parse("age1xyz").is_err());
        assert!(PublicKey::parse(&format!("vault-ed25519:{}", "zz".repeat(32))).is_err());
        assert!(PublicKey::parse(&format!("vault-ed25519:{}", "ab".repeat(32))).is_ok());
    }

    #[test]
    fn chain_state_links_and_survives_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ChainState::load(dir.path(), "app"), None);
        let first = ChainState::next_link(None);
        assert_eq!((first.segment, first.sequence), (Segment::New, 1));
        let state = ChainState {
            job: "app".into(),
            backup_id: "id1".into(),
            manifest_blake3: "ab".into(),
            sequence: 1,
        };
        state.save(dir.path()).unwrap();
        let loaded = ChainState::load(dir.path(), "app").unwrap();
        let next = ChainState::next_link(Some(&loaded));
        assert_eq!(next.segment, Segment::Continued);
        assert_eq!(next.sequence, 2);
        assert_eq!(next.previous.as_deref(), Some("ab"));
        fs::write(dir.path().join("chain-app.json"), "garbage").unwrap();
        assert_eq!(ChainState::load(dir.path(), "app"), None);
    }
}
