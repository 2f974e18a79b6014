//! Self-test of tests/dbharness: each throwaway server starts on its own port, keeps
//! what is written to it, wants its password, and is gone after `stop_now`.

mod dbharness;

use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use dbharness::*;

/// The start time goes to stderr (`cargo test --test db_harness -- --nocapture`).
fn timed<T>(what: &str, start: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let server = start();
    eprintln!("{what} started in {:?}", t.elapsed());
    server
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn postgres() {
    let pg = timed("PostgreSQL", Postgres::start);
    assert!(port_open(pg.port));
    if running_as_root() {
        let owner = std::fs::metadata(&pg.data).unwrap().uid();
        assert_eq!(owner, UNPRIVILEGED_ID, "the server runs unprivileged");
    }
    let url = pg.url("harness");
    assert_eq!(
        url,
        format!("postgresql://postgres@127.0.0.1:{}/harness", pg.port)
    );
    assert!(!url.contains(PG_PASSWORD));

    pg.createdb("harness");
    pg.psql(
        "harness",
        "CREATE TABLE t (id int PRIMARY KEY, v text);\n\
         INSERT INTO t VALUES (1, 'one'), (2, 'two');",
    );
    assert_eq!(
        pg.psql("harness", "SELECT v FROM t ORDER BY id"),
        "one\ntwo"
    );
    assert_eq!(pg.psql("harness", "SELECT current_user"), "postgres");
    let err = pg.try_psql("harness", "SELECT * FROM missing").unwrap_err();
    assert!(err.contains("\"missing\" does not exist"), "{err}");

    // The client tools with env(): pg_dump sees the table.
    let out = std::process::Command::new(pg_bin().join("pg_dump"))
        .envs(pg.env())
        .args(["-d", "harness", "-t", "t"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("CREATE TABLE public.t"));

    // No password, or a wrong one: refused (TCP and the socket alike).
    let psql = |password: Option<&str>, host: &str| {
        let mut cmd = pg.command("psql");
        cmd.env_remove("PGPASSWORD")
            .env("PGPASSFILE", "/nonexistent")
            .env("PGHOST", host)
            .args(["-X", "-w", "-d", "harness", "-c", "SELECT 1"]);
        if let Some(p) = password {
            cmd.env("PGPASSWORD", p);
        }
        cmd.output().unwrap()
    };
    let socket_dir = pg.data.parent().unwrap().to_str().unwrap().to_owned();
    for host in ["127.0.0.1", socket_dir.as_str()] {
        let out = psql(None, host);
        assert!(!out.status.success());
        assert!(
            stderr_of(&out).contains("no password supplied"),
            "{}",
            stderr_of(&out)
        );
        let out = psql(Some("wrong"), host);
        assert!(!out.status.success());
        assert!(
            stderr_of(&out).contains("password authentication failed"),
            "{}",
            stderr_of(&out)
        );
        assert!(psql(Some(PG_PASSWORD), host).status.success());
    }

    pg.stop_now();
    assert!(!port_open(pg.port));
    pg.stop_now();
    assert!(pg.try_psql("harness", "SELECT 1").is_err());
}

#[test]
fn mariadb() {
    let db = timed("MariaDB", Mariadb::start);
    assert!(port_open(db.port));
    if running_as_root() {
        let owner = std::fs::metadata(&db.datadir).unwrap().uid();
        assert_eq!(owner, UNPRIVILEGED_ID, "the server runs unprivileged");
    }
    let mode = std::fs::metadata(db.defaults_file()).unwrap().mode();
    assert_eq!(mode & 0o777, 0o600);

    db.sql(
        None,
        "CREATE DATABASE harness;\n\
         CREATE TABLE harness.t (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB;\n\
         INSERT INTO harness.t VALUES (1, 'one'), (2, 'two');",
    );
    assert_eq!(
        db.sql(Some("harness"), "SELECT v FROM t ORDER BY id"),
        "one\ntwo"
    );
    assert_eq!(
        db.sql(None, "SELECT CURRENT_USER()"),
        "root@127.0.0.1",
        "over TCP"
    );
    let err = db
        .try_sql(Some("harness"), "SELECT * FROM missing")
        .unwrap_err();
    assert!(err.contains("doesn't exist"), "{err}");

    let out = db
        .command("mariadb-dump")
        .args(["harness", "t"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("CREATE TABLE `t`"));

    // No password, or a wrong one: refused, over TCP and on the socket.
    let client = |args: &[&str]| {
        std::process::Command::new("mariadb")
            .env_remove("MYSQL_PWD")
            .arg("--no-defaults")
            .args(["-u", "root", "-N", "-B", "-e", "SELECT 1"])
            .args(args)
            .output()
            .unwrap()
    };
    let port = db.port.to_string();
    let socket = format!("--socket={}", db.socket.display());
    let tcp = ["--protocol=TCP", "-h", "127.0.0.1", "-P", port.as_str()];
    for via in [&tcp[..], &["--protocol=SOCKET", socket.as_str()][..]] {
        for password in [None, Some("--password=wrong")] {
            let mut args = via.to_vec();
            args.extend(password);
            let out = client(&args);
            assert!(!out.status.success(), "{args:?}");
            assert!(
                stderr_of(&out).contains("Access denied"),
                "{}",
                stderr_of(&out)
            );
        }
    }

    db.stop_now();
    assert!(!port_open(db.port));
    db.stop_now();
    assert!(db.try_sql(None, "SELECT 1").is_err());
}

#[test]
fn redis() {
    let redis = timed("Redis", Redis::start);
    assert!(port_open(redis.port));
    assert_eq!(redis.cli(&["SET", "k1", "v1"]), "OK");
    assert_eq!(redis.cli(&["RPUSH", "list", "a", "b"]), "2");
    assert_eq!(redis.cli(&["GET", "k1"]), "v1");
    let err = redis.try_cli(&["INCR", "k1"]).unwrap_err();
    assert!(err.contains("not an integer"), "{err}");

    let out = redis
        .command_noauth()
        .arg("GET")
        .arg("k1")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("NOAUTH"), "{said}");
    let out = redis
        .command_noauth()
        .args([
            "--user",
            "default",
            "--pass",
            "wrong",
            "--no-auth-warning",
            "GET",
            "k1",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("WRONGPASS") || said.contains("NOAUTH"),
        "{said}"
    );

    assert_eq!(redis.cli(&["SAVE"]), "OK");
    let rdb = redis.dir.join("dump.rdb");
    let copy = timed("Redis (on an RDB)", || Redis::start_on_rdb(&rdb));
    assert_ne!(copy.port, redis.port);
    assert_ne!(copy.dir, redis.dir);
    assert_eq!(copy.cli(&["GET", "k1"]), "v1");
    assert_eq!(copy.cli(&["LRANGE", "list", "0", "-1"]), "a\nb");
    assert_eq!(copy.cli(&["DBSIZE"]), "2");

    redis.stop_now();
    assert!(!port_open(redis.port));
    redis.stop_now();
    assert!(redis.try_cli(&["PING"]).is_err());
    assert_eq!(copy.cli(&["PING"]), "PONG");

    // Dropped during a panic: stopped too.
    let port = std::sync::Mutex::new(0);
    let panicked = std::panic::catch_unwind(|| {
        let doomed = Redis::start();
        *port.lock().unwrap() = doomed.port;
        panic!("a failing test (on purpose)");
    });
    assert!(panicked.is_err());
    let port = *port.lock().unwrap();
    assert!(port != 0 && !port_open(port));
}
