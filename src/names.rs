//! The names that become key components: job names and the vault's key prefix.
//!
//! One rule each, shared by the config, the command line and the stores, so that a
//! name accepted anywhere is a name every layer can put into a key. A leaf: imports
//! nothing of vault's.

/// Job names become key components: 1-64 of lowercase letters, digits, `-`, `_`, `.`,
/// starting with a letter or digit.
pub fn validate_job_name(name: &str) -> Result<(), String> {
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

/// The prefix is the first key components: `a/b`, no empty, `.` or `..` parts, none
/// starting with `.vault` (reserved for vault's own keys).
pub fn validate_prefix(prefix: &str) -> Result<(), String> {
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
