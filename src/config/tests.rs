//! The config's unit tests: every section, its errors, and job expansion.

use std::path::{Path, PathBuf};

use chrono::TimeDelta;

use super::*;
use crate::retention::{Period, Policy};
use crate::source::{PasswordFrom, Spec};
use crate::units::parse_duration;

const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

fn parse(text: &str) -> Result<Settings, Error> {
    Settings::parse(text, Path::new("/etc/vault/vault.toml"))
}

fn minimal(extra: &str) -> String {
    format!(
        "[vault]\ntarget = \"file:///srv/vault\"\n[encryption]\nrecipients = [\"{RECIPIENT}\"]\n{extra}"
    )
}

#[test]
fn a_full_config_validates() {
    let s = parse(&minimal(
        r#"
[compression]
level = 6
[retention]
daily = "14d"
yearly = "10y"
[identities.restorer]
age_identity_file = "keys/restore.txt"
[[job]]
name = "app-db"
schedule = "15 3 * * *"
source = { kind = "sqlite", path = "data/app.db" }
[[job]]
name = "dump"
source = { kind = "command", command = ["pg_dump", "-Fc"], extension = "pgdump" }
"#,
    ))
    .unwrap();
    assert_eq!(s.jobs.len(), 2);
    assert_eq!(s.compression.level, 6);
    assert_eq!(s.retention.daily, Period::Days(14));
    assert_eq!(s.retention.weekly, Policy::default().weekly);
    assert_eq!(
        s.identities.restorer.age_identity_file,
        Some(PathBuf::from("/etc/vault/keys/restore.txt"))
    );
    assert_eq!(
        s.jobs[0].source,
        Spec::Sqlite {
            path: "/etc/vault/data/app.db".into()
        }
    );
    assert_eq!(s.jobs[1].source.extension(), "pgdump");
    assert_eq!(s.jobs[0].recipients.len(), 1);
}

#[test]
fn monitoring_and_signing_settings() {
    let key = format!("vault-ed25519:{}", "ab".repeat(32));
    let s = parse(&minimal(&format!(
        "[signing]\nkey_file = \"sign.key\"\npublic_keys = [\"{key}\"]\n\
         [verify]\nsize_drop = 0.3\nping = {{ url = \"https://hc.example/abc\" }}\n\
         [[job]]\nname = \"a\"\nschedule = \"0 */6 * * *\"\n\
         source = {{ kind = \"files\", path = \"x\" }}\n\
         [[job]]\nname = \"b\"\nschedule = \"15 3 * * *\"\ninterval = \"2d\"\ngrace = \"90m\"\n\
         ping = {{ url = \"https://hc.example/b\" }}\n\
         source = {{ kind = \"files\", path = \"x\" }}\n\
         [[job]]\nname = \"c\"\nschedule = \"30 1 * * 0\"\n\
         source = {{ kind = \"files\", path = \"x\" }}\n"
    )))
    .unwrap();
    assert_eq!(
        s.signing.key_file,
        Some(PathBuf::from("/etc/vault/sign.key"))
    );
    assert_eq!(s.signing.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
    assert_eq!(s.signing.public_keys[0].to_string(), key);
    assert_eq!(s.verify.size_drop, 0.3);
    assert_eq!(
        s.verify.cache_dir,
        PathBuf::from(DEFAULT_STATE_DIR),
        "the cache lives in the state directory unless told"
    );
    let own = parse(&minimal(
        "[signing]\nstate_dir = \"state\"\n[verify]\ncache_dir = \"verifier-cache\"\n",
    ))
    .unwrap();
    assert_eq!(
        own.verify.cache_dir,
        PathBuf::from("/etc/vault/verifier-cache")
    );
    let state = parse(&minimal("[signing]\nstate_dir = \"state\"\n")).unwrap();
    assert_eq!(state.verify.cache_dir, PathBuf::from("/etc/vault/state"));
    // The interval is the largest gap between fire times; a quarter of it is grace.
    assert_eq!(s.jobs[0].interval, TimeDelta::hours(6));
    assert_eq!(s.jobs[0].grace, TimeDelta::minutes(90));
    assert_eq!(s.jobs[1].interval, TimeDelta::days(2));
    assert_eq!(s.jobs[1].grace, TimeDelta::minutes(90));
    assert!(s.jobs[1].ping.is_some());
    assert_eq!(s.jobs[2].interval, TimeDelta::weeks(1));
    for (bad, named) in [
        ("[signing]\npublic_keys = [\"age1abc\"]\n", "public_keys"),
        ("[verify]\nsize_drop = 2.0\n", "size_drop"),
        ("[verify]\nsize_window = 1\n", "size_window"),
        ("[verify]\npushgateway = \"gw:9091\"\n", "pushgateway"),
        (
            "[[job]]\nname = \"a\"\ninterval = \"soon\"\nsource = { kind = \"files\", path = \"x\" }\n",
            "interval",
        ),
        (
            "[[job]]\nname = \"a\"\ngrace = \"0h\"\nsource = { kind = \"files\", path = \"x\" }\n",
            "grace",
        ),
        (
            "[[job]]\nname = \"a\"\nping = { url = \"ftp://x\" }\nsource = { kind = \"files\", path = \"x\" }\n",
            "ping",
        ),
    ] {
        let err = parse(&minimal(bad)).unwrap_err().to_string();
        assert!(err.contains(named), "{bad:?}: {err}");
    }
    assert_eq!(parse_duration("90s").unwrap(), TimeDelta::seconds(90));
    assert!(parse_duration("1y").unwrap_err().contains("unknown unit"));
}

#[test]
fn unknown_keys_are_named() {
    for (extra, key) in [
        ("[vault2]\n", "vault2"),
        ("[compression]\nlevle = 3\n", "levle"),
        (
            "[[job]]\nname = \"a\"\nsource = { kind = \"sqlite\", path = \"x\", pth = 1 }\n",
            "pth",
        ),
        (
            "[[job]]\nname = \"a\"\nsorce = 1\nsource = { kind = \"files\", path = \"x\" }\n",
            "sorce",
        ),
        ("[identities.writer]\nsecret = \"hunter2\"\n", "secret"),
    ] {
        let err = parse(&minimal(extra)).unwrap_err().to_string();
        assert!(
            err.contains(key),
            "error for {key:?} does not name it: {err}"
        );
    }
}

#[test]
fn bad_values_are_explained() {
    let cases = [
        (
            "[[job]]\nname = \"Bad Name\"\nsource = { kind = \"files\", path = \"x\" }\n",
            "Bad Name",
        ),
        (
            "[[job]]\nname = \"a\"\nsource = { kind = \"mongo\" }\n",
            "mongo",
        ),
        (
            "[[job]]\nname = \"a\"\nschedule = \"daily\"\nsource = { kind = \"files\", path = \"x\" }\n",
            "daily",
        ),
        (
            "[[job]]\nname = \"a\"\nsource = { kind = \"command\", command = [] }\n",
            "empty",
        ),
        ("[retention]\ndaily = \"3h\"\n", "unknown unit"),
        ("[compression]\nlevel = 40\n", "level 40"),
        (
            "[identities.writer]\nage_identity_file = \"k\"\n",
            "[identities.restorer] only",
        ),
        (
            "[identities.writer]\nprofile = \"a\"\naccess_key_id_env = \"A\"\nsecret_access_key_env = \"B\"\n",
            "one credential",
        ),
    ];
    for (extra, needle) in cases {
        let err = parse(&minimal(extra)).unwrap_err().to_string();
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
    let twice = "[[job]]\nname = \"a\"\nsource = { kind = \"files\", path = \"x\" }\n";
    let err = parse(&minimal(&format!("{twice}{twice}")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("twice"), "{err}");
    for prefix in ["a/../b", "a//b", ".vault"] {
        let text = format!("[vault]\ntarget = \"/v\"\nprefix = \"{prefix}\"\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("prefix"), "{prefix}: {err}");
    }
    assert!(parse("[vault]\ntarget = \"/v\"\nprefix = \"/acme/prod/\"\n").is_ok());
    let err =
        parse("[vault]\ntarget = \"file:///v\"\n[encryption]\nrecipients = [\"age1bogus\"]\n")
            .unwrap_err()
            .to_string();
    assert!(err.contains("age1bogus"), "{err}");
}

#[test]
fn engine_jobs_parse_and_expand() {
    let s = parse(&minimal(
        r#"
[[job]]
name = "pg"
source = { kind = "postgres", host = "db", databases = ["app", "billing"], globals = true, passfile = "pgpass" }
[[job]]
name = "shop"
source = { kind = "mariadb", database = "shop", password_file = "shop.pw" }
[[job]]
name = "cache"
source = { kind = "redis", password_env = "REDIS_PW" }
"#,
    ))
    .unwrap();
    let names: Vec<&str> = s.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(
        names,
        ["pg.app", "pg.billing", "pg.globals", "shop", "cache"]
    );
    assert_eq!(
        s.job_names(Some("pg")).unwrap(),
        ["pg.app", "pg.billing", "pg.globals"]
    );
    assert_eq!(s.jobs_named("pg.billing").unwrap().len(), 1);
    assert!(s.jobs_named("nope").is_err());
    assert_eq!(s.jobs[2].source.extension(), "sql");
    assert_eq!(s.jobs[0].source.extension(), "pgdump");
    assert_eq!(s.jobs[0].source.databases(), ["app"]);
    match &s.jobs[0].source {
        Spec::Postgres(pg) => {
            assert_eq!(pg.passfile, Some(PathBuf::from("/etc/vault/pgpass")))
        }
        other => panic!("{other:?}"),
    }
    match &s.jobs[3].source {
        Spec::Mysql(m) => assert_eq!(
            m.password,
            PasswordFrom::File(PathBuf::from("/etc/vault/shop.pw"))
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.jobs[4].source.kind(), "redis");

    for (job, needle) in [
        (
            "source = { kind = \"postgres\", url = \"postgresql://u:pw@h/app\" }",
            "carries a password",
        ),
        (
            "source = { kind = \"mysql\", database = \"a\", databases = [\"b\"] }",
            "exactly one of",
        ),
        (
            "source = { kind = \"redis\", extra_args = [\"-a\", \"pw\"] }",
            "must not carry a password",
        ),
        (
            "source = { kind = \"postgres\", host = \"h\", dbname = \"x\" }",
            "dbname",
        ),
    ] {
        let err = parse(&minimal(&format!("[[job]]\nname = \"j\"\n{job}\n")))
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
    let clash = "[[job]]\nname = \"pg\"\nsource = { kind = \"postgres\", databases = [\"a\"] }\n\
                 [[job]]\nname = \"pg.a\"\nsource = { kind = \"files\", path = \"x\" }\n";
    let err = parse(&minimal(clash)).unwrap_err().to_string();
    assert!(err.contains("`pg.a` is defined twice"), "{err}");
}

#[test]
fn jobs_without_recipients_parse_but_carry_none() {
    let s = parse(
        "[vault]\ntarget = \"/v\"\n[[job]]\nname = \"a\"\nsource = { kind = \"files\", path = \"x\" }\n",
    )
    .unwrap();
    assert!(s.jobs[0].recipients.is_empty());
    assert!(s.job("zzz").unwrap_err().to_string().contains("jobs: a"));
}

#[test]
fn scheduler_settings_time_zones_and_verify_schedule() {
    let s = parse(&minimal(
        "[scheduler]\ntimezone = \"Europe/Berlin\"\nmax_concurrent = 2\njitter = \"10m\"\n\
         retries = 3\nretry_delay = \"1m\"\nshutdown_grace = \"20s\"\nlisten = \"127.0.0.1:9464\"\n\
         [verify]\nschedule = \"0 6 * * *\"\n\
         [[job]]\nname = \"a\"\nschedule = \"30 2 * * *\"\nsource = { kind = \"files\", path = \"x\" }\n\
         [[job]]\nname = \"b\"\nschedule = \"30 2 * * *\"\ntimezone = \"America/New_York\"\n\
         source = { kind = \"files\", path = \"x\" }\n",
    ))
    .unwrap();
    let sch = &s.scheduler;
    assert_eq!(sch.timezone.name(), "Europe/Berlin");
    assert_eq!(sch.max_concurrent, 2);
    assert_eq!(sch.jitter, TimeDelta::minutes(10));
    assert_eq!((sch.retries, sch.retry_delay), (3, TimeDelta::minutes(1)));
    assert_eq!(sch.shutdown_grace, std::time::Duration::from_secs(20));
    assert_eq!(sch.listen.unwrap().port(), 9464);
    let zone = |j: &Job| j.schedule.as_ref().unwrap().timezone().name();
    assert_eq!(zone(&s.jobs[0]), "Europe/Berlin");
    assert_eq!(zone(&s.jobs[1]), "America/New_York");
    assert_eq!(
        s.verify.schedule.as_ref().unwrap().timezone().name(),
        "Europe/Berlin"
    );
    let defaults = parse(&minimal("")).unwrap().scheduler;
    assert_eq!(
        (defaults.max_concurrent, defaults.retries, defaults.listen),
        (1, 2, None)
    );
    for (bad, needle) in [
        (
            "[scheduler]\ntimezone = \"Mars/Base\"\n",
            "[scheduler] timezone",
        ),
        ("[scheduler]\nlisten = \"9464\"\n", "listen `9464`"),
        ("[scheduler]\nmax_concurrent = 0\n", "max_concurrent"),
        ("[scheduler]\nshutdown_grace = \"soon\"\n", "shutdown_grace"),
        ("[scheduler]\nretries = 99\n", "retries"),
        ("[verify]\nschedule = \"61 * * * *\"\n", "[verify] schedule"),
        (
            "[[job]]\nname = \"a\"\ntimezone = \"UTC\"\nsource = { kind = \"files\", path = \"x\" }\n",
            "timezone is set but schedule is not",
        ),
        (
            "[[job]]\nname = \"a\"\nschedule = \"@daily\"\ntimezone = \"Nowhere\"\nsource = { kind = \"files\", path = \"x\" }\n",
            "job `a`: timezone",
        ),
    ] {
        let err = parse(&minimal(bad)).unwrap_err().to_string();
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
}

#[test]
fn drill_settings_and_a_jobs_checks_are_read_with_their_defaults() {
    let s = parse(&minimal(
        r#"
[drill]
schedule = "0 5 * * 0"
identities = ["keys/main.txt", "/keys/break-glass.txt"]
rto = "30m"
[[job]]
name = "app"
source = { kind = "sqlite", path = "/data/app.db" }
[job.drill]
max_shrink = 0.3
[[job.drill.check]]
sql = "select count(*) from orders"
min = 1
[[job.drill.check]]
name = "app check"
command = ["./check.sh"]
max = 2.5
[[job]]
name = "plain"
source = { kind = "sqlite", path = "/data/b.db" }
"#,
    ))
    .unwrap();
    let d = &s.drill;
    assert!(d.schedule.is_some());
    assert_eq!(d.scratch, Scratch::Local);
    assert_eq!(
        d.identities,
        [
            PathBuf::from("/etc/vault/keys/main.txt"),
            PathBuf::from("/keys/break-glass.txt")
        ]
    );
    assert_eq!(d.rto, Some(TimeDelta::minutes(30)));
    assert_eq!(d.max_shrink, 0.5);
    assert_eq!(d.history, 30);
    let app = &s.jobs[0].drill;
    assert_eq!(app.max_shrink, Some(0.3));
    assert_eq!(app.checks.len(), 2);
    assert_eq!(app.checks[0].name, "select count(*) from orders");
    assert_eq!(app.checks[0].min, Some(1.0));
    assert_eq!(
        app.checks[1].test,
        CheckTest::Command(vec!["./check.sh".into()])
    );
    assert_eq!(
        app.checks[1].judge(3.0).unwrap(),
        "3 is above the maximum 2.5"
    );
    assert!(app.checks[0].judge(1.0).is_none());
    assert!(s.jobs[1].drill.checks.is_empty());
}

#[test]
fn bad_drill_settings_are_refused_naming_the_key() {
    let cases = [
        ("[drill]\nscratch = \"tmp\"\n", "[drill] scratch `tmp`"),
        (
            "[drill]\nscratch = \"postgresql://drill:pw@db:5432/\"\n",
            "holds a password",
        ),
        (
            "[drill]\nscratch = \"postgresql://drill@db:5432/prod\"\n",
            "name no database",
        ),
        (
            "[drill]\nscratch = \"redis://db\"\n",
            "redis:// is not a scratch server",
        ),
        ("[drill]\nmax_shrink = 1.5\n", "[drill] max_shrink 1.5"),
        ("[drill]\nrto = \"soon\"\n", "[drill] rto:"),
        ("[drill]\nhistory = 0\n", "[drill] history 0"),
        ("[drill]\ncolour = 1\n", "colour"),
        (
            "[[job]]\nname = \"a\"\nsource = { kind = \"sqlite\", path = \"/a\" }\n[job.drill]\n[[job.drill.check]]\nsql = \"select 1\"\n",
            "job `a`: [job.drill] drill check `select 1`: an sql check needs min, max or equals",
        ),
        (
            "[[job]]\nname = \"a\"\nsource = { kind = \"sqlite\", path = \"/a\" }\n[[job.drill.check]]\nsql = \"select 1\"\ncommand = [\"x\"]\nmin = 1\n",
            "job `a`: [job.drill] drill check 1: give sql or command, not both",
        ),
        (
            "[[job]]\nname = \"a\"\nsource = { kind = \"sqlite\", path = \"/a\" }\n[[job.drill.check]]\nsql = \"select 1\"\nmin = 2\nmax = 1\n",
            "min 2 is above max 1",
        ),
    ];
    for (extra, expected) in cases {
        let err = parse(&minimal(extra)).unwrap_err().to_string();
        assert!(err.contains(expected), "{extra}: {err}");
        assert!(err.contains("/etc/vault/vault.toml"), "{err}");
    }
}
