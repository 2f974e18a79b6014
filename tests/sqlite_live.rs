//! Acceptance: a SQLite database being written to during the backup restores to a
//! consistent database — integrity_check ok and the row counts of one committed state —
//! in both WAL and rollback-journal mode.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use rusqlite::Connection;

const ROWS_PER_BATCH: i64 = 50;

fn setup(path: &std::path::Path, journal: &str) {
    let conn = Connection::open(path).unwrap();
    conn.query_row(&format!("PRAGMA journal_mode = {journal}"), [], |_| Ok(()))
        .unwrap();
    conn.execute_batch(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, batch INTEGER NOT NULL, payload BLOB NOT NULL);
         CREATE INDEX events_by_batch ON events(batch);
         CREATE TABLE ledger (id INTEGER PRIMARY KEY CHECK (id = 1), batches INTEGER NOT NULL, rows INTEGER NOT NULL);
         INSERT INTO ledger VALUES (1, 0, 0);",
    )
    .unwrap();
    // Enough data that the backup takes a while.
    for _ in 0..300 {
        commit_batch(&conn, 4096);
    }
}

/// One transaction: a batch of rows plus the ledger that counts them.
fn commit_batch(conn: &Connection, payload: usize) {
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let batch: i64 = conn
        .query_row("SELECT batches FROM ledger", [], |r| r.get(0))
        .unwrap();
    let body = vec![(batch % 251) as u8; payload];
    for _ in 0..ROWS_PER_BATCH {
        conn.execute(
            "INSERT INTO events (batch, payload) VALUES (?1, randomblob(64) || ?2)",
            rusqlite::params![batch, body],
        )
        .unwrap();
    }
    conn.execute(
        "UPDATE ledger SET batches = batches + 1, rows = rows + ?1",
        [ROWS_PER_BATCH],
    )
    .unwrap();
    conn.execute_batch("COMMIT").unwrap();
}

fn live_backup_restores_consistently(journal: &str) {
    let w = World::new();
    let db = w.path("live.db");
    setup(&db, journal);
    w.config("[[job]]\nname = \"live\"\nsource = { kind = \"sqlite\", path = \"live.db\" }\n");

    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, committed, db) = (stop.clone(), committed.clone(), db.clone());
        std::thread::spawn(move || {
            let conn = Connection::open(&db).unwrap();
            conn.busy_timeout(Duration::from_secs(120)).unwrap();
            while !stop.load(Ordering::Relaxed) {
                commit_batch(&conn, 2048);
                committed.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Let the writer get going, then back up while it runs.
    while committed.load(Ordering::Relaxed) < 20 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let before = committed.load(Ordering::Relaxed);
    w.ok(&["backup", "live"]);
    let after = committed.load(Ordering::Relaxed);
    // Keep writing a little after, so the writer really overlapped the backup.
    while committed.load(Ordering::Relaxed) < after + 5 {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        after > before,
        "the writer committed nothing during the backup"
    );

    let restored = w.path("restored.db");
    w.ok(&["restore", "live", "--output", restored.to_str().unwrap()]);
    let conn = Connection::open(&restored).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let (batches, rows): (i64, i64) = conn
        .query_row("SELECT batches, rows FROM ledger", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let counted: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    let distinct: i64 = conn
        .query_row("SELECT count(DISTINCT batch) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(counted, rows, "rows match the ledger of the same commit");
    assert_eq!(distinct, batches, "whole batches only");
    assert_eq!(rows, batches * ROWS_PER_BATCH);
    // The snapshot lies between what was committed before and after the backup ran.
    let (lo, hi) = (300 + before as i64, 300 + after as i64 + 1);
    assert!(
        (lo..=hi).contains(&batches),
        "{batches} committed batches not in {lo}..={hi}"
    );
}

#[test]
fn live_wal_database_restores_to_a_committed_state() {
    live_backup_restores_consistently("wal");
}

#[test]
fn live_rollback_journal_database_restores_to_a_committed_state() {
    live_backup_restores_consistently("delete");
}
