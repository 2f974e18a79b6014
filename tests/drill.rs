//! Acceptance of `vault drill` (issue 14), driving the real binary: backups of real
//! PostgreSQL, MariaDB and Redis servers (tests/dbharness), of a SQLite file and of a
//! directory, drilled into scratch servers that vault starts itself (`scratch =
//! "local"`, the default) or into an existing server (`scratch = "postgresql://…"`).
//!
//! Every drill gets a TMPDIR of its own, so what it leaves behind is visible: after
//! each drill — passed, failed, damaged or interrupted — that directory must be empty,
//! no process may run in or from it, and the scratch server's port must be closed.
//! The evidence files live in the world (`[signing] state_dir = "state"`).
//!
//! A missing server binary fails the test naming the package (dbharness), never skips.
//! The data is small except where a point needs time: the interrupted drill (a restore
//! caught in the middle of its COPY) and the RTO (an index whose build sleeps: a
//! restore that takes seconds on any machine, without hundreds of megabytes).

mod common;
mod dbharness;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::procs::{Proc, io_count, processes, signal};
use common::receiver::Receiver;
use common::{
    EXIT_INTEGRITY, EXIT_INTERRUPTED, EXIT_USAGE, World, code, file_hash, parse_exposition, stderr,
};
use dbharness::{
    MARIADB_PASSWORD, Mariadb, PG_PASSWORD, Postgres, REDIS_PASSWORD, Redis, port_open,
};
use serde_json::Value;

/// "A drill check failed" (docs/operations.md).
const EXIT_DRILL: i32 = 6;
/// How long a drill may take before the test gives up on it.
const DEADLINE: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------
// The world of a drill test.

/// A [`World`] whose config keeps the evidence in `state/`, and whose vault runs with
/// `TMPDIR=tmp/` and the sources' passwords in its environment.
struct Drills {
    w: World,
    env: Vec<(String, String)>,
}

impl Drills {
    fn new() -> Drills {
        let w = World::new();
        let tmp = w.path("tmp");
        fs::create_dir(&tmp).unwrap();
        // Running as root, vault runs the scratch servers as nobody in a private
        // directory under TMPDIR: nobody must be able to pass through the parents
        // (search only: nothing here is listable or readable by others).
        for dir in [w.dir(), tmp.as_path()] {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o711)).unwrap();
        }
        Drills { w, env: Vec::new() }
    }

    /// Adds `key=value` to vault's environment.
    fn env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// vault's TMPDIR.
    fn tmp(&self) -> PathBuf {
        self.w.path("tmp")
    }

    /// Writes vault.toml: the world's vault and keys, the evidence in `state/`, then
    /// `sections` (global tables such as `[drill]`, then the jobs).
    fn config(&self, sections: &str) {
        self.w
            .config(&format!("[signing]\nstate_dir = \"state\"\n{sections}"));
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.w.command(args);
        cmd.env("TMPDIR", self.tmp())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn backup(&self, job: &str) {
        let out = self.run(&["backup", job]);
        assert!(out.status.success(), "backup {job}: {}", stderr(&out));
    }

    /// `vault --json drill ARGS…`: the output and the report of `job` in it.
    fn drill_json(&self, job: &str, args: &[&str]) -> (Output, Value) {
        let mut all = vec!["--json", "drill"];
        all.extend_from_slice(args);
        all.push(job);
        let out = self.run(&all);
        let report = report_of(&out, job);
        (out, report)
    }

    /// `vault --json drill JOB` passes and leaves nothing behind: its report.
    fn passes(&self, job: &str) -> Value {
        let (out, report) = self.drill_json(job, &[]);
        assert_exit(&out, 0, "drill");
        self.assert_nothing_left(Some(&report));
        assert_eq!(report["outcome"], "passed", "{report:#}");
        report
    }

    /// As [`Drills::passes`], on a server of `engine` vault started (named with its port).
    fn passes_on_a_local_server(&self, job: &str, engine: &str) -> Value {
        let report = self.passes(job);
        let scratch = report["scratch"].as_str().unwrap();
        assert!(
            scratch.starts_with(&format!("local {engine} ")) && scratch_port(&report).is_some(),
            "{report:#}"
        );
        report
    }

    /// As [`Drills::passes`], restored under vault's TMPDIR (so that "nothing left"
    /// there means something).
    fn passes_in_tmp(&self, job: &str) -> Value {
        let report = self.passes(job);
        let tmp = self.tmp().canonicalize().unwrap();
        assert!(
            report["scratch"]
                .as_str()
                .unwrap()
                .starts_with(tmp.to_str().unwrap()),
            "{report:#}"
        );
        report
    }

    /// `vault drill JOB` (the table for people) fails a check (exit 6) and leaves
    /// nothing behind; its output names `needle` (else the test fails saying `what`).
    /// Returns the drill's evidence.
    fn fails_naming(&self, job: &str, needle: &str, what: &str) -> Value {
        let out = self.drill_human(job);
        assert_exit(&out, EXIT_DRILL, "drill");
        self.assert_nothing_left(None);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert!(text.contains(needle), "{what}:\n{text}");
        self.latest_evidence(job)
    }

    /// `vault drill JOB` (the table for people).
    fn drill_human(&self, job: &str) -> Output {
        self.run(&["drill", job])
    }

    /// The evidence directory of `job`.
    fn evidence_dir(&self, job: &str) -> PathBuf {
        self.w.path("state/drills").join(job)
    }

    /// The evidence files of `job`, oldest first (their names start with the time).
    fn evidence_files(&self, job: &str) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(self.evidence_dir(job))
            .map(|rd| rd.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "json"));
        files.sort();
        files
    }

    /// The newest evidence of `job`, parsed.
    fn latest_evidence(&self, job: &str) -> Value {
        let files = self.evidence_files(job);
        let file = files
            .last()
            .unwrap_or_else(|| panic!("no evidence in {}", self.evidence_dir(job).display()));
        serde_json::from_slice(&fs::read(file).unwrap()).unwrap()
    }

    /// Insists that the drill left nothing: TMPDIR empty, no process running in or from
    /// it, and (when `report` names one) the scratch server's port closed.
    fn assert_nothing_left(&self, report: Option<&Value>) {
        let tmp = self.tmp();
        let left: Vec<String> = fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(left.is_empty(), "left in vault's TMPDIR: {left:?}");
        let procs = processes_under(&tmp);
        assert!(procs.is_empty(), "processes left running: {procs:#?}");
        if let Some(port) = report.and_then(scratch_port) {
            assert!(!port_open(port), "the scratch port {port} is still open");
        }
    }
}

/// The evidence of `job`'s drill in `vault --json drill` output
/// (`{"drills": [{"job", "passed", "exit_code", "error", "evidence_file", "evidence"}]}`).
fn report_of(out: &Output, job: &str) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}); exit {}:\n{text}\nstderr: {}",
            code(out),
            stderr(out)
        )
    });
    let drill = v["drills"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["job"] == job))
        .unwrap_or_else(|| {
            panic!(
                "no drill of job `{job}` in:\n{text}\nstderr: {}",
                stderr(out)
            )
        });
    assert_eq!(drill["exit_code"], code(out), "{drill:#}");
    match &drill["evidence"] {
        Value::Null => panic!(
            "no evidence for job `{job}`: {drill:#}\nstderr: {}",
            stderr(out)
        ),
        evidence => evidence.clone(),
    }
}

/// The counts of a report's facts.
fn counts(report: &Value) -> BTreeMap<String, u64> {
    serde_json::from_value(report["facts"]["counts"].clone())
        .unwrap_or_else(|e| panic!("facts.counts ({e}): {report:#}"))
}

/// The checks of a report of `kind` with severity `fail`.
fn failures<'r>(report: &'r Value, kind: &str) -> Vec<&'r Value> {
    report["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks: {report:#}"))
        .iter()
        .filter(|c| c["kind"] == kind && c["severity"] == "fail")
        .collect()
}

/// The check named `name`.
fn check_named<'r>(report: &'r Value, name: &str) -> &'r Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check named `{name}`: {report:#}"))
}

/// The port of `… on 127.0.0.1:PORT` in a report's `scratch`.
fn scratch_port(report: &Value) -> Option<u16> {
    let scratch = report["scratch"].as_str()?;
    let (_, rest) = scratch.split_once("127.0.0.1:")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn assert_exit(out: &Output, expected: i32, what: &str) {
    assert_eq!(
        code(out),
        expected,
        "{what}: exit {}\nstdout: {}\nstderr: {}",
        code(out),
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}

// ---------------------------------------------------------------------------------
// Processes.

/// Processes whose working directory is under `dir` or whose command line names it.
fn processes_under(dir: &Path) -> Vec<Proc> {
    let dir = dir.canonicalize().unwrap();
    let text = dir.to_string_lossy().into_owned();
    processes()
        .into_iter()
        .filter(|p| {
            p.cwd.as_deref().is_some_and(|c| c.starts_with(&dir)) || p.cmdline.contains(&text)
        })
        .collect()
}

/// Whether `pid` descends from `ancestor` in `procs`.
fn descends(procs: &[Proc], mut pid: u32, ancestor: u32) -> bool {
    for _ in 0..64 {
        if pid == ancestor {
            return true;
        }
        match procs.iter().find(|p| p.pid == pid) {
            Some(p) if p.ppid > 1 => pid = p.ppid,
            _ => return false,
        }
    }
    false
}

/// Waits for `child` to exit (killing it after [`DEADLINE`]); its output.
fn finish(mut child: Child, what: &str) -> Output {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{what} did not exit within {DEADLINE:?}: {}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

// ---------------------------------------------------------------------------------
// Sources and their facts, computed independently of vault.

fn pg_job(pg: &Postgres, name: &str, db: &str, extra: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\nsource = {{ kind = \"postgres\", url = \"{}\", password_env = \"APP_PG_PASSWORD\" }}\n{extra}",
        pg.url(db)
    )
}

/// A PostgreSQL source: database `app` of a fresh server holding `sql`, and a world
/// with the source's password in vault's environment.
fn pg_source(sql: &str) -> (Postgres, Drills) {
    let pg = Postgres::start();
    pg.createdb("app");
    pg.psql("app", sql);
    let mut d = Drills::new();
    d.env("APP_PG_PASSWORD", PG_PASSWORD);
    (pg, d)
}

const PG_SHOP: &str = r#"
CREATE SCHEMA billing;
CREATE TABLE customers (id bigserial PRIMARY KEY, name text NOT NULL);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer bigint REFERENCES customers,
                     amount numeric(10,2) NOT NULL, created timestamptz NOT NULL DEFAULT now());
CREATE TABLE billing.invoices (no bigserial PRIMARY KEY, customer bigint NOT NULL, paid boolean);
CREATE TABLE billing.empty (x int);
CREATE SEQUENCE billing.unused;
INSERT INTO customers (name) SELECT 'customer ' || i FROM generate_series(1, 1234) i;
INSERT INTO orders (customer, amount) SELECT 1 + i % 1234, i / 100.0 FROM generate_series(1, 5000) i;
INSERT INTO billing.invoices (customer, paid) SELECT 1 + i % 1234, i % 3 = 0 FROM generate_series(1, 777) i;
"#;

/// Exact row counts of the base tables of `db` outside the system schemas, as
/// `schema.table`.
fn pg_counts(pg: &Postgres, db: &str) -> BTreeMap<String, u64> {
    let rows = pg.psql(
        db,
        "SELECT table_schema || '.' || table_name || '|' || \
           (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', \
             table_schema, table_name), false, true, '')))[1]::text \
         FROM information_schema.tables WHERE table_type = 'BASE TABLE' \
           AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    );
    pairs(&rows, '|')
}

/// `schema.sequence` → last_value (0 when never used).
fn pg_sequences(pg: &Postgres, db: &str) -> BTreeMap<String, i64> {
    let rows = pg.psql(
        db,
        "SELECT schemaname || '.' || sequencename || '|' || coalesce(last_value, 0) \
         FROM pg_sequences ORDER BY 1",
    );
    rows.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once('|').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

fn pairs(rows: &str, sep: char) -> BTreeMap<String, u64> {
    rows.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(sep).unwrap();
            (k.to_owned(), v.trim().parse().unwrap())
        })
        .collect()
}

/// The databases of `pg` whose name starts with `vault_drill`.
fn drill_databases(pg: &Postgres) -> Vec<String> {
    pg.psql(
        "postgres",
        "SELECT datname FROM pg_database WHERE datname LIKE 'vault\\_drill%' ORDER BY 1",
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

/// The drill database name of the lead's rule: `vault_drill_<job>_<backup id>`,
/// lowercased, anything outside [a-z0-9_] as `_`, cut to 63 bytes.
fn drill_db_name(job: &str, backup_id: &str) -> String {
    let mut name: String = format!("vault_drill_{job}_{backup_id}")
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    name.truncate(63);
    name
}

/// `n` rows in `orders`, each of about 200 bytes: a dump of n × 200 bytes.
fn pg_big(n: u32) -> String {
    format!(
        "CREATE TABLE orders (id int PRIMARY KEY, note text NOT NULL, amount numeric NOT NULL);\n\
         INSERT INTO orders SELECT i, md5(i::text) || repeat(md5((-i)::text), 5), i / 7.0 \
         FROM generate_series(1, {n}) i;\n"
    )
}

fn sqlite_source(d: &Drills, orders: u32) -> PathBuf {
    let path = d.w.path("app.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER, amount REAL);
         CREATE TABLE empty (x);
         CREATE INDEX orders_by_customer ON orders (customer);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 321)
             INSERT INTO customers SELECT i, 'customer ' || i FROM s;
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {orders})
             INSERT INTO orders SELECT i, 1 + i % 321, i / 10.0 FROM s;"
    ))
    .unwrap();
    path
}

fn sqlite_counts(path: &Path) -> BTreeMap<String, u64> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    names
        .into_iter()
        .map(|n| {
            let c: i64 = conn
                .query_row(&format!("SELECT count(*) FROM \"{n}\""), [], |r| r.get(0))
                .unwrap();
            (n, c as u64)
        })
        .collect()
}

const SQLITE_JOB: &str =
    "[[job]]\nname = \"app\"\nsource = { kind = \"sqlite\", path = \"app.db\" }\n";

// ---------------------------------------------------------------------------------
// 1. A healthy drill of each engine passes with the source's counts, leaving nothing.

#[test]
fn postgres_drill_passes_with_the_source_counts_and_leaves_nothing() {
    let (pg, d) = pg_source(PG_SHOP);
    d.config(&pg_job(&pg, "app", "app", ""));
    d.backup("app");

    let report = d.passes_on_a_local_server("app", "postgres");
    let expected = pg_counts(&pg, "app");
    assert_eq!(expected["public.orders"], 5000);
    assert_eq!(expected["billing.empty"], 0);
    assert_eq!(counts(&report), expected, "{report:#}");
    let sequences: BTreeMap<String, i64> =
        serde_json::from_value(report["facts"]["sequences"].clone()).unwrap();
    assert_eq!(sequences, pg_sequences(&pg, "app"), "{report:#}");
    assert_eq!(sequences["public.orders_id_seq"], 5000);
    assert!(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true),
        "{report:#}"
    );
}

#[test]
fn mariadb_drill_passes_with_the_source_counts_and_leaves_nothing() {
    let my = Mariadb::start();
    my.sql(
        None,
        "CREATE DATABASE shop; USE shop;
         CREATE TABLE customers (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(100) NOT NULL);
         CREATE TABLE orders (id INT PRIMARY KEY AUTO_INCREMENT, customer INT NOT NULL,
             total DECIMAL(12,2) NOT NULL, FOREIGN KEY (customer) REFERENCES customers (id));
         CREATE TABLE empty (x INT);
         INSERT INTO customers (name) SELECT CONCAT('name ', seq) FROM seq_1_to_432;
         INSERT INTO orders (customer, total) SELECT 1 + seq % 432, seq / 10 FROM seq_1_to_3210;",
    );
    let mut d = Drills::new();
    d.env("SHOP_DB_PASSWORD", MARIADB_PASSWORD);
    d.config(&format!(
        "[[job]]\nname = \"shop\"\nsource = {{ kind = \"mariadb\", host = \"127.0.0.1\", port = {}, user = \"root\", password_env = \"SHOP_DB_PASSWORD\", database = \"shop\" }}\n",
        my.port
    ));
    d.backup("shop");

    let report = d.passes_on_a_local_server("shop", "mariadb");
    let tables = my.sql(
        None,
        "SELECT CONCAT(table_schema, '.', table_name) FROM information_schema.tables \
         WHERE table_schema = 'shop' AND table_type = 'BASE TABLE' ORDER BY 1",
    );
    let expected: BTreeMap<String, u64> = tables
        .lines()
        .map(|t| {
            let n = my.sql(None, &format!("SELECT COUNT(*) FROM {t}"));
            (t.to_owned(), n.parse().unwrap())
        })
        .collect();
    assert_eq!(expected.len(), 3);
    assert_eq!(expected["shop.orders"], 3210);
    assert_eq!(counts(&report), expected, "{report:#}");
}

/// `type=keys` of every key of database `db`.
fn redis_types(r: &Redis, db: u32) -> BTreeMap<String, u64> {
    let lua = "local t = {} for _, k in ipairs(redis.call('KEYS', '*')) do \
               local ty = redis.call('TYPE', k)['ok'] t[ty] = (t[ty] or 0) + 1 end \
               local out = {} for k, v in pairs(t) do table.insert(out, k .. '=' .. v) end \
               return out";
    pairs(&r.cli(&["-n", &db.to_string(), "EVAL", lua, "0"]), '=')
}

#[test]
fn redis_drill_passes_with_the_source_key_counts_and_leaves_nothing() {
    let r = Redis::start();
    r.cli(&[
        "EVAL",
        "for i = 1, 2500 do redis.call('SET', 'k:' .. i, redis.sha1hex(tostring(i))) end \
         for i = 1, 40 do redis.call('HSET', 'h:' .. i, 'f', i) end \
         for i = 1, 30 do redis.call('RPUSH', 'l:' .. i, 'a', 'b') end \
         for i = 1, 20 do redis.call('SADD', 's:' .. i, 'x', 'y') end \
         for i = 1, 10 do redis.call('ZADD', 'z:' .. i, i, 'm') end return 1",
        "0",
    ]);
    r.cli(&["XADD", "events", "*", "kind", "signup"]);
    // The dump goes over replication: without this the server holds it back 5 s for
    // other replicas to join (Redis 7's default for diskless sync).
    r.cli(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
    r.cli(&["-n", "3", "SET", "other", "db"]);
    r.cli(&["-n", "3", "RPUSH", "queue", "job"]);
    let mut d = Drills::new();
    d.env("CACHE_PASSWORD", REDIS_PASSWORD);
    d.config(&format!(
        "[[job]]\nname = \"cache\"\nsource = {{ kind = \"redis\", port = {}, password_env = \"CACHE_PASSWORD\" }}\n",
        r.port
    ));
    d.backup("cache");

    let report = d.passes_on_a_local_server("cache", "redis");
    let dbsize = |db: &str| -> u64 { r.cli(&["-n", db, "DBSIZE"]).parse().unwrap() };
    let expected = BTreeMap::from([
        ("db0".to_owned(), dbsize("0")),
        ("db3".to_owned(), dbsize("3")),
    ]);
    assert_eq!(expected["db0"], 2601);
    assert_eq!(counts(&report), expected, "{report:#}");
    let mut types = redis_types(&r, 0);
    for (t, n) in redis_types(&r, 3) {
        *types.entry(t).or_default() += n;
    }
    let reported: BTreeMap<String, u64> =
        serde_json::from_value(report["facts"]["key_types"].clone()).unwrap();
    assert_eq!(reported, types, "{report:#}");
}

#[test]
fn sqlite_drill_passes_with_the_source_counts_and_leaves_nothing() {
    let d = Drills::new();
    let db = sqlite_source(&d, 4321);
    d.config(SQLITE_JOB);
    d.backup("app");

    let report = d.passes_in_tmp("app");
    let expected = sqlite_counts(&db);
    assert_eq!(expected["orders"], 4321);
    assert_eq!(counts(&report), expected, "{report:#}");
    assert_eq!(report["facts"]["integrity"], "ok", "{report:#}");
}

#[test]
fn files_drill_passes_with_the_source_counts_and_leaves_nothing() {
    let d = Drills::new();
    let root = d.w.path("uploads");
    let mut bytes = 0u64;
    for dir in ["a", "a/b", "c"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    for i in 0..57u64 {
        let dir = ["", "a", "a/b", "c"][i as usize % 4];
        let body = vec![b'x' + (i % 3) as u8; (i * 311) as usize];
        bytes += body.len() as u64;
        fs::write(root.join(dir).join(format!("f{i}.bin")), body).unwrap();
    }
    std::os::unix::fs::symlink("a/f1.bin", root.join("link")).unwrap();
    std::os::unix::fs::symlink("nowhere", root.join("c/dangling")).unwrap();
    d.config("[[job]]\nname = \"uploads\"\nsource = { kind = \"files\", path = \"uploads\" }\n");
    d.backup("uploads");

    let report = d.passes_in_tmp("uploads");
    // The directories under the root (a, a/b, c): the root itself is not counted.
    let expected = BTreeMap::from(
        [
            ("files", 57),
            ("bytes", bytes),
            ("dirs", 3),
            ("symlinks", 2),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    assert_eq!(counts(&report), expected, "{report:#}");
}

/// SIGTERM while the restore into the scratch server is under way: exit 130, and the
/// server and its directory are gone.
#[test]
fn sigterm_mid_drill_exits_130_and_leaves_nothing() {
    // About 40 MB of dump: seconds of COPY, caught after its first two megabytes.
    let (pg, d) = pg_source(&pg_big(200_000));
    d.config(&pg_job(&pg, "app", "app", ""));
    d.backup("app");

    let mut vault = d
        .command(&["drill", "app"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tmp = d.tmp();
    let started = Instant::now();
    // What was seen, for the message when the drill ends too soon.
    let mut seen = (None, None, 0u64);
    let (restore, server) = loop {
        let procs = processes();
        let restore = procs
            .iter()
            .find(|p| p.name == "pg_restore" && descends(&procs, p.pid, vault.id()))
            .map(|p| p.pid);
        let server = processes_under(&tmp)
            .into_iter()
            .find(|p| p.name == "postgres");
        if let Some(pid) = restore {
            seen.0 = Some(pid);
            seen.2 = seen.2.max(io_count("rchar", pid));
        }
        if let Some(p) = &server {
            seen.1 = Some(p.cmdline.clone());
        }
        if let (Some(restore), Some(server)) = (restore, server)
            && io_count("rchar", restore) > 2 << 20
        {
            break (restore, server);
        }
        if let Some(status) = vault.try_wait().unwrap() {
            let out = vault.wait_with_output().unwrap();
            panic!(
                "the drill ended ({status}) before its restore was caught (pg_restore {:?}, \
                 {} bytes read; scratch server {:?}): make the data larger\n{}",
                seen.0,
                seen.2,
                seen.1,
                stderr(&out)
            );
        }
        assert!(
            started.elapsed() < DEADLINE,
            "no pg_restore under vault writing into a scratch server under {}",
            tmp.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    // The port the scratch server listens on (`-p PORT` on its command line).
    let args: Vec<&str> = server.cmdline.split_whitespace().collect();
    let port = args
        .windows(2)
        .find(|w| w[0] == "-p")
        .and_then(|w| w[1].parse::<u16>().ok());
    // Hold the restore still while vault gets the signal, so it is surely mid-way.
    signal(restore, "STOP");
    signal(vault.id(), "TERM");
    signal(restore, "CONT");
    let out = finish(vault, "the interrupted drill");
    assert_exit(&out, EXIT_INTERRUPTED, "drill after SIGTERM");
    d.assert_nothing_left(None);
    if let Some(port) = port {
        assert!(!port_open(port), "the scratch port {port} is still open");
    }
}

// ---------------------------------------------------------------------------------
// 2. A truncated table, drilled after a drill of the full one: a shrink finding.

#[test]
fn a_truncated_table_is_a_shrink_finding() {
    let (pg, d) = pg_source(&pg_big(10_000));
    pg.psql(
        "app",
        "CREATE TABLE settings (k text PRIMARY KEY); INSERT INTO settings VALUES ('a');",
    );
    d.config(&pg_job(&pg, "app", "app", ""));
    d.backup("app");
    let (out, full) = d.drill_json("app", &[]);
    assert_exit(&out, 0, "drill of the full table");
    assert_eq!(counts(&full)["public.orders"], 10_000);

    pg.psql("app", "TRUNCATE orders");
    d.backup("app");
    let (out, report) = d.drill_json("app", &[]);
    assert_exit(&out, EXIT_DRILL, "drill after TRUNCATE");
    d.assert_nothing_left(Some(&report));
    assert_eq!(report["outcome"], "failed", "{report:#}");
    assert_eq!(counts(&report)["public.orders"], 0, "{report:#}");
    let shrink = failures(&report, "shrink");
    assert_eq!(
        shrink.len(),
        1,
        "one shrink finding, the truncated table: {report:#}"
    );
    assert!(
        shrink[0].to_string().contains("public.orders"),
        "the finding names the table: {report:#}"
    );
    // The evidence says the same.
    let evidence = d.latest_evidence("app");
    assert_eq!(failures(&evidence, "shrink").len(), 1, "{evidence:#}");
}

// ---------------------------------------------------------------------------------
// 3. A failing user check fails the drill, naming the check.

#[test]
fn a_failing_user_check_fails_the_drill_naming_it() {
    let (pg, d) = pg_source(PG_SHOP);
    let url_file = d.w.path("drill-url.txt");
    let checks = format!(
        "[[job.drill.check]]\nname = \"huge orders\"\n\
         sql = \"select count(*) from orders where amount > 1000000\"\nmin = 1\n\
         [[job.drill.check]]\nsql = \"select count(*) from orders\"\nmin = 1\n\
         [[job.drill.check]]\nname = \"app answers\"\n\
         command = [\"sh\", \"-c\", 'printf %s \"$VAULT_DRILL_URL\" > \"{}\"; \
                     psql -X -A -t -c \"select count(*) from orders\"']\nequals = 5000\n",
        url_file.display()
    );
    d.config(&pg_job(&pg, "app", "app", &checks));
    d.backup("app");

    let report = d.fails_naming("app", "huge orders", "the check is not named");
    assert_eq!(report["outcome"], "failed", "{report:#}");
    let failed = failures(&report, "check");
    assert_eq!(failed.len(), 1, "{report:#}");
    assert_eq!(failed[0]["name"], "huge orders", "{report:#}");
    // An unnamed check is named by its SQL; passing checks pass.
    assert_eq!(
        check_named(&report, "select count(*) from orders")["ok"],
        true
    );
    assert_eq!(
        check_named(&report, "app answers")["ok"],
        true,
        "{report:#}"
    );
    // The command reached the restored copy with the client variables vault gave it
    // (psql counted its 5000 orders), and saw its URL, without a password.
    let url = fs::read_to_string(&url_file).unwrap();
    assert!(url.starts_with("postgresql://"), "{url}");
    let authority = url["postgresql://".len()..].split('/').next().unwrap();
    assert!(
        !authority.split('@').next().unwrap().contains(':'),
        "a password in VAULT_DRILL_URL: {url}"
    );
}

// ---------------------------------------------------------------------------------
// 4. A damaged data object: exit 3, nothing left behind.

#[test]
fn a_damaged_data_object_exits_3_and_leaves_nothing() {
    let (pg, d) = pg_source(&pg_big(20_000));
    d.config(&pg_job(&pg, "app", "app", ""));
    d.backup("app");
    let manifest = &d.w.manifests("app")[0];
    let data = d.w.data_path(manifest);
    let len = fs::metadata(&data).unwrap().len();
    assert!(len > 100_000, "too small to damage in the middle: {len}");
    fs::set_permissions(&data, fs::Permissions::from_mode(0o644)).unwrap();
    let mut f = fs::OpenOptions::new().write(true).open(&data).unwrap();
    f.seek(SeekFrom::Start(len / 2)).unwrap();
    f.write_all(&[0x5a; 64]).unwrap();
    drop(f);

    let out = d.run(&["drill", "app"]);
    assert_exit(&out, EXIT_INTEGRITY, "drill of a damaged backup");
    d.assert_nothing_left(None);
    assert!(
        stderr(&out).contains("app"),
        "the job is not named: {}",
        stderr(&out)
    );
}

// ---------------------------------------------------------------------------------
// 5. A break-glass identity that is not a recipient: a finding naming the file.

#[test]
fn a_break_glass_identity_that_is_not_a_recipient_is_a_finding() {
    let d = Drills::new();
    sqlite_source(&d, 100);
    let keygen = d.w.vault(&["keygen", "-o", "break-glass.txt"]);
    assert!(keygen.status.success(), "{}", stderr(&keygen));
    d.config(&format!(
        "[drill]\nidentities = [\"key.txt\", \"break-glass.txt\"]\n{SQLITE_JOB}"
    ));
    d.backup("app");

    let report = d.fails_naming("app", "break-glass.txt", "the file is not named");
    let failed = failures(&report, "identity");
    assert_eq!(failed.len(), 1, "{report:#}");
    // The restore and its checks passed: only the key is wrong.
    let all_failed = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["severity"] == "fail")
        .count();
    assert_eq!(all_failed, 1, "{report:#}");
    assert!(
        failed[0].to_string().contains("break-glass.txt"),
        "{report:#}"
    );
    // The main key opened it: that check passed and names key.txt.
    let identity_checks: Vec<&Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "identity")
        .collect();
    assert!(
        identity_checks.iter().any(|c| c["ok"] == true
            && c.to_string().contains("key.txt")
            && !c.to_string().contains("break-glass")),
        "{report:#}"
    );
}

// ---------------------------------------------------------------------------------
// 6. Over the RTO: a finding.

#[test]
fn over_the_rto_is_a_finding() {
    // Building the index calls a function that sleeps 0.4 s per row: a restore of
    // three rows that takes 1.2 s on any machine.
    let (pg, d) = pg_source(
        "CREATE FUNCTION slow_key(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE \
             AS $$ BEGIN PERFORM pg_sleep(0.4); RETURN i; END $$;
         CREATE TABLE orders (id int PRIMARY KEY, amount numeric NOT NULL);
         INSERT INTO orders SELECT i, i FROM generate_series(1, 3) i;
         CREATE INDEX orders_slow ON orders (slow_key(id));",
    );
    // The job's rto overrides the global one.
    d.config(&format!(
        "[drill]\nrto = \"1h\"\n{}",
        pg_job(&pg, "app", "app", "[job.drill]\nrto = \"1s\"\n")
    ));
    d.backup("app");

    let (out, report) = d.drill_json("app", &[]);
    assert_exit(&out, EXIT_DRILL, "drill over its RTO");
    d.assert_nothing_left(Some(&report));
    let rto = failures(&report, "rto");
    assert_eq!(rto.len(), 1, "{report:#}");
    // Everything else passed: only the time is wrong.
    let all_fails: Vec<&Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["severity"] == "fail")
        .collect();
    assert_eq!(all_fails.len(), 1, "{report:#}");
    assert_eq!(counts(&report)["public.orders"], 3);
    assert!(
        report["duration_seconds"].as_f64().unwrap() > 1.0,
        "{report:#}"
    );
    assert!(
        report["restore_seconds"].as_f64().unwrap() >= 1.2,
        "{report:#}"
    );
}

// ---------------------------------------------------------------------------------
// 7. An existing scratch server: the drill database is created and dropped; a drill
//    database name that already exists is refused.

#[test]
fn a_scratch_server_gets_its_drill_database_created_and_dropped() {
    let (pg, mut d) = pg_source(PG_SHOP);
    d.env("PGPASSWORD", PG_PASSWORD);
    d.config(&format!(
        "[drill]\nscratch = \"postgresql://postgres@127.0.0.1:{}/\"\n{}",
        pg.port,
        pg_job(&pg, "app", "app", "")
    ));
    d.backup("app");
    let backup_id = d.w.manifests("app")[0]["backup_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let name = drill_db_name("app", &backup_id);

    let (out, report) = d.drill_json("app", &[]);
    assert_exit(&out, 0, "drill into the scratch server");
    d.assert_nothing_left(None);
    // Restored into the drill database (the report names it), and dropped after.
    assert!(
        report["scratch"].as_str().unwrap().contains(&name),
        "scratch does not name {name}: {report:#}"
    );
    assert_eq!(counts(&report), pg_counts(&pg, "app"), "{report:#}");
    assert_eq!(drill_databases(&pg), Vec::<String>::new());

    // A database of that name exists (someone else's): refused, and left as it was.
    pg.createdb(&name);
    pg.psql(
        &name,
        "CREATE TABLE precious (x int); INSERT INTO precious VALUES (42);",
    );
    let out = d.run(&["drill", "app"]);
    assert_exit(&out, EXIT_USAGE, "a drill into an existing database");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(text.contains(&name), "the database is not named:\n{text}");
    assert_eq!(pg.psql(&name, "SELECT x FROM precious"), "42");
    assert_eq!(drill_databases(&pg), vec![name]);
    d.assert_nothing_left(None);
}

// ---------------------------------------------------------------------------------
// 8. Metrics parsed with the Prometheus client parser; the JSON evidence written.

#[test]
fn metrics_parse_and_the_evidence_is_written_and_listed() {
    let d = Drills::new();
    let db = sqlite_source(&d, 2345);
    let gateway = Receiver::start();
    d.config(&format!(
        "[drill]\nrto = \"30m\"\nhistory = 2\npushgateway = \"{}\"\n{SQLITE_JOB}",
        gateway.url
    ));
    let prom = d.w.path("drill.prom");
    let prom_arg = prom.to_str().unwrap();
    // Three backups, each drilled: the history keeps the last two.
    for _ in 0..3 {
        d.backup("app");
        let (out, report) = d.drill_json("app", &["--prometheus", prom_arg]);
        assert_exit(&out, 0, "drill");
        assert_eq!(report["outcome"], "passed", "{report:#}");
    }
    d.assert_nothing_left(None);
    let now = chrono::Utc::now().timestamp() as f64;

    // Metrics, by the reference parser.
    let text = fs::read_to_string(&prom).unwrap();
    let parsed = parse_exposition(&text);
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        parsed
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.get("vault_job").map(String::as_str) == Some("app")
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .unwrap_or_else(|| panic!("no {name}{{vault_job=\"app\", {labels:?}}} in\n{text}"))
            .2
    };
    let last_success = value("vault_drill_last_success_timestamp_seconds", &[]);
    assert!((now - 120.0..=now + 1.0).contains(&last_success), "{text}");
    assert!(value("vault_drill_duration_seconds", &[]) > 0.0, "{text}");
    assert_eq!(value("vault_drill_success", &[]), 1.0, "{text}");
    assert_eq!(value("vault_drill_rto_seconds", &[]), 1800.0, "{text}");
    for (table, n) in sqlite_counts(&db) {
        assert_eq!(
            value("vault_drill_rows", &[("table", &table)]),
            n as f64,
            "{text}"
        );
    }
    assert!(
        parsed.iter().all(|(_, l, _)| !l.contains_key("job")),
        "`job` belongs to Prometheus: {text}"
    );
    // The same metrics went to the Pushgateway.
    let pushed = gateway.wait_for(1, Duration::from_secs(10));
    assert!(
        pushed[0].text().contains("vault_drill_success"),
        "{}",
        pushed[0].text()
    );

    // The evidence: the last two drills, private files in a private directory.
    let files = d.evidence_files("app");
    assert_eq!(files.len(), 2, "history = 2: {files:?}");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&d.evidence_dir("app")), 0o700);
    let manifests = d.w.manifests("app");
    let newest = &manifests[2];
    let id = newest["backup_id"].as_str().unwrap();
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    let name = files[1].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(&format!("-{id}.json")), "{name}");
    let e = d.latest_evidence("app");
    for field in [
        "vault_version",
        "host",
        "job",
        "backup_id",
        "backup_created",
        "manifest_key",
        "manifest_blake3",
        "data_key",
        "data_version",
        "started",
        "finished",
        "duration_seconds",
        "restore_seconds",
        "restore_bytes_per_second",
        "scratch",
        "facts",
        "checks",
        "outcome",
    ] {
        assert!(
            e.get(field).is_some(),
            "no `{field}` in the evidence: {e:#}"
        );
    }
    assert_eq!(e["job"], "app");
    assert_eq!(e["backup_id"], id);
    assert_eq!(e["outcome"], "passed");
    assert_eq!(e["data_key"], newest["data"]["key"]);
    let manifest_file = d.w.vault_dir().join(e["manifest_key"].as_str().unwrap());
    assert_eq!(e["manifest_blake3"], file_hash(&manifest_file), "{e:#}");
    assert_eq!(counts(&e), sqlite_counts(&db));
    assert_eq!(e["vault_version"], env!("CARGO_PKG_VERSION"));

    // --history lists them, newest first, without touching the store.
    fs::rename(d.w.vault_dir(), d.w.path("vault.away")).unwrap();
    let out = d.run(&["drill", "--history", "app"]);
    assert_exit(&out, 0, "drill --history");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains(id), "{table}");
    assert!(
        table.contains(manifests[1]["backup_id"].as_str().unwrap()),
        "{table}"
    );
    let out = d.run(&["--json", "drill", "--history", "app"]);
    assert_exit(&out, 0, "drill --history --json");
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = listed
        .iter()
        .map(|e| e["evidence"]["backup_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [id, manifests[1]["backup_id"].as_str().unwrap()],
        "newest first"
    );
}

// ---------------------------------------------------------------------------------
// The spec's exit codes beyond the acceptance list: a restore tool that fails on a
// good stream is a failed drill (6), not an error; with several jobs the worst wins.

#[test]
fn a_restore_tool_failing_on_a_good_stream_is_a_drill_failure() {
    let d = Drills::new();
    d.config(
        "[[job]]\nname = \"good\"\n\
         source = { kind = \"command\", command = [\"printf\", \"%s\", \"twelve bytes\"], extension = \"bin\" }\n\
         [job.drill]\ncommand = [\"sh\", \"-c\", \"cat > \\\"$1\\\"\", \"sh\", \"{to}\"]\n\
         [[job]]\nname = \"broken\"\n\
         source = { kind = \"command\", command = [\"printf\", \"%s\", \"twelve bytes\"], extension = \"bin\" }\n\
         [job.drill]\ncommand = [\"sh\", \"-c\", \"cat > /dev/null; echo 'no space left' >&2; exit 3\"]\n",
    );
    d.backup("good");
    d.backup("broken");

    let out = d.run(&["--json", "drill"]);
    assert_exit(&out, EXIT_DRILL, "drill of both jobs");
    d.assert_nothing_left(None);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_job = |job: &str| -> Value {
        v["drills"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["job"] == job)
            .unwrap_or_else(|| panic!("no drill of {job}: {v:#}"))
            .clone()
    };
    let good = by_job("good");
    assert_eq!(good["exit_code"], 0, "{good:#}");
    assert_eq!(good["evidence"]["facts"]["counts"]["bytes"], 12, "{good:#}");
    let broken = by_job("broken");
    assert_eq!(broken["exit_code"], EXIT_DRILL, "{broken:#}");
    let restore = failures(&broken["evidence"], "restore");
    assert_eq!(restore.len(), 1, "{broken:#}");
    assert!(
        restore[0]["detail"]
            .as_str()
            .unwrap()
            .contains("no space left"),
        "the tool's stderr is not quoted: {broken:#}"
    );
}

#[test]
fn a_job_without_backups_exits_4_and_the_others_are_still_drilled() {
    let d = Drills::new();
    sqlite_source(&d, 10);
    d.config(&format!(
        "{SQLITE_JOB}[[job]]\nname = \"never\"\nsource = {{ kind = \"sqlite\", path = \"app.db\" }}\n"
    ));
    d.backup("app");

    let out = d.run(&["drill"]);
    assert_exit(
        &out,
        common::EXIT_MISSING,
        "drill with a job never backed up",
    );
    let table = String::from_utf8_lossy(&out.stdout);
    let row = |job: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(job))
            .unwrap_or_else(|| panic!("no row for {job}:\n{table}"))
            .to_owned()
    };
    assert!(row("app").contains("PASSED"), "{table}");
    assert!(row("never").contains("NO BACKUP"), "{table}");
    d.assert_nothing_left(None);
}
