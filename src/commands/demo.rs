//! `vault demo [DIR]`: the whole round trip in a scratch directory, with no server and
//! no cloud account: a sample SQLite database, a fresh age identity, a vault.toml and a
//! local vault; then backup -> list -> verify -> restore -> compare, through the same
//! code as the real commands.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail, ensure};
use rand::{Rng, SeedableRng};

use super::{Context, backup, list, restore, verify};
use crate::cli::{BackupArgs, DemoArgs, ListArgs, RestoreArgs, VerifyArgs};
use crate::config::Settings;
use crate::crypto;

const JOB: &str = "app-db";

pub async fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let dir = choose_dir(args.dir.as_deref())?;
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = std::path::absolute(&dir)?;
    let db = dir.join("app.db");
    let key = dir.join("restore-key.txt");
    let config = dir.join("vault.toml");
    let restored = dir.join("restored").join("app.db");
    let cfg = format!("vault --config {}", config.display());

    step(1, &format!("a sample SQLite database: {}", db.display()));
    let counts = make_sample_db(&db)?;
    for (table, n) in &counts {
        println!("    {table}: {n} rows");
    }

    step(
        2,
        "an age identity for restores (the private key) and its recipient",
    );
    let recipient = crypto::generate_identity_file(&key)?;
    println!("    identity (private, mode 0600): {}", key.display());
    println!("    recipient (public, goes in vault.toml): {recipient}");

    step(
        3,
        &format!(
            "a config with one job and a local vault: {}",
            config.display()
        ),
    );
    fs::write(&config, demo_config(&recipient))?;
    let settings = Settings::load(&config)?;
    let ctx = Context {
        settings,
        json: false,
        verbose: 0,
        log_format: crate::cli::LogFormat::Text,
    };

    step(4, &format!("back up: {cfg} backup"));
    backup::run(
        &ctx,
        &BackupArgs {
            jobs: vec![],
            wait: false,
        },
    )
    .await?;

    step(5, &format!("list: {cfg} list"));
    list::run(
        &ctx,
        &ListArgs {
            job: None,
            no_cache: false,
        },
    )
    .await?;

    step(
        6,
        &format!("verify without the key, then with it: {cfg} verify [--deep]"),
    );
    let verify_args = |deep| VerifyArgs {
        job: None,
        deep,
        identity: None,
        all: true,
        sample: None,
        since: None,
        prometheus: None,
        pushgateway: None,
        no_cache: false,
    };
    verify::run(&ctx, &verify_args(false)).await?;
    verify::run(&ctx, &verify_args(true)).await?;

    step(
        7,
        &format!(
            "restore: {cfg} restore {JOB} --latest --output {}",
            restored.display()
        ),
    );
    fs::create_dir_all(restored.parent().expect("has a parent"))?;
    restore::run(
        &ctx,
        &RestoreArgs {
            job: JOB.into(),
            stdout: None,
            id: None,
            latest: true,
            before: None,
            output: Some(restored.clone()),
            to: None,
            identity: None,
            force: false,
            keep_special_bits: false,
            create: false,
            clean: false,
            jobs: None,
            restore_arg: Vec::new(),
        },
    )
    .await?;

    step(8, "compare the restored database with the original");
    compare(&db, &restored, &counts)?;
    println!(
        "    PRAGMA integrity_check: ok; every table has the same rows; the files are byte-identical"
    );

    println!(
        "\nEverything is in {dir}:\n  \
           app.db            the sample database\n  \
           vault.toml        the config (every key: docs/config.md)\n  \
           restore-key.txt   the age identity; in production it never lives on the backup host\n  \
           vault/            the local vault: data objects and manifests (docs/format.md)\n  \
           restored/app.db   the restored copy\n\n\
         To back up your own database, edit vault.toml:\n  \
           [[job]]\n  \
           name = \"mydb\"\n  \
           source = {{ kind = \"sqlite\", path = \"/path/to/your.db\" }}\n\
         then run `{cfg} backup mydb`. A local directory is not immutable: for production,\n\
         point [vault] target at an S3 Object Lock bucket in a separate account.",
        dir = dir.display()
    );
    Ok(())
}

fn step(n: u32, what: &str) {
    println!("\n[{n}/8] {what}");
}

fn choose_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = given {
        if dir.exists() && fs::read_dir(dir)?.next().is_some() {
            bail!(crate::error::Error::config(format!(
                "{} exists and is not empty; give a new directory",
                dir.display()
            )));
        }
        return Ok(dir.to_path_buf());
    }
    (1..1000)
        .map(|n| {
            if n == 1 {
                PathBuf::from("vault-demo")
            } else {
                PathBuf::from(format!("vault-demo-{n}"))
            }
        })
        .find(|p| !p.exists())
        .context("no free vault-demo-N directory name")
}

fn demo_config(recipient: &str) -> String {
    format!(
        r#"# Written by `vault demo`. Every key is described in docs/config.md.
[vault]
# A local directory, relative to this file. Not immutable: for trying vault only.
target = "vault"

[encryption]
# Public keys only: the backup host can encrypt but never decrypt.
recipients = ["{recipient}"]

[identities.restorer]
# The private key, needed by restore and verify --deep only.
age_identity_file = "restore-key.txt"

[[job]]
name = "{JOB}"
schedule = "15 3 * * *"
source = {{ kind = "sqlite", path = "app.db" }}
"#
    )
}

const FIRST: [&str; 12] = [
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Frances", "Dennis",
    "Radia", "Leslie",
];
const LAST: [&str; 12] = [
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Thompson", "Allen",
    "Ritchie", "Perlman", "Lamport",
];
const PRODUCTS: [(&str, i64); 8] = [
    ("Keyboard", 4900),
    ("Monitor", 18900),
    ("Mouse", 1900),
    ("Laptop stand", 3500),
    ("USB-C hub", 2900),
    ("Headset", 7900),
    ("Webcam", 5900),
    ("Desk lamp", 2500),
];

/// Creates the sample database; returns each table's row count.
fn make_sample_db(path: &Path) -> anyhow::Result<Vec<(String, i64)>> {
    let mut conn = rusqlite::Connection::open(path)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let tx = conn.transaction()?;
    tx.execute_batch(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL);
         CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL);
         CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), product_id INTEGER NOT NULL REFERENCES products(id), quantity INTEGER NOT NULL, ordered_at TEXT NOT NULL);
         CREATE INDEX orders_by_customer ON orders(customer_id);",
    )?;
    for (i, (name, price)) in PRODUCTS.iter().enumerate() {
        tx.execute(
            "INSERT INTO products VALUES (?1, ?2, ?3)",
            rusqlite::params![i as i64 + 1, name, price],
        )?;
    }
    for id in 1..=2000i64 {
        let first = FIRST[rng.gen_range(0..FIRST.len())];
        let last = LAST[rng.gen_range(0..LAST.len())];
        tx.execute(
            "INSERT INTO customers VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                id,
                format!("{first} {last}"),
                format!(
                    "{}.{}{id}@example.com",
                    first.to_lowercase(),
                    last.to_lowercase()
                ),
                format!(
                    "2025-{:02}-{:02}",
                    rng.gen_range(1..=12),
                    rng.gen_range(1..=28)
                ),
            ],
        )?;
    }
    for id in 1..=10_000i64 {
        tx.execute(
            "INSERT INTO orders VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![
                id,
                rng.gen_range(1..=2000i64),
                rng.gen_range(1..=PRODUCTS.len() as i64),
                rng.gen_range(1..=5i64),
                format!(
                    "2026-{:02}-{:02}T{:02}:{:02}:00Z",
                    rng.gen_range(1..=10),
                    rng.gen_range(1..=28),
                    rng.gen_range(0..24),
                    rng.gen_range(0..60)
                ),
            ],
        )?;
    }
    tx.commit()?;
    table_counts(&conn)
}

fn table_counts(conn: &rusqlite::Connection) -> anyhow::Result<Vec<(String, i64)>> {
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    tables
        .into_iter()
        .map(|t| {
            let n: i64 =
                conn.query_row(&format!("SELECT count(*) FROM \"{t}\""), [], |r| r.get(0))?;
            Ok((t, n))
        })
        .collect()
}

fn compare(original: &Path, restored: &Path, counts: &[(String, i64)]) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open_with_flags(
        restored,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    ensure!(
        check == "ok",
        "integrity_check on the restored database says: {check}"
    );
    let restored_counts = table_counts(&conn)?;
    ensure!(
        restored_counts == counts,
        "row counts differ: {restored_counts:?} != {counts:?}"
    );
    ensure!(
        fs::read(original)? == fs::read(restored)?,
        "the restored file differs from the original"
    );
    Ok(())
}
