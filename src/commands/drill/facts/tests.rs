//! Facts from real servers, SQLite files and directories, with names that need quoting.

use std::os::unix::fs::symlink;

use super::*;
use crate::commands::drill::local::{LocalKind, LocalServer};
use crate::source::postgres;

fn run(endpoint: &Endpoint, input: &str) -> String {
    child::run(&endpoint.client().unwrap(), input).unwrap_or_else(|e| panic!("{e:#}\n{input}"))
}

fn map<V: Copy>(pairs: &[(&str, V)]) -> BTreeMap<String, V> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn error_of(result: anyhow::Result<f64>) -> String {
    format!("{:#}", result.expect_err("an error"))
}

#[test]
fn postgres_facts_are_exact_and_survive_a_restore() {
    let server = LocalServer::start(LocalKind::Postgres, None, None).unwrap();
    run(&server.endpoint(None), "CREATE DATABASE app");
    let app = server.endpoint(Some("app"));
    run(
        &app,
        r#"
        CREATE TABLE orders (id serial PRIMARY KEY, what text);
        INSERT INTO orders (what) SELECT 'item ' || n FROM generate_series(1, 3) n;
        CREATE SCHEMA "my schema";
        CREATE TABLE "my schema"."Odd ""name""" (x int);
        INSERT INTO "my schema"."Odd ""name""" VALUES (1), (2);
        CREATE TABLE empty (x int);
        CREATE VIEW order_view AS SELECT * FROM orders;
        CREATE SEQUENCE "my schema".unused;
        CREATE TABLE measures (at date, v int) PARTITION BY RANGE (at);
        CREATE TABLE measures_2024 PARTITION OF measures
            FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
        INSERT INTO measures VALUES ('2024-05-01', 1), ('2024-06-01', 2);
        "#,
    );
    let facts = gather(&app).unwrap();
    let expected = Facts {
        counts: map(&[
            ("public.orders", 3),
            ("my schema.Odd \"name\"", 2),
            ("public.empty", 0),
            ("public.measures", 2),
            ("public.measures_2024", 2),
        ]),
        sequences: map(&[("public.orders_id_seq", 3), ("my schema.unused", 0)]),
        ..Facts::default()
    };
    assert_eq!(facts, expected);

    assert_eq!(
        sql_number(&app, "select count(*) from orders").unwrap(),
        3.0
    );
    assert_eq!(
        sql_number(&app, "SET search_path = public;\nselect 2.5, 'x'").unwrap(),
        2.5
    );
    let err = error_of(sql_number(&app, "select 1 where false"));
    assert!(
        err.contains("`select 1 where false` returned no row"),
        "{err}"
    );
    let err = error_of(sql_number(&app, "select exists (select 1 from orders)"));
    assert!(
        err.contains("returned `t`, not a number") && err.contains("::int"),
        "{err}"
    );
    let err = error_of(sql_number(&app, "select * from missing"));
    assert!(
        err.contains("`select * from missing` failed") && err.contains("missing"),
        "{err}"
    );

    // pg_dump of app restored through the target (with its password) into a new
    // database gives the same facts.
    let bin = match &app {
        Endpoint::Postgres { bin_dir, .. } => bin_dir.clone().expect("client tools found"),
        _ => unreachable!(),
    };
    let dump = std::process::Command::new(bin.join("pg_dump"))
        .args(["--format=custom", "--no-password"])
        .envs(app.client_env())
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let copy = server.endpoint(Some("copy"));
    let target = copy.postgres_target().unwrap();
    postgres::restore::create(&target, None).unwrap();
    let mut tool = postgres::restore::spawn(&target, false, None, &[]).unwrap();
    std::io::Write::write_all(&mut tool, &dump.stdout).unwrap();
    tool.finish().unwrap();
    assert_eq!(gather(&copy).unwrap(), expected);
}

#[test]
fn mariadb_facts_are_exact_per_database_and_server_wide() {
    let server = LocalServer::start(LocalKind::Mariadb, None, None).unwrap();
    run(
        &server.endpoint(None),
        r#"
        CREATE DATABASE app;
        CREATE DATABASE `other db`;
        CREATE TABLE app.orders (id INT AUTO_INCREMENT PRIMARY KEY, what TEXT);
        INSERT INTO app.orders (what) VALUES ('a'), ('b'), ('c');
        CREATE TABLE app.`Odd "name"` (x INT);
        INSERT INTO app.`Odd "name"` VALUES (1), (2);
        CREATE TABLE app.`back``tick` (x INT);
        CREATE VIEW app.order_view AS SELECT * FROM app.orders;
        CREATE TABLE `other db`.t (x INT);
        INSERT INTO `other db`.t VALUES (7);
        "#,
    );
    let app = server.endpoint(Some("app"));
    assert_eq!(
        gather(&app).unwrap(),
        Facts {
            counts: map(&[
                ("app.orders", 3),
                ("app.Odd \"name\"", 2),
                ("app.back`tick", 0)
            ]),
            sequences: map(&[("app.orders", 4)]),
            ..Facts::default()
        }
    );
    let all = gather(&server.endpoint(None)).unwrap();
    assert_eq!(
        all.counts,
        map(&[
            ("app.orders", 3),
            ("app.Odd \"name\"", 2),
            ("app.back`tick", 0),
            ("other db.t", 1)
        ])
    );

    assert_eq!(
        sql_number(&app, "SELECT COUNT(*) FROM orders").unwrap(),
        3.0
    );
    let err = error_of(sql_number(&app, "SELECT NULL"));
    assert!(
        err.contains("`SELECT NULL` returned `NULL`, not a number"),
        "{err}"
    );
    let err = error_of(sql_number(&app, "SELECT 1 FROM orders WHERE id > 10"));
    assert!(err.contains("returned no row"), "{err}");
}

#[test]
fn redis_facts_count_keys_per_database_and_by_type() {
    let source = LocalServer::start(LocalKind::Redis, None, None).unwrap();
    let cli = |args: &[&str]| {
        let spawn = source.endpoint(None).client().unwrap();
        child::run(&spawn.args(args.iter().copied()), "").unwrap()
    };
    cli(&["MSET", "a", "1", "b", "2", "line\nbreak", "3"]);
    cli(&["RPUSH", "queue", "x", "y"]);
    cli(&["HSET", "user:1", "name", "ann"]);
    cli(&["-n", "3", "SADD", "tags", "p", "q"]);
    cli(&["-n", "3", "ZADD", "board", "1", "ann"]);
    cli(&["-n", "3", "XADD", "events", "*", "kind", "drill"]);
    cli(&["SAVE"]);

    // As a drill does it: a server started on the dump.
    let rdb = source.dir().join("data/dump.rdb");
    let copy = LocalServer::start(LocalKind::Redis, None, Some(&rdb)).unwrap();
    let facts = gather(&copy.endpoint(None)).unwrap();
    assert_eq!(
        facts,
        Facts {
            counts: map(&[("db0", 5), ("db3", 3)]),
            key_types: map(&[
                ("string", 3),
                ("list", 1),
                ("hash", 1),
                ("set", 1),
                ("zset", 1),
                ("stream", 1)
            ]),
            ..Facts::default()
        }
    );
    let err = error_of(sql_number(&copy.endpoint(None), "select 1"));
    assert!(err.contains("SQL checks need"), "{err}");
}

#[test]
fn sqlite_facts_check_integrity_and_count_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("app.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        r#"
        CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);
        INSERT INTO items (name) VALUES ('a'), ('b');
        CREATE TABLE "Odd ""name""" (x);
        INSERT INTO "Odd ""name""" VALUES (1);
        CREATE TABLE empty (x);
        CREATE VIEW v AS SELECT * FROM items;
        "#,
    )
    .unwrap();
    drop(conn);
    let endpoint = Endpoint::Sqlite { path: path.clone() };
    assert_eq!(
        gather(&endpoint).unwrap(),
        Facts {
            counts: map(&[("items", 2), ("Odd \"name\"", 1), ("empty", 0)]),
            integrity: Some("ok".into()),
            ..Facts::default()
        }
    );
    assert_eq!(
        sql_number(&endpoint, "SELECT count(*) FROM items").unwrap(),
        2.0
    );
    assert_eq!(sql_number(&endpoint, "SELECT 0.5").unwrap(), 0.5);
    let err = error_of(sql_number(&endpoint, "SELECT NULL"));
    assert!(err.contains("returned no row"), "{err}");
    let before = fs::read(&path).unwrap();
    assert!(
        sql_number(&endpoint, "DELETE FROM items").is_err(),
        "read-only"
    );
    assert_eq!(fs::read(&path).unwrap(), before);

    let garbage = tmp.path().join("garbage.db");
    fs::write(&garbage, vec![7u8; 4096]).unwrap();
    let err = gather(&Endpoint::Sqlite { path: garbage }).unwrap_err();
    assert!(format!("{err:#}").contains("garbage.db"), "{err:#}");
}

#[test]
fn directory_facts_count_without_following_links() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("restored");
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::write(root.join("a"), b"abc").unwrap();
    fs::write(root.join("b"), b"12345").unwrap();
    fs::write(root.join("sub/deeper/c"), b"1234567").unwrap();
    symlink("a", root.join("link-to-file")).unwrap();
    // Followed, this would count the tree again (and forever).
    symlink("..", root.join("sub/link-to-parent")).unwrap();
    symlink("/nonexistent", root.join("dangling")).unwrap();
    let facts = gather(&Endpoint::Dir { path: root.clone() }).unwrap();
    assert_eq!(
        facts.counts,
        map(&[("files", 3), ("bytes", 15), ("dirs", 2), ("symlinks", 3)])
    );
    let err = gather(&Endpoint::Dir {
        path: root.join("a"),
    })
    .unwrap_err();
    assert!(format!("{err:#}").contains("is not a directory"), "{err:#}");
}

#[test]
fn check_sql_is_shown_short() {
    assert_eq!(
        shown_sql("select\n  count(*)\tfrom t"),
        "select count(*) from t"
    );
    let long = format!("select {}", "x, ".repeat(40));
    let shown = shown_sql(&long);
    assert_eq!(shown.chars().count(), 61);
    assert!(shown.ends_with('…'));
    assert_eq!(unhex("4F6464").unwrap(), "Odd");
    assert!(unhex("4G").is_err() && unhex("4").is_err());
}
