//! `sqlite`: a consistent snapshot of a live SQLite database, streamed page by page.
//!
//! One read transaction is opened and every page is read through the `sqlite_dbpage`
//! virtual table (compiled into the bundled SQLite, see .cargo/config.toml). SQLite
//! serves all pages from that transaction's snapshot — including pages that live only
//! in the WAL — so writers may go on committing while the backup runs, and the result
//! is the database file exactly as it was at the snapshot. No temporary copy is made.
//!
//! In rollback-journal mode the read transaction holds a SHARED lock, so writers wait
//! (up to their busy timeout) to commit until the backup ends; in WAL mode they do not.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use rusqlite::{Connection, OpenFlags};

use super::{DumpStream, ThreadStream};

pub fn open(path: &Path) -> anyhow::Result<Box<dyn DumpStream>> {
    let shown = path.display().to_string();
    match std::fs::metadata(path) {
        Ok(md) if md.is_file() => {}
        Ok(_) => bail!("sqlite database {shown} is not a file"),
        Err(e) => bail!("sqlite database {shown}: {e}"),
    }
    // Read-only and never created: a typo must not produce an empty "backup".
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open sqlite database {shown}"))?;
    conn.busy_timeout(Duration::from_secs(60))?;
    // Take the snapshot now, on the caller's thread, so that open errors ("file is not
    // a database", locked) surface before any byte is written.
    conn.execute_batch("BEGIN DEFERRED")?;
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .with_context(|| format!("cannot read sqlite database {shown}"))?;
    if let Err(e) = conn.prepare(PAGES) {
        if e.to_string().contains("no such table") {
            bail!(
                "this vault binary was built without SQLite's sqlite_dbpage table \
                 (build with LIBSQLITE3_FLAGS=-DSQLITE_ENABLE_DBPAGE_VTAB, as \
                 .cargo/config.toml does)"
            );
        }
        return Err(anyhow::Error::new(e).context(format!("cannot read sqlite database {shown}")));
    }
    tracing::debug!(path = %shown, pages, "sqlite snapshot taken");
    let stream = ThreadStream::spawn("sqlite-pages", move |mut out| {
        let mut stmt = conn.prepare(PAGES)?;
        let mut rows = stmt.query([])?;
        let mut copied = 0i64;
        while let Some(row) = rows.next()? {
            out.write_all(row.get_ref(0)?.as_blob()?)?;
            copied += 1;
        }
        drop(rows);
        drop(stmt);
        if copied != pages {
            bail!("sqlite database {shown}: read {copied} pages of {pages}");
        }
        conn.execute_batch("COMMIT")?;
        out.finish()?;
        Ok(())
    })?;
    Ok(Box::new(stream))
}

/// Every page of the snapshot, in file order.
const PAGES: &str = "SELECT data FROM sqlite_dbpage ORDER BY pgno";
