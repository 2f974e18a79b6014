//! Unit tests of the plan: names, sizes, timing and what each unit's pod needs.

use std::path::Path;

use super::options::Options;
use super::plan::{Dir, FileSource, Kind, plan};
use super::units::object_name;
use crate::cli::{Cli, Command, DeployTarget};
use crate::config::Settings;
use crate::store::Role;
use clap::Parser;

const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

fn options(extra: &[&str]) -> Options {
    let mut argv = vec!["vault", "deploy", "kubernetes", "--image", "vault:1"];
    argv.extend(extra);
    match Cli::parse_from(argv).command {
        Command::Deploy(d) => match d.target {
            DeployTarget::Kubernetes(k) => Options::from_args(&k).unwrap(),
        },
        _ => unreachable!(),
    }
}

fn settings(body: &str) -> (Settings, String) {
    let text = format!(
        "[vault]\ntarget = \"s3://vault-bucket/p\"\nregion = \"eu-west-1\"\n\
         [encryption]\nrecipients = [\"{RECIPIENT}\"]\n{body}"
    );
    let settings = Settings::parse(&text, Path::new("/home/ops/vault/vault.toml")).unwrap();
    (settings, text)
}

#[test]
fn object_names_are_kubernetes_names_and_long_ones_stay_distinct() {
    assert_eq!(
        object_name("vault-backup-", "pg.app_1"),
        "vault-backup-pg-app-1"
    );
    let a = object_name("vault-backup-", &format!("{}a", "x".repeat(60)));
    let b = object_name("vault-backup-", &format!("{}b", "x".repeat(60)));
    assert!(a.len() <= 52 && b.len() <= 52, "{a} {b}");
    assert_ne!(a, b);
}

#[test]
fn a_backup_is_sized_from_the_measured_memory_and_timed_from_its_interval() {
    let (s, text) = settings(
        "[[job]]\nname = \"app\"\nschedule = \"15 3 * * *\"\n\
         source = { kind = \"postgres\", host = \"db\", port = 6432, database = \"app\", password_env = \"PGPW\" }\n",
    );
    let p = plan(&s, &text, &options(&[])).unwrap();
    let unit = &p.units[0];
    assert_eq!(
        unit.kind,
        Kind::Backup {
            group: "app".into()
        }
    );
    // 64 MiB (frames and zstd, level 3) + 16 MiB x 5 (S3 parts) + 16 MiB, in steps of
    // 32 MiB.
    assert_eq!(unit.resources.memory_request_mib, 160);
    assert_eq!(unit.resources.memory_limit_mib, 256);
    let t = unit.timing.as_ref().unwrap();
    assert_eq!(t.cron.schedule, "15 3 * * *");
    assert_eq!(t.cron.time_zone, "UTC");
    assert_eq!(t.starting_deadline_seconds, 6 * 3600);
    assert_eq!(t.active_deadline_seconds, 18 * 3600);
    assert_eq!(t.backoff_limit, 2);
    assert!(unit.database_ports.contains(&6432));
    assert!(unit.secret_env.contains("PGPW"));
    assert_eq!(
        unit.args,
        ["--config", "/etc/vault/vault.toml", "backup", "app"]
    );
}

#[test]
fn relative_paths_are_the_pods_and_each_role_gets_only_its_own() {
    let (s, text) = settings(
        "[identities.writer]\nrole_arn = \"arn:aws:iam::1:role/w\"\n\
         web_identity_token_file = \"/var/run/secrets/tokens/writer\"\n\
         [identities.restorer]\naccess_key_id_file = \"keys/id\"\n\
         secret_access_key_file = \"keys/secret\"\nage_identity_file = \"keys/age.txt\"\n\
         [drill]\nschedule = \"0 5 * * 0\"\n\
         [[job]]\nname = \"app\"\nschedule = \"@daily\"\n\
         source = { kind = \"mariadb\", host = \"db\", user = \"u\", database = \"d\", \
         password_file = \"keys/db.pw\" }\n",
    );
    let p = plan(&s, &text, &options(&["--restorer-namespace", "restore"])).unwrap();
    let writer = &p.units[0];
    let drill = p.units.iter().find(|u| u.kind == Kind::Drill).unwrap();
    assert_eq!(drill.role, Role::Restorer);
    let has = |u: &super::plan::Unit, path: &str, source: FileSource| {
        u.files
            .iter()
            .any(|f| f.path == Path::new(path) && f.source == source)
    };
    assert!(has(
        writer,
        "/etc/vault/keys/db.pw",
        FileSource::Secret("db.pw".into())
    ));
    assert!(has(
        writer,
        "/var/run/secrets/tokens/writer",
        FileSource::Token
    ));
    assert!(!writer.files.iter().any(|f| f.path.ends_with("age.txt")));
    assert!(has(
        drill,
        "/etc/vault/keys/age.txt",
        FileSource::Secret("age.txt".into())
    ));
    assert!(has(
        drill,
        "/etc/vault/keys/id",
        FileSource::Secret("id".into())
    ));
    assert!(!drill.files.iter().any(|f| f.path.ends_with("db.pw")));
    assert!(
        drill
            .dirs
            .iter()
            .any(|d| matches!(d, Dir::Scratch { path, .. } if path == Path::new("/var/lib/vault")))
    );
    assert_eq!(
        p.secret_keys(Role::Writer).into_iter().collect::<Vec<_>>(),
        ["db.pw"]
    );
    assert!(
        !p.warnings.is_empty(),
        "the drill's evidence on an emptyDir is a warning"
    );
}

/// The PrometheusRule's alerts are docs/operations.md's, expression for expression
/// (verify's textfile age replaced by the Pushgateway's, as operations.md says to).
#[test]
fn the_alert_rules_are_the_ones_operations_md_documents() {
    use super::monitoring::{SCHEDULER_ALERTS, VERIFY_ALERTS};
    let doc = include_str!("../../../docs/operations.md");
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = squash(&doc.replace("expr: |", "expr:"));
    for alert in VERIFY_ALERTS.iter().chain(SCHEDULER_ALERTS) {
        if alert.name == "VaultVerifyPushStale" {
            assert!(doc.contains("time() - push_time_seconds{job=\"vault_verify\"}"));
            continue;
        }
        let at = flat
            .find(&format!("- alert: {} ", alert.name))
            .unwrap_or_else(|| panic!("docs/operations.md has no alert {}", alert.name));
        let rest = &flat[at..];
        let expr = squash(alert.expr);
        assert!(
            rest.contains(&format!("expr: {expr}")),
            "{}: docs/operations.md's expression differs from `{expr}`",
            alert.name
        );
    }
}

/// The verify CronJob's cache (`[verify] cache_dir`) is on a claim only when the claim
/// is not the writer's `state_dir` claim: the verifier must not trust what the writer
/// can write. Otherwise it is an emptyDir, said in a warning.
#[test]
fn the_verifier_cache_is_on_its_own_claim_or_an_empty_dir() {
    let jobs = "[[job]]\nname = \"app\"\nschedule = \"@daily\"\n\
                source = { kind = \"command\", command = [\"true\"] }\n";
    let cache_dir = |p: &super::plan::Plan| -> Vec<Dir> {
        let verify = p.units.iter().find(|u| u.kind == Kind::Verify).unwrap();
        verify
            .dirs
            .iter()
            .filter(|d| d.path().starts_with("/var/lib/vault"))
            .cloned()
            .collect()
    };
    let claims = ["--claim", "/var/lib/vault=vault-state"];
    let warned = |p: &super::plan::Plan| p.warnings.iter().any(|w| w.contains("cache_dir"));

    // By default the cache is in state_dir, the writer's claim: an emptyDir instead.
    let (s, text) = settings(&format!(
        "[signing]\nstate_dir = \"/var/lib/vault\"\n[verify]\nschedule = \"7 * * * *\"\n{jobs}"
    ));
    let p = plan(&s, &text, &options(&claims)).unwrap();
    assert!(
        matches!(&cache_dir(&p)[..], [Dir::Scratch { .. }]),
        "{:?}",
        cache_dir(&p)
    );
    assert!(warned(&p), "{:?}", p.warnings);

    // Its own directory on its own claim: kept between runs, no warning.
    let (s, text) = settings(&format!(
        "[signing]\nstate_dir = \"/var/lib/vault\"\n\
         [verify]\nschedule = \"7 * * * *\"\ncache_dir = \"/var/lib/vault-verify\"\n{jobs}"
    ));
    let own = ["--claim", "/var/lib/vault-verify=verify-cache"];
    let p = plan(&s, &text, &options(&[&claims[..], &own[..]].concat())).unwrap();
    let verify = p.units.iter().find(|u| u.kind == Kind::Verify).unwrap();
    assert!(
        verify.dirs.iter().any(
            |d| matches!(d, Dir::Claim { claim, read_only: false, .. } if claim == "verify-cache")
        ),
        "{:?}",
        verify.dirs
    );
    assert!(
        !verify
            .dirs
            .iter()
            .any(|d| matches!(d, Dir::Claim { claim, .. } if claim == "vault-state")),
        "the writer's claim stays out of the verifier's pod"
    );
    assert!(!warned(&p), "{:?}", p.warnings);
}
