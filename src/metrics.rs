//! Prometheus text exposition format (version 0.0.4), written by hand.
//!
//! `vault verify` reports what it found as metrics in two ways: a file for
//! node-exporter's textfile collector (`--prometheus FILE`) and a push to a
//! Pushgateway (`--pushgateway URL`, see [`crate::notify::push`]). Both take the same
//! text. The format is small enough that a client library would add more than it
//! saves; what matters is that the output is always valid, so names are checked,
//! values and help text are escaped, and the file appears atomically.
//!
//! A leaf: imports only `error`; `notify` sends what it renders.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::Error;

/// Metric families and their samples, kept in the order they were declared.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    families: Vec<Family>,
}

#[derive(Debug, Clone)]
struct Family {
    name: String,
    kind: &'static str,
    help: String,
    /// Each sample's rendered label set (`{a="b"}` or empty) and value.
    samples: Vec<(String, f64)>,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Declares a family once (HELP + TYPE lines); `kind` is "gauge", "counter" or
    /// "untyped".
    ///
    /// # Panics
    /// On an invalid name, an unknown kind or a second declaration of the same name:
    /// the names are fixed in code, and a bad one would make the collector reject the
    /// whole file.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        assert!(is_metric_name(name), "invalid metric name `{name}`");
        let kind = match kind {
            "gauge" => "gauge",
            "counter" => "counter",
            "untyped" => "untyped",
            other => panic!("metric `{name}`: unsupported type `{other}`"),
        };
        assert!(
            !self.families.iter().any(|f| f.name == name),
            "metric `{name}` declared twice"
        );
        self.families.push(Family {
            name: name.to_owned(),
            kind,
            help: help.to_owned(),
            samples: Vec::new(),
        });
    }

    /// Adds one sample to a declared family, with its labels in the given order.
    ///
    /// # Panics
    /// When the family was not declared, on an invalid or repeated label name, and
    /// when the same label set is sampled twice (a duplicate series fails the scrape).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let mut rendered = String::new();
        for (i, (label, label_value)) in labels.iter().enumerate() {
            assert!(
                is_label_name(label),
                "metric `{name}`: invalid label name `{label}`"
            );
            assert!(
                !labels[..i].iter().any(|(seen, _)| seen == label),
                "metric `{name}`: label `{label}` given twice"
            );
            rendered.push(if i == 0 { '{' } else { ',' });
            let _ = write!(rendered, "{label}=\"{}\"", escape_label_value(label_value));
        }
        if !labels.is_empty() {
            rendered.push('}');
        }
        let Some(family) = self.families.iter_mut().find(|f| f.name == name) else {
            panic!("metric `{name}` sampled but never declared");
        };
        assert!(
            !family.samples.iter().any(|(seen, _)| *seen == rendered),
            "metric `{name}`: sample `{name}{rendered}` given twice"
        );
        family.samples.push((rendered, value));
    }

    /// The exposition text: families in declaration order, each one's samples under
    /// its HELP and TYPE lines.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for family in &self.families {
            let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(&family.help));
            let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
            for (labels, value) in &family.samples {
                let _ = writeln!(out, "{}{labels} {}", family.name, format_value(*value));
            }
        }
        out
    }

    /// Writes [`Metrics::render`] to `path` atomically, mode 0644.
    ///
    /// The text goes to `.<name>.tmp.<pid>` beside `path`, is synced and then renamed
    /// over `path`, so the textfile collector sees either the old file or the new one,
    /// never half of one (it only reads `*.prom`, so a temp file left by a crash is
    /// ignored). The mode is set explicitly so a restrictive umask cannot hide the
    /// file from a node-exporter running as another user.
    pub fn write_file(&self, path: &Path) -> Result<(), Error> {
        let context = || format!("cannot write metrics file {}", path.display());
        let Some(name) = path.file_name() else {
            return Err(Error::config(format!("{}: not a file name", context())));
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let tmp = dir.join(format!(
            ".{}.tmp.{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        if let Err(e) =
            write_synced(&tmp, self.render().as_bytes()).and_then(|()| fs::rename(&tmp, path))
        {
            let _ = fs::remove_file(&tmp);
            return Err(Error::from_io(context(), &e));
        }
        // The rename is durable only once the directory is synced; the new file is in
        // place either way, so a failure here is not worth reporting.
        let _ = fs::File::open(dir).and_then(|d| d.sync_all());
        Ok(())
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = fs::File::create(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o644))?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, and not `__`-prefixed (reserved for Prometheus itself).
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// Label values escape backslash, double quote and line feed.
fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text escapes backslash and line feed (a quote is literal there).
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Go's `ParseFloat` syntax, which Prometheus reads: `NaN`, `+Inf`, `-Inf`, and for
/// finite values Rust's shortest round-trip form (`3`, `0.25`, `1700000000`).
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_grouped_under_their_family_in_declaration_order() {
        let mut m = Metrics::new();
        m.family("vault_verify_ok", "gauge", "1 if the last backup verified.");
        m.family("vault_backups_total", "counter", "Backups seen.");
        m.sample("vault_backups_total", &[("job", "app")], 4.0);
        m.sample("vault_verify_ok", &[("job", "app"), ("tier", "daily")], 1.0);
        m.sample("vault_verify_ok", &[("job", "db"), ("tier", "daily")], 0.0);
        m.family("vault_up", "untyped", "Always 1.");
        m.sample("vault_up", &[], 1.0);
        assert_eq!(
            m.render(),
            "# HELP vault_verify_ok 1 if the last backup verified.\n\
             # TYPE vault_verify_ok gauge\n\
             vault_verify_ok{job=\"app\",tier=\"daily\"} 1\n\
             vault_verify_ok{job=\"db\",tier=\"daily\"} 0\n\
             # HELP vault_backups_total Backups seen.\n\
             # TYPE vault_backups_total counter\n\
             vault_backups_total{job=\"app\"} 4\n\
             # HELP vault_up Always 1.\n\
             # TYPE vault_up untyped\n\
             vault_up 1\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut m = Metrics::new();
        m.family("x", "gauge", "a \\ b\nc \"quoted\"");
        m.sample("x", &[("path", "C:\\dir\n\"q\"")], 1.0);
        assert_eq!(
            m.render(),
            "# HELP x a \\\\ b\\nc \"quoted\"\n\
             # TYPE x gauge\n\
             x{path=\"C:\\\\dir\\n\\\"q\\\"\"} 1\n"
        );
    }

    #[test]
    fn special_and_fractional_values() {
        let mut m = Metrics::new();
        m.family("v", "gauge", "values");
        for (label, value) in [
            ("nan", f64::NAN),
            ("pinf", f64::INFINITY),
            ("ninf", f64::NEG_INFINITY),
            ("frac", 0.25),
            ("big", 1_700_000_000.0),
            ("neg", -3.5),
        ] {
            m.sample("v", &[("k", label)], value);
        }
        let text = m.render();
        let values: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.rsplit_once(' ').unwrap().1)
            .collect();
        assert_eq!(
            values,
            ["NaN", "+Inf", "-Inf", "0.25", "1700000000", "-3.5"]
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(is_metric_name("vault:verify_ok_2"));
        assert!(is_metric_name("_x"));
        assert!(!is_metric_name("2x"));
        assert!(!is_metric_name("a-b"));
        assert!(!is_metric_name(""));
        assert!(is_label_name("job_2"));
        assert!(!is_label_name("a:b"));
        assert!(!is_label_name("__name__"));
        assert!(!is_label_name(""));
    }

    #[test]
    #[should_panic(expected = "never declared")]
    fn undeclared_family_panics() {
        Metrics::new().sample("nope", &[], 1.0);
    }

    #[test]
    #[should_panic(expected = "invalid label name")]
    fn bad_label_name_panics() {
        let mut m = Metrics::new();
        m.family("x", "gauge", "x");
        m.sample("x", &[("bad-name", "v")], 1.0);
    }

    #[test]
    #[should_panic(expected = "given twice")]
    fn duplicate_series_panics() {
        let mut m = Metrics::new();
        m.family("x", "gauge", "x");
        m.sample("x", &[("job", "a")], 1.0);
        m.sample("x", &[("job", "a")], 2.0);
    }

    #[test]
    #[should_panic(expected = "unsupported type")]
    fn unknown_kind_panics() {
        Metrics::new().family("x", "histogram", "x");
    }

    #[test]
    fn write_file_replaces_atomically_with_mode_0644() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.prom");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();

        let mut m = Metrics::new();
        m.family("vault_up", "gauge", "up");
        m.sample("vault_up", &[], 1.0);
        m.write_file(&path).unwrap();

        assert_eq!(fs::read_to_string(&path).unwrap(), m.render());
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["vault.prom"], "no temp file may be left behind");
    }

    #[test]
    fn write_file_failure_names_the_file_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("vault.prom");
        let err = Metrics::new().write_file(&path).unwrap_err();
        assert!(err.to_string().contains("vault.prom"), "{err}");

        // A directory in the way: the temp file is written, the rename fails, and
        // the temp file is removed again.
        let blocked = dir.path().join("blocked.prom");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("inside"), "x").unwrap();
        let err = Metrics::new().write_file(&blocked).unwrap_err();
        assert!(err.to_string().contains("blocked.prom"), "{err}");
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["blocked.prom"]);
    }
}
