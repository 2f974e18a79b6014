//! The names that become key components: job names and the vault's key prefix.
//!
//! One rule each, shared by the config, the command line and the stores, so that a
//! name accepted anywhere is a name every layer can put into a key. A leaf: imports
//! nothing of vault's.

/// `text` as it may be shown in a message: control characters (NUL, newline, escape
/// sequences) escaped, so that a rejected name cannot forge or break lines of output.
pub fn shown(text: &str) -> String {
    text.escape_debug().to_string()
}

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
            "`{}` is not a valid job name (1-64 of a-z 0-9 - _ ., starting with a \
             letter or digit)",
            shown(name)
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
            "`{}` is not a valid prefix (path parts of a-z A-Z 0-9 - _ ., no empty, . or .. parts)",
            shown(prefix)
        ))
    }
}

/// A JOB argument of a command: refused unless it is a valid job name, before any
/// store is touched (a name is a key component, and `../x` or `/x` would walk out of
/// the job's place in the vault). The error names the argument.
pub fn validate_job_arg(name: &str) -> Result<(), String> {
    validate_job_name(name).map_err(|e| format!("JOB argument {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_outside_the_rule_are_refused_and_shown_escaped() {
        for good in ["app", "pg.app", "a-1_b", "0"] {
            assert!(validate_job_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../outside",
            "/usr/share/doc",
            "App",
            ".hidden",
            "a/b",
            "a b",
        ] {
            let err = validate_job_arg(bad).unwrap_err();
            assert!(err.starts_with("JOB argument `"), "{err}");
        }
        let err = validate_job_name("a\nb\0c\u{1b}[31m").unwrap_err();
        assert!(err.contains("`a\\nb\\0c\\u{1b}[31m`"), "{err}");
        assert!(!err.contains('\n') && !err.contains('\0') && !err.contains('\u{1b}'));
        let err = validate_prefix("a/\n/b").unwrap_err();
        assert!(err.contains("a/\\n/b") && !err.contains('\n'), "{err}");
    }
}
