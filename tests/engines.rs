//! The database engines against real servers started by the tests (tests/dbharness):
//! PostgreSQL, MariaDB and Redis backed up with vault and restored into servers, with
//! the failure modes an operator meets (wrong password, unreachable or dying server),
//! passwords kept off command lines, and restores that refuse to mix data.

mod common;
mod dbharness;

use std::collections::BTreeMap;
use std::fs;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::procs::{io_count, processes, signal};
use common::{EXIT_FAILURE, EXIT_INTEGRITY, EXIT_USAGE, World, code, stderr};
use dbharness::{MARIADB_PASSWORD, Mariadb, PG_PASSWORD, Postgres, REDIS_PASSWORD, Redis};

// ---------------------------------------------------------------------------------
// Process helpers: children of a vault run, what they wrote, every command line.

/// The pid of the child of `parent` whose program is `name` (not its `--version`
/// check), once it exists.
fn wait_for_child(parent: u32, name: &str, vault: &mut Child) -> u32 {
    let started = Instant::now();
    loop {
        if let Some(p) = processes()
            .into_iter()
            .find(|p| p.ppid == parent && p.name == name && !p.cmdline.contains("--version"))
        {
            return p.pid;
        }
        if let Ok(Some(status)) = vault.try_wait() {
            panic!("vault exited ({status}) before `{name}` was seen running");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "`{name}` never started under vault"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Every process's command line, with NULs as spaces.
fn command_lines() -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = fs::read(e.path().join("cmdline")) {
            out.push(String::from_utf8_lossy(&c).replace('\0', " "));
        }
    }
    out
}

/// Starts `vault backup JOB` with `env`.
fn spawn_backup(world: &World, job: &str, env: &[(&str, &str)]) -> Child {
    let mut cmd = world.command(&["backup", job]);
    cmd.envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

/// Runs `vault backup JOB`; once `tool` (vault's child) has written `bytes`, pauses it,
/// runs `kill_server`, resumes it. Returns vault's output.
fn backup_with_server_dying(
    world: &World,
    job: &str,
    env: &[(&str, &str)],
    tool: &str,
    bytes: u64,
    kill_server: impl FnOnce(),
) -> Output {
    let mut vault = spawn_backup(world, job, env);
    let pid = wait_for_child(vault.id(), tool, &mut vault);
    let started = Instant::now();
    while io_count("wchar", pid) < bytes {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "`{tool}` wrote only {} bytes",
            io_count("wchar", pid)
        );
        assert!(
            vault.try_wait().unwrap().is_none(),
            "the dump finished before the server could be stopped: make it larger"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    signal(pid, "STOP");
    kill_server();
    signal(pid, "CONT");
    vault.wait_with_output().unwrap()
}

/// Asserts a failed backup: exit 1, the job and `cause` named, no manifest, no data.
fn assert_failed_cleanly(world: &World, job: &str, out: &Output, cause: &str) {
    let err = stderr(out);
    assert_eq!(code(out), EXIT_FAILURE, "{err}");
    assert!(
        err.contains(&format!("job `{job}`")),
        "job not named: {err}"
    );
    assert!(err.contains(cause), "cause `{cause}` not named: {err}");
    assert!(world.manifests(job).is_empty(), "a manifest was written");
    assert!(
        world.objects().is_empty(),
        "a failed backup left objects: {:?}",
        world.objects()
    );
}

/// Runs vault with `env` added.
fn run_vault(world: &World, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = world.command(args);
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

/// An empty directory for vault's TMPDIR, to see what it leaves there.
fn private_tmpdir(world: &World) -> std::path::PathBuf {
    let dir = world.path("tmp");
    fs::create_dir(&dir).unwrap();
    dir
}

fn ok(out: Output, what: &str) -> String {
    let err = stderr(&out);
    assert!(out.status.success(), "{what} failed: {err}");
    String::from_utf8(out.stdout).unwrap()
}

// ---------------------------------------------------------------------------------
// PostgreSQL

const PG_FIXTURE: &str = r#"
CREATE SCHEMA app;
CREATE SCHEMA billing;
CREATE SEQUENCE billing.invoice_no START 1000;
CREATE TABLE app.users (
    id bigserial PRIMARY KEY, email text UNIQUE NOT NULL, created timestamptz NOT NULL,
    score numeric(10,2), tags text[], profile jsonb);
CREATE INDEX users_created ON app.users (created);
CREATE TABLE billing.invoices (
    no bigint PRIMARY KEY DEFAULT nextval('billing.invoice_no'),
    user_id bigint NOT NULL REFERENCES app.users (id), amount numeric(12,2) NOT NULL,
    paid boolean NOT NULL, data bytea);
CREATE INDEX invoices_user ON billing.invoices (user_id);
CREATE VIEW billing.unpaid AS
    SELECT user_id, sum(amount) AS total FROM billing.invoices WHERE NOT paid GROUP BY user_id;
CREATE FUNCTION app.score_of(bigint) RETURNS numeric LANGUAGE sql STABLE
    AS $$ SELECT score FROM app.users WHERE id = $1 $$;
INSERT INTO app.users (email, created, score, tags, profile)
    SELECT 'user' || g || '@example.com', timestamptz '2020-01-01 00:00+00' + g * interval '1 minute',
           (g % 1000) / 7.0, ARRAY['t' || (g % 5), 'x'], jsonb_build_object('n', g, 'odd', g % 2 = 1)
    FROM generate_series(1, 100000) g;
INSERT INTO billing.invoices (user_id, amount, paid, data)
    SELECT (g % 100000) + 1, g / 100.0, g % 3 = 0, decode(md5(g::text), 'hex')
    FROM generate_series(1, 120000) g;
"#;

/// The schema as `pg_dump --schema-only` prints it (minus its random restrict keys).
fn pg_schema(pg: &Postgres, db: &str) -> String {
    let out = pg
        .command("pg_dump")
        .args(["--schema-only", "--no-password", "-d", db])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Row count and md5 of the ordered rows of every table in `schemas`.
fn pg_contents(pg: &Postgres, db: &str, schemas: &[&str]) -> BTreeMap<String, String> {
    let list = schemas
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(",");
    let tables = pg.psql(
        db,
        &format!(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables \
             WHERE table_schema IN ({list}) AND table_type = 'BASE TABLE' ORDER BY 1"
        ),
    );
    let mut out = BTreeMap::new();
    for t in tables.lines() {
        let v = pg.psql(
            db,
            &format!(
                "SELECT count(*) || ' ' || md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {t} t"
            ),
        );
        out.insert(t.to_string(), v);
    }
    out
}

fn pg_job(pg: &Postgres, name: &str, db: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\nsource = {{ kind = \"postgres\", url = \"{}\", password_env = \"APP_PG_PASSWORD\" }}\n",
        pg.url(db)
    )
}

#[test]
fn postgres_round_trip_keeps_schema_rows_and_checksums() {
    let pg = Postgres::start();
    pg.createdb("app");
    pg.psql("app", PG_FIXTURE);
    let world = World::new();
    world.config(&pg_job(&pg, "pg", "app"));
    let env = [("APP_PG_PASSWORD", PG_PASSWORD)];
    ok(run_vault(&world, &["backup", "pg"], &env), "backup");
    let m = &world.manifests("pg")[0];
    assert_eq!(m["source"]["kind"], "postgres");
    assert_eq!(m["source"]["extension"], "pgdump");
    assert_eq!(m["source"]["databases"], serde_json::json!(["app"]));
    assert!(m["plaintext"]["size"].as_u64().unwrap() > 5_000_000);

    // Into a new database, created by --create; pg_restore reads PGPASSWORD.
    let pw = [("PGPASSWORD", PG_PASSWORD)];
    let to = pg.url("restored");
    let out = ok(
        run_vault(&world, &["restore", "pg", "--to", &to, "--create"], &pw),
        "restore",
    );
    assert!(out.contains("to database restored"), "{out}");
    let schemas = ["app", "billing"];
    let original = pg_contents(&pg, "app", &schemas);
    assert_eq!(original.len(), 2);
    assert!(original["app.users"].starts_with("100000 "));
    assert!(original["billing.invoices"].starts_with("120000 "));
    assert_eq!(pg_schema(&pg, "restored"), pg_schema(&pg, "app"));
    assert_eq!(pg_contents(&pg, "restored", &schemas), original);
    // The sequence's position, the function and the view.
    let behaviour = "SELECT last_value || ' ' || app.score_of(42) || ' ' || \
                     (SELECT count(*) FROM billing.unpaid) FROM billing.invoice_no";
    assert_eq!(pg.psql("restored", behaviour), pg.psql("app", behaviour));

    // Parallel restore goes through a private temporary file, removed afterwards.
    let scratch = private_tmpdir(&world);
    let tmp = scratch.to_str().unwrap();
    ok(
        run_vault(
            &world,
            &[
                "restore",
                "pg",
                "--to",
                &pg.url("parallel"),
                "--create",
                "--jobs",
                "2",
            ],
            &[("PGPASSWORD", PG_PASSWORD), ("TMPDIR", tmp)],
        ),
        "restore --jobs",
    );
    assert_eq!(pg_contents(&pg, "parallel", &schemas), original);
    assert_eq!(fs::read_dir(&scratch).unwrap().count(), 0, "temp file left");

    // A non-empty database is refused without --force, and nothing changes in it.
    pg.psql("restored", "DELETE FROM billing.invoices WHERE no % 2 = 0");
    let before = pg_contents(&pg, "restored", &schemas);
    let out = run_vault(&world, &["restore", "pg", "--to", &to], &pw);
    let err = stderr(&out);
    assert_eq!(code(&out), EXIT_USAGE, "{err}");
    assert!(
        err.contains("database restored") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(pg_contents(&pg, "restored", &schemas), before);
    // --force --clean replaces what the dump holds.
    ok(
        run_vault(
            &world,
            &["restore", "pg", "--to", &to, "--force", "--clean"],
            &pw,
        ),
        "restore --force --clean",
    );
    assert_eq!(pg_contents(&pg, "restored", &schemas), original);

    // A restore without the password fails before anything, saying why.
    let out = run_vault(
        &world,
        &["restore", "pg", "--to", &pg.url("other"), "--create"],
        &[],
    );
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("password"), "{}", stderr(&out));

    // A damaged data object never commits: pg_restore runs in one transaction and does
    // not get the end of the dump before the hashes are checked.
    let data = world.data_path(m);
    let mut bytes = fs::read(&data).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x55;
    fs::write(&data, &bytes).unwrap();
    let out = run_vault(
        &world,
        &["restore", "pg", "--to", &pg.url("damaged"), "--create"],
        &pw,
    );
    assert_eq!(code(&out), EXIT_INTEGRITY, "{}", stderr(&out));
    assert_eq!(
        pg.psql(
            "damaged",
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname IN ('app', 'billing')"
        ),
        "0",
        "a damaged backup left objects in the database"
    );
}

#[test]
fn postgres_backup_under_pgbench_load_restores_consistently() {
    let pg = Postgres::start();
    pg.createdb("bench");
    let init = pg
        .command("pgbench")
        .args(["-i", "-q", "-s", "4", "bench"])
        .output()
        .unwrap();
    assert!(init.status.success(), "pgbench -i: {}", stderr(&init));
    // Writers run before, during and after the backup.
    let mut load = pg
        .command("pgbench")
        .args(["-c", "4", "-j", "2", "-T", "600", "-n", "bench"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_until("pgbench has committed transactions", || {
        pg.psql("bench", "SELECT count(*) FROM pgbench_history") != "0"
    });
    let world = World::new();
    world.config(&pg_job(&pg, "bench", "bench"));
    let backup = run_vault(
        &world,
        &["backup", "bench"],
        &[("APP_PG_PASSWORD", PG_PASSWORD)],
    );
    std::thread::sleep(Duration::from_millis(300));
    let _ = load.kill();
    let _ = load.wait();
    ok(backup, "backup under load");

    ok(
        run_vault(
            &world,
            &["restore", "bench", "--to", &pg.url("copy"), "--create"],
            &[("PGPASSWORD", PG_PASSWORD)],
        ),
        "restore",
    );
    // pgbench's invariants: every balance change is one history row.
    let sums = pg.psql(
        "copy",
        "SELECT (SELECT coalesce(sum(delta), 0) FROM pgbench_history) || ' ' || \
                (SELECT sum(abalance) FROM pgbench_accounts) || ' ' || \
                (SELECT sum(tbalance) FROM pgbench_tellers) || ' ' || \
                (SELECT sum(bbalance) FROM pgbench_branches) || ' ' || \
                (SELECT count(*) FROM pgbench_history)",
    );
    let v: Vec<i64> = sums.split(' ').map(|n| n.parse().unwrap()).collect();
    assert_eq!(v[0], v[1], "accounts vs history: {sums}");
    assert_eq!(v[0], v[2], "tellers vs history: {sums}");
    assert_eq!(v[0], v[3], "branches vs history: {sums}");
    assert!(v[4] > 0, "the snapshot holds transactions: {sums}");
    let live: i64 = pg
        .psql("bench", "SELECT count(*) FROM pgbench_history")
        .parse()
        .unwrap();
    assert!(
        live > v[4],
        "writes went on during the backup ({live} history rows live, {} in the snapshot)",
        v[4]
    );
}

#[test]
fn postgres_multi_database_jobs_and_globals() {
    let pg = Postgres::start();
    pg.createdb("one");
    pg.createdb("two");
    pg.psql(
        "one",
        "CREATE TABLE a (x int); INSERT INTO a VALUES (1), (2);",
    );
    pg.psql(
        "two",
        "CREATE TABLE b (y text); INSERT INTO b VALUES ('two');",
    );
    pg.psql("postgres", "CREATE ROLE reporting NOLOGIN;");
    let world = World::new();
    world.config(&format!(
        "[[job]]\nname = \"cluster\"\nsource = {{ kind = \"postgres\", host = \"127.0.0.1\", port = {}, user = \"postgres\", databases = [\"one\", \"two\"], globals = true, password_env = \"APP_PG_PASSWORD\" }}\n",
        pg.port
    ));
    let out = ok(
        run_vault(
            &world,
            &["backup", "cluster"],
            &[("APP_PG_PASSWORD", PG_PASSWORD)],
        ),
        "backup",
    );
    for job in ["cluster.one", "cluster.two", "cluster.globals"] {
        assert!(out.contains(&format!("backed up {job} ")), "{out}");
        assert_eq!(world.manifests(job).len(), 1, "{job}");
    }
    let list = world.ok(&["list", "cluster"]);
    assert_eq!(list.matches("postgres").count(), 3, "{list}");
    let pw = [("PGPASSWORD", PG_PASSWORD)];
    ok(
        run_vault(
            &world,
            &[
                "restore",
                "cluster.two",
                "--to",
                &pg.url("two_copy"),
                "--create",
            ],
            &pw,
        ),
        "restore",
    );
    assert_eq!(pg.psql("two_copy", "SELECT y FROM b"), "two");
    let globals = world.path("globals.sql");
    world.ok(&[
        "restore",
        "cluster.globals",
        "--output",
        globals.to_str().unwrap(),
    ]);
    let sql = fs::read_to_string(&globals).unwrap();
    assert!(sql.contains("CREATE ROLE reporting"), "{sql}");
    let out = run_vault(
        &world,
        &["restore", "cluster.globals", "--to", &pg.url("postgres")],
        &pw,
    );
    assert_eq!(code(&out), EXIT_USAGE);
    assert!(stderr(&out).contains("--output FILE"), "{}", stderr(&out));
}

#[test]
fn postgres_failures_name_the_job_and_leave_no_manifest() {
    let pg = Postgres::start();
    pg.createdb("big");
    // Large enough that pg_dump is still running when the server goes away.
    pg.psql(
        "big",
        "CREATE TABLE t1 AS SELECT g AS id, md5(g::text) AS a FROM generate_series(1, 300000) g;
         CREATE TABLE t2 AS SELECT * FROM t1; CREATE TABLE t3 AS SELECT * FROM t1;",
    );
    let world = World::new();
    world.config(&pg_job(&pg, "pg", "big"));

    let out = run_vault(&world, &["backup", "pg"], &[("APP_PG_PASSWORD", "wrong")]);
    assert_failed_cleanly(&world, "pg", &out, "password authentication failed");
    assert!(!stderr(&out).contains("wrong"), "the password was printed");

    let out = run_vault(&world, &["backup", "pg"], &[]);
    assert_eq!(code(&out), EXIT_USAGE);
    assert!(stderr(&out).contains("APP_PG_PASSWORD"), "{}", stderr(&out));

    let nobody = World::new();
    let port = dbharness::free_port();
    nobody.config(&pg_job(&pg, "pg", "big").replace(&pg.port.to_string(), &port.to_string()));
    let out = run_vault(
        &nobody,
        &["backup", "pg"],
        &[("APP_PG_PASSWORD", PG_PASSWORD)],
    );
    assert_failed_cleanly(&nobody, "pg", &out, "Connection refused");

    // Client tools older than the server are refused before anything is stored.
    let old = world.path("old-bin");
    fs::create_dir(&old).unwrap();
    fs::write(
        old.join("pg_dump"),
        "#!/bin/sh\necho 'pg_dump (PostgreSQL) 14.11'\n",
    )
    .unwrap();
    common::sh(&format!(
        "chmod +x {0}/pg_dump && ln -s {1}/psql {0}/psql",
        old.display(),
        dbharness::pg_bin().display()
    ));
    let older = World::new();
    older.config(&pg_job(&pg, "pg", "big").replace(
        "password_env",
        &format!("bin_dir = \"{}\", password_env", old.display()),
    ));
    let out = run_vault(
        &older,
        &["backup", "pg"],
        &[("APP_PG_PASSWORD", PG_PASSWORD)],
    );
    assert_eq!(code(&out), EXIT_USAGE, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("pg_dump 14 is older than the server (PostgreSQL 15)"),
        "{}",
        stderr(&out)
    );
    assert!(older.manifests("pg").is_empty());

    let out = backup_with_server_dying(
        &world,
        "pg",
        &[("APP_PG_PASSWORD", PG_PASSWORD)],
        "pg_dump",
        1 << 20,
        || pg.stop_now(),
    );
    assert_failed_cleanly(&world, "pg", &out, "pg_dump");
}

// ---------------------------------------------------------------------------------
// MariaDB

const MARIADB_FIXTURE: &str = r#"
CREATE DATABASE shop;
USE shop;
CREATE TABLE customers (
    id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(100) NOT NULL, email VARCHAR(200) UNIQUE,
    balance DECIMAL(12,2) NOT NULL DEFAULT 0, photo BLOB, created DATETIME NOT NULL,
    INDEX by_name (name)) ENGINE=InnoDB;
CREATE TABLE orders (
    id INT PRIMARY KEY AUTO_INCREMENT, customer_id INT NOT NULL, total DECIMAL(12,2) NOT NULL,
    note TEXT, FOREIGN KEY (customer_id) REFERENCES customers (id)) ENGINE=InnoDB;
CREATE TABLE audit (id INT PRIMARY KEY AUTO_INCREMENT, order_id INT, at_total DECIMAL(12,2)) ENGINE=InnoDB;
CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW
    INSERT INTO audit (order_id, at_total) VALUES (NEW.id, NEW.total);
CREATE FUNCTION spent(c INT) RETURNS DECIMAL(12,2) READS SQL DATA
    RETURN (SELECT COALESCE(SUM(total), 0) FROM orders WHERE customer_id = c);
CREATE PROCEDURE bump(IN c INT) MODIFIES SQL DATA
    UPDATE customers SET balance = balance + 1 WHERE id = c;
INSERT INTO customers (name, email, balance, photo, created)
    SELECT CONCAT('name ', seq), CONCAT('c', seq, '@example.com'), seq / 100,
           UNHEX(MD5(seq)), '2020-01-01' + INTERVAL seq MINUTE
    FROM seq_1_to_100000;
INSERT INTO orders (customer_id, total, note)
    SELECT (seq % 100000) + 1, seq / 10, IF(seq % 7 = 0, NULL, CONCAT('note \'', seq, '\' \\ '))
    FROM seq_1_to_30000;
"#;

/// Table definitions, triggers, routines, row counts and checksums of `db`.
fn mariadb_state(my: &Mariadb, db: &str) -> Vec<String> {
    let mut out = Vec::new();
    for t in ["customers", "orders", "audit"] {
        let create = my.sql(Some(db), &format!("SHOW CREATE TABLE {t}"));
        out.push(create.replace(&format!("`{db}`."), ""));
        out.push(my.sql(Some(db), &format!("SELECT COUNT(*) FROM {t}")));
        out.push(
            my.sql(Some(db), &format!("CHECKSUM TABLE {t} EXTENDED"))
                .split('\t')
                .nth(1)
                .unwrap()
                .to_string(),
        );
    }
    out.push(my.sql(
        None,
        &format!(
            "SELECT trigger_name, event_manipulation, action_timing, action_statement \
             FROM information_schema.triggers WHERE trigger_schema = '{db}' ORDER BY 1"
        ),
    ));
    out.push(my.sql(
        None,
        &format!(
            "SELECT routine_name, routine_type, routine_definition \
             FROM information_schema.routines WHERE routine_schema = '{db}' ORDER BY 1"
        ),
    ));
    out
}

fn mariadb_job(my: &Mariadb, extra: &str) -> String {
    format!(
        "[[job]]\nname = \"shop\"\nsource = {{ kind = \"mariadb\", host = \"127.0.0.1\", port = {}, user = \"root\", password_env = \"SHOP_DB_PASSWORD\", {extra} }}\n",
        my.port
    )
}

#[test]
fn mariadb_round_trip_keeps_tables_triggers_and_routines() {
    let my = Mariadb::start();
    my.sql(None, MARIADB_FIXTURE);
    let world = World::new();
    world.config(&mariadb_job(&my, "database = \"shop\""));
    let scratch = private_tmpdir(&world);
    let tmp = scratch.to_str().unwrap();
    ok(
        run_vault(
            &world,
            &["backup", "shop"],
            &[("SHOP_DB_PASSWORD", MARIADB_PASSWORD), ("TMPDIR", tmp)],
        ),
        "backup",
    );
    assert_eq!(
        fs::read_dir(&scratch).unwrap().count(),
        0,
        "the defaults file was not removed"
    );
    let m = &world.manifests("shop")[0];
    assert_eq!(m["source"]["kind"], "mysql");
    assert_eq!(m["source"]["databases"], serde_json::json!(["shop"]));

    let pw = [("MYSQL_PWD", MARIADB_PASSWORD)];
    let to = format!("mysql://root@127.0.0.1:{}/shop_copy", my.port);
    ok(
        run_vault(&world, &["restore", "shop", "--to", &to, "--create"], &pw),
        "restore",
    );
    let original = mariadb_state(&my, "shop");
    assert_eq!(original[1], "100000");
    assert_eq!(mariadb_state(&my, "shop_copy"), original);
    // The restored trigger and routines work.
    my.sql(
        Some("shop_copy"),
        "INSERT INTO orders (customer_id, total) VALUES (1, 5); CALL bump(1);",
    );
    assert_eq!(
        my.sql(Some("shop_copy"), "SELECT COUNT(*) FROM audit"),
        "30001"
    );
    assert_eq!(
        my.sql(
            Some("shop_copy"),
            "SELECT spent(1) = (SELECT SUM(total) FROM orders WHERE customer_id = 1)"
        ),
        "1"
    );

    // Non-empty: refused without --force, nothing changed.
    let before = mariadb_state(&my, "shop_copy");
    let out = run_vault(&world, &["restore", "shop", "--to", &to], &pw);
    assert_eq!(code(&out), EXIT_USAGE, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("database shop_copy"),
        "{}",
        stderr(&out)
    );
    assert_eq!(mariadb_state(&my, "shop_copy"), before);
}

#[test]
fn mariadb_failures_name_the_job_and_leave_no_manifest() {
    let my = Mariadb::start();
    my.sql(
        None,
        "CREATE DATABASE big; USE big;
         CREATE TABLE t (id INT PRIMARY KEY, a CHAR(64), b CHAR(64)) ENGINE=InnoDB;
         INSERT INTO t SELECT seq, MD5(seq), SHA2(seq, 256) FROM seq_1_to_400000;",
    );
    let world = World::new();
    world.config(&mariadb_job(&my, "database = \"big\"").replace("shop", "big"));
    wrong_password_then_dying_server(
        &world,
        ("big", "SHOP_DB_PASSWORD", MARIADB_PASSWORD),
        ("Access denied", "mariadb-dump"),
        || my.stop_now(),
    );
}

/// A wrong password fails naming `denied`; a server stopped while `tool` dumps fails
/// naming the tool; neither leaves a manifest. `job` is `(name, password variable,
/// right password)`.
fn wrong_password_then_dying_server(
    world: &World,
    (job, var, password): (&str, &str, &str),
    (denied, tool): (&str, &str),
    stop: impl FnOnce(),
) {
    let out = run_vault(world, &["backup", job], &[(var, "wrong")]);
    assert_failed_cleanly(world, job, &out, denied);
    let out = backup_with_server_dying(world, job, &[(var, password)], tool, 1 << 20, stop);
    assert_failed_cleanly(world, job, &out, tool);
}

// ---------------------------------------------------------------------------------
// Redis

/// `n` keys `PREFIX:i` with distinct 80-byte values (LZF cannot shrink them).
fn populate(r: &Redis, prefix: &str, n: u32) {
    r.cli(&[
        "EVAL",
        "for i = 1, tonumber(ARGV[2]) do redis.call('SET', ARGV[1] .. ':' .. i, \
         redis.sha1hex(tostring(i)) .. redis.sha1hex(tostring(-i))) end return 1",
        "0",
        prefix,
        &n.to_string(),
    ]);
}

fn redis_job(r: &Redis) -> String {
    format!(
        "[[job]]\nname = \"cache\"\nsource = {{ kind = \"redis\", port = {}, password_env = \"CACHE_PASSWORD\" }}\n",
        r.port
    )
}

#[test]
fn redis_rdb_round_trip_keeps_every_type_and_ttls() {
    let r = Redis::start();
    r.cli(&["SET", "greeting", "hello \u{1F600}"]);
    r.cli(&["SET", "session", "abc", "EX", "3600"]);
    r.cli(&["HSET", "user:1", "name", "Ada", "lang", "en"]);
    r.cli(&["RPUSH", "queue", "a", "b", "c", "a"]);
    r.cli(&["SADD", "tags", "x", "y", "z"]);
    r.cli(&["ZADD", "scores", "1.5", "ann", "2", "bob", "-3", "cy"]);
    r.cli(&["EXPIRE", "scores", "7200"]);
    populate(&r, "bulk", 20000);
    let world = World::new();
    world.config(&redis_job(&r));
    ok(
        run_vault(
            &world,
            &["backup", "cache"],
            &[("CACHE_PASSWORD", REDIS_PASSWORD)],
        ),
        "backup",
    );
    assert_eq!(world.manifests("cache")[0]["source"]["extension"], "rdb");

    let dir = world.path("restored");
    fs::create_dir(&dir).unwrap();
    let out = run_vault(
        &world,
        &["restore", "cache", "--to", dir.to_str().unwrap()],
        &[],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("docs/engines.md"), "no loading hint: {err}");
    let rdb = dir.join("dump.rdb");
    assert!(fs::read(&rdb).unwrap().starts_with(b"REDIS"));

    let fresh = Redis::start_on_rdb(&rdb);
    assert_eq!(fresh.cli(&["DBSIZE"]), r.cli(&["DBSIZE"]));
    assert_eq!(fresh.cli(&["GET", "greeting"]), "hello \u{1F600}");
    assert_eq!(fresh.cli(&["HGET", "user:1", "name"]), "Ada");
    assert_eq!(fresh.cli(&["LRANGE", "queue", "0", "-1"]), "a\nb\nc\na");
    assert_eq!(fresh.cli(&["SMEMBERS", "tags"]).lines().count(), 3);
    assert_eq!(
        fresh.cli(&["ZRANGE", "scores", "0", "-1", "WITHSCORES"]),
        "cy\n-3\nann\n1.5\nbob\n2"
    );
    assert_eq!(
        fresh.cli(&["GET", "bulk:19999"]),
        r.cli(&["GET", "bulk:19999"])
    );
    for (key, max) in [("session", 3600), ("scores", 7200)] {
        let ttl: i64 = fresh.cli(&["TTL", key]).parse().unwrap();
        assert!(ttl > 0 && ttl <= max, "{key} lost its TTL: {ttl}");
    }
    assert_eq!(fresh.cli(&["TTL", "greeting"]), "-1");
}

#[test]
fn redis_failures_name_the_job_and_leave_no_manifest() {
    let r = Redis::start();
    populate(&r, "k", 400_000);
    let world = World::new();
    world.config(&redis_job(&r));
    wrong_password_then_dying_server(
        &world,
        ("cache", "CACHE_PASSWORD", REDIS_PASSWORD),
        ("WRONGPASS", "redis-cli"),
        || r.stop_now(),
    );
}

// ---------------------------------------------------------------------------------
// Passwords and command sources

/// Runs a backup while scanning every command line for `secret`, and checks that the
/// scan saw `tool` running; returns vault's output.
fn scan_backup(world: &World, job: &str, env: &[(&str, &str)], tool: &str, secret: &str) -> Output {
    let mut vault = spawn_backup(world, job, env);
    let pid = wait_for_child(vault.id(), tool, &mut vault);
    // Freeze the tool while every process is looked at, so the scan sees it for sure.
    signal(pid, "STOP");
    let lines = command_lines();
    signal(pid, "CONT");
    assert!(
        lines.iter().any(|l| l.contains(tool)),
        "the scan did not see {tool}"
    );
    for l in &lines {
        assert!(!l.contains(secret), "a password is on a command line: {l}");
    }
    // Keep scanning until the backup ends.
    while vault.try_wait().unwrap().is_none() {
        for l in command_lines() {
            assert!(!l.contains(secret), "a password is on a command line: {l}");
        }
    }
    vault.wait_with_output().unwrap()
}

#[test]
fn passwords_never_appear_on_command_lines() {
    let pg = Postgres::start();
    pg.createdb("app");
    pg.psql(
        "app",
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 200000) g;",
    );
    let my = Mariadb::start();
    my.sql(
        None,
        "CREATE DATABASE app; USE app; CREATE TABLE t AS SELECT seq FROM seq_1_to_200000;",
    );
    let r = Redis::start();
    populate(&r, "k", 100_000);
    let world = World::new();
    world.config(&format!(
        "{}{}{}",
        pg_job(&pg, "pg", "app"),
        mariadb_job(&my, "database = \"app\""),
        redis_job(&r)
    ));
    let env = [
        ("APP_PG_PASSWORD", PG_PASSWORD),
        ("SHOP_DB_PASSWORD", MARIADB_PASSWORD),
        ("CACHE_PASSWORD", REDIS_PASSWORD),
    ];
    for (job, tool, secret) in [
        ("pg", "pg_dump", PG_PASSWORD),
        ("shop", "mariadb-dump", MARIADB_PASSWORD),
        ("cache", "redis-cli", REDIS_PASSWORD),
    ] {
        let out = scan_backup(&world, job, &env, tool, secret);
        assert!(out.status.success(), "{job}: {}", stderr(&out));
        assert!(!stderr(&out).contains(secret));
        assert!(!String::from_utf8_lossy(&out.stdout).contains(secret));
    }
}

#[test]
fn a_command_job_restores_through_its_restore_command() {
    common::require_tool("sqlite3");
    let world = World::new();
    let db = world.path("app.db");
    common::sh(&format!(
        "sqlite3 {} \"CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); \
         WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 5000) \
         INSERT INTO t SELECT n, 'v' || n FROM c;\"",
        db.display()
    ));
    world.config(&format!(
        "[[job]]\nname = \"sql\"\nsource = {{ kind = \"command\", command = [\"sqlite3\", \"{}\", \".dump\"], extension = \"sql\", restore_command = [\"sqlite3\", \"{{to}}\"] }}\n",
        db.display()
    ));
    world.ok(&["backup", "sql"]);
    let copy = world.path("copy.db");
    let out = world.ok(&["restore", "sql", "--to", copy.to_str().unwrap()]);
    assert!(out.contains("sqlite3"), "{out}");
    let count = |p: &std::path::Path| {
        String::from_utf8(common::sh(&format!(
            "sqlite3 {} 'SELECT count(*), sum(id), max(v) FROM t'",
            p.display()
        )))
        .unwrap()
    };
    assert_eq!(count(&copy), count(&db));

    // Without a restore_command, --to says what to do instead.
    world.config(&format!(
        "[[job]]\nname = \"sql\"\nsource = {{ kind = \"command\", command = [\"sqlite3\", \"{}\", \".dump\"] }}\n",
        db.display()
    ));
    let out = world.vault(&["restore", "sql", "--to", "x"]);
    assert_eq!(code(&out), EXIT_USAGE);
    assert!(stderr(&out).contains("restore_command"), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------------
// restore --create: the database's own properties

/// Removes `source.database_properties` from the job's only manifest, as a vault
/// from before that field would have written it (the vault is unsigned).
fn forget_database_properties(world: &World, job: &str) {
    let dir = world.vault_dir().join(job).join("manifests");
    let path = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    let mut m: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert!(
        m["source"]
            .as_object_mut()
            .unwrap()
            .remove("database_properties")
            .is_some(),
        "the manifest records no database properties: {m}"
    );
    let mut bytes = serde_json::to_vec_pretty(&m).unwrap();
    bytes.push(b'\n');
    let set_mode = |mode| {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    };
    set_mode(0o644);
    fs::write(&path, bytes).unwrap();
    set_mode(0o444);
}

#[test]
fn postgres_create_keeps_the_source_encoding_and_locale() {
    let pg = Postgres::start();
    // The harness's server is UTF8: a LATIN1 database differs from its defaults.
    pg.psql(
        "postgres",
        "CREATE DATABASE latin TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'",
    );
    pg.psql(
        "latin",
        "SET client_encoding = 'UTF8';
         CREATE TABLE t (id int PRIMARY KEY, s text NOT NULL);
         INSERT INTO t VALUES (1, 'café crème'), (2, 'Ærø ½ © ÿ ß'), (3, 'plain');",
    );
    let world = World::new();
    world.config(&pg_job(&pg, "latin", "latin"));
    let m = backed_up(&world, "latin", &[("APP_PG_PASSWORD", PG_PASSWORD)]);
    let props = &m["source"]["database_properties"];
    assert_eq!(props["encoding"], "LATIN1", "{props}");
    assert_eq!(props["lc_collate"], "C", "{props}");
    assert_eq!(props["lc_ctype"], "C", "{props}");
    assert_eq!(props["locale_provider"], "libc", "{props}");

    let database = |db: &str| {
        pg.psql(
            "postgres",
            &format!(
                "SELECT pg_encoding_to_char(encoding), datcollate, datctype \
                 FROM pg_database WHERE datname = '{db}'"
            ),
        )
    };
    // The text as stored: characters, and bytes in the database's encoding.
    let text = |db: &str| {
        pg.psql(
            db,
            "SET client_encoding = 'UTF8';
             SELECT id, s, length(s), octet_length(s) FROM t ORDER BY id",
        )
    };
    let pw = [("PGPASSWORD", PG_PASSWORD)];
    ok(
        run_vault(
            &world,
            &[
                "restore",
                "latin",
                "--to",
                &pg.url("latin_copy"),
                "--create",
            ],
            &pw,
        ),
        "restore --create",
    );
    assert_eq!(database("latin_copy"), "LATIN1|C|C");
    assert_eq!(text("latin_copy"), text("latin"));
    assert!(text("latin").contains("|café crème|10|10"));

    // A backup from before vault recorded the properties still restores, into the
    // server's defaults, with a warning saying so.
    forget_database_properties(&world, "latin");
    let out = run_vault(
        &world,
        &["restore", "latin", "--to", &pg.url("latin_old"), "--create"],
        &pw,
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: this backup records no encoding and locale")
            && err.contains("database latin_old")
            && err.contains("server's defaults"),
        "{err}"
    );
    assert_eq!(database("latin_old"), "UTF8|C|C");

    // An ICU database keeps its provider and ICU locale.
    pg.psql(
        "postgres",
        "CREATE DATABASE icu TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C' \
         LOCALE_PROVIDER icu ICU_LOCALE 'de-DE'",
    );
    world.config(&pg_job(&pg, "icu", "icu"));
    backed_up(&world, "icu", &[("APP_PG_PASSWORD", PG_PASSWORD)]);
    ok(
        run_vault(
            &world,
            &["restore", "icu", "--to", &pg.url("icu_copy"), "--create"],
            &pw,
        ),
        "restore --create",
    );
    let provider = |db: &str| {
        pg.psql(
            "postgres",
            &format!("SELECT datlocprovider, daticulocale FROM pg_database WHERE datname = '{db}'"),
        )
    };
    assert_eq!(provider("icu_copy"), "i|de-DE");
}

#[test]
fn mariadb_create_keeps_the_database_character_set_and_collation() {
    let my = Mariadb::start();
    // The test means something only if the server's default differs.
    assert_eq!(
        my.sql(None, "SELECT @@character_set_server, @@collation_server"),
        "latin1\tlatin1_swedish_ci"
    );
    my.sql(
        None,
        "SET NAMES utf8mb4;
         CREATE DATABASE emoji CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
         USE emoji;
         CREATE TABLE t (s VARCHAR(20)) ENGINE=InnoDB;
         INSERT INTO t VALUES ('😀 smile');
         CREATE FUNCTION f(s VARCHAR(20)) RETURNS VARCHAR(40) DETERMINISTIC RETURN CONCAT(s, s);",
    );
    let world = World::new();
    world.config(&mariadb_job(&my, "database = \"emoji\""));
    let m = backed_up(&world, "shop", &[("SHOP_DB_PASSWORD", MARIADB_PASSWORD)]);
    let props = &m["source"]["database_properties"];
    assert_eq!(
        props,
        &serde_json::json!({"character_set": "utf8mb4", "collation": "utf8mb4_unicode_ci"})
    );

    let defaults = |db: &str| {
        my.sql(
            None,
            &format!(
                "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME \
                 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{db}'"
            ),
        )
    };
    let pw = [("MYSQL_PWD", MARIADB_PASSWORD)];
    let to = |db: &str| format!("mysql://root@127.0.0.1:{}/{db}", my.port);
    ok(
        run_vault(
            &world,
            &["restore", "shop", "--to", &to("emoji_copy"), "--create"],
            &pw,
        ),
        "restore --create",
    );
    assert_eq!(defaults("emoji_copy"), "utf8mb4\tutf8mb4_unicode_ci");
    // The function's parameter took the database's character set when it was created.
    assert_eq!(
        my.try_sql(Some("emoji_copy"), "SET NAMES utf8mb4; SELECT f('😀')"),
        Ok("😀😀".to_string())
    );
    assert_eq!(
        my.sql(Some("emoji_copy"), "SET NAMES utf8mb4; SELECT s FROM t"),
        "😀 smile"
    );

    // A backup from before vault recorded them: the server's defaults, with a warning.
    forget_database_properties(&world, "shop");
    let out = run_vault(
        &world,
        &["restore", "shop", "--to", &to("emoji_old"), "--create"],
        &pw,
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: this backup records no character set and collation")
            && err.contains("database emoji_old"),
        "{err}"
    );
    assert_eq!(defaults("emoji_old"), "latin1\tlatin1_swedish_ci");
}

// ---------------------------------------------------------------------------------
// Large rows

/// Runs `vault backup JOB`, insisting on success; returns the job's newest manifest.
fn backed_up(world: &World, job: &str, env: &[(&str, &str)]) -> serde_json::Value {
    ok(
        run_vault(world, &["backup", job], env),
        &format!("backup {job}"),
    );
    world.manifests(job).pop().expect("a manifest")
}

#[test]
fn mariadb_row_larger_than_the_client_packet_limit_round_trips() {
    let my = Mariadb::start();
    // The clients' default max_allowed_packet is 16 MiB; the row is 40 MiB, loaded back
    // as an 80 MiB hex INSERT, so the server must take packets that large.
    my.sql(None, "SET GLOBAL max_allowed_packet = 256 * 1024 * 1024");
    my.sql(
        None,
        "CREATE DATABASE big; USE big;
         CREATE TABLE b (id INT PRIMARY KEY, data LONGBLOB NOT NULL) ENGINE=InnoDB;
         INSERT INTO b VALUES (1, CONCAT(REPEAT(RANDOM_BYTES(1024), 40960), RANDOM_BYTES(999))),
                              (2, 'small');",
    );
    let rows = |db: &str| {
        my.sql(
            Some(db),
            "SELECT id, LENGTH(data), SHA2(data, 256) FROM b ORDER BY id",
        )
    };
    let original = rows("big");
    assert!(
        original.starts_with(&format!("1\t{}\t", 40 * 1024 * 1024 + 999)),
        "{original}"
    );

    let world = World::new();
    world.config(&mariadb_job(&my, "database = \"big\""));
    backed_up(&world, "shop", &[("SHOP_DB_PASSWORD", MARIADB_PASSWORD)]);
    let to = format!("mysql://root@127.0.0.1:{}/big_copy", my.port);
    ok(
        run_vault(
            &world,
            &["restore", "shop", "--to", &to, "--create"],
            &[("MYSQL_PWD", MARIADB_PASSWORD)],
        ),
        "restore of a 40 MiB row",
    );
    assert_eq!(rows("big_copy"), original);
}
