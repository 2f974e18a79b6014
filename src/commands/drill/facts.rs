//! Facts gathered from a restored copy, to compare with the previous drill of the job,
//! and the numbers of user checks' SQL.
//!
//! - PostgreSQL: exact `count(*)` of every table of the database (partitioned tables
//!   and their partitions each), outside the system schemas, and every sequence's
//!   `last_value`, in one `psql` round trip that answers in JSON (names may hold any
//!   character).
//! - MySQL/MariaDB: the base tables of the database (or of every non-system database,
//!   for a server-wide dump) with their `AUTO_INCREMENT`, names hex-encoded on the way;
//!   then one `SELECT … UNION ALL …` of exact counts.
//! - Redis: keys per database from `INFO keyspace` (a database without keys is not
//!   listed), and the key-type histogram over all databases by a Lua script that runs
//!   SCAN and TYPE inside the server: exact, binary-safe key names never cross the
//!   wire, and the scratch server has no other client to block.
//! - SQLite: `PRAGMA integrity_check` and `count(*)` of every table (virtual tables
//!   aside), read-only.
//! - A directory: regular files and their bytes, directories below it, symbolic links
//!   (never followed).
//!
//! Names are `schema.table` as stored, unquoted: two tables `"a.b".c` and `a."b.c"`
//! would share one name (and one count).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use rusqlite::{Connection, OpenFlags, types::ValueRef};
use serde::{Deserialize, Serialize};

use super::local::Endpoint;
use crate::error::Error;
use crate::source::child;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Facts {
    /// What is counted, by name: PostgreSQL/MySQL `schema.table` → exact rows
    /// (count(*)); SQLite `table` → rows; Redis `db0` → keys (DBSIZE per db);
    /// files: `files` → regular files, `bytes` → their bytes, `dirs`, `symlinks`.
    pub counts: BTreeMap<String, u64>,
    /// PostgreSQL sequences `schema.name` → last_value (null → 0); MySQL
    /// AUTO_INCREMENT per table.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sequences: BTreeMap<String, i64>,
    /// Redis: key type → keys (string, list, set, zset, hash, stream).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub key_types: BTreeMap<String, u64>,
    /// SQLite: `PRAGMA integrity_check`'s answer ("ok" when healthy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<String>,
}

/// Gathers the facts of the restored copy at `endpoint`.
pub fn gather(endpoint: &Endpoint) -> anyhow::Result<Facts> {
    let facts = match endpoint {
        Endpoint::Postgres { .. } => postgres(endpoint),
        Endpoint::Mysql { database, .. } => mysql(endpoint, database.as_deref()),
        Endpoint::Redis { .. } => redis(endpoint),
        Endpoint::Sqlite { path } => sqlite(path),
        Endpoint::Dir { path } => dir(path),
    };
    facts.with_context(|| format!("cannot gather the facts of {}", endpoint.url()))
}

/// Runs a user check's SQL against the restored copy; the first column of the first
/// row as a number (an error names the check when it is not one, or no row).
pub fn sql_number(endpoint: &Endpoint, sql: &str) -> anyhow::Result<f64> {
    let shown = shown_sql(sql);
    let value = match endpoint {
        Endpoint::Postgres { .. } => {
            let psql = endpoint
                .client()?
                .args(["--field-separator-zero", "--record-separator-zero"]);
            let out = child::run(&psql, sql).with_context(|| format!("`{shown}` failed"))?;
            out.split('\0').next().map(str::to_string)
        }
        Endpoint::Mysql { .. } => {
            let out = child::run(&endpoint.client()?, sql)
                .with_context(|| format!("`{shown}` failed"))?;
            out.lines()
                .next()
                .map(|row| row.split('\t').next().unwrap_or("").to_string())
        }
        Endpoint::Sqlite { path } => sqlite_first_value(path, sql)
            .with_context(|| format!("`{shown}` failed on {}", path.display()))?,
        Endpoint::Redis { .. } | Endpoint::Dir { .. } => {
            return Err(Error::config(format!(
                "`{shown}`: SQL checks need a PostgreSQL, MySQL or SQLite copy, not {}",
                endpoint.engine()
            ))
            .into());
        }
    };
    let value = value.filter(|v| !v.is_empty()).ok_or_else(|| {
        anyhow!("`{shown}` returned no row (or NULL, or an empty value): a check needs a number")
    })?;
    let trimmed = value.trim();
    trimmed.parse::<f64>().map_err(|_| {
        anyhow!(
            "`{shown}` returned `{}`, not a number{}",
            shown_sql(trimmed),
            if trimmed == "t" || trimmed == "f" {
                " (cast a boolean to a number: `(…)::int`)"
            } else {
                ""
            }
        )
    })
}

/// SQL cut for messages: one line, at most 60 characters.
fn shown_sql(sql: &str) -> String {
    let line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

/// What PostgreSQL answers, as JSON.
#[derive(Deserialize)]
struct PgAnswer {
    counts: BTreeMap<String, u64>,
    sequences: BTreeMap<String, i64>,
}

/// Every table's exact rows through `query_to_xml` (a query per table, inside one
/// statement), and the sequences; `pg_` schemas are the system's (no user schema may
/// be named so).
const PG_FACTS: &str = "\
SELECT json_build_object(
  'counts', coalesce((
    SELECT json_object_agg(n.nspname || '.' || c.relname,
      (xpath('/row/n/text()', query_to_xml(
        format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname),
        false, true, '')))[1]::text::bigint)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p')
      AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'), '{}'),
  'sequences', coalesce((
    SELECT json_object_agg(schemaname || '.' || sequencename, coalesce(last_value, 0))
    FROM pg_sequences
    WHERE schemaname !~ '^pg_' AND schemaname <> 'information_schema'), '{}'))";

fn postgres(endpoint: &Endpoint) -> anyhow::Result<Facts> {
    let out = child::run(&endpoint.client()?, PG_FACTS)?;
    let answer: PgAnswer =
        serde_json::from_str(&out).with_context(|| format!("unexpected answer: {out}"))?;
    Ok(Facts {
        counts: answer.counts,
        sequences: answer.sequences,
        ..Facts::default()
    })
}

/// Databases that are the server's own, not data.
const MYSQL_SYSTEM: &str = "'mysql', 'information_schema', 'performance_schema', 'sys'";

fn mysql(endpoint: &Endpoint, database: Option<&str>) -> anyhow::Result<Facts> {
    let client = endpoint.client()?;
    let scope = match database {
        Some(db) => format!("= {}", mysql_literal(db)),
        None => format!("NOT IN ({MYSQL_SYSTEM})"),
    };
    // MySQL 8 caches AUTO_INCREMENT in information_schema for a day (MariaDB ignores
    // an executable comment of a MySQL 5.7+ version).
    let listing = format!(
        "/*!80003 SET SESSION information_schema_stats_expiry = 0 */;\n\
         SELECT HEX(TABLE_SCHEMA), HEX(TABLE_NAME), AUTO_INCREMENT FROM information_schema.TABLES \
         WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA {scope} ORDER BY 1, 2;"
    );
    let mut tables = Vec::new();
    let mut facts = Facts::default();
    for row in child::run(&client, &listing)?.lines() {
        let fields: Vec<&str> = row.split('\t').collect();
        let [schema, table, auto_increment] = fields[..] else {
            bail!("unexpected row listing the tables: {row}");
        };
        let (schema, table) = (unhex(schema)?, unhex(table)?);
        let name = format!("{schema}.{table}");
        if let Ok(next) = auto_increment.parse::<i64>() {
            facts.sequences.insert(name.clone(), next);
        }
        tables.push((name, schema, table));
    }
    if tables.is_empty() {
        return Ok(facts);
    }
    let counts = tables
        .iter()
        .enumerate()
        .map(|(i, (_, schema, table))| {
            format!(
                "SELECT {i}, COUNT(*) FROM {}.{}",
                mysql_identifier(schema),
                mysql_identifier(table)
            )
        })
        .collect::<Vec<_>>()
        .join("\nUNION ALL ");
    for row in child::run(&client, &format!("{counts};"))?.lines() {
        let parsed = row
            .split_once('\t')
            .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<u64>().ok()?)));
        let Some((name, n)) = parsed.and_then(|(i, n)| Some((&tables.get(i)?.0, n))) else {
            bail!("unexpected row of counts: {row}");
        };
        facts.counts.insert(name.clone(), n);
    }
    Ok(facts)
}

fn mysql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn mysql_identifier(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// Text from MySQL's `HEX()` of a UTF-8 name.
fn unhex(hex: &str) -> anyhow::Result<String> {
    let bad = || anyhow!("`{hex}` is not hexadecimal");
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(bad)
        })
        .collect::<anyhow::Result<Vec<u8>>>()?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Counts keys by type in the current database: `{type, n, type, n, …}`.
const REDIS_TYPES: &str = "\
local counts, cursor = {}, '0'
repeat
  local page = redis.call('SCAN', cursor, 'COUNT', 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    local t = redis.call('TYPE', key)['ok']
    counts[t] = (counts[t] or 0) + 1
  end
until cursor == '0'
local out = {}
for t, n in pairs(counts) do
  out[#out + 1] = t
  out[#out + 1] = n
end
return out";

fn redis(endpoint: &Endpoint) -> anyhow::Result<Facts> {
    let client = endpoint.client()?;
    let mut facts = Facts::default();
    let keyspace = child::run(&client.args(["INFO", "keyspace"]), "")?;
    // `db3:keys=2,expires=0,avg_ttl=0`
    for line in keyspace.lines().map(str::trim) {
        let Some((db, stats)) = line.split_once(':') else {
            continue;
        };
        let Some(number) = db.strip_prefix("db") else {
            continue;
        };
        let keys = stats
            .split(',')
            .find_map(|kv| kv.strip_prefix("keys="))
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("unexpected INFO keyspace line: {line}"))?;
        facts.counts.insert(db.to_string(), keys);
        let histogram = endpoint
            .client()?
            .args(["-n", number, "EVAL", REDIS_TYPES, "0"]);
        let out = child::run(&histogram, "")?;
        let words: Vec<&str> = out.lines().map(str::trim).collect();
        for pair in words.chunks(2) {
            let [kind, n] = pair else {
                bail!("unexpected key-type histogram of {db}: {out}");
            };
            let n: u64 = n
                .parse()
                .map_err(|_| anyhow!("unexpected key-type histogram of {db}: {out}"))?;
            *facts.key_types.entry(kind.to_string()).or_default() += n;
        }
    }
    Ok(facts)
}

fn open_sqlite(path: &Path) -> anyhow::Result<Connection> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", path.display()))
}

fn sqlite(path: &Path) -> anyhow::Result<Facts> {
    let conn = open_sqlite(path)?;
    let integrity = conn
        .prepare("PRAGMA integrity_check")?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?
        .join("\n");
    let tables = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
             AND coalesce(sql, '') NOT LIKE 'CREATE VIRTUAL %' ORDER BY name",
        )?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut counts = BTreeMap::new();
    for table in tables {
        let sql = format!("SELECT count(*) FROM \"{}\"", table.replace('"', "\"\""));
        let n: i64 = conn
            .query_row(&sql, [], |row| row.get(0))
            .with_context(|| {
                format!("cannot count the rows of table {table} (integrity_check: {integrity})")
            })?;
        counts.insert(table, n.max(0) as u64);
    }
    Ok(Facts {
        counts,
        integrity: Some(integrity),
        ..Facts::default()
    })
}

/// The first column of the first row of `sql` as text; None without a row or for NULL.
fn sqlite_first_value(path: &Path, sql: &str) -> anyhow::Result<Option<String>> {
    let conn = open_sqlite(path)?;
    let mut statement = conn.prepare(sql)?;
    let mut rows = statement.query([])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    Ok(match row.get_ref(0)? {
        ValueRef::Null => None,
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(x) => Some(x.to_string()),
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(_) => Some("(a blob)".to_string()),
    })
}

fn dir(root: &Path) -> anyhow::Result<Facts> {
    let meta =
        fs::symlink_metadata(root).with_context(|| format!("cannot read {}", root.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", root.display());
    }
    let (mut files, mut bytes, mut dirs, mut symlinks) = (0u64, 0u64, 0u64, 0u64);
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            // The entry itself: a symbolic link is counted, never followed.
            let meta = fs::symlink_metadata(entry.path())
                .with_context(|| format!("cannot read {}", entry.path().display()))?;
            let kind = meta.file_type();
            if kind.is_symlink() {
                symlinks += 1;
            } else if kind.is_dir() {
                dirs += 1;
                pending.push(entry.path());
            } else if kind.is_file() {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    let counts = [
        ("files", files),
        ("bytes", bytes),
        ("dirs", dirs),
        ("symlinks", symlinks),
    ];
    Ok(Facts {
        counts: counts
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        ..Facts::default()
    })
}

#[cfg(test)]
mod tests;
