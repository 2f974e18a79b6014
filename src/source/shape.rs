//! Does a dump look complete? A second line of defence after the tool's exit status.
//!
//! Each engine's stream has a recognisable start and end: a PostgreSQL custom archive
//! starts with `PGDMP`; `mariadb-dump` ends with a `-- Dump completed` comment;
//! `pg_dumpall` ends with `PostgreSQL database cluster dump complete`; an RDB file
//! starts with `REDIS` and ends with the EOF opcode `0xFF` and an 8-byte checksum. A
//! tool that exits 0 after a cut connection (or a wrapper script that loses the exit
//! status) would otherwise leave a truncated dump that looks like a backup.
//!
//! `redis-cli --rdb -` (7.0) copies the 40-byte EOF marker of a diskless transfer to
//! stdout after the RDB; the checker holds back the last 40 bytes and drops them when
//! they are that marker, so what is stored is exactly the RDB file.

use std::io::{self, Read};

use anyhow::bail;

/// What a complete stream looks like.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// What the stream is, for messages (`custom-format archive`).
    pub what: &'static str,
    pub head: &'static [u8],
    pub tail: Tail,
}

#[derive(Debug, Clone, Copy)]
pub enum Tail {
    None,
    /// These bytes occur within the last 512 bytes.
    Contains(&'static [u8]),
    /// An RDB file's end: `0xFF` then 8 checksum bytes (and maybe redis-cli's marker).
    Rdb,
}

/// The size of the EOF marker of a diskless replication transfer.
const RDB_EOF_MARK: usize = 40;
const KEEP: usize = 512;

/// A reader that watches the first and last bytes going through it.
pub struct Checked<R> {
    inner: R,
    shape: Option<Shape>,
    head: Vec<u8>,
    /// The last bytes passed on (at most 2 * KEEP).
    tail: Vec<u8>,
    /// Bytes read but not yet passed on (RDB marker hold-back).
    held: Vec<u8>,
    eof: bool,
    total: u64,
}

impl<R: Read> Checked<R> {
    pub fn new(inner: R, shape: Option<Shape>) -> Checked<R> {
        Checked {
            inner,
            shape,
            head: Vec::new(),
            tail: Vec::new(),
            held: Vec::new(),
            eof: false,
            total: 0,
        }
    }

    fn hold_back(&self) -> usize {
        match self.shape {
            Some(Shape {
                tail: Tail::Rdb, ..
            }) => RDB_EOF_MARK,
            _ => 0,
        }
    }

    fn pass_on(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if let Some(shape) = &self.shape
            && self.head.len() < shape.head.len()
        {
            let want = shape.head.len() - self.head.len();
            self.head.extend(&bytes[..want.min(bytes.len())]);
        }
        // Keep only the last KEEP bytes, without copying the whole stream through.
        if matches!(shape_tail(&self.shape), Tail::None) {
            return;
        }
        if bytes.len() >= KEEP {
            self.tail.clear();
            self.tail.extend_from_slice(&bytes[bytes.len() - KEEP..]);
            return;
        }
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > 2 * KEEP {
            let cut = self.tail.len() - KEEP;
            self.tail.drain(..cut);
        }
    }

    /// Fails when the stream that went through does not have the expected shape.
    pub fn verify(&self, tool: &str) -> anyhow::Result<()> {
        let Some(shape) = self.shape else {
            return Ok(());
        };
        if self.total == 0 {
            bail!("`{tool}` exited successfully but wrote nothing");
        }
        if !self.head.starts_with(shape.head) {
            bail!(
                "`{tool}`'s output does not start like a {}: the dump is not usable",
                shape.what
            );
        }
        let complete = match shape.tail {
            Tail::None => true,
            Tail::Contains(needle) => self.tail.windows(needle.len()).any(|w| w == needle),
            Tail::Rdb => self.tail.len() >= 9 && self.tail[self.tail.len() - 9] == 0xFF,
        };
        if !complete {
            bail!(
                "`{tool}`'s output does not end like a complete {}: the dump was cut short",
                shape.what
            );
        }
        Ok(())
    }
}

fn shape_tail(shape: &Option<Shape>) -> Tail {
    shape.map_or(Tail::None, |s| s.tail)
}

/// True when `held` is redis-cli's copy of the transfer's EOF marker after an RDB.
fn is_rdb_eof_marker(passed_tail: &[u8], held: &[u8]) -> bool {
    held.len() == RDB_EOF_MARK
        && held.iter().all(u8::is_ascii_alphanumeric)
        && passed_tail.len() >= 9
        && passed_tail[passed_tail.len() - 9] == 0xFF
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let keep = self.hold_back();
        if keep == 0 {
            let n = self.inner.read(buf)?;
            self.pass_on(&buf[..n]);
            return Ok(n);
        }
        // Fill `held` beyond the hold-back (reading through the caller's buffer), then
        // pass on what is certainly not the marker.
        while !self.eof && self.held.len() <= keep {
            let n = self.inner.read(buf)?;
            self.eof = n == 0;
            self.held.extend_from_slice(&buf[..n]);
        }
        let mut available = self.held.len().saturating_sub(keep);
        if self.eof && available == 0 && !self.held.is_empty() {
            if is_rdb_eof_marker(&self.tail, &self.held) {
                self.held.clear();
                return Ok(0);
            }
            available = self.held.len();
        }
        let n = available.min(buf.len());
        buf[..n].copy_from_slice(&self.held[..n]);
        self.held.drain(..n);
        self.pass_on(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RDB: Shape = Shape {
        what: "RDB file",
        head: b"REDIS",
        tail: Tail::Rdb,
    };

    fn through(input: &[u8], shape: Shape) -> (Vec<u8>, anyhow::Result<()>) {
        // One byte at a time and in big reads: the result must not depend on it.
        let mut small = Checked::new(input, Some(shape));
        let mut out = Vec::new();
        let mut b = [0u8; 1];
        while small.read(&mut b).unwrap() == 1 {
            out.push(b[0]);
        }
        let mut big = Checked::new(input, Some(shape));
        let mut out2 = Vec::new();
        big.read_to_end(&mut out2).unwrap();
        assert_eq!(out, out2);
        (out, big.verify("tool"))
    }

    #[test]
    fn an_rdb_loses_redis_clis_eof_marker_and_nothing_else() {
        let mut rdb = b"REDIS0010".to_vec();
        rdb.extend(std::iter::repeat_n(7u8, 3000));
        rdb.push(0xFF);
        rdb.extend([1, 2, 3, 4, 5, 6, 7, 8]);
        let (out, ok) = through(&rdb, RDB);
        assert_eq!(out, rdb);
        ok.unwrap();

        let mut with_marker = rdb.clone();
        with_marker.extend(b"5b3b39796685b79aabf90b66a077d2b6e3fab33a");
        let (out, ok) = through(&with_marker, RDB);
        assert_eq!(out, rdb);
        ok.unwrap();

        let cut = &rdb[..2000];
        let (out, err) = through(cut, RDB);
        assert_eq!(out, cut);
        assert!(err.unwrap_err().to_string().contains("cut short"));
    }

    #[test]
    fn heads_and_trailers_are_checked() {
        let pg = Shape {
            what: "custom-format archive",
            head: b"PGDMP",
            tail: Tail::None,
        };
        assert!(through(b"PGDMP\x01\x0e", pg).1.is_ok());
        let err = through(b"pg_dump: error", pg).1.unwrap_err().to_string();
        assert!(err.contains("custom-format archive"), "{err}");
        let sql = Shape {
            what: "SQL dump",
            head: b"",
            tail: Tail::Contains(b"-- Dump completed"),
        };
        let mut dump = b"CREATE TABLE t (a int);\n".repeat(100);
        assert!(through(&dump, sql).1.is_err());
        dump.extend(b"-- Dump completed on 2026-11-22 10:00:00\n");
        assert!(through(&dump, sql).1.is_ok());
        assert!(through(b"", sql).1.is_err());
    }
}
