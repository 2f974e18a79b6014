//! age keys: recipients (public, on the backup host) and identities (private, only
//! with the restorer).
//!
//! The backup host holds recipients only, so it can write backups it cannot read.
//!
//! A leaf: imports only `error`.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use age::secrecy::ExposeSecret;

use crate::error::Error;

/// A parsed age X25519 recipient, keeping the text it was written as.
#[derive(Clone)]
pub struct Recipient {
    pub text: String,
    pub key: age::x25519::Recipient,
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for Recipient {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// Parses an `age1...` recipient.
pub fn parse_recipient(text: &str) -> Result<Recipient, String> {
    let text = text.trim();
    if text.starts_with("AGE-SECRET-KEY-") {
        // Never echo what looks like a private key.
        return Err(
            "this is an age *identity* (private key); the backup host needs only \
                    the recipient (age1...) — `vault keygen` prints it"
                .into(),
        );
    }
    let key = text
        .parse::<age::x25519::Recipient>()
        .map_err(|e| format!("`{text}` is not an age X25519 recipient: {e}"))?;
    Ok(Recipient {
        text: text.to_string(),
        key,
    })
}

/// Reads a recipients file: one `age1...` per line, `#` comments and blank lines ignored
/// (the format of `age -R`).
pub fn read_recipients_file(path: &Path) -> Result<Vec<Recipient>, Error> {
    let text = fs::read_to_string(path).map_err(|e| {
        Error::config(format!(
            "cannot read recipients file {}: {e}",
            path.display()
        ))
    })?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_recipient(l).map_err(|e| Error::config(format!("{}: {e}", path.display()))))
        .collect()
}

/// Loaded age X25519 identities (private keys) from an identity file.
pub struct Identities {
    pub path: String,
    keys: Vec<age::x25519::Identity>,
}

impl Identities {
    pub fn as_dyn(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.keys.iter().map(|k| k as &dyn age::Identity)
    }
}

/// Loads an age identity file (as written by `vault keygen` or `age-keygen`): one
/// `AGE-SECRET-KEY-1...` per line, `#` comments and blank lines ignored.
pub fn load_identities(path: &Path) -> Result<Identities, Error> {
    let shown = path.display().to_string();
    let file = fs::File::open(path)
        .map_err(|e| Error::config(format!("cannot open age identity file {shown}: {e}")))?;
    if let Ok(md) = file.metadata()
        && md.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            "age identity file {shown} is readable by group or others (mode {:o}); \
             chmod 600 it",
            md.permissions().mode() & 0o777
        );
    }
    let mut keys = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::config(format!("cannot read {shown}: {e}")))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // Never echo the line: it may be a private key.
        let key = line.parse::<age::x25519::Identity>().map_err(|_| {
            Error::config(format!(
                "{shown} line {}: not an age X25519 identity (AGE-SECRET-KEY-1...)",
                n + 1
            ))
        })?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(Error::config(format!("{shown} holds no age identity")));
    }
    Ok(Identities { path: shown, keys })
}

/// Creates a new identity file at `path` (mode 0600, never overwriting) and returns the
/// recipient to put in vault.toml.
pub fn generate_identity_file(path: &Path) -> Result<String, Error> {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let contents = format!(
        "# created: {}\n# public key: {recipient}\n{}\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        identity.to_string().expose_secret()
    );
    write_new_key_file(path, &contents)?;
    Ok(recipient)
}

/// Writes a new private key file: mode 0600, never replacing an existing file, synced.
pub fn write_new_key_file(path: &Path, contents: &str) -> Result<(), Error> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::config(format!(
                    "{} already exists; vault keygen never overwrites a key",
                    path.display()
                ))
            } else {
                Error::config(format!("cannot create {}: {e}", path.display()))
            }
        })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::config(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_writes_a_private_file_that_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.txt");
        let recipient = generate_identity_file(&path).unwrap();
        assert!(recipient.starts_with("age1"));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_identities(&path).unwrap().as_dyn().count(), 1);
        assert!(generate_identity_file(&path).is_err(), "never overwrites");
        assert!(parse_recipient(&recipient).is_ok());
    }

    #[test]
    fn private_keys_are_not_recipients_and_are_not_echoed() {
        let err = parse_recipient("AGE-SECRET-KEY-1QQQQ").unwrap_err();
        assert!(!err.contains("QQQQ"));
        assert!(
            parse_recipient("age1nope")
                .unwrap_err()
                .contains("age1nope")
        );
    }
}
