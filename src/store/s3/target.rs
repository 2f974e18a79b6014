//! The validated `s3://bucket/prefix` target and the S3 keys of `[vault]`: parsing,
//! validation, where a vault key lives in the bucket, and the size of each upload part.
//!
//! Pure values: nothing here talks to S3. Must not import `config` (config builds an
//! [`S3Target`] from these [`Options`]) or anything above the store.

use crate::units::parse_size;

const MIB: u64 = 1 << 20;
/// S3's limits.
pub(super) const MAX_PARTS: u32 = 10_000;
pub(super) const MIN_PART: u64 = 5 * MIB;
pub(super) const MAX_PART: u64 = 5 * 1024 * MIB;
/// The smallest configurable first part: with doubling every 1,000 parts it still
/// reaches 5 TiB within 10,000 parts.
const MIN_FIRST_PART: u64 = 8 * MIB;
const DEFAULT_PART: u64 = 16 * MIB;
const DEFAULT_CONCURRENCY: usize = 4;

/// The S3 keys of `[vault]`, as written; [`S3Target::apply`] validates them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub path_style: Option<bool>,
    pub part_size: Option<String>,
    pub upload_concurrency: Option<usize>,
    pub conditional_writes: Option<bool>,
}

impl Options {
    /// The keys that are set, by name.
    pub fn given(&self) -> Vec<&'static str> {
        [
            ("region", self.region.is_some()),
            ("endpoint", self.endpoint.is_some()),
            ("path_style", self.path_style.is_some()),
            ("part_size", self.part_size.is_some()),
            ("upload_concurrency", self.upload_concurrency.is_some()),
            ("conditional_writes", self.conditional_writes.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(k, _)| k)
        .collect()
    }
}

/// A validated `s3://bucket/prefix` target with its `[vault]` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Target {
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/`.
    pub prefix: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub path_style: bool,
    pub part_size: u64,
    pub upload_concurrency: usize,
    pub conditional_writes: bool,
}

impl S3Target {
    /// Parses `s3://bucket[/prefix]`.
    pub fn parse(value: &str) -> Result<S3Target, String> {
        let rest = value
            .strip_prefix("s3://")
            .ok_or_else(|| format!("`{value}` is not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !valid {
            return Err(format!(
                "`{value}`: `{bucket}` is not a valid bucket name (3-63 lowercase letters, \
                 digits, dots and hyphens)"
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
            return Err(format!("`{value}`: the key prefix `{prefix}` is not clean"));
        }
        Ok(S3Target {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            region: None,
            endpoint: None,
            path_style: false,
            part_size: DEFAULT_PART,
            upload_concurrency: DEFAULT_CONCURRENCY,
            conditional_writes: true,
        })
    }

    /// Applies the S3 keys of `[vault]`.
    pub fn apply(&mut self, options: &Options) -> Result<(), String> {
        let Options {
            region,
            endpoint,
            path_style,
            part_size,
            upload_concurrency,
            conditional_writes,
        } = options;
        if let Some(e) = endpoint
            && !(e.starts_with("https://") || e.starts_with("http://"))
        {
            return Err(format!(
                "endpoint `{e}` must start with https:// or http://"
            ));
        }
        // S3-compatible services behind a custom endpoint mostly want path-style.
        self.path_style = path_style.unwrap_or(endpoint.is_some());
        self.region = region.clone();
        self.endpoint = endpoint.clone();
        if let Some(size) = part_size {
            let bytes = parse_size(size).map_err(|e| format!("part_size: {e}"))?;
            if !(MIN_FIRST_PART..=MAX_PART).contains(&bytes) {
                return Err(format!(
                    "part_size `{size}` must be between 8MiB and 5GiB (S3 allows at most \
                     10,000 parts; vault doubles the part size every 1,000 parts)"
                ));
            }
            self.part_size = bytes;
        }
        if let Some(n) = *upload_concurrency {
            if !(1..=64).contains(&n) {
                return Err(format!("upload_concurrency {n} must be between 1 and 64"));
            }
            self.upload_concurrency = n;
        }
        if let Some(c) = *conditional_writes {
            self.conditional_writes = c;
        }
        Ok(())
    }

    /// The key in the bucket of a vault key: the target's prefix, then `key`.
    pub fn key_in_bucket(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// The vault key of a key in the bucket: `full` without the target's prefix;
    /// `None` for a key outside the prefix.
    pub(super) fn key_in_vault<'k>(&self, full: &'k str) -> Option<&'k str> {
        if self.prefix.is_empty() {
            Some(full)
        } else {
            full.strip_prefix(&self.prefix)?.strip_prefix('/')
        }
    }

    /// The target as people read it: `s3://bucket/prefix`, then ` at <endpoint>` when
    /// one is configured. Both the store's description and `vault doctor` show this.
    pub fn describe(&self) -> String {
        let mut s = format!("s3://{}", self.bucket);
        if !self.prefix.is_empty() {
            s.push('/');
            s.push_str(&self.prefix);
        }
        if let Some(e) = &self.endpoint {
            s.push_str(&format!(" at {e}"));
        }
        s
    }

    /// The size of part `number` (1-based): the configured size, doubled every 1,000
    /// parts, at most 5 GiB.
    pub fn part_size_of(&self, number: u32) -> u64 {
        let doublings = (number.saturating_sub(1) / 1000).min(20);
        (self.part_size << doublings).clamp(MIN_PART, MAX_PART)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = S3Target::parse("s3://my-vault/prod/db").unwrap();
        assert_eq!(
            (t.bucket.as_str(), t.prefix.as_str()),
            ("my-vault", "prod/db")
        );
        let t = S3Target::parse("s3://my-vault").unwrap();
        assert_eq!(t.prefix, "");
        assert!(S3Target::parse("s3://My_Bucket/x").is_err());
        assert!(S3Target::parse("s3://ab").is_err());
        assert!(S3Target::parse("s3://bucket/a/../b").is_err());
    }

    #[test]
    fn growing_parts_reach_five_tib_within_ten_thousand_parts() {
        let mut t = S3Target::parse("s3://bucket").unwrap();
        let size = |s: &str| Options {
            part_size: Some(s.into()),
            ..Options::default()
        };
        t.apply(&size("8MiB")).unwrap();
        let total: u64 = (1..=MAX_PARTS).map(|n| t.part_size_of(n)).sum();
        assert!(total >= 5 << 40, "only {} GiB", total >> 30);
        assert!((1..=MAX_PARTS).all(|n| (MIN_PART..=MAX_PART).contains(&t.part_size_of(n))));
        assert_eq!(t.part_size_of(1000), 8 << 20);
        assert_eq!(t.part_size_of(1001), 16 << 20);
        assert!(t.apply(&size("4MiB")).is_err());
    }
}
