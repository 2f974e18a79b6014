//! What doctor says: the human report (the canary, the matrix table, the lock's
//! enforcement, the principals, the problems) on stdout, or all of it as one JSON
//! document with `--json`; warnings on stderr; the exit code from the worst problem.
//! Prints what was found and decides nothing, so it imports neither the SDK nor the
//! store.

use super::Doctor;
use super::enforcement::Enforcement;
use super::findings::{CanaryReport, Problem};
use super::principal::short_key;
use super::{at, matrix};
use crate::error::{ExitCode, summary};

impl Doctor<'_> {
    /// Says what doctor found, and fails with the exit code of the worst problem.
    pub(super) fn report(mut self, json: bool) -> anyhow::Result<()> {
        let (problems, code) = self.conclude();
        let canary = self.canary_report();
        for w in &self.warnings {
            eprintln!("warning: {w}");
        }
        if json {
            crate::report::print_json(&serde_json::json!({
                "target": self.target.describe(),
                "lock": self.settings.retention.source.as_str(),
                "canary": canary,
                "principals": self.principals,
                "iam": self.iam,
                "matrix": self.rows,
                "lock_enforcement": self.enforcement,
                "problems": problems,
                "warnings": self.warnings,
                "ok": code.is_none(),
                "exit_code": code.unwrap_or(ExitCode::Success) as i32,
            }));
        } else {
            self.print(canary.as_ref(), &problems, code);
        }
        match code {
            None => Ok(()),
            Some(code) => Err(summary(
                code,
                format!(
                    "vault doctor: {}: {}",
                    match code {
                        ExitCode::Integrity => "the vault is not safe",
                        ExitCode::AccessDenied => "an identity lacks a permission vault needs",
                        _ => "some checks could not be made",
                    },
                    problems
                        .iter()
                        .filter(|p| p.code == code)
                        .map(|p| p.message.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            )),
        }
    }

    /// The human report on stdout.
    fn print(&self, canary: Option<&CanaryReport>, problems: &[Problem], code: Option<ExitCode>) {
        println!(
            "vault doctor: {}, lock {}",
            self.target.describe(),
            self.settings.retention.source.as_str()
        );
        match canary {
            Some(c) => {
                let lock = match (&c.lock_seen, &c.lock_sent) {
                    (Some(l), _) => {
                        format!(
                            "{} until {} (read by the {})",
                            l.mode,
                            at(l.retain_until),
                            l.by
                        )
                    }
                    (None, Some(l)) => format!(
                        "{} until {} (as sent; no reader read it)",
                        l.mode,
                        at(l.retain_until)
                    ),
                    (None, None) => "lock not read".into(),
                };
                println!(
                    "canary: {} version {}{}: {lock}",
                    c.key,
                    c.version_id,
                    if c.from_an_earlier_run {
                        " (from an earlier run)"
                    } else {
                        ""
                    }
                );
            }
            None => println!("canary: none"),
        }
        println!();
        print!("{}", matrix::render(&self.rows));
        println!();
        let (state, detail) = match &self.enforcement {
            Enforcement::Enforced(d) => ("enforced", d),
            Enforcement::NotEnforced(d) => ("NOT ENFORCED", d),
            Enforcement::Unproven(d) => ("not proven", d),
            Enforcement::Unknown(d) => ("could not check", d),
        };
        println!("lock enforcement: {state}: {detail}");
        if !self.principals.is_empty() {
            println!("principals:");
            for p in &self.principals {
                println!(
                    "  {:<9} {} (access key {})",
                    p.identity,
                    p.arn.as_deref().unwrap_or("unknown"),
                    short_key(&p.access_key_id)
                );
            }
        }
        if let Some(iam) = &self.iam {
            println!(
                "IAM: the writer's {} is {} ({})",
                iam.action,
                iam.observed.word(),
                iam.observed.detail()
            );
        }
        if problems.is_empty() {
            println!(
                "\nok: every identity can do what vault needs and nothing more{}",
                if matches!(self.enforcement, Enforcement::Enforced(_)) {
                    ", and the backend enforces COMPLIANCE retention"
                } else {
                    ""
                }
            );
        } else {
            println!(
                "\nproblems (exit {}):",
                code.unwrap_or(ExitCode::Success) as i32
            );
            for p in problems {
                println!("  - [{}] {}", p.kind, p.message);
            }
        }
    }
}
